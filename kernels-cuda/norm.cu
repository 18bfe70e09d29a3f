// Row-wise LayerNorm / RMSNorm / CRMSNorm / per-channel affine on CUDA,
// forward and backward, f32 / f16 / bf16 I/O, f32 arithmetic; the semantics of
// the CPU kernels (kernels-cpu/include/tk.h, tk_norm_params).
//
// Forward shapes, chosen by the host from the row length (src/cuda/norm.rs):
//  - rows32x<ITEMS>: a warp per row, the row held in registers (ITEMS per lane);
//  - rows<GROUP>x<ITEMS>: a block per row, same scheme with block reductions
//    (the defaults from 1024 elements: cols / 16 threads of 16 elements);
//  - stream<GROUP>: a block per row for rows too long to hold: the row is
//    swept from global memory (L2) once per statistic.
// Statistics: the mean is kept as an f32 pair (hi = fl(sum / n), lo = mean of
// h - hi), and the variance is the mean of (h - hi)^2 less lo^2, so a large
// mean over a small spread keeps its accuracy (as on the CPU).
// Backward: `groups` row groups (a block each) walk the rows group, group +
// groups, ...; rows up to 8192 elements are held in registers (8 or 16 a
// thread: 1024 threads of 8 would spill f32 under their 64-register cap),
// longer ones swept from memory. Each group leaves its partial dgamma/dbeta
// in its own row of a workspace (no atomics), and tk_norm_reduce_partials
// sums the groups in a fixed order: the same bits on every run for a given
// (rows, cols).

#include "common.cuh"

