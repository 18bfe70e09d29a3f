//! The CUDA test files' device: a stream and the loaded kernels, or None with
//! a message when this machine has no GPU (the device check sets
//! TK_REQUIRE_GPU, which makes a missing GPU a failure instead).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use transformer_kernels::cuda::{Kernels, gpu_available};

pub fn gpu() -> Option<(Arc<CudaStream>, Kernels)> {
    if !gpu_available() {
        assert!(
            std::env::var_os("TK_REQUIRE_GPU").is_none(),
            "TK_REQUIRE_GPU is set but no CUDA device answers"
        );
        eprintln!("SKIP CUDA tests: no CUDA driver or device on this machine");
        return None;
    }
    let ctx = CudaContext::new(0).expect("CUDA device 0");
    let kernels = Kernels::new(&ctx).expect("load the embedded fatbin");
    Some((ctx.default_stream(), kernels))
}
