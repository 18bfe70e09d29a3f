//! Row-wise normalisation of a row-major `[rows, d]` buffer, forward and
//! backward: LayerNorm, RMSNorm, and the variants the normalisation papers
//! define, each an option of the same kernels. Optional fusions in the one
//! pass: the residual add of a pre-norm block, the affine transform, an
//! output scale, and int8 quantization of the output.
//!
//! ```
//! use transformer_kernels::norm::Norm;
//!
//! let d = 4;
//! let x = [1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 2.0];
//! let gamma = [1.0f32, 1.0, 2.0, 2.0];
//! let mut y = [0.0f32; 8];
//! Norm::layer_norm().gamma(&gamma).run(&x, &mut y, d)?;
//!
//! // Pre-norm block: the residual stream becomes h = x + residual, y = RMSNorm(h),
//! // and y is quantized to int8 with one scale per row, all in one pass.
//! let mut residual = [0.5f32; 8];
//! let (mut q, mut scales) = ([0i8; 8], [0.0f32; 2]);
//! Norm::rms_norm()
//!     .gamma(&gamma)
//!     .forward(&x, d)
//!     .residual(&mut residual)
//!     .quantized(&mut q, &mut scales)
//!     .run()?;
//! assert_eq!(residual[0], 1.5);
//! # Ok::<(), transformer_kernels::Error>(())
//! ```
//!
//! # Semantics
//!
//! With a residual, `h = fl(x + residual)` (added in f32, rounded to the
//! dtype, and written back as the new residual stream); otherwise `h = x`.
//! Then `y = ((h - mean) * rstd * gamma + beta) * out_scale`, statistics in
//! f32 with f64 merging, where
//! - LayerNorm: `rstd = 1 / sqrt(var(h) + eps)` (population variance);
//! - RMSNorm: `mean = 0`, `rstd = 1 / sqrt(mean(h^2) + eps)`;
//! - Channel (frozen per-channel statistics, [`ChannelAffine`]): no row
//!   statistics, `y = h * scale + shift`.
//!
//! Variants: [`Norm::layer_scale`] (LayerNorm Scaling, "The Curse of Depth":
//! `out_scale = 1 / sqrt(layer)`), [`Norm::crms_norm`] (Pre-CRMSNorm: rows
//! store `d - 1` coordinates of a zero-mean vector, whose implied last
//! coordinate `-sum(h)` joins the mean of squares), [`Norm::srms_norm`]
//! (TransNormer's SimpleRMSNorm: `x / (||x|| / sqrt(d))`, no gain), and
//! [`ChannelAffine`] (inference-time BatchNorm or PowerNorm, foldable into an
//! adjacent linear layer).
//!
//! # Accuracy
//!
//! h is exact (the f32 sum rounded once to the dtype). y is within
//! [`forward_error_bound`] of the exact result for the kernel's own h;
//! gradients within [`backward_error_bound`]. Statistics are robust to a
//! large mean over a small spread (mean 1e4, std 1e-2 is tested): each block
//! of 2048 elements is summed around its own mean and blocks merge in f64.
//! Sums of squares are f32: rows need `|h| < 1e17` (f32 overflow). A row
//! holding NaN or inf gives NaN statistics and a NaN row of y.
//!
//! Rows are compact (`run`, `run_inplace`, `forward`, `backward`) or a stride
//! apart for padded or sliced matrices (`run_strided`; the gaps are neither
//! read nor written).
//!
//! # Memory traffic
//!
//! x (and the residual) are read from memory once per call and y (and h)
//! written once; the statistics sweeps and the write sweep find the row in
//! L1/L2 while one row of each input fits there (d up to about 100k f32).
//! Longer rows are read from memory twice (three times with int8 output).
//! Outputs of 64 MiB and more use streaming stores ([`Norm::nontemporal`]).

mod channel;
mod grad_sums;
mod variants;

pub use channel::ChannelAffine;
pub use variants::{Variant, find, variants};

use half::{bf16, f16};

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::ffi;
use crate::isa::{self, Isa};
use crate::parallel::{Shared, Threads, min_rows, split_rows};
use crate::shape::{Rows, StridedRows, expect_len};
use grad_sums::Chunking;

/// Which statistics normalise a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Mean and variance.
    LayerNorm,
    /// Mean of squares.
    RmsNorm,
    /// None: a fixed per-channel affine (frozen statistics).
    Channel,
}

impl Kind {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LayerNorm => "layernorm",
            Kind::RmsNorm => "rmsnorm",
            Kind::Channel => "channel",
        }
    }

    fn to_ffi(self) -> ffi::tk_norm_kind {
        match self {
            Kind::LayerNorm => ffi::tk_norm_kind::TK_NORM_LAYERNORM,
            Kind::RmsNorm => ffi::tk_norm_kind::TK_NORM_RMSNORM,
            Kind::Channel => ffi::tk_norm_kind::TK_NORM_CHANNEL,
        }
    }
}

