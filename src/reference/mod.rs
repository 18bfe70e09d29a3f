//! Scalar reference implementations: plain Rust, f64 accumulation, the textbook
//! formula. They are the oracle for the property tests, so they stay simple.

pub mod softmax;
