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

/* max |v| and NaN-or-inf detection (chk += v * 0) over what the last step
 * stores, so the epilogue needs no extra sweep for them. The output scale
 * comes after: max |fl(v os)| = fl(|os| max |v|), rounding being monotonic,
 * and a v os that overflows makes that product inf. */
typedef struct tk_kron_absmax {
    tkv amax, chk;
} tk_kron_absmax;

static TK_ALWAYS_INLINE void tk_kron_track(tk_kron_absmax *am, tkv v) {
    am->amax = tkv_max(am->amax, tkv_abs(v));
    am->chk = tkv_add(am->chk, tkv_mul(v, tkv_zero()));
}

/* c (m x cols, row stride cols) = a (m x k, row stride k) b (k x cols, row
 * stride cols): every tile of TK_MR rows by TK_TILE_COLS columns summed in
 * registers over the whole k, then stored once. */
static void tk_kron_product(const float *a, size_t m, size_t k, const float *b, size_t cols, float *c,
                            tk_kron_pf *pf, size_t pf_lines, tk_kron_absmax *am) {
    tk_kron_pf_plan(pf, ((cols + TK_TILE_COLS - 1) / TK_TILE_COLS) * ((m + TK_MR - 1) / TK_MR), pf_lines);
    /* a local copy: through the pointer, every float store to c could alias
     * the accumulators and GCC would reload them */
    tk_kron_absmax acc = am ? *am : (tk_kron_absmax){tkv_zero(), tkv_zero()};
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

/* Vectors a butterfly group holds in registers: 16 where there are 32 of
 * them (AVX-512), else 8. */
#define TK_KRON_RADIX (TKV_W >= 16 ? 16 : 8)

/* The Hadamard transform of order c (2, 4, 8 or 16; a constant after
 * inlining) across the c vectors in v, written out so the vectors stay in
 * registers; strides ascending, as every path here runs them (the same
 * additions in the same order, so the same bits, whatever the split of n). */
static TK_ALWAYS_INLINE void tk_kron_fwht_regs(tkv *v, int c) {
    for (int b = 0; b < (c >= 16 ? 16 : c); b += 8) { /* each block of up to 8 */
        tkv *u = v + b;
        if (c >= 2) {
            TK_KRON_BF(u[0], u[1]);
        }
        if (c >= 4) {
            TK_KRON_BF(u[2], u[3]);
            TK_KRON_BF(u[0], u[2]);
            TK_KRON_BF(u[1], u[3]);
        }
        if (c >= 8) {
            TK_KRON_BF(u[4], u[5]);
            TK_KRON_BF(u[6], u[7]);
            TK_KRON_BF(u[4], u[6]);
            TK_KRON_BF(u[5], u[7]);
            TK_KRON_BF(u[0], u[4]);
            TK_KRON_BF(u[1], u[5]);
            TK_KRON_BF(u[2], u[6]);
            TK_KRON_BF(u[3], u[7]);
        }
    }
    if (c >= 16)
        for (int k = 0; k < 8; k++) TK_KRON_BF(v[k], v[k + 8]);
}

/* One sweep of up to log2(TK_KRON_RADIX) stages across rows: rows r, r + h,
 * ..., r + (c-1) h of every group, `m` lanes at column j, transformed in
 * registers. */
static TK_ALWAYS_INLINE void tk_kron_across_group(float *p, size_t h_stride, size_t m, int c, tk_kron_absmax *am) {
    tkv v[TK_KRON_RADIX];
#pragma GCC unroll 16
    for (int k = 0; k < c; k++) v[k] = tkv_load_f32(p + (size_t)k * h_stride, m);
    tk_kron_fwht_regs(v, c);
#pragma GCC unroll 16
    for (int k = 0; k < c; k++) {
        tkv_store_f32(p + (size_t)k * h_stride, m, v[k]);
        if (am) tk_kron_track(am, v[k]);
    }
}

/* The stages from stride h0 (a power of two) on of the Hadamard transform of
 * order `rows` (a power of two) across the rows of buf (rows x len): row i
 * becomes sum_r H[i][r] row r once h0 = 1; up to log2(TK_KRON_RADIX)
 * stages a sweep. */
static void tk_kron_fwht_across(float *buf, size_t rows, size_t len, size_t h0, tk_kron_pf *pf, size_t pf_lines,
                                tk_kron_absmax *am) {
    size_t sweeps = 0;
    for (size_t h = h0; h < rows; h *= TK_KRON_RADIX) sweeps++;
    const size_t groups = ((len + TKV_W - 1) / TKV_W) * (rows / TK_KRON_RADIX ? rows / TK_KRON_RADIX : 1);
    tk_kron_pf_plan(pf, groups * sweeps, pf_lines);
    tk_kron_absmax acc = am ? *am : (tk_kron_absmax){tkv_zero(), tkv_zero()}; /* see tk_kron_product */
    for (size_t h = h0; h < rows;) {
        const int c = rows / h >= TK_KRON_RADIX ? TK_KRON_RADIX : (int)(rows / h);
        tk_kron_absmax *track = am && h * (size_t)c >= rows ? &acc : NULL; /* the last sweep */
        for (size_t i = 0; i < rows; i += h * (size_t)c)
            for (size_t r = i; r < i + h; r++)
                for (size_t j = 0; j < len; j += TKV_W) {
                    const size_t m = len - j < TKV_W ? len - j : TKV_W;
                    float *p = buf + r * len + j;
                    TK_KRON_PREFETCH(pf);
                    switch (c) {
#if TK_KRON_RADIX >= 16
                    case 16: tk_kron_across_group(p, h * len, m, 16, track); break;
#endif
                    case 8: tk_kron_across_group(p, h * len, m, 8, track); break;
                    case 4: tk_kron_across_group(p, h * len, m, 4, track); break;
                    default: tk_kron_across_group(p, h * len, m, 2, track); break;
                    }
                }
        h *= (size_t)c;
    }
    if (am) *am = acc;
}

/* The Hadamard transform of order len (a power of two below a vector: rows
 * at least a vector long go through the first sweep straight from x, see
 * kron.inc) along each of the `rows` rows of buf: plain butterflies. */
static void tk_kron_fwht_short_rows(float *buf, size_t rows, size_t len) {
    for (size_t r = 0; r < rows; r++)
        for (size_t h = 1; h < len; h <<= 1)
            for (size_t i = 0; i < len; i += 2 * h)
                for (size_t j = i; j < i + h; j++) {
                    float *x = buf + r * len;
                    const float a = x[j], b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
}

#endif