namespace tk {

struct NormArgs {
    int rows;
    int cols;
    float eps;
    float out_scale;
    int kind; // 0 LayerNorm, 1 RMSNorm, 2 per-channel (no statistics)
    int crms; // RMSNorm over cols + 1 coordinates, the last being -sum
    int params_f32;
    int aligned; // every row of every tensor starts 16-byte aligned
};

struct NormPtrs {
    const void *x;
    const void *residual;
    void *h;
    void *y;
    int8_t *q;
    float *q_scale;
    const void *gamma;
    const void *beta;
    float *mean;
    float *rstd;
};

template <typename T> __device__ __forceinline__ float param(const void *p, int f32, int j, float absent) {
    if (!p) return absent;
    return f32 ? static_cast<const float *>(p)[j] : Io<T>::load(static_cast<const T *>(p)[j]);
}

// Gain or bias values for columns start .. start + V (absent beyond cols or
// when p is null), one or two 128-bit loads when the address allows: scalar
// loads of the parameters were the 16-bit kernels' bottleneck (LSU issue).
template <typename T, int V>
__device__ __forceinline__ void param_vec(const void *p, int f32, int start, int cols, float absent, float (&out)[V]) {
    if (!p) {
#pragma unroll
        for (int k = 0; k < V; k++) out[k] = absent;
        return;
    }
    if (!f32) {
        const T *q = static_cast<const T *>(p) + start;
        load_vec<T>(q, cols - start, (reinterpret_cast<uintptr_t>(q) & 15) == 0, absent, out);
        return;
    }
    const float *q = static_cast<const float *>(p) + start;
    if (start + V <= cols && (reinterpret_cast<uintptr_t>(q) & 15) == 0) {
#pragma unroll
        for (int k = 0; k < V; k += 4) {
            const float4 t = *reinterpret_cast<const float4 *>(q + k);
            out[k] = t.x;
            out[k + 1] = t.y;
            out[k + 2] = t.z;
            out[k + 3] = t.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < V; k++) out[k] = start + k < cols ? q[k] : absent;
    }
}

template <typename T> __device__ __forceinline__ float round_to(float v) { return Io<T>::load(Io<T>::store(v)); }

// (mean_hi, mean_lo, rstd) from a row's sums: n1 = sum h, then (c1, c2) = the
// sums of h - hi and (h - hi)^2, and sum h^2 for RMSNorm.
struct RowStats {
    float hi, lo, rstd;
};

// LayerNorm statistics from the sums centred on hi: c1 = sum (h - hi),
// c2 = sum (h - hi)^2 over n elements.
__device__ __forceinline__ RowStats layernorm_stats(float hi, float c1, float c2, float n, float eps) {
    RowStats s;
    s.hi = hi;
    s.lo = c1 / n;
    s.rstd = 1.0f / sqrtf(fmaxf(c2 / n - s.lo * s.lo, 0.0f) + eps);
    return s;
}

// RMSNorm statistics from s1 = sum h and q = sum h^2 (CRMS: the implied
// last coordinate -s1 joins the mean of squares).
__device__ __forceinline__ RowStats rms_stats(float s1, float q, float n, int crms, float eps) {
    RowStats s = {0.0f, 0.0f, 1.0f};
    if (crms) q = fmaf(s1, s1, q);
    s.rstd = 1.0f / sqrtf(q / (crms ? n + 1.0f : n) + eps);
    return s;
}

// y for one element; hi/lo/rstd are 0/0/1 for the per-channel kind.
__device__ __forceinline__ float norm_y(float h, const RowStats &s, float g, float b, float os) {
    return fmaf((h - s.hi - s.lo) * s.rstd, g, b) * os;
}

// Element i of this thread's registers is column col_of<GROUP, V>(i, lane).
template <int GROUP, int V> __device__ __forceinline__ int col_of(int i, int lane) {
    return ((i / V) * GROUP + lane) * V + i % V;
}

// Where a thread's part of a row lies, for the kernels that hold rows in
// registers: ITEMS elements as CHUNKS chunks of one 128-bit vector, chunk c
// at columns start(c) ... (element i is column col_of(i, lane)). WHOLE: every
// row starts 16-byte aligned and cols is a multiple of GROUP * V, so a chunk
// is all in the row or all past it, alike for the whole group: the tests are
// per chunk, with no per-element compare or tail.
template <typename T, int GROUP, int ITEMS, bool WHOLE> struct RowLayout {
    static constexpr int V = Io<T>::VEC, CHUNKS = ITEMS / V;
    static_assert(ITEMS % V == 0, "ITEMS is whole 128-bit vectors");
    int lane, cols, whole_chunks;
    bool aligned; // 128-bit accesses
    __device__ RowLayout(int lane_, int cols_, int rows_aligned)
        : lane(lane_), cols(cols_), whole_chunks(cols_ / (GROUP * V)), aligned(WHOLE || rows_aligned) {}
    __device__ int start(int c) const { return (c * GROUP + lane) * V; }
    // chunk c holds columns of the row
    __device__ bool has_chunk(int c) const { return WHOLE ? c < whole_chunks : start(c) < cols; }
    // columns of the row from start(c) (at least V: a whole chunk)
    __device__ int left(int c) const { return WHOLE ? V : cols - start(c); }
    // element i holds a column of the row
    __device__ bool has(int i) const { return WHOLE ? i / V < whole_chunks : col_of<GROUP, V>(i, lane) < cols; }
};

// The statistics of a row whose elements this thread holds in v[0..ITEMS),
// reduced over the GROUP threads of the row. Elements past the row hold 0,
// so the plain sums need no mask; the centred ones do.
template <typename T, int GROUP, int ITEMS, bool WHOLE>
__device__ __forceinline__ RowStats row_stats_regs(const float (&v)[ITEMS], const RowLayout<T, GROUP, ITEMS, WHOLE> &l,
                                                   const NormArgs &a) {
    RowStats s = {0.0f, 0.0f, 1.0f};
    if (a.kind == 2) return s;
    const float n = (float)a.cols;
    float s1 = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; i++) s1 += v[i];
    if (a.kind != 0) {
        // RMSNorm: the sum (for CRMS) and the sum of squares in one round
        float sq[2] = {s1, 0.0f};
#pragma unroll
        for (int i = 0; i < ITEMS; i++) sq[1] = fmaf(v[i], v[i], sq[1]);
        GroupReduce<GROUP>::sums(sq);
        return rms_stats(sq[0], sq[1], n, a.crms, a.eps);
    }
    // LayerNorm: the mean, then the two centred sums in one round
    s.hi = GroupReduce<GROUP>::sum(s1) / n;
    float c[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        if (!l.has(i)) continue;
        const float d = v[i] - s.hi;
        c[0] += d;
        c[1] = fmaf(d, d, c[1]);
    }
    GroupReduce<GROUP>::sums(c);
    return layernorm_stats(s.hi, c[0], c[1], n, a.eps);
}

