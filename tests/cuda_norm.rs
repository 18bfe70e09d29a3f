//! CUDA norms against the f64 reference: every dtype, every forward launch
//! shape (row lengths on both sides of each capacity), LayerNorm / RMSNorm /
//! CRMSNorm / per-channel, fused residual, int8 output, saved statistics, and
//! the backward with dgamma/dbeta (bit-identical across runs). Skips with a
//! message without a GPU (TK_REQUIRE_GPU=1 makes that a failure).
#![cfg(feature = "cuda")]

mod gpu;

use std::sync::Arc;

use gpu::gpu;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{
    CudaElement, DeviceNormBackward, DeviceNormForward, DeviceWeights, Kernels, NormShape,
};
use transformer_kernels::norm::{self, ChannelAffine, GradTerms, Kind, Norm};
use transformer_kernels::reference::norm::{self as rn, RowSpec};
use transformer_kernels::reference::{poison, uniform_values};
use transformer_kernels::{Dtype, Error};

const COLS: [usize; 10] = [1, 100, 259, 1024, 2048, 2049, 5000, 16384, 16385, 40000];

fn round<T: CudaElement>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&f| T::from_f32(f)).collect()
}
fn wide<T: CudaElement>(v: &[T]) -> Vec<f64> {
    v.iter().map(|e| e.to_f32() as f64).collect()
}

/// One forward call on the GPU checked element by element (with `shape`, or
/// the one `norm_forward` picks).
#[allow(clippy::too_many_arguments)]
fn forward_case<T: CudaElement>(
    s: &Arc<CudaStream>,
    k: &Kernels,
    kind: Kind,
    crms: bool,
    cols: usize,
    residual: bool,
    offset: f32,
    shape: Option<NormShape>,
) {
    let rows = 3;
    let n = rows * cols;
    let x: Vec<T> = round(
        &uniform_values(1, n, 2.0)
            .iter()
            .map(|v| v + offset)
            .collect::<Vec<_>>(),
    );
    let r: Vec<T> = round(&uniform_values(2, n, 1.0));
    let g32 = uniform_values(3, cols, 1.5);
    let b32 = uniform_values(4, cols, 0.5);
    let affine = ChannelAffine {
        scale: g32.clone(),
        shift: b32.clone(),
    };
    let norm = match (kind, crms) {
        (Kind::LayerNorm, _) => Norm::layer_norm(),
        (Kind::RmsNorm, false) => Norm::rms_norm(),
        (Kind::RmsNorm, true) => Norm::crms_norm(),
        (Kind::Channel, _) => Norm::channel(&affine),
    }
    .out_scale(0.75);
    // LayerNorm and Channel: f32 gamma and beta; RMS: gamma in the I/O dtype
    let g_io: Vec<T> = round(&g32);
    let (gd, bd): (Vec<f64>, Option<Vec<f64>>) = if kind == Kind::RmsNorm {
        (wide(&g_io), None)
    } else {
        (
            g32.iter().map(|&v| v as f64).collect(),
            Some(b32.iter().map(|&v| v as f64).collect()),
        )
    };
    let xd = s.clone_htod(&x).unwrap();
    let mut rd = s.clone_htod(&r).unwrap();
    let mut yd = s.clone_htod(&vec![poison::<T>(); n]).unwrap();
    let mut qd = s.alloc_zeros::<i8>(n).unwrap();
    let mut sd = s.alloc_zeros::<f32>(rows).unwrap();
    let mut md = s.alloc_zeros::<f32>(rows).unwrap();
    let mut vd = s.alloc_zeros::<f32>(rows).unwrap();
    let g32d = s.clone_htod(&g32).unwrap();
    let b32d = s.clone_htod(&b32).unwrap();
    let giod = s.clone_htod(&g_io).unwrap();
    let (xv, g32v, b32v, giov) = (xd.as_view(), g32d.as_view(), b32d.as_view(), giod.as_view());
    let (mut rv, mut yv, mut qv, mut sv, mut mv, mut vv) = (
        rd.as_view_mut(),
        yd.as_view_mut(),
        qd.as_view_mut(),
        sd.as_view_mut(),
        md.as_view_mut(),
        vd.as_view_mut(),
    );
    let mut call = DeviceNormForward::new(&xv);
    call.y = Some(&mut yv);
    call.q = Some((&mut qv, &mut sv));
    call.stats = Some((&mut mv, &mut vv));
    if residual {
        call.residual = Some(&mut rv);
    }
    if kind == Kind::RmsNorm {
        call.gamma = Some(DeviceWeights::Io(&giov));
    } else {
        call.gamma = Some(DeviceWeights::F32(&g32v));
        call.beta = Some(DeviceWeights::F32(&b32v));
    }
    match shape {
        Some(shape) => k.norm_forward_shaped(s, &norm, cols, shape, call),
        None => k.norm_forward(s, &norm, cols, call),
    }
    .unwrap();
    let y: Vec<T> = s.clone_dtoh(&yd).unwrap();
    let q: Vec<i8> = s.clone_dtoh(&qd).unwrap();
    let scales: Vec<f32> = s.clone_dtoh(&sd).unwrap();
    let h_out: Vec<T> = s.clone_dtoh(&rd).unwrap();
    let h: Vec<T> = if residual {
        x.iter()
            .zip(&r)
            .map(|(a, b)| T::from_f32(a.to_f32() + b.to_f32()))
            .collect()
    } else {
        x.clone()
    };
    if residual {
        assert!(
            h.iter()
                .zip(&h_out)
                .all(|(a, b)| a.to_f32().to_bits() == b.to_f32().to_bits()),
            "h differs"
        );
    }
    let spec = RowSpec {
        kind,
        crms,
        eps: norm.epsilon() as f64,
        out_scale: 0.75,
    };
    let what = format!(
        "{} {kind:?} crms={crms} cols={cols} residual={residual}",
        T::DTYPE.name()
    );
    for row in 0..rows {
        let hd = wide(&h[row * cols..(row + 1) * cols]);
        let (m, rs) = rn::stats(&spec, &hd);
        let want = rn::forward(&spec, &hd, Some(&gd), bd.as_deref());
        let (_, s_ref) = rn::quantize_row(&want);
        let mut tmax = 0.0f64;
        for j in 0..cols {
            let tol = norm::forward_error_bound(
                T::DTYPE,
                want[j],
                (hd[j] - m) * rs,
                gd[j],
                bd.as_ref().map_or(0.0, |b| b[j]),
                0.75,
            );
            tmax = tmax.max(tol);
            let got = y[row * cols + j].to_f32() as f64;
            assert!(
                (got - want[j]).abs() <= tol,
                "{what} row {row} col {j}: {got} vs {}",
                want[j]
            );
            let deq = q[row * cols + j] as f64 * scales[row] as f64;
            assert!(
                (deq - want[j]).abs() <= 0.5 * s_ref * 1.0001 + 2.0 * tol,
                "{what} q row {row} col {j}"
            );
        }
        assert!(
            (scales[row] as f64 - s_ref).abs() <= tmax / 127.0 + 1e-7 * s_ref,
            "{what} scale row {row}"
        );
    }
}

