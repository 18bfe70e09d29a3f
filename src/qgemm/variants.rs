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
