//! Property tests: every norm variant (ISA x dtype) x kind (LayerNorm, RMSNorm,
//! CRMSNorm, Channel) x fusion (residual in place or not, gamma/beta in f32 or
//! the dtype, output scale, y and/or int8) against the f64 reference, forward
//! and backward, within the documented bounds and with poisoned outputs.
//! Variants whose ISA this CPU lacks are skipped with a message.

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::norm::{self, ChannelAffine, Kind, Norm, Variant};
use transformer_kernels::parallel::Threads;
use transformer_kernels::reference::norm::{self as rn, Case};
use transformer_kernels::reference::{poison, random_words, same_bits, uniform_values};
use transformer_kernels::{Dtype, Error, Isa};

fn runnable(v: &Variant) -> bool {
    if v.isa.is_available() {
        return true;
    }
    eprintln!("SKIP {}: this CPU lacks {}", v.name, v.isa.name());
    false
}

fn forward_all(case: &Case) {
    forward_dtypes(case, &Dtype::ALL);
}

fn forward_dtypes(case: &Case, dtypes: &[Dtype]) {
    for v in norm::variants()
        .iter()
        .filter(|v| runnable(v) && dtypes.contains(&v.dtype))
    {
        let r = match v.dtype {
            Dtype::F32 => rn::check_forward::<f32>(case, v.isa),
            Dtype::F16 => rn::check_forward::<f16>(case, v.isa),
            Dtype::Bf16 => rn::check_forward::<bf16>(case, v.isa),
        };
        if let Err(msg) = r {
            panic!("{} forward: {msg}\ncase: {case:?}", v.name);
        }
    }
}

fn backward_all(case: &Case) {
    for v in norm::variants().iter().filter(|v| runnable(v)) {
        let r = match v.dtype {
            Dtype::F32 => rn::check_backward::<f32>(case, v.isa),
            Dtype::F16 => rn::check_backward::<f16>(case, v.isa),
            Dtype::Bf16 => rn::check_backward::<bf16>(case, v.isa),
        };
        if let Err(msg) = r {
            panic!("{} backward: {msg}\ncase: {case:?}", v.name);
        }
    }
}

/// A case from a seed and the shape/option choices proptest makes.
#[allow(clippy::too_many_arguments)]
fn make_case(
    seed: u64,
    kind: Kind,
    crms: bool,
    rows: usize,
    cols: usize,
    amp: f32,
    offset: f32,
    residual: u8,
    params: u8,
    out_scale: f32,
    outputs: u8,
    dh: bool,
) -> Case {
    let n = rows * cols;
    let x: Vec<f32> = uniform_values(seed, n, amp)
        .iter()
        .map(|v| v + offset)
        .collect();
    let gamma = (params & 1 != 0).then(|| uniform_values(seed ^ 0x55, cols, 2.0));
    let beta = (params & 2 != 0).then(|| uniform_values(seed ^ 0x77, cols, 1.0));
    Case {
        kind,
        crms,
        eps: 1e-5,
        out_scale,
        cols,
        x,
        residual: (residual != 0).then(|| uniform_values(seed ^ 0x99, n, amp)),
        residual_in_place: residual == 1,
        gamma,
        beta,
        params_f32: params & 4 != 0,
        want_y: outputs & 1 != 0,
        want_q: outputs & 2 != 0,
        dy: uniform_values(seed ^ 0x1234, n, 1.0),
        dh: dh.then(|| uniform_values(seed ^ 0x4321, n, 1.0)),
        nontemporal: false,
        out_offsets: [0, 0],
    }
}

fn kind_strategy() -> impl Strategy<Value = (Kind, bool)> {
    prop_oneof![
        Just((Kind::LayerNorm, false)),
        Just((Kind::RmsNorm, false)),
        Just((Kind::RmsNorm, true)),
        Just((Kind::Channel, false)),
    ]
}

/// Row lengths around the vector widths, the 4-vector unroll and the 2048
/// summation block.
fn cols_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=70,
        70usize..=600,
        2040usize..=2060,
        Just(4096 + 33)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn forward_matches_reference(
        seed in any::<u64>(),
        (kind, crms) in kind_strategy(),
        rows in 1usize..4,
        cols in cols_strategy(),
        amp in prop_oneof![Just(1.0f32), Just(1e-3f32), Just(100.0f32)],
        offset in prop_oneof![Just(0.0f32), Just(3.0f32), Just(-50.0f32)],
        residual in 0u8..3,
        params in 0u8..8,
        out_scale in prop_oneof![Just(1.0f32), Just(0.5f32.sqrt()), Just(-2.0f32)],
        outputs in 0u8..4,
        nontemporal in any::<bool>(),
        out_offsets in [0usize..17, 0usize..17],
    ) {
        // outputs 0: the residual add alone (h only), so a residual
        let residual = if outputs == 0 { 1 + residual % 2 } else { residual };
        let case = make_case(seed, kind, crms, rows, cols, amp, offset, residual, params, out_scale, outputs, false);
        forward_all(&Case { nontemporal, out_offsets, ..case });
    }

    #[test]
    fn backward_matches_reference(
        seed in any::<u64>(),
        kind in prop_oneof![Just(Kind::LayerNorm), Just(Kind::RmsNorm)],
        rows in 1usize..11, // past two groups of the dx sweep (kernels-cpu/norm/backward.inc)
        cols in cols_strategy(),
        amp in prop_oneof![Just(1.0f32), Just(30.0f32)],
        offset in prop_oneof![Just(0.0f32), Just(2.0f32)],
        params in 0u8..8,
        out_scale in prop_oneof![Just(1.0f32), Just(0.25f32)],
        dh in any::<bool>(),
        nontemporal in any::<bool>(),
    ) {
        let case = make_case(seed, kind, false, rows, cols, amp, offset, 0, params & 5, out_scale, 1, dh);
        backward_all(&Case { nontemporal, ..case });
    }
}

