//! GPU section of the report (feature `cuda`, needs a device): softmax over
//! LLM-shaped batches, timed with device synchronisation, against the
//! device-to-device copy bandwidth measured in the same run.

#[path = "report_gpu_kron.rs"]
mod kron;
#[path = "report_gpu_lightning.rs"]
mod lightning;
#[path = "report_gpu_norm.rs"]
mod norm;
#[path = "report_gpu_qgemm.rs"]
mod qgemm;

use std::time::{Duration, Instant};

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys::cublasOperation_t};
use cudarc::driver::{CudaContext, CudaStream};
use half::{bf16, f16};
use transformer_kernels::cuda::{CudaElement, Kernels, SoftmaxShape, gpu_available};
use transformer_kernels::softmax::Softmax;

use crate::report_output::Rec;

/// (rows, cols): attention-score rows, a 32k and a 128k vocabulary, 256k rows.
const SHAPES: [(usize, usize); 5] = [
    (65536, 128),
    (16384, 1024),
    (4096, 32000),
    (1024, 131072),
    (256, 262144),
];

fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Launches timed back to back per sample, so that the host's synchronisation
/// latency (tens of microseconds) is spread over many kernels, as in a model.
const LAUNCHES_PER_SAMPLE: usize = 10;

/// Median seconds per launch of `f` over `reps` samples (one warm-up launch
/// first); scripts/torch_timing.py times PyTorch the same way.
pub(crate) fn time_gpu(stream: &CudaStream, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    stream.synchronize().unwrap();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..LAUNCHES_PER_SAMPLE {
                    f();
                }
                stream.synchronize().unwrap();
                t.elapsed().as_secs_f64() / LAUNCHES_PER_SAMPLE as f64
            })
            .collect(),
    )
}

/// Median seconds of the f16 `y [m, n] = x [m, k] W [n, k]^T` (None without cuBLAS).
pub(crate) fn cublas_seconds(
    s: &std::sync::Arc<CudaStream>,
    m: usize,
    n: usize,
    k: usize,
) -> Option<f64> {
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return None;
    }
    let blas = CudaBlas::new(s.clone()).ok()?;
    let x = s.alloc_zeros::<f16>(m * k).ok()?;
    let w = s.alloc_zeros::<f16>(n * k).ok()?;
    let mut y = s.alloc_zeros::<f16>(m * n).ok()?;
    // column-major: y^T [n, m] = W (W^T stored) x^T
    let cfg = GemmConfig {
        transa: cublasOperation_t::CUBLAS_OP_T,
        transb: cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: f16::ONE,
        lda: k as i32,
        ldb: k as i32,
        beta: f16::ZERO,
        ldc: n as i32,
    };
    // SAFETY: x, w, y hold the sizes the configuration names.
    Some(time_gpu(s, 20, || {
        unsafe { blas.gemm(cfg, &w, &x, &mut y) }.expect("cuBLAS gemm")
    }))
}

/// A GPU record with its GB/s and fraction of the run's copy bandwidth.
pub(crate) fn bandwidth_record(r: Rec, bytes: usize, secs: f64, copy_bw: f64) -> Rec {
    let bw = bytes as f64 / secs;
    r.with("bytes", bytes)
        .with("median_s", secs)
        .with("gbps", bw / 1e9)
        .with("copy_fraction", bw / copy_bw)
}

/// The record of a [rows, cols] measurement of the softmax and norm tables:
/// family, kernel, dtype, shape, kernel shape, then its GB/s and fraction of
/// the run's copy bandwidth.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_record(
    family: &str,
    kernel: &str,
    dtype: &str,
    (rows, cols): (usize, usize),
    shape: &str,
    bytes: usize,
    secs: f64,
    copy_bw: f64,
) -> Rec {
    let r = Rec::new(family, kernel)
        .with("dtype", dtype)
        .with("rows", rows)
        .with("cols", cols)
        .with("shape", shape);
    bandwidth_record(r, bytes, secs, copy_bw)
}

