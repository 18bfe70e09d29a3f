//! Criterion benches: every runnable Kronecker variant on 64 tokens of 4096
//! elements, 64 x 64 dense factors and the Hadamard transform, fused with
//! int8 quantization; throughput in tokens. The report binary adds FLOP/s
//! against the FMA peak, GB/s against a copy, and the dense baseline.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use transformer_kernels::kron::{self, Factor, Kron, Variant};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Element};

fn bench_variant<T: Element>(c: &mut Criterion, v: &Variant) {
    let mut group = c.benchmark_group(v.name);
    let tokens = 64;
    let dense = |seed, n: usize| Factor::dense(&uniform_values(seed, n * n, 0.1), n).unwrap();
    let shapes = [
        ("64x64 dense", Kron::new(dense(1, 64), dense(2, 64))),
        ("hadamard 4096", Kron::hadamard(4096).unwrap()),
    ];
    for (name, t) in shapes {
        let t = t.isa(v.isa);
        let x: Vec<T> = uniform_values(3, tokens * 4096, 1.0)
            .into_iter()
            .map(T::from_f32)
            .collect();
        let (mut q, mut s) = (vec![0i8; tokens * 4096], vec![0.0f32; tokens]);
        let mut ws = vec![0.0f32; t.workspace_floats()];
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(BenchmarkId::new("int8", name), &name, |b, _| {
            b.iter(|| {
                t.apply(black_box(&x))
                    .int8(&mut q, &mut s)
                    .workspace(&mut ws)
                    .run()
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for v in kron::variants().iter().filter(|v| v.isa.is_available()) {
        match v.dtype {
            Dtype::F32 => bench_variant::<f32>(c, v),
            Dtype::F16 => bench_variant::<f16>(c, v),
            Dtype::Bf16 => bench_variant::<bf16>(c, v),
        }
    }
}

criterion_group!(kron_benches, benches);
criterion_main!(kron_benches);