/// A gain or bias vector: f32, or the dtype of the data it scales.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// f32 weights (allowed with any data dtype).
    F32(&'a [f32]),
    /// f16 weights (with f16 data).
    F16(&'a [f16]),
    /// bf16 weights (with bf16 data).
    Bf16(&'a [bf16]),
}

macro_rules! weights_from {
    ($t:ty, $v:ident) => {
        impl<'a> From<&'a [$t]> for Weights<'a> {
            fn from(s: &'a [$t]) -> Self {
                Weights::$v(s)
            }
        }
        impl<'a, const N: usize> From<&'a [$t; N]> for Weights<'a> {
            fn from(s: &'a [$t; N]) -> Self {
                Weights::$v(s)
            }
        }
        impl<'a> From<&'a Vec<$t>> for Weights<'a> {
            fn from(s: &'a Vec<$t>) -> Self {
                Weights::$v(s)
            }
        }
    };
}
weights_from!(f32, F32);
weights_from!(f16, F16);
weights_from!(bf16, Bf16);

impl Weights<'_> {
    /// The element type of the vector.
    pub fn dtype(&self) -> Dtype {
        match self {
            Weights::F32(_) => Dtype::F32,
            Weights::F16(_) => Dtype::F16,
            Weights::Bf16(_) => Dtype::Bf16,
        }
    }
    /// Number of channels.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(s) => s.len(),
            Weights::F16(s) => s.len(),
            Weights::Bf16(s) => s.len(),
        }
    }
    /// True when the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn ptr(&self) -> *const std::ffi::c_void {
        match self {
            Weights::F32(s) => s.as_ptr().cast(),
            Weights::F16(s) => s.as_ptr().cast(),
            Weights::Bf16(s) => s.as_ptr().cast(),
        }
    }
    /// Element j widened to f64 (for references and reports).
    pub fn get(&self, j: usize) -> f64 {
        match self {
            Weights::F32(s) => s[j] as f64,
            Weights::F16(s) => s[j].to_f64(),
            Weights::Bf16(s) => s[j].to_f64(),
        }
    }
}

/// Options of a norm call: the kind, eps, gain/bias, output scale, ISA.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a> {
    kind: Kind,
    crms: bool,
    eps: f32,
    out_scale: f32,
    gamma: Option<Weights<'a>>,
    beta: Option<Weights<'a>>,
    isa: Option<Isa>,
    nontemporal: Option<bool>,
    threads: Threads,
}

/// Outputs at least this large use streaming stores by default (as softmax).
pub const NONTEMPORAL_MIN_BYTES: usize = crate::softmax::NONTEMPORAL_MIN_BYTES;

