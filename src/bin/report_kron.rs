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
use transformer_kernels::{Dtype, Element, Isa, isa};

use crate::interleave_medians;
use crate::report_kron_matvec as matvec;
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

/// What a shape runs: our fused transform, or the dense baseline.
enum Work {
    Factored(Kron),
    /// the dense n x n transform `y = x P` per token, P row-major (see
    /// `report_kron_matvec`), int8 out
    Dense {
        p: Vec<f32>,
        n: usize,
    },
}

impl Work {
    fn n(&self) -> usize {
        match self {
            Work::Factored(t) => t.n(),
            Work::Dense { n, .. } => *n,
        }
    }
    fn flops_per_token(&self) -> f64 {
        match self {
            Work::Factored(t) => flops_per_token(t),
            Work::Dense { n, .. } => 2.0 * (n * n) as f64,
        }
    }
    /// Factor bytes each token reads from memory: the dense matrix, past
    /// every cache; the small factors stay in L1/L2 (0).
    fn factor_bytes(&self) -> usize {
        match self {
            Work::Factored(_) => 0,
            Work::Dense { p, .. } => std::mem::size_of_val(&p[..]),
        }
    }
    fn workspace_floats(&self) -> usize {
        match self {
            Work::Factored(t) => t.workspace_floats(),
            Work::Dense { n, .. } => 2 * n,
        }
    }
    fn kernel(&self, isa: Isa, dtype: Dtype) -> String {
        match self {
            Work::Factored(_) => format!("tk_kron_{}_{}", dtype.name(), isa.name()),
            Work::Dense { .. } => format!("report_dense_matvec_{} (avx2 fma code)", dtype.name()),
        }
    }
}

/// One measured shape: what it runs, output, token count.
struct Shape {
    name: &'static str,
    work: Work,
    out: Out,
    tokens: usize,
}

pub struct KronRecord {
    kernel: String,
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
    /// the faster read of the baseline's matrix (plain sweep or
    /// `isa::read_probe`), in the same rounds
    read_gbps: f64,
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
                "{{\"family\":\"kron\",\"kernel\":\"{} {} {}\",\"isa\":\"{}\",\"dtype\":\"{}\",",
                "\"shape\":\"{}\",\"out\":\"{}\",\"n\":{},\"tokens\":{},\"flops\":{:.0},\"bytes\":{:.0},",
                "\"median_s\":{:.9},\"gflops\":{:.3},\"peak_fraction\":{:.4},\"gbps\":{:.3},",
                "\"copy_fraction\":{:.4},\"read_fraction\":{:.4},\"tokens_per_s\":{:.1}}}"
            ),
            self.kernel,
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
            self.gbps() / self.read_gbps,
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
        work: Work::Factored(t),
        out,
        tokens,
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
    // product per token streaming its 64 MiB matrix (the summary also
    // compares with a dense GEMM at 100% of the FMA peak, a bound no
    // implementation beats)
    let p = dense(7, 4096).dense_entries().expect("dense").to_vec();
    s.push(Shape {
        name: "dense 4096x4096 matvec (baseline)",
        work: Work::Dense { p, n: 4096 },
        out: Out::Int8,
        tokens: 8,
    });
    s
}

