//! Weight-only quantized products for decoding (FineQuant / EasyQuant style):
//! X in f32/f16/bf16 (a few rows: 1 to 16 tokens) times W in int8 or int4
//! with one f32 scale per group of consecutive k, dequantized on the fly.
//! Memory-bound for small m: the weight bytes (values and scales) are the
//! floor. The kernels sum `x q` over each group with the integer weights and
//! multiply the sum by the group scale once, in f32; a call whose X holds an
//! `|x| >= 2^100` (where `x q` could overflow and `x s q` not) or a NaN/inf
//! multiplies each widened weight by its scale first (`w_deq = fl(s q)`) and
//! sums `x w_deq`. Both meet [`QuantizedWeight::error_bound`].
//!
//! Weights are stored in panels of 16 channels ([`WeightLayout::Panels`]:
//! one contiguous stream per 16 channels, what the VNNI path multiplies by
//! broadcast x). int4 can be stored in rows instead ([`WeightLayout::Rows`],
//! by [`QuantizedWeight::quantize_with_layout`]): what the AMX-BF16 tiles
//! read, which measured no faster than panels on VNNI at 8 rows and slower
//! at every other row count (docs/qgemm.md), so panels are the default.
//!
//! With panels on AVX-512 with [`VNNI_ROWS`] rows the product runs on
//! `vpdpbusd` where the CPU has AVX-512 VNNI ([`vnni_available`]): each
//! group of each row of X is split exactly into 3-6 int8 digits of a common
//! power of two (any f16 group; bf16 within 38 binades of the group's max;
//! f32 within 22), the integer sums are exact and are recombined and summed
//! in f64, and y is rounded once, so the result is within an f32 and an
//! output rounding of the exact product. X that cannot be split exactly (or
//! NaN / inf) runs the SIMD kernel; [`WeightOnlyCall::vnni`] turns the path
//! off.
//!
//! int8 panels with [`AMX_INT8_ROWS`] rows where AMX-INT8 is available too
//! ([`amx_int8_available`]) take the same digits to AMX tiles instead: 16
//! lines of a panel are one B tile, so a `tdpbssd` multiplies a KiB of
//! weights by up to 16 digit rows (the VNNI loop: a `vpdpbusd` per line, row
//! and digit). The same bits as the VNNI path; groups that are not a
//! multiple of 64 (and rows x digits above 80) stay on VNNI.
//! [`WeightOnlyCall::amx`] turns the tiles off.
//!
//! int4 panels with [`INT4_AVX2_ROWS`] rows on [`Isa::Avx2`] take the same
//! split into digits (the same contract and declines) on `vpmaddubsw`: the
//! nibbles (+8) by each digit plane, 16-bit sums widened every 4 lines of
//! 8 k, one row after another over each half panel. On a core with 128-bit
//! vector units (AMD Zen 1) the SIMD kernel's int4 loop is bound by its
//! shifts and conversions; this path measured 1.7x it there at one row and
//! 1.0-1.2x at 2-16 rows (docs/qgemm.md). [`WeightOnlyCall::int4_avx2`]
//! turns it off.
//!
//! int4 in rows on AVX-512 with [`AMX_MIN_ROWS`] or more rows runs on
//! AMX-BF16 tiles where the CPU and the OS allow ([`amx_available`]): the
//! vector units only unpack the weights to bf16, the tiles multiply them by
//! X split exactly into bf16 parts (f32 three, f16 two, bf16 one; up to 16
//! columns: 5 rows of f32, 8 of f16, 16 of bf16), the sums round in f32 as
//! on the SIMD path. Calls outside that (fewer or more rows, groups not a
//! multiple of 128, any x NaN / inf / `>= 2^100` / nonzero below `2^-60`)
//! run the SIMD kernel; [`WeightOnlyCall::amx`] turns the tiles off.
//!
//! ```
//! use transformer_kernels::qgemm::weight_only::QuantizedWeight;
//!
//! let (n, k) = (8, 128);
//! let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
//! let qw = QuantizedWeight::quantize(&w, n, k, 4, 64)?;
//! let x = vec![0.5f32; k];
//! let mut y = vec![0.0f32; n];
//! qw.gemv(&x).run(&mut y)?;
//! let exact: f32 = (0..k).map(|c| 0.5 * w[c]).sum();
//! assert!((y[0] - exact).abs() < 0.1 * k as f32 / 7.0);
//! # Ok::<(), transformer_kernels::Error>(())
//! ```

