//! Reference Lightning attention for one (sequence, head), in f64: the
//! token-by-token recurrence and the quadratic masked form (two independent
//! oracles that the tests hold against each other), the exact gradient by
//! backpropagation through the recurrence, and the error bound of the kernels.
//!
//! Rows are contiguous: `q`, `k` are `[n, dk]`, `v` `[n, dv]`, states `[dk, dv]`.

/// One (sequence, head) of a problem.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Queries, `[n, dk]`.
    pub q: &'a [f64],
    /// Keys, `[n, dk]`.
    pub k: &'a [f64],
    /// Values, `[n, dv]`.
    pub v: &'a [f64],
    /// Tokens.
    pub n: usize,
    /// Width of q and k.
    pub dk: usize,
    /// Width of v.
    pub dv: usize,
    /// The head's decay.
    pub decay: f64,
    /// Initial state, or zero.
    pub s0: Option<&'a [f64]>,
}

/// Outputs `[n, dv]` and the final state `[dk, dv]`.
pub type Output = (Vec<f64>, Vec<f64>);

/// S_t = decay S_{t-1} + k_t^T v_t, o_t = q_t S_t, one token at a time.
pub fn recurrent(h: &Head) -> Output {
    let (dk, dv) = (h.dk, h.dv);
    let mut s = h.s0.map_or(vec![0.0; dk * dv], <[f64]>::to_vec);
    let mut o = vec![0.0; h.n * dv];
    for t in 0..h.n {
        for c in 0..dk {
            for e in 0..dv {
                s[c * dv + e] = h.decay * s[c * dv + e] + h.k[t * dk + c] * h.v[t * dv + e];
                o[t * dv + e] += h.q[t * dk + c] * s[c * dv + e];
            }
        }
    }
    (o, s)
}

/// o_t = decay^t q_t S_0 + sum_{s <= t} decay^(t-s) (q_t . k_s) v_s, and the
/// final state likewise, term by term (tokens counted from 1).
pub fn quadratic(h: &Head) -> Output {
    let (dk, dv, n) = (h.dk, h.dv, h.n);
    let pow = |m: usize| h.decay.powi(m as i32);
    let mut o = vec![0.0; n * dv];
    for t in 0..n {
        for s in 0..=t {
            let dot: f64 = (0..dk).map(|c| h.q[t * dk + c] * h.k[s * dk + c]).sum();
            for e in 0..dv {
                o[t * dv + e] += pow(t - s) * dot * h.v[s * dv + e];
            }
        }
        if let Some(s0) = h.s0 {
            for e in 0..dv {
                let qs: f64 = (0..dk).map(|c| h.q[t * dk + c] * s0[c * dv + e]).sum();
                o[t * dv + e] += pow(t + 1) * qs;
            }
        }
    }
    let mut fin = vec![0.0; dk * dv];
    for c in 0..dk {
        for e in 0..dv {
            let past: f64 = (0..n)
                .map(|s| pow(n - 1 - s) * h.k[s * dk + c] * h.v[s * dv + e])
                .sum();
            fin[c * dv + e] = past + h.s0.map_or(0.0, |s0| pow(n) * s0[c * dv + e]);
        }
    }
    (o, fin)
}

/// The same sums over absolute values: the scale the rounding error of each
/// output element is measured against.
pub fn magnitude(h: &Head) -> Output {
    let abs = |x: &[f64]| x.iter().map(|v| v.abs()).collect::<Vec<f64>>();
    let (q, k, v) = (abs(h.q), abs(h.k), abs(h.v));
    let s0 = h.s0.map(abs);
    recurrent(&Head {
        q: &q,
        k: &k,
        v: &v,
        s0: s0.as_deref(),
        ..*h
    })
}