/// The numerics requirement: mean 1e4, std 1e-2 (f32; f16/bf16 cannot hold
/// such rows). A single f32 mean would be off by 5e-4 there, 5% of the spread.
#[test]
fn large_mean_small_spread() {
    for kind in [Kind::LayerNorm, Kind::RmsNorm] {
        for cols in [64usize, 4096, 8192 + 5] {
            let x: Vec<f32> = uniform_values(7, 3 * cols, 1.7e-2)
                .iter()
                .map(|v| v + 1e4)
                .collect();
            let case = make_case(1, kind, false, 3, cols, 1.0, 0.0, 0, 0, 1.0, 3, false);
            let case = Case {
                x,
                eps: 0.0,
                ..case
            };
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                if let Err(m) = rn::check_forward::<f32>(&case, isa) {
                    panic!("{kind:?} {} cols {cols}: {m}", isa.name());
                }
                if let Err(m) = rn::check_backward::<f32>(&case, isa) {
                    panic!("{kind:?} {} cols {cols} backward: {m}", isa.name());
                }
            }
        }
    }
}

/// LayerNorm rows whose mean jumps between 2048-element summation blocks,
/// steps by about a standard deviation, or drifts along the row (the
/// blocks' shifted sums and Chan merge), against the reference.
#[test]
fn layernorm_blocks_with_moving_means() {
    let cols = 3 * 2048 + 77;
    let base = uniform_values(61, 2 * cols, 1.0);
    let jump: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, v)| v + if i % cols >= 2048 { 1e3 } else { 0.0 })
        .collect();
    let drift: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, v)| v + (i % cols) as f32 * 1e-3)
        .collect();
    // block means a step of about one standard deviation (0.577) apart:
    // shifted sums on both sides of their acceptance test (2 s1^2 <= nb s2)
    let steps: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, v)| v + 1e3 + ((i % cols) / 2048) as f32 * 0.55)
        .collect();
    for x in [jump, drift, steps, base] {
        let case = Case {
            x,
            ..make_case(
                2,
                Kind::LayerNorm,
                false,
                2,
                cols,
                1.0,
                0.0,
                0,
                3,
                1.0,
                3,
                false,
            )
        };
        forward_all(&case);
    }
}

/// Zero rows: LayerNorm/RMSNorm give beta (finite), int8 gives scale 0, q 0.
#[test]
fn zero_rows_and_extremes() {
    for (kind, crms) in [
        (Kind::LayerNorm, false),
        (Kind::RmsNorm, false),
        (Kind::RmsNorm, true),
    ] {
        let mut case = make_case(3, kind, crms, 2, 37, 1.0, 0.0, 0, 3, 1.0, 3, false);
        case.x = vec![0.0; 74];
        forward_all(&case);
        // large rows: near the f16 limit, and (f32, bf16) 1e15, whose sums
        // of squares still fit in f32
        case.x = uniform_values(9, 74, 6e4);
        forward_all(&case);
        case.x = uniform_values(9, 74, 1e15);
        forward_dtypes(&case, &[Dtype::F32, Dtype::Bf16]);
        // constant rows: LayerNorm variance 0, output = beta
        case.x = vec![3.25; 74];
        forward_all(&case);
    }
}

/// NaN and inf rows: y NaN, int8 scale NaN and q 0, rstd NaN, the mean the
/// row's infinity (or NaN); other rows unaffected.
#[test]
fn non_finite_rows() {
    for v in norm::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = uniform_values(5, 3 * 40, 1.0);
            x[45] = bad;
            let mut y = vec![0.0f32; x.len()];
            let (mut q, mut s) = (vec![1i8; x.len()], vec![0.0f32; 3]);
            Norm::layer_norm()
                .isa(v.isa)
                .forward(&x, 40)
                .output(&mut y)
                .quantized(&mut q, &mut s)
                .run()
                .unwrap();
            assert!(y[40..80].iter().all(|v| v.is_nan()), "{}", v.name);
            assert!(
                s[1].is_nan() && q[40..80].iter().all(|&v| v == 0),
                "{}",
                v.name
            );
            assert!(y[..40].iter().chain(&y[80..]).all(|v| v.is_finite()));
            assert!(s[0].is_finite() && s[2].is_finite());
        }
        // The saved LayerNorm mean of a row holding +-inf is that infinity
        // (NaN with both, or with a NaN), as the f64 reference has it, also
        // when the infinity sits in the first 2048-element block of a longer
        // row; rstd is NaN. (The mean was NaN: the block's centred sums took
        // inf - inf, and the block merge did again for later finite blocks.)
        for (cols, at) in [(40usize, 45usize), (5000, 5010), (5000, 9000)] {
            for (bad, also, want) in [
                (f32::INFINITY, None, f32::INFINITY),
                (f32::NEG_INFINITY, None, f32::NEG_INFINITY),
                (f32::NEG_INFINITY, Some(f32::INFINITY), f32::NAN),
                (f32::NAN, None, f32::NAN),
            ] {
                let mut x = uniform_values(6, 3 * cols, 1.0);
                x[at] = bad;
                if let Some(o) = also {
                    x[at + 7] = o;
                }
                let (mut mean, mut rstd) = (vec![0.0f32; 3], vec![0.0f32; 3]);
                let mut y = vec![0.0f32; x.len()];
                Norm::layer_norm()
                    .isa(v.isa)
                    .forward(&x, cols)
                    .output(&mut y)
                    .stats(&mut mean, &mut rstd)
                    .run()
                    .unwrap();
                let ok = if want.is_nan() {
                    mean[1].is_nan()
                } else {
                    mean[1] == want
                };
                assert!(
                    ok,
                    "{} cols {cols} at {at}: mean {} expected {want}",
                    v.name, mean[1]
                );
                assert!(rstd[1].is_nan(), "{}: rstd {}", v.name, rstd[1]);
                assert!(mean[0].is_finite() && mean[2].is_finite() && rstd[0].is_finite());
            }
        }
    }
}

