//! C pointers to checked Rust slices. NULL, alignment, size and overlap are
//! checked before a slice exists, so the library never holds a `&mut` that
//! aliases another buffer of the same call.

use std::ffi::c_void;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;

use crate::Failure;

/// Most buffers one call takes (Lightning backward: 12).
const MAX_BUFFERS: usize = 16;

#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    written: bool,
    what: &'static str,
}

/// The buffers of one call, remembered (without allocating) so that each new
/// one can be checked against the others: an output must not overlap anything,
/// inputs may share memory with each other.
pub(crate) struct Buffers {
    spans: [Span; MAX_BUFFERS],
    count: usize,
}

impl Buffers {
    pub(crate) fn new() -> Buffers {
        let empty = Span {
            start: 0,
            end: 0,
            written: false,
            what: "",
        };
        Buffers {
            spans: [empty; MAX_BUFFERS],
            count: 0,
        }
    }

    /// Validates `len` elements of `T` at `p` and records them.
    fn claim<T>(
        &mut self,
        p: *const c_void,
        len: usize,
        written: bool,
        what: &'static str,
    ) -> Result<Option<NonNull<T>>, Failure> {
        if len == 0 {
            return Ok(None);
        }
        if p.is_null() {
            return Err(Failure::pointer(what, "is NULL"));
        }
        if (p as usize) % align_of::<T>() != 0 {
            return Err(Failure::pointer(
                what,
                format!("is not aligned to {} bytes", align_of::<T>()).as_str(),
            ));
        }
        let bytes = len
            .checked_mul(size_of::<T>())
            .filter(|&b| b <= isize::MAX as usize && (p as usize).checked_add(b).is_some())
            .ok_or_else(|| Failure::from(transformer_kernels::Error::Overflow { what }))?;
        let span = Span {
            start: p as usize,
            end: p as usize + bytes,
            written,
            what,
        };
        for other in &self.spans[..self.count] {
            let overlap = span.start < other.end && other.start < span.end;
            if overlap && (span.written || other.written) {
                return Err(Failure::pointer(
                    what,
                    format!("overlaps {} (outputs must not share memory)", other.what).as_str(),
                ));
            }
        }
        if self.count == MAX_BUFFERS {
            return Err(Failure::invalid(what, "too many buffers in one call"));
        }
        self.spans[self.count] = span;
        self.count += 1;
        Ok(NonNull::new(p.cast_mut().cast()))
    }

    /// A required input of `len` elements (NULL allowed only when `len == 0`).
    ///
    /// # Safety
    /// `p` must point to `len` readable `T` that stay unchanged during the call.
    pub(crate) unsafe fn input<'a, T>(
        &mut self,
        p: *const c_void,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [T], Failure> {
        Ok(match self.claim::<T>(p, len, false, what)? {
            // SAFETY: non-null, aligned, in bounds (caller), not written by this call.
            Some(ptr) => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) },
            None => &[],
        })
    }

    /// A required output of `len` elements.
    ///
    /// # Safety
    /// `p` must point to `len` writable `T` not accessed by anyone else during the call.
    pub(crate) unsafe fn output<'a, T>(
        &mut self,
        p: *mut c_void,
        len: usize,
        what: &'static str,
    ) -> Result<&'a mut [T], Failure> {
        Ok(match self.claim::<T>(p, len, true, what)? {
            // SAFETY: non-null, aligned, in bounds (caller), disjoint from every other buffer.
            Some(ptr) => unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) },
            None => &mut [],
        })
    }

    /// An optional input: NULL means absent.
    ///
    /// # Safety
    /// As [`Buffers::input`] when `p` is not NULL.
    pub(crate) unsafe fn optional_input<'a, T>(
        &mut self,
        p: *const c_void,
        len: usize,
        what: &'static str,
    ) -> Result<Option<&'a [T]>, Failure> {
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: forwarded to the caller.
        unsafe { self.input(p, len, what) }.map(Some)
    }

    /// An optional output: NULL means not wanted.
    ///
    /// # Safety
    /// As [`Buffers::output`] when `p` is not NULL.
    pub(crate) unsafe fn optional_output<'a, T>(
        &mut self,
        p: *mut c_void,
        len: usize,
        what: &'static str,
    ) -> Result<Option<&'a mut [T]>, Failure> {
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: forwarded to the caller.
        unsafe { self.output(p, len, what) }.map(Some)
    }
}

/// `a * b`, or an overflow error naming `what`.
pub(crate) fn product(dims: &[usize], what: &'static str) -> Result<usize, Failure> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| transformer_kernels::Error::Overflow { what }.into())
}

/// Elements spanned by `rows` rows of `cols` starting `stride` apart:
/// `(rows - 1) * stride + cols` (0 without rows); `stride >= cols` unless
/// there is at most one row.
pub(crate) fn strided_span(
    rows: usize,
    cols: usize,
    stride: usize,
    what: &'static str,
) -> Result<usize, Failure> {
    if rows == 0 {
        return Ok(0);
    }
    if rows > 1 && stride < cols {
        return Err(Failure::invalid(
            what,
            "the row stride must be at least cols",
        ));
    }
    (rows - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(cols))
        .ok_or_else(|| transformer_kernels::Error::Overflow { what }.into())
}

/// A single object the caller wants written (a handle or a scalar result).
///
/// # Safety
/// `p` must be NULL or point to a writable `T`.
pub(crate) unsafe fn out_ref<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T, Failure> {
    if p.is_null() {
        return Err(Failure::pointer(what, "is NULL"));
    }
    if (p as usize) % align_of::<T>() != 0 {
        return Err(Failure::pointer(what, "is misaligned"));
    }
    // SAFETY: non-null and aligned; writable by the caller's contract.
    Ok(unsafe { &mut *p })
}

/// A single object the caller passes by pointer (a handle or arguments).
///
/// # Safety
/// `p` must be NULL or point to a valid `T` for the duration of the call.
pub(crate) unsafe fn in_ref<'a, T>(p: *const T, what: &'static str) -> Result<&'a T, Failure> {
    if p.is_null() {
        return Err(Failure::pointer(what, "is NULL"));
    }
    if (p as usize) % align_of::<T>() != 0 {
        return Err(Failure::pointer(what, "is misaligned"));
    }
    // SAFETY: non-null and aligned; valid by the caller's contract.
    Ok(unsafe { &*p })
}

/// Stores a new boxed handle in `*out` (NULL `out` refused).
pub(crate) fn hand_out<H>(out: *mut *mut H, handle: H) -> Result<(), Failure> {
    // SAFETY: out_ref checks NULL and alignment; the caller passed a writable slot.
    *unsafe { out_ref(out, "out")? } = Box::into_raw(Box::new(handle));
    Ok(())
}

/// Drops a handle made by [`hand_out`] (NULL is ignored).
///
/// # Safety
/// `p` is NULL or came from [`hand_out`] and was not freed.
pub(crate) unsafe fn free<H>(p: *mut H) {
    if !p.is_null() {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(p) });
    }
}
