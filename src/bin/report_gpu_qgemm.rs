//! GPU LLM.int8() and weight-only tables (feature `cuda`): the whole mixed
//! product (outlier search, quantization, gathers, int8 GEMM with its
//! epilogue; f16 in and out) in TOP/s against the same-shape f16 GEMM
//! (cuBLAS through cudarc) in the same run, and the weight-only decode GEMV
//! (m = 1) in GB/s of weight bytes against the copy bandwidth and against
//! cuBLAS's f16 GEMV.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::f16;
use transformer_kernels::cuda::{Int8GemmKernel, Kernels};
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{Int8Weight, Outliers};
use transformer_kernels::reference::uniform_values;

use super::{bandwidth_record, cublas_seconds, time_gpu};
use crate::report_output::Rec;

fn vs(ours: f64, theirs: Option<f64>) -> String {
    theirs.map_or("no cuBLAS".into(), |t| {
        format!("{:.1} us ({:.2}x)", t * 1e6, t / ours)
    })
}

/// A product's record: `kernel` with weights `w` (int8 or f16), f16 x and y.
fn gemm_record(kernel: &str, w: &str, m: usize, n: usize, k: usize) -> Rec {
    Rec::new("gpu-qgemm", kernel)
        .with("w", w)
        .with("dtype", "f16")
        .with("m", m)
        .with("n", n)
        .with("k", k)
}

/// `r` against cuBLAS's time on the same product, when cuBLAS ran.
fn against(r: Rec, what: &str, ours: f64, theirs: Option<f64>) -> Rec {
    match theirs {
        Some(t) => r
            .with("baseline", what)
            .with("speedup_vs_baseline", t / ours),
        None => r,
    }
}

fn mixed(s: &Arc<CudaStream>, k: &Kernels, out: &mut Vec<Rec>) {
    println!(
        "\n### LLM.int8() mixed GEMM (f16 in and out, 0.5% outlier columns; the whole op, then the int8 GEMM alone with int32 out)\n\n| m x n x k | GEMM kernel | outliers | time | TOP/s | cuBLAS f16 GEMM (its time / ours) |\n|---|---|---|---:|---:|---:|"
    );
    // every GEMM kernel of the device (wgmma on compute capability 9.0),
    // unless TK_REPORT_SKIP_WGMMA is set (the device script sets it when the
    // int8 tests failed: a kernel that hangs would cost the whole report)
    let skip_wgmma = std::env::var_os("TK_REPORT_SKIP_WGMMA").is_some();
    let kernels: Vec<Int8GemmKernel> = [Int8GemmKernel::MmaSync, Int8GemmKernel::Wgmma]
        .into_iter()
        .filter(|&g| !(skip_wgmma && g == Int8GemmKernel::Wgmma))
        .filter(|&g| k.use_int8_gemm_kernel(g).is_ok())
        .collect();
    for (m, n, kk) in [(4096, 4096, 4096), (512, 4096, 4096), (4096, 11008, 4096)] {
        let n_out = kk / 200;
        let mut x = uniform_values(1, m * kk, 2.0);
        for o in 0..n_out {
            x[(o * 37 % m) * kk + o * (kk / n_out)] = 20.0;
        }
        let w = uniform_values(2, n * kk, 0.5);
        let xd = s
            .clone_htod(&x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>())
            .unwrap();
        let mut yd = s.alloc_zeros::<f16>(m * n).unwrap();
        let cublas = cublas_seconds(s, m, n, kk);
        if let Some(t) = cublas {
            // the rate the GPU roofline takes for the card's 16-bit ceiling
            out.push(
                gemm_record("cuBLAS f16 GEMM", "f16", m, n, kk)
                    .with("median_s", t)
                    .with("gops", 2.0 * (m * n * kk) as f64 / t / 1e9)
                    .with("peak", "cuBLAS f16 GEMM (this run)")
                    .with("peak_fraction", 1.0),
            );
        }
        let fixed: Vec<u32> = (0..n_out).map(|o| (o * (kk / n_out)) as u32).collect();
        for (name, mode) in [
            ("dynamic", Outliers::Dynamic { threshold: 6.0 }),
            ("fixed", Outliers::Fixed(fixed.clone())),
        ] {
            let weight = Int8Weight::prepare(&w, n, kk, mode).unwrap();
            let dw = k.upload_int8_weight(s, &weight).unwrap();
            let mut ws = k.int8_workspace(s, &dw, m, 4 * n_out).unwrap();
            for &g in &kernels {
                k.use_int8_gemm_kernel(g).unwrap();
                let t = time_gpu(s, 10, || {
                    k.int8_matmul(s, &dw, &mut ws, &xd.as_view(), None, &mut yd.as_view_mut())
                        .unwrap()
                });
                let found = ws.outlier_columns(s).map_or(0, |c| c.len());
                let shape = (m, n, kk);
                let op = format!("llm.int8 {name}{}", kernel_suffix(g));
                let r = gemm_row(&op, g, shape, t, cublas, &format!("{found} {name}"));
                out.push(r.with("outliers", found));
                if name == "fixed" {
                    // the GEMM and its epilogue alone, on the activations just quantized
                    let mut acc = s.alloc_zeros::<i32>(m * n).unwrap();
                    let t = time_gpu(s, 10, || {
                        k.int8_products::<f16>(s, &dw, &mut ws, None, &mut acc.as_view_mut())
                            .unwrap()
                    });
                    let op = format!("int8 GEMM alone{}", kernel_suffix(g));
                    out.push(gemm_row(&op, g, shape, t, cublas, "GEMM alone, int32 out"));
                }
            }
        }
    }
    k.use_int8_gemm_kernel(Int8GemmKernel::MmaSync).unwrap();
}