use super::aligned::{Aligned, AlignedBytes};
use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::ffi;
use crate::isa::Isa;
use crate::parallel::{MIN_WEIGHT_BYTES, Shared, Threads, share_with};
use crate::shape::expect_len;

/// How a [`QuantizedWeight`] stores its values (tk.h: `tk_wgemv_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// Panels of 16 channels (n padded with zeros), each 64-byte line 4
    /// consecutive k (int8) or 8 (int4) of its 16 channels, scales
    /// `[panels][groups][16]`: a vector of a line holds several channels,
    /// which the VNNI path multiplies by broadcast x. The default.
    Panels,
    /// int4 only: rows of W, scales `[n][groups]`: what the AMX-BF16 tiles
    /// read (5 to 16 rows of X, where [`amx_available`]).
    Rows,
}

impl WeightLayout {
    /// The layout [`QuantizedWeight::quantize`] picks for `bits`: panels
    /// (the fastest measured for int8 and int4 at 1 to 16 rows, AMX or not).
    pub fn default_for(_bits: u32) -> WeightLayout {
        WeightLayout::Panels
    }
}

/// W `[n, k]` quantized per group of `group` consecutive k to int8 or int4.
#[derive(Debug, Clone)]
pub struct QuantizedWeight {
    n: usize,
    k: usize,
    bits: u32,
    layout: WeightLayout,
    pub(crate) group: usize,
    row_bytes: usize,
    /// On 64-byte boundaries: the kernels load whole lines of both.
    pub(crate) data: AlignedBytes,
    pub(crate) scales: Aligned<f32>,
}

impl QuantizedWeight {
    /// Quantizes W (`[n, k]` row-major, finite): per group,
    /// `s = max|w| / qmax` (qmax 127 for 8 bits, 7 for 4) and
    /// `q = rint(w qmax / max|w|)`. `group` a multiple of 32 dividing k (64
    /// and 128 are the usual choices). Stored in
    /// [`WeightLayout::default_for`] `bits` (int4: two values per byte, the
    /// even k in the low nibble).
    pub fn quantize<T: Element>(
        w: &[T],
        n: usize,
        k: usize,
        bits: u32,
        group: usize,
    ) -> Result<QuantizedWeight> {
        Self::quantize_with_layout(w, n, k, bits, group, WeightLayout::default_for(bits))
    }

    /// [`QuantizedWeight::quantize`] into a chosen layout (int8 takes only
    /// [`WeightLayout::Panels`]). The result is the same in either; the
    /// layout decides which kernels can run it.
    pub fn quantize_with_layout<T: Element>(
        w: &[T],
        n: usize,
        k: usize,
        bits: u32,
        group: usize,
        layout: WeightLayout,
    ) -> Result<QuantizedWeight> {
        super::check_weight(w, n, k)?;
        if bits != 8 && bits != 4 {
            return Err(Error::InvalidArgument {
                what: "bits",
                reason: "must be 8 or 4",
            });
        }
        if bits == 8 && layout == WeightLayout::Rows {
            return Err(Error::InvalidArgument {
                what: "layout",
                reason: "int8 weights are stored in panels only",
            });
        }
        if group == 0 || group % 32 != 0 || k % group != 0 {
            return Err(Error::InvalidArgument {
                what: "group",
                reason: "must be a multiple of 32 that divides k",
            });
        }
        let qmax = if bits == 8 { 127.0f32 } else { 7.0 };
        let row_bytes = if bits == 8 { k } else { k / 2 };
        let groups = k / group;
        let panels = layout == WeightLayout::Panels;
        let rows = if panels { n.div_ceil(16) * 16 } else { n };
        let mut qw = QuantizedWeight {
            n,
            k,
            bits,
            layout,
            group,
            row_bytes,
            data: AlignedBytes::zeroed(rows * row_bytes),
            scales: Aligned::zeroed(rows * groups),
        };
        for j in 0..n {
            for g in 0..groups {
                let vals = &w[j * k + g * group..j * k + (g + 1) * group];
                let amax = vals.iter().fold(0.0f32, |a, v| a.max(v.to_f32().abs()));
                if amax == 0.0 {
                    continue;
                }
                let inv = qmax / amax;
                let at = qw.scale_index(j, g);
                qw.scales.as_mut_slice()[at] = amax / qmax;
                for (e, v) in vals.iter().enumerate() {
                    let q = (v.to_f32() * inv).round_ties_even().clamp(-qmax, qmax) as i8;
                    let (at, shift) = qw.value_index(j, g * group + e);
                    qw.data.as_mut_slice()[at] |= ((q as u8) & (0xFF >> (8 - bits))) << shift;
                }
            }
        }
        Ok(qw)
    }

