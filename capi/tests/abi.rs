//! The C ABI gives the Rust API's results bit for bit (every family, every
//! dtype), and refuses bad calls with the right status, a message, and
//! nothing written.

use std::ffi::{CStr, c_void};
use std::ptr::{null, null_mut};

use half::{bf16, f16};
use tfk::*;
use transformer_kernels::kron::{Factor, Kron};
use transformer_kernels::lightning::{Grads, Lightning, Shape};
use transformer_kernels::norm::{Norm, Weights};
use transformer_kernels::qgemm::weight_only::QuantizedWeight;
use transformer_kernels::qgemm::{Backend, Int8Weight, Int8Workspace, Outliers};
use transformer_kernels::reference::uniform_values;
use transformer_kernels::softmax::Softmax;
use transformer_kernels::{Dtype, Element};

fn code(d: Dtype) -> tfk_dtype {
    match d {
        Dtype::F32 => TFK_F32,
        Dtype::F16 => TFK_F16,
        Dtype::Bf16 => TFK_BF16,
    }
}

fn values<T: Element>(seed: u64, n: usize, amp: f32) -> Vec<T> {
    uniform_values(seed, n, amp)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

fn bits<T: Element>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// A gain vector of the data's dtype as the Rust API takes it.
fn weights<T: Element>(v: &[T]) -> Weights<'_> {
    match T::DTYPE {
        Dtype::F32 => Weights::F32(bytemuck::cast_slice(v)),
        Dtype::F16 => Weights::F16(bytemuck::cast_slice(v)),
        Dtype::Bf16 => Weights::Bf16(bytemuck::cast_slice(v)),
    }
}

/// Bit-for-bit equality, reporting the first difference (not the whole buffers).
fn assert_same<T: Element>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| bits(&got[i..i + 1]) != bits(&want[i..i + 1])) {
        panic!(
            "{what}: element {i} is {} not {}",
            got[i].to_f32(),
            want[i].to_f32()
        );
    }
}

