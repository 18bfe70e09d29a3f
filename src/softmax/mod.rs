//! Row-wise softmax and log-softmax over the last dimension of a row-major
//! `[rows, cols]` buffer.
//!
//! ```
//! use transformer_kernels::softmax::{self, Softmax};
//!
//! let logits = [1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5];
//! let mut probs = [0.0f32; 6];
//! softmax::softmax(&logits, &mut probs, 3)?; // two rows of three
//! assert!((probs[0..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
//!
//! // Temperature 2, log-softmax, in place:
//! let mut buf = logits;
//! Softmax::new().scale(0.5).log(true).run_inplace(&mut buf, 3)?;
//! # Ok::<(), transformer_kernels::Error>(())
//! ```
//!
//! # Semantics and accuracy
//!
//! Each row is first scaled in f32, `z = fl32(scale * x)` (f16/bf16 inputs are
//! widened exactly), and the output is the exact softmax of `z`, rounded to the
//! output dtype, within [`error_bound`]. A row that holds NaN or `+inf`, or only
//! `-inf`, gives NaN throughout that row and nothing else (as `z - max z` does
//! in IEEE arithmetic, and as PyTorch does); a `-inf` entry of any other row
//! gives exactly 0 (`-inf` under log-softmax). Rows of huge values (±1e30) or of
//! many equal large values do not overflow. The stated bound holds for
//! `|z| <= 2^20`; beyond that results stay finite and ties stay exact, but the
//! exp argument reduction is clamped (see kernels-cpu/softmax/README.md).
//! Inputs with `|z| >= 2^126 ln 2` (about 5.9e37) saturate to that magnitude:
//! softmax treats them as equal, and log-softmax of such rows is not meaningful.

mod variants;

pub use variants::{Variant, find, variants};

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::ffi;
use crate::isa::{self, Isa};
use crate::parallel::{Shared, Threads, min_rows, split_rows};
use crate::shape::{Rows, StridedRows};

/// How a row is swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Max; exp, store and sum; scale. Reads the input twice and the output once
    /// more: the baseline.
    ThreePass,
    /// Dukhan & Ablavatski, "The Two-Pass Softmax Algorithm" (2020): the sum of
    /// exp is accumulated as (mantissa, exponent) pairs without a max pass,
    /// then exp is recomputed and scaled. Two reads of the input, one write.
    TwoPass,
}

impl Algorithm {
    /// Both algorithms, baseline first.
    pub const ALL: [Algorithm; 2] = [Algorithm::ThreePass, Algorithm::TwoPass];

    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ThreePass => "threepass",
            Algorithm::TwoPass => "twopass",
        }
    }

    fn from_ffi(a: ffi::tk_softmax_algo) -> Algorithm {
        match a {
            ffi::tk_softmax_algo::TK_SOFTMAX_THREEPASS => Algorithm::ThreePass,
            ffi::tk_softmax_algo::TK_SOFTMAX_TWOPASS => Algorithm::TwoPass,
        }
    }
}

/// Whether the two-pass algorithm is the default for `rows` x `cols` elements
/// of `elem_bytes` on `isa`. Measured with the report (single-row ladder and
/// `--crossover`, variants interleaved; docs/softmax.md):
/// - AVX-512: 1.3-1.45x the three-pass kernel once the output streams
///   ([`NONTEMPORAL_MIN_BYTES`] and up); 0.91-0.95x while the data sits in
///   L2/L3, where the three-pass kernel's extra sweeps are cheap and exp twice is not.
/// - AVX2: compute-bound (no `vscalefps`): 0.67-1.03x everywhere, never chosen.
/// - scalar: 0.2x (a polynomial exp twice instead of `expf` once), never chosen.
pub fn prefers_twopass(isa: Isa, rows: usize, cols: usize, elem_bytes: usize) -> bool {
    match isa {
        Isa::Avx512 | Isa::Avx512Bf16 => {
            rows.saturating_mul(cols).saturating_mul(elem_bytes) >= NONTEMPORAL_MIN_BYTES
        }
        Isa::Avx2 | Isa::Scalar => false,
    }
}

/// Outputs at least this large use non-temporal stores by default (two-pass
/// only): they would not stay in cache anyway, and streaming saves the
/// read-for-ownership of every output line.
pub const NONTEMPORAL_MIN_BYTES: usize = 64 * 1024 * 1024;

