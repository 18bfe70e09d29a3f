//! Lightning Attention: causal linear attention with a per-head decay
//! (TransNormerLLM; Lightning Attention-2), computed in blocks so that time is
//! linear in the sequence length:
//!
//! ```text
//! S_t = decay[h] * S_{t-1} + k_t^T v_t,    o_t = q_t S_t
//! ```
//!
//! for every (sequence, head), with `S` a `dk x dv` f32 state (zero, or an
//! initial state you pass). Inside a block of 64 tokens the kernels use the
//! masked product `((Q K^T) .* M) V` (`M_ij = decay^(i-j)` for `i >= j`),
//! across blocks the state. Inputs and outputs are f32, f16 or bf16;
//! arithmetic and states are f32.
//!
//! ```
//! use transformer_kernels::lightning::{Lightning, Shape};
//! let (batch, heads, n, d) = (1, 2, 100, 16);
//! let q = vec![0.1f32; batch * heads * n * d];
//! let (k, v) = (q.clone(), q.clone());
//! let mut o = vec![0.0f32; q.len()];
//! let mut state = vec![0.0f32; batch * heads * d * d];
//! let decay = [0.9f32, 1.0];
//! let shape = Shape::batch(batch, n, heads, d, d);
//! Lightning::new()
//!     .forward(&q, &k, &v, &mut o, &decay, shape)
//!     .final_state(&mut state)
//!     .run()?;
//! # Ok::<(), transformer_kernels::Error>(())
//! ```
//!
//! Accuracy (tested for every dtype and ISA): each output element is within
//! [`crate::reference::lightning::error_bound`] of the exact value for the
//! rounded inputs: `(dk + 2B + 2 ceil(n/B) + 8) * 2^-24` times the sum of the
//! absolute values of its terms, plus the output's own rounding.

mod variants;

pub use variants::{Variant, find, variants};

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::ffi;
use crate::isa::{self, Isa};
use crate::parallel::{Shared, Threads, min_rows, share, split_rows};
use crate::shape::expect_len;

/// Largest head dimension (`dk`, `dv`) the kernels take.
pub const MAX_HEAD_DIM: usize = 256;

/// How tokens and heads are laid out in `q`, `k`, `v`, `o` (and their gradients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `[batch, heads, n, d]` (packed: `[heads, tokens, d]`).
    #[default]
    HeadsFirst,
    /// `[batch, n, heads, d]` (packed: `[tokens, heads, d]`).
    TokensFirst,
}

/// The sequences of a call: `batch` sequences of `n` tokens each, or
/// sequences of any lengths packed one after another (the cu_seqlens
/// convention: sequence `b` holds tokens `offsets[b] .. offsets[b + 1]`, with
/// `offsets[0] == 0`); the state restarts at every sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequences<'a> {
    /// `batch` sequences of `n` tokens each.
    Batch {
        /// Number of sequences.
        batch: usize,
        /// Tokens per sequence.
        n: usize,
    },
    /// Sequences of any lengths packed one after another.
    Packed {
        /// Cumulative token offsets, `offsets[0] == 0`.
        offsets: &'a [usize],
    },
}

/// The shape of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape<'a> {
    /// Batched or packed sequences.
    pub seqs: Sequences<'a>,
    /// Heads per token (one decay each).
    pub heads: usize,
    /// Width of q and k (at most [`MAX_HEAD_DIM`]).
    pub dk: usize,
    /// Width of v and o (at most [`MAX_HEAD_DIM`]).
    pub dv: usize,
}