// This thread's CHUNKS packs of a row (zero past the row; WHOLE as in
// norm_forward_regs), every load issued before any is used.
template <typename T, int GROUP, int ITEMS, bool WHOLE, int CHUNKS>
__device__ __forceinline__ void load_row(Pack<T> (&out)[CHUNKS], const T *src,
                                         const RowLayout<T, GROUP, ITEMS, WHOLE> &l) {
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        if (l.has_chunk(c))
            out[c] = load_pack<T>(src + l.start(c), l.left(c), l.aligned, Io<T>::store(0.0f));
        else
            out[c].raw = make_uint4(0u, 0u, 0u, 0u);
    }
}

// One row held in the registers of GROUP threads (RowLayout; the WHOLE case
// exists because per-element compares and the int8 absmax bookkeeping were
// most of the 16-bit kernels' instructions, docs/gpu-results.md).
template <typename T, int GROUP, int ITEMS, bool WHOLE>
__device__ __forceinline__ void norm_forward_regs(int row, int lane, const NormPtrs &p, const NormArgs &a) {
    using Layout = RowLayout<T, GROUP, ITEMS, WHOLE>;
    constexpr int V = Layout::V, CHUNKS = Layout::CHUNKS;
    const Layout l(lane, a.cols, a.aligned);
    const size_t off = (size_t)row * (size_t)a.cols;
    const T *x = static_cast<const T *>(p.x) + off;
    const T *r = p.residual ? static_cast<const T *>(p.residual) + off : nullptr;
    // every load of the row first (x, then the residual), widening after:
    // the loads of a thread are all in flight together
    Pack<T> xs[CHUNKS];
    load_row(xs, x, l);
    float h[ITEMS];
    if (r) {
        Pack<T> rs[CHUNKS];
        load_row(rs, r, l);
#pragma unroll
        for (int c = 0; c < CHUNKS; c++) {
            float v[V];
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = round_to<T>(Io<T>::load(xs[c].elems[k]) + Io<T>::load(rs[c].elems[k]));
            if (p.h && l.has_chunk(c)) store_vec<T>(static_cast<T *>(p.h) + off + l.start(c), l.left(c), l.aligned, v);
#pragma unroll
            for (int k = 0; k < V; k++) h[c * V + k] = v[k];
        }
    } else {
#pragma unroll
        for (int c = 0; c < CHUNKS; c++)
#pragma unroll
            for (int k = 0; k < V; k++) h[c * V + k] = Io<T>::load(xs[c].elems[k]);
    }
    const RowStats s = row_stats_regs(h, l, a);
    if (lane == 0 && p.mean) p.mean[row] = s.hi;
    if (lane == 0 && p.rstd) p.rstd[row] = s.rstd;
    if (!p.y && !p.q) return;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        float g[V], b[V];
        param_vec<T, V>(p.gamma, a.params_f32, l.start(c), a.cols, 1.0f, g);
        param_vec<T, V>(p.beta, a.params_f32, l.start(c), a.cols, 0.0f, b);
#pragma unroll
        for (int k = 0; k < V; k++) h[c * V + k] = norm_y(h[c * V + k], s, g[k], b[k], a.out_scale);
    }
    if (p.y) {
#pragma unroll
        for (int c = 0; c < CHUNKS; c++) {
            if (!l.has_chunk(c)) break;
            float v[V];
#pragma unroll
            for (int k = 0; k < V; k++) v[k] = h[c * V + k];
            store_vec<T>(static_cast<T *>(p.y) + off + l.start(c), l.left(c), l.aligned, v);
        }
    }
    if (p.q) {
        float amax = 0.0f;
#pragma unroll
        for (int i = 0; i < ITEMS; i++) {
            // inf marks a non-finite y: it wins the max and flags the row
            if (l.has(i)) amax = fmaxf(amax, isfinite(h[i]) ? fabsf(h[i]) : INFINITY);
        }
        amax = GroupReduce<GROUP>::max(amax);
        const bool bad = isinf(amax);
        const float inv = bad || amax == 0.0f ? 0.0f : 127.0f / amax;
        if (lane == 0) p.q_scale[row] = bad ? NAN : amax / 127.0f;
#pragma unroll
        for (int i = 0; i < ITEMS; i++) {
            const int j = col_of<GROUP, V>(i, lane);
            // a row with NaN or inf writes q = 0 (fmaxf would turn NaN * 0 into -127)
            if (j < a.cols) p.q[off + j] = bad ? 0 : (int8_t)(int)rintf(fminf(fmaxf(h[i] * inv, -127.0f), 127.0f));
        }
    }
}

