//! Kronecker transforms: every variant (ISA x dtype) x factor kind (dense or
//! Hadamard, each side) x order x smoothing x output (y, int8, int4) x clip
//! against the dense f64 reference; the f32 quantization bit for bit; rounding
//! ties; zero and non-finite tokens; round trips; weight folding; factor
//! algebra; errors. Variants whose ISA this CPU lacks are skipped.

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::kron::{self, Factor, Kron, Variant};
use transformer_kernels::reference::kron::{self as rk, Case};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Error, Isa};

fn runnable(v: &Variant) -> bool {
    if v.isa.is_available() {
        return true;
    }
    eprintln!("SKIP {}: this CPU lacks {}", v.name, v.isa.name());
    false
}

fn check_all(case: &Case) {
    for v in kron::variants().iter().filter(|v| runnable(v)) {
        let r = match v.dtype {
            Dtype::F32 => rk::check::<f32>(case, v.isa),
            Dtype::F16 => rk::check::<f16>(case, v.isa),
            Dtype::Bf16 => rk::check::<bf16>(case, v.isa),
        };
        if let Err(msg) = r {
            panic!(
                "{}: {msg}\ncase: p1 {:?} p2 {:?} bits {} clip {} smooth {}",
                v.name,
                order_kind(&case.p1),
                order_kind(&case.p2),
                case.bits,
                case.clip,
                case.smooth.is_some()
            );
        }
    }
}

fn order_kind(f: &Factor) -> String {
    let kind = if f.is_hadamard() { "hadamard" } else { "dense" };
    format!("{kind} {}", f.order())
}

/// A dense factor: uniform entries plus `diag` on the diagonal (diag 2 keeps
/// it well conditioned for the inverse tests).
fn dense(seed: u64, n: usize, diag: f32) -> Factor {
    let mut p = uniform_values(seed, n * n, 1.0);
    for i in 0..n {
        p[i * n + i] += diag;
    }
    Factor::dense(&p, n).unwrap()
}

