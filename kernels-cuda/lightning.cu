// Lightning attention on CUDA (see kernels-cpu/lightning/lightning.inc for the
// block scheme): one pass walks one (sequence, head, 64-column slice of the
// value width) in chunks of 64 tokens with its slice of the state S in shared
// memory (f32). A block of 4 warps; warp w owns chunk rows 16w .. 16w + 15 for
// the scores and outputs, and every fourth 16-row tile of S for the update.
// The block products run on the tensor cores (mma.sync m16n8k16, f16/bf16
// operands, f32 accumulation); operands are kept in f32 in shared memory and
// rounded to the I/O dtype as fragments are built, so S, the decayed scores and
// the decayed keys are rounded once per use (the GPU error bound adds 4 u_io of
// the magnitude for these). f32 I/O runs the same fragments on FFMA (correct,
// not fast: no f32 tensor-core path).
//
// The forward is one pass; the backward is three passes with permuted operands
// (two with time reversed), as on the CPU. Decoding is its own kernel.

#include "common.cuh"
#include "ptx.cuh"

namespace tk {

constexpr int LT_CHUNK = 64;   // tokens per chunk
constexpr int LT_SLICE = 64;   // value columns per block
constexpr int LT_WARPS = 4;
constexpr int LT_MAX_HEADS = 256;
constexpr int LT_MAX_SEQS = 256;

// How a pass is split over blocks. Sequential: a block per (sequence, head,
// slice) walks every chunk. Chunk-parallel, three launches: the states phase
// gives every chunk's own contribution (decayed K^T V) to the workspace, the
// scan (tk_lightning_scan) turns those into the state at each chunk's start,
// and the outputs phase computes every chunk's outputs from its start state;
// a block per (chunk, head, slice) in both phases. That is the f32 path; for
// 16-bit I/O a walk (lightning_walk16) replaces the first two launches.
enum { LT_SEQUENTIAL = 0, LT_CHUNK_STATES = 1, LT_CHUNK_OUTPUTS = 3 };

// Where element (sequence b, head h, token t, channel c) of one operand lives.
struct LtLayout {
    long long batch, head, token;
};

struct LtPassArgs {
    const void *q, *k, *v; // q, k: dq wide; v: dv wide
    void *o;               // dv wide
    LtLayout lq, lk, lv, lo;
    const float *s0;       // NULL or [seqs, heads] states (see s0_transposed)
    float *s_out;          // NULL or [seqs, heads, dq, dv]
    int seqs, heads, n, dq, dv;
    int packed;            // offsets[] holds seqs + 1 token offsets
    int reverse;           // token t of the pass is token len - 1 - t
    int s0_transposed;     // s0 is [dv, dq] per head (else [dq, dv])
    int s0_over_decay;     // multiply s0 by 1 / decay[h]
    int s_out_times_decay; // multiply s_out by decay[h]
    int phase;             // LT_SEQUENTIAL, LT_CHUNK_STATES or LT_CHUNK_OUTPUTS
    int seg_chunks;        // 16-bit walk: chunks per segment (>= 2), 0: a walk per sequence
    int segs;              // 16-bit walk: segments per sequence in its grid (1 when seg_chunks is 0)
    float *ws;             // chunk states [chunks, heads, dq, dv] (the chunk phases)
    float decay[LT_MAX_HEADS];
    long long offsets[LT_MAX_SEQS + 1];
};

// ---- m16n8k16 fragments: lane = 4 g + t --------------------------------------
// A (16 x 16): (g, 2t..2t+1), (g + 8, ..), (g, 2t + 8..), (g + 8, 2t + 8..)
// B (16 x 8):  (k = 2t..2t+1, n = g), (k = 2t + 8.., n = g)
// C (16 x 8):  (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1)

template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    union {
        T h[2];
        uint32_t u;
    } p;
    p.h[0] = Io<T>::store(lo);
    p.h[1] = Io<T>::store(hi);
    return p.u;
}

// c += A (16 x 16) B (16 x 8) with A(m, k) = fa(m, k), B(k, n) = fb(k, n) read
// from shared memory by this lane for its fragment positions.
template <typename T, typename FA, typename FB>
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], int lane, FA fa, FB fb) {
    const int g = lane >> 2, t = lane & 3;
    if constexpr (sizeof(T) == 2) {
        const uint32_t a[4] = {pack2<T>(fa(g, 2 * t), fa(g, 2 * t + 1)), pack2<T>(fa(g + 8, 2 * t), fa(g + 8, 2 * t + 1)),
                               pack2<T>(fa(g, 2 * t + 8), fa(g, 2 * t + 9)),
                               pack2<T>(fa(g + 8, 2 * t + 8), fa(g + 8, 2 * t + 9))};
        const uint32_t b[2] = {pack2<T>(fb(2 * t, g), fb(2 * t + 1, g)), pack2<T>(fb(2 * t + 8, g), fb(2 * t + 9, g))};
        Mma<T>::run(c, a, b);
    } else {
        // f32: the same fragment positions, summed on FFMA
#pragma unroll
        for (int k = 0; k < 16; k++) {
            const float b0 = fb(k, 2 * t), b1 = fb(k, 2 * t + 1);
            c[0] = fmaf(fa(g, k), b0, c[0]);
            c[1] = fmaf(fa(g, k), b1, c[1]);
            c[2] = fmaf(fa(g + 8, k), b0, c[2]);
            c[3] = fmaf(fa(g + 8, k), b1, c[3]);
        }
    }
}

