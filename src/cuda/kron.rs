//! Kronecker transforms + quantization on CUDA (kernels-cuda/kron.cu): the
//! semantics of [`crate::kron`] on device buffers. A transform is uploaded
//! once ([`Kernels::upload_kron`]); each call reads x once and writes y
//! and/or the quantized values and per-token scales once. Tokens up to
//! [`CUDA_KRON_MAX_N`] elements (the token and one product live in shared
//! memory). 16-bit tokens run on the tensor cores where the shape allows
//! (`kernels-cuda/kron_tc.cu`: n2 a multiple of 8, padded orders up to 128
//! x 128 or so; [`DeviceKron::tensor_cores`]), with factors rounded to the
//! token dtype: see [`DeviceKron::error_bound`].

use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig,
    PushKernelArg,
};

use super::ptrs::Ptrs;
use super::{CudaElement, Kernels, cuda_err};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::kron::{Kron, int4_row_bytes};
use crate::shape::expect_len;

/// Largest token length of the CUDA kernel (two f32 copies in 128 KiB of
/// shared memory).
pub const CUDA_KRON_MAX_N: usize = 16384;
const THREADS: u32 = 256;
/// Shared memory the tensor-core kernel may use (both factors, X and Z^T in
/// 16 bits: 139.5 KiB at 128 x 128).
const TC_SMEM_MAX: usize = 144 * 1024;
/// 16-byte vectors of a token each thread of the tensor-core kernel
/// prefetches (`tk::KTC_MAX_VECS`).
const TC_MAX_VECS: usize = 8;

/// Mirrors `tk::KronArgs`.
#[repr(C)]
#[derive(Clone, Copy)]
struct KronArgs {
    x: u64,
    y: u64,
    q: u64,
    q_scale: u64,
    smooth: u64,
    left: u64,
    right: u64,
    tokens: i64,
    q_stride: i64,
    n1: i32,
    n2: i32,
    q_bits: i32,
    out_scale: f32,
    clip: f32,
}

// SAFETY: plain-old-data struct laid out as its C counterpart.
unsafe impl cudarc::driver::DeviceRepr for KronArgs {}

pub(crate) struct KronKernels {
    /// [dtype]
    run: Vec<CudaFunction>,
    /// [dtype] (None for f32): the tensor-core kernel.
    tc: Vec<Option<CudaFunction>>,
}

impl KronKernels {
    pub(crate) fn load(module: &Arc<CudaModule>) -> Result<KronKernels> {
        let mut run = Vec::new();
        for d in Dtype::ALL {
            let name = format!("tk_kron_{}_cuda", d.name());
            run.push(Kernels::function_with_smem(
                module,
                &name,
                2 * 4 * CUDA_KRON_MAX_N,
            )?);
        }
        let mut tc = Vec::new();
        for d in Dtype::ALL {
            tc.push(if d == Dtype::F32 {
                None
            } else {
                let name = format!("tk_kron_tc_{}_cuda", d.name());
                Some(Kernels::function_with_smem(module, &name, TC_SMEM_MAX)?)
            });
        }
        Ok(KronKernels { run, tc })
    }
}

/// A [`Kron`] transform uploaded to one device (factors, smoothing).
pub struct DeviceKron {
    left: Option<CudaSlice<f32>>,
    right: Option<CudaSlice<f32>>,
    smooth: Option<CudaSlice<f32>>,
    n1: usize,
    n2: usize,
    out_scale: f32,
    /// How 16-bit tokens run on the tensor cores, when the shape allows.
    tc: Option<TcLaunch>,
}

/// Launch geometry of the tensor-core kernel for one transform.
#[derive(Clone, Copy)]
struct TcLaunch {
    threads: u32,
    smem: u32,
    /// Blocks that fit on the device at once (the grid-stride loop's grid).
    grid: u32,
}

/// Mirrors `tk::ktc_pad`.
fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// The tensor-core kernel's threads and shared memory for n1 x n2 (its
/// limits: whole 16-byte rows, at most two 16 x 64 output items a warp, the
/// prefetch registers, shared memory), or None.
fn tc_shape(n1: usize, n2: usize) -> Option<(u32, usize)> {
    let (a, b) = (pad16(n1), pad16(n2));
    let items = a / 16 * b.div_ceil(64);
    let vecs = n1 * n2 / 8;
    let threads = if items <= 8 && vecs <= TC_MAX_VECS * 128 {
        128
    } else {
        256
    };
    let smem = 64 * 4 + 2 * (a * (a + 8) + b * (b + 8) + a * (b + 8) + b * (a + 8));
    (n2 % 8 == 0
        && items <= 2 * threads / 32
        && vecs <= TC_MAX_VECS * threads
        && smem <= TC_SMEM_MAX)
        .then_some((threads as u32, smem))
}