    /// Byte and bit of `W[j, c]` in `data`: panels hold `32 / bits` k per
    /// 4-byte channel slot of a 64-byte line, rows `row_bytes` per channel.
    fn value_index(&self, j: usize, c: usize) -> (usize, u32) {
        let bits = self.bits as usize;
        let bit = (c * bits % 8) as u32;
        match self.layout {
            WeightLayout::Panels => {
                let kl = 32 / bits;
                let at = (j / 16) * 16 * self.row_bytes + (c / kl) * 64 + (j % 16) * 4;
                (at + (c % kl) * bits / 8, bit)
            }
            WeightLayout::Rows => (j * self.row_bytes + c * bits / 8, bit),
        }
    }

    /// Where the scale of group g of channel j lives (panels: by panel).
    fn scale_index(&self, j: usize, g: usize) -> usize {
        let groups = self.k / self.group;
        match self.layout {
            WeightLayout::Panels => ((j / 16) * groups + g) * 16 + j % 16,
            WeightLayout::Rows => j * groups + g,
        }
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// 8 or 4.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Consecutive k sharing a scale.
    pub fn group(&self) -> usize {
        self.group
    }

    /// Bytes a product reads of the weight: values plus scales (the floor of a
    /// memory-bound call).
    pub fn bytes(&self) -> usize {
        self.data.as_slice().len() + self.scales.as_slice().len() * 4
    }

    /// How the values are stored.
    pub fn layout(&self) -> WeightLayout {
        self.layout
    }

    /// Whether a call of m rows on `isa` takes the AMX-BF16 tiles unless
    /// turned off ([`WeightOnlyCall::amx`]); the kernel may still decline
    /// its X (see the module docs).
    pub fn amx_applies(&self, m: usize, isa: Isa) -> bool {
        self.bits == 4
            && self.layout == WeightLayout::Rows
            && m >= AMX_MIN_ROWS
            && isa >= Isa::Avx512
            && amx_available()
    }

    /// Whether a call of m rows on `isa` takes the AMX-INT8 digit path unless
    /// turned off ([`WeightOnlyCall::amx`]): int8 in [`WeightLayout::Panels`],
    /// [`AMX_INT8_ROWS`] rows, AVX-512 and [`amx_int8_available`]; the kernel
    /// may still decline its X or group (see the module docs), then VNNI runs.
    pub fn amx_int8_applies(&self, m: usize, isa: Isa) -> bool {
        self.bits == 8
            && self.layout == WeightLayout::Panels
            && AMX_INT8_ROWS.contains(&m)
            && isa >= Isa::Avx512
            && amx_int8_available()
    }

    /// Whether a call of m rows on `isa` takes the AVX-512 VNNI path unless
    /// turned off ([`WeightOnlyCall::vnni`]); it may still decline its X.
    pub fn vnni_applies(&self, m: usize, isa: Isa) -> bool {
        self.layout == WeightLayout::Panels
            && VNNI_ROWS.contains(&m)
            && isa >= Isa::Avx512
            && vnni_available()
    }

    /// Whether a call of m rows on `isa` takes the AVX2 int4 integer path
    /// unless turned off ([`WeightOnlyCall::int4_avx2`]): int4 in
    /// [`WeightLayout::Panels`], [`INT4_AVX2_ROWS`] rows, [`Isa::Avx2`]; it
    /// may still decline its X.
    pub fn int4_avx2_applies(&self, m: usize, isa: Isa) -> bool {
        self.bits == 4
            && self.layout == WeightLayout::Panels
            && INT4_AVX2_ROWS.contains(&m)
            && isa == Isa::Avx2
    }

    /// The integer value of `W[j, c]`.
    pub fn value(&self, j: usize, c: usize) -> i8 {
        let (at, shift) = self.value_index(j, c);
        if self.bits == 8 {
            self.data.as_slice()[at] as i8
        } else {
            ((self.data.as_slice()[at] << (4 - shift)) as i8) >> 4
        }
    }

    /// The dequantized `W[j, c]` as the kernels form it: `fl(s q)` in f32.
    pub fn dequantized(&self, j: usize, c: usize) -> f32 {
        self.scale(j, c / self.group) * self.value(j, c) as f32
    }

    /// The scale of group `g` of channel j.
    pub fn scale(&self, j: usize, g: usize) -> f32 {
        self.scales.as_slice()[self.scale_index(j, g)]
    }

    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    /// Values as rows of W (`[n, k]` int8, or `[n, k / 2]` bytes of int4) and
    /// scales `[n][groups]`: the layout the CUDA kernels take.
    pub(crate) fn row_major(&self) -> (Vec<u8>, Vec<f32>) {
        let groups = self.k / self.group;
        let scales = (0..self.n * groups)
            .map(|i| self.scale(i / groups, i % groups))
            .collect();
        let data = if self.bits == 4 {
            let v = |j, c| (self.value(j, c) as u8) & 15;
            (0..self.n * self.k / 2)
                .map(|i| {
                    let (j, c) = (i / (self.k / 2), 2 * (i % (self.k / 2)));
                    v(j, c) | (v(j, c + 1) << 4)
                })
                .collect()
        } else {
            (0..self.n * self.k)
                .map(|i| self.value(i / self.k, i % self.k) as u8)
                .collect()
        };
        (data, scales)
    }

    /// f32 workspace a call with m rows needs.
    pub fn workspace_floats(&self, m: usize) -> usize {
        // SAFETY: pure function of its arguments.
        unsafe { ffi::tk_wgemv_workspace_floats(m, self.k) }
    }

    /// The f32 accumulation's contract: `|y - y_deq| <= (k + 2) u
    /// sum_c |x w_deq| + u_out |y_deq| + tiny_out`, `y_deq` the exact product
    /// with the dequantized weights ([`QuantizedWeight::dequantized`]).
    pub fn error_bound(&self, out: Dtype, mag: f64, y_deq: f64) -> f64 {
        let u = Dtype::F32.unit_roundoff();
        let (u_out, tiny) = match out {
            Dtype::F32 => (0.0, 0.0),
            d => (d.unit_roundoff(), d.min_subnormal() / 2.0),
        };
        (self.k as f64 + 2.0) * u * mag + u_out * y_deq.abs() + tiny
    }

    /// A product `y = x W^T (+ bias)` for x `[m, k]`.
    pub fn gemv<'a, T: Element>(&'a self, x: &'a [T]) -> WeightOnlyCall<'a, T> {
        WeightOnlyCall {
            w: self,
            x,
            bias: None,
            isa: None,
            workspace: None,
            threads: Threads::Single,
            amx: true,
            vnni: true,
            int4_avx2: true,
        }
    }
}

/// One weight-only product; see [`QuantizedWeight::gemv`].
pub struct WeightOnlyCall<'a, T: Element> {
    w: &'a QuantizedWeight,
    x: &'a [T],
    bias: Option<&'a [f32]>,
    isa: Option<Isa>,
    workspace: Option<&'a mut [f32]>,
    threads: Threads,
    amx: bool,
    vnni: bool,
    int4_avx2: bool,
}

