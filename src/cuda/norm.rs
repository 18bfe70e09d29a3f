//! Norms on CUDA (kernels-cuda/norm.cu): launch-shape selection and the safe
//! entry points. Options come from the same [`Norm`] as on the CPU; gain and
//! bias are device buffers given with the call.

use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaStream, CudaView, CudaViewMut, LaunchConfig, PushKernelArg,
};

use super::ptrs::Ptrs;
use super::{CudaElement, Kernels, cuda_err};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::norm::{Kind, Norm};
use crate::shape::{Rows, expect_len};

/// A forward kernel shape: `Rows { group, items }` holds a row in registers of
/// `group` threads (`items` elements each); `Stream` sweeps rows of any length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormShape {
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

/// The shapes `for_cols` chooses from, shortest rows first: the first that
/// holds the row is used. A warp per row up to 512 elements, then a block of
/// cols / 16 threads (16 elements a thread) up to 16384, then streaming:
/// the fastest of the compiled shapes at every d from 1024 to 8192 and every
/// dtype in the shape sweep of docs/gpu-results.md (2026-12-04, H200).
const DEFAULT_SHAPES: [NormShape; 8] = [
    NormShape::Rows {
        group: 32,
        items: 8,
    },
    NormShape::Rows {
        group: 32,
        items: 16,
    },
    NormShape::Rows {
        group: 64,
        items: 16,
    },
    NormShape::Rows {
        group: 128,
        items: 16,
    },
    NormShape::Rows {
        group: 256,
        items: 16,
    },
    NormShape::Rows {
        group: 512,
        items: 16,
    },
    NormShape::Rows {
        group: 1024,
        items: 16,
    },
    NormShape::Stream { group: 1024 },
];

/// Shapes compiled besides the defaults, for [`Kernels::norm_forward_shaped`]
/// and the report's shape sweep: the earlier warp-per-row defaults for 1024
/// and 2048 elements and 8 elements a thread (each slower in that sweep), and
/// 32 elements a thread (not yet measured).
const EXTRA_SHAPES: [NormShape; 5] = [
    NormShape::Rows {
        group: 32,
        items: 32,
    },
    NormShape::Rows {
        group: 32,
        items: 64,
    },
    NormShape::Rows {
        group: 128,
        items: 8,
    },
    NormShape::Rows {
        group: 256,
        items: 8,
    },
    // 16-bit rows of 4096 with twice the bytes a thread (the 16-bit forward
    // measured 55-77% of copy bandwidth at 16 items; the sweep decides). 256 x
    // 32 for 8192 spilled 24 bytes on sm_90 (ptxas kept it to 80 registers).
    NormShape::Rows {
        group: 128,
        items: 32,
    },
];

const WARPS_PER_BLOCK: u32 = 4;

/// Row groups of the streaming backward (rows past 8192 elements).
const BACKWARD_GROUPS: usize = 256;
/// Threads of all row groups together in the register backward: about half
/// of what the largest cards hold, so that each group has several rows to
/// amortise its partial dgamma/dbeta row.
const BACKWARD_THREADS: usize = 131072;
/// (threads, elements a thread) of the register backward's groups, shortest
/// rows first (1024 x 8 would spill f32 under its 64-register cap).
const BACKWARD_ROW_SHAPES: [(usize, usize); 4] = [(128, 8), (256, 8), (512, 8), (512, 16)];

/// How the backward splits `rows` x `cols`: (kernel index in
/// `NormKernels::backward`, threads per group, groups). A function of the
/// shape only, so the reduction order (and the result bits) do not depend on
/// the device.
fn backward_plan(rows: usize, cols: usize) -> (usize, u32, usize) {
    match BACKWARD_ROW_SHAPES.iter().position(|&(g, e)| g * e >= cols) {
        Some(i) => {
            let g = BACKWARD_ROW_SHAPES[i].0;
            (1 + i, g as u32, rows.clamp(1, BACKWARD_THREADS / g))
        }
        None => (0, 1024, rows.clamp(1, BACKWARD_GROUPS)),
    }
}

