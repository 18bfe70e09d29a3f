//! Norm section of the report: every forward/backward operation per ISA x
//! dtype on an out-of-cache batch (16384 x 8192: 512 MiB of f32 per tensor,
//! past the 480 MiB L3) and an in-cache one, against the copy bandwidth
//! measured on the same buffers in the same interleaved rounds, and the fused
//! residual + norm against the unfused pair (add, then norm) in the same run.
//! With `--ort PYTHON`, ONNX Runtime's single-thread LayerNormalization,
//! SimplifiedLayerNormalization (RMSNorm), Add and SkipSimplifiedLayerNormalization,
//! and with `--onednn BIN` oneDNN's LayerNorm, run on the same shape between two
//! measurements of ours.

use std::hint::black_box;

use half::{bf16, f16};
use transformer_kernels::norm::{self, ChannelAffine, Norm};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Dtype, Element, Isa};

/// One timed operation. Bytes are what the operation must move (each tensor
/// read or written once).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    /// memcpy x -> y: the bandwidth probe (one read + one write sweep).
    Copy,
    LayerNorm,
    RmsNorm,
    /// h = x + r alone (the first half of the unfused pair).
    Add,
    /// RMSNorm of h alone (the second half of the unfused pair).
    RmsNormOfH,
    ResidualRmsNorm,
    ResidualLayerNorm,
    RmsNormInt8,
    LayerNormBackward,
    RmsNormBackward,
    /// RMSNorm backward with the residual stream's gradient added (dy, h, dh in; dx out).
    ResidualRmsNormBackward,
    /// The paper variants, each an option of the same kernels.
    CrmsNorm,
    SrmsNorm,
    ScaledLayerNorm,
    Channel,
}

impl Op {
    const KERNELS: [Op; 14] = [
        Op::LayerNorm,
        Op::RmsNorm,
        Op::Add,
        Op::RmsNormOfH,
        Op::ResidualRmsNorm,
        Op::ResidualLayerNorm,
        Op::RmsNormInt8,
        Op::LayerNormBackward,
        Op::RmsNormBackward,
        Op::ResidualRmsNormBackward,
        Op::CrmsNorm,
        Op::SrmsNorm,
        Op::ScaledLayerNorm,
        Op::Channel,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Copy => "copy",
            Op::LayerNorm => "layernorm",
            Op::RmsNorm => "rmsnorm",
            Op::Add => "add",
            Op::RmsNormOfH => "rmsnorm(h)",
            Op::ResidualRmsNorm => "residual+rmsnorm",
            Op::ResidualLayerNorm => "residual+layernorm",
            Op::RmsNormInt8 => "rmsnorm->int8",
            Op::LayerNormBackward => "layernorm backward",
            Op::RmsNormBackward => "rmsnorm backward",
            Op::ResidualRmsNormBackward => "residual+rmsnorm backward",
            Op::CrmsNorm => "crmsnorm",
            Op::SrmsNorm => "srmsnorm",
            Op::ScaledLayerNorm => "layernorm/sqrt(layer)",
            Op::Channel => "batchnorm (frozen)",
        }
    }

    /// Bytes moved for n elements of `es` bytes in `rows` rows.
    fn bytes(self, n: usize, rows: usize, es: usize) -> usize {
        match self {
            Op::Copy | Op::LayerNorm | Op::RmsNorm | Op::RmsNormOfH => 2 * n * es,
            Op::CrmsNorm | Op::SrmsNorm | Op::ScaledLayerNorm | Op::Channel => 2 * n * es,
            Op::ResidualRmsNormBackward => 4 * n * es,
            Op::Add => 3 * n * es,
            Op::ResidualRmsNorm | Op::ResidualLayerNorm => 4 * n * es,
            Op::RmsNormInt8 => n * es + n + 4 * rows,
            Op::LayerNormBackward | Op::RmsNormBackward => 3 * n * es,
        }
    }
}

struct Bufs<T> {
    x: Vec<T>,
    r: Vec<T>,
    h: Vec<T>,
    y: Vec<T>,
    q: Vec<i8>,
    scales: Vec<f32>,
    dx: Vec<T>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    ws: Vec<f64>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    affine: ChannelAffine,
}

fn values<T: Element>(seed: u64, n: usize, amp: f32, offset: f32) -> Vec<T> {
    uniform_values(seed, n, amp)
        .into_iter()
        .map(|v| T::from_f32(v + offset))
        .collect()
}

