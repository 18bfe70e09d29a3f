//! Softmax and log-softmax over rows.

use std::ffi::c_void;

use transformer_kernels::Element;
use transformer_kernels::softmax::Softmax;

use crate::buffers::{Buffers, product, strided_span};
use crate::{Outcome, by_dtype, guard, tfk_dtype, tfk_status};

/// `y = softmax(scale * x)` over each `cols`-long row (log-softmax when `log`
/// is true), `rows * cols` elements of `dtype`. `y == x` runs in place (any
/// other overlap is refused). `scale` must be finite (1 for plain softmax).
/// The algorithm (two-pass or three-pass) and instruction set are chosen by
/// size and CPU; accuracy as documented for `softmax::error_bound`.
///
/// # Safety
/// `x` and `y` point to `rows * cols` elements of `dtype`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_softmax(
    dtype: tfk_dtype,
    x: *const c_void,
    y: *mut c_void,
    rows: usize,
    cols: usize,
    scale: f32,
    log: bool,
) -> tfk_status {
    guard(|| by_dtype!(dtype, softmax(x, y, rows, cols, scale, log)))
}

fn softmax<T: Element>(
    x: *const c_void,
    y: *mut c_void,
    rows: usize,
    cols: usize,
    scale: f32,
    log: bool,
) -> Outcome {
    let len = product(&[rows, cols], "softmax rows * cols")?;
    let op = Softmax::new()
        .scale(scale)
        .log(log)
        .threads(crate::threads());
    let mut b = Buffers::new();
    if std::ptr::eq(x, y.cast_const()) {
        // SAFETY: the caller's contract; one buffer, read and written.
        let xy = unsafe { b.output::<T>(y, len, "y")? };
        return Ok(op.run_inplace(xy, cols)?);
    }
    // SAFETY: the caller's contract; Buffers refuses overlap.
    let xs = unsafe { b.input::<T>(x, len, "x")? };
    let ys = unsafe { b.output::<T>(y, len, "y")? };
    Ok(op.run(xs, ys, cols)?)
}

/// As [`tfk_softmax`] for `rows` rows of `cols` elements that start
/// `x_stride` (in x) and `y_stride` (in y) elements apart, as in a padded or
/// sliced matrix (strides of at least `cols`); elements between rows are
/// neither read nor written. x and y must not overlap.
///
/// # Safety
/// `x` points to `(rows - 1) * x_stride + cols` elements of `dtype`, `y` to
/// `(rows - 1) * y_stride + cols` (nothing when `rows == 0`).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tfk_softmax_strided(
    dtype: tfk_dtype,
    x: *const c_void,
    x_stride: usize,
    y: *mut c_void,
    y_stride: usize,
    rows: usize,
    cols: usize,
    scale: f32,
    log: bool,
) -> tfk_status {
    guard(|| {
        by_dtype!(
            dtype,
            softmax_strided(x, x_stride, y, y_stride, rows, cols, scale, log)
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn softmax_strided<T: Element>(
    x: *const c_void,
    x_stride: usize,
    y: *mut c_void,
    y_stride: usize,
    rows: usize,
    cols: usize,
    scale: f32,
    log: bool,
) -> Outcome {
    let xn = strided_span(rows, cols, x_stride, "softmax x_stride")?;
    let yn = strided_span(rows, cols, y_stride, "softmax y_stride")?;
    let op = Softmax::new()
        .scale(scale)
        .log(log)
        .threads(crate::threads());
    let mut b = Buffers::new();
    // SAFETY: the caller's contract; Buffers refuses overlap.
    let xs = unsafe { b.input::<T>(x, xn, "x")? };
    let ys = unsafe { b.output::<T>(y, yn, "y")? };
    Ok(op.run_strided(xs, x_stride, ys, y_stride, rows, cols)?)
}