impl DeviceKron {
    /// Token length n = n1 * n2.
    pub fn n(&self) -> usize {
        self.n1 * self.n2
    }

    /// Whether tokens of `dtype` run on the tensor cores (f16/bf16 and a
    /// shape `kernels-cuda/kron_tc.cu` takes).
    pub fn tensor_cores(&self, dtype: Dtype) -> bool {
        dtype != Dtype::F32 && self.tc.is_some()
    }

    /// The accuracy contract of y for tokens of `dtype` (`t` the transform
    /// this was uploaded from): [`Kron::error_bound`], plus `4 u_io mag` on
    /// the tensor cores, where the factors, the smoothed x and the
    /// intermediate product are each rounded to the token dtype once (the
    /// products are exact, the sums f32). The quantized values follow from y
    /// as on the CPU.
    pub fn error_bound(&self, t: &Kron, dtype: Dtype, y_exact: f64, mag: f64) -> f64 {
        let tc = if self.tensor_cores(dtype) {
            4.0 * dtype.unit_roundoff() * mag
        } else {
            0.0
        };
        t.error_bound(dtype, y_exact, mag) + tc
    }
}

/// The outputs of a call: any of y, int8 values + scales, int4 values + scales.
pub struct DeviceKronOutput<'v, 'a, T> {
    /// The transformed tokens in the input dtype, or None.
    pub y: Option<&'v mut CudaViewMut<'a, T>>,
    /// int8 values and one f32 scale per token, or None.
    pub int8: Option<(&'v mut CudaViewMut<'a, i8>, &'v mut CudaViewMut<'a, f32>)>,
    /// Packed int4 values and one f32 scale per token, or None.
    pub int4: Option<(&'v mut CudaViewMut<'a, u8>, &'v mut CudaViewMut<'a, f32>)>,
}

impl<'v, 'a, T> DeviceKronOutput<'v, 'a, T> {
    /// y only.
    pub fn y(y: &'v mut CudaViewMut<'a, T>) -> Self {
        DeviceKronOutput {
            y: Some(y),
            int8: None,
            int4: None,
        }
    }

    /// int8 values and scales only.
    pub fn int8(q: &'v mut CudaViewMut<'a, i8>, scales: &'v mut CudaViewMut<'a, f32>) -> Self {
        DeviceKronOutput {
            y: None,
            int8: Some((q, scales)),
            int4: None,
        }
    }

    /// int4 values and scales only.
    pub fn int4(q: &'v mut CudaViewMut<'a, u8>, scales: &'v mut CudaViewMut<'a, f32>) -> Self {
        DeviceKronOutput {
            y: None,
            int8: None,
            int4: Some((q, scales)),
        }
    }
}

fn invalid(reason: &'static str) -> Error {
    Error::InvalidArgument {
        what: "kron on CUDA",
        reason,
    }
}

impl Kernels {
    /// Uploads a transform's factors and smoothing vector (once per model).
    pub fn upload_kron(&self, stream: &Arc<CudaStream>, t: &Kron) -> Result<DeviceKron> {
        let n = t.n();
        if n > CUDA_KRON_MAX_N {
            return Err(invalid("tokens longer than 16384 elements"));
        }
        let (p1, p2) = t.factors();
        let pk = t.packed();
        let up = |v: Option<&[f32]>| -> Result<Option<CudaSlice<f32>>> {
            v.map(|v| stream.clone_htod(v).map_err(cuda_err("kron upload")))
                .transpose()
        };
        let (n1, n2) = (p1.order(), p2.order());
        let tc = match (tc_shape(n1, n2), &self.kron.tc[Dtype::Bf16 as usize]) {
            (Some((threads, smem)), Some(f)) => {
                let per_sm = f
                    .occupancy_max_active_blocks_per_multiprocessor(threads, smem, None)
                    .map_err(cuda_err("kron occupancy"))?;
                let sms = stream
                    .context()
                    .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                    .map_err(cuda_err("kron device attribute"))?;
                Some(TcLaunch {
                    threads,
                    smem: smem as u32,
                    grid: (per_sm.max(1) * sms.max(1) as u32).min(65535),
                })
            }
            _ => None,
        };
        Ok(DeviceKron {
            left: up(pk.left)?,
            right: up(pk.right)?,
            smooth: up(pk.smooth)?,
            n1,
            n2,
            out_scale: pk.out_scale,
            tc,
        })
    }

