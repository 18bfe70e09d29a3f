//! References for the quantized products: the LLM.int8() activation
//! quantization re-done in plain Rust with the kernels' f32 rounding (so its
//! int8 values, scales and outlier set must match bit for bit), exact integer
//! products, and f64 results of the same quantized math and of the
//! unquantized product. Shared by the tests and the fuzz target.

use crate::dtype::{Dtype, Element};
use crate::isa::Isa;
use crate::qgemm::weight_only::QuantizedWeight;
use crate::qgemm::{Backend, Int8Weight, Int8Workspace};

/// The outlier columns of x `[m, k]`: any `|x| >= threshold`, or a NaN.
pub fn outlier_columns(x: &[f32], m: usize, k: usize, threshold: f32) -> Vec<u32> {
    (0..k)
        .filter(|&c| (0..m).any(|i| x[i * k + c].is_nan() || x[i * k + c].abs() >= threshold))
        .map(|c| c as u32)
        .collect()
}

/// One row quantized as the kernels do: (int8 values with outlier columns 0,
/// scale, outlier values). Scale NaN and values 0 when a quantized column is
/// NaN or inf; scale 0 for an all-zero row.
pub fn quantize_row(x: &[f32], outliers: &[u32]) -> (Vec<i8>, f32, Vec<f32>) {
    let mut v = x.to_vec();
    let xo: Vec<f32> = outliers.iter().map(|&c| x[c as usize]).collect();
    for &c in outliers {
        v[c as usize] = 0.0;
    }
    let mut amax = 0.0f32;
    for a in &v {
        let a = a.abs();
        if a > amax || a.is_nan() {
            amax = a;
        }
        if amax.is_nan() {
            break;
        }
    }
    if amax == 0.0 || !amax.is_finite() {
        let scale = if amax == 0.0 { 0.0 } else { f32::NAN };
        return (vec![0; x.len()], scale, xo);
    }
    let inv = 127.0 / amax;
    let q = v
        .iter()
        .map(|&a| (a * inv).round_ties_even().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, amax / 127.0, xo)
}

/// Exact `a w^T` for a `[m, k]` and w `[n, k]` int8.
pub fn int32_products(a: &[i8], w: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|c| a[i * k + c] as i32 * w[j * k + c] as i32)
                .sum();
        }
    }
    out
}

/// What one LLM.int8() output should be: the same quantized math in f64
/// (`y_q`), its epilogue magnitude (for the bound), and the unquantized
/// product (`y`) with its quantization bound.
#[derive(Debug, Clone, Copy)]
pub struct Int8Expected {
    /// The quantized math in f64.
    pub y_q: f64,
    /// Magnitude of the epilogue's terms (for its bound).
    pub mag: f64,
    /// The unquantized product in f64.
    pub y: f64,
    /// Bound of the quantization error against `y`.
    pub quant_bound: f64,
}

/// Expected outputs for x `[m, k]` (as f32), W `[n, k]` (as f32) prepared as
/// `weight`, the outlier columns `outliers` and an optional bias.
pub fn int8_expected(
    x: &[f32],
    w: &[f32],
    weight: &Int8Weight,
    outliers: &[u32],
    bias: Option<&[f32]>,
) -> Vec<Int8Expected> {
    let (n, k) = (weight.n(), weight.k());
    let m = x.len() / k;
    let mut is_outlier = vec![false; k];
    for &c in outliers {
        is_outlier[c as usize] = true;
    }
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        let (q, sx, xo) = quantize_row(xr, outliers);
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let wq = weight.quantized_row(j);
            let sw = weight.scales()[j];
            let acc: i64 = (0..k).map(|c| q[c] as i64 * wq[c] as i64).sum();
            let int_part = acc as f64 * sx as f64 * sw as f64;
            let (mut fp, mut fp_mag) = (0.0f64, 0.0f64);
            for (o, &c) in outliers.iter().enumerate() {
                let t = xo[o] as f64 * wr[c as usize] as f64;
                fp += t;
                fp_mag += t.abs();
            }
            let b = bias.map_or(0.0, |b| b[j] as f64);
            let exact: f64 = (0..k).map(|c| xr[c] as f64 * wr[c] as f64).sum::<f64>() + b;
            out.push(Int8Expected {
                y_q: int_part + fp + b,
                mag: int_part.abs() + fp_mag + b.abs(),
                y: exact,
                quant_bound: Int8Weight::quantization_bound(sx, sw, xr, wr, &is_outlier),
            });
        }
    }
    out
}

