//! The microbenchmark report: every softmax variant over a size ladder from
//! in-L1 to past the last-level cache, against this machine's memory bandwidth
//! measured in the same run and against the three-pass baseline.
//!
//! ```text
//! cargo run --release                      # full report (a few minutes)
//! cargo run --release -- --quick           # under a minute
//! cargo run --release -- --json out.json   # plus one JSON record per measurement
//! cargo run --release -- --filter avx512   # only kernels whose name contains this
//! cargo run --release -- --crossover       # three-pass vs two-pass by row length
//! cargo run --release --features cuda -- --gpu-only   # the GPU section alone
//! cargo run --release --features cuda -- --gpu-only --family norm   # one family's GPU tables
//! cargo run --release --features cuda -- --gpu-only --torch python3 --out DIR   # GPU records, PyTorch baselines merged
//! cargo run --release -- --accuracy        # observed error of every variant vs the f64 reference
//! ```

#[cfg_attr(not(feature = "cuda"), allow(dead_code))] // serves the GPU section; tested without it
mod report_baselines;
#[cfg(feature = "cuda")]
mod report_gpu;
mod report_kron;
mod report_kron_matvec;
mod report_lightning;
mod report_norm;
mod report_output;
mod report_qgemm;
mod report_threads;

use std::hint::black_box;
use std::time::Instant;

use half::{bf16, f16};
use transformer_kernels::softmax::{self, Algorithm, Softmax, Variant};
use transformer_kernels::{Dtype, Element, Isa, isa, parallel};

