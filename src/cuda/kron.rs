//! Kronecker transforms + quantization on CUDA (kernels-cuda/kron.cu): the
//! semantics of [`crate::kron`] on device buffers. A transform is uploaded
//! once ([`Kernels::upload_kron`]); each call reads x once and writes y
//! and/or the quantized values and per-token scales once. Tokens up to
//! [`CUDA_KRON_MAX_N`] elements (the token and one product live in shared
//! memory).

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute_enum;
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
}

impl KronKernels {
    pub(crate) fn load(module: &Arc<CudaModule>) -> Result<KronKernels> {
        let mut run = Vec::new();
        for d in Dtype::ALL {
            let f = Kernels::function(module, &format!("tk_kron_{}_cuda", d.name()))?;
            f.set_attribute(
                CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                (2 * 4 * CUDA_KRON_MAX_N) as i32,
            )
            .map_err(cuda_err("kron shared memory attribute"))?;
            run.push(f);
        }
        Ok(KronKernels { run })
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
}

impl DeviceKron {
    /// Token length n = n1 * n2.
    pub fn n(&self) -> usize {
        self.n1 * self.n2
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
        Ok(DeviceKron {
            left: up(pk.left)?,
            right: up(pk.right)?,
            smooth: up(pk.smooth)?,
            n1: p1.order(),
            n2: p2.order(),
            out_scale: pk.out_scale,
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
        let f = &self.kron.run[Dtype::ALL
            .iter()
            .position(|d| *d == T::DTYPE)
            .expect("dtype")];
        let mut launch = stream.launch_builder(f);
        launch.arg(&a);
        // SAFETY: every pointer comes from a view checked above against
        // tokens x n (factors: n1^2 / n2^2 floats, smoothing n, uploaded from
        // a validated Kron); shared memory holds 2 n floats <= the attribute.
        unsafe {
            launch.launch(LaunchConfig {
                grid_dim: (tokens.min(65535) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: (2 * 4 * n) as u32,
            })
        }
        .map_err(cuda_err("kron"))?;
        Ok(())
    }
}
