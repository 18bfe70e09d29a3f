//! Buffers on 64-byte boundaries: the int8 kernels load whole cache lines of
//! packed weights and AMX tiles of activations from them, and the decode
//! GEMVs stream 64-byte lines of values and of scales (from a plain `Vec` of
//! 16 MB, glibc's pointer is 16 bytes past a page: every such load would
//! straddle two cache lines).

use bytemuck::Pod;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// `len` zeroed elements starting on a 64-byte boundary.
#[derive(Clone)]
pub(crate) struct Aligned<T: Pod> {
    lines: Vec<Line>,
    len: usize,
    of: std::marker::PhantomData<T>,
}

/// Bytes on a 64-byte boundary.
pub(crate) type AlignedBytes = Aligned<u8>;

impl<T: Pod> Aligned<T> {
    pub(crate) fn zeroed(len: usize) -> Aligned<T> {
        const { assert!(std::mem::align_of::<T>() <= 64) };
        // checked: a wrapped size would leave `as_slice` past the allocation
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("aligned buffer size overflows usize");
        Aligned {
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            len,
            of: std::marker::PhantomData,
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: the lines are at least `len * size_of::<T>()` initialised
        // bytes, aligned for T (at most 64, checked in `zeroed`), and any
        // bytes are a valid T (Pod).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above, borrowed exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Pod> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Aligned({} x {} bytes)",
            self.len,
            std::mem::size_of::<T>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_holds_len_zeroed_elements() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let mut f = Aligned::<f32>::zeroed(len);
            assert_eq!(f.as_slice().as_ptr() as usize % 64, 0);
            assert_eq!(f.as_slice().len(), len);
            assert!(f.as_slice().iter().all(|&v| v == 0.0));
            f.as_mut_slice().iter_mut().for_each(|v| *v = 1.5);
            assert!(f.clone().as_slice().iter().all(|&v| v == 1.5));
        }
    }
}
