//! CUDA Lightning attention against the f64 reference (the GPU bound:
//! tensor-core operands in the I/O dtype): every dtype, head dims on both
//! sides of 16 and of the 64-column slice, not whole 16-byte vectors (the
//! element-by-element staging), chunk edges, layouts, packed
//! sequences, initial and final states; the backward (three passes) with
//! state gradients; decoding; errors that enqueue nothing. Skips with a
//! message without a GPU (TK_REQUIRE_GPU=1 makes that a failure).
#![cfg(feature = "cuda")]

mod gpu;

use std::sync::Arc;

use gpu::gpu;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{
    CudaElement, DeviceLightningBackward, DeviceLightningForward, Kernels,
};
use transformer_kernels::lightning::{Layout, Shape};
use transformer_kernels::reference::lightning::{self as rl, Case, Head, Target};
use transformer_kernels::reference::{poison, uniform_values};
use transformer_kernels::{Dtype, Error};

/// A NaN-filled workspace for the chunk-parallel path, or None (sequential).
fn workspace(
    s: &Arc<CudaStream>,
    case: &Case,
    offsets: &[usize],
    parallel: bool,
) -> Option<cudarc::driver::CudaSlice<f32>> {
    parallel.then(|| {
        let len = Kernels::lightning_workspace_len(&case.shape(offsets)).unwrap();
        s.clone_htod(&vec![f32::NAN; len.max(1)]).unwrap()
    })
}

fn forward_case<T: CudaElement>(
    s: &Arc<CudaStream>,
    k: &Kernels,
    case: &Case,
    parallel: bool,
) -> Result<(), String> {
    let (q, kk, v, s0) = case.inputs::<T>();
    let offsets = case.offsets();
    let shape = case.shape(&offsets);
    let (dq, dk, dv) = (
        s.clone_htod(&q).unwrap(),
        s.clone_htod(&kk).unwrap(),
        s.clone_htod(&v).unwrap(),
    );
    let ds0 = s.clone_htod(&s0).unwrap();
    let mut o = s.clone_htod(&vec![poison::<T>(); v.len()]).unwrap();
    let mut so = s.clone_htod(&vec![f32::NAN; s0.len()]).unwrap();
    let mut ws = workspace(s, case, &offsets, parallel);
    {
        let mut wsv = ws.as_mut().map(|w| w.as_view_mut());
        let (qv, kv, vv, s0v) = (dq.as_view(), dk.as_view(), dv.as_view(), ds0.as_view());
        let (mut ov, mut sov) = (o.as_view_mut(), so.as_view_mut());
        let call = DeviceLightningForward {
            q: &qv,
            k: &kv,
            v: &vv,
            o: &mut ov,
            initial_state: case.state_in.then_some(&s0v),
            final_state: if case.state_out { Some(&mut sov) } else { None },
            workspace: wsv.as_mut(),
        };
        k.lightning_forward(s, case.layout, shape, &case.decay, call)
            .map_err(|e| e.to_string())?;
    }
    let (o, so) = (s.clone_dtoh(&o).unwrap(), s.clone_dtoh(&so).unwrap());
    rl::verify_forward(case, (&q, &kk, &v, &s0), &o, &so, Target::Gpu)
}

fn backward_case<T: CudaElement>(
    s: &Arc<CudaStream>,
    k: &Kernels,
    case: &Case,
    parallel: bool,
) -> Result<(), String> {
    let (q, kk, v, s0) = case.inputs::<T>();
    let (dout, ds) = rl::backward_inputs::<T>(case);
    let offsets = case.offsets();
    let shape = case.shape(&offsets);
    let up = |x: &[T]| s.clone_htod(x).unwrap();
    let (dq_in, dk_in, dv_in, ddo) = (up(&q), up(&kk), up(&v), up(&dout));
    let (ds0_in, dds) = (s.clone_htod(&s0).unwrap(), s.clone_htod(&ds).unwrap());
    let mut gq = up(&vec![poison::<T>(); q.len()]);
    let mut gk = up(&vec![poison::<T>(); kk.len()]);
    let mut gv = up(&vec![poison::<T>(); v.len()]);
    let mut gs0 = s.clone_htod(&vec![f32::NAN; s0.len()]).unwrap();
    let mut ws = workspace(s, case, &offsets, parallel);
    {
        let mut wsv = ws.as_mut().map(|w| w.as_view_mut());
        let (qv, kv, vv, dov) = (
            dq_in.as_view(),
            dk_in.as_view(),
            dv_in.as_view(),
            ddo.as_view(),
        );
        let (s0v, dsv) = (ds0_in.as_view(), dds.as_view());
        let (mut gqv, mut gkv, mut gvv, mut gs0v) = (
            gq.as_view_mut(),
            gk.as_view_mut(),
            gv.as_view_mut(),
            gs0.as_view_mut(),
        );
        let call = DeviceLightningBackward {
            q: &qv,
            k: &kv,
            v: &vv,
            dout: &dov,
            dq: &mut gqv,
            dk: &mut gkv,
            dv: &mut gvv,
            initial_state: case.state_in.then_some(&s0v),
            dfinal_state: case.state_out.then_some(&dsv),
            dinitial_state: if case.state_in { Some(&mut gs0v) } else { None },
            workspace: wsv.as_mut(),
        };
        k.lightning_backward(s, case.layout, shape, &case.decay, call)
            .map_err(|e| e.to_string())?;
    }
    let (gq, gk, gv, gs0) = (
        s.clone_dtoh(&gq).unwrap(),
        s.clone_dtoh(&gk).unwrap(),
        s.clone_dtoh(&gv).unwrap(),
        s.clone_dtoh(&gs0).unwrap(),
    );
    rl::verify_backward(
        case,
        (&q, &kk, &v, &s0),
        (&dout, &ds),
        (&gq, &gk, &gv, &gs0),
        Target::Gpu,
    )
}

