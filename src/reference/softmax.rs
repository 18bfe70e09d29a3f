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
