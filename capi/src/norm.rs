//! LayerNorm, RMSNorm, CRMSNorm and frozen per-channel norms, with the fused
//! residual add, int8 output and saved statistics; and their backward.

use std::ffi::c_void;

use transformer_kernels::norm::{Norm, Weights};
use transformer_kernels::{Dtype, Element};

use crate::buffers::{Buffers, in_ref, out_ref, product, strided_span};
use crate::{Failure, Outcome, TFK_BF16, TFK_F16, TFK_F32, by_dtype, guard, tfk_dtype, tfk_status};

/// Which normalization a [`tfk_norm`] computes.
pub type tfk_norm_kind = i32;
/// `(h - mean) / sqrt(var + eps) * gamma + beta` (population variance).
pub const TFK_NORM_LAYER: tfk_norm_kind = 0;
/// `h / sqrt(mean(h^2) + eps) * gamma`; with gamma NULL this is
/// TransNormer's SimpleRMSNorm.
pub const TFK_NORM_RMS: tfk_norm_kind = 1;
/// Pre-CRMSNorm: rows hold `d - 1` coordinates of a zero-mean `d`-vector.
pub const TFK_NORM_CRMS: tfk_norm_kind = 2;
/// Frozen per-channel statistics (BatchNorm/PowerNorm at inference):
/// `y = h * gamma + beta`, gamma and beta required and f32.
pub const TFK_NORM_CHANNEL: tfk_norm_kind = 3;

/// The options of a norm call. Fill it with [`tfk_norm_init`], then set
/// gamma/beta (NULL: gain 1, bias 0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct tfk_norm {
    /// One of the `TFK_NORM_*` kinds.
    pub kind: tfk_norm_kind,
    /// Added to the variance or mean square (finite, >= 0).
    pub eps: f32,
    /// Multiplies the output (LayerNorm Scaling: `1 / sqrt(layer)`).
    pub out_scale: f32,
    /// Element type of gamma and beta: [`TFK_F32`] or the data's dtype.
    pub weight_dtype: tfk_dtype,
    /// Per-channel gain, `cols` elements, or NULL.
    pub gamma: *const c_void,
    /// Per-channel bias, `cols` elements, or NULL.
    pub beta: *const c_void,
}

/// Sets `*norm` to the defaults of `kind`: eps 1e-5 (LayerNorm) or 1e-6
/// (RMS, CRMS), 0 (channel); out_scale 1; f32 weights, none given.
///
/// # Safety
/// `norm` points to a writable [`tfk_norm`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_norm_init(norm: *mut tfk_norm, kind: tfk_norm_kind) -> tfk_status {
    guard(|| {
        let eps = match kind {
            TFK_NORM_LAYER => Norm::layer_norm().epsilon(),
            TFK_NORM_RMS => Norm::rms_norm().epsilon(),
            TFK_NORM_CRMS => Norm::crms_norm().epsilon(),
            TFK_NORM_CHANNEL => 0.0,
            other => {
                return Err(Failure::invalid(
                    "norm kind",
                    format_args!("{other} is not a tfk_norm_kind"),
                ));
            }
        };
        // SAFETY: the caller's contract.
        *unsafe { out_ref(norm, "norm")? } = tfk_norm {
            kind,
            eps,
            out_scale: 1.0,
            weight_dtype: TFK_F32,
            gamma: std::ptr::null(),
            beta: std::ptr::null(),
        };
        Ok(())
    })
}

/// One gain or bias vector as the Rust API takes it.
///
/// # Safety
/// `p` is NULL or points to `len` elements of `dtype`.
unsafe fn weights<'a, T: Element>(
    b: &mut Buffers,
    dtype: tfk_dtype,
    p: *const c_void,
    len: usize,
    what: &'static str,
) -> Result<Option<Weights<'a>>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    let same = match dtype {
        TFK_F32 => Dtype::F32,
        TFK_F16 => Dtype::F16,
        TFK_BF16 => Dtype::Bf16,
        other => {
            return Err(Failure::invalid(
                "norm weight_dtype",
                format_args!("{other} is not a tfk_dtype"),
            ));
        }
    };
    if same != Dtype::F32 && same != T::DTYPE {
        return Err(Failure::invalid(
            what,
            "must be f32 or the dtype of the data",
        ));
    }
    // SAFETY: forwarded to the caller.
    Ok(Some(unsafe {
        match same {
            Dtype::F32 => Weights::F32(b.input(p, len, what)?),
            Dtype::F16 => Weights::F16(b.input(p, len, what)?),
            Dtype::Bf16 => Weights::Bf16(b.input(p, len, what)?),
        }
    }))
}

