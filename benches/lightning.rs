//! Criterion benches: every runnable Lightning variant, forward, backward and
//! one decoding step, at d = 64 and 128 on 4 heads x 1024 tokens; throughput
//! in tokens (x heads). The report binary adds FLOP/s against the FMA peak
//! and the linearity in n.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use transformer_kernels::lightning::{self, Grads, Lightning, Shape, Variant, workspace_len};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Element};

fn bench_variant<T: Element>(c: &mut Criterion, v: &Variant) {
    let mut group = c.benchmark_group(v.name);
    let (heads, n) = (4usize, 1024usize);
    for d in [64usize, 128] {
        let len = heads * n * d;
        let vals = |seed: u64| -> Vec<T> {
            uniform_values(seed, len, 0.5)
                .into_iter()
                .map(T::from_f32)
                .collect()
        };
        let (q, k, vv, dout) = (vals(1), vals(2), vals(3), vals(4));
        let (mut o, mut dq, mut dk, mut dv) = (vals(5), vals(6), vals(7), vals(8));
        let decay = vec![0.99f32; heads];
        let mut ws = vec![0.0f32; workspace_len(d, d, true)];
        let shape = Shape::batch(1, n, heads, d, d);
        let lt = Lightning::new().isa(v.isa);
        group.throughput(Throughput::Elements((heads * n) as u64));
        group.bench_with_input(BenchmarkId::new("forward", d), &d, |b, _| {
            b.iter(|| {
                lt.forward(black_box(&q), &k, &vv, &mut o, &decay, shape)
                    .workspace(&mut ws)
                    .run()
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("backward", d), &d, |b, _| {
            b.iter(|| {
                let grads = Grads {
                    dq: &mut dq,
                    dk: &mut dk,
                    dv: &mut dv,
                };
                lt.backward(black_box(&q), &k, &vv, &dout, grads, &decay, shape)
                    .workspace(&mut ws)
                    .run()
                    .unwrap()
            })
        });
        let mut state = vec![0.0f32; heads * d * d];
        group.throughput(Throughput::Elements(heads as u64));
        group.bench_with_input(BenchmarkId::new("decode", d), &d, |b, &d| {
            b.iter(|| {
                lt.decode(
                    black_box(&q[..heads * d]),
                    &k[..heads * d],
                    &vv[..heads * d],
                    &mut o[..heads * d],
                    &mut state,
                    &decay,
                    d,
                    d,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for v in lightning::variants()
        .iter()
        .filter(|v| v.isa.is_available())
    {
        match v.dtype {
            Dtype::F32 => bench_variant::<f32>(c, v),
            Dtype::F16 => bench_variant::<f16>(c, v),
            Dtype::Bf16 => bench_variant::<bf16>(c, v),
        }
    }
}

criterion_group! {
    name = lightning_benches;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(lightning_benches);
