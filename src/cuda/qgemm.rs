//! LLM.int8() and weight-only products on CUDA (kernels-cuda/qgemm.cu,
//! kernels-cuda/wgemv.cu): the semantics of [`crate::qgemm`] on device
//! buffers.
//!
//! * [`Kernels::upload_int8_weight`] copies an [`Int8Weight`] to the device
//!   (int8 rows padded to 128 channels and 64 k, the scales, and the outlier
//!   side: the fixed columns' f32 values, or W transposed in its dtype for
//!   dynamic outliers).
//! * [`Kernels::int8_workspace`] sizes the quantized activations once
//!   (rows, outlier capacity); [`Kernels::int8_matmul`] then runs, on the
//!   stream, the outlier-column search (dynamic mode: column max and an
//!   ordered selection), the per-row quantization with the gather of the
//!   outlier values, the gather of W's outlier columns, and the int8
//!   tensor-core GEMM (`mma.sync m16n8k32`, 4-stage `cp.async` ring) whose
//!   epilogue dequantizes, adds the f32 outlier product and the bias, and
//!   stores f32/f16/bf16. No host synchronisation: the outlier count stays
//!   on the device. More outlier columns than the workspace holds make every
//!   output NaN; [`DeviceInt8Workspace::outlier_columns`] reads the count back
//!   and reports it as an error.
//! * [`Kernels::upload_weight_only`] and [`Kernels::weight_only_gemv`]: the
//!   decoding GEMV with int8/int4 weights and group scales, W streamed once.
//!
//! Accuracy: the quantized activations equal the CPU quantizer's bit for bit,
//! the int32 products are exact, and the epilogue meets
//! [`Int8Weight::epilogue_bound`]; the GEMV meets
//! [`QuantizedWeight::error_bound`] (it always dequantizes each weight first,
//! `fl(s q)`, the CPU's order for large activations).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::sys;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig,
    PushKernelArg,
};
use half::{bf16, f16};

use super::ptrs::Ptrs;
use super::{CudaElement, Kernels, cuda_err};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::qgemm::weight_only::QuantizedWeight;
use crate::qgemm::{Int8Weight, Transposed};
use crate::shape::{Rows, expect_len};

/// Row tiles of the GEMM (m and n are padded to it on the device).
const TILE: usize = 128;
const GEMM_THREADS: u32 = 256;
/// 4 stages x (128 + 128) rows x 64 bytes (kernels-cuda/qgemm.cu, GM_SMEM).
const GEMM_SMEM: u32 = 4 * 256 * 64;
/// The Hopper kernel (kernels-cuda/qgemm_wgmma.cu): 384 threads, tiles of
/// 128 rows x 256 channels, 128 bytes of k a stage, and its shared memory
/// (WG_SMEM: 1024 bytes of alignment slack, 4 stages of 48 KB, 8 mbarriers).
const WGMMA_THREADS: u32 = 384;
const WGMMA_BM: usize = 128;
const WGMMA_BN: usize = 256;
const WGMMA_BK: usize = 128;
const WGMMA_SMEM: u32 = 1024 + 4 * (128 + 256) * 128 + 8 * 8;
/// Rows one GEMV launch handles (its largest row template).
const GEMV_MAX_ROWS: usize = 16;
const GEMV_ROWS: [usize; 5] = [1, 2, 4, 8, 16];
/// The most outlier columns a workspace may hold (a grid dimension).
pub const CUDA_MAX_OUTLIERS: usize = 65535;

/// Mirrors `tk::QuantArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct QuantArgs {
    x: u64,
    mask: u64,
    cols: u64,
    count: u64,
    q: u64,
    scale: u64,
    xo: u64,
    m: i32,
    k: i32,
    k_pad: i32,
    cap: i32,
}

/// Mirrors `tk::GemmArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GemmArgs {
    a: u64,
    w: u64,
    a_scale: u64,
    w_scale: u64,
    xo: u64,
    wo: u64,
    count: u64,
    bias: u64,
    y: u64,
    acc: u64,
    m: i32,
    n: i32,
    k_pad: i32,
    n_pad: i32,
    cap: i32,
    y_dtype: i32,
}

/// Mirrors `tk::WgemvArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct WgemvArgs {
    x: u64,
    w: u64,
    w_scale: u64,
    bias: u64,
    y: u64,
    m: i32,
    n: i32,
    k: i32,
    group: i32,
    aligned: i32,
}

