//! GPU Kronecker table (feature `cuda`): the fused transform + int8
//! quantization at 2048 tokens for n = 4096 (64 x 64 dense, and Hadamard)
//! and the 11008 / 14336 shapes, f16 and bf16 tokens, in GB/s (x read + q
//! and scales written) against the copy bandwidth of the same run, and its
//! time against the same-shape f16 GEMM (2048 x n times n x n, cuBLAS through
//! cudarc) that the quantized activations feed.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{CudaElement, DeviceKronOutput, Kernels};
use transformer_kernels::kron::{Factor, Kron};
use transformer_kernels::reference::uniform_values;

use super::{bandwidth_record, cublas_seconds, time_gpu};
use crate::report_output::Rec;

const TOKENS: usize = 2048;

fn dense(seed: u64, n: usize) -> Factor {
    Factor::dense(&uniform_values(seed, n * n, 1.0 / (n as f32).sqrt()), n).expect("finite")
}

fn shapes() -> Vec<(&'static str, Kron)> {
    let h = |n| Factor::hadamard(n).expect("power of two");
    vec![
        ("64x64 dense", Kron::new(dense(1, 64), dense(2, 64))),
        ("hadamard 4096", Kron::hadamard(4096).expect("power of two")),
        ("86 dense x 128 hadamard", Kron::new(dense(3, 86), h(128))),
        ("112x128 dense", Kron::new(dense(4, 112), dense(5, 128))),
    ]
}

fn run<T: CudaElement>(s: &Arc<CudaStream>, k: &Kernels, copy_bw: f64, out: &mut Vec<Rec>) {
    for (name, t) in shapes() {
        let n = t.n();
        let dt = k.upload_kron(s, &t).expect("n within the CUDA limit");
        let x = s
            .clone_htod(
                &uniform_values(n as u64, TOKENS * n, 1.0)
                    .into_iter()
                    .map(T::from_f32)
                    .collect::<Vec<T>>(),
            )
            .unwrap();
        let mut q = s.alloc_zeros::<i8>(TOKENS * n).unwrap();
        let mut sc = s.alloc_zeros::<f32>(TOKENS).unwrap();
        let secs = time_gpu(s, 20, || {
            let (mut qv, mut sv) = (q.as_view_mut(), sc.as_view_mut());
            let out = DeviceKronOutput::int8(&mut qv, &mut sv);
            k.kron(s, &dt, &x.as_view(), out, 1.0).unwrap()
        });
        let bytes = TOKENS * (n * (T::DTYPE.size() + 1) + 4);
        let gemm = cublas_seconds(s, TOKENS, n, n);
        let path = if dt.tensor_cores(T::DTYPE) {
            "tensor cores"
        } else {
            "SIMT"
        };
        let r = Rec::new("gpu-kron", name)
            .with("out", "int8")
            .with("dtype", T::DTYPE.name())
            .with("path", path)
            .with("tokens", TOKENS)
            .with("n", n)
            .with(
                "flops",
                TOKENS as f64 * crate::report_kron::flops_per_token(&t),
            );
        let mut r = bandwidth_record(r, bytes, secs, copy_bw);
        if let Some(g) = gemm {
            // the bar: under 10% of the GEMM's time, a speedup of 10 or more
            r = r
                .with("baseline", format!("cuBLAS f16 GEMM {TOKENS} x {n} x {n}"))
                .with("speedup_vs_baseline", g / secs);
        }
        out.push(r);
        println!(
            "| {name} | {} | {path} | {n} | {:.1} us | {:.0} | {:.0}% | {} |",
            T::DTYPE.name(),
            secs * 1e6,
            bytes as f64 / secs / 1e9,
            100.0 * bytes as f64 / secs / copy_bw,
            gemm.map_or("no cuBLAS".into(), |g| format!(
                "{:.1} us ({:.1}%)",
                g * 1e6,
                100.0 * secs / g
            )),
        );
    }
}

pub fn report(s: &Arc<CudaStream>, k: &Kernels, copy_bw: f64) -> Vec<Rec> {
    println!(
        "\n### Kronecker transform + int8 ({TOKENS} tokens; GB/s of x read + q written)\n\n| shape | dtype | path | n | time | GB/s | of copy bw | f16 GEMM {TOKENS} x n x n (kron / GEMM) |\n|---|---|---|---:|---:|---:|---:|---:|"
    );
    let mut out = Vec::new();
    run::<f16>(s, k, copy_bw, &mut out);
    run::<bf16>(s, k, copy_bw, &mut out);
    out
}