/// Every dtype, on both paths: chunk-parallel (with a workspace) and sequential.
fn each_dtype(s: &Arc<CudaStream>, k: &Kernels, case: &Case, backward: bool) {
    for parallel in [true, false] {
        for d in Dtype::ALL {
            let r = match (d, backward) {
                (Dtype::F32, false) => forward_case::<f32>(s, k, case, parallel),
                (Dtype::F16, false) => forward_case::<f16>(s, k, case, parallel),
                (Dtype::Bf16, false) => forward_case::<bf16>(s, k, case, parallel),
                (Dtype::F32, true) => backward_case::<f32>(s, k, case, parallel),
                (Dtype::F16, true) => backward_case::<f16>(s, k, case, parallel),
                (Dtype::Bf16, true) => backward_case::<bf16>(s, k, case, parallel),
            };
            if let Err(e) = r {
                let what = if backward { "backward" } else { "forward" };
                panic!("{d:?} {what} (parallel: {parallel}): {e}\ncase: {case:?}");
            }
        }
    }
}

fn case(lens: &[usize], packed: bool, dk: usize, dv: usize) -> Case {
    Case {
        lens: lens.to_vec(),
        packed,
        decay: vec![1.0, 0.999, 0.9, 0.5],
        dk,
        dv,
        layout: Layout::HeadsFirst,
        state_in: true,
        state_out: true,
        seed: 3,
    }
}

#[test]
fn forward_matches_reference() {
    let Some((s, k)) = gpu() else { return };
    for n in [1usize, 17, 64, 65, 200] {
        for (dk, dv) in [
            (16, 16),
            (20, 36),
            (24, 72),
            (64, 64),
            (128, 128),
            (224, 40),
        ] {
            each_dtype(&s, &k, &case(&[n, n], false, dk, dv), false);
        }
    }
    for layout in [Layout::HeadsFirst, Layout::TokensFirst] {
        for (state_in, state_out) in [(false, false), (true, false), (false, true)] {
            let c = Case {
                layout,
                state_in,
                state_out,
                ..case(&[0, 1, 64, 129, 30], true, 32, 80)
            };
            each_dtype(&s, &k, &c, false);
        }
    }
}

#[test]
fn backward_matches_reference() {
    let Some((s, k)) = gpu() else { return };
    for n in [1usize, 64, 130] {
        for (dk, dv) in [(16, 16), (20, 36), (40, 72), (128, 64)] {
            each_dtype(&s, &k, &case(&[n, n], false, dk, dv), true);
        }
    }
    for layout in [Layout::HeadsFirst, Layout::TokensFirst] {
        for (state_in, state_out) in [(false, false), (true, true), (false, true), (true, false)] {
            let c = Case {
                layout,
                state_in,
                state_out,
                ..case(&[0, 3, 100], true, 32, 16)
            };
            each_dtype(&s, &k, &c, true);
        }
    }
}

/// Sequences of more than 32 chunks (2048 tokens): the 16-bit walk runs in
/// segments whose carries `tk_lightning_carry16` chains; batch and packed
/// (three segments, and a short sequence between), states in and out.
#[test]
fn long_sequences_walk_in_segments() {
    let Some((s, k)) = gpu() else { return };
    each_dtype(&s, &k, &case(&[2200, 2200], false, 32, 40), false);
    let packed = case(&[2113, 5, 4200], true, 32, 16);
    each_dtype(&s, &k, &packed, false);
    each_dtype(&s, &k, &packed, true);
}

