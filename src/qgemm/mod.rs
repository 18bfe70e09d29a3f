//! LLM.int8() mixed int8 / 16-bit matrix products, and weight-only int8 /
//! int4 products for decoding.
//!
//! `Y = X W^T` with X `[m, k]` (one token per row) and W `[n, k]` (one output
//! channel per row). LLM.int8() (Dettmers et al., 2022) splits the feature
//! columns of X: the few outlier columns (any `|x| >= threshold`, 6.0 by
//! default) are multiplied in floating point against W's exact values; every
//! other column is quantized per row of X (`sx = max|x| / 127`) and per row
//! of W (`sw = max|w| / 127`), multiplied in int8 with exact int32
//! accumulation, and dequantized:
//! `Y = (Xq Wq^T) sx sw + X[:, O] W[:, O]^T (+ bias)`.
//!
//! * [`Int8Weight::prepare`] quantizes and packs W once (the one layout every
//!   int8 kernel reads: panels of 16 channels, k in groups of 4).
//! * [`Outliers`] picks the outlier columns: found per call from X
//!   ([`Outliers::Dynamic`], LLM.int8() proper), or fixed when W is prepared
//!   ([`Outliers::Fixed`]; emergent outlier features are systematic per
//!   model). Costs: dynamic mode keeps a transposed 16-bit copy of W
//!   (2 more bytes per weight for f16/bf16 weights, 4 for f32; the int8
//!   part is 1) and adds a sweep over X plus a gather of the chosen W
//!   columns per call; fixed mode keeps only those columns (f32), its W
//!   scales leave them out, and the quantizer reads X once.
//! * [`Int8Workspace`] holds the quantized activations between calls (no
//!   allocation per call).
//! * [`Backend`]: the int32 kernel — AMX tiles (`tdpbsud`), AVX-512 VNNI
//!   (`vpdpbusd`), AVX-VNNI (256-bit `vpdpbusd`), AVX2 (`vpmaddwd`), or
//!   portable C.
//! * [`weight_only`]: X in f32/f16/bf16 times int8 or int4 W with group-wise
//!   scales, dequantized on the fly (memory-bound decoding GEMV).
//!
//! ```
//! use transformer_kernels::qgemm::{Int8Weight, Int8Workspace, Outliers};
//!
//! let (m, n, k) = (3, 5, 70);
//! let w: Vec<f32> = (0..n * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
//! let mut x: Vec<f32> = (0..m * k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
//! x[9] = 40.0; // column 9 becomes an outlier column
//! let weight = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 })?;
//! let mut ws = Int8Workspace::new(&weight, m, 8)?;
//! let mut y = vec![0.0f32; m * n];
//! weight.matmul(&mut ws).run(&x, &mut y)?;
//! assert_eq!(ws.outlier_columns(), &[9]);
//! let exact: f32 = (0..k).map(|c| x[c] * w[c]).sum();
//! assert!((y[0] - exact).abs() < 0.05 * (1.0 + exact.abs()));
//! # Ok::<(), transformer_kernels::Error>(())
//! ```
//!
//! Accuracy: the int32 part is exact; the epilogue is f32
//! ([`Int8Weight::epilogue_bound`]); against the unquantized product the
//! quantization error is at most `sum_k (|x| sw + sx |w| + sx sw / 2) / 2`
//! over the non-outlier columns ([`Int8Weight::quantization_bound`]).

mod aligned;
mod variants;
pub mod weight_only;

pub use variants::{Variant, find, variants};

use aligned::AlignedBytes;

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::ffi;
use crate::isa::{self, Isa};
use crate::parallel::{BLOCKS_PER_WORKER, MIN_WEIGHT_BYTES, Shared, Threads, min_rows, share};
use crate::shape::expect_len;

/// LLM.int8()'s default outlier threshold.
pub const DEFAULT_THRESHOLD: f32 = 6.0;

/// Rows from which [`Backend::auto`] prefers AMX to VNNI. AMX computes whole
/// 32-row blocks, yet at 16 rows of a 4096 x 4096 weight it still measured
/// 1.15-1.4x VNNI (docs/qgemm.md); at 1 row VNNI is 2x AMX.
pub const AMX_MIN_ROWS: usize = 16;