impl NormShape {
    fn name(self, dtype: Dtype) -> String {
        match self {
            NormShape::Rows { group, items } => {
                format!("tk_norm_forward_{}_cuda_rows{group}x{items}", dtype.name())
            }
            NormShape::Stream { group } => {
                format!("tk_norm_forward_{}_cuda_stream{group}", dtype.name())
            }
        }
    }

    /// Every forward shape compiled in kernels-cuda/norm.cu (TK_NORM_ALL).
    pub fn all() -> impl Iterator<Item = NormShape> {
        DEFAULT_SHAPES.into_iter().chain(EXTRA_SHAPES)
    }

    /// Whether a row of `cols` elements fits this shape (a stream shape takes any).
    pub fn holds(self, cols: usize) -> bool {
        match self {
            NormShape::Rows { group, items } => (group as usize) * (items as usize) >= cols,
            NormShape::Stream { .. } => true,
        }
    }

    /// The shape [`Kernels::norm_forward`] uses for rows of `cols` elements.
    pub fn for_cols(cols: usize) -> NormShape {
        *DEFAULT_SHAPES.iter().find(|s| s.holds(cols)).unwrap()
    }

    fn launch(self, rows: u32) -> LaunchConfig {
        let (grid, block) = match self {
            NormShape::Rows { group: 32, .. } => {
                (rows.div_ceil(WARPS_PER_BLOCK), 32 * WARPS_PER_BLOCK)
            }
            NormShape::Rows { group, .. } | NormShape::Stream { group } => (rows, group),
        };
        LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// Mirrors `tk::NormArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NormArgs {
    rows: i32,
    cols: i32,
    eps: f32,
    out_scale: f32,
    kind: i32,
    crms: i32,
    params_f32: i32,
    aligned: i32,
}

/// Mirrors `tk::NormPtrs` (0 = absent).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NormPtrs {
    x: CUdeviceptr,
    residual: CUdeviceptr,
    h: CUdeviceptr,
    y: CUdeviceptr,
    q: CUdeviceptr,
    q_scale: CUdeviceptr,
    gamma: CUdeviceptr,
    beta: CUdeviceptr,
    mean: CUdeviceptr,
    rstd: CUdeviceptr,
}

/// Mirrors `tk::NormBwdArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NormBwdArgs {
    rows: i32,
    cols: i32,
    out_scale: f32,
    kind: i32,
    params_f32: i32,
    groups: i32,
    aligned: i32,
}

/// Mirrors `tk::NormBwdPtrs` (0 = absent).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NormBwdPtrs {
    dy: CUdeviceptr,
    h: CUdeviceptr,
    dh: CUdeviceptr,
    dx: CUdeviceptr,
    gamma: CUdeviceptr,
    mean: CUdeviceptr,
    rstd: CUdeviceptr,
    partial: CUdeviceptr,
}

// SAFETY: plain-old-data with the C layouts the kernels expect.
unsafe impl cudarc::driver::DeviceRepr for NormArgs {}
unsafe impl cudarc::driver::DeviceRepr for NormPtrs {}
unsafe impl cudarc::driver::DeviceRepr for NormBwdArgs {}
unsafe impl cudarc::driver::DeviceRepr for NormBwdPtrs {}

/// A gain or bias vector on the device: f32 or the I/O dtype.
pub enum DeviceWeights<'v, 'a, T> {
    /// f32 weights.
    F32(&'v CudaView<'a, f32>),
    /// Weights in the I/O dtype.
    Io(&'v CudaView<'a, T>),
}

impl<T> DeviceWeights<'_, '_, T> {
    fn len(&self) -> usize {
        match self {
            DeviceWeights::F32(v) => v.len(),
            DeviceWeights::Io(v) => v.len(),
        }
    }
    fn is_f32(&self) -> bool {
        matches!(self, DeviceWeights::F32(_))
    }
}