// Shared memory of a pass, in floats: Q, K (64 rows of ldq), V (64 rows of
// LT_SLICE + 4), P (64 x 68), S (dq_pad rows of LT_SLICE + 4), pw (65).
__host__ __device__ inline int lt_ldq(int dq) { return (dq + 15) / 16 * 16 + 4; }
constexpr int LT_LDV = LT_SLICE + 4;
constexpr int LT_LDP = LT_CHUNK + 4;
__host__ __device__ inline size_t lt_smem_floats(int dq) {
    const int dqp = (dq + 15) / 16 * 16;
    return (size_t)2 * LT_CHUNK * lt_ldq(dq) + LT_CHUNK * LT_LDV + LT_CHUNK * LT_LDP + (size_t)dqp * LT_LDV + 72;
}

__device__ __forceinline__ int lt_seq_len(const LtPassArgs &a, int b) {
    return a.packed ? (int)(a.offsets[b + 1] - a.offsets[b]) : a.n;
}

// (sequence, chunk within it) of global chunk g; chunks are numbered sequence
// by sequence, ceil(len / 64) each.
__device__ __forceinline__ void lt_chunk_of(const LtPassArgs &a, int g, int &b, int &c) {
    if (!a.packed) {
        const int per = (a.n + LT_CHUNK - 1) / LT_CHUNK;
        b = g / per;
        c = g % per;
        return;
    }
    int first = 0;
    for (b = 0; b < a.seqs; b++) {
        const int count = (lt_seq_len(a, b) + LT_CHUNK - 1) / LT_CHUNK;
        if (g < first + count) break;
        first += count;
    }
    c = g - first;
}

// Global index of sequence b's first chunk, and the chunks of all sequences.
__device__ __forceinline__ int lt_first_chunk(const LtPassArgs &a, int b) {
    if (!a.packed) return b * ((a.n + LT_CHUNK - 1) / LT_CHUNK);
    int first = 0;
    for (int s = 0; s < b; s++) first += (lt_seq_len(a, s) + LT_CHUNK - 1) / LT_CHUNK;
    return first;
}

// ---- segmented walks (16-bit) ----------------------------------------------
// A sequence of more than seg_chunks chunks is walked in segments of
// seg_chunks chunks in parallel, each from a zero state (the first from S_0);
// each chunk start state in the workspace is then the segment-local one. The
// state carried into segment s >= 1, C_s = E_{s-1} + decay^(64 G) C_{s-1}
// (E: a segment's local end state, C_0 = 0), is added where the states are
// used: C_s decayed to the chunk's start when the outputs phase stages S, and
// decay^len C_last to the end state. The carries (f32, S^T layout, a dq x dv
// block per head) live in the workspace's second half, which the 16-bit
// states leave free: segment s of the sequence whose chunks start at global
// chunk `first` has slot (first + s G) / G - 1 (distinct across sequences,
// fewer than chunks / 2 for G >= 2).
__device__ __forceinline__ float *lt_carries(const LtPassArgs &a) {
    const int b_last = a.seqs - 1;
    const size_t total = (size_t)lt_first_chunk(a, b_last) + (lt_seq_len(a, b_last) + LT_CHUNK - 1) / LT_CHUNK;
    return a.ws + (total * a.heads * a.dq * a.dv + 1) / 2;
}
__device__ __forceinline__ float *lt_carry(const LtPassArgs &a, float *carries, int first, int seg, int h) {
    const size_t slot = (size_t)(first + seg * a.seg_chunks) / a.seg_chunks - 1;
    return carries + (slot * a.heads + h) * (size_t)a.dq * a.dv;
}

// Decay^t for t tokens (exact powers in double, as the chunk tables).
__device__ __forceinline__ float lt_decay_pow(float lambda, long long t) {
    return (float)exp((double)t * log((double)lambda));
}

