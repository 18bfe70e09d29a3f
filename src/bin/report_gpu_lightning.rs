//! GPU Lightning attention table (feature `cuda`): forward and backward at
//! d = 128, n from 2048 to 32768, 16 heads, bf16 and f16, in tokens/s and
//! TFLOP/s of the block products; scripts/torch_lightning_bench.py measures
//! flash-linear-attention's chunk_simple_gla and OpenNLPLab's lightning_attn2
//! on the same shapes in the same device run.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{
    CudaElement, DeviceLightningBackward, DeviceLightningForward, Kernels,
};
use transformer_kernels::lightning::{Layout, Shape};
use transformer_kernels::reference::uniform_values;

use super::time_gpu;
use crate::report_output::Rec;

const HEADS: usize = 16;
const D: usize = 128;
const LENS: [usize; 3] = [2048, 8192, 32768];

fn run<T: CudaElement>(s: &Arc<CudaStream>, k: &Kernels, parallel: bool, out: &mut Vec<Rec>) {
    for n in LENS {
        let len = HEADS * n * D;
        let up = |seed: u64, amp: f32| {
            s.clone_htod(
                &uniform_values(seed, len, amp)
                    .into_iter()
                    .map(T::from_f32)
                    .collect::<Vec<T>>(),
            )
            .unwrap()
        };
        let (q, kk, v, dout) = (up(1, 0.5), up(2, 0.5), up(3, 1.0), up(4, 1.0));
        let (mut o, mut gq, mut gk, mut gv) = (up(5, 1.0), up(6, 1.0), up(7, 1.0), up(8, 1.0));
        let decay: Vec<f32> = (0..HEADS)
            .map(|h| 1.0 - 0.5f32.powi(h as i32 % 8 + 4))
            .collect();
        let shape = Shape::batch(1, n, HEADS, D, D);
        let mut ws = parallel.then(|| {
            s.alloc_zeros::<f32>(Kernels::lightning_workspace_len(&shape).unwrap())
                .unwrap()
        });
        let tf = time_gpu(s, 10, || {
            let (qv, kv, vv, mut ov) = (q.as_view(), kk.as_view(), v.as_view(), o.as_view_mut());
            let mut wsv = ws.as_mut().map(|w| w.as_view_mut());
            let call = DeviceLightningForward {
                q: &qv,
                k: &kv,
                v: &vv,
                o: &mut ov,
                initial_state: None,
                final_state: None,
                workspace: wsv.as_mut(),
            };
            k.lightning_forward(s, Layout::HeadsFirst, shape, &decay, call)
                .unwrap()
        });
        let tb = time_gpu(s, 10, || {
            let (qv, kv, vv, dov) = (q.as_view(), kk.as_view(), v.as_view(), dout.as_view());
            let (mut a, mut b, mut c) = (gq.as_view_mut(), gk.as_view_mut(), gv.as_view_mut());
            let mut wsv = ws.as_mut().map(|w| w.as_view_mut());
            let call = DeviceLightningBackward {
                q: &qv,
                k: &kv,
                v: &vv,
                dout: &dov,
                dq: &mut a,
                dk: &mut b,
                dv: &mut c,
                initial_state: None,
                dfinal_state: None,
                dinitial_state: None,
                workspace: wsv.as_mut(),
            };
            k.lightning_backward(s, Layout::HeadsFirst, shape, &decay, call)
                .unwrap()
        });
        let flops = crate::report_lightning::forward_flops(n, D, D) * HEADS as f64;
        let path = if parallel {
            "chunk-parallel"
        } else {
            "sequential"
        };
        // the backward's useful flops: three forward-sized passes (as on the CPU)
        for (op, f, t) in [
            ("forward", flops, tf),
            ("forward+backward", 4.0 * flops, tf + tb),
        ] {
            out.push(
                Rec::new("gpu-lightning", op)
                    .with("path", path)
                    .with("dtype", T::DTYPE.name())
                    .with("batch", 1usize)
                    .with("heads", HEADS)
                    .with("n", n)
                    .with("d", D)
                    .with("flops", f)
                    .with("median_s", t)
                    .with("gflops", f / t / 1e9)
                    .with("tokens_per_s", (HEADS * n) as f64 / t),
            );
        }
        println!(
            "| {path} | {} | 1 x {HEADS} x {n} x {D} | {:.3} | {:.3} | {:.3} | {:.1} | {:.2e} |",
            T::DTYPE.name(),
            tf * 1e3,
            tb * 1e3,
            (tf + tb) * 1e3,
            flops / tf / 1e12,
            (HEADS * n) as f64 / tf
        );
    }
}

pub fn report(s: &Arc<CudaStream>, k: &Kernels) -> Vec<Rec> {
    println!("\n### Lightning attention (heads-first, decay per head; backward = 3 passes)\n");
    println!(
        "| path | dtype | b x h x n x d | forward ms | backward ms | fwd+bwd ms | forward TFLOP/s | forward tokens/s |\n|---|---|---|---:|---:|---:|---:|---:|"
    );
    let mut out = Vec::new();
    run::<bf16>(s, k, true, &mut out);
    run::<f16>(s, k, true, &mut out);
    run::<bf16>(s, k, false, &mut out);
    out
}
