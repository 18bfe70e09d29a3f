//! The factors of a Kronecker transform and the offline linear algebra on
//! them (inverse, transpose, the f64 factored product used to fold P^-1 into
//! weights). Runs once per model, so plain f64 Rust.

use crate::error::{Error, Result};

/// One factor of `P = P1 kron P2`: a dense n x n matrix (row-major, f32) or
/// the Walsh-Hadamard matrix of order n normalised by 1/sqrt(n) (orthogonal
/// and symmetric: its own inverse and transpose), applied by the fast
/// transform. Opaque, so every factor was validated by its constructor (the
/// kernels read n * n entries of a dense one).
#[derive(Debug, Clone, PartialEq)]
pub struct Factor(Repr);

#[derive(Debug, Clone, PartialEq)]
enum Repr {
    /// `p[i * n + j]` is entry (i, j).
    Dense { n: usize, p: Vec<f32> },
    /// `H_n / sqrt(n)`, entry (i, j) = `(-1)^popcount(i & j) / sqrt(n)` (Sylvester order).
    Hadamard { n: usize },
}

impl Factor {
    /// A dense factor from an n x n row-major matrix of finite values.
    pub fn dense(p: &[f32], n: usize) -> Result<Factor> {
        if n == 0 {
            return Err(Error::ZeroSize {
                what: "factor order",
            });
        }
        let nn = n.checked_mul(n).ok_or(Error::Overflow {
            what: "factor order",
        })?;
        if p.len() != nn {
            return Err(Error::LengthMismatch {
                what: "dense factor (n * n)",
                expected: nn,
                actual: p.len(),
            });
        }
        if p.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument {
                what: "dense factor",
                reason: "holds NaN or inf",
            });
        }
        Ok(Factor(Repr::Dense { n, p: p.to_vec() }))
    }

    /// The normalised Walsh-Hadamard factor of order n (a power of two, at
    /// most 2^30, so that n1 n2 cannot overflow with any other factor).
    pub fn hadamard(n: usize) -> Result<Factor> {
        if !n.is_power_of_two() || n > 1 << 30 {
            return Err(Error::InvalidArgument {
                what: "Hadamard order",
                reason: "must be a power of two up to 2^30",
            });
        }
        Ok(Factor(Repr::Hadamard { n }))
    }

    /// The order n.
    pub fn order(&self) -> usize {
        match &self.0 {
            Repr::Dense { n, .. } | Repr::Hadamard { n } => *n,
        }
    }

    /// Whether this is a Hadamard factor (applied by the fast transform).
    pub fn is_hadamard(&self) -> bool {
        matches!(self.0, Repr::Hadamard { .. })
    }

    /// A dense factor's entries, row-major (None for Hadamard).
    pub fn dense_entries(&self) -> Option<&[f32]> {
        match &self.0 {
            Repr::Dense { p, .. } => Some(p),
            Repr::Hadamard { .. } => None,
        }
    }

    /// Entry (i, j) in f64 (Hadamard: (-1)^popcount(i & j) / sqrt(n)).
    pub fn entry(&self, i: usize, j: usize) -> f64 {
        match &self.0 {
            Repr::Dense { n, p } => p[i * n + j] as f64,
            Repr::Hadamard { n } => {
                let sign = if (i & j).count_ones() % 2 == 0 {
                    1.0
                } else {
                    -1.0
                };
                sign / (*n as f64).sqrt()
            }
        }
    }

    /// The matrix in f64, row-major.
    pub fn to_f64(&self) -> Vec<f64> {
        let n = self.order();
        (0..n * n).map(|k| self.entry(k / n, k % n)).collect()
    }

    /// The transpose.
    pub fn transposed(&self) -> Factor {
        match &self.0 {
            Repr::Hadamard { n } => Factor(Repr::Hadamard { n: *n }),
            Repr::Dense { n, p } => {
                let n = *n;
                Factor(Repr::Dense {
                    n,
                    p: (0..n * n).map(|k| p[(k % n) * n + k / n]).collect(),
                })
            }
        }
    }

    /// The inverse, by Gauss-Jordan elimination with partial pivoting in f64,
    /// rounded to f32. Fails for a singular (or numerically singular: a pivot
    /// below 1e-12 of the largest entry) matrix. Check the result with
    /// [`Factor::inversion_residual`].
    pub fn inverse(&self) -> Result<Factor> {
        let (n, p) = match &self.0 {
            Repr::Hadamard { n } => return Ok(Factor(Repr::Hadamard { n: *n })),
            Repr::Dense { n, p } => (*n, p),
        };
        let inv = invert(&p.iter().map(|&v| v as f64).collect::<Vec<_>>(), n).ok_or(
            Error::InvalidArgument {
                what: "dense factor",
                reason: "is singular",
            },
        )?;
        // entries past f32's range make the rounded inverse useless: refuse
        let p: Vec<f32> = inv.iter().map(|&v| v as f32).collect();
        if p.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument {
                what: "dense factor",
                reason: "its inverse overflows f32",
            });
        }
        Ok(Factor(Repr::Dense { n, p }))
    }

    /// max |(self other) - I| over the entries, in f64: how far `other` is
    /// from this factor's inverse.
    pub fn inversion_residual(&self, other: &Factor) -> f64 {
        let n = self.order();
        if other.order() != n {
            return f64::INFINITY;
        }
        let (a, b) = (self.to_f64(), other.to_f64());
        let mut worst = 0.0f64;
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..n).map(|k| a[i * n + k] * b[k * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                worst = worst.max((s - want).abs());
            }
        }
        worst
    }
}

/// The inverse of the n x n row-major matrix a, or None if it is singular.
fn invert(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n)
        .map(|k| if k / n == k % n { 1.0 } else { 0.0 })
        .collect();
    let scale = a.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))?;
        if m[piv * n + c].abs() <= 1e-12 * scale || scale == 0.0 {
            return None;
        }
        for k in 0..n {
            m.swap(c * n + k, piv * n + k);
            inv.swap(c * n + k, piv * n + k);
        }
        let d = m[c * n + c];
        for k in 0..n {
            m[c * n + k] /= d;
            inv[c * n + k] /= d;
        }
        for r in 0..n {
            let f = m[r * n + c];
            if r != c && f != 0.0 {
                for k in 0..n {
                    m[r * n + k] -= f * m[c * n + k];
                    inv[r * n + k] -= f * inv[c * n + k];
                }
            }
        }
    }
    Some(inv)
}

/// y = x (P1 kron P2) for one row x of n1 * n2 values, in f64, factored:
/// vec(P1^T X P2).
pub(crate) fn apply_f64(p1: &Factor, p2: &Factor, x: &[f64]) -> Vec<f64> {
    let (n1, n2) = (p1.order(), p2.order());
    let (a, b) = (p1.to_f64(), p2.to_f64());
    let mut z = vec![0.0; n1 * n2];
    for i in 0..n1 {
        for l in 0..n2 {
            z[i * n2 + l] = (0..n2).map(|j| x[i * n2 + j] * b[j * n2 + l]).sum();
        }
    }
    let mut y = vec![0.0; n1 * n2];
    for k in 0..n1 {
        for l in 0..n2 {
            y[k * n2 + l] = (0..n1).map(|i| a[i * n1 + k] * z[i * n2 + l]).sum();
        }
    }
    y
}
