//! Differential fuzzing of the norm family: every runnable variant (ISA x
//! dtype) forward and backward against the f64 reference, on fuzzer-chosen
//! kinds (LayerNorm, RMSNorm, CRMSNorm, per-channel), fusions (residual in
//! place or not, gain/bias in f32 or the dtype, output scale, y and/or int8,
//! or neither: the add alone), row lengths, streaming stores or not, where
//! h and y start (their relative alignment), and values. Values are int8
//! mantissas times 2^e, e in [-24, 8], so they stay inside the documented
//! range for every dtype (f16 finite, f32 sums of squares finite); within
//! it, any element outside the bound, any mismatch in h or the int8 output,
//! an unwritten element or a write before h or y fails.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use transformer_kernels::Dtype;
use transformer_kernels::norm::{self, Kind};
use transformer_kernels::reference::norm::{Case, check_backward, check_forward};

fn values(bytes: &[u8], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let m = *bytes.get(2 * i).unwrap_or(&1) as i8 as f32;
            let e = (*bytes.get(2 * i + 1).unwrap_or(&24) % 33) as i32 - 24;
            m * (e as f32).exp2()
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (kind, crms) = [
        (Kind::LayerNorm, false),
        (Kind::RmsNorm, false),
        (Kind::RmsNorm, true),
        (Kind::Channel, false),
    ][data[0] as usize % 4];
    // up to 5041: f32 rows and gamma past 32 KiB run RMSNorm in row pairs
    let cols = 1 + (data[1] as usize % 64) * (1 + data[2] as usize % 80);
    let rows = 1 + data[3] as usize % 3;
    let flags = data[4];
    let out_scale = [1.0f32, 0.5, -1.5, 0.125][data[5] as usize % 4];
    let eps = [1e-5f32, 0.0, 1e-2][data[6] as usize % 3];
    let body = &data[7..];
    let n = rows * cols;
    let x = values(body, n);
    let other = |k: usize| values(body.get(k % body.len().max(1)..).unwrap_or(&[]), n);
    let residual = (flags & 1 != 0).then(|| other(3));
    let case = Case {
        kind,
        crms,
        eps,
        out_scale,
        cols,
        x,
        residual,
        residual_in_place: flags & 2 != 0,
        gamma: (flags & 4 != 0).then(|| values(body.get(5..).unwrap_or(&[]), cols)),
        beta: (flags & 8 != 0).then(|| values(body.get(9..).unwrap_or(&[]), cols)),
        params_f32: flags & 16 != 0,
        // neither (a spare bit): the residual add alone
        want_y: (flags & 32 != 0 || flags & 64 == 0) && data[6] & 0x80 == 0,
        want_q: flags & 64 != 0 && data[6] & 0x80 == 0,
        dy: other(7),
        dh: (flags & 128 != 0).then(|| other(11)),
        // streaming stores: f32 rows take the instance that prefetches twice
        nontemporal: data[5] & 0x80 != 0,
        // h and y start 0-15 elements into their buffers (spare bits)
        out_offsets: [(data[0] >> 2) as usize % 16, (data[5] >> 2) as usize % 16],
    };
    for v in norm::variants().iter().filter(|v| v.isa.is_available()) {
        let fwd = match v.dtype {
            Dtype::F32 => check_forward::<f32>(&case, v.isa),
            Dtype::F16 => check_forward::<f16>(&case, v.isa),
            Dtype::Bf16 => check_forward::<bf16>(&case, v.isa),
        };
        if let Err(m) = fwd {
            panic!(
                "{} forward: {m}\n{kind:?} crms={crms} rows={rows} cols={cols} flags={flags:#x} eps={eps} scale={out_scale} nt={} offsets={:?}",
                v.name, case.nontemporal, case.out_offsets
            );
        }
        if kind == Kind::Channel || crms {
            continue;
        }
        let bwd = match v.dtype {
            Dtype::F32 => check_backward::<f32>(&case, v.isa),
            Dtype::F16 => check_backward::<f16>(&case, v.isa),
            Dtype::Bf16 => check_backward::<bf16>(&case, v.isa),
        };
        if let Err(m) = bwd {
            panic!(
                "{} backward: {m}\n{kind:?} rows={rows} cols={cols} flags={flags:#x} eps={eps} scale={out_scale}",
                v.name
            );
        }
    }
});
