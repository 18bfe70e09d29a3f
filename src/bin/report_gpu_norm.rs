//! GPU norm table (feature `cuda`): LayerNorm, RMSNorm and fused residual +
//! RMSNorm forward for d from 1024 to 8192 (and the backward), against the
//! device copy bandwidth measured in the same run. The bar: 90% of
//! copy bandwidth; scripts/torch_norm_bench.py measures PyTorch on the same
//! shapes in the same device run.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{
    CudaElement, DeviceNormBackward, DeviceNormForward, DeviceWeights, Kernels, NormShape,
};
use transformer_kernels::norm::Norm;

use super::{rows_record, time_gpu};
use crate::report_output::Rec;

/// (rows, d): a batch of 16384 tokens at the hidden sizes of common models.
const SHAPES: [(usize, usize); 4] = [(16384, 1024), (16384, 2048), (16384, 4096), (16384, 8192)];

fn run<T: CudaElement>(s: &Arc<CudaStream>, k: &Kernels, copy_bw: f64, out: &mut Vec<Rec>) {
    for (rows, d) in SHAPES {
        let n = rows * d;
        let es = std::mem::size_of::<T>();
        let host: Vec<T> = (0..n)
            .map(|i| T::from_f32((i % 1000) as f32 * 0.01 - 3.0))
            .collect();
        let x = s.clone_htod(&host).unwrap();
        let mut r = s.clone_htod(&host).unwrap();
        let mut y = s.clone_htod(&host).unwrap();
        let mut dx = s.clone_htod(&host).unwrap();
        let g = s.clone_htod(&vec![1.0f32; d]).unwrap();
        let b = s.clone_htod(&vec![0.0f32; d]).unwrap();
        let mut mean = s.alloc_zeros::<f32>(rows).unwrap();
        let mut rstd = s.alloc_zeros::<f32>(rows).unwrap();
        let mut dg = s.alloc_zeros::<f32>(d).unwrap();
        let mut db = s.alloc_zeros::<f32>(d).unwrap();
        let mut ws = s
            .alloc_zeros::<f32>(Kernels::norm_backward_workspace_len(rows, d))
            .unwrap();
        let (ln, rms) = (Norm::layer_norm(), Norm::rms_norm());
        let push = |out: &mut Vec<Rec>, op: &str, shape: String, bytes: usize, t: f64| {
            out.push(record::<T>(op, shape, rows, d, bytes, t, copy_bw))
        };
        let default = || format!("{:?}", NormShape::for_cols(d));
        // LayerNorm (f32 gamma and beta) and RMSNorm (f32 gamma) with a given shape
        let mut plain = |layer: bool, shape: NormShape| {
            time_gpu(s, 20, || {
                let (xv, gv, bv, mut yv) = (x.as_view(), g.as_view(), b.as_view(), y.as_view_mut());
                let mut c = DeviceNormForward::new(&xv);
                c.y = Some(&mut yv);
                c.gamma = Some(DeviceWeights::F32(&gv));
                if layer {
                    c.beta = Some(DeviceWeights::F32(&bv));
                }
                k.norm_forward_shaped(s, if layer { &ln } else { &rms }, d, shape, c)
                    .unwrap()
            })
        };
        let t = plain(true, NormShape::for_cols(d));
        push(out, "layernorm", default(), 2 * n * es, t);
        let t = plain(false, NormShape::for_cols(d));
        push(out, "rmsnorm", default(), 2 * n * es, t);
        // the other compiled shapes that hold the row, for the choice of default
        for shape in NormShape::all() {
            if shape == NormShape::for_cols(d) || !matches!(shape, NormShape::Rows { .. }) {
                continue;
            }
            if shape.holds(d) {
                let t = plain(true, shape);
                push(
                    out,
                    "layernorm (shape sweep)",
                    format!("{shape:?}"),
                    2 * n * es,
                    t,
                );
                let t = plain(false, shape);
                push(
                    out,
                    "rmsnorm (shape sweep)",
                    format!("{shape:?}"),
                    2 * n * es,
                    t,
                );
            }
        }
        let t = time_gpu(s, 20, || {
            let (xv, gv, mut rv, mut yv) =
                (x.as_view(), g.as_view(), r.as_view_mut(), y.as_view_mut());
            let mut c = DeviceNormForward::new(&xv);
            c.residual = Some(&mut rv);
            c.y = Some(&mut yv);
            c.gamma = Some(DeviceWeights::F32(&gv));
            k.norm_forward(s, &rms, d, c).unwrap()
        });
        push(out, "residual+rmsnorm", default(), 4 * n * es, t);
        {
            let (xv, mut yv, mut mv, mut vv) = (
                x.as_view(),
                y.as_view_mut(),
                mean.as_view_mut(),
                rstd.as_view_mut(),
            );
            let mut c = DeviceNormForward::new(&xv);
            c.y = Some(&mut yv);
            c.stats = Some((&mut mv, &mut vv));
            k.norm_forward(s, &ln, d, c).unwrap();
        }
        let t = time_gpu(s, 20, || {
            let (xv, yv, mv, vv, gv) = (
                x.as_view(),
                y.as_view(),
                mean.as_view(),
                rstd.as_view(),
                g.as_view(),
            );
            let (mut dxv, mut dgv, mut dbv, mut wsv) = (
                dx.as_view_mut(),
                dg.as_view_mut(),
                db.as_view_mut(),
                ws.as_view_mut(),
            );
            k.norm_backward(
                s,
                &ln,
                d,
                DeviceNormBackward {
                    dy: &yv,
                    h: &xv,
                    mean: &mv,
                    rstd: &vv,
                    dx: &mut dxv,
                    dh: None,
                    gamma: Some(DeviceWeights::F32(&gv)),
                    dgamma: Some(&mut dgv),
                    dbeta: Some(&mut dbv),
                    workspace: Some(&mut wsv),
                },
            )
            .unwrap()
        });
        let (shape, groups) = Kernels::norm_backward_shape(rows, d);
        let shape = format!("{shape:?}, {groups} groups");
        push(out, "layernorm backward", shape, 3 * n * es, t);
    }
}

/// Prints one table row and returns its record.
fn record<T: CudaElement>(
    op: &str,
    shape: String,
    rows: usize,
    d: usize,
    bytes: usize,
    t: f64,
    copy_bw: f64,
) -> Rec {
    let r = rows_record(
        "gpu-norm",
        op,
        T::DTYPE.name(),
        (rows, d),
        &shape,
        bytes,
        t,
        copy_bw,
    );
    println!(
        "| {op} | {} | {rows} x {d} | {shape} | {:.0} | {:.0}% |",
        T::DTYPE.name(),
        r.num("gbps").unwrap_or(0.0),
        100.0 * r.num("copy_fraction").unwrap_or(0.0)
    );
    r
}

pub fn report(s: &Arc<CudaStream>, k: &Kernels, copy_bw: f64) -> Vec<Rec> {
    println!("\n### norms (bytes: each tensor read or written once)\n");
    println!(
        "| op | dtype | rows x d | kernel shape | GB/s | of copy bw |\n|---|---|---|---|---:|---:|"
    );
    let mut out = Vec::new();
    run::<f32>(s, k, copy_bw, &mut out);
    run::<bf16>(s, k, copy_bw, &mut out);
    run::<f16>(s, k, copy_bw, &mut out);
    out
}