/// The probes that open each round: FMA peak, copy, read sweep, read probe.
const PROBES: usize = 4;

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
            work: match s.work {
                Work::Factored(t) => Work::Factored(t.isa(isa)),
                dense => dense,
            },
            ..s
        })
        .collect();
    let mut bufs: Vec<Buffers<T>> = shapes
        .iter()
        .map(|s| {
            let n = s.work.n();
            let len = s.tokens * n;
            Buffers {
                x: uniform_values(n as u64, len, 1.0)
                    .into_iter()
                    .map(T::from_f32)
                    .collect(),
                y: vec![T::from_f32(0.0); len],
                q8: vec![0; len],
                q4: vec![0; s.tokens * int4_row_bytes(n)],
                scales: vec![0.0; s.tokens],
                ws: vec![0.0; s.work.workspace_floats()],
            }
        })
        .collect();
    // the copy probe moves the largest x (read) into a same-size buffer (written)
    let big = bufs.iter().map(|b| b.x.len()).max().unwrap_or(0);
    let (src, mut dst) = (vec![T::from_f32(1.0); big], vec![T::from_f32(0.0); big]);
    // the read probe sweeps the baseline's matrix (the same bytes it streams)
    let matrix: &[f32] = shapes
        .iter()
        .find_map(|s| match &s.work {
            Work::Dense { p, .. } => Some(&p[..]),
            Work::Factored(_) => None,
        })
        .unwrap_or(&[]);
    let matrix_words = bytemuck::pod_align_to::<f32, u64>(matrix).1;
    let mut probe_flops = 0.0;
    let budget = if quick { 0.5 } else { 4.0 };
    let medians = interleave_medians(PROBES + shapes.len(), budget, 15, |i| match i {
        0 => probe_flops = peak(),
        1 => dst.copy_from_slice(&src),
        2 => {
            black_box(crate::read_sweep(black_box(matrix_words)));
        }
        3 => {
            black_box(isa::read_probe(black_box(matrix_words)));
        }
        _ => {
            let (s, b) = (&shapes[i - PROBES], &mut bufs[i - PROBES]);
            let t = match &s.work {
                Work::Factored(t) => t,
                Work::Dense { p, .. } => {
                    return matvec::transform_int8(p, &b.x, &mut b.q8, &mut b.scales, &mut b.ws);
                }
            };
            let call = t.apply(&b.x).workspace(&mut b.ws);
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
    // the faster of the plain sweep and the library's probe (where it runs)
    let read_s = if isa::read_probe(&[]).is_some() {
        medians[2].min(medians[3])
    } else {
        medians[2]
    };
    let read_gbps = std::mem::size_of_val(matrix_words) as f64 / read_s / 1e9;
    for (j, s) in shapes.iter().enumerate() {
        let n = s.work.n();
        let written = match s.out {
            Out::Y => n * T::DTYPE.size(),
            Out::Int8 => n + 4,
            Out::Int4 => int4_row_bytes(n) + 4,
        };
        out.push(KronRecord {
            kernel: s.work.kernel(isa, T::DTYPE),
            shape: s.name,
            out: s.out,
            isa,
            dtype: T::DTYPE,
            n,
            tokens: s.tokens,
            flops: s.work.flops_per_token() * s.tokens as f64,
            bytes: ((n * T::DTYPE.size() + written + s.work.factor_bytes()) * s.tokens) as f64,
            median_s: medians[PROBES + j],
            peak_flops,
            copy_gbps,
            read_gbps,
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
        "\nfactored vs dense transform: tokens/s of 64x64 dense + int8 over the dense 4096 x 4096 matvec per token (measured; it streams its 64 MiB matrix, against the faster of a read sweep and the read probe over that matrix in the same rounds), and over a dense GEMM (2 n^2 flops per token) at 100% of the measured FMA peak:"
    );
    for r in records
        .iter()
        .filter(|r| r.shape == "64x64 dense" && r.out == Out::Int8)
    {
        let base = records
            .iter()
            .find(|b| b.shape.contains("matvec") && b.isa == r.isa && b.dtype == r.dtype);
        let (matvec, read) = base.map_or((f64::NAN, f64::NAN), |b| {
            (r.tokens_per_s() / b.tokens_per_s(), b.gbps() / b.read_gbps)
        });
        let ideal_gemm = r.peak_flops / (2.0 * (r.n * r.n) as f64);
        println!(
            "  {} {}: {:.0}x (matvec at {:.0}% of the read) / {:.1}x",
            r.isa.name(),
            r.dtype.name(),
            matvec,
            100.0 * read,
            r.tokens_per_s() / ideal_gemm
        );
    }
    records
}
