//! What the report does with its records besides printing them as it goes:
//! reads them back from JSON (`--from`), compares two runs (`--compare`),
//! and writes the markdown summary and the SVG plots (`--out DIR`).
//!
//! Records are flat JSON objects. A record's identity is every field that is
//! not a measurement, so two runs' records of the same kernel and shape match
//! whatever else they carry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A JSON value of a flat record.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Str(s) => write!(f, "{s}"),
            Val::Num(v) => write!(f, "{v}"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Null => write!(f, "-"),
        }
    }
}

/// One measurement, fields in their JSON order.
#[derive(Debug, Clone)]
pub struct Rec {
    pub fields: Vec<(String, Val)>,
}

/// Fields that are measurements (they differ between runs of the same work).
const MEASURED: [&str; 14] = [
    "median_s",
    "gbps",
    "gflops",
    "gops",
    "peak_fraction",
    "copy_fraction",
    "read_fraction",
    "roofline_fraction",
    "tokens_per_s",
    "speedup_vs_baseline",
    "speedup",
    "efficiency",
    "ours_speedup",
    "row_sum_error",
];

/// Whether `key` holds a measurement (it differs between runs of the same work).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn is_measured(key: &str) -> bool {
    MEASURED.contains(&key)
}

impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Num(v)
    }
}

impl From<usize> for Val {
    fn from(v: usize) -> Val {
        Val::Num(v as f64)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Str(v.to_string())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Str(v)
    }
}

impl Rec {
    /// A record of `family` and `kernel`; fields follow with [`Rec::with`].
    pub fn new(family: &str, kernel: &str) -> Rec {
        Rec {
            fields: vec![
                ("family".into(), family.into()),
                ("kernel".into(), kernel.into()),
            ],
        }
    }
    /// Sets `key` (replacing an earlier value, else appended).
    pub fn with(mut self, key: &str, v: impl Into<Val>) -> Rec {
        self.set(key, v.into());
        self
    }
    pub fn set(&mut self, key: &str, v: Val) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.fields.push((key.to_string(), v)),
        }
    }
    /// The record as one JSON object (same fields, same order).
    pub fn json(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| match v {
                Val::Str(s) => format!(
                    "\"{k}\":\"{}\"",
                    s.replace('\\', "\\\\").replace('"', "\\\"")
                ),
                Val::Num(x) => format!("\"{k}\":{x}"),
                Val::Bool(b) => format!("\"{k}\":{b}"),
                Val::Null => format!("\"{k}\":null"),
            })
            .collect();
        format!("{{{}}}", fields.join(","))
    }
    pub fn get(&self, key: &str) -> Option<&Val> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn num(&self, key: &str) -> Option<f64> {
        match self.get(key) {
            Some(Val::Num(v)) if v.is_finite() => Some(*v),
            _ => None,
        }
    }
    pub fn family(&self) -> &str {
        self.str("family").unwrap_or("?")
    }
    /// A bandwidth probe of the machine (families `memory`, `gpu-copy`), not
    /// a kernel of ours.
    pub fn is_bandwidth_probe(&self) -> bool {
        matches!(self.family(), "memory" | "gpu-copy")
    }
    /// Every field that is not a measurement, `key=value` joined.
    pub fn identity(&self) -> String {
        self.fields
            .iter()
            .filter(|(k, _)| !MEASURED.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
    /// The headline rate and its unit: GOP/s, GFLOP/s, GB/s or a speedup.
    pub fn rate(&self) -> Option<(&'static str, f64)> {
        [
            ("gops", "GOP/s"),
            ("gflops", "GFLOP/s"),
            ("gbps", "GB/s"),
            ("speedup", "x"),
        ]
        .iter()
        .find_map(|&(k, unit)| self.num(k).filter(|&v| v > 0.0).map(|v| (unit, v)))
    }
    /// The fraction of this machine's bound the record reached.
    pub fn fraction(&self) -> Option<f64> {
        [
            "roofline_fraction",
            "peak_fraction",
            "copy_fraction",
            "efficiency",
        ]
        .iter()
        .find_map(|k| self.num(k))
    }
}

/// Parses a JSON array of flat objects (the report's `--json` output).
pub fn parse(text: &str) -> Result<Vec<Rec>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.expect(b'[')?;
    let mut out = Vec::new();
    if p.peek() == Some(b']') {
        return Ok(out);
    }
    loop {
        out.push(p.object()?);
        match p.next() {
            Some(b',') => continue,
            Some(b']') => return Ok(out),
            other => return Err(format!("expected , or ] at byte {}, got {other:?}", p.i)),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.next() {
            Some(x) if x == c => Ok(()),
            other => Err(format!(
                "expected {:?} at byte {}, got {other:?}",
                c as char, self.i
            )),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                    self.i += 1;
                    out.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                }
                _ => {
                    // copy a whole UTF-8 sequence
                    let start = self.i - 1;
                    let len = match c {
                        0xF0..=0xFF => 4,
                        0xE0..=0xEF => 3,
                        0xC0..=0xDF => 2,
                        _ => 1,
                    };
                    self.i = start + len;
                    out.push_str(
                        std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?,
                    );
                }
            }
        }
        Err("unterminated string".into())
    }
    fn value(&mut self) -> Result<Val, String> {
        match self.peek() {
            Some(b'"') => self.string().map(Val::Str),
            _ => {
                let start = self.i;
                while self.i < self.s.len() && !b",}] \n\r\t".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let word =
                    std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                Ok(match word {
                    "true" => Val::Bool(true),
                    "false" => Val::Bool(false),
                    // NaN: what older reports wrote for "no value"
                    "null" | "NaN" => Val::Null,
                    w => Val::Num(
                        w.parse()
                            .map_err(|_| format!("bad value {w:?} at byte {start}"))?,
                    ),
                })
            }
        }
    }
    fn object(&mut self) -> Result<Rec, String> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Rec { fields });
        }
        loop {
            let k = self.string()?;
            self.expect(b':')?;
            fields.push((k, self.value()?));
            match self.next() {
                Some(b',') => continue,
                Some(b'}') => return Ok(Rec { fields }),
                other => {
                    return Err(format!(
                        "expected , or }} at byte {}, got {other:?}",
                        self.i
                    ));
                }
            }
        }
    }
}