fn factor(seed: u64, hadamard: bool, n: usize) -> Factor {
    if hadamard {
        Factor::hadamard(n).unwrap()
    } else {
        dense(seed, n, 0.0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference(
        seed in any::<u64>(),
        (h1, h2) in (any::<bool>(), any::<bool>()),
        n1 in prop_oneof![1usize..=9, Just(16usize)],
        n2s in any::<u64>(),
        tokens in 1usize..4,
        smooth in any::<bool>(),
        bits in prop_oneof![Just(0u8), Just(8u8), Just(4u8)],
        clip in prop_oneof![Just(1.0f32), Just(0.9f32), Just(0.25f32)],
        amp in prop_oneof![Just(1.0f32), Just(1e-3f32), Just(100.0f32)],
    ) {
        let n1 = if h1 { n1.next_power_of_two() } else { n1 };
        // Hadamard orders 1..128 (below and above the vector width); dense
        // orders around the tile sizes (6 rows, 64 columns on AVX-512)
        let n2 = if h2 {
            1usize << (n2s % 8)
        } else {
            [1, 2, 3, 5, 7, 8, 13, 16, 17, 20, 33, 64, 65, 70][(n2s % 14) as usize]
        };
        let n = n1 * n2;
        let mut x = uniform_values(seed, tokens * n, amp);
        if n > 3 { x[n / 2] *= 40.0; } // an outlier channel
        let case = Case {
            p1: factor(seed ^ 1, h1, n1),
            p2: factor(seed ^ 2, h2, n2),
            smooth: smooth.then(|| uniform_values(seed ^ 3, n, 1.0).iter().map(|v| 1.0 + v).collect()),
            x,
            bits,
            clip,
        };
        check_all(&case);
    }
}

#[test]
fn long_tokens_of_llm_shapes() {
    // 11008 = 86 x 128 (dense x Hadamard), 14336 = 112 x 128, 4096 = 64 x 64, the
    // pure Hadamard 4096; against the factored f64 reference (too long for the dense one)
    let shapes: [(Factor, Factor); 4] = [
        (dense(1, 86, 0.0), Factor::hadamard(128).unwrap()),
        (dense(2, 112, 0.0), dense(3, 128, 0.0)),
        (dense(4, 64, 0.0), dense(5, 64, 0.0)),
        (Factor::hadamard(64).unwrap(), Factor::hadamard(64).unwrap()),
    ];
    for (p1, p2) in shapes {
        let n = p1.order() * p2.order();
        for bits in [8u8, 4] {
            check_all(&Case {
                p1: p1.clone(),
                p2: p2.clone(),
                smooth: None,
                x: uniform_values(n as u64, 2 * n, 3.0),
                bits,
                clip: 1.0,
            });
        }
    }
}

#[test]
fn hadamard_is_orthonormal_and_its_own_inverse() {
    for n in [1usize, 2, 8, 16, 32, 64, 256, 1024, 4096, 1 << 16] {
        let t = Kron::hadamard(n).unwrap();
        let x = uniform_values(n as u64, 3 * n, 1.0);
        let mut y = vec![0.0f32; 3 * n];
        let mut back = vec![0.0f32; 3 * n];
        t.apply(&x).output(&mut y).run().unwrap();
        t.apply(&y).output(&mut back).run().unwrap();
        for tk in 0..3 {
            let nx: f64 = x[tk * n..(tk + 1) * n]
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum();
            let ny: f64 = y[tk * n..(tk + 1) * n]
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum();
            assert!((nx - ny).abs() <= 1e-5 * nx, "n {n}: norm {nx} -> {ny}");
        }
        let k = n.trailing_zeros() as f32;
        // two transforms of depth log2 n, each within (log2 n + 3) u |x|_1 / sqrt(n) per element
        let l1 = x.iter().map(|v| v.abs()).fold(0.0, f32::max) * (n as f32).sqrt();
        for (a, b) in x.iter().zip(&back) {
            assert!(
                (a - b).abs() <= 2.0 * (k + 3.0) * f32::EPSILON * l1,
                "n {n}: {a} -> {b}"
            );
        }
    }
}

#[test]
fn quantization_ties_go_to_even_and_int4_packs_low_nibble_first() {
    // identity factors: y = x exactly; max |x| = qmax makes the step 1, so q = rint(x)
    let id = |n: usize| {
        Factor::dense(
            &(0..n * n)
                .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
                .collect::<Vec<_>>(),
            n,
        )
        .unwrap()
    };
    let t = Kron::new(id(2), id(4));
    let x8 = [127.0f32, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5];
    let x4 = [7.0f32, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -6.5];
    for v in kron::variants().iter().filter(|v| runnable(v)) {
        let t = t.clone().isa(v.isa);
        let (mut q, mut s) = (vec![0i8; 8], vec![0.0f32; 1]);
        match v.dtype {
            Dtype::F32 => t.apply(&x8).int8(&mut q, &mut s).run().unwrap(),
            Dtype::F16 => t
                .apply(&x8.map(f16::from_f32))
                .int8(&mut q, &mut s)
                .run()
                .unwrap(),
            Dtype::Bf16 => continue, // 126.5 is not a bf16
        }
        assert_eq!(
            (q.as_slice(), s[0]),
            (&[127i8, 0, 2, 2, 0, -2, -2, 126][..], 1.0),
            "{}",
            v.name
        );
        let (mut q4, mut s4) = (vec![0u8; 4], vec![0.0f32; 1]);
        match v.dtype {
            Dtype::F32 => t.apply(&x4).int4(&mut q4, &mut s4).run().unwrap(),
            _ => t
                .apply(&x4.map(f16::from_f32))
                .int4(&mut q4, &mut s4)
                .run()
                .unwrap(),
        }
        // q = [7, 0, 2, 2, 0, -2, -2, -6]: (7 | 0 << 4), (2 | 2 << 4), (0 | -2 << 4), (-2 | -6 << 4)
        assert_eq!(
            (q4.as_slice(), s4[0]),
            (&[0x07u8, 0x22, 0xE0, 0xAE][..], 1.0),
            "{}",
            v.name
        );
    }
}

#[test]
fn odd_length_int4_leaves_the_last_high_nibble_zero() {
    let t = Kron::new(dense(9, 3, 1.0), dense(10, 3, 1.0));
    check_all(&Case {
        p1: t.factors().0.clone(),
        p2: t.factors().1.clone(),
        smooth: None,
        x: uniform_values(3, 18, 1.0),
        bits: 4,
        clip: 1.0,
    });
}

#[test]
fn zero_and_non_finite_tokens() {
    let t = Kron::new(dense(1, 4, 1.0), Factor::hadamard(8).unwrap());
    let mut x = vec![0.0f32; 3 * 32];
    x[32 + 5] = f32::NAN;
    x[64 + 7] = f32::INFINITY;
    for v in kron::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        let t = t.clone().isa(v.isa);
        let (mut q, mut s) = (vec![9i8; 96], vec![9.0f32; 3]);
        t.apply(&x).int8(&mut q, &mut s).run().unwrap();
        assert_eq!(s[0], 0.0, "{}: zero token scale", v.name);
        assert!(s[1].is_nan() && s[2].is_nan(), "{}: scales {s:?}", v.name);
        assert!(q.iter().all(|&v| v == 0), "{}: q {q:?}", v.name);
        let (mut q4, mut s4) = (vec![9u8; 48], vec![9.0f32; 3]);
        t.apply(&x).int4(&mut q4, &mut s4).run().unwrap();
        assert!(
            s4[0] == 0.0 && s4[1].is_nan() && s4[2].is_nan() && q4.iter().all(|&v| v == 0),
            "{}",
            v.name
        );
    }
}

/// Pure Hadamard transforms (one transform of order n, below, at and above the
/// vector widths): a zero token has scale 0; NaN, inf, and finite values
/// whose sums overflow f32 (1e38 everywhere: y[0] = 1e38 sqrt(n)) have a NaN
/// scale and q = 0.
#[test]
fn pure_hadamard_zero_non_finite_and_overflowing_tokens() {
    for n in [4usize, 8, 16, 64, 256, 4096] {
        let t = Kron::hadamard(n).unwrap();
        let mut x = vec![0.0f32; 4 * n];
        x[n + n / 2] = f32::NAN;
        x[2 * n + n - 1] = f32::NEG_INFINITY;
        x[3 * n..].fill(1e38);
        for v in kron::variants()
            .iter()
            .filter(|v| runnable(v) && v.dtype == Dtype::F32)
        {
            let t = t.clone().isa(v.isa);
            let (mut q, mut s) = (vec![9i8; 4 * n], vec![9.0f32; 4]);
            t.apply(&x).int8(&mut q, &mut s).run().unwrap();
            assert_eq!(s[0], 0.0, "{} n {n}: zero token scale", v.name);
            assert!(
                s[1..].iter().all(|s| s.is_nan()),
                "{} n {n}: scales {s:?}",
                v.name
            );
            assert!(q.iter().all(|&v| v == 0), "{} n {n}: q", v.name);
        }
    }
}

#[test]
fn transform_then_inverse_and_transpose_round_trip() {
    // P well conditioned (diagonal 2 + uniform noise): x P P^-1 = x within the
    // composed bound: the forward's and the inverse's own bounds (each through
    // the other matrix) plus the inverse's rounding residual
    let (p1, p2) = (dense(11, 12, 4.0), dense(12, 16, 4.0));
    let t = Kron::new(p1.clone(), p2.clone());
    let inv = t.inverse().unwrap();
    let (i1, i2) = inv.factors();
    let res = p1.inversion_residual(i1) + p2.inversion_residual(i2);
    assert!(res < 1e-5, "inversion residual {res}");
    let n = 192;
    let x = uniform_values(5, 2 * n, 1.0);
    let pm = rk::dense_matrix(&p1, &p2);
    let pi = rk::dense_matrix(i1, i2);
    for v in kron::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        let (mut y, mut back) = (vec![0.0f32; 2 * n], vec![0.0f32; 2 * n]);
        t.clone().isa(v.isa).apply(&x).output(&mut y).run().unwrap();
        inv.clone()
            .isa(v.isa)
            .apply(&y)
            .output(&mut back)
            .run()
            .unwrap();
        for tk in 0..2 {
            let xs: Vec<f64> = x[tk * n..(tk + 1) * n].iter().map(|&v| v as f64).collect();
            let (_, mag) = rk::apply_dense(&pm, &xs);
            let ys: Vec<f64> = y[tk * n..(tk + 1) * n].iter().map(|&v| v as f64).collect();
            let (_, mag_inv) = rk::apply_dense(&pi, &ys);
            // forward error bound per element of y, carried through |P^-1|
            let e_y: Vec<f64> = (0..n)
                .map(|j| t.error_bound(Dtype::F32, 0.0, mag[j]))
                .collect();
            let (_, carried) = rk::apply_dense(&pi, &e_y);
            let (_, through) =
                rk::apply_dense(&pm, &xs.iter().map(|v| v.abs()).collect::<Vec<_>>());
            let (_, resid) = rk::apply_dense(&pi, &through);
            for j in 0..n {
                let tol = carried[j]
                    + inv.error_bound(Dtype::F32, 0.0, mag_inv[j])
                    + 4.0 * res * resid[j].max(xs[j].abs());
                let got = back[tk * n + j] as f64;
                assert!(
                    (got - xs[j]).abs() <= tol,
                    "{}: token {tk} {j}: {got} vs {} (tol {tol:e})",
                    v.name,
                    xs[j]
                );
            }
        }
        // the transpose: x P^T against the dense transpose
        let tt = t.transposed().unwrap().isa(v.isa);
        tt.apply(&x).output(&mut y).run().unwrap();
        let pt: Vec<f64> = (0..n * n).map(|k| pm[(k % n) * n + k / n]).collect();
        for tk in 0..2 {
            let xs: Vec<f64> = x[tk * n..(tk + 1) * n].iter().map(|&v| v as f64).collect();
            let (yr, mag) = rk::apply_dense(&pt, &xs);
            for j in 0..n {
                assert!(
                    (y[tk * n + j] as f64 - yr[j]).abs()
                        <= tt.error_bound(Dtype::F32, yr[j], mag[j])
                );
            }
        }
    }
}

