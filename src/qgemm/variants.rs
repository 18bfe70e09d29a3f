//! The compiled activation-side (LLM.int8() quantizer, outlier detection) and
//! weight-only product variants, read once from the C table (the X-macro list
//! in kernels-cpu/include/tk.h).

crate::ffi::kernel_variants! {
    /// One compiled set of activation-side / weight-only kernels for a dtype and ISA.
    table: tk_qgemm_variants[tk_qgemm_variant_count],
    quantize: crate::ffi::tk_qgemm_quant_params,
    colmax: crate::ffi::tk_qgemm_colmax_params,
    wgemv: crate::ffi::tk_wgemv_params,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Dtype;
    use half::{bf16, f16};

    /// `colmax` merges into the maxima it is given (the threaded scan runs it
    /// on several blocks of rows into one set per thread): two calls on the
    /// halves of the rows give one call's result, NaN kept.
    #[test]
    fn colmax_merges_into_the_running_maxima() {
        let (rows, cols) = (6, 37);
        let mut v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 29 % 23) as f32 - 11.0) / 2.0)
            .collect();
        v[4 * cols + 5] = f32::NAN;
        let x32 = v.clone();
        let x16: Vec<f16> = v.iter().map(|&a| f16::from_f32(a)).collect();
        let xb: Vec<bf16> = v.iter().map(|&a| bf16::from_f32(a)).collect();
        let want: Vec<f32> = (0..cols)
            .map(|c| {
                (0..rows)
                    .map(|r| v[r * cols + c].abs())
                    .fold(0.0, |m: f32, a| {
                        if m.is_nan() || a.is_nan() {
                            f32::NAN
                        } else {
                            m.max(a)
                        }
                    })
            })
            .collect();
        for var in variants().iter().filter(|v| v.isa.is_available()) {
            let (x, size): (*const u8, usize) = match var.dtype {
                Dtype::F32 => (x32.as_ptr().cast(), 4),
                Dtype::F16 => (x16.as_ptr().cast(), 2),
                Dtype::Bf16 => (xb.as_ptr().cast(), 2),
            };
            let mut got = vec![0f32; cols];
            for (start, count) in [(0, 2), (2, rows - 2)] {
                let p = crate::ffi::tk_qgemm_colmax_params {
                    x: x.wrapping_add(start * cols * size).cast(),
                    x_stride: cols,
                    rows: count,
                    cols,
                    colmax: got.as_mut_ptr(),
                };
                // SAFETY: x holds rows x cols elements of the variant's
                // dtype, this call rows start .. start + count; got cols floats.
                unsafe { (var.colmax)(&p) };
            }
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a == b || a.is_nan() && b.is_nan());
            assert!(same, "{}: {got:?} != {want:?}", var.name);
        }
    }
}