/// The Rust options a [`tfk_norm`] describes, its vectors claimed in `b`.
///
/// # Safety
/// gamma and beta are NULL or point to `cols` elements of `weight_dtype`.
unsafe fn options<'a, T: Element>(
    b: &mut Buffers,
    n: &tfk_norm,
    cols: usize,
) -> Result<Norm<'a>, Failure> {
    // SAFETY: forwarded to the caller.
    let gamma = unsafe { weights::<T>(b, n.weight_dtype, n.gamma, cols, "norm gamma")? };
    let beta = unsafe { weights::<T>(b, n.weight_dtype, n.beta, cols, "norm beta")? };
    let mut norm = match n.kind {
        TFK_NORM_LAYER => Norm::layer_norm(),
        TFK_NORM_RMS => Norm::rms_norm(),
        TFK_NORM_CRMS => Norm::crms_norm(),
        TFK_NORM_CHANNEL => match (gamma, beta) {
            (Some(Weights::F32(scale)), Some(Weights::F32(shift))) => {
                return Ok(Norm::channel_scale_shift(scale, shift)
                    .out_scale(n.out_scale)
                    .threads(crate::threads()));
            }
            _ => {
                return Err(Failure::invalid(
                    "channel norm",
                    "needs f32 gamma (scale) and beta (shift)",
                ));
            }
        },
        other => {
            return Err(Failure::invalid(
                "norm kind",
                format_args!("{other} is not a tfk_norm_kind"),
            ));
        }
    };
    norm = norm
        .eps(n.eps)
        .out_scale(n.out_scale)
        .threads(crate::threads());
    if let Some(g) = gamma {
        norm = norm.gamma(g);
    }
    if let Some(bias) = beta {
        norm = norm.beta(bias);
    }
    Ok(norm)
}

/// Normalizes each `cols`-long row of `x` (`rows * cols` elements of `dtype`).
///
/// Optional pieces (NULL: absent), at least one output required:
/// - `residual`: fused residual add, `h = x + residual` is normalized and
///   written back into `residual` (the updated residual stream);
/// - `y`: the normalized rows (`y == x` runs in place when nothing else is asked);
/// - `q` + `q_scales`: int8 output, `rows * cols` values and one f32 scale
///   per row (`q = rint(y * 127 / max|y|)`, dequantize as `q * scale`);
/// - `mean` + `rstd`: per-row statistics for the backward (one f32 each).
///
/// # Safety
/// Every non-NULL pointer points to the number of elements given above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_norm_forward(
    norm: *const tfk_norm,
    dtype: tfk_dtype,
    rows: usize,
    cols: usize,
    x: *const c_void,
    residual: *mut c_void,
    y: *mut c_void,
    q: *mut i8,
    q_scales: *mut f32,
    mean: *mut f32,
    rstd: *mut f32,
) -> tfk_status {
    let io = ForwardIo {
        x,
        residual_in: std::ptr::null(),
        residual,
        y,
        q,
        q_scales,
        mean,
        rstd,
    };
    // SAFETY: the caller's contract.
    unsafe { forward_entry(norm, dtype, rows, cols, &io) }
}

/// As [`tfk_norm_forward`] with the residual stream kept: `h = x +
/// residual` is written to `h` (not into `residual`, which is only read)
/// and normalized. `residual` and `h` are both required.
///
/// # Safety
/// As [`tfk_norm_forward`]; `residual` and `h` point to `rows * cols`
/// elements of `dtype`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tfk_norm_forward_into(
    norm: *const tfk_norm,
    dtype: tfk_dtype,
    rows: usize,
    cols: usize,
    x: *const c_void,
    residual: *const c_void,
    h: *mut c_void,
    y: *mut c_void,
    q: *mut i8,
    q_scales: *mut f32,
    mean: *mut f32,
    rstd: *mut f32,
) -> tfk_status {
    if residual.is_null() || h.is_null() {
        return guard(|| Err(Failure::pointer("residual and h", "are both required")));
    }
    let io = ForwardIo {
        x,
        residual_in: residual,
        residual: h,
        y,
        q,
        q_scales,
        mean,
        rstd,
    };
    // SAFETY: the caller's contract.
    unsafe { forward_entry(norm, dtype, rows, cols, &io) }
}

/// The body of both forward entry points.
///
/// # Safety
/// `norm` points to a [`tfk_norm`]; `io`'s pointers as the entry points say.
unsafe fn forward_entry(
    norm: *const tfk_norm,
    dtype: tfk_dtype,
    rows: usize,
    cols: usize,
    io: &ForwardIo,
) -> tfk_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { in_ref(norm, "norm")? };
        by_dtype!(dtype, forward(n, rows, cols, io))
    })
}

