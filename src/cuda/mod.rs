//! CUDA backend (feature `cuda`).
//!
//! The kernels in kernels-cuda/ are compiled by build.rs into one fatbin that is
//! embedded in the crate. [`Kernels::new`] loads it into a cudarc context once
//! and resolves every kernel up front, so a missing or misspelt kernel fails
//! there, not at its first call. Entry points take cudarc's `CudaView` /
//! `CudaViewMut` and a `CudaStream`, so engines built on cudarc pass their own
//! buffers without a copy. The CUDA driver is loaded dynamically: building or
//! running CPU code needs no CUDA installation.
//!
//! ```no_run
//! use transformer_kernels::cuda::Kernels;
//! use transformer_kernels::softmax::Softmax;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = cudarc::driver::CudaContext::new(0)?;
//! let stream = ctx.default_stream();
//! let kernels = Kernels::new(&ctx)?;
//! let x = stream.clone_htod(&vec![0.5f32; 4 * 1000])?;
//! let mut y = stream.alloc_zeros::<f32>(4 * 1000)?;
//! kernels.softmax(&stream, &x.as_view(), &mut y.as_view_mut(), 1000, &Softmax::new())?;
//! let probs = stream.clone_dtoh(&y)?;
//! # Ok(()) }
//! ```
//!
//! An engine that owns its device memory (candle's `CudaStorage` wraps a
//! cudarc `CudaSlice`) passes views of it, sub-ranges included, on its own
//! stream: no copy, no allocation by this crate, and the work is ordered with
//! the engine's other kernels on that stream.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use cudarc::driver::{CudaSlice, CudaStream};
//! use half::bf16;
//! use transformer_kernels::cuda::{DeviceNormForward, DeviceWeights, Kernels};
//! use transformer_kernels::norm::Norm;
//!
//! /// RMSNorm of the rows `first .. first + rows` of the engine's activation
//! /// buffer `[tokens, d]` into the same rows of its output buffer, on the
//! /// engine's stream.
//! fn rms_norm_rows(
//!     kernels: &Kernels,
//!     stream: &Arc<CudaStream>,
//!     hidden: &CudaSlice<bf16>,
//!     gamma: &CudaSlice<f32>,
//!     out: &mut CudaSlice<bf16>,
//!     (first, rows, d): (usize, usize, usize),
//! ) -> transformer_kernels::Result<()> {
//!     let span = first * d..(first + rows) * d;
//!     let x = hidden.slice(span.clone());
//!     let mut y = out.slice_mut(span);
//!     let g = gamma.as_view();
//!     let mut call = DeviceNormForward::new(&x);
//!     call.y = Some(&mut y);
//!     call.gamma = Some(DeviceWeights::F32(&g));
//!     kernels.norm_forward(stream, &Norm::rms_norm(), d, call)
//! }
//! ```

mod kron;
mod lightning;
mod norm;
mod ptrs;
mod qgemm;
mod softmax;

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, DriverError};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};

pub use kron::{CUDA_KRON_MAX_N, DeviceKron, DeviceKronOutput};
pub use lightning::{CUDA_MAX_HEAD_DIM, DeviceLightningBackward, DeviceLightningForward};
pub use norm::{DeviceNormBackward, DeviceNormForward, DeviceWeights, NormShape};
pub use qgemm::{
    CUDA_MAX_OUTLIERS, DeviceInt8Weight, DeviceInt8Workspace, DeviceQuantizedWeight, Int8GemmKernel,
};
pub use softmax::SoftmaxShape;

/// The embedded fatbin: SASS for sm_80 and sm_90, PTX for compute_90.
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));
/// The Hopper-only kernels (wgmma, TMA): SASS for sm_90a, which runs on
/// compute capability 9.0 alone.
static FATBIN_SM90A: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels_sm90a.fatbin"));

/// Element types the CUDA kernels accept.
pub trait CudaElement: crate::Element + cudarc::driver::DeviceRepr {}
impl CudaElement for f32 {}
impl CudaElement for half::f16 {}
impl CudaElement for half::bf16 {}

pub(crate) fn cuda_err(kernel: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| Error::Cuda {
        kernel,
        message: format!("{e:?}"),
    }
}

/// Every kernel of this crate, loaded into one CUDA context.
pub struct Kernels {
    _module: Arc<CudaModule>,
    _hopper: Option<Arc<CudaModule>>,
    softmax: softmax::SoftmaxKernels,
    norm: norm::NormKernels,
    lightning: lightning::LightningKernels,
    kron: kron::KronKernels,
    qgemm: qgemm::QgemmKernels,
}

impl Kernels {
    /// Loads the embedded modules into `ctx` (the sm_90a one on compute
    /// capability 9.0) and resolves every kernel.
    pub fn new(ctx: &Arc<CudaContext>) -> Result<Kernels> {
        let module = ctx
            .load_module(Ptx::from_binary(FATBIN.to_vec()))
            .map_err(cuda_err("module load"))?;
        let hopper = match ctx.compute_capability().map_err(cuda_err("device query"))? {
            (9, 0) => Some(
                ctx.load_module(Ptx::from_binary(FATBIN_SM90A.to_vec()))
                    .map_err(cuda_err("module load (sm_90a)"))?,
            ),
            _ => None,
        };
        let softmax = softmax::SoftmaxKernels::load(&module)?;
        let norm = norm::NormKernels::load(&module)?;
        let lightning = lightning::LightningKernels::load(&module)?;
        let kron = kron::KronKernels::load(&module)?;
        let qgemm = qgemm::QgemmKernels::load(&module, hopper.as_ref())?;
        Ok(Kernels {
            _module: module,
            _hopper: hopper,
            softmax,
            norm,
            lightning,
            kron,
            qgemm,
        })
    }

    /// [`Kernels::function`] allowed `bytes` of dynamic shared memory (past
    /// the 48 KB a launch may ask for without it).
    pub(crate) fn function_with_smem(
        module: &Arc<CudaModule>,
        name: &str,
        bytes: usize,
    ) -> Result<CudaFunction> {
        let f = Kernels::function(module, name)?;
        f.set_attribute(
            CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .map_err(cuda_err("shared memory attribute"))?;
        Ok(f)
    }

    pub(crate) fn function(module: &Arc<CudaModule>, name: &str) -> Result<CudaFunction> {
        module.load_function(name).map_err(|e| Error::Cuda {
            kernel: "module load",
            message: format!("kernel {name} not found in the embedded fatbin: {e:?}"),
        })
    }
}

/// Whether a CUDA driver and at least one device are present (for tests and
/// reports that skip without a GPU).
pub fn gpu_available() -> bool {
    // SAFETY: only probes whether the driver library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return false;
    }
    CudaContext::device_count().map(|n| n > 0).unwrap_or(false)
}
