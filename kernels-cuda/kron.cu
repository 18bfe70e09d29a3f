// Kronecker-factored transforms fused with per-token quantization (FlatQuant):
// the semantics of tk_kron_params in kernels-cpu/include/tk.h, on CUDA. A
// block per token (grid-stride over tokens): the token in shared memory as an
// f32 n1 x n2 matrix, the right factor (X P2, or Hadamard along the rows),
// then the left one (P1^T Z, or Hadamard across the rows), then the epilogue:
// y, and/or max|y| by a block reduction and the quantized values (int4
// packed two per byte, the even element in the low nibble). Dense factors are
// read from global memory (L1/L2-resident: every block reads the same ones).
// Arithmetic in f32 with the quantization rounded exactly as the CPU kernels
// (__fmul_rn / __fdiv_rn: no contraction).
#pragma once

#include "common.cuh"

namespace tk {

struct KronArgs {
    const void *x;
    void *y;
    void *q;
    float *q_scale;
    const float *smooth;
    const float *left;  // P1^T, n1 x n1 row-major; null: Hadamard
    const float *right; // P2, n2 x n2 row-major; null: Hadamard
    long long tokens;
    long long q_stride; // bytes per token
    int n1;
    int n2;
    int q_bits; // 8 or 4 (with q)
    float out_scale;
    float clip;
};

constexpr int KRON_THREADS = 256;

// Unnormalised Walsh-Hadamard stages on s (an n-element rows x len matrix):
// along each row (order len, stride 1) or across the rows (order = rows,
// stride len). Each thread takes pairs: pair k of a line sits at
// (k / h) 2h + k % h and its partner h further. The orders are powers of two,
// so the index arithmetic is shifts and masks (a run-time division per pair
// was most of the work); only a row length that is not a power of two (a
// dense factor beside a Hadamard one across the rows) divides.
__device__ __forceinline__ void kron_fwht(float *s, int n, int len, bool across) {
    const int order = across ? n / len : len;
    if (order < 2) return;
    const int half = order / 2, lg_half = __ffs(half) - 1; // pairs per line
    const bool len_pow2 = (len & (len - 1)) == 0;
    const int lg_len = __ffs(len) - 1;
    for (int h = 1, lg_h = 0; h < order; h <<= 1, lg_h++) {
        for (int p = threadIdx.x; p < n / 2; p += blockDim.x) {
            int line, k; // column and pair (across), or row and pair (along)
            if (!across) {
                line = p >> lg_half;
                k = p & (half - 1);
            } else if (len_pow2) {
                line = p & (len - 1);
                k = p >> lg_len;
            } else {
                line = p % len;
                k = p / len;
            }
            const int i = ((k >> lg_h) << (lg_h + 1)) + (k & (h - 1));
            const int e = across ? i * len + line : line * len + i;
            const int f = e + (across ? h * len : h);
            const float a = s[e], b = s[f];
            s[e] = a + b;
            s[f] = a - b;
        }
        __syncthreads();
    }
}

// out (n1 x n2) = right: in P2; left: P1^T in, TR x TC outputs a thread
// (n1 % TR == 0, n2 % TC == 0; TC = 4 needs the factor 16-byte aligned): per
// step of the sum, TR scalar loads and one TC-wide load feed TR TC FMAs. Each
// output is the same chain of FMAs in the same order whatever the tiling (the
// same bits); TR = TC = 1 is the fallback, two loads per FMA.
template <int TR, int TC, bool LEFT>
__device__ __forceinline__ void kron_dense_tiled(const float *in, float *out, const float *__restrict__ f, int n1,
                                                 int n2) {
    static_assert(TC == 1 || TC == 4, "a scalar or a float4 per step");
    auto load = [](const float *p, bool ldg, float (&b)[TC]) {
        if constexpr (TC == 4) {
            const float4 v = ldg ? __ldg(reinterpret_cast<const float4 *>(p)) : *reinterpret_cast<const float4 *>(p);
            b[0] = v.x, b[1] = v.y, b[2] = v.z, b[3] = v.w;
        } else {
            b[0] = ldg ? __ldg(p) : *p;
        }
    };
    const int col_tiles = n2 / TC, tiles = n1 / TR * col_tiles;
    for (int tile = threadIdx.x; tile < tiles; tile += blockDim.x) {
        const int r0 = tile / col_tiles * TR, c0 = tile % col_tiles * TC;
        float acc[TR][TC] = {};
        const int steps = LEFT ? n1 : n2;
        for (int i = 0; i < steps; i++) {
            float b[TC];
            // left: row i of in against column i of P1^T's rows; right: row i of P2
            load(LEFT ? in + i * n2 + c0 : f + i * n2 + c0, !LEFT, b);
#pragma unroll
            for (int r = 0; r < TR; r++) {
                const float av = LEFT ? __ldg(f + (r0 + r) * n1 + i) : in[(r0 + r) * n2 + i];
#pragma unroll
                for (int c = 0; c < TC; c++) acc[r][c] = fmaf(av, b[c], acc[r][c]);
            }
        }
#pragma unroll
        for (int r = 0; r < TR; r++) {
            float *o = out + (r0 + r) * n2 + c0;
            if constexpr (TC == 4)
                *reinterpret_cast<float4 *>(o) = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
            else
                o[0] = acc[r][0];
        }
    }
    __syncthreads();
}

// The widest tiling the shape allows, else one output at a time.
template <bool LEFT>
__device__ __forceinline__ void kron_product(const float *in, float *out, const float *__restrict__ f, int n1, int n2) {
    const bool vec = n2 % 4 == 0 && (reinterpret_cast<uintptr_t>(f) & 15) == 0;
    if (vec && n1 % 4 == 0)
        kron_dense_tiled<4, 4, LEFT>(in, out, f, n1, n2);
    else if (vec && n1 % 2 == 0)
        kron_dense_tiled<2, 4, LEFT>(in, out, f, n1, n2);
    else
        kron_dense_tiled<1, 1, LEFT>(in, out, f, n1, n2);
}

template <typename T> __device__ void kron_token(const KronArgs &a, long long t, float *s0, float *s1) {
    const int n1 = a.n1, n2 = a.n2, n = n1 * n2;
    const T *x = static_cast<const T *>(a.x) + t * n;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        const float v = Io<T>::load(x[e]);
        s0[e] = a.smooth ? __fmul_rn(v, __ldg(a.smooth + e)) : v;
    }
    __syncthreads();
    float *cur = s0, *other = s1;
    if (a.right) {
        kron_product<false>(cur, other, a.right, n1, n2);
        float *tmp = cur;
        cur = other;
        other = tmp;
    } else {
        kron_fwht(cur, n, n2, false);
    }
    if (a.left) {
        kron_product<true>(cur, other, a.left, n1, n2);
        cur = other;
    } else {
        kron_fwht(cur, n, n2, true);
    }
    float amax = 0.0f;
    bool bad = false;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        const float v = __fmul_rn(cur[e], a.out_scale);
        if (a.y) static_cast<T *>(a.y)[t * n + e] = Io<T>::store(v);
        amax = fmaxf(amax, fabsf(v));
        bad |= !isfinite(v);
    }
    if (!a.q) {
        __syncthreads(); // cur is reused by the next token
        return;
    }
    amax = GroupReduce<KRON_THREADS>::max(amax);
    const bool any_bad = __syncthreads_or(bad);
    const float qmax = a.q_bits == 4 ? 7.0f : 127.0f;
    if (threadIdx.x == 0) a.q_scale[t] = any_bad ? NAN : __fdiv_rn(__fmul_rn(a.clip, amax), qmax);
    const float inv = any_bad || amax == 0.0f ? 0.0f : __fdiv_rn(qmax, __fmul_rn(a.clip, amax));
    auto quant = [&](int e) -> int {
        if (e >= n || inv == 0.0f) return 0;
        const float v = __fmul_rn(__fmul_rn(cur[e], a.out_scale), inv);
        return __float2int_rn(fminf(fmaxf(v, -qmax), qmax));
    };
    char *q = static_cast<char *>(a.q) + t * a.q_stride;
    if (a.q_bits == 8) {
        for (int e = threadIdx.x; e < n; e += blockDim.x) q[e] = (char)quant(e);
    } else {
        for (int b = threadIdx.x; b < (n + 1) / 2; b += blockDim.x)
            q[b] = (char)((quant(2 * b) & 15) | ((quant(2 * b + 1) & 15) << 4));
    }
    __syncthreads();
}

} // namespace tk

#define TK_KRON_KERNEL(dt, T)                                                                        \
    extern "C" __global__ void __launch_bounds__(tk::KRON_THREADS) tk_kron_##dt##_cuda(tk::KronArgs a) { \
        TK_DYNAMIC_SMEM(float, kron_smem);                                                           \
        float *s0 = kron_smem, *s1 = kron_smem + a.n1 * a.n2;                                        \
        for (long long t = blockIdx.x; t < a.tokens; t += gridDim.x) tk::kron_token<T>(a, t, s0, s1);  \
    }
TK_KRON_KERNEL(f32, float)
TK_KRON_KERNEL(f16, __half)
TK_KRON_KERNEL(bf16, __nv_bfloat16)