/// Checks an LLM.int8() result: the workspace's quantization against
/// [`quantize_row`] bit for bit, then every output against the same quantized
/// math (epilogue bound) and the unquantized product (plus the quantization
/// bound). Err names the first failure.
pub fn check_int8<U: Element>(
    x: &[f32],
    w: &[f32],
    weight: &Int8Weight,
    ws: &Int8Workspace,
    bias: Option<&[f32]>,
    y: &[U],
) -> Result<(), String> {
    let k = weight.k();
    let m = x.len() / k;
    let q: Vec<i8> = (0..m).flat_map(|i| ws.quantized_row(i).to_vec()).collect();
    let quantized = Quantized {
        outliers: ws.outlier_columns(),
        q: &q,
        scales: ws.scales(),
        xo: ws.outlier_values(),
    };
    check_int8_parts(x, w, weight, &quantized, bias, y)
}

/// A call's quantized activations, wherever they were read from.
#[derive(Debug, Clone, Copy)]
pub struct Quantized<'a> {
    /// The outlier columns, ascending.
    pub outliers: &'a [u32],
    /// int8 rows `[m, k]`.
    pub q: &'a [i8],
    /// Row scales (m).
    pub scales: &'a [f32],
    /// Outlier values `[m, outliers.len()]`.
    pub xo: &'a [f32],
}

/// [`check_int8`] on quantized activations given as slices (a device
/// workspace read back, for instance).
pub fn check_int8_parts<U: Element>(
    x: &[f32],
    w: &[f32],
    weight: &Int8Weight,
    quantized: &Quantized<'_>,
    bias: Option<&[f32]>,
    y: &[U],
) -> Result<(), String> {
    let (n, k) = (weight.n(), weight.k());
    let m = x.len() / k;
    let Quantized {
        outliers,
        q: qs,
        scales,
        xo: xos,
    } = *quantized;
    let no = outliers.len();
    for i in 0..m {
        let (q, sx, xo) = quantize_row(&x[i * k..(i + 1) * k], outliers);
        if qs[i * k..(i + 1) * k] != q[..] {
            return Err(format!("row {i}: int8 values differ from the reference"));
        }
        if sx.to_bits() != scales[i].to_bits() && !(sx.is_nan() && scales[i].is_nan()) {
            return Err(format!("row {i}: scale {} vs reference {sx}", scales[i]));
        }
        // the same bits, except that any NaN matches any NaN: a NaN's payload
        // is not part of the contract (CUDA widens every f16 NaN to
        // 0x7fffffff, `half` keeps the payload)
        let got = &xos[i * no..(i + 1) * no];
        let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        if let Some((c, (a, b))) = got
            .iter()
            .zip(&xo)
            .enumerate()
            .find(|(_, (a, b))| !same(a, b))
        {
            return Err(format!(
                "row {i}: gathered outlier value {c} is {a} ({:#x}), reference {b} ({:#x})",
                a.to_bits(),
                b.to_bits()
            ));
        }
    }
    let exp = int8_expected(x, w, weight, outliers, bias);
    for (idx, (e, v)) in exp.iter().zip(y).enumerate() {
        let got = v.to_f32() as f64;
        let (i, j) = (idx / n, idx % n);
        if scales[i].is_nan() {
            // a NaN or inf among the row's quantized columns: the whole row is NaN
            if !got.is_nan() {
                return Err(format!("y[{i},{j}] = {got}, expected NaN (row scale NaN)"));
            }
            continue;
        }
        if !e.y_q.is_finite() {
            // a NaN or inf among the outlier values reaches the output as such
            if !(got.is_nan() || got == e.y_q) {
                return Err(format!("y[{i},{j}] = {got}, expected {}", e.y_q));
            }
            continue;
        }
        let bound = Int8Weight::epilogue_bound(U::DTYPE, outliers.len(), e.mag, e.y_q);
        if (got - e.y_q).abs().is_nan() || (got - e.y_q).abs() > bound {
            return Err(format!(
                "y[{i},{j}] = {got} vs quantized math {} (bound {bound:.3e})",
                e.y_q
            ));
        }
        let total = bound + e.quant_bound;
        if (got - e.y).abs().is_nan() || (got - e.y).abs() > total {
            return Err(format!(
                "y[{i},{j}] = {got} vs unquantized {} (bound {total:.3e})",
                e.y
            ));
        }
    }
    Ok(())
}