/// A `CUtensorMap` as `tk::TmaMap` holds it (kernels-cuda/ptx_sm90.cuh).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TmaMap([u64; 16]);

/// Mirrors `tk::WgmmaArgs`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct WgmmaArgs {
    a_map: TmaMap,
    w_map: TmaMap,
    g: GemmArgs,
}

// SAFETY: plain-old-data structs laid out as their C counterparts.
unsafe impl cudarc::driver::DeviceRepr for WgmmaArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for QuantArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for GemmArgs {}
// SAFETY: as above.
unsafe impl cudarc::driver::DeviceRepr for WgemvArgs {}

fn dtype_index(d: Dtype) -> usize {
    Dtype::ALL.iter().position(|x| *x == d).expect("dtype")
}

/// Which tensor-core kernel runs the LLM.int8() GEMM
/// ([`Kernels::int8_gemm_kernel`], [`Kernels::use_int8_gemm_kernel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8GemmKernel {
    /// `mma.sync m16n8k32` tiles of 128 x 128 fed by a 4-stage `cp.async`
    /// ring (every device this crate runs on: sm_80 and up).
    MmaSync,
    /// `wgmma m64n256k32` tiles of 128 x 256 fed by TMA into a 4-stage ring,
    /// one loading warpgroup and two multiplying (compute capability 9.0,
    /// from the crate's sm_90a fatbin). The same results, bit for bit.
    Wgmma,
}

pub(crate) struct QgemmKernels {
    /// [dtype of x]
    colmax: Vec<CudaFunction>,
    quantize: Vec<CudaFunction>,
    /// [dtype of W]
    gather_wo: Vec<CudaFunction>,
    select: CudaFunction,
    gemm: CudaFunction,
    /// The Hopper kernel, where the device has compute capability 9.0.
    wgmma: Option<CudaFunction>,
    use_wgmma: AtomicBool,
    /// [dtype][bits 8, 4][GEMV_ROWS]
    gemv: Vec<CudaFunction>,
}

impl QgemmKernels {
    pub(crate) fn load(
        module: &Arc<CudaModule>,
        hopper: Option<&Arc<CudaModule>>,
    ) -> Result<QgemmKernels> {
        let per_dtype = |op: &str| -> Result<Vec<CudaFunction>> {
            Dtype::ALL
                .iter()
                .map(|d| Kernels::function(module, &format!("tk_qgemm_{op}_{}_cuda", d.name())))
                .collect()
        };
        let gemm = Kernels::function_with_smem(module, "tk_qgemm_s8_cuda", GEMM_SMEM as usize)?;
        let wgmma = hopper
            .map(|m| Kernels::function_with_smem(m, "tk_qgemm_s8_wgmma_cuda", WGMMA_SMEM as usize))
            .transpose()?;
        let mut gemv = Vec::new();
        for d in Dtype::ALL {
            for bits in [8, 4] {
                for rows in GEMV_ROWS {
                    let name = format!("tk_wgemv_{}_w{bits}_cuda_m{rows}", d.name());
                    gemv.push(Kernels::function(module, &name)?);
                }
            }
        }
        Ok(QgemmKernels {
            colmax: per_dtype("colmax")?,
            quantize: per_dtype("quantize")?,
            gather_wo: per_dtype("gather_wo")?,
            select: Kernels::function(module, "tk_qgemm_select_cuda")?,
            gemm,
            wgmma,
            // opt-in until a device run has checked it (docs/gpu-results.md)
            use_wgmma: AtomicBool::new(false),
            gemv,
        })
    }
}

/// W transposed (`[k, n]`) in its own dtype, for dynamic outlier columns.
enum DeviceTransposed {
    F32(CudaSlice<f32>),
    F16(CudaSlice<f16>),
    Bf16(CudaSlice<bf16>),
}

enum DeviceOutliers {
    /// The columns, their count, the per-column mask and their f32 W values
    /// `[len, n_pad]`, and the columns on the host (for diagnostics).
    Fixed {
        cols: CudaSlice<u32>,
        count: CudaSlice<u32>,
        mask: CudaSlice<u8>,
        wo: CudaSlice<f32>,
        host: Vec<u32>,
    },
    Dynamic {
        threshold: f32,
        wt: DeviceTransposed,
    },
}