/// Decoding steps on the GPU give the recurrence's outputs for the next tokens.
#[test]
fn decode_steps_follow_the_recurrence() {
    let Some((s, k)) = gpu() else { return };
    let (rows, heads, dk, dv, steps) = (6usize, 3usize, 40usize, 72usize, 10usize);
    let decay = [1.0f32, 0.9, 0.5];
    let q = uniform_values(1, steps * rows * dk, 0.5);
    let kk = uniform_values(2, steps * rows * dk, 0.5);
    let v = uniform_values(3, steps * rows * dv, 1.0);
    let mut state = s.clone_htod(&vec![0.0f32; rows * dk * dv]).unwrap();
    let mut o = s.clone_htod(&vec![f32::NAN; rows * dv]).unwrap();
    for t in 0..steps {
        let at = |x: &[f32], d: usize| s.clone_htod(&x[t * rows * d..(t + 1) * rows * d]).unwrap();
        let (qt, kt, vt) = (at(&q, dk), at(&kk, dk), at(&v, dv));
        k.lightning_decode(
            &s,
            &decay,
            dk,
            dv,
            &qt.as_view(),
            &kt.as_view(),
            &vt.as_view(),
            &mut o.as_view_mut(),
            &mut state.as_view_mut(),
        )
        .unwrap();
        let got = s.clone_dtoh(&o).unwrap();
        for r in 0..rows {
            let hist = |x: &[f32], d: usize| {
                (0..=t)
                    .flat_map(|u| {
                        x[(u * rows + r) * d..(u * rows + r + 1) * d]
                            .iter()
                            .map(|&e| f64::from(e))
                    })
                    .collect::<Vec<f64>>()
            };
            let (qh, kh, vh) = (hist(&q, dk), hist(&kk, dk), hist(&v, dv));
            let head = Head {
                q: &qh,
                k: &kh,
                v: &vh,
                n: t + 1,
                dk,
                dv,
                decay: f64::from(decay[r % heads]),
                s0: None,
            };
            let (want, _) = rl::recurrent(&head);
            let (mag, _) = rl::magnitude(&head);
            for e in 0..dv {
                let (g, w) = (f64::from(got[r * dv + e]), want[t * dv + e]);
                let bound = rl::error_bound(mag[t * dv + e], w, dk, t + 1, Some(Dtype::F32));
                assert!(
                    (g - w).abs() <= bound,
                    "step {t} row {r} col {e}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn errors_enqueue_nothing() {
    let Some((s, k)) = gpu() else { return };
    let (n, d) = (8usize, 16usize);
    let x = s.clone_htod(&vec![0.5f32; 2 * n * d]).unwrap();
    let mut o = s.clone_htod(&vec![7.0f32; 2 * n * d]).unwrap();
    let shape = Shape::batch(1, n, 2, d, d);
    for (decay, shape) in [
        (&[1.0f32, 1.5][..], shape),
        (&[1.0][..], shape),
        (&[1.0, 1.0][..], Shape::batch(1, n, 2, 256, d)),
    ] {
        let (xv, mut ov) = (x.as_view(), o.as_view_mut());
        let call = DeviceLightningForward {
            q: &xv,
            k: &xv,
            v: &xv,
            o: &mut ov,
            initial_state: None,
            final_state: None,
            workspace: None,
        };
        let r = k.lightning_forward(&s, Layout::HeadsFirst, shape, decay, call);
        assert!(
            matches!(
                r,
                Err(Error::InvalidArgument { .. } | Error::LengthMismatch { .. })
            ),
            "{r:?}"
        );
    }
    assert!(s.clone_dtoh(&o).unwrap().iter().all(|&v| v == 7.0));
}

/// One small case per dtype: what compute-sanitizer's racecheck runs (the
/// full tests are too slow under it).
#[test]
fn small_case_for_sanitizers() {
    let Some((s, k)) = gpu() else { return };
    let c = Case {
        decay: vec![0.9, 1.0],
        ..case(&[130], false, 40, 72)
    };
    each_dtype(&s, &k, &c, false);
    each_dtype(&s, &k, &c, true);
}

/// The segmented walk and its carry launch, small enough for the sanitizers:
/// one sequence of 2113 tokens (two segments).
#[test]
fn segmented_walk_for_sanitizers() {
    let Some((s, k)) = gpu() else { return };
    let c = Case {
        decay: vec![0.999],
        ..case(&[2113], false, 16, 16)
    };
    each_dtype(&s, &k, &c, false);
    each_dtype(&s, &k, &c, true);
}