/// Options of a softmax call. `Softmax::new()` is plain softmax with scale 1,
/// automatic algorithm and ISA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Softmax {
    scale: f32,
    log: bool,
    algorithm: Option<Algorithm>,
    isa: Option<Isa>,
    nontemporal: Option<bool>,
    threads: Threads,
}

impl Default for Softmax {
    fn default() -> Self {
        Softmax::new()
    }
}

impl Softmax {
    /// Plain softmax: scale 1, automatic algorithm, ISA and thread count 1.
    pub const fn new() -> Softmax {
        Softmax {
            scale: 1.0,
            log: false,
            algorithm: None,
            isa: None,
            nontemporal: None,
            threads: Threads::Single,
        }
    }
    /// Split the rows across threads (default [`Threads::Single`]); the
    /// result does not depend on it.
    pub const fn threads(mut self, threads: Threads) -> Softmax {
        self.threads = threads;
        self
    }
    /// Multiply the input by `scale` (1 / temperature) first. Must be finite.
    pub const fn scale(mut self, scale: f32) -> Softmax {
        self.scale = scale;
        self
    }
    /// Compute log-softmax instead of softmax.
    pub const fn log(mut self, log: bool) -> Softmax {
        self.log = log;
        self
    }
    /// Force an algorithm (default: by size, see [`prefers_twopass`]).
    pub const fn algorithm(mut self, algorithm: Algorithm) -> Softmax {
        self.algorithm = Some(algorithm);
        self
    }
    /// Force an instruction set (default: [`isa::selected`]).
    pub const fn isa(mut self, isa: Isa) -> Softmax {
        self.isa = Some(isa);
        self
    }
    /// Force streaming stores on or off (default: by output size, see
    /// [`NONTEMPORAL_MIN_BYTES`]). A hint; the three-pass variants ignore it.
    pub const fn nontemporal(mut self, on: bool) -> Softmax {
        self.nontemporal = Some(on);
        self
    }

    /// (scale, log): the options every backend honours.
    pub fn scale_and_log(&self) -> (f32, bool) {
        (self.scale, self.log)
    }

