//! Element types of kernel inputs and outputs: `f32`, `half::f16`, `half::bf16`.
//! Arithmetic inside every kernel is f32.

use half::{bf16, f16};

use crate::ffi::tk_dtype;

/// The element types the kernels read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa).
    Bf16,
}

impl Dtype {
    /// Every dtype, in table order.
    pub const ALL: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::Bf16];

    /// Lower-case name used in kernel names, reports and `TK_*` variables.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }

    /// Unit roundoff of the format (half an ulp of 1.0, relative).
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Dtype::F32 => f64::powi(2.0, -24),
            Dtype::F16 => f64::powi(2.0, -11),
            Dtype::Bf16 => f64::powi(2.0, -8),
        }
    }

    /// The smallest positive (subnormal) value of the dtype.
    pub fn min_subnormal(self) -> f64 {
        match self {
            Dtype::F32 => f64::powi(2.0, -149),
            Dtype::F16 => f64::powi(2.0, -24),
            Dtype::Bf16 => f64::powi(2.0, -133),
        }
    }

    pub(crate) fn to_ffi(self) -> tk_dtype {
        match self {
            Dtype::F32 => tk_dtype::TK_DTYPE_F32,
            Dtype::F16 => tk_dtype::TK_DTYPE_F16,
            Dtype::Bf16 => tk_dtype::TK_DTYPE_BF16,
        }
    }

    pub(crate) fn from_ffi(d: tk_dtype) -> Dtype {
        match d {
            tk_dtype::TK_DTYPE_F32 => Dtype::F32,
            tk_dtype::TK_DTYPE_F16 => Dtype::F16,
            tk_dtype::TK_DTYPE_BF16 => Dtype::Bf16,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An element type a kernel accepts. Sealed: implemented for `f32`, `f16`, `bf16`.
pub trait Element: sealed::Sealed + bytemuck::Pod + Copy + Send + Sync + 'static {
    /// The runtime tag of this type.
    const DTYPE: Dtype;
    /// Exact widening to f32.
    fn to_f32(self) -> f32;
    /// Rounding (to nearest even) from f32.
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f16 {
    const DTYPE: Dtype = Dtype::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Element for bf16 {
    const DTYPE: Dtype = Dtype::Bf16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}
