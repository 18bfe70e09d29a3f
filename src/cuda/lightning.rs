//! Lightning attention on CUDA (kernels-cuda/lightning.cu): the same
//! operations and shapes as [`crate::lightning`] on device buffers. Decays and
//! packed-sequence offsets come from the host (they travel in the launch's
//! parameters, so no device allocation per call): at most 256 heads and 256
//! packed sequences per call; head dims up to 224 (the state slice and the
//! chunk's Q and K live in shared memory).

use std::sync::Arc;

use cudarc::driver::{
    CudaFunction, CudaModule, CudaStream, CudaView, CudaViewMut, LaunchConfig, PushKernelArg,
};

use super::ptrs::Ptrs;
use super::{CudaElement, Kernels, cuda_err};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::lightning::{Layout, Sequences, Shape, check_decay};
use crate::shape::expect_len;

const MAX_HEADS: usize = 256;
const MAX_SEQS: usize = 256;
/// Largest head dim of the CUDA kernels (shared memory of one block).
pub const CUDA_MAX_HEAD_DIM: usize = 224;
const SLICE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LtLayout {
    batch: i64,
    head: i64,
    token: i64,
}

/// Mirrors `tk::LtPassArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LtPassArgs {
    q: u64,
    k: u64,
    v: u64,
    o: u64,
    lq: LtLayout,
    lk: LtLayout,
    lv: LtLayout,
    lo: LtLayout,
    s0: u64,
    s_out: u64,
    seqs: i32,
    heads: i32,
    n: i32,
    dq: i32,
    dv: i32,
    packed: i32,
    reverse: i32,
    s0_transposed: i32,
    s0_over_decay: i32,
    s_out_times_decay: i32,
    phase: i32,
    seg_chunks: i32,
    segs: i32,
    ws: u64,
    decay: [f32; MAX_HEADS],
    offsets: [i64; MAX_SEQS + 1],
}

/// `tk::LT_SEQUENTIAL` etc.
const SEQUENTIAL: i32 = 0;
const CHUNK_STATES: i32 = 1;
const CHUNK_OUTPUTS: i32 = 3;
const CHUNK: usize = 64;

/// Mirrors `tk::LtDecodeArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LtDecodeArgs {
    q: u64,
    k: u64,
    v: u64,
    o: u64,
    state: u64,
    count: i32,
    heads: i32,
    dk: i32,
    dv: i32,
    decay: [f32; MAX_HEADS],
}

// SAFETY: plain-old-data structs laid out as their C counterparts.
unsafe impl cudarc::driver::DeviceRepr for LtPassArgs {}
unsafe impl cudarc::driver::DeviceRepr for LtDecodeArgs {}

pub(crate) struct LightningKernels {
    /// [dtype]
    pass: Vec<CudaFunction>,
    decode: Vec<CudaFunction>,
    scan: CudaFunction,
    /// The segmented walks' carries (`tk_lightning_carry16`).
    carry16: CudaFunction,
    /// [dtype] (None for f32): the 16-bit phases (the walk writing every
    /// chunk's start state, the chunk outputs).
    chunk16: Vec<Option<[CudaFunction; 2]>>,
}

impl LightningKernels {
    pub(crate) fn load(module: &Arc<CudaModule>) -> Result<LightningKernels> {
        let mut pass = Vec::new();
        let mut decode = Vec::new();
        for d in Dtype::ALL {
            let name = format!("tk_lightning_pass_{}_cuda", d.name());
            // the largest head dim's shared memory, allowed once
            pass.push(Kernels::function_with_smem(
                module,
                &name,
                smem_bytes(CUDA_MAX_HEAD_DIM),
            )?);
            decode.push(Kernels::function(
                module,
                &format!("tk_lightning_decode_{}_cuda", d.name()),
            )?);
        }
        let mut chunk16 = Vec::new();
        for d in Dtype::ALL {
            chunk16.push(if d == Dtype::F32 {
                None
            } else {
                let f = |phase: &str, bytes: usize| -> Result<CudaFunction> {
                    let name = format!("tk_lightning_{phase}16_{}_cuda", d.name());
                    Kernels::function_with_smem(module, &name, bytes)
                };
                Some([
                    f("walk", smem16_walk())?,
                    f("outputs", smem16_outputs(CUDA_MAX_HEAD_DIM))?,
                ])
            });
        }
        Ok(LightningKernels {
            pass,
            decode,
            scan: Kernels::function(module, "tk_lightning_scan")?,
            carry16: Kernels::function(module, "tk_lightning_carry16")?,
            chunk16,
        })
    }
}

