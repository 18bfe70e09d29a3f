//! How often a job spawned by a busy rayon worker, while the pool's other
//! workers sleep, is left for that worker itself to run, with the OS placing
//! the workers and with `parallel::pinned_pool` (docs/threads.md).
//!
//! `cargo run --release --example pool_wake`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use transformer_kernels::parallel::pinned_pool;

/// Microseconds of work the spawning worker does itself.
const BUSY_US: u64 = 300;
const CALLS: usize = 200;

fn measure(pool: &rayon::ThreadPool) -> (usize, f64) {
    let mut stolen_late = 0;
    let mut starts = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        // let every worker fall asleep
        std::thread::sleep(Duration::from_millis(1));
        let (ran_on, started) = (Mutex::new(None), Mutex::new(0.0));
        pool.scope(|s| {
            let t0 = Instant::now();
            let me = rayon::current_thread_index();
            let (ran_on, started) = (&ran_on, &started);
            s.spawn(move |_| {
                *started.lock().unwrap() = t0.elapsed().as_secs_f64() * 1e6;
                *ran_on.lock().unwrap() = Some(rayon::current_thread_index() == me);
            });
            while t0.elapsed() < Duration::from_micros(BUSY_US) {}
        });
        if ran_on.into_inner().unwrap() == Some(true) {
            stolen_late += 1;
        }
        starts.push(started.into_inner().unwrap());
    }
    starts.sort_by(f64::total_cmp);
    (stolen_late, starts[CALLS / 2])
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let plain = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let pinned = pinned_pool(threads).expect("pool");
    println!("{threads} workers; a job spawned by a worker busy for {BUSY_US} us, {CALLS} calls:");
    for round in 0..2 {
        for (name, pool) in [("OS-placed", &plain), ("pinned", &pinned)] {
            let (own, median) = measure(pool);
            println!(
                "  round {round} {name:>9}: run by the spawning worker {:>3.0}% of calls; median start {median:.0} us",
                100.0 * own as f64 / CALLS as f64
            );
        }
    }
}