// The WHOLE case (see norm_forward_regs) when the call allows it, else the
// general one.
template <typename T, int GROUP, int ITEMS>
__device__ __forceinline__ void norm_forward_row(int row, int lane, const NormPtrs &p, const NormArgs &a) {
    if (a.aligned && a.cols % (GROUP * Io<T>::VEC) == 0)
        norm_forward_regs<T, GROUP, ITEMS, true>(row, lane, p, a);
    else
        norm_forward_regs<T, GROUP, ITEMS, false>(row, lane, p, a);
}

template <typename T, int ITEMS, int WARPS>
__device__ void norm_forward_warp(NormPtrs p, NormArgs a) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32;
    if (row >= a.rows) return;
    norm_forward_row<T, 32, ITEMS>(row, threadIdx.x % 32, p, a);
}

template <typename T, int GROUP, int ITEMS> __device__ void norm_forward_block(NormPtrs p, NormArgs a) {
    norm_forward_row<T, GROUP, ITEMS>(blockIdx.x, threadIdx.x, p, a);
}

// A block per row of any length: h is written first (with a residual) and
// read back for each statistic and for the write.
template <typename T, int GROUP> __device__ void norm_forward_stream(NormPtrs p, NormArgs a) {
    const size_t off = (size_t)blockIdx.x * (size_t)a.cols;
    const T *x = static_cast<const T *>(p.x) + off;
    const T *src = x;
    float s1 = 0.0f, q = 0.0f;
    if (p.residual) {
        const T *r = static_cast<const T *>(p.residual) + off;
        T *h = static_cast<T *>(p.h) + off;
        for (int j = threadIdx.x; j < a.cols; j += GROUP) {
            const T v = Io<T>::store(Io<T>::load(x[j]) + Io<T>::load(r[j]));
            h[j] = v;
        }
        __syncthreads();
        src = h;
    }
    RowStats s = {0.0f, 0.0f, 1.0f};
    if (a.kind != 2) {
        for (int j = threadIdx.x; j < a.cols; j += GROUP) {
            const float v = Io<T>::load(src[j]);
            s1 += v;
            q = fmaf(v, v, q);
        }
        const float n = (float)a.cols;
        if (a.kind == 0) {
            s.hi = GroupReduce<GROUP>::sum(s1) / n;
            float c1 = 0.0f, c2 = 0.0f;
            for (int j = threadIdx.x; j < a.cols; j += GROUP) {
                const float d = Io<T>::load(src[j]) - s.hi;
                c1 += d;
                c2 = fmaf(d, d, c2);
            }
            s = layernorm_stats(s.hi, GroupReduce<GROUP>::sum(c1), GroupReduce<GROUP>::sum(c2), n, a.eps);
        } else {
            s = rms_stats(GroupReduce<GROUP>::sum(s1), GroupReduce<GROUP>::sum(q), n, a.crms, a.eps);
        }
    }
    if (threadIdx.x == 0 && p.mean) p.mean[blockIdx.x] = s.hi;
    if (threadIdx.x == 0 && p.rstd) p.rstd[blockIdx.x] = s.rstd;
    float inv = 0.0f;
    bool bad = false;
    if (p.q) {
        float amax = 0.0f;
        for (int j = threadIdx.x; j < a.cols; j += GROUP) {
            const float y = norm_y(Io<T>::load(src[j]), s, param<T>(p.gamma, a.params_f32, j, 1.0f),
                                   param<T>(p.beta, a.params_f32, j, 0.0f), a.out_scale);
            amax = fmaxf(amax, isfinite(y) ? fabsf(y) : INFINITY);
        }
        amax = GroupReduce<GROUP>::max(amax);
        bad = isinf(amax);
        inv = bad || amax == 0.0f ? 0.0f : 127.0f / amax;
        if (threadIdx.x == 0) p.q_scale[blockIdx.x] = bad ? NAN : amax / 127.0f;
    }
    if (!p.y && !p.q) return;
    for (int j = threadIdx.x; j < a.cols; j += GROUP) {
        const float y = norm_y(Io<T>::load(src[j]), s, param<T>(p.gamma, a.params_f32, j, 1.0f),
                               param<T>(p.beta, a.params_f32, j, 0.0f), a.out_scale);
        if (p.y) static_cast<T *>(p.y)[off + j] = Io<T>::store(y);
        if (p.q) p.q[off + j] = bad ? 0 : (int8_t)(int)rintf(fminf(fmaxf(y * inv, -127.0f), 127.0f));
    }
}

