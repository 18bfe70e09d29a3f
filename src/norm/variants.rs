//! The compiled norm variants, read once from the C table (the X-macro list
//! in kernels-cpu/include/tk.h).

crate::ffi::kernel_variants! {
    /// One compiled norm microkernel pair (C symbols `tk_norm_forward_<dtype>_<isa>`
    /// and `tk_norm_backward_<dtype>_<isa>`).
    table: tk_norm_variants[tk_norm_variant_count],
    forward: crate::ffi::tk_norm_params,
    backward: crate::ffi::tk_norm_backward_params,
}
