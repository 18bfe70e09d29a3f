//! Property tests: every softmax variant x dtype x (softmax, log-softmax) x
//! (out-of-place, in-place) against the f64 reference, within the documented
//! bound, with poisoned outputs and unaligned buffers. Variants whose ISA this
//! CPU lacks are skipped with a message.

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::softmax::{self, Algorithm, Softmax, Variant};
use transformer_kernels::{Dtype, Element, Error, Isa, reference};

fn runnable(v: &Variant) -> bool {
    if v.isa.is_available() {
        return true;
    }
    eprintln!("SKIP {}: this CPU lacks {}", v.name, v.isa.name());
    false
}

/// Checks one call of `variant` on `x` (rows of `cols`) against the reference.
fn check_variant<T: Element>(
    variant: &Variant,
    x32: &[f32],
    cols: usize,
    scale: f32,
    log: bool,
    offset: usize,
) {
    // inputs rounded to T; the reference sees exactly what the kernel reads
    let xt: Vec<T> = x32.iter().map(|&v| T::from_f32(v)).collect();
    let xr: Vec<f32> = xt.iter().map(|v| v.to_f32()).collect();
    let opts = Softmax::new()
        .scale(scale)
        .log(log)
        .isa(variant.isa)
        .algorithm(variant.algorithm);

    // out of place, both buffers shifted off their natural alignment
    let mut xbuf = vec![reference::poison::<T>(); offset + xt.len()];
    xbuf[offset..].copy_from_slice(&xt);
    let mut ybuf = vec![reference::poison::<T>(); offset + 1 + xt.len()];
    let y = &mut ybuf[offset + 1..];
    opts.run(&xbuf[offset..], y, cols).unwrap();
    compare(variant, &xr, y, cols, scale, log, "out-of-place");

    // in place
    let mut inplace = xt.clone();
    opts.run_inplace(&mut inplace, cols).unwrap();
    compare(variant, &xr, &inplace, cols, scale, log, "in-place");
}

fn compare<T: Element>(
    variant: &Variant,
    x: &[f32],
    y: &[T],
    cols: usize,
    scale: f32,
    log: bool,
    mode: &str,
) {
    if let Some(i) = y
        .iter()
        .position(|v| reference::same_bits(*v, reference::poison::<T>()))
    {
        panic!("{} {mode}: element {i} not written", variant.name);
    }
    if let Err(msg) = reference::softmax::check(x, y, cols, scale, log, variant.algorithm, false) {
        panic!(
            "{} {mode} log={log} scale={scale} cols={cols}: {msg}",
            variant.name
        );
    }
}

fn check_all(x: &[f32], cols: usize, scale: f32, offset: usize) {
    check_modes(x, cols, scale, offset, &[false, true]);
}

fn check_modes(x: &[f32], cols: usize, scale: f32, offset: usize, logs: &[bool]) {
    for v in softmax::variants().iter().filter(|v| runnable(v)) {
        for &log in logs {
            match v.dtype {
                Dtype::F32 => check_variant::<f32>(v, x, cols, scale, log, offset),
                Dtype::F16 => check_variant::<f16>(v, x, cols, scale, log, offset),
                Dtype::Bf16 => check_variant::<bf16>(v, x, cols, scale, log, offset),
            }
        }
    }
}

/// Row lengths: 1, primes, non-multiples of every vector width and unroll,
/// block edges, and (rarely) rows longer than the 2 MiB L2.
fn cols_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..=70,
        3 => prop::sample::select(vec![1usize, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 257, 1021, 2047, 2048, 2049, 4099]),
        2 => 70usize..5000,
        1 => prop::sample::select(vec![600_011usize, 1 << 19]),
    ]
}

/// Values: logits at several magnitudes, with extremes mixed in.
fn value_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -10.0f32..10.0,
        3 => -300.0f32..300.0,
        1 => -3.0e4f32..3.0e4,
        1 => prop::sample::select(vec![f32::NEG_INFINITY, -1.0e30, 1.0e30, 0.0, -0.0, 1.0e-40, 88.0, -104.0, 1.0e6]),
    ]
}

