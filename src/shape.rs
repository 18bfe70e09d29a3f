//! Row-major shapes: one place that validates lengths and overflow.

use crate::error::{Error, Result};

/// Requires a buffer (`what`) to hold exactly `expected` elements.
pub fn expect_len(what: &'static str, expected: usize, actual: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            what,
            expected,
            actual,
        })
    }
}

/// A row-major `[rows, cols]` matrix held in a contiguous slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    /// Number of rows.
    pub rows: usize,
    /// Elements per row.
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

/// `rows` rows of `cols` elements whose starts are `stride` elements apart
/// (`stride >= cols`; the elements between rows are not part of the matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StridedRows {
    /// Number of rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Elements from the start of one row to the next.
    pub stride: usize,
}

impl StridedRows {
    /// Validates the shape against a buffer of `len` elements.
    pub fn new(
        what: &'static str,
        len: usize,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Result<StridedRows> {
        if cols == 0 {
            return Err(Error::ZeroSize {
                what: "row length (cols)",
            });
        }
        if stride < cols {
            return Err(Error::InvalidArgument {
                what,
                reason: "row stride is shorter than the row",
            });
        }
        if rows > 0 {
            let needed = (rows - 1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(cols))
                .ok_or(Error::Overflow {
                    what: "(rows - 1) * stride + cols",
                })?;
            if needed > len {
                return Err(Error::LengthMismatch {
                    what,
                    expected: needed,
                    actual: len,
                });
            }
        }
        Ok(StridedRows { rows, cols, stride })
    }
}