/// An [`Int8Weight`] on one device.
pub struct DeviceInt8Weight {
    q: CudaSlice<i8>,
    scale: CudaSlice<f32>,
    n: usize,
    k: usize,
    k_pad: usize,
    n_pad: usize,
    outliers: DeviceOutliers,
}

impl DeviceInt8Weight {
    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }
}

/// Quantized activations on the device, sized once for a weight, a largest
/// row count and an outlier capacity.
pub struct DeviceInt8Workspace {
    k: usize,
    k_pad: usize,
    n_pad: usize,
    /// Fixed mode: the weight's columns (the count lives with the weight).
    fixed: Option<Vec<u32>>,
    max_m: usize,
    cap: usize,
    m: usize,
    q: CudaSlice<i8>,
    scale: CudaSlice<f32>,
    xo: CudaSlice<f32>,
    wo: CudaSlice<f32>,
    cols: CudaSlice<u32>,
    count: CudaSlice<u32>,
    mask: CudaSlice<u8>,
    colmax: CudaSlice<u32>,
}

fn invalid(what: &'static str, reason: &'static str) -> Error {
    Error::InvalidArgument { what, reason }
}

fn fits_i32(what: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Overflow { what })
}

impl DeviceInt8Workspace {
    /// Rows quantized by the last call.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// The last call's outlier columns, ascending (synchronises the stream).
    /// An error when there were more than the workspace holds (that call's
    /// outputs are NaN).
    pub fn outlier_columns(&self, stream: &Arc<CudaStream>) -> Result<Vec<u32>> {
        if let Some(cols) = &self.fixed {
            return Ok(cols.clone());
        }
        let count = stream
            .clone_dtoh(&self.count)
            .map_err(cuda_err("qgemm read count"))?[0] as usize;
        if count > self.cap {
            return Err(invalid(
                "x",
                "had more outlier columns than the workspace was made for (the outputs are NaN)",
            ));
        }
        let cols = stream
            .clone_dtoh(&self.cols)
            .map_err(cuda_err("qgemm read columns"))?;
        Ok(cols[..count].to_vec())
    }

    /// The last call's int8 rows (`[rows, k]`), row scales and outlier values
    /// (`[rows, outlier_columns().len()]`), read back (synchronises).
    pub fn quantized(&self, stream: &Arc<CudaStream>) -> Result<(Vec<i8>, Vec<f32>, Vec<f32>)> {
        let n_out = self.outlier_columns(stream)?.len();
        let err = cuda_err("qgemm read activations");
        let q = stream.clone_dtoh(&self.q).map_err(&err)?;
        let scale = stream.clone_dtoh(&self.scale).map_err(&err)?;
        let xo = stream.clone_dtoh(&self.xo).map_err(&err)?;
        let m = self.m;
        let q = (0..m)
            .flat_map(|i| q[i * self.k_pad..i * self.k_pad + self.k].to_vec())
            .collect();
        let xo = (0..m)
            .flat_map(|i| xo[i * self.cap..i * self.cap + n_out].to_vec())
            .collect();
        Ok((q, scale[..m].to_vec(), xo))
    }
}

/// A [`QuantizedWeight`] on one device.
pub struct DeviceQuantizedWeight {
    data: CudaSlice<u8>,
    scales: CudaSlice<f32>,
    n: usize,
    k: usize,
    bits: u32,
    group: usize,
}

impl DeviceQuantizedWeight {
    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes a product reads of the weight (values and scales).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.scales.len() * 4
    }
}

