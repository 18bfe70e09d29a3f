//! Multi-threaded calls: a call's rows (tokens, output channels) split into
//! contiguous blocks, each run by the unchanged single-thread kernel on a
//! thread of a rayon pool. Validation happens once, before the split, so a
//! rejected call still writes nothing; the split never changes a result
//! (every kernel treats its rows independently; the norm backward sums
//! dgamma/dbeta over row chunks fixed by the shape), so threaded and
//! single-thread calls give the same bits.
//!
//! ```
//! use transformer_kernels::parallel::Threads;
//! use transformer_kernels::softmax::Softmax;
//!
//! let x = vec![0.5f32; 64 * 1024];
//! let mut y = vec![0.0f32; x.len()];
//! Softmax::new().threads(Threads::Pool).run(&x, &mut y, 1024)?;
//! assert!((y[..1024].iter().sum::<f32>() - 1.0).abs() < 1e-5);
//! # Ok::<(), transformer_kernels::Error>(())
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many threads one call may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// The calling thread only (the default: engines that already run one
    /// call per core keep full control).
    #[default]
    Single,
    /// Up to this many threads of the current rayon pool (the global pool,
    /// or the one the caller entered with `ThreadPool::install`).
    Count(usize),
    /// Every thread of the current rayon pool.
    Pool,
}

impl Threads {
    /// The thread count this setting stands for now (at least 1).
    pub fn count(self) -> usize {
        match self {
            Threads::Single => 1,
            Threads::Count(n) => n.max(1),
            Threads::Pool => rayon::current_num_threads().max(1),
        }
    }
}

/// A rayon pool of `threads` workers (0: one per CPU this process may run
/// on), worker `i` pinned to the `i`-th of those CPUs (Linux; elsewhere the
/// workers are not pinned). Run calls inside it with
/// [`rayon::ThreadPool::install`], or make it the global pool with
/// [`pin_global_pool`].
///
/// Why pin: with unpinned workers the OS may queue an idle worker on the core
/// of the busy one that just split a call, and then the split waits for a
/// load balance. On this project's 2-vCPU VM, a job spawned while the other
/// worker slept ran on the spawning worker itself, after its own 300 us of
/// work, in 54-66% of calls, and in none with pinned workers (`cargo run
/// --release --example pool_wake`, docs/threads.md).
///
/// ```
/// use transformer_kernels::parallel::{Threads, pinned_pool};
/// use transformer_kernels::softmax::Softmax;
///
/// let pool = pinned_pool(2).expect("thread pool");
/// let x = vec![0.5f32; 64 * 1024];
/// let mut y = vec![0.0f32; x.len()];
/// pool.install(|| Softmax::new().threads(Threads::Pool).run(&x, &mut y, 1024))?;
/// # Ok::<(), transformer_kernels::Error>(())
/// ```
pub fn pinned_pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    pinned_builder(threads).build()
}

/// Makes a pinned pool ([`pinned_pool`]) the global rayon pool, the one
/// [`Threads::Pool`] and [`Threads::Count`] use outside `install`. Fails if
/// the global pool already exists (it is created on first use).
pub fn pin_global_pool(threads: usize) -> Result<(), rayon::ThreadPoolBuildError> {
    pinned_builder(threads).build_global()
}

fn pinned_builder(threads: usize) -> rayon::ThreadPoolBuilder {
    let cpus = affinity::allowed_cpus();
    let threads = if threads == 0 {
        cpus.len().max(1)
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(move |i| {
            if !cpus.is_empty() {
                affinity::pin_to(cpus[i % cpus.len()]);
            }
        })
}

#[cfg(target_os = "linux")]
mod affinity {
    /// A cpu_set_t of glibc (1024 CPUs).
    type CpuSet = [u64; 16];

    unsafe extern "C" {
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut CpuSet) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const CpuSet) -> i32;
    }

    /// The CPUs this process may run on, ascending (empty if unknown).
    pub fn allowed_cpus() -> Vec<usize> {
        let mut set: CpuSet = [0; 16];
        // SAFETY: set is a writable cpu_set_t of the size passed.
        if unsafe { sched_getaffinity(0, size_of::<CpuSet>(), &mut set) } != 0 {
            return Vec::new();
        }
        (0..1024)
            .filter(|&c| set[c / 64] >> (c % 64) & 1 == 1)
            .collect()
    }

    /// Pins the calling thread to `cpu` (best effort: a refusal leaves it
    /// unpinned).
    pub fn pin_to(cpu: usize) {
        let mut set: CpuSet = [0; 16];
        set[cpu / 64] |= 1 << (cpu % 64);
        // SAFETY: set is a cpu_set_t of the size passed; pid 0 is this thread.
        unsafe { sched_setaffinity(0, size_of::<CpuSet>(), &set) };
    }
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    pub fn allowed_cpus() -> Vec<usize> {
        Vec::new()
    }
    pub fn pin_to(_cpu: usize) {}
}

/// Least work per chunk, in elements touched: below this a thread's start-up
/// and the join cost more than the chunk (a wake-up is a few microseconds,
/// 16K elements at ~10 GB/s about six).
pub(crate) const MIN_CHUNK_ELEMENTS: usize = 16 * 1024;

/// Least weight bytes a block of a weight-streaming product (the LLM.int8()
/// product, the weight-only GEMV) reads: below this the block's start-up
/// (its first lines not yet prefetched, a wake-up) is a visible share.
pub(crate) const MIN_WEIGHT_BYTES: usize = 64 * 1024;

/// A value shared with the worker threads: the kernels' parameter structs
/// hold raw pointers, which are neither Send nor Sync.
#[derive(Clone, Copy)]
pub(crate) struct Shared<P>(pub P);