    /// The variant a call on `rows` rows of `cols` elements of `T` would run.
    pub fn plan<T: Element>(&self, rows: usize, cols: usize) -> Result<&'static Variant> {
        let isa = match self.isa {
            Some(i) => i.require()?,
            None => isa::selected()?,
        };
        let algorithm =
            self.algorithm
                .unwrap_or(if prefers_twopass(isa, rows, cols, T::DTYPE.size()) {
                    Algorithm::TwoPass
                } else {
                    Algorithm::ThreePass
                });
        find(T::DTYPE, isa, algorithm).ok_or_else(|| Error::NoVariant {
            kernel: "softmax",
            detail: format!("{} {} {}", T::DTYPE.name(), isa.name(), algorithm.name()),
        })
    }

    fn check_scale(&self) -> Result<()> {
        if self.scale.is_finite() {
            Ok(())
        } else {
            Err(Error::InvalidArgument {
                what: "softmax scale",
                reason: "must be finite",
            })
        }
    }

    /// Runs `variant` on `rows` rows of `cols` elements at `x` / `y`, rows
    /// `x_stride` / `y_stride` elements apart: the one place every CPU entry
    /// point builds the params struct and calls the kernel.
    ///
    /// # Safety
    /// `variant` must be runnable (its ISA available) and of `T`'s dtype; `x`
    /// and `y` must address every row of their strided shapes; `y` must equal
    /// `x` or not overlap it.
    #[allow(clippy::too_many_arguments)]
    unsafe fn call<T: Element>(
        &self,
        variant: &Variant,
        x: *const T,
        x_stride: usize,
        y: *mut T,
        y_stride: usize,
        rows: usize,
        cols: usize,
    ) {
        let mut flags = 0;
        if self.log {
            flags |= ffi::TK_SOFTMAX_LOG;
        }
        let out_bytes = rows
            .saturating_mul(cols)
            .saturating_mul(std::mem::size_of::<T>());
        if self
            .nontemporal
            .unwrap_or(out_bytes >= NONTEMPORAL_MIN_BYTES)
        {
            flags |= ffi::TK_SOFTMAX_NONTEMPORAL;
        }
        let p = Shared(ffi::tk_softmax_params {
            x: x.cast(),
            y: y.cast(),
            rows,
            cols,
            x_stride,
            y_stride,
            scale: self.scale,
            flags,
        });
        split_rows(self.threads, rows, min_rows(cols), |start, count| {
            let mut c = p.get();
            // SAFETY: the caller's contract above; the chunks are disjoint
            // row ranges within the call's rows, and kernels read and write
            // only the cols elements of each of their rows.
            unsafe {
                c.x = c.x.cast::<T>().add(start * x_stride).cast();
                c.y = c.y.cast::<T>().add(start * y_stride).cast();
                c.rows = count;
                (variant.run)(&c)
            };
        });
    }

    /// Softmax of each `cols`-long row of `x` into `y` (same length).
    /// Nothing is written when an error is returned.
    pub fn run<T: Element>(&self, x: &[T], y: &mut [T], cols: usize) -> Result<()> {
        let rows = Rows::of_len("softmax input", x.len(), cols)?;
        rows.expect_len("softmax output", y.len())?;
        self.check_scale()?;
        let variant = self.plan::<T>(rows.rows, cols)?;
        if rows.is_empty() {
            return Ok(());
        }
        // SAFETY: x and y hold rows*cols elements of T (checked above), the
        // variant's dtype is T's (`plan` looked it up by T::DTYPE), its ISA is
        // available (`plan` required it), and the borrow rules keep x and y
        // from overlapping.
        unsafe {
            self.call(
                variant,
                x.as_ptr(),
                cols,
                y.as_mut_ptr(),
                cols,
                rows.rows,
                cols,
            )
        };
        Ok(())
    }

    /// Softmax of `rows` rows of `cols` elements that start `x_stride` (in `x`)
    /// and `y_stride` (in `y`) elements apart, as in a padded or sliced matrix.
    /// Elements between rows are neither read nor written.
    pub fn run_strided<T: Element>(
        &self,
        x: &[T],
        x_stride: usize,
        y: &mut [T],
        y_stride: usize,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let xs = StridedRows::new("softmax strided input", x.len(), rows, cols, x_stride)?;
        let ys = StridedRows::new("softmax strided output", y.len(), rows, cols, y_stride)?;
        self.check_scale()?;
        let variant = self.plan::<T>(rows, cols)?;
        if rows == 0 {
            return Ok(());
        }
        // SAFETY: as in `run`; StridedRows checked that every row lies within
        // its buffer ((rows - 1) * stride + cols <= len).
        unsafe {
            self.call(
                variant,
                x.as_ptr(),
                xs.stride,
                y.as_mut_ptr(),
                ys.stride,
                rows,
                cols,
            )
        };
        Ok(())
    }

    /// Softmax of each `cols`-long row of `xy`, in place.
    pub fn run_inplace<T: Element>(&self, xy: &mut [T], cols: usize) -> Result<()> {
        let rows = Rows::of_len("softmax buffer", xy.len(), cols)?;
        self.check_scale()?;
        let variant = self.plan::<T>(rows.rows, cols)?;
        if rows.is_empty() {
            return Ok(());
        }
        let ptr = xy.as_mut_ptr();
        // SAFETY: as in `run`; every variant supports y == x exactly (each
        // element is read before, or independently of, its own write).
        unsafe { self.call(variant, ptr.cast_const(), cols, ptr, cols, rows.rows, cols) };
        Ok(())
    }
}

/// Softmax of each `cols`-long row of `x` into `y`.
pub fn softmax<T: Element>(x: &[T], y: &mut [T], cols: usize) -> Result<()> {
    Softmax::new().run(x, y, cols)
}

/// Log-softmax of each `cols`-long row of `x` into `y`.
pub fn log_softmax<T: Element>(x: &[T], y: &mut [T], cols: usize) -> Result<()> {
    Softmax::new().log(true).run(x, y, cols)
}

/// Softmax of each `cols`-long row of `xy`, in place.
pub fn softmax_inplace<T: Element>(xy: &mut [T], cols: usize) -> Result<()> {
    Softmax::new().run_inplace(xy, cols)
}

/// Log-softmax of each `cols`-long row of `xy`, in place.
pub fn log_softmax_inplace<T: Element>(xy: &mut [T], cols: usize) -> Result<()> {
    Softmax::new().log(true).run_inplace(xy, cols)
}

/// Units of f32 roundoff (2^-24) allowed against the exact softmax of `z`:
/// up to 64 f32 additions per SIMD lane within a 2048-element block, a 6-level
/// lane reduction, the exp polynomial (< 3 ulp) in the sum and in the output,
/// and the final scaling. Blocks are merged in f64, so it does not grow with `cols`.
pub const F32_ULPS: f64 = 96.0;

