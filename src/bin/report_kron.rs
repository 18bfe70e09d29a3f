//! Kronecker transform section of the report: the fused transform +
//! quantization at the LLM shapes (4096 = 64 x 64 dense, 11008 = 86 dense x
//! 128 Hadamard, 14336 = 112 x 128 dense, 4096 Hadamard), per ISA x dtype, in
//! FLOP/s of the factor products against this core's FMA peak and in GB/s
//! (x read + q written) against a same-size memcpy, all measured in the same
//! interleaved rounds; and the dense n x n transform (one matrix-vector
//! product per token) as the baseline the factoring replaces.

use std::hint::black_box;

use half::bf16;
use transformer_kernels::kron::{Factor, Kron, int4_row_bytes};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Element, Isa};

use crate::interleave_medians;
use crate::report_lightning::fma_peak_probe;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Out {
    Y,
    Int8,
    Int4,
}

impl Out {
    fn name(self) -> &'static str {
        match self {
            Out::Y => "y",
            Out::Int8 => "int8",
            Out::Int4 => "int4",
        }
    }
}

/// One measured shape: factors, output, token count.
struct Shape {
    name: &'static str,
    t: Kron,
    out: Out,
    tokens: usize,
    /// f32 factor bytes each token reads from memory (the baseline's 64 MiB
    /// matrix, past every cache; the small factors stay in L1/L2: 0)
    factor_bytes: usize,
}

pub struct KronRecord {
    shape: &'static str,
    out: Out,
    isa: Isa,
    dtype: Dtype,
    n: usize,
    tokens: usize,
    flops: f64,
    bytes: f64,
    median_s: f64,
    peak_flops: f64,
    copy_gbps: f64,
}

impl KronRecord {
    fn gflops(&self) -> f64 {
        self.flops / self.median_s / 1e9
    }
    fn gbps(&self) -> f64 {
        self.bytes / self.median_s / 1e9
    }
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.median_s
    }
    pub fn json(&self) -> String {
        format!(
            concat!(
                "{{\"family\":\"kron\",\"kernel\":\"tk_kron_{}_{} {} {}\",\"isa\":\"{}\",\"dtype\":\"{}\",",
                "\"shape\":\"{}\",\"out\":\"{}\",\"n\":{},\"tokens\":{},\"flops\":{:.0},\"bytes\":{:.0},",
                "\"median_s\":{:.9},\"gflops\":{:.3},\"peak_fraction\":{:.4},\"gbps\":{:.3},",
                "\"copy_fraction\":{:.4},\"tokens_per_s\":{:.1}}}"
            ),
            self.dtype.name(),
            self.isa.name(),
            self.shape,
            self.out.name(),
            self.isa.name(),
            self.dtype.name(),
            self.shape,
            self.out.name(),
            self.n,
            self.tokens,
            self.flops,
            self.bytes,
            self.median_s,
            self.gflops(),
            self.gflops() * 1e9 / self.peak_flops,
            self.gbps(),
            self.gbps() / self.copy_gbps,
            self.tokens_per_s(),
        )
    }
}

/// Flops per token of the factor products: 2 n k for a dense factor of
/// order k, n log2(k) additions for a Hadamard one.
pub(crate) fn flops_per_token(t: &Kron) -> f64 {
    let n = t.n() as f64;
    let (a, b) = t.factors();
    [a, b]
        .iter()
        .map(|f| {
            if f.is_hadamard() {
                n * f.order().trailing_zeros() as f64
            } else {
                2.0 * n * f.order() as f64
            }
        })
        .sum()
}

fn dense(seed: u64, n: usize) -> Factor {
    let mut p = uniform_values(seed, n * n, 1.0 / (n as f32).sqrt());
    for i in 0..n {
        p[i * n + i] += 1.0;
    }
    Factor::dense(&p, n).expect("finite factor")
}

fn shapes(quick: bool) -> Vec<Shape> {
    let tokens = if quick { 64 } else { 512 };
    let h = |n| Factor::hadamard(n).expect("power of two");
    let one = |name, t, out| Shape {
        name,
        t,
        out,
        tokens,
        factor_bytes: 0,
    };
    let mut s = vec![
        one(
            "64x64 dense",
            Kron::new(dense(1, 64), dense(2, 64)),
            Out::Int8,
        ),
        one(
            "64x64 dense",
            Kron::new(dense(1, 64), dense(2, 64)),
            Out::Int4,
        ),
        one("64x64 dense", Kron::new(dense(1, 64), dense(2, 64)), Out::Y),
        one(
            "hadamard 4096",
            Kron::hadamard(4096).expect("power of two"),
            Out::Int8,
        ),
    ];
    if !quick {
        s.push(one(
            "86 dense x 128 hadamard",
            Kron::new(dense(3, 86), h(128)),
            Out::Int8,
        ));
        s.push(one(
            "112x128 dense",
            Kron::new(dense(4, 112), dense(5, 128)),
            Out::Int8,
        ));
    }
    // the baseline: the dense 4096 x 4096 transform, one matrix-vector
    // product per token (the summary also compares with a dense GEMM at 100%
    // of the FMA peak, a bound no implementation beats)
    s.push(Shape {
        name: "dense 4096x4096 matvec (baseline)",
        t: Kron::new(dense(6, 1), dense(7, 4096)),
        out: Out::Int8,
        tokens: 8,
        factor_bytes: 4096 * 4096 * 4,
    });
    s
}

struct Buffers<T> {
    x: Vec<T>,
    y: Vec<T>,
    q8: Vec<i8>,
    q4: Vec<u8>,
    scales: Vec<f32>,
    ws: Vec<f32>,
}

