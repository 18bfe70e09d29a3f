//! f64 references for the norm family, one row at a time: the textbook
//! two-pass statistics and the closed-form gradients.

use crate::dtype::{Dtype, Element};
use crate::isa::Isa;
use crate::norm::Kind;

/// The options that shape one row's result.
#[derive(Debug, Clone, Copy)]
pub struct RowSpec {
    /// Which normalization.
    pub kind: Kind,
    /// CRMSNorm: the row holds d - 1 coordinates of a zero-mean d-vector.
    pub crms: bool,
    /// Epsilon added to the variance or mean square.
    pub eps: f64,
    /// Factor applied to the output.
    pub out_scale: f64,
}

/// (mean, rstd) of a row of h (mean 0 for RMSNorm, (0, 1) for Channel).
pub fn stats(spec: &RowSpec, h: &[f64]) -> (f64, f64) {
    let n = h.len() as f64;
    match spec.kind {
        Kind::LayerNorm => {
            let mean = h.iter().sum::<f64>() / n;
            let var = h.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            (mean, 1.0 / (var + spec.eps).sqrt())
        }
        Kind::RmsNorm => {
            let mut sumsq: f64 = h.iter().map(|v| v * v).sum();
            let mut d = n;
            if spec.crms {
                let s: f64 = h.iter().sum();
                sumsq += s * s;
                d += 1.0;
            }
            (0.0, 1.0 / (sumsq / d + spec.eps).sqrt())
        }
        Kind::Channel => (0.0, 1.0),
    }
}

/// y = ((h - mean) * rstd * gamma + beta) * out_scale for one row.
pub fn forward(spec: &RowSpec, h: &[f64], gamma: Option<&[f64]>, beta: Option<&[f64]>) -> Vec<f64> {
    let (mean, rstd) = stats(spec, h);
    h.iter()
        .enumerate()
        .map(|(j, v)| {
            let g = gamma.map_or(1.0, |g| g[j]);
            let b = beta.map_or(0.0, |b| b[j]);
            ((v - mean) * rstd * g + b) * spec.out_scale
        })
        .collect()
}

/// Gradients of one row: (dx, dgamma contribution, dbeta contribution), with
/// `dh` the gradient reaching h through the residual stream, if any.
pub fn backward(
    spec: &RowSpec,
    h: &[f64],
    dy: &[f64],
    gamma: Option<&[f64]>,
    dh: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = h.len() as f64;
    let (mean, rstd) = stats(spec, h);
    let xhat: Vec<f64> = h.iter().map(|v| (v - mean) * rstd).collect();
    let g: Vec<f64> = (0..h.len())
        .map(|j| dy[j] * gamma.map_or(1.0, |g| g[j]) * spec.out_scale)
        .collect();
    let mean_g = g.iter().sum::<f64>() / n;
    let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n;
    let dx = (0..h.len())
        .map(|j| {
            let core = match spec.kind {
                Kind::LayerNorm => rstd * (g[j] - mean_g - xhat[j] * mean_gx),
                Kind::RmsNorm => rstd * (g[j] - xhat[j] * mean_gx),
                Kind::Channel => g[j],
            };
            core + dh.map_or(0.0, |d| d[j])
        })
        .collect();
    let dgamma = (0..h.len())
        .map(|j| dy[j] * xhat[j] * spec.out_scale)
        .collect();
    let dbeta = dy.iter().map(|d| d * spec.out_scale).collect();
    (dx, dgamma, dbeta)
}

/// Symmetric per-row int8 quantization by the textbook formula: scale =
/// max|y| / 127, q = round(y / scale) (0 for a zero row).
pub fn quantize_row(y: &[f64]) -> (Vec<f64>, f64) {
    let amax = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        return (vec![0.0; y.len()], 0.0);
    }
    let scale = amax / 127.0;
    (y.iter().map(|v| (v / scale).round()).collect(), scale)
}