fn last_error() -> String {
    // SAFETY: tfk_last_error returns a valid C string.
    unsafe { CStr::from_ptr(tfk_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn cv<T>(v: &[T]) -> *const c_void {
    v.as_ptr().cast()
}

fn mv<T>(v: &mut [T]) -> *mut c_void {
    v.as_mut_ptr().cast()
}

fn softmax_matches<T: Element>() {
    let (rows, cols) = (5, 77);
    let x = values::<T>(1, rows * cols, 6.0);
    for log in [false, true] {
        let mut want = vec![T::from_f32(0.0); x.len()];
        Softmax::new()
            .scale(0.7)
            .log(log)
            .run(&x, &mut want, cols)
            .unwrap();
        let mut y = vec![T::from_f32(0.0); x.len()];
        let s = unsafe { tfk_softmax(code(T::DTYPE), cv(&x), mv(&mut y), rows, cols, 0.7, log) };
        assert_eq!(s, TFK_OK, "{}", last_error());
        assert_same(&y, &want, "y");
        // In place: x == y.
        let mut xy = x.clone();
        let p = mv(&mut xy);
        assert_eq!(
            unsafe { tfk_softmax(code(T::DTYPE), p, p, rows, cols, 0.7, log) },
            TFK_OK
        );
        assert_same(&xy, &want, "xy");
    }
}

#[test]
fn softmax_equals_the_rust_api() {
    softmax_matches::<f32>();
    softmax_matches::<f16>();
    softmax_matches::<bf16>();
}

#[test]
fn bad_calls_are_refused_and_write_nothing() {
    let (rows, cols) = (4, 16);
    let mut buf = vec![1.0f32; rows * cols + 8];
    let sentinel = buf.clone();
    let p = buf.as_mut_ptr();
    // Partial overlap of x and y.
    let s = unsafe { tfk_softmax(TFK_F32, p.cast(), p.add(3).cast(), rows, cols, 1.0, false) };
    assert_eq!(s, TFK_ERROR_POINTER);
    assert!(last_error().contains("overlaps"), "{}", last_error());
    assert_eq!(buf, sentinel);
    // Misaligned f32 pointer.
    let mut y = vec![7.0f32; rows * cols + 1];
    let odd = unsafe { y.as_mut_ptr().cast::<u8>().add(1) };
    let x = vec![0.5f32; rows * cols];
    let s = unsafe { tfk_softmax(TFK_F32, cv(&x), odd.cast(), rows, cols, 1.0, false) };
    assert_eq!(s, TFK_ERROR_POINTER);
    assert!(last_error().contains("aligned"), "{}", last_error());
    assert!(y.iter().all(|&v| v == 7.0));
    // NULL input, unknown dtype, zero columns, NaN scale.
    let s = unsafe { tfk_softmax(TFK_F32, null(), mv(&mut y), rows, cols, 1.0, false) };
    assert_eq!(s, TFK_ERROR_POINTER);
    let s = unsafe { tfk_softmax(3, cv(&x), mv(&mut y), rows, cols, 1.0, false) };
    assert_eq!(s, TFK_ERROR_INVALID_ARGUMENT);
    assert!(last_error().contains("dtype"));
    let s = unsafe { tfk_softmax(TFK_F32, cv(&x), mv(&mut y), rows, 0, 1.0, false) };
    assert_eq!(s, TFK_ERROR_ZERO_SIZE, "{}", last_error());
    let s = unsafe { tfk_softmax(TFK_F32, cv(&x), mv(&mut y), rows, cols, f32::NAN, false) };
    assert_eq!(s, TFK_ERROR_INVALID_ARGUMENT);
    let s = unsafe { tfk_softmax(TFK_F32, cv(&x), mv(&mut y), usize::MAX, 2, 1.0, false) };
    assert_eq!(s, TFK_ERROR_OVERFLOW);
    assert!(y.iter().all(|&v| v == 7.0));
    // Bad enums and NULL handles.
    assert_eq!(tfk_set_isa(9), TFK_ERROR_INVALID_ARGUMENT);
    assert_eq!(
        unsafe { tfk_norm_init(null_mut(), TFK_NORM_RMS) },
        TFK_ERROR_POINTER
    );
    let mut n = std::mem::MaybeUninit::<tfk_norm>::uninit();
    assert_eq!(
        unsafe { tfk_norm_init(n.as_mut_ptr(), 17) },
        TFK_ERROR_INVALID_ARGUMENT
    );
    let s = unsafe {
        tfk_kron_apply(
            null(),
            TFK_F32,
            cv(&x),
            1,
            mv(&mut y),
            null_mut(),
            null_mut(),
            null_mut(),
            1.0,
            null_mut(),
            0,
        )
    };
    assert_eq!(s, TFK_ERROR_POINTER);
    assert_eq!(unsafe { tfk_kron_size(null()) }, 0);
    unsafe { tfk_kron_free(null_mut()) };
}

#[test]
fn the_last_error_belongs_to_the_thread() {
    let s = unsafe { tfk_softmax(TFK_F32, null(), null_mut(), 1, 4, 1.0, false) };
    assert_eq!(s, TFK_ERROR_POINTER);
    let here = last_error();
    let there = std::thread::spawn(|| {
        let fresh = last_error();
        let s = unsafe { tfk_softmax(5, null(), null_mut(), 1, 4, 1.0, false) };
        (fresh, s, last_error())
    })
    .join()
    .unwrap();
    assert_eq!(there.0, "");
    assert_eq!(there.1, TFK_ERROR_INVALID_ARGUMENT);
    assert_ne!(there.2, here);
    assert_eq!(last_error(), here);
}

fn norm_matches<T: Element>() {
    let (rows, cols) = (3, 200);
    let x = values::<T>(2, rows * cols, 3.0);
    let r0 = values::<T>(3, rows * cols, 3.0);
    let gamma = values::<T>(4, cols, 1.5);
    let beta = uniform_values(5, cols, 0.5);
    for kind in [TFK_NORM_LAYER, TFK_NORM_RMS] {
        // Rust: gamma in the data's dtype, beta absent (RMS) or f32 is not
        // allowed together (one dtype): LayerNorm takes gamma only here.
        let base = if kind == TFK_NORM_LAYER {
            Norm::layer_norm()
        } else {
            Norm::rms_norm()
        };
        let rust = base.gamma(weights(&gamma));
        let (mut r, mut y, mut q, mut qs, mut mean, mut rstd) = (
            r0.clone(),
            vec![T::from_f32(0.0); x.len()],
            vec![0i8; x.len()],
            vec![0f32; rows],
            vec![0f32; rows],
            vec![0f32; rows],
        );
        rust.forward(&x, cols)
            .residual(&mut r)
            .output(&mut y)
            .quantized(&mut q, &mut qs)
            .stats(&mut mean, &mut rstd)
            .run()
            .unwrap();
        let mut n = std::mem::MaybeUninit::<tfk_norm>::uninit();
        assert_eq!(unsafe { tfk_norm_init(n.as_mut_ptr(), kind) }, TFK_OK);
        let mut n = unsafe { n.assume_init() };
        n.weight_dtype = code(T::DTYPE);
        n.gamma = cv(&gamma);
        let (mut r2, mut y2, mut q2, mut qs2, mut mean2, mut rstd2) = (
            r0.clone(),
            vec![T::from_f32(0.0); x.len()],
            vec![0i8; x.len()],
            vec![0f32; rows],
            vec![0f32; rows],
            vec![0f32; rows],
        );
        let s = unsafe {
            tfk_norm_forward(
                &n,
                code(T::DTYPE),
                rows,
                cols,
                cv(&x),
                mv(&mut r2),
                mv(&mut y2),
                q2.as_mut_ptr(),
                qs2.as_mut_ptr(),
                mean2.as_mut_ptr(),
                rstd2.as_mut_ptr(),
            )
        };
        assert_eq!(s, TFK_OK, "{}", last_error());
        assert_same(&r2, &r, "r2");
        assert_same(&y2, &y, "y2");
        assert_eq!(q2, q);
        assert_eq!(
            (bits(&qs2), bits(&mean2), bits(&rstd2)),
            (bits(&qs), bits(&mean), bits(&rstd))
        );

        // Backward on h = the updated residual, with f32 beta gradient too.
        let dy = values::<T>(6, x.len(), 1.0);
        let dh = values::<T>(7, x.len(), 1.0);
        let (mut dx, mut dg, mut db) = (
            vec![T::from_f32(0.0); x.len()],
            vec![0f32; cols],
            vec![0f32; cols],
        );
        rust.backward(&dy, &r, &mean, &rstd, cols)
            .dx(&mut dx)
            .residual_grad(&dh)
            .dgamma(&mut dg)
            .dbeta(&mut db)
            .run()
            .unwrap();
        let (mut dx2, mut dg2, mut db2) = (
            vec![T::from_f32(0.0); x.len()],
            vec![0f32; cols],
            vec![0f32; cols],
        );
        // A caller workspace of the size tfk_norm_backward_workspace_doubles
        // says: the same bits as the call that allocates; a shorter one is
        // an error.
        let need = tfk_norm_backward_workspace_doubles(rows, cols);
        assert!(need >= 2 * cols);
        let backward = |dx2: &mut [T], dg2: &mut [f32], db2: &mut [f32], ws: &mut [f64]| unsafe {
            tfk_norm_backward(
                &n,
                code(T::DTYPE),
                rows,
                cols,
                cv(&dy),
                cv(&r),
                mean.as_ptr(),
                rstd.as_ptr(),
                cv(&dh),
                mv(dx2),
                dg2.as_mut_ptr(),
                db2.as_mut_ptr(),
                ws.as_mut_ptr(),
                ws.len(),
            )
        };
        let s = backward(&mut dx2, &mut dg2, &mut db2, &mut vec![0f64; need - 1]);
        assert_ne!(s, TFK_OK);
        assert!(dg2.iter().all(|v| *v == 0.0), "nothing written on error");
        let s = backward(&mut dx2, &mut dg2, &mut db2, &mut vec![0f64; need]);
        assert_eq!(s, TFK_OK, "{}", last_error());
        assert_eq!(
            (bits(&dx2), bits(&dg2), bits(&db2)),
            (bits(&dx), bits(&dg), bits(&db))
        );

        // Channel norm: f32 scale and shift.
        let mut c = n;
        c.kind = TFK_NORM_CHANNEL;
        c.weight_dtype = TFK_F32;
        let scale = uniform_values(8, cols, 2.0);
        c.gamma = cv(&scale);
        c.beta = cv(&beta);
        let mut want = vec![T::from_f32(0.0); x.len()];
        Norm::channel_scale_shift(&scale, &beta)
            .run(&x, &mut want, cols)
            .unwrap();
        let mut got = vec![T::from_f32(0.0); x.len()];
        let s = unsafe {
            tfk_norm_forward(
                &c,
                code(T::DTYPE),
                rows,
                cols,
                cv(&x),
                null_mut(),
                mv(&mut got),
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        assert_eq!(s, TFK_OK, "{}", last_error());
        assert_same(&got, &want, "got");
        // q without its scales is refused, nothing written.
        let mut y3 = vec![T::from_f32(9.0); x.len()];
        let s = unsafe {
            tfk_norm_forward(
                &n,
                code(T::DTYPE),
                rows,
                cols,
                cv(&x),
                null_mut(),
                mv(&mut y3),
                q2.as_mut_ptr(),
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        assert_eq!(s, TFK_ERROR_INVALID_ARGUMENT, "{}", last_error());
        assert!(y3.iter().all(|v| v.to_f32() == 9.0));
    }
}

/// The strided entry points and the norm's kept residual stream (`_into`)
/// give the Rust API's results, leave the gaps between rows and the read
/// residual untouched, and refuse short strides with nothing written.
fn strided_and_into_match<T: Element>() {
    let (rows, cols, xs, ys) = (4, 70, 75, 80);
    let x = values::<T>(21, (rows - 1) * xs + cols, 4.0);
    let fill = T::from_f32(9.0);
    let untouched = |y: &[T]| {
        (0..y.len())
            .filter(|i| i % ys >= cols)
            .all(|i| y[i].to_f32() == 9.0)
    };

    let mut want = vec![fill; (rows - 1) * ys + cols];
    let sm = Softmax::new().scale(0.5);
    sm.run_strided(&x, xs, &mut want, ys, rows, cols).unwrap();
    let mut y = vec![fill; want.len()];
    let s = unsafe {
        tfk_softmax_strided(
            code(T::DTYPE),
            cv(&x),
            xs,
            mv(&mut y),
            ys,
            rows,
            cols,
            0.5,
            false,
        )
    };
    assert_eq!(s, TFK_OK, "{}", last_error());
    assert_same(&y, &want, "softmax strided");
    assert!(untouched(&y));
    let mut y = vec![fill; want.len()];
    let s = unsafe {
        tfk_softmax_strided(
            code(T::DTYPE),
            cv(&x),
            cols - 1,
            mv(&mut y),
            ys,
            rows,
            cols,
            0.5,
            false,
        )
    };
    assert_eq!(s, TFK_ERROR_INVALID_ARGUMENT);
    assert!(y.iter().all(|v| v.to_f32() == 9.0));

    let gamma = uniform_values(22, cols, 1.5);
    let mut n = std::mem::MaybeUninit::<tfk_norm>::uninit();
    assert_eq!(
        unsafe { tfk_norm_init(n.as_mut_ptr(), TFK_NORM_LAYER) },
        TFK_OK
    );
    let mut n = unsafe { n.assume_init() };
    n.gamma = cv(&gamma);
    let mut want = vec![fill; (rows - 1) * ys + cols];
    Norm::layer_norm()
        .gamma(gamma.as_slice())
        .run_strided(&x, xs, &mut want, ys, rows, cols)
        .unwrap();
    let mut y = vec![fill; want.len()];
    let s = unsafe {
        tfk_norm_forward_strided(&n, code(T::DTYPE), rows, cols, cv(&x), xs, mv(&mut y), ys)
    };
    assert_eq!(s, TFK_OK, "{}", last_error());
    assert_same(&y, &want, "norm strided");
    assert!(untouched(&y));

    let x = values::<T>(23, rows * cols, 4.0);
    let r = values::<T>(24, rows * cols, 4.0);
    let (mut h, mut y) = (vec![fill; x.len()], vec![fill; x.len()]);
    Norm::layer_norm()
        .gamma(gamma.as_slice())
        .forward(&x, cols)
        .residual_into(&r, &mut h)
        .output(&mut y)
        .run()
        .unwrap();
    let into = |r: *const c_void, h: &mut [T], y: &mut [T]| unsafe {
        tfk_norm_forward_into(
            &n,
            code(T::DTYPE),
            rows,
            cols,
            cv(&x),
            r,
            mv(h),
            mv(y),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
        )
    };
    let (mut h2, mut y2, r2) = (vec![fill; x.len()], vec![fill; x.len()], r.clone());
    assert_eq!(into(cv(&r2), &mut h2, &mut y2), TFK_OK, "{}", last_error());
    assert_same(&h2, &h, "h");
    assert_same(&y2, &y, "y");
    assert_same(&r2, &r, "residual (read only)");
    let mut y3 = vec![fill; x.len()];
    assert_eq!(
        into(null(), &mut h2, &mut y3),
        TFK_ERROR_POINTER,
        "{}",
        last_error()
    );
    assert!(y3.iter().all(|v| v.to_f32() == 9.0));
}

#[test]
fn strided_rows_and_kept_residual_equal_the_rust_api() {
    strided_and_into_match::<f32>();
    strided_and_into_match::<f16>();
    strided_and_into_match::<bf16>();
}

#[test]
fn norms_equal_the_rust_api() {
    norm_matches::<f32>();
    norm_matches::<f16>();
    norm_matches::<bf16>();
}

fn lightning_matches<T: Element>() {
    let offsets = [0usize, 5, 70, 100];
    let (heads, dk, dv) = (2, 16, 24);
    let shape = Shape::packed(&offsets, heads, dk, dv);
    let (tokens, states) = (100, 3 * heads * dk * dv);
    let q = values::<T>(10, tokens * heads * dk, 1.0);
    let k = values::<T>(11, tokens * heads * dk, 1.0);
    let v = values::<T>(12, tokens * heads * dv, 1.0);
    let decay = [0.9f32, 0.99];
    let s0 = uniform_values(13, states, 0.5);
    let c_shape = tfk_lightning_shape {
        batch: 0,
        n: 0,
        heads,
        dk,
        dv,
        offsets: offsets.as_ptr(),
        sequences: 3,
        layout: TFK_LAYOUT_TOKENS_FIRST,
    };
    let op = Lightning::new().layout(transformer_kernels::lightning::Layout::TokensFirst);
    let (mut o, mut sf) = (vec![T::from_f32(0.0); v.len()], vec![0f32; states]);
    op.forward(&q, &k, &v, &mut o, &decay, shape)
        .initial_state(&s0)
        .final_state(&mut sf)
        .run()
        .unwrap();
    let (mut o2, mut sf2) = (vec![T::from_f32(0.0); v.len()], vec![0f32; states]);
    // The forward with a caller workspace, the backward allocating its own.
    let mut ws = vec![0f32; tfk_lightning_workspace_floats(c_shape.dk, c_shape.dv, 0)];
    let s = unsafe {
        tfk_lightning_forward(
            code(T::DTYPE),
            &c_shape,
            cv(&q),
            cv(&k),
            cv(&v),
            decay.as_ptr(),
            mv(&mut o2),
            s0.as_ptr(),
            sf2.as_mut_ptr(),
            ws.as_mut_ptr(),
            ws.len(),
        )
    };
    assert_eq!(s, TFK_OK, "{}", last_error());
    assert_eq!((bits(&o2), bits(&sf2)), (bits(&o), bits(&sf)));

    let dout = values::<T>(14, v.len(), 1.0);
    let dsf = uniform_values(15, states, 0.5);
    let z = |n| vec![T::from_f32(0.0); n];
    let (mut dq, mut dkk, mut dvv, mut ds0) =
        (z(q.len()), z(k.len()), z(v.len()), vec![0f32; states]);
    op.backward(
        &q,
        &k,
        &v,
        &dout,
        Grads {
            dq: &mut dq,
            dk: &mut dkk,
            dv: &mut dvv,
        },
        &decay,
        shape,
    )
    .initial_state(&s0)
    .dfinal_state(&dsf)
    .dinitial_state(&mut ds0)
    .run()
    .unwrap();
    let (mut dq2, mut dk2, mut dv2, mut ds02) =
        (z(q.len()), z(k.len()), z(v.len()), vec![0f32; states]);
    let s = unsafe {
        tfk_lightning_backward(
            code(T::DTYPE),
            &c_shape,
            cv(&q),
            cv(&k),
            cv(&v),
            decay.as_ptr(),
            cv(&dout),
            s0.as_ptr(),
            dsf.as_ptr(),
            mv(&mut dq2),
            mv(&mut dk2),
            mv(&mut dv2),
            ds02.as_mut_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(s, TFK_OK, "{}", last_error());
    assert_eq!(
        (bits(&dq2), bits(&dk2), bits(&dv2), bits(&ds02)),
        (bits(&dq), bits(&dkk), bits(&dvv), bits(&ds0))
    );

    // Decode: 3 sequences x 2 heads, one token each.
    let (qd, kd, vd) = (
        values::<T>(16, 6 * dk, 1.0),
        values::<T>(17, 6 * dk, 1.0),
        values::<T>(18, 6 * dv, 1.0),
    );
    let (mut od, mut st) = (z(6 * dv), sf.clone());
    Lightning::new()
        .decode(&qd, &kd, &vd, &mut od, &mut st, &decay, dk, dv)
        .unwrap();
    let (mut od2, mut st2) = (z(6 * dv), sf.clone());
    let s = unsafe {
        tfk_lightning_decode(
            code(T::DTYPE),
            3,
            heads,
            dk,
            dv,
            cv(&qd),
            cv(&kd),
            cv(&vd),
            decay.as_ptr(),
            mv(&mut od2),
            st2.as_mut_ptr(),
        )
    };
    assert_eq!(s, TFK_OK, "{}", last_error());
    assert_eq!((bits(&od2), bits(&st2)), (bits(&od), bits(&st)));
}

#[test]
fn lightning_equals_the_rust_api() {
    lightning_matches::<f32>();
    lightning_matches::<bf16>();
    lightning_matches::<f16>();
}

fn kron_matches<T: Element>() {
    let (n1, n2, tokens) = (6, 16, 4);
    let p1 = uniform_values(20, n1 * n1, 1.0);
    let smooth = uniform_values(21, n1 * n2, 1.0)
        .iter()
        .map(|v| 1.0 + 0.5 * v)
        .collect::<Vec<_>>();
    let x = values::<T>(22, tokens * n1 * n2, 4.0);
    let rust = Kron::new(
        Factor::dense(&p1, n1).unwrap(),
        Factor::hadamard(n2).unwrap(),
    )
    .with_smoothing(&smooth)
    .unwrap();
    let row4 = transformer_kernels::kron::int4_row_bytes(n1 * n2);
    let (mut y, mut q, mut s) = (
        vec![T::from_f32(0.0); x.len()],
        vec![0u8; tokens * row4],
        vec![0f32; tokens],
    );
    rust.apply(&x)
        .output(&mut y)
        .int4(&mut q, &mut s)
        .clip(0.9)
        .run()
        .unwrap();
    let mut h = null_mut();
    assert_eq!(
        unsafe { tfk_kron_new(p1.as_ptr(), n1, null(), n2, smooth.as_ptr(), &mut h) },
        TFK_OK,
        "{}",
        last_error()
    );
    assert_eq!(unsafe { tfk_kron_size(h) }, n1 * n2);
    let mut ws = vec![0f32; unsafe { tfk_kron_workspace_floats(h) }];
    let (mut y2, mut q2, mut s2) = (
        vec![T::from_f32(0.0); x.len()],
        vec![0u8; tokens * row4],
        vec![0f32; tokens],
    );
    let st = unsafe {
        tfk_kron_apply(
            h,
            code(T::DTYPE),
            cv(&x),
            tokens,
            mv(&mut y2),
            null_mut(),
            q2.as_mut_ptr(),
            s2.as_mut_ptr(),
            0.9,
            ws.as_mut_ptr(),
            ws.len(),
        )
    };
    assert_eq!(st, TFK_OK, "{}", last_error());
    assert_eq!((bits(&y2), &q2, bits(&s2)), (bits(&y), &q, bits(&s)));
    // Both int8 and int4 at once: refused.
    let mut q8 = vec![0i8; x.len()];
    let st = unsafe {
        tfk_kron_apply(
            h,
            code(T::DTYPE),
            cv(&x),
            tokens,
            null_mut(),
            q8.as_mut_ptr(),
            q2.as_mut_ptr(),
            s2.as_mut_ptr(),
            1.0,
            null_mut(),
            0,
        )
    };
    assert_eq!(st, TFK_ERROR_INVALID_ARGUMENT);
    // Inverse and transpose are refused with smoothing (the Rust API's rule).
    let mut inv = null_mut();
    assert_eq!(
        unsafe { tfk_kron_inverse(h, &mut inv) },
        TFK_ERROR_INVALID_ARGUMENT
    );
    assert!(inv.is_null());
    // Weight folding equals the Rust helper.
    let w = uniform_values(23, 3 * n1 * n2, 1.0);
    let mut folded = vec![0f32; w.len()];
    assert_eq!(
        unsafe { tfk_kron_fold_into_weight(h, w.as_ptr(), 3, folded.as_mut_ptr()) },
        TFK_OK
    );
    assert_eq!(folded, rust.fold_into_weight(&w, 3).unwrap());
    unsafe { tfk_kron_free(h) };
}

#[test]
fn kron_equals_the_rust_api() {
    kron_matches::<f32>();
    kron_matches::<f16>();
    kron_matches::<bf16>();
}

fn int8_matmul_matches<T: Element, U: Element>() {
    let (m, n, k) = (20, 40, 130);
    let w = values::<T>(30, n * k, 1.0);
    let mut x = values::<T>(31, m * k, 2.0);
    x[3 * k + 7] = T::from_f32(9.0);
    let bias = uniform_values(32, n, 1.0);
    let rw = Int8Weight::prepare(&w, n, k, Outliers::Dynamic { threshold: 6.0 }).unwrap();
    let mut rws = Int8Workspace::new(&rw, m, 8).unwrap();
    let (mut cw, mut cws) = (null_mut(), null_mut());
    let s =
        unsafe { tfk_int8_weight_prepare(code(T::DTYPE), cv(&w), n, k, 6.0, null(), 0, &mut cw) };
    assert_eq!(s, TFK_OK, "{}", last_error());
    assert_eq!(unsafe { tfk_int8_weight_bytes(cw) }, rw.bytes());
    assert_eq!(
        unsafe { tfk_int8_workspace_new(cw, m, 8, &mut cws) },
        TFK_OK
    );
    // Backends agree on the int32 products, not on the last bit of the
    // epilogue: compare each with the Rust call on the same backend.
    for (backend, rust_backend) in [
        (TFK_INT8_AUTO, None),
        (TFK_INT8_SCALAR, Some(Backend::Scalar)),
        (TFK_INT8_AVX_VNNI, Some(Backend::AvxVnni)),
    ]
    .into_iter()
    .filter(|(_, b)| b.is_none_or(|b| b.is_available()))
    {
        let mut want = vec![U::from_f32(0.0); m * n];
        let mut call = rw.matmul(&mut rws).bias(&bias);
        if let Some(b) = rust_backend {
            call = call.backend(b);
        }
        call.run(&x, &mut want).unwrap();
        let mut y = vec![U::from_f32(0.0); m * n];
        let s = unsafe {
            tfk_int8_matmul(
                cw,
                cws,
                backend,
                code(T::DTYPE),
                cv(&x),
                m,
                code(U::DTYPE),
                mv(&mut y),
                bias.as_ptr(),
            )
        };
        assert_eq!(s, TFK_OK, "{}", last_error());
        assert_same(&y, &want, "int8 matmul");
    }
    assert_eq!(
        unsafe {
            tfk_int8_matmul(
                cw,
                cws,
                99,
                code(T::DTYPE),
                cv(&x),
                m,
                code(U::DTYPE),
                null_mut(),
                null(),
            )
        },
        TFK_ERROR_INVALID_ARGUMENT
    );
    unsafe {
        tfk_int8_workspace_free(cws);
        tfk_int8_weight_free(cw);
    }
}

#[test]
fn int8_matmul_equals_the_rust_api() {
    int8_matmul_matches::<f32, f32>();
    int8_matmul_matches::<f16, bf16>();
    int8_matmul_matches::<bf16, f16>();
}

#[test]
fn fixed_outliers_and_weight_only_equal_the_rust_api() {
    let (m, n, k) = (3, 24, 256);
    let w = values::<f32>(40, n * k, 1.0);
    let x = values::<f32>(41, m * k, 1.0);
    let fixed = [5u32, 200];
    let rw = Int8Weight::prepare(&w, n, k, Outliers::Fixed(fixed.to_vec())).unwrap();
    let mut rws = Int8Workspace::new(&rw, m, 0).unwrap();
    let mut want = vec![0f32; m * n];
    rw.matmul(&mut rws).run(&x, &mut want).unwrap();
    let (mut cw, mut cws) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { tfk_int8_weight_prepare(TFK_F32, cv(&w), n, k, 6.0, fixed.as_ptr(), 2, &mut cw) },
        TFK_OK
    );
    assert_eq!(
        unsafe { tfk_int8_workspace_new(cw, m, 0, &mut cws) },
        TFK_OK
    );
    let mut y = vec![0f32; m * n];
    assert_eq!(
        unsafe {
            tfk_int8_matmul(
                cw,
                cws,
                TFK_INT8_AUTO,
                TFK_F32,
                cv(&x),
                m,
                TFK_F32,
                mv(&mut y),
                null(),
            )
        },
        TFK_OK
    );
    assert_eq!(y, want);
    unsafe {
        tfk_int8_workspace_free(cws);
        tfk_int8_weight_free(cw);
    }

    for bits_ in [8u32, 4] {
        let xb = values::<bf16>(42, m * k, 1.0);
        let wb = values::<bf16>(43, n * k, 1.0);
        let rq = QuantizedWeight::quantize(&wb, n, k, bits_, 64).unwrap();
        let mut want = vec![bf16::ZERO; m * n];
        rq.gemv(&xb).run(&mut want).unwrap();
        let mut cq = null_mut();
        assert_eq!(
            unsafe { tfk_quantized_weight_new(TFK_BF16, cv(&wb), n, k, bits_, 64, &mut cq) },
            TFK_OK
        );
        let mut ws = vec![0f32; unsafe { tfk_quantized_weight_workspace_floats(cq, m) }];
        let mut y = vec![bf16::ZERO; m * n];
        let s = unsafe {
            tfk_weight_only_gemv(
                cq,
                TFK_BF16,
                cv(&xb),
                m,
                mv(&mut y),
                null(),
                ws.as_mut_ptr(),
                ws.len(),
            )
        };
        assert_eq!(s, TFK_OK, "{}", last_error());
        assert_same(&y, &want, "y");
        // A workspace too short is refused.
        let s = unsafe {
            tfk_weight_only_gemv(
                cq,
                TFK_BF16,
                cv(&xb),
                m,
                mv(&mut y),
                null(),
                ws.as_mut_ptr(),
                1,
            )
        };
        assert_eq!(s, TFK_ERROR_LENGTH, "{}", last_error());
        unsafe { tfk_quantized_weight_free(cq) };
    }
    // Bits other than 4 and 8.
    let mut cq = null_mut();
    assert_eq!(
        unsafe { tfk_quantized_weight_new(TFK_F32, cv(&w), n, k, 3, 64, &mut cq) },
        TFK_ERROR_INVALID_ARGUMENT
    );
    assert!(cq.is_null());
}

#[test]
fn threads_change_no_result() {
    // Other tests may run meanwhile: their results do not depend on it either.
    tfk_set_threads(0);
    softmax_matches::<bf16>();
    norm_matches::<f32>();
    kron_matches::<f16>();
    int8_matmul_matches::<f32, f32>();
    tfk_set_threads(1);
}

#[test]
fn isa_override_and_query() {
    let mut isa = 0;
    assert_eq!(unsafe { tfk_selected_isa(&mut isa) }, TFK_OK);
    assert!((TFK_ISA_SCALAR..=TFK_ISA_AVX512BF16).contains(&isa));
    assert_eq!(unsafe { tfk_selected_isa(null_mut()) }, TFK_ERROR_POINTER);
    // SAFETY: tfk_version returns a static C string.
    let v = unsafe { CStr::from_ptr(tfk_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