impl<'a> Norm<'a> {
    const fn new(kind: Kind, eps: f32) -> Norm<'a> {
        Norm {
            kind,
            crms: false,
            eps,
            out_scale: 1.0,
            gamma: None,
            beta: None,
            isa: None,
            nontemporal: None,
            threads: Threads::Single,
        }
    }
    /// LayerNorm, eps 1e-5, no gain or bias until set.
    pub const fn layer_norm() -> Norm<'a> {
        Norm::new(Kind::LayerNorm, 1e-5)
    }
    /// RMSNorm, eps 1e-6, no gain until set.
    pub const fn rms_norm() -> Norm<'a> {
        Norm::new(Kind::RmsNorm, 1e-6)
    }
    /// TransNormer's SimpleRMSNorm, `x / (||x|| / sqrt(d))`: RMSNorm without a
    /// gain (eps 1e-6 keeps an all-zero row finite; set 0 for the exact formula).
    pub const fn srms_norm() -> Norm<'a> {
        Norm::new(Kind::RmsNorm, 1e-6)
    }
    /// CRMSNorm ("Pre-RMSNorm and Pre-CRMSNorm Transformers"): each row holds
    /// `d - 1` coordinates of a zero-mean `d`-vector; the RMS is taken over
    /// all `d`, the implied last coordinate being `-sum(row)`. Inputs and
    /// outputs have `d - 1` columns. eps 1e-6.
    pub const fn crms_norm() -> Norm<'a> {
        let mut n = Norm::new(Kind::RmsNorm, 1e-6);
        n.crms = true;
        n
    }
    /// Frozen per-channel statistics (BatchNorm or PowerNorm at inference).
    pub fn channel(affine: &'a ChannelAffine) -> Norm<'a> {
        Norm::channel_scale_shift(&affine.scale, &affine.shift)
    }
    /// Frozen per-channel `y = x * scale + shift` from the two vectors of a
    /// [`ChannelAffine`] (f32, length d each) held elsewhere.
    pub fn channel_scale_shift(scale: &'a [f32], shift: &'a [f32]) -> Norm<'a> {
        let mut n = Norm::new(Kind::Channel, 0.0);
        n.gamma = Some(Weights::F32(scale));
        n.beta = Some(Weights::F32(shift));
        n
    }
    /// Epsilon added to the variance or mean square (finite, >= 0).
    pub const fn eps(mut self, eps: f32) -> Norm<'a> {
        self.eps = eps;
        self
    }
    /// Per-channel gain, length d (f32 or the I/O dtype).
    pub fn gamma(mut self, gamma: impl Into<Weights<'a>>) -> Norm<'a> {
        self.gamma = Some(gamma.into());
        self
    }
    /// Per-channel bias, length d (the same dtype as gamma).
    pub fn beta(mut self, beta: impl Into<Weights<'a>>) -> Norm<'a> {
        self.beta = Some(beta.into());
        self
    }
    /// Multiplies the output by `s` (finite).
    pub const fn out_scale(mut self, s: f32) -> Norm<'a> {
        self.out_scale = s;
        self
    }
    /// LayerNorm Scaling ("The Curse of Depth"): the output of the norm in
    /// layer `layer` (1-based) is scaled by `1 / sqrt(layer)`.
    pub fn layer_scale(self, layer: usize) -> Norm<'a> {
        self.out_scale(if layer == 0 {
            f32::NAN
        } else {
            (1.0 / (layer as f64).sqrt()) as f32
        })
    }
    /// Force an instruction set (default: [`isa::selected`]).
    pub const fn isa(mut self, isa: Isa) -> Norm<'a> {
        self.isa = Some(isa);
        self
    }
    /// Split the rows of forward and backward calls across threads (default
    /// [`Threads::Single`]); the result does not depend on it, dgamma and
    /// dbeta included (they are summed over row chunks fixed by the shape,
    /// see [`Backward::dgamma`]).
    pub const fn threads(mut self, threads: Threads) -> Norm<'a> {
        self.threads = threads;
        self
    }

    /// Doubles of [`Backward::workspace`] a backward call on `rows x cols`
    /// that asks for dgamma or dbeta needs with this `threads` setting (the
    /// pool's size now, for [`Threads::Pool`]): `2 * cols` for up to 256 rows,
    /// `4 * cols` on one thread, one `2 * cols` partial per row chunk (at most
    /// 64) on several. A workspace that holds the one-thread amount but not
    /// the threaded one runs the call on one thread.
    ///
    /// ```
    /// use transformer_kernels::norm::Norm;
    /// use transformer_kernels::parallel::Threads;
    ///
    /// let norm = Norm::layer_norm();
    /// assert_eq!(norm.backward_workspace_len(256, 1024), 2 * 1024);
    /// assert_eq!(norm.backward_workspace_len(4096, 1024), 4 * 1024);
    /// let threaded = norm.threads(Threads::Count(4));
    /// // 16 chunks of 256 rows
    /// assert_eq!(threaded.backward_workspace_len(4096, 1024), 16 * 2 * 1024);
    /// ```
    pub fn backward_workspace_len(&self, rows: usize, cols: usize) -> usize {
        Chunking::of(rows, cols).partials(self.threads.count()) * 2 * cols
    }
    /// Force streaming stores of y and h on or off (default: on for outputs of
    /// [`NONTEMPORAL_MIN_BYTES`] and more).
    ///
    /// Streaming starts at y's first vector-aligned element. For rows up to
    /// 32 KiB, h streams from its own first aligned element whatever y's
    /// alignment (f32, and f16/bf16 on AVX-512; before, h was written
    /// through the cache where its alignment differed from y's, and the
    /// residual norms at 16384 x 8192 ran 1.2-1.7x slower on Zen 4,
    /// docs/norm.md, stops 36-37). Longer rows, and f16/bf16 on AVX2 (where
    /// it measured within noise), stream h only where it has y's alignment:
    /// give y and h the same address modulo 64 bytes (for instance both
    /// 64-byte aligned) if you can.
    pub const fn nontemporal(mut self, on: bool) -> Norm<'a> {
        self.nontemporal = Some(on);
        self
    }

    /// Which normalization.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// True for CRMSNorm (rows of d - 1 coordinates).
    pub fn is_crms(&self) -> bool {
        self.crms
    }
    /// The epsilon added to the variance or mean square.
    pub fn epsilon(&self) -> f32 {
        self.eps
    }
    /// The factor applied to the output.
    pub fn output_scale(&self) -> f32 {
        self.out_scale
    }
    /// The gain vector, if any.
    pub fn gain(&self) -> Option<Weights<'a>> {
        self.gamma
    }
    /// The bias vector, if any.
    pub fn bias(&self) -> Option<Weights<'a>> {
        self.beta
    }

    /// The variant a call on `T` would run.
    pub fn plan<T: Element>(&self) -> Result<&'static Variant> {
        let isa = match self.isa {
            Some(i) => i.require()?,
            None => isa::selected()?,
        };
        find(T::DTYPE, isa).ok_or_else(|| Error::NoVariant {
            kernel: "norm",
            detail: format!("{} {}", T::DTYPE.name(), isa.name()),
        })
    }

    /// Checks the scalars and gamma/beta against row length `cols` and dtype
    /// `T`; returns the kernel flags they imply.
    fn check<T: Element>(&self, cols: usize) -> Result<u32> {
        self.check_scalars()?;
        let mut flags = if self.crms { ffi::TK_NORM_CRMS } else { 0 };
        let mut dtype = None;
        for (what, w) in [("norm gamma", self.gamma), ("norm beta", self.beta)] {
            if let Some(w) = w {
                expect_len(what, cols, w.len())?;
                if w.dtype() != Dtype::F32 && w.dtype() != T::DTYPE {
                    return Err(invalid(what, "must be f32 or the dtype of the data"));
                }
                if dtype.is_some_and(|d| d != w.dtype()) {
                    return Err(invalid("norm gamma and beta", "must share one dtype"));
                }
                dtype = Some(w.dtype());
            }
        }
        if dtype == Some(Dtype::F32) {
            flags |= ffi::TK_NORM_PARAMS_F32;
        }
        Ok(flags)
    }

    /// Checks eps and the output scale (what every backend needs).
    pub(crate) fn check_scalars(&self) -> Result<()> {
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(invalid("norm eps", "must be finite and >= 0"));
        }
        if !self.out_scale.is_finite() {
            return Err(invalid(
                "norm out_scale",
                "must be finite (layer_scale needs layer >= 1)",
            ));
        }
        Ok(())
    }

    /// y = norm(x) for each `cols`-long row of `x` into `y`.
    pub fn run<T: Element>(&self, x: &[T], y: &mut [T], cols: usize) -> Result<()> {
        self.forward(x, cols).output(y).run()
    }

    /// y = norm(x) for `rows` rows of `cols` elements that start `x_stride`
    /// (in `x`) and `y_stride` (in `y`) elements apart, as in a padded or
    /// sliced matrix. Elements between rows are neither read nor written.
    pub fn run_strided<T: Element>(
        &self,
        x: &[T],
        x_stride: usize,
        y: &mut [T],
        y_stride: usize,
        rows: usize,
        cols: usize,
    ) -> Result<()> {
        let xs = StridedRows::new("norm strided input", x.len(), rows, cols, x_stride)?;
        let ys = StridedRows::new("norm strided output", y.len(), rows, cols, y_stride)?;
        let call = Call {
            rows: Rows { rows, cols },
            x_stride: Some(xs.stride),
            y_stride: Some(ys.stride),
            x: x.as_ptr(),
            y: y.as_mut_ptr(),
            ..Call::empty()
        };
        // SAFETY: StridedRows checked that every row lies within its buffer
        // ((rows - 1) * stride + cols <= len); the borrows keep x and y apart.
        unsafe { self.call(&call) }
    }

    /// y = norm(x) in place.
    pub fn run_inplace<T: Element>(&self, xy: &mut [T], cols: usize) -> Result<()> {
        let rows = Rows::of_len("norm buffer", xy.len(), cols)?;
        let ptr = xy.as_mut_ptr();
        let call = Call {
            rows,
            x: ptr.cast_const(),
            y: ptr,
            ..Call::empty()
        };
        // SAFETY: xy holds rows*cols elements; the kernels support y == x
        // (every element is read before its own write, statistics first).
        unsafe { self.call(&call) }
    }

    /// A forward call on `x` with optional fused inputs and outputs.
    pub fn forward<'b, T: Element>(&self, x: &'b [T], cols: usize) -> Forward<'a, 'b, T> {
        Forward {
            norm: *self,
            x,
            cols,
            residual: None,
            residual_in: None,
            y: None,
            q: None,
            stats: None,
        }
    }

    /// The backward call for a forward on `h` (x + residual when the forward
    /// fused them) whose statistics were saved in `mean` and `rstd`.
    pub fn backward<'b, T: Element>(
        &self,
        dy: &'b [T],
        h: &'b [T],
        mean: &'b [f32],
        rstd: &'b [f32],
        cols: usize,
    ) -> Backward<'a, 'b, T> {
        Backward {
            norm: *self,
            dy,
            h,
            mean,
            rstd,
            cols,
            dh: None,
            dx: None,
            dgamma: None,
            dbeta: None,
            workspace: None,
        }
    }

    /// Builds the params and runs the kernel: the one place a forward call
    /// reaches C.
    ///
    /// # Safety
    /// Every non-null pointer in `c` addresses `rows * cols` elements
    /// (`rows` for q_scale/mean/rstd; x and y `rows` rows `x_stride` /
    /// `y_stride` apart when given); outputs do not overlap each other or
    /// the inputs, except y == x and h == residual.
    unsafe fn call<T: Element>(&self, c: &Call<T>) -> Result<()> {
        let cols = c.rows.cols;
        let mut flags = self.check::<T>(cols)?;
        let variant = self.plan::<T>()?;
        if c.rows.is_empty() {
            return Ok(());
        }
        let out_bytes = c.rows.len()?.saturating_mul(std::mem::size_of::<T>());
        if self
            .nontemporal
            .unwrap_or(out_bytes >= NONTEMPORAL_MIN_BYTES)
        {
            flags |= ffi::TK_NORM_NONTEMPORAL;
        }
        let p = Shared(ffi::tk_norm_params {
            x: c.x.cast(),
            residual: c.residual.cast(),
            h: c.h.cast(),
            y: c.y.cast(),
            q: c.q,
            q_scale: c.q_scale,
            gamma: self.gamma.map_or(std::ptr::null(), |w| w.ptr()),
            beta: self.beta.map_or(std::ptr::null(), |w| w.ptr()),
            mean: c.mean,
            rstd: c.rstd,
            rows: c.rows.rows,
            cols,
            x_stride: c.x_stride.unwrap_or(cols),
            residual_stride: cols,
            y_stride: c.y_stride.unwrap_or(cols),
            q_stride: cols,
            eps: self.eps,
            out_scale: self.out_scale,
            kind: self.kind.to_ffi(),
            flags,
        });
        split_rows(self.threads, c.rows.rows, min_rows(cols), |start, rows| {
            let mut p = p.get();
            let e = std::mem::size_of::<T>();
            p.x = at_const(p.x.cast::<u8>(), start, p.x_stride * e).cast();
            p.residual = at_const(p.residual.cast::<u8>(), start, cols * e).cast();
            p.h = at(p.h.cast::<u8>(), start, cols * e).cast();
            p.y = at(p.y.cast::<u8>(), start, p.y_stride * e).cast();
            p.q = at(p.q, start, cols);
            p.q_scale = at(p.q_scale, start, 1);
            p.mean = at(p.mean, start, 1);
            p.rstd = at(p.rstd, start, 1);
            p.rows = rows;
            // SAFETY: the caller's contract; the variant's ISA is available and
            // its dtype is T's (plan), gamma/beta hold cols elements of f32 or T
            // as the flags say (check); chunks are disjoint row ranges of the
            // call and the kernel touches only its own rows (and reads gamma/beta).
            unsafe { (variant.forward)(&p) };
        });
        Ok(())
    }
}