#[test]
fn inplace_equals_out_of_place() {
    for v in norm::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::Bf16)
    {
        let x: Vec<bf16> = uniform_values(11, 5 * 300, 3.0)
            .iter()
            .map(|&f| bf16::from_f32(f))
            .collect();
        let g = uniform_values(12, 300, 1.0);
        let n = Norm::layer_norm().gamma(&g).isa(v.isa);
        let mut y = vec![bf16::ZERO; x.len()];
        n.run(&x, &mut y, 300).unwrap();
        let mut xy = x.clone();
        n.run_inplace(&mut xy, 300).unwrap();
        assert!(
            xy.iter().zip(&y).all(|(a, b)| same_bits(*a, *b)),
            "{}",
            v.name
        );
    }
}

/// Strided rows give the compact result and leave the gaps untouched; bad
/// strides are refused before anything is written.
#[test]
fn strided_rows_match_compact() {
    for v in norm::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        let (rows, cols, xs, ys) = (5, 300, 317, 301);
        let x = uniform_values(71, (rows - 1) * xs + cols, 2.0);
        let g = uniform_values(72, cols, 1.0);
        let n = Norm::layer_norm().gamma(&g).isa(v.isa);
        let mut y = vec![poison::<f32>(); (rows - 1) * ys + cols];
        n.run_strided(&x, xs, &mut y, ys, rows, cols).unwrap();
        for r in 0..rows {
            let mut want = vec![0.0f32; cols];
            n.run(&x[r * xs..r * xs + cols], &mut want, cols).unwrap();
            assert_eq!(&y[r * ys..r * ys + cols], &want[..], "{} row {r}", v.name);
            if r + 1 < rows {
                assert!(
                    y[r * ys + cols..(r + 1) * ys]
                        .iter()
                        .all(|e| same_bits(*e, poison::<f32>()))
                );
            }
        }
        let mut y2 = vec![poison::<f32>(); y.len()];
        assert!(
            n.run_strided(&x, cols - 1, &mut y2, ys, rows, cols)
                .is_err()
        );
        assert!(n.run_strided(&x, xs, &mut y2[1..], ys, rows, cols).is_err());
        assert!(y2.iter().all(|e| same_bits(*e, poison::<f32>())));
    }
}

/// RMSNorm -> int8 without beta finds max |y| in its statistics sweep (max
/// |h * gamma| times |rstd * out_scale|, exact because rounding is monotonic):
/// the scale must be the written y's max |y| / 127 to the bit, with and
/// without a residual, across the 2048-element blocks and the vector tails,
/// and a non-finite h * gamma, or an overflowing y, must give the NaN scale and
/// q = 0 of the contract, in its row only (every row for a bad gamma).
#[test]
fn rms_int8_scale_is_the_max_of_y() {
    let absmax = |y: &[f32]| y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for v in norm::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        for (cols, out_scale, residual) in [
            (37usize, 1.0f32, false),
            (64, -2.0, false),
            (1000, 0.7, true),
            (4100, 1.0, false),
            (4100, -0.3, true),
        ] {
            let rows = 3;
            let x = uniform_values(cols as u64, rows * cols, 3.0);
            let res = uniform_values(cols as u64 + 1, rows * cols, 1.0);
            let g = uniform_values(cols as u64 + 2, cols, 2.0);
            let (mut y, mut h) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
            let (mut q, mut s) = (vec![0i8; x.len()], vec![0.0f32; rows]);
            let n = Norm::rms_norm().gamma(&g).out_scale(out_scale).isa(v.isa);
            let call = n.forward(&x, cols).output(&mut y);
            let call = if residual {
                call.residual_into(&res, &mut h)
            } else {
                call
            };
            call.quantized(&mut q, &mut s).run().unwrap();
            for r in 0..rows {
                let row = &y[r * cols..(r + 1) * cols];
                let want = absmax(row) / 127.0;
                assert!(
                    same_bits(s[r], want),
                    "{} cols {cols} row {r}: scale {} want {want}",
                    v.name,
                    s[r]
                );
                let qr = &q[r * cols..(r + 1) * cols];
                assert_eq!(qr.iter().map(|e| e.unsigned_abs()).max(), Some(127));
                for (qj, yj) in qr.iter().zip(row) {
                    assert!(
                        (*qj as f32 * s[r] - yj).abs() <= 0.5 * s[r] * (1.0 + 1e-5),
                        "{}",
                        v.name
                    );
                }
            }
        }
        // non-finite h * gamma: NaN scale, q 0, in the row (x) or everywhere (gamma)
        let cols = 100;
        let x = uniform_values(3, 3 * cols, 1.0);
        let g = uniform_values(4, cols, 1.0);
        let run = |x: &[f32], g: &[f32], eps: f32| {
            let (mut q, mut s) = (vec![5i8; x.len()], vec![0.0f32; 3]);
            Norm::rms_norm()
                .gamma(g)
                .eps(eps)
                .isa(v.isa)
                .forward(x, cols)
                .quantized(&mut q, &mut s)
                .run()
                .unwrap();
            (q, s)
        };
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut xb = x.clone();
            xb[cols + 70] = bad;
            let (q, s) = run(&xb, &g, 1e-5);
            assert!(
                s[1].is_nan() && q[cols..2 * cols].iter().all(|&e| e == 0),
                "{} x {bad}",
                v.name
            );
            assert!(s[0].is_finite() && s[2].is_finite() && q[..cols].iter().any(|&e| e != 0));
            let mut gb = g.clone();
            gb[70] = bad;
            let (q, s) = run(&x, &gb, 1e-5);
            assert!(
                s.iter().all(|e| e.is_nan()) && q.iter().all(|&e| e == 0),
                "{} gamma {bad}",
                v.name
            );
        }
        // x = 0 at a gamma of inf: h * gamma is NaN while x and gamma are not
        let (mut xz, mut gb) = (x.clone(), g.clone());
        xz[cols + 5] = 0.0;
        gb[5] = f32::INFINITY;
        let (_, s) = run(&xz, &gb, 1e-5);
        assert!(s.iter().all(|e| e.is_nan()), "{} 0 * inf", v.name);
        // y overflows while h * gamma is finite: a row of zeros but x[9] = 1
        // has rstd near 10, and gamma[9] = 3e38
        let mut xt = x.clone();
        xt[cols..2 * cols].iter_mut().for_each(|e| *e = 0.0);
        xt[cols + 9] = 1.0;
        let mut gl = g.clone();
        gl[9] = 3e38;
        let (q, s) = run(&xt, &gl, 1e-5);
        assert!(
            s[1].is_nan() && q[cols..2 * cols].iter().all(|&e| e == 0),
            "{} overflow",
            v.name
        );
    }
}

