//! The one error type of the crate.

use std::fmt;

use crate::isa::Isa;

/// Everything a kernel call can reject. Library code never panics on user input
/// and never writes an output it rejected: validation happens before any write.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's length is not a whole number of rows.
    LengthNotMultiple {
        /// The buffer.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The row length.
        cols: usize,
    },
    /// Two buffers that must describe the same shape do not.
    LengthMismatch {
        /// The buffer.
        what: &'static str,
        /// The length the shape needs.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// A dimension is zero where the operation is undefined for zero.
    ZeroSize {
        /// The argument.
        what: &'static str,
    },
    /// A size computation overflowed `usize`.
    Overflow {
        /// The size computed.
        what: &'static str,
    },
    /// A scalar argument is outside its domain (for example a NaN scale).
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The requested instruction set is not available on this CPU or target.
    UnsupportedIsa {
        /// The instruction set asked for.
        isa: Isa,
    },
    /// `TK_ISA` holds a name that is not an instruction set.
    UnknownIsaName {
        /// The value found.
        name: String,
    },
    /// No compiled variant matches the request (dtype, ISA, algorithm).
    NoVariant {
        /// The kernel family.
        kernel: &'static str,
        /// The dtype / ISA / algorithm asked for.
        detail: String,
    },
    /// A CUDA driver call or launch failed.
    Cuda {
        /// The kernel.
        kernel: &'static str,
        /// The driver's message.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthNotMultiple { what, len, cols } => {
                write!(
                    f,
                    "{what}: length {len} is not a multiple of the row length {cols}"
                )
            }
            Error::LengthMismatch {
                what,
                expected,
                actual,
            } => {
                write!(f, "{what}: expected length {expected}, got {actual}")
            }
            Error::ZeroSize { what } => write!(f, "{what} must not be zero"),
            Error::Overflow { what } => write!(f, "{what}: size overflows usize"),
            Error::InvalidArgument { what, reason } => write!(f, "{what}: {reason}"),
            Error::UnsupportedIsa { isa } => {
                write!(
                    f,
                    "instruction set {} is not available on this CPU",
                    isa.name()
                )
            }
            Error::UnknownIsaName { name } => write!(
                f,
                "TK_ISA={name:?} is not one of: scalar, avx2, avx512 (or empty for automatic)"
            ),
            Error::NoVariant { kernel, detail } => {
                write!(f, "{kernel}: no compiled variant for {detail}")
            }
            Error::Cuda { kernel, message } => write!(f, "CUDA error in {kernel}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
