//! Differential fuzzing of Lightning attention: every runnable variant (ISA x
//! dtype), forward and backward, against the f64 reference within the
//! documented bound, on fuzzer-chosen sequence lengths (packed or a batch),
//! head dims, decays, layout and which states take part; the values come
//! from a fuzzer-chosen seed. Any element outside the bound or left
//! unwritten fails.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use transformer_kernels::Dtype;
use transformer_kernels::lightning::{self, Layout};
use transformer_kernels::reference::lightning::{Case, check_backward, check_forward};

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let seqs = 1 + data[0] as usize % 3;
    let packed = data[1] & 1 != 0;
    let lens: Vec<usize> = (0..seqs)
        .map(|i| data[2 + i] as usize % 150)
        .map(|l| if packed { l } else { data[2] as usize % 150 })
        .collect();
    let heads = 1 + data[5] as usize % 2;
    let decay: Vec<f32> = (0..heads)
        .map(|h| [1.0f32, 0.999, 0.9, 0.5, 0.01][data[6 + h] as usize % 5])
        .collect();
    let dk = 1 + data[8] as usize % 80;
    let dv = 1 + data[9] as usize % 80;
    let flags = data[10];
    let seed = data[11..]
        .iter()
        .fold(0x9E37_79B9u64, |a, &b| a.rotate_left(5) ^ u64::from(b));
    let case = Case {
        lens,
        packed,
        decay,
        dk,
        dv,
        layout: if flags & 1 != 0 {
            Layout::TokensFirst
        } else {
            Layout::HeadsFirst
        },
        state_in: flags & 2 != 0,
        state_out: flags & 4 != 0,
        seed,
    };
    for v in lightning::variants()
        .iter()
        .filter(|v| v.isa.is_available())
    {
        let r =
            match v.dtype {
                Dtype::F32 => check_forward::<f32>(&case, v.isa)
                    .and_then(|_| check_backward::<f32>(&case, v.isa)),
                Dtype::F16 => check_forward::<f16>(&case, v.isa)
                    .and_then(|_| check_backward::<f16>(&case, v.isa)),
                Dtype::Bf16 => check_forward::<bf16>(&case, v.isa)
                    .and_then(|_| check_backward::<bf16>(&case, v.isa)),
            };
        if let Err(e) = r {
            panic!("{}: {e}\ncase: {case:?}", v.name);
        }
    }
});