/// `y = norm(x)` for `rows` rows of `cols` elements that start `x_stride`
/// (in x) and `y_stride` (in y) elements apart, as in a padded or sliced
/// matrix (strides of at least `cols`); elements between rows are neither
/// read nor written. x and y must not overlap.
///
/// # Safety
/// `x` points to `(rows - 1) * x_stride + cols` elements of `dtype`, `y` to
/// `(rows - 1) * y_stride + cols` (nothing when `rows == 0`); gamma and beta
/// as in [`tfk_norm_forward`].
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tfk_norm_forward_strided(
    norm: *const tfk_norm,
    dtype: tfk_dtype,
    rows: usize,
    cols: usize,
    x: *const c_void,
    x_stride: usize,
    y: *mut c_void,
    y_stride: usize,
) -> tfk_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { in_ref(norm, "norm")? };
        by_dtype!(
            dtype,
            forward_strided(n, rows, cols, x, x_stride, y, y_stride)
        )
    })
}

fn forward_strided<T: Element>(
    n: &tfk_norm,
    rows: usize,
    cols: usize,
    x: *const c_void,
    x_stride: usize,
    y: *mut c_void,
    y_stride: usize,
) -> Outcome {
    let xn = strided_span(rows, cols, x_stride, "norm x_stride")?;
    let yn = strided_span(rows, cols, y_stride, "norm y_stride")?;
    let mut b = Buffers::new();
    // SAFETY (every claim): the caller's contract; Buffers checks NULL,
    // alignment and overlap first.
    let norm = unsafe { options::<T>(&mut b, n, cols)? };
    let xs = unsafe { b.input::<T>(x, xn, "x")? };
    let ys = unsafe { b.output::<T>(y, yn, "y")? };
    Ok(norm.run_strided(xs, x_stride, ys, y_stride, rows, cols)?)
}

struct ForwardIo {
    x: *const c_void,
    /// Non-NULL: the residual is read here and h written to `residual`.
    residual_in: *const c_void,
    residual: *mut c_void,
    y: *mut c_void,
    q: *mut i8,
    q_scales: *mut f32,
    mean: *mut f32,
    rstd: *mut f32,
}

fn both<A, B>(a: Option<A>, b: Option<B>, what: &'static str) -> Result<Option<(A, B)>, Failure> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(Failure::invalid(what, "give both pointers or neither")),
    }
}

fn forward<T: Element>(n: &tfk_norm, rows: usize, cols: usize, io: &ForwardIo) -> Outcome {
    let len = product(&[rows, cols], "norm rows * cols")?;
    let mut b = Buffers::new();
    // SAFETY (every claim below): the caller's contract; Buffers checks NULL,
    // alignment and overlap first.
    let norm = unsafe { options::<T>(&mut b, n, cols)? };
    let only_y = io.residual.is_null() && io.q.is_null() && io.q_scales.is_null();
    let no_stats = io.mean.is_null() && io.rstd.is_null();
    if std::ptr::eq(io.x, io.y.cast_const()) && only_y && no_stats {
        let xy = unsafe { b.output::<T>(io.y, len, "y")? };
        return Ok(norm.run_inplace(xy, cols)?);
    }
    let x = unsafe { b.input::<T>(io.x, len, "x")? };
    let residual_in = unsafe { b.optional_input::<T>(io.residual_in, len, "residual")? };
    let residual = unsafe {
        let what = if residual_in.is_some() {
            "h"
        } else {
            "residual"
        };
        b.optional_output::<T>(io.residual, len, what)?
    };
    let y = unsafe { b.optional_output::<T>(io.y, len, "y")? };
    let q = unsafe { b.optional_output::<i8>(io.q.cast(), len, "q")? };
    let q_scales = unsafe { b.optional_output::<f32>(io.q_scales.cast(), rows, "q_scales")? };
    let mean = unsafe { b.optional_output::<f32>(io.mean.cast(), rows, "mean")? };
    let rstd = unsafe { b.optional_output::<f32>(io.rstd.cast(), rows, "rstd")? };
    let mut call = norm.forward(x, cols);
    match (residual_in, residual) {
        (Some(r), Some(h)) => call = call.residual_into(r, h),
        (None, Some(r)) => call = call.residual(r),
        _ => {}
    }
    if let Some(y) = y {
        call = call.output(y);
    }
    if let Some((q, s)) = both(q, q_scales, "q and q_scales")? {
        call = call.quantized(q, s);
    }
    if let Some((m, r)) = both(mean, rstd, "mean and rstd")? {
        call = call.stats(m, r);
    }
    Ok(call.run()?)
}