#[test]
fn forward_matches_reference() {
    let Some((s, k)) = gpu() else { return };
    for cols in COLS {
        for (kind, crms) in [
            (Kind::LayerNorm, false),
            (Kind::RmsNorm, false),
            (Kind::RmsNorm, true),
            (Kind::Channel, false),
        ] {
            for residual in [false, true] {
                forward_case::<f32>(&s, &k, kind, crms, cols, residual, 0.5, None);
                forward_case::<f16>(&s, &k, kind, crms, cols, residual, 0.5, None);
                forward_case::<bf16>(&s, &k, kind, crms, cols, residual, 0.5, None);
            }
        }
        // the numerics requirement: a large mean over a small spread (f32)
        let x: Vec<f32> = uniform_values(9, 2 * cols, 1.7e-2)
            .iter()
            .map(|v| v + 1e4)
            .collect();
        let xd = s.clone_htod(&x).unwrap();
        let mut yd = s.alloc_zeros::<f32>(x.len()).unwrap();
        let (xv, mut yv) = (xd.as_view(), yd.as_view_mut());
        let mut call = DeviceNormForward::new(&xv);
        call.y = Some(&mut yv);
        k.norm_forward(&s, &Norm::layer_norm().eps(0.0), cols, call)
            .unwrap();
        let y: Vec<f32> = s.clone_dtoh(&yd).unwrap();
        let spec = RowSpec {
            kind: Kind::LayerNorm,
            crms: false,
            eps: 0.0,
            out_scale: 1.0,
        };
        for row in 0..2 {
            let hd: Vec<f64> = x[row * cols..(row + 1) * cols]
                .iter()
                .map(|&v| v as f64)
                .collect();
            if cols == 1 {
                continue; // a single element has no spread: 0/0
            }
            let (m, rs) = rn::stats(&spec, &hd);
            let want = rn::forward(&spec, &hd, None, None);
            for j in 0..cols {
                let tol =
                    norm::forward_error_bound(Dtype::F32, want[j], (hd[j] - m) * rs, 1.0, 0.0, 1.0);
                assert!(
                    (y[row * cols + j] as f64 - want[j]).abs() <= tol,
                    "large mean cols {cols} col {j}"
                );
            }
        }
    }
}

