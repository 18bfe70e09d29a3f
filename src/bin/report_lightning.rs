//! Lightning attention section of the report: forward, backward and decoding
//! per ISA x dtype at head dims 64 and 128 and sequence lengths 2048 and 32768,
//! in FLOP/s (the block products' useful flops) against this core's FMA peak
//! measured in the same run (interleaved with the kernels), and tokens/s, with
//! the ratio tokens/s(32768) / tokens/s(2048): time linear in n means 1.

use std::hint::black_box;

use half::{bf16, f16};
use transformer_kernels::lightning::{Grads, Lightning, Shape, workspace_len};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Element, Isa, isa};

use crate::interleave_medians;

const BLOCK: usize = transformer_kernels::reference::lightning::BLOCK;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Forward,
    Backward,
    /// One decoding step for `heads` sequences (n = tokens already seen: no effect).
    Decode,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Forward => "forward",
            Op::Backward => "backward",
            Op::Decode => "decode",
        }
    }
}

/// Useful flops of a forward over n tokens of one head: per block of L tokens
/// the causal half of Q K^T and of A V (L(L+1)/2 dot products each), Q S and
/// the state update (2 L dk dv each). The backward is three such passes.
pub(crate) fn forward_flops(n: usize, dk: usize, dv: usize) -> f64 {
    let mut f = 0.0;
    let mut t = 0;
    while t < n {
        let l = BLOCK.min(n - t) as f64;
        f += l * (l + 1.0) * (dk + dv) as f64 + 4.0 * l * (dk * dv) as f64;
        t += BLOCK;
    }
    f
}

pub struct LightningRecord {
    op: Op,
    isa: Isa,
    dtype: Dtype,
    heads: usize,
    n: usize,
    d: usize,
    flops: f64,
    median_s: f64,
    peak_flops: f64,
    /// Decode: bytes of state read and written per step.
    bytes: f64,
}

impl LightningRecord {
    fn tokens_per_s(&self) -> f64 {
        let tokens = if self.op == Op::Decode { 1 } else { self.n };
        (tokens * self.heads) as f64 / self.median_s
    }
    fn flops_per_s(&self) -> f64 {
        self.flops / self.median_s
    }
    pub fn json(&self) -> String {
        format!(
            concat!(
                "{{\"family\":\"lightning\",\"kernel\":\"tk_lightning_{}_{} {}\",\"isa\":\"{}\",",
                "\"dtype\":\"{}\",\"op\":\"{}\",\"heads\":{},\"n\":{},\"d\":{},\"flops\":{:.0},",
                "\"median_s\":{:.9},\"gflops\":{:.3},\"peak_fraction\":{:.4},\"tokens_per_s\":{:.1},",
                "\"gbps\":{:.3}}}"
            ),
            self.dtype.name(),
            self.isa.name(),
            self.op.name(),
            self.isa.name(),
            self.dtype.name(),
            self.op.name(),
            self.heads,
            self.n,
            self.d,
            self.flops,
            self.median_s,
            self.flops_per_s() / 1e9,
            self.flops_per_s() / self.peak_flops,
            self.tokens_per_s(),
            self.bytes / self.median_s / 1e9,
        )
    }
}

/// The single-core FMA peak probe of `isa` ([`transformer_kernels::isa::fma_probe`]):
/// each call returns the flops it did; the time comes from the interleaved timer.
pub(crate) fn fma_peak_probe(isa: Isa) -> Option<Box<dyn FnMut() -> f64>> {
    const ITERS: usize = 1 << 18;
    isa::fma_probe(isa, 1)?;
    Some(Box::new(move || isa::fma_probe(isa, ITERS).unwrap_or(0.0)))
}