/// The buffers of one forward call (see [`crate::norm::Forward`] for their
/// meaning); `x` and at least one of residual, y, q are required.
pub struct DeviceNormForward<'v, 'a, T> {
    /// Input rows.
    pub x: &'v CudaView<'a, T>,
    /// h = x + residual, written back over the residual.
    pub residual: Option<&'v mut CudaViewMut<'a, T>>,
    /// Normalized output, or None.
    pub y: Option<&'v mut CudaViewMut<'a, T>>,
    /// int8 values and one f32 scale per row.
    pub q: Option<(&'v mut CudaViewMut<'a, i8>, &'v mut CudaViewMut<'a, f32>)>,
    /// Saved (mean, rstd) per row, for the backward.
    pub stats: Option<(&'v mut CudaViewMut<'a, f32>, &'v mut CudaViewMut<'a, f32>)>,
    /// Per-channel gain, or None (1).
    pub gamma: Option<DeviceWeights<'v, 'a, T>>,
    /// Per-channel bias, or None (0).
    pub beta: Option<DeviceWeights<'v, 'a, T>>,
}

impl<'v, 'a, T> DeviceNormForward<'v, 'a, T> {
    /// A call on `x` with every option absent.
    pub fn new(x: &'v CudaView<'a, T>) -> Self {
        DeviceNormForward {
            x,
            residual: None,
            y: None,
            q: None,
            stats: None,
            gamma: None,
            beta: None,
        }
    }
}

/// The buffers of one backward call (see [`crate::norm::Backward`]).
/// `workspace` holds at least [`Kernels::norm_backward_workspace_len`] floats
/// when dgamma or dbeta is asked for.
pub struct DeviceNormBackward<'v, 'a, T> {
    /// Gradient of the loss with respect to y.
    pub dy: &'v CudaView<'a, T>,
    /// The forward's normalized input h (x + residual when fused).
    pub h: &'v CudaView<'a, T>,
    /// The forward's saved per-row mean.
    pub mean: &'v CudaView<'a, f32>,
    /// The forward's saved per-row rstd.
    pub rstd: &'v CudaView<'a, f32>,
    /// Gradient with respect to x (written).
    pub dx: &'v mut CudaViewMut<'a, T>,
    /// Gradient reaching h through the residual stream, added to dx; or None.
    pub dh: Option<&'v CudaView<'a, T>>,
    /// The forward's gain, or None.
    pub gamma: Option<DeviceWeights<'v, 'a, T>>,
    /// Gradient of gamma (written), or None.
    pub dgamma: Option<&'v mut CudaViewMut<'a, f32>>,
    /// Gradient of beta (written), or None.
    pub dbeta: Option<&'v mut CudaViewMut<'a, f32>>,
    /// Scratch for the dgamma/dbeta partial sums, or None (allocated).
    pub workspace: Option<&'v mut CudaViewMut<'a, f32>>,
}

pub(crate) struct NormKernels {
    /// [dtype][shape]
    forward: Vec<Vec<CudaFunction>>,
    /// [dtype][streaming block, then the register blocks of BACKWARD_ROW_SHAPES]
    backward: Vec<Vec<CudaFunction>>,
    reduce: CudaFunction,
}

impl NormKernels {
    pub(crate) fn load(module: &Arc<CudaModule>) -> Result<NormKernels> {
        let mut forward = Vec::new();
        let mut backward = Vec::new();
        for d in Dtype::ALL {
            forward.push(
                NormShape::all()
                    .map(|s| Kernels::function(module, &s.name(d)))
                    .collect::<Result<Vec<_>>>()?,
            );
            let mut kernels = vec![Kernels::function(
                module,
                &format!("tk_norm_backward_{}_cuda_group1024", d.name()),
            )?];
            for (g, e) in BACKWARD_ROW_SHAPES {
                kernels.push(Kernels::function(
                    module,
                    &format!("tk_norm_backward_{}_cuda_rows{g}x{e}", d.name()),
                )?);
            }
            backward.push(kernels);
        }
        Ok(NormKernels {
            forward,
            backward,
            reduce: Kernels::function(module, "tk_norm_reduce_partials")?,
        })
    }
}

fn too_big() -> Error {
    Error::InvalidArgument {
        what: "norm on CUDA",
        reason: "rows and cols must be below 2^31",
    }
}

fn kind_code(k: Kind) -> i32 {
    match k {
        Kind::LayerNorm => 0,
        Kind::RmsNorm => 1,
        Kind::Channel => 2,
    }
}

