//! Quantized-product section of the report.
//!
//! LLM.int8(): the whole op (outlier detection, quantization, int8 product,
//! f32 epilogue; f16 in and out, 0.5% outlier columns) and the int32 product
//! alone, on AMX and AVX-512 VNNI (without them, on the 256-bit backends), in
//! GOP/s (2 m n k) against this core's AMX / VNNI / AVX2 `vpmaddwd` peaks and
//! its f32 FMA peak (the ceiling of any f32 GEMM here), all probes
//! interleaved with the kernels; oneDNN's prepacked int8 matmul
//! measured in five rounds alternating with ours when `--onednn-matmul BIN` is
//! given (pin the report to one CPU with taskset: the subprocess inherits it).
//!
//! Weight-only: the decode GEMV over a stack of layers larger than the L3
//! (so the weights stream from memory, as in decoding), in GB/s of weight
//! bytes (values + scales) against a same-run read sweep of a same-size buffer.

use std::hint::black_box;

use half::f16;
use transformer_kernels::qgemm::weight_only::{QuantizedWeight, WeightLayout, amx_available};
use transformer_kernels::qgemm::{self, Backend, Int8Weight, Int8Workspace, Outliers};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::{Isa, isa};

use crate::report_lightning::fma_peak_probe;
use crate::{interleave_medians, read_sweep};

pub struct QgemmRecord {
    op: String,
    backend: String,
    m: usize,
    n: usize,
    k: usize,
    work: f64,
    median_s: f64,
    /// The roofline the fraction is taken of: ops/s for products, bytes/s for GEMVs.
    peak: f64,
    peak_name: &'static str,
    bytes_bound: bool,
}

/// `show(v)`, or `none` where v is unknown (NaN: a unit or probe this CPU lacks).
fn known(v: f64, show: impl Fn(f64) -> String, none: &str) -> String {
    if v.is_finite() {
        show(v)
    } else {
        none.to_string()
    }
}

impl QgemmRecord {
    fn rate(&self) -> f64 {
        self.work / self.median_s
    }
    pub fn json(&self) -> String {
        let (unit, key) = if self.bytes_bound {
            (1e9, "gbps")
        } else {
            (1e9, "gops")
        };
        format!(
            concat!(
                "{{\"family\":\"qgemm\",\"kernel\":\"{} {}\",\"backend\":\"{}\",\"m\":{},\"n\":{},\"k\":{},",
                "\"median_s\":{:.9},\"{}\":{:.3},\"peak\":\"{}\",\"peak_fraction\":{}}}"
            ),
            self.op,
            self.backend,
            self.backend,
            self.m,
            self.n,
            self.k,
            self.median_s,
            key,
            self.rate() / unit,
            self.peak_name,
            // JSON has no NaN: an unknown peak is null
            known(self.rate() / self.peak, |f| format!("{f:.4}"), "null"),
        )
    }
}

/// f16 activations `[m, k]` in [-2, 2] with `outliers` columns holding values
/// up to 60 in a few rows.
fn activations(m: usize, k: usize, outliers: usize) -> Vec<f16> {
    let mut x = uniform_values(17, m * k, 2.0);
    for o in 0..outliers {
        let c = (o * 997 + 13) % k;
        for i in (o % 3..m).step_by(3) {
            x[i * k + c] = 10.0 + (o % 50) as f32;
        }
    }
    x.into_iter().map(f16::from_f32).collect()
}

/// Runs `program args` once with one OpenMP thread and the ISA cap; returns
/// (implementation, median seconds).
fn onednn(bin: &str, isa_cap: &str, m: usize, n: usize, k: usize) -> Option<(String, f64)> {
    let out = std::process::Command::new(bin)
        .args([m.to_string(), k.to_string(), n.to_string(), "15".into()])
        .env("OMP_NUM_THREADS", "1")
        .env("DNNL_MAX_CPU_ISA", isa_cap)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{bin} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut f = s.split_whitespace();
    Some((f.next()?.to_string(), f.next()?.parse().ok()?))
}