fn invalid(what: &'static str, reason: &'static str) -> Error {
    Error::InvalidArgument { what, reason }
}

/// Raw pointers of one forward call (null = absent).
struct Call<T> {
    rows: Rows,
    /// Row strides of x and y (None: compact rows, `cols` apart).
    x_stride: Option<usize>,
    y_stride: Option<usize>,
    x: *const T,
    residual: *const T,
    h: *mut T,
    y: *mut T,
    q: *mut i8,
    q_scale: *mut f32,
    mean: *mut f32,
    rstd: *mut f32,
}

impl<T> Call<T> {
    fn empty() -> Call<T> {
        Call {
            rows: Rows { rows: 0, cols: 1 },
            x_stride: None,
            y_stride: None,
            x: std::ptr::null(),
            residual: std::ptr::null(),
            h: std::ptr::null_mut(),
            y: std::ptr::null_mut(),
            q: std::ptr::null_mut(),
            q_scale: std::ptr::null_mut(),
            mean: std::ptr::null_mut(),
            rstd: std::ptr::null_mut(),
        }
    }
}

/// A forward call being assembled: `Norm::forward(x, cols)`, then the fused
/// inputs and outputs wanted, then [`Forward::run`]. At least one of y, the
/// int8 output or the residual must be given. Nothing is written on error.
pub struct Forward<'a, 'b, T> {
    norm: Norm<'a>,
    x: &'b [T],
    cols: usize,
    residual: Option<&'b mut [T]>,
    residual_in: Option<&'b [T]>,
    y: Option<&'b mut [T]>,
    q: Option<(&'b mut [i8], &'b mut [f32])>,
    stats: Option<(&'b mut [f32], &'b mut [f32])>,
}

