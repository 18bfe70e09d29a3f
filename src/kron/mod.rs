//! Kronecker-factored transforms (FlatQuant) and fast Walsh-Hadamard
//! transforms, alone or fused with per-token symmetric int8 / int4
//! quantization.
//!
//! Each token x of `n = n1 * n2` elements, read row-major as the n1 x n2
//! matrix X, becomes `y = (x * smooth) (P1 kron P2) = vec(P1^T X P2)`:
//! `O(n (n1 + n2))` work instead of `O(n^2)`. Factors are dense f32 matrices or
//! normalised Hadamard matrices (applied by the fast transform, O(n log n)).
//! The fused kernel reads x once and writes the quantized values and one f32
//! scale per token once: `scale = clip * max|y| / qmax`, `q = rint(y / scale)`
//! clamped to `[-qmax, qmax]` (qmax 127 for int8, 7 for int4; rint ties to
//! even; computed as `y * (qmax / (clip max|y|))` in f32), the format the norm
//! kernels' int8 output uses. int4: two values per byte, the even element in
//! the low nibble (a last odd element leaves the high nibble 0). A zero token
//! gets scale 0 and q 0; a token whose y holds NaN or inf gets scale NaN, q 0.
//!
//! ```
//! use transformer_kernels::kron::{Factor, Kron};
//!
//! // n = 4096 as 64 x 64: a random orthogonal-ish P1 and a Hadamard P2
//! let p1: Vec<f32> = (0..64 * 64).map(|k| if k / 64 == k % 64 { 1.0 } else { 0.01 }).collect();
//! let t = Kron::new(Factor::dense(&p1, 64)?, Factor::hadamard(64)?);
//! let x = vec![0.5f32; 2 * 4096]; // two tokens
//! let (mut q, mut scales) = (vec![0i8; 2 * 4096], vec![0.0f32; 2]);
//! t.apply(&x).int8(&mut q, &mut scales).run()?;
//! // and back: dequantize, then the inverse transform
//! let mut y = vec![0.0f32; 2 * 4096];
//! transformer_kernels::kron::dequantize_int8(&q, &scales, 4096, &mut y)?;
//! let mut back = vec![0.0f32; 2 * 4096];
//! t.inverse()?.apply(&y).output(&mut back).run()?;
//! assert!((back[7] - 0.5).abs() < 0.05);
//! # Ok::<(), transformer_kernels::Error>(())
//! ```

mod factor;
mod quant;
mod variants;

pub use factor::Factor;
pub use quant::{dequantize_int4, dequantize_int8, int4_row_bytes};
pub use variants::{Variant, find, variants};

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::ffi;
use crate::isa::{self, Isa};
use crate::parallel::{Shared, Threads, min_rows, share};

/// A prepared transform `x -> (x * smooth) (P1 kron P2)`: the factors packed
/// for the kernels (P1 transposed), the Hadamard normalisation folded into
/// one output scale. Immutable and `Sync`: share one across threads.
#[derive(Debug, Clone)]
pub struct Kron {
    p1: Factor,
    p2: Factor,
    /// P1^T row-major (None: Hadamard).
    left: Option<Vec<f32>>,
    /// P2 row-major (None: Hadamard).
    right: Option<Vec<f32>>,
    out_scale: f32,
    smooth: Option<Vec<f32>>,
    isa: Option<Isa>,
}

impl Kron {
    /// `P = p1 kron p2`.
    pub fn new(p1: Factor, p2: Factor) -> Kron {
        let left = p1.transposed().dense_entries().map(<[f32]>::to_vec);
        let right = p2.dense_entries().map(<[f32]>::to_vec);
        let mut out_scale = 1.0f64;
        for f in [&p1, &p2] {
            if f.is_hadamard() {
                out_scale /= (f.order() as f64).sqrt();
            }
        }
        Kron {
            p1,
            p2,
            left,
            right,
            out_scale: out_scale as f32,
            smooth: None,
            isa: None,
        }
    }

    /// The normalised Walsh-Hadamard transform of order n (a power of two),
    /// `y = x H / sqrt(n)`, as H_n1 kron H_n2 with n1 = 2^floor(k/2).
    pub fn hadamard(n: usize) -> Result<Kron> {
        Factor::hadamard(n)?;
        let k = n.trailing_zeros();
        let n1 = 1usize << (k / 2);
        Ok(Kron::new(Factor::hadamard(n1)?, Factor::hadamard(n / n1)?))
    }

