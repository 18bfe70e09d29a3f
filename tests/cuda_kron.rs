//! CUDA Kronecker transforms against the f64 references: every dtype x factor
//! kinds (dense / Hadamard each side, LLM shapes 4096 = 64 x 64, 11008 = 86 x
//! 128, 14336 = 112 x 128) x outputs (y, int8, int4); y within
//! `DeviceKron::error_bound` (16-bit tokens of most shapes on the tensor
//! cores, the rest and f32 on the SIMT kernel), q and scales bit for bit
//! from the kernel's own f32 y (f32) or within half a step of the reference
//! (16-bit); zero and
//! non-finite tokens; errors that enqueue nothing. Skips with a message
//! without a GPU (TK_REQUIRE_GPU=1 makes that a failure).
#![cfg(feature = "cuda")]

mod gpu;

use std::sync::Arc;

use gpu::gpu;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{CudaElement, DeviceKronOutput, Kernels};
use transformer_kernels::kron::{Factor, Kron, int4_row_bytes};
use transformer_kernels::reference::kron::{self as rk, DENSE_MAX};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Error};

fn dense(seed: u64, n: usize) -> Factor {
    Factor::dense(&uniform_values(seed, n * n, 1.0), n).unwrap()
}

/// Runs y + int8 and int4 on the GPU for `tokens` tokens of x and checks them.
fn check<T: CudaElement>(s: &Arc<CudaStream>, k: &Kernels, t: &Kron, x: &[f32], clip: f32) {
    let n = t.n();
    let tokens = x.len() / n;
    let dt = k.upload_kron(s, t).unwrap();
    let xt: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let xd = s.clone_htod(&xt).unwrap();
    let mut yd = s.clone_htod(&vec![T::from_f32(f32::NAN); x.len()]).unwrap();
    let mut q8 = s.clone_htod(&vec![0x55i8; x.len()]).unwrap();
    let mut s8 = s.clone_htod(&vec![-1.0f32; tokens]).unwrap();
    let mut q4 = s
        .clone_htod(&vec![0x55u8; tokens * int4_row_bytes(n)])
        .unwrap();
    let mut s4 = s.clone_htod(&vec![-1.0f32; tokens]).unwrap();
    let (mut yv, mut q8v, mut s8v) = (yd.as_view_mut(), q8.as_view_mut(), s8.as_view_mut());
    let out = DeviceKronOutput {
        y: Some(&mut yv),
        int8: Some((&mut q8v, &mut s8v)),
        int4: None,
    };
    k.kron(s, &dt, &xd.as_view(), out, clip).unwrap();
    let (mut q4v, mut s4v) = (q4.as_view_mut(), s4.as_view_mut());
    let out = DeviceKronOutput::int4(&mut q4v, &mut s4v);
    k.kron(s, &dt, &xd.as_view(), out, clip).unwrap();
    let y: Vec<f32> = s
        .clone_dtoh(&yd)
        .unwrap()
        .iter()
        .map(|v| v.to_f32())
        .collect();
    let (q8, s8) = (s.clone_dtoh(&q8).unwrap(), s.clone_dtoh(&s8).unwrap());
    let (q4, s4) = (s.clone_dtoh(&q4).unwrap(), s.clone_dtoh(&s4).unwrap());
    let (p1, p2) = t.factors();
    let pm = (n <= DENSE_MAX).then(|| rk::dense_matrix(p1, p2));
    let rb = int4_row_bytes(n);
    for tk in 0..tokens {
        let span = tk * n..(tk + 1) * n;
        let xs: Vec<f64> = xt[span.clone()]
            .iter()
            .enumerate()
            .map(|(j, v)| v.to_f32() as f64 * t.smoothing().map_or(1.0, |s| s[j] as f64))
            .collect();
        let (yr, mag) = match &pm {
            Some(pm) => rk::apply_dense(pm, &xs),
            None => rk::apply_factored(p1, p2, &xs),
        };
        let tol: Vec<f64> = (0..n)
            .map(|j| dt.error_bound(t, T::DTYPE, yr[j], mag[j]))
            .collect();
        for j in 0..n {
            let e = (y[tk * n + j] as f64 - yr[j]).abs();
            assert!(
                e <= tol[j],
                "{} n {n} token {tk} {j}: y {} vs {} (bound {:e})",
                T::DTYPE.name(),
                y[tk * n + j],
                yr[j],
                tol[j]
            );
        }
        for (bits, q, sc) in [
            (8u8, q8[span.clone()].to_vec(), s8[tk]),
            (4, rk::unpack_int4(&q4[tk * rb..(tk + 1) * rb], n), s4[tk]),
        ] {
            let qmax = if bits == 8 { 127.0 } else { 7.0 };
            if T::DTYPE == Dtype::F32 {
                let (qe, se) = rk::quantize_f32(&y[span.clone()], qmax as f32, clip);
                assert!(
                    qe == q && se.to_bits() == sc.to_bits(),
                    "f32 int{bits} token {tk}: q / scale {sc} not the quantization of the kernel's own y (scale {se})"
                );
            } else {
                let (_, sr) = rk::quantize(&yr, qmax, clip as f64);
                let tmax = tol.iter().cloned().fold(0.0, f64::max);
                assert!(
                    (sc as f64 - sr).abs()
                        <= clip as f64 * tmax / qmax + 4.0 * f32::EPSILON as f64 * sr,
                    "scale {sc} vs {sr}"
                );
                for j in 0..n {
                    let want = (yr[j] / sc as f64).clamp(-qmax, qmax);
                    assert!(
                        (q[j] as f64 - want).abs() <= 0.5 + tol[j] / sc as f64 + 1e-5 * qmax,
                        "int{bits} token {tk} {j}: q {} want {want}",
                        q[j]
                    );
                }
            }
        }
    }
}

