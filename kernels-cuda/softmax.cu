// Row-wise softmax / log-softmax on CUDA, f32 / f16 / bf16 I/O, f32 arithmetic.
//
// Three kernel shapes, chosen by the host from the row length:
//  - rows<GROUP>x<ITEMS>, GROUP = 32: a warp per row, the row held in registers
//    (ITEMS elements per lane), reductions by shuffles; one read, one write.
//  - rows<GROUP>x<ITEMS>, GROUP = 256..1024: a block per row, same register
//    scheme with block reductions; rows up to GROUP * ITEMS (32768) elements.
//  - stream<GROUP>: a block per row for rows too long to hold (vocabularies to
//    256k and beyond): pass 1 keeps an online (max, sum) per thread, pass 2
//    rereads (mostly from L2) and writes. Two reads, one write.
// Accesses are 128-bit when the row start is 16-byte aligned (host-checked).
// y may equal x (in place): each thread reads its elements before it writes
// them and no thread reads another's, so x and y are not declared __restrict__.
// Semantics match the CPU kernels: z = fl32(scale * x); NaN or +inf anywhere
// in a row, or a row of only -inf, makes that row NaN; -inf entries give 0.
// Indexing: row offsets are 64-bit; cols < 2^31 (host-checked).

#include "common.cuh"

namespace tk {

struct SoftmaxArgs {
    int rows;
    int cols;
    float scale;
    int log_out;
    int aligned; // x and y rows start 16-byte aligned
};

template <typename T, int GROUP, int ITEMS>
__device__ __forceinline__ void softmax_row_regs(const T *x, T *y, int lane,
                                                 const SoftmaxArgs &a) {
    constexpr int V = Io<T>::VEC;
    static_assert(ITEMS % V == 0, "ITEMS is whole 128-bit vectors");
    constexpr int CHUNKS = ITEMS / V;
    float z[ITEMS];
    float max = -INFINITY;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        const int start = (c * GROUP + lane) * V;
        float v[V];
        load_vec<T>(x + start, a.cols - start, a.aligned, -INFINITY, v);
#pragma unroll
        for (int k = 0; k < V; k++) {
            z[c * V + k] = start + k < a.cols ? __fmul_rn(v[k], a.scale) : -INFINITY;
            max = fmaxf(max, z[c * V + k]);
        }
    }
    // fmaxf skips NaN; a NaN z still makes the sum NaN below, and so the row
    max = GroupReduce<GROUP>::max(max);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        const float e = expf(z[i] - max); // 0 for -inf, NaN for NaN / inf - inf
        sum += e;
        if (!a.log_out) z[i] = e;
    }
    sum = GroupReduce<GROUP>::sum(sum);
    const float inv = 1.0f / sum, log_sum = logf(sum);
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        const int start = (c * GROUP + lane) * V;
        if (start >= a.cols) break;
        float v[V];
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = a.log_out ? (z[c * V + k] - max) - log_sum : z[c * V + k] * inv;
        store_vec<T>(y + start, a.cols - start, a.aligned, v);
    }
}

// A warp per row; blockDim.x = 32 * WARPS.
template <typename T, int ITEMS, int WARPS>
__device__ void softmax_warp(const T *x, T *y, SoftmaxArgs a) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32;
    if (row >= a.rows) return;
    const size_t off = (size_t)row * (size_t)a.cols;
    softmax_row_regs<T, 32, ITEMS>(x + off, y + off, threadIdx.x % 32, a);
}

// A block of GROUP threads per row.
template <typename T, int GROUP, int ITEMS>
__device__ void softmax_block(const T *x, T *y, SoftmaxArgs a) {
    const size_t off = (size_t)blockIdx.x * (size_t)a.cols;
    softmax_row_regs<T, GROUP, ITEMS>(x + off, y + off, threadIdx.x, a);
}

// (m, s) online pair: s = sum exp(z - m). Merging keeps NaN and treats an
// empty side (m = -inf, s = 0) as nothing.
__device__ __forceinline__ float rescale(float s, float from, float to) {
    return from == -INFINITY ? s * 0.0f : s * expf(from - to);
}