/// The comparison of a run with an earlier one: speed ratios (old time / new
/// time, above 1 is faster) of the records both hold, per family, and the
/// records slower than `1 - max_regression`. Returns the markdown and how
/// many records regressed. The machine's bandwidth probes (families `memory`
/// and `gpu-copy`) are listed with the rest but never count as regressions:
/// they measure the host, not this code.
pub fn compare(old: &[Rec], new: &[Rec], max_regression: f64) -> (String, usize) {
    let old_by_id: BTreeMap<String, &Rec> = old.iter().map(|r| (r.identity(), r)).collect();
    let mut per_family: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut slow = Vec::new();
    for r in new {
        let (Some(o), Some(t)) = (old_by_id.get(&r.identity()), r.num("median_s")) else {
            continue;
        };
        let Some(t_old) = o.num("median_s") else {
            continue;
        };
        let ratio = t_old / t;
        per_family
            .entry(r.family().to_string())
            .or_default()
            .push(ratio);
        if ratio < 1.0 - max_regression && !r.is_bandwidth_probe() {
            slow.push((ratio, r.identity()));
        }
    }
    let mut md = String::new();
    let matched: usize = per_family.values().map(Vec::len).sum();
    let _ = writeln!(
        md,
        "\n## comparison with the earlier run: {matched} records matched of {} (speed = old time / new time)\n",
        new.len()
    );
    md.push_str(
        "| family | records | median speed | slowest | fastest |\n|---|---:|---:|---:|---:|\n",
    );
    for (family, mut ratios) in per_family {
        ratios.sort_by(f64::total_cmp);
        let _ = writeln!(
            md,
            "| {family} | {} | {:.3}x | {:.3}x | {:.3}x |",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    slow.sort_by(|a, b| a.0.total_cmp(&b.0));
    let _ = writeln!(
        md,
        "\n{} records slower than {:.0}% of the earlier run (threshold --max-regression {max_regression}){}",
        slow.len(),
        100.0 * (1.0 - max_regression),
        if slow.is_empty() { "." } else { ":" }
    );
    for (ratio, id) in &slow {
        let _ = writeln!(md, "- {ratio:.3}x {id}");
    }
    (md, slow.len())
}

/// The markdown summary: per family, one table row per record with its
/// identity, headline rate and fraction of this machine's bound.
pub fn markdown(recs: &[Rec], machine: &str) -> String {
    let mut md = format!("# transformer-kernels microbenchmark report\n\n{machine}\n");
    let mut families: Vec<&str> = recs.iter().map(Rec::family).collect();
    families.dedup();
    for family in families {
        let _ = writeln!(
            md,
            "\n## {family}\n\n| kernel | shape | rate | of bound | median |\n|---|---|---:|---:|---:|"
        );
        for r in recs.iter().filter(|r| r.family() == family) {
            let shape: Vec<String> = r
                .fields
                .iter()
                .filter(|(k, v)| {
                    !MEASURED.contains(&k.as_str())
                        && !["family", "kernel", "isa", "dtype"].contains(&k.as_str())
                        && matches!(v, Val::Num(_) | Val::Bool(_))
                })
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.str("kernel").unwrap_or("?"),
                shape.join(", "),
                r.rate().map_or("-".into(), |(u, v)| format!("{v:.2} {u}")),
                r.fraction()
                    .map_or("-".into(), |f| format!("{:.0}%", 100.0 * f)),
                r.num("median_s").map_or("-".into(), human_time)
            );
        }
    }
    md
}

fn human_time(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// The x of a record in its family's throughput plot, and the fields that
/// make up that x (left out of the series name).
fn size_of(r: &Rec) -> Option<(f64, &'static [&'static str], &'static str)> {
    let (key, drop, label): (&str, &'static [&'static str], &'static str) = match r.family() {
        "softmax" | "norm" | "gpu-softmax" | "gpu-norm" => {
            ("bytes", &["rows", "cols", "bytes"], "bytes read + written")
        }
        "gpu-kron" => ("n", &["n", "bytes", "flops"], "token length n"),
        "gpu-lightning" => ("n", &["n", "flops"], "tokens per sequence"),
        "gpu-qgemm" => ("m", &["m"], "rows of x (m)"),
        "gpu-gemv" => ("bytes", &["n", "k", "bytes"], "weight bytes"),
        "kron" => ("tokens", &["tokens", "bytes", "flops"], "tokens"),
        "lightning" => ("n", &["n", "flops"], "tokens per sequence"),
        "qgemm" => ("m", &["m"], "rows of x (m)"),
        "threads" => ("threads", &["threads"], "threads"),
        _ => return None,
    };
    r.num(key).map(|x| (x, drop, label))
}

