/* The dtype-independent steps of a Kronecker transform on one token held as
 * an f32 n1 x n2 row-major matrix in the workspace (included after a vec_*.h):
 * a dense factor is a register-tiled product, a Hadamard factor a fast
 * Walsh-Hadamard transform (unnormalised butterflies, up to three stages per
 * sweep so the buffer is swept few times). Every step also prefetches a
 * share of the next token's x, so its load hides behind this token's work,
 * and the last one can track max|y| as it stores. */
#ifndef TK_KRON_STEPS_H
#define TK_KRON_STEPS_H

#include "../common/tile.h"

/* A prefetch cursor over the next token's bytes: each unit of work (a tile,
 * a butterfly group) prefetches `quota` more lines, into L2 (the factors and
 * the two token copies already fill L1). */
typedef struct tk_kron_pf {
    const char *p, *end;
    size_t quota;
} tk_kron_pf;

/* Spread `lines` cache lines over `units` units of work. */
static inline void tk_kron_pf_plan(tk_kron_pf *pf, size_t units, size_t lines) {
    pf->quota = units ? (lines + units - 1) / units : 0;
}

/* A macro, not a function: GCC deletes calls of a function whose only effect
 * is a prefetch. */
#define TK_KRON_PREFETCH(pf)                                                                  \
    do {                                                                                      \
        for (size_t q_ = 0; q_ < (pf)->quota && (pf)->p < (pf)->end; q_++, (pf)->p += 64)     \
            tkv_prefetch_l2((pf)->p);                                                          \
    } while (0)

/* max |v * os| and NaN-or-inf detection (chk += v * 0) over what the last
 * step stores, so the epilogue needs no extra sweep for them. */
typedef struct tk_kron_absmax {
    tkv os, amax, chk;
} tk_kron_absmax;

static TK_ALWAYS_INLINE void tk_kron_track(tk_kron_absmax *am, tkv v) {
    const tkv y = tkv_mul(v, am->os);
    am->amax = tkv_max(am->amax, tkv_abs(y));
    am->chk = tkv_add(am->chk, tkv_mul(y, tkv_zero()));
}

/* c (m x cols, row stride cols) = a (m x k, row stride k) b (k x cols, row
 * stride cols): every tile of TK_MR rows by TK_TILE_COLS columns summed in
 * registers over the whole k, then stored once. */
static void tk_kron_product(const float *a, size_t m, size_t k, const float *b, size_t cols, float *c,
                            tk_kron_pf *pf, size_t pf_lines, tk_kron_absmax *am) {
    tk_kron_pf_plan(pf, ((cols + TK_TILE_COLS - 1) / TK_TILE_COLS) * ((m + TK_MR - 1) / TK_MR), pf_lines);
    /* a local copy: through the pointer, every float store to c could alias
     * the accumulators and GCC would reload them */
    tk_kron_absmax acc = am ? *am : (tk_kron_absmax){tkv_zero(), tkv_zero(), tkv_zero()};
    for (size_t j0 = 0; j0 < cols; j0 += TK_TILE_COLS) {
        const size_t nc = cols - j0 < TK_TILE_COLS ? cols - j0 : TK_TILE_COLS;
        for (size_t i0 = 0; i0 < m; i0 += TK_MR) {
            const size_t rows = m - i0 < TK_MR ? m - i0 : TK_MR;
            TK_KRON_PREFETCH(pf);
            tk_tile t;
            tk_tile_zero(&t);
            tk_tile_fma(&t, a + i0 * k, k, rows, b + j0, cols, k, nc);
            for (size_t r = 0; r < rows; r++)
                for (int v = 0; v < TK_NV; v++) {
                    const size_t w = tk_tile_lanes(nc, v);
                    if (w) {
                        tkv_store_f32(c + (i0 + r) * cols + j0 + (size_t)v * TKV_W, w, t.v[r][v]);
                        if (am) tk_kron_track(&acc, t.v[r][v]); /* lanes past w hold 0 */
                    }
                }
        }
    }
    if (am) *am = acc;
}

#define TK_KRON_BF(a, b)                                                                      \
    do {                                                                                      \
        const tkv t_ = (a);                                                                   \
        (a) = tkv_add(t_, (b));                                                               \
        (b) = tkv_sub(t_, (b));                                                               \
    } while (0)

/* The Hadamard transform of order c (2, 4 or 8; a constant after inlining)
 * across the c vectors in v, written out so the vectors stay in registers. */
static TK_ALWAYS_INLINE void tk_kron_fwht_regs(tkv *v, int c) {
    if (c >= 2) {
        TK_KRON_BF(v[0], v[1]);
    }
    if (c >= 4) {
        TK_KRON_BF(v[2], v[3]);
        TK_KRON_BF(v[0], v[2]);
        TK_KRON_BF(v[1], v[3]);
    }
    if (c >= 8) {
        TK_KRON_BF(v[4], v[5]);
        TK_KRON_BF(v[6], v[7]);
        TK_KRON_BF(v[4], v[6]);
        TK_KRON_BF(v[5], v[7]);
        TK_KRON_BF(v[0], v[4]);
        TK_KRON_BF(v[1], v[5]);
        TK_KRON_BF(v[2], v[6]);
        TK_KRON_BF(v[3], v[7]);
    }
}