/// Gradients (dq, dk, dv, dS_0) of sum(dout .* o) + sum(ds_final .* S_n), by
/// backpropagation through the recurrence: G = dL/dS_t starts at ds_final,
/// each token (last first) adds q_t^T dout_t, gives dk_t = G v_t and
/// dv_t = k_t G, then decays (G <- decay G); what is left is dS_0.
pub fn backward(h: &Head, dout: &[f64], ds_final: Option<&[f64]>) -> [Vec<f64>; 4] {
    let (dk, dv, n) = (h.dk, h.dv, h.n);
    // forward states S_1..S_n (S_0 at index 0)
    let mut states = vec![h.s0.map_or(vec![0.0; dk * dv], <[f64]>::to_vec)];
    for t in 0..n {
        let prev = &states[t];
        let mut s = vec![0.0; dk * dv];
        for c in 0..dk {
            for e in 0..dv {
                s[c * dv + e] = h.decay * prev[c * dv + e] + h.k[t * dk + c] * h.v[t * dv + e];
            }
        }
        states.push(s);
    }
    let (mut dq, mut dkk, mut dvv) = (vec![0.0; n * dk], vec![0.0; n * dk], vec![0.0; n * dv]);
    // g = dL/dS_t from everything after token t's own output
    let mut g = ds_final.map_or(vec![0.0; dk * dv], <[f64]>::to_vec);
    for t in (0..n).rev() {
        let st = &states[t + 1];
        for c in 0..dk {
            for e in 0..dv {
                g[c * dv + e] += h.q[t * dk + c] * dout[t * dv + e];
                dq[t * dk + c] += dout[t * dv + e] * st[c * dv + e];
            }
        }
        for c in 0..dk {
            for e in 0..dv {
                dkk[t * dk + c] += g[c * dv + e] * h.v[t * dv + e];
                dvv[t * dv + e] += h.k[t * dk + c] * g[c * dv + e];
            }
        }
        for x in &mut g {
            *x *= h.decay;
        }
    }
    [dq, dkk, dvv, g]
}

/// Tokens per block of the CPU kernels (tk.h `TK_LIGHTNING_BLOCK`).
pub const BLOCK: usize = 64;

/// The CPU kernels' bound on |computed - exact| for an output element whose
/// magnitude sum ([`magnitude`]) is `mag` and exact value `exact`, with `dk`
/// terms per dot product and `n` tokens, stored in `io` (None: an f32 state):
/// f32 arithmetic contributes (dk + 2B + 2 ceil(n / B) + 8) * 2^-24 * mag
/// (a dot product, a block's sums, one rounding of the state per block, the
/// decay tables), and the output rounding u_io * |exact| plus half the
/// dtype's smallest subnormal (f16 outputs near 6e-8 round to a multiple of it).
pub fn error_bound(mag: f64, exact: f64, dk: usize, n: usize, io: Option<Dtype>) -> f64 {
    let terms = (dk + 2 * BLOCK + 2 * n.div_ceil(BLOCK) + 8) as f64;
    let store = io.map_or(0.0, |d| {
        d.unit_roundoff() * exact.abs() + d.min_subnormal() / 2.0
    });
    terms * f64::from(f32::EPSILON) / 2.0 * mag + store
}

/// The CUDA kernels' bound: [`error_bound`] plus 4 u_io of the magnitude,
/// because the tensor-core operands (the state, the decayed scores and the
/// decayed keys) are rounded to the I/O dtype once per use (f32 I/O: u_io =
/// 2^-24, the same rounding count).
pub fn gpu_error_bound(mag: f64, exact: f64, dk: usize, n: usize, io: Option<Dtype>) -> f64 {
    error_bound(mag, exact, dk, n, io) + 4.0 * io.map_or(0.0, Dtype::unit_roundoff) * mag
}

use crate::dtype::{Dtype, Element};
use crate::isa::Isa;
use crate::lightning::{Grads, Layout, Lightning, Shape};
use crate::reference::{poison, uniform_values};

/// A whole test problem: sequences (packed, or a batch of equal lengths),
/// heads with their decays, head dims, layout, and which states take part.
#[derive(Debug, Clone)]
pub struct Case {
    /// Length of each sequence.
    pub lens: Vec<usize>,
    /// Packed sequences (else a batch of equal lengths).
    pub packed: bool,
    /// One decay per head.
    pub decay: Vec<f32>,
    /// Width of q and k.
    pub dk: usize,
    /// Width of v and o.
    pub dv: usize,
    /// Tensor layout.
    pub layout: Layout,
    /// Whether the call starts from given states.
    pub state_in: bool,
    /// Whether the call writes its final states.
    pub state_out: bool,
    /// Seed of the tensors' values.
    pub seed: u64,
}