fn inputs<T: Element>(len: usize, seed: u64, amp: f32) -> Vec<T> {
    uniform_values(seed, len, amp)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

/// The buffers of one (n, heads) problem.
struct Problem<T> {
    n: usize,
    heads: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    dout: Vec<T>,
    o: Vec<T>,
    grads: [Vec<T>; 3],
    decay: Vec<f32>,
}

impl<T: Element> Problem<T> {
    fn new(n: usize, heads: usize, d: usize) -> Problem<T> {
        let len = heads * n * d;
        let zero = vec![T::from_f32(0.0); len];
        Problem {
            n,
            heads,
            q: inputs(len, 1, 0.5),
            k: inputs(len, 2, 0.5),
            v: inputs(len, 3, 1.0),
            dout: inputs(len, 4, 1.0),
            o: zero.clone(),
            grads: [zero.clone(), zero.clone(), zero],
            decay: (0..heads)
                .map(|h| 1.0 - 0.5f32.powi(h as i32 + 5))
                .collect(),
        }
    }
}

/// Every sequence length of `lens` (4 heads below 32768 tokens, 1 from there),
/// forward and backward, and one decoding step, timed in the same interleaved
/// rounds as the FMA probe: the linearity ratios compare lengths measured in
/// the same time window (this machine's speed drifts between windows).
fn measure<T: Element>(
    isa: Isa,
    lens: &[usize],
    d: usize,
    peak: &mut dyn FnMut() -> f64,
    budget: f64,
    out: &mut Vec<LightningRecord>,
) {
    let lt = Lightning::new().isa(isa);
    let mut problems: Vec<Problem<T>> = lens
        .iter()
        .map(|&n| Problem::new(n, if n >= 32768 { 1 } else { 4 }, d))
        .collect();
    let (mut ws, mut ws2) = (
        vec![0.0f32; workspace_len(d, d, false)],
        vec![0.0f32; workspace_len(d, d, true)],
    );
    // decoding: one step of 32 sequences (heads), state [32, d, d]
    let dec_heads = 32;
    let (qd, kd, vd) = (
        inputs::<T>(dec_heads * d, 5, 0.5),
        inputs::<T>(dec_heads * d, 6, 0.5),
        inputs::<T>(dec_heads * d, 7, 1.0),
    );
    let mut od = vec![T::from_f32(0.0); dec_heads * d];
    let mut sd = vec![0.0f32; dec_heads * d * d];
    let dec_decay = vec![0.99f32; dec_heads];
    let mut probe_flops = 0.0;
    let count = 2 + 2 * problems.len();
    let medians = interleave_medians(count, budget, 9, |i| match i {
        0 => probe_flops = peak(),
        1 => lt
            .decode(&qd, &kd, &vd, &mut od, &mut sd, &dec_decay, d, d)
            .unwrap(),
        _ => {
            let p = &mut problems[(i - 2) / 2];
            let shape = Shape::batch(1, p.n, p.heads, d, d);
            if i % 2 == 0 {
                lt.forward(&p.q, &p.k, &p.v, &mut p.o, &p.decay, shape)
                    .workspace(&mut ws)
                    .run()
                    .unwrap()
            } else {
                let [dq, dk, dv] = &mut p.grads;
                let grads = Grads { dq, dk, dv };
                lt.backward(&p.q, &p.k, &p.v, &p.dout, grads, &p.decay, shape)
                    .workspace(&mut ws2)
                    .run()
                    .unwrap()
            }
        }
    });
    black_box((&problems[0].o, &od));
    let peak_flops = probe_flops / medians[0];
    let rec =
        |op: Op, n: usize, heads: usize, flops: f64, median_s: f64, bytes: f64| LightningRecord {
            op,
            isa,
            dtype: T::DTYPE,
            heads,
            n,
            d,
            flops,
            median_s,
            peak_flops,
            bytes,
        };
    for (j, p) in problems.iter().enumerate() {
        let fwd = forward_flops(p.n, d, d) * p.heads as f64;
        out.push(rec(Op::Forward, p.n, p.heads, fwd, medians[2 + 2 * j], 0.0));
        out.push(rec(
            Op::Backward,
            p.n,
            p.heads,
            3.0 * fwd,
            medians[3 + 2 * j],
            0.0,
        ));
    }
    let state_bytes = (2 * 4 * d * d * dec_heads) as f64; // read + written once
    let dec_flops = (4 * d * d * dec_heads) as f64;
    out.push(rec(
        Op::Decode,
        1,
        dec_heads,
        dec_flops,
        medians[1],
        state_bytes,
    ));
}

fn print_table(records: &[LightningRecord]) {
    println!(
        "| op | isa | dtype | heads x n | d | median | GFLOP/s | of FMA peak | tokens/s | state GB/s |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|");
    for r in records {
        println!(
            "| {} | {} | {} | {} x {} | {} | {:.2} ms | {:.1} | {:.0}% | {:.3e} | {} |",
            r.op.name(),
            r.isa.name(),
            r.dtype.name(),
            r.heads,
            if r.op == Op::Decode { 1 } else { r.n },
            r.d,
            r.median_s * 1e3,
            r.flops_per_s() / 1e9,
            100.0 * r.flops_per_s() / r.peak_flops,
            r.tokens_per_s(),
            if r.op == Op::Decode {
                format!("{:.1}", r.bytes / r.median_s / 1e9)
            } else {
                "-".into()
            },
        );
    }
}

/// Measures and prints the section; returns its records.
pub fn report(quick: bool, filter: Option<&str>) -> Vec<LightningRecord> {
    println!(
        "\n## Lightning attention (single thread; FLOP/s of the block products against this core's FMA peak, measured interleaved)\n"
    );
    let lens: &[usize] = if quick { &[512, 2048] } else { &[2048, 32768] };
    let dims: &[usize] = if quick { &[64] } else { &[64, 128] };
    let budget = if quick { 0.5 } else { 5.0 };
    let mut records = Vec::new();
    for isa in [Isa::Avx512, Isa::Avx2] {
        if !isa.is_available() || filter.is_some_and(|f| !isa.name().contains(f)) {
            continue;
        }
        let Some(mut peak) = fma_peak_probe(isa) else {
            continue;
        };
        for &d in dims {
            measure::<f32>(isa, lens, d, &mut *peak, budget, &mut records);
            if isa == Isa::Avx512 {
                measure::<bf16>(isa, lens, d, &mut *peak, budget, &mut records);
                if !quick {
                    measure::<f16>(isa, lens, d, &mut *peak, budget, &mut records);
                }
            }
        }
    }
    print_table(&records);
    // linearity: tokens/s at the longest n over the shortest, per (isa, dtype, d, op)
    println!(
        "\nlinearity (tokens/s at n = {} over n = {}; 1.00 = time linear in n):",
        lens[lens.len() - 1],
        lens[0]
    );
    for r in records
        .iter()
        .filter(|r| r.n == lens[0] && r.op != Op::Decode)
    {
        if let Some(l) = records.iter().find(|x| {
            x.n == lens[lens.len() - 1]
                && x.op == r.op
                && x.isa == r.isa
                && x.dtype == r.dtype
                && x.d == r.d
        }) {
            println!(
                "  {} {} {} d={}: {:.2}",
                r.op.name(),
                r.isa.name(),
                r.dtype.name(),
                r.d,
                l.tokens_per_s() / r.tokens_per_s()
            );
        }
    }
    records
}