// ---- backward ----

struct NormBwdArgs {
    int rows;
    int cols;
    float out_scale;
    int kind;
    int params_f32;
    int groups; // row groups; the workspace holds 2 * groups * cols floats
    int aligned; // every row of every tensor starts 16-byte aligned
};

struct NormBwdPtrs {
    const void *dy;
    const void *h;
    const void *dh;
    void *dx;
    const void *gamma;
    const float *mean;
    const float *rstd;
    float *partial; // [groups][cols] dgamma, then [groups][cols] dbeta; NULL: none
};

// Group `group` (GROUP threads, this one `lane`) processes rows group, group +
// groups, ...: two sweeps over global memory per row (sums, then dx), with its
// partial dgamma/dbeta in its own workspace rows.
template <typename T, int GROUP>
__device__ __forceinline__ void norm_backward_group(int group, int lane, const NormBwdPtrs &p, const NormBwdArgs &a) {
    const float n = (float)a.cols;
    const bool ln = a.kind == 0, channel = a.kind == 2;
    float *pg = p.partial ? p.partial + (size_t)group * a.cols : nullptr;
    float *pb = p.partial ? p.partial + ((size_t)a.groups + group) * a.cols : nullptr;
    if (pg)
        for (int j = lane; j < a.cols; j += GROUP) pg[j] = pb[j] = 0.0f;
    for (int row = group; row < a.rows; row += a.groups) {
        const size_t off = (size_t)row * (size_t)a.cols;
        const T *dy = static_cast<const T *>(p.dy) + off;
        const T *h = static_cast<const T *>(p.h) + off;
        const float mh = ln ? p.mean[row] : 0.0f;
        const float rs = channel ? 1.0f : p.rstd[row];
        float lo = 0.0f, mg = 0.0f, mgx = 0.0f;
        if (!channel) {
            float sg = 0.0f, sgx = 0.0f, sx = 0.0f;
            for (int j = lane; j < a.cols; j += GROUP) {
                const float g = Io<T>::load(dy[j]) * param<T>(p.gamma, a.params_f32, j, 1.0f) * a.out_scale;
                const float xc = Io<T>::load(h[j]) - mh;
                sg += g;
                sgx = fmaf(g, xc, sgx);
                sx += xc;
            }
            float sums[3] = {sg, sgx, sx};
            GroupReduce<GROUP>::sums(sums);
            sg = sums[0], sgx = sums[1], sx = sums[2];
            lo = ln ? sx / n : 0.0f;
            mg = ln ? sg / n : 0.0f;
            mgx = rs * (sgx - lo * sg) / n;
        }
        for (int j = lane; j < a.cols; j += GROUP) {
            const float dyv = Io<T>::load(dy[j]);
            const float g = dyv * param<T>(p.gamma, a.params_f32, j, 1.0f) * a.out_scale;
            const float xhat = (Io<T>::load(h[j]) - mh - lo) * rs;
            float d = rs * (g - mg - xhat * mgx);
            if (p.dh) d += Io<T>::load(static_cast<const T *>(p.dh)[off + j]);
            static_cast<T *>(p.dx)[off + j] = Io<T>::store(d);
            if (pg) {
                pg[j] = fmaf(dyv * a.out_scale, xhat, pg[j]);
                pb[j] = fmaf(dyv, a.out_scale, pb[j]);
            }
        }
    }
}

