//! Scalar reference implementations: plain Rust, f64 accumulation, the textbook
//! formula. They are the oracle for the property tests, so they stay simple.

pub mod softmax;

use crate::dtype::{Dtype, Element};

/// A signalling NaN in `T`'s own encoding. Kernels only ever write quiet NaNs
/// (arithmetic and the conversions quiet them), so an output element that
/// still holds these bits was never written. Tests poison outputs with it.
pub fn poison<T: Element>() -> T {
    match T::DTYPE {
        Dtype::F32 => bytemuck::cast_slice::<u32, T>(&[0x7FA5_A5A5])[0],
        Dtype::F16 => bytemuck::cast_slice::<u16, T>(&[0x7D5A])[0],
        Dtype::Bf16 => bytemuck::cast_slice::<u16, T>(&[0x7F85])[0],
    }
}

/// Whether two elements have the same bits (NaN payloads included).
pub fn same_bits<T: Element>(a: T, b: T) -> bool {
    bytemuck::bytes_of(&a) == bytemuck::bytes_of(&b)
}