/// One randomised norm call, forward and backward, as the property tests and
/// the fuzz target describe it. Values are f32 and are rounded to the call's
/// dtype (gamma/beta too unless `params_f32`) before the kernel sees them; the
/// reference works on the rounded values.
#[derive(Debug, Clone)]
pub struct Case {
    /// Which normalization.
    pub kind: Kind,
    /// CRMSNorm (rows of d - 1 coordinates).
    pub crms: bool,
    /// Epsilon.
    pub eps: f32,
    /// Output scale.
    pub out_scale: f32,
    /// Row length.
    pub cols: usize,
    /// Input rows.
    pub x: Vec<f32>,
    /// Residual rows, or None.
    pub residual: Option<Vec<f32>>,
    /// With a residual: h written over it (else into a separate buffer).
    pub residual_in_place: bool,
    /// Gain, or None.
    pub gamma: Option<Vec<f32>>,
    /// Bias, or None.
    pub beta: Option<Vec<f32>>,
    /// Gain and bias stay f32 (else rounded to the data dtype).
    pub params_f32: bool,
    /// The call writes y. With neither y nor int8 output the call is the
    /// residual add alone: h and nothing else (no statistics either).
    pub want_y: bool,
    /// The call writes int8 output.
    pub want_q: bool,
    /// Upstream gradient of y (backward), same length as x.
    pub dy: Vec<f32>,
    /// Gradient reaching h through the residual stream (backward), if any.
    pub dh: Option<Vec<f32>>,
    /// Streaming stores (`Norm::nontemporal`): the out-of-cache path, whose
    /// f32 forward is its own instance of the row loop (it requests every
    /// input line twice).
    pub nontemporal: bool,
    /// Where h (the separate buffer, or the residual written in place) and
    /// y start in their allocations, in elements: the pair's relative
    /// alignment picks the streamed rows' peels. The elements before each
    /// must stay unwritten.
    pub out_offsets: [usize; 2],
}

/// |a - b| <= tol, or both NaN (the reference's own NaN, such as 0/0 from a
/// zero row with eps 0, is the expected result); false for one NaN.
fn within(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol || (a.is_nan() && b.is_nan())
}

/// Whether `got` is the dtype's overflow of a value the bound allows: some v
/// with `|v - want| <= tol` lies at or beyond the largest finite value on
/// got's side (the rounded result of such a v may be that infinity). The
/// side matters, not want's sign: a tiny want with a bound past the range
/// (a backward row whose rstd is huge) allows either infinity.
fn overflow_ok<T: Element>(got: f64, want: f64, tol: f64) -> bool {
    let max = match T::DTYPE {
        Dtype::F32 => f32::MAX as f64,
        Dtype::F16 => 65504.0,
        Dtype::Bf16 => half::bf16::MAX.to_f64(),
    };
    got.is_infinite()
        && if got > 0.0 {
            want + tol >= max
        } else {
            want - tol <= -max
        }
}

fn to_t<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&f| T::from_f32(f)).collect()
}
fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|e| e.to_f32() as f64).collect()
}

impl Case {
    fn spec(&self) -> RowSpec {
        RowSpec {
            kind: self.kind,
            crms: self.crms,
            eps: self.eps as f64,
            out_scale: self.out_scale as f64,
        }
    }

    fn params<T: Element>(&self, v: &Option<Vec<f32>>) -> (Option<Vec<T>>, Option<Vec<f64>>) {
        match v {
            None => (None, None),
            Some(v) if self.params_f32 => (None, Some(v.iter().map(|&f| f as f64).collect())),
            Some(v) => {
                let t = to_t::<T>(v);
                let d = to_f64(&t);
                (Some(t), Some(d))
            }
        }
    }

    /// h as the kernel defines it: x + residual in f32, rounded to T.
    fn h<T: Element>(&self, x: &[T]) -> Vec<T> {
        match &self.residual {
            None => x.to_vec(),
            Some(r) => x
                .iter()
                .zip(to_t::<T>(r))
                .map(|(a, b)| T::from_f32(a.to_f32() + b.to_f32()))
                .collect(),
        }
    }
}