impl Kernels {
    /// Copies a prepared LLM.int8() weight to the device (once per model).
    pub fn upload_int8_weight(
        &self,
        stream: &Arc<CudaStream>,
        w: &Int8Weight,
    ) -> Result<DeviceInt8Weight> {
        let (n, k, k_pad) = (w.n(), w.k(), w.k_pad);
        let n_pad = n.div_ceil(TILE) * TILE;
        fits_i32("weight", n_pad.max(k_pad))?;
        let err = cuda_err("qgemm upload");
        let mut q = vec![0i8; n_pad * k_pad];
        for j in 0..n {
            q[j * k_pad..j * k_pad + k].copy_from_slice(&w.quantized_row(j));
        }
        let mut scale = vec![0.0f32; n_pad];
        scale[..n].copy_from_slice(w.scales());
        let outliers = match (&w.fixed, &w.transposed) {
            (Some((cols, wo_cpu)), _) => {
                let mut mask = vec![0u8; k];
                for &c in cols {
                    mask[c as usize] = 1;
                }
                let mut wo = vec![0.0f32; cols.len().max(1) * n_pad];
                for o in 0..cols.len() {
                    wo[o * n_pad..o * n_pad + n]
                        .copy_from_slice(&wo_cpu[o * w.n_pad..o * w.n_pad + n]);
                }
                DeviceOutliers::Fixed {
                    cols: stream
                        .clone_htod(&[cols.as_slice(), &[0]].concat())
                        .map_err(&err)?,
                    count: stream.clone_htod(&[cols.len() as u32]).map_err(&err)?,
                    mask: stream.clone_htod(&mask).map_err(&err)?,
                    wo: stream.clone_htod(&wo).map_err(&err)?,
                    host: cols.clone(),
                }
            }
            (None, Some(t)) => DeviceOutliers::Dynamic {
                threshold: w.threshold,
                wt: match t {
                    Transposed::F32(v) => {
                        DeviceTransposed::F32(stream.clone_htod(v).map_err(&err)?)
                    }
                    Transposed::F16(v) => {
                        DeviceTransposed::F16(stream.clone_htod(v).map_err(&err)?)
                    }
                    Transposed::Bf16(v) => {
                        DeviceTransposed::Bf16(stream.clone_htod(v).map_err(&err)?)
                    }
                },
            },
            (None, None) => unreachable!("a weight keeps its fixed or its dynamic outlier side"),
        };
        Ok(DeviceInt8Weight {
            q: stream.clone_htod(&q).map_err(&err)?,
            scale: stream.clone_htod(&scale).map_err(&err)?,
            n,
            k,
            k_pad,
            n_pad,
            outliers,
        })
    }

    /// Room for calls with `w` of up to `max_m` rows and up to `max_outliers`
    /// outlier columns (raised to the fixed set's size in fixed mode; at most
    /// [`CUDA_MAX_OUTLIERS`]).
    pub fn int8_workspace(
        &self,
        stream: &Arc<CudaStream>,
        w: &DeviceInt8Weight,
        max_m: usize,
        max_outliers: usize,
    ) -> Result<DeviceInt8Workspace> {
        let fixed = match &w.outliers {
            DeviceOutliers::Fixed { host, .. } => Some(host.clone()),
            DeviceOutliers::Dynamic { .. } => None,
        };
        let fixed_len = fixed.as_ref().map_or(0, |c| c.len());
        let cap = max_outliers.min(w.k).max(fixed_len);
        if cap > CUDA_MAX_OUTLIERS {
            return Err(invalid("max_outliers", "above CUDA_MAX_OUTLIERS"));
        }
        let m_pad = max_m.max(1).div_ceil(TILE) * TILE;
        fits_i32("workspace rows", m_pad)?;
        let ovf = Error::Overflow { what: "workspace" };
        let q = m_pad.checked_mul(w.k_pad).ok_or(ovf.clone())?;
        let xo = m_pad.checked_mul(cap.max(1)).ok_or(ovf.clone())?;
        let wo = if fixed.is_none() {
            cap.max(1).checked_mul(w.n_pad).ok_or(ovf)?
        } else {
            1
        };
        let err = cuda_err("qgemm workspace");
        Ok(DeviceInt8Workspace {
            k: w.k,
            k_pad: w.k_pad,
            n_pad: w.n_pad,
            fixed,
            max_m,
            cap,
            m: 0,
            q: stream.alloc_zeros(q).map_err(&err)?,
            scale: stream.alloc_zeros(m_pad).map_err(&err)?,
            xo: stream.alloc_zeros(xo).map_err(&err)?,
            wo: stream.alloc_zeros(wo).map_err(&err)?,
            cols: stream.alloc_zeros(w.k).map_err(&err)?,
            count: stream.alloc_zeros(1).map_err(&err)?,
            mask: stream.alloc_zeros(w.k).map_err(&err)?,
            colmax: stream.alloc_zeros(w.k).map_err(&err)?,
        })
    }