/// f32 RMSNorm to int8 and/or y (no beta or residual) runs rows in pairs
/// where a row and gamma take more than 32 KiB: every row, of a pair or the
/// odd one, must come out with the bits of the same row run alone (y, q,
/// scale, rstd), a NaN row must not touch its pair's other row, with and
/// without gamma, streamed or not, at any alignment of y and q.
#[test]
fn rms_row_pairs_match_single_rows() {
    for v in norm::variants()
        .iter()
        .filter(|v| runnable(v) && v.dtype == Dtype::F32)
    {
        for (cols, with_gamma, off, nt) in [
            (4100usize, true, 0usize, false),
            (4100, true, 3, true),
            (6000, true, 17, true),
            (8192, true, 0, true),
            (8200, false, 1, false),
        ] {
            let rows = 5; // two pairs and an odd row
            let mut x = uniform_values(cols as u64 + 7, rows * cols, 2.0);
            x[3 * cols + 70] = f32::NAN;
            let g = uniform_values(cols as u64 + 8, cols, 2.0);
            let norm = Norm::rms_norm().isa(v.isa).nontemporal(nt).out_scale(0.8);
            let norm = if with_gamma { norm.gamma(&g) } else { norm };
            // outputs: q, y, both
            for (want_q, want_y) in [(true, false), (false, true), (true, true)] {
                let run = |x: &[f32]| {
                    let rows = x.len() / cols;
                    let mut q = vec![0i8; off + x.len()];
                    let mut y = vec![0.0f32; off + x.len()];
                    let (mut s, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                    let mut mean = vec![0.0f32; rows];
                    let call = norm.forward(x, cols).stats(&mut mean, &mut rstd);
                    let call = if want_q {
                        call.quantized(&mut q[off..], &mut s)
                    } else {
                        call
                    };
                    let call = if want_y {
                        call.output(&mut y[off..])
                    } else {
                        call
                    };
                    call.run().unwrap();
                    (q[off..].to_vec(), y[off..].to_vec(), s, rstd)
                };
                let (q, y, s, rstd) = run(&x);
                for r in 0..rows {
                    let (q1, y1, s1, rstd1) = run(&x[r * cols..(r + 1) * cols]);
                    let at = format!(
                        "{} cols {cols} gamma {with_gamma} off {off} q {want_q} y {want_y} row {r}",
                        v.name
                    );
                    let row = r * cols..(r + 1) * cols;
                    assert_eq!(&q[row.clone()], &q1[..], "{at}");
                    assert!(
                        y[row].iter().zip(&y1).all(|(a, b)| same_bits(*a, *b)),
                        "{at}"
                    );
                    assert!(
                        same_bits(s[r], s1[0]) && same_bits(rstd[r], rstd1[0]),
                        "{at}"
                    );
                    assert_eq!(!want_q || s[r].is_nan(), !want_q || r == 3, "{at}");
                }
            }
        }
    }
}

/// The bytes of every output of a fused residual + norm call, streamed or
/// not: y, h (in place or into a separate buffer), q, scales, mean, rstd.
fn residual_output_bytes<T: transformer_kernels::Element>(
    norm: Norm,
    isa: Isa,
    cols: usize,
    in_place: bool,
    (h_off, y_off): (usize, usize),
    nt: bool,
) -> Vec<Vec<u8>> {
    let rows = 3;
    let conv = |v: Vec<f32>| -> Vec<T> { v.into_iter().map(T::from_f32).collect() };
    let x = conv(uniform_values(31, rows * cols, 2.0));
    let mut r = conv(uniform_values(32, rows * cols, 2.0));
    // offsets, so that streaming has to peel to each output's alignment
    let mut y = vec![T::from_f32(0.0); rows * cols + y_off];
    let mut h = vec![T::from_f32(0.0); rows * cols + h_off];
    let mut q = vec![0i8; rows * cols];
    let (mut sc, mut m, mut rs) = (vec![0.0f32; rows], vec![0.0f32; rows], vec![0.0f32; rows]);
    let call = norm.isa(isa).nontemporal(nt).forward(&x, cols);
    let call = if in_place {
        call.residual(&mut r)
    } else {
        call.residual_into(&r, &mut h[h_off..])
    };
    call.output(&mut y[y_off..])
        .quantized(&mut q, &mut sc)
        .stats(&mut m, &mut rs)
        .run()
        .unwrap();
    let h: &[T] = if in_place { &r } else { &h };
    vec![
        bytemuck::cast_slice(&y).to_vec(),
        bytemuck::cast_slice(h).to_vec(),
        bytemuck::cast_slice(&q).to_vec(),
        bytemuck::cast_slice(&sc).to_vec(),
        bytemuck::cast_slice(&m).to_vec(),
        bytemuck::cast_slice(&rs).to_vec(),
    ]
}

/// Streamed residual rows take h through a stack row when they fit it
/// (forward_rows.inc) and recompute it otherwise: both must give the bits of the
/// unstreamed call, for every dtype, LayerNorm and RMSNorm, h in place or not.
#[test]
fn streamed_residual_rows_match_regular_stores() {
    let gamma = uniform_values(33, 20000, 2.0);
    let beta = uniform_values(34, 20000, 1.0);
    for v in norm::variants().iter().filter(|v| runnable(v)) {
        // 1000: in the stack row; 4099: too, in three summation blocks;
        // 20000: longer than it for every dtype
        for cols in [1000, 4099, 20000] {
            for norm in [
                Norm::layer_norm().gamma(&gamma[..cols]).beta(&beta[..cols]),
                Norm::rms_norm().gamma(&gamma[..cols]),
            ] {
                // h and y on the same alignment, or on different ones
                for (in_place, offs) in [
                    (false, (1, 1)),
                    (false, (0, 1)),
                    (false, (3, 0)),
                    (true, (0, 1)),
                ] {
                    let run = |nt| match v.dtype {
                        Dtype::F32 => {
                            residual_output_bytes::<f32>(norm, v.isa, cols, in_place, offs, nt)
                        }
                        Dtype::F16 => {
                            residual_output_bytes::<f16>(norm, v.isa, cols, in_place, offs, nt)
                        }
                        Dtype::Bf16 => {
                            residual_output_bytes::<bf16>(norm, v.isa, cols, in_place, offs, nt)
                        }
                    };
                    assert!(
                        run(true) == run(false),
                        "{} {:?} cols {cols} in place {in_place} h, y offsets {offs:?}",
                        v.name,
                        norm.kind()
                    );
                }
            }
        }
    }
}

/// Streaming stores must not change a bit, whatever the alignment of y and h.
#[test]
fn nontemporal_matches_regular_stores() {
    for v in norm::variants().iter().filter(|v| runnable(v)) {
        // rows a vector apart or not; dx starting on a vector boundary or not
        for (off, cols) in [(0, 1000), (1, 1001), (2, 1002), (0, 1024), (3, 1024)] {
            const ROWS: usize = 6; // a group of the backward's dx sweep and part of one
            let x = uniform_values(21, ROWS * cols, 2.0);
            let r = uniform_values(22, ROWS * cols, 2.0);
            let run = |nt: bool| -> (Vec<f32>, Vec<f32>) {
                let mut y = vec![0.0f32; off + x.len()];
                let mut h = vec![0.0f32; x.len() + 1];
                Norm::rms_norm()
                    .isa(v.isa)
                    .nontemporal(nt)
                    .forward(&x, cols)
                    .residual_into(&r, &mut h[1..])
                    .output(&mut y[off..])
                    .run()
                    .unwrap();
                (y, h)
            };
            if v.dtype == Dtype::F32 {
                assert_eq!(run(true), run(false), "{} off {off}", v.name);
                // the backward's dx too
                let (mut m, mut rs) = (vec![0.0f32; ROWS], vec![0.0f32; ROWS]);
                let mut y = vec![0.0f32; x.len()];
                let n = Norm::layer_norm().isa(v.isa);
                n.forward(&x, cols)
                    .output(&mut y)
                    .stats(&mut m, &mut rs)
                    .run()
                    .unwrap();
                let grad = |nt: bool| {
                    let mut dx = vec![0.0f32; off + x.len()];
                    let mut dg = vec![0.0f32; cols];
                    n.nontemporal(nt)
                        .backward(&r, &x, &m, &rs, cols)
                        .dx(&mut dx[off..])
                        .dgamma(&mut dg)
                        .run()
                        .unwrap();
                    (dx, dg)
                };
                assert_eq!(grad(true), grad(false), "{} backward off {off}", v.name);
            }
        }
    }
}

/// A level with no variant for a dtype (avx512bf16 has bf16 ones only) runs
/// the highest compiled level below it: the plan names that variant.
#[test]
fn levels_without_a_variant_run_the_next_lower_one() {
    fn expected(dtype: Dtype, isa: Isa) -> &'static str {
        norm::variants()
            .iter()
            .filter(|v| v.dtype == dtype && v.isa <= isa)
            .max_by_key(|v| v.isa)
            .expect("a scalar variant of every dtype")
            .name
    }
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        let n = Norm::rms_norm().isa(isa);
        assert_eq!(n.plan::<f32>().unwrap().name, expected(Dtype::F32, isa));
        assert_eq!(n.plan::<f16>().unwrap().name, expected(Dtype::F16, isa));
        assert_eq!(n.plan::<bf16>().unwrap().name, expected(Dtype::Bf16, isa));
    }
    if Isa::Avx512Bf16.is_available() {
        let n = Norm::rms_norm().isa(Isa::Avx512Bf16);
        assert_eq!(n.plan::<bf16>().unwrap().name, "tk_norm_bf16_avx512bf16");
        assert_eq!(n.plan::<f32>().unwrap().name, "tk_norm_f32_avx512");
    }
}