// Grid: (sequence or global chunk, head, slice); 4 warps.
template <typename T>
__device__ void lightning_pass(const LtPassArgs &a) {
    TK_DYNAMIC_SMEM(float, smem);
    const int unit = blockIdx.x, h = blockIdx.y, slice = blockIdx.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int dq = a.dq, dqp = (dq + 15) / 16 * 16, ldq = lt_ldq(dq);
    const int c_base = slice * LT_SLICE, cols = min(LT_SLICE, a.dv - c_base);
    float *sq = smem, *sk = sq + LT_CHUNK * ldq, *sv = sk + LT_CHUNK * ldq, *sp = sv + LT_CHUNK * LT_LDV;
    float *ss = sp + LT_CHUNK * LT_LDP, *pw = ss + (size_t)dqp * LT_LDV;
    const float lambda = a.decay[h];
    if (threadIdx.x <= LT_CHUNK) pw[threadIdx.x] = (float)exp((double)threadIdx.x * log((double)lambda));

    int b = unit, c_first = 0;
    if (a.phase != LT_SEQUENTIAL) lt_chunk_of(a, unit, b, c_first);
    const int len_all = lt_seq_len(a, b);
    const int c_end = a.phase == LT_SEQUENTIAL ? (len_all + LT_CHUNK - 1) / LT_CHUNK : c_first + 1;
    const long long start = a.packed ? a.offsets[b] : 0;
    auto base = [&](const LtLayout &l) { return (a.packed ? start * l.token : (long long)b * l.batch) + (long long)h * l.head; };
    const T *q = static_cast<const T *>(a.q) + base(a.lq), *k = static_cast<const T *>(a.k) + base(a.lk);
    const T *v = static_cast<const T *>(a.v) + base(a.lv) + c_base;
    T *o = static_cast<T *>(a.o) + base(a.lo) + c_base;
    auto tok = [&](int t) { return (long long)(a.reverse ? len_all - 1 - t : t); };

    // start state (this slice), zero in the padding: the pass's S_0, zero for a
    // chunk's own contribution, or the chunk's start state from the scan
    const size_t si = ((size_t)b * a.heads + h) * (size_t)dq * a.dv;
    const size_t wi = ((size_t)unit * a.heads + h) * (size_t)dq * a.dv;
    const float s0_scale = a.s0_over_decay ? (float)(1.0 / (double)lambda) : 1.0f;
    for (int i = threadIdx.x; i < dqp * LT_SLICE; i += blockDim.x) {
        const int c = i / LT_SLICE, n = i % LT_SLICE;
        float val = 0.0f;
        if (c < dq && n < cols) {
            if (a.phase == LT_CHUNK_OUTPUTS)
                val = a.ws[wi + (size_t)c * a.dv + c_base + n];
            else if (a.phase == LT_SEQUENTIAL && a.s0)
                val = (a.s0_transposed ? a.s0[si + (size_t)(c_base + n) * dq + c] : a.s0[si + (size_t)c * a.dv + c_base + n]) *
                      s0_scale;
        }
        ss[c * LT_LDV + n] = val;
    }

    for (int cc = c_first; cc < c_end; cc++) {
        const int t0 = cc * LT_CHUNK, len = min(LT_CHUNK, len_all - t0);
        __syncthreads(); // the last chunk's readers are done with Q, K, V, S
        for (int i = threadIdx.x; i < LT_CHUNK * dqp; i += blockDim.x) {
            const int r = i / dqp, c = i % dqp;
            const bool in = r < len && c < dq;
            if (a.phase != LT_CHUNK_STATES) sq[r * ldq + c] = in ? Io<T>::load(q[tok(t0 + r) * a.lq.token + c]) : 0.0f;
            sk[r * ldq + c] = in ? Io<T>::load(k[tok(t0 + r) * a.lk.token + c]) : 0.0f;
        }
        for (int i = threadIdx.x; i < LT_CHUNK * LT_SLICE; i += blockDim.x) {
            const int r = i / LT_SLICE, c = i % LT_SLICE;
            sv[r * LT_LDV + c] = r < len && c < cols ? Io<T>::load(v[tok(t0 + r) * a.lv.token + c]) : 0.0f;
        }
        __syncthreads();

        if (a.phase != LT_CHUNK_STATES) {
            // scores of this warp's 16 rows: P = (Q K^T) .* decay mask, columns <= its last row
            const int r0 = warp * 16, ntiles = (r0 + 16) / 8;
            for (int nt = 0; nt < ntiles; nt++) {
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int k0 = 0; k0 < dqp; k0 += 16)
                    mma_16x8x16<T>(c, lane, [&](int m, int kk) { return sq[(r0 + m) * ldq + k0 + kk]; },
                                   [&](int kk, int n) { return sk[(nt * 8 + n) * ldq + k0 + kk]; });
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = r0 + g + (e >= 2 ? 8 : 0), j = nt * 8 + 2 * tq + (e & 1);
                    sp[i * LT_LDP + j] = j <= i ? c[e] * pw[i - j] : 0.0f;
                }
            }
            __syncwarp();

            // O = diag(decay^(i+1)) Q S + P V for this warp's rows
            for (int nt = 0; nt < LT_SLICE / 8; nt++) {
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int k0 = 0; k0 < dqp; k0 += 16)
                    mma_16x8x16<T>(c, lane, [&](int m, int kk) { return sq[(r0 + m) * ldq + k0 + kk]; },
                                   [&](int kk, int n) { return ss[(k0 + kk) * LT_LDV + nt * 8 + n]; });
#pragma unroll
                for (int e = 0; e < 4; e++) c[e] *= pw[r0 + g + (e >= 2 ? 8 : 0) + 1];
                for (int k0 = 0; k0 < r0 + 16; k0 += 16)
                    mma_16x8x16<T>(c, lane, [&](int m, int kk) { return sp[(r0 + m) * LT_LDP + k0 + kk]; },
                                   [&](int kk, int n) { return sv[(k0 + kk) * LT_LDV + nt * 8 + n]; });
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = r0 + g + (e >= 2 ? 8 : 0), n = nt * 8 + 2 * tq + (e & 1);
                    if (i < len && n < cols) o[tok(t0 + i) * a.lo.token + n] = Io<T>::store(c[e]);
                }
            }
        }
        if (a.phase == LT_CHUNK_OUTPUTS) continue;
        __syncthreads(); // every warp has read S

        // S <- decay^len S + (decayed K)^T V, 16-row tiles of S round-robin over the warps
        const float carry = pw[len];
        for (int c0 = warp * 16; c0 < dqp; c0 += 16 * LT_WARPS) {
            for (int nt = 0; nt < LT_SLICE / 8; nt++) {
                float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int j0 = 0; j0 < LT_CHUNK; j0 += 16)
                    mma_16x8x16<T>(
                        c, lane,
                        [&](int m, int kk) {
                            const int j = j0 + kk;
                            return j < len ? sk[j * ldq + c0 + m] * pw[len - 1 - j] : 0.0f;
                        },
                        [&](int kk, int n) { return sv[(j0 + kk) * LT_LDV + nt * 8 + n]; });
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = c0 + g + (e >= 2 ? 8 : 0), n = nt * 8 + 2 * tq + (e & 1);
                    float *s = &ss[r * LT_LDV + n];
                    *s = fmaf(carry, *s, c[e]);
                }
            }
        }
    }
    __syncthreads();
    float *dst = a.phase == LT_CHUNK_STATES ? a.ws + wi : a.phase == LT_SEQUENTIAL ? a.s_out : nullptr;
    if (dst) {
        if (a.phase == LT_SEQUENTIAL) dst += si;
        const float f = a.phase == LT_SEQUENTIAL && a.s_out_times_decay ? lambda : 1.0f;
        for (int i = threadIdx.x; i < dq * LT_SLICE; i += blockDim.x) {
            const int c = i / LT_SLICE, n = i % LT_SLICE;
            if (n < cols) dst[(size_t)c * a.dv + c_base + n] = ss[c * LT_LDV + n] * f;
        }
    }
}