/// The accuracy contract: the largest allowed `|y - y_exact|` for one element,
/// where `exact` is the exact (f64) result for `z`, `z_abs` is `|z|` of that
/// element and `z_max_abs` is `|max z|` of its row.
///
/// - softmax: `(F32_ULPS * 2^-24 + k * u_out) * |exact| + tiny_out`, where
///   `u_out` is the output dtype's unit roundoff, `k` is 1 (two rounding steps,
///   k = 2, for the three-pass algorithm with 16-bit outputs, which stores the
///   unnormalised exp in the output buffer), and `tiny_out` covers outputs
///   below the smallest normal (2^-126 for f32 and bf16, 2^-24 for f16).
/// - log-softmax: `2^-24 * (F32_ULPS + 2 * (z_abs + 2 * z_max_abs + 2 ln cols)) + u_out * |exact|`:
///   the subtraction `z - log sum` cancels, so its error scales with the
///   magnitudes involved.
pub fn error_bound(
    dtype: Dtype,
    algorithm: Algorithm,
    log: bool,
    exact: f64,
    z_abs: f64,
    z_max_abs: f64,
    cols: usize,
) -> f64 {
    let u = Dtype::F32.unit_roundoff();
    let u_out = if dtype == Dtype::F32 {
        0.0
    } else {
        dtype.unit_roundoff()
    };
    if log {
        let lncols = (cols as f64).ln();
        return u * (F32_ULPS + 2.0 * (z_abs + 2.0 * z_max_abs + 2.0 * lncols))
            + u_out * exact.abs();
    }
    let roundings = if algorithm == Algorithm::ThreePass && dtype != Dtype::F32 {
        2.0
    } else {
        1.0
    };
    let tiny = if dtype == Dtype::F16 {
        f64::powi(2.0, -24)
    } else {
        f64::powi(2.0, -126)
    };
    (F32_ULPS * u + roundings * u_out) * exact.abs() + tiny
}

/// The AVX2 three-pass kernel's `exp(d)` for `d <= 0` (its `exp(z - max z)`),
/// into `y`. It is the extended exp's `m * 2^e` ([`exp_extended`]) bit for bit,
/// 0 where `e <= -127` (as the kernels' `2^e` flushes there), in fewer
/// instructions; exposed to test exactly that. Other ISAs: [`Error::NoVariant`].
pub fn exp_nonpositive(isa: Isa, d: &[f32], y: &mut [f32]) -> Result<()> {
    isa.require()?;
    if y.len() != d.len() {
        return Err(Error::LengthMismatch {
            what: "exp_nonpositive output",
            expected: d.len(),
            actual: y.len(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: AVX2 is available (checked), and d and y both hold d.len()
        // elements (checked); the function reads d and writes y in bounds.
        unsafe { ffi::tk_exp_nonpositive_f32_avx2(d.as_ptr(), y.as_mut_ptr(), d.len()) };
        return Ok(());
    }
    Err(Error::NoVariant {
        kernel: "exp_nonpositive",
        detail: format!("{} (AVX2 only)", isa.name()),
    })
}

/// The extended exp every softmax kernel of `isa` uses: `m[i] * 2^e[i] =
/// exp(z[i])`, with `m` in [0.53, 1.9] (see kernels-cpu/softmax/README.md). For
/// testing and error analysis of the kernels' exp on its own.
pub fn exp_extended(isa: Isa, z: &[f32], m: &mut [f32], e: &mut [f32]) -> Result<()> {
    isa.require()?;
    if m.len() != z.len() || e.len() != z.len() {
        return Err(Error::LengthMismatch {
            what: "exp_extended outputs",
            expected: z.len(),
            actual: m.len().min(e.len()),
        });
    }
    let f: unsafe extern "C" fn(*const f32, *mut f32, *mut f32, usize) = match isa {
        Isa::Scalar => ffi::tk_expext_f32_scalar,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => ffi::tk_expext_f32_avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx512Bf16 => ffi::tk_expext_f32_avx512,
        #[cfg(not(target_arch = "x86_64"))]
        _ => return Err(Error::UnsupportedIsa { isa }),
    };
    // SAFETY: the ISA is available (checked), and z, m, e all hold z.len()
    // elements (checked); the function reads z and writes m and e in bounds.
    unsafe { f(z.as_ptr(), m.as_mut_ptr(), e.as_mut_ptr(), z.len()) };
    Ok(())
}