/// Rounding f32 to bf16 is bit-exact on every level, the avx512bf16 level's
/// one-instruction conversion (which reads subnormals as 0 unless fixed up)
/// included: round to nearest even, subnormals rounded like the rest, NaN
/// quieted, overflow to infinity. A frozen channel affine with x = 1 and
/// shift = -0 stores each scale rounded once; edge cases, then random bit
/// patterns with a quarter of them subnormal, so that vectors mix subnormal
/// and normal lanes; full vectors, a tail, regular and streamed stores.
#[test]
fn bf16_rounding_is_exact_on_every_level() {
    let mut bits: Vec<u32> = vec![
        0x0000_0000,
        0x8000_0000,
        0x0000_0001,
        0x8000_0001,
        0x007F_FFFF,
        0x0000_8000,
        0x0001_8000,
        0x0000_7FFF,
        0x0001_7FFF,
        0x0000_8001,
        0x007F_8000,
        0x807F_C000,
        0x0080_0000,
        0x3F80_8000,
        0x3F81_8000,
        0x3F80_8001,
        0x3F81_7FFF,
        0xBF80_8000,
        0x7F7F_FFFF,
        0x7F7F_8000,
        0x7F7F_7FFF,
        0xFF7F_8000,
        0x7F80_0000,
        0xFF80_0000,
        0x7F80_0001,
        0x7FBF_FFFF,
        0x7FC0_0000,
        0xFFFF_FFFF,
        0xFFC0_1234,
    ];
    bits.extend(random_words(71, 4099 - bits.len()).map(|w| {
        let b = (w >> 32) as u32;
        if w & 3 == 0 { b & 0x807F_FFFF } else { b }
    }));
    let scale: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
    let shift = vec![-0.0f32; scale.len()];
    let x = vec![bf16::ONE; 2 * scale.len()];
    for v in norm::variants()
        .iter()
        .filter(|v| v.dtype == Dtype::Bf16 && runnable(v))
    {
        for nt in [false, true] {
            let mut y = vec![bf16::from_bits(0x5555); x.len()];
            Norm::channel_scale_shift(&scale, &shift)
                .isa(v.isa)
                .nontemporal(nt)
                .run(&x, &mut y, scale.len())
                .unwrap();
            for (i, got) in y.iter().enumerate() {
                let want = bf16::from_f32(scale[i % scale.len()]).to_bits();
                assert_eq!(
                    got.to_bits(),
                    want,
                    "{} streamed {nt}, element {i}: f32 {:#010x}",
                    v.name,
                    bits[i % scale.len()]
                );
            }
        }
    }
}

