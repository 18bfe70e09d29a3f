//! Lightning attention: the two f64 references against each other and the
//! reference gradient against finite differences; then every variant (ISA x
//! dtype) x layout x packing x states against the reference, forward and
//! backward, within the documented bound and with poisoned outputs; chunked
//! prefill, packed sequences and decoding against one-shot calls; errors.
//! Variants whose ISA this CPU lacks are skipped with a message.

use half::{bf16, f16};
use proptest::prelude::*;
use transformer_kernels::lightning::{self, Grads, Layout, Lightning, Shape, Variant};
use transformer_kernels::reference::lightning::{self as rl, Case, Head};
use transformer_kernels::reference::{poison, same_bits, uniform_values};
use transformer_kernels::{Dtype, Error, Isa};

fn runnable(v: &Variant) -> bool {
    if v.isa.is_available() {
        return true;
    }
    eprintln!("SKIP {}: this CPU lacks {}", v.name, v.isa.name());
    false
}

fn check_all(case: &Case, backward: bool) {
    for v in lightning::variants().iter().filter(|v| runnable(v)) {
        let r = match (v.dtype, backward) {
            (Dtype::F32, false) => rl::check_forward::<f32>(case, v.isa),
            (Dtype::F16, false) => rl::check_forward::<f16>(case, v.isa),
            (Dtype::Bf16, false) => rl::check_forward::<bf16>(case, v.isa),
            (Dtype::F32, true) => rl::check_backward::<f32>(case, v.isa),
            (Dtype::F16, true) => rl::check_backward::<f16>(case, v.isa),
            (Dtype::Bf16, true) => rl::check_backward::<bf16>(case, v.isa),
        };
        if let Err(msg) = r {
            panic!(
                "{} {}: {msg}\ncase: {case:?}",
                v.name,
                if backward { "backward" } else { "forward" }
            );
        }
    }
}

fn case(lens: &[usize], packed: bool, dk: usize, dv: usize) -> Case {
    Case {
        lens: lens.to_vec(),
        packed,
        decay: vec![1.0, 0.999, 0.9, 0.5],
        dk,
        dv,
        layout: Layout::HeadsFirst,
        state_in: true,
        state_out: true,
        seed: 7,
    }
}

fn head_values(seed: u64, n: usize, dk: usize, dv: usize) -> [Vec<f64>; 4] {
    let f = |s: u64, len: usize| {
        uniform_values(s, len, 1.0)
            .into_iter()
            .map(f64::from)
            .collect::<Vec<f64>>()
    };
    [
        f(seed, n * dk),
        f(seed + 1, n * dk),
        f(seed + 2, n * dv),
        f(seed + 3, dk * dv),
    ]
}