// The scan between the chunk phases: one thread per state element of one
// (sequence, head); walks the sequence's chunks in order, replacing each
// chunk's own contribution D_c in the workspace by the state at its start,
// S_c = decay^len(c-1) S_(c-1) + D_(c-1) from S_0 = the pass's start state,
// and writes the end state. Grid: (elements / 256, heads, sequences).
__device__ void lightning_scan(const LtPassArgs &a) {
    const int h = blockIdx.y, b = blockIdx.z;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= a.dq * a.dv) return;
    const int c = e / a.dv, n = e % a.dv;
    const float lambda = a.decay[h];
    int first = 0;
    // global index of this sequence's first chunk
    if (!a.packed) {
        first = b * ((a.n + LT_CHUNK - 1) / LT_CHUNK);
    } else {
        for (int s = 0; s < b; s++) first += (lt_seq_len(a, s) + LT_CHUNK - 1) / LT_CHUNK;
    }
    const int len_all = lt_seq_len(a, b), count = (len_all + LT_CHUNK - 1) / LT_CHUNK;
    const size_t si = ((size_t)b * a.heads + h) * (size_t)a.dq * a.dv;
    float s = 0.0f;
    if (a.s0) {
        s = a.s0_transposed ? a.s0[si + (size_t)n * a.dq + c] : a.s0[si + e];
        if (a.s0_over_decay) s *= (float)(1.0 / (double)lambda);
    }
    const float full = (float)exp((double)LT_CHUNK * log((double)lambda));
    for (int cc = 0; cc < count; cc++) {
        float *slot = a.ws + ((size_t)(first + cc) * a.heads + h) * (size_t)a.dq * a.dv + e;
        const float own = *slot;
        *slot = s;
        const int len = min(LT_CHUNK, len_all - cc * LT_CHUNK);
        const float carry = len == LT_CHUNK ? full : (float)exp((double)len * log((double)lambda));
        s = fmaf(carry, s, own);
    }
    if (a.s_out) a.s_out[si + e] = a.s_out_times_decay ? s * lambda : s;
}

// ---- the two phases for 16-bit I/O ----------------------------------------
// A walk over each sequence's chunks writes every chunk's start state; then
// every chunk's outputs run in parallel. Operands are staged in the I/O dtype
// and in fragment order, so every fragment is 32-bit shared-memory loads of
// adjacent pairs: V^T and decayed K^T for the walk; Q, K, S^T, V^T and P for
// the outputs. Same math and the same roundings as lightning_pass (whose
// fragments round the same operands).

constexpr int LT_LD16 = LT_CHUNK + 8; // row stride of the 64-wide 16-bit buffers
// Floats of decay powers (65 used) ahead of the 16-bit buffers: 68 keeps
// those 16-byte aligned for the vector staging.
constexpr int LT_PW16 = 68;
__host__ __device__ inline int lt_ld16q(int dq) { return (dq + 15) / 16 * 16 + 8; }
__host__ __device__ inline size_t lt_smem16_outputs(int dq) {
    return ((size_t)3 * 64 * lt_ld16q(dq) + 2 * 64 * LT_LD16) * 2 + LT_PW16 * 4;
}

// ---- staging a chunk's operands in shared memory ----------------------------
// Rows are read as 16-byte vectors when the source allows (lt_vec_ok), a
// thread's loads for four items issued before any store, so several loads are
// in flight; otherwise element by element. Rows at or past `len` and columns
// at or past `width` are zero. Transposed tiles: lt_fetch_tile +
// lt_put_transposed (below, with the walk).

// Whether rows of `src` (16-bit) can be read as 16-byte vectors up to `width`:
// every row 16-byte aligned and the width whole vectors.
template <typename T> __device__ __forceinline__ bool lt_vec_ok(const T *src, long long stride, int width) {
    return width % 8 == 0 && stride % 8 == 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0;
}