/// A plot series: the kernel name, then the other identity fields that are
/// not the plot's x and not already part of the kernel name.
fn series_name(r: &Rec, drop: &[&str]) -> String {
    let kernel = r.str("kernel").unwrap_or("");
    let mut name = kernel.to_string();
    for (k, v) in &r.fields {
        let v = v.to_string();
        let skip = MEASURED.contains(&k.as_str())
            || drop.contains(&k.as_str())
            || ["family", "kernel", "baseline", "peak"].contains(&k.as_str())
            || kernel.contains(&v);
        if !skip {
            name.push_str(&format!(" {k}={v}"));
        }
    }
    name
}

/// One SVG line plot per family: the headline rate against size, one series
/// per kernel variant, log-log, with the machine's roof where the records
/// carry their fraction of it (roof = rate / fraction).
pub fn throughput_svgs(recs: &[Rec]) -> Vec<(String, String)> {
    // One plot per family and unit (a family may report GOP/s and GB/s).
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in recs {
        if let Some((unit, _)) = r.rate()
            && !groups.contains(&(r.family(), unit))
        {
            groups.push((r.family(), unit));
        }
    }
    let mut out = Vec::new();
    for &(family, unit) in &groups {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        // The bounds the records imply (rate / fraction), per named peak.
        let mut roofs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut xlabel = "";
        // Readable plots: the best ISA present and f32 where a family has
        // them (every record is in report.md and report.json).
        let best_isa = ["avx512", "avx2", "scalar"].into_iter().find(|isa| {
            recs.iter()
                .any(|r| r.family() == family && r.str("isa") == Some(isa))
        });
        // f32 where the family has it, else its first 16-bit dtype (the GPU
        // Lightning and Kronecker tables measure bf16/f16 only)
        let dtype = ["f32", "bf16", "f16"].into_iter().find(|d| {
            recs.iter()
                .any(|r| r.family() == family && r.str("dtype") == Some(d))
        });
        let shown = |r: &&Rec| {
            r.family() == family
                && r.str("isa").is_none_or(|i| Some(i) == best_isa)
                && r.str("dtype").is_none_or(|d| Some(d) == dtype)
        };
        for r in recs.iter().filter(shown) {
            let (Some((x, drop, label)), Some((u, y))) = (size_of(r), r.rate()) else {
                continue;
            };
            if u != unit {
                continue;
            }
            xlabel = label;
            series.entry(series_name(r, drop)).or_default().push((x, y));
            if let Some(f) = r.fraction().filter(|&f| f > 0.0 && family != "threads") {
                let name = r.str("peak").unwrap_or("this machine's bound").to_string();
                roofs.entry(name).or_default().push(y / f);
            }
        }
        if series.is_empty() {
            continue;
        }
        // A bound that is one measured bandwidth or peak for the whole run
        // (the implied values agree within 20%) is drawn at its median; one
        // that depends on the size (in-cache or not) is left to report.md.
        let roofs: Vec<(f64, String)> = roofs
            .into_iter()
            .filter_map(|(name, mut v)| {
                v.sort_by(f64::total_cmp);
                (v[v.len() - 1] < 1.2 * v[0]).then(|| (v[v.len() / 2], name))
            })
            .collect();
        let one_unit = groups.iter().filter(|g| g.0 == family).count() == 1;
        let file = if one_unit {
            format!("{family}-throughput.svg")
        } else {
            format!(
                "{family}-{}-throughput.svg",
                unit.replace('/', "").to_lowercase()
            )
        };
        let (unit, what) = if unit == "x" {
            ("speedup over one thread", "threads")
        } else {
            (unit, "size")
        };
        let title = format!(
            "{family}: {unit} against {what}{}",
            match (best_isa, dtype) {
                (Some(isa), Some(d)) => format!(" ({isa}, {d})"),
                (None, Some(d)) => format!(" ({d})"),
                (Some(isa), None) => format!(" ({isa})"),
                (None, None) => String::new(),
            }
        );
        out.push((file, plot(&title, xlabel, unit, &series, &roofs)));
    }
    out
}