#[test]
fn references_agree() {
    for (n, dk, dv) in [(1, 3, 2), (7, 4, 5), (70, 8, 8)] {
        let [q, k, v, s0] = head_values(n as u64, n, dk, dv);
        for decay in [1.0, 0.999, 0.9, 0.5, 0.01] {
            for s in [None, Some(&s0[..])] {
                let h = Head {
                    q: &q,
                    k: &k,
                    v: &v,
                    n,
                    dk,
                    dv,
                    decay,
                    s0: s,
                };
                let (a, sa) = rl::recurrent(&h);
                let (b, sb) = rl::quadratic(&h);
                for (x, y) in a.iter().zip(&b).chain(sa.iter().zip(&sb)) {
                    assert!(
                        (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                        "{x} vs {y} (n {n}, decay {decay})"
                    );
                }
            }
        }
    }
}

/// The reference gradient against central differences of the reference forward.
#[test]
fn reference_gradient_matches_finite_differences() {
    let (n, dk, dv) = (6, 3, 4);
    let [q, k, v, s0] = head_values(11, n, dk, dv);
    let [_, _, dout, ds] = head_values(21, n, dk, dv);
    let dout = &dout[..];
    for decay in [1.0, 0.9, 0.5] {
        let loss = |q: &[f64], k: &[f64], v: &[f64], s0: &[f64]| {
            let (o, s) = rl::quadratic(&Head {
                q,
                k,
                v,
                n,
                dk,
                dv,
                decay,
                s0: Some(s0),
            });
            o.iter().zip(dout).map(|(a, b)| a * b).sum::<f64>()
                + s.iter().zip(&ds).map(|(a, b)| a * b).sum::<f64>()
        };
        let h = Head {
            q: &q,
            k: &k,
            v: &v,
            n,
            dk,
            dv,
            decay,
            s0: Some(&s0),
        };
        let grads = rl::backward(&h, dout, Some(&ds));
        let inputs = [q.clone(), k.clone(), v.clone(), s0.clone()];
        for (which, g) in grads.iter().enumerate() {
            for i in 0..g.len() {
                let eps = 1e-6;
                let mut plus = inputs.clone();
                let mut minus = inputs.clone();
                plus[which][i] += eps;
                minus[which][i] -= eps;
                let fd = (loss(&plus[0], &plus[1], &plus[2], &plus[3])
                    - loss(&minus[0], &minus[1], &minus[2], &minus[3]))
                    / (2.0 * eps);
                assert!(
                    (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                    "input {which}[{i}] decay {decay}: fd {fd} vs {}",
                    g[i]
                );
            }
        }
    }
}

#[test]
fn forward_matches_reference() {
    for n in [1usize, 5, 63, 64, 65, 130] {
        for (dk, dv) in [(16, 16), (24, 40), (64, 64)] {
            check_all(&case(&[n, n], false, dk, dv), false);
        }
    }
    check_all(&case(&[200], false, 128, 128), false);
}

#[test]
fn forward_layouts_packing_and_states() {
    for layout in [Layout::HeadsFirst, Layout::TokensFirst] {
        for (packed, lens) in [(false, vec![70, 70]), (true, vec![0, 1, 64, 129, 30])] {
            for (state_in, state_out) in [(false, false), (true, false), (false, true)] {
                let c = Case {
                    layout,
                    state_in,
                    state_out,
                    ..case(&lens, packed, 32, 48)
                };
                check_all(&c, false);
            }
        }
    }
}

#[test]
fn backward_matches_reference() {
    for n in [1usize, 5, 64, 65, 130] {
        for (dk, dv) in [(16, 16), (24, 40)] {
            check_all(&case(&[n, n], false, dk, dv), true);
        }
    }
    for layout in [Layout::HeadsFirst, Layout::TokensFirst] {
        for (state_in, state_out) in [(false, false), (true, true), (false, true), (true, false)] {
            let c = Case {
                layout,
                state_in,
                state_out,
                ..case(&[0, 3, 100], true, 32, 16)
            };
            check_all(&c, true);
        }
    }
    check_all(&case(&[150], false, 128, 64), true);
}

/// Runs a heads-first f32 forward of one batch on `isa`; returns (o, final state).
fn run_forward(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    decay: &[f32],
    shape: Shape,
    s0: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let mut o = vec![poison::<f32>(); v.len()];
    let mut s = vec![f32::NAN; shape.state_len().unwrap()];
    let mut call = Lightning::new()
        .isa(isa)
        .forward(q, k, v, &mut o, decay, shape)
        .final_state(&mut s);
    if let Some(s0) = s0 {
        call = call.initial_state(s0);
    }
    call.run().unwrap();
    (o, s)
}

fn isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
}

/// A prompt processed in two chunks (the first's final state handed to the
/// second) gives the one-shot outputs and state, within the bound.
#[test]
fn chunked_prefill_equals_one_shot() {
    let (n, cut, heads, d) = (150usize, 70usize, 2usize, 32usize);
    let decay = [0.9f32, 0.999];
    let q = uniform_values(1, heads * n * d, 0.5);
    let k = uniform_values(2, heads * n * d, 0.5);
    let v = uniform_values(3, heads * n * d, 1.0);
    // heads-first [1, heads, n, d]: split each head's rows at `cut`
    let part = |x: &[f32], lo: usize, hi: usize| {
        (0..heads)
            .flat_map(|h| x[(h * n + lo) * d..(h * n + hi) * d].to_vec())
            .collect::<Vec<f32>>()
    };
    for isa in isas() {
        let (o, s) = run_forward(
            isa,
            &q,
            &k,
            &v,
            &decay,
            Shape::batch(1, n, heads, d, d),
            None,
        );
        let (o1, s1) = run_forward(
            isa,
            &part(&q, 0, cut),
            &part(&k, 0, cut),
            &part(&v, 0, cut),
            &decay,
            Shape::batch(1, cut, heads, d, d),
            None,
        );
        let (o2, s2) = run_forward(
            isa,
            &part(&q, cut, n),
            &part(&k, cut, n),
            &part(&v, cut, n),
            &decay,
            Shape::batch(1, n - cut, heads, d, d),
            Some(&s1),
        );
        let (w1, w2) = (part(&o, 0, cut), part(&o, cut, n));
        for (got, want) in o1
            .iter()
            .chain(&o2)
            .zip(w1.iter().chain(&w2))
            .chain(s2.iter().zip(&s))
        {
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{isa:?}: chunked {got} vs one-shot {want}"
            );
        }
    }
}

