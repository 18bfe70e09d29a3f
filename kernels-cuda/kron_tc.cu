// The Kronecker transform + quantization of kron.cu for 16-bit tokens on the
// tensor cores. A block keeps both factors in shared memory in the token
// dtype (dense entries rounded once; a Hadamard factor as its +-1 entries,
// exact) and walks tokens (grid-stride): X (n1 x n2, smoothed and rounded to
// T) in shared memory, Z = X P2 by mma.sync into registers, rounded to T and
// stored transposed, Y = P1^T Z by mma.sync; the epilogue scales Y, writes y
// and quantizes straight from the accumulators, with max|y| reduced over the
// block. The next token's X is loaded into registers while this one's
// products run. Orders are padded with zeros to multiples of 16.
//
// Work split: output tile items of 16 rows x 64 columns, item i of warp w is
// w + i * warps (at most 2 per warp, so Y stays in registers: the host
// launches enough warps). Needs n2 % 8 == 0 (whole 16-byte vectors per row).
// Accuracy: the CPU bound plus 4 u_io of the magnitude (the factors, the
// smoothed x and Z are rounded to the I/O dtype once each).
#pragma once

#include "kron.cu"
#include "ptx.cuh"

namespace tk {

constexpr int KTC_MAX_VECS = 8; // 16-byte vectors of X a thread prefetches

__host__ __device__ inline int ktc_pad(int n) { return (n + 15) / 16 * 16; }
// Shared memory, in bytes: 64 floats of reduction scratch, then P1^T (n1p rows
// of n1p + 8), P2^T (n2p rows of n2p + 8), X (n1p rows of n2p + 8) and Z^T
// (n2p rows of n1p + 8), all in the 16-bit dtype.
__host__ __device__ inline size_t ktc_smem_bytes(int n1, int n2) {
    const size_t a = ktc_pad(n1), b = ktc_pad(n2);
    return 64 * 4 + 2 * (a * (a + 8) + b * (b + 8) + a * (b + 8) + b * (a + 8));
}
// Output tile items (16 x 64) of one token.
__host__ __device__ inline int ktc_items(int n1, int n2) { return ktc_pad(n1) / 16 * ((ktc_pad(n2) + 63) / 64); }

__device__ __forceinline__ float ktc_hadamard(int i, int j) { return __popc(i & j) & 1 ? -1.0f : 1.0f; }

// out[m][nt] = sum_k A(m0 + m, k) B(k, c0 + nt * 8 + n) for this warp's 16 x
// 64 item: A row-major (lda), B given as B^T row-major (ldb, rows = columns
// of B); K a multiple of 16; nts column tiles of 8.
template <typename T>
__device__ __forceinline__ void ktc_product(float (&acc)[8][4], const T *A, int lda, const T *Bt, int ldb, int K,
                                            int m0, int c0, int nts) {
    const int lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += 16) {
        const T *a0 = A + (m0 + g) * lda + k0 + 2 * tq, *a1 = a0 + 8 * lda;
        const uint32_t af[4] = {ld32(a0), ld32(a1), ld32(a0 + 8), ld32(a1 + 8)};
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
            if (nt < nts) {
                const T *b = Bt + (c0 + nt * 8 + g) * ldb + k0 + 2 * tq;
                const uint32_t bf[2] = {ld32(b), ld32(b + 8)};
                Mma<T>::run(acc[nt], af, bf);
            }
    }
}