/// Which int32 kernel multiplies the quantized operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Portable C (the exact fallback).
    Scalar,
    /// AVX2 `vpmaddwd` on 16-bit widened operands, 2 rows x 16 channels
    /// (for CPUs without any VNNI).
    Avx2,
    /// AVX-VNNI: the VEX-encoded 256-bit `vpdpbusd`, 6 rows x 16 channels
    /// (CPUs with AVX-VNNI but no AVX-512, such as Alder Lake).
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd`, 6 rows x 64 channels per register block.
    Avx512Vnni,
    /// AMX-INT8 tiles, 32 rows x 32 channels per block.
    Amx,
}

impl Backend {
    /// Every backend, most portable first.
    pub const ALL: [Backend; 5] = [
        Backend::Scalar,
        Backend::Avx2,
        Backend::AvxVnni,
        Backend::Avx512Vnni,
        Backend::Amx,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::AvxVnni => "avxvnni",
            Backend::Avx512Vnni => "avx512vnni",
            Backend::Amx => "amx",
        }
    }

    /// Whether this CPU (and, for AMX, the OS: the tile-data permission is
    /// requested once, here) can run it.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            Backend::Avx2 => Isa::Avx2.is_available(),
            #[cfg(target_arch = "x86_64")]
            Backend::AvxVnni => {
                Isa::Avx2.is_available() && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512Vnni => {
                Isa::Avx512.is_available() && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: tk_amx_ready only runs cpuid and one arch_prctl.
            Backend::Amx => Isa::Avx512.is_available() && unsafe { ffi::tk_amx_ready() } != 0,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The backend a call with `m` rows uses unless told: AMX from
    /// [`AMX_MIN_ROWS`] rows, else VNNI, where available and the selected ISA
    /// ([`isa::selected`]) is AVX-512; else AVX-VNNI where available; else
    /// AVX2; the portable kernel when the selected ISA is scalar.
    pub fn auto(m: usize) -> Result<Backend> {
        let isa = isa::selected()?;
        Ok(if isa < Isa::Avx2 {
            Backend::Scalar
        } else if isa >= Isa::Avx512 && m >= AMX_MIN_ROWS && Backend::Amx.is_available() {
            Backend::Amx
        } else if isa >= Isa::Avx512 && Backend::Avx512Vnni.is_available() {
            Backend::Avx512Vnni
        } else if Backend::AvxVnni.is_available() {
            Backend::AvxVnni
        } else {
            Backend::Avx2
        })
    }

    fn kernel(self) -> Result<unsafe extern "C" fn(*const ffi::tk_qgemm_params)> {
        if !self.is_available() {
            return Err(Error::NoVariant {
                kernel: "qgemm",
                detail: format!("backend {} is not available here", self.name()),
            });
        }
        Ok(match self {
            Backend::Scalar => ffi::tk_qgemm_s8_scalar,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => ffi::tk_qgemm_s8_avx2,
            #[cfg(target_arch = "x86_64")]
            Backend::AvxVnni => ffi::tk_qgemm_s8_avxvnni,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512Vnni => ffi::tk_qgemm_s8_avx512vnni,
            #[cfg(target_arch = "x86_64")]
            Backend::Amx => ffi::tk_qgemm_s8_amx,
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("not available off x86-64"),
        })
    }
}

/// How the outlier feature columns are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Outliers {
    /// Per call: every column of X holding an `|x| >= threshold` (or a NaN).
    Dynamic {
        /// Columns with any `|x| >= threshold` (or a NaN) are outliers.
        threshold: f32,
    },
    /// Fixed when W is prepared (column indices, any order, duplicates ignored).
    Fixed(Vec<u32>),
}

/// The activation-side / weight-only variant for T on `isa` (default
/// [`isa::selected`]).
pub(crate) fn variant_for<T: Element>(isa: Option<Isa>) -> Result<&'static Variant> {
    let isa = match isa {
        Some(i) => i.require()?,
        None => isa::selected()?,
    };
    find(T::DTYPE, isa).ok_or_else(|| Error::NoVariant {
        kernel: "qgemm",
        detail: format!("{} {}", T::DTYPE.name(), isa.name()),
    })
}

/// W `[n, k]` must be non-empty, exactly n k long and finite.
pub(crate) fn check_weight<T: Element>(w: &[T], n: usize, k: usize) -> Result<()> {
    if n == 0 || k == 0 {
        return Err(Error::ZeroSize { what: "weight" });
    }
    let len = n.checked_mul(k).ok_or(Error::Overflow { what: "weight" })?;
    expect_len("weight", len, w.len())?;
    if w.iter().any(|v| !v.to_f32().is_finite()) {
        return Err(Error::InvalidArgument {
            what: "weight",
            reason: "holds NaN or inf",
        });
    }
    Ok(())
}

/// W's exact values, transposed (`[k, n]`), for dynamic outlier columns.
#[derive(Debug, Clone)]
pub(crate) enum Transposed {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    Bf16(Vec<half::bf16>),
}

impl Transposed {
    fn new<T: Element>(w: &[T], n: usize, k: usize) -> Transposed {
        let mut out = vec![w[0]; n * k];
        for j in 0..n {
            for c in 0..k {
                out[c * n + j] = w[j * k + c];
            }
        }
        match T::DTYPE {
            Dtype::F32 => Transposed::F32(bytemuck::cast_slice(&out).to_vec()),
            Dtype::F16 => Transposed::F16(bytemuck::cast_slice(&out).to_vec()),
            Dtype::Bf16 => Transposed::Bf16(bytemuck::cast_slice(&out).to_vec()),
        }
    }

    /// Row c (column c of W) widened into `out` (n values).
    fn widen_row(&self, c: usize, out: &mut [f32]) {
        let n = out.len();
        match self {
            Transposed::F32(v) => out.copy_from_slice(&v[c * n..(c + 1) * n]),
            Transposed::F16(v) => {
                for (o, h) in out.iter_mut().zip(&v[c * n..(c + 1) * n]) {
                    *o = h.to_f32();
                }
            }
            Transposed::Bf16(v) => {
                for (o, h) in out.iter_mut().zip(&v[c * n..(c + 1) * n]) {
                    *o = h.to_f32();
                }
            }
        }
    }
}

/// W quantized and packed for the int8 kernels, with what the outlier
/// columns need.
#[derive(Debug, Clone)]
pub struct Int8Weight {
    n: usize,
    k: usize,
    pub(crate) k_pad: usize,
    pub(crate) n_pad: usize,
    packed: AlignedBytes,
    scale: Vec<f32>,
    pub(crate) threshold: f32,
    /// Fixed mode: the sorted outlier columns and their W values (f32,
    /// `[fixed.len(), n_pad]`).
    pub(crate) fixed: Option<(Vec<u32>, Vec<f32>)>,
    /// Dynamic mode: all of W, transposed, in its own dtype.
    pub(crate) transposed: Option<Transposed>,
}

/// `rint(v * inv)` exactly as the C kernels round (f32 product, ties to even).
fn quantize_value(v: f32, inv: f32) -> i8 {
    (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8
}

impl Int8Weight {
    /// Quantizes the rows of W (`[n, k]` row-major, finite) to int8 with one
    /// f32 scale each and packs them. In fixed mode the listed columns are left
    /// out of the int8 part and kept exact.
    pub fn prepare<T: Element>(
        w: &[T],
        n: usize,
        k: usize,
        outliers: Outliers,
    ) -> Result<Int8Weight> {
        check_weight(w, n, k)?;
        if k > u32::MAX as usize / 2 {
            return Err(Error::Overflow { what: "k" });
        }
        let (threshold, fixed_cols) = match outliers {
            Outliers::Dynamic { threshold } => {
                if threshold.is_nan() || threshold <= 0.0 {
                    return Err(Error::InvalidArgument {
                        what: "outlier threshold",
                        reason: "must be positive (inf: no outliers)",
                    });
                }
                (threshold, None)
            }
            Outliers::Fixed(mut cols) => {
                cols.sort_unstable();
                cols.dedup();
                if cols.last().is_some_and(|&c| c as usize >= k) {
                    return Err(Error::InvalidArgument {
                        what: "fixed outlier columns",
                        reason: "a column index is not below k",
                    });
                }
                (f32::INFINITY, Some(cols))
            }
        };
        let k_pad = k.div_ceil(64) * 64;
        // SAFETY: pure functions of their arguments.
        let (n_pad, bytes) =
            unsafe { (ffi::tk_qgemm_n_pad(n), ffi::tk_qgemm_packed_bytes(n, k_pad)) };
        let mut is_outlier = vec![false; k];
        for &c in fixed_cols.iter().flatten() {
            is_outlier[c as usize] = true;
        }
        let mut q = vec![0i8; n * k_pad];
        let mut scale = vec![0.0f32; n_pad];
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let amax = row
                .iter()
                .zip(&is_outlier)
                .filter(|(_, o)| !**o)
                .fold(0.0f32, |a, (v, _)| a.max(v.to_f32().abs()));
            if amax == 0.0 {
                continue;
            }
            let inv = 127.0 / amax;
            for (c, v) in row.iter().enumerate() {
                if !is_outlier[c] {
                    q[j * k_pad + c] = quantize_value(v.to_f32(), inv);
                }
            }
            scale[j] = amax / 127.0;
        }
        let mut packed = AlignedBytes::zeroed(bytes);
        // SAFETY: q holds n rows of k_pad bytes (k_pad a multiple of 64);
        // packed holds tk_qgemm_packed_bytes(n, k_pad) bytes.
        unsafe {
            ffi::tk_qgemm_pack_weight(
                q.as_ptr(),
                k_pad,
                n,
                k_pad,
                packed.as_mut_slice().as_mut_ptr(),
            )
        };
        let fixed = fixed_cols.map(|cols| {
            let mut wo = vec![0.0f32; cols.len() * n_pad];
            for (o, &c) in cols.iter().enumerate() {
                for j in 0..n {
                    wo[o * n_pad + j] = w[j * k + c as usize].to_f32();
                }
            }
            (cols, wo)
        });
        let transposed = fixed.is_none().then(|| Transposed::new(w, n, k));
        Ok(Int8Weight {
            n,
            k,
            k_pad,
            n_pad,
            packed,
            scale,
            threshold,
            fixed,
            transposed,
        })
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The per-channel scales `sw` (n of them).
    pub fn scales(&self) -> &[f32] {
        &self.scale[..self.n]
    }

    /// The int8 values of channel `j` (k of them; fixed outlier columns 0),
    /// read back from the packed layout (see `tk_qgemm_pack_weight`).
    pub fn quantized_row(&self, j: usize) -> Vec<i8> {
        let packed = self.packed.as_slice();
        let panel = &packed[(j / 16) * (self.k_pad / 4) * 64 + (j % 16) * 4..];
        (0..self.k)
            .map(|c| panel[(c / 4) * 64 + c % 4].wrapping_sub(128) as i8)
            .collect()
    }

    /// The fixed outlier columns (None in dynamic mode).
    pub fn fixed_outliers(&self) -> Option<&[u32]> {
        self.fixed.as_ref().map(|(c, _)| c.as_slice())
    }

    /// Bytes held: the packed int8 part plus what the outlier columns keep.
    pub fn bytes(&self) -> usize {
        let extra = match (&self.fixed, &self.transposed) {
            (Some((_, wo)), _) => wo.len() * 4,
            (_, Some(Transposed::F32(v))) => v.len() * 4,
            (_, Some(Transposed::F16(v))) => v.len() * 2,
            (_, Some(Transposed::Bf16(v))) => v.len() * 2,
            _ => 0,
        };
        self.packed.as_slice().len() + self.scale.len() * 4 + extra
    }

    /// A product with this weight; the quantized activations go to `ws`.
    pub fn matmul<'a>(&'a self, ws: &'a mut Int8Workspace) -> Int8Matmul<'a> {
        Int8Matmul {
            w: self,
            ws,
            bias: None,
            backend: None,
            isa: None,
            threads: Threads::Single,
        }
    }

    /// The exact int32 products `Xq Wq^T` of the activations `ws` holds (the
    /// last call's) on `backend`, into `acc` (`[m, n]`): the integer part
    /// alone, for tests and diagnostics.
    pub fn int32_products(
        &self,
        ws: &mut Int8Workspace,
        backend: Backend,
        acc: &mut [i32],
    ) -> Result<()> {
        ws.check_for(self)?;
        expect_len("int32 products", ws.m * self.n, acc.len())?;
        if ws.m == 0 {
            return Ok(());
        }
        let kernel = backend.kernel()?;
        let mut p = self.gemm_params(ws, None);
        p.acc = acc.as_mut_ptr();
        p.acc_stride = self.n;
        // SAFETY: as in Int8Matmul::run; acc holds m x n int32; the scratch
        // round_up(max_m, 32) x 64 + amx_part int32.
        unsafe { kernel(&p) };
        Ok(())
    }

    fn gemm_params(&self, ws: &mut Int8Workspace, bias: Option<&[f32]>) -> ffi::tk_qgemm_params {
        let wo = match &self.fixed {
            Some((_, wo)) => wo.as_ptr(),
            None => ws.wo.as_ptr(),
        };
        ffi::tk_qgemm_params {
            m: ws.m,
            n: self.n,
            k: self.k_pad,
            a: ws.q.as_slice().as_ptr().cast(),
            a_stride: ws.q_stride,
            a_scale: ws.scale.as_ptr(),
            a_rowsum: ws.rowsum.as_ptr(),
            w: self.packed.as_slice().as_ptr(),
            w_scale: self.scale.as_ptr(),
            xo: ws.xo.as_ptr(),
            n_outliers: ws.n_outliers,
            wo,
            wo_stride: self.n_pad,
            bias: bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            y: std::ptr::null_mut(),
            y_stride: self.n,
            y_dtype: ffi::tk_dtype::TK_DTYPE_F32,
            acc: std::ptr::null_mut(),
            acc_stride: 0,
            scratch: ws.scratch.as_mut_slice().as_mut_ptr().cast(),
        }
    }

    /// The f32 epilogue's contract: `|y - y_q| <= (n_out + 4) u (|acc sx sw| +
    /// sum_o |xo wo| + |bias|) + u_out |y_q| + tiny_out`, with `y_q` the same
    /// quantized math in exact arithmetic, `u = 2^-24`, and `u_out`, `tiny_out`
    /// the output dtype's unit roundoff and half its smallest subnormal.
    pub fn epilogue_bound(out: Dtype, n_outliers: usize, mag: f64, y_q: f64) -> f64 {
        let u = Dtype::F32.unit_roundoff();
        let (u_out, tiny) = match out {
            Dtype::F32 => (0.0, 0.0),
            d => (d.unit_roundoff(), d.min_subnormal() / 2.0),
        };
        (n_outliers as f64 + 4.0) * u * mag + u_out * y_q.abs() + tiny
    }

    /// The quantization error's contract against the unquantized product, for
    /// one output: `sum over non-outlier k of (|x| sw + sx |w| + sx sw / 2) / 2`
    /// (each int8 value is within half a step, `sx / 2` or `sw / 2`, of its
    /// source, up to the f32 rounding of `127 / max`, allowed for by 1e-6).
    pub fn quantization_bound(sx: f32, sw: f32, x: &[f32], w: &[f32], is_outlier: &[bool]) -> f64 {
        let (sx, sw) = (sx as f64 * (1.0 + 1e-6), sw as f64 * (1.0 + 1e-6));
        x.iter()
            .zip(w)
            .zip(is_outlier)
            .filter(|(_, o)| !**o)
            .map(|((&a, &b), _)| (a.abs() as f64 * sw + sx * b.abs() as f64 + sx * sw / 2.0) / 2.0)
            .sum()
    }
}

