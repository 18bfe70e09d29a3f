//! # transformer-kernels
//!
//! Hand-written compute kernels for transformer building blocks: SIMD C for the
//! CPU (scalar, AVX2+FMA, AVX-512, chosen at run time) and CUDA C for NVIDIA
//! GPUs (feature `cuda`), behind one safe Rust API. Every kernel is checked
//! against a scalar f64 reference by property tests and states its error bound.
//!
//! ```
//! use transformer_kernels::softmax;
//!
//! let x = vec![0.0f32, 1.0, 2.0, 3.0];
//! let mut y = vec![0.0f32; 4];
//! softmax::softmax(&x, &mut y, 4)?;
//! assert!(y[3] > y[2] && (y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
//! # Ok::<(), transformer_kernels::Error>(())
//! ```
//!
//! Families: [`softmax`], [`norm`], [`lightning`], [`kron`], [`qgemm`]. CPU dispatch: [`isa`]. GPU: `cuda` (feature `cuda`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod dtype;
pub mod error;
mod ffi;
pub mod isa;
pub mod kron;
pub mod lightning;
pub mod norm;
pub mod parallel;
pub mod qgemm;
pub mod reference;
pub mod shape;
pub mod softmax;

#[cfg(feature = "cuda")]
pub mod cuda;

/// The README's examples run as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

pub use dtype::{Dtype, Element};
pub use error::{Error, Result};
pub use isa::Isa;
