//! LLM.int8() mixed int8 / f32-outlier GEMM and the weight-only int8/int4
//! GEMV for decoding.

use std::ffi::c_void;

use transformer_kernels::Element;
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{Backend, Int8Weight, Int8Workspace, Outliers};

use crate::buffers::{Buffers, free, hand_out, in_ref, out_ref, product};
use crate::{Failure, Outcome, by_dtype, guard, tfk_dtype, tfk_status};

/// W quantized to int8 and packed for the int8 kernels (opaque, immutable).
pub struct tfk_int8_weight {
    inner: Int8Weight,
}

/// Room for the quantized activations of [`tfk_int8_matmul`] calls (opaque;
/// one call at a time).
pub struct tfk_int8_workspace {
    inner: Int8Workspace,
}

/// W quantized to int8 or int4 with group scales, for [`tfk_weight_only_gemv`]
/// (opaque, immutable).
pub struct tfk_quantized_weight {
    inner: QuantizedWeight,
}

/// Which int32 kernel [`tfk_int8_matmul`] runs.
pub type tfk_int8_backend = i32;
/// AMX from 16 rows where the OS grants it, else AVX-512 VNNI, else
/// AVX-VNNI, else AVX2.
pub const TFK_INT8_AUTO: tfk_int8_backend = 0;
/// Portable C.
pub const TFK_INT8_SCALAR: tfk_int8_backend = 1;
/// AVX2 (`vpmaddwd`).
pub const TFK_INT8_AVX2: tfk_int8_backend = 2;
/// AVX-512 VNNI (`vpdpbusd`).
pub const TFK_INT8_AVX512_VNNI: tfk_int8_backend = 3;
/// AMX-INT8 tiles.
pub const TFK_INT8_AMX: tfk_int8_backend = 4;
/// AVX-VNNI (256-bit `vpdpbusd`, for CPUs without AVX-512).
pub const TFK_INT8_AVX_VNNI: tfk_int8_backend = 5;

/// Prepares W (`n x k` row-major, finite, elements of `dtype`) for LLM.int8()
/// products: row-wise int8 quantization, packed. Outlier columns: with
/// `fixed` NULL, found per call as the columns of X holding `|x| >=
/// threshold` (6.0 in the paper; must be positive, `INFINITY` for none);
/// otherwise the `n_fixed` column indices in `fixed`, chosen now (faster:
/// no column scan per call). Free with [`tfk_int8_weight_free`].
///
/// # Safety
/// `w` points to `n * k` elements; `fixed` is NULL or holds `n_fixed`
/// values; `out` points to a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_int8_weight_prepare(
    dtype: tfk_dtype,
    w: *const c_void,
    n: usize,
    k: usize,
    threshold: f32,
    fixed: *const u32,
    n_fixed: usize,
    out: *mut *mut tfk_int8_weight,
) -> tfk_status {
    guard(|| by_dtype!(dtype, prepare(w, n, k, threshold, fixed, n_fixed, out)))
}

fn prepare<T: Element>(
    w: *const c_void,
    n: usize,
    k: usize,
    threshold: f32,
    fixed: *const u32,
    n_fixed: usize,
    out: *mut *mut tfk_int8_weight,
) -> Outcome {
    let mut b = Buffers::new();
    // SAFETY (both claims): the caller's contract, checked by Buffers.
    let w = unsafe { b.input::<T>(w, product(&[n, k], "weight")?, "w")? };
    let outliers = match unsafe { b.optional_input::<u32>(fixed.cast(), n_fixed, "fixed")? } {
        Some(cols) => Outliers::Fixed(cols.to_vec()),
        None => Outliers::Dynamic { threshold },
    };
    let inner = Int8Weight::prepare(w, n, k, outliers)?;
    hand_out(out, tfk_int8_weight { inner })
}

/// Releases a prepared weight (NULL is ignored).
///
/// # Safety
/// `w` is NULL or a live handle from [`tfk_int8_weight_prepare`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_int8_weight_free(w: *mut tfk_int8_weight) {
    // SAFETY: the caller's contract.
    unsafe { free(w) }
}

