//! Row-major shapes: one place that validates lengths and overflow.

use crate::error::{Error, Result};

/// A row-major `[rows, cols]` matrix held in a contiguous slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub rows: usize,
    pub cols: usize,
}

impl Rows {
    /// The shape of a slice of `len` elements cut into rows of `cols`.
    /// `cols` must be non-zero; `len` may be zero (no rows).
    pub fn of_len(what: &'static str, len: usize, cols: usize) -> Result<Rows> {
        if cols == 0 {
            return Err(Error::ZeroSize {
                what: "row length (cols)",
            });
        }
        if len % cols != 0 {
            return Err(Error::LengthNotMultiple { what, len, cols });
        }
        Ok(Rows {
            rows: len / cols,
            cols,
        })
    }

    /// Number of elements, checked for overflow.
    pub fn len(&self) -> Result<usize> {
        self.rows.checked_mul(self.cols).ok_or(Error::Overflow {
            what: "rows * cols",
        })
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }

    /// Requires another buffer to have exactly this shape's length.
    pub fn expect_len(&self, what: &'static str, actual: usize) -> Result<()> {
        let expected = self.len()?;
        if actual != expected {
            return Err(Error::LengthMismatch {
                what,
                expected,
                actual,
            });
        }
        Ok(())
    }
}