/// Gain/bias checks shared by forward and backward: length, one dtype for
/// both, host weights refused (they would be ignored here).
fn check_weights<T>(
    norm: &Norm,
    cols: usize,
    gamma: &Option<DeviceWeights<'_, '_, T>>,
    beta: &Option<DeviceWeights<'_, '_, T>>,
) -> Result<bool> {
    if norm.kind() != Kind::Channel && (norm.gain().is_some() || norm.bias().is_some()) {
        return Err(Error::InvalidArgument {
            what: "norm on CUDA",
            reason: "pass gamma/beta as device buffers in the call, not on the Norm",
        });
    }
    if norm.kind() == Kind::Channel && (gamma.is_none() || beta.is_none()) {
        return Err(Error::InvalidArgument {
            what: "per-channel norm on CUDA",
            reason: "needs the scale and shift as device gamma and beta",
        });
    }
    let mut f32s = None;
    for (what, w) in [("norm gamma", gamma), ("norm beta", beta)] {
        if let Some(w) = w {
            expect_len(what, cols, w.len())?;
            if f32s.is_some_and(|f| f != w.is_f32()) {
                return Err(Error::InvalidArgument {
                    what: "norm gamma and beta",
                    reason: "must share one dtype",
                });
            }
            f32s = Some(w.is_f32());
        }
    }
    Ok(f32s.unwrap_or(false))
}

// Gain or bias operands (absent: a null pointer).
impl<'s> Ptrs<'s> {
    fn weights<T>(
        &mut self,
        w: &'s Option<DeviceWeights<'_, '_, T>>,
        s: &'s Arc<CudaStream>,
    ) -> CUdeviceptr {
        match w {
            None => 0,
            Some(DeviceWeights::F32(v)) => self.view(*v, s),
            Some(DeviceWeights::Io(v)) => self.view(*v, s),
        }
    }
}