// dst[r * ld + c] = src[tok(r) * stride + c] for r < 64, c < ncols (16-bit);
// with `carry` (f32, the same indexing), src + decay * carry rounded once to T.
template <typename T, typename Tok>
__device__ __forceinline__ void lt_stage_rows(T *dst, int ld, int ncols, const T *src, long long stride, int len,
                                              int width, Tok tok, const float *carry = nullptr, float decay = 0.0f) {
    constexpr int V = 8;
    const T zero = Io<T>::store(0.0f);
    if (lt_vec_ok(src, stride, width) && (reinterpret_cast<uintptr_t>(carry) & 15) == 0) {
        const int per_row = ncols / V, items = LT_CHUNK * per_row;
        for (int i0 = threadIdx.x; i0 < items; i0 += 4 * (int)blockDim.x) {
            uint4 raw[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int i = i0 + u * blockDim.x, r = i / per_row, c = i % per_row * V;
                raw[u] = i < items && r < len && c < width ? *reinterpret_cast<const uint4 *>(src + tok(r) * stride + c)
                                                          : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int i = i0 + u * blockDim.x, r = i / per_row, c = i % per_row * V;
                if (carry && i < items && r < len && c < width) {
                    const float4 *cv = reinterpret_cast<const float4 *>(carry + tok(r) * stride + c);
                    const float4 lo = cv[0], hi = cv[1];
                    const float add[V] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                    Pack<T> pk;
                    pk.raw = raw[u];
#pragma unroll
                    for (int e = 0; e < V; e++) pk.elems[e] = Io<T>::store(Io<T>::load(pk.elems[e]) + decay * add[e]);
                    raw[u] = pk.raw;
                }
                if (i < items) *reinterpret_cast<uint4 *>(dst + r * ld + c) = raw[u];
            }
        }
    } else {
        for (int i = threadIdx.x; i < LT_CHUNK * ncols; i += blockDim.x) {
            const int r = i / ncols, c = i % ncols;
            T x = zero;
            if (r < len && c < width) {
                const long long at = tok(r) * stride + c;
                x = carry ? Io<T>::store(Io<T>::load(src[at]) + decay * carry[at]) : src[at];
            }
            dst[r * ld + c] = x;
        }
    }
}

// ---- the walk over chunks (16-bit I/O) --------------------------------------
// One operand's 64 x 64 tile of a chunk: rows are the chunk's tokens r (zero
// at r >= len), columns c < width of src (zero beyond). Warp w loads the
// 8-column packs (w >> 1) * 8 + 0, 16, 32, 48 of rows (w & 1) * 32 + lane:
// four 16-byte loads a thread, all issued before anything waits on them
// (element by element where `vec` is false). Needs 4 warps.
template <typename T, typename Tok>
__device__ __forceinline__ void lt_fetch_tile(uint4 (&raw)[4], const T *src, long long stride, int len, int width,
                                              bool vec, Tok tok) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int w = warp + 4 * u, r = (w & 1) * 32 + lane, c = (w >> 1) * 8;
        Pack<T> pk;
        if (vec && r < len && c < width) {
            pk.raw = *reinterpret_cast<const uint4 *>(src + tok(r) * stride + c);
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++)
                pk.elems[k] = r < len && c + k < width ? src[tok(r) * stride + c + k] : Io<T>::store(0.0f);
        }
        raw[u] = pk.raw;
    }
}

// The tile transposed into shared memory: dst[c * LT_LD16 + r] = tile(r, c) *
// scale(r) rounded to T (scale(r) is only asked for r < len).
template <typename T, typename Scale>
__device__ __forceinline__ void lt_put_transposed(T *dst, const uint4 (&raw)[4], int len, Scale scale) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int w = warp + 4 * u, r = (w & 1) * 32 + lane, c = (w >> 1) * 8;
        Pack<T> pk;
        pk.raw = raw[u];
        const float f = r < len ? scale(r) : 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) dst[(c + k) * LT_LD16 + r] = Io<T>::store(Io<T>::load(pk.elems[k]) * f);
    }
}

__host__ __device__ inline size_t lt_smem16_walk() { return (size_t)2 * 64 * LT_LD16 * 2 + LT_PW16 * 4; }

