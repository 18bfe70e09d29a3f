//! Baselines another program measures in the same run (the PyTorch and
//! Triton scripts on a GPU): their records, each of ours matched to the
//! fastest peer record of the same operation and shape, and the table of
//! the ratios.
//!
//! A peer record names the operation it stands in for in `op` (our record's
//! `kernel`) and carries the shape fields it was measured on; it matches
//! every record of ours with the same family, operation and values of those
//! fields, whatever else ours carries (a kernel shape, a path).

use std::fmt::Write as _;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report_output::{Rec, Val, is_measured, parse};

/// The records `python script --json` prints, one JSON object per line as
/// it measures them (its tables go to stderr, shown as they come). A script
/// still running after `limit` is stopped; the records it printed count.
pub fn run_script(python: &str, script: &str, limit: Duration) -> Vec<Rec> {
    let mut child = match Command::new(python)
        .args([script, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("{python} {script}: {e}");
            return Vec::new();
        }
    };
    // lines over a channel: a grandchild that keeps the pipe open after a
    // stop cannot hold the report up
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if !status.success() => eprintln!("{script} failed ({status})"),
            Ok(Some(_)) => {}
            Ok(None) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Ok(None) => {
                eprintln!("{script} still running after {limit:?}: stopped");
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(e) => eprintln!("{script}: {e}"),
        }
        break;
    }
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        lines.push(line);
    }
    parse_lines(&lines.join("\n"))
}

/// One record per line; a line that is not one is reported and skipped.
fn parse_lines(text: &str) -> Vec<Rec> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match parse(&format!("[{l}]")) {
            Ok(mut r) if r.len() == 1 => r.pop(),
            _ => {
                eprintln!("not a record: {l}");
                None
            }
        })
        .collect()
}

/// The fields that say what a peer record measured: all but its timings,
/// its own names and what follows from the shape (bytes and flops, which a
/// peer may count its own way).
fn placing(peer: &Rec) -> impl Iterator<Item = &(String, Val)> {
    peer.fields.iter().filter(|(k, _)| {
        !is_measured(k) && !["kernel", "op", "baseline", "bytes", "flops"].contains(&k.as_str())
    })
}

