//! The C ABI of transformer-kernels: `libtfk.a`, `libtfk.so` and the header
//! `include/tfk.h` (generated from this source by cbindgen; `tests/header.rs`
//! fails when it is stale, `TFK_BLESS=1 cargo test -p transformer-kernels-capi
//! --test header` rewrites it).
//!
//! Conventions of every function:
//! - returns a [`tfk_status`]: [`TFK_OK`] or an error code; on error nothing was
//!   written, and [`tfk_last_error`] gives a message for this thread;
//! - tensors are `void *` plus a [`tfk_dtype`]; a pointer must be aligned to its
//!   element type, may be NULL only where its length is zero or the
//!   documentation says it is optional, and an output must not overlap any other
//!   buffer of the call except where in-place use is documented;
//! - no Rust panic crosses the boundary: a panic is caught and reported as
//!   [`TFK_ERROR_PANIC`] (a bug in the library; please report it);
//! - handles ([`tfk_kron`], [`tfk_int8_weight`], [`tfk_quantized_weight`]) are
//!   immutable after creation and may be shared between threads; a workspace
//!   ([`tfk_int8_workspace`]) belongs to one call at a time.

#![allow(non_camel_case_types)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use transformer_kernels::parallel::Threads;
use transformer_kernels::{Error, Isa, isa};

mod buffers;
mod kron;
mod lightning;
mod norm;
mod qgemm;
mod softmax;

pub use kron::*;
pub use lightning::*;
pub use norm::*;
pub use qgemm::*;
pub use softmax::*;

/// Result of a call: [`TFK_OK`] (0) or one of the `TFK_ERROR_*` codes.
pub type tfk_status = i32;
/// Success.
pub const TFK_OK: tfk_status = 0;
/// A required pointer is NULL, a pointer is misaligned for its element type,
/// or an output overlaps another buffer.
pub const TFK_ERROR_POINTER: tfk_status = 1;
/// A buffer length does not match the shape.
pub const TFK_ERROR_LENGTH: tfk_status = 2;
/// A dimension is zero where the operation needs it positive.
pub const TFK_ERROR_ZERO_SIZE: tfk_status = 3;
/// A size computation overflows.
pub const TFK_ERROR_OVERFLOW: tfk_status = 4;
/// A scalar or enum argument is outside its domain.
pub const TFK_ERROR_INVALID_ARGUMENT: tfk_status = 5;
/// The instruction set or dtype combination is not available here.
pub const TFK_ERROR_UNSUPPORTED: tfk_status = 6;
/// A panic inside the library was caught at the boundary (a bug).
pub const TFK_ERROR_PANIC: tfk_status = 7;

/// Element type of a tensor argument.
pub type tfk_dtype = i32;
/// IEEE binary32.
pub const TFK_F32: tfk_dtype = 0;
/// IEEE binary16.
pub const TFK_F16: tfk_dtype = 1;
/// bfloat16.
pub const TFK_BF16: tfk_dtype = 2;

/// CPU instruction set of the kernels.
pub type tfk_isa = i32;
/// The best this CPU has (or the `TK_ISA` environment variable).
pub const TFK_ISA_AUTO: tfk_isa = 0;
/// Portable C.
pub const TFK_ISA_SCALAR: tfk_isa = 1;
/// AVX2 + FMA + F16C.
pub const TFK_ISA_AVX2: tfk_isa = 2;
/// AVX-512 F/BW/DQ/VL.
pub const TFK_ISA_AVX512: tfk_isa = 3;
/// AVX-512 plus AVX512_BF16 (one-instruction f32 -> bf16 rounding; bf16
/// softmax and norms have variants of their own, everything else runs as
/// with [`TFK_ISA_AVX512`]).
pub const TFK_ISA_AVX512BF16: tfk_isa = 4;

/// Why a call failed: the status it returns and the message kept for
/// [`tfk_last_error`].
pub(crate) struct Failure {
    status: tfk_status,
    message: String,
}

impl Failure {
    pub(crate) fn pointer(what: &str, reason: &str) -> Failure {
        Failure {
            status: TFK_ERROR_POINTER,
            message: format!("{what}: {reason}"),
        }
    }

    pub(crate) fn invalid(what: &str, reason: impl std::fmt::Display) -> Failure {
        Failure {
            status: TFK_ERROR_INVALID_ARGUMENT,
            message: format!("{what}: {reason}"),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match e {
            Error::LengthNotMultiple { .. } | Error::LengthMismatch { .. } => TFK_ERROR_LENGTH,
            Error::ZeroSize { .. } => TFK_ERROR_ZERO_SIZE,
            Error::Overflow { .. } => TFK_ERROR_OVERFLOW,
            Error::UnsupportedIsa { .. } | Error::UnknownIsaName { .. } => TFK_ERROR_UNSUPPORTED,
            Error::NoVariant { .. } => TFK_ERROR_UNSUPPORTED,
            _ => TFK_ERROR_INVALID_ARGUMENT,
        };
        Failure {
            status,
            message: e.to_string(),
        }
    }
}

pub(crate) type Outcome = Result<(), Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn record(f: Failure) -> tfk_status {
    let text = CString::new(f.message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|m| *m.borrow_mut() = text);
    f.status
}

/// Runs the body of an exported function: maps its error to a status and a
/// message, and stops a panic at the boundary.
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> tfk_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TFK_OK,
        Ok(Err(f)) => record(f),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            record(Failure {
                status: TFK_ERROR_PANIC,
                message: format!("internal panic (a bug, please report it): {what}"),
            })
        }
    }
}