/// Every compiled register shape, including those `norm_forward` does not
/// pick, at rows that fill it, fill half of it (whole chunks: the no-mask
/// path, half the chunks skipped) and end inside a chunk (the masked path);
/// a row longer than the shape is refused with nothing written.
#[test]
fn every_shape_matches_reference() {
    let Some((s, k)) = gpu() else { return };
    for shape in NormShape::all() {
        let NormShape::Rows { group, items } = shape else {
            continue;
        };
        let cap = (group * items) as usize;
        for cols in [cap, cap - 1, cap / 2, cap / 2 + 3] {
            for kind in [Kind::LayerNorm, Kind::RmsNorm] {
                for residual in [false, true] {
                    let sh = Some(shape);
                    forward_case::<f32>(&s, &k, kind, false, cols, residual, 0.5, sh);
                    forward_case::<f16>(&s, &k, kind, false, cols, residual, 0.5, sh);
                    forward_case::<bf16>(&s, &k, kind, false, cols, residual, 0.5, sh);
                }
            }
        }
        let x = s.clone_htod(&vec![1.0f32; cap + 1]).unwrap();
        let mut y = s.clone_htod(&vec![7.0f32; cap + 1]).unwrap();
        let (xv, mut yv) = (x.as_view(), y.as_view_mut());
        let mut call = DeviceNormForward::new(&xv);
        call.y = Some(&mut yv);
        let r = k.norm_forward_shaped(&s, &Norm::rms_norm(), cap + 1, shape, call);
        assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{shape:?}");
        assert!(s.clone_dtoh(&y).unwrap().iter().all(|&v| v == 7.0));
    }
}