    /// A per-channel scale applied to x before the transform (SmoothQuant /
    /// FlatQuant smoothing): n finite values.
    pub fn with_smoothing(mut self, smooth: &[f32]) -> Result<Kron> {
        if smooth.len() != self.n() {
            return Err(Error::LengthMismatch {
                what: "smoothing vector",
                expected: self.n(),
                actual: smooth.len(),
            });
        }
        if smooth.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument {
                what: "smoothing vector",
                reason: "holds NaN or inf",
            });
        }
        self.smooth = Some(smooth.to_vec());
        Ok(self)
    }

    /// Force an instruction set (default: [`isa::selected`]).
    pub fn isa(mut self, isa: Isa) -> Kron {
        self.isa = Some(isa);
        self
    }

    /// Token length n = n1 * n2.
    pub fn n(&self) -> usize {
        self.p1.order() * self.p2.order()
    }

    /// The factors (P1, P2).
    pub fn factors(&self) -> (&Factor, &Factor) {
        (&self.p1, &self.p2)
    }

    /// The smoothing vector, if any.
    pub fn smoothing(&self) -> Option<&[f32]> {
        self.smooth.as_deref()
    }

    /// `x -> x (P1 kron P2)^T = x (P1^T kron P2^T)`. Acts on P alone: fails
    /// when a smoothing vector is set (build the transpose first).
    pub fn transposed(&self) -> Result<Kron> {
        self.no_smoothing("transposed")?;
        Ok(Kron::new(self.p1.transposed(), self.p2.transposed()).keep_isa(self.isa))
    }

    /// `x -> x (P1 kron P2)^-1 = x (P1^-1 kron P2^-1)`, the factors inverted
    /// in f64 ([`Factor::inverse`]). Acts on P alone: fails when a smoothing
    /// vector is set.
    pub fn inverse(&self) -> Result<Kron> {
        self.no_smoothing("inverse")?;
        Ok(Kron::new(self.p1.inverse()?, self.p2.inverse()?).keep_isa(self.isa))
    }

    /// The weight that undoes this transform in the next matmul: for W of
    /// `rows` x n (row-major, `y = x W^T`), returns W' with
    /// `((x * s) P) W'^T = x W^T`, i.e. `W' = W diag(1/s) P^-T`, each row
    /// computed in f64 and rounded to f32 once. Offline helper, allocates.
    pub fn fold_into_weight(&self, w: &[f32], rows: usize) -> Result<Vec<f32>> {
        let n = self.n();
        expect_len("weight", w.len(), rows.checked_mul(n))?;
        if let Some(s) = &self.smooth
            && s.contains(&0.0)
        {
            return Err(Error::InvalidArgument {
                what: "smoothing vector",
                reason: "holds a zero: the transform is not invertible",
            });
        }
        let (i1, i2) = (
            self.p1.inverse()?.transposed(),
            self.p2.inverse()?.transposed(),
        );
        let mut out = Vec::with_capacity(w.len());
        for row in w.chunks_exact(n) {
            let x: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(j, &v)| v as f64 / self.smooth.as_ref().map_or(1.0, |s| s[j] as f64))
                .collect();
            out.extend(factor::apply_f64(&i1, &i2, &x).iter().map(|&v| v as f32));
        }
        Ok(out)
    }

    /// f32s of scratch one call needs (two f32 copies of a token and n bytes
    /// for int4 packing, each rounded up to 64 bytes); pass a buffer at least
    /// this long to [`KronCall::workspace`] and reuse it across calls.
    pub fn workspace_floats(&self) -> usize {
        // SAFETY: pure function of its arguments.
        let bytes = unsafe { ffi::tk_kron_workspace_bytes(self.p1.order(), self.p2.order()) };
        bytes.div_ceil(4)
    }

    /// The variant a call on `T` would run.
    pub fn plan<T: Element>(&self) -> Result<&'static Variant> {
        let isa = match self.isa {
            Some(i) => i.require()?,
            None => isa::selected()?,
        };
        find(T::DTYPE, isa).ok_or_else(|| Error::NoVariant {
            kernel: "kron",
            detail: format!("{} {}", T::DTYPE.name(), isa.name()),
        })
    }

    /// A call on the tokens in `x` (a whole number of tokens of n elements).
    /// Ask for outputs with [`KronCall::output`], [`KronCall::int8`],
    /// [`KronCall::int4`], then [`KronCall::run`].
    pub fn apply<'a, T: Element>(&'a self, x: &'a [T]) -> KronCall<'a, T> {
        KronCall {
            t: self,
            x,
            y: None,
            q: None,
            clip: 1.0,
            workspace: None,
            threads: Threads::Single,
        }
    }

    /// The accuracy contract of y: the largest allowed `|y - y_exact|` for an
    /// element whose exact value is `y_exact` and whose magnitude
    /// `mag = (|x * s| (|P1| kron |P2|))` (the same product on absolute
    /// values): `(d1 + d2 + 3) u mag + u_out |y_exact| + tiny_out`, with d the
    /// summation depth of each factor (its order when dense, log2 of it for
    /// Hadamard), `u = 2^-24` and `u_out`, `tiny_out` the output dtype's unit
    /// roundoff and half its smallest subnormal (0 for f32 outputs).
    pub fn error_bound(&self, dtype: Dtype, y_exact: f64, mag: f64) -> f64 {
        let depth = |f: &Factor| {
            if f.is_hadamard() {
                f.order().trailing_zeros() as f64
            } else {
                f.order() as f64
            }
        };
        let u = Dtype::F32.unit_roundoff();
        let (u_out, tiny) = match dtype {
            Dtype::F32 => (0.0, 0.0),
            d => (d.unit_roundoff(), d.min_subnormal() / 2.0),
        };
        (depth(&self.p1) + depth(&self.p2) + 3.0) * u * mag + u_out * y_exact.abs() + tiny
    }

    /// The packed operands the kernels take.
    pub(crate) fn packed(&self) -> Packed<'_> {
        Packed {
            left: self.left.as_deref(),
            right: self.right.as_deref(),
            smooth: self.smooth.as_deref(),
            out_scale: self.out_scale,
        }
    }

    fn keep_isa(mut self, isa: Option<Isa>) -> Kron {
        self.isa = isa;
        self
    }

    fn no_smoothing(&self, what: &'static str) -> Result<()> {
        if self.smooth.is_some() {
            return Err(Error::InvalidArgument {
                what,
                reason: "acts on P alone: derive it before adding the smoothing vector",
            });
        }
        Ok(())
    }
}