/// Fewest rows of X for which int4 products take the AMX-BF16 tiles: measured
/// on this project's machine (4096 x 4096, group 128, f16 x, one thread,
/// weights streamed from memory) the tiles run 0.97x the AVX-512 kernel at 4
/// rows and 1.64x at 8 (at 1 row about 0.5x; docs/qgemm.md): their cost
/// hardly grows with the rows, the SIMD kernel's does.
pub const AMX_MIN_ROWS: usize = 5;

/// Whether the int4 product can run on AMX-BF16 tiles here (the CPU has
/// AMX-BF16 and the OS granted tile data).
pub fn amx_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CPUID and the one-time arch_prctl permission request.
    return unsafe { ffi::tk_amx_bf16_ready() } != 0;
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Rows of X for which products of weights in [`WeightLayout::Panels`] take
/// the AVX-512 VNNI path (X split exactly into int8 digits; see the module
/// docs): measured on the AMD EPYC host of 2026-12-02 (4096 x 4096, group
/// 128, one thread, weights streamed from memory), int8 runs as fast as the
/// SIMD kernel at 1-3 rows and 1.3-1.4x at 4-16; int4 1.1-1.15x the SIMD
/// kernel on the same panels at 1-2 rows, about even at 3, 1.2-1.35x at
/// 4-16 (docs/qgemm.md).
pub const VNNI_ROWS: std::ops::RangeInclusive<usize> = 1..=16;