impl Kernels {
    /// Forward norm of each `cols`-long row, enqueued on `stream`, with the
    /// options of `norm` (kind, eps, CRMS, output scale; its ISA and store
    /// hints are CPU-only). Semantics as [`crate::norm`]; accuracy within
    /// [`crate::norm::forward_error_bound`]. Nothing is enqueued on error.
    pub fn norm_forward<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        norm: &Norm,
        cols: usize,
        call: DeviceNormForward<'_, '_, T>,
    ) -> Result<()> {
        self.norm_forward_shaped(stream, norm, cols, NormShape::for_cols(cols), call)
    }

    /// [`Kernels::norm_forward`] with the launch shape chosen by the caller
    /// (one of [`NormShape::all`] that holds the row): for tuning and for
    /// comparing shapes; the results are the same within the error bound.
    pub fn norm_forward_shaped<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        norm: &Norm,
        cols: usize,
        shape: NormShape,
        call: DeviceNormForward<'_, '_, T>,
    ) -> Result<()> {
        let index = NormShape::all()
            .position(|s| s == shape)
            .ok_or(Error::InvalidArgument {
                what: "norm forward shape",
                reason: "not one of NormShape::all()",
            })?;
        if !shape.holds(cols) {
            return Err(Error::InvalidArgument {
                what: "norm forward shape",
                reason: "holds fewer elements (group x items) than a row",
            });
        }
        norm.check_scalars()?;
        let rows = Rows::of_len("norm input", call.x.len(), cols)?;
        let params_f32 = check_weights(norm, cols, &call.gamma, &call.beta)?;
        if call.residual.is_none() && call.y.is_none() && call.q.is_none() {
            return Err(Error::InvalidArgument {
                what: "norm forward",
                reason: "needs an output (y, int8, or a residual)",
            });
        }
        let per_row = Rows {
            rows: rows.rows,
            cols: 1,
        };
        if let Some(r) = &call.residual {
            rows.expect_len("norm residual", r.len())?;
        }
        if let Some(y) = &call.y {
            rows.expect_len("norm output", y.len())?;
        }
        if let Some((q, s)) = &call.q {
            rows.expect_len("norm int8 output", q.len())?;
            per_row.expect_len("norm int8 scales", s.len())?;
        }
        if let Some((m, r)) = &call.stats {
            per_row.expect_len("norm saved mean", m.len())?;
            per_row.expect_len("norm saved rstd", r.len())?;
        }
        let args = NormArgs {
            rows: i32::try_from(rows.rows).map_err(|_| too_big())?,
            cols: i32::try_from(cols).map_err(|_| too_big())?,
            eps: norm.epsilon(),
            out_scale: norm.output_scale(),
            kind: kind_code(norm.kind()),
            crms: norm.is_crms() as i32,
            params_f32: params_f32 as i32,
            aligned: 0,
        };
        if rows.is_empty() {
            return Ok(());
        }
        let DeviceNormForward {
            x,
            residual,
            y,
            q,
            stats,
            gamma,
            beta,
        } = call;
        let mut ptrs = Ptrs::new();
        let mut p = NormPtrs {
            x: ptrs.view(x, stream),
            ..NormPtrs::default()
        };
        if let Some(r) = residual {
            p.residual = ptrs.view_mut(r, stream);
            p.h = p.residual;
        }
        if let Some(y) = y {
            p.y = ptrs.view_mut(y, stream);
        }
        let aligned = ptrs.aligned() && (cols * std::mem::size_of::<T>()) % 16 == 0;
        if let Some((q, s)) = q {
            p.q = ptrs.view_mut(q, stream);
            p.q_scale = ptrs.view_mut(s, stream);
        }
        if let Some((m, r)) = stats {
            p.mean = ptrs.view_mut(m, stream);
            p.rstd = ptrs.view_mut(r, stream);
        }
        p.gamma = ptrs.weights(&gamma, stream);
        p.beta = ptrs.weights(&beta, stream);
        let args = NormArgs {
            aligned: aligned as i32,
            ..args
        };
        let func = &self.norm.forward[T::DTYPE as usize][index];
        let mut launch = stream.launch_builder(func);
        launch.arg(&p).arg(&args);
        // SAFETY: the kernel takes (NormPtrs, NormArgs) with T this dtype (looked
        // up by T::DTYPE); every pointer addresses the length checked above and
        // stays borrowed until the guards in `ptrs` drop after the launch; the
        // grid covers every row and threads stay within their rows.
        unsafe { launch.launch(shape.launch(rows.rows as u32)) }
            .map_err(cuda_err("norm forward"))?;
        drop(ptrs);
        Ok(())
    }

    /// How [`Kernels::norm_backward`] splits `rows` x `cols`: the kernel
    /// shape of a row group (`Rows`: held in registers; `Stream`: swept from
    /// memory) and the number of groups, each adding one row of partial
    /// dgamma/dbeta to the workspace.
    pub fn norm_backward_shape(rows: usize, cols: usize) -> (NormShape, usize) {
        let (kernel, group, groups) = backward_plan(rows, cols);
        let shape = match kernel {
            0 => NormShape::Stream { group },
            i => NormShape::Rows {
                group,
                items: BACKWARD_ROW_SHAPES[i - 1].1 as u32,
            },
        };
        (shape, groups)
    }

    /// Floats of workspace [`Kernels::norm_backward`] needs for dgamma/dbeta.
    pub fn norm_backward_workspace_len(rows: usize, cols: usize) -> usize {
        2 * backward_plan(rows, cols).2 * cols
    }

    /// Backward of [`Kernels::norm_forward`] for LayerNorm, RMSNorm or the
    /// per-channel kind: dx (plus dh with a fused residual) and, when asked,
    /// dgamma/dbeta reduced over rows in a fixed order without atomics (the
    /// same bits on every run). Accuracy within [`crate::norm::backward_error_bound`].
    pub fn norm_backward<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        norm: &Norm,
        cols: usize,
        call: DeviceNormBackward<'_, '_, T>,
    ) -> Result<()> {
        norm.check_scalars()?;
        if norm.is_crms() {
            return Err(Error::InvalidArgument {
                what: "norm backward",
                reason: "CRMSNorm has no backward kernel",
            });
        }
        let rows = Rows::of_len("norm backward dy", call.dy.len(), cols)?;
        rows.expect_len("norm backward h", call.h.len())?;
        rows.expect_len("norm backward dx", call.dx.len())?;
        if let Some(dh) = &call.dh {
            rows.expect_len("norm backward residual grad", dh.len())?;
        }
        let per_row = Rows {
            rows: rows.rows,
            cols: 1,
        };
        per_row.expect_len("norm backward mean", call.mean.len())?;
        per_row.expect_len("norm backward rstd", call.rstd.len())?;
        let params_f32 = check_weights(norm, cols, &call.gamma, &None)?;
        let wants = call.dgamma.is_some() || call.dbeta.is_some();
        for (what, g) in [("norm dgamma", &call.dgamma), ("norm dbeta", &call.dbeta)] {
            if let Some(g) = g {
                expect_len(what, cols, g.len())?;
            }
        }
        let ws_len = Kernels::norm_backward_workspace_len(rows.rows, cols);
        if wants {
            let have = call.workspace.as_ref().map_or(0, |w| w.len());
            if have < ws_len {
                return Err(Error::LengthMismatch {
                    what: "norm backward workspace",
                    expected: ws_len,
                    actual: have,
                });
            }
        }
        let (kernel, group_threads, groups) = backward_plan(rows.rows, cols);
        let args = NormBwdArgs {
            rows: i32::try_from(rows.rows).map_err(|_| too_big())?,
            cols: i32::try_from(cols).map_err(|_| too_big())?,
            out_scale: norm.output_scale(),
            kind: kind_code(norm.kind()),
            params_f32: params_f32 as i32,
            groups: groups as i32,
            aligned: 0,
        };
        let DeviceNormBackward {
            dy,
            h,
            mean,
            rstd,
            dx,
            dh,
            gamma,
            dgamma,
            dbeta,
            workspace,
        } = call;
        let mut ptrs = Ptrs::new();
        let mut p = NormBwdPtrs {
            dy: ptrs.view(dy, stream),
            h: ptrs.view(h, stream),
            dx: ptrs.view_mut(dx, stream),
            mean: ptrs.view(mean, stream),
            rstd: ptrs.view(rstd, stream),
            ..NormBwdPtrs::default()
        };
        if let Some(dh) = dh {
            p.dh = ptrs.view(dh, stream);
        }
        p.gamma = ptrs.weights(&gamma, stream);
        if wants {
            p.partial = ptrs.view_mut(workspace.expect("checked above"), stream);
        }
        let dg = dgamma.map_or(0, |g| ptrs.view_mut(g, stream));
        let db = dbeta.map_or(0, |b| ptrs.view_mut(b, stream));
        let args = NormBwdArgs {
            aligned: (ptrs.aligned() && (cols * std::mem::size_of::<T>()) % 16 == 0) as i32,
            ..args
        };
        let func = &self.norm.backward[T::DTYPE as usize][kernel];
        let cfg = LaunchConfig {
            grid_dim: (groups as u32, 1, 1),
            block_dim: (group_threads, 1, 1),
            shared_mem_bytes: 0,
        };
        if rows.is_empty() {
            // dgamma/dbeta of no rows: the reduction of zero groups writes zeros
        } else {
            let mut launch = stream.launch_builder(func);
            launch.arg(&p).arg(&args);
            // SAFETY: (NormBwdPtrs, NormBwdArgs) with T this dtype; pointers
            // address the checked lengths (the workspace 2 * groups * cols) and
            // stay borrowed until `ptrs` drops; group g touches only its rows
            // and its own workspace rows.
            unsafe { launch.launch(cfg) }.map_err(cuda_err("norm backward"))?;
        }
        if wants {
            let ngroups: i32 = if rows.is_empty() { 0 } else { groups as i32 };
            let cols32 = args.cols;
            let mut launch = stream.launch_builder(&self.norm.reduce);
            launch
                .arg(&p.partial)
                .arg(&ngroups)
                .arg(&cols32)
                .arg(&dg)
                .arg(&db);
            // SAFETY: (const float*, int, int, float*, float*): the partials
            // hold 2 * groups * cols floats, dgamma/dbeta cols each (or 0).
            unsafe {
                launch.launch(LaunchConfig {
                    // TK_REDUCE_COLS columns a block, TK_REDUCE_SLICES slices
                    grid_dim: ((cols as u32).div_ceil(32), 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                })
            }
            .map_err(cuda_err("norm backward reduction"))?;
        }
        drop(ptrs);
        Ok(())
    }
}
