//! Dequantization of the per-token int8 / int4 format (plain Rust: one
//! multiply per element, memory-bound).

use super::expect_len;
use crate::dtype::Element;
use crate::error::{Error, Result};

/// Bytes per token of int4 values: two per byte, the even element in the
/// low nibble.
pub fn int4_row_bytes(n: usize) -> usize {
    n.div_ceil(2)
}

fn check(len: usize, n: usize, scales: usize, out: usize, per_row: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::ZeroSize {
            what: "token length",
        });
    }
    if len % per_row != 0 {
        return Err(Error::LengthNotMultiple {
            what: "quantized values",
            len,
            cols: per_row,
        });
    }
    let tokens = len / per_row;
    expect_len("scales", scales, Some(tokens))?;
    expect_len("output", out, tokens.checked_mul(n))
}

/// `out[t][j] = q[t][j] * scales[t]`, rounded to T.
pub fn dequantize_int8<T: Element>(
    q: &[i8],
    scales: &[f32],
    n: usize,
    out: &mut [T],
) -> Result<()> {
    check(q.len(), n, scales.len(), out.len(), n.max(1))?;
    for ((qr, &s), o) in q.chunks_exact(n).zip(scales).zip(out.chunks_exact_mut(n)) {
        for (d, &v) in o.iter_mut().zip(qr) {
            *d = T::from_f32(v as f32 * s);
        }
    }
    Ok(())
}

/// The int4 values of `q` (sign-extended nibbles) times their token's scale.
pub fn dequantize_int4<T: Element>(
    q: &[u8],
    scales: &[f32],
    n: usize,
    out: &mut [T],
) -> Result<()> {
    let rb = int4_row_bytes(n);
    check(q.len(), n, scales.len(), out.len(), rb.max(1))?;
    for ((qr, &s), o) in q.chunks_exact(rb).zip(scales).zip(out.chunks_exact_mut(n)) {
        for (j, d) in o.iter_mut().enumerate() {
            let byte = qr[j / 2];
            let nib = if j % 2 == 0 { byte << 4 } else { byte & 0xF0 };
            *d = T::from_f32((nib as i8 >> 4) as f32 * s);
        }
    }
    Ok(())
}