impl<T: Element> Bufs<T> {
    fn new(rows: usize, cols: usize) -> Bufs<T> {
        let n = rows * cols;
        let mut b = Bufs {
            x: values(1, n, 2.0, 0.5),
            r: values(2, n, 2.0, 0.0),
            h: vec![T::from_f32(0.0); n],
            y: vec![T::from_f32(0.0); n],
            q: vec![0; n],
            scales: vec![0.0; rows],
            dx: vec![T::from_f32(0.0); n],
            mean: vec![0.0; rows],
            rstd: vec![0.0; rows],
            dgamma: vec![0.0; cols],
            dbeta: vec![0.0; cols],
            ws: vec![0.0; Norm::layer_norm().backward_workspace_len(rows, cols)],
            gamma: uniform_values(3, cols, 1.0),
            beta: uniform_values(4, cols, 0.5),
            affine: ChannelAffine::batch_norm(
                &uniform_values(5, cols, 1.0),
                &vec![0.5; cols],
                Some(&uniform_values(3, cols, 1.0)),
                Some(&uniform_values(4, cols, 0.5)),
                1e-5,
            )
            .unwrap(),
        };
        // statistics for the backward (and every output page touched once)
        let (x, mean, rstd) = (&b.x, &mut b.mean, &mut b.rstd);
        Norm::layer_norm()
            .forward(x, cols)
            .output(&mut b.y)
            .stats(mean, rstd)
            .run()
            .unwrap();
        b.h.copy_from_slice(&b.x);
        b
    }

    fn run(&mut self, op: Op, isa: Isa, cols: usize) {
        let ln = Norm::layer_norm()
            .gamma(&self.gamma)
            .beta(&self.beta)
            .isa(isa);
        let rms = Norm::rms_norm().gamma(&self.gamma).isa(isa);
        let x = black_box(&self.x[..]);
        match op {
            Op::Copy => self.y.copy_from_slice(x),
            Op::LayerNorm => ln.run(x, &mut self.y, cols).unwrap(),
            Op::RmsNorm => rms.run(x, &mut self.y, cols).unwrap(),
            Op::Add => rms
                .forward(x, cols)
                .residual_into(&self.r, &mut self.h)
                .run()
                .unwrap(),
            Op::RmsNormOfH => rms.run(&self.h, &mut self.y, cols).unwrap(),
            Op::ResidualRmsNorm => rms
                .forward(x, cols)
                .residual_into(&self.r, &mut self.h)
                .output(&mut self.y)
                .run()
                .unwrap(),
            Op::ResidualLayerNorm => ln
                .forward(x, cols)
                .residual_into(&self.r, &mut self.h)
                .output(&mut self.y)
                .run()
                .unwrap(),
            Op::RmsNormInt8 => rms
                .forward(x, cols)
                .quantized(&mut self.q, &mut self.scales)
                .run()
                .unwrap(),
            Op::LayerNormBackward | Op::RmsNormBackward | Op::ResidualRmsNormBackward => {
                let n = if op == Op::LayerNormBackward { ln } else { rms };
                let mut call = n
                    .backward(&self.y, x, &self.mean, &self.rstd, cols)
                    .dx(&mut self.dx)
                    .dgamma(&mut self.dgamma)
                    .dbeta(&mut self.dbeta)
                    .workspace(&mut self.ws);
                if op == Op::ResidualRmsNormBackward {
                    call = call.residual_grad(&self.r);
                }
                call.run().unwrap()
            }
            Op::CrmsNorm => Norm::crms_norm()
                .gamma(&self.gamma)
                .isa(isa)
                .run(x, &mut self.y, cols)
                .unwrap(),
            Op::SrmsNorm => Norm::srms_norm()
                .isa(isa)
                .run(x, &mut self.y, cols)
                .unwrap(),
            Op::ScaledLayerNorm => ln.layer_scale(12).run(x, &mut self.y, cols).unwrap(),
            Op::Channel => Norm::channel(&self.affine)
                .isa(isa)
                .run(x, &mut self.y, cols)
                .unwrap(),
        }
        black_box(&self.y);
    }
}

pub struct NormRecord {
    op: Op,
    isa: Isa,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    bytes: usize,
    median_s: f64,
    copy_gbps: f64,
    baseline: &'static str,
    speedup: f64,
}

impl NormRecord {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / self.median_s / 1e9
    }
    pub fn json(&self) -> String {
        format!(
            concat!(
                "{{\"family\":\"norm\",\"kernel\":\"tk_norm_{}_{} {}\",\"isa\":\"{}\",\"dtype\":\"{}\",",
                "\"op\":\"{}\",\"rows\":{},\"cols\":{},\"bytes\":{},\"median_s\":{:.9},",
                "\"gbps\":{:.3},\"roofline_fraction\":{:.4},\"baseline\":\"{}\",",
                "\"speedup_vs_baseline\":{:.4}}}"
            ),
            self.dtype.name(),
            self.isa.name(),
            self.op.name(),
            self.isa.name(),
            self.dtype.name(),
            self.op.name(),
            self.rows,
            self.cols,
            self.bytes,
            self.median_s,
            self.gbps(),
            self.gbps() / self.copy_gbps,
            self.baseline,
            self.speedup
        )
    }
}