struct Args {
    quick: bool,
    json: Option<String>,
    filter: Option<String>,
    crossover: bool,
    sizes: Option<Vec<usize>>,
    gpu_only: bool,
    accuracy: bool,
    family: Option<String>,
    ort: Option<String>,
    torch: Option<String>,
    onednn: Option<String>,
    onednn_matmul: Option<String>,
    out: Option<String>,
    from: Option<String>,
    compare: Option<String>,
    max_regression: f64,
    threads: Option<usize>,
    unpinned: bool,
    xnnpack: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        quick: false,
        json: None,
        filter: None,
        crossover: false,
        sizes: None,
        gpu_only: false,
        accuracy: false,
        family: None,
        ort: None,
        torch: None,
        // Feature `peers` builds the peer programs and points at them.
        onednn: option_env!("TK_PEER_ONEDNN_LAYERNORM").map(String::from),
        onednn_matmul: option_env!("TK_PEER_ONEDNN_MATMUL").map(String::from),
        xnnpack: option_env!("TK_PEER_XNNPACK_SOFTMAX").map(String::from),
        out: None,
        from: None,
        compare: None,
        max_regression: 0.25,
        threads: None,
        unpinned: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--xnnpack" => {
                args.xnnpack = Some(
                    it.next()
                        .expect("--xnnpack needs the built XNNPACK softmax bench"),
                )
            }
            "--out" => args.out = Some(it.next().expect("--out needs a directory")),
            "--from" => args.from = Some(it.next().expect("--from needs a JSON report")),
            "--compare" => args.compare = Some(it.next().expect("--compare needs a JSON report")),
            "--max-regression" => {
                args.max_regression = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--max-regression needs a fraction, for example 0.25")
            }
            "--threads" => {
                args.threads = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--threads needs a count"),
                )
            }
            "--unpinned" => args.unpinned = true,
            "--crossover" => args.crossover = true,
            "--gpu-only" => args.gpu_only = true,
            "--accuracy" => args.accuracy = true,
            "--json" => args.json = Some(it.next().expect("--json needs a path")),
            "--filter" => args.filter = Some(it.next().expect("--filter needs a string")),
            "--family" => {
                args.family = Some(
                    it.next()
                        .expect("--family needs softmax, norm, lightning, kron, qgemm or threads"),
                )
            }
            "--ort" => args.ort = Some(it.next().expect("--ort needs a python with onnxruntime")),
            "--torch" => {
                args.torch = Some(
                    it.next()
                        .expect("--torch needs a python with torch (and fla, lightning_attn)"),
                )
            }
            "--onednn-matmul" => {
                args.onednn_matmul = Some(
                    it.next()
                        .expect("--onednn-matmul needs the built oneDNN matmul bench"),
                )
            }
            "--onednn" => {
                args.onednn = Some(it.next().expect("--onednn needs the built oneDNN bench"))
            }
            "--sizes" => {
                let list = it
                    .next()
                    .expect("--sizes needs a comma-separated list of row lengths");
                args.sizes = Some(
                    list.split(',')
                        .map(|s| s.trim().parse().expect("--sizes: not a number"))
                        .collect(),
                );
            }
            "--help" | "-h" => {
                println!(
                    "usage: report [--quick] [--family softmax|norm|lightning|kron|qgemm|threads] [--json PATH] [--out DIR] [--from JSON] [--compare OLD.json] [--max-regression F] [--threads N] [--unpinned] [--xnnpack BIN] [--filter SUBSTR] [--sizes N,N,..] [--crossover] [--gpu-only] [--accuracy] [--ort PYTHON] [--torch PYTHON] [--onednn BIN] [--onednn-matmul BIN]"
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    args
}

/// Median wall time of `f` over `reps` runs after one warm-up run.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Seconds of measuring per (size, dtype): all variants together.
fn budget_s(quick: bool) -> f64 {
    if quick { 0.15 } else { 2.0 }
}

/// Single-core memory bandwidth out of cache, in bytes per second:
/// read (a sum over the buffer, one stream), copy (bytes read + bytes written
/// by memcpy) and the library's read probe where it runs (`isa::read_probe`:
/// on AVX2 four streams, 1.3-1.5x one on a Zen 1 core).
struct Bandwidth {
    read: f64,
    copy: f64,
    read_probe: Option<f64>,
    /// the probe's buffer, bytes
    bytes: usize,
}

impl Bandwidth {
    /// The probes as records of family `memory`: the roofline plot draws its
    /// memory roof at the copy probe's rate (what the header prints).
    fn records(&self) -> Vec<String> {
        let rec = |kernel: &str, moved: f64, rate: f64| {
            report_output::Rec::new("memory", kernel)
                .with("bytes", moved)
                .with("median_s", moved / rate)
                .with("gbps", rate / 1e9)
                .json()
        };
        let b = self.bytes as f64;
        let mut recs = vec![
            rec("read sweep (bytes read)", b, self.read),
            rec("copy (bytes read + written)", 2.0 * b, self.copy),
        ];
        recs.extend(
            self.read_probe
                .map(|r| rec("read probe (bytes read)", b, r)),
        );
        recs
    }
}

/// Reads every element of `src` once (eight independent sums, so the loop is
/// bound by memory, not by an add chain): the read-bandwidth probe.
pub(crate) fn read_sweep(src: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    for chunk in src.chunks_exact(8) {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(v);
        }
    }
    acc.iter().fold(0, |a, &b| a.wrapping_add(b))
}

