// The one CUDA translation unit: every family's kernels, compiled by build.rs
// into one fatbin (sm_80, sm_90 SASS + compute_90 PTX) embedded in the crate.
#include "softmax.cu"
#include "norm.cu"
#include "lightning.cu"
#include "kron.cu"
#include "kron_tc.cu"
#include "wgemv.cu"
#include "qgemm.cu"