impl<P: Copy> Shared<P> {
    /// A copy of the value (a method, so closures capture the whole
    /// wrapper rather than its raw-pointer field).
    pub(crate) fn get(&self) -> P {
        self.0
    }
}
// SAFETY: only used to hand a call's parameters to the threads that run
// disjoint row ranges of that call, inside a scope that ends before the call
// returns (the buffers outlive every use).
unsafe impl<P> Send for Shared<P> {}
// SAFETY: as above; workers only read the shared value.
unsafe impl<P> Sync for Shared<P> {}

/// Blocks of rows per worker when every worker starts at once. Workers take
/// the next block from a shared counter, so one that starts late (a sleeping
/// core woken up: on a virtual machine, a halted vCPU can take milliseconds;
/// or a core busy with something else) leaves its blocks to the others
/// instead of holding a fixed share of the call back.
pub(crate) const BLOCKS_PER_WORKER: usize = 4;

/// Runs `run(start, count)` over `rows` rows cut into blocks of at least
/// `min_rows` rows (all but the last), on at most `threads.count()` workers
/// (the caller's thread one of them) that take the blocks in turn. For work
/// whose rows are independent: which worker runs a block changes nothing.
pub(crate) fn split_rows(
    threads: Threads,
    rows: usize,
    min_rows: usize,
    run: impl Fn(usize, usize) + Sync,
) {
    let workers = threads.count().min(rows / min_rows.max(1));
    share(workers, rows, min_rows, |_, start, count| run(start, count));
}

/// Runs `run(slot, start, count)` over `rows` rows cut into blocks of at
/// least `min_rows` rows (all but the last), on at most `workers` workers
/// numbered from 0 by `slot` (the index of the worker's own scratch, below
/// `workers`; the caller's thread is slot 0), each taking the next block from
/// a shared counter until none is left.
pub(crate) fn share(
    workers: usize,
    rows: usize,
    min_rows: usize,
    run: impl Fn(usize, usize, usize) + Sync,
) {
    share_with(
        workers,
        rows,
        min_rows,
        |_| (),
        |_, slot, start, count| run(slot, start, count),
    );
}

/// [`share`] with a state per worker, made by `init(slot)` before its first
/// block and handed to each of its blocks in turn (`run(state, slot, start,
/// count)`): for work that prepares something once per worker (a converted
/// input in the worker's scratch) and reuses it on every block it takes.
pub(crate) fn share_with<S>(
    workers: usize,
    rows: usize,
    min_rows: usize,
    init: impl Fn(usize) -> S + Sync,
    run: impl Fn(&mut S, usize, usize, usize) + Sync,
) {
    let min_rows = min_rows.max(1);
    let workers = workers.min(rows.div_ceil(min_rows)).max(1);
    if workers == 1 {
        run(&mut init(0), 0, 0, rows);
        return;
    }
    let block = min_rows.max(rows.div_ceil(workers * BLOCKS_PER_WORKER));
    let next = AtomicUsize::new(0);
    let take = |slot: usize| {
        let mut state = init(slot);
        loop {
            let start = next.fetch_add(block, Ordering::Relaxed);
            if start >= rows {
                break;
            }
            run(&mut state, slot, start, block.min(rows - start));
        }
    };
    let take = &take;
    rayon::scope(|s| {
        for slot in 1..workers {
            s.spawn(move |_| take(slot));
        }
        take(0);
    });
}

/// Rows per chunk so that a chunk touches at least [`MIN_CHUNK_ELEMENTS`].
pub(crate) fn min_rows(elements_per_row: usize) -> usize {
    MIN_CHUNK_ELEMENTS.div_ceil(elements_per_row.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn pinned_pool_runs_every_worker_on_an_allowed_cpu() {
        let cpus = affinity::allowed_cpus();
        let pool = pinned_pool(3).unwrap();
        assert_eq!(pool.current_num_threads(), 3);
        // each worker's own allowed set: its one CPU
        let mut seen = pool.broadcast(|c| (c.index(), affinity::allowed_cpus()));
        seen.sort();
        assert_eq!(seen.len(), 3);
        if cfg!(target_os = "linux") {
            assert!(!cpus.is_empty());
            for (i, own) in seen {
                assert_eq!(own, [cpus[i % cpus.len()]], "worker {i}");
            }
        }
    }

    #[test]
    fn chunks_cover_every_row_once() {
        for (threads, rows, min) in [(4, 10, 1), (3, 100, 7), (8, 5, 1), (2, 1, 1), (4, 0, 1)] {
            let seen = Mutex::new(vec![0u32; rows]);
            split_rows(Threads::Count(threads), rows, min, |start, count| {
                let mut s = seen.lock().unwrap();
                for r in start..start + count {
                    s[r] += 1;
                }
            });
            assert!(seen.into_inner().unwrap().iter().all(|&c| c == 1));
        }
    }

    #[test]
    fn blocks_hold_min_rows_and_small_calls_stay_on_one_thread() {
        let sizes = Mutex::new(Vec::new());
        split_rows(Threads::Count(8), 10, 4, |start, n| {
            sizes.lock().unwrap().push((start, n))
        });
        let mut sizes = sizes.into_inner().unwrap();
        sizes.sort();
        assert_eq!(sizes, [(0, 4), (4, 4), (8, 2)]);
        let calls = Mutex::new(0);
        split_rows(Threads::Count(8), 10, 100, |_, _| {
            *calls.lock().unwrap() += 1
        });
        assert_eq!(calls.into_inner().unwrap(), 1);
    }
}
