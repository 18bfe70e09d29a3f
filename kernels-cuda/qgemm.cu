// LLM.int8() on CUDA: the activation side (outlier columns, per-row int8
// quantization, outlier gather) and the int8 tensor-core GEMM with its fused
// epilogue. The semantics are the CPU's (tk_qgemm_quant_params and
// tk_qgemm_params in kernels-cpu/include/tk.h): the same f32 quantization
// (q = rint(x * fl(127 / max)), bit for bit), the exact int32 product, the
// f32 epilogue y = acc (sx sw) + sum_o xo wo + bias.
//
// Device layouts (src/cuda/qgemm.rs): q [m_pad, k_pad] and W [n_pad, k_pad]
// signed int8 row-major (k_pad a multiple of 64, m_pad and n_pad of 128,
// padding zero); xo [m_pad, cap] f32 and wo [cap, n_pad] f32, cap the
// workspace's outlier capacity; the outlier count lives on the device, so a
// call needs no host synchronisation. A count above cap (dynamic mode) makes
// every output NaN; the host reads the count to report it.
#include "common.cuh"
#include "ptx.cuh"
#include "qgemm.cuh"

namespace tk {

// ------------------------------------------------------------ activation side

// colmax[c] = max over rows of |x[r][c]| as f32 bits (non-negative floats
// order as unsigned integers, and a NaN's bits exceed inf's), by atomicMax.
// colmax must be zeroed first. Block: COLMAX_WARPS warps over the rows of its
// chunk, lane l over columns c0 + l VEC .. + VEC (one 128-bit load a row
// where the rows are 16-byte aligned, else element by element); the warps'
// maxima meet in shared memory, one atomic per column and block.
// Grid: (ceil(k / (32 VEC)), ceil(m / rows_per_block)).
constexpr int COLMAX_WARPS = 8;
template <typename T>
__device__ void qgemm_colmax(const T *x, int m, int k, int rows_per_block, unsigned int *colmax) {
    constexpr int V = Io<T>::VEC;
    __shared__ unsigned int part[COLMAX_WARPS][32 * V];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, c0 = blockIdx.x * 32 * V;
    const int c = c0 + lane * V;
    const int r0 = blockIdx.y * rows_per_block, r1 = min(m, r0 + rows_per_block);
    const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && k % V == 0;
    unsigned int best[V];
#pragma unroll
    for (int e = 0; e < V; e++) best[e] = 0;
    if (c < k) {
#pragma unroll 4
        for (int r = r0 + warp; r < r1; r += COLMAX_WARPS) {
            const Pack<T> pk = load_pack(x + (size_t)r * k + c, k - c, aligned, Io<T>::store(0.0f));
#pragma unroll
            for (int e = 0; e < V; e++) best[e] = max(best[e], __float_as_uint(fabsf(Io<T>::load(pk.elems[e]))));
        }
    }
#pragma unroll
    for (int e = 0; e < V; e++) part[warp][lane * V + e] = best[e];
    __syncthreads();
    for (int j = threadIdx.x; j < 32 * V; j += blockDim.x) {
        unsigned int b = 0;
#pragma unroll
        for (int w = 0; w < COLMAX_WARPS; w++) b = max(b, part[w][j]);
        if (b && c0 + j < k) atomicMax(colmax + c0 + j, b);
    }
}

// One block of 1024 threads: the columns with !(colmax < threshold) in
// ascending order into cols (the first cap of them), their count (may
// exceed cap), and the per-column mask the quantizer reads.
__device__ void qgemm_select(const unsigned int *colmax, int k, float threshold, int cap, unsigned int *cols,
                             unsigned int *count, unsigned char *mask) {
    __shared__ unsigned int warp_counts[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    unsigned int base = 0;
    for (int c0 = 0; c0 < k; c0 += 1024) {
        const int c = c0 + threadIdx.x;
        const bool out = c < k && !(__uint_as_float(colmax[c]) < threshold);
        if (c < k) mask[c] = out;
        const unsigned int ballot = __ballot_sync(0xffffffffu, out);
        if (lane == 0) warp_counts[warp] = __popc(ballot);
        __syncthreads();
        unsigned int before = base;
        for (int w = 0; w < warp; w++) before += warp_counts[w];
        before += __popc(ballot & ((1u << lane) - 1));
        if (out && before < (unsigned int)cap) cols[before] = c;
        for (int w = 0; w < 32; w++) base += warp_counts[w];
        __syncthreads(); // warp_counts is rewritten by the next chunk
    }
    if (threadIdx.x == 0) *count = base;
}

struct QuantArgs {
    const void *x;              // [m, k], dtype T
    const unsigned char *mask;  // [k]: 1 for an outlier column
    const unsigned int *cols;   // the outlier columns, ascending
    const unsigned int *count;  // how many (on the device)
    signed char *q;             // [m_pad, k_pad]
    float *scale;               // [m_pad]
    float *xo;                  // [m_pad, cap]
    int m, k, k_pad, cap;
};

constexpr int QUANT_THREADS = 256;

// V bytes as one access: the mask bytes and q values of VEC columns.
template <int V> struct ByteWord;
template <> struct ByteWord<8> { using type = uint2; };
template <> struct ByteWord<4> { using type = unsigned int; };
template <int V> union Bytes {
    typename ByteWord<V>::type raw;
    unsigned char b[V];
};

// V mask bytes at m (n of them valid, the rest read 1: not quantized), one
// load when `aligned` (m V-byte aligned) and n == V.
template <int V> __device__ __forceinline__ Bytes<V> load_mask(const unsigned char *m, int n, bool aligned) {
    Bytes<V> u;
    if (aligned && n == V) {
        u.raw = *reinterpret_cast<const typename ByteWord<V>::type *>(m);
    } else {
#pragma unroll
        for (int e = 0; e < V; e++) u.b[e] = e < n ? m[e] : 1;
    }
    return u;
}

// A block per row of q (rows m..m_pad write zeros): max|x| over the
// non-outlier columns, then q = rint(x * fl(127 / max)) as the CPU rounds it;
// a row holding NaN or inf there gets scale NaN and q 0, a zero row scale 0.
// A thread takes VEC consecutive columns at a time (a 128-bit load of x
// where its row is 16-byte aligned, one load of the mask, one store of q);
// the second sweep reads the row again from L1/L2.
template <typename T> __device__ void qgemm_quantize(const QuantArgs &a) {
    constexpr int V = Io<T>::VEC;
    const int r = blockIdx.x;
    const T *x = static_cast<const T *>(a.x) + (size_t)r * a.k;
    signed char *q = a.q + (size_t)r * a.k_pad;
    const bool live = r < a.m;
    const bool x_aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0;
    const bool m_aligned = reinterpret_cast<uintptr_t>(a.mask) % 16 == 0;
    float amax = 0.0f;
    bool bad = false;
    if (live)
        for (int c = threadIdx.x * V; c < a.k; c += QUANT_THREADS * V) {
            const int n = min(V, a.k - c);
            float v[V];
            load_vec(x + c, n, x_aligned, 0.0f, v);
            const Bytes<V> skip = load_mask<V>(a.mask + c, n, m_aligned);
#pragma unroll
            for (int e = 0; e < V; e++) {
                if (skip.b[e]) continue;
                const float av = fabsf(v[e]);
                bad |= !(av <= 3.402823466e38f);
                amax = fmaxf(amax, av);
            }
        }
    amax = GroupReduce<QUANT_THREADS>::max(amax);
    const bool any_bad = __syncthreads_or(bad);
    const bool zero = !live || any_bad || amax == 0.0f;
    const float inv = zero ? 0.0f : __fdiv_rn(127.0f, amax);
    if (threadIdx.x == 0) a.scale[r] = !live ? 0.0f : any_bad ? NAN : amax == 0.0f ? 0.0f : __fdiv_rn(amax, 127.0f);
    // k_pad is a multiple of 64: whole VEC-column chunks, those past k padding
    for (int c = threadIdx.x * V; c < a.k_pad; c += QUANT_THREADS * V) {
        const int n = zero ? 0 : max(0, min(V, a.k - c));
        Bytes<V> out;
#pragma unroll
        for (int e = 0; e < V; e++) out.b[e] = 0;
        if (n > 0) {
            float v[V];
            load_vec(x + c, n, x_aligned, 0.0f, v);
            const Bytes<V> skip = load_mask<V>(a.mask + c, n, m_aligned);
#pragma unroll
            for (int e = 0; e < V; e++)
                if (!skip.b[e])
                    out.b[e] = (unsigned char)__float2int_rn(fminf(fmaxf(__fmul_rn(v[e], inv), -127.0f), 127.0f));
        }
        *reinterpret_cast<typename ByteWord<V>::type *>(q + c) = out.raw;
    }
    const int n_out = min(*a.count, (unsigned int)a.cap);
    for (int o = threadIdx.x; o < n_out; o += QUANT_THREADS)
        a.xo[(size_t)r * a.cap + o] = live ? Io<T>::load(x[a.cols[o]]) : 0.0f;
}

// wo[o][j] = W[j][cols[o]] widened to f32 from W transposed ([k, n], dtype
// T), for the o < min(count, cap). Grid: (ceil(n / 256), cap).
template <typename T>
__device__ void qgemm_gather_wo(const T *wt, const unsigned int *cols, const unsigned int *count, int cap, int n,
                                int n_pad, float *wo) {
    const int o = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= min(*count, (unsigned int)cap) || j >= n) return;
    wo[(size_t)o * n_pad + j] = Io<T>::load(wt[(size_t)cols[o] * n + j]);
}

// ------------------------------------------------------------ int8 GEMM

// Block tile 128 x 128, k steps of 64 bytes through a 4-stage cp.async ring;
// 8 warps as 2 (m) x 4 (n), each 64 x 32 outputs = 4 x 4 mma.m16n8k32 tiles.
constexpr int GM_BM = 128, GM_BN = 128, GM_BK = 64, GM_STAGES = 4, GM_THREADS = 256;
constexpr int GM_STAGE_BYTES = (GM_BM + GM_BN) * GM_BK;
constexpr int GM_SMEM = GM_STAGES * GM_STAGE_BYTES;
constexpr int GM_OUT_CHUNK = 32; // outlier columns staged per epilogue round
static_assert(GM_SMEM == 64 * 1024, "src/cuda/qgemm.rs (GEMM_SMEM) asks for this much dynamic shared memory");

// Byte offset of 16-byte chunk `chunk` (0..3) of tile row `row`: the chunk
// index is XORed with bits 1..2 of the row, so the 8 rows one ldmatrix reads
// at one logical chunk fall in 8 distinct 4-bank groups.
__device__ __forceinline__ int gm_swizzle(int row, int chunk) { return row * GM_BK + ((chunk ^ ((row >> 1) & 3)) << 4); }


// Stage `s` <- k tile `kt` of the block's A rows and W rows (2 + 2 chunks a thread).
__device__ __forceinline__ void gm_load_stage(const GemmArgs &g, unsigned int smem, int s, int kt, int bm, int bn) {
    const unsigned int sa = smem + s * GM_STAGE_BYTES, sb = sa + GM_BM * GM_BK;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int idx = threadIdx.x + i * GM_THREADS, row = idx / 4, chunk = idx % 4;
        const size_t col = (size_t)kt * GM_BK + chunk * 16;
        cp_async16(sa + gm_swizzle(row, chunk), g.a + (size_t)(bm + row) * g.k_pad + col);
        cp_async16(sb + gm_swizzle(row, chunk), g.w + (size_t)(bn + row) * g.k_pad + col);
    }
}

