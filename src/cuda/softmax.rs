//! Softmax on CUDA: launch-shape selection and the safe entry point.

use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut,
    LaunchConfig, PushKernelArg,
};

use super::{CudaElement, Kernels, cuda_err};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::shape::Rows;
use crate::softmax::Softmax;

/// A kernel shape: `Rows { group, items }` holds a row in registers of `group`
/// threads (`items` elements each); `Stream { group }` sweeps rows of any length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxShape {
    /// A row in registers of `group` threads, `items` elements each.
    Rows {
        /// Threads per row.
        group: u32,
        /// Elements per thread.
        items: u32,
    },
    /// Rows of any length swept by `group` threads.
    Stream {
        /// Threads per row.
        group: u32,
    },
}

/// The shapes compiled in kernels-cuda/softmax.cu (TK_SOFTMAX_ALL), shortest
/// rows first. The first whose capacity holds the row is used.
const SHAPES: [SoftmaxShape; 9] = [
    SoftmaxShape::Rows {
        group: 32,
        items: 8,
    },
    SoftmaxShape::Rows {
        group: 32,
        items: 16,
    },
    SoftmaxShape::Rows {
        group: 32,
        items: 32,
    },
    SoftmaxShape::Rows {
        group: 256,
        items: 8,
    },
    SoftmaxShape::Rows {
        group: 256,
        items: 16,
    },
    SoftmaxShape::Rows {
        group: 512,
        items: 16,
    },
    SoftmaxShape::Rows {
        group: 1024,
        items: 16,
    },
    SoftmaxShape::Rows {
        group: 1024,
        items: 32,
    },
    SoftmaxShape::Stream { group: 1024 },
];

/// Rows per block of the warp-per-row kernels (`__launch_bounds__(128)`).
const WARPS_PER_BLOCK: u32 = 4;

impl SoftmaxShape {
    fn name(self, dtype: Dtype) -> String {
        match self {
            SoftmaxShape::Rows { group, items } => {
                format!("tk_softmax_{}_cuda_rows{group}x{items}", dtype.name())
            }
            SoftmaxShape::Stream { group } => {
                format!("tk_softmax_{}_cuda_stream{group}", dtype.name())
            }
        }
    }

    fn capacity(self) -> usize {
        match self {
            SoftmaxShape::Rows { group, items } => (group * items) as usize,
            SoftmaxShape::Stream { .. } => usize::MAX,
        }
    }

    /// The shape used for rows of `cols` elements.
    pub fn for_cols(cols: usize) -> SoftmaxShape {
        *SHAPES
            .iter()
            .find(|s| s.capacity() >= cols)
            .unwrap_or(&SHAPES[SHAPES.len() - 1])
    }