/// Checks a weight-only result y `[m, n]` for x `[m, k]` against the f64
/// product with the dequantized weights.
pub fn check_weight_only<T: Element>(
    x: &[T],
    w: &QuantizedWeight,
    bias: Option<&[f32]>,
    y: &[T],
) -> Result<(), String> {
    let (n, k) = (w.n(), w.k());
    let m = x.len() / k;
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0.0f64, 0.0f64);
            for c in 0..k {
                let t = x[i * k + c].to_f32() as f64 * w.dequantized(j, c) as f64;
                s += t;
                mag += t.abs();
            }
            if let Some(b) = bias {
                s += b[j] as f64;
                mag += (b[j] as f64).abs();
            }
            let got = y[i * n + j].to_f32() as f64;
            let bound = w.error_bound(T::DTYPE, mag, s);
            if (got - s).abs().is_nan() || (got - s).abs() > bound {
                return Err(format!("y[{i},{j}] = {got} vs {s} (bound {bound:.3e})"));
            }
        }
    }
    Ok(())
}

/// Whether the int8 VNNI path can split every group of X exactly (it then
/// runs; otherwise it declines): per group, some nd in 4..=6 such that every
/// x is a multiple of `2^(e + 3 - 8 nd)`, e the exponent of the group's max
/// |x| (wgemv_vnni.c); no NaN or inf.
pub fn vnni_splits<T: Element>(x: &[T], group: usize) -> bool {
    x.chunks(group).all(|g| {
        let v: Vec<f64> = g.iter().map(|a| a.to_f32() as f64).collect();
        let amax = v.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        if v.iter().any(|a| !a.is_finite()) {
            return false;
        }
        if amax == 0.0 {
            return true;
        }
        let e = ((amax.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        (4..=6).any(|nd| {
            let scale = 2f64.powi(8 * nd - 3 - e);
            v.iter().all(|a| (a * scale).fract() == 0.0)
        })
    })
}

/// The exact digit paths' contract (VNNI, AVX2 int4: exact group sums, f64
/// after, one rounding to y):
/// `|y - y_exact| <= (2^-24 + u_out) |y_exact| + 2^-40 mag + tiny_out`
/// with `mag = sum_g |s_g sum x q|`, y_exact the product of the same
/// quantized math in f64 (the 2^-40 covers the f64 reference's own sums).
pub fn check_weight_only_exact<T: Element>(
    x: &[T],
    w: &QuantizedWeight,
    bias: Option<&[f32]>,
    y: &[T],
) -> Result<(), String> {
    let (n, k, g) = (w.n(), w.k(), w.group());
    let m = x.len() / k;
    let (u_out, tiny) = match T::DTYPE {
        Dtype::F32 => (0.0, 0.0),
        d => (d.unit_roundoff(), d.min_subnormal()),
    };
    let u = Dtype::F32.unit_roundoff() + u_out;
    for i in 0..m {
        for j in 0..n {
            let (mut want, mut mag) = (0.0f64, 0.0f64);
            for gi in 0..k / g {
                let s: f64 = (gi * g..(gi + 1) * g)
                    .map(|c| x[i * k + c].to_f32() as f64 * w.value(j, c) as f64)
                    .sum();
                want += w.scale(j, gi) as f64 * s;
                mag += (w.scale(j, gi) as f64 * s).abs();
            }
            want += bias.map_or(0.0, |b| b[j] as f64);
            let got = y[i * n + j].to_f32() as f64;
            let bound = u * want.abs() + 2f64.powi(-40) * mag + tiny;
            if (got - want).abs().is_nan() || (got - want).abs() > bound {
                return Err(format!(
                    "exact digit path: y[{i},{j}] = {got} vs {want} (bound {bound:.3e})"
                ));
            }
        }
    }
    Ok(())
}

/// The dtype's values of `v` rounded, back as f32 (what a kernel on `T` sees).
pub fn round_to<T: Element>(v: &[f32]) -> (Vec<T>, Vec<f32>) {
    let t: Vec<T> = v.iter().map(|&a| T::from_f32(a)).collect();
    let f = t.iter().map(|a| a.to_f32()).collect();
    (t, f)
}

/// Runs one LLM.int8() product (x rounded to T, y as U, on `backend` and the
/// quantizer of `isa`) and checks it with [`check_int8`], then its int32 part
/// bit for bit against [`int32_products`]. Ok holds the outlier columns used.
pub fn run_and_check<T: Element, U: Element>(
    x32: &[f32],
    w32: &[f32],
    weight: &Int8Weight,
    bias: Option<&[f32]>,
    backend: Backend,
    isa: Isa,
) -> Result<Vec<u32>, String> {
    let (xt, xf) = round_to::<T>(x32);
    let (n, k) = (weight.n(), weight.k());
    let m = x32.len() / k;
    let mut ws = Int8Workspace::new(weight, m, k).map_err(|e| e.to_string())?;
    let mut y = vec![super::poison::<U>(); m * n];
    let mut call = weight.matmul(&mut ws).backend(backend).isa(isa);
    if let Some(b) = bias {
        call = call.bias(b);
    }
    call.run(&xt, &mut y).map_err(|e| e.to_string())?;
    check_int8(&xf, w32, weight, &ws, bias, &y)?;
    let mut acc = vec![0i32; m * n];
    weight
        .int32_products(&mut ws, backend, &mut acc)
        .map_err(|e| e.to_string())?;
    let a: Vec<i8> = (0..m).flat_map(|i| ws.quantized_row(i).to_vec()).collect();
    let wq: Vec<i8> = (0..n)
        .flat_map(|j| weight.quantized_row(j).to_vec())
        .collect();
    if acc != int32_products(&a, &wq, m, n, k) {
        return Err("int32 products differ from the exact integers".into());
    }
    Ok(ws.outlier_columns().to_vec())
}

/// Runs one weight-only product (x rounded to T) on `isa` and checks it with
/// [`check_weight_only`]; where the call may take the AMX-BF16 tiles, the
/// VNNI path or the AVX2 int4 path, once with them and once on the SIMD
/// kernel (the digit paths' results also against the exact bound where
/// their split applies).
pub fn run_and_check_weight_only<T: Element>(
    x32: &[f32],
    w: &QuantizedWeight,
    bias: Option<&[f32]>,
    isa: Isa,
) -> Result<(), String> {
    let (x, _) = round_to::<T>(x32);
    let m = x.len() / w.k();
    // Every qualifying call also runs with its AMX / VNNI / AVX2 int4 path
    // turned off.
    let amx_too = w.amx_applies(m, isa);
    let digits_too = w.vnni_applies(m, isa) || w.int4_avx2_applies(m, isa);
    let paths: &[bool] = if amx_too || digits_too {
        &[true, false]
    } else {
        &[true]
    };
    for &fast in paths {
        let mut y = vec![super::poison::<T>(); m * w.n()];
        let mut ws = vec![0.0f32; w.workspace_floats(m)];
        let mut call = w
            .gemv(&x)
            .isa(isa)
            .workspace(&mut ws)
            .amx(fast)
            .vnni(fast)
            .int4_avx2(fast);
        if let Some(b) = bias {
            call = call.bias(b);
        }
        call.run(&mut y).map_err(|e| e.to_string())?;
        check_weight_only(&x, w, bias, &y)
            .map_err(|e| format!("amx/vnni/int4 avx2 path {fast}: {e}"))?;
        if fast && digits_too && w.group() <= 1 << 15 && vnni_splits(&x, w.group()) {
            check_weight_only_exact(&x, w, bias, &y)?;
        }
    }
    Ok(())
}