/// Rows of X for which int8 products in [`WeightLayout::Panels`] take the
/// AMX-INT8 digit path where it is available (see the module docs): measured
/// on a Xeon VM with AMX on 2026-12-07 (4096 x 4096, group 128, f16 x, one
/// thread, weights streamed from memory), against the VNNI loop in the same
/// runs: 0.92-0.95x at 1 row, 1.04-1.05x at 2, 0.94x at 4, 1.20-1.23x at 8,
/// 1.52-1.54x at 16 (docs/qgemm.md). At few rows the loop's `vpdpbusd` keep
/// up with the weight stream and the tiles' fixed costs do not pay.
pub const AMX_INT8_ROWS: std::ops::RangeInclusive<usize> = 8..=16;

/// Rows of X for which int4 products in [`WeightLayout::Panels`] on
/// [`Isa::Avx2`] take the integer path (X split exactly into int8 digits,
/// `vpmaddubsw`; see the module docs): 1-16, the rows the workspace holds the
/// split of. On the AMD EPYC Zen 1 host of 2026-12-07 (4096 x 4096, f16 x,
/// one thread, weights streamed from memory) it ran 1.6-1.8x the SIMD
/// kernel at one row and 1.0-1.2x at 2-16 rows (docs/qgemm.md).
pub const INT4_AVX2_ROWS: std::ops::RangeInclusive<usize> = 1..=16;

/// Whether the int8 weight-only products can run on AMX-INT8 tiles here
/// (the CPU has them and the OS granted tile data).
pub fn amx_int8_available() -> bool {
    super::Backend::Amx.is_available()
}

/// Whether the weight-only products can run on AVX-512 VNNI here.
pub fn vnni_available() -> bool {
    super::Backend::Avx512Vnni.is_available()
}

impl<'a, T: Element> WeightOnlyCall<'a, T> {
    /// Adds `bias[j]` to channel j (n values).
    pub fn bias(mut self, bias: &'a [f32]) -> Self {
        self.bias = Some(bias);
        self
    }

    /// Forces the ISA (default [`crate::isa::selected`]).
    pub fn isa(mut self, isa: Isa) -> Self {
        self.isa = Some(isa);
        self
    }

    /// At least [`QuantizedWeight::workspace_floats`] floats; without one the
    /// call allocates it.
    pub fn workspace(mut self, ws: &'a mut [f32]) -> Self {
        self.workspace = Some(ws);
        self
    }

    /// Whether int4 calls on AVX-512 with at least [`AMX_MIN_ROWS`] rows may
    /// run on AMX-BF16 tiles, and int8 calls in panels with [`AMX_INT8_ROWS`]
    /// rows on AMX-INT8 tiles (default true; see the module docs). The result
    /// meets the same bound either way (int8: the same bits as VNNI).
    pub fn amx(mut self, amx: bool) -> Self {
        self.amx = amx;
        self
    }