#[test]
fn folding_the_inverse_into_the_weight_keeps_the_product() {
    let (p1, p2) = (dense(21, 6, 4.0), Factor::hadamard(8).unwrap());
    let n = 48;
    let smooth: Vec<f32> = uniform_values(22, n, 0.5).iter().map(|v| 1.0 + v).collect();
    let t = Kron::new(p1.clone(), p2.clone())
        .with_smoothing(&smooth)
        .unwrap();
    let rows = 5;
    let w = uniform_values(23, rows * n, 1.0);
    let wf = t.fold_into_weight(&w, rows).unwrap();
    let inv = Kron::new(p1.clone(), p2.clone()).inverse().unwrap();
    let res = p1.inversion_residual(inv.factors().0) + p2.inversion_residual(inv.factors().1);
    let pm = rk::dense_matrix(&p1, &p2);
    let u = Dtype::F32.unit_roundoff();
    for seed in 0..4u64 {
        let x: Vec<f64> = uniform_values(30 + seed, n, 2.0)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let xs: Vec<f64> = x.iter().zip(&smooth).map(|(a, s)| a * *s as f64).collect();
        let (xt, _) = rk::apply_dense(&pm, &xs);
        for r in 0..rows {
            let row = |m: &[f32]| {
                m[r * n..(r + 1) * n]
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<_>>()
            };
            let (wr, wfr) = (row(&w), row(&wf));
            let lhs: f64 = x.iter().zip(&wr).map(|(a, b)| a * b).sum();
            let rhs: f64 = xt.iter().zip(&wfr).map(|(a, b)| a * b).sum();
            // W' rounded to f32 once, the f32 inverse's residual through |x s| and |W / s|
            let tol = 2.0 * u * xt.iter().zip(&wfr).map(|(a, b)| (a * b).abs()).sum::<f64>()
                + 2.0
                    * res
                    * xs.iter().map(|v| v.abs()).sum::<f64>()
                    * wr.iter()
                        .zip(&smooth)
                        .map(|(a, s)| (a / *s as f64).abs())
                        .sum::<f64>()
                + 1e-12 * lhs.abs();
            assert!(
                (lhs - rhs).abs() <= tol,
                "row {r}: {lhs} vs {rhs} (tol {tol:e})"
            );
        }
    }
}

