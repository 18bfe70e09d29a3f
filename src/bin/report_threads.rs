//! Thread scaling section of the report: one representative call per family
//! (f32 in, the best ISA), run on 1, 2, ... up to this machine's cores
//! through the `threads` option, interleaved in the same rounds; the speedup
//! over one thread and the parallel efficiency (speedup / threads).

use half::bf16;
use transformer_kernels::kron::Kron;
use transformer_kernels::lightning::{Lightning, Shape};
use transformer_kernels::norm::Norm;
use transformer_kernels::parallel::Threads;
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{Int8Weight, Int8Workspace, Outliers};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::softmax::Softmax;

use crate::interleave_medians;

pub struct ThreadRecord {
    call: &'static str,
    threads: usize,
    median_s: f64,
    single_s: f64,
}

impl ThreadRecord {
    pub fn json(&self) -> String {
        format!(
            concat!(
                "{{\"family\":\"threads\",\"kernel\":\"{}\",\"threads\":{},\"median_s\":{:.9},",
                "\"speedup\":{:.4},\"efficiency\":{:.4}}}"
            ),
            self.call,
            self.threads,
            self.median_s,
            self.single_s / self.median_s,
            self.single_s / self.median_s / self.threads as f64,
        )
    }
}

/// One call whose thread count the closure takes.
type Call<'a> = (&'static str, Box<dyn FnMut(Threads) + 'a>);