    /// `y = x W^T (+ bias)` for x `[m, k]` into y `[m, n]`, the LLM.int8()
    /// product (see [`crate::qgemm`]), enqueued on `stream`. Validates
    /// everything first: nothing is enqueued on error.
    pub fn int8_matmul<T: CudaElement, U: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        w: &DeviceInt8Weight,
        ws: &mut DeviceInt8Workspace,
        x: &CudaView<'_, T>,
        bias: Option<&CudaView<'_, f32>>,
        y: &mut CudaViewMut<'_, U>,
    ) -> Result<()> {
        let m = self.int8_activations(stream, w, ws, x, Some(y.len()), bias.map(|b| b.len()))?;
        if m == 0 {
            return Ok(());
        }
        self.int8_gemm(stream, w, ws, bias, GemmOut::Y(y))
    }

    /// The exact int32 products `Xq Wq^T` of the activations the workspace
    /// holds (the last call's) into acc `[rows, n]`: the integer part alone,
    /// for tests and diagnostics. `x` is quantized first when given.
    pub fn int8_products<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        w: &DeviceInt8Weight,
        ws: &mut DeviceInt8Workspace,
        x: Option<&CudaView<'_, T>>,
        acc: &mut CudaViewMut<'_, i32>,
    ) -> Result<()> {
        let m = match x {
            Some(x) => self.int8_activations(stream, w, ws, x, None, None)?,
            None => {
                check_workspace(w, ws)?;
                ws.m
            }
        };
        expect_len("int32 products", m * w.n, acc.len())?;
        if m == 0 {
            return Ok(());
        }
        self.int8_gemm::<f32>(stream, w, ws, None, GemmOut::Acc(acc))
    }

    /// Validates a call and enqueues its activation side; returns m.
    fn int8_activations<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        w: &DeviceInt8Weight,
        ws: &mut DeviceInt8Workspace,
        x: &CudaView<'_, T>,
        y_len: Option<usize>,
        bias_len: Option<usize>,
    ) -> Result<usize> {
        check_workspace(w, ws)?;
        let m = Rows::of_len("x", x.len(), w.k)?.rows;
        if m > ws.max_m {
            return Err(invalid(
                "x",
                "has more rows than the workspace was made for",
            ));
        }
        if let Some(len) = y_len {
            expect_len("y", m * w.n, len)?;
        }
        if let Some(len) = bias_len {
            expect_len("bias", w.n, len)?;
        }
        ws.m = m;
        if m == 0 {
            return Ok(0);
        }
        let err = cuda_err("qgemm activations");
        let di = dtype_index(T::DTYPE);
        let (k, cap) = (w.k as i32, ws.cap as i32);
        let (mask, cols, count) = match &w.outliers {
            DeviceOutliers::Fixed {
                cols, count, mask, ..
            } => (mask, cols, count),
            DeviceOutliers::Dynamic { threshold, wt } => {
                stream.memset_zeros(&mut ws.colmax).map_err(&err)?;
                {
                    let mut p = Ptrs::new();
                    let xp = p.view(x, stream);
                    let cm = p.view_mut(&mut ws.colmax, stream);
                    let mut l = stream.launch_builder(&self.qgemm.colmax[di]);
                    // a block: 8 warps x 32 lanes of 16 bytes (VEC columns)
                    // over a chunk of rows; about COLMAX_BLOCKS blocks (a few
                    // per SM), at least a row per warp, at most 65535 chunks
                    const COLMAX_BLOCKS: usize = 1024;
                    let col_blocks = w.k.div_ceil(32 * (16 / T::DTYPE.size()));
                    let chunks = COLMAX_BLOCKS
                        .div_ceil(col_blocks)
                        .min(m.div_ceil(8))
                        .min(65535);
                    let (mi, rpb) = (m as i32, m.div_ceil(chunks) as i32);
                    l.arg(&xp).arg(&mi).arg(&k).arg(&rpb).arg(&cm);
                    // SAFETY: x holds m x k elements of T, colmax k u32; the
                    // grid covers k columns and m rows.
                    unsafe {
                        l.launch(LaunchConfig {
                            grid_dim: (col_blocks as u32, m.div_ceil(rpb as usize) as u32, 1),
                            block_dim: (256, 1, 1),
                            shared_mem_bytes: 0,
                        })
                    }
                    .map_err(&err)?;
                }
                {
                    let mut p = Ptrs::new();
                    let cm = p.view(&ws.colmax, stream);
                    let co = p.view_mut(&mut ws.cols, stream);
                    let ct = p.view_mut(&mut ws.count, stream);
                    let mk = p.view_mut(&mut ws.mask, stream);
                    let mut l = stream.launch_builder(&self.qgemm.select);
                    l.arg(&cm)
                        .arg(&k)
                        .arg(threshold)
                        .arg(&cap)
                        .arg(&co)
                        .arg(&ct)
                        .arg(&mk);
                    // SAFETY: colmax, cols and mask hold k values, count one.
                    unsafe {
                        l.launch(LaunchConfig {
                            grid_dim: (1, 1, 1),
                            block_dim: (1024, 1, 1),
                            shared_mem_bytes: 0,
                        })
                    }
                    .map_err(&err)?;
                }
                {
                    let mut p = Ptrs::new();
                    let (f, wtp) = match wt {
                        DeviceTransposed::F32(v) => (&self.qgemm.gather_wo[0], p.view(v, stream)),
                        DeviceTransposed::F16(v) => (&self.qgemm.gather_wo[1], p.view(v, stream)),
                        DeviceTransposed::Bf16(v) => (&self.qgemm.gather_wo[2], p.view(v, stream)),
                    };
                    let co = p.view(&ws.cols, stream);
                    let ct = p.view(&ws.count, stream);
                    let wo = p.view_mut(&mut ws.wo, stream);
                    let (n, n_pad) = (w.n as i32, w.n_pad as i32);
                    let mut l = stream.launch_builder(f);
                    l.arg(&wtp)
                        .arg(&co)
                        .arg(&ct)
                        .arg(&cap)
                        .arg(&n)
                        .arg(&n_pad)
                        .arg(&wo);
                    // SAFETY: W transposed holds k x n elements, wo cap x n_pad
                    // floats; the kernel reads min(count, cap) columns < k.
                    unsafe {
                        l.launch(LaunchConfig {
                            grid_dim: (w.n.div_ceil(256) as u32, ws.cap.max(1) as u32, 1),
                            block_dim: (256, 1, 1),
                            shared_mem_bytes: 0,
                        })
                    }
                    .map_err(&err)?;
                }
                (&ws.mask, &ws.cols, &ws.count)
            }
        };
        let m_pad = m.div_ceil(TILE) * TILE;
        let mut p = Ptrs::new();
        let a = QuantArgs {
            x: p.view(x, stream),
            mask: p.view(mask, stream),
            cols: p.view(cols, stream),
            count: p.view(count, stream),
            q: p.view_mut(&mut ws.q, stream),
            scale: p.view_mut(&mut ws.scale, stream),
            xo: p.view_mut(&mut ws.xo, stream),
            m: m as i32,
            k,
            k_pad: w.k_pad as i32,
            cap,
        };
        let mut l = stream.launch_builder(&self.qgemm.quantize[di]);
        l.arg(&a);
        // SAFETY: x m x k elements; q m_pad x k_pad bytes, scale m_pad, xo
        // m_pad x cap (m_pad <= the workspace's rows); mask k, cols >= min(count, cap).
        unsafe {
            l.launch(LaunchConfig {
                grid_dim: (m_pad as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            })
        }
        .map_err(&err)?;
        Ok(m)
    }

    fn int8_gemm<U: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        w: &DeviceInt8Weight,
        ws: &DeviceInt8Workspace,
        bias: Option<&CudaView<'_, f32>>,
        out: GemmOut<'_, '_, U>,
    ) -> Result<()> {
        let m = ws.m;
        let mut p = Ptrs::new();
        let (wo, count) = match &w.outliers {
            DeviceOutliers::Fixed { wo, count, .. } => (p.view(wo, stream), p.view(count, stream)),
            DeviceOutliers::Dynamic { .. } => (p.view(&ws.wo, stream), p.view(&ws.count, stream)),
        };
        let mut g = GemmArgs {
            a: p.view(&ws.q, stream),
            w: p.view(&w.q, stream),
            a_scale: p.view(&ws.scale, stream),
            w_scale: p.view(&w.scale, stream),
            xo: p.view(&ws.xo, stream),
            wo,
            count,
            bias: bias.map_or(0, |b| p.view(b, stream)),
            y: 0,
            acc: 0,
            m: m as i32,
            n: w.n as i32,
            k_pad: w.k_pad as i32,
            n_pad: w.n_pad as i32,
            cap: ws.cap as i32,
            y_dtype: U::DTYPE.to_ffi() as i32,
        };
        match out {
            GemmOut::Y(y) => g.y = p.view_mut(y, stream),
            GemmOut::Acc(acc) => g.acc = p.view_mut(acc, stream),
        }
        if let Some(f) = self
            .qgemm
            .wgmma
            .as_ref()
            .filter(|_| self.int8_gemm_kernel() == Int8GemmKernel::Wgmma)
        {
            let q_rows = ws.q.len() / w.k_pad;
            let h = WgmmaArgs {
                a_map: tma_map(g.a, w.k_pad, q_rows, WGMMA_BM)?,
                w_map: tma_map(g.w, w.k_pad, w.n_pad, WGMMA_BN)?,
                g,
            };
            let mut l = stream.launch_builder(f);
            l.arg(&h);
            // SAFETY: as below; the tensor maps cover q (all the workspace's
            // rows) and W exactly, TMA reads zeros past them, and the grid
            // covers m x n_pad in 128 x 256 tiles.
            unsafe {
                l.launch(LaunchConfig {
                    grid_dim: (
                        w.n_pad.div_ceil(WGMMA_BN) as u32,
                        m.div_ceil(WGMMA_BM) as u32,
                        1,
                    ),
                    block_dim: (WGMMA_THREADS, 1, 1),
                    shared_mem_bytes: WGMMA_SMEM,
                })
            }
            .map_err(cuda_err("qgemm int8 gemm (wgmma)"))?;
            return Ok(());
        }
        let mut l = stream.launch_builder(&self.qgemm.gemm);
        l.arg(&g);
        // SAFETY: q m_pad x k_pad and W n_pad x k_pad int8 (padding zero),
        // scales m_pad / n_pad, xo m_pad x cap, wo cap x n_pad (or the fixed
        // set's rows), bias n, y / acc m x n (checked by the caller); the
        // grid covers m_pad x n_pad in 128 x 128 tiles.
        unsafe {
            l.launch(LaunchConfig {
                grid_dim: ((w.n_pad / TILE) as u32, m.div_ceil(TILE) as u32, 1),
                block_dim: (GEMM_THREADS, 1, 1),
                shared_mem_bytes: GEMM_SMEM,
            })
        }
        .map_err(cuda_err("qgemm int8 gemm"))?;
        Ok(())
    }

    /// Which kernel [`Kernels::int8_matmul`] runs the GEMM with.
    pub fn int8_gemm_kernel(&self) -> Int8GemmKernel {
        if self.qgemm.wgmma.is_some() && self.qgemm.use_wgmma.load(Ordering::Relaxed) {
            Int8GemmKernel::Wgmma
        } else {
            Int8GemmKernel::MmaSync
        }
    }

    /// Chooses the GEMM kernel of later calls: [`Int8GemmKernel::Wgmma`] is
    /// an error on a device without it (compute capability other than 9.0).
    /// `MmaSync` is the default until a device run has checked the Hopper
    /// kernel (docs/gpu-results.md).
    pub fn use_int8_gemm_kernel(&self, kernel: Int8GemmKernel) -> Result<()> {
        if kernel == Int8GemmKernel::Wgmma && self.qgemm.wgmma.is_none() {
            return Err(invalid(
                "kernel",
                "wgmma needs a device of compute capability 9.0",
            ));
        }
        self.qgemm
            .use_wgmma
            .store(kernel == Int8GemmKernel::Wgmma, Ordering::Relaxed);
        Ok(())
    }

    /// Copies a weight-only quantized weight to the device (once per model).
    pub fn upload_weight_only(
        &self,
        stream: &Arc<CudaStream>,
        w: &QuantizedWeight,
    ) -> Result<DeviceQuantizedWeight> {
        fits_i32("weight", w.n().max(w.k()))?;
        let err = cuda_err("weight-only upload");
        let (data, scales) = w.row_major();
        Ok(DeviceQuantizedWeight {
            data: stream.clone_htod(&data).map_err(&err)?,
            scales: stream.clone_htod(&scales).map_err(&err)?,
            n: w.n(),
            k: w.k(),
            bits: w.bits(),
            group: w.group,
        })
    }

    /// `y = x W^T (+ bias)` for x `[m, k]` (any m; launched 16 rows at a time)
    /// into y `[m, n]`, x's dtype. Nothing is enqueued on error.
    pub fn weight_only_gemv<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        w: &DeviceQuantizedWeight,
        x: &CudaView<'_, T>,
        bias: Option<&CudaView<'_, f32>>,
        y: &mut CudaViewMut<'_, T>,
    ) -> Result<()> {
        let m = Rows::of_len("x", x.len(), w.k)?.rows;
        expect_len("y", m * w.n, y.len())?;
        if let Some(b) = bias {
            expect_len("bias", w.n, b.len())?;
        }
        if m == 0 {
            return Ok(());
        }
        let mut p = Ptrs::new();
        let xp = p.view(x, stream);
        let aligned = p.aligned();
        let mut a = WgemvArgs {
            x: xp,
            w: p.view(&w.data, stream),
            w_scale: p.view(&w.scales, stream),
            bias: bias.map_or(0, |b| p.view(b, stream)),
            y: p.view_mut(y, stream),
            m: 0,
            n: w.n as i32,
            k: w.k as i32,
            group: w.group as i32,
            aligned: aligned as i32,
        };
        let size = T::DTYPE.size() as u64;
        let bits = if w.bits == 8 { 0 } else { 1 };
        let base = (dtype_index(T::DTYPE) * 2 + bits) * GEMV_ROWS.len();
        let channels_per_block = |rows: usize| if rows >= 8 { 2 } else { 4 };
        for r0 in (0..m).step_by(GEMV_MAX_ROWS) {
            let rows = (m - r0).min(GEMV_MAX_ROWS);
            let t = GEMV_ROWS
                .iter()
                .position(|&r| r >= rows)
                .expect("rows <= 16");
            a.m = rows as i32;
            let mut c = a;
            c.x += (r0 * w.k) as u64 * size;
            c.y += (r0 * w.n) as u64 * size;
            let mut l = stream.launch_builder(&self.qgemm.gemv[base + t]);
            l.arg(&c);
            // SAFETY: x holds m x k elements and y m x n (this launch: rows
            // r0 .. r0 + rows), W n rows of k or k / 2 bytes (k a multiple of
            // 32), scales n x k / group, bias n.
            unsafe {
                l.launch(LaunchConfig {
                    grid_dim: (w.n.div_ceil(channels_per_block(GEMV_ROWS[t])) as u32, 1, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                })
            }
            .map_err(cuda_err("weight-only gemv"))?;
        }
        Ok(())
    }
}