impl Case {
    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.decay.len()
    }

    /// Tokens of all sequences.
    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Cumulative offsets of the sequences.
    pub fn offsets(&self) -> Vec<usize> {
        std::iter::once(0)
            .chain(self.lens.iter().scan(0, |a, &l| {
                *a += l;
                Some(*a)
            }))
            .collect()
    }

    /// The kernel's shape for this case (offsets from [`Case::offsets`]).
    pub fn shape<'a>(&self, offsets: &'a [usize]) -> Shape<'a> {
        if self.packed {
            Shape::packed(offsets, self.heads(), self.dk, self.dv)
        } else {
            let n = self.lens.first().copied().unwrap_or(0);
            assert!(
                self.lens.iter().all(|&l| l == n),
                "a batch has equal lengths"
            );
            Shape::batch(self.lens.len(), n, self.heads(), self.dk, self.dv)
        }
    }

    /// Element index of (sequence b, head h, token t, channel c) in a d-wide tensor.
    pub fn index(&self, b: usize, h: usize, t: usize, c: usize, d: usize) -> usize {
        let start: usize = self.lens[..b].iter().sum();
        let (heads, total) = (self.heads(), self.tokens());
        match (self.layout, self.packed) {
            (Layout::HeadsFirst, true) => (h * total + start + t) * d + c,
            (Layout::HeadsFirst, false) => ((b * heads + h) * self.lens[b] + t) * d + c,
            (Layout::TokensFirst, _) => ((start + t) * heads + h) * d + c,
        }
    }

    /// Values of one (sequence, head) of a d-wide tensor, widened to f64.
    pub fn gather<T: Element>(&self, x: &[T], b: usize, h: usize, d: usize) -> Vec<f64> {
        (0..self.lens[b])
            .flat_map(|t| (0..d).map(move |c| (t, c)))
            .map(|(t, c)| f64::from(x[self.index(b, h, t, c, d)].to_f32()))
            .collect()
    }

    /// Deterministic inputs in the dtype: (q, k, v, initial states).
    pub fn inputs<T: Element>(&self) -> (Vec<T>, Vec<T>, Vec<T>, Vec<f32>) {
        let (n, h) = (self.tokens(), self.heads());
        let round = |v: Vec<f32>| v.into_iter().map(T::from_f32).collect::<Vec<T>>();
        let q = round(uniform_values(self.seed, n * h * self.dk, 0.5));
        let k = round(uniform_values(self.seed ^ 0x9E37, n * h * self.dk, 0.5));
        let v = round(uniform_values(self.seed ^ 0x7F4A, n * h * self.dv, 1.0));
        let s = uniform_values(
            self.seed ^ 0x1234,
            self.lens.len() * h * self.dk * self.dv,
            0.5,
        );
        (q, k, v, s)
    }

    fn state_at(&self, s: &[f32], b: usize, h: usize) -> Vec<f64> {
        let sz = self.dk * self.dv;
        let at = (b * self.heads() + h) * sz;
        s[at..at + sz].iter().map(|&x| f64::from(x)).collect()
    }
}

/// One (sequence, head) of a case's inputs, widened to f64.
struct HeadData {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    s0: Vec<f64>,
}

impl HeadData {
    fn gather<T: Element>(
        case: &Case,
        (q, k, v, s0): (&[T], &[T], &[T], &[f32]),
        b: usize,
        h: usize,
    ) -> HeadData {
        HeadData {
            q: case.gather(q, b, h, case.dk),
            k: case.gather(k, b, h, case.dk),
            v: case.gather(v, b, h, case.dv),
            s0: case.state_at(s0, b, h),
        }
    }