fn case_strategy() -> impl Strategy<Value = (usize, Vec<f32>, f32, usize)> {
    (
        cols_strategy(),
        1usize..4,
        prop::sample::select(vec![1.0f32, 1.0, 0.125, 2.5, -1.0, 0.0]),
        0usize..4,
    )
        .prop_flat_map(|(cols, rows, scale, offset)| {
            let n = cols * rows;
            let values = if n > 100_000 {
                // long rows: a cheap strategy (a few seeds expanded) keeps shrinking fast
                (any::<u64>(), -20.0f32..20.0)
                    .prop_map(move |(seed, amp)| reference::uniform_values(seed, n, amp))
                    .boxed()
            } else {
                prop::collection::vec(value_strategy(), n).boxed()
            };
            (Just(cols), values, Just(scale), Just(offset))
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/regressions/softmax.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_variant_matches_reference((cols, x, scale, offset) in case_strategy()) {
        check_all(&x, cols, scale, offset);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Strided rows: the same results as the compacted rows, gaps untouched.
    #[test]
    fn strided_rows_match_and_leave_gaps((rows, cols, xpad, ypad, seed) in (1usize..5, 1usize..300, 0usize..20, 0usize..20, any::<u64>())) {
        let (xs, ys) = (cols + xpad, cols + ypad);
        let x = reference::uniform_values(seed, (rows - 1) * xs + cols, 30.0);
        let compact: Vec<f32> = (0..rows).flat_map(|r| x[r * xs..r * xs + cols].to_vec()).collect();
        let poison = reference::poison::<f32>();
        for v in softmax::variants().iter().filter(|v| runnable(v) && v.dtype == Dtype::F32) {
            let mut y = vec![poison; (rows - 1) * ys + cols];
            Softmax::new().isa(v.isa).algorithm(v.algorithm).run_strided(&x, xs, &mut y, ys, rows, cols).unwrap();
            let got: Vec<f32> = (0..rows).flat_map(|r| y[r * ys..r * ys + cols].to_vec()).collect();
            let mut want = vec![0.0f32; compact.len()];
            Softmax::new().isa(v.isa).algorithm(v.algorithm).run(&compact, &mut want, cols).unwrap();
            prop_assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            for r in 0..rows - 1 {
                prop_assert!(y[r * ys + cols..(r + 1) * ys].iter().all(|&v| reference::same_bits(v, poison)), "{}: gap written", v.name);
            }
        }
    }
}

#[test]
fn strided_shape_errors() {
    let x = [0.0f32; 10];
    let mut y = [0.0f32; 10];
    let s = Softmax::new();
    assert!(matches!(
        s.run_strided(&x, 2, &mut y, 4, 2, 3),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        s.run_strided(&x, 4, &mut y, 4, 3, 3),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        s.run_strided(&x, usize::MAX, &mut y, 4, 3, 3),
        Err(Error::Overflow { .. })
    ));
    s.run_strided(&x, 4, &mut y, 4, 3, 2).unwrap();
    assert_eq!(y[2..4], [0.0, 0.0]);
}

#[test]
fn huge_and_equal_values_do_not_overflow() {
    let cols = 100_003;
    // many equal large values: a naive sum of exp overflows f32
    check_all(&vec![88.0f32; cols], cols, 1.0, 1);
    check_all(&[1.0e30f32; 17], 17, 1.0, 0);
    // |z log2 e| overflows f32 here (found by the fuzzer): softmax keeps its
    // structure; log-softmax saturates beyond 2^126 ln 2 (documented)
    check_modes(&[3.0e38f32], 1, 1.0, 0, &[false]);
    check_modes(&[-3.0e38f32; 21], 21, 1.0, 0, &[false]);
    check_modes(&[-1.0e38f32; 40], 40, 1.0, 2, &[false]);
    let mut mixed = vec![-1.0e30f32; 40];
    mixed[7] = 1.0e30;
    mixed[21] = 1.0e30;
    check_all(&mixed, 40, 1.0, 3);
    // exact ties among huge values give exactly 1/2
    let mut y = vec![0.0f32; 40];
    softmax::softmax(&mixed, &mut y, 40).unwrap();
    assert_eq!((y[7], y[21], y[0]), (0.5, 0.5, 0.0));
}

#[test]
fn neg_inf_gives_zero_and_nan_stays_in_its_row() {
    let cols = 37;
    let mut x: Vec<f32> = (0..3 * cols).map(|i| (i % 11) as f32 * 0.3).collect();
    x[5] = f32::NEG_INFINITY; // row 0: exactly 0 there
    x[cols + 9] = f32::NAN; // row 1: all NaN
    for v in softmax::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        let mut y = vec![0.0f32; x.len()];
        Softmax::new()
            .isa(v.isa)
            .algorithm(v.algorithm)
            .run(&x, &mut y, cols)
            .unwrap();
        assert_eq!(y[5], 0.0, "{}", v.name);
        assert!(y[cols..2 * cols].iter().all(|v| v.is_nan()), "{}", v.name);
        assert!(
            y[..cols]
                .iter()
                .chain(&y[2 * cols..])
                .all(|v| v.is_finite()),
            "{}",
            v.name
        );
        Softmax::new()
            .log(true)
            .isa(v.isa)
            .algorithm(v.algorithm)
            .run(&x, &mut y, cols)
            .unwrap();
        assert_eq!(y[5], f32::NEG_INFINITY, "{}", v.name);
    }
    check_all(&x, cols, 1.0, 0);
}

/// One NaN or +inf at any place in a row makes that row NaN and leaves the
/// others alone, on every variant and dtype. The AVX2 three-pass kernel finds
/// them from its sum, not its max (`vmaxps` can drop a NaN, and with it the
/// maximum before it): so the row's largest finite value is put first or last,
/// and the row is long enough for the unrolled loops and a tail.
#[test]
fn nan_or_inf_anywhere_makes_its_row_nan() {
    let cols = 77;
    for bad in [f32::NAN, f32::INFINITY] {
        for big_at in [0, cols - 1] {
            for pos in (0..cols).filter(|&p| p != big_at) {
                let mut x: Vec<f32> = (0..2 * cols).map(|i| (i % 13) as f32 * 0.25).collect();
                x[big_at] = 9.0;
                x[pos] = bad;
                check_all(&x, cols, 1.0, 0);
            }
        }
    }
}

#[test]
fn all_neg_inf_row_is_nan() {
    for v in softmax::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        for log in [false, true] {
            let x = vec![f32::NEG_INFINITY; 19];
            let mut y = vec![0.0f32; 19];
            Softmax::new()
                .log(log)
                .isa(v.isa)
                .algorithm(v.algorithm)
                .run(&x, &mut y, 19)
                .unwrap();
            assert!(y.iter().all(|v| v.is_nan()), "{} log={log}", v.name);
        }
    }
}

#[test]
fn bad_shapes_are_typed_errors_and_write_nothing() {
    let x = [1.0f32; 10];
    let mut y = [reference::poison::<f32>(); 10];
    let untouched = |y: &[f32]| {
        y.iter()
            .all(|v| reference::same_bits(*v, reference::poison::<f32>()))
    };
    assert_eq!(
        softmax::softmax(&x, &mut y, 3),
        Err(Error::LengthNotMultiple {
            what: "softmax input",
            len: 10,
            cols: 3
        })
    );
    assert!(untouched(&y));
    assert!(matches!(
        softmax::softmax(&x, &mut y, 0),
        Err(Error::ZeroSize { .. })
    ));
    assert!(matches!(
        softmax::softmax(&x, &mut y[..5], 5),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        Softmax::new().scale(f32::NAN).run(&x, &mut y, 5),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Softmax::new().scale(f32::INFINITY).run_inplace(&mut y, 5),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(untouched(&y));
    // empty input is fine and does nothing
    softmax::softmax::<f32>(&[], &mut [], 4).unwrap();
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        assert_eq!(
            Softmax::new().isa(isa).run(&x, &mut y, 5),
            Err(Error::UnsupportedIsa { isa })
        );
    }
}

#[test]
fn every_isa_and_dtype_has_both_algorithms() {
    for dtype in Dtype::ALL {
        for isa in Isa::ALL {
            #[cfg(not(target_arch = "x86_64"))]
            if isa != Isa::Scalar {
                continue;
            }
            for algorithm in Algorithm::ALL {
                assert!(
                    softmax::find(dtype, isa, algorithm).is_some(),
                    "{dtype:?} {isa:?} {algorithm:?}"
                );
            }
        }
    }
}