/// Gradients of a forward on `h` (`x + residual` when the forward fused
/// them) whose statistics were saved in `mean` and `rstd`: `dx` from `dy`,
/// plus `dh` (NULL or the gradient reaching h through the residual stream,
/// added to dx), and optionally `dgamma`, `dbeta` (`cols` f32 each,
/// overwritten; summed over rows in a fixed order). CRMSNorm has no backward.
/// `workspace`: NULL (a call with dgamma or dbeta allocates its f64 sums) or
/// `workspace_len >=` [`tfk_norm_backward_workspace_doubles`]`(rows, cols)`.
/// With `tfk_set_threads` above 1 the rows split across threads; dgamma
/// and dbeta are the same bits for every thread count.
///
/// # Safety
/// `dy`, `h`, `dx` (and `dh`) hold `rows * cols` elements of `dtype`; `mean`,
/// `rstd` `rows` floats; `dgamma`, `dbeta` NULL or `cols` floats; `workspace`
/// NULL or `workspace_len` doubles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_norm_backward(
    norm: *const tfk_norm,
    dtype: tfk_dtype,
    rows: usize,
    cols: usize,
    dy: *const c_void,
    h: *const c_void,
    mean: *const f32,
    rstd: *const f32,
    dh: *const c_void,
    dx: *mut c_void,
    dgamma: *mut f32,
    dbeta: *mut f32,
    workspace: *mut f64,
    workspace_len: usize,
) -> tfk_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let n = unsafe { in_ref(norm, "norm")? };
        let io = BackwardIo {
            dy,
            h,
            mean,
            rstd,
            dh,
            dx,
            dgamma,
            dbeta,
            workspace,
            workspace_len,
        };
        by_dtype!(dtype, backward(n, rows, cols, &io))
    })
}

/// Doubles of workspace a [`tfk_norm_backward`] call on `rows x cols` with
/// dgamma or dbeta needs at the current `tfk_set_threads` setting: `2 * cols`
/// up to 256 rows, `4 * cols` on one thread, up to `128 * cols` on several (one
/// `2 * cols` partial sum per chunk of rows). A workspace of the one-thread
/// size runs the call on one thread.
#[unsafe(no_mangle)]
pub extern "C" fn tfk_norm_backward_workspace_doubles(rows: usize, cols: usize) -> usize {
    Norm::layer_norm()
        .threads(crate::threads())
        .backward_workspace_len(rows, cols)
}

struct BackwardIo {
    dy: *const c_void,
    h: *const c_void,
    mean: *const f32,
    rstd: *const f32,
    dh: *const c_void,
    dx: *mut c_void,
    dgamma: *mut f32,
    dbeta: *mut f32,
    workspace: *mut f64,
    workspace_len: usize,
}

fn backward<T: Element>(n: &tfk_norm, rows: usize, cols: usize, io: &BackwardIo) -> Outcome {
    let len = product(&[rows, cols], "norm rows * cols")?;
    let mut b = Buffers::new();
    // SAFETY (every claim below): the caller's contract, checked by Buffers.
    let norm = unsafe { options::<T>(&mut b, n, cols)? };
    let dy = unsafe { b.input::<T>(io.dy, len, "dy")? };
    let h = unsafe { b.input::<T>(io.h, len, "h")? };
    let mean = unsafe { b.input::<f32>(io.mean.cast(), rows, "mean")? };
    let rstd = unsafe { b.input::<f32>(io.rstd.cast(), rows, "rstd")? };
    let dh = unsafe { b.optional_input::<T>(io.dh, len, "dh")? };
    let dx = unsafe { b.output::<T>(io.dx, len, "dx")? };
    let dgamma = unsafe { b.optional_output::<f32>(io.dgamma.cast(), cols, "dgamma")? };
    let dbeta = unsafe { b.optional_output::<f32>(io.dbeta.cast(), cols, "dbeta")? };
    let ws =
        unsafe { b.optional_output::<f64>(io.workspace.cast(), io.workspace_len, "workspace")? };
    let mut call = norm.backward(dy, h, mean, rstd, cols).dx(dx);
    if let Some(w) = ws {
        call = call.workspace(w);
    }
    if let Some(dh) = dh {
        call = call.residual_grad(dh);
    }
    if let Some(g) = dgamma {
        call = call.dgamma(g);
    }
    if let Some(g) = dbeta {
        call = call.dbeta(g);
    }
    Ok(call.run()?)
}
