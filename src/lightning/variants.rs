//! The compiled lightning variants, read once from the C table (the X-macro list
//! in kernels-cpu/include/tk.h).

crate::ffi::kernel_variants! {
    /// One compiled lightning kernel set (C symbols add `_forward`, `_backward`,
    /// `_decode` after `tk_lightning`).
    table: tk_lightning_variants[tk_lightning_variant_count],
    forward: crate::ffi::tk_lightning_params,
    backward: crate::ffi::tk_lightning_backward_params,
    decode: crate::ffi::tk_lightning_decode_params,
}
