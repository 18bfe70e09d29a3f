//! Kronecker-factored transforms `x (P1 kron P2)` (FlatQuant) and the fast
//! Walsh-Hadamard transform, fused with per-token int8/int4 quantization.

use std::ffi::c_void;

use transformer_kernels::Element;
use transformer_kernels::kron::{Factor, Kron, int4_row_bytes};

use crate::buffers::{Buffers, free, hand_out, in_ref, product};
use crate::{Failure, Outcome, by_dtype, guard, tfk_dtype, tfk_status};

/// A prepared transform (opaque). Immutable: one may serve many threads.
pub struct tfk_kron {
    inner: Kron,
}

/// A factor: dense row-major `n x n` f32 entries, or Hadamard when `p` is NULL.
///
/// # Safety
/// `p` is NULL or points to `n * n` floats.
unsafe fn factor(
    b: &mut Buffers,
    p: *const f32,
    n: usize,
    what: &'static str,
) -> Result<Factor, Failure> {
    if p.is_null() {
        return Ok(Factor::hadamard(n)?);
    }
    let len = product(&[n, n], what)?;
    // SAFETY: forwarded to the caller.
    let entries = unsafe { b.input::<f32>(p.cast(), len, what)? };
    Ok(Factor::dense(entries, n)?)
}

/// Creates `x -> (x * smooth) (P1 kron P2)` for tokens of `n1 * n2` elements.
/// `p1`, `p2`: dense row-major factors (`n1 * n1`, `n2 * n2` floats), or NULL
/// for a normalized Hadamard factor of that order (a power of two).
/// `smooth`: NULL or `n1 * n2` finite per-channel scales. Free with
/// [`tfk_kron_free`].
///
/// # Safety
/// Non-NULL pointers point to the number of floats given above; `out` to a
/// writable `tfk_kron *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_new(
    p1: *const f32,
    n1: usize,
    p2: *const f32,
    n2: usize,
    smooth: *const f32,
    out: *mut *mut tfk_kron,
) -> tfk_status {
    guard(|| {
        let mut b = Buffers::new();
        // SAFETY: the caller's contract.
        let mut k = Kron::new(unsafe { factor(&mut b, p1, n1, "p1")? }, unsafe {
            factor(&mut b, p2, n2, "p2")?
        });
        if !smooth.is_null() {
            let n = product(&[n1, n2], "n1 * n2")?;
            // SAFETY: the caller's contract.
            k = k.with_smoothing(unsafe { b.input::<f32>(smooth.cast(), n, "smooth")? })?;
        }
        hand_out(out, tfk_kron { inner: k })
    })
}

/// Creates the normalized Walsh-Hadamard transform of order `n` (a power of
/// two), `x -> (x * smooth) H / sqrt(n)`; `smooth` NULL or `n` floats.
///
/// # Safety
/// As [`tfk_kron_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_hadamard(
    n: usize,
    smooth: *const f32,
    out: *mut *mut tfk_kron,
) -> tfk_status {
    guard(|| {
        let mut k = Kron::hadamard(n)?;
        if !smooth.is_null() {
            let mut b = Buffers::new();
            // SAFETY: the caller's contract.
            k = k.with_smoothing(unsafe { b.input::<f32>(smooth.cast(), n, "smooth")? })?;
        }
        hand_out(out, tfk_kron { inner: k })
    })
}

/// Creates the inverse transform `x (P1 kron P2)^-1` (factors inverted in
/// f64). Fails for a transform with a smoothing vector.
///
/// # Safety
/// `kron` is a live handle; `out` points to a writable `tfk_kron *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_inverse(
    kron: *const tfk_kron,
    out: *mut *mut tfk_kron,
) -> tfk_status {
    // SAFETY: the caller's contract.
    guard(|| {
        hand_out(
            out,
            tfk_kron {
                inner: unsafe { in_ref(kron, "kron")? }.inner.inverse()?,
            },
        )
    })
}

/// Creates the transposed transform `x (P1 kron P2)^T`. Fails for a
/// transform with a smoothing vector.
///
/// # Safety
/// As [`tfk_kron_inverse`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_transposed(
    kron: *const tfk_kron,
    out: *mut *mut tfk_kron,
) -> tfk_status {
    // SAFETY: the caller's contract.
    guard(|| {
        hand_out(
            out,
            tfk_kron {
                inner: unsafe { in_ref(kron, "kron")? }.inner.transposed()?,
            },
        )
    })
}

/// Releases a handle (NULL is ignored).
///
/// # Safety
/// `kron` is NULL or a handle from this library not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_free(kron: *mut tfk_kron) {
    // SAFETY: made by hand_out, freed once (the caller's contract).
    unsafe { free(kron) }
}

/// Elements per token (`n1 * n2`); 0 for NULL.
///
/// # Safety
/// `kron` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_size(kron: *const tfk_kron) -> usize {
    // SAFETY: the caller's contract.
    unsafe { kron.as_ref() }.map_or(0, |k| k.inner.n())
}