impl<'a, 'b, T: Element> Forward<'a, 'b, T> {
    /// Fuse the residual add: `h = x + residual` is normalised and written
    /// back into `residual` (the updated residual stream).
    pub fn residual(mut self, residual: &'b mut [T]) -> Self {
        self.residual = Some(residual);
        self.residual_in = None;
        self
    }
    /// As [`Forward::residual`], with the sum written to a separate `h`.
    pub fn residual_into(mut self, residual: &'b [T], h: &'b mut [T]) -> Self {
        self.residual_in = Some(residual);
        self.residual = Some(h);
        self
    }
    /// The normalised output, same length as x.
    pub fn output(mut self, y: &'b mut [T]) -> Self {
        self.y = Some(y);
        self
    }
    /// Symmetric int8 output, one f32 scale per row (`scale = max|y| / 127`,
    /// `q = round_half_even(y * 127 / max|y|)`, dequantize with `q * scale`).
    /// A zero row gives scale 0 and q 0; a row with NaN or inf gives scale NaN and q 0.
    pub fn quantized(mut self, q: &'b mut [i8], scales: &'b mut [f32]) -> Self {
        self.q = Some((q, scales));
        self
    }
    /// Save the per-row statistics for the backward: mean (0 for RMSNorm and
    /// Channel) and rstd (1 for Channel), one f32 each per row.
    pub fn stats(mut self, mean: &'b mut [f32], rstd: &'b mut [f32]) -> Self {
        self.stats = Some((mean, rstd));
        self
    }

