//! Inference-time per-channel normalisation with frozen statistics
//! (BatchNorm's running mean/var, PowerNorm's running quadratic mean): a fixed
//! affine map per channel, applied by the norm kernels (`Norm::channel`) or
//! folded into an adjacent linear layer so that it costs nothing at all.

use crate::error::{Error, Result};
use crate::shape::expect_len;

/// `y[j] = x[j] * scale[j] + shift[j]` for every row.
///
/// ```
/// use transformer_kernels::norm::{ChannelAffine, Norm};
///
/// // BatchNorm with running statistics, gamma and beta, eps 1e-5.
/// let bn = ChannelAffine::batch_norm(&[0.5, -1.0], &[4.0, 0.25], Some(&[1.0, 2.0]), Some(&[0.0, 1.0]), 1e-5)?;
/// let x = [2.5f32, -1.0, 0.5, 0.0];
/// let mut y = [0.0f32; 4];
/// Norm::channel(&bn).run(&x, &mut y, 2)?;
/// assert!((y[0] - 1.0).abs() < 1e-5 && (y[1] - 1.0).abs() < 1e-5);
///
/// // Or fold it into the next linear layer z = W y + c (W is [out, d]).
/// let (mut w, mut c) = (vec![1.0f32, 1.0], vec![0.0f32]);
/// bn.fold_into_next(&mut w, &mut c)?;
/// let z: f32 = w[0] * x[0] + w[1] * x[1] + c[0];
/// assert!((z - (y[0] + y[1])).abs() < 1e-5);
/// # Ok::<(), transformer_kernels::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAffine {
    /// Per-channel multiplier.
    pub scale: Vec<f32>,
    /// Per-channel offset, added after the multiplier.
    pub shift: Vec<f32>,
}

impl ChannelAffine {
    /// BatchNorm at inference: `y = gamma (x - mean) / sqrt(var + eps) + beta`.
    pub fn batch_norm(
        mean: &[f32],
        var: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f32,
    ) -> Result<ChannelAffine> {
        ChannelAffine::from_stats(Some(mean), var, gamma, beta, eps)
    }

    /// PowerNorm at inference ("PowerNorm: Rethinking Batch Normalization in
    /// Transformers"): `y = gamma x / sqrt(psi + eps) + beta`, psi the running
    /// quadratic mean.
    pub fn power_norm(
        psi: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f32,
    ) -> Result<ChannelAffine> {
        ChannelAffine::from_stats(None, psi, gamma, beta, eps)
    }

    fn from_stats(
        mean: Option<&[f32]>,
        var: &[f32],
        gamma: Option<&[f32]>,
        beta: Option<&[f32]>,
        eps: f32,
    ) -> Result<ChannelAffine> {
        let d = var.len();
        if d == 0 {
            return Err(Error::ZeroSize {
                what: "channel statistics",
            });
        }
        expect_len("channel mean", d, mean.map_or(d, |m| m.len()))?;
        expect_len("channel gamma", d, gamma.map_or(d, |g| g.len()))?;
        expect_len("channel beta", d, beta.map_or(d, |b| b.len()))?;
        if !(eps >= 0.0 && eps.is_finite())
            || var.iter().any(|v| (*v + eps).is_nan() || *v + eps <= 0.0)
        {
            return Err(Error::InvalidArgument {
                what: "channel statistics",
                reason: "var + eps must be positive and eps finite",
            });
        }
        let mut scale = Vec::with_capacity(d);
        let mut shift = Vec::with_capacity(d);
        for j in 0..d {
            let a = gamma.map_or(1.0, |g| g[j] as f64) / (var[j] as f64 + eps as f64).sqrt();
            let b = beta.map_or(0.0, |b| b[j] as f64) - mean.map_or(0.0, |m| m[j] as f64) * a;
            scale.push(a as f32);
            shift.push(b as f32);
        }
        Ok(ChannelAffine { scale, shift })
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.scale.len()
    }
    /// True when there are no channels.
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Folds the affine into the linear layer that consumes its output,
    /// `z = W y + c` with `W` row-major `[out, d]`: `W <- W diag(scale)`,
    /// `c <- c + W shift`. Afterwards `W x + c` equals `W (affine x) + c`.
    pub fn fold_into_next(&self, w: &mut [f32], bias: &mut [f32]) -> Result<()> {
        let d = self.len();
        let out = bias.len();
        expect_len("fold_into_next weight [out, d]", out * d, w.len())?;
        for (row, c) in w.chunks_exact_mut(d).zip(bias.iter_mut()) {
            let mut acc = *c as f64;
            for (j, wv) in row.iter_mut().enumerate() {
                acc += *wv as f64 * self.shift[j] as f64;
                *wv = (*wv as f64 * self.scale[j] as f64) as f32;
            }
            *c = acc as f32;
        }
        Ok(())
    }

    /// Folds the affine into the linear layer that produces its input,
    /// `x = W u + c` with `W` row-major `[d, in]`: row j of `W` and `c[j]` are
    /// scaled by `scale[j]`, and `shift[j]` is added to `c[j]`.
    pub fn fold_into_previous(&self, w: &mut [f32], bias: &mut [f32]) -> Result<()> {
        let d = self.len();
        expect_len("fold_into_previous bias", d, bias.len())?;
        if w.len() % d != 0 {
            return Err(Error::LengthNotMultiple {
                what: "fold_into_previous weight [d, in]",
                len: w.len(),
                cols: d,
            });
        }
        let inner = w.len() / d;
        if inner == 0 {
            return Err(Error::ZeroSize {
                what: "fold_into_previous input features",
            });
        }
        for (j, row) in w.chunks_exact_mut(inner).enumerate() {
            for wv in row.iter_mut() {
                *wv = (*wv as f64 * self.scale[j] as f64) as f32;
            }
            bias[j] = (bias[j] as f64 * self.scale[j] as f64 + self.shift[j] as f64) as f32;
        }
        Ok(())
    }
}