fn shapes() -> Vec<Kron> {
    vec![
        Kron::new(dense(1, 5), dense(2, 7)),
        // the register-tiled products: 2 x 4 outputs a thread (n1 even), and
        // the one-at-a-time fallback (n1 odd) beside a width of whole vectors
        Kron::new(dense(11, 6), dense(12, 20)),
        Kron::new(dense(13, 3), dense(14, 8)),
        Kron::new(Factor::hadamard(8).unwrap(), dense(3, 13)),
        Kron::new(dense(4, 12), Factor::hadamard(16).unwrap())
            .with_smoothing(
                &uniform_values(5, 192, 0.5)
                    .iter()
                    .map(|v| 1.0 + v)
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        Kron::hadamard(4096).unwrap(),
        Kron::new(dense(6, 64), dense(7, 64)),
        Kron::new(dense(8, 86), Factor::hadamard(128).unwrap()),
        Kron::new(dense(9, 112), dense(10, 128)),
    ]
}

#[test]
fn every_dtype_and_shape_matches_the_reference() {
    let Some((s, k)) = gpu() else { return };
    for t in shapes() {
        let n = t.n();
        let tokens = if n > 4096 { 3 } else { 9 };
        let x = uniform_values(n as u64, tokens * n, 2.0);
        for clip in [1.0f32, 0.8] {
            check::<f32>(&s, &k, &t, &x, clip);
            check::<f16>(&s, &k, &t, &x, clip);
            check::<bf16>(&s, &k, &t, &x, clip);
        }
    }
}

#[test]
fn sixteen_bit_tokens_take_the_tensor_cores_where_the_shape_allows() {
    let Some((s, k)) = gpu() else { return };
    for (t, tc) in shapes().iter().zip([
        false, // 5 x 7: rows of 7 are not whole 16-byte vectors
        false, // 6 x 20
        true,  // 3 x 8
        false, // 8 x 13
        true,  // 12 x 16, smoothed
        true,  // Hadamard 64 x 64
        true,  // 64 x 64
        true,  // 86 x Hadamard 128
        true,  // 112 x 128
    ]) {
        let dt = k.upload_kron(&s, t).unwrap();
        assert_eq!(dt.tensor_cores(Dtype::Bf16), tc, "n = {}", t.n());
        assert_eq!(dt.tensor_cores(Dtype::F16), tc);
        assert!(!dt.tensor_cores(Dtype::F32));
    }
}

/// A few tokens through the tensor-core kernel (one and two items a warp,
/// smoothing, a Hadamard factor) for compute-sanitizer's memcheck and
/// racecheck in scripts/device-check.sh.
#[test]
fn tensor_cores_for_sanitizers() {
    let Some((s, k)) = gpu() else { return };
    let sh = shapes();
    for t in [&sh[4], &sh[7]] {
        let x = uniform_values(3, 5 * t.n(), 2.0);
        check::<bf16>(&s, &k, t, &x, 0.9);
        check::<f16>(&s, &k, t, &x, 0.9);
    }
}

#[test]
fn zero_and_non_finite_tokens() {
    let Some((s, k)) = gpu() else { return };
    let t = Kron::new(dense(1, 4), Factor::hadamard(8).unwrap());
    let dt = k.upload_kron(&s, &t).unwrap();
    let mut x = vec![0.0f32; 96];
    x[37] = f32::NAN;
    x[71] = f32::INFINITY;
    let xd = s.clone_htod(&x).unwrap();
    let mut q = s.clone_htod(&vec![9i8; 96]).unwrap();
    let mut sc = s.clone_htod(&vec![9.0f32; 3]).unwrap();
    let (mut qv, mut sv) = (q.as_view_mut(), sc.as_view_mut());
    k.kron(
        &s,
        &dt,
        &xd.as_view(),
        DeviceKronOutput::int8(&mut qv, &mut sv),
        1.0,
    )
    .unwrap();
    let (q, sc) = (s.clone_dtoh(&q).unwrap(), s.clone_dtoh(&sc).unwrap());
    assert!(sc[0] == 0.0 && sc[1].is_nan() && sc[2].is_nan(), "{sc:?}");
    assert!(q.iter().all(|&v| v == 0));
}

#[test]
fn errors_enqueue_nothing() {
    let Some((s, k)) = gpu() else { return };
    let t = Kron::new(dense(1, 4), dense(2, 4));
    let dt = k.upload_kron(&s, &t).unwrap();
    let xd = s.clone_htod(&[1.0f32; 32]).unwrap();
    let mut y = s.clone_htod(&[7.0f32; 32]).unwrap();
    let mut q = s.clone_htod(&[7i8; 32]).unwrap();
    let mut sc = s.clone_htod(&[7.0f32; 1]).unwrap();
    {
        let mut yv = y.as_view_mut();
        let r = k.kron(&s, &dt, &xd.slice(0..31), DeviceKronOutput::y(&mut yv), 1.0);
        assert!(matches!(r, Err(Error::LengthNotMultiple { .. })));
        let (mut qv, mut sv) = (q.as_view_mut(), sc.as_view_mut());
        let r = k.kron(
            &s,
            &dt,
            &xd.as_view(),
            DeviceKronOutput::int8(&mut qv, &mut sv),
            1.0,
        );
        assert!(
            matches!(r, Err(Error::LengthMismatch { .. })),
            "2 tokens need 2 scales"
        );
        let r = k.kron(&s, &dt, &xd.as_view(), DeviceKronOutput::y(&mut yv), 0.0);
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
        let r = k.kron(
            &s,
            &dt,
            &xd.as_view(),
            DeviceKronOutput::<f32> {
                y: None,
                int8: None,
                int4: None,
            },
            1.0,
        );
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
    }
    assert!(s.clone_dtoh(&y).unwrap().iter().all(|&v| v == 7.0));
    assert!(s.clone_dtoh(&q).unwrap().iter().all(|&v| v == 7));
    let big = Kron::new(dense(3, 160), dense(4, 128));
    assert!(
        k.upload_kron(&s, &big).is_err(),
        "20480 elements exceed the shared-memory limit"
    );
}