    /// Checks every buffer, then runs; nothing is written on error.
    pub fn run(self) -> Result<()> {
        let rows = Rows::of_len("norm input", self.x.len(), self.cols)?;
        let mut c = Call {
            rows,
            x: self.x.as_ptr(),
            ..Call::empty()
        };
        if self.residual.is_none() && self.y.is_none() && self.q.is_none() {
            return Err(invalid(
                "norm forward",
                "needs an output (y, int8, or a residual)",
            ));
        }
        if let Some(r) = self.residual {
            rows.expect_len("norm residual", r.len())?;
            c.h = r.as_mut_ptr();
            c.residual = match self.residual_in {
                Some(ri) => {
                    rows.expect_len("norm residual input", ri.len())?;
                    ri.as_ptr()
                }
                None => c.h.cast_const(),
            };
        }
        if let Some(y) = self.y {
            rows.expect_len("norm output", y.len())?;
            c.y = y.as_mut_ptr();
        }
        let per_row = Rows {
            rows: rows.rows,
            cols: 1,
        };
        if let Some((q, s)) = self.q {
            rows.expect_len("norm int8 output", q.len())?;
            per_row.expect_len("norm int8 scales", s.len())?;
            c.q = q.as_mut_ptr();
            c.q_scale = s.as_mut_ptr();
        }
        if let Some((m, r)) = self.stats {
            per_row.expect_len("norm saved mean", m.len())?;
            per_row.expect_len("norm saved rstd", r.len())?;
            c.mean = m.as_mut_ptr();
            c.rstd = r.as_mut_ptr();
        }
        // SAFETY: every buffer was checked against the shape above; the
        // borrows keep them disjoint (h == residual only through `residual`).
        unsafe { self.norm.call(&c) }
    }
}

/// A backward call being assembled: `Norm::backward(dy, h, mean, rstd, cols)`,
/// then `dx` (required) and the optional pieces, then [`Backward::run`].
pub struct Backward<'a, 'b, T> {
    norm: Norm<'a>,
    dy: &'b [T],
    h: &'b [T],
    mean: &'b [f32],
    rstd: &'b [f32],
    cols: usize,
    dh: Option<&'b [T]>,
    dx: Option<&'b mut [T]>,
    dgamma: Option<&'b mut [f32]>,
    dbeta: Option<&'b mut [f32]>,
    workspace: Option<&'b mut [f64]>,
}

impl<'a, 'b, T: Element> Backward<'a, 'b, T> {
    /// The gradient w.r.t. the norm's input (with a fused residual, also the
    /// residual's gradient).
    pub fn dx(mut self, dx: &'b mut [T]) -> Self {
        self.dx = Some(dx);
        self
    }
    /// With a fused residual: the gradient reaching h through the residual
    /// stream, added to dx.
    pub fn residual_grad(mut self, dh: &'b [T]) -> Self {
        self.dh = Some(dh);
        self
    }
    /// Gradient of gamma (length d), overwritten. Summed in f64: the rows are
    /// cut into chunks that depend on the shape only (256 rows or more, at
    /// most 64 chunks), each chunk summed in row order (the terms of up to
    /// four consecutive rows added in f32 first, in order, rows of up to 32
    /// KiB), the chunks' sums added in chunk order. The same bits on every
    /// run, for every thread count.
    pub fn dgamma(mut self, dgamma: &'b mut [f32]) -> Self {
        self.dgamma = Some(dgamma);
        self
    }
    /// Gradient of beta (length d), overwritten.
    pub fn dbeta(mut self, dbeta: &'b mut [f32]) -> Self {
        self.dbeta = Some(dbeta);
        self
    }
    /// Scratch for the f64 sums of dgamma/dbeta, at least
    /// [`Norm::backward_workspace_len`] long; without it a call that asks for
    /// dgamma or dbeta allocates one.
    pub fn workspace(mut self, ws: &'b mut [f64]) -> Self {
        self.workspace = Some(ws);
        self
    }