/// Bytes the prepared weight holds (0 for NULL).
///
/// # Safety
/// `w` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_int8_weight_bytes(w: *const tfk_int8_weight) -> usize {
    // SAFETY: the caller's contract.
    unsafe { w.as_ref() }.map_or(0, |w| w.inner.bytes())
}

/// A workspace for products with `w` of up to `max_m` rows and up to
/// `max_outliers` outlier columns (raised to the fixed set's size). Free with
/// [`tfk_int8_workspace_free`].
///
/// # Safety
/// `w` is a live handle; `out` points to a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_int8_workspace_new(
    w: *const tfk_int8_weight,
    max_m: usize,
    max_outliers: usize,
    out: *mut *mut tfk_int8_workspace,
) -> tfk_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let w = &unsafe { in_ref(w, "w")? }.inner;
        let inner = Int8Workspace::new(w, max_m, max_outliers)?;
        hand_out(out, tfk_int8_workspace { inner })
    })
}

/// Releases a workspace (NULL is ignored).
///
/// # Safety
/// `ws` is NULL or a live handle from [`tfk_int8_workspace_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_int8_workspace_free(ws: *mut tfk_int8_workspace) {
    // SAFETY: the caller's contract.
    unsafe { free(ws) }
}

/// Arguments of one [`tfk_int8_matmul`] call.
struct Matmul {
    x: *const c_void,
    m: usize,
    y: *mut c_void,
    bias: *const f32,
}

/// `y = x W^T (+ bias)` the LLM.int8() way: `x` (`m x k`, `x_dtype`) is
/// quantized per row except its outlier columns, multiplied in int8 with
/// int32 accumulation, dequantized, the outlier columns' f32 product added,
/// then `bias` (NULL or `n` floats); `y` is `m x n` of `y_dtype`. `m` at
/// most the workspace's `max_m`.
///
/// # Safety
/// `w` and `ws` are live handles (`ws` used by no other call meanwhile);
/// pointers point to the sizes above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_int8_matmul(
    w: *const tfk_int8_weight,
    ws: *mut tfk_int8_workspace,
    backend: tfk_int8_backend,
    x_dtype: tfk_dtype,
    x: *const c_void,
    m: usize,
    y_dtype: tfk_dtype,
    y: *mut c_void,
    bias: *const f32,
) -> tfk_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let w = &unsafe { in_ref(w, "w")? }.inner;
        let ws = &mut unsafe { out_ref(ws, "ws")? }.inner;
        let backend = match backend {
            TFK_INT8_AUTO => None,
            TFK_INT8_SCALAR => Some(Backend::Scalar),
            TFK_INT8_AVX2 => Some(Backend::Avx2),
            TFK_INT8_AVX512_VNNI => Some(Backend::Avx512Vnni),
            TFK_INT8_AMX => Some(Backend::Amx),
            TFK_INT8_AVX_VNNI => Some(Backend::AvxVnni),
            other => {
                return Err(Failure::invalid(
                    "backend",
                    format_args!("{other} is not a tfk_int8_backend"),
                ));
            }
        };
        let call = Matmul { x, m, y, bias };
        by_dtype!(x_dtype, matmul_x(w, ws, backend, &call, y_dtype))
    })
}

fn matmul_x<T: Element>(
    w: &Int8Weight,
    ws: &mut Int8Workspace,
    backend: Option<Backend>,
    call: &Matmul,
    y_dtype: tfk_dtype,
) -> Outcome {
    by_dtype!(y_dtype, matmul[T](w, ws, backend, call))
}

fn matmul<T: Element, U: Element>(
    w: &Int8Weight,
    ws: &mut Int8Workspace,
    backend: Option<Backend>,
    c: &Matmul,
) -> Outcome {
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract, checked by Buffers.
    let x = unsafe { b.input::<T>(c.x, product(&[c.m, w.k()], "x")?, "x")? };
    let bias = unsafe { b.optional_input::<f32>(c.bias.cast(), w.n(), "bias")? };
    let y = unsafe { b.output::<U>(c.y, product(&[c.m, w.n()], "y")?, "y")? };
    let mut op = w.matmul(ws).threads(crate::threads());
    if let Some(bk) = backend {
        op = op.backend(bk);
    }
    if let Some(bias) = bias {
        op = op.bias(bias);
    }
    Ok(op.run(x, y)?)
}