/// Prints the table row of an int8 product that took `t` seconds with GEMM
/// kernel `g` and returns its record (against cuBLAS's time when it ran).
fn gemm_row(
    op: &str,
    g: Int8GemmKernel,
    (m, n, kk): (usize, usize, usize),
    t: f64,
    cublas: Option<f64>,
    what: &str,
) -> Rec {
    let ops = 2.0 * (m * n * kk) as f64;
    println!(
        "| {m} x {n} x {kk} | {g:?} | {what} | {:.1} us | {:.0} | {} |",
        t * 1e6,
        ops / t / 1e12,
        vs(t, cublas)
    );
    let r = gemm_record(op, "int8", m, n, kk)
        .with("gemm_kernel", format!("{g:?}"))
        .with("median_s", t)
        .with("gops", ops / t / 1e9);
    against(r, "cuBLAS f16 GEMM", t, cublas)
}

/// How a record names the kernel that ran: nothing for the default.
fn kernel_suffix(g: Int8GemmKernel) -> &'static str {
    match g {
        Int8GemmKernel::MmaSync => "",
        Int8GemmKernel::Wgmma => " (wgmma)",
    }
}

fn gemv(s: &Arc<CudaStream>, k: &Kernels, copy_bw: f64, out: &mut Vec<Rec>) {
    println!(
        "\n### Weight-only decode GEMV (m = 1, f16 x, group 128; GB/s of weight bytes)\n\n| n x k | bits | time | GB/s | of copy bw | cuBLAS f16 GEMV (its time / ours) |\n|---|---:|---:|---:|---:|---:|"
    );
    for (n, kk) in [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096)] {
        let w = uniform_values(3, n * kk, 1.0);
        let x = s
            .clone_htod(
                &uniform_values(4, kk, 1.0)
                    .iter()
                    .map(|&v| f16::from_f32(v))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let mut y = s.alloc_zeros::<f16>(n).unwrap();
        let cublas = cublas_seconds(s, 1, n, kk);
        for bits in [8, 4] {
            let qw = QuantizedWeight::quantize(&w, n, kk, bits, 128).unwrap();
            let dw = k.upload_weight_only(s, &qw).unwrap();
            let t = time_gpu(s, 20, || {
                k.weight_only_gemv(s, &dw, &x.as_view(), None, &mut y.as_view_mut())
                    .unwrap()
            });
            let bw = dw.bytes() as f64 / t;
            let r = Rec::new("gpu-gemv", &format!("weight-only int{bits}"))
                .with("dtype", "f16")
                .with("m", 1usize)
                .with("n", n)
                .with("k", kk)
                .with("group", 128usize);
            let r = bandwidth_record(r, dw.bytes(), t, copy_bw);
            out.push(against(r, "cuBLAS f16 GEMV", t, cublas));
            println!(
                "| {n} x {kk} | {bits} | {:.1} us | {:.0} | {:.0}% | {} |",
                t * 1e6,
                bw / 1e9,
                100.0 * bw / copy_bw,
                vs(t, cublas)
            );
        }
    }
}

pub fn report(s: &Arc<CudaStream>, k: &Kernels, copy_bw: f64) -> Vec<Rec> {
    let mut out = Vec::new();
    mixed(s, k, &mut out);
    gemv(s, k, copy_bw, &mut out);
    out
}