    /// Checks every buffer, then runs; nothing is written on error.
    pub fn run(self) -> Result<()> {
        let n = &self.norm;
        let cols = self.cols;
        if n.crms {
            return Err(invalid("norm backward", "CRMSNorm has no backward kernel"));
        }
        let rows = Rows::of_len("norm backward dy", self.dy.len(), cols)?;
        rows.expect_len("norm backward h", self.h.len())?;
        let per_row = Rows {
            rows: rows.rows,
            cols: 1,
        };
        per_row.expect_len("norm backward mean", self.mean.len())?;
        per_row.expect_len("norm backward rstd", self.rstd.len())?;
        let dx = self
            .dx
            .ok_or(invalid("norm backward", "needs dx (Backward::dx)"))?;
        rows.expect_len("norm backward dx", dx.len())?;
        if let Some(dh) = self.dh {
            rows.expect_len("norm backward residual grad", dh.len())?;
        }
        for (what, g) in [
            ("norm dgamma", self.dgamma.as_deref()),
            ("norm dbeta", self.dbeta.as_deref()),
        ] {
            if let Some(g) = g {
                expect_len(what, cols, g.len())?;
            }
        }
        let mut flags = n.check::<T>(cols)?;
        let variant = n.plan::<T>()?;
        let dx_bytes = rows.len()?.saturating_mul(std::mem::size_of::<T>());
        if n.nontemporal.unwrap_or(dx_bytes >= NONTEMPORAL_MIN_BYTES) {
            flags |= ffi::TK_NORM_NONTEMPORAL;
        }
        let wants = self.dgamma.is_some() || self.dbeta.is_some();
        let chunks = Chunking::of(rows.rows, cols);
        let mut threads = if wants {
            n.threads.count().min(chunks.count)
        } else {
            n.threads.count()
        };
        let mut owned = Vec::new();
        let ws: &mut [f64] = match self.workspace {
            Some(w) if wants => {
                if w.len() < chunks.partials(threads) * 2 * cols {
                    // a workspace sized for one thread runs on one thread
                    threads = 1;
                }
                let need = chunks.partials(threads) * 2 * cols;
                if w.len() < need {
                    return Err(Error::LengthMismatch {
                        what: "norm backward workspace (Norm::backward_workspace_len)",
                        expected: need,
                        actual: w.len(),
                    });
                }
                &mut w[..need]
            }
            _ if wants => {
                owned.resize(chunks.partials(threads) * 2 * cols, 0.0);
                &mut owned
            }
            _ => &mut [],
        };
        let p = Shared(ffi::tk_norm_backward_params {
            dy: self.dy.as_ptr().cast(),
            h: self.h.as_ptr().cast(),
            dh: self.dh.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            dx: dx.as_mut_ptr().cast(),
            gamma: n.gamma.map_or(std::ptr::null(), |w| w.ptr()),
            mean: self.mean.as_ptr(),
            rstd: self.rstd.as_ptr(),
            dgamma_acc: std::ptr::null_mut(),
            dbeta_acc: std::ptr::null_mut(),
            rows: rows.rows,
            cols,
            dy_stride: cols,
            h_stride: cols,
            dh_stride: cols,
            dx_stride: cols,
            out_scale: n.out_scale,
            kind: n.kind.to_ffi(),
            flags,
        });
        let (want_g, want_b) = (self.dgamma.is_some(), self.dbeta.is_some());
        // Rows start..start + count, their dgamma/dbeta sums added into
        // `partial` (2 * cols doubles, or NULL when neither is wanted).
        let run_rows = |start: usize, count: usize, partial: *mut f64| {
            let mut q = p.get();
            let e = std::mem::size_of::<T>();
            q.dy = at_const(q.dy.cast::<u8>(), start, cols * e).cast();
            q.h = at_const(q.h.cast::<u8>(), start, cols * e).cast();
            q.dh = at_const(q.dh.cast::<u8>(), start, cols * e).cast();
            q.dx = at(q.dx.cast::<u8>(), start, cols * e).cast();
            q.mean = at_const(q.mean, start, 1);
            q.rstd = at_const(q.rstd, start, 1);
            q.rows = count;
            if want_g {
                q.dgamma_acc = partial;
            }
            if want_b {
                q.dbeta_acc = partial.wrapping_add(cols);
            }
            if count > 0 {
                // SAFETY: every buffer was checked against the shape above and
                // the borrows keep dx disjoint from the inputs; the rows are
                // the call's own, disjoint from any other thread's; `partial`
                // holds 2 * cols doubles when a sum is wanted; the variant
                // runs on this CPU and is T's dtype.
                unsafe { (variant.backward)(&q) };
            }
        };
        if !wants {
            split_rows(n.threads, rows.rows, min_rows(cols), |start, count| {
                run_rows(start, count, std::ptr::null_mut())
            });
            return Ok(());
        }
        let slot = 2 * cols;
        if threads == 1 {
            // a running total in the first partial, each later chunk summed
            // in the second and added
            let (total, partial) = ws.split_at_mut(slot);
            total.fill(0.0);
            for c in 0..chunks.count {
                let (start, count) = chunks.rows(c, rows.rows);
                if c == 0 {
                    run_rows(start, count, total.as_mut_ptr());
                } else {
                    partial.fill(0.0);
                    run_rows(start, count, partial.as_mut_ptr());
                    grad_sums::add_into(total, partial);
                }
            }
        } else {
            let base = Shared(ws.as_mut_ptr());
            split_rows(Threads::Count(threads), chunks.count, 1, |first, count| {
                for c in first..first + count {
                    let (start, rows_c) = chunks.rows(c, rows.rows);
                    // SAFETY: chunk c owns partial c of the workspace, which
                    // holds chunks.count partials.
                    let partial =
                        unsafe { std::slice::from_raw_parts_mut(base.get().add(c * slot), slot) };
                    partial.fill(0.0);
                    run_rows(start, rows_c, partial.as_mut_ptr());
                }
            });
            // partial 0 += partial 1, += partial 2, ..., each thread a range
            // of columns (the same additions in the same order as one thread)
            split_rows(n.threads, slot, 1024, |j0, m| {
                // SAFETY: threads take disjoint column ranges of every partial.
                let column = |c: usize| unsafe {
                    std::slice::from_raw_parts_mut(base.get().add(c * slot + j0), m)
                };
                let total = column(0);
                for c in 1..chunks.count {
                    grad_sums::add_into(total, column(c));
                }
            });
        }
        if let Some(g) = self.dgamma {
            for (o, a) in g.iter_mut().zip(&ws[..cols]) {
                *o = *a as f32;
            }
        }
        if let Some(b) = self.dbeta {
            for (o, a) in b.iter_mut().zip(&ws[cols..slot]) {
                *o = *a as f32;
            }
        }
        Ok(())
    }
}

/// Row `start` of a buffer with rows `stride` elements apart (NULL stays NULL).
fn at<P>(ptr: *mut P, start: usize, stride: usize) -> *mut P {
    if ptr.is_null() {
        ptr
    } else {
        ptr.wrapping_add(start * stride)
    }
}

