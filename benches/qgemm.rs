//! Criterion benches: the LLM.int8() product (f16 in/out, dynamic outlier
//! columns, 0.5% of k) on every available backend at m = 16 and 256 of a
//! 4096 x 4096 weight, and the weight-only int8 / int4 GEMV (m = 1) on every
//! ISA; throughput in int8 operations (2 m n k) or weight bytes. The report
//! binary adds the same-run peaks, oneDNN and a memory-resident layer stack.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use transformer_kernels::Isa;
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{Backend, Int8Weight, Int8Workspace, Outliers};
use transformer_kernels::reference::uniform_values;

fn llm_int8(c: &mut Criterion) {
    let (n, k) = (4096, 4096);
    let w = uniform_values(1, n * k, 0.05);
    let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let mut group = c.benchmark_group("llm_int8 4096x4096");
    group.sample_size(10);
    for m in [16usize, 256] {
        let mut x = uniform_values(2, m * k, 2.0);
        for o in 0..k / 200 {
            x[(o % m) * k + (o * 997 + 13) % k] = 20.0;
        }
        let x: Vec<f16> = x.into_iter().map(f16::from_f32).collect();
        let mut ws = Int8Workspace::new(&weight, m, k / 50).unwrap();
        let mut y = vec![f16::ZERO; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for b in Backend::ALL
            .into_iter()
            .filter(|b| b.is_available() && *b != Backend::Scalar)
        {
            group.bench_with_input(BenchmarkId::new(b.name(), m), &m, |bch, _| {
                bch.iter(|| {
                    weight
                        .matmul(&mut ws)
                        .backend(b)
                        .run(black_box(&x), &mut y)
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn weight_only(c: &mut Criterion) {
    let (n, k) = (4096, 4096);
    let w = uniform_values(3, n * k, 0.05);
    let x: Vec<f16> = uniform_values(4, k, 1.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let mut group = c.benchmark_group("weight_only m=1 4096x4096");
    for bits in [8u32, 4] {
        let qw = QuantizedWeight::quantize(&w, n, k, bits, 128).unwrap();
        let mut ws = vec![0.0f32; qw.workspace_floats(1)];
        let mut y = vec![f16::ZERO; n];
        group.throughput(Throughput::Bytes(qw.bytes() as u64));
        for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
            group.bench_with_input(
                BenchmarkId::new(format!("int{bits}"), isa.name()),
                &isa,
                |bch, &isa| {
                    bch.iter(|| {
                        qw.gemv(black_box(&x))
                            .isa(isa)
                            .workspace(&mut ws)
                            .run(&mut y)
                            .unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, llm_int8, weight_only);
criterion_main!(benches);