/// Chunks a 16-bit walk takes at most in one go: longer sequences are walked
/// in segments of this many chunks side by side, their carries chained after
/// (`tk::lightning_carry16`). 32 chunks = 2048 tokens: a 32k sequence is 16
/// walks instead of one.
const SEG_CHUNKS: usize = 32;

/// `a` with the 16-bit walk's segments set (none when every sequence fits
/// one), at most 65535 walks of a state tile per head (the grid's z).
fn segmented(a: &LtPassArgs) -> LtPassArgs {
    let seqs = a.seqs.max(1) as usize;
    let chunks_of = |len: i64| (len as usize).div_ceil(64);
    let most = if a.packed != 0 {
        (0..seqs)
            .map(|s| chunks_of(a.offsets[s + 1] - a.offsets[s]))
            .max()
            .unwrap_or(0)
    } else {
        chunks_of(a.n as i64)
    };
    let g = SEG_CHUNKS.max(most.div_ceil((65535 / seqs).max(1)));
    let segs = most.div_ceil(g);
    if segs <= 1 {
        return *a;
    }
    LtPassArgs {
        seg_chunks: g as i32,
        segs: segs as i32,
        ..*a
    }
}

/// Floats of decay powers ahead of the 16-bit buffers (`tk::LT_PW16`).
const PW16: usize = 68;

/// Mirrors `tk::lt_smem16_walk` (bytes).
fn smem16_walk() -> usize {
    2 * 64 * 72 * 2 + PW16 * 4
}

/// Mirrors `tk::lt_smem16_outputs` (bytes).
fn smem16_outputs(dq: usize) -> usize {
    (3 * 64 * (dq.div_ceil(16) * 16 + 8) + 2 * 64 * 72) * 2 + PW16 * 4
}

/// Mirrors `tk::lt_smem_floats`, in bytes.
fn smem_bytes(dq: usize) -> usize {
    let dqp = dq.div_ceil(16) * 16;
    let ldq = dqp + 4;
    4 * (2 * 64 * ldq + 64 * (SLICE + 4) + 64 * 68 + dqp * (SLICE + 4) + 72)
}

/// The buffers of a forward call (shapes as [`crate::lightning::Lightning::forward`]).
pub struct DeviceLightningForward<'v, 'a, T> {
    /// Queries (the shape's q/k length).
    pub q: &'v CudaView<'a, T>,
    /// Keys (the shape's q/k length).
    pub k: &'v CudaView<'a, T>,
    /// Values (the shape's v/o length).
    pub v: &'v CudaView<'a, T>,
    /// Output, the shape of v.
    pub o: &'v mut CudaViewMut<'a, T>,
    /// States to start from (`[sequences, heads, dk, dv]`), or zero.
    pub initial_state: Option<&'v CudaView<'a, f32>>,
    /// Where to write the final states, or None.
    pub final_state: Option<&'v mut CudaViewMut<'a, f32>>,
    /// [`Kernels::lightning_workspace_len`] floats: every chunk runs in
    /// parallel. None: a block per (sequence, head) walks the sequence (no
    /// scratch, far less parallel).
    pub workspace: Option<&'v mut CudaViewMut<'a, f32>>,
}

/// The buffers of a backward call (see [`crate::lightning::Lightning::backward`]).
pub struct DeviceLightningBackward<'v, 'a, T> {
    /// The forward's queries.
    pub q: &'v CudaView<'a, T>,
    /// The forward's keys.
    pub k: &'v CudaView<'a, T>,
    /// The forward's values.
    pub v: &'v CudaView<'a, T>,
    /// Gradient of the loss with respect to the output.
    pub dout: &'v CudaView<'a, T>,
    /// Gradient with respect to q (written).
    pub dq: &'v mut CudaViewMut<'a, T>,
    /// Gradient with respect to k (written).
    pub dk: &'v mut CudaViewMut<'a, T>,
    /// Gradient with respect to v (written).
    pub dv: &'v mut CudaViewMut<'a, T>,
    /// The forward's initial states, or zero.
    pub initial_state: Option<&'v CudaView<'a, f32>>,
    /// Gradient with respect to the final states, or zero.
    pub dfinal_state: Option<&'v CudaView<'a, f32>>,
    /// Where to write the gradient with respect to the initial states, or None.
    pub dinitial_state: Option<&'v mut CudaViewMut<'a, f32>>,
    /// As for the forward (the three passes share it).
    pub workspace: Option<&'v mut CudaViewMut<'a, f32>>,
}