/// Quantizes W (`n x k` row-major, finite, `dtype`) for the weight-only
/// GEMV: `bits` 8 or 4, one f32 scale per `group` elements along k (a
/// multiple of 32 dividing k; 64 and 128 are usual). Free with
/// [`tfk_quantized_weight_free`].
///
/// # Safety
/// `w` points to `n * k` elements; `out` to a writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_quantized_weight_new(
    dtype: tfk_dtype,
    w: *const c_void,
    n: usize,
    k: usize,
    bits: u32,
    group: usize,
    out: *mut *mut tfk_quantized_weight,
) -> tfk_status {
    guard(|| by_dtype!(dtype, quantize(w, n, k, bits, group, out)))
}

fn quantize<T: Element>(
    w: *const c_void,
    n: usize,
    k: usize,
    bits: u32,
    group: usize,
    out: *mut *mut tfk_quantized_weight,
) -> Outcome {
    let mut b = Buffers::new();
    // SAFETY: the caller's contract, checked by Buffers.
    let w = unsafe { b.input::<T>(w, product(&[n, k], "weight")?, "w")? };
    let inner = QuantizedWeight::quantize(w, n, k, bits, group)?;
    hand_out(out, tfk_quantized_weight { inner })
}

/// Releases a quantized weight (NULL is ignored).
///
/// # Safety
/// `w` is NULL or a live handle from [`tfk_quantized_weight_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_quantized_weight_free(w: *mut tfk_quantized_weight) {
    // SAFETY: the caller's contract.
    unsafe { free(w) }
}

/// Floats of scratch a [`tfk_weight_only_gemv`] call of `m` rows needs (0 for NULL).
///
/// # Safety
/// `w` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_quantized_weight_workspace_floats(
    w: *const tfk_quantized_weight,
    m: usize,
) -> usize {
    // SAFETY: the caller's contract.
    unsafe { w.as_ref() }.map_or(0, |w| w.inner.workspace_floats(m))
}

/// Arguments of one [`tfk_weight_only_gemv`] call.
struct Gemv {
    x: *const c_void,
    m: usize,
    y: *mut c_void,
    bias: *const f32,
    workspace: *mut f32,
    workspace_len: usize,
}

/// `y = x W^T (+ bias)` with W dequantized on the fly: `x` `m x k`, `y` `m x
/// n`, both of `dtype` (m from 1 to 16 is the decoding case); `bias` NULL or
/// `n` floats; `workspace` NULL (the call allocates) or `workspace_len >=
/// tfk_quantized_weight_workspace_floats(w, m)` floats.
///
/// # Safety
/// `w` is a live handle; pointers point to the sizes above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_weight_only_gemv(
    w: *const tfk_quantized_weight,
    dtype: tfk_dtype,
    x: *const c_void,
    m: usize,
    y: *mut c_void,
    bias: *const f32,
    workspace: *mut f32,
    workspace_len: usize,
) -> tfk_status {
    let call = Gemv {
        x,
        m,
        y,
        bias,
        workspace,
        workspace_len,
    };
    // SAFETY: the caller's contract.
    guard(|| by_dtype!(dtype, gemv(&unsafe { in_ref(w, "w")? }.inner, &call)))
}

fn gemv<T: Element>(w: &QuantizedWeight, c: &Gemv) -> Outcome {
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract, checked by Buffers.
    let x = unsafe { b.input::<T>(c.x, product(&[c.m, w.k()], "x")?, "x")? };
    let bias = unsafe { b.optional_input::<f32>(c.bias.cast(), w.n(), "bias")? };
    let y = unsafe { b.output::<T>(c.y, product(&[c.m, w.n()], "y")?, "y")? };
    let ws = unsafe { b.optional_output::<f32>(c.workspace.cast(), c.workspace_len, "workspace")? };
    let mut op = w.gemv(x).threads(crate::threads());
    if let Some(bias) = bias {
        op = op.bias(bias);
    }
    if let Some(ws) = ws {
        op = op.workspace(ws);
    }
    Ok(op.run(y)?)
}