    fn head<'a>(&'a self, case: &Case, b: usize, h: usize) -> Head<'a> {
        Head {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            n: case.lens[b],
            dk: case.dk,
            dv: case.dv,
            decay: f64::from(case.decay[h]),
            s0: case.state_in.then_some(&self.s0[..]),
        }
    }
}

/// Checks `got` against `want` element-wise with bound(i); names the first miss.
fn within(
    what: &str,
    got: &[f64],
    want: &[f64],
    bound: impl Fn(usize) -> f64,
) -> Result<(), String> {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let b = bound(i);
        let ok = (g - w).abs() <= b; // false for NaN
        if !ok {
            return Err(format!(
                "{what}[{i}]: got {g} want {w}, error {:.3e} above {b:.3e}",
                (g - w).abs()
            ));
        }
    }
    Ok(())
}

/// Which kernels' bound a check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`error_bound`]; states are exact f32 arithmetic.
    Cpu,
    /// [`gpu_error_bound`]; states too pass through I/O-dtype operands.
    Gpu,
}

impl Target {
    /// The bound of this target for an output of exact value `exact` and magnitude `mag`.
    pub fn bound(self, mag: f64, exact: f64, dk: usize, n: usize, io: Option<Dtype>) -> f64 {
        match self {
            Target::Cpu => error_bound(mag, exact, dk, n, io),
            Target::Gpu => gpu_error_bound(mag, exact, dk, n, io),
        }
    }

    /// The dtype a state's bound uses.
    fn state_io(self, d: Dtype) -> Option<Dtype> {
        (self == Target::Gpu).then_some(d)
    }
}

/// Runs the forward of `case` on `isa` and checks outputs and final states
/// against [`recurrent`] within [`error_bound`].
pub fn check_forward<T: Element>(case: &Case, isa: Isa) -> Result<(), String> {
    let (q, k, v, s0) = case.inputs::<T>();
    let offsets = case.offsets();
    let shape = case.shape(&offsets);
    let mut o = vec![poison::<T>(); v.len()];
    let mut s_out = vec![f32::NAN; s0.len()];
    let lt = Lightning::new().layout(case.layout).isa(isa);
    let mut call = lt.forward(&q, &k, &v, &mut o, &case.decay, shape);
    if case.state_in {
        call = call.initial_state(&s0);
    }
    if case.state_out {
        call = call.final_state(&mut s_out);
    }
    call.run().map_err(|e| e.to_string())?;
    verify_forward(case, (&q, &k, &v, &s0), &o, &s_out, Target::Cpu)
}

/// Checks a forward's outputs `o` (and, with `case.state_out`, `s_out`) on
/// `case`'s inputs (q, k, v, initial states) against [`recurrent`].
pub fn verify_forward<T: Element>(
    case: &Case,
    (q, k, v, s0): (&[T], &[T], &[T], &[f32]),
    o: &[T],
    s_out: &[f32],
    target: Target,
) -> Result<(), String> {
    for b in 0..case.lens.len() {
        for h in 0..case.heads() {
            let data = HeadData::gather(case, (q, k, v, s0), b, h);
            let head = data.head(case, b, h);
            let (want, want_s) = recurrent(&head);
            let (mag, mag_s) = magnitude(&head);
            let got = case.gather(o, b, h, case.dv);
            let n = head.n;
            within(&format!("o (seq {b}, head {h})"), &got, &want, |i| {
                target.bound(mag[i], want[i], case.dk, n, Some(T::DTYPE))
            })?;
            if case.state_out {
                let io = target.state_io(T::DTYPE);
                within(
                    &format!("final state (seq {b}, head {h})"),
                    &case.state_at(s_out, b, h),
                    &want_s,
                    |i| target.bound(mag_s[i], want_s[i], case.dk, n, io),
                )?;
            }
        }
    }
    Ok(())
}

/// The backward's extra inputs for `case`: dout (the dtype) and the
/// final-state gradient.
pub fn backward_inputs<T: Element>(case: &Case) -> (Vec<T>, Vec<f32>) {
    let nv = case.tokens() * case.heads() * case.dv;
    let dout = uniform_values(case.seed ^ 0x55AA, nv, 1.0)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let ds = uniform_values(
        case.seed ^ 0x0F0F,
        case.lens.len() * case.heads() * case.dk * case.dv,
        0.5,
    );
    (dout, ds)
}

