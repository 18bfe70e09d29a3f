//! References for the Kronecker transforms: the dense `P1 kron P2` matrix
//! applied naively in f64, quantization by the textbook formula, and the
//! checker the property tests and the fuzz target share.

use crate::dtype::{Dtype, Element};
use crate::isa::Isa;
use crate::kron::{Factor, Kron, dequantize_int4, dequantize_int8, int4_row_bytes};

/// The dense n x n matrix `p1 kron p2` (row-major, f64):
/// `P[i n2 + j][k n2 + l] = p1[i][k] p2[j][l]`.
pub fn dense_matrix(p1: &Factor, p2: &Factor) -> Vec<f64> {
    let (n1, n2) = (p1.order(), p2.order());
    let n = n1 * n2;
    let (a, b) = (p1.to_f64(), p2.to_f64());
    let mut m = vec![0.0; n * n];
    for r in 0..n {
        for c in 0..n {
            m[r * n + c] = a[(r / n2) * n1 + c / n2] * b[(r % n2) * n2 + c % n2];
        }
    }
    m
}

/// `y = x P` for one token and the magnitudes `|x| |P|`, naively.
pub fn apply_dense(p: &[f64], x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let y = (0..n)
        .map(|c| (0..n).map(|r| x[r] * p[r * n + c]).sum())
        .collect();
    let mag = (0..n)
        .map(|c| (0..n).map(|r| (x[r] * p[r * n + c]).abs()).sum())
        .collect();
    (y, mag)
}

/// `y = x (p1 kron p2)` and the magnitudes for one token, factored as
/// `vec(P1^T X P2)` in f64: for tokens too long for the dense matrix.
pub fn apply_factored(p1: &Factor, p2: &Factor, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (n1, n2) = (p1.order(), p2.order());
    let (a, b) = (p1.to_f64(), p2.to_f64());
    let pass = |abs: bool| {
        let f = |v: f64| if abs { v.abs() } else { v };
        let mut z = vec![0.0; n1 * n2];
        for i in 0..n1 {
            for l in 0..n2 {
                z[i * n2 + l] = (0..n2).map(|j| f(x[i * n2 + j]) * f(b[j * n2 + l])).sum();
            }
        }
        let mut y = vec![0.0; n1 * n2];
        for k in 0..n1 {
            for l in 0..n2 {
                y[k * n2 + l] = (0..n1).map(|i| f(a[i * n1 + k]) * z[i * n2 + l]).sum();
            }
        }
        y
    };
    (pass(false), pass(true))
}

/// Tokens up to this length are checked against the dense matrix.
pub const DENSE_MAX: usize = 1280;

/// Symmetric quantization by the textbook formula: scale = clip max|y| /
/// qmax, q = round(y / scale) (ties to even) clamped to [-qmax, qmax]; a zero
/// token gives scale 0 and q 0.
pub fn quantize(y: &[f64], qmax: f64, clip: f64) -> (Vec<f64>, f64) {
    let amax = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return (vec![0.0; y.len()], 0.0);
    }
    let scale = clip * amax / qmax;
    let q = y
        .iter()
        .map(|v| (v / scale).round_ties_even().clamp(-qmax, qmax))
        .collect();
    (q, scale)
}

/// What the f32 kernels must compute bit for bit from their own f32 y:
/// `scale = (clip * max|y|) / qmax`, `q = rint(y * (qmax / (clip max|y|)))`
/// clamped, all in f32.
pub fn quantize_f32(y: &[f32], qmax: f32, clip: f32) -> (Vec<i8>, f32) {
    let amax = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if !y.iter().all(|v| v.is_finite()) {
        return (vec![0; y.len()], f32::NAN);
    }
    if amax == 0.0 {
        return (vec![0; y.len()], 0.0);
    }
    let inv = qmax / (clip * amax);
    let q = y
        .iter()
        .map(|v| (v * inv).clamp(-qmax, qmax).round_ties_even() as i8)
        .collect();
    (q, clip * amax / qmax)
}

