//! How the norm backward sums dgamma and dbeta over rows: deterministically,
//! and to the same bits for every thread count. The rows are cut into chunks
//! fixed by the shape alone ([`Chunking::of`]); one kernel call sums a
//! chunk's rows, in row order, into its own f64 partial (groups of up to four
//! rows summed in f32 first: kernels-cpu/norm/README.md), and the partials are
//! added in chunk order, `((p0 + p1) + p2) + ...`. One thread keeps a running
//! total and one partial; several give every chunk its own partial (so no
//! thread waits for another's) and add them afterwards, each thread a range
//! of columns, in the same order.

use crate::parallel::min_rows;

/// Rows of a chunk at least: zeroing and adding a partial (2 d doubles: 48
/// bytes of traffic per column) stays small next to the chunk's own rows (12
/// bytes per column and row for f32 dy, h, dx): 1.5% at 256 rows, where 64
/// rows measured 2-5% slower on one thread than a single chunk.
const MIN_CHUNK_ROWS: usize = 256;
/// Chunks at most: bounds a threaded call's workspace (64 partials) and, with
/// it, the threads one backward call can use.
const MAX_CHUNKS: usize = 64;

/// The chunks of a backward call's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunking {
    /// Rows of every chunk but the last (which may hold fewer).
    pub rows_per: usize,
    /// How many chunks (at least 1, even for 0 rows).
    pub count: usize,
}

impl Chunking {
    /// The chunks of `rows` rows of `cols` columns.
    pub(crate) fn of(rows: usize, cols: usize) -> Chunking {
        let rows_per = MIN_CHUNK_ROWS
            .max(min_rows(cols))
            .max(rows.div_ceil(MAX_CHUNKS));
        Chunking {
            rows_per,
            count: rows.div_ceil(rows_per).max(1),
        }
    }

    /// Partials (each `2 * cols` doubles: dgamma's, then dbeta's) a call on
    /// `threads` threads keeps: one chunk needs only the total, one thread a
    /// total and a partial, several threads one per chunk.
    pub(crate) fn partials(self, threads: usize) -> usize {
        match (self.count, threads) {
            (1, _) => 1,
            (_, 0 | 1) => 2,
            (c, _) => c,
        }
    }

    /// The rows of chunk `c`: (first row, count).
    pub(crate) fn rows(self, c: usize, rows: usize) -> (usize, usize) {
        let start = (c * self.rows_per).min(rows);
        (start, self.rows_per.min(rows - start))
    }
}

/// Adds partial `from` into `into`, element by element (both `2 * cols`).
pub(crate) fn add_into(into: &mut [f64], from: &[f64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_rows_and_depend_on_the_shape_only() {
        for (rows, cols) in [
            (0, 8),
            (1, 8),
            (63, 4096),
            (65, 4096),
            (10_000, 7),
            (1 << 20, 64),
        ] {
            let c = Chunking::of(rows, cols);
            assert!(c.count <= MAX_CHUNKS);
            let mut next = 0;
            for i in 0..c.count {
                let (start, n) = c.rows(i, rows);
                assert_eq!(start, next);
                assert!(n > 0 || rows == 0);
                next += n;
            }
            assert_eq!(next, rows, "{rows} x {cols}");
        }
        assert_eq!(Chunking::of(256, 4096).count, 1);
        assert_eq!(Chunking::of(257, 4096).count, 2);
        assert_eq!(Chunking::of(16384, 8192).count, 64);
        assert_eq!(Chunking::of(1 << 20, 8192).rows_per, 1 << 14);
    }

    #[test]
    fn partials_by_threads() {
        let one = Chunking::of(200, 4096);
        let many = Chunking::of(16384, 4096);
        assert_eq!((one.partials(1), one.partials(8)), (1, 1));
        assert_eq!((many.partials(1), many.partials(2)), (2, 64));
    }
}