// The chunk-start states, one pass over the sequence. A block per (64 x 64
// tile of S^T, head, sequence) walks the sequence's chunks holding its tile in
// registers (f32, in the mma accumulator layout: warp w has rows n 16w ..
// 16w + 15 of the tile, value columns). At each chunk it writes the state at
// the chunk's start to the workspace, rounded to the I/O dtype (the outputs
// phase rounds it so anyway), as S^T: [chunk, head] blocks of dv rows of dq;
// then S^T <- decay^len S^T + V^T (decayed K) on the tensor cores, while the
// next two chunks' K and V tiles are on their way into registers. Writes the end
// state (f32, [dq, dv]) when asked. Grid: (tiles, heads, sequences).
template <typename T> __device__ void lightning_walk16(const LtPassArgs &a) {
    TK_DYNAMIC_SMEM(float, smem);
    const int dq = a.dq, dv = a.dv, cslices = (dq + 63) / 64;
    const int c_base = blockIdx.x % cslices * 64, n_base = blockIdx.x / cslices * 64;
    const int h = blockIdx.y, b = blockIdx.z / a.segs, seg = blockIdx.z % a.segs;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int n0 = warp * 16; // this warp's rows, within the tile
    const int len_all = lt_seq_len(a, b), count = (len_all + LT_CHUNK - 1) / LT_CHUNK;
    // this block's chunks [c0, c1): the sequence, or one segment of it
    const int c0 = seg * a.seg_chunks, c1 = a.seg_chunks ? min(count, c0 + a.seg_chunks) : count;
    if (seg > 0 && c0 >= count) return;
    float *pw = smem;
    T *kt = reinterpret_cast<T *>(smem + LT_PW16), *vt = kt + 64 * LT_LD16;
    const float lambda = a.decay[h];
    if (threadIdx.x <= LT_CHUNK) pw[threadIdx.x] = (float)exp((double)threadIdx.x * log((double)lambda));

    const int first = lt_first_chunk(a, b); // global index of this sequence's first chunk
    const long long start = a.packed ? a.offsets[b] : 0;
    auto base = [&](const LtLayout &l) { return (a.packed ? start * l.token : (long long)b * l.batch) + (long long)h * l.head; };
    const T *k = static_cast<const T *>(a.k) + base(a.lk) + c_base;
    const T *v = static_cast<const T *>(a.v) + base(a.lv) + n_base;
    auto tok = [&](int t) { return (long long)(a.reverse ? len_all - 1 - t : t); };
    const int kw = dq - c_base, vw = dv - n_base;
    const bool kvec = lt_vec_ok(k, a.lk.token, kw), vvec = lt_vec_ok(v, a.lv.token, vw);

    // this lane's state elements: (n, c) of acc[nt][e]
    auto row = [&](int e) { return n_base + n0 + g + (e >= 2 ? 8 : 0); };
    auto col = [&](int nt, int e) { return c_base + nt * 8 + 2 * tq + (e & 1); };
    const size_t si = ((size_t)b * a.heads + h) * (size_t)dq * dv;
    const float s0_scale = a.s0_over_decay ? (float)(1.0 / (double)lambda) : 1.0f;
    float acc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int n = row(e), c = col(nt, e);
            acc[nt][e] = a.s0 && seg == 0 && n < dv && c < dq
                             ? (a.s0_transposed ? a.s0[si + (size_t)n * dq + c] : a.s0[si + (size_t)c * dv + n]) * s0_scale
                             : 0.0f;
        }

    // K and V tiles of chunk `chunk` into registers
    auto fetch = [&](uint4(&kr)[4], uint4(&vr)[4], int chunk) {
        const int t1 = chunk * LT_CHUNK, len1 = min(LT_CHUNK, len_all - t1);
        auto at = [&](int j) { return tok(t1 + j); };
        lt_fetch_tile<T>(kr, k, a.lk.token, len1, kw, kvec, at);
        lt_fetch_tile<T>(vr, v, a.lv.token, len1, vw, vvec, at);
    };
    T *ws = reinterpret_cast<T *>(a.ws);
    // chunk cc from its registers, which then fetch chunk cc + 2: two chunks'
    // loads are in flight while one chunk's products run
    auto step = [&](uint4(&kr)[4], uint4(&vr)[4], int cc) {
        const int len = min(LT_CHUNK, len_all - cc * LT_CHUNK);
        __syncthreads(); // pw written; the last chunk's fragments read
        lt_put_transposed<T>(kt, kr, len, [&](int j) { return pw[len - 1 - j]; });
        lt_put_transposed<T>(vt, vr, len, [](int) { return 1.0f; });
        __syncthreads();
        if (cc + 2 < c1) fetch(kr, vr, cc + 2);
        // the state at this chunk's start, S^T rounded to T
        T *dst = ws + ((size_t)(first + cc) * a.heads + h) * (size_t)dq * dv;
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e += 2) {
                const int n = row(e), c = col(nt, e);
                if (n >= dv || c >= dq) continue;
                T *p = dst + (size_t)n * dq + c;
                if (dq % 2 == 0) {
                    *reinterpret_cast<uint32_t *>(p) = pack2<T>(acc[nt][e], acc[nt][e + 1]);
                } else {
                    p[0] = Io<T>::store(acc[nt][e]);
                    if (c + 1 < dq) p[1] = Io<T>::store(acc[nt][e + 1]);
                }
            }
        const float carry = pw[len];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[nt][e] *= carry;
        // A = V^T (rows n, k = tokens j), B = decayed K (k = j, columns c)
#pragma unroll
        for (int j0 = 0; j0 < LT_CHUNK; j0 += 16) {
            const uint32_t af[4] = {ld32(&vt[(n0 + g) * LT_LD16 + j0 + 2 * tq]), ld32(&vt[(n0 + g + 8) * LT_LD16 + j0 + 2 * tq]),
                                    ld32(&vt[(n0 + g) * LT_LD16 + j0 + 2 * tq + 8]),
                                    ld32(&vt[(n0 + g + 8) * LT_LD16 + j0 + 2 * tq + 8])};
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const uint32_t bf[2] = {ld32(&kt[(nt * 8 + g) * LT_LD16 + j0 + 2 * tq]),
                                        ld32(&kt[(nt * 8 + g) * LT_LD16 + j0 + 2 * tq + 8])};
                Mma<T>::run(acc[nt], af, bf);
            }
        }
    };
    uint4 k0[4], v0[4], k1[4], v1[4];
    if (c0 < c1) fetch(k0, v0, c0);
    if (c0 + 1 < c1) fetch(k1, v1, c0 + 1);
    for (int cc = c0; cc < c1; cc += 2) {
        step(k0, v0, cc);
        if (cc + 1 < c1) step(k1, v1, cc + 1);
    }
    // the end state: a segment's local one goes to the next segment's carry
    // slot (S^T); the sequence's to s_out (lightning_carry16 then adds the
    // carry of a segmented walk)
    float *dst = nullptr, f = 1.0f;
    size_t n_step = 0, c_step = 0;
    if (c1 < count) {
        dst = lt_carry(a, lt_carries(a), first, seg + 1, h), n_step = dq, c_step = 1;
    } else if (a.s_out) {
        dst = a.s_out + si, n_step = 1, c_step = dv;
        f = a.s_out_times_decay ? lambda : 1.0f;
    }
    if (dst) {
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int n = row(e), c = col(nt, e);
                if (n < dv && c < dq) dst[n * n_step + c * c_step] = acc[nt][e] * f;
            }
    }
}

