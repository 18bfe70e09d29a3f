//! LLM.int8() and weight-only products: every backend (portable, AVX-512
//! VNNI, AMX) x activation variant (ISA x dtype) x output dtype x outlier
//! mode; the int32 products bit for bit against exact integers; the
//! quantization bit for bit; results against the same quantized math in f64
//! and the unquantized product; the threshold boundary, no and all outliers,
//! m = 1, k and n off every tile; non-finite rows; errors write nothing.
//! Backends and variants this CPU lacks are skipped with a message.

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::parallel::Threads;
use transformer_kernels::qgemm::weight_only::{QuantizedWeight, WeightLayout};
use transformer_kernels::qgemm::{self, Backend, Int8Weight, Int8Workspace, Outliers};
use transformer_kernels::reference::qgemm as rq;
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Element, Error, Isa};

fn backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| {
            let ok = b.is_available();
            if !ok {
                eprintln!("SKIP backend {}: not available here", b.name());
            }
            ok
        })
        .collect()
}

/// Every (bits, layout) a weight-only weight can be stored in.
const LAYOUTS: [(u32, WeightLayout); 3] = [
    (8, WeightLayout::Panels),
    (4, WeightLayout::Panels),
    (4, WeightLayout::Rows),
];

fn isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
}

/// x `[m, k]`: uniform in [-2, 2], plus `spikes` columns holding one large value.
fn activations(seed: u64, m: usize, k: usize, spikes: &[(usize, usize, f32)]) -> Vec<f32> {
    let mut x = uniform_values(seed, m * k, 2.0);
    for &(i, c, v) in spikes {
        x[i * k + c] = v;
    }
    x
}

/// One product, checked (see `reference::qgemm::run_and_check`); panics
/// with the configuration on failure; returns the outlier columns used.
fn run_and_check<T: Element, U: Element>(
    x32: &[f32],
    w32: &[f32],
    weight: &Int8Weight,
    bias: Option<&[f32]>,
    backend: Backend,
    isa: Isa,
) -> Vec<u32> {
    rq::run_and_check::<T, U>(x32, w32, weight, bias, backend, isa).unwrap_or_else(|e| {
        panic!(
            "{} / {} / x {} / y {}: {e}",
            backend.name(),
            isa.name(),
            T::DTYPE.name(),
            U::DTYPE.name()
        )
    })
}