/// The backward is deterministic (dgamma/dbeta summed in row order, in f32
/// groups of up to four rows and f64 across them: the same bits on every
/// run), and asking for dgamma only, dbeta only or neither changes none of the bits of what is asked (each combination runs
/// its own specialised loop); on every ISA, with the residual gradient and
/// without, streamed dx or not.
#[test]
fn backward_is_deterministic_and_its_outputs_independent() {
    let (rows, cols) = (5, 203);
    let x = uniform_values(41, rows * cols, 2.0);
    let dy = uniform_values(42, rows * cols, 1.0);
    let dh = uniform_values(43, rows * cols, 1.0);
    let g = uniform_values(44, cols, 1.0);
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        for norm in [Norm::layer_norm(), Norm::rms_norm()] {
            let n = norm.gamma(&g).isa(isa);
            let (mut m, mut r) = (vec![0.0; rows], vec![0.0; rows]);
            let mut y = vec![0.0f32; x.len()];
            n.forward(&x, cols)
                .output(&mut y)
                .stats(&mut m, &mut r)
                .run()
                .unwrap();
            for (with_dh, nt) in [(false, false), (true, false), (false, true), (true, true)] {
                let grads = |want_g: bool, want_b: bool| {
                    let (mut dx, mut dg, mut db) = (
                        vec![0.0f32; x.len()],
                        vec![0.0f32; cols],
                        vec![0.0f32; cols],
                    );
                    let mut call = n
                        .nontemporal(nt)
                        .backward(&dy, &x, &m, &r, cols)
                        .dx(&mut dx);
                    if with_dh {
                        call = call.residual_grad(&dh);
                    }
                    if want_g {
                        call = call.dgamma(&mut dg);
                    }
                    if want_b {
                        call = call.dbeta(&mut db);
                    }
                    call.run().unwrap();
                    (dx, dg, db)
                };
                let all = grads(true, true);
                let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| same_bits(*p, *q));
                let again = grads(true, true);
                assert!(same(&again.0, &all.0) && same(&again.1, &all.1) && same(&again.2, &all.2));
                let what = format!("{} {:?} dh {with_dh} nt {nt}", isa.name(), n.kind());
                for (want_g, want_b) in [(true, false), (false, true), (false, false)] {
                    let (dx, dg, db) = grads(want_g, want_b);
                    assert!(same(&dx, &all.0), "{what}: dx");
                    assert!(!want_g || same(&dg, &all.1), "{what}: dgamma alone");
                    assert!(!want_b || same(&db, &all.2), "{what}: dbeta alone");
                }
            }
        }
    }
}

/// dbeta of one large term per column followed by many below its half-ulp in
/// f32 (`2^-25`): the f32 sums of groups of up to four rows lose at most
/// three of them (1.5 u), within `GRAD_SUM_ULPS`; a whole chunk summed in
/// f32 would lose all 511 (255 u). Every variant, against the reference
/// (f32 and bf16 hold both values exactly; f16 rounds the small ones to 0).
#[test]
fn dbeta_keeps_small_terms_after_a_large_one() {
    let (rows, cols) = (512, 64);
    let tiny = f32::powi(2.0, -25);
    let case = make_case(
        51,
        Kind::LayerNorm,
        false,
        rows,
        cols,
        2.0,
        0.0,
        0,
        0,
        1.0,
        1,
        false,
    );
    let dy = (0..rows * cols)
        .map(|i| if i < cols { 1.0 } else { tiny })
        .collect();
    backward_all(&Case { dy, ..case });
}