/// The int4 nibbles of a token, sign-extended.
pub fn unpack_int4(q: &[u8], n: usize) -> Vec<i8> {
    (0..n)
        .map(|j| {
            let b = q[j / 2];
            let nib = if j % 2 == 0 { b << 4 } else { b & 0xF0 };
            nib as i8 >> 4
        })
        .collect()
}

/// One randomised call: the transform, tokens (f32 values rounded to the
/// dtype before the kernel sees them), the quantization asked for.
#[derive(Debug, Clone)]
pub struct Case {
    /// Left factor.
    pub p1: Factor,
    /// Right factor.
    pub p2: Factor,
    /// Per-channel smoothing, or None.
    pub smooth: Option<Vec<f32>>,
    /// The tokens, n values each.
    pub x: Vec<f32>,
    /// 0: y only; 8 or 4: y and the quantized output.
    pub bits: u8,
    /// Clipping ratio in (0, 1].
    pub clip: f32,
}

impl Case {
    /// The transform this case describes.
    pub fn transform(&self) -> Kron {
        let t = Kron::new(self.p1.clone(), self.p2.clone());
        match &self.smooth {
            Some(s) => t.with_smoothing(s).expect("case smoothing has length n"),
            None => t,
        }
    }
}

fn within(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol || (a.is_nan() && b.is_nan())
}

