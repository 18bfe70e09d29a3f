//! CUDA LLM.int8() and weight-only products against the references the CPU
//! tests use: the outlier columns, int8 rows, scales and gathered outlier
//! values bit for bit (`reference::qgemm::quantize_row`), the int32 products
//! bit for bit against exact integers, every output within the epilogue
//! bound of the same quantized math in f64 and within the quantization bound
//! of the unquantized product; dynamic and fixed outliers, the threshold
//! boundary, none and all columns, m = 1, m / n / k off every tile, f32 /
//! f16 / bf16 in and out; non-finite and zero rows; the outlier-capacity
//! overflow; the weight-only GEMV (int8 / int4, groups, m 1 .. 33, unaligned
//! x, huge and NaN x) within `QuantizedWeight::error_bound`; errors that
//! enqueue nothing. Skips with a message without a GPU (TK_REQUIRE_GPU=1
//! makes that a failure).
#![cfg(feature = "cuda")]

mod gpu;

use std::sync::Arc;

use cudarc::driver::CudaStream;
use gpu::gpu;
use half::{bf16, f16};
use transformer_kernels::Error;
use transformer_kernels::cuda::{CudaElement, DeviceInt8Weight, Int8GemmKernel, Kernels};
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{DEFAULT_THRESHOLD, Int8Weight, Outliers};
use transformer_kernels::reference::qgemm::{self as rq, Quantized};
use transformer_kernels::reference::{poison, uniform_values};

/// Runs one product on the device and checks it; returns the outlier columns.
fn run_int8<T: CudaElement, U: CudaElement>(
    s: &Arc<CudaStream>,
    k: &Kernels,
    weight: &Int8Weight,
    dw: &DeviceInt8Weight,
    x32: &[f32],
    w32: &[f32],
    bias: Option<&[f32]>,
) -> Vec<u32> {
    let tag = format!("x {} / y {}", T::DTYPE.name(), U::DTYPE.name());
    let (xt, xf) = rq::round_to::<T>(x32);
    let (n, kk) = (weight.n(), weight.k());
    let m = x32.len() / kk;
    let mut ws = k.int8_workspace(s, dw, m, kk).unwrap();
    let xd = s.clone_htod(&xt).unwrap();
    let mut yd = s.clone_htod(&vec![poison::<U>(); m * n]).unwrap();
    let bd = bias.map(|b| s.clone_htod(b).unwrap());
    let bv = bd.as_ref().map(|b| b.as_view());
    k.int8_matmul(
        s,
        dw,
        &mut ws,
        &xd.as_view(),
        bv.as_ref(),
        &mut yd.as_view_mut(),
    )
    .unwrap();
    let y = s.clone_dtoh(&yd).unwrap();
    let cols = ws.outlier_columns(s).unwrap();
    let (q, scales, xo) = ws.quantized(s).unwrap();
    let quantized = Quantized {
        outliers: &cols,
        q: &q,
        scales: &scales,
        xo: &xo,
    };
    rq::check_int8_parts(&xf, w32, weight, &quantized, bias, &y)
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let mut acc = s.alloc_zeros::<i32>(m * n).unwrap();
    k.int8_products::<T>(s, dw, &mut ws, None, &mut acc.as_view_mut())
        .unwrap();
    let wq: Vec<i8> = (0..n).flat_map(|j| weight.quantized_row(j)).collect();
    assert!(
        s.clone_dtoh(&acc).unwrap() == rq::int32_products(&q, &wq, m, n, kk),
        "{tag}: int32 products differ from the exact integers"
    );
    cols
}

/// The GEMM kernels this device has: mma.sync always, wgmma on compute
/// capability 9.0 (whose results must be the same).
fn gemm_kernels(k: &Kernels) -> Vec<Int8GemmKernel> {
    let mut all = vec![Int8GemmKernel::MmaSync];
    if k.use_int8_gemm_kernel(Int8GemmKernel::Wgmma).is_ok() {
        all.push(Int8GemmKernel::Wgmma);
    }
    k.use_int8_gemm_kernel(Int8GemmKernel::MmaSync).unwrap();
    all
}

