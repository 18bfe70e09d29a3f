//! Criterion benches: every runnable norm variant, LayerNorm and fused
//! residual + RMSNorm forward and the LayerNorm backward, on a batch in L2
//! (64 x 1024) and one past L2 (256 x 8192); throughput in the bytes each op
//! must move. The report binary covers the out-of-cache shape and the peers.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use transformer_kernels::norm::{self, Norm, Variant};
use transformer_kernels::{Dtype, Element};

fn bench_variant<T: Element>(c: &mut Criterion, v: &Variant) {
    let mut group = c.benchmark_group(v.name);
    for (rows, d) in [(64usize, 1024usize), (256, 8192)] {
        let n = rows * d;
        let es = std::mem::size_of::<T>();
        let x: Vec<T> = (0..n)
            .map(|i| T::from_f32(((i * 7919) % 1000) as f32 * 0.01 - 5.0))
            .collect();
        let r = x.clone();
        let (mut y, mut h, mut dx) = (
            vec![T::from_f32(0.0); n],
            vec![T::from_f32(0.0); n],
            vec![T::from_f32(0.0); n],
        );
        let g = vec![1.0f32; d];
        let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        let (mut dg, mut ws) = (vec![0.0f32; d], vec![0.0f64; 2 * d]);
        let ln = Norm::layer_norm().gamma(&g).isa(v.isa);
        let rms = Norm::rms_norm().gamma(&g).isa(v.isa);
        ln.forward(&x, d)
            .output(&mut y)
            .stats(&mut mean, &mut rstd)
            .run()
            .unwrap();
        let id = format!("{rows}x{d}");
        group.throughput(Throughput::Bytes((2 * n * es) as u64));
        group.bench_with_input(BenchmarkId::new("layernorm", &id), &d, |b, &d| {
            b.iter(|| ln.run(black_box(&x), black_box(&mut y), d).unwrap())
        });
        group.throughput(Throughput::Bytes((4 * n * es) as u64));
        group.bench_with_input(BenchmarkId::new("residual+rmsnorm", &id), &d, |b, &d| {
            b.iter(|| {
                rms.forward(black_box(&x), d)
                    .residual_into(&r, &mut h)
                    .output(&mut y)
                    .run()
                    .unwrap()
            })
        });
        group.throughput(Throughput::Bytes((3 * n * es) as u64));
        group.bench_with_input(BenchmarkId::new("layernorm backward", &id), &d, |b, &d| {
            b.iter(|| {
                ln.backward(black_box(&y), &x, &mean, &rstd, d)
                    .dx(&mut dx)
                    .dgamma(&mut dg)
                    .workspace(&mut ws)
                    .run()
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for v in norm::variants().iter().filter(|v| v.isa.is_available()) {
        match v.dtype {
            Dtype::F32 => bench_variant::<f32>(c, v),
            Dtype::F16 => bench_variant::<f16>(c, v),
            Dtype::Bf16 => bench_variant::<bf16>(c, v),
        }
    }
}

criterion_group! {
    name = norm_benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(norm_benches);