    /// Whether calls on AVX-512 with [`VNNI_ROWS`] rows and weights in
    /// [`WeightLayout::Panels`] may
    /// run on the VNNI path (default true; see the module docs). The result
    /// meets the same bound either way.
    pub fn vnni(mut self, vnni: bool) -> Self {
        self.vnni = vnni;
        self
    }

    /// Whether int4 calls of one row on [`Isa::Avx2`] with weights in
    /// [`WeightLayout::Panels`] may run on the AVX2 integer path (default
    /// true; see the module docs). The result meets the same bound either
    /// way.
    pub fn int4_avx2(mut self, int4_avx2: bool) -> Self {
        self.int4_avx2 = int4_avx2;
        self
    }

    /// Split the output channels, in blocks of 16, across threads (default
    /// [`Threads::Single`]): the threads take runs of channel blocks (at
    /// least 64 KiB of W each) from a shared counter, so a thread that
    /// starts late leaves its runs to the others; each thread converts x
    /// once, into its own [`QuantizedWeight::workspace_floats`] of the
    /// workspace, and reuses it on every run it takes. A caller workspace
    /// shorter than `threads` of them limits the threads to what it holds.
    /// The result does not depend on it.
    pub fn threads(mut self, threads: Threads) -> Self {
        self.threads = threads;
        self
    }

    /// Runs into y `[m, n]` (x's dtype). Nothing is written on error.
    pub fn run(self, y: &mut [T]) -> Result<()> {
        let w = self.w;
        if self.x.len() % w.k != 0 {
            return Err(Error::LengthNotMultiple {
                what: "x",
                len: self.x.len(),
                cols: w.k,
            });
        }
        let m = self.x.len() / w.k;
        expect_len("y", m * w.n, y.len())?;
        if let Some(b) = self.bias {
            expect_len("bias", w.n, b.len())?;
        }
        let variant = super::variant_for::<T>(self.isa)?;
        let amx = self.amx && w.amx_applies(m, variant.isa);
        let amx_int8 = self.amx && w.amx_int8_applies(m, variant.isa);
        let vnni = self.vnni && w.vnni_applies(m, variant.isa);
        let int4_avx2 = self.int4_avx2 && w.int4_avx2_applies(m, variant.isa);
        let need = w.workspace_floats(m);
        // Each run streams at least MIN_WEIGHT_BYTES of W.
        let min_blocks = MIN_WEIGHT_BYTES.div_ceil(16 * w.row_bytes.max(1));
        let chunks = self
            .threads
            .count()
            .min(w.n.div_ceil(16) / min_blocks)
            .max(1);
        let mut owned = Vec::new();
        let ws: &mut [f32] = match self.workspace {
            Some(s) if s.len() >= need => s,
            Some(s) => {
                return Err(Error::LengthMismatch {
                    what: "workspace (at least)",
                    expected: need,
                    actual: s.len(),
                });
            }
            None => {
                owned.resize(need * chunks, 0.0);
                &mut owned
            }
        };
        let chunks = chunks.min(ws.len() / need.max(1)).max(1);
        if m == 0 {
            return Ok(());
        }
        let p = Shared(ffi::tk_wgemv_params {
            x: self.x.as_ptr().cast(),
            x_stride: w.k,
            m,
            k: w.k,
            n: w.n,
            w: w.data.as_slice().as_ptr().cast(),
            w_stride: w.row_bytes,
            w_bits: w.bits as i32,
            w_panels: (w.layout == WeightLayout::Panels) as i32,
            w_scale: w.scales.as_slice().as_ptr(),
            group: w.group,
            bias: self.bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            y: y.as_mut_ptr().cast(),
            y_stride: w.n,
            workspace: ws.as_mut_ptr(),
            x_ready: 0,
        });
        let blocks = w.n.div_ceil(16);
        // Each worker converts x into its own workspace slot on its first
        // run of channels (the kernel that takes the call: AMX, VNNI or
        // SIMD, the same for every run as it depends on x only) and reuses
        // the conversion on its later runs.
        share_with(
            chunks,
            blocks,
            min_blocks,
            |_| None,
            |path: &mut Option<Path>, slot, start, count| {
                let mut c = p.get();
                let j = start * 16;
                c.n = (count * 16).min(w.n - j);
                c.w = c.w.cast::<u8>().wrapping_add(j * c.w_stride).cast();
                c.w_scale = c.w_scale.wrapping_add(j * (w.k / w.group));
                if !c.bias.is_null() {
                    c.bias = c.bias.wrapping_add(j);
                }
                c.y = c.y.cast::<T>().wrapping_add(j).cast();
                c.workspace = c.workspace.wrapping_add(slot * need);
                c.x_ready = path.is_some() as i32;
                // SAFETY: x holds m x k elements, y m x n (exclusive; a run
                // writes its channels j .. j + c.n of each row, y_stride n
                // apart), W n rows of row_bytes and n x k / group scales,
                // bias n, each worker's workspace slot
                // tk_wgemv_workspace_floats(m, k) floats, its own; group is a
                // multiple of 32 dividing k (checked at quantization). The
                // AMX, VNNI and AVX2 int4 kernels write nothing but the workspace when
                // they decline. x_ready only after the same kernel converted
                // this x into this slot.
                unsafe {
                    let took = |kernel| match kernel {
                        Path::Amx => amx && integer_gemv(kernel, &c, T::DTYPE),
                        Path::AmxInt8 => amx_int8 && integer_gemv(kernel, &c, T::DTYPE),
                        Path::Vnni => vnni && integer_gemv(kernel, &c, T::DTYPE),
                        Path::Int4Avx2 => int4_avx2 && integer_gemv(kernel, &c, T::DTYPE),
                        Path::Simd => {
                            (variant.wgemv)(&c);
                            true
                        }
                    };
                    *path = match *path {
                        Some(kernel) => {
                            took(kernel);
                            Some(kernel)
                        }
                        None => [
                            Path::Amx,
                            Path::AmxInt8,
                            Path::Vnni,
                            Path::Int4Avx2,
                            Path::Simd,
                        ]
                        .into_iter()
                        .find(|&kernel| took(kernel)),
                    };
                }
            },
        );
        Ok(())
    }
}

