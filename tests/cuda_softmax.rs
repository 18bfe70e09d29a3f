//! CUDA softmax against the f64 reference: every dtype, every launch shape
//! (row lengths on both sides of each shape's capacity), softmax and
//! log-softmax, extremes, poisoned outputs. Skips with a message without a GPU.
#![cfg(feature = "cuda")]

mod gpu;

use std::sync::Arc;

use gpu::gpu;

use cudarc::driver::CudaStream;
use half::{bf16, f16};
use transformer_kernels::cuda::{CudaElement, Kernels, SoftmaxShape};
use transformer_kernels::softmax::{Algorithm, Softmax};
use transformer_kernels::{Error, reference};

/// Logits in [-20, 20) with -inf and +-1e30 mixed in.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut v = reference::uniform_values(seed, n, 20.0);
    for (i, x) in v.iter_mut().enumerate() {
        match i % 97 {
            3 => *x = f32::NEG_INFINITY,
            5 => *x = 1.0e30,
            7 => *x = -1.0e30,
            _ => {}
        }
    }
    v
}

fn check<T: CudaElement>(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    x32: &[f32],
    cols: usize,
    scale: f32,
    log: bool,
) {
    let xt: Vec<T> = x32.iter().map(|&v| T::from_f32(v)).collect();
    let xr: Vec<f32> = xt.iter().map(|v| v.to_f32()).collect();
    let x = stream.clone_htod(&xt).unwrap();
    // poison: a signalling-NaN pattern no kernel writes
    let poison = reference::poison::<T>();
    let mut y = stream.clone_htod(&vec![poison; xt.len()]).unwrap();
    k.softmax(
        stream,
        &x.as_view(),
        &mut y.as_view_mut(),
        cols,
        &Softmax::new().scale(scale).log(log),
    )
    .unwrap();
    let got: Vec<T> = stream.clone_dtoh(&y).unwrap();
    assert!(
        !got.iter().any(|&t| reference::same_bits(t, poison)),
        "{:?} cols={cols}: element not written",
        T::DTYPE
    );
    let shape = SoftmaxShape::for_cols(cols);
    // the GPU kernels round once: the two-pass (single rounding) bound applies
    if let Err(msg) =
        reference::softmax::check(&xr, &got, cols, scale, log, Algorithm::TwoPass, false)
    {
        panic!(
            "{:?} {shape:?} cols={cols} log={log} scale={scale}: {msg}",
            T::DTYPE
        );
    }
}

/// Row lengths around every shape's capacity, plus vocabulary-sized rows.
const COLS: &[usize] = &[
    1, 3, 8, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097,
    8191, 8192, 8193, 16383, 16384, 16385, 32767, 32768, 32769, 100_003, 262_144,
];

#[test]
fn cuda_softmax_matches_reference() {
    let Some((stream, k)) = gpu() else { return };
    for &cols in COLS {
        let rows = if cols > 10_000 { 3 } else { 7 };
        let x = values(rows * cols, cols as u64);
        for log in [false, true] {
            for scale in [1.0f32, 0.37] {
                check::<f32>(&stream, &k, &x, cols, scale, log);
                check::<f16>(&stream, &k, &x, cols, scale, log);
                check::<bf16>(&stream, &k, &x, cols, scale, log);
            }
        }
    }
}

#[test]
fn cuda_softmax_extremes() {
    let Some((stream, k)) = gpu() else { return };
    for cols in [17usize, 1000, 5000, 40_000] {
        let mut x = vec![88.0f32; 4 * cols]; // row 0: many equal large values
        x[cols..2 * cols].fill(f32::NEG_INFINITY); // row 1: all -inf -> NaN
        x[2 * cols + 3] = f32::NAN; // row 2: NaN -> NaN row
        for v in &mut x[3 * cols..] {
            *v = -1.0e30;
        }
        x[3 * cols + cols / 2] = 1.0e30; // row 3: one-hot
        for log in [false, true] {
            check::<f32>(&stream, &k, &x, cols, 1.0, log);
            check::<f16>(&stream, &k, &x, cols, 1.0, log);
            check::<bf16>(&stream, &k, &x, cols, 1.0, log);
        }
    }
}

#[test]
fn cuda_softmax_rejects_bad_shapes() {
    let Some((stream, k)) = gpu() else { return };
    let x = stream.clone_htod(&[1.0f32; 10]).unwrap();
    let mut y = stream.alloc_zeros::<f32>(10).unwrap();
    let r = k.softmax(
        &stream,
        &x.as_view(),
        &mut y.as_view_mut(),
        3,
        &Softmax::new(),
    );
    assert!(matches!(r, Err(Error::LengthNotMultiple { .. })));
    let r = k.softmax(
        &stream,
        &x.as_view(),
        &mut y.as_view_mut(),
        5,
        &Softmax::new().scale(f32::NAN),
    );
    assert!(matches!(r, Err(Error::InvalidArgument { .. })));
    assert!(stream.clone_dtoh(&y).unwrap().iter().all(|&v| v == 0.0));
}
