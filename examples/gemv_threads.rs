//! Weight-only GEMV (n = k = 4096, int4 and int8, group 128, f32 x of 1, 4
//! and 16 rows) on one thread and on two pinned workers, alone and with a
//! busy thread on the second worker's CPU (what a hypervisor that halts one
//! vCPU, or another process on that core, looks like to the split). Prints
//! the median of 55 interleaved rounds of each and the speedup.
//!
//! `cargo run --release --example gemv_threads` (docs/threads.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use transformer_kernels::parallel::{Threads, pinned_pool};
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::reference::uniform_values;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

static BUSY: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

/// Spins while BUSY is set, sleeps otherwise, until STOP.
fn competitor() {
    let mut x = 1u64;
    while !STOP.load(Ordering::Relaxed) {
        if BUSY.load(Ordering::Relaxed) {
            for _ in 0..1000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn main() {
    let pool = pinned_pool(2).expect("thread pool");
    let nk = 4096;
    let w = uniform_values(1, nk * nk, 1.0);
    // A second pinned pool: its worker 1 runs on the CPU of `pool`'s worker 1.
    let other = pinned_pool(2).expect("thread pool");
    other.spawn_broadcast(|c| {
        if c.index() == 1 {
            competitor()
        }
    });
    for bits in [4u32, 8] {
        let qw = QuantizedWeight::quantize(&w, nk, nk, bits, 128).expect("weight");
        for m in [1usize, 4, 16] {
            let x = uniform_values(2, m * nk, 2.0);
            let mut y = vec![0f32; m * nk];
            let mut ws = vec![0f32; 2 * qw.workspace_floats(m)];
            for contended in [false, true] {
                BUSY.store(contended, Ordering::Relaxed);
                let mut t = [Vec::new(), Vec::new()];
                for round in 0..60 {
                    for (i, th) in [Threads::Single, Threads::Count(2)].into_iter().enumerate() {
                        let t0 = Instant::now();
                        pool.install(|| {
                            qw.gemv(&x)
                                .workspace(&mut ws)
                                .threads(th)
                                .run(&mut y)
                                .expect("gemv")
                        });
                        if round >= 5 {
                            t[i].push(t0.elapsed().as_secs_f64());
                        }
                    }
                }
                let (one, two) = (median(t[0].clone()), median(t[1].clone()));
                println!(
                    "int{bits} m={m:2} {}: 1 thread {:.3} ms, 2 threads {:.3} ms, {:.2}x",
                    if contended {
                        "busy 2nd CPU"
                    } else {
                        "alone       "
                    },
                    one * 1e3,
                    two * 1e3,
                    one / two
                );
            }
        }
    }
    STOP.store(true, Ordering::Relaxed);
}
