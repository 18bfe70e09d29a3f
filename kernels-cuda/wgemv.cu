// Weight-only quantized GEMV for decoding (tk_wgemv_params in
// kernels-cpu/include/tk.h, on CUDA): Y[m, n] = X[m, k] W[n, k]^T (+ bias)
// with W int8 or packed int4 (the even k in the low nibble) and one f32
// scale per (channel, group of k). Memory-bound: W is read once, 16 bytes a
// thread at a time with an evict-first hint; x (a few rows) stays in L1/L2.
//
// A block of 128 threads owns CH channels and every row of X (M, a template,
// bounds m): its threads split the 16-byte pieces of the CH rows of W, so a
// block streams CH rows at once and the grid has n / CH blocks to hide the
// latency. Each weight is dequantized once, w = fl(s q) (the CPU's
// scale-first order, so no overflow of x q where x s q is finite), and used
// by every row of X; partial sums are reduced per warp, then across the four
// warps in a fixed order (deterministic).
#include "common.cuh"

namespace tk {

struct WgemvArgs {
    const void *x;          // [m, k], dtype T
    const unsigned char *w; // [n, row_bytes]
    const float *w_scale;   // [n, k / group]
    const float *bias;      // [n] or null
    void *y;                // [m, n], dtype T
    int m;                  // rows of this launch, <= M
    int n;
    int k;     // a multiple of 32
    int group; // a multiple of 32 dividing k
    int aligned; // x 16-byte aligned (128-bit loads)
};

constexpr int WG_THREADS = 128;

// Channels per block: fewer for many rows (CH x M accumulators + CH x 16 weights in registers).
template <int M> struct WgemvTile {
    static constexpr int CH = M >= 8 ? 2 : 4;
};

__device__ __forceinline__ unsigned int wgemv_word(const uint4 &r, int i) {
    return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

// The 16 weights of piece half `h` (int4: 8 bytes of the 16; int8: all 16), dequantized.
template <int BITS>
__device__ __forceinline__ void wgemv_dequant(const uint4 &raw, int h, float s, float (&wd)[16]) {
    if (BITS == 8) {
#pragma unroll
        for (int e = 0; e < 16; e++) {
            const int q = (int)(signed char)(wgemv_word(raw, e / 4) >> (8 * (e % 4)));
            wd[e] = __fmul_rn(s, (float)q);
        }
    } else {
#pragma unroll
        for (int e = 0; e < 16; e++) {
            const unsigned int word = wgemv_word(raw, 2 * h + e / 8);
            const int q = ((int)(word << (28 - 4 * (e % 8)))) >> 28; // sign-extended nibble
            wd[e] = __fmul_rn(s, (float)q);
        }
    }
}

// 16 consecutive x widened to f32: 128-bit loads when aligned (bits moved by
// hand; a union here costs a stack slot on sm_80).
__device__ __forceinline__ float wgemv_widen(float v) { return v; }
__device__ __forceinline__ float wgemv_widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float wgemv_widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float wgemv_bits16(const __half *, unsigned int b) { return __half2float(__ushort_as_half((unsigned short)b)); }
__device__ __forceinline__ float wgemv_bits16(const __nv_bfloat16 *, unsigned int b) { return __uint_as_float(b << 16); }

template <typename T> __device__ __forceinline__ void wgemv_load_x(const T *p, bool aligned, float (&out)[16]) {
    if (!aligned) {
#pragma unroll
        for (int e = 0; e < 16; e++) out[e] = wgemv_widen(p[e]);
        return;
    }
    constexpr int PER = 16 / sizeof(T); // elements per 128-bit load
#pragma unroll
    for (int v = 0; v < 16 / PER; v++) {
        const uint4 r = reinterpret_cast<const uint4 *>(p)[v];
#pragma unroll
        for (int e = 0; e < PER; e++) {
            const unsigned int word = wgemv_word(r, sizeof(T) == 4 ? e : e / 2);
            if constexpr (sizeof(T) == 4)
                out[v * PER + e] = __uint_as_float(word);
            else
                out[v * PER + e] = wgemv_bits16(p, (word >> (16 * (e % 2))) & 0xffffu);
        }
    }
}

template <typename T, int BITS, int M> __device__ void wgemv(const WgemvArgs &a) {
    constexpr int CH = WgemvTile<M>::CH;
    constexpr int HALVES = BITS == 8 ? 1 : 2; // 16 weights each
    const int j0 = blockIdx.x * CH;
    const int row_bytes = BITS == 8 ? a.k : a.k / 2;
    const int pieces = row_bytes / 16;
    const int groups = a.k / a.group;
    const T *x = static_cast<const T *>(a.x);
    float acc[CH][M];
#pragma unroll
    for (int c = 0; c < CH; c++)
#pragma unroll
        for (int r = 0; r < M; r++) acc[c][r] = 0.0f;

    for (int p = threadIdx.x; p < pieces; p += WG_THREADS) {
        uint4 raw[CH];
#pragma unroll
        for (int c = 0; c < CH; c++)
            raw[c] = j0 + c < a.n ? __ldcs(reinterpret_cast<const uint4 *>(a.w + (size_t)(j0 + c) * row_bytes) + p)
                                  : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int h = 0; h < HALVES; h++) {
            const int k0 = p * (BITS == 8 ? 16 : 32) + 16 * h; // first k of these 16 weights
            float wd[CH][16];
#pragma unroll
            for (int c = 0; c < CH; c++) {
                const float s = j0 + c < a.n ? __ldg(a.w_scale + (size_t)(j0 + c) * groups + k0 / a.group) : 0.0f;
                wgemv_dequant<BITS>(raw[c], h, s, wd[c]);
            }
#pragma unroll
            for (int r = 0; r < M; r++) {
                if (r >= a.m) continue;
                float xv[16];
                wgemv_load_x(x + (size_t)r * a.k + k0, a.aligned, xv);
#pragma unroll
                for (int c = 0; c < CH; c++)
#pragma unroll
                    for (int e = 0; e < 16; e++) acc[c][r] = fmaf(xv[e], wd[c][e], acc[c][r]);
            }
        }
    }

    __shared__ float sums[WG_THREADS / 32][CH * M];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int c = 0; c < CH; c++)
#pragma unroll
        for (int r = 0; r < M; r++) {
            const float v = warp_sum(acc[c][r]);
            if (lane == 0) sums[warp][c * M + r] = v;
        }
    __syncthreads();
    for (int t = threadIdx.x; t < CH * M; t += WG_THREADS) {
        const int c = t / M, r = t % M, j = j0 + c;
        if (r >= a.m || j >= a.n) continue;
        float v = sums[0][t];
#pragma unroll
        for (int w = 1; w < WG_THREADS / 32; w++) v += sums[w][t];
        if (a.bias) v += a.bias[j];
        static_cast<T *>(a.y)[(size_t)r * a.n + j] = Io<T>::store(v);
    }
}

} // namespace tk

#define TK_WGEMV_KERNEL(dt, T, bits, M)                                                                   \
    extern "C" __global__ void __launch_bounds__(tk::WG_THREADS, 4) tk_wgemv_##dt##_w##bits##_cuda_m##M( \
        tk::WgemvArgs a) {                                                                                \
        tk::wgemv<T, bits, M>(a);                                                                         \
    }
#define TK_WGEMV_ROWS(dt, T, bits)                                                                        \
    TK_WGEMV_KERNEL(dt, T, bits, 1)                                                                       \
    TK_WGEMV_KERNEL(dt, T, bits, 2)                                                                       \
    TK_WGEMV_KERNEL(dt, T, bits, 4) TK_WGEMV_KERNEL(dt, T, bits, 8) TK_WGEMV_KERNEL(dt, T, bits, 16)
#define TK_WGEMV_BITS(dt, T) TK_WGEMV_ROWS(dt, T, 8) TK_WGEMV_ROWS(dt, T, 4)
TK_WGEMV_BITS(f32, float)
TK_WGEMV_BITS(f16, __half)
TK_WGEMV_BITS(bf16, __nv_bfloat16)