/// Runs `case` forward on `isa` with dtype T and compares every requested
/// output (h, y, int8 + scales, mean/rstd) with the f64 reference.
pub fn check_forward<T: Element>(case: &Case, isa: Isa) -> Result<(), String> {
    use crate::norm::{ChannelAffine, Norm, forward_error_bound};
    use crate::reference::{poison, same_bits};
    let cols = case.cols;
    let rows = case.x.len() / cols;
    let x: Vec<T> = to_t(&case.x);
    let (gamma_t, gamma_d) = case.params::<T>(&case.gamma);
    let (beta_t, beta_d) = case.params::<T>(&case.beta);
    let gamma32: Option<Vec<f32>> = case.gamma.clone();
    let beta32: Option<Vec<f32>> = case.beta.clone();
    let affine;
    let mut norm = match case.kind {
        Kind::Channel => {
            affine = ChannelAffine {
                scale: gamma32.clone().unwrap_or(vec![1.0; cols]),
                shift: beta32.clone().unwrap_or(vec![0.0; cols]),
            };
            Norm::channel(&affine)
        }
        Kind::LayerNorm => Norm::layer_norm(),
        Kind::RmsNorm if case.crms => Norm::crms_norm(),
        Kind::RmsNorm => Norm::rms_norm(),
    }
    .eps(case.eps)
    .out_scale(case.out_scale)
    .nontemporal(case.nontemporal)
    .isa(isa);
    let (gamma_d, beta_d) = if case.kind == Kind::Channel {
        (
            Some(
                norm.gain()
                    .map(|w| (0..cols).map(|j| w.get(j)).collect())
                    .unwrap(),
            ),
            Some(
                norm.bias()
                    .map(|w| (0..cols).map(|j| w.get(j)).collect())
                    .unwrap(),
            ),
        )
    } else {
        (gamma_d, beta_d)
    };
    if case.kind != Kind::Channel {
        if case.params_f32 {
            if let Some(g) = &gamma32 {
                norm = norm.gamma(g);
            }
            if let Some(b) = &beta32 {
                norm = norm.beta(b);
            }
        } else {
            norm = with_io_params(norm, gamma_t.as_deref(), beta_t.as_deref());
        }
    }

    let n = x.len();
    let [h_off, y_off] = case.out_offsets;
    let mut residual_buf: Option<Vec<T>> = case.residual.as_ref().map(|r| {
        let mut buf = vec![poison::<T>(); h_off];
        buf.extend(to_t::<T>(r));
        buf
    });
    let mut h_buf = vec![poison::<T>(); h_off + n];
    let mut y_buf = vec![poison::<T>(); y_off + n];
    let mut q = vec![i8::MIN; n];
    let mut scales = vec![f32::NAN; rows];
    let mut mean = vec![f32::NAN; rows];
    let mut rstd = vec![f32::NAN; rows];
    let h_ref = case.h(&x);
    let add_only = !case.want_y && !case.want_q;
    {
        let mut call = norm.forward(&x, cols);
        if !add_only {
            call = call.stats(&mut mean, &mut rstd);
        }
        if let Some(r) = residual_buf.as_mut() {
            call = if case.residual_in_place {
                call.residual(&mut r[h_off..])
            } else {
                call.residual_into(&r[h_off..], &mut h_buf[h_off..])
            };
        }
        if case.want_y {
            call = call.output(&mut y_buf[y_off..]);
        }
        if case.want_q {
            call = call.quantized(&mut q, &mut scales);
        }
        if case.residual.is_none() && add_only {
            return Ok(());
        }
        call.run().map_err(|e| format!("forward failed: {e}"))?;
    }
    let untouched = |buf: &[T], off: usize| buf[..off].iter().all(|&v| same_bits(v, poison::<T>()));
    if !untouched(&h_buf, h_off)
        || !untouched(&y_buf, y_off)
        || residual_buf.as_ref().is_some_and(|r| !untouched(r, h_off))
    {
        return Err("an element before h or y was written".into());
    }
    let y = &y_buf[y_off..];
    if case.residual.is_some() {
        let h_out = if case.residual_in_place {
            &residual_buf.as_ref().unwrap()[h_off..]
        } else {
            &h_buf[h_off..]
        };
        for (i, (a, b)) in h_out.iter().zip(&h_ref).enumerate() {
            if !same_bits(*a, *b) {
                return Err(format!("h[{i}] = {} expected {}", a.to_f32(), b.to_f32()));
            }
        }
    }
    if add_only {
        return Ok(());
    }
    let spec = case.spec();
    let u = Dtype::F32.unit_roundoff();
    for r in 0..rows {
        let hd = to_f64(&h_ref[r * cols..(r + 1) * cols]);
        let (m_ref, rs_ref) = stats(&spec, &hd);
        let y_ref = forward(&spec, &hd, gamma_d.as_deref(), beta_d.as_deref());
        let tol: Vec<f64> = (0..cols)
            .map(|j| {
                let g = gamma_d.as_ref().map_or(1.0, |g| g[j]);
                let b = beta_d.as_ref().map_or(0.0, |b| b[j]);
                forward_error_bound(
                    T::DTYPE,
                    y_ref[j],
                    (hd[j] - m_ref) * rs_ref,
                    g,
                    b,
                    spec.out_scale,
                )
            })
            .collect();
        let sigma = 1.0 / rs_ref;
        if !within(
            mean[r] as f64,
            m_ref,
            crate::norm::STATS_ULPS * u * sigma + u * m_ref.abs(),
        ) {
            return Err(format!("row {r}: mean {} expected {m_ref}", mean[r]));
        }
        if !within(rstd[r] as f64, rs_ref, crate::norm::STATS_ULPS * u * rs_ref) {
            return Err(format!("row {r}: rstd {} expected {rs_ref}", rstd[r]));
        }
        if case.want_y {
            for j in 0..cols {
                let got = y[r * cols + j].to_f32() as f64;
                if !within(got, y_ref[j], tol[j]) && !overflow_ok::<T>(got, y_ref[j], tol[j]) {
                    return Err(format!(
                        "row {r} col {j}: y {got} expected {} (error {:e} > bound {:e})",
                        y_ref[j],
                        (got - y_ref[j]).abs(),
                        tol[j]
                    ));
                }
            }
        }
        if case.want_q && y_ref.iter().any(|v| !v.is_finite()) {
            // the contract for a row with NaN or inf in y: scale NaN, q = 0
            let qs = &q[r * cols..(r + 1) * cols];
            if !scales[r].is_nan() || qs.iter().any(|&v| v != 0) {
                return Err(format!(
                    "row {r}: non-finite y, int8 scale {} (want NaN, q 0)",
                    scales[r]
                ));
            }
        } else if case.want_q {
            let (_, s_ref) = quantize_row(&y_ref);
            let tmax = tol.iter().cloned().fold(0.0, f64::max);
            let s = scales[r] as f64;
            if !within(s, s_ref, tmax / 127.0 + u * s_ref) {
                return Err(format!("row {r}: int8 scale {s} expected {s_ref}"));
            }
            let qs = &q[r * cols..(r + 1) * cols];
            let qmax = qs.iter().map(|v| v.unsigned_abs()).max().unwrap();
            if qmax > 127 || (s > 0.0 && qmax != 127) || (s == 0.0 && qmax != 0) {
                return Err(format!("row {r}: max |q| = {qmax} with scale {s}"));
            }
            for j in 0..cols {
                let deq = qs[j] as f64 * s;
                if !within(deq, y_ref[j], 0.5 * s * (1.0 + 1e-5) + tol[j] * 1.01) {
                    return Err(format!(
                        "row {r} col {j}: q {} * scale {s} = {deq}, y {}",
                        qs[j], y_ref[j]
                    ));
                }
            }
        }
    }
    Ok(())
}