/// [`at`] for a buffer the kernel reads.
fn at_const<P>(ptr: *const P, start: usize, stride: usize) -> *const P {
    at(ptr.cast_mut(), start, stride).cast_const()
}

/// Units of f32 roundoff in the row statistics: a block of 2048 elements is
/// summed in f32 with up to 1024 additions per accumulator (the scalar
/// variants; 64 on AVX-512), then merged in f64. The SIMD LayerNorm keeps
/// sums shifted by a running mean only where the shift is within a standard
/// deviation of the block's mean, which at most quintuples their 64 or 128
/// (AVX2) units: still inside this bound (kernels-cpu/norm/README.md).
pub const STATS_ULPS: f64 = 1040.0;

/// Units of f32 roundoff in a dgamma/dbeta term beyond what the statistics
/// move: the term's own roundings (two for dgamma's `dy s xhat`, one for
/// dbeta's `dy s`), three from the f32 sum of its group of up to four rows
/// (`((t0 + t1) + t2) + t3`, kernels-cpu/norm/README.md), and one for the f64
/// sums across groups (below `u` for up to 2^28 groups).
pub const GRAD_SUM_ULPS: f64 = 6.0;

/// The accuracy contract of the forward: the largest allowed `|y - y_exact|`
/// for one element, where `y_exact` is the exact result for the kernel's h,
/// `xhat = (h - mean) * rstd` and `gamma`, `beta` are that element's exact
/// normalised value and parameters:
/// `|s| (|gamma| (STATS_ULPS u (|xhat| + 1) + 4 u |xhat|) + 3 u (|xhat gamma| + |beta|)) + u_out |y_exact| + tiny_out`
/// with `u = 2^-24`, `s` the output scale and `u_out`, `tiny_out` the output
/// dtype's unit roundoff and smallest normal (0 for f32 outputs).
pub fn forward_error_bound(
    dtype: Dtype,
    y_exact: f64,
    xhat: f64,
    gamma: f64,
    beta: f64,
    out_scale: f64,
) -> f64 {
    let u = Dtype::F32.unit_roundoff();
    let (u_out, tiny) = output_rounding(dtype);
    out_scale.abs()
        * (gamma.abs() * (STATS_ULPS * u * (xhat.abs() + 1.0) + 4.0 * u * xhat.abs())
            + 3.0 * u * ((xhat * gamma).abs() + beta.abs()))
        + u_out * y_exact.abs()
        + tiny
}

/// The exact terms that bound one element of dx (g = dy * gamma * out_scale;
/// the means are over the element's row).
#[derive(Debug, Clone, Copy)]
pub struct GradTerms {
    /// The row's 1 / sqrt(var + eps).
    pub rstd: f64,
    /// This element's g = dy * gamma * out_scale.
    pub g: f64,
    /// This element's normalized value (h - mean) * rstd.
    pub xhat: f64,
    /// mean(|g|)
    pub mean_abs_g: f64,
    /// mean(g * xhat)
    pub mean_gx: f64,
    /// mean(|g * xhat|)
    pub mean_abs_gx: f64,
    /// The residual-stream gradient added to dx (0 without one).
    pub dh: f64,
}

/// The accuracy contract of dx:
/// `STATS_ULPS u rstd (|g| + 2 mean|g| + (|xhat| + 1) (1.5 |mean(g xhat)| + mean|g xhat|)) + u |dh| + u_out |dx_exact| + tiny_out`:
/// the row sums carry `STATS_ULPS u` times the sums of magnitudes, and the
/// statistics' error moves xhat by `STATS_ULPS u (|xhat| + 1)`; the saved
/// rstd is off by up to `STATS_ULPS u / 2` (half the variance's relative
/// error), and the term `xhat mean(g xhat) rstd` holds rstd three times
/// (`rstd^3 (h - mean) mean(g (h - mean))`), hence the 1.5.
/// dgamma and dbeta: `sum (STATS_ULPS u (|xhat| + 1) + GRAD_SUM_ULPS u |xhat|) |dy s|`
/// and `GRAD_SUM_ULPS u sum|dy s|`, plus one f32 rounding of the result.
pub fn backward_error_bound(dtype: Dtype, dx_exact: f64, t: &GradTerms) -> f64 {
    let u = Dtype::F32.unit_roundoff();
    let (u_out, tiny) = output_rounding(dtype);
    STATS_ULPS
        * u
        * t.rstd
        * (t.g.abs()
            + 2.0 * t.mean_abs_g
            + (t.xhat.abs() + 1.0) * (1.5 * t.mean_gx.abs() + t.mean_abs_gx))
        + u * t.dh.abs()
        + u_out * dx_exact.abs()
        + tiny
}

fn output_rounding(dtype: Dtype) -> (f64, f64) {
    match dtype {
        Dtype::F32 => (0.0, f64::powi(2.0, -126)),
        Dtype::F16 => (dtype.unit_roundoff(), f64::powi(2.0, -24)),
        Dtype::Bf16 => (dtype.unit_roundoff(), f64::powi(2.0, -126)),
    }
}