/// Runs `$f::<T>(args)` for the element type named by a [`tfk_dtype`].
macro_rules! by_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $dtype {
            $crate::TFK_F32 => $f::<f32>($($arg),*),
            $crate::TFK_F16 => $f::<half::f16>($($arg),*),
            $crate::TFK_BF16 => $f::<half::bf16>($($arg),*),
            other => Err($crate::Failure::invalid("dtype", format_args!("{other} is not a tfk_dtype"))),
        }
    };
    // With leading type parameters fixed: `f::<P.., T>`.
    ($dtype:expr, $f:ident [$($pre:ty),*] ( $($arg:expr),* $(,)? )) => {
        match $dtype {
            $crate::TFK_F32 => $f::<$($pre,)* f32>($($arg),*),
            $crate::TFK_F16 => $f::<$($pre,)* half::f16>($($arg),*),
            $crate::TFK_BF16 => $f::<$($pre,)* half::bf16>($($arg),*),
            other => Err($crate::Failure::invalid("dtype", format_args!("{other} is not a tfk_dtype"))),
        }
    };
}
pub(crate) use by_dtype;

/// The message of the most recent failed call on this thread ("" if none).
/// The text stays valid until the next failing call on the same thread.
#[unsafe(no_mangle)]
pub extern "C" fn tfk_last_error() -> *const c_char {
    LAST_ERROR.with(|m| m.borrow().as_ptr())
}

/// The library version, for example "0.1.0" (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn tfk_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

fn isa_from(code: tfk_isa) -> Result<Option<Isa>, Failure> {
    Ok(match code {
        TFK_ISA_AUTO => None,
        TFK_ISA_SCALAR => Some(Isa::Scalar),
        TFK_ISA_AVX2 => Some(Isa::Avx2),
        TFK_ISA_AVX512 => Some(Isa::Avx512),
        TFK_ISA_AVX512BF16 => Some(Isa::Avx512Bf16),
        other => {
            return Err(Failure::invalid(
                "isa",
                format_args!("{other} is not a tfk_isa"),
            ));
        }
    })
}

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// The thread setting of C calls ([`tfk_set_threads`]).
pub(crate) fn threads() -> Threads {
    match THREADS.load(Ordering::Relaxed) {
        0 => Threads::Pool,
        1 => Threads::Single,
        n => Threads::Count(n),
    }
}

/// Lets every later call in the process split its work across up to
/// `threads` threads of the library's pool (rayon's global pool; 0: all of
/// it; 1, the default: the calling thread only). Results do not depend on
/// it.
#[unsafe(no_mangle)]
pub extern "C" fn tfk_set_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// Creates the library's pool (rayon's global pool) with `threads` workers
/// (0: one per CPU the process may run on), worker `i` pinned to the `i`-th
/// of those CPUs (Linux): an idle worker then cannot be queued behind a busy
/// one on the same core (docs/threads.md). Call it once, before any call that
/// uses threads; fails with [`TFK_ERROR_INVALID_ARGUMENT`] once the pool
/// exists (it is created on first use, unpinned).
#[unsafe(no_mangle)]
pub extern "C" fn tfk_init_pinned_pool(threads: usize) -> tfk_status {
    guard(|| {
        transformer_kernels::parallel::pin_global_pool(threads)
            .map_err(|e| Failure::invalid("thread pool", e))
    })
}

/// Forces the instruction set of every later call in the process
/// ([`TFK_ISA_AUTO`] restores automatic choice). Fails with
/// [`TFK_ERROR_UNSUPPORTED`] if this CPU lacks it.
#[unsafe(no_mangle)]
pub extern "C" fn tfk_set_isa(isa: tfk_isa) -> tfk_status {
    guard(|| Ok(isa::set_override(isa_from(isa)?)?))
}

/// Writes the instruction set calls use now (never [`TFK_ISA_AUTO`]) to `*out`.
///
/// # Safety
/// `out` is NULL (refused) or points to a writable `tfk_isa`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tfk_selected_isa(out: *mut tfk_isa) -> tfk_status {
    guard(|| {
        let chosen = match isa::selected()? {
            Isa::Scalar => TFK_ISA_SCALAR,
            Isa::Avx2 => TFK_ISA_AVX2,
            Isa::Avx512 => TFK_ISA_AVX512,
            Isa::Avx512Bf16 => TFK_ISA_AVX512BF16,
        };
        // SAFETY: checked non-null; the caller provides a writable tfk_isa.
        unsafe { *buffers::out_ref(out, "out")? = chosen };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, TFK_ERROR_PANIC);
        let msg = unsafe { std::ffi::CStr::from_ptr(tfk_last_error()) };
        assert!(msg.to_str().unwrap().contains("boom"), "{msg:?}");
    }

    #[test]
    fn errors_map_to_their_codes() {
        let f: Failure = Error::ZeroSize { what: "rows" }.into();
        assert_eq!(f.status, TFK_ERROR_ZERO_SIZE);
        let f: Failure = Error::LengthMismatch {
            what: "y",
            expected: 2,
            actual: 3,
        }
        .into();
        assert_eq!(f.status, TFK_ERROR_LENGTH);
        assert_eq!(f.message, "y: expected length 2, got 3");
    }
}