/* One sweep of up to three stages across rows: rows r, r + h, ..., r + (c-1) h
 * of every group, `m` lanes at column j, transformed in registers. */
static TK_ALWAYS_INLINE void tk_kron_across_group(float *p, size_t h_stride, size_t m, int c, tk_kron_absmax *am) {
    tkv v[8];
#pragma GCC unroll 8
    for (int k = 0; k < c; k++) v[k] = tkv_load_f32(p + (size_t)k * h_stride, m);
    tk_kron_fwht_regs(v, c);
#pragma GCC unroll 8
    for (int k = 0; k < c; k++) {
        tkv_store_f32(p + (size_t)k * h_stride, m, v[k]);
        if (am) tk_kron_track(am, v[k]);
    }
}

/* The Hadamard transform of order `rows` (a power of two) applied across the
 * rows of buf (rows x len): row i becomes sum_r H[i][r] row r; stages h, 2h,
 * 4h together (radix 8), so log2(rows) / 3 sweeps. */
static void tk_kron_fwht_across(float *buf, size_t rows, size_t len, tk_kron_pf *pf, size_t pf_lines,
                                tk_kron_absmax *am) {
    size_t sweeps = 0;
    for (size_t h = 1; h < rows; h *= 8) sweeps++;
    const size_t groups = ((len + TKV_W - 1) / TKV_W) * (rows / 8 ? rows / 8 : 1);
    tk_kron_pf_plan(pf, groups * sweeps, pf_lines);
    tk_kron_absmax acc = am ? *am : (tk_kron_absmax){tkv_zero(), tkv_zero(), tkv_zero()}; /* see tk_kron_product */
    for (size_t h = 1; h < rows;) {
        const int c = rows / h >= 8 ? 8 : (int)(rows / h);
        tk_kron_absmax *track = am && h * (size_t)c >= rows ? &acc : NULL; /* the last sweep */
        for (size_t i = 0; i < rows; i += h * (size_t)c)
            for (size_t r = i; r < i + h; r++)
                for (size_t j = 0; j < len; j += TKV_W) {
                    const size_t m = len - j < TKV_W ? len - j : TKV_W;
                    float *p = buf + r * len + j;
                    TK_KRON_PREFETCH(pf);
                    switch (c) {
                    case 8: tk_kron_across_group(p, h * len, m, 8, track); break;
                    case 4: tk_kron_across_group(p, h * len, m, 4, track); break;
                    default: tk_kron_across_group(p, h * len, m, 2, track); break;
                    }
                }
        h *= (size_t)c;
    }
    if (am) *am = acc;
}

/* c vectors of a row from p: the stages inside each vector (tkv_fwht_lanes),
 * then those between the c vectors, one load and one store each. */
static TK_ALWAYS_INLINE void tk_kron_row_chunk(float *p, int c) {
    tkv v[8];
#pragma GCC unroll 8
    for (int k = 0; k < c; k++) v[k] = tkv_fwht_lanes(tkv_load_f32(p + (size_t)k * TKV_W, TKV_W));
    tk_kron_fwht_regs(v, c);
#pragma GCC unroll 8
    for (int k = 0; k < c; k++) tkv_store_f32(p + (size_t)k * TKV_W, TKV_W, v[k]);
}

/* The Hadamard transform of order len (a power of two) along each of the
 * `rows` rows of buf: chunks of up to 8 vectors in registers, then (rows
 * longer than 8 vectors) butterflies between chunks. */
static void tk_kron_fwht_rows(float *buf, size_t rows, size_t len, tk_kron_pf *pf, size_t pf_lines) {
    if (len < TKV_W) { /* shorter than a vector: plain butterflies */
        for (size_t r = 0; r < rows; r++)
            for (size_t h = 1; h < len; h <<= 1)
                for (size_t i = 0; i < len; i += 2 * h)
                    for (size_t j = i; j < i + h; j++) {
                        float *x = buf + r * len;
                        const float a = x[j], b = x[j + h];
                        x[j] = a + b;
                        x[j + h] = a - b;
                    }
        return;
    }
    const size_t nv = len / TKV_W;
    const int c = nv >= 8 ? 8 : (int)nv;
    tk_kron_pf_plan(pf, rows * (nv / (size_t)c), pf_lines);
    for (size_t r = 0; r < rows; r++) {
        float *row = buf + r * len;
        for (size_t j = 0; j < len; j += (size_t)c * TKV_W) {
            TK_KRON_PREFETCH(pf);
            switch (c) {
            case 8: tk_kron_row_chunk(row + j, 8); break;
            case 4: tk_kron_row_chunk(row + j, 4); break;
            case 2: tk_kron_row_chunk(row + j, 2); break;
            default: tk_kron_row_chunk(row + j, 1); break;
            }
        }
        for (size_t h = (size_t)c * TKV_W; h < len; h <<= 1)
            for (size_t i = 0; i < len; i += 2 * h)
                for (size_t j = i; j < i + h; j += TKV_W) {
                    const tkv a = tkv_load_f32(row + j, TKV_W), b = tkv_load_f32(row + j + h, TKV_W);
                    tkv_store_f32(row + j, TKV_W, tkv_add(a, b));
                    tkv_store_f32(row + j + h, TKV_W, tkv_sub(a, b));
                }
    }
}

#endif