/// The kernel that took a weight-only call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Amx,
    AmxInt8,
    Vnni,
    Int4Avx2,
    Simd,
}

/// Runs `p` on the integer or tile kernel of `path` (not [`Path::Simd`]);
/// false when it declined (having written nothing but the workspace).
///
/// # Safety
/// `p` as for the SIMD kernel, on a CPU with the kernel's ISA: AVX-512 VNNI
/// for [`Path::Vnni`], AVX-512 for the AMX paths (which ask for the tiles
/// themselves), AVX2 for [`Path::Int4Avx2`].
unsafe fn integer_gemv(path: Path, p: &ffi::tk_wgemv_params, dtype: Dtype) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let kernel = match path {
            Path::Amx => ffi::tk_wgemv_int4_amx,
            Path::AmxInt8 => ffi::tk_wgemv_int8_amx,
            Path::Vnni => ffi::tk_wgemv_vnni,
            Path::Int4Avx2 => ffi::tk_wgemv_int4_avx2,
            Path::Simd => return false,
        };
        // SAFETY: the caller's.
        unsafe { kernel(p, dtype.to_ffi()) != 0 }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (path, p, dtype);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CUDA upload's rows (`row_major`) are the same from either int4
    /// layout, and are the int8 values row by row.
    #[test]
    fn row_major_is_the_rows_layout() {
        let (n, k) = (19, 128);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let q = |bits, layout| QuantizedWeight::quantize_with_layout(&w, n, k, bits, 32, layout);
        let rows = q(4, WeightLayout::Rows).unwrap();
        assert_eq!(
            q(4, WeightLayout::Panels).unwrap().row_major(),
            (
                rows.data.as_slice().to_vec(),
                rows.scales.as_slice().to_vec()
            )
        );
        assert_eq!(
            rows.row_major(),
            (
                rows.data.as_slice().to_vec(),
                rows.scales.as_slice().to_vec()
            )
        );
        let int8 = q(8, WeightLayout::Panels).unwrap();
        let (data, scales) = int8.row_major();
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(b as i8, int8.value(i / k, i % k));
        }
        assert_eq!(scales[5 * (k / 32) + 2], int8.scale(5, 2));
    }
}
