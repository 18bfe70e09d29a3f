//! Three-pass softmax in f64, the oracle for every softmax variant.

/// Softmax (or log-softmax) of each row of `x` (`cols` per row), in f64.
///
/// The contract of the kernels: the scaled input is first rounded to f32,
/// `z = fl32(scale * x)`, and the output is the exact softmax of `z`. A row
/// holding NaN or `+inf`, or only `-inf`, is NaN throughout (as IEEE arithmetic
/// on `z - max z` gives).
pub fn softmax(x: &[f32], cols: usize, scale: f32, log: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let z: Vec<f64> = row.iter().map(|&v| f64::from(v * scale)).collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let poisoned = z.iter().any(|v| v.is_nan()) || max.is_infinite();
        if poisoned {
            out.extend(std::iter::repeat_n(f64::NAN, z.len()));
            continue;
        }
        let sum: f64 = z.iter().map(|&v| (v - max).exp()).sum();
        if log {
            let log_sum = sum.ln();
            out.extend(z.iter().map(|&v| (v - max) - log_sum));
        } else {
            out.extend(z.iter().map(|&v| (v - max).exp() / sum));
        }
    }
    out
}

use crate::dtype::Element;
use crate::softmax::{Algorithm, error_bound};

/// Checks a kernel's output `y` (for input `x`, rows of `cols`) element by
/// element against [`softmax`] and the documented [`error_bound`] of
/// `algorithm` at `T`'s precision. `x` is what the kernel read, widened to f32.
///
/// - NaN is expected exactly where the reference is NaN.
/// - An infinite output is right only where the exact result rounds to it in `T`.
/// - With `bounded_z`, elements of rows where `|z|` exceeds 2^20 (outside the
///   stated bound) are checked for NaN/infinity structure only.
///
/// Returns the first violation as a message. Shared by the property tests,
/// the CUDA tests, the fuzz target and the report's accuracy table.
pub fn check<T: Element>(
    x: &[f32],
    y: &[T],
    cols: usize,
    scale: f32,
    log: bool,
    algorithm: Algorithm,
    bounded_z: bool,
) -> Result<(), String> {
    let want = softmax(x, cols, scale, log);
    for (r, (xrow, (yrow, wrow))) in x
        .chunks(cols)
        .zip(y.chunks(cols).zip(want.chunks(cols)))
        .enumerate()
    {
        let zmax = xrow
            .iter()
            .map(|&v| f64::from(v * scale))
            .fold(f64::NEG_INFINITY, f64::max)
            .abs();
        for (i, (&xv, (&yv, &e))) in xrow.iter().zip(yrow.iter().zip(wrow)).enumerate() {
            let got = f64::from(yv.to_f32());
            let fail = |what: &str| {
                Err(format!(
                    "row {r} col {i}: x={xv} got {got} want {e}: {what}"
                ))
            };
            if e.is_nan() || got.is_nan() {
                if e.is_nan() != got.is_nan() {
                    return fail("NaN mismatch");
                }
                continue;
            }
            if e.is_infinite() || got.is_infinite() {
                if got != f64::from(T::from_f32(e as f32).to_f32()) {
                    return fail("infinity mismatch");
                }
                continue;
            }
            let z = f64::from(xv * scale).abs();
            if bounded_z && (z > 1048576.0 || zmax > 1048576.0) {
                continue;
            }
            let bound = error_bound(T::DTYPE, algorithm, log, e, z, zmax, cols);
            if (got - e).abs() > bound {
                return fail(&format!(
                    "error {:.3e} above the bound {bound:.3e}",
                    (got - e).abs()
                ));
            }
        }
    }
    Ok(())
}