/// The roofline: achieved GFLOP/s (GOP/s for int8) against arithmetic
/// intensity, for the records that count both their operations and bytes,
/// under the measured copy bandwidth and each measured compute peak; of the
/// CPU records, or with `gpu` of the GPU ones (families `gpu-*`: under the
/// device copy bandwidth and the rate cuBLAS's f16 GEMM reached in the run).
/// The copy bandwidth is the run's probe (`gpu-copy`; `memory` copy on the
/// CPU, the header's 1 GiB copy); records read without one fall back to the
/// bound their `copy_fraction` implies.
pub fn roofline_svg(recs: &[Rec], gpu: bool) -> Option<String> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut bandwidth = Vec::new();
    let mut peaks: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let recs = recs
        .iter()
        .filter(|r| r.family().starts_with("gpu-") == gpu);
    // the copy probe, not the CPU's read sweep
    let is_copy_probe = |r: &Rec| {
        r.is_bandwidth_probe()
            && (r.family() == "gpu-copy" || r.str("kernel").is_some_and(|k| k.starts_with("copy")))
    };
    for r in recs.clone().filter(|r| is_copy_probe(r)) {
        bandwidth.extend(r.num("gbps"));
    }
    let probed = !bandwidth.is_empty();
    for r in recs {
        let per_second = |ops: Option<f64>| Some(ops? / r.num("median_s")? / 1e9);
        let (ops, bytes, rate) = match r.family() {
            "gpu-kron" => (r.num("flops"), r.num("bytes"), per_second(r.num("flops"))),
            // forward: q, k, v read and o written once, 16-bit
            "gpu-lightning" if r.str("kernel") == Some("forward") => {
                let elems = [r.num("heads"), r.num("n"), r.num("d")]
                    .into_iter()
                    .try_fold(1.0, |a, v| Some(a * v?));
                (
                    r.num("flops"),
                    elems.map(|e| 8.0 * e),
                    per_second(r.num("flops")),
                )
            }
            // f16 x read and y written, the weights (int8 or f16) read once
            "gpu-qgemm" => match (r.num("m"), r.num("n"), r.num("k")) {
                (Some(m), Some(n), Some(k)) => (
                    Some(2.0 * m * n * k),
                    Some(
                        n * k * if r.str("w") == Some("f16") { 2.0 } else { 1.0 }
                            + 2.0 * m * (n + k),
                    ),
                    r.num("gops"),
                ),
                _ => (None, None, None),
            },
            "kron" => (r.num("flops"), r.num("bytes"), r.num("gflops")),
            "qgemm" => {
                let (m, n, k) = (r.num("m"), r.num("n"), r.num("k"));
                match (m, n, k) {
                    // int8 weights read once, f32 x read and y written
                    (Some(m), Some(n), Some(k)) => (
                        Some(2.0 * m * n * k),
                        Some(n * k + 4.0 * m * (n + k)),
                        r.num("gops"),
                    ),
                    _ => (None, None, None),
                }
            }
            _ => (None, None, None),
        };
        let (Some(ops), Some(bytes), Some(rate)) = (ops, bytes, rate) else {
            continue;
        };
        let name = match r.family() {
            "gpu-kron" | "gpu-lightning" | "gpu-qgemm" => format!(
                "{} {} {}",
                r.family(),
                r.str("kernel").unwrap_or(""),
                r.str("dtype").unwrap_or("")
            ),
            "kron" => {
                let shape = r.str("shape").unwrap_or("");
                let kind = if shape.contains("baseline") {
                    "dense baseline"
                } else if shape.starts_with("hadamard") {
                    "hadamard"
                } else {
                    "factored"
                };
                format!(
                    "kron {kind} {} {}",
                    r.str("isa").unwrap_or(""),
                    r.str("dtype").unwrap_or("")
                )
            }
            // the rounds of one peer measurement are one series
            _ => {
                let k = r.str("kernel").unwrap_or("qgemm");
                k.split(" round").next().unwrap_or(k).to_string()
            }
        };
        series.entry(name).or_default().push((ops / bytes, rate));
        if let (false, Some(g), Some(f)) = (probed, r.num("gbps"), r.num("copy_fraction")) {
            bandwidth.push(g / f);
        }
        if let Some(f) = r.num("peak_fraction").filter(|&f| f > 0.0) {
            let peak = r.str("peak").unwrap_or("f32 FMA").to_string();
            peaks.entry(peak).or_default().push(rate / f);
        }
    }
    if series.is_empty() {
        return None;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bw = (!bandwidth.is_empty()).then(|| median(&mut bandwidth));
    let roofs: Vec<(String, f64)> = peaks
        .into_iter()
        .map(|(k, mut v)| (k, median(&mut v)))
        .collect();
    let (title, unit) = if gpu {
        (
            "GPU roofline: achieved rate against arithmetic intensity (log-log)",
            "GFLOP/s (16-bit) or GOP/s (int8)",
        )
    } else {
        (
            "roofline: achieved rate against arithmetic intensity (log-log)",
            "GFLOP/s (f32) or GOP/s (int8)",
        )
    };
    Some(roofline_plot(title, unit, &series, bw, &roofs))
}