impl<'a> Shape<'a> {
    /// `batch` sequences of `n` tokens.
    pub fn batch(batch: usize, n: usize, heads: usize, dk: usize, dv: usize) -> Shape<'a> {
        Shape {
            seqs: Sequences::Batch { batch, n },
            heads,
            dk,
            dv,
        }
    }

    /// Packed sequences of any lengths (cumulative token offsets).
    pub fn packed(offsets: &'a [usize], heads: usize, dk: usize, dv: usize) -> Shape<'a> {
        Shape {
            seqs: Sequences::Packed { offsets },
            heads,
            dk,
            dv,
        }
    }

    /// Number of sequences.
    pub fn sequences(&self) -> usize {
        match self.seqs {
            Sequences::Batch { batch, .. } => batch,
            Sequences::Packed { offsets } => offsets.len().saturating_sub(1),
        }
    }

    /// Tokens of all sequences together.
    pub fn tokens(&self) -> Result<usize> {
        match self.seqs {
            Sequences::Batch { batch, n } => mul(&[batch, n], "lightning tokens"),
            Sequences::Packed { offsets } => Ok(offsets.last().copied().unwrap_or(0)),
        }
    }

    /// Elements of a `d`-wide tensor (`q`, `k`: `dk`; `v`, `o`: `dv`).
    pub fn len(&self, d: usize) -> Result<usize> {
        mul(&[self.tokens()?, self.heads, d], "lightning tensor length")
    }

    /// Floats of a state buffer: `[sequences, heads, dk, dv]`.
    pub fn state_len(&self) -> Result<usize> {
        mul(
            &[self.sequences(), self.heads, self.dk, self.dv],
            "lightning state length",
        )
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.heads == 0 {
            return Err(Error::ZeroSize {
                what: "lightning heads",
            });
        }
        for (what, d) in [("lightning dk", self.dk), ("lightning dv", self.dv)] {
            if d == 0 || d > MAX_HEAD_DIM {
                return Err(invalid(what, "head dims must be 1 ..= 256"));
            }
        }
        if let Sequences::Packed { offsets } = self.seqs {
            if offsets.first() != Some(&0) {
                return Err(invalid(
                    "lightning offsets",
                    "must start with 0 (one more entry than sequences)",
                ));
            }
            if offsets.windows(2).any(|w| w[1] < w[0]) {
                return Err(invalid("lightning offsets", "must not decrease"));
            }
        }
        // every element index must fit the kernels' signed offsets
        let big = self.len(self.dk.max(self.dv))?;
        if big > isize::MAX as usize / 4 {
            return Err(Error::Overflow {
                what: "lightning tensor length",
            });
        }
        self.state_len()?;
        Ok(())
    }

    pub(crate) fn layout(&self, layout: Layout, d: usize) -> ffi::tk_lightning_layout {
        let (n, packed) = match self.seqs {
            Sequences::Batch { n, .. } => (n, false),
            Sequences::Packed { offsets } => (offsets.last().copied().unwrap_or(0), true),
        };
        let h = self.heads;
        let (batch, head, token) = match layout {
            Layout::HeadsFirst => (h * n * d, n * d, d),
            Layout::TokensFirst => (n * h * d, d, h * d),
        };
        ffi::tk_lightning_layout {
            batch: if packed { 0 } else { batch as isize },
            head: head as isize,
            token: token as isize,
        }
    }

    fn ffi_offsets(&self) -> *const usize {
        match self.seqs {
            Sequences::Batch { .. } => std::ptr::null(),
            Sequences::Packed { offsets } => offsets.as_ptr(),
        }
    }

    fn ffi_n(&self) -> usize {
        match self.seqs {
            Sequences::Batch { n, .. } => n,
            Sequences::Packed { .. } => 0,
        }
    }
}

fn mul(factors: &[usize], what: &'static str) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or(Error::Overflow { what })
}

fn invalid(what: &'static str, reason: &'static str) -> Error {
    Error::InvalidArgument { what, reason }
}

/// Floats of workspace a forward (`backward == false`) or backward call needs.
pub fn workspace_len(dk: usize, dv: usize, backward: bool) -> usize {
    // SAFETY: a pure function of its arguments.
    unsafe { ffi::tk_lightning_workspace_floats(dk, dv, i32::from(backward)) }
}

/// The options of a Lightning attention call: layout and instruction set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lightning {
    layout: Layout,
    isa: Option<Isa>,
    threads: Threads,
}

