//! Differential fuzzing of the Kronecker transforms: every runnable variant
//! (ISA x dtype) against the dense f64 reference (`reference::kron::check`),
//! on fuzzer-chosen factor kinds (dense or Hadamard per side), orders (dense
//! 1..=16, Hadamard 1..=64), smoothing, output (y, int8, int4), clip and
//! values. Values are int8 mantissas times 2^e, e in [-10, 0], and dense
//! factor entries int8 / 128, so every y stays finite in f16; within that
//! range any element outside the bound, any q or scale off the textbook
//! quantization (bit for bit on f32) or an unwritten element fails.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use transformer_kernels::Dtype;
use transformer_kernels::kron::{self, Factor};
use transformer_kernels::reference::kron::{Case, check};

fn byte(data: &[u8], i: usize) -> u8 {
    if data.is_empty() {
        1
    } else {
        data[i % data.len()]
    }
}

fn factor(data: &[u8], hadamard: bool, code: u8, at: usize) -> Factor {
    if hadamard {
        Factor::hadamard(1 << (code % 7)).unwrap()
    } else {
        let n = 1 + code as usize % 16;
        let p: Vec<f32> = (0..n * n)
            .map(|k| byte(data, at + 3 * k) as i8 as f32 / 128.0)
            .collect();
        Factor::dense(&p, n).unwrap()
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let body = &data[8..];
    let p1 = factor(body, data[0] & 1 != 0, data[1], 0);
    let p2 = factor(body, data[0] & 2 != 0, data[2], 1);
    let n = p1.order() * p2.order();
    let tokens = 1 + data[3] as usize % 3;
    let bits = [0u8, 8, 4][data[4] as usize % 3];
    let clip = [1.0f32, 0.75, 0.5, 0.1][data[5] as usize % 4];
    let x: Vec<f32> = (0..tokens * n)
        .map(|i| {
            let m = byte(body, 2 * i + 5) as i8 as f32;
            let e = (byte(body, 2 * i + 6) % 11) as i32 - 10;
            m * (e as f32).exp2()
        })
        .collect();
    let smooth = (data[6] & 1 != 0).then(|| {
        (0..n)
            .map(|j| (1 + byte(body, j + 7) % 8) as f32 / 4.0)
            .collect()
    });
    let case = Case {
        p1,
        p2,
        smooth,
        x,
        bits,
        clip,
    };
    for v in kron::variants().iter().filter(|v| v.isa.is_available()) {
        let r = match v.dtype {
            Dtype::F32 => check::<f32>(&case, v.isa),
            Dtype::F16 => check::<f16>(&case, v.isa),
            Dtype::Bf16 => check::<bf16>(&case, v.isa),
        };
        if let Err(m) = r {
            panic!(
                "{}: {m}\norders {} x {} bits {bits} clip {clip} tokens {tokens} smooth {}",
                v.name,
                case.p1.order(),
                case.p2.order(),
                case.smooth.is_some()
            );
        }
    }
});