    fn launch(self, rows: u32) -> LaunchConfig {
        let (grid, block) = match self {
            SoftmaxShape::Rows { group: 32, .. } => {
                (rows.div_ceil(WARPS_PER_BLOCK), 32 * WARPS_PER_BLOCK)
            }
            SoftmaxShape::Rows { group, .. } | SoftmaxShape::Stream { group } => (rows, group),
        };
        LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// Mirrors `tk::SoftmaxArgs` in kernels-cuda/softmax.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct SoftmaxArgs {
    rows: i32,
    cols: i32,
    scale: f32,
    log_out: i32,
    aligned: i32,
}

// SAFETY: plain-old-data with the C layout the kernel expects.
unsafe impl cudarc::driver::DeviceRepr for SoftmaxArgs {}

/// Checks what the kernels need beyond the shape: a finite scale, 32-bit sizes.
/// Returns the kernel arguments (alignment still to be filled in).
fn validate(rows: Rows, opts: &Softmax) -> Result<SoftmaxArgs> {
    let (scale, log) = opts.scale_and_log();
    if !scale.is_finite() {
        return Err(Error::InvalidArgument {
            what: "softmax scale",
            reason: "must be finite",
        });
    }
    let too_big = || Error::InvalidArgument {
        what: "softmax on CUDA",
        reason: "rows and cols must be below 2^31",
    };
    Ok(SoftmaxArgs {
        rows: i32::try_from(rows.rows).map_err(|_| too_big())?,
        cols: i32::try_from(rows.cols).map_err(|_| too_big())?,
        scale,
        log_out: log as i32,
        aligned: 0,
    })
}

pub(crate) struct SoftmaxKernels {
    /// [dtype][shape]
    functions: Vec<Vec<CudaFunction>>,
}

impl SoftmaxKernels {
    pub(crate) fn load(module: &Arc<CudaModule>) -> Result<SoftmaxKernels> {
        let functions = Dtype::ALL
            .iter()
            .map(|&d| {
                SHAPES
                    .iter()
                    .map(|s| Kernels::function(module, &s.name(d)))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SoftmaxKernels { functions })
    }
}

impl Kernels {
    /// Softmax (or log-softmax, per `opts`) of each `cols`-long row of `x` into
    /// `y`, enqueued on `stream`. `opts`' algorithm, ISA and store hints are
    /// CPU-only and ignored here. Semantics and accuracy as in
    /// [`crate::softmax`] (bound of the single-rounding variants). Nothing is
    /// enqueued when an error is returned.
    pub fn softmax<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaView<'_, T>,
        y: &mut CudaViewMut<'_, T>,
        cols: usize,
        opts: &Softmax,
    ) -> Result<()> {
        let rows = Rows::of_len("softmax input", x.len(), cols)?;
        rows.expect_len("softmax output", y.len())?;
        validate(rows, opts)?;
        let (xp, _x_sync) = x.device_ptr(stream);
        let (yp, _y_sync) = y.device_ptr_mut(stream);
        // SAFETY: xp and yp address rows*cols elements of T (checked above) that
        // stay borrowed, shared and exclusive, until the guards drop after launch.
        unsafe { self.launch_softmax::<T>(stream, xp, yp, rows, opts) }
    }

    /// Softmax (or log-softmax) of each `cols`-long row of `xy`, in place.
    pub fn softmax_inplace<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        xy: &mut CudaViewMut<'_, T>,
        cols: usize,
        opts: &Softmax,
    ) -> Result<()> {
        let rows = Rows::of_len("softmax buffer", xy.len(), cols)?;
        validate(rows, opts)?;
        let (p, _sync) = xy.device_ptr_mut(stream);
        // SAFETY: p addresses rows*cols elements of T, exclusively borrowed; the
        // kernels support y == x (see kernels-cuda/softmax.cu).
        unsafe { self.launch_softmax::<T>(stream, p, p, rows, opts) }
    }

    /// Validates the options, picks the launch shape and enqueues the kernel.
    ///
    /// # Safety
    /// `x` and `y` must address `rows.rows * rows.cols` elements of `T` on the
    /// stream's device, stay valid until the kernel has run, and either be
    /// equal or not overlap.
    unsafe fn launch_softmax<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        x: CUdeviceptr,
        y: CUdeviceptr,
        rows: Rows,
        opts: &Softmax,
    ) -> Result<()> {
        let args = validate(rows, opts)?;
        if rows.is_empty() {
            return Ok(());
        }
        let shape = SoftmaxShape::for_cols(rows.cols);
        let index = SHAPES
            .iter()
            .position(|&s| s == shape)
            .expect("shape comes from SHAPES");
        let func = &self.softmax.functions[T::DTYPE as usize][index];
        let row_bytes = rows.cols * std::mem::size_of::<T>();
        let aligned = x % 16 == 0 && y % 16 == 0 && row_bytes % 16 == 0;
        let args = SoftmaxArgs {
            aligned: aligned as i32,
            ..args
        };
        let mut launch = stream.launch_builder(func);
        launch.arg(&x).arg(&y).arg(&args);
        // SAFETY: the kernel signature is (const T*, T*, SoftmaxArgs) with T
        // matching this dtype (the function was looked up by T::DTYPE); x and y
        // are valid for rows*cols elements (the caller's contract); the grid
        // covers every row and each thread stays within its row.
        unsafe { launch.launch(shape.launch(rows.rows as u32)) }.map_err(cuda_err("softmax"))?;
        Ok(())
    }
}
