//! The baseline the factored transform replaces: the dense n x n transform
//! `y = x P` of one token, with P row-major f32 read from memory once per
//! token, then quantized to int8 like the fused kernel's output. It lives
//! in the report, not the library: it is the yardstick, written to be as
//! fast as a matrix-vector product can be here, which is the read bandwidth
//! (n^2 f32 of P per token, past every cache at n = 4096).
//!
//! The product is the row-axpy form: y (n f32, 16 KiB at n = 4096) stays in
//! L1 and takes four rows of P per pass, so each vector of y is loaded and
//! stored once for four loads of P. AVX2 + FMA code on every x86-64 host
//! that has it (an AVX-512 loop would read P no faster); a portable loop
//! elsewhere.

use transformer_kernels::Element;

/// `y = x P` for one token (`p`: n x n row-major, `x` and `y`: n).
pub fn matvec(p: &[f32], x: &[f32], y: &mut [f32]) {
    let n = x.len();
    assert!(
        p.len() == n * n && y.len() == n,
        "matvec: p is n x n, x and y n"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were detected, and the lengths checked above
        unsafe { matvec_avx2(p, x, y) };
        return;
    }
    matvec_portable(p, x, y);
}

fn matvec_portable(p: &[f32], x: &[f32], y: &mut [f32]) {
    y.fill(0.0);
    for (row, &a) in p.chunks_exact(x.len()).zip(x) {
        for (yj, pj) in y.iter_mut().zip(row) {
            *yj += a * pj;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matvec_avx2(p: &[f32], x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = x.len();
    y.fill(0.0);
    let (p, y) = (p.as_ptr(), y.as_mut_ptr());
    let body = n - n % 8;
    // SAFETY (every access below): rows < n, columns < n, p holds n x n
    unsafe {
        let mut i = 0;
        while i + 4 <= n {
            let r = [
                p.add(i * n),
                p.add((i + 1) * n),
                p.add((i + 2) * n),
                p.add((i + 3) * n),
            ];
            let a = [x[i], x[i + 1], x[i + 2], x[i + 3]];
            let av = a.map(|v| _mm256_set1_ps(v));
            let mut j = 0;
            while j < body {
                let mut acc = _mm256_loadu_ps(y.add(j));
                for k in 0..4 {
                    acc = _mm256_fmadd_ps(av[k], _mm256_loadu_ps(r[k].add(j)), acc);
                }
                _mm256_storeu_ps(y.add(j), acc);
                j += 8;
            }
            for j in body..n {
                let mut acc = *y.add(j);
                for k in 0..4 {
                    acc = a[k].mul_add(*r[k].add(j), acc);
                }
                *y.add(j) = acc;
            }
            i += 4;
        }
        for (i, &xi) in x.iter().enumerate().skip(i) {
            let (r, a) = (p.add(i * n), _mm256_set1_ps(xi));
            let mut j = 0;
            while j < body {
                let acc = _mm256_fmadd_ps(a, _mm256_loadu_ps(r.add(j)), _mm256_loadu_ps(y.add(j)));
                _mm256_storeu_ps(y.add(j), acc);
                j += 8;
            }
            for j in body..n {
                *y.add(j) = xi.mul_add(*r.add(j), *y.add(j));
            }
        }
    }
}

/// The dense transform of each token of `x` ([tokens, n]) quantized to int8
/// with one f32 scale per token, the fused kernel's formula (scale =
/// max|y| / 127, q = rint(y * 127 / max|y|), a zero token giving scale 0).
/// `scratch` holds 2 n floats (x widened, then y): no allocation per call.
pub fn transform_int8<T: Element>(
    p: &[f32],
    x: &[T],
    q: &mut [i8],
    scales: &mut [f32],
    scratch: &mut [f32],
) {
    let n = scratch.len() / 2;
    let (xf, y) = scratch.split_at_mut(n);
    for ((xt, qt), scale) in x.chunks_exact(n).zip(q.chunks_exact_mut(n)).zip(scales) {
        for (w, v) in xf.iter_mut().zip(xt) {
            *w = v.to_f32();
        }
        matvec(p, xf, y);
        let amax = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *scale = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        for (o, v) in qt.iter_mut().zip(y.iter()) {
            *o = (v * inv).clamp(-127.0, 127.0).round_ties_even() as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transformer_kernels::reference::kron::quantize_f32;
    use transformer_kernels::reference::uniform_values;

    /// The f32 product against an f64 one, every n from 1 to 21 (the row
    /// groups of four and the column tails of eight both with remainders)
    /// and 64; both code paths.
    #[test]
    fn matvec_matches_f64_at_every_remainder() {
        for n in (1..=21).chain([64]) {
            let p = uniform_values(n as u64, n * n, 1.0);
            let x = uniform_values(100 + n as u64, n, 1.0);
            for simd in [true, false] {
                let mut y = vec![f32::NAN; n];
                if simd {
                    matvec(&p, &x, &mut y);
                } else {
                    matvec_portable(&p, &x, &mut y);
                }
                for c in 0..n {
                    let (exact, mag) = (0..n).fold((0.0f64, 0.0f64), |(s, m), r| {
                        let t = x[r] as f64 * p[r * n + c] as f64;
                        (s + t, m + t.abs())
                    });
                    let bound = n as f64 * f32::EPSILON as f64 * mag;
                    assert!(
                        (y[c] as f64 - exact).abs() <= bound,
                        "n {n} simd {simd} column {c}: {} vs {exact} (bound {bound})",
                        y[c]
                    );
                }
            }
        }
    }

    /// The quantized output is the textbook f32 quantization of the
    /// product, bit for bit, and a zero token gives scale 0 and q 0.
    #[test]
    fn transform_int8_quantizes_each_token_like_the_kernels() {
        let n = 24;
        let p = uniform_values(7, n * n, 1.0);
        let mut x = uniform_values(8, 3 * n, 1.0);
        x[n..2 * n].fill(0.0);
        let (mut q, mut scales, mut scratch) = (vec![0i8; 3 * n], vec![-1.0; 3], vec![0.0; 2 * n]);
        transform_int8(&p, &x, &mut q, &mut scales, &mut scratch);
        for t in 0..3 {
            let mut y = vec![0.0; n];
            matvec(&p, &x[t * n..(t + 1) * n], &mut y);
            let (want_q, want_scale) = quantize_f32(&y, 127.0, 1.0);
            assert_eq!(&q[t * n..(t + 1) * n], &want_q[..], "token {t}");
            assert_eq!(scales[t].to_bits(), want_scale.to_bits(), "token {t}");
        }
        assert_eq!(scales[1], 0.0);
    }
}