/// Runs the single-core AMX int8 peak probe (`iters` rounds of 4 independent
/// `tdpbssd`, 16 x 16 x 64 each) and returns the int8 operations it did (2
/// per multiply-add), for reports that state a fraction of the peak; time it
/// yourself. None where AMX is not available.
pub fn amx_probe(iters: usize) -> Option<f64> {
    unit_probe(Backend::Amx, iters)
}

/// The AVX-512 VNNI peak probe (`iters` rounds of 12 independent
/// `vpdpbusd`, 64 multiply-adds each); as [`amx_probe`].
pub fn vnni_probe(iters: usize) -> Option<f64> {
    unit_probe(Backend::Avx512Vnni, iters)
}

/// The AVX2 int8 kernel's peak probe (`iters` rounds of 12 independent
/// `vpmaddwd` + `vpaddd`, 16 multiply-adds each); as [`amx_probe`].
pub fn madd_probe(iters: usize) -> Option<f64> {
    unit_probe(Backend::Avx2, iters)
}

/// The peak probe of `backend`'s integer unit (kernels-cpu/qgemm), where
/// the backend runs here.
fn unit_probe(backend: Backend, iters: usize) -> Option<f64> {
    if !backend.is_available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let probe: unsafe extern "C" fn(usize, *mut i32) -> f64 = match backend {
            Backend::Amx => ffi::tk_amx_probe,
            Backend::Avx512Vnni => ffi::tk_vnni_probe,
            Backend::Avx2 => ffi::tk_madd_probe_avx2,
            _ => return None,
        };
        let mut sink = 0;
        // SAFETY: the backend's instructions, and for AMX the OS's grant of
        // the tile data, are available (checked above).
        Some(unsafe { probe(iters, &mut sink) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Quantized activations between calls, sized once for a weight, a largest
/// row count and a largest outlier-column count.
#[derive(Debug, Clone)]
pub struct Int8Workspace {
    k: usize,
    /// Bytes between rows of q: k_pad plus one cache line, so the 16 rows of
    /// an AMX tile (or the rows of a VNNI block) do not share one L1 set
    /// when k_pad is a multiple of 4096.
    q_stride: usize,
    n_pad: usize,
    max_m: usize,
    max_outliers: usize,
    m: usize,
    n_outliers: usize,
    q: AlignedBytes,
    scale: Vec<f32>,
    rowsum: Vec<i32>,
    xo: Vec<f32>,
    outliers: Vec<u32>,
    colmax: Vec<f32>,
    /// One k-float buffer per quantizer thread (a row widened to f32), also
    /// the column maxima of the threads after the first.
    row: Vec<f32>,
    wo: Vec<f32>,
    scratch: AlignedBytes,
    /// int32 a thread's scratch holds beyond its rows' 64 columns: the AMX
    /// product's partial sums when k takes several passes (else 0).
    amx_part: usize,
}

impl Int8Workspace {
    /// Room for calls of up to `max_m` rows and up to `max_outliers` outlier
    /// columns (raised to the fixed set's size in fixed mode), on up to as
    /// many threads as this machine has cores, at most 64 (a k-float buffer
    /// and 8 KiB of product scratch each, plus 264 KiB for the AMX product's
    /// partial sums when k_pad is over 4096).
    pub fn new(w: &Int8Weight, max_m: usize, max_outliers: usize) -> Result<Int8Workspace> {
        let max_outliers = max_outliers
            .min(w.k)
            .max(w.fixed_outliers().map_or(0, |c| c.len()));
        let ovf = Error::Overflow { what: "workspace" };
        // one per core, at most 64 (the quantizer is a small part of a call)
        let row_slots = std::thread::available_parallelism().map_or(1, |n| n.get().min(64));
        let rows = row_slots.checked_mul(w.k).ok_or(ovf.clone())?;
        let q_rows = max_m.max(1).div_ceil(32) * 32;
        let q_stride = w.k_pad + 64;
        let q_bytes = q_rows.checked_mul(q_stride).ok_or(ovf.clone())?;
        // SAFETY: pure arithmetic.
        let amx_part = unsafe { ffi::tk_qgemm_amx_scratch(w.k_pad) };
        let xo = max_m.checked_mul(max_outliers).ok_or(ovf.clone())?;
        let wo = if w.fixed.is_some() {
            0
        } else {
            max_outliers.checked_mul(w.n_pad).ok_or(ovf)?
        };
        Ok(Int8Workspace {
            k: w.k,
            q_stride,
            n_pad: w.n_pad,
            max_m,
            max_outliers,
            m: 0,
            n_outliers: 0,
            q: AlignedBytes::zeroed(q_bytes),
            scale: vec![0.0; max_m.max(1)],
            rowsum: vec![0; max_m.max(1)],
            xo: vec![0.0; xo.max(1)],
            outliers: vec![0; w.k],
            colmax: vec![0.0; w.k],
            row: vec![0.0; rows.max(1)],
            wo: vec![0.0; wo.max(1)],
            scratch: AlignedBytes::zeroed(
                ((q_rows + 32 * row_slots) * 64 + row_slots * amx_part) * 4,
            ),
            amx_part,
        })
    }

    /// Threads a call may use: one row buffer and one scratch each.
    fn slots(&self) -> usize {
        (self.row.len() / self.k.max(1)).max(1)
    }

    fn check_for(&self, w: &Int8Weight) -> Result<()> {
        if self.k != w.k
            || self.n_pad != w.n_pad
            || (w.fixed.is_none() && self.wo.len() < self.max_outliers * w.n_pad)
        {
            return Err(Error::InvalidArgument {
                what: "workspace",
                reason: "was made for a weight of another shape or outlier mode",
            });
        }
        Ok(())
    }

    /// Rows quantized by the last call.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// The last call's outlier columns (ascending).
    pub fn outlier_columns(&self) -> &[u32] {
        &self.outliers[..self.n_outliers]
    }

    /// The last call's int8 row `i` (k values; outlier columns 0).
    pub fn quantized_row(&self, i: usize) -> &[i8] {
        bytemuck::cast_slice(&self.q.as_slice()[i * self.q_stride..i * self.q_stride + self.k])
    }

    /// The last call's row scales `sx` (m of them).
    pub fn scales(&self) -> &[f32] {
        &self.scale[..self.m]
    }

    /// The last call's outlier values, `[m, outlier_columns().len()]` f32.
    pub fn outlier_values(&self) -> &[f32] {
        &self.xo[..self.m * self.n_outliers]
    }
}

/// One LLM.int8() product; see [`Int8Weight::matmul`].
pub struct Int8Matmul<'a> {
    w: &'a Int8Weight,
    ws: &'a mut Int8Workspace,
    bias: Option<&'a [f32]>,
    backend: Option<Backend>,
    isa: Option<Isa>,
    threads: Threads,
}

impl<'a> Int8Matmul<'a> {
    /// Adds `bias[j]` to every output of channel j (n values).
    pub fn bias(mut self, bias: &'a [f32]) -> Self {
        self.bias = Some(bias);
        self
    }

    /// Forces the int32 kernel (default [`Backend::auto`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Forces the ISA of the activation quantizer (default [`isa::selected`]).
    pub fn isa(mut self, isa: Isa) -> Self {
        self.isa = Some(isa);
        self
    }

    /// Split the call across threads (default [`Threads::Single`]), up to
    /// the workspace's [`Int8Workspace::new`] threads: the outlier-column
    /// scan and the quantizer over the rows of x, the int32 product with its
    /// epilogue in tiles of rows (one part per thread, in whole 32-row
    /// blocks) x output channels (so a call of a few rows splits too). The
    /// result does not depend on it.
    pub fn threads(mut self, threads: Threads) -> Self {
        self.threads = threads;
        self
    }

    /// `y = x W^T` for x `[m, k]` (any of f32/f16/bf16) into y `[m, n]` (any
    /// of them). Validates everything first: nothing is written on error.
    pub fn run<T: Element, U: Element>(self, x: &[T], y: &mut [U]) -> Result<()> {
        let (w, ws) = (self.w, self.ws);
        ws.check_for(w)?;
        if x.len() % w.k != 0 {
            return Err(Error::LengthNotMultiple {
                what: "x",
                len: x.len(),
                cols: w.k,
            });
        }
        let m = x.len() / w.k;
        if m > ws.max_m {
            return Err(Error::InvalidArgument {
                what: "x",
                reason: "has more rows than the workspace was made for",
            });
        }
        expect_len("y", m * w.n, y.len())?;
        if let Some(b) = self.bias {
            expect_len("bias", w.n, b.len())?;
        }
        let variant = variant_for::<T>(self.isa)?;
        let kernel = match self.backend {
            Some(b) => b.kernel()?,
            None => Backend::auto(m)?.kernel()?,
        };
        let threads = self.threads.count().min(ws.slots());
        // The outlier columns.
        let n_out = match &w.fixed {
            Some((cols, _)) => {
                ws.outliers[..cols.len()].copy_from_slice(cols);
                cols.len()
            }
            None if m == 0 => 0,
            None => {
                // Column maxima, one running set per thread (the first in
                // colmax, the others in the row buffers) that each block of
                // rows the thread takes merges into, then merged: a max (NaN
                // kept) is the same for any split.
                let k = w.k;
                let parts = threads.min(m / min_rows(k)).max(1);
                ws.colmax.fill(0.0);
                for part in ws.row.chunks_exact_mut(k).take(parts - 1) {
                    part.fill(0.0);
                }
                let (colmax, rowbuf) =
                    (Shared(ws.colmax.as_mut_ptr()), Shared(ws.row.as_mut_ptr()));
                share(parts, m, min_rows(k), |slot, start, count| {
                    let p = ffi::tk_qgemm_colmax_params {
                        x: x[start * k..].as_ptr().cast(),
                        x_stride: k,
                        rows: count,
                        cols: k,
                        colmax: if slot == 0 {
                            colmax.get()
                        } else {
                            rowbuf.get().wrapping_add((slot - 1) * k)
                        },
                    };
                    // SAFETY: x holds m x k elements of T, this block rows
                    // start .. start + count; colmax k floats and the row
                    // buffers threads >= parts of k floats, slot s < parts
                    // used by one worker only.
                    unsafe { (variant.colmax)(&p) };
                });
                for part in ws.row.chunks_exact(k).take(parts - 1) {
                    for (c, &v) in ws.colmax.iter_mut().zip(part) {
                        if c.is_nan() || v.is_nan() {
                            *c = f32::NAN;
                        } else {
                            *c = c.max(v);
                        }
                    }
                }
                let mut count = 0;
                for (c, &v) in ws.colmax.iter().enumerate() {
                    if v.is_nan() || v >= w.threshold {
                        if count == ws.max_outliers {
                            return Err(Error::InvalidArgument {
                                what: "x",
                                reason: "has more outlier columns than the workspace was made for",
                            });
                        }
                        ws.outliers[count] = c as u32;
                        count += 1;
                    }
                }
                let t = w
                    .transposed
                    .as_ref()
                    .expect("dynamic mode keeps W transposed");
                for o in 0..count {
                    let row = &mut ws.wo[o * w.n_pad..(o + 1) * w.n_pad];
                    t.widen_row(ws.outliers[o] as usize, &mut row[..w.n]);
                }
                count
            }
        };
        ws.m = m;
        ws.n_outliers = n_out;
        if m == 0 {
            return Ok(());
        }
        let qp = Shared(ffi::tk_qgemm_quant_params {
            x: x.as_ptr().cast(),
            x_stride: w.k,
            rows: m,
            cols: w.k,
            outliers: ws.outliers.as_ptr(),
            n_outliers: n_out,
            q: ws.q.as_mut_slice().as_mut_ptr().cast(),
            q_stride: ws.q_stride,
            q_rows: m.div_ceil(32) * 32,
            q_cols: w.k_pad,
            q_scale: ws.scale.as_mut_ptr(),
            q_rowsum: ws.rowsum.as_mut_ptr(),
            xo: ws.xo.as_mut_ptr(),
            workspace: ws.row.as_mut_ptr(),
        });
        // Shared blocks of whole 32-row blocks (the one holding row m - 1
        // zeroes the padding rows up to round_up(m, 32)), each worker with
        // its own row buffer.
        let blocks = m.div_ceil(32);
        let min_blocks = min_rows(w.k).div_ceil(32);
        share(threads, blocks, min_blocks, |slot, start, count| {
            let mut c = qp.get();
            let r = start * 32;
            c.rows = (count * 32).min(m - r);
            c.q_rows = count * 32;
            c.x = c.x.cast::<T>().wrapping_add(r * w.k).cast();
            c.q = c.q.wrapping_add(r * c.q_stride);
            c.q_scale = c.q_scale.wrapping_add(r);
            c.q_rowsum = c.q_rowsum.wrapping_add(r);
            c.xo = c.xo.wrapping_add(r * n_out);
            c.workspace = c.workspace.wrapping_add(slot * w.k);
            // SAFETY: x holds m x k elements; q holds round_up(m, 32) rows of
            // the workspace's rows of q_stride >= k_pad bytes, this part rows
            // r .. r + count * 32; scale/rowsum m values; xo m x n_out <= m x
            // max_outliers; the outlier indices are < k; the row buffers
            // threads >= parts of k floats.
            unsafe { (variant.quantize)(&c) };
        });
        let mut p = w.gemm_params(ws, self.bias);
        p.y = y.as_mut_ptr().cast();
        p.y_dtype = U::DTYPE.to_ffi();
        let p = Shared(p);
        // Tiles: the rows in parts of whole 32-row blocks (a part's padded
        // rows are rows of the next part or the zeroed padding), one part per
        // thread while there are blocks enough (each part streams all of W
        // once, as on one thread), times runs of 64-channel strips (at least
        // 64 KiB of W each) so that there are about BLOCKS_PER_WORKER tiles
        // per worker. The workers take tiles from a shared counter, each with
        // its own scratch for one part's rows; a call of 32 rows or fewer
        // splits its channels alone.
        let blocks = m.div_ceil(32);
        let part_blocks = blocks.div_ceil(threads.min(blocks));
        let parts = blocks.div_ceil(part_blocks);
        let strips = w.n.div_ceil(64);
        let min_strips = MIN_WEIGHT_BYTES.div_ceil(64 * w.k_pad);
        let runs = if threads == 1 {
            1
        } else {
            (threads * BLOCKS_PER_WORKER)
                .div_ceil(parts)
                .min(strips / min_strips)
                .max(1)
        };
        let run_strips = strips.div_ceil(runs);
        let runs = strips.div_ceil(run_strips);
        let scratch_rows = part_blocks * 32;
        let scratch_ints = scratch_rows * 64 + ws.amx_part;
        share(threads, parts * runs, 1, |slot, start, count| {
            for tile in start..start + count {
                let (r, j) = (tile / runs * scratch_rows, tile % runs * run_strips * 64);
                let mut c = p.get();
                c.m = scratch_rows.min(m - r);
                c.a = c.a.wrapping_add(r * c.a_stride);
                c.a_scale = c.a_scale.wrapping_add(r);
                c.a_rowsum = c.a_rowsum.wrapping_add(r);
                c.xo = c.xo.wrapping_add(r * c.n_outliers);
                c.n = (run_strips * 64).min(w.n - j);
                c.w = c.w.wrapping_add(j * w.k_pad);
                c.w_scale = c.w_scale.wrapping_add(j);
                c.wo = c.wo.wrapping_add(j);
                if !c.bias.is_null() {
                    c.bias = c.bias.wrapping_add(j);
                }
                c.y = c.y.cast::<U>().wrapping_add(r * c.y_stride + j).cast();
                c.scratch = c.scratch.wrapping_add(slot * scratch_ints);
                // SAFETY: a: round_up(m, 32) rows of k_pad bytes, q_stride
                // apart (padding zeroed by the quantizer); packed W n_pad x
                // k_pad in 16-channel panels (channel j at j k_pad, j a
                // multiple of 64); scales n_pad; wo n_out rows of wo_stride =
                // n_pad f32; xo m x n_out; bias n; y m x n elements of U. A
                // tile reads rows r .. r + round_up(c.m, 32) of a and
                // channels j .. j + c.n of W, writes rows r .. r + c.m x
                // channels j .. j + c.n of y (no other tile's) and the
                // worker's own scratch_ints int32 of the scratch (its rows x 64
                // and the AMX partial sums), which holds threads <= ws.slots()
                // of them (Int8Workspace::new).
                unsafe { kernel(&c) };
            }
        });
        Ok(())
    }
}