impl Lightning {
    /// Heads-first layout, the best instruction set of this CPU.
    pub fn new() -> Lightning {
        Lightning::default()
    }

    /// The tensor layout.
    pub fn layout(mut self, layout: Layout) -> Lightning {
        self.layout = layout;
        self
    }

    /// Force an instruction set (default: [`isa::selected`]).
    pub fn isa(mut self, isa: Isa) -> Lightning {
        self.isa = Some(isa);
        self
    }

    /// Split forward, backward and decoding calls across threads (default
    /// [`Threads::Single`]): by sequences, or by heads when there is one
    /// sequence. Each thread needs its own [`workspace_len`]; a caller
    /// workspace shorter than `threads` of them limits the threads to what it
    /// holds. The result does not depend on it.
    pub fn threads(mut self, threads: Threads) -> Lightning {
        self.threads = threads;
        self
    }

    /// The variant a call on `T` would run.
    pub fn plan<T: Element>(&self) -> Result<&'static Variant> {
        let isa = match self.isa {
            Some(i) => i.require()?,
            None => isa::selected()?,
        };
        find(T::DTYPE, isa).ok_or_else(|| Error::NoVariant {
            kernel: "lightning",
            detail: format!("{} {}", T::DTYPE.name(), isa.name()),
        })
    }

    /// A forward (prefill) call: `o` from `q`, `k`, `v` (see [`Shape::len`]
    /// for their lengths) and one decay per head.
    pub fn forward<'a, T: Element>(
        &self,
        q: &'a [T],
        k: &'a [T],
        v: &'a [T],
        o: &'a mut [T],
        decay: &'a [f32],
        shape: Shape<'a>,
    ) -> Forward<'a, T> {
        Forward {
            opts: *self,
            q,
            k,
            v,
            o,
            decay,
            shape,
            state_in: None,
            state_out: None,
            workspace: None,
        }
    }

    /// A backward call: `dq`, `dk`, `dv` from the forward's inputs and
    /// `dout = dL/do`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<'a, T: Element>(
        &self,
        q: &'a [T],
        k: &'a [T],
        v: &'a [T],
        dout: &'a [T],
        grads: Grads<'a, T>,
        decay: &'a [f32],
        shape: Shape<'a>,
    ) -> Backward<'a, T> {
        Backward {
            opts: *self,
            q,
            k,
            v,
            dout,
            grads,
            decay,
            shape,
            state_in: None,
            dstate_out: None,
            dstate_in: None,
            workspace: None,
        }
    }

    /// One decoding step for `batch * heads` sequences at once:
    /// `S <- decay S + k^T v`, `o = q S`. `q`, `k`: `[batch, heads, dk]`;
    /// `v`, `o`: `[batch, heads, dv]`; `state`: `[batch, heads, dk, dv]`,
    /// updated in place (the [`Forward::final_state`] of a prefill). The cost
    /// does not depend on how many tokens the state has seen.
    #[allow(clippy::too_many_arguments)]
    pub fn decode<T: Element>(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        o: &mut [T],
        state: &mut [f32],
        decay: &[f32],
        dk: usize,
        dv: usize,
    ) -> Result<()> {
        let heads = decay.len();
        let count = q.len() / dk.max(1);
        let shape = Shape::batch(count / heads.max(1), 1, heads, dk, dv);
        shape.check()?;
        if count % heads != 0 {
            return Err(invalid(
                "lightning decode q",
                "must hold a whole number of (sequence, head) rows",
            ));
        }
        expect_len("lightning decode q", count * dk, q.len())?;
        expect_len("lightning decode k", count * dk, k.len())?;
        expect_len("lightning decode v", count * dv, v.len())?;
        expect_len("lightning decode o", count * dv, o.len())?;
        expect_len("lightning decode state", shape.state_len()?, state.len())?;
        check_decay(decay, heads)?;
        let variant = self.plan::<T>()?;
        let p = Shared(ffi::tk_lightning_decode_params {
            q: q.as_ptr().cast(),
            k: k.as_ptr().cast(),
            v: v.as_ptr().cast(),
            o: o.as_mut_ptr().cast(),
            state: state.as_mut_ptr(),
            decay: decay.as_ptr(),
            count,
            heads,
            dk,
            dv,
        });
        // Threads take whole sequences (the kernel finds a row's decay as
        // row % heads), or heads of a single sequence (then a part is a
        // sequence of fewer heads, its decay from its first head).
        let by_heads = count / heads.max(1) < 2;
        let unit = if by_heads { 1 } else { heads };
        let units = count / unit.max(1);
        let min_units = min_rows(dk * dv).div_ceil(unit.max(1));
        split_rows(self.threads, units, min_units, |start, n| {
            let mut c = p.get();
            let (r, rows) = (start * unit, n * unit);
            let e = std::mem::size_of::<T>();
            c.q = c.q.cast::<u8>().wrapping_add(r * dk * e).cast();
            c.k = c.k.cast::<u8>().wrapping_add(r * dk * e).cast();
            c.v = c.v.cast::<u8>().wrapping_add(r * dv * e).cast();
            c.o = c.o.cast::<u8>().wrapping_add(r * dv * e).cast();
            c.state = c.state.wrapping_add(r * dk * dv);
            c.count = rows;
            if by_heads {
                c.heads = rows;
                c.decay = c.decay.wrapping_add(r);
            }
            if rows > 0 {
                // SAFETY: lengths checked above (count rows of dk / dv, count
                // states of dk x dv; this part rows r .. r + rows, disjoint
                // from the others'); its decay entries are its rows' heads;
                // dk, dv <= 256 as the kernel's stack buffers need; the CPU
                // runs this ISA (plan); the borrows outlive the call.
                unsafe { (variant.decode)(&c) };
            }
        });
        Ok(())
    }
}

