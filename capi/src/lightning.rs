//! Lightning attention: block-tiled causal linear attention with a decay per
//! head; prefill with state hand-over, backward, and decoding steps.

use std::ffi::{c_int, c_void};

use transformer_kernels::Element;
use transformer_kernels::lightning::{self, Grads, Layout, Lightning, Shape};

use crate::buffers::{Buffers, in_ref, product};
use crate::{Failure, Outcome, by_dtype, guard, tfk_dtype, tfk_status};

/// How tokens and heads are laid out in q, k, v, o and their gradients.
pub type tfk_layout = i32;
/// `[batch, heads, n, d]` (packed: `[heads, tokens, d]`).
pub const TFK_LAYOUT_HEADS_FIRST: tfk_layout = 0;
/// `[batch, n, heads, d]` (packed: `[tokens, heads, d]`).
pub const TFK_LAYOUT_TOKENS_FIRST: tfk_layout = 1;

/// The shape of a Lightning call: `batch` sequences of `n` tokens, or (when
/// `offsets` is not NULL) `sequences` packed sequences where sequence `b`
/// holds tokens `offsets[b] .. offsets[b + 1]` (`sequences + 1` entries,
/// `offsets[0] == 0`; `batch` and `n` are then ignored).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tfk_lightning_shape {
    /// Sequences (batched form).
    pub batch: usize,
    /// Tokens per sequence (batched form).
    pub n: usize,
    /// Heads; one decay per head.
    pub heads: usize,
    /// Width of q and k (at most 256).
    pub dk: usize,
    /// Width of v and o (at most 256).
    pub dv: usize,
    /// Cumulative token offsets of packed sequences, or NULL.
    pub offsets: *const usize,
    /// Packed sequences (entries of `offsets` minus one).
    pub sequences: usize,
    /// `TFK_LAYOUT_HEADS_FIRST` or `TFK_LAYOUT_TOKENS_FIRST`.
    pub layout: tfk_layout,
}

/// The Rust options and shape a [`tfk_lightning_shape`] describes.
///
/// # Safety
/// `s.offsets` is NULL or points to `s.sequences + 1` values.
unsafe fn describe<'a>(
    b: &mut Buffers,
    s: &tfk_lightning_shape,
) -> Result<(Lightning, Shape<'a>), Failure> {
    let layout = match s.layout {
        TFK_LAYOUT_HEADS_FIRST => Layout::HeadsFirst,
        TFK_LAYOUT_TOKENS_FIRST => Layout::TokensFirst,
        other => {
            return Err(Failure::invalid(
                "lightning layout",
                format_args!("{other} is not a layout"),
            ));
        }
    };
    let shape = if s.offsets.is_null() {
        Shape::batch(s.batch, s.n, s.heads, s.dk, s.dv)
    } else {
        let entries = s
            .sequences
            .checked_add(1)
            .ok_or_else(|| Failure::invalid("sequences", "too large"))?;
        // SAFETY: the caller's contract.
        let offsets = unsafe { b.input::<usize>(s.offsets.cast(), entries, "offsets")? };
        Shape::packed(offsets, s.heads, s.dk, s.dv)
    };
    Ok((
        Lightning::new().layout(layout).threads(crate::threads()),
        shape,
    ))
}

/// Tensors of a forward or backward call, as the C caller passed them.
struct Tensors {
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    decay: *const f32,
    /// forward: o; backward: dout.
    o: *mut c_void,
    state_in: *const f32,
    /// forward: the final state; backward: the final state's gradient (read).
    state_out: *mut f32,
    grads: [*mut c_void; 3],
    dstate_in: *mut f32,
    workspace: *mut f32,
    workspace_len: usize,
}

/// Floats of scratch one thread of a forward (`backward` 0) or backward
/// (`backward` 1) call needs: a caller workspace of `t` times this lets `t`
/// threads run (a shorter one limits them; see [`crate::tfk_set_threads`]).
#[unsafe(no_mangle)]
pub extern "C" fn tfk_lightning_workspace_floats(dk: usize, dv: usize, backward: c_int) -> usize {
    lightning::workspace_len(dk, dv, backward != 0)
}