// The carries of segmented walks, in place: slot s (holding E_{s-1}) becomes
// C_s, and the end state gains decay^len C_last. Grid: (dq dv / 256, heads,
// sequences); an element of S^T a thread.
__device__ void lightning_carry16(const LtPassArgs &a) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int dq = a.dq, dv = a.dv;
    const int len_all = lt_seq_len(a, b), count = (len_all + LT_CHUNK - 1) / LT_CHUNK, G = a.seg_chunks;
    if (e >= dq * dv || count <= G) return;
    const int first = lt_first_chunk(a, b), segs = (count + G - 1) / G;
    const float lambda = a.decay[h], full = lt_decay_pow(lambda, (long long)G * LT_CHUNK);
    float *carries = lt_carries(a), carry = 0.0f;
    for (int s = 1; s < segs; s++) {
        float *slot = lt_carry(a, carries, first, s, h) + e;
        carry = *slot + full * carry;
        *slot = carry;
    }
    if (a.s_out) {
        const int n = e / dq, c = e % dq;
        const float f = a.s_out_times_decay ? lambda : 1.0f;
        const float last = lt_decay_pow(lambda, len_all - (long long)(segs - 1) * G * LT_CHUNK);
        a.s_out[((size_t)b * a.heads + h) * (size_t)dq * dv + (size_t)c * dv + n] += f * last * carry;
    }
}

// One chunk's outputs O = diag(decay^(i+1)) Q S + P V, P = (Q K^T) .* mask,
// from the chunk's start state in the workspace. 4 warps, 16 rows each. Q, K
// and P once per chunk; then the value columns 64 at a time (S^T and V^T of
// the slice staged, the slice's outputs written).
template <typename T> __device__ void lightning_outputs16(const LtPassArgs &a) {
    TK_DYNAMIC_SMEM(float, smem);
    const int unit = blockIdx.x, h = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int dq = a.dq, dqp = (dq + 15) / 16 * 16, ldq = lt_ld16q(dq);
    float *pw = smem;
    T *sq = reinterpret_cast<T *>(smem + LT_PW16), *sk = sq + 64 * ldq, *st = sk + 64 * ldq;
    T *vt = st + 64 * ldq, *sp = vt + 64 * LT_LD16;
    const float lambda = a.decay[h];
    if (threadIdx.x <= LT_CHUNK) pw[threadIdx.x] = (float)exp((double)threadIdx.x * log((double)lambda));
    int b, cc;
    lt_chunk_of(a, unit, b, cc);
    const int len_all = lt_seq_len(a, b), t0 = cc * LT_CHUNK, len = min(LT_CHUNK, len_all - t0);
    const long long start = a.packed ? a.offsets[b] : 0;
    auto base = [&](const LtLayout &l) { return (a.packed ? start * l.token : (long long)b * l.batch) + (long long)h * l.head; };
    const T *q = static_cast<const T *>(a.q) + base(a.lq), *k = static_cast<const T *>(a.k) + base(a.lk);
    const T *v = static_cast<const T *>(a.v) + base(a.lv);
    T *o = static_cast<T *>(a.o) + base(a.lo);
    // S^T from the walk's workspace: rows n of dq elements
    const T *ws = reinterpret_cast<const T *>(a.ws) + ((size_t)unit * a.heads + h) * (size_t)dq * a.dv;
    auto tok = [&](int t) { return (long long)(a.reverse ? len_all - 1 - t : t); };
    auto chunk_tok = [&](int j) { return tok(t0 + j); };
    // the slice's S^T rows and V^T (the walk's tile transpose: 64 columns, 4 warps)
    // a segmented walk's chunk past its first segment: S = local S + decay^t C_s
    const int seg = a.seg_chunks ? cc / a.seg_chunks : 0;
    const float *carry = seg > 0 ? lt_carry(a, lt_carries(a), unit - cc, seg, h) : nullptr;
    const float carry_decay = seg > 0 ? lt_decay_pow(lambda, (long long)(cc - seg * a.seg_chunks) * LT_CHUNK) : 0.0f;
    auto stage_slice = [&](int c_base) {
        const int cols = min(LT_SLICE, a.dv - c_base);
        const float *slice_carry = carry ? carry + (size_t)c_base * dq : nullptr;
        lt_stage_rows<T>(st, ldq, dqp, ws + (size_t)c_base * dq, (long long)dq, cols, dq, [](int n) { return (long long)n; },
                         slice_carry, carry_decay);
        uint4 raw[4];
        lt_fetch_tile<T>(raw, v + c_base, a.lv.token, len, cols, lt_vec_ok(v + c_base, a.lv.token, cols), chunk_tok);
        lt_put_transposed<T>(vt, raw, len, [](int) { return 1.0f; });
    };
    lt_stage_rows<T>(sq, ldq, dqp, q, a.lq.token, len, dq, chunk_tok);
    lt_stage_rows<T>(sk, ldq, dqp, k, a.lk.token, len, dq, chunk_tok);
    stage_slice(0);
    __syncthreads();
    const int r0 = warp * 16;
    auto afrag = [&](const T *m, int ld, int k0, uint32_t (&f)[4]) {
        f[0] = ld32(&m[(r0 + g) * ld + k0 + 2 * tq]);
        f[1] = ld32(&m[(r0 + g + 8) * ld + k0 + 2 * tq]);
        f[2] = ld32(&m[(r0 + g) * ld + k0 + 2 * tq + 8]);
        f[3] = ld32(&m[(r0 + g + 8) * ld + k0 + 2 * tq + 8]);
    };
    // P for this warp's rows, columns up to its last row (only this warp reads them)
    {
        float acc[8][4] = {};
        const int ntiles = (r0 + 16) / 8;
        for (int k0 = 0; k0 < dqp; k0 += 16) {
            uint32_t af[4];
            afrag(sq, ldq, k0, af);
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
                if (nt < ntiles) {
                    const uint32_t bf[2] = {ld32(&sk[(nt * 8 + g) * ldq + k0 + 2 * tq]),
                                            ld32(&sk[(nt * 8 + g) * ldq + k0 + 2 * tq + 8])};
                    Mma<T>::run(acc[nt], af, bf);
                }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = r0 + g + (e >= 2 ? 8 : 0), j = nt * 8 + 2 * tq + (e & 1);
                if (nt < ntiles) sp[i * LT_LD16 + j] = Io<T>::store(j <= i ? acc[nt][e] * pw[i - j] : 0.0f);
            }
    }
    __syncwarp();
    const float d0 = pw[r0 + g + 1], d1 = pw[r0 + g + 9];
    for (int c_base = 0; c_base < a.dv; c_base += LT_SLICE) {
        if (c_base > 0) {
            __syncthreads(); // every warp is done with the last slice's S^T and V^T
            stage_slice(c_base);
            __syncthreads();
        }
        float acc[LT_SLICE / 8][4] = {};
        for (int k0 = 0; k0 < dqp; k0 += 16) {
            uint32_t af[4];
            afrag(sq, ldq, k0, af);
#pragma unroll
            for (int nt = 0; nt < LT_SLICE / 8; nt++) {
                const uint32_t bf[2] = {ld32(&st[(nt * 8 + g) * ldq + k0 + 2 * tq]),
                                        ld32(&st[(nt * 8 + g) * ldq + k0 + 2 * tq + 8])};
                Mma<T>::run(acc[nt], af, bf);
            }
        }
#pragma unroll
        for (int nt = 0; nt < LT_SLICE / 8; nt++) {
            acc[nt][0] *= d0, acc[nt][1] *= d0, acc[nt][2] *= d1, acc[nt][3] *= d1;
        }
        for (int k0 = 0; k0 < r0 + 16; k0 += 16) {
            uint32_t af[4];
            afrag(sp, LT_LD16, k0, af);
#pragma unroll
            for (int nt = 0; nt < LT_SLICE / 8; nt++) {
                const uint32_t bf[2] = {ld32(&vt[(nt * 8 + g) * LT_LD16 + k0 + 2 * tq]),
                                        ld32(&vt[(nt * 8 + g) * LT_LD16 + k0 + 2 * tq + 8])};
                Mma<T>::run(acc[nt], af, bf);
            }
        }
        const int cols = min(LT_SLICE, a.dv - c_base);
#pragma unroll
        for (int nt = 0; nt < LT_SLICE / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = r0 + g + (e >= 2 ? 8 : 0), n = nt * 8 + 2 * tq + (e & 1);
                if (i < len && n < cols) o[tok(t0 + i) * a.lo.token + c_base + n] = Io<T>::store(acc[nt][e]);
            }
    }
}