/// Packed sequences give exactly (bit for bit) what separate calls give.
#[test]
fn packed_equals_separate_calls() {
    let (lens, heads, d) = ([3usize, 0, 64, 100, 1], 2usize, 16usize);
    let offsets: Vec<usize> = std::iter::once(0)
        .chain(lens.iter().scan(0, |a, &l| {
            *a += l;
            Some(*a)
        }))
        .collect();
    let total = offsets[lens.len()];
    let decay = [0.5f32, 1.0];
    for layout in [Layout::HeadsFirst, Layout::TokensFirst] {
        let q = uniform_values(4, total * heads * d, 0.5);
        let k = uniform_values(5, total * heads * d, 0.5);
        let v = uniform_values(6, total * heads * d, 1.0);
        let s0 = uniform_values(7, lens.len() * heads * d * d, 0.5);
        for isa in isas() {
            let lt = Lightning::new().isa(isa).layout(layout);
            let mut o = vec![poison::<f32>(); v.len()];
            let mut s = vec![f32::NAN; s0.len()];
            lt.forward(
                &q,
                &k,
                &v,
                &mut o,
                &decay,
                Shape::packed(&offsets, heads, d, d),
            )
            .initial_state(&s0)
            .final_state(&mut s)
            .run()
            .unwrap();
            // the same sequence alone: rows of (token, head) pairs of that sequence
            let idx = |b: usize, h: usize, t: usize| match layout {
                Layout::HeadsFirst => (h * total + offsets[b] + t) * d,
                Layout::TokensFirst => ((offsets[b] + t) * heads + h) * d,
            };
            for (b, &n) in lens.iter().enumerate() {
                let one = |x: &[f32]| {
                    let mut r = vec![0.0f32; n * heads * d];
                    for h in 0..heads {
                        for t in 0..n {
                            let at = match layout {
                                Layout::HeadsFirst => (h * n + t) * d,
                                Layout::TokensFirst => (t * heads + h) * d,
                            };
                            r[at..at + d].copy_from_slice(&x[idx(b, h, t)..idx(b, h, t) + d]);
                        }
                    }
                    r
                };
                let sz = heads * d * d;
                let mut ob = vec![poison::<f32>(); n * heads * d];
                let mut sb = vec![f32::NAN; sz];
                lt.forward(
                    &one(&q),
                    &one(&k),
                    &one(&v),
                    &mut ob,
                    &decay,
                    Shape::batch(1, n, heads, d, d),
                )
                .initial_state(&s0[b * sz..(b + 1) * sz])
                .final_state(&mut sb)
                .run()
                .unwrap();
                let packed_o = one(&o);
                assert!(
                    ob.iter().zip(&packed_o).all(|(a, b)| same_bits(*a, *b)),
                    "{isa:?} {layout:?} seq {b}: outputs differ"
                );
                assert!(
                    sb.iter()
                        .zip(&s[b * sz..(b + 1) * sz])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?} {layout:?} seq {b}: states differ"
                );
            }
        }
    }
}

