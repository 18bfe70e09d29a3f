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
// (k / h) 2h + k % h and its partner h further.
__device__ __forceinline__ void kron_fwht(float *s, int n, int len, bool across) {
    const int order = across ? n / len : len;
    const int half = order / 2; // pairs per line
    for (int h = 1; h < order; h <<= 1) {
        for (int p = threadIdx.x; p < n / 2; p += blockDim.x) {
            const int line = across ? p % len : p / half; // column, or row
            const int k = across ? p / len : p % half;
            const int i = (k / h) * 2 * h + k % h;
            const int e = across ? i * len + line : line * len + i;
            const int f = e + (across ? h * len : h);
            const float a = s[e], b = s[f];
            s[e] = a + b;
            s[f] = a - b;
        }
        __syncthreads();
    }
}

// out (n1 x n2) = right: in P2; left: P1^T in. Each thread sums one output at a time.
__device__ __forceinline__ void kron_dense(const float *in, float *out, const float *__restrict__ f, int n1, int n2,
                                           bool left) {
    const int n = n1 * n2;
    for (int e = threadIdx.x; e < n; e += blockDim.x) {
        const int r = e / n2, c = e % n2;
        float acc = 0.0f;
        if (left)
            for (int i = 0; i < n1; i++) acc = fmaf(__ldg(f + r * n1 + i), in[i * n2 + c], acc);
        else
            for (int j = 0; j < n2; j++) acc = fmaf(in[r * n2 + j], __ldg(f + j * n2 + c), acc);
        out[e] = acc;
    }
    __syncthreads();
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
        kron_dense(cur, other, a.right, n1, n2, false);
        float *tmp = cur;
        cur = other;
        other = tmp;
    } else {
        kron_fwht(cur, n, n2, false);
    }
    if (a.left) {
        kron_dense(cur, other, a.left, n1, n2, true);
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
        extern __shared__ float kron_smem[];                                                         \
        float *s0 = kron_smem, *s1 = kron_smem + a.n1 * a.n2;                                        \
        for (long long t = blockIdx.x; t < a.tokens; t += gridDim.x) tk::kron_token<T>(a, t, s0, s1);  \
    }
TK_KRON_KERNEL(f32, float)
TK_KRON_KERNEL(f16, __half)
TK_KRON_KERNEL(bf16, __nv_bfloat16)