/// Every dtype pair on one case, with every GEMM kernel of the device;
/// checks the outlier columns found.
#[allow(clippy::too_many_arguments)]
fn check_case(
    s: &Arc<CudaStream>,
    k: &Kernels,
    x: &[f32],
    w: &[f32],
    n: usize,
    kk: usize,
    outliers: Outliers,
    bias: Option<&[f32]>,
) {
    let m = x.len() / kk;
    let expected = match &outliers {
        Outliers::Dynamic { threshold } => Some(*threshold),
        Outliers::Fixed(_) => None,
    };
    let weight = Int8Weight::prepare(w, n, kk, outliers).unwrap();
    let dw = k.upload_int8_weight(s, &weight).unwrap();
    for kernel in gemm_kernels(k) {
        k.use_int8_gemm_kernel(kernel).unwrap();
        let runs = [
            run_int8::<f32, f32>(s, k, &weight, &dw, x, w, bias),
            run_int8::<f16, f16>(s, k, &weight, &dw, x, w, bias),
            run_int8::<bf16, bf16>(s, k, &weight, &dw, x, w, bias),
            run_int8::<f32, bf16>(s, k, &weight, &dw, x, w, bias),
        ];
        check_outlier_columns(&runs, x, m, kk, expected, &weight);
    }
    k.use_int8_gemm_kernel(Int8GemmKernel::MmaSync).unwrap();
}

fn check_outlier_columns(
    runs: &[Vec<u32>],
    x: &[f32],
    m: usize,
    kk: usize,
    expected: Option<f32>,
    weight: &Int8Weight,
) {
    let ts = [
        rq::round_to::<f32>(x).1,
        rq::round_to::<f16>(x).1,
        rq::round_to::<bf16>(x).1,
        rq::round_to::<f32>(x).1,
    ];
    for (cols, xf) in runs.iter().zip(&ts) {
        let want = match expected {
            Some(t) => rq::outlier_columns(xf, m, kk, t),
            None => weight.fixed_outliers().unwrap().to_vec(),
        };
        assert_eq!(cols, &want, "outlier columns (m {m}, k {kk})");
    }
}

fn spiked(seed: u64, m: usize, kk: usize, spikes: &[(usize, usize, f32)]) -> Vec<f32> {
    let mut x = uniform_values(seed, m * kk, 2.0);
    for &(i, c, v) in spikes {
        x[i * kk + c] = v;
    }
    x
}

#[test]
fn int8_matches_references() {
    let Some((s, k)) = gpu() else { return };
    // (m, n, k): one element, off every tile, several k tiles, a full 128 tile and beyond
    let shapes = [
        (1, 1, 1),
        (1, 130, 70),
        (5, 17, 64),
        (33, 129, 130),
        (130, 257, 300),
        (128, 128, 1024),
        (200, 64, 4096),
    ];
    for (idx, &(m, n, kk)) in shapes.iter().enumerate() {
        let seed = 17 + idx as u64;
        let spikes: Vec<(usize, usize, f32)> = (0..3)
            .map(|t| {
                (
                    (7 * t + idx) % m,
                    (13 * t + 5 * idx) % kk,
                    [25.0, -9.0, 6.0][t],
                )
            })
            .collect();
        let x = spiked(seed, m, kk, &spikes);
        let w = uniform_values(seed ^ 0x5eed, n * kk, 0.5);
        let bias = uniform_values(seed ^ 0xb1a5, n, 1.0);
        let dynamic = Outliers::Dynamic {
            threshold: DEFAULT_THRESHOLD,
        };
        let fixed = Outliers::Fixed(spikes.iter().map(|t| t.1 as u32).collect());
        check_case(&s, &k, &x, &w, n, kk, dynamic, Some(&bias));
        check_case(&s, &k, &x, &w, n, kk, fixed, None);
    }
}

#[test]
fn int8_threshold_boundary_and_extremes() {
    let Some((s, k)) = gpu() else { return };
    let (m, n, kk) = (9, 40, 200);
    let below = f32::from_bits(DEFAULT_THRESHOLD.to_bits() - 1);
    let x = spiked(
        3,
        m,
        kk,
        &[
            (0, 10, DEFAULT_THRESHOLD),
            (1, 11, -DEFAULT_THRESHOLD),
            (2, 12, below),
        ],
    );
    let w = uniform_values(4, n * kk, 1.0);
    let dynamic = |threshold| Outliers::Dynamic { threshold };
    check_case(&s, &k, &x, &w, n, kk, dynamic(DEFAULT_THRESHOLD), None);
    check_case(&s, &k, &x, &w, n, kk, dynamic(f32::INFINITY), None); // no outliers
    check_case(&s, &k, &x, &w, n, kk, dynamic(1e-30), None); // every column
    // a NaN row, an inf row and a zero row (inf and NaN columns become outliers
    // in dynamic mode; with fixed columns they poison their rows)
    let mut x = spiked(5, m, kk, &[]);
    x[kk + 3] = f32::NAN;
    x[2 * kk + 4] = f32::INFINITY;
    x[3 * kk..4 * kk].fill(0.0);
    check_case(&s, &k, &x, &w, n, kk, dynamic(DEFAULT_THRESHOLD), None);
    check_case(&s, &k, &x, &w, n, kk, Outliers::Fixed(vec![7, 100]), None);
}

