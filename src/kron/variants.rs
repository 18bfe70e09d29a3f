//! The compiled Kronecker variants, read once from the C table (the X-macro
//! list in kernels-cpu/include/tk.h).

use std::sync::OnceLock;

use crate::dtype::Dtype;
use crate::ffi;
use crate::isa::Isa;

/// One compiled Kronecker transform kernel.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// `tk_kron_<dtype>_<isa>`, also the C symbol.
    pub name: &'static str,
    pub dtype: Dtype,
    pub isa: Isa,
    pub(crate) run: unsafe extern "C" fn(*const ffi::tk_kron_params),
}

/// Every Kronecker variant in this build, whether or not this CPU can run it.
pub fn variants() -> &'static [Variant] {
    static TABLE: OnceLock<Vec<Variant>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // SAFETY: the C side defines `tk_kron_variants` as a static array of
        // exactly `tk_kron_variant_count` initialised entries; names are
        // static NUL-terminated literals.
        let table = unsafe {
            ffi::static_table(ffi::tk_kron_variants.as_ptr(), ffi::tk_kron_variant_count)
        };
        table
            .iter()
            .map(|v| Variant {
                // SAFETY: see above.
                name: unsafe { ffi::static_name(v.name) },
                dtype: Dtype::from_ffi(v.dtype),
                isa: Isa::from_ffi(v.isa),
                run: v.run.expect("C kron table holds a null kernel"),
            })
            .collect()
    })
}

/// The variant for (dtype, isa), if compiled.
pub fn find(dtype: Dtype, isa: Isa) -> Option<&'static Variant> {
    variants().iter().find(|v| v.dtype == dtype && v.isa == isa)
}