// The backward for rows of up to GROUP * ITEMS elements, held in registers
// with the forward's layout (col_of): the group keeps its columns' gamma and
// its partial dgamma/dbeta in registers across its rows, writing the partials
// once at the end (norm_backward_group read-modify-writes them in memory for
// every row), and issues each row's loads (dy, h, dh) before using any.
// WHOLE as in norm_forward_regs.
template <typename T, int GROUP, int ITEMS, bool WHOLE>
__device__ __forceinline__ void norm_backward_regs(int group, int lane, const NormBwdPtrs &p, const NormBwdArgs &a) {
    using Layout = RowLayout<T, GROUP, ITEMS, WHOLE>;
    constexpr int V = Layout::V, CHUNKS = Layout::CHUNKS;
    const Layout l(lane, a.cols, a.aligned);
    const float n = (float)a.cols, os = a.out_scale;
    const bool ln = a.kind == 0, channel = a.kind == 2;
    float gam[ITEMS], pg[ITEMS], pb[ITEMS];
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        float t[V];
        param_vec<T, V>(p.gamma, a.params_f32, l.start(c), a.cols, 1.0f, t);
#pragma unroll
        for (int k = 0; k < V; k++) {
            gam[c * V + k] = t[k];
            pg[c * V + k] = pb[c * V + k] = 0.0f;
        }
    }
    for (int row = group; row < a.rows; row += a.groups) {
        const size_t off = (size_t)row * (size_t)a.cols;
        const T *dy = static_cast<const T *>(p.dy) + off, *h = static_cast<const T *>(p.h) + off;
        const T *dh = p.dh ? static_cast<const T *>(p.dh) + off : nullptr;
        Pack<T> dyp[CHUNKS], hp[CHUNKS], dhp[CHUNKS];
        load_row(dyp, dy, l);
        load_row(hp, h, l);
        if (dh) load_row(dhp, dh, l);
        const float mh = ln ? p.mean[row] : 0.0f;
        const float rs = channel ? 1.0f : p.rstd[row];
        float lo = 0.0f, mg = 0.0f, mgx = 0.0f;
        if (!channel) {
            float sg = 0.0f, sgx = 0.0f, sx = 0.0f;
#pragma unroll
            for (int i = 0; i < ITEMS; i++) {
                const float g = Io<T>::load(dyp[i / V].elems[i % V]) * gam[i] * os;
                const float xc = Io<T>::load(hp[i / V].elems[i % V]) - mh;
                sg += g;
                sgx = fmaf(g, xc, sgx);
                // past the row dy = 0 (no term above) but h - mean is not 0
                if (l.has(i)) sx += xc;
            }
            float sums[3] = {sg, sgx, sx};
            GroupReduce<GROUP>::sums(sums);
            sg = sums[0], sgx = sums[1], sx = sums[2];
            lo = ln ? sx / n : 0.0f;
            mg = ln ? sg / n : 0.0f;
            mgx = rs * (sgx - lo * sg) / n;
        }
#pragma unroll
        for (int c = 0; c < CHUNKS; c++) {
            float d[V];
#pragma unroll
            for (int k = 0; k < V; k++) {
                const int i = c * V + k;
                const float dyv = Io<T>::load(dyp[c].elems[k]);
                const float g = dyv * gam[i] * os;
                const float xhat = (Io<T>::load(hp[c].elems[k]) - mh - lo) * rs;
                d[k] = rs * (g - mg - xhat * mgx);
                if (dh) d[k] += Io<T>::load(dhp[c].elems[k]);
                pg[i] = fmaf(dyv * os, xhat, pg[i]);
                pb[i] = fmaf(dyv, os, pb[i]);
            }
            if (l.has_chunk(c)) store_vec<T>(static_cast<T *>(p.dx) + off + l.start(c), l.left(c), l.aligned, d);
        }
    }
    if (!p.partial) return;
    float *pgr = p.partial + (size_t)group * a.cols, *pbr = p.partial + ((size_t)a.groups + group) * a.cols;