/// Runs the case on one variant (T's dtype, `isa`) and checks: y against the
/// dense f64 reference within [`Kron::error_bound`]; the scale and every
/// dequantized value against the textbook quantization of the reference y
/// (within half a step plus the bound); for f32, q and the scale bit for bit
/// against [`quantize_f32`] of the kernel's own y; the q-only call writes the
/// same bits as the call that also writes y; nothing left unwritten.
pub fn check<T: Element>(case: &Case, isa: Isa) -> Result<(), String> {
    let t = case.transform().isa(isa);
    let n = t.n();
    let tokens = case.x.len() / n;
    let x: Vec<T> = case.x.iter().map(|&v| T::from_f32(v)).collect();
    let mut y = vec![super::poison::<T>(); x.len()];
    let rb = int4_row_bytes(n);
    let mut q8 = vec![0x55i8; x.len()];
    let mut q4 = vec![0x55u8; tokens * rb];
    let mut scales = vec![-1.0f32; tokens];
    let call = t.apply(&x).output(&mut y).clip(case.clip);
    let call = match case.bits {
        8 => call.int8(&mut q8, &mut scales),
        4 => call.int4(&mut q4, &mut scales),
        _ => call,
    };
    call.run().map_err(|e| format!("call failed: {e}"))?;
    if case.bits != 0 {
        // the same quantization without y: same bits
        let mut q8b = vec![0x33i8; x.len()];
        let mut q4b = vec![0x33u8; tokens * rb];
        let mut sb = vec![-2.0f32; tokens];
        let call = t.apply(&x).clip(case.clip);
        let call = match case.bits {
            8 => call.int8(&mut q8b, &mut sb),
            _ => call.int4(&mut q4b, &mut sb),
        };
        call.run().map_err(|e| format!("q-only call failed: {e}"))?;
        if (case.bits == 8 && q8b != q8)
            || (case.bits == 4 && q4b != q4)
            || sb
                .iter()
                .zip(&scales)
                .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err("the q-only call wrote other values than the call with y".into());
        }
    }
    let pm = (n <= DENSE_MAX).then(|| dense_matrix(&case.p1, &case.p2));
    let qmax = if case.bits == 4 { 7.0 } else { 127.0 };
    for tk in 0..tokens {
        let span = tk * n..(tk + 1) * n;
        let xs: Vec<f64> = x[span.clone()]
            .iter()
            .enumerate()
            .map(|(j, v)| v.to_f32() as f64 * case.smooth.as_ref().map_or(1.0, |s| s[j] as f64))
            .collect();
        let (y_ref, mag) = match &pm {
            Some(pm) => apply_dense(pm, &xs),
            None => apply_factored(&case.p1, &case.p2, &xs),
        };
        let tol: Vec<f64> = (0..n)
            .map(|j| t.error_bound(T::DTYPE, y_ref[j], mag[j]))
            .collect();
        for j in 0..n {
            let got = y[tk * n + j].to_f32() as f64;
            if !within(got, y_ref[j], tol[j]) {
                return Err(format!(
                    "token {tk} element {j}: y {got} expected {} (error {:e} > bound {:e})",
                    y_ref[j],
                    (got - y_ref[j]).abs(),
                    tol[j]
                ));
            }
        }
        if case.bits == 0 {
            continue;
        }
        let q: Vec<i8> = if case.bits == 8 {
            q8[span.clone()].to_vec()
        } else {
            let row = &q4[tk * rb..(tk + 1) * rb];
            if n % 2 == 1 && row[rb - 1] >> 4 != 0 {
                return Err(format!("token {tk}: the unused high nibble is not 0"));
            }
            unpack_int4(row, n)
        };
        let s = scales[tk];
        if T::DTYPE == Dtype::F32 {
            let yk: Vec<f32> = y[span.clone()].iter().map(|v| v.to_f32()).collect();
            let (qe, se) = quantize_f32(&yk, qmax as f32, case.clip);
            if qe != q || se.to_bits() != s.to_bits() {
                let j = (0..n).find(|&j| qe[j] != q[j]).unwrap_or(0);
                return Err(format!(
                    "token {tk}: q[{j}] = {} scale {s}, from the kernel's own y {} expected q {} scale {se}",
                    q[j], yk[j], qe[j]
                ));
            }
        }
        let (_, s_ref) = quantize(&y_ref, qmax, case.clip as f64);
        let tmax = tol.iter().cloned().fold(0.0, f64::max);
        let s64 = s as f64;
        if !within(
            s64,
            s_ref,
            case.clip as f64 * tmax / qmax + 4.0 * Dtype::F32.unit_roundoff() * s_ref,
        ) {
            return Err(format!("token {tk}: scale {s} expected {s_ref}"));
        }
        if q.iter().any(|v| v.unsigned_abs() as f64 > qmax) {
            return Err(format!("token {tk}: a value beyond +-{qmax}"));
        }
        if s == 0.0 && q.iter().any(|&v| v != 0) {
            return Err(format!("token {tk}: scale 0 with q not 0"));
        }
        if s > 0.0 {
            for j in 0..n {
                let want = (y_ref[j] / s64).clamp(-qmax, qmax);
                let slack = tol[j] / s64 + 1e-5 * qmax;
                if (q[j] as f64 - want).abs() > 0.5 + slack {
                    return Err(format!(
                        "token {tk} element {j}: q {} scale {s}, y {} (y / scale {})",
                        q[j],
                        y_ref[j],
                        y_ref[j] / s64
                    ));
                }
            }
        }
    }
    // the matching dequantization, against the textbook q * scale
    if case.bits != 0 && scales.iter().all(|s| s.is_finite()) {
        let mut deq = vec![super::poison::<T>(); x.len()];
        if case.bits == 8 {
            dequantize_int8(&q8, &scales, n, &mut deq)
        } else {
            dequantize_int4(&q4, &scales, n, &mut deq)
        }
        .map_err(|e| format!("dequantize failed: {e}"))?;
        for tk in 0..tokens {
            let q: Vec<i8> = if case.bits == 8 {
                q8[tk * n..(tk + 1) * n].to_vec()
            } else {
                unpack_int4(&q4[tk * rb..(tk + 1) * rb], n)
            };
            for j in 0..n {
                let want = T::from_f32(q[j] as f32 * scales[tk]);
                if !super::same_bits(deq[tk * n + j], want) {
                    return Err(format!(
                        "dequantized token {tk} element {j} is not q * scale"
                    ));
                }
            }
        }
    }
    Ok(())
}