    /// `y = (x * s) (P1 kron P2)` per token of `x`, and/or its per-token
    /// quantization with clipping ratio `clip` (see [`crate::kron`]).
    /// Nothing is launched on error.
    pub fn kron<T: CudaElement>(
        &self,
        stream: &Arc<CudaStream>,
        t: &DeviceKron,
        x: &CudaView<'_, T>,
        out: DeviceKronOutput<'_, '_, T>,
        clip: f32,
    ) -> Result<()> {
        let n = t.n();
        if x.len() % n != 0 {
            return Err(Error::LengthNotMultiple {
                what: "kron x",
                len: x.len(),
                cols: n,
            });
        }
        let tokens = x.len() / n;
        if !(clip > 0.0 && clip <= 1.0) {
            return Err(Error::InvalidArgument {
                what: "clip",
                reason: "must be in (0, 1]",
            });
        }
        if out.int8.is_some() && out.int4.is_some() {
            return Err(invalid("ask for int8 or int4, not both"));
        }
        if out.y.is_none() && out.int8.is_none() && out.int4.is_none() {
            return Err(invalid("asks for no output"));
        }
        if let Some(y) = &out.y {
            expect_len("kron y", x.len(), y.len())?;
        }
        if let Some((q, s)) = &out.int8 {
            expect_len("kron int8 values", x.len(), q.len())?;
            expect_len("kron scales", tokens, s.len())?;
        }
        if let Some((q, s)) = &out.int4 {
            expect_len("kron int4 values", tokens * int4_row_bytes(n), q.len())?;
            expect_len("kron scales", tokens, s.len())?;
        }
        if tokens == 0 {
            return Ok(());
        }
        // before ptrs: its guards borrow these views
        let views = [&t.left, &t.right, &t.smooth].map(|s| s.as_ref().map(|s| s.as_view()));
        let mut ptrs = Ptrs::new();
        let mut a = KronArgs {
            x: ptrs.view(x, stream),
            y: 0,
            q: 0,
            q_scale: 0,
            smooth: 0,
            left: 0,
            right: 0,
            tokens: tokens as i64,
            q_stride: 0,
            n1: t.n1 as i32,
            n2: t.n2 as i32,
            q_bits: 8,
            out_scale: t.out_scale,
            clip,
        };
        for (i, v) in views.iter().enumerate() {
            let p = v.as_ref().map_or(0, |v| ptrs.view(v, stream));
            match i {
                0 => a.left = p,
                1 => a.right = p,
                _ => a.smooth = p,
            }
        }
        if let Some(y) = out.y {
            a.y = ptrs.view_mut(y, stream);
        }
        if let Some((q, s)) = out.int8 {
            a.q = ptrs.view_mut(q, stream);
            a.q_scale = ptrs.view_mut(s, stream);
            a.q_stride = n as i64;
        }
        if let Some((q, s)) = out.int4 {
            a.q = ptrs.view_mut(q, stream);
            a.q_scale = ptrs.view_mut(s, stream);
            a.q_stride = int4_row_bytes(n) as i64;
            a.q_bits = 4;
        }
        let d = T::DTYPE as usize;
        let (f, cfg) = match (&self.kron.tc[d], t.tc) {
            (Some(f), Some(tc)) => (
                f,
                LaunchConfig {
                    grid_dim: (tokens.min(tc.grid as usize) as u32, 1, 1),
                    block_dim: (tc.threads, 1, 1),
                    shared_mem_bytes: tc.smem,
                },
            ),
            _ => (
                &self.kron.run[d],
                LaunchConfig {
                    grid_dim: (tokens.min(65535) as u32, 1, 1),
                    block_dim: (THREADS, 1, 1),
                    shared_mem_bytes: (2 * 4 * n) as u32,
                },
            ),
        };
        let mut launch = stream.launch_builder(f);
        launch.arg(&a);
        // SAFETY: every pointer comes from a view checked above against
        // tokens x n (factors: n1^2 / n2^2 floats, smoothing n, uploaded from
        // a validated Kron); shared memory: 2 n floats (SIMT) or tc_shape's
        // bytes (tensor cores), both within the attributes set at load.
        unsafe { launch.launch(cfg) }.map_err(cuda_err("kron"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::tc_shape;

    #[test]
    fn tensor_core_shapes() {
        // LLM shapes: 4096 = 64 x 64, 11008 = 86 x 128, 14336 = 112 x 128, 128 x 128
        assert_eq!(tc_shape(64, 64), Some((128, 256 + 2 * 4 * 64 * 72)));
        assert_eq!(tc_shape(86, 128).map(|s| s.0), Some(256));
        assert_eq!(tc_shape(112, 128).map(|s| s.0), Some(256));
        assert!(tc_shape(128, 128).is_some_and(|s| s.1 <= super::TC_SMEM_MAX));
        // rows not whole 16-byte vectors; too many items for 8 warps; too large
        assert_eq!(tc_shape(6, 20), None);
        assert_eq!(tc_shape(16, 1032), None);
        assert_eq!(tc_shape(160, 128), None);
    }
}