/// Measures each call at 1..=max threads (default: this machine's cores) and
/// prints the table.
pub fn report(quick: bool, filter: Option<&str>, max: Option<usize>) -> Vec<ThreadRecord> {
    let cores = max
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let scale = if quick { 4 } else { 1 };
    println!(
        "\n## thread scaling: one call per family on 1..{cores} threads (rayon pool of {}, workers pinned unless --unpinned), median of interleaved rounds\n",
        rayon::current_num_threads()
    );

    // Buffers, allocated once; every call runs on its own.
    let (rows, cols) = (1024 / scale, 16 * 1024);
    let x = uniform_values(1, rows * cols, 4.0);
    let mut y = vec![0f32; x.len()];
    let mut y2 = vec![0f32; x.len()];
    let gamma = uniform_values(2, cols, 1.0);
    let (mut mean, mut rstd) = (vec![0f32; rows], vec![0f32; rows]);
    Norm::layer_norm()
        .gamma(&gamma)
        .forward(&x, cols)
        .output(&mut y2)
        .stats(&mut mean, &mut rstd)
        .run()
        .expect("norm statistics");
    let dy = uniform_values(7, x.len(), 1.0);
    let mut dx = vec![0f32; x.len()];
    let (mut dgamma, mut dbeta) = (vec![0f32; cols], vec![0f32; cols]);
    let mut wsn = vec![
        0f64;
        Norm::layer_norm()
            .threads(Threads::Count(cores))
            .backward_workspace_len(rows, cols)
    ];
    let kron = Kron::hadamard(4096).expect("power of two");
    let tokens = 4096 / scale;
    let xk = uniform_values(3, tokens * 4096, 2.0);
    let mut qk = vec![0i8; xk.len()];
    let mut sk = vec![0f32; tokens];
    let mut wsk = vec![0f32; cores * kron.workspace_floats()];
    let (heads, n, d) = (16, 2048 / scale, 64);
    let shape = Shape::batch(1, n, heads, d, d);
    let ql = vec![bf16::from_f32(0.1); n * heads * d];
    let mut ol = vec![bf16::ZERO; ql.len()];
    let decay = vec![0.99f32; heads];
    // decoding: 16 sequences x 32 heads, 128 x 128 states (32 MiB)
    let (dseq, dheads, dd) = (16 / scale, 32, 128);
    let qd = vec![bf16::from_f32(0.1); dseq * dheads * dd];
    let mut od = vec![bf16::ZERO; qd.len()];
    let mut state = vec![0f32; dseq * dheads * dd * dd];
    let ddecay = vec![0.99f32; dheads];
    let (m, nk) = (256 / scale, 4096);
    let w = uniform_values(4, nk * nk, 1.0);
    let iw = Int8Weight::prepare(&w, nk, nk, Outliers::Fixed(vec![7, 1000])).expect("weight");
    let mut iws = Int8Workspace::new(&iw, m, 2).expect("workspace");
    let mut iws16 = Int8Workspace::new(&iw, 16, 2).expect("workspace");
    let mut ym16 = vec![0f32; 16 * nk];
    let iwd =
        Int8Weight::prepare(&w, nk, nk, Outliers::Dynamic { threshold: 6.0 }).expect("weight");
    let mut iwsd = Int8Workspace::new(&iwd, m, 64).expect("workspace");
    let xm = uniform_values(5, m * nk, 1.0);
    // 0.5% of the columns hold outliers (|x| >= 6)
    let xmd: Vec<f32> = (0..m * nk)
        .map(|i| if (i % nk) % 200 == 7 { 8.0 } else { xm[i] })
        .collect();
    let mut ymd = vec![0f32; m * nk];
    let mut ym = vec![0f32; m * nk];
    let qw = QuantizedWeight::quantize(&w, nk, nk, 4, 128).expect("int4");
    let xv = uniform_values(6, nk, 1.0);
    let mut yv = vec![0f32; nk];
    let mut wsv = vec![0f32; cores * qw.workspace_floats(1)];

    let calls: Vec<Call> = vec![
        (
            "softmax f32 1024 x 16K",
            Box::new(|t| {
                Softmax::new()
                    .threads(t)
                    .run(&x, &mut y, cols)
                    .expect("softmax")
            }),
        ),
        (
            "layernorm f32 1024 x 16K",
            Box::new(|t| {
                Norm::layer_norm()
                    .gamma(&gamma)
                    .threads(t)
                    .run(&x, &mut y2, cols)
                    .expect("norm")
            }),
        ),
        (
            "layernorm backward f32 1024 x 16K",
            Box::new(|t| {
                Norm::layer_norm()
                    .gamma(&gamma)
                    .threads(t)
                    .backward(&dy, &x, &mean, &rstd, cols)
                    .dx(&mut dx)
                    .dgamma(&mut dgamma)
                    .dbeta(&mut dbeta)
                    .workspace(&mut wsn)
                    .run()
                    .expect("norm backward")
            }),
        ),
        (
            "hadamard 4096 + int8, 4096 tokens",
            Box::new(|t| {
                kron.apply(&xk)
                    .int8(&mut qk, &mut sk)
                    .workspace(&mut wsk)
                    .threads(t)
                    .run()
                    .expect("kron")
            }),
        ),
        (
            "lightning bf16 2048 tokens x 16 heads x 64",
            Box::new(|t| {
                Lightning::new()
                    .threads(t)
                    .forward(&ql, &ql, &ql, &mut ol, &decay, shape)
                    .run()
                    .expect("lightning")
            }),
        ),
        (
            "lightning decode bf16 16x32 heads, 128x128",
            Box::new(|t| {
                Lightning::new()
                    .threads(t)
                    .decode(&qd, &qd, &qd, &mut od, &mut state, &ddecay, dd, dd)
                    .expect("decode")
            }),
        ),
        (
            "LLM.int8() m=256 4096x4096 (fixed outliers)",
            Box::new(|t| {
                iw.matmul(&mut iws)
                    .threads(t)
                    .run(&xm, &mut ym)
                    .expect("int8")
            }),
        ),
        (
            "LLM.int8() m=16 4096x4096 (fixed outliers)",
            Box::new(|t| {
                iw.matmul(&mut iws16)
                    .threads(t)
                    .run(&xm[..16 * nk], &mut ym16)
                    .expect("int8")
            }),
        ),
        (
            "LLM.int8() m=256 4096x4096 (dynamic outliers)",
            Box::new(|t| {
                iwd.matmul(&mut iwsd)
                    .threads(t)
                    .run(&xmd, &mut ymd)
                    .expect("int8")
            }),
        ),
        (
            "int4 GEMV m=1 4096x4096",
            Box::new(|t| {
                qw.gemv(&xv)
                    .workspace(&mut wsv)
                    .threads(t)
                    .run(&mut yv)
                    .expect("gemv")
            }),
        ),
    ];

    let counts: Vec<usize> = (1..=cores).collect();
    let mut records = Vec::new();
    println!("| call | threads | median | speedup | efficiency |\n|---|---:|---:|---:|---:|");
    for (name, mut call) in calls {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let medians = interleave_medians(counts.len(), if quick { 0.3 } else { 2.0 }, 200, |i| {
            call(Threads::Count(counts[i]))
        });
        for (&threads, &median_s) in counts.iter().zip(&medians) {
            let r = ThreadRecord {
                call: name,
                threads,
                median_s,
                single_s: medians[0],
            };
            println!(
                "| {} | {} | {:.3} ms | {:.2}x | {:.0}% |",
                name,
                threads,
                median_s * 1e3,
                medians[0] / median_s,
                100.0 * medians[0] / median_s / threads as f64
            );
            records.push(r);
        }
    }
    records
}
