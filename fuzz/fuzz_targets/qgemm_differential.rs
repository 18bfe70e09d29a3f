//! Differential fuzzing of the quantized products. LLM.int8(): every
//! available backend (portable, AVX-512 VNNI, AMX) x quantizer ISA x dtype on
//! fuzzer-chosen shapes (m 1..=40, n 1..=70, k 1..=200), outlier mode
//! (dynamic at threshold 1, 6, 30 or none; or a fixed set), bias and values,
//! against the exact integers (int32 part, bit for bit), the kernels'
//! quantization re-done in Rust (bit for bit) and the f64 products
//! (`reference::qgemm::run_and_check`). Weight-only: int8 / int4 with groups
//! of 32..128 on every ISA x dtype (`run_and_check_weight_only`, which also
//! holds the VNNI and AVX2 int4 digit paths to their exact-sum bound). Values are int8
//! mantissas times 2^e, e in [-8, -1] (weight-only: -5, or -30..-1), weights
//! int8 / 64, so every y stays finite in f16; the weight-only product also
//! runs with one x of 2^110..2^126 (the scale-first path; VNNI declines) for
//! f32 and bf16.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use transformer_kernels::Isa;
use transformer_kernels::qgemm::weight_only::{QuantizedWeight, WeightLayout};
use transformer_kernels::qgemm::{Backend, Int8Weight, Outliers};
use transformer_kernels::reference::qgemm::{run_and_check, run_and_check_weight_only};

fn byte(data: &[u8], i: usize) -> u8 {
    if data.is_empty() {
        1
    } else {
        data[i % data.len()]
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let body = &data[8..];
    let m = 1 + data[0] as usize % 40;
    let n = 1 + data[1] as usize % 70;
    let k = 1 + (data[2] as usize | (data[3] as usize & 1) << 8) % 200;
    let x: Vec<f32> = (0..m * k)
        .map(|i| byte(body, 2 * i) as i8 as f32 * ((byte(body, 2 * i + 1) % 8) as f32 - 8.0).exp2())
        .collect();
    let w: Vec<f32> = (0..n * k)
        .map(|i| byte(body, 3 * i + 7) as i8 as f32 / 64.0)
        .collect();
    let bias: Vec<f32> = (0..n)
        .map(|j| byte(body, j + 11) as i8 as f32 / 16.0)
        .collect();
    let bias = (data[4] & 1 != 0).then_some(bias.as_slice());
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.is_available()).collect();

    let outliers = match data[5] % 5 {
        0 => Outliers::Dynamic { threshold: 1.0 },
        1 => Outliers::Dynamic { threshold: 6.0 },
        2 => Outliers::Dynamic { threshold: 30.0 },
        3 => Outliers::Dynamic {
            threshold: f32::INFINITY,
        },
        _ => Outliers::Fixed(
            (0..k as u32)
                .filter(|c| byte(body, *c as usize + 5) % 7 == 0)
                .collect(),
        ),
    };
    let weight = Int8Weight::prepare(&w, n, k, outliers.clone()).unwrap();
    for b in Backend::ALL.into_iter().filter(|b| b.is_available()) {
        for &isa in &isas {
            let runs = [
                run_and_check::<f32, f32>(&x, &w, &weight, bias, b, isa),
                run_and_check::<f16, f16>(&x, &w, &weight, bias, b, isa),
                run_and_check::<bf16, f32>(&x, &w, &weight, bias, b, isa),
            ];
            for r in runs {
                if let Err(e) = r {
                    panic!(
                        "{} {}: {e}\nm {m} n {n} k {k} {outliers:?}",
                        b.name(),
                        isa.name()
                    );
                }
            }
        }
    }

    let group = [32usize, 64, 128][data[6] as usize % 3];
    let kw = group * (1 + data[7] as usize % 3);
    let ww: Vec<f32> = (0..n * kw)
        .map(|i| byte(body, 5 * i + 3) as i8 as f32 / 64.0)
        .collect();
    // data[6] & 4: exponents over 2^-30..2^-1 (groups of up to 37 bits: the
    // VNNI path's 5-digit splits), y still finite in f16.
    let wide = data[6] & 4 != 0;
    let xw: Vec<f32> = (0..m.min(16) * kw)
        .map(|i| {
            let e = if wide {
                (byte(body, 7 * i + 2) % 30) as i32 - 30
            } else {
                -5
            };
            byte(body, 7 * i + 1) as i8 as f32 * 2f32.powi(e)
        })
        .collect();
    for (bits, layout) in [
        (8u32, WeightLayout::Panels),
        (4, WeightLayout::Panels),
        (4, WeightLayout::Rows),
    ] {
        let qw = QuantizedWeight::quantize_with_layout(&ww, n, kw, bits, group, layout).unwrap();
        for &isa in &isas {
            let runs = [
                run_and_check_weight_only::<f32>(&xw, &qw, bias, isa),
                run_and_check_weight_only::<f16>(&xw, &qw, bias, isa),
                run_and_check_weight_only::<bf16>(&xw, &qw, bias, isa),
            ];
            for r in runs {
                if let Err(e) = r {
                    panic!(
                        "weight-only int{bits} {layout:?} {}: {e}\nm {m} n {n} k {kw} group {group}",
                        isa.name()
                    );
                }
            }
            // One activation of 2^110 or more: the kernels scale each weight
            // before the product (x q would overflow); f32 and bf16 hold it.
            if data[4] & 2 != 0 {
                let mut xb = xw.clone();
                let at = byte(body, 13) as usize % xb.len();
                xb[at] = (110.0 + (byte(body, 17) % 17) as f32).exp2();
                for r in [
                    run_and_check_weight_only::<f32>(&xb, &qw, bias, isa),
                    run_and_check_weight_only::<bf16>(&xb, &qw, bias, isa),
                ] {
                    if let Err(e) = r {
                        panic!(
                            "weight-only int{bits} {layout:?} {} large x: {e}\nm {m} n {n} k {kw} group {group}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
});
