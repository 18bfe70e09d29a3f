//! Criterion benches: every runnable softmax variant on three row lengths (in
//! L1, in L2, past L2), throughput in input+output bytes. The report binary
//! (`cargo run --release`) covers the full size ladder and the roofline.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::{bf16, f16};
use transformer_kernels::Element;
use transformer_kernels::softmax::{self, Softmax, Variant};

fn bench_variant<T: Element>(c: &mut Criterion, v: &Variant) {
    let mut group = c.benchmark_group(v.name);
    for cols in [4096usize, 262_144, 4 << 20] {
        let x: Vec<T> = (0..cols)
            .map(|i| T::from_f32(((i * 7919) % 1000) as f32 * 0.01 - 5.0))
            .collect();
        let mut y = vec![T::from_f32(0.0); cols];
        group.throughput(Throughput::Bytes(
            (2 * cols * std::mem::size_of::<T>()) as u64,
        ));
        let opts = Softmax::new().isa(v.isa).algorithm(v.algorithm);
        group.bench_with_input(BenchmarkId::from_parameter(cols), &cols, |b, &cols| {
            b.iter(|| opts.run(black_box(&x), black_box(&mut y), cols).unwrap())
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for v in softmax::variants().iter().filter(|v| v.isa.is_available()) {
        match v.dtype {
            transformer_kernels::Dtype::F32 => bench_variant::<f32>(c, v),
            transformer_kernels::Dtype::F16 => bench_variant::<f16>(c, v),
            transformer_kernels::Dtype::Bf16 => bench_variant::<bf16>(c, v),
        }
    }
}

criterion_group! {
    name = softmax_benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(softmax_benches);