fn measure<T: Element>(
    rows: usize,
    cols: usize,
    filter: Option<&str>,
    budget_s: f64,
    out: &mut Vec<NormRecord>,
) {
    let isas: Vec<Isa> = norm::variants()
        .iter()
        .filter(|v| v.dtype == T::DTYPE && v.isa.is_available())
        .filter(|v| filter.is_none_or(|f| v.name.contains(f)))
        .map(|v| v.isa)
        .filter(|&i| i != Isa::Scalar || rows * cols <= 1 << 22)
        .collect();
    if isas.is_empty() {
        return;
    }
    eprintln!("measuring norm {} {rows} x {cols}", T::DTYPE.name());
    let mut b = Bufs::<T>::new(rows, cols);
    let n = rows * cols;
    let es = T::DTYPE.size();
    for isa in isas {
        let mut ops = vec![Op::Copy];
        ops.extend(Op::KERNELS);
        let t = super::interleave_medians(ops.len(), budget_s, 1000, |i| b.run(ops[i], isa, cols));
        let copy_gbps = Op::Copy.bytes(n, rows, es) as f64 / t[0] / 1e9;
        let at = |op: Op| t[ops.iter().position(|&o| o == op).unwrap()];
        let unfused = at(Op::Add) + at(Op::RmsNormOfH);
        for (i, &op) in ops.iter().enumerate().skip(1) {
            let (baseline, speedup) = match op {
                Op::ResidualRmsNorm => ("add + rmsnorm", unfused / t[i]),
                Op::ResidualLayerNorm => {
                    ("add + layernorm", (at(Op::Add) + at(Op::LayerNorm)) / t[i])
                }
                _ => ("-", f64::NAN),
            };
            out.push(NormRecord {
                op,
                isa,
                dtype: T::DTYPE,
                rows,
                cols,
                bytes: op.bytes(n, rows, es),
                median_s: t[i],
                copy_gbps,
                baseline,
                speedup,
            });
        }
    }
}

/// Where the peers' programs are (report flags `--ort PYTHON`, `--onednn BIN`).
#[derive(Default)]
pub struct Peers<'a> {
    /// A Python with onnxruntime, onnx and numpy: runs scripts/ort_norm_bench.py.
    pub ort_python: Option<&'a str>,
    /// scripts/onednn_layernorm_bench.c built (see its header).
    pub onednn_bin: Option<&'a str>,
}

/// A peer's markdown output on the same shape, single-threaded.
fn peer(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{program} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn report(quick: bool, filter: Option<&str>, peers: &Peers) -> Vec<NormRecord> {
    let shapes: &[(usize, usize)] = if quick {
        &[(512, 4096), (64, 1024)]
    } else {
        &[(16384, 8192), (256, 4096)]
    };
    let budget = if quick { 0.15 } else { 3.0 };
    let mut records = Vec::new();
    for &(rows, cols) in shapes {
        measure::<f32>(rows, cols, filter, budget, &mut records);
        if rows * cols >= 1 << 26 && (peers.ort_python.is_some() || peers.onednn_bin.is_some()) {
            let (r, c) = (rows.to_string(), cols.to_string());
            println!("\n### peers on {rows} x {cols} f32, one thread, between two runs of ours\n");
            if let Some(text) = peers
                .ort_python
                .and_then(|py| peer(py, &["scripts/ort_norm_bench.py", &r, &c]))
            {
                println!("{text}");
            }
            if let Some(text) = peers.onednn_bin.and_then(|bin| peer(bin, &[&r, &c])) {
                println!("| oneDNN primitive | GB/s | median ms |\n|---|---:|---:|\n{text}");
            }
            // ours again after the peers, so drift shows up in the table
            measure::<f32>(rows, cols, Some("avx512"), budget, &mut records);
        }
        measure::<f16>(rows, cols, filter, budget, &mut records);
        measure::<bf16>(rows, cols, filter, budget, &mut records);
    }
    println!(
        "\n## norm: [rows, d] batches, median of interleaved runs; roofline = copy bandwidth measured in the same rounds\n"
    );
    println!(
        "| op | isa | dtype | rows x d | GB/s | of copy bw | baseline | speedup |\n|---|---|---|---|---:|---:|---|---:|"
    );
    for r in &records {
        println!(
            "| {} | {} | {} | {} x {} | {:.2} | {:.0}% | {} | {} |",
            r.op.name(),
            r.isa.name(),
            r.dtype.name(),
            r.rows,
            r.cols,
            r.gbps(),
            100.0 * r.gbps() / r.copy_gbps,
            r.baseline,
            if r.speedup.is_nan() {
                "-".to_string()
            } else {
                format!("{:.2}x", r.speedup)
            }
        );
    }
    records
}