fn with_io_params<'a, T: Element>(
    norm: crate::norm::Norm<'a>,
    g: Option<&'a [T]>,
    b: Option<&'a [T]>,
) -> crate::norm::Norm<'a> {
    use crate::norm::Weights;
    let w = |s: &'a [T]| -> Weights<'a> {
        match T::DTYPE {
            Dtype::F32 => Weights::F32(bytemuck::cast_slice(s)),
            Dtype::F16 => Weights::F16(bytemuck::cast_slice(s)),
            Dtype::Bf16 => Weights::Bf16(bytemuck::cast_slice(s)),
        }
    };
    let mut norm = norm;
    if let Some(g) = g {
        norm = norm.gamma(w(g));
    }
    if let Some(b) = b {
        norm = norm.beta(w(b));
    }
    norm
}

/// Runs `case` forward (for the saved statistics) then backward on `isa` with
/// dtype T, and compares dx, dgamma and dbeta with the f64 reference.
pub fn check_backward<T: Element>(case: &Case, isa: Isa) -> Result<(), String> {
    use crate::norm::{GRAD_SUM_ULPS, GradTerms, Norm, STATS_ULPS, backward_error_bound};
    use crate::reference::poison;
    let cols = case.cols;
    let rows = case.x.len() / cols;
    let x: Vec<T> = to_t(&case.x);
    let h = case.h(&x);
    let dy: Vec<T> = to_t(&case.dy);
    let dh: Option<Vec<T>> = case.dh.as_ref().map(|d| to_t(d));
    let (gamma_t, gamma_d) = case.params::<T>(&case.gamma);
    let gamma32 = case.gamma.clone();
    let mut norm = match case.kind {
        Kind::LayerNorm => Norm::layer_norm(),
        Kind::RmsNorm => Norm::rms_norm(),
        Kind::Channel => return Err("use LayerNorm or RmsNorm cases for backward".into()),
    }
    .eps(case.eps)
    .out_scale(case.out_scale)
    .nontemporal(case.nontemporal)
    .isa(isa);
    if case.params_f32 {
        if let Some(g) = &gamma32 {
            norm = norm.gamma(g);
        }
    } else {
        norm = with_io_params(norm, gamma_t.as_deref(), None);
    }
    let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let mut y = vec![T::from_f32(0.0); h.len()];
    norm.forward(&h, cols)
        .output(&mut y)
        .stats(&mut mean, &mut rstd)
        .run()
        .map_err(|e| format!("forward failed: {e}"))?;
    let mut dx = vec![poison::<T>(); h.len()];
    let mut dgamma = vec![f32::NAN; cols];
    let mut dbeta = vec![f32::NAN; cols];
    let mut call = norm
        .backward(&dy, &h, &mean, &rstd, cols)
        .dx(&mut dx)
        .dgamma(&mut dgamma)
        .dbeta(&mut dbeta);
    if let Some(d) = &dh {
        call = call.residual_grad(d);
    }
    call.run().map_err(|e| format!("backward failed: {e}"))?;

    let spec = case.spec();
    let u = Dtype::F32.unit_roundoff();
    let s = spec.out_scale;
    let mut dg_ref = vec![0.0; cols];
    let mut db_ref = vec![0.0; cols];
    let mut dg_tol = vec![0.0; cols];
    let mut db_tol = vec![0.0; cols];
    for r in 0..rows {
        let span = r * cols..(r + 1) * cols;
        let hd = to_f64(&h[span.clone()]);
        let dyd = to_f64(&dy[span.clone()]);
        let dhd = dh.as_ref().map(|d| to_f64(&d[span.clone()]));
        let (dx_ref, dgr, dbr) = backward(&spec, &hd, &dyd, gamma_d.as_deref(), dhd.as_deref());
        let (m, rs) = stats(&spec, &hd);
        let g: Vec<f64> = (0..cols)
            .map(|j| dyd[j] * gamma_d.as_ref().map_or(1.0, |g| g[j]) * s)
            .collect();
        let xhat: Vec<f64> = hd.iter().map(|v| (v - m) * rs).collect();
        let n = cols as f64;
        let mean_abs_g = g.iter().map(|v| v.abs()).sum::<f64>() / n;
        let mean_abs_gx = g.iter().zip(&xhat).map(|(a, b)| (a * b).abs()).sum::<f64>() / n;
        let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n;
        for j in 0..cols {
            let got = dx[r * cols + j].to_f32() as f64;
            let tol = backward_error_bound(
                T::DTYPE,
                dx_ref[j],
                &GradTerms {
                    rstd: rs,
                    g: g[j],
                    xhat: xhat[j],
                    mean_abs_g,
                    mean_gx,
                    mean_abs_gx,
                    dh: dhd.as_ref().map_or(0.0, |d| d[j]),
                },
            );
            if !within(got, dx_ref[j], tol) && !overflow_ok::<T>(got, dx_ref[j], tol) {
                return Err(format!(
                    "row {r} col {j}: dx {got} expected {} (error {:e} > bound {tol:e})",
                    dx_ref[j],
                    (got - dx_ref[j]).abs()
                ));
            }
            dg_ref[j] += dgr[j];
            db_ref[j] += dbr[j];
            dg_tol[j] += (STATS_ULPS * (xhat[j].abs() + 1.0) + GRAD_SUM_ULPS * xhat[j].abs())
                * u
                * (dyd[j] * s).abs();
            db_tol[j] += GRAD_SUM_ULPS * u * (dyd[j] * s).abs();
        }
    }
    for j in 0..cols {
        let (g, b) = (dgamma[j] as f64, dbeta[j] as f64);
        if !within(g, dg_ref[j], dg_tol[j] + u * dg_ref[j].abs() + 1e-300) {
            return Err(format!("dgamma[{j}] = {g} expected {}", dg_ref[j]));
        }
        if !within(b, db_ref[j], db_tol[j] + u * db_ref[j].abs() + 1e-300) {
            return Err(format!("dbeta[{j}] = {b} expected {}", db_ref[j]));
        }
    }
    Ok(())
}
