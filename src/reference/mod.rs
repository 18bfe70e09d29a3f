//! Scalar reference implementations: plain Rust, f64 accumulation, the textbook
//! formula. They are the oracle for the property tests, so they stay simple.

pub mod kron;
pub mod lightning;
pub mod norm;
pub mod qgemm;
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

/// `n` deterministic pseudo-random 64-bit words (xorshift64 seeded with
/// `seed`): the one generator behind reproducible test inputs.
pub fn random_words(seed: u64, n: usize) -> impl Iterator<Item = u64> {
    let mut s = seed | 1;
    (0..n).map(move |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    })
}

/// `n` deterministic pseudo-random values uniform in `[-amp, amp)`
/// ([`random_words`]): reproducible inputs for tests, benches and reports.
pub fn uniform_values(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    random_words(seed, n)
        .map(|s| ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp)
        .collect()
}
