//! The compiled lightning variants, read once from the C table (the X-macro list
//! in kernels-cpu/include/tk.h).

use std::sync::OnceLock;

use crate::dtype::Dtype;
use crate::ffi;
use crate::isa::Isa;

/// One compiled lightning kernel set (forward, backward, decode).
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// `tk_lightning_<dtype>_<isa>`; the C symbols add `_forward`, `_backward`, `_decode`.
    pub name: &'static str,
    pub dtype: Dtype,
    pub isa: Isa,
    pub(crate) forward: unsafe extern "C" fn(*const ffi::tk_lightning_params),
    pub(crate) backward: unsafe extern "C" fn(*const ffi::tk_lightning_backward_params),
    pub(crate) decode: unsafe extern "C" fn(*const ffi::tk_lightning_decode_params),
}

/// Every lightning variant in this build, whether or not this CPU can run it.
pub fn variants() -> &'static [Variant] {
    static TABLE: OnceLock<Vec<Variant>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // SAFETY: the C side defines `tk_lightning_variants` as a static array of
        // exactly `tk_lightning_variant_count` initialised entries; names are
        // static NUL-terminated literals.
        let table = unsafe {
            ffi::static_table(
                ffi::tk_lightning_variants.as_ptr(),
                ffi::tk_lightning_variant_count,
            )
        };
        table
            .iter()
            .map(|v| Variant {
                // SAFETY: see above.
                name: unsafe { ffi::static_name(v.name) },
                dtype: Dtype::from_ffi(v.dtype),
                isa: Isa::from_ffi(v.isa),
                forward: v.forward.expect("C lightning table holds a null forward"),
                backward: v.backward.expect("C lightning table holds a null backward"),
                decode: v.decode.expect("C lightning table holds a null decode"),
            })
            .collect()
    })
}

/// The variant for (dtype, isa), if compiled.
pub fn find(dtype: Dtype, isa: Isa) -> Option<&'static Variant> {
    variants().iter().find(|v| v.dtype == dtype && v.isa == isa)
}