/// A transform's operands as the kernels take them: P1^T and P2 (None for
/// a Hadamard factor), the smoothing vector, the output scale.
pub(crate) struct Packed<'a> {
    pub left: Option<&'a [f32]>,
    pub right: Option<&'a [f32]>,
    pub smooth: Option<&'a [f32]>,
    pub out_scale: f32,
}

/// Quantized output buffers of a call.
enum Quantized<'a> {
    Int8(&'a mut [i8], &'a mut [f32]),
    Int4(&'a mut [u8], &'a mut [f32]),
}

/// One call of a [`Kron`] transform; see [`Kron::apply`].
pub struct KronCall<'a, T: Element> {
    t: &'a Kron,
    x: &'a [T],
    y: Option<&'a mut [T]>,
    q: Option<Quantized<'a>>,
    clip: f32,
    workspace: Option<&'a mut [f32]>,
    threads: Threads,
}

impl<'a, T: Element> KronCall<'a, T> {
    /// Write y in the input dtype (same length as x).
    pub fn output(mut self, y: &'a mut [T]) -> Self {
        self.y = Some(y);
        self
    }

    /// Quantize y to int8: n values per token and one scale per token.
    pub fn int8(mut self, q: &'a mut [i8], scales: &'a mut [f32]) -> Self {
        self.q = Some(Quantized::Int8(q, scales));
        self
    }

    /// Quantize y to int4: [`int4_row_bytes`]`(n)` bytes per token, one scale per token.
    pub fn int4(mut self, q: &'a mut [u8], scales: &'a mut [f32]) -> Self {
        self.q = Some(Quantized::Int4(q, scales));
        self
    }

    /// Clipping ratio in (0, 1] (default 1): the scale is `clip * max|y| / qmax`
    /// and values beyond it saturate.
    pub fn clip(mut self, clip: f32) -> Self {
        self.clip = clip;
        self
    }

    /// Scratch of at least [`Kron::workspace_floats`] f32s. Without one the
    /// call allocates it (about 9 bytes per token element).
    pub fn workspace(mut self, ws: &'a mut [f32]) -> Self {
        self.workspace = Some(ws);
        self
    }

    /// Split the tokens across threads (default [`Threads::Single`]); the
    /// result does not depend on it. Each thread needs its own
    /// [`Kron::workspace_floats`] of scratch: a caller workspace shorter than
    /// `threads` of them limits the threads to what it holds.
    pub fn threads(mut self, threads: Threads) -> Self {
        self.threads = threads;
        self
    }