fn invalid(reason: &'static str) -> Error {
    Error::InvalidArgument {
        what: "lightning on CUDA",
        reason,
    }
}

/// Shape checks shared by forward and backward; returns the pass template
/// (dims, sequences, decays, offsets) with no operands yet.
fn pass_template(shape: &Shape, decay: &[f32]) -> Result<LtPassArgs> {
    shape.check()?;
    check_decay(decay, shape.heads)?;
    if shape.heads > MAX_HEADS {
        return Err(invalid("at most 256 heads"));
    }
    if shape.dk > CUDA_MAX_HEAD_DIM || shape.dv > CUDA_MAX_HEAD_DIM {
        return Err(invalid("head dims up to 224"));
    }
    let tokens = shape.tokens()?;
    if shape.len(shape.dk.max(shape.dv))? > i64::MAX as usize / 4 || tokens > i32::MAX as usize {
        return Err(invalid("tensors too large"));
    }
    let mut a = LtPassArgs {
        q: 0,
        k: 0,
        v: 0,
        o: 0,
        lq: LtLayout::default(),
        lk: LtLayout::default(),
        lv: LtLayout::default(),
        lo: LtLayout::default(),
        s0: 0,
        s_out: 0,
        seqs: shape.sequences() as i32,
        heads: shape.heads as i32,
        n: 0,
        dq: 0,
        dv: 0,
        packed: 0,
        reverse: 0,
        s0_transposed: 0,
        s0_over_decay: 0,
        s_out_times_decay: 0,
        phase: SEQUENTIAL,
        seg_chunks: 0,
        segs: 1,
        ws: 0,
        decay: [1.0; MAX_HEADS],
        offsets: [0; MAX_SEQS + 1],
    };
    a.decay[..decay.len()].copy_from_slice(decay);
    match shape.seqs {
        Sequences::Batch { batch, n } => {
            if batch > i32::MAX as usize || n > i32::MAX as usize {
                return Err(invalid("tensors too large"));
            }
            a.n = n as i32;
        }
        Sequences::Packed { offsets } => {
            if offsets.len() > MAX_SEQS + 1 {
                return Err(invalid("at most 256 packed sequences"));
            }
            a.packed = 1;
            for (d, &s) in a.offsets.iter_mut().zip(offsets) {
                *d = s as i64;
            }
        }
    }
    Ok(a)
}

/// Checks a workspace's length (when one is given); returns the chunk count.
fn check_workspace(shape: &Shape, len: Option<usize>) -> Result<usize> {
    let need = Kernels::lightning_workspace_len(shape)?;
    if let Some(len) = len {
        if len < need {
            return Err(Error::LengthMismatch {
                what: "lightning workspace (at least)",
                expected: need,
                actual: len,
            });
        }
    }
    Ok(need / (shape.heads * shape.dk * shape.dv))
}

fn layout(shape: &Shape, l: Layout, d: usize) -> LtLayout {
    let f = shape.layout(l, d);
    LtLayout {
        batch: f.batch as i64,
        head: f.head as i64,
        token: f.token as i64,
    }
}

impl Kernels {
    /// Floats of workspace for the chunk-parallel path: a dk x dv state for
    /// every 64-token chunk of every (sequence, head).
    pub fn lightning_workspace_len(shape: &Shape) -> Result<usize> {
        let chunks: usize = match shape.seqs {
            Sequences::Batch { batch, n } => batch * n.div_ceil(CHUNK),
            Sequences::Packed { offsets } => offsets
                .windows(2)
                .map(|w| (w[1] - w[0]).div_ceil(CHUNK))
                .sum(),
        };
        [shape.heads, shape.dk, shape.dv]
            .iter()
            .try_fold(chunks, |a, &b| a.checked_mul(b))
            .ok_or(Error::Overflow {
                what: "lightning workspace",
            })
    }