pub(crate) fn check_decay(decay: &[f32], heads: usize) -> Result<()> {
    expect_len("lightning decay", heads, decay.len())?;
    if !decay.iter().all(|l| (f32::MIN_POSITIVE..=1.0).contains(l)) {
        return Err(invalid(
            "lightning decay",
            "every decay must be a normal float in (0, 1]",
        ));
    }
    Ok(())
}

fn check_tensors<T: Element>(
    shape: &Shape,
    decay: &[f32],
    qk: &[(&'static str, &[T])],
    vo: &[(&'static str, usize)],
) -> Result<()> {
    shape.check()?;
    check_decay(decay, shape.heads)?;
    for (what, t) in qk {
        expect_len(what, shape.len(shape.dk)?, t.len())?;
    }
    for &(what, len) in vo {
        expect_len(what, shape.len(shape.dv)?, len)?;
    }
    Ok(())
}

fn opt_state(what: &'static str, s: Option<&[f32]>, shape: &Shape) -> Result<*const f32> {
    match s {
        None => Ok(std::ptr::null()),
        Some(s) => {
            expect_len(what, shape.state_len()?, s.len())?;
            Ok(s.as_ptr())
        }
    }
}

fn opt_state_mut(
    what: &'static str,
    s: &mut Option<&mut [f32]>,
    shape: &Shape,
) -> Result<*mut f32> {
    match s {
        None => Ok(std::ptr::null_mut()),
        Some(s) => {
            expect_len(what, shape.state_len()?, s.len())?;
            Ok(s.as_mut_ptr())
        }
    }
}

/// Runs `f` with the caller's workspace (checked) or a fresh one of
/// `need * chunks` floats, and the number of `need`-float slots it holds (at
/// most `chunks`).
fn with_workspace<R>(
    ws: &mut Option<&mut [f32]>,
    need: usize,
    chunks: usize,
    f: impl FnOnce(*mut f32, usize) -> R,
) -> Result<R> {
    match ws {
        Some(w) => {
            if w.len() < need {
                return Err(Error::LengthMismatch {
                    what: "lightning workspace (at least)",
                    expected: need,
                    actual: w.len(),
                });
            }
            Ok(f(w.as_mut_ptr(), chunks.min(w.len() / need.max(1)).max(1)))
        }
        None => {
            let mut w = vec![0.0f32; need * chunks];
            Ok(f(w.as_mut_ptr(), chunks))
        }
    }
}

/// Where one thread's share of a call starts: the work is split by
/// sequences, or by heads when there is a single sequence (the state of a
/// head range is contiguous only then).
struct Part {
    by_heads: bool,
    heads: usize,
    state_stride: usize,
    qk: ffi::tk_lightning_layout,
    vo: ffi::tk_lightning_layout,
    packed: bool,
}

impl Part {
    fn new(s: &Shape, layout: Layout) -> Part {
        Part {
            by_heads: s.sequences() < 2,
            heads: s.heads,
            state_stride: s.dk * s.dv,
            qk: s.layout(layout, s.dk),
            vo: s.layout(layout, s.dv),
            packed: matches!(s.seqs, Sequences::Packed { .. }),
        }
    }

    /// Runs `run` once per chunk of the call's units (sequences or heads),
    /// across `threads`, each chunk with its own `need`-float workspace slot.
    fn split(
        &self,
        s: &Shape,
        threads: Threads,
        ws: &mut Option<&mut [f32]>,
        need: usize,
        run: impl Fn(&Chunk) + Sync,
    ) -> Result<()> {
        let units = if self.by_heads {
            s.heads
        } else {
            s.sequences()
        };
        let chunks = threads.count().min(units).max(1);
        with_workspace(ws, need, chunks, |w, chunks| {
            let w = Shared(w);
            share(chunks, units, 1, |slot, start, count| {
                let u = start as isize;
                let state = (start * self.state_stride) as isize;
                let (qk, vo, state, decay, offsets) = if self.by_heads {
                    (u * self.qk.head, u * self.vo.head, state, start, 0)
                } else if self.packed {
                    // offsets[b] already points into the packed buffers.
                    (0, 0, state * self.heads as isize, 0, u)
                } else {
                    (
                        u * self.qk.batch,
                        u * self.vo.batch,
                        state * self.heads as isize,
                        0,
                        0,
                    )
                };
                run(&Chunk {
                    qk,
                    vo,
                    state,
                    decay,
                    offsets,
                    count,
                    workspace: w.get().wrapping_add(slot * need),
                })
            });
        })
    }

    /// A chunk's sequence count, head count and packed offsets.
    fn narrow(&self, c: &Chunk, batch: &mut usize, heads: &mut usize, offsets: &mut *const usize) {
        if self.by_heads {
            *heads = c.count;
        } else {
            *offsets = advance::<_, usize>(offsets.cast_mut(), c.offsets).cast_const();
            *batch = c.count;
        }
    }
}

/// One thread's share of a call: element offsets of its first unit in q/k-
/// and v/o-shaped tensors, in the states, in decay and in the packed
/// offsets; its unit count and workspace slot.
struct Chunk {
    qk: isize,
    vo: isize,
    state: isize,
    decay: usize,
    offsets: isize,
    count: usize,
    workspace: *mut f32,
}

/// `p` advanced by `off` elements of T (NULL stays NULL).
fn advance<P, T>(p: *mut P, off: isize) -> *mut P {
    if p.is_null() {
        p
    } else {
        p.cast::<T>().wrapping_offset(off).cast()
    }
}

/// A forward call being set up; [`Forward::run`] checks and runs it.
pub struct Forward<'a, T: Element> {
    opts: Lightning,
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    o: &'a mut [T],
    decay: &'a [f32],
    shape: Shape<'a>,
    state_in: Option<&'a [f32]>,
    state_out: Option<&'a mut [f32]>,
    workspace: Option<&'a mut [f32]>,
}

impl<'a, T: Element> Forward<'a, T> {
    /// Start from these states (`[sequences, heads, dk, dv]`) instead of zero.
    pub fn initial_state(mut self, s: &'a [f32]) -> Self {
        self.state_in = Some(s);
        self
    }

    /// Write the state after the last token of each sequence here, for a
    /// later chunk ([`Forward::initial_state`]) or decoding ([`Lightning::decode`]).
    pub fn final_state(mut self, s: &'a mut [f32]) -> Self {
        self.state_out = Some(s);
        self
    }

    /// Scratch of at least [`workspace_len`]`(dk, dv, false)` floats; without
    /// one the call allocates it (under 1 MB).
    pub fn workspace(mut self, w: &'a mut [f32]) -> Self {
        self.workspace = Some(w);
        self
    }

    /// Checks every argument, then runs; nothing is written on error.
    pub fn run(mut self) -> Result<()> {
        let s = self.shape;
        check_tensors(
            &s,
            self.decay,
            &[("lightning q", self.q), ("lightning k", self.k)],
            &[("lightning v", self.v.len()), ("lightning o", self.o.len())],
        )?;
        let state_in = opt_state("lightning initial state", self.state_in, &s)?;
        let state_out = opt_state_mut("lightning final state", &mut self.state_out, &s)?;
        let variant = self.opts.plan::<T>()?;
        let p = ffi::tk_lightning_params {
            q: self.q.as_ptr().cast(),
            k: self.k.as_ptr().cast(),
            v: self.v.as_ptr().cast(),
            o: self.o.as_mut_ptr().cast(),
            qk: s.layout(self.opts.layout, s.dk),
            vo: s.layout(self.opts.layout, s.dv),
            offsets: s.ffi_offsets(),
            batch: s.sequences(),
            heads: s.heads,
            n: s.ffi_n(),
            dk: s.dk,
            dv: s.dv,
            decay: self.decay.as_ptr(),
            state_in,
            state_out,
            workspace: std::ptr::null_mut(),
        };
        let part = Part::new(&s, self.opts.layout);
        let p = Shared(p);
        let need = workspace_len(s.dk, s.dv, false);
        part.split(&s, self.opts.threads, &mut self.workspace, need, |ch| {
            let mut c = p.get();
            c.q = advance::<_, T>(c.q.cast_mut(), ch.qk);
            c.k = advance::<_, T>(c.k.cast_mut(), ch.qk);
            c.v = advance::<_, T>(c.v.cast_mut(), ch.vo);
            c.o = advance::<_, T>(c.o, ch.vo);
            c.state_in = advance::<_, f32>(c.state_in.cast_mut(), ch.state);
            c.state_out = advance::<_, f32>(c.state_out, ch.state);
            c.decay = c.decay.wrapping_add(ch.decay);
            part.narrow(ch, &mut c.batch, &mut c.heads, &mut c.offsets);
            c.workspace = ch.workspace;
            // SAFETY: every tensor's length matches the shape and layout
            // (checked), offsets are non-decreasing with the last equal to
            // the token count, states hold sequences x heads x dk x dv
            // floats, each chunk's workspace slot holds what the kernel
            // needs, the CPU runs this ISA (plan), o is borrowed mutably
            // apart from the inputs, and the chunks cover disjoint
            // (sequence, head) pairs: disjoint parts of o and of the final
            // state.
            unsafe { (variant.forward)(&c) }
        })
    }
}

/// The gradient outputs of a backward call (shapes of `q`, `k`, `v`).
pub struct Grads<'a, T: Element> {
    /// Gradient with respect to q (written).
    pub dq: &'a mut [T],
    /// Gradient with respect to k (written).
    pub dk: &'a mut [T],
    /// Gradient with respect to v (written).
    pub dv: &'a mut [T],
}

/// A backward call being set up; [`Backward::run`] checks and runs it.
pub struct Backward<'a, T: Element> {
    opts: Lightning,
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    dout: &'a [T],
    grads: Grads<'a, T>,
    decay: &'a [f32],
    shape: Shape<'a>,
    state_in: Option<&'a [f32]>,
    dstate_out: Option<&'a [f32]>,
    dstate_in: Option<&'a mut [f32]>,
    workspace: Option<&'a mut [f32]>,
}

impl<'a, T: Element> Backward<'a, T> {
    /// The initial states the forward started from.
    pub fn initial_state(mut self, s: &'a [f32]) -> Self {
        self.state_in = Some(s);
        self
    }

    /// The gradient of the loss with respect to the forward's final states.
    pub fn dfinal_state(mut self, ds: &'a [f32]) -> Self {
        self.dstate_out = Some(ds);
        self
    }

    /// Write the gradient with respect to the initial states here.
    pub fn dinitial_state(mut self, ds: &'a mut [f32]) -> Self {
        self.dstate_in = Some(ds);
        self
    }

    /// Scratch of at least [`workspace_len`]`(dk, dv, true)` floats; without
    /// one the call allocates it.
    pub fn workspace(mut self, w: &'a mut [f32]) -> Self {
        self.workspace = Some(w);
        self
    }

    /// Checks every argument, then runs; nothing is written on error.
    pub fn run(mut self) -> Result<()> {
        let s = self.shape;
        check_tensors(
            &s,
            self.decay,
            &[
                ("lightning q", self.q),
                ("lightning k", self.k),
                ("lightning dq", self.grads.dq),
                ("lightning dk", self.grads.dk),
            ],
            &[
                ("lightning v", self.v.len()),
                ("lightning dout", self.dout.len()),
                ("lightning dv", self.grads.dv.len()),
            ],
        )?;
        let state_in = opt_state("lightning initial state", self.state_in, &s)?;
        let dstate_out = opt_state("lightning final-state gradient", self.dstate_out, &s)?;
        let dstate_in = opt_state_mut("lightning initial-state gradient", &mut self.dstate_in, &s)?;
        let variant = self.opts.plan::<T>()?;
        let p = ffi::tk_lightning_backward_params {
            q: self.q.as_ptr().cast(),
            k: self.k.as_ptr().cast(),
            v: self.v.as_ptr().cast(),
            dout: self.dout.as_ptr().cast(),
            dq: self.grads.dq.as_mut_ptr().cast(),
            dk: self.grads.dk.as_mut_ptr().cast(),
            dv: self.grads.dv.as_mut_ptr().cast(),
            qk: s.layout(self.opts.layout, s.dk),
            vo: s.layout(self.opts.layout, s.dv),
            offsets: s.ffi_offsets(),
            batch: s.sequences(),
            heads: s.heads,
            n: s.ffi_n(),
            dk_dim: s.dk,
            dv_dim: s.dv,
            decay: self.decay.as_ptr(),
            state_in,
            dstate_out,
            dstate_in,
            workspace: std::ptr::null_mut(),
        };
        let part = Part::new(&s, self.opts.layout);
        let p = Shared(p);
        let need = workspace_len(s.dk, s.dv, true);
        part.split(&s, self.opts.threads, &mut self.workspace, need, |ch| {
            let mut c = p.get();
            c.q = advance::<_, T>(c.q.cast_mut(), ch.qk);
            c.k = advance::<_, T>(c.k.cast_mut(), ch.qk);
            c.dq = advance::<_, T>(c.dq, ch.qk);
            c.dk = advance::<_, T>(c.dk, ch.qk);
            c.v = advance::<_, T>(c.v.cast_mut(), ch.vo);
            c.dout = advance::<_, T>(c.dout.cast_mut(), ch.vo);
            c.dv = advance::<_, T>(c.dv, ch.vo);
            c.state_in = advance::<_, f32>(c.state_in.cast_mut(), ch.state);
            c.dstate_out = advance::<_, f32>(c.dstate_out.cast_mut(), ch.state);
            c.dstate_in = advance::<_, f32>(c.dstate_in, ch.state);
            c.decay = c.decay.wrapping_add(ch.decay);
            part.narrow(ch, &mut c.batch, &mut c.heads, &mut c.offsets);
            c.workspace = ch.workspace;
            // SAFETY: as for the forward; the three gradients are distinct
            // mutable borrows apart from every input, and each chunk writes
            // its own (sequence, head) pairs of them.
            unsafe { (variant.backward)(&c) }
        })
    }
}