    /// Validate every buffer, then run the kernel. Nothing is written on error.
    pub fn run(self) -> Result<()> {
        let t = self.t;
        let n = t.n();
        let (n1, n2) = (t.p1.order(), t.p2.order());
        if self.x.len() % n != 0 {
            return Err(Error::LengthNotMultiple {
                what: "x",
                len: self.x.len(),
                cols: n,
            });
        }
        let tokens = self.x.len() / n;
        if let Some(y) = &self.y {
            expect_len("y", y.len(), Some(self.x.len()))?;
        }
        if self.y.is_none() && self.q.is_none() {
            return Err(Error::InvalidArgument {
                what: "kron call",
                reason: "asks for no output (use output, int8 or int4)",
            });
        }
        if !(self.clip > 0.0 && self.clip <= 1.0) {
            return Err(Error::InvalidArgument {
                what: "clip",
                reason: "must be in (0, 1]",
            });
        }
        let (q_ptr, q_stride, scales_ptr, bits) = match self.q {
            None => (std::ptr::null_mut(), 0, std::ptr::null_mut(), 8),
            Some(Quantized::Int8(q, s)) => {
                expect_len("int8 values", q.len(), Some(self.x.len()))?;
                expect_len("scales", s.len(), Some(tokens))?;
                (
                    q.as_mut_ptr().cast::<std::ffi::c_void>(),
                    n,
                    s.as_mut_ptr(),
                    8,
                )
            }
            Some(Quantized::Int4(q, s)) => {
                let rb = int4_row_bytes(n);
                expect_len("int4 values", q.len(), tokens.checked_mul(rb))?;
                expect_len("scales", s.len(), Some(tokens))?;
                (
                    q.as_mut_ptr().cast::<std::ffi::c_void>(),
                    rb,
                    s.as_mut_ptr(),
                    4,
                )
            }
        };
        let variant = t.plan::<T>()?;
        let need = t.workspace_floats();
        let chunks = self.threads.count().min(tokens / min_rows(n)).max(1);
        let mut owned = Vec::new();
        let ws: &mut [f32] = match self.workspace {
            Some(w) if w.len() >= need => w,
            Some(w) => {
                return Err(Error::LengthMismatch {
                    what: "workspace (at least)",
                    expected: need,
                    actual: w.len(),
                });
            }
            None => {
                owned.resize(need * chunks, 0.0f32);
                &mut owned
            }
        };
        let chunks = chunks.min(ws.len() / need.max(1)).max(1);
        if tokens == 0 {
            return Ok(());
        }
        let pk = t.packed();
        let p = Shared(ffi::tk_kron_params {
            x: self.x.as_ptr().cast(),
            x_stride: n,
            tokens,
            n1,
            n2,
            smooth: pk.smooth.map_or(std::ptr::null(), |s| s.as_ptr()),
            left: pk.left.map_or(std::ptr::null(), |v| v.as_ptr()),
            right: pk.right.map_or(std::ptr::null(), |v| v.as_ptr()),
            out_scale: pk.out_scale,
            y: self
                .y
                .map_or(std::ptr::null_mut(), |y| y.as_mut_ptr().cast()),
            y_stride: n,
            q: q_ptr,
            q_stride,
            q_scale: scales_ptr,
            q_bits: bits,
            clip: self.clip,
            workspace: ws.as_mut_ptr().cast(),
        });
        share(chunks, tokens, min_rows(n), |slot, start, count| {
            let mut c = p.get();
            let e = std::mem::size_of::<T>();
            c.x = c.x.cast::<u8>().wrapping_add(start * n * e).cast();
            if !c.y.is_null() {
                c.y = c.y.cast::<u8>().wrapping_add(start * n * e).cast();
            }
            if !c.q.is_null() {
                c.q = c.q.cast::<u8>().wrapping_add(start * c.q_stride).cast();
                c.q_scale = c.q_scale.wrapping_add(start);
            }
            c.workspace = c.workspace.cast::<f32>().wrapping_add(slot * need).cast();
            c.tokens = count;
            // SAFETY: x, y, q and the scales were checked against tokens x n
            // above (y and q are exclusive borrows, disjoint from x) and each
            // chunk covers its own tokens; the factors hold n1^2 / n2^2 values
            // and the smoothing n; each chunk's workspace slot holds
            // tk_kron_workspace_bytes (a multiple of 64 bytes, so slots keep
            // the base alignment); the variant runs on this CPU and is T's dtype.
            unsafe { (variant.run)(&c) };
        });
        Ok(())
    }
}

/// `actual == expected`, where `expected` is None when its size overflowed.
fn expect_len(what: &'static str, actual: usize, expected: Option<usize>) -> Result<()> {
    let expected = expected.ok_or(Error::Overflow { what })?;
    crate::shape::expect_len(what, expected, actual)
}