    /// One pass: sequential, or (with a workspace) the three chunk launches.
    fn launch_pass<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        a: &LtPassArgs,
        chunks: usize,
    ) -> Result<()> {
        let seqs = a.seqs as u32;
        if seqs == 0 {
            return Ok(());
        }
        let func = &self.lightning.pass[T::DTYPE as usize];
        let slices = (a.dv as u32).div_ceil(SLICE as u32);
        let block = |units: u32| LaunchConfig {
            grid_dim: (units, a.heads as u32, slices),
            block_dim: (128, 1, 1),
            shared_mem_bytes: smem_bytes(a.dq as usize) as u32,
        };
        let run = |args: &LtPassArgs, cfg: LaunchConfig, f: &CudaFunction| -> Result<()> {
            let mut launch = stream.launch_builder(f);
            launch.arg(args);
            // SAFETY: (LtPassArgs) with T this dtype; the caller checked every
            // pointer's length against the shape (the workspace against
            // lightning_workspace_len) and keeps the buffers borrowed (with
            // their stream guards) until after this call; each block writes
            // only its (sequence, segment or chunk, head, slice) of o, the
            // state and the workspace (segment carries in the workspace's
            // free half, see tk::lt_carry).
            unsafe { launch.launch(cfg) }.map_err(cuda_err("lightning pass"))?;
            Ok(())
        };
        if a.ws == 0 {
            return run(a, block(seqs), func);
        }
        let phase_cfg = |bytes: usize| LaunchConfig {
            shared_mem_bytes: bytes as u32,
            ..block(chunks as u32)
        };
        // 16-bit I/O: a walk per (64 x 64 tile of the state, head, sequence
        // or segment of one) writes every chunk's start state (and the end
        // states), the segments' carries are chained, then the chunks'
        // outputs run in parallel
        if let Some([walk, outputs]) = self.lightning.chunk16[T::DTYPE as usize].as_ref() {
            let a = &segmented(a);
            let tiles = (a.dq as u32).div_ceil(SLICE as u32) * slices;
            let walk_cfg = LaunchConfig {
                grid_dim: (tiles, a.heads as u32, seqs * a.segs as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: smem16_walk() as u32,
            };
            run(a, walk_cfg, walk)?;
            if a.seg_chunks > 0 {
                let carry_cfg = LaunchConfig {
                    grid_dim: (((a.dq * a.dv) as u32).div_ceil(256), a.heads as u32, seqs),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                run(a, carry_cfg, &self.lightning.carry16)?;
            }
            if chunks > 0 {
                // a block per (chunk, head) covers every value slice: Q K^T once
                let cfg = LaunchConfig {
                    grid_dim: (chunks as u32, a.heads as u32, 1),
                    ..phase_cfg(smem16_outputs(a.dq as usize))
                };
                run(a, cfg, outputs)?;
            }
            return Ok(());
        }
        // f32: every chunk's own contribution, the scan to start states (with
        // no tokens it alone copies the start states to the end states), the
        // outputs
        if chunks > 0 {
            run(
                &LtPassArgs {
                    phase: CHUNK_STATES,
                    ..*a
                },
                block(chunks as u32),
                func,
            )?;
        }
        let elems = (a.dq * a.dv) as u32;
        let scan = LaunchConfig {
            grid_dim: (elems.div_ceil(256), a.heads as u32, seqs),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        run(a, scan, &self.lightning.scan)?;
        if chunks > 0 {
            run(
                &LtPassArgs {
                    phase: CHUNK_OUTPUTS,
                    ..*a
                },
                block(chunks as u32),
                func,
            )?;
        }
        Ok(())
    }

    /// Forward (prefill) on device buffers, enqueued on `stream`. Semantics as
    /// [`crate::lightning::Lightning::forward`]; accuracy within
    /// [`crate::reference::lightning::gpu_error_bound`]. Nothing is enqueued on error.
    pub fn lightning_forward<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        layout_of: Layout,
        shape: Shape,
        decay: &[f32],
        call: DeviceLightningForward<'_, '_, T>,
    ) -> Result<()> {
        let mut a = pass_template(&shape, decay)?;
        let (nk, nv) = (shape.len(shape.dk)?, shape.len(shape.dv)?);
        expect_len("lightning q", nk, call.q.len())?;
        expect_len("lightning k", nk, call.k.len())?;
        expect_len("lightning v", nv, call.v.len())?;
        expect_len("lightning o", nv, call.o.len())?;
        let sl = shape.state_len()?;
        if let Some(s) = &call.initial_state {
            expect_len("lightning initial state", sl, s.len())?;
        }
        if let Some(s) = &call.final_state {
            expect_len("lightning final state", sl, s.len())?;
        }
        let chunks = check_workspace(&shape, call.workspace.as_ref().map(|w| w.len()))?;
        let mut ptrs = Ptrs::new();
        a.q = ptrs.view(call.q, stream);
        a.k = ptrs.view(call.k, stream);
        a.v = ptrs.view(call.v, stream);
        a.o = ptrs.view_mut(call.o, stream);
        if let Some(s) = call.initial_state {
            a.s0 = ptrs.view(s, stream);
        }
        if let Some(s) = call.final_state {
            a.s_out = ptrs.view_mut(s, stream);
        }
        if let Some(w) = call.workspace {
            a.ws = ptrs.view_mut(w, stream);
        }
        (a.lq, a.lk) = (
            layout(&shape, layout_of, shape.dk),
            layout(&shape, layout_of, shape.dk),
        );
        (a.lv, a.lo) = (
            layout(&shape, layout_of, shape.dv),
            layout(&shape, layout_of, shape.dv),
        );
        (a.dq, a.dv) = (shape.dk as i32, shape.dv as i32);
        self.launch_pass::<T>(stream, &a, chunks)?;
        drop(ptrs);
        Ok(())
    }

    /// Backward on device buffers: three passes of the forward kernel (dq in
    /// time order from S^T; dk and dv reversed from the gradient state), as on
    /// the CPU. Semantics as [`crate::lightning::Lightning::backward`].
    pub fn lightning_backward<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        layout_of: Layout,
        shape: Shape,
        decay: &[f32],
        call: DeviceLightningBackward<'_, '_, T>,
    ) -> Result<()> {
        let t = pass_template(&shape, decay)?;
        let (nk, nv) = (shape.len(shape.dk)?, shape.len(shape.dv)?);
        for (what, len) in [
            ("lightning q", call.q.len()),
            ("lightning k", call.k.len()),
            ("lightning dq", call.dq.len()),
            ("lightning dk", call.dk.len()),
        ] {
            expect_len(what, nk, len)?;
        }
        for (what, len) in [
            ("lightning v", call.v.len()),
            ("lightning dout", call.dout.len()),
            ("lightning dv", call.dv.len()),
        ] {
            expect_len(what, nv, len)?;
        }
        let sl = shape.state_len()?;
        for (what, len) in [
            (
                "lightning initial state",
                call.initial_state.as_ref().map(|s| s.len()),
            ),
            (
                "lightning final-state gradient",
                call.dfinal_state.as_ref().map(|s| s.len()),
            ),
            (
                "lightning initial-state gradient",
                call.dinitial_state.as_ref().map(|s| s.len()),
            ),
        ] {
            if let Some(len) = len {
                expect_len(what, sl, len)?;
            }
        }
        let chunks = check_workspace(&shape, call.workspace.as_ref().map(|w| w.len()))?;
        let (lk, lv) = (
            layout(&shape, layout_of, shape.dk),
            layout(&shape, layout_of, shape.dv),
        );
        let (dk, dv) = (shape.dk as i32, shape.dv as i32);
        let mut ptrs = Ptrs::new();
        let (q, k, v, dout) = (
            ptrs.view(call.q, stream),
            ptrs.view(call.k, stream),
            ptrs.view(call.v, stream),
            ptrs.view(call.dout, stream),
        );
        let (gq, gk, gv) = (
            ptrs.view_mut(call.dq, stream),
            ptrs.view_mut(call.dk, stream),
            ptrs.view_mut(call.dv, stream),
        );
        let s0 = call.initial_state.map_or(0, |s| ptrs.view(s, stream));
        let ds = call.dfinal_state.map_or(0, |s| ptrs.view(s, stream));
        let ds0 = call.dinitial_state.map_or(0, |s| ptrs.view_mut(s, stream));
        let ws = call.workspace.map_or(0, |w| ptrs.view_mut(w, stream));
        let t = LtPassArgs { ws, ..t };
        // dq = dout S^T: forward in time, (q, k, v) = (dout, v, k), from S_0^T
        let a = LtPassArgs {
            q: dout,
            k: v,
            v: k,
            o: gq,
            lq: lv,
            lk: lv,
            lv: lk,
            lo: lk,
            s0,
            s0_transposed: 1,
            dq: dv,
            dv: dk,
            ..t
        };
        self.launch_pass::<T>(stream, &a, chunks)?;
        // dk = v G^T: reversed, (v, dout, q), from (dstate_out / decay)^T
        let a = LtPassArgs {
            q: v,
            k: dout,
            v: q,
            o: gk,
            lq: lv,
            lk: lv,
            lv: lk,
            lo: lk,
            s0: ds,
            s0_transposed: 1,
            s0_over_decay: 1,
            reverse: 1,
            dq: dv,
            dv: dk,
            ..t
        };
        self.launch_pass::<T>(stream, &a, chunks)?;
        // dv = k G: reversed, (k, q, dout), from dstate_out / decay; ends at
        // G_1, and dS_0 = decay G_1
        let a = LtPassArgs {
            q: k,
            k: q,
            v: dout,
            o: gv,
            lq: lk,
            lk,
            lv,
            lo: lv,
            s0: ds,
            s0_over_decay: 1,
            s_out: ds0,
            s_out_times_decay: 1,
            reverse: 1,
            dq: dk,
            dv,
            ..t
        };
        self.launch_pass::<T>(stream, &a, chunks)?;
        drop(ptrs);
        Ok(())
    }

    /// One decoding step on device buffers for `count = q.len() / dk`
    /// (sequence, head) rows: `S <- decay S + k^T v`, `o = q S` (see
    /// [`crate::lightning::Lightning::decode`]).
    #[allow(clippy::too_many_arguments)]
    pub fn lightning_decode<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        decay: &[f32],
        dk: usize,
        dv: usize,
        q: &CudaView<'_, T>,
        k: &CudaView<'_, T>,
        v: &CudaView<'_, T>,
        o: &mut CudaViewMut<'_, T>,
        state: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        let heads = decay.len();
        let count = q.len() / dk.max(1);
        Shape::batch(count / heads.max(1), 1, heads, dk, dv).check()?;
        check_decay(decay, heads)?;
        if heads > MAX_HEADS {
            return Err(invalid("at most 256 heads"));
        }
        if count % heads != 0 {
            return Err(Error::InvalidArgument {
                what: "lightning decode q",
                reason: "must hold a whole number of (sequence, head) rows",
            });
        }
        expect_len("lightning decode q", count * dk, q.len())?;
        expect_len("lightning decode k", count * dk, k.len())?;
        expect_len("lightning decode v", count * dv, v.len())?;
        expect_len("lightning decode o", count * dv, o.len())?;
        expect_len("lightning decode state", count * dk * dv, state.len())?;
        if count == 0 {
            return Ok(());
        }
        if count > i32::MAX as usize {
            return Err(invalid("tensors too large"));
        }
        let mut ptrs = Ptrs::new();
        let mut a = LtDecodeArgs {
            q: ptrs.view(q, stream),
            k: ptrs.view(k, stream),
            v: ptrs.view(v, stream),
            o: ptrs.view_mut(o, stream),
            state: ptrs.view_mut(state, stream),
            count: count as i32,
            heads: heads as i32,
            dk: dk as i32,
            dv: dv as i32,
            decay: [1.0; MAX_HEADS],
        };
        a.decay[..heads].copy_from_slice(decay);
        let func = &self.lightning.decode[T::DTYPE as usize];
        let mut launch = stream.launch_builder(func);
        launch.arg(&a);
        // SAFETY: (LtDecodeArgs) with T this dtype; lengths checked above; a
        // block per row, a thread per value column (dv <= 256 threads).
        unsafe {
            launch.launch(LaunchConfig {
                grid_dim: (count as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            })
        }
        .map_err(cuda_err("lightning decode"))?;
        drop(ptrs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> LtPassArgs {
        pass_template(&Shape::batch(1, n, 1, 128, 128), &[1.0]).unwrap()
    }

    fn packed(offsets: &[usize]) -> LtPassArgs {
        pass_template(&Shape::packed(offsets, 1, 128, 128), &[1.0]).unwrap()
    }

    #[test]
    fn long_sequences_are_walked_in_segments() {
        // 2048 tokens: one walk; 32768: 16 segments of 32 chunks
        let a = segmented(&batch(2048));
        assert_eq!((a.seg_chunks, a.segs), (0, 1));
        let a = segmented(&batch(32768));
        assert_eq!((a.seg_chunks, a.segs), (32, 16));
        // packed: the longest sequence decides (100 chunks: 4 segments)
        let a = segmented(&packed(&[0, 64, 64 + 6400, 64 + 6400 + 1]));
        assert_eq!((a.seg_chunks, a.segs), (32, 4));
        // 256 sequences of 2^22 tokens: segments grow so the grid's z holds
        let len = 1usize << 22;
        let offsets: Vec<usize> = (0..=256).map(|s| s * len).collect();
        let a = segmented(&packed(&offsets));
        assert!(a.seg_chunks >= 32 && a.seqs as i64 * a.segs as i64 <= 65535);
        assert!(a.segs as usize * a.seg_chunks as usize * 64 >= len);
    }
}
