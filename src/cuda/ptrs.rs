//! Device pointers of one launch, with the stream-ordering guards of the views
//! they came from: the guards drop (recording the stream's use of each buffer)
//! only after the launch that reads the raw addresses.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, sys::CUdeviceptr};

/// Anything held only for its drop (the views' stream-ordering guards).
trait Guard {}
impl<G> Guard for G {}

/// The raw addresses of a call's buffers and the guards that keep them ordered.
pub(crate) struct Ptrs<'s> {
    guards: Vec<Box<dyn Guard + 's>>,
    addrs: Vec<CUdeviceptr>,
}

impl<'s> Ptrs<'s> {
    pub(crate) fn new() -> Self {
        Ptrs {
            guards: Vec::new(),
            addrs: Vec::new(),
        }
    }

    /// A view's or a slice's address, for reading.
    pub(crate) fn view<U, V: DevicePtr<U>>(
        &mut self,
        v: &'s V,
        s: &'s Arc<CudaStream>,
    ) -> CUdeviceptr {
        let (p, g) = v.device_ptr(s);
        self.guards.push(Box::new(g));
        self.addrs.push(p);
        p
    }

    /// A view's or a slice's address, for writing.
    pub(crate) fn view_mut<U, V: DevicePtrMut<U>>(
        &mut self,
        v: &'s mut V,
        s: &'s Arc<CudaStream>,
    ) -> CUdeviceptr {
        let (p, g) = v.device_ptr_mut(s);
        self.guards.push(Box::new(g));
        self.addrs.push(p);
        p
    }

    /// Whether every address so far is 16-byte aligned (128-bit accesses).
    pub(crate) fn aligned(&self) -> bool {
        self.addrs.iter().all(|p| p % 16 == 0)
    }
}