struct LtDecodeArgs {
    const void *q, *k, *v;
    void *o;
    float *state;
    int count, heads, dk, dv;
    float decay[LT_MAX_HEADS];
};

// One block per (sequence, head), a thread per value column: S's rows are read
// and written once, coalesced.
template <typename T> __device__ void lightning_decode(const LtDecodeArgs &a) {
    const int i = blockIdx.x, e = threadIdx.x;
    if (e >= a.dv) return;
    const float lambda = a.decay[i % a.heads];
    const T *q = static_cast<const T *>(a.q) + (size_t)i * a.dk, *k = static_cast<const T *>(a.k) + (size_t)i * a.dk;
    const float ve = Io<T>::load(static_cast<const T *>(a.v)[(size_t)i * a.dv + e]);
    float *s = a.state + (size_t)i * a.dk * a.dv + e;
    float acc = 0.0f;
    for (int c = 0; c < a.dk; c++) {
        const float sv = fmaf(Io<T>::load(k[c]), ve, lambda * s[(size_t)c * a.dv]);
        s[(size_t)c * a.dv] = sv;
        acc = fmaf(Io<T>::load(q[c]), sv, acc);
    }
    static_cast<T *>(a.o)[(size_t)i * a.dv + e] = Io<T>::store(acc);
}

} // namespace tk

extern "C" __global__ void __launch_bounds__(256) tk_lightning_scan(const __grid_constant__ tk::LtPassArgs a) {
    tk::lightning_scan(a);
}
extern "C" __global__ void __launch_bounds__(256) tk_lightning_carry16(const __grid_constant__ tk::LtPassArgs a) {
    tk::lightning_carry16(a);
}

#define TK_LIGHTNING(dt, T)                                                                        \
    extern "C" __global__ void __launch_bounds__(128) tk_lightning_pass_##dt##_cuda(const __grid_constant__ tk::LtPassArgs a) { \
        tk::lightning_pass<T>(a);                                                                   \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(256)                                               \
        tk_lightning_decode_##dt##_cuda(const __grid_constant__ tk::LtDecodeArgs a) {                                       \
        tk::lightning_decode<T>(a);                                                                 \
    }
#define TK_LIGHTNING16(dt, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(128, 3)                                            \
        tk_lightning_walk16_##dt##_cuda(const __grid_constant__ tk::LtPassArgs a) {                 \
        tk::lightning_walk16<T>(a);                                                                 \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(128)                                               \
        tk_lightning_outputs16_##dt##_cuda(const __grid_constant__ tk::LtPassArgs a) {              \
        tk::lightning_outputs16<T>(a);                                                              \
    }
TK_LIGHTNING(f32, float)
TK_LIGHTNING(f16, __half)
TK_LIGHTNING(bf16, __nv_bfloat16)
TK_LIGHTNING16(f16, __half)
TK_LIGHTNING16(bf16, __nv_bfloat16)