#[test]
fn int8_outlier_overflow_poisons_the_call() {
    let Some((s, k)) = gpu() else { return };
    let (m, n, kk) = (4, 16, 128);
    let x = spiked(6, m, kk, &[(0, 1, 30.0), (1, 50, 30.0), (2, 99, -30.0)]);
    let w = uniform_values(7, n * kk, 1.0);
    let weight = Int8Weight::prepare(&w, n, kk, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let dw = k.upload_int8_weight(&s, &weight).unwrap();
    let mut ws = k.int8_workspace(&s, &dw, m, 2).unwrap();
    let xd = s.clone_htod(&x).unwrap();
    for kernel in gemm_kernels(&k) {
        k.use_int8_gemm_kernel(kernel).unwrap();
        let mut yd = s.alloc_zeros::<f32>(m * n).unwrap();
        k.int8_matmul(&s, &dw, &mut ws, &xd.as_view(), None, &mut yd.as_view_mut())
            .unwrap();
        assert!(
            s.clone_dtoh(&yd).unwrap().iter().all(|v| v.is_nan()),
            "{kernel:?}"
        );
        assert!(matches!(
            ws.outlier_columns(&s),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

/// The Hopper kernel against the mma.sync one on the report's shapes (and
/// ragged ones): the same int32 products and the same y, bit for bit.
#[test]
fn wgmma_equals_mma_sync_bit_for_bit() {
    let Some((s, k)) = gpu() else { return };
    if gemm_kernels(&k).len() < 2 {
        eprintln!("SKIP: no wgmma kernel on this device (compute capability 9.0 only)");
        return;
    }
    for (idx, &(m, n, kk)) in [(512, 4096, 4096), (300, 1100, 1000), (77, 11008, 4096)]
        .iter()
        .enumerate()
    {
        let x = spiked(
            40 + idx as u64,
            m,
            kk,
            &[(0, 5, 9.0), (m - 1, kk / 3, -12.0)],
        );
        let w = uniform_values(50 + idx as u64, n * kk, 0.5);
        let bias = uniform_values(60 + idx as u64, n, 1.0);
        let weight = Int8Weight::prepare(&w, n, kk, Outliers::Dynamic { threshold: 6.0 }).unwrap();
        let dw = k.upload_int8_weight(&s, &weight).unwrap();
        let mut ws = k.int8_workspace(&s, &dw, m, 64).unwrap();
        let xd = s.clone_htod(&rq::round_to::<f16>(&x).0).unwrap();
        let bd = s.clone_htod(&bias).unwrap();
        let mut outputs = Vec::new();
        for kernel in [Int8GemmKernel::MmaSync, Int8GemmKernel::Wgmma] {
            k.use_int8_gemm_kernel(kernel).unwrap();
            let mut yd = s.alloc_zeros::<f16>(m * n).unwrap();
            k.int8_matmul(
                &s,
                &dw,
                &mut ws,
                &xd.as_view(),
                Some(&bd.as_view()),
                &mut yd.as_view_mut(),
            )
            .unwrap();
            let mut acc = s.alloc_zeros::<i32>(m * n).unwrap();
            k.int8_products::<f16>(&s, &dw, &mut ws, None, &mut acc.as_view_mut())
                .unwrap();
            let y: Vec<u16> = s
                .clone_dtoh(&yd)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            outputs.push((y, s.clone_dtoh(&acc).unwrap()));
        }
        assert!(
            outputs[0].1 == outputs[1].1,
            "int32 products differ at {m} x {n} x {kk}"
        );
        assert!(
            outputs[0].0 == outputs[1].0,
            "y differs at {m} x {n} x {kk}"
        );
    }
}

#[test]
fn int8_errors_enqueue_nothing() {
    let Some((s, k)) = gpu() else { return };
    let (m, n, kk) = (3, 8, 64);
    let w = uniform_values(8, n * kk, 1.0);
    let weight = Int8Weight::prepare(&w, n, kk, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let dw = k.upload_int8_weight(&s, &weight).unwrap();
    let other = Int8Weight::prepare(&w, n, kk, Outliers::Fixed(vec![1])).unwrap();
    let dother = k.upload_int8_weight(&s, &other).unwrap();
    let mut ws = k.int8_workspace(&s, &dw, m, 4).unwrap();
    let x = s.clone_htod(&uniform_values(9, m * kk, 1.0)).unwrap();
    let mut y = s.clone_htod(&vec![7.0f32; m * n]).unwrap();
    let short = s.clone_htod(&vec![7.0f32; m * n - 1]).unwrap();
    let bad_bias = s.clone_htod(&vec![0.0f32; n + 1]).unwrap();
    let mut short = short;
    assert!(
        k.int8_matmul(
            &s,
            &dw,
            &mut ws,
            &x.as_view(),
            None,
            &mut short.as_view_mut()
        )
        .is_err()
    );
    assert!(
        k.int8_matmul(
            &s,
            &dw,
            &mut ws,
            &x.as_view(),
            Some(&bad_bias.as_view()),
            &mut y.as_view_mut()
        )
        .is_err()
    );
    assert!(
        k.int8_matmul(
            &s,
            &dother,
            &mut ws,
            &x.as_view(),
            None,
            &mut y.as_view_mut()
        )
        .is_err()
    );
    let big = s.clone_htod(&vec![0.0f32; (m + 1) * kk]).unwrap();
    let mut ybig = s.clone_htod(&vec![7.0f32; (m + 1) * n]).unwrap();
    assert!(
        k.int8_matmul(
            &s,
            &dw,
            &mut ws,
            &big.as_view(),
            None,
            &mut ybig.as_view_mut()
        )
        .is_err()
    );
    assert!(s.clone_dtoh(&y).unwrap().iter().all(|&v| v == 7.0));
    assert!(s.clone_dtoh(&ybig).unwrap().iter().all(|&v| v == 7.0));
    // m = 0 is a no-op
    let empty = s.alloc_zeros::<f32>(0).unwrap();
    let mut yempty = s.alloc_zeros::<f32>(0).unwrap();
    k.int8_matmul(
        &s,
        &dw,
        &mut ws,
        &empty.as_view(),
        None,
        &mut yempty.as_view_mut(),
    )
    .unwrap();
}

/// Runs the GEMV for x (rounded to T; `offset` elements into its buffer, so
/// a non-zero offset takes the unaligned path) and checks it.
fn run_gemv<T: CudaElement>(
    s: &Arc<CudaStream>,
    k: &Kernels,
    qw: &QuantizedWeight,
    x32: &[f32],
    bias: Option<&[f32]>,
    offset: usize,
) {
    let (xt, _) = rq::round_to::<T>(x32);
    let m = xt.len() / qw.k();
    let dw = k.upload_weight_only(s, qw).unwrap();
    let padded: Vec<T> = std::iter::repeat_n(T::from_f32(0.0), offset)
        .chain(xt.iter().copied())
        .collect();
    let xd = s.clone_htod(&padded).unwrap();
    let mut yd = s.clone_htod(&vec![poison::<T>(); m * qw.n()]).unwrap();
    let bd = bias.map(|b| s.clone_htod(b).unwrap());
    let bv = bd.as_ref().map(|b| b.as_view());
    k.weight_only_gemv(
        s,
        &dw,
        &xd.slice(offset..),
        bv.as_ref(),
        &mut yd.as_view_mut(),
    )
    .unwrap();
    let y = s.clone_dtoh(&yd).unwrap();
    rq::check_weight_only(&xt, qw, bias, &y).unwrap_or_else(|e| {
        panic!(
            "{} int{} m {m} n {} k {} offset {offset}: {e}",
            T::DTYPE.name(),
            qw.bits(),
            qw.n(),
            qw.k()
        )
    });
}

#[test]
fn weight_only_matches_reference() {
    let Some((s, k)) = gpu() else { return };
    let cases = [
        (1, 1, 32, 32),
        (1, 5, 64, 4096),
        (3, 130, 128, 256),
        (9, 17, 32, 96),
        (16, 64, 128, 512),
        (33, 4, 64, 128),
    ];
    for (idx, &(m, n, group, kk)) in cases.iter().enumerate() {
        let seed = 100 + idx as u64;
        let w = uniform_values(seed, n * kk, 1.0);
        let x = uniform_values(seed ^ 1, m * kk, 2.0);
        let bias = uniform_values(seed ^ 2, n, 1.0);
        for bits in [8, 4] {
            let qw = QuantizedWeight::quantize(&w, n, kk, bits, group).unwrap();
            for offset in [0, 1] {
                let b = (offset == 0).then_some(bias.as_slice());
                run_gemv::<f32>(&s, &k, &qw, &x, b, offset);
                run_gemv::<f16>(&s, &k, &qw, &x, b, offset);
                run_gemv::<bf16>(&s, &k, &qw, &x, b, offset);
            }
        }
    }
}

#[test]
fn weight_only_large_and_nan_activations() {
    let Some((s, k)) = gpu() else { return };
    let (m, n, kk) = (3, 20, 256);
    let w = uniform_values(11, n * kk, 1.0);
    let mut x = uniform_values(12, m * kk, 1.0);
    x[5] = 1.7e38;
    x[6] = (2.0f32).powi(100);
    for bits in [8, 4] {
        let qw = QuantizedWeight::quantize(&w, n, kk, bits, 128).unwrap();
        run_gemv::<f32>(&s, &k, &qw, &x, None, 0);
        run_gemv::<bf16>(&s, &k, &qw, &x, None, 0);
        // a NaN row is NaN, its neighbours unaffected
        let mut xn = x.clone();
        xn[kk + 7] = f32::NAN;
        let dw = k.upload_weight_only(&s, &qw).unwrap();
        let xd = s.clone_htod(&xn).unwrap();
        let mut yd = s.alloc_zeros::<f32>(m * n).unwrap();
        k.weight_only_gemv(&s, &dw, &xd.as_view(), None, &mut yd.as_view_mut())
            .unwrap();
        let y = s.clone_dtoh(&yd).unwrap();
        assert!(y[n..2 * n].iter().all(|v| v.is_nan()));
        let others: Vec<f32> = [&xn[..kk], &xn[2 * kk..]].concat();
        let yo: Vec<f32> = [&y[..n], &y[2 * n..]].concat();
        rq::check_weight_only(&others, &qw, None, &yo).unwrap();
    }
}

#[test]
fn weight_only_errors_enqueue_nothing() {
    let Some((s, k)) = gpu() else { return };
    let (n, kk) = (8, 64);
    let qw = QuantizedWeight::quantize(&uniform_values(13, n * kk, 1.0), n, kk, 4, 32).unwrap();
    let dw = k.upload_weight_only(&s, &qw).unwrap();
    let x = s.clone_htod(&vec![f16::from_f32(1.0); 2 * kk + 1]).unwrap();
    let mut y = s.clone_htod(&vec![f16::from_f32(7.0); 2 * n]).unwrap();
    let bad_bias = s.clone_htod(&vec![0.0f32; n - 1]).unwrap();
    assert!(
        k.weight_only_gemv(&s, &dw, &x.as_view(), None, &mut y.as_view_mut())
            .is_err()
    );
    let x2 = x.slice(..2 * kk);
    assert!(
        k.weight_only_gemv(
            &s,
            &dw,
            &x2,
            Some(&bad_bias.as_view()),
            &mut y.as_view_mut()
        )
        .is_err()
    );
    let mut y1 = y.slice_mut(..n);
    assert!(k.weight_only_gemv(&s, &dw, &x2, None, &mut y1).is_err());
    assert!(s.clone_dtoh(&y).unwrap().iter().all(|v| v.to_f32() == 7.0));
}

/// A small case of each kernel for compute-sanitizer (memcheck, racecheck).
#[test]
fn small_case_for_sanitizers() {
    let Some((s, k)) = gpu() else { return };
    let (m, n, kk) = (3, 20, 100);
    let x = spiked(14, m, kk, &[(1, 3, 20.0)]);
    let w = uniform_values(15, n * kk, 1.0);
    check_case(
        &s,
        &k,
        &x,
        &w,
        n,
        kk,
        Outliers::Dynamic { threshold: 6.0 },
        None,
    );
    check_case(&s, &k, &x, &w, n, kk, Outliers::Fixed(vec![3]), None);
    let qw = QuantizedWeight::quantize(&w[..n * 96], n, 96, 4, 32).unwrap();
    run_gemv::<bf16>(&s, &k, &qw, &x[..m * 96], None, 1);
}
