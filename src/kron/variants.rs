//! The compiled Kronecker variants, read once from the C table (the X-macro
//! list in kernels-cpu/include/tk.h).

crate::ffi::kernel_variants! {
    /// One compiled Kronecker transform kernel.
    table: tk_kron_variants[tk_kron_variant_count],
    run: crate::ffi::tk_kron_params,
}