fn measure_bandwidth(bytes: usize) -> Bandwidth {
    let n = bytes / 8;
    let src: Vec<u64> = (0..n as u64).collect();
    let mut dst = vec![0u64; n];
    let read_t = median_secs(5, || {
        black_box(read_sweep(black_box(&src)));
    });
    let copy_t = median_secs(5, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
    let probe_t = isa::read_probe(&[]).map(|_| {
        median_secs(5, || {
            black_box(isa::read_probe(black_box(&src)));
        })
    });
    Bandwidth {
        read: bytes as f64 / read_t,
        copy: 2.0 * bytes as f64 / copy_t,
        read_probe: probe_t.map(|t| bytes as f64 / t),
        bytes,
    }
}

#[derive(Clone)]
struct Record {
    kernel: String,
    isa: Isa,
    dtype: Dtype,
    algorithm: Algorithm,
    log: bool,
    rows: usize,
    cols: usize,
    bytes: usize,
    median_s: f64,
    gbps: f64,
    roofline_fraction: f64,
    baseline: String,
    speedup: f64,
}

impl Record {
    fn json(&self) -> String {
        format!(
            concat!(
                "{{\"family\":\"softmax\",\"kernel\":\"{}\",\"isa\":\"{}\",\"dtype\":\"{}\",",
                "\"algorithm\":\"{}\",\"log\":{},\"rows\":{},\"cols\":{},\"bytes\":{},",
                "\"median_s\":{:.9},\"gbps\":{:.3},\"roofline_fraction\":{:.4},",
                "\"baseline\":\"{}\",\"speedup_vs_baseline\":{:.4}}}"
            ),
            self.kernel,
            self.isa.name(),
            self.dtype.name(),
            self.algorithm.name(),
            self.log,
            self.rows,
            self.cols,
            self.bytes,
            self.median_s,
            self.gbps,
            self.roofline_fraction,
            self.baseline,
            self.speedup
        )
    }
}

/// What one slot of a timing round runs: a kernel, or a bandwidth probe on
/// the kernels' own buffers.
enum Task {
    Kernel(Softmax),
    /// Sum the input's bytes (a pure read sweep).
    Read,
    /// Copy the input over the output (read + write sweep).
    Copy,
}

fn run_task<T: Element>(task: &Task, x: &[T], y: &mut [T], cols: usize) {
    match task {
        Task::Kernel(o) => o.run(black_box(x), black_box(&mut *y), cols).unwrap(),
        Task::Read => {
            let mut acc = [0u64; 8];
            for chunk in bytemuck::cast_slice::<T, u8>(black_box(x)).chunks_exact(64) {
                for (a, w) in acc.iter_mut().zip(chunk.chunks_exact(8)) {
                    *a = a.wrapping_add(u64::from_ne_bytes(w.try_into().unwrap()));
                }
            }
            black_box(acc);
        }
        Task::Copy => {
            y.copy_from_slice(black_box(x));
            black_box(&*y);
        }
    }
}

/// Median seconds of each of `count` tasks, the runs interleaved round-robin
/// so that drift on a shared machine hits every task alike. `run(i)` runs task
/// i; the number of rounds fits `budget_s` from one warm-up round (which also
/// takes the page faults), at least 5 and at most `max_rounds`.
pub(crate) fn interleave_medians(
    count: usize,
    budget_s: f64,
    max_rounds: usize,
    mut run: impl FnMut(usize),
) -> Vec<f64> {
    let start = Instant::now();
    (0..count).for_each(&mut run);
    let warm = start.elapsed().as_secs_f64();
    let reps = ((budget_s / warm.max(1e-9)) as usize).clamp(5, max_rounds);
    let mut times = vec![Vec::with_capacity(reps); count];
    for _ in 0..reps {
        for (i, t) in times.iter_mut().enumerate() {
            let s = Instant::now();
            run(i);
            t.push(s.elapsed().as_secs_f64());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

/// Median seconds of each softmax task on the same buffers (see
/// [`interleave_medians`]).
fn time_interleaved<T: Element>(
    tasks: &[Task],
    x: &[T],
    y: &mut [T],
    cols: usize,
    budget_s: f64,
) -> Vec<f64> {
    interleave_medians(tasks.len(), budget_s, 2000, |i| {
        run_task(&tasks[i], x, y, cols)
    })
}

fn kernel_tasks(variants: &[&Variant]) -> Vec<Task> {
    variants
        .iter()
        .map(|v| Task::Kernel(Softmax::new().isa(v.isa).algorithm(v.algorithm)))
        .collect()
}

/// Inputs this large are out of cache: their floor uses read and copy
/// bandwidth re-measured on the same buffers, interleaved with the kernels.
const PROBE_MIN_BYTES: usize = 256 << 20;

fn inputs<T: Element>(n: usize) -> Vec<T> {
    transformer_kernels::reference::uniform_values(0x9E37_79B9_7F4A_7C15, n, 8.0)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

/// Measures every (runnable, selected) variant of dtype T over the ladder.
fn ladder<T: Element>(args: &Args, bw: &Bandwidth, sizes: &[usize], out: &mut Vec<Record>) {
    let variants: Vec<&Variant> = softmax::variants()
        .iter()
        .filter(|v| v.dtype == T::DTYPE && v.isa.is_available())
        .filter(|v| {
            args.filter
                .as_ref()
                .is_none_or(|f| v.name.contains(f.as_str()))
        })
        .collect();
    if variants.is_empty() {
        return;
    }
    for &n in sizes {
        let x: Vec<T> = inputs(n);
        let mut y: Vec<T> = vec![T::from_f32(0.0); n];
        let bytes = 2 * n * T::DTYPE.size(); // input + output, the bytes the API moves
        let in_bytes = n * T::DTYPE.size();
        // the portable scalar kernels stop at 64 MiB: minutes per run beyond
        let runnable: Vec<&Variant> = variants
            .iter()
            .copied()
            .filter(|v| v.isa != Isa::Scalar || in_bytes <= 64 << 20)
            .collect();
        eprintln!(
            "measuring {} x {n} ({} variants)",
            T::DTYPE.name(),
            runnable.len()
        );
        let mut tasks = kernel_tasks(&runnable);
        let probe = in_bytes >= PROBE_MIN_BYTES;
        if probe {
            tasks.extend([Task::Read, Task::Copy]);
        }
        let times = time_interleaved(&tasks, &x, &mut y, n, budget_s(args.quick));
        let (read_bw, copy_bw) = if probe {
            (
                in_bytes as f64 / times[runnable.len()],
                bytes as f64 / times[runnable.len() + 1],
            )
        } else {
            (bw.read, bw.copy)
        };
        if probe {
            eprintln!(
                "  bandwidth on these buffers: read {:.2} GB/s, copy {:.2} GB/s",
                read_bw / 1e9,
                copy_bw / 1e9
            );
        }
        // floor: one read sweep, then one copy-like sweep (read x, write y)
        let floor_s = in_bytes as f64 / read_bw + bytes as f64 / copy_bw;
        let measured: Vec<(&Variant, f64)> = runnable.iter().copied().zip(times).collect();
        for &(v, t) in &measured {
            let base = measured
                .iter()
                .find(|(b, _)| b.isa == v.isa && b.algorithm == Algorithm::ThreePass)
                .map(|&(b, bt)| (b.name.to_string(), bt / t))
                .unwrap_or_else(|| ("-".into(), f64::NAN));
            out.push(Record {
                kernel: v.name.to_string(),
                isa: v.isa,
                dtype: v.dtype,
                algorithm: v.algorithm,
                log: false,
                rows: 1,
                cols: n,
                bytes,
                median_s: t,
                gbps: bytes as f64 / t / 1e9,
                roofline_fraction: floor_s / t,
                baseline: base.0,
                speedup: base.1,
            });
        }
    }
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 30 {
        format!("{:.0} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

fn print_table(records: &[Record]) {
    println!(
        "\n| kernel | row (input) | GB/s (in+out) | roofline | vs three-pass |\n|---|---:|---:|---:|---:|"
    );
    for r in records {
        println!(
            "| {} | {} | {:.2} | {:.0}% | {:.2}x |",
            r.kernel,
            human(r.bytes / 2),
            r.gbps,
            100.0 * r.roofline_fraction,
            r.speedup
        );
    }
}

/// Three-pass vs two-pass by row length (rows of `cols`, 64 MiB of input in
/// all), per ISA: the measurement behind `softmax::prefers_twopass`.
fn crossover(args: &Args) {
    println!(
        "\n## crossover: two-pass time / three-pass time, f32, 64 MiB of input in rows of cols\n"
    );
    println!(
        "| cols (row bytes) | isa | three-pass GB/s | two-pass GB/s | two-pass speedup |\n|---:|---|---:|---:|---:|"
    );
    let total = if args.quick { 8 << 20 } else { 64 << 20 } / 4;
    for isa in Isa::ALL
        .into_iter()
        .filter(|i| i.is_available() && *i != Isa::Scalar)
    {
        for cols in [1024usize, 4096, 16384, 65536, 262_144, 1 << 20, 4 << 20] {
            let rows = (total / cols).max(1);
            let x: Vec<f32> = inputs(rows * cols);
            let mut y = vec![0.0f32; rows * cols];
            let (v3, v2) = (
                softmax::find(Dtype::F32, isa, Algorithm::ThreePass).unwrap(),
                softmax::find(Dtype::F32, isa, Algorithm::TwoPass).unwrap(),
            );
            let t = time_interleaved(
                &kernel_tasks(&[v3, v2]),
                &x,
                &mut y,
                cols,
                budget_s(args.quick),
            );
            let (s3, s2) = (t[0], t[1]);
            let bytes = 8.0 * (rows * cols) as f64;
            println!(
                "| {cols} ({}) | {} | {:.2} | {:.2} | {:.2}x |",
                human(cols * 4),
                isa.name(),
                bytes / s3 / 1e9,
                bytes / s2 / 1e9,
                s3 / s2
            );
        }
    }
}

fn main() {
    let args = parse_args();
    // Worker i on CPU i (docs/threads.md: unpinned workers queued behind a
    // busy one on this VM); --unpinned keeps the OS's placement.
    if !args.unpinned {
        parallel::pin_global_pool(0).expect("the global pool is not built yet");
    }
    println!("# transformer-kernels microbenchmark report\n");
    println!(
        "cpu: {}; detected ISA: {}; single thread (except the thread-scaling section)",
        cpu_name(),
        isa::detected().name()
    );
    if args.crossover {
        crossover(&args);
        return;
    }
    if args.accuracy {
        accuracy();
        return;
    }
    let machine = format!(
        "cpu: {}; detected ISA: {}; {} cores; single thread except the thread-scaling section",
        cpu_name(),
        isa::detected().name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let recs = match &args.from {
        Some(path) => {
            let text = std::fs::read_to_string(path).expect("cannot read the --from report");
            report_output::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
        }
        None => {
            let body = if args.gpu_only {
                gpu_section(&args)
            } else {
                measure(&args)
            };
            report_output::parse(&format!("[\n{}\n]\n", body.join(",\n")))
                .expect("the report's own records are valid JSON")
        }
    };
    let json = format!(
        "[\n{}\n]\n",
        recs.iter()
            .map(report_output::Rec::json)
            .collect::<Vec<_>>()
            .join(",\n")
    );
    if let Some(path) = &args.json {
        std::fs::write(path, &json).expect("cannot write the JSON report");
        println!("\nwrote {} records to {path}", recs.len());
    }
    if let Some(dir) = &args.out {
        write_outputs(dir, &recs, &json, &machine);
    }
    if let Some(old) = &args.compare {
        let text = std::fs::read_to_string(old).expect("cannot read the --compare report");
        let old = report_output::parse(&text).unwrap_or_else(|e| panic!("{old}: {e}"));
        let (md, regressions) = report_output::compare(&old, &recs, args.max_regression);
        println!("{md}");
        if regressions > 0 {
            std::process::exit(3);
        }
    }
}

/// `--out DIR`: the records as JSON and markdown, and the SVG plots.
fn write_outputs(dir: &str, recs: &[report_output::Rec], json: &str, machine: &str) {
    std::fs::create_dir_all(dir).expect("cannot create the --out directory");
    let path = |name: &str| format!("{dir}/{name}");
    std::fs::write(path("report.json"), json).expect("write report.json");
    let mut md = report_output::markdown(recs, machine);
    let mut plots = report_output::throughput_svgs(recs);
    if let Some(svg) = report_output::roofline_svg(recs, false) {
        plots.push(("roofline.svg".to_string(), svg));
    }
    if let Some(svg) = report_output::roofline_svg(recs, true) {
        plots.push(("gpu-roofline.svg".to_string(), svg));
    }
    md.push_str("\n## plots\n\n");
    for (name, svg) in &plots {
        std::fs::write(path(name), svg).expect("write an SVG plot");
        md.push_str(&format!("![{name}]({name})\n\n"));
    }
    std::fs::write(path("report.md"), md).expect("write report.md");
    println!(
        "\nwrote {dir}/report.json, report.md and {} plots ({} records)",
        plots.len(),
        recs.len()
    );
}

/// Progress of the measuring run on stderr (when it is a terminal): a bar of
/// the families done, the one running and the time so far.
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    show: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            total,
            done: 0,
            start: Instant::now(),
            show: std::io::stderr().is_terminal(),
        }
    }
    fn step(&mut self, what: &str) {
        if self.show {
            let bar: String = (0..self.total)
                .map(|i| if i < self.done { '#' } else { '-' })
                .collect();
            eprint!(
                "\r[{bar}] {}/{} {what:<10} {:>5.0} s ",
                self.done + 1,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
        }
        self.done += 1;
    }
    fn finish(&self) {
        if self.show {
            eprintln!(
                "\r[{}] done in {:.0} s          ",
                "#".repeat(self.total),
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs every family the arguments select and returns their JSON records.
fn measure(args: &Args) -> Vec<String> {
    let bw = measure_bandwidth(1 << 30);
    println!(
        "memory bandwidth (this run, single core, out of cache): read {:.2} GB/s (one stream), copy {:.2} GB/s (read + written bytes){}",
        bw.read / 1e9,
        bw.copy / 1e9,
        bw.read_probe.map_or(String::new(), |r| format!(
            ", read probe {:.2} GB/s",
            r / 1e9
        ))
    );
    println!(
        "roofline: a softmax row must be read twice and written once, one stream; floor = in/read + (in+out)/copy \
         (rows of 256 MiB and more: both bandwidths re-measured on the same buffers, interleaved with the kernels)"
    );

    // elements per row: 4K (16 KiB f32, in L1) up to 256M (1 GiB f32, past the L3)
    let sizes: Vec<usize> = if let Some(s) = &args.sizes {
        s.clone()
    } else if args.quick {
        vec![4 << 10, 64 << 10, 2 << 20, 16 << 20]
    } else {
        vec![
            4 << 10,
            64 << 10,
            256 << 10,
            2 << 20,
            16 << 20,
            64 << 20,
            128 << 20, // 512 MiB of f32: the row ONNX Runtime was measured on
            256 << 20,
        ]
    };
    let wants = |f: &str| args.family.as_deref().is_none_or(|a| a == f);
    let families = ["softmax", "norm", "lightning", "kron", "qgemm", "threads"];
    let mut progress = Progress::new(families.iter().filter(|f| wants(f)).count());
    let mut peer_records: Vec<String> = Vec::new();
    let mut records = Vec::new();
    if wants("softmax") {
        progress.step("softmax");
        ladder::<f32>(args, &bw, &sizes, &mut records);
        ladder::<f16>(args, &bw, &sizes, &mut records);
        ladder::<bf16>(args, &bw, &sizes, &mut records);
        println!(
            "\n## softmax, one row of n elements (the paper's setting), median of repeated runs"
        );
        print_table(&records);
        summary(&records);
        if let Some(bin) = &args.xnnpack {
            peer_records.extend(xnnpack_softmax(bin, &sizes, &records));
        }
    }
    let norm_records = if wants("norm") {
        progress.step("norm");
        let peers = report_norm::Peers {
            ort_python: args.ort.as_deref(),
            onednn_bin: args.onednn.as_deref(),
        };
        report_norm::report(args.quick, args.filter.as_deref(), &peers)
    } else {
        Vec::new()
    };
    let lightning_records = if wants("lightning") {
        progress.step("lightning");
        report_lightning::report(args.quick, args.filter.as_deref())
    } else {
        Vec::new()
    };
    let kron_records = if wants("kron") {
        progress.step("kron");
        report_kron::report(args.quick, args.filter.as_deref())
    } else {
        Vec::new()
    };
    let qgemm_records = if wants("qgemm") {
        progress.step("qgemm");
        report_qgemm::report(
            args.quick,
            args.filter.as_deref(),
            args.onednn_matmul.as_deref(),
        )
    } else {
        Vec::new()
    };
    let thread_records = if wants("threads") {
        progress.step("threads");
        report_threads::report(args.quick, args.filter.as_deref(), args.threads)
    } else {
        Vec::new()
    };
    progress.finish();
    let gpu_records = gpu_section(args);
    bw.records()
        .into_iter()
        .chain(records.iter().map(Record::json))
        .chain(norm_records.iter().map(|r| r.json()))
        .chain(lightning_records.iter().map(|r| r.json()))
        .chain(kron_records.iter().map(|r| r.json()))
        .chain(qgemm_records.iter().map(|r| r.json()))
        .chain(thread_records.iter().map(|r| r.json()))
        .chain(peer_records)
        .chain(gpu_records)
        .collect()
}

/// XNNPACK's f32 softmax on the ladder's rows (scripts/xnnpack_softmax_bench.c,
/// one thread), against our fastest f32 variant of the same row measured
/// earlier in this run; JSON records of family softmax, kernel "XNNPACK ...".
fn xnnpack_softmax(bin: &str, sizes: &[usize], ours: &[Record]) -> Vec<String> {
    println!("\n## peer: XNNPACK softmax_nc_f32, one row of n f32, one thread\n");
    println!(
        "| n | XNNPACK GB/s | XNNPACK row sum - 1 | ours (best f32) GB/s | ours / XNNPACK |\n|---:|---:|---:|---:|---:|"
    );
    let mut out = Vec::new();
    for &n in sizes {
        let reps = if n >= 1 << 24 { "5" } else { "15" };
        let run = std::process::Command::new(bin)
            .args(["1", &n.to_string(), reps])
            .output();
        let Some((median_s, row_sum)) = run.ok().filter(|o| o.status.success()).and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let mut f = text
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse::<f64>().ok());
            Some((f.next()??, f.next()??))
        }) else {
            eprintln!("{bin} failed on n = {n}");
            continue;
        };
        let bytes = 8 * n;
        let best = ours
            .iter()
            .filter(|r| r.dtype == Dtype::F32 && r.cols == n && !r.log)
            .map(|r| r.median_s)
            .fold(f64::INFINITY, f64::min);
        println!(
            "| {n} | {:.2} | {:.1e} | {:.2} | {:.2}x |",
            bytes as f64 / median_s / 1e9,
            row_sum - 1.0,
            bytes as f64 / best / 1e9,
            median_s / best
        );
        out.push(
            report_output::Rec::new("softmax", "XNNPACK softmax_nc_f32")
                .with("peer", "xnnpack")
                .with("dtype", "f32")
                .with("rows", 1usize)
                .with("cols", n)
                .with("bytes", bytes)
                .with("median_s", median_s)
                .with("gbps", bytes as f64 / median_s / 1e9)
                .with("ours_speedup", median_s / best)
                .with("row_sum_error", row_sum - 1.0)
                .json(),
        );
    }
    out
}

/// The headline numbers: two-pass vs three-pass at the largest size per ISA.
fn summary(records: &[Record]) {
    println!("\n## summary (largest row measured, f32)\n");
    for isa in Isa::ALL {
        let best = records
            .iter()
            .filter(|r| r.isa == isa && r.dtype == Dtype::F32 && r.algorithm == Algorithm::TwoPass)
            .max_by_key(|r| r.bytes);
        if let Some(r) = best {
            println!(
                "- {}: {:.2} GB/s, {:.0}% of the bandwidth floor, {:.2}x the three-pass {} ({})",
                r.kernel,
                r.gbps,
                100.0 * r.roofline_fraction,
                r.speedup,
                isa.name(),
                human(r.bytes / 2)
            );
        }
    }
}

/// Largest observed error of every variant against the f64 reference, in
/// units of 2^-24 relative (softmax) and as a fraction of the documented bound.
fn accuracy() {
    println!(
        "\n## observed accuracy: max |y - exact| / |exact| in units of 2^-24, and max fraction of the bound\n"
    );
    println!(
        "| kernel | softmax rel. error (2^-24) | of bound | log-softmax of bound |\n|---|---:|---:|---:|"
    );
    for v in softmax::variants().iter().filter(|v| v.isa.is_available()) {
        let (rel, frac) = worst::<f32>(v, false);
        let (_, lfrac) = worst::<f32>(v, true);
        let (rel, frac, lfrac) = match v.dtype {
            Dtype::F32 => (rel, frac, lfrac),
            Dtype::F16 => (
                worst::<f16>(v, false).0,
                worst::<f16>(v, false).1,
                worst::<f16>(v, true).1,
            ),
            Dtype::Bf16 => (
                worst::<bf16>(v, false).0,
                worst::<bf16>(v, false).1,
                worst::<bf16>(v, true).1,
            ),
        };
        println!("| {} | {:.1} | {:.2} | {:.2} |", v.name, rel, frac, lfrac);
    }
}

/// (max relative error in 2^-24 units, max error / bound) over rows of several
/// lengths and magnitudes.
fn worst<T: Element>(v: &Variant, log: bool) -> (f64, f64) {
    let (mut rel, mut frac) = (0.0f64, 0.0f64);
    for (cols, amp) in [
        (17usize, 10.0f32),
        (1000, 30.0),
        (100_003, 5.0),
        (4096, 1000.0),
    ] {
        let x: Vec<T> = inputs::<T>(cols)
            .iter()
            .map(|t| T::from_f32(t.to_f32() * amp / 8.0))
            .collect();
        let xr: Vec<f32> = x.iter().map(|t| t.to_f32()).collect();
        let want = transformer_kernels::reference::softmax::softmax(&xr, cols, 1.0, log);
        let mut y = vec![T::from_f32(0.0); cols];
        Softmax::new()
            .isa(v.isa)
            .algorithm(v.algorithm)
            .log(log)
            .run(&x, &mut y, cols)
            .unwrap();
        let zmax = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)).abs() as f64;
        for ((g, &e), &z) in y.iter().zip(&want).zip(&xr) {
            let err = (f64::from(g.to_f32()) - e).abs();
            if e.abs() > 1e-30 {
                rel = rel.max(err / e.abs() * (1u64 << 24) as f64);
            }
            let bound =
                softmax::error_bound(T::DTYPE, v.algorithm, log, e, z.abs() as f64, zmax, cols);
            frac = frac.max(err / bound);
        }
    }
    (rel, frac)
}

/// The GPU tables of `--family` (every family without it) and their JSON
/// records, with `--torch`'s baselines merged; none without the `cuda`
/// feature or a device.
fn gpu_section(args: &Args) -> Vec<String> {
    #[cfg(feature = "cuda")]
    return report_gpu::report(args.family.as_deref(), args.torch.as_deref())
        .unwrap_or_default()
        .iter()
        .map(report_output::Rec::json)
        .collect();
    #[cfg(not(feature = "cuda"))]
    {
        let _ = args;
        println!("\n(built without the `cuda` feature: GPU section skipped)");
        Vec::new()
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
