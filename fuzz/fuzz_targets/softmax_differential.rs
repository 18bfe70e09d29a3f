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
    let want = reference::softmax::softmax(&xr, cols, scale, log);
    let poison = T::from_f32(f32::from_bits(0x7FA5_A5A5));
    let mut ybuf = vec![poison; xt.len() + offset];
    let y = &mut ybuf[offset..];
    Softmax::new().scale(scale).log(log).isa(v.isa).algorithm(v.algorithm).run(&xt, y, cols).unwrap();
    for (i, (g, &e)) in y.iter().zip(&want).enumerate() {
        let g = f64::from(g.to_f32());
        if e.is_nan() || g.is_nan() {
            assert!(e.is_nan() && g.is_nan(), "{} log={log} elem {i}: got {g} want {e}", v.name);
            continue;
        }
        if e.is_infinite() || g.is_infinite() {
            assert_eq!(g, f64::from(T::from_f32(e as f32).to_f32()), "{} elem {i}", v.name);
            continue;
        }
        let row = i / cols * cols;
        let zmax = xr[row..row + cols].iter().map(|&t| f64::from(t * scale)).fold(f64::NEG_INFINITY, f64::max).abs();
        let z = f64::from(xr[i] * scale).abs();
        if z > 1048576.0 || zmax > 1048576.0 {
            continue; // the stated bound covers |z| <= 2^20; beyond it only NaN/inf structure is checked
        }
        let bound = softmax::error_bound(T::DTYPE, v.algorithm, log, e, z, zmax, cols);
        assert!((g - e).abs() <= bound, "{} log={log} elem {i}: got {g} want {e} bound {bound}", v.name);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let cols = 1 + (data[0] as usize % 97) * (1 + data[1] as usize % 3);
    let scale = [1.0f32, 0.5, -2.0, 0.0, 1e-3][data[2] as usize % 5];
    let offset = data[3] as usize % 4;
    let mut x: Vec<f32> = data[4..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
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