/// Every backend x ISA x input dtype x output dtype on one case.
fn check_all(x: &[f32], w: &[f32], n: usize, k: usize, outliers: Outliers, bias: Option<&[f32]>) {
    let weight = Int8Weight::prepare(w, n, k, outliers).unwrap();
    for b in backends() {
        for isa in isas() {
            run_and_check::<f32, f32>(x, w, &weight, bias, b, isa);
            run_and_check::<f16, f16>(x, w, &weight, bias, b, isa);
            run_and_check::<bf16, bf16>(x, w, &weight, bias, b, isa);
            run_and_check::<f32, bf16>(x, w, &weight, bias, b, isa);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn int8_products_match_references(
        m in prop::sample::select(vec![1usize, 2, 5, 6, 7, 16, 31, 32, 33, 40]),
        n in prop::sample::select(vec![1usize, 3, 15, 16, 17, 33, 64, 65, 100]),
        k in prop::sample::select(vec![1usize, 4, 63, 64, 65, 130, 256]),
        spikes in 0usize..4,
        fixed in any::<bool>(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let spike_list: Vec<(usize, usize, f32)> = (0..spikes)
            .map(|s| ((seed as usize + 3 * s) % m, (seed as usize / 7 + 11 * s) % k, if s % 2 == 0 { 25.0 } else { -9.0 }))
            .collect();
        let x = activations(seed, m, k, &spike_list);
        let w = uniform_values(seed ^ 0x5eed, n * k, 0.5);
        let bias = uniform_values(seed ^ 0xb1a5, n, 1.0);
        let outliers = if fixed {
            Outliers::Fixed(spike_list.iter().map(|s| s.1 as u32).collect())
        } else {
            Outliers::Dynamic { threshold: qgemm::DEFAULT_THRESHOLD }
        };
        check_all(&x, &w, n, k, outliers, with_bias.then_some(bias.as_slice()));
    }

    #[test]
    fn weight_only_matches_reference(
        m in 1usize..=16,
        n in prop::sample::select(vec![1usize, 3, 4, 5, 17, 64]),
        groups in 1usize..4,
        group in prop::sample::select(vec![32usize, 64, 128]),
        bits in prop::sample::select(vec![8u32, 4]),
        int4_rows in any::<bool>(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let k = group * groups;
        let w = uniform_values(seed, n * k, 1.0);
        let layout = if bits == 4 && int4_rows { WeightLayout::Rows } else { WeightLayout::Panels };
        let qw = QuantizedWeight::quantize_with_layout(&w, n, k, bits, group, layout).unwrap();
        let x = uniform_values(seed ^ 1, m * k, 2.0);
        let bias = uniform_values(seed ^ 2, n, 1.0);
        let bias = with_bias.then_some(bias.as_slice());
        for isa in isas() {
            check_weight_only::<f32>(&x, &qw, bias, isa);
            check_weight_only::<f16>(&x, &qw, bias, isa);
            check_weight_only::<bf16>(&x, &qw, bias, isa);
        }
    }
}

fn check_weight_only<T: Element>(
    x32: &[f32],
    qw: &QuantizedWeight,
    bias: Option<&[f32]>,
    isa: Isa,
) {
    if let Err(e) = rq::run_and_check_weight_only::<T>(x32, qw, bias, isa) {
        panic!("{} {} int{}: {e}", isa.name(), T::DTYPE.name(), qw.bits());
    }
}

#[test]
fn threshold_boundary_decides_outliers() {
    let (m, n, k) = (3, 20, 70);
    let below = f32::from_bits(6.0f32.to_bits() - 1);
    let x = activations(
        1,
        m,
        k,
        &[(0, 5, 6.0), (1, 9, -6.0), (2, 12, below), (1, 40, -below)],
    );
    let w = uniform_values(2, n * k, 1.0);
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    for b in backends() {
        for isa in isas() {
            let cols = run_and_check::<f32, f32>(&x, &w, &weight, None, b, isa);
            assert_eq!(cols, vec![5, 9], "{} {}", b.name(), isa.name());
            assert_eq!(cols, rq::outlier_columns(&x, m, k, 6.0));
        }
    }
}

/// A workspace reused for a call whose X has other outlier columns (or none)
/// finds that call's columns only, on one thread and several.
#[test]
fn reused_workspace_forgets_earlier_outliers() {
    let (m, n, k) = (300, 24, 256);
    let w = uniform_values(5, n * k, 1.0);
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let first = activations(6, m, k, &[(0, 3, 9.0), (299, 77, f32::NAN)]);
    let second = activations(7, m, k, &[(150, 8, -7.0)]);
    let quiet = activations(8, m, k, &[]);
    let mut ws = Int8Workspace::new(&weight, m, 4).unwrap();
    let mut y = vec![0f32; m * n];
    for t in [Threads::Single, Threads::Count(4)] {
        for (x, want) in [(&first, vec![3, 77]), (&second, vec![8]), (&quiet, vec![])] {
            weight.matmul(&mut ws).threads(t).run(x, &mut y).unwrap();
            assert_eq!(ws.outlier_columns(), want, "{t:?}");
        }
    }
}

#[test]
fn no_outliers_and_all_outliers() {
    let (m, n, k) = (9, 33, 100);
    let mut x = activations(3, m, k, &[(4, 7, 30.0)]);
    let w = uniform_values(4, n * k, 1.0);
    // no outliers: an infinite threshold quantizes even the spike
    check_all(
        &x,
        &w,
        n,
        k,
        Outliers::Dynamic {
            threshold: f32::INFINITY,
        },
        None,
    );
    // all outliers: every column nonzero and above a tiny threshold, so the
    // int8 part is empty and y is the f32 product
    for v in x.iter_mut() {
        if *v == 0.0 {
            *v = 1.0;
        }
    }
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 1e-30 }).unwrap();
    for b in backends() {
        let cols = run_and_check::<f32, f32>(&x, &w, &weight, None, b, Isa::Scalar);
        assert_eq!(cols.len(), k);
    }
    check_all(&x, &w, n, k, Outliers::Fixed((0..k as u32).collect()), None);
}

/// The weight-only kernels sum x q per group and scale once; activations of
/// 2^100 or more (or NaN) make the call scale each weight first instead, as
/// x q can overflow where x s q does not. A row holding 1.7e38 (x q is inf
/// for q >= 3) and one holding exactly 2^100 stay finite and within the
/// bound on every ISA, for f32 and bf16 activations; a NaN row is NaN and the
/// rows beside it are unchanged in quality.
#[test]
fn weight_only_large_and_nan_activations() {
    let (n, k) = (17, 256);
    let w = uniform_values(7, n * k, 1e-3);
    for (bits, layout) in LAYOUTS {
        for group in [32usize, 128] {
            let qw = QuantizedWeight::quantize_with_layout(&w, n, k, bits, group, layout).unwrap();
            let mut x = uniform_values(8, 3 * k, 2.0);
            x[5] = 1.7e38;
            x[k + 9] = 2f32.powi(100);
            for isa in isas() {
                check_weight_only::<f32>(&x, &qw, None, isa);
                check_weight_only::<bf16>(&x, &qw, None, isa);
                let mut xn = uniform_values(9, 3 * k, 2.0);
                xn[k + 3] = f32::NAN;
                let mut y = vec![0.0f32; 3 * n];
                qw.gemv(&xn).isa(isa).run(&mut y).unwrap();
                assert!(
                    y[n..2 * n].iter().all(|v| v.is_nan()),
                    "{} NaN row",
                    isa.name()
                );
                for r in [0, 2] {
                    let (xr, yr) = (&xn[r * k..(r + 1) * k], &y[r * n..(r + 1) * n]);
                    rq::check_weight_only(xr, &qw, None, yr).unwrap_or_else(|e| {
                        panic!("{} int{bits} g{group} row {r}: {e}", isa.name())
                    });
                }
            }
        }
    }
}

#[test]
fn non_finite_and_zero_rows() {
    let (m, n, k) = (6, 17, 80);
    // row 0 all zero; row 1 a NaN in an outlier column (dynamic: NaN is an
    // outlier); row 2 an inf; row 3 huge but finite (1e30)
    let mut x = activations(
        5,
        m,
        k,
        &[(1, 3, f32::NAN), (2, 8, f32::INFINITY), (3, 10, 1e30)],
    );
    for v in &mut x[..k] {
        *v = 0.0;
    }
    let w = uniform_values(6, n * k, 1.0);
    check_all(&x, &w, n, k, Outliers::Dynamic { threshold: 6.0 }, None);
    // fixed mode with the same columns not listed: rows 1 and 2 get a NaN
    // scale and a NaN output row; row 3 quantizes around 1e30
    check_all(&x, &w, n, k, Outliers::Fixed(vec![50]), None);
}

/// A dynamic-outlier case (values from `seed`) on every backend with the
/// last ISA's quantizer, f32 -> f32 and, with `bf16_in`, bf16 -> f16; returns x.
fn check_every_backend(
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    spikes: &[(usize, usize, f32)],
    bf16_in: bool,
) -> Vec<f32> {
    let x = activations(seed, m, k, spikes);
    let w = uniform_values(seed + 1, n * k, 0.3);
    let bias = uniform_values(seed + 2, n, 1.0);
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let isa = isas()[isas().len() - 1];
    for b in backends() {
        run_and_check::<f32, f32>(&x, &w, &weight, Some(&bias), b, isa);
        if bf16_in {
            run_and_check::<bf16, f16>(&x, &w, &weight, Some(&bias), b, isa);
        }
    }
    x
}

#[test]
fn large_shapes_on_every_backend() {
    // k and n spanning several panels and AMX blocks, m off the 6- and 32-row blocks
    check_every_backend(70, 200, 1000, 7, &[(3, 17, 12.0), (50, 900, -40.0)], true);
}

#[test]
fn long_k_and_many_rows_and_channels() {
    // AMX's blocking: two row groups (128 + 33 rows), k_pad 8320 in three
    // passes with partial sums in the scratch, channels in chunks of 512 (the
    // last one 88, off the 32-channel strips)
    let (m, k) = (161, 8300);
    let x = check_every_backend(m, 600, k, 11, &[(5, 4100, 30.0), (160, 8299, -8.0)], false);
    let isa = isas()[isas().len() - 1];
    // On two threads each worker's partial sums must be its own: with 2048
    // channels a worker's tile is 512 wide, so partial-sum regions that
    // overlapped would be written by both while in use. The same bits as one
    // thread; AMX's threaded call repeated, as a race shows only when the
    // workers overlap in time (a call takes ~2 ms; checked: with the regions
    // overlapping, one call missed it once in three runs, eight never did).
    let n = 2048;
    let w = uniform_values(14, n * k, 0.3);
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let mut ws = Int8Workspace::new(&weight, m, 8).unwrap();
    for b in backends() {
        let mut one = vec![0f32; m * n];
        weight
            .matmul(&mut ws)
            .backend(b)
            .isa(isa)
            .run(&x, &mut one)
            .unwrap();
        for _ in 0..if b == Backend::Amx { 8 } else { 1 } {
            let mut two = vec![1f32; m * n];
            let call = weight.matmul(&mut ws).backend(b).isa(isa);
            call.threads(Threads::Count(2)).run(&x, &mut two).unwrap();
            let same = one
                .iter()
                .zip(&two)
                .all(|(a, c)| a.to_bits() == c.to_bits());
            assert!(same, "{}: 2 threads differ from one", b.name());
        }
    }
}

/// int4's two layouts hold the same values and scales; int8 has one.
#[test]
fn weight_layouts_hold_the_same_weight() {
    let (n, k) = (21, 192);
    let w = uniform_values(12, n * k, 2.0);
    let panels =
        QuantizedWeight::quantize_with_layout(&w, n, k, 4, 64, WeightLayout::Panels).unwrap();
    let rows = QuantizedWeight::quantize_with_layout(&w, n, k, 4, 64, WeightLayout::Rows).unwrap();
    assert_eq!(
        (panels.layout(), rows.layout()),
        (WeightLayout::Panels, WeightLayout::Rows)
    );
    for j in 0..n {
        for c in 0..k {
            assert_eq!(panels.value(j, c), rows.value(j, c), "W[{j}, {c}]");
        }
        for g in 0..k / 64 {
            assert_eq!(panels.scale(j, g), rows.scale(j, g));
        }
    }
    // panels pad n to 16: 32 channels of k / 2 bytes
    assert_eq!(panels.bytes(), 32 * (k / 2 + 4 * k / 64));
    assert_eq!(rows.bytes(), n * (k / 2 + 4 * k / 64));
    let default = QuantizedWeight::quantize(&w, n, k, 4, 64).unwrap();
    assert_eq!(default.layout(), WeightLayout::default_for(4));
    assert_eq!(WeightLayout::default_for(8), WeightLayout::Panels);
    assert!(QuantizedWeight::quantize_with_layout(&w, n, k, 8, 64, WeightLayout::Rows).is_err());
}

#[test]
fn weight_quantization_is_within_half_a_step() {
    let (n, k) = (5, 256);
    let w = uniform_values(10, n * k, 3.0);
    for (bits, layout) in LAYOUTS {
        let qw = QuantizedWeight::quantize_with_layout(&w, n, k, bits, 64, layout).unwrap();
        let qmax = if bits == 8 { 127.0 } else { 7.0 };
        for j in 0..n {
            for g in 0..k / 64 {
                let amax = w[j * k + g * 64..j * k + g * 64 + 64]
                    .iter()
                    .fold(0.0f32, |a, v| a.max(v.abs()));
                for c in g * 64..g * 64 + 64 {
                    let err = (qw.dequantized(j, c) - w[j * k + c]).abs();
                    assert!(
                        err <= amax / qmax / 2.0 * (1.0 + 1e-5),
                        "bits {bits} j {j} c {c}: {err}"
                    );
                    assert!((qw.value(j, c) as f32).abs() <= qmax);
                }
            }
        }
    }
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Fixed(vec![3, 100])).unwrap();
    for j in 0..n {
        let row = weight.quantized_row(j);
        assert_eq!(
            (row[3], row[100]),
            (0, 0),
            "fixed outlier columns leave the int8 part"
        );
        let amax = (0..k)
            .filter(|&c| c != 3 && c != 100)
            .fold(0.0f32, |a, c| a.max(w[j * k + c].abs()));
        assert_eq!(weight.scales()[j], amax / 127.0);
    }
}

#[test]
fn errors_write_nothing() {
    let (m, n, k) = (4, 8, 64);
    let x = activations(11, m, k, &[(0, 1, 10.0), (1, 2, 10.0), (2, 3, 10.0)]);
    let w = uniform_values(12, n * k, 1.0);
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let poison = transformer_kernels::reference::poison::<f32>();
    let untouched = |y: &[f32]| y.iter().all(|v| v.to_bits() == poison.to_bits());
    // too many outlier columns for the workspace
    let mut ws = Int8Workspace::new(&weight, m, 2).unwrap();
    let mut y = vec![poison; m * n];
    assert!(matches!(
        weight.matmul(&mut ws).run(&x, &mut y),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(untouched(&y));
    // more rows than the workspace holds
    let mut ws = Int8Workspace::new(&weight, m - 1, 8).unwrap();
    assert!(weight.matmul(&mut ws).run(&x, &mut y).is_err());
    assert!(untouched(&y));
    let mut ws = Int8Workspace::new(&weight, m, 8).unwrap();
    // wrong y, bias, x lengths
    let mut short = vec![poison; m * n - 1];
    assert!(matches!(
        weight.matmul(&mut ws).run(&x, &mut short),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(untouched(&short));
    assert!(
        weight
            .matmul(&mut ws)
            .bias(&[0.0; 3])
            .run(&x, &mut y)
            .is_err()
    );
    assert!(matches!(
        weight.matmul(&mut ws).run(&x[1..], &mut y),
        Err(Error::LengthNotMultiple { .. })
    ));
    assert!(untouched(&y));
    // a workspace made for another weight
    let other = Int8Weight::prepare(&w[..4 * k], 4, k, Outliers::Fixed(vec![])).unwrap();
    let mut ows = Int8Workspace::new(&other, m, 8).unwrap();
    assert!(weight.matmul(&mut ows).run(&x, &mut y).is_err());
    assert!(untouched(&y));
    // bad preparation input
    assert!(Int8Weight::prepare(&w, n, k, Outliers::Fixed(vec![64])).is_err());
    assert!(Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 0.0 }).is_err());
    let mut wn = w.clone();
    wn[5] = f32::NAN;
    assert!(Int8Weight::prepare(&wn, n, k, Outliers::Fixed(vec![])).is_err());
    assert!(QuantizedWeight::quantize(&w, n, k, 8, 48).is_err());
    assert!(QuantizedWeight::quantize(&w, n, k, 5, 64).is_err());
    // weight-only: short workspace, wrong y
    let qw = QuantizedWeight::quantize(&w, n, k, 4, 32).unwrap();
    let mut tiny = vec![0.0f32; 3];
    assert!(qw.gemv(&x).workspace(&mut tiny).run(&mut y).is_err());
    assert!(qw.gemv(&x).run(&mut short).is_err());
    assert!(untouched(&y) && untouched(&short));
}

#[test]
fn every_activation_variant_is_listed() {
    let names: Vec<&str> = qgemm::variants().iter().map(|v| v.name).collect();
    for d in Dtype::ALL {
        assert!(names.contains(&format!("tk_qgemm_{}_scalar", d.name()).as_str()));
    }
}

/// The int8 VNNI path (4-16 rows, X split exactly into int8 digits) sums each
/// group exactly, then rounds in f64 and once to y: it must land within one
/// f32 and one output rounding of the f64 product of the same quantized
/// math, far inside the SIMD kernels' `(k + 2) u sum |x w|`, so a lost digit
/// plane, a wrong +128 correction or a misplaced scale fails here (and so
/// would a silent decline on these exactly splittable X). f32 X that the
/// split cannot hold (full significands 2^7 apart in one group) declines and
/// the SIMD kernel's result meets the general bound.
#[test]
fn weight_only_vnni_sums_exactly() {
    use transformer_kernels::qgemm::weight_only;
    if !(Isa::Avx512.is_available() && weight_only::vnni_available()) {
        eprintln!("SKIP weight_only_vnni_sums_exactly: no AVX-512 VNNI here");
        return;
    }
    let shapes = [
        (4, 1, 32, 32),
        (4, 17, 128, 32),
        (5, 40, 384, 128),
        (6, 16, 256, 64),
        (7, 33, 4096, 128),
        (11, 20, 512, 64), // on AMX: 33-66 digit rows, a partial tile
        (16, 64, 1024, 1024),
    ];
    for (s, &(m, n, k, group)) in shapes.iter().enumerate() {
        let w = uniform_values(s as u64, n * k, 1.0);
        let mut x = uniform_values(100 + s as u64, m * k, 3.0);
        x[0] = 0.0;
        if k > 64 {
            x[k - 1] = 6.0e4; // a wide group: 5 or 6 digits
        }
        let bias = uniform_values(200 + s as u64, n, 1.0);
        for bits in [8, 4] {
            let qw =
                QuantizedWeight::quantize_with_layout(&w, n, k, bits, group, WeightLayout::Panels)
                    .unwrap();
            for b in [None, Some(bias.as_slice())] {
                vnni_exact::<f16>(&x, &qw, b);
                vnni_exact::<bf16>(&x, &qw, b);
                let (_, xb) = rq::round_to::<bf16>(&x); // f32 values the split holds
                vnni_exact::<f32>(&xb, &qw, b);
            }
        }
    }
    // Wide exponents (int8 mantissas times 2^-40..2^10): groups of 5 and 6
    // digits and groups the split must decline, each checked by the helper
    // against the general bound and, where `vnni_splits`, the exact one.
    for seed in 0..24u64 {
        let bits = [8, 4][seed as usize % 2];
        wide_exponents(seed, 4 + seed as usize % 5, bits, Isa::Avx512);
    }
    // Declines: full f32 significands far apart; and a NaN.
    let (n, k) = (17, 128);
    for bits in [8, 4] {
        let w = uniform_values(9, n * k, 1.0);
        let qw = QuantizedWeight::quantize_with_layout(&w, n, k, bits, 64, WeightLayout::Panels)
            .unwrap();
        let mut x = uniform_values(10, 4 * k, 1.0);
        x[k + 3] = 1.0 + f32::EPSILON;
        x[k + 4] = 1.0e-3 * (1.0 + f32::EPSILON);
        check_weight_only::<f32>(&x, &qw, None, Isa::Avx512);
        x[k + 7] = f32::NAN;
        let mut y = vec![0.0f32; 4 * n];
        qw.gemv(&x).isa(Isa::Avx512).run(&mut y).unwrap();
        assert!(y[n..2 * n].iter().all(|v| v.is_nan()));
        assert!(y[..n].iter().chain(&y[2 * n..]).all(|v| v.is_finite()));
    }
}

/// m rows of int8 mantissas times 2^-40..2^(span - 41), span 10..56 binades
/// by seed (groups of 5 and 6 digits, and groups the digit split declines),
/// int`bits` panels: the general bound on `isa` and, where the split holds,
/// the exact one (`check_weight_only` checks both).
fn wide_exponents(seed: u64, m: usize, bits: u32, isa: Isa) {
    let (n, k, group) = (19, 256, [32, 64, 128][seed as usize % 3]);
    let w = uniform_values(seed, n * k, 1.0);
    let qw =
        QuantizedWeight::quantize_with_layout(&w, n, k, bits, group, WeightLayout::Panels).unwrap();
    let mant = uniform_values(seed + 50, m * k, 127.0);
    let span = 10 + seed as i32 * 2;
    let x: Vec<f32> = mant
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.round() * 2f32.powi(((i * 7919 + seed as usize) % span as usize) as i32 - 40)
        })
        .collect();
    check_weight_only::<f32>(&x, &qw, None, isa);
    check_weight_only::<bf16>(&x, &qw, None, isa);
    let xh: Vec<f32> = x.iter().map(|v| v * 2f32.powi(-12)).collect(); // y finite in f16
    check_weight_only::<f16>(&xh, &qw, None, isa);
}

/// The exact contract on AVX-512; where AMX-INT8 is available the int8
/// panels run on the tiles by default, so the VNNI loop is checked too (AMX
/// off), and the two must give the same bits.
fn vnni_exact<T: Element>(x32: &[f32], qw: &QuantizedWeight, bias: Option<&[f32]>) {
    digits_exact::<T>(x32, qw, bias, Isa::Avx512);
    if qw.bits() == 8 && transformer_kernels::qgemm::weight_only::amx_int8_available() {
        let (x, _) = rq::round_to::<T>(x32);
        let run = |amx: bool| {
            let mut y =
                vec![transformer_kernels::reference::poison::<T>(); x.len() / qw.k() * qw.n()];
            let mut call = qw.gemv(&x).isa(Isa::Avx512).amx(amx);
            if let Some(b) = bias {
                call = call.bias(b);
            }
            call.run(&mut y).unwrap();
            y
        };
        let (tiles, vnni) = (run(true), run(false));
        if let Err(e) = rq::check_weight_only_exact(&x, qw, bias, &vnni) {
            panic!("VNNI loop, {} k {}: {e}", T::DTYPE.name(), qw.k());
        }
        assert!(
            bytemuck::cast_slice::<T, u8>(&tiles) == bytemuck::cast_slice::<T, u8>(&vnni),
            "AMX tiles and VNNI loop differ ({} k {})",
            T::DTYPE.name(),
            qw.k()
        );
    }
}

/// One call on `isa` (whose exact digit path takes these X) meets the exact
/// contract.
fn digits_exact<T: Element>(x32: &[f32], qw: &QuantizedWeight, bias: Option<&[f32]>, isa: Isa) {
    let (x, _) = rq::round_to::<T>(x32);
    assert!(rq::vnni_splits(&x, qw.group()), "these X split exactly");
    let mut y = vec![transformer_kernels::reference::poison::<T>(); x.len() / qw.k() * qw.n()];
    let mut call = qw.gemv(&x).isa(isa);
    if let Some(b) = bias {
        call = call.bias(b);
    }
    call.run(&mut y).unwrap();
    if let Err(e) = rq::check_weight_only_exact(&x, qw, bias, &y) {
        panic!("{} k {}: {e}", T::DTYPE.name(), qw.k());
    }
}

/// The AVX2 int4 path (1-16 rows, int4 panels, X split exactly into int8
/// digits as on VNNI, `vpmaddubsw` with 16-bit sums) has the VNNI path's
/// exact contract: with f32 output it is far tighter than the SIMD kernel's
/// f32 sums meet, so a lost plane, a 16-bit sum that wrapped, a wrong +8
/// correction, a row given another row's split or a silent decline fails
/// here. Rows with different digit counts per group share a call. Wide
/// exponents (groups of 5 and 6 digits, and groups it declines) meet the
/// general bound, exact where they split; a row that does not split sends
/// the whole call to the SIMD kernel; a NaN row is NaN.
#[test]
fn weight_only_int4_avx2_sums_exactly() {
    if !Isa::Avx2.is_available() {
        eprintln!("SKIP weight_only_int4_avx2_sums_exactly: no AVX2 here");
        return;
    }
    let shapes = [
        (1, 32, 32),
        (17, 128, 32),
        (40, 384, 128),
        (16, 256, 64),
        (33, 4096, 128),
        (64, 1024, 1024),
    ];
    for (s, &(n, k, group)) in shapes.iter().enumerate() {
        let w = uniform_values(s as u64, n * k, 1.0);
        // x up to 15 in magnitude: with every nibble at 7 or -8 the 16-bit
        // sums of 4 lines come near their limit
        let mut x = uniform_values(100 + s as u64, k, 15.0);
        x[0] = 0.0;
        if k > 64 {
            x[k - 1] = 6.0e4; // a wide group: 5 or 6 digits
        }
        let bias = uniform_values(200 + s as u64, n, 1.0);
        for w in [
            w.clone(),
            w.iter()
                .map(|v| if *v > 0.0 { 1.0 } else { -1.0 })
                .collect(),
        ] {
            let qw =
                QuantizedWeight::quantize_with_layout(&w, n, k, 4, group, WeightLayout::Panels)
                    .unwrap();
            assert!(qw.int4_avx2_applies(1, Isa::Avx2) && qw.int4_avx2_applies(16, Isa::Avx2));
            assert!(!qw.int4_avx2_applies(17, Isa::Avx2));
            // one row, then three with their own digit counts: a small one, the
            // wide one and its negation scaled by 2^-9
            let small = uniform_values(300 + s as u64, k, 0.5);
            let rows3: Vec<f32> = small
                .iter()
                .chain(&x)
                .copied()
                .chain(x.iter().map(|v| -v / 512.0))
                .collect();
            for xs in [&x, &rows3] {
                for b in [None, Some(bias.as_slice())] {
                    digits_exact::<f16>(xs, &qw, b, Isa::Avx2);
                    digits_exact::<bf16>(xs, &qw, b, Isa::Avx2);
                    let (_, xb) = rq::round_to::<bf16>(xs); // f32 values the split holds
                    digits_exact::<f32>(&xb, &qw, b, Isa::Avx2);
                }
            }
        }
    }
    // The 16-bit sums at their limit: every nibble 7 (15 after the +8) and
    // the two low digit planes -128 at every k, so 4 lines of two pairs
    // each sum to -30720.
    let (n, k) = (16, 256);
    let ones = QuantizedWeight::quantize_with_layout(
        &vec![1.0; n * k],
        n,
        k,
        4,
        128,
        WeightLayout::Panels,
    )
    .unwrap();
    let x = vec![-(1.0 + 2f32.powi(-6) - 2f32.powi(-14)); k];
    digits_exact::<f32>(&x, &ones, None, Isa::Avx2);
    for seed in 0..24u64 {
        wide_exponents(seed, [1, 2, 5, 16][seed as usize % 4], 4, Isa::Avx2);
    }
    let (n, k) = (17, 128);
    let w = uniform_values(9, n * k, 1.0);
    let qw = QuantizedWeight::quantize_with_layout(&w, n, k, 4, 64, WeightLayout::Panels).unwrap();
    let mut x = uniform_values(10, k, 1.0);
    x[3] = 1.0 + f32::EPSILON; // full f32 significands far apart: declines
    x[4] = 1.0e-3 * (1.0 + f32::EPSILON);
    check_weight_only::<f32>(&x, &qw, None, Isa::Avx2);
    // the same row second of two: the call declines as a whole
    let two: Vec<f32> = uniform_values(11, k, 1.0)
        .into_iter()
        .chain(x.clone())
        .collect();
    check_weight_only::<f32>(&two, &qw, None, Isa::Avx2);
    x[7] = f32::NAN;
    let mut y = vec![0.0f32; n];
    qw.gemv(&x).isa(Isa::Avx2).run(&mut y).unwrap();
    assert!(y.iter().all(|v| v.is_nan()));
}

/// The integer peak probes the report divides by: each returns the int8 (or
/// int16) operations it did, 2 per multiply-add, where its unit runs here.
#[test]
fn unit_probes_count_their_operations() {
    type Probe = fn(usize) -> Option<f64>;
    let probes: [(&str, Probe, Backend, f64); 3] = [
        (
            "amx",
            qgemm::amx_probe,
            Backend::Amx,
            4.0 * 16.0 * 16.0 * 64.0 * 2.0,
        ),
        (
            "vnni",
            qgemm::vnni_probe,
            Backend::Avx512Vnni,
            12.0 * 64.0 * 2.0,
        ),
        ("madd", qgemm::madd_probe, Backend::Avx2, 12.0 * 16.0 * 2.0),
    ];
    for (name, probe, backend, per_round) in probes {
        match probe(3) {
            Some(ops) => assert_eq!(ops, 3.0 * per_round, "{name}"),
            None => assert!(!backend.is_available(), "{name}: None where it runs"),
        }
    }
}