/// The reference gradients against central finite differences of the
/// reference forward (f64), with and without the residual fusion.
#[test]
fn reference_gradients_match_finite_differences() {
    for kind in [Kind::LayerNorm, Kind::RmsNorm] {
        for with_dh in [false, true] {
            let d = 7;
            let spec = rn::RowSpec {
                kind,
                crms: false,
                eps: 1e-3,
                out_scale: 0.7,
            };
            let h: Vec<f64> = uniform_values(41, d, 2.0)
                .iter()
                .map(|&v| v as f64 + 0.5)
                .collect();
            let g: Vec<f64> = uniform_values(42, d, 1.5)
                .iter()
                .map(|&v| v as f64)
                .collect();
            let b: Vec<f64> = uniform_values(43, d, 1.0)
                .iter()
                .map(|&v| v as f64)
                .collect();
            let dy: Vec<f64> = uniform_values(44, d, 1.0)
                .iter()
                .map(|&v| v as f64)
                .collect();
            let dh: Vec<f64> = uniform_values(45, d, 1.0)
                .iter()
                .map(|&v| v as f64)
                .collect();
            // loss = dy . y(h) + dh . h (dh: the residual stream's own use of h)
            let loss = |h: &[f64], g: &[f64], b: &[f64]| -> f64 {
                let y = rn::forward(&spec, h, Some(g), Some(b));
                let extra: f64 = if with_dh {
                    h.iter().zip(&dh).map(|(p, q)| p * q).sum()
                } else {
                    0.0
                };
                y.iter().zip(&dy).map(|(p, q)| p * q).sum::<f64>() + extra
            };
            let (dx, dg, db) = rn::backward(&spec, &h, &dy, Some(&g), with_dh.then_some(&dh[..]));
            let step = 1e-6;
            for j in 0..d {
                let fd = |which: usize| {
                    let (mut hp, mut gp, mut bp) = (h.clone(), g.clone(), b.clone());
                    let (mut hm, mut gm, mut bm) = (h.clone(), g.clone(), b.clone());
                    match which {
                        0 => {
                            hp[j] += step;
                            hm[j] -= step;
                        }
                        1 => {
                            gp[j] += step;
                            gm[j] -= step;
                        }
                        _ => {
                            bp[j] += step;
                            bm[j] -= step;
                        }
                    }
                    (loss(&hp, &gp, &bp) - loss(&hm, &gm, &bm)) / (2.0 * step)
                };
                for (name, analytic, numeric) in [
                    ("dx", dx[j], fd(0)),
                    ("dgamma", dg[j], fd(1)),
                    ("dbeta", db[j], fd(2)),
                ] {
                    assert!(
                        (analytic - numeric).abs() < 1e-6 * (1.0 + numeric.abs()),
                        "{kind:?} dh={with_dh} {name}[{j}]: {analytic} vs {numeric}"
                    );
                }
            }
        }
    }
}

#[test]
fn srms_norm_is_x_over_rms() {
    let x = [3.0f32, 4.0, 0.0, 0.0];
    let mut y = [0.0f32; 4];
    Norm::srms_norm().eps(0.0).run(&x, &mut y, 4).unwrap();
    // ||x|| = 5, sqrt(d) = 2: y = x / 2.5
    assert_eq!(y, [1.2, 1.6, 0.0, 0.0]);
}