#pragma unroll
    for (int i = 0; i < ITEMS; i++) {
        const int j = col_of<GROUP, V>(i, lane);
        if (j < a.cols) {
            pgr[j] = pg[i];
            pbr[j] = pb[i];
        }
    }
}

} // namespace tk

// Sums the groups' partials per column in a fixed order: slice s of
// TK_REDUCE_SLICES sums its run of groups in order (f64), then the slices are
// summed in order. The same bits on every run for a given (groups, cols),
// with 8 chains per column instead of one (one chain of 1024 groups was
// longer than the backward itself).
#define TK_REDUCE_COLS 32
#define TK_REDUCE_SLICES 8
extern "C" __global__ void __launch_bounds__(TK_REDUCE_COLS * TK_REDUCE_SLICES)
    tk_norm_reduce_partials(const float *partial, int groups, int cols, float *dgamma, float *dbeta) {
    __shared__ double part[2][TK_REDUCE_SLICES][TK_REDUCE_COLS];
    const int c = threadIdx.x % TK_REDUCE_COLS, slice = threadIdx.x / TK_REDUCE_COLS;
    const int j = blockIdx.x * TK_REDUCE_COLS + c;
    const int per = (groups + TK_REDUCE_SLICES - 1) / TK_REDUCE_SLICES;
    const int k0 = slice * per, k1 = min(groups, k0 + per);
    double g = 0.0, b = 0.0;
    if (j < cols)
        for (int k = k0; k < k1; k++) {
            g += partial[(size_t)k * cols + j];
            b += partial[((size_t)groups + k) * cols + j];
        }
    part[0][slice][c] = g;
    part[1][slice][c] = b;
    __syncthreads();
    if (slice != 0 || j >= cols) return;
    g = b = 0.0;
#pragma unroll
    for (int s = 0; s < TK_REDUCE_SLICES; s++) {
        g += part[0][s][c];
        b += part[1][s][c];
    }
    if (dgamma) dgamma[j] = (float)g;
    if (dbeta) dbeta[j] = (float)b;
}

// ---- instantiation list: (dtype name, C type) x kernel shape ----
// Names say the launch geometry, as for softmax; src/cuda/norm.rs lists the
// same shapes and resolves every name when the module loads.
#define TK_NORM_WARP(dt, T, ITEMS)                                                                 \
    extern "C" __global__ void __launch_bounds__(128)                                               \
        tk_norm_forward_##dt##_cuda_rows32x##ITEMS(tk::NormPtrs p, tk::NormArgs a) {               \
        tk::norm_forward_warp<T, ITEMS, 4>(p, a);                                                   \
    }