const W: f64 = 900.0;
const H: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 340.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// Log-scale axes over the data's range, in whole decades.
struct Axes {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Axes {
    fn fit(xs: impl Iterator<Item = f64> + Clone, ys: impl Iterator<Item = f64> + Clone) -> Axes {
        let lo = |v: f64| v.log10().floor();
        let hi = |v: f64| v.log10().ceil();
        let (xmin, xmax) = xs
            .clone()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (ymin, ymax) = ys
            .clone()
            .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (x0, mut x1) = (lo(xmin), hi(xmax));
        let (y0, mut y1) = (lo(ymin), hi(ymax));
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        Axes { x0, x1, y0, y1 }
    }
    fn px(&self, x: f64) -> f64 {
        LEFT + (x.log10() - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y.log10() - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)
    }
    fn draw(&self, svg: &mut String, title: &str, xlabel: &str, ylabel: &str) {
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
            (W - RIGHT + LEFT) / 2.0,
            esc(title)
        );
        let (l, r, t, b) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
        let _ = write!(
            svg,
            r#"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="black"/>"#,
            r - l,
            b - t
        );
        for d in self.x0 as i32..=self.x1 as i32 {
            let x = self.px(10f64.powi(d));
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{b}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                b + 16.0,
                decade(d)
            );
        }
        for d in self.y0 as i32..=self.y1 as i32 {
            let y = self.py(10f64.powi(d));
            let _ = write!(
                svg,
                r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                l - 6.0,
                y + 4.0,
                decade(d)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(20,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (l + r) / 2.0,
            H - 18.0,
            esc(xlabel),
            (t + b) / 2.0,
            esc(ylabel)
        );
    }
}

fn decade(d: i32) -> String {
    match d {
        0..=5 => format!("{}", 10u64.pow(d as u32)),
        _ => format!("1e{d}"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn legend(svg: &mut String, i: usize, name: &str, color: &str, dashed: bool) {
    let y = TOP + 14.0 * i as f64 + 6.0;
    let x = W - RIGHT + 12.0;
    let dash = if dashed {
        r#" stroke-dasharray="6 3""#
    } else {
        ""
    };
    let mut label = name.to_string();
    if label.len() > 48 {
        label.truncate(48);
    }
    let _ = write!(
        svg,
        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="10">{}</text>"#,
        x + 22.0,
        x + 28.0,
        y + 3.5,
        esc(&label)
    );
}

fn plot(
    title: &str,
    xlabel: &str,
    unit: &str,
    series: &BTreeMap<String, Vec<(f64, f64)>>,
    roofs: &[(f64, String)],
) -> String {
    let pts = series.values().flatten();
    let ys = pts.clone().map(|p| p.1).chain(roofs.iter().map(|r| r.0));
    let ax = Axes::fit(pts.clone().map(|p| p.0), ys);
    let mut svg = String::new();
    ax.draw(&mut svg, title, xlabel, unit);
    let mut row = 0;
    for (i, (r, label)) in roofs.iter().enumerate() {
        let y = ax.py(*r);
        let color = ["black", "#555", "#999"][i % 3];
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="8 4"/>"#,
            W - RIGHT
        );
        legend(
            &mut svg,
            row,
            &format!("roof {label}: {r:.1} {unit}"),
            color,
            true,
        );
        row += 1;
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = COLORS[i % COLORS.len()];
        let dash = if (i / COLORS.len()) % 2 == 1 {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", ax.px(x), ax.py(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"{dash}/>"#,
            path.join(" ")
        );
        for &(x, y) in &pts {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                ax.px(x),
                ax.py(y)
            );
        }
        if row < 34 {
            legend(&mut svg, row, name, color, !dash.is_empty());
            row += 1;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn roofline_plot(
    title: &str,
    unit: &str,
    series: &BTreeMap<String, Vec<(f64, f64)>>,
    bw: Option<f64>,
    peaks: &[(String, f64)],
) -> String {
    let pts = series.values().flatten();
    let ys = pts.clone().map(|p| p.1).chain(peaks.iter().map(|p| p.1));
    let ax = Axes::fit(pts.clone().map(|p| p.0), ys);
    let mut svg = String::new();
    ax.draw(
        &mut svg,
        title,
        "operations per byte of memory traffic",
        unit,
    );
    let mut row = 0;
    let (xa, xb) = (10f64.powf(ax.x0), 10f64.powf(ax.x1));
    for (i, (name, peak)) in peaks.iter().enumerate() {
        let color = ["black", "#555", "#999"][i % 3];
        // min(peak, intensity * bandwidth), drawn from the left edge
        let knee = bw.map_or(xa, |b| (peak / b).clamp(xa, xb));
        let mut path = Vec::new();
        if let Some(b) = bw {
            path.push(format!(
                "{:.1},{:.1}",
                ax.px(xa),
                ax.py((xa * b).max(10f64.powf(ax.y0)))
            ));
        }
        path.push(format!("{:.1},{:.1}", ax.px(knee), ax.py(*peak)));
        path.push(format!("{:.1},{:.1}", ax.px(xb), ax.py(*peak)));
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="8 4"/>"#,
            path.join(" ")
        );
        legend(
            &mut svg,
            row,
            &format!("roof {name}: {peak:.0}"),
            color,
            true,
        );
        row += 1;
    }
    if let Some(b) = bw {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="10">copy bandwidth {b:.1} GB/s</text>"#,
            LEFT + 6.0,
            H - BOTTOM - 8.0
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for &(x, y) in pts {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                ax.px(x),
                ax.py(y)
            );
        }
        if row < 34 {
            legend(&mut svg, row, name, color, false);
            row += 1;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"[
{"family":"softmax","kernel":"k1","rows":1,"cols":4096,"bytes":32768,"median_s":0.001,"gbps":10.0,"roofline_fraction":0.5,"speedup_vs_baseline":NaN},
{"family":"qgemm","kernel":"amx","m":16,"n":64,"k":64,"median_s":0.002,"gops":5.0,"peak":"amx","peak_fraction":0.1}
]"#;

    #[test]
    fn parses_and_matches_records() {
        let recs = parse(RUN).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].num("gbps"), Some(10.0));
        assert_eq!(recs[0].get("speedup_vs_baseline"), Some(&Val::Null));
        assert_eq!(recs[1].rate(), Some(("GOP/s", 5.0)));
        assert!(!recs[0].identity().contains("median_s"));
        let faster = RUN
            .replace("0.002", "0.001")
            .replace("\"median_s\":0.001,\"gbps\"", "\"median_s\":0.004,\"gbps\"");
        let (md, slow) = compare(&recs, &parse(&faster).unwrap(), 0.25);
        assert_eq!(slow, 1, "{md}"); // softmax 4x slower, qgemm 2x faster
        assert!(md.contains("0.250x") && md.contains("2.000x"), "{md}");
        let (_, none) = compare(&recs, &recs, 0.0);
        assert_eq!(none, 0);
        // a slower memory probe is shown, not counted
        let probe = |secs: f64| {
            Rec::new("memory", "copy (bytes read + written)")
                .with("bytes", 1e9)
                .with("median_s", secs)
        };
        let (md, slow) = compare(&[probe(0.1)], &[probe(0.2)], 0.25);
        assert_eq!(slow, 0, "{md}");
        assert!(md.contains("| memory | 1 | 0.500x"), "{md}");
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(parse("[{\"a\":}]").is_err());
        assert!(parse("{").is_err());
    }

    #[test]
    fn plots_are_svg() {
        let recs = parse(RUN).unwrap();
        let svgs = throughput_svgs(&recs);
        assert_eq!(svgs.len(), 2);
        assert!(svgs[0].1.starts_with("<svg") && svgs[0].1.contains("polyline"));
        assert!(roofline_svg(&recs, false).unwrap().contains("roof amx"));
        assert!(roofline_svg(&recs, true).is_none());
    }

    #[test]
    fn gpu_roofline_has_the_device_copy_rate_and_cublas_roofs() {
        let gemm = |kernel: &str, w: &str, gops: f64| {
            Rec::new("gpu-qgemm", kernel)
                .with("w", w)
                .with("m", 4096usize)
                .with("n", 4096usize)
                .with("k", 4096usize)
                .with("median_s", 1e-3)
                .with("gops", gops)
        };
        let recs = [
            Rec::new("gpu-copy", "device-to-device copy")
                .with("gbps", 4000.0)
                .with("copy_fraction", 1.0),
            gemm("cuBLAS f16 GEMM", "f16", 600_000.0)
                .with("peak", "cuBLAS f16 GEMM (this run)")
                .with("peak_fraction", 1.0),
            gemm("llm.int8 fixed", "int8", 400_000.0),
            Rec::new("gpu-kron", "64x64 dense")
                .with("flops", 2e9)
                .with("bytes", 2e7)
                .with("median_s", 1e-5)
                .with("gbps", 2000.0)
                .with("copy_fraction", 0.5),
            // a CPU record stays out of the GPU plot
            gemm("amx", "int8", 1000.0).with("family", "qgemm"),
        ];
        let svg = roofline_svg(&recs, true).unwrap();
        assert!(svg.contains("GPU roofline"), "{svg}");
        assert!(
            svg.contains("roof cuBLAS f16 GEMM (this run): 600000"),
            "{svg}"
        );
        assert!(svg.contains("copy bandwidth 4000.0 GB/s"), "{svg}");
        assert!(svg.contains("gpu-kron 64x64 dense"), "{svg}");
        assert!(!svg.contains(">amx<"), "{svg}");
        assert!(roofline_svg(&recs, false).unwrap().contains(">amx"));
    }

    #[test]
    fn cpu_roofline_draws_the_copy_probe_over_a_family_s_own_copy() {
        // kron's record implies a 12 GB/s copy (its own same-size memcpy);
        // the header's 1 GiB probe measured 23.4: the roof is the probe's
        let kron = Rec::new("kron", "64x64 fused int8")
            .with("flops", 2e9)
            .with("bytes", 2e7)
            .with("median_s", 1e-2)
            .with("gflops", 200.0)
            .with("gbps", 2.0)
            .with("copy_fraction", 2.0 / 12.0);
        let probe = |kernel: &str, gbps: f64| {
            Rec::new("memory", kernel)
                .with("bytes", 1e9)
                .with("median_s", 1.0 / gbps)
                .with("gbps", gbps)
        };
        let alone = roofline_svg(std::slice::from_ref(&kron), false).unwrap();
        assert!(alone.contains("copy bandwidth 12.0 GB/s"), "{alone}");
        let recs = [
            probe("read sweep (bytes read)", 15.0),
            probe("copy (bytes read + written)", 23.4),
            kron,
        ];
        let svg = roofline_svg(&recs, false).unwrap();
        assert!(svg.contains("copy bandwidth 23.4 GB/s"), "{svg}");
        assert!(
            throughput_svgs(&recs)
                .iter()
                .all(|(f, _)| !f.contains("memory"))
        );
    }

    #[test]
    fn gpu_families_without_f32_are_plotted_in_16_bit() {
        let rec = |n: usize, dtype: &str, secs: f64| {
            Rec::new("gpu-lightning", "forward")
                .with("dtype", dtype)
                .with("n", n)
                .with("median_s", secs)
                .with("gflops", 1e-9 * n as f64 / secs)
        };
        let recs = [
            rec(2048, "bf16", 1e-4),
            rec(8192, "bf16", 3e-4),
            rec(2048, "f16", 1e-4),
        ];
        let svgs = throughput_svgs(&recs);
        assert_eq!(svgs.len(), 1);
        assert_eq!(svgs[0].0, "gpu-lightning-throughput.svg");
        assert!(svgs[0].1.contains("(bf16)"), "{}", svgs[0].1);
        let md = markdown(&recs, "machine");
        assert!(md.contains("## gpu-lightning"), "{md}");
    }
}