/// Runs the backward of `case` on `isa` (dout and, with `state_out`, the
/// final-state gradient from [`backward_inputs`]) and checks every gradient
/// with [`verify_backward`].
pub fn check_backward<T: Element>(case: &Case, isa: Isa) -> Result<(), String> {
    let (q, k, v, s0) = case.inputs::<T>();
    let (dout, ds) = backward_inputs::<T>(case);
    let offsets = case.offsets();
    let shape = case.shape(&offsets);
    let (mut dq, mut dk, mut dv) = (
        vec![poison::<T>(); q.len()],
        vec![poison::<T>(); k.len()],
        vec![poison::<T>(); v.len()],
    );
    let mut ds0 = vec![f32::NAN; s0.len()];
    let lt = Lightning::new().layout(case.layout).isa(isa);
    let grads = Grads {
        dq: &mut dq,
        dk: &mut dk,
        dv: &mut dv,
    };
    let mut call = lt.backward(&q, &k, &v, &dout, grads, &case.decay, shape);
    if case.state_in {
        call = call.initial_state(&s0).dinitial_state(&mut ds0);
    }
    if case.state_out {
        call = call.dfinal_state(&ds);
    }
    call.run().map_err(|e| e.to_string())?;
    verify_backward(
        case,
        (&q, &k, &v, &s0),
        (&dout, &ds),
        (&dq, &dk, &dv, &ds0),
        Target::Cpu,
    )
}

/// Checks gradients against [`backward`] within the target's bound of the
/// gradient's magnitude (the same backward over absolute values), with
/// max(dk, dv) terms; dS_0 is checked when `case.state_in`.
pub fn verify_backward<T: Element>(
    case: &Case,
    (q, k, v, s0): (&[T], &[T], &[T], &[f32]),
    (dout, ds): (&[T], &[f32]),
    (dq, dk, dv, ds0): (&[T], &[T], &[T], &[f32]),
    target: Target,
) -> Result<(), String> {
    let terms = case.dk.max(case.dv);
    for b in 0..case.lens.len() {
        for h in 0..case.heads() {
            let data = HeadData::gather(case, (q, k, v, s0), b, h);
            let head = data.head(case, b, h);
            let (qh, kh, vh, s0h) = (&data.q, &data.k, &data.v, &data.s0);
            let doh = case.gather(dout, b, h, case.dv);
            let dsh = case.state_at(ds, b, h);
            let want = backward(&head, &doh, case.state_out.then_some(&dsh[..]));
            let abs = |x: &[f64]| x.iter().map(|v| v.abs()).collect::<Vec<f64>>();
            let (aq, ak, av, ado) = (abs(qh), abs(kh), abs(vh), abs(&doh));
            let (as0, ads) = (abs(s0h), abs(&dsh));
            let mag = backward(
                &Head {
                    q: &aq,
                    k: &ak,
                    v: &av,
                    s0: case.state_in.then_some(&as0[..]),
                    ..head
                },
                &ado,
                case.state_out.then_some(&ads[..]),
            );
            let n = head.n;
            let got = [
                case.gather(dq, b, h, case.dk),
                case.gather(dk, b, h, case.dk),
                case.gather(dv, b, h, case.dv),
            ];
            for (g, (name, (w, m))) in got
                .iter()
                .zip(["dq", "dk", "dv"].iter().zip(want.iter().zip(&mag)))
            {
                within(&format!("{name} (seq {b}, head {h})"), g, w, |i| {
                    target.bound(m[i], w[i], terms, n, Some(T::DTYPE))
                })?;
            }
            if case.state_in {
                let io = target.state_io(T::DTYPE);
                within(
                    &format!("dS0 (seq {b}, head {h})"),
                    &case.state_at(ds0, b, h),
                    &want[3],
                    |i| target.bound(mag[3][i], want[3][i], terms, n, io),
                )?;
            }
        }
    }
    Ok(())
}