fn backward_case<T: CudaElement>(
    s: &Arc<CudaStream>,
    k: &Kernels,
    kind: Kind,
    rows: usize,
    cols: usize,
) {
    let n = rows * cols;
    let h: Vec<T> = round(
        &uniform_values(11, n, 2.0)
            .iter()
            .map(|v| v + 0.3)
            .collect::<Vec<_>>(),
    );
    let dy: Vec<T> = round(&uniform_values(12, n, 1.0));
    let dh: Vec<T> = round(&uniform_values(13, n, 1.0));
    let g32 = uniform_values(14, cols, 1.5);
    let norm = if kind == Kind::LayerNorm {
        Norm::layer_norm()
    } else {
        Norm::rms_norm()
    }
    .out_scale(0.5);
    let hd_ = s.clone_htod(&h).unwrap();
    let dyd = s.clone_htod(&dy).unwrap();
    let dhd = s.clone_htod(&dh).unwrap();
    let gd_ = s.clone_htod(&g32).unwrap();
    let mut md = s.alloc_zeros::<f32>(rows).unwrap();
    let mut vd = s.alloc_zeros::<f32>(rows).unwrap();
    let mut yd = s.clone_htod(&vec![T::from_f32(0.0); n]).unwrap();
    {
        let (hv, gv) = (hd_.as_view(), gd_.as_view());
        let (mut yv, mut mv, mut vv) = (yd.as_view_mut(), md.as_view_mut(), vd.as_view_mut());
        let mut call = DeviceNormForward::new(&hv);
        call.y = Some(&mut yv);
        call.stats = Some((&mut mv, &mut vv));
        call.gamma = Some(DeviceWeights::F32(&gv));
        k.norm_forward(s, &norm, cols, call).unwrap();
    }
    let run = || -> (Vec<T>, Vec<f32>, Vec<f32>) {
        let mut dxd = s.clone_htod(&vec![poison::<T>(); n]).unwrap();
        let mut dgd = s.alloc_zeros::<f32>(cols).unwrap();
        let mut dbd = s.alloc_zeros::<f32>(cols).unwrap();
        let mut wsd = s
            .alloc_zeros::<f32>(Kernels::norm_backward_workspace_len(rows, cols))
            .unwrap();
        let (hv, dyv, dhv, gv, mv, vv) = (
            hd_.as_view(),
            dyd.as_view(),
            dhd.as_view(),
            gd_.as_view(),
            md.as_view(),
            vd.as_view(),
        );
        let (mut dxv, mut dgv, mut dbv, mut wsv) = (
            dxd.as_view_mut(),
            dgd.as_view_mut(),
            dbd.as_view_mut(),
            wsd.as_view_mut(),
        );
        k.norm_backward(
            s,
            &norm,
            cols,
            DeviceNormBackward {
                dy: &dyv,
                h: &hv,
                mean: &mv,
                rstd: &vv,
                dx: &mut dxv,
                dh: Some(&dhv),
                gamma: Some(DeviceWeights::F32(&gv)),
                dgamma: Some(&mut dgv),
                dbeta: Some(&mut dbv),
                workspace: Some(&mut wsv),
            },
        )
        .unwrap();
        (
            s.clone_dtoh(&dxd).unwrap(),
            s.clone_dtoh(&dgd).unwrap(),
            s.clone_dtoh(&dbd).unwrap(),
        )
    };
    let (dx, dg, db) = run();
    let (dx2, dg2, db2) = run();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&dg), bits(&dg2), "dgamma not deterministic");
    assert_eq!(bits(&db), bits(&db2), "dbeta not deterministic");
    assert!(
        dx.iter()
            .zip(&dx2)
            .all(|(a, b)| a.to_f32().to_bits() == b.to_f32().to_bits())
    );
    let spec = RowSpec {
        kind,
        crms: false,
        eps: norm.epsilon() as f64,
        out_scale: 0.5,
    };
    let gdd: Vec<f64> = g32.iter().map(|&v| v as f64).collect();
    let u = Dtype::F32.unit_roundoff();
    let (mut dg_ref, mut db_ref, mut dg_tol) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for row in 0..rows {
        let sp = row * cols..(row + 1) * cols;
        let (hd, dyd64, dhd64) = (
            wide(&h[sp.clone()]),
            wide(&dy[sp.clone()]),
            wide(&dh[sp.clone()]),
        );
        let (want, dgr, dbr) = rn::backward(&spec, &hd, &dyd64, Some(&gdd), Some(&dhd64));
        let (m, rs) = rn::stats(&spec, &hd);
        let g: Vec<f64> = (0..cols).map(|j| dyd64[j] * gdd[j] * 0.5).collect();
        let xhat: Vec<f64> = hd.iter().map(|v| (v - m) * rs).collect();
        let nn = cols as f64;
        // the row's means once (not per element: rows of 1024+ would be quadratic)
        let mean_abs_g = g.iter().map(|v| v.abs()).sum::<f64>() / nn;
        let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / nn;
        let mean_abs_gx = g.iter().zip(&xhat).map(|(a, b)| (a * b).abs()).sum::<f64>() / nn;
        let t = |j: usize| GradTerms {
            rstd: rs,
            g: g[j],
            xhat: xhat[j],
            mean_abs_g,
            mean_gx,
            mean_abs_gx,
            dh: dhd64[j],
        };
        for j in 0..cols {
            let tol = norm::backward_error_bound(T::DTYPE, want[j], &t(j));
            let got = dx[row * cols + j].to_f32() as f64;
            assert!(
                (got - want[j]).abs() <= tol,
                "{} {kind:?} cols {cols} dx row {row} col {j}: {got} vs {}",
                T::DTYPE.name(),
                want[j]
            );
            dg_ref[j] += dgr[j];
            db_ref[j] += dbr[j];
            dg_tol[j] += norm::STATS_ULPS * u * (dyd64[j] * 0.5).abs() * (xhat[j].abs() + 1.0);
        }
    }
    for j in 0..cols {
        assert!(
            (dg[j] as f64 - dg_ref[j]).abs() <= dg_tol[j] + u * dg_ref[j].abs(),
            "dgamma[{j}]"
        );
        assert!(
            (db[j] as f64 - db_ref[j]).abs() <= 2.0 * u * rows as f64 + u * db_ref[j].abs(),
            "dbeta[{j}]"
        );
    }
}