template <typename T> __device__ void kron_tc(const KronArgs &a) {
    TK_DYNAMIC_SMEM(float, smem);
    const int n1 = a.n1, n2 = a.n2, n = n1 * n2, n1p = ktc_pad(n1), n2p = ktc_pad(n2);
    const int ld1 = n1p + 8, ld2 = n2p + 8;
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    float *red = smem; // [0, 32): max per warp, [32, 64): non-finite flags
    T *p1 = reinterpret_cast<T *>(smem + 64), *p2t = p1 + n1p * ld1, *xs = p2t + n2p * ld2, *zt = xs + n1p * ld2;

    // the factors, once per block; X's padding stays zero
    for (int e = threadIdx.x; e < n1p * n1p; e += blockDim.x) {
        const int r = e / n1p, i = e % n1p;
        const float v = r < n1 && i < n1 ? (a.left ? a.left[r * n1 + i] : ktc_hadamard(r, i)) : 0.0f;
        p1[r * ld1 + i] = Io<T>::store(v);
    }
    for (int e = threadIdx.x; e < n2p * n2p; e += blockDim.x) {
        const int c = e / n2p, j = e % n2p;
        const float v = c < n2 && j < n2 ? (a.right ? a.right[j * n2 + c] : ktc_hadamard(j, c)) : 0.0f;
        p2t[c * ld2 + j] = Io<T>::store(v);
    }
    for (int e = threadIdx.x; e < n1p * ld2; e += blockDim.x) xs[e] = Io<T>::store(0.0f);

    // X of token t as 16-byte vectors p = threadIdx.x + u * blockDim.x (row
    // p / (n2 / 8), columns from p % (n2 / 8) * 8)
    const int vecs = n / 8, per_row = n2 / 8;
    const bool aligned = (reinterpret_cast<uintptr_t>(a.x) & 15) == 0;
    uint4 raw[KTC_MAX_VECS];
    auto fetch = [&](long long t) {
        const T *x = static_cast<const T *>(a.x) + t * n;
#pragma unroll
        for (int u = 0; u < KTC_MAX_VECS; u++) {
            const int p = threadIdx.x + u * blockDim.x;
            if (p >= vecs) continue;
            if (aligned) {
                raw[u] = reinterpret_cast<const uint4 *>(x)[p];
            } else {
                Pack<T> pk;
#pragma unroll
                for (int k = 0; k < 8; k++) pk.elems[k] = x[p * 8 + k];
                raw[u] = pk.raw;
            }
        }
    };
    auto put = [&]() {
#pragma unroll
        for (int u = 0; u < KTC_MAX_VECS; u++) {
            const int p = threadIdx.x + u * blockDim.x;
            if (p >= vecs) continue;
            const int i = p / per_row, c = p % per_row * 8;
            Pack<T> pk;
            pk.raw = raw[u];
            if (a.smooth) {
#pragma unroll
                for (int k = 0; k < 8; k++)
                    pk.elems[k] = Io<T>::store(__fmul_rn(Io<T>::load(pk.elems[k]), __ldg(a.smooth + p * 8 + k)));
            }
            *reinterpret_cast<uint4 *>(xs + i * ld2 + c) = pk.raw;
        }
    };

    const int mts = n1p / 16, ncs = (n2p + 63) / 64, items = mts * ncs;
    // f(s, m0, c0, nts) for each item s of this warp (rows m0.., columns c0..,
    // nts column tiles of 8)
    auto each_item = [&](auto f) {
#pragma unroll
        for (int s = 0; s < 2; s++) {
            const int it = warp + s * warps;
            if (it >= items) continue;
            const int c0 = it % ncs * 64;
            f(s, it / ncs * 16, c0, min(8, (n2p - c0) / 8));
        }
    };
    // f(nt, e, row, col) for the item's accumulator pairs e = 0, 2: (row, col)
    // and (row, col + 1), col even
    auto each_pair = [&](int m0, int c0, int nts, auto f) {
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e += 2)
                if (nt < nts) f(nt, e, m0 + g + (e >= 2 ? 8 : 0), c0 + nt * 8 + 2 * tq);
    };
    const float qmax = a.q_bits == 4 ? 7.0f : 127.0f;
    if (blockIdx.x < a.tokens) fetch(blockIdx.x);
    for (long long t = blockIdx.x; t < a.tokens; t += gridDim.x) {
        __syncthreads(); // the factors and X's padding written; the last token's X read
        put();
        __syncthreads();
        if (t + gridDim.x < a.tokens) fetch(t + gridDim.x);

        // Z = X P2, stored as Z^T rounded to T
        float acc[2][8][4];
        each_item([&](int s, int m0, int c0, int nts) {
            ktc_product<T>(acc[s], xs, ld2, p2t, ld2, n2p, m0, c0, nts);
            each_pair(m0, c0, nts, [&](int nt, int e, int i, int c) {
                zt[c * ld1 + i] = Io<T>::store(acc[s][nt][e]);
                zt[(c + 1) * ld1 + i] = Io<T>::store(acc[s][nt][e + 1]);
            });
        });
        __syncthreads();

        // Y = P1^T Z, then the epilogue from the accumulators (n2 is even, so
        // a pair is both in the row or both past it)
        float amax = 0.0f;
        bool bad = false;
        T *y = a.y ? static_cast<T *>(a.y) + t * n : nullptr;
        each_item([&](int s, int m0, int c0, int nts) {
            ktc_product<T>(acc[s], p1, ld1, zt, ld1, n1p, m0, c0, nts);
            each_pair(m0, c0, nts, [&](int nt, int e, int r, int c) {
                if (r >= n1 || c >= n2) return;
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const float v = __fmul_rn(acc[s][nt][e + k], a.out_scale);
                    if (y) y[r * n2 + c + k] = Io<T>::store(v);
                    amax = fmaxf(amax, fabsf(v));
                    bad |= !isfinite(v);
                }
            });
        });
        if (!a.q) continue;
        amax = warp_max(amax);
        const float any_bad_warp = warp_max(bad ? 1.0f : 0.0f);
        if (lane == 0) red[warp] = amax, red[32 + warp] = any_bad_warp;
        __syncthreads();
        bool any_bad = false;
        amax = 0.0f;
        for (int w = 0; w < warps; w++) amax = fmaxf(amax, red[w]), any_bad |= red[32 + w] != 0.0f;
        if (threadIdx.x == 0) a.q_scale[t] = any_bad ? NAN : __fdiv_rn(__fmul_rn(a.clip, amax), qmax);
        const float inv = any_bad || amax == 0.0f ? 0.0f : __fdiv_rn(qmax, __fmul_rn(a.clip, amax));
        auto quant = [&](float acc_v) -> int {
            if (inv == 0.0f) return 0;
            const float v = __fmul_rn(__fmul_rn(acc_v, a.out_scale), inv);
            return __float2int_rn(fminf(fmaxf(v, -qmax), qmax));
        };
        char *q = static_cast<char *>(a.q) + t * a.q_stride;
        each_item([&](int s, int m0, int c0, int nts) {
            each_pair(m0, c0, nts, [&](int nt, int e, int r, int c) {
                if (r >= n1 || c >= n2) return;
                const int lo = quant(acc[s][nt][e]), hi = quant(acc[s][nt][e + 1]), at = r * n2 + c;
                if (a.q_bits == 8) {
                    q[at] = (char)lo;
                    q[at + 1] = (char)hi;
                } else {
                    q[at / 2] = (char)((lo & 15) | ((hi & 15) << 4)); // one int4 byte
                }
            });
        });
        // red is rewritten only after the next token's first barrier
    }
}

} // namespace tk

#define TK_KRON_TC_KERNEL(dt, T)                                                                     \
    extern "C" __global__ void __launch_bounds__(256) tk_kron_tc_##dt##_cuda(const __grid_constant__ tk::KronArgs a) { \
        tk::kron_tc<T>(a);                                                                           \
    }
TK_KRON_TC_KERNEL(f16, __half)
TK_KRON_TC_KERNEL(bf16, __nv_bfloat16)