#[test]
fn factor_algebra() {
    let f = dense(40, 7, 3.0);
    let inv = f.inverse().unwrap();
    assert!(f.inversion_residual(&inv) < 1e-5);
    assert_eq!(f.transposed().transposed(), f);
    let h = Factor::hadamard(16).unwrap();
    assert!(h.inversion_residual(&h.inverse().unwrap()) < 1e-12);
    assert!(
        h.inversion_residual(&h) < 1e-12,
        "H / sqrt(n) is its own inverse"
    );
    let singular = Factor::dense(&[1.0, 2.0, 2.0, 4.0], 2).unwrap();
    assert!(matches!(
        singular.inverse(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(Factor::hadamard(12).is_err());
    assert!(Factor::hadamard(1 << 31).is_err());
    let tiny = Factor::dense(&[1e-40, 0.0, 0.0, 1e-40], 2).unwrap();
    assert!(
        tiny.inverse().is_err(),
        "an inverse entry of 1e40 overflows f32"
    );
    assert!(Factor::dense(&[1.0, f32::NAN, 0.0, 1.0], 2).is_err());
    assert!(Factor::dense(&[1.0; 5], 2).is_err());
}

#[test]
fn errors_write_nothing() {
    let t = Kron::new(dense(1, 4, 1.0), dense(2, 4, 1.0));
    let x = vec![1.0f32; 32];
    let mut y = vec![7.0f32; 32];
    let (mut q, mut s) = (vec![7i8; 32], vec![7.0f32; 2]);
    let mut q4 = vec![7u8; 16];
    let mut small_ws = vec![0.0f32; 3];
    assert!(matches!(
        t.apply(&x[..31]).output(&mut y[..31]).run(),
        Err(Error::LengthNotMultiple { .. })
    ));
    assert!(matches!(
        t.apply(&x).output(&mut y[..31]).run(),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        t.apply(&x).int8(&mut q, &mut s[..1]).run(),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        t.apply(&x).int4(&mut q4[..15], &mut s).run(),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        t.apply(&x).int8(&mut q, &mut s).clip(0.0).run(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        t.apply(&x).int8(&mut q, &mut s).clip(f32::NAN).run(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        t.apply(&x).int8(&mut q, &mut s).clip(1.5).run(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        t.apply(&x).run(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        t.apply(&x).output(&mut y).workspace(&mut small_ws).run(),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(
        y.iter().all(|&v| v == 7.0)
            && q.iter().all(|&v| v == 7)
            && s.iter().all(|&v| v == 7.0)
            && q4.iter().all(|&v| v == 7)
    );
    assert!(t.clone().with_smoothing(&[1.0; 3]).is_err());
    assert!(t.clone().with_smoothing(&[f32::INFINITY; 16]).is_err());
    let smoothed = t.clone().with_smoothing(&[2.0; 16]).unwrap();
    assert!(smoothed.inverse().is_err() && smoothed.transposed().is_err());
    if !Isa::Avx512.is_available() {
        assert!(matches!(
            t.clone().isa(Isa::Avx512).apply(&x).output(&mut y).run(),
            Err(Error::UnsupportedIsa { .. })
        ));
    }
    // dequantization shapes
    let mut out = vec![0.0f32; 32];
    assert!(kron::dequantize_int8(&q[..31], &s, 16, &mut out).is_err());
    assert!(kron::dequantize_int4(&q4, &s, 16, &mut out[..31]).is_err());
}

#[test]
fn caller_workspace_gives_the_same_bits() {
    let t = Kron::new(dense(1, 5, 1.0), dense(2, 7, 1.0));
    let x = uniform_values(2, 4 * 35, 1.0);
    let mut ws = vec![0.0f32; t.workspace_floats()];
    let (mut a, mut b) = (vec![0.0f32; 140], vec![0.0f32; 140]);
    t.apply(&x).output(&mut a).run().unwrap();
    t.apply(&x).output(&mut b).workspace(&mut ws).run().unwrap();
    assert_eq!(a, b);
}