fn int8_shapes(quick: bool) -> Vec<(usize, usize, usize)> {
    if quick {
        return vec![(16, 4096, 4096), (512, 4096, 4096)];
    }
    let mut s: Vec<_> = [1, 16, 64, 256, 512, 2048]
        .iter()
        .map(|&m| (m, 4096, 4096))
        .collect();
    s.extend([(512, 11008, 4096), (512, 4096, 11008), (512, 14336, 4096)]);
    s
}

fn llm_int8(quick: bool, onednn_bin: Option<&str>, records: &mut Vec<QgemmRecord>) {
    let amx = Backend::Amx.is_available();
    let vnni = Backend::Avx512Vnni.is_available();
    // the widest f32 FMA this CPU has: the ceiling of any f32 GEMM here
    let fma_isa = if Isa::Avx512.is_available() {
        Isa::Avx512
    } else {
        Isa::Avx2
    };
    let mut fma = fma_peak_probe(fma_isa);
    // without AVX-512 VNNI the 256-bit backends are what this CPU runs:
    // measured on every shape up to 512 rows, not only as fallbacks
    let fallback_max_m = if vnni { 64 } else { 512 };
    println!(
        "\n## LLM.int8() (single thread; f16 in/out, 0.5% outlier columns; GOP/s = 2 m n k / s; peaks and kernels interleaved)\n"
    );
    println!(
        "| m | n | k | op | backend | ms | GOP/s | of unit peak | x f32 FMA peak |\n|---:|---:|---:|---|---|---:|---:|---:|---:|"
    );
    for (m, n, k) in int8_shapes(quick) {
        let n_out = k / 200;
        let x = activations(m, k, n_out);
        let w = uniform_values(23, n * k, 0.05);
        let dynamic = Int8Weight::prepare(
            &w,
            n,
            k,
            Outliers::Dynamic {
                threshold: qgemm::DEFAULT_THRESHOLD,
            },
        )
        .expect("weight");
        let mut ws = Int8Workspace::new(&dynamic, m, k / 50).expect("workspace");
        let mut y = vec![f16::ZERO; m * n];
        dynamic.matmul(&mut ws).run(&x, &mut y).expect("run");
        let fixed = Int8Weight::prepare(&w, n, k, Outliers::Fixed(ws.outlier_columns().to_vec()))
            .expect("weight");
        let mut wsf = Int8Workspace::new(&fixed, m, 0).expect("workspace");
        let mut acc = vec![0i32; m * n];
        // tasks: (op, backend) pairs, then the probes
        let mut tasks: Vec<(&str, Backend)> = Vec::new();
        for b in [Backend::Amx, Backend::Avx512Vnni] {
            if (b == Backend::Amx && !amx) || !vnni {
                continue;
            }
            tasks.extend([
                ("llm.int8 dynamic", b),
                ("llm.int8 fixed", b),
                ("int8 gemm (int32 out)", b),
            ]);
        }
        // the 256-bit fallbacks, on the shapes where they take under ~0.1 s
        for (b, max_m) in [(Backend::AvxVnni, 512), (Backend::Avx2, fallback_max_m)] {
            if b.is_available() && m <= max_m && n * k <= 4096 * 4096 {
                tasks.extend([("llm.int8 dynamic", b), ("int8 gemm (int32 out)", b)]);
            }
        }
        // one task: (op, backend)
        let mut run = |op: &str, b: Backend| {
            match op {
                "llm.int8 dynamic" => dynamic
                    .matmul(&mut ws)
                    .backend(b)
                    .run(&x, &mut y)
                    .expect("run"),
                "llm.int8 fixed" => fixed
                    .matmul(&mut wsf)
                    .backend(b)
                    .run(&x, &mut y)
                    .expect("run"),
                _ => dynamic.int32_products(&mut ws, b, &mut acc).expect("run"),
            }
            black_box(&y);
        };
        if tasks.is_empty() {
            continue;
        }
        let probes = 4;
        let mut probe_ops = [f64::NAN; 4];
        let budget = if quick { 0.6 } else { 3.0 };
        let medians = interleave_medians(tasks.len() + probes, budget, 25, |i| {
            if i < tasks.len() {
                let (op, b) = tasks[i];
                run(op, b);
                return;
            }
            match i - tasks.len() {
                0 => probe_ops[0] = qgemm::amx_probe(1 << 16).unwrap_or(f64::NAN),
                1 => probe_ops[1] = qgemm::vnni_probe(1 << 21).unwrap_or(f64::NAN),
                2 => probe_ops[2] = qgemm::madd_probe(1 << 21).unwrap_or(f64::NAN),
                _ => probe_ops[3] = fma.as_mut().map_or(f64::NAN, |p| p()),
            }
        });
        let t = tasks.len();
        let amx_peak = probe_ops[0] / medians[t];
        let vnni_peak = probe_ops[1] / medians[t + 1];
        let madd_peak = probe_ops[2] / medians[t + 2];
        let fma_peak = probe_ops[3] / medians[t + 3];
        let ops = 2.0 * (m * n * k) as f64;
        // the unit peak each backend's fraction is taken of
        let peak_of = |b: Backend| match b {
            Backend::Amx => (amx_peak, "amx tdpbssd"),
            Backend::Avx512Vnni => (vnni_peak, "vnni vpdpbusd"),
            Backend::Avx2 => (madd_peak, "avx2 vpmaddwd"),
            _ => (vnni_peak, "vnni vpdpbusd (512-bit)"),
        };
        for (i, &(op, b)) in tasks.iter().enumerate() {
            let (peak, peak_name) = peak_of(b);
            let r = QgemmRecord {
                op: op.to_string(),
                backend: b.name().to_string(),
                m,
                n,
                k,
                work: ops,
                median_s: medians[i],
                peak,
                peak_name,
                bytes_bound: false,
            };
            println!(
                "| {m} | {n} | {k} | {op} | {} | {:.3} | {:.0} | {} | {:.1}x |",
                b.name(),
                1e3 * medians[i],
                r.rate() / 1e9,
                known(r.rate() / peak, |f| format!("{:.0}%", 100.0 * f), "n/a"),
                r.rate() / fma_peak
            );
            records.push(r);
        }
        // a unit this CPU lacks has no peak: "n/a", not NaN
        let giga = |v: f64| known(v, |v| format!("{:.0}", v / 1e9), "n/a");
        println!(
            "| | | | peaks (same rounds) | | | AMX {}, VNNI {}, AVX2 vpmaddwd {} GOP/s; f32 FMA ({}) {} GFLOP/s | | |",
            giga(amx_peak),
            giga(vnni_peak),
            giga(madd_peak),
            fma_isa.name(),
            giga(fma_peak)
        );
        if let Some(bin) = onednn_bin.filter(|_| m >= 256) {
            // five rounds of (ours, oneDNN capped at each ISA we measured):
            // the host drifts, so each round's ratio compares runs seconds apart
            println!(
                "\n| round | ours: op | backend | GOP/s | oneDNN 2.6 int8 matmul | GOP/s | ours / oneDNN |\n|---:|---|---|---:|---|---:|---:|"
            );
            for round in 1..=5 {
                let ours = interleave_medians(tasks.len(), budget / 2.0, 15, |i| {
                    let (op, b) = tasks[i];
                    run(op, b);
                });
                for (cap, name, backend) in [
                    ("AVX512_CORE_AMX", "onednn amx", Backend::Amx),
                    ("AVX512_CORE_VNNI", "onednn vnni", Backend::Avx512Vnni),
                    ("AVX2", "onednn avx2", Backend::Avx2),
                ] {
                    if !tasks.iter().any(|t| t.1 == backend) {
                        continue;
                    }
                    let Some((imp, secs)) = onednn(bin, cap, m, n, k) else {
                        continue;
                    };
                    for (i, (op, b)) in tasks.iter().enumerate().filter(|(_, t)| t.1 == backend) {
                        println!(
                            "| {round} | {op} | {} | {:.0} | {imp} | {:.0} | {:.2}x |",
                            b.name(),
                            ops / ours[i] / 1e9,
                            ops / secs / 1e9,
                            secs / ours[i]
                        );
                    }
                    records.push(QgemmRecord {
                        op: format!("onednn int8 matmul ({imp}) round {round}"),
                        backend: name.to_string(),
                        m,
                        n,
                        k,
                        work: ops,
                        median_s: secs,
                        peak: peak_of(backend).0,
                        peak_name: peak_of(backend).1,
                        bytes_bound: false,
                    });
                }
            }
        }
    }
}