/// A few launches of every block shape, forward (whole and masked rows) and
/// backward (the register groups, the streaming group, the reduction):
/// small enough for compute-sanitizer's racecheck.
#[test]
fn shapes_for_sanitizers() {
    let Some((s, k)) = gpu() else { return };
    for shape in NormShape::all() {
        if let NormShape::Rows { group, items } = shape
            && group > 32
        {
            let cap = (group * items) as usize;
            for cols in [cap, cap / 2 + 3] {
                forward_case::<f16>(&s, &k, Kind::LayerNorm, false, cols, true, 0.5, Some(shape));
            }
        }
    }
    for (rows, cols) in [(40, 1000), (9, 2048), (9, 4000), (5, 8192), (3, 8200)] {
        backward_case::<bf16>(&s, &k, Kind::LayerNorm, rows, cols);
    }
}

#[test]
fn backward_matches_reference_and_is_deterministic() {
    let Some((s, k)) = gpu() else { return };
    // (rows, cols): every backward kernel (register groups of 128 .. 512
    // threads, whole and partial chunks, then the streaming one), with more
    // rows than groups where the partials stay in registers across rows
    let cases = [
        (5, 1),
        (5, 100),
        (2500, 1024),
        (5, 2048),
        (5, 2049),
        (700, 4096),
        (300, 8192),
        (5, 8193),
        (5, 9000),
    ];
    for (rows, cols) in cases {
        for kind in [Kind::LayerNorm, Kind::RmsNorm] {
            backward_case::<f32>(&s, &k, kind, rows, cols);
            backward_case::<f16>(&s, &k, kind, rows, cols);
            backward_case::<bf16>(&s, &k, kind, rows, cols);
        }
    }
}

#[test]
fn errors_enqueue_nothing() {
    let Some((s, k)) = gpu() else { return };
    let xd = s.clone_htod(&vec![1.0f32; 12]).unwrap();
    let xv = xd.as_view();
    // no output
    assert!(matches!(
        k.norm_forward(&s, &Norm::layer_norm(), 4, DeviceNormForward::new(&xv)),
        Err(Error::InvalidArgument { .. })
    ));
    // host weights on a GPU call
    let g = [1.0f32; 4];
    let mut yd = s.alloc_zeros::<f32>(12).unwrap();
    let mut yv = yd.as_view_mut();
    let mut call = DeviceNormForward::new(&xv);
    call.y = Some(&mut yv);
    assert!(
        k.norm_forward(&s, &Norm::layer_norm().gamma(&g), 4, call)
            .is_err()
    );
    // not a multiple of cols
    let mut call = DeviceNormForward::new(&xv);
    call.y = Some(&mut yv);
    assert!(k.norm_forward(&s, &Norm::layer_norm(), 5, call).is_err());
    let y: Vec<f32> = s.clone_dtoh(&yd).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

/// A row holding NaN or inf: y NaN, int8 scale NaN and q 0, other rows
/// untouched (both the register and the streaming shapes).
#[test]
fn non_finite_rows_int8() {
    let Some((s, k)) = gpu() else { return };
    for cols in [100usize, 40000] {
        for bad in [f32::NAN, f32::INFINITY] {
            let mut x = uniform_values(5, 3 * cols, 1.0);
            x[cols + 7] = bad;
            let xd = s.clone_htod(&x).unwrap();
            let mut qd = s.clone_htod(&vec![1i8; x.len()]).unwrap();
            let mut sd = s.alloc_zeros::<f32>(3).unwrap();
            let xv = xd.as_view();
            let (mut qv, mut sv) = (qd.as_view_mut(), sd.as_view_mut());
            let mut call = DeviceNormForward::new(&xv);
            call.q = Some((&mut qv, &mut sv));
            k.norm_forward(&s, &Norm::layer_norm(), cols, call).unwrap();
            let q: Vec<i8> = s.clone_dtoh(&qd).unwrap();
            let sc: Vec<f32> = s.clone_dtoh(&sd).unwrap();
            assert!(
                sc[1].is_nan() && q[cols..2 * cols].iter().all(|&v| v == 0),
                "cols {cols}"
            );
            assert!(sc[0].is_finite() && sc[2].is_finite());
            assert!(q[..cols].iter().any(|&v| v.unsigned_abs() == 127));
        }
    }
}