/// Decoding token by token from a prefill's state gives the forward pass's
/// outputs for the following tokens (against the f64 recurrence, with the
/// bound's per-step state rounding: dk + 2 steps + 8 roundings).
#[test]
fn decode_steps_equal_forward() {
    let (batch, heads, dk, dv, prompt, steps) =
        (2usize, 3usize, 24usize, 40usize, 37usize, 20usize);
    let decay = [1.0f32, 0.9, 0.5];
    let n = prompt + steps;
    for isa in isas() {
        for dtype in Dtype::ALL {
            let r = match dtype {
                Dtype::F32 => decode_case::<f32>(isa, batch, heads, dk, dv, prompt, steps, &decay),
                Dtype::F16 => decode_case::<f16>(isa, batch, heads, dk, dv, prompt, steps, &decay),
                Dtype::Bf16 => {
                    decode_case::<bf16>(isa, batch, heads, dk, dv, prompt, steps, &decay)
                }
            };
            if let Err(e) = r {
                panic!("{isa:?} {dtype:?} decode (n {n}): {e}");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_case<T: transformer_kernels::Element>(
    isa: Isa,
    batch: usize,
    heads: usize,
    dk: usize,
    dv: usize,
    prompt: usize,
    steps: usize,
    decay: &[f32],
) -> Result<(), String> {
    let n = prompt + steps;
    let conv = |v: Vec<f32>| v.into_iter().map(T::from_f32).collect::<Vec<T>>();
    // heads-first [batch, heads, n, d]
    let q = conv(uniform_values(8, batch * heads * n * dk, 0.5));
    let k = conv(uniform_values(9, batch * heads * n * dk, 0.5));
    let v = conv(uniform_values(10, batch * heads * n * dv, 1.0));
    let rows = |x: &[T], d: usize, lo: usize, hi: usize| {
        (0..batch * heads)
            .flat_map(|bh| x[(bh * n + lo) * d..(bh * n + hi) * d].to_vec())
            .collect::<Vec<T>>()
    };
    let lt = Lightning::new().isa(isa);
    let mut o = vec![poison::<T>(); batch * heads * prompt * dv];
    let mut state = vec![f32::NAN; batch * heads * dk * dv];
    lt.forward(
        &rows(&q, dk, 0, prompt),
        &rows(&k, dk, 0, prompt),
        &rows(&v, dv, 0, prompt),
        &mut o,
        decay,
        Shape::batch(batch, prompt, heads, dk, dv),
    )
    .final_state(&mut state)
    .run()
    .map_err(|e| e.to_string())?;
    let u_io = T::DTYPE.unit_roundoff();
    for t in prompt..n {
        let mut ot = vec![poison::<T>(); batch * heads * dv];
        lt.decode(
            &rows(&q, dk, t, t + 1),
            &rows(&k, dk, t, t + 1),
            &rows(&v, dv, t, t + 1),
            &mut ot,
            &mut state,
            decay,
            dk,
            dv,
        )
        .map_err(|e| e.to_string())?;
        for bh in 0..batch * heads {
            let wide = |x: &[T], d: usize| {
                x[bh * n * d..(bh * n + t + 1) * d]
                    .iter()
                    .map(|e| f64::from(e.to_f32()))
                    .collect::<Vec<f64>>()
            };
            let (qh, kh, vh) = (wide(&q, dk), wide(&k, dk), wide(&v, dv));
            let head = Head {
                q: &qh,
                k: &kh,
                v: &vh,
                n: t + 1,
                dk,
                dv,
                decay: f64::from(decay[bh % heads]),
                s0: None,
            };
            let (want, _) = rl::recurrent(&head);
            let (mag, _) = rl::magnitude(&head);
            for e in 0..dv {
                let (g, w, m) = (
                    f64::from(ot[bh * dv + e].to_f32()),
                    want[t * dv + e],
                    mag[t * dv + e],
                );
                let bound = (dk + 2 * rl::BLOCK + 2 * (t + 1) + 8) as f64 * f64::from(f32::EPSILON)
                    / 2.0
                    * m
                    + u_io * w.abs()
                    + T::DTYPE.min_subnormal() / 2.0;
                if (g - w).abs() > bound || g.is_nan() {
                    return Err(format!(
                        "token {t} row {bh} col {e}: got {g} want {w} bound {bound:.3e}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Bad arguments are rejected with the error named, and nothing is written.
#[test]
fn errors_write_nothing() {
    let (n, heads, d) = (10usize, 2usize, 16usize);
    let q = vec![0.5f32; n * heads * d];
    let sentinel = 1234.5f32;
    let lt = Lightning::new();
    let shape = Shape::batch(1, n, heads, d, d);
    let try_fwd = |decay: &[f32], shape: Shape, olen: usize| {
        let mut o = vec![sentinel; olen];
        let r = lt.forward(&q, &q, &q, &mut o, decay, shape).run();
        assert!(o.iter().all(|&x| x == sentinel), "written on error");
        r
    };
    for bad in [0.0f32, -0.5, 1.5, f32::NAN, 1e-40] {
        assert!(
            matches!(
                try_fwd(&[bad, 1.0], shape, q.len()),
                Err(Error::InvalidArgument { .. })
            ),
            "decay {bad}"
        );
    }
    assert!(matches!(
        try_fwd(&[1.0], shape, q.len()),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        try_fwd(&[1.0, 1.0], shape, q.len() - 1),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        try_fwd(&[1.0, 1.0], Shape::batch(1, n, heads, 0, d), q.len()),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        try_fwd(&[1.0, 1.0], Shape::batch(1, n, heads, 257, d), q.len()),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        try_fwd(&[], Shape::batch(1, n, 0, d, d), q.len()),
        Err(Error::ZeroSize { .. })
    ));
    for offsets in [&[1usize, 10][..], &[0, 6, 4, 10], &[]] {
        assert!(
            try_fwd(&[1.0, 1.0], Shape::packed(offsets, heads, d, d), q.len()).is_err(),
            "offsets {offsets:?}"
        );
    }
    // short workspace, wrong state length
    let mut o = vec![sentinel; q.len()];
    let mut ws = vec![0.0f32; lightning::workspace_len(d, d, false) - 1];
    assert!(
        lt.forward(&q, &q, &q, &mut o, &[1.0, 1.0], shape)
            .workspace(&mut ws)
            .run()
            .is_err()
    );
    let mut s = vec![0.0f32; heads * d * d + 1];
    assert!(
        lt.forward(&q, &q, &q, &mut o, &[1.0, 1.0], shape)
            .final_state(&mut s)
            .run()
            .is_err()
    );
    assert!(o.iter().all(|&x| x == sentinel) && s.iter().all(|&x| x == 0.0));
    // backward and decode
    let (mut dq, mut dk, mut dv) = (
        vec![sentinel; q.len()],
        vec![sentinel; q.len()],
        vec![sentinel; q.len() - 1],
    );
    let r = lt
        .backward(
            &q,
            &q,
            &q,
            &q,
            Grads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
            },
            &[1.0, 1.0],
            shape,
        )
        .run();
    assert!(matches!(r, Err(Error::LengthMismatch { .. })));
    assert!(dq.iter().chain(&dk).chain(&dv).all(|&x| x == sentinel));
    let mut od = vec![sentinel; heads * d];
    let mut st = vec![sentinel; heads * d * d];
    assert!(
        lt.decode(
            &q[..heads * d],
            &q[..heads * d],
            &q[..heads * d],
            &mut od,
            &mut st,
            &[1.0, 2.0],
            d,
            d
        )
        .is_err()
    );
    assert!(od.iter().chain(&st).all(|&x| x == sentinel));
}

fn any_layout() -> impl Strategy<Value = Layout> {
    prop_oneof![Just(Layout::HeadsFirst), Just(Layout::TokensFirst)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random shapes, decays, packings and states, forward and backward.
    #[test]
    fn random_cases(
        lens in prop::collection::vec(0usize..140, 1..4),
        packed in any::<bool>(),
        decay in prop::collection::vec(prop_oneof![Just(1.0f32), Just(0.999), Just(0.9), Just(0.5), 0.3f32..1.0], 1..3),
        dk in 1usize..70,
        dv in 1usize..70,
        layout in any_layout(),
        state_in in any::<bool>(),
        state_out in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let lens = if packed { lens } else { vec![lens[0]; lens.len()] };
        let c = Case { lens, packed, decay, dk, dv, layout, state_in, state_out, seed };
        check_all(&c, false);
        check_all(&c, true);
    }
}

/// The kernels' gradients (f32, every ISA) against central differences of the
/// f64 forward loss sum(dout .* o) + sum(ds .* S_n) on a small shape: the
/// direct check, next to the kernel-vs-reference-gradient tests.
#[test]
fn kernel_gradient_matches_finite_differences() {
    let (n, heads, dk, dv) = (70usize, 1usize, 5usize, 3usize);
    let decay = [0.9f32];
    let f = |seed: u64, len: usize| uniform_values(seed, len, 1.0);
    let (q, k, v) = (f(31, n * dk), f(32, n * dk), f(33, n * dv));
    let (s0, dout, ds) = (f(34, dk * dv), f(35, n * dv), f(36, dk * dv));
    let wide = |x: &[f32]| x.iter().map(|&e| f64::from(e)).collect::<Vec<f64>>();
    let loss = |x: [&[f64]; 4]| {
        let h = Head {
            q: x[0],
            k: x[1],
            v: x[2],
            n,
            dk,
            dv,
            decay: 0.9,
            s0: Some(x[3]),
        };
        let (o, s) = rl::recurrent(&h);
        o.iter()
            .zip(&dout)
            .map(|(a, &b)| a * f64::from(b))
            .sum::<f64>()
            + s.iter()
                .zip(&ds)
                .map(|(a, &b)| a * f64::from(b))
                .sum::<f64>()
    };
    let inputs = [wide(&q), wide(&k), wide(&v), wide(&s0)];
    for isa in isas() {
        let (mut gq, mut gk, mut gv) = (
            vec![f32::NAN; q.len()],
            vec![f32::NAN; k.len()],
            vec![f32::NAN; v.len()],
        );
        let mut gs0 = vec![f32::NAN; s0.len()];
        let grads = Grads {
            dq: &mut gq,
            dk: &mut gk,
            dv: &mut gv,
        };
        Lightning::new()
            .isa(isa)
            .backward(
                &q,
                &k,
                &v,
                &dout,
                grads,
                &decay,
                Shape::batch(1, n, heads, dk, dv),
            )
            .initial_state(&s0)
            .dfinal_state(&ds)
            .dinitial_state(&mut gs0)
            .run()
            .unwrap();
        for (which, g) in [&gq, &gk, &gv, &gs0].into_iter().enumerate() {
            for (i, &got) in g.iter().enumerate() {
                let eps = 1e-5;
                let (mut plus, mut minus) = (inputs.clone(), inputs.clone());
                plus[which][i] += eps;
                minus[which][i] -= eps;
                let p = [&plus[0][..], &plus[1], &plus[2], &plus[3]];
                let m = [&minus[0][..], &minus[1], &minus[2], &minus[3]];
                let fd = (loss(p) - loss(m)) / (2.0 * eps);
                // f32 kernel rounding (relative ~1e-5 of the gradient's scale) plus the
                // difference quotient's own error (~1e-8)
                assert!(
                    (f64::from(got) - fd).abs() <= 1e-4 * (1.0 + fd.abs()),
                    "{isa:?} input {which}[{i}]: kernel {got} vs fd {fd}"
                );
            }
        }
    }
}
