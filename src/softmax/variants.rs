//! The compiled softmax variants, read once from the C table (the X-macro list
//! in kernels-cpu/include/tk.h), so the list exists in exactly one place.

use std::sync::OnceLock;

use crate::dtype::Dtype;
use crate::ffi;
use crate::isa::Isa;

use super::Algorithm;

/// One compiled softmax microkernel.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// The C symbol, `tk_softmax_<dtype>_<isa>_<algo>`.
    pub name: &'static str,
    /// Element type.
    pub dtype: Dtype,
    /// Instruction set.
    pub isa: Isa,
    /// Algorithm.
    pub algorithm: Algorithm,
    pub(crate) run: unsafe extern "C" fn(*const ffi::tk_softmax_params),
}

/// Every softmax variant in this build, whether or not this CPU can run it
/// (check `variant.isa.is_available()`).
pub fn variants() -> &'static [Variant] {
    static TABLE: OnceLock<Vec<Variant>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // SAFETY: the C side defines `tk_softmax_variants` as a static array of
        // exactly `tk_softmax_variant_count` initialised entries; names are
        // static NUL-terminated literals.
        let table = unsafe {
            ffi::static_table(
                ffi::tk_softmax_variants.as_ptr(),
                ffi::tk_softmax_variant_count,
            )
        };
        table
            .iter()
            .map(|v| Variant {
                // SAFETY: see above.
                name: unsafe { ffi::static_name(v.name) },
                dtype: Dtype::from_ffi(v.dtype),
                isa: Isa::from_ffi(v.isa),
                algorithm: Algorithm::from_ffi(v.algo),
                run: v.run.expect("C variant table holds a null function"),
            })
            .collect()
    })
}

/// The variant for (dtype, algorithm) of the highest level at or below `isa`
/// that has one ([`Isa::at_or_below`]).
pub fn find(dtype: Dtype, isa: Isa, algorithm: Algorithm) -> Option<&'static Variant> {
    static INDEX: OnceLock<Vec<Option<&'static Variant>>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut idx = vec![None; Dtype::ALL.len() * Isa::ALL.len() * Algorithm::ALL.len()];
        for v in variants() {
            idx[slot(v.dtype, v.isa, v.algorithm)] = Some(v);
        }
        idx
    });
    isa.at_or_below()
        .find_map(|i| index[slot(dtype, i, algorithm)])
}

fn slot(dtype: Dtype, isa: Isa, algorithm: Algorithm) -> usize {
    (dtype as usize * Isa::ALL.len() + isa as usize) * Algorithm::ALL.len() + algorithm as usize
}