#[test]
fn layer_scale_is_inverse_sqrt_depth() {
    let x = uniform_values(51, 64, 1.0);
    let (mut a, mut b) = (vec![0.0f32; 64], vec![0.0f32; 64]);
    Norm::layer_norm().run(&x, &mut a, 64).unwrap();
    Norm::layer_norm()
        .layer_scale(16)
        .run(&x, &mut b, 64)
        .unwrap();
    assert!(
        a.iter()
            .zip(&b)
            .all(|(p, q)| (p * 0.25 - q).abs() <= 1e-7 * p.abs())
    );
    assert!(matches!(
        Norm::layer_norm().layer_scale(0).run(&x, &mut b, 64),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn channel_affine_batch_and_power_norm_and_folding() {
    let d = 5;
    let mean = uniform_values(61, d, 1.0);
    let var: Vec<f32> = uniform_values(62, d, 1.0)
        .iter()
        .map(|v| v.abs() + 0.1)
        .collect();
    let g = uniform_values(63, d, 2.0);
    let b = uniform_values(64, d, 1.0);
    let bn = ChannelAffine::batch_norm(&mean, &var, Some(&g), Some(&b), 1e-5).unwrap();
    let pn = ChannelAffine::power_norm(&var, Some(&g), Some(&b), 1e-5).unwrap();
    let x = uniform_values(65, 3 * d, 3.0);
    for (aff, m) in [(&bn, Some(&mean)), (&pn, None)] {
        let mut y = vec![0.0f32; x.len()];
        Norm::channel(aff).run(&x, &mut y, d).unwrap();
        for i in 0..x.len() {
            let j = i % d;
            let e = g[j] as f64 * (x[i] as f64 - m.map_or(0.0, |m| m[j] as f64))
                / (var[j] as f64 + 1e-5).sqrt()
                + b[j] as f64;
            assert!(
                (y[i] as f64 - e).abs() < 1e-5 * (1.0 + e.abs()),
                "{i}: {} vs {e}",
                y[i]
            );
        }
        // fold into the next linear layer (out = 2) and into the previous one (in = 3)
        let w_next = uniform_values(66, 2 * d, 1.0);
        let c_next = uniform_values(67, 2, 1.0);
        let (mut w2, mut c2) = (w_next.clone(), c_next.clone());
        aff.fold_into_next(&mut w2, &mut c2).unwrap();
        for r in 0..3 {
            for o in 0..2 {
                let direct: f64 = (0..d)
                    .map(|j| w_next[o * d + j] as f64 * y[r * d + j] as f64)
                    .sum::<f64>()
                    + c_next[o] as f64;
                let folded: f64 = (0..d)
                    .map(|j| w2[o * d + j] as f64 * x[r * d + j] as f64)
                    .sum::<f64>()
                    + c2[o] as f64;
                assert!((direct - folded).abs() < 1e-4, "next: {direct} vs {folded}");
            }
        }
        let u = uniform_values(68, 3, 1.0);
        let w_prev = uniform_values(69, d * 3, 1.0);
        let c_prev = uniform_values(70, d, 1.0);
        let (mut w3, mut c3) = (w_prev.clone(), c_prev.clone());
        aff.fold_into_previous(&mut w3, &mut c3).unwrap();
        for j in 0..d {
            let xj: f64 = (0..3)
                .map(|k| w_prev[j * 3 + k] as f64 * u[k] as f64)
                .sum::<f64>()
                + c_prev[j] as f64;
            let direct = aff.scale[j] as f64 * xj + aff.shift[j] as f64;
            let folded: f64 = (0..3)
                .map(|k| w3[j * 3 + k] as f64 * u[k] as f64)
                .sum::<f64>()
                + c3[j] as f64;
            assert!(
                (direct - folded).abs() < 1e-5,
                "previous: {direct} vs {folded}"
            );
        }
    }
    assert!(ChannelAffine::batch_norm(&mean, &[-1.0; 5], None, None, 0.0).is_err());
    assert!(bn.fold_into_next(&mut [0.0; 7], &mut [0.0; 2]).is_err());
}

#[test]
fn errors_write_nothing() {
    let x = vec![1.0f32; 12];
    let g16 = vec![f16::ONE; 4];
    let g32 = vec![1.0f32; 4];
    let mut y = vec![poison::<f32>(); 12];
    let untouched = |y: &[f32]| y.iter().all(|v| same_bits(*v, poison::<f32>()));
    let cases: Vec<(Result<(), Error>, &str)> = vec![
        (Norm::layer_norm().run(&x, &mut y, 5), "not a multiple"),
        (
            Norm::layer_norm().run(&x, &mut y[..8], 4),
            "length mismatch",
        ),
        (Norm::layer_norm().run(&x, &mut y, 0), "zero cols"),
        (
            Norm::layer_norm().gamma(&g32[..3]).run(&x, &mut y, 4),
            "gamma length",
        ),
        (
            Norm::layer_norm().gamma(&g16).run(&x, &mut y, 4),
            "gamma dtype",
        ),
        (
            Norm::layer_norm()
                .gamma(&g32)
                .beta(&[0.0f32; 4])
                .run(&x, &mut y, 4)
                .and(Ok(()))
                .and_then(|_| {
                    Norm::layer_norm()
                        .gamma(&g32)
                        .beta(&[bf16::ZERO; 4])
                        .run(&x, &mut y, 4)
                }),
            "beta dtype",
        ),
        (
            Norm::layer_norm().eps(f32::NAN).run(&x, &mut y, 4),
            "eps NaN",
        ),
        (Norm::layer_norm().eps(-1.0).run(&x, &mut y, 4), "eps < 0"),
        (
            Norm::layer_norm()
                .out_scale(f32::INFINITY)
                .run(&x, &mut y, 4),
            "out_scale inf",
        ),
        (Norm::layer_norm().forward(&x, 4).run(), "no output"),
    ];
    for (r, what) in cases {
        assert!(r.is_err(), "{what} accepted");
    }
    // the "beta dtype" case ran one valid call first; re-poison and check the rest
    let mut y = vec![poison::<f32>(); 12];
    let mut q = vec![0i8; 12];
    let mut s = vec![0.0f32; 2];
    assert!(
        Norm::layer_norm()
            .forward(&x, 4)
            .output(&mut y)
            .quantized(&mut q, &mut s)
            .run()
            .is_err()
    );
    assert!(untouched(&y));
    let (m, r) = (vec![0.0f32; 3], vec![1.0f32; 3]);
    let mut dx = vec![poison::<f32>(); 12];
    assert!(
        Norm::crms_norm()
            .backward(&x, &x, &m, &r, 4)
            .dx(&mut dx)
            .run()
            .is_err()
    );
    assert!(
        Norm::layer_norm()
            .backward(&x, &x, &m[..2], &r, 4)
            .dx(&mut dx)
            .run()
            .is_err()
    );
    assert!(
        Norm::layer_norm()
            .backward(&x, &x, &m, &r, 4)
            .run()
            .is_err()
    );
    assert!(untouched(&dx));
}

/// Backward calls of several row chunks (the dgamma/dbeta partials, see
/// `Norm::backward_workspace_len`) within the reference bounds, on every
/// variant; and the workspace contract: too short fails and writes nothing,
/// the one-thread size runs a threaded call on one thread, same bits.
#[test]
fn backward_in_row_chunks() {
    for (kind, rows, cols) in [(Kind::LayerNorm, 600, 300), (Kind::RmsNorm, 531, 520)] {
        backward_all(&make_case(
            rows as u64,
            kind,
            false,
            rows,
            cols,
            3.0,
            1.0,
            0,
            5,
            0.5,
            1,
            true,
        ));
    }
    let (rows, cols) = (1100, 512); // 5 chunks, the last of 76 rows
    let x = uniform_values(1, rows * cols, 2.0);
    let dy = uniform_values(2, rows * cols, 1.0);
    let (m, r) = (vec![0.5f32; rows], vec![1.5f32; rows]);
    let norm = Norm::layer_norm();
    let threaded = norm.threads(Threads::Count(3));
    assert_eq!(norm.backward_workspace_len(rows, cols), 4 * cols);
    assert_eq!(threaded.backward_workspace_len(rows, cols), 5 * 2 * cols);
    let run = |n: Norm, ws: Option<usize>| {
        let (mut dx, mut dg) = (vec![poison::<f32>(); x.len()], vec![poison::<f32>(); cols]);
        let mut w = vec![f64::NAN; ws.unwrap_or(0)];
        let mut call = n
            .backward(&dy, &x, &m, &r, cols)
            .dx(&mut dx)
            .dgamma(&mut dg);
        if ws.is_some() {
            call = call.workspace(&mut w);
        }
        let result = call.run().map(|()| (dx.clone(), dg.clone()));
        (result, dx, dg)
    };
    let (want, ..) = run(norm, None);
    let want = want.unwrap();
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| same_bits(*p, *q));
    for (n, len) in [
        (norm, 4 * cols),
        (threaded, 4 * cols),
        (threaded, 10 * cols),
        (threaded, 10 * cols + 1),
    ] {
        let (got, ..) = run(n, Some(len));
        let got = got.unwrap();
        assert!(same(&got.0, &want.0) && same(&got.1, &want.1), "{len}");
    }
    for n in [norm, threaded] {
        let (got, dx, dg) = run(n, Some(4 * cols - 1));
        assert!(matches!(got, Err(Error::LengthMismatch { expected, .. }) if expected == 4 * cols));
        assert!(dx.iter().chain(&dg).all(|v| same_bits(*v, poison::<f32>())));
    }
}