fn run<T: CudaElement>(
    stream: &std::sync::Arc<CudaStream>,
    k: &Kernels,
    copy_bw: f64,
    out: &mut Vec<Rec>,
) {
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        let x = stream
            .clone_htod(
                &(0..n)
                    .map(|i| T::from_f32((i % 1000) as f32 * 0.01))
                    .collect::<Vec<T>>(),
            )
            .unwrap();
        let mut y = stream.clone_htod(&vec![T::from_f32(0.0); n]).unwrap();
        let t = time_gpu(stream, 20, || {
            k.softmax(
                stream,
                &x.as_view(),
                &mut y.as_view_mut(),
                cols,
                &Softmax::new(),
            )
            .unwrap()
        });
        let bytes = 2 * n * std::mem::size_of::<T>();
        let shape = format!("{:?}", SoftmaxShape::for_cols(cols));
        let r = rows_record(
            "gpu-softmax",
            "softmax",
            T::DTYPE.name(),
            (rows, cols),
            &shape,
            bytes,
            t,
            copy_bw,
        );
        println!(
            "| {} | {rows} x {cols} | {shape} | {:.1} | {:.0}% |",
            T::DTYPE.name(),
            r.num("gbps").unwrap_or(0.0),
            100.0 * r.num("copy_fraction").unwrap_or(0.0)
        );
        out.push(r);
    }
}

/// The GPU tables of `family` (softmax, norm, lightning, kron, qgemm; all
/// when None), after the copy bandwidth they are measured against, and their
/// records; with `torch` (a Python with PyTorch), the PyTorch and Triton
/// baselines measured after them in the same run, merged into the records.
/// None without a device.
pub fn report(family: Option<&str>, torch: Option<&str>) -> Option<Vec<Rec>> {
    if !gpu_available() {
        println!("\n(no CUDA device: GPU section skipped)");
        return None;
    }
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.default_stream();
    let k = Kernels::new(&ctx).unwrap();
    let n = 256 << 20;
    let a = stream.alloc_zeros::<u8>(n).unwrap();
    let mut b = stream.alloc_zeros::<u8>(n).unwrap();
    let t = time_gpu(&stream, 20, || stream.memcpy_dtod(&a, &mut b).unwrap());
    let copy_bw = 2.0 * n as f64 / t;
    let device = ctx.name().unwrap_or_default();
    println!(
        "\n## GPU: {device} (copy bandwidth {:.0} GB/s read + write, this run)\n",
        copy_bw / 1e9
    );
    // the bound every GB/s record's copy_fraction refers to, and the card
    let mut recs = vec![bandwidth_record(
        Rec::new("gpu-copy", "device-to-device copy").with("device", device.as_str()),
        2 * n,
        t,
        copy_bw,
    )];
    let wants = |f: &str| family.is_none_or(|a| a == f);
    let mut scripts = Vec::new();
    if wants("softmax") {
        println!(
            "| dtype | rows x cols | kernel shape | GB/s (in+out) | of copy bw |\n|---|---|---|---:|---:|"
        );
        run::<f32>(&stream, &k, copy_bw, &mut recs);
        run::<f16>(&stream, &k, copy_bw, &mut recs);
        run::<bf16>(&stream, &k, copy_bw, &mut recs);
        scripts.push(("scripts/torch_softmax_bench.py", 60));
    }
    if wants("norm") {
        recs.extend(norm::report(&stream, &k, copy_bw));
        scripts.push(("scripts/torch_norm_bench.py", 60));
    }
    if wants("lightning") {
        recs.extend(lightning::report(&stream, &k));
        // Triton compiles its kernels first
        scripts.push(("scripts/torch_lightning_bench.py", 200));
    }
    if wants("kron") {
        recs.extend(kron::report(&stream, &k, copy_bw));
    }
    if wants("qgemm") {
        recs.extend(qgemm::report(&stream, &k, copy_bw));
    }
    if let Some(python) = torch {
        let peers: Vec<Rec> = scripts
            .iter()
            .flat_map(|&(script, secs)| {
                crate::report_baselines::run_script(python, script, Duration::from_secs(secs))
            })
            .collect();
        crate::report_baselines::merge(&mut recs, &peers);
        println!(
            "\n### GPU against its baselines (PyTorch / Triton measured after ours in this run; cuBLAS f16 GEMM for kron and qgemm)\n\n{}",
            crate::report_baselines::table(&recs)
        );
        recs.extend(peers);
    }
    Some(recs)
}