#define TK_NORM_BLOCK(dt, T, GROUP, ITEMS)                                                         \
    extern "C" __global__ void __launch_bounds__(GROUP)                                             \
        tk_norm_forward_##dt##_cuda_rows##GROUP##x##ITEMS(tk::NormPtrs p, tk::NormArgs a) {        \
        tk::norm_forward_block<T, GROUP, ITEMS>(p, a);                                              \
    }
#define TK_NORM_STREAM(dt, T, GROUP)                                                               \
    extern "C" __global__ void __launch_bounds__(GROUP)                                             \
        tk_norm_forward_##dt##_cuda_stream##GROUP(tk::NormPtrs p, tk::NormArgs a) {                \
        tk::norm_forward_stream<T, GROUP>(p, a);                                                    \
    }
// A block per row group: rows of any length swept from memory.
#define TK_NORM_BACKWARD(dt, T, GROUP)                                                             \
    extern "C" __global__ void __launch_bounds__(GROUP)                                             \
        tk_norm_backward_##dt##_cuda_group##GROUP(tk::NormBwdPtrs p, tk::NormBwdArgs a) {          \
        tk::norm_backward_group<T, GROUP>(blockIdx.x, threadIdx.x, p, a);                           \
    }
// A block per row group, rows held in registers (GROUP threads x ITEMS).
#define TK_NORM_BACKWARD_ROWS(dt, T, GROUP, ITEMS)                                                 \
    extern "C" __global__ void __launch_bounds__(GROUP)                                             \
        tk_norm_backward_##dt##_cuda_rows##GROUP##x##ITEMS(tk::NormBwdPtrs p, tk::NormBwdArgs a) { \
        if (a.aligned && a.cols % (GROUP * tk::Io<T>::VEC) == 0)                                    \
            tk::norm_backward_regs<T, GROUP, ITEMS, true>(blockIdx.x, threadIdx.x, p, a);           \
        else                                                                                        \
            tk::norm_backward_regs<T, GROUP, ITEMS, false>(blockIdx.x, threadIdx.x, p, a);          \
    }
#define TK_NORM_ALL(dt, T)                                                                         \
    TK_NORM_WARP(dt, T, 8)                                                                         \
    TK_NORM_WARP(dt, T, 16)                                                                        \
    TK_NORM_BLOCK(dt, T, 64, 16)                                                                   \
    TK_NORM_BLOCK(dt, T, 128, 16)                                                                  \
    TK_NORM_BLOCK(dt, T, 256, 16)                                                                  \
    TK_NORM_BLOCK(dt, T, 512, 16)                                                                  \
    TK_NORM_BLOCK(dt, T, 1024, 16)                                                                 \
    TK_NORM_STREAM(dt, T, 1024)                                                                    \
    TK_NORM_WARP(dt, T, 32)                                                                        \
    TK_NORM_WARP(dt, T, 64)                                                                        \
    TK_NORM_BLOCK(dt, T, 128, 8)                                                                   \
    TK_NORM_BLOCK(dt, T, 256, 8)                                                                   \
    TK_NORM_BLOCK(dt, T, 128, 32)                                                                  \
    TK_NORM_BACKWARD(dt, T, 1024)                                                                  \
    TK_NORM_BACKWARD_ROWS(dt, T, 128, 8)                                                           \
    TK_NORM_BACKWARD_ROWS(dt, T, 256, 8)                                                           \
    TK_NORM_BACKWARD_ROWS(dt, T, 512, 8)                                                           \
    TK_NORM_BACKWARD_ROWS(dt, T, 512, 16)

TK_NORM_ALL(f32, float)
TK_NORM_ALL(f16, __half)
TK_NORM_ALL(bf16, __nv_bfloat16)
