// What the two LLM.int8() GEMM kernels share (qgemm.cu: mma.sync for sm_80
// and up; qgemm_wgmma.cu: wgmma + TMA for sm_90a): their arguments and the
// store of y. Both epilogues compute y = acc (sx sw) + sum_o xo wo + bias in
// f32 in the same order (fmaf over the outlier columns in ascending order),
// so the two kernels' outputs are the same bits.
#pragma once

#include "common.cuh"

namespace tk {

struct GemmArgs {
    const signed char *a;      // [m_pad, k_pad]
    const signed char *w;      // [n_pad, k_pad]
    const float *a_scale;      // [m_pad]
    const float *w_scale;      // [n_pad]
    const float *xo;           // [m_pad, cap]
    const float *wo;           // [cap, n_pad]
    const unsigned int *count; // outlier columns (on the device)
    const float *bias;         // [n] or null
    void *y;                   // [m, n], y_dtype
    int *acc;                  // [m, n] exact int32 instead of y, or null
    int m, n, k_pad, n_pad, cap;
    int y_dtype; // 0 f32, 1 f16, 2 bf16 (tk_dtype)
};

__device__ __forceinline__ void gm_store(const GemmArgs &g, int i, int j, float v) {
    const size_t e = (size_t)i * g.n + j;
    if (g.y_dtype == 0)
        static_cast<float *>(g.y)[e] = v;
    else if (g.y_dtype == 1)
        static_cast<__half *>(g.y)[e] = __float2half_rn(v);
    else
        static_cast<__nv_bfloat16 *>(g.y)[e] = __float2bfloat16_rn(v);
}

} // namespace tk
