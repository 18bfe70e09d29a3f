//! Differential fuzzing: every runnable softmax variant (all ISAs, both
//! algorithms, f32/f16/bf16, softmax and log-softmax) against the f64
//! reference, on fuzzer-chosen row lengths, values (any bit pattern), scales
//! and alignments. A failure is an element outside the documented bound, a NaN
//! where the reference has none (or the reverse), or an element not written.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use transformer_kernels::softmax::{self, Softmax, Variant};
use transformer_kernels::{Dtype, Element, reference};

fn check<T: Element>(v: &Variant, x32: &[f32], cols: usize, scale: f32, log: bool, offset: usize) {
    let xt: Vec<T> = x32.iter().map(|&f| T::from_f32(f)).collect();
    let xr: Vec<f32> = xt.iter().map(|t| t.to_f32()).collect();
    let poison = reference::poison::<T>();
    let mut ybuf = vec![poison; xt.len() + offset];
    let y = &mut ybuf[offset..];
    Softmax::new()
        .scale(scale)
        .log(log)
        .isa(v.isa)
        .algorithm(v.algorithm)
        .run(&xt, y, cols)
        .unwrap();
    assert!(
        !y.iter().any(|&t| reference::same_bits(t, poison)),
        "{}: an element was not written",
        v.name
    );
    if let Err(msg) = reference::softmax::check(&xr, y, cols, scale, log, v.algorithm, true) {
        panic!("{} log={log} scale={scale} cols={cols}: {msg}", v.name);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let cols = 1 + (data[0] as usize % 97) * (1 + data[1] as usize % 3);
    let scale = [1.0f32, 0.5, -2.0, 0.0, 1e-3][data[2] as usize % 5];
    let offset = data[3] as usize % 4;
    let mut x: Vec<f32> = data[4..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let rows = x.len() / cols;
    if rows == 0 {
        return;
    }
    x.truncate(rows * cols);
    for v in softmax::variants().iter().filter(|v| v.isa.is_available()) {
        for log in [false, true] {
            match v.dtype {
                Dtype::F32 => check::<f32>(v, &x, cols, scale, log, offset),
                Dtype::F16 => check::<f16>(v, &x, cols, scale, log, offset),
                Dtype::Bf16 => check::<bf16>(v, &x, cols, scale, log, offset),
            }
        }
    }
});