/// Prefill: `o` from `q`, `k` (`tokens * heads * dk` elements of `dtype`),
/// `v` (`tokens * heads * dv`) and `decay` (`heads` floats in (0, 1]);
/// `o` has the shape of `v`. `state_in` (NULL: zero) and `state_out` (NULL:
/// not wanted) are `[sequences, heads, dk, dv]` f32. `workspace`: NULL (the
/// call allocates its scratch) or `workspace_len` floats, at least
/// [`tfk_lightning_workspace_floats`]`(dk, dv, 0)`.
///
/// # Safety
/// Every non-NULL pointer points to the number of elements given above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_lightning_forward(
    dtype: tfk_dtype,
    shape: *const tfk_lightning_shape,
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    decay: *const f32,
    o: *mut c_void,
    state_in: *const f32,
    state_out: *mut f32,
    workspace: *mut f32,
    workspace_len: usize,
) -> tfk_status {
    let t = Tensors {
        q,
        k,
        v,
        decay,
        o,
        state_in,
        state_out,
        grads: [std::ptr::null_mut(); 3],
        dstate_in: std::ptr::null_mut(),
        workspace,
        workspace_len,
    };
    // SAFETY: the caller's contract.
    guard(|| by_dtype!(dtype, forward(unsafe { in_ref(shape, "shape")? }, &t)))
}

fn forward<T: Element>(s: &tfk_lightning_shape, t: &Tensors) -> Outcome {
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract, checked by Buffers.
    let (op, shape) = unsafe { describe(&mut b, s)? };
    let (qk, vo, state) = lengths(&shape)?;
    let q = unsafe { b.input::<T>(t.q, qk, "q")? };
    let k = unsafe { b.input::<T>(t.k, qk, "k")? };
    let v = unsafe { b.input::<T>(t.v, vo, "v")? };
    let decay = unsafe { b.input::<f32>(t.decay.cast(), s.heads, "decay")? };
    let state_in = unsafe { b.optional_input::<f32>(t.state_in.cast(), state, "state_in")? };
    let o = unsafe { b.output::<T>(t.o, vo, "o")? };
    let state_out = unsafe { b.optional_output::<f32>(t.state_out.cast(), state, "state_out")? };
    let ws = unsafe { b.optional_output::<f32>(t.workspace.cast(), t.workspace_len, "workspace")? };
    let mut call = op.forward(q, k, v, o, decay, shape);
    if let Some(w) = ws {
        call = call.workspace(w);
    }
    if let Some(s) = state_in {
        call = call.initial_state(s);
    }
    if let Some(s) = state_out {
        call = call.final_state(s);
    }
    Ok(call.run()?)
}

/// Elements of q/k, of v/o, and floats of a state, for this shape.
fn lengths(shape: &Shape) -> Result<(usize, usize, usize), Failure> {
    Ok((
        shape.len(shape.dk)?,
        shape.len(shape.dv)?,
        shape.state_len()?,
    ))
}

/// Backward: `dq`, `dk`, `dv` (shapes of q, k, v) from the forward's inputs
/// and `dout` (shape of o). `state_in`: the forward's initial state (NULL:
/// zero); `dstate_out`: gradient w.r.t. its final state (NULL: zero);
/// `dstate_in`: where to write the gradient w.r.t. the initial state (NULL:
/// not wanted). `workspace`: NULL (the call allocates) or `workspace_len`
/// floats, at least [`tfk_lightning_workspace_floats`]`(dk, dv, 1)`.
///
/// # Safety
/// Every non-NULL pointer points to the number of elements its shape gives.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_lightning_backward(
    dtype: tfk_dtype,
    shape: *const tfk_lightning_shape,
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    decay: *const f32,
    dout: *const c_void,
    state_in: *const f32,
    dstate_out: *const f32,
    dq: *mut c_void,
    dk: *mut c_void,
    dv: *mut c_void,
    dstate_in: *mut f32,
    workspace: *mut f32,
    workspace_len: usize,
) -> tfk_status {
    let t = Tensors {
        q,
        k,
        v,
        decay,
        o: dout.cast_mut(),
        state_in,
        state_out: dstate_out.cast_mut(),
        grads: [dq, dk, dv],
        dstate_in,
        workspace,
        workspace_len,
    };
    // SAFETY: the caller's contract.
    guard(|| by_dtype!(dtype, backward(unsafe { in_ref(shape, "shape")? }, &t)))
}