template <typename T, int GROUP>
__device__ void softmax_stream(const T *x, T *y, SoftmaxArgs a) {
    constexpr int V = Io<T>::VEC;
    const size_t off = (size_t)blockIdx.x * (size_t)a.cols;
    x += off;
    y += off;
    float m = -INFINITY, s = 0.0f;
    for (int start = threadIdx.x * V; start < a.cols; start += GROUP * V) {
        float v[V];
        load_vec<T>(x + start, a.cols - start, a.aligned, -INFINITY, v);
        float cm = -INFINITY;
#pragma unroll
        for (int k = 0; k < V; k++) {
            v[k] = start + k < a.cols ? __fmul_rn(v[k], a.scale) : -INFINITY;
            cm = fmaxf(cm, v[k]);
        }
        if (cm > m) {
            s = rescale(s, m, cm);
            m = cm;
        }
#pragma unroll
        for (int k = 0; k < V; k++) s += v[k] == -INFINITY ? 0.0f : expf(v[k] - m);
    }
    const float max = GroupReduce<GROUP>::max(m);
    float sum = GroupReduce<GROUP>::sum(rescale(s, m, max));
    const float inv = 1.0f / sum, log_sum = logf(sum);
    if (max == -INFINITY) sum = NAN; // a row of only -inf
    for (int start = threadIdx.x * V; start < a.cols; start += GROUP * V) {
        float v[V];
        load_vec<T>(x + start, a.cols - start, a.aligned, -INFINITY, v);
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float z = __fmul_rn(v[k], a.scale);
            v[k] = a.log_out ? (z - max) - log_sum : expf(z - max) * inv;
            if (sum != sum) v[k] = NAN;
        }
        store_vec<T>(y + start, a.cols - start, a.aligned, v);
    }
}

} // namespace tk

// ---- instantiation list: (dtype name, C type) x kernel shape ----
// Names say the launch geometry: rows<threads per row>x<elements per thread>,
// stream<threads per row>. The host table in src/cuda/softmax.rs lists the
// same shapes and resolves every name when the context loads the module.
#define TK_SOFTMAX_WARP(dt, T, ITEMS)                                                              \
    extern "C" __global__ void __launch_bounds__(128)                                               \
        tk_softmax_##dt##_cuda_rows32x##ITEMS(const T *x, T *y, tk::SoftmaxArgs a) {                \
        tk::softmax_warp<T, ITEMS, 4>(x, y, a);                                                     \
    }
#define TK_SOFTMAX_BLOCK(dt, T, GROUP, ITEMS)                                                      \
    extern "C" __global__ void __launch_bounds__(GROUP)                                             \
        tk_softmax_##dt##_cuda_rows##GROUP##x##ITEMS(const T *x, T *y, tk::SoftmaxArgs a) {         \
        tk::softmax_block<T, GROUP, ITEMS>(x, y, a);                                                \
    }
#define TK_SOFTMAX_STREAM(dt, T, GROUP)                                                            \
    extern "C" __global__ void __launch_bounds__(GROUP)                                             \
        tk_softmax_##dt##_cuda_stream##GROUP(const T *x, T *y, tk::SoftmaxArgs a) {                 \
        tk::softmax_stream<T, GROUP>(x, y, a);                                                      \
    }
#define TK_SOFTMAX_ALL(dt, T)                                                                      \
    TK_SOFTMAX_WARP(dt, T, 8)                                                                      \
    TK_SOFTMAX_WARP(dt, T, 16)                                                                     \
    TK_SOFTMAX_WARP(dt, T, 32)                                                                     \
    TK_SOFTMAX_BLOCK(dt, T, 256, 8)                                                                \
    TK_SOFTMAX_BLOCK(dt, T, 256, 16)                                                               \
    TK_SOFTMAX_BLOCK(dt, T, 512, 16)                                                               \
    TK_SOFTMAX_BLOCK(dt, T, 1024, 16)                                                              \
    TK_SOFTMAX_BLOCK(dt, T, 1024, 32)                                                              \
    TK_SOFTMAX_STREAM(dt, T, 1024)

TK_SOFTMAX_ALL(f32, float)
TK_SOFTMAX_ALL(f16, __half)
TK_SOFTMAX_ALL(bf16, __nv_bfloat16)