fn measure<T: Element>(
    isa: Isa,
    quick: bool,
    peak: &mut dyn FnMut() -> f64,
    out: &mut Vec<KronRecord>,
) {
    let shapes: Vec<Shape> = shapes(quick)
        .into_iter()
        .map(|s| Shape {
            t: s.t.isa(isa),
            ..s
        })
        .collect();
    let mut bufs: Vec<Buffers<T>> = shapes
        .iter()
        .map(|s| {
            let len = s.tokens * s.t.n();
            Buffers {
                x: uniform_values(s.t.n() as u64, len, 1.0)
                    .into_iter()
                    .map(T::from_f32)
                    .collect(),
                y: vec![T::from_f32(0.0); len],
                q8: vec![0; len],
                q4: vec![0; s.tokens * int4_row_bytes(s.t.n())],
                scales: vec![0.0; s.tokens],
                ws: vec![0.0; s.t.workspace_floats()],
            }
        })
        .collect();
    // the copy probe moves the largest x (read) into a same-size buffer (written)
    let big = bufs.iter().map(|b| b.x.len()).max().unwrap_or(0);
    let (src, mut dst) = (vec![T::from_f32(1.0); big], vec![T::from_f32(0.0); big]);
    let mut probe_flops = 0.0;
    let budget = if quick { 0.5 } else { 4.0 };
    let medians = interleave_medians(2 + shapes.len(), budget, 15, |i| match i {
        0 => probe_flops = peak(),
        1 => dst.copy_from_slice(&src),
        _ => {
            let (s, b) = (&shapes[i - 2], &mut bufs[i - 2]);
            let call = s.t.apply(&b.x).workspace(&mut b.ws);
            match s.out {
                Out::Y => call.output(&mut b.y),
                Out::Int8 => call.int8(&mut b.q8, &mut b.scales),
                Out::Int4 => call.int4(&mut b.q4, &mut b.scales),
            }
            .run()
            .expect("valid shapes")
        }
    });
    black_box((&dst, &bufs[0].q8));
    let peak_flops = probe_flops / medians[0];
    let copy_gbps = 2.0 * (big * T::DTYPE.size()) as f64 / medians[1] / 1e9;
    for (j, s) in shapes.iter().enumerate() {
        let n = s.t.n();
        let written = match s.out {
            Out::Y => n * T::DTYPE.size(),
            Out::Int8 => n + 4,
            Out::Int4 => int4_row_bytes(n) + 4,
        };
        out.push(KronRecord {
            shape: s.name,
            out: s.out,
            isa,
            dtype: T::DTYPE,
            n,
            tokens: s.tokens,
            flops: flops_per_token(&s.t) * s.tokens as f64,
            bytes: ((n * T::DTYPE.size() + written + s.factor_bytes) * s.tokens) as f64,
            median_s: medians[2 + j],
            peak_flops,
            copy_gbps,
        });
    }
}

fn print_table(records: &[KronRecord]) {
    println!(
        "| shape | out | isa | dtype | n | tokens/s | GFLOP/s | of FMA peak | GB/s | of copy |"
    );
    println!("|---|---|---|---|---:|---:|---:|---:|---:|---:|");
    for r in records {
        println!(
            "| {} | {} | {} | {} | {} | {:.3e} | {:.1} | {:.0}% | {:.2} | {:.0}% |",
            r.shape,
            r.out.name(),
            r.isa.name(),
            r.dtype.name(),
            r.n,
            r.tokens_per_s(),
            r.gflops(),
            100.0 * r.gflops() * 1e9 / r.peak_flops,
            r.gbps(),
            100.0 * r.gbps() / r.copy_gbps,
        );
    }
}

/// Measures and prints the section; returns its records.
pub fn report(quick: bool, filter: Option<&str>) -> Vec<KronRecord> {
    println!(
        "\n## Kronecker transforms + quantization (single thread; product FLOP/s against this core's FMA peak, GB/s of x read + q written (the baseline: + its matrix per token) against a same-size copy, all interleaved)\n"
    );
    let mut records = Vec::new();
    for isa in [Isa::Avx512, Isa::Avx2] {
        if !isa.is_available() || filter.is_some_and(|f| !isa.name().contains(f)) {
            continue;
        }
        let Some(mut peak) = fma_peak_probe(isa) else {
            continue;
        };
        measure::<f32>(isa, quick, &mut *peak, &mut records);
        if isa == Isa::Avx512 {
            measure::<bf16>(isa, quick, &mut *peak, &mut records);
        }
    }
    print_table(&records);
    println!(
        "\nfactored vs dense transform: tokens/s of 64x64 dense + int8 over the dense 4096 x 4096 matvec per token (measured), and over a dense GEMM (2 n^2 flops per token) at 100% of the measured FMA peak:"
    );
    for r in records
        .iter()
        .filter(|r| r.shape == "64x64 dense" && r.out == Out::Int8)
    {
        let matvec = records
            .iter()
            .find(|b| b.shape.contains("matvec") && b.isa == r.isa && b.dtype == r.dtype)
            .map_or(f64::NAN, |b| r.tokens_per_s() / b.tokens_per_s());
        let ideal_gemm = r.peak_flops / (2.0 * (r.n * r.n) as f64);
        println!(
            "  {} {}: {:.0}x / {:.1}x",
            r.isa.name(),
            r.dtype.name(),
            matvec,
            r.tokens_per_s() / ideal_gemm
        );
    }
    records
}