fn weight_only(quick: bool, records: &mut Vec<QgemmRecord>) {
    // the widest SIMD kernel this CPU runs
    let simd = if Isa::Avx512.is_available() {
        Isa::Avx512
    } else if Isa::Avx2.is_available() {
        Isa::Avx2
    } else {
        return;
    };
    println!(
        "\n## weight-only decode GEMV (single thread, {}; a stack of layers {} so the weights stream from memory; GB/s of weight bytes against the faster of two same-run read sweeps of a same-size buffer: a plain loop and the library's read probe: AVX-512 prefetching, AVX2 four streams)\n",
        simd.name(),
        if quick {
            "in cache (quick mode)"
        } else {
            "of over 600 MB"
        }
    );
    println!(
        "| m | n | k | weights | x | ms per layer | GB/s | of read sweep | GFLOP/s |\n|---:|---:|---:|---|---|---:|---:|---:|---:|"
    );
    let (n, k) = (4096, 4096);
    let w = uniform_values(29, n * k, 0.05);
    for (bits, group) in [(8u32, 128usize), (4, 64), (4, 128)] {
        let one = QuantizedWeight::quantize(&w, n, k, bits, group).expect("quantize");
        let target: usize = if quick { 32 << 20 } else { 640 << 20 };
        let layers = target.div_ceil(one.bytes());
        let stack: Vec<QuantizedWeight> = (0..layers).map(|_| one.clone()).collect();
        // int4 also in rows, for the AMX-BF16 tiles where they are available
        // (f16 x: 5 to 8 rows; the default layout is panels, see docs/qgemm.md)
        let rows_layout = (bits == 4 && group % 128 == 0 && amx_available()).then(|| {
            QuantizedWeight::quantize_with_layout(&w, n, k, bits, group, WeightLayout::Rows)
                .expect("quantize in rows")
        });
        let rows_stack: Vec<QuantizedWeight> = rows_layout
            .iter()
            .flat_map(|r| (0..layers).map(|_| r.clone()))
            .collect();
        let total = (layers * one.bytes()) as f64;
        let sweep: Vec<u64> = (0..(layers * one.bytes() / 8) as u64).collect();
        let rows = if quick {
            vec![1usize, 8]
        } else {
            vec![1, 2, 4, 8, 16]
        };
        // (rows, path): panels with VNNI_ROWS also on the VNNI path (and int8
        // ones on the AMX-INT8 tiles), int4 in rows with 8 rows also on the
        // AMX-BF16 tiles, where they are available, int4 panels with
        // INT4_AVX2_ROWS on AVX2 also on its integer path; "avx512" / "avx2" is
        // the SIMD kernel alone.
        let also = |m: usize| {
            let amx = rows_layout
                .as_ref()
                .filter(|r| m == 8 && r.amx_applies(m, simd))
                .map(|_| (m, "amx-bf16 (rows)"));
            let vnni = one.vnni_applies(m, simd).then_some((m, "avx512vnni"));
            let amx_int8 = one.amx_int8_applies(m, simd).then_some((m, AMX_DIGITS));
            let int4_avx2 = one.int4_avx2_applies(m, simd).then_some((m, AVX2_DIGITS));
            vnni.into_iter().chain(amx_int8).chain(amx).chain(int4_avx2)
        };
        let kinds: Vec<(usize, &str)> = rows
            .iter()
            .flat_map(|&m| std::iter::once((m, simd.name())).chain(also(m)))
            .collect();
        let ms: Vec<usize> = kinds.iter().map(|k| k.0).collect();
        let xs: Vec<Vec<f16>> = ms
            .iter()
            .map(|&m| {
                uniform_values(31, m * k, 1.0)
                    .into_iter()
                    .map(f16::from_f32)
                    .collect()
            })
            .collect();
        let mut ys: Vec<Vec<f16>> = ms.iter().map(|&m| vec![f16::ZERO; m * n]).collect();
        let mut wss: Vec<Vec<f32>> = ms
            .iter()
            .map(|&m| vec![0.0; one.workspace_floats(m)])
            .collect();
        let budget = if quick { 0.5 } else { 4.0 };
        let medians = interleave_medians(ms.len() + 2, budget, 15, |i| {
            if i == ms.len() {
                black_box(read_sweep(&sweep));
                return;
            }
            if i == ms.len() + 1 {
                black_box(isa::read_probe(&sweep));
                return;
            }
            let rows = kinds[i].1 == "amx-bf16 (rows)";
            let digits_on_tiles = kinds[i].1 == AMX_DIGITS;
            for l in if rows { &rows_stack } else { &stack } {
                l.gemv(&xs[i])
                    .isa(simd)
                    .amx(rows || digits_on_tiles)
                    .vnni(kinds[i].1 == "avx512vnni" || digits_on_tiles)
                    .int4_avx2(kinds[i].1 == AVX2_DIGITS)
                    .workspace(&mut wss[i])
                    .run(&mut ys[i])
                    .expect("gemv");
            }
            black_box(&ys[i]);
        });
        let sweep_bw = total / medians[ms.len()];
        // the probe is AVX-512 or AVX2 code: without both, the plain sweep alone
        let probe_bw = if isa::read_probe(&[]).is_some() {
            total / medians[ms.len() + 1]
        } else {
            f64::NAN
        };
        let read_bw = sweep_bw.max(probe_bw);
        for (i, &(m, backend)) in kinds.iter().enumerate() {
            let r = QgemmRecord {
                op: format!("wgemv int{bits} g{group} f16"),
                backend: backend.into(),
                m,
                n,
                k,
                work: total,
                median_s: medians[i],
                peak: read_bw,
                peak_name: "read (faster sweep)",
                bytes_bound: true,
            };
            println!(
                "| {m} | {n} | {k} | int{bits} g{group} {backend} | f16 | {:.3} | {:.2} | {:.0}% | {:.1} |",
                1e3 * medians[i] / layers as f64,
                r.rate() / 1e9,
                100.0 * r.rate() / read_bw,
                2.0 * (m * n * k * layers) as f64 / medians[i] / 1e9
            );
            records.push(r);
        }
        println!(
            "| | | | read sweep: plain / probe | | | {:.2} / {} | | |",
            sweep_bw / 1e9,
            known(probe_bw, |v| format!("{:.2}", v / 1e9), "n/a")
        );
    }
}

/// The report's name of the AVX2 int4 integer path (X split into digits).
const AVX2_DIGITS: &str = "avx2 digits";
/// The report's name of the int8 digit path on AMX-INT8 tiles.
const AMX_DIGITS: &str = "amx-int8 digits";

/// `filter` keeps the sections whose ops or backends contain it
/// (`llm.int8`, `int8 gemm`, `amx`, `avx512vnni`, `avxvnni`, `avx2`;
/// `wgemv`, `avx512`, `avx2`).
pub fn report(quick: bool, filter: Option<&str>, onednn_bin: Option<&str>) -> Vec<QgemmRecord> {
    let wants = |names: &[&str]| filter.is_none_or(|f| names.iter().any(|n| n.contains(f)));
    let mut records = Vec::new();
    if wants(&[
        "llm.int8",
        "int8 gemm",
        "amx",
        "avx512vnni",
        "avxvnni",
        "avx2",
    ]) {
        llm_int8(quick, onednn_bin, &mut records);
    }
    if wants(&["wgemv", "avx512", "avx2"]) {
        weight_only(quick, &mut records);
    }
    records
}