/// Floats of scratch one [`tfk_kron_apply`] call needs (0 for NULL).
///
/// # Safety
/// `kron` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_workspace_floats(kron: *const tfk_kron) -> usize {
    // SAFETY: the caller's contract.
    unsafe { kron.as_ref() }.map_or(0, |k| k.inner.workspace_floats())
}

/// Bytes of one int4 token of `n` elements (two values per byte, the even
/// element in the low nibble).
#[unsafe(no_mangle)]
pub extern "C" fn tfk_int4_row_bytes(n: usize) -> usize {
    int4_row_bytes(n)
}

/// Outputs and options of one [`tfk_kron_apply`] call.
struct Apply {
    x: *const c_void,
    tokens: usize,
    y: *mut c_void,
    q8: *mut i8,
    q4: *mut u8,
    scales: *mut f32,
    clip: f32,
    workspace: *mut f32,
    workspace_len: usize,
}

/// Transforms `tokens` tokens of `x` (`tokens * n` elements of `dtype`).
/// Outputs (at least one): `y` (same shape and dtype as x, or NULL), and at
/// most one of `q8` (`tokens * n` int8) and `q4` (`tokens *
/// tfk_int4_row_bytes(n)` bytes), each with `scales` (one f32 per token:
/// `clip * max|y| / qmax`). `clip` in (0, 1], 1 for none. `workspace`: NULL
/// (the call allocates) or `workspace_len >= tfk_kron_workspace_floats`
/// floats, reusable across calls of one thread.
///
/// # Safety
/// `kron` is a live handle; non-NULL pointers point to the sizes above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_apply(
    kron: *const tfk_kron,
    dtype: tfk_dtype,
    x: *const c_void,
    tokens: usize,
    y: *mut c_void,
    q8: *mut i8,
    q4: *mut u8,
    scales: *mut f32,
    clip: f32,
    workspace: *mut f32,
    workspace_len: usize,
) -> tfk_status {
    let a = Apply {
        x,
        tokens,
        y,
        q8,
        q4,
        scales,
        clip,
        workspace,
        workspace_len,
    };
    // SAFETY: the caller's contract.
    guard(|| by_dtype!(dtype, apply(&unsafe { in_ref(kron, "kron")? }.inner, &a)))
}

fn apply<T: Element>(k: &Kron, a: &Apply) -> Outcome {
    let n = k.n();
    let len = product(&[a.tokens, n], "kron tokens * n")?;
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract, checked by Buffers.
    let x = unsafe { b.input::<T>(a.x, len, "x")? };
    let y = unsafe { b.optional_output::<T>(a.y, len, "y")? };
    let mut call = k.apply(x).clip(a.clip).threads(crate::threads());
    if let Some(y) = y {
        call = call.output(y);
    }
    let scales = unsafe { b.optional_output::<f32>(a.scales.cast(), a.tokens, "scales")? };
    match (a.q8.is_null(), a.q4.is_null(), scales) {
        (true, true, None) => {}
        (false, true, Some(s)) => {
            call = call.int8(unsafe { b.output::<i8>(a.q8.cast(), len, "q8")? }, s);
        }
        (true, false, Some(s)) => {
            let bytes = product(&[a.tokens, int4_row_bytes(n)], "kron int4 bytes")?;
            call = call.int4(unsafe { b.output::<u8>(a.q4.cast(), bytes, "q4")? }, s);
        }
        _ => {
            return Err(Failure::invalid(
                "kron quantized output",
                "give scales with exactly one of q8 and q4",
            ));
        }
    }
    if let Some(ws) =
        unsafe { b.optional_output::<f32>(a.workspace.cast(), a.workspace_len, "workspace")? }
    {
        call = call.workspace(ws);
    }
    Ok(call.run()?)
}

/// Writes into `out` the weight that undoes this transform in the next
/// matmul: for W (`rows x n` f32, `y = x W^T`), `W' = W diag(1/s) P^-T`, so
/// that `((x * s) P) W'^T = x W^T`. Offline helper (allocates).
///
/// # Safety
/// `kron` is a live handle; `w` and `out` point to `rows * n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_kron_fold_into_weight(
    kron: *const tfk_kron,
    w: *const f32,
    rows: usize,
    out: *mut f32,
) -> tfk_status {
    guard(|| {
        // SAFETY: the caller's contract, checked by Buffers.
        let k = &unsafe { in_ref(kron, "kron")? }.inner;
        let len = product(&[rows, k.n()], "rows * n")?;
        let mut b = Buffers::new();
        let w = unsafe { b.input::<f32>(w.cast(), len, "w")? };
        let out = unsafe { b.output::<f32>(out.cast(), len, "out")? };
        out.copy_from_slice(&k.fold_into_weight(w, rows)?);
        Ok(())
    })
}