/// Sets `baseline` and `speedup_vs_baseline` (its time / ours) on each of
/// `ours` that a peer record matches, against the fastest such peer.
pub fn merge(ours: &mut [Rec], peers: &[Rec]) {
    for r in ours.iter_mut() {
        let Some(t) = r.num("median_s") else {
            continue;
        };
        let best = peers
            .iter()
            .filter(|p| {
                p.family() == r.family()
                    && p.str("op").is_some()
                    && p.str("op") == r.str("kernel")
                    && placing(p).all(|(k, v)| r.get(k) == Some(v))
            })
            .filter_map(|p| p.num("median_s").map(|pt| (p, pt)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((p, pt)) = best {
            r.set("baseline", p.str("kernel").unwrap_or("peer").into());
            r.set("speedup_vs_baseline", Val::Num(pt / t));
        }
    }
}

/// One line per record of ours that has a baseline: its time, the
/// baseline's and the ratio (above 1: ours is faster).
pub fn table(ours: &[Rec]) -> String {
    let mut md = String::from(
        "| family | kernel | what | ours | baseline | ours faster by |\n|---|---|---|---:|---|---:|\n",
    );
    for r in ours {
        let (Some(base), Some(x), Some(t)) = (
            r.str("baseline"),
            r.num("speedup_vs_baseline"),
            r.num("median_s"),
        ) else {
            continue;
        };
        let what: Vec<String> = r
            .fields
            .iter()
            .filter(|(k, _)| {
                !is_measured(k) && !["family", "kernel", "baseline"].contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} us | {base} | {x:.2}x |",
            r.family(),
            r.str("kernel").unwrap_or("?"),
            what.join(", "),
            t * 1e6
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(kernel: &str, dtype: &str, cols: usize, secs: f64) -> Rec {
        Rec::new("gpu-norm", kernel)
            .with("dtype", dtype)
            .with("rows", 16usize)
            .with("cols", cols)
            .with("shape", "Rows { threads: 32 }")
            .with("median_s", secs)
    }

    fn peer(kernel: &str, op: &str, dtype: &str, cols: usize, secs: f64) -> Rec {
        Rec::new("gpu-norm", kernel)
            .with("op", op)
            .with("dtype", dtype)
            .with("rows", 16usize)
            .with("cols", cols)
            .with("median_s", secs)
    }

    #[test]
    fn matches_op_dtype_and_shape_against_the_fastest_peer() {
        let mut mine = vec![
            ours("layernorm", "f32", 1024, 2e-6),
            ours("layernorm", "bf16", 1024, 1e-6),
            ours("rmsnorm", "f32", 2048, 4e-6),
        ];
        let peers = vec![
            peer("torch F.layer_norm", "layernorm", "f32", 1024, 3e-6),
            peer("slow layer_norm", "layernorm", "f32", 1024, 9e-6),
            peer("torch F.layer_norm", "layernorm", "f16", 1024, 5e-6),
            peer("torch F.rms_norm", "rmsnorm", "f32", 1024, 1e-6),
        ];
        merge(&mut mine, &peers);
        assert_eq!(mine[0].str("baseline"), Some("torch F.layer_norm"));
        assert!((mine[0].num("speedup_vs_baseline").unwrap() - 1.5).abs() < 1e-12);
        // no bf16 peer, and the RMSNorm peer has another d
        for r in &mine[1..] {
            assert_eq!(r.get("baseline"), None, "{r:?}");
        }
        let md = table(&mine);
        assert_eq!(md.lines().count(), 3, "{md}");
        assert!(md.contains("| 1.50x |"), "{md}");
    }

    #[test]
    fn a_peer_field_ours_lacks_means_no_match() {
        let mut mine = vec![ours("layernorm", "f32", 1024, 2e-6)];
        let peers = vec![peer("p", "layernorm", "f32", 1024, 3e-6).with("heads", 16usize)];
        merge(&mut mine, &peers);
        assert_eq!(mine[0].get("baseline"), None);
    }

    #[test]
    fn peer_output_is_read_line_by_line() {
        let text = format!(
            "{}\n\nnot json\n{}\n",
            peer("a", "layernorm", "f32", 8, 1e-6).json(),
            peer("b", "rmsnorm", "bf16", 8, 2e-6).json()
        );
        let recs = parse_lines(&text);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].str("op"), Some("rmsnorm"));
    }

    #[test]
    fn python_json_dumps_lines_match_the_gpu_records() {
        // lines as scripts/torch_timing.py's record() prints them
        let text = concat!(
            r#"{"family": "gpu-norm", "kernel": "torch add + rms_norm", "op": "residual+rmsnorm", "dtype": "bf16", "rows": 16384, "cols": 4096, "gbps": 2684.35456, "median_s": 5e-05}"#,
            "\n",
            r#"{"family": "gpu-lightning", "kernel": "fla chunk_simple_gla", "op": "forward", "dtype": "bf16", "batch": 1, "heads": 16, "n": 2048, "d": 128, "median_s": 0.0004}"#,
        );
        let peers = parse_lines(text);
        let mut mine = vec![
            Rec::new("gpu-norm", "residual+rmsnorm")
                .with("dtype", "bf16")
                .with("rows", 16384usize)
                .with("cols", 4096usize)
                .with("shape", "Rows")
                .with("bytes", 4 * 2 * 16384 * 4096usize)
                .with("median_s", 1e-4),
            Rec::new("gpu-lightning", "forward")
                .with("path", "chunk-parallel")
                .with("dtype", "bf16")
                .with("batch", 1usize)
                .with("heads", 16usize)
                .with("n", 2048usize)
                .with("d", 128usize)
                .with("flops", 1e9)
                .with("median_s", 2e-4),
        ];
        merge(&mut mine, &peers);
        assert_eq!(mine[0].num("speedup_vs_baseline"), Some(0.5));
        assert_eq!(mine[1].str("baseline"), Some("fla chunk_simple_gla"));
        assert_eq!(mine[1].num("speedup_vs_baseline"), Some(2.0));
    }

    #[test]
    fn a_script_that_fails_or_hangs_gives_what_it_printed() {
        // python stands for the interpreter; sh runs these "scripts" the same way
        let dir = std::env::temp_dir().join(format!("tk-baselines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = peer("p", "layernorm", "f32", 8, 1e-6).json();
        let script = |name: &str, body: String| {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap();
            path.to_string_lossy().into_owned()
        };
        let hangs = script("hangs.sh", format!("echo '{line}'; sleep 30\n"));
        let t = Instant::now();
        let got = run_script("sh", &hangs, Duration::from_millis(500));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(got.len(), 1);
        let fails = script("fails.sh", format!("echo '{line}'; exit 3\n"));
        assert_eq!(run_script("sh", &fails, Duration::from_secs(20)).len(), 1);
        assert!(run_script("/nonexistent/python", &fails, Duration::from_secs(1)).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_survive_the_json_round_trip() {
        let r = peer("torch \"quoted\"", "layernorm", "f32", 1024, 3e-6);
        let back = parse(&format!("[{}]", r.json())).unwrap();
        assert_eq!(back[0].fields, r.fields);
    }
}