/// A TMA map of the int8 matrix `[rows, k_pad]` at device address `ptr`,
/// read in boxes of `box_rows` rows x 128 bytes, 128-byte swizzled (what
/// kernels-cuda/qgemm_wgmma.cu expects); zeros past its edges.
fn tma_map(ptr: u64, k_pad: usize, rows: usize, box_rows: usize) -> Result<TmaMap> {
    let dims = [k_pad as u64, rows as u64];
    let strides = [k_pad as u64]; // bytes between rows (a multiple of 16)
    let boxes = [WGMMA_BK as u32, box_rows as u32];
    let steps = [1u32, 1];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every array has the rank's length; the driver only encodes
    // (no device access), and `map` is written before it is read.
    let map = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
            2,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()
        .map_err(cuda_err("qgemm tensor map"))?;
        map.assume_init()
    };
    Ok(TmaMap(map.opaque))
}

enum GemmOut<'v, 'a, U> {
    Y(&'v mut CudaViewMut<'a, U>),
    Acc(&'v mut CudaViewMut<'a, i32>),
}

fn check_workspace(w: &DeviceInt8Weight, ws: &DeviceInt8Workspace) -> Result<()> {
    let dynamic = matches!(w.outliers, DeviceOutliers::Dynamic { .. });
    let fixed_fits = match &w.outliers {
        DeviceOutliers::Fixed { host, .. } => host.len() <= ws.cap,
        DeviceOutliers::Dynamic { .. } => true,
    };
    if ws.k != w.k
        || ws.k_pad != w.k_pad
        || ws.n_pad != w.n_pad
        || ws.fixed.is_none() != dynamic
        || !fixed_fits
    {
        return Err(invalid(
            "workspace",
            "was made for a weight of another shape or outlier mode",
        ));
    }
    Ok(())
}