// f(mi, ni, e, row, col) for every accumulator of the warp's 64 x 32 tile:
// accumulator e of mma tile (mi, ni) sits at row 16 mi + lane / 4 + 8 (e / 2),
// column 8 ni + 2 (lane % 4) + e % 2 (relative to the warp's corner).
template <typename F> __device__ __forceinline__ void gm_each_acc(int lane, F f) {
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
#pragma unroll
            for (int e = 0; e < 4; e++) f(mi, ni, e, 16 * mi + lane / 4 + 8 * (e / 2), 8 * ni + 2 * (lane % 4) + e % 2);
}

__device__ void qgemm_s8(const GemmArgs &g) {
    TK_DYNAMIC_SMEM(unsigned char, gm_smem);
    const unsigned int smem = (unsigned int)__cvta_generic_to_shared(gm_smem);
    const int bm = blockIdx.y * GM_BM, bn = blockIdx.x * GM_BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    const int ktiles = g.k_pad / GM_BK;

    int acc[4][4][4];
    gm_each_acc(lane, [&](int mi, int ni, int e, int, int) { acc[mi][ni][e] = 0; });

#pragma unroll
    for (int s = 0; s < GM_STAGES - 1; s++) {
        if (s < ktiles) gm_load_stage(g, smem, s, s, bm, bn);
        cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        cp_async_wait<GM_STAGES - 2>();
        __syncthreads(); // tile kt landed for every thread; stage (kt - 1) % STAGES is free
        const int next = kt + GM_STAGES - 1;
        if (next < ktiles) gm_load_stage(g, smem, next % GM_STAGES, next, bm, bn);
        cp_async_commit();
        const unsigned int sa = smem + (kt % GM_STAGES) * GM_STAGE_BYTES, sb = sa + GM_BM * GM_BK;
#pragma unroll
        for (int kk = 0; kk < 2; kk++) { // two k32 steps per 64-byte tile
            unsigned int af[4][4], bf[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) // matrices: rows 0-7 / 8-15 x k 0-15 / 16-31
                ldmatrix_x4(sa + gm_swizzle(wm + mi * 16 + lane % 16, kk * 2 + lane / 16), af[mi]);
#pragma unroll
            for (int np = 0; np < 2; np++) { // matrices: channels 0-7 k 0-15, 0-7 k 16-31, 8-15 k 0-15, 8-15 k 16-31
                unsigned int r[4];
                ldmatrix_x4(sb + gm_swizzle(wn + np * 16 + (lane / 16) * 8 + lane % 8, kk * 2 + (lane / 8) % 2), r);
                bf[2 * np][0] = r[0];
                bf[2 * np][1] = r[1];
                bf[2 * np + 1][0] = r[2];
                bf[2 * np + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_s8(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
        }
    }
    cp_async_wait<0>();
    __syncthreads(); // the ring is reused for the outlier tiles

    if (g.acc) {
        gm_each_acc(lane, [&](int mi, int ni, int e, int r, int c) {
            const int i = bm + wm + r, j = bn + wn + c;
            if (i < g.m && j < g.n) g.acc[(size_t)i * g.n + j] = acc[mi][ni][e];
        });
        return;
    }
    float v[4][4][4];
    gm_each_acc(lane, [&](int mi, int ni, int e, int r, int c) {
        const int i = bm + wm + r, j = bn + wn + c;
        v[mi][ni][e] = __fmul_rn((float)acc[mi][ni][e], __fmul_rn(g.a_scale[i], g.w_scale[j]));
    });
    // Outlier product: 32 columns at a time, xo [128][33] and wo [32][128] in the ring.
    const unsigned int count = *g.count;
    const int n_out = min(count, (unsigned int)g.cap);
    float *xs = reinterpret_cast<float *>(gm_smem);
    float *ws = xs + GM_BM * (GM_OUT_CHUNK + 1);
    for (int o0 = 0; o0 < n_out; o0 += GM_OUT_CHUNK) {
        const int chunk = min(GM_OUT_CHUNK, n_out - o0);
        for (int t = threadIdx.x; t < GM_BM * GM_OUT_CHUNK; t += GM_THREADS) {
            const int r = t / GM_OUT_CHUNK, c = t % GM_OUT_CHUNK;
            xs[r * (GM_OUT_CHUNK + 1) + c] = c < chunk ? g.xo[(size_t)(bm + r) * g.cap + o0 + c] : 0.0f;
            const int cc = t / GM_BN, jj = t % GM_BN;
            ws[cc * GM_BN + jj] = cc < chunk ? g.wo[(size_t)(o0 + cc) * g.n_pad + bn + jj] : 0.0f;
        }
        __syncthreads();
        for (int o = 0; o < chunk; o++)
            gm_each_acc(lane, [&](int mi, int ni, int e, int r, int c) {
                v[mi][ni][e] = fmaf(xs[(wm + r) * (GM_OUT_CHUNK + 1) + o], ws[o * GM_BN + wn + c], v[mi][ni][e]);
            });
        __syncthreads();
    }
    const bool overflow = count > (unsigned int)g.cap;
    gm_each_acc(lane, [&](int mi, int ni, int e, int r, int c) {
        const int i = bm + wm + r, j = bn + wn + c;
        if (i >= g.m || j >= g.n) return;
        float y = v[mi][ni][e];
        if (g.bias) y += g.bias[j];
        gm_store(g, i, j, overflow ? NAN : y);
    });
}

} // namespace tk

#define TK_QGEMM_ACTIVATION(dt, T)                                                                            \
    extern "C" __global__ void __launch_bounds__(256) tk_qgemm_colmax_##dt##_cuda(                            \
        const T *x, int m, int k, int rows_per_block, unsigned int *colmax) {                                 \
        tk::qgemm_colmax<T>(x, m, k, rows_per_block, colmax);                                                 \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(tk::QUANT_THREADS) tk_qgemm_quantize_##dt##_cuda(tk::QuantArgs a) { \
        tk::qgemm_quantize<T>(a);                                                                             \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(256) tk_qgemm_gather_wo_##dt##_cuda(                         \
        const T *wt, const unsigned int *cols, const unsigned int *count, int cap, int n, int n_pad, float *wo) { \
        tk::qgemm_gather_wo<T>(wt, cols, count, cap, n, n_pad, wo);                                           \
    }
TK_QGEMM_ACTIVATION(f32, float)
TK_QGEMM_ACTIVATION(f16, __half)
TK_QGEMM_ACTIVATION(bf16, __nv_bfloat16)

extern "C" __global__ void __launch_bounds__(1024) tk_qgemm_select_cuda(const unsigned int *colmax, int k,
                                                                        float threshold, int cap, unsigned int *cols,
                                                                        unsigned int *count, unsigned char *mask) {
    tk::qgemm_select(colmax, k, threshold, cap, cols, count, mask);
}

extern "C" __global__ void __launch_bounds__(tk::GM_THREADS) tk_qgemm_s8_cuda(tk::GemmArgs g) { tk::qgemm_s8(g); }