fn backward<T: Element>(s: &tfk_lightning_shape, t: &Tensors) -> Outcome {
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract, checked by Buffers.
    let (op, shape) = unsafe { describe(&mut b, s)? };
    let (qk, vo, state) = lengths(&shape)?;
    let q = unsafe { b.input::<T>(t.q, qk, "q")? };
    let k = unsafe { b.input::<T>(t.k, qk, "k")? };
    let v = unsafe { b.input::<T>(t.v, vo, "v")? };
    let decay = unsafe { b.input::<f32>(t.decay.cast(), s.heads, "decay")? };
    let dout = unsafe { b.input::<T>(t.o, vo, "dout")? };
    let state_in = unsafe { b.optional_input::<f32>(t.state_in.cast(), state, "state_in")? };
    let dstate_out = unsafe { b.optional_input::<f32>(t.state_out.cast(), state, "dstate_out")? };
    let grads = Grads {
        dq: unsafe { b.output::<T>(t.grads[0], qk, "dq")? },
        dk: unsafe { b.output::<T>(t.grads[1], qk, "dk")? },
        dv: unsafe { b.output::<T>(t.grads[2], vo, "dv")? },
    };
    let dstate_in = unsafe { b.optional_output::<f32>(t.dstate_in.cast(), state, "dstate_in")? };
    let ws = unsafe { b.optional_output::<f32>(t.workspace.cast(), t.workspace_len, "workspace")? };
    let mut call = op.backward(q, k, v, dout, grads, decay, shape);
    if let Some(w) = ws {
        call = call.workspace(w);
    }
    if let Some(s) = state_in {
        call = call.initial_state(s);
    }
    if let Some(s) = dstate_out {
        call = call.dfinal_state(s);
    }
    if let Some(s) = dstate_in {
        call = call.dinitial_state(s);
    }
    Ok(call.run()?)
}

/// One decoding step for `batch * heads` sequences: `S <- decay S + k^T v`,
/// `o = q S`. `q`, `k`: `[batch, heads, dk]`; `v`, `o`: `[batch, heads, dv]`
/// (elements of `dtype`); `state`: `[batch, heads, dk, dv]` f32, updated in
/// place; `decay`: `heads` floats.
///
/// # Safety
/// Every pointer points to the number of elements given above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_lightning_decode(
    dtype: tfk_dtype,
    batch: usize,
    heads: usize,
    dk: usize,
    dv: usize,
    q: *const c_void,
    k: *const c_void,
    v: *const c_void,
    decay: *const f32,
    o: *mut c_void,
    state: *mut f32,
) -> tfk_status {
    let t = Tensors {
        q,
        k,
        v,
        decay,
        o,
        state_in: std::ptr::null(),
        state_out: state,
        grads: [std::ptr::null_mut(); 3],
        dstate_in: std::ptr::null_mut(),
        workspace: std::ptr::null_mut(),
        workspace_len: 0,
    };
    guard(|| by_dtype!(dtype, decode([batch, heads, dk, dv], &t)))
}

fn decode<T: Element>([batch, heads, dk, dv]: [usize; 4], t: &Tensors) -> Outcome {
    let rows = product(&[batch, heads], "lightning decode batch * heads")?;
    let qk = product(&[rows, dk], "lightning decode q")?;
    let vo = product(&[rows, dv], "lightning decode v")?;
    let state = product(&[vo, dk], "lightning decode state")?;
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract, checked by Buffers.
    let q = unsafe { b.input::<T>(t.q, qk, "q")? };
    let k = unsafe { b.input::<T>(t.k, qk, "k")? };
    let v = unsafe { b.input::<T>(t.v, vo, "v")? };
    let decay = unsafe { b.input::<f32>(t.decay.cast(), heads, "decay")? };
    let o = unsafe { b.output::<T>(t.o, vo, "o")? };
    let s = unsafe { b.output::<f32>(t.state_out.cast(), state, "state")? };
    if rows == 0 {
        return Err(Failure::from(transformer_kernels::Error::ZeroSize {
            what: "lightning decode batch and heads",
        }));
    }
    Ok(Lightning::new().decode(q, k, v, o, s, decay, dk, dv)?)
}
