/* Register-blocked f32 matrix tiles on the tkv interface (included after a
 * vec_*.h): the block products of the lightning kernels. A tile is TK_MR rows
 * by up to TK_NV vectors of TKV_W columns, held in registers while a product
 * sums over its inner dimension:
 *   tile[r][col] += sum_{p < K} a[r * lda + p] * b[p * ldb + col].
 * Every product of the block scheme (Q K^T, A V, Q S, K^T V) has this shape
 * once K is stored transposed, so this is the only inner loop. */
#ifndef TK_LIGHTNING_TILE_H
#define TK_LIGHTNING_TILE_H

#include "../common/template.h"

#define TK_MR 4
#define TK_NV 4
#define TK_TILE_COLS (TK_NV * TKV_W)

typedef struct tk_tile {
    tkv v[TK_MR][TK_NV];
} tk_tile;

static TK_ALWAYS_INLINE void tk_tile_zero(tk_tile *t) {
    for (int r = 0; r < TK_MR; r++)
        for (int v = 0; v < TK_NV; v++) t->v[r][v] = tkv_zero();
}

/* Lanes of vector v of a tile whose row holds `cols` columns (0 past the end). */
static TK_ALWAYS_INLINE size_t tk_tile_lanes(size_t cols, int v) {
    const size_t start = (size_t)v * TKV_W;
    return cols <= start ? 0 : cols - start < TKV_W ? cols - start : TKV_W;
}

/* The product loop for nv vectors (a constant after inlining), the last one
 * `last` lanes wide. Rows r >= m of a alias row 0: their sums are not used. */
static TK_ALWAYS_INLINE void tk_tile_fma_nv(tk_tile *t, int nv, const float *a, size_t lda, size_t m,
                                            const float *b, size_t ldb, size_t k, size_t last) {
    const float *a0 = a, *a1 = a + (m > 1 ? lda : 0), *a2 = a + (m > 2 ? 2 * lda : 0),
                *a3 = a + (m > 3 ? 3 * lda : 0);
    for (size_t p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        tkv bv[TK_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = tkv_load_f32(bp + v * TKV_W, v == nv - 1 ? last : TKV_W);
        const tkv x0 = tkv_set1(a0[p]), x1 = tkv_set1(a1[p]), x2 = tkv_set1(a2[p]), x3 = tkv_set1(a3[p]);
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            t->v[0][v] = tkv_fmadd(x0, bv[v], t->v[0][v]);
            t->v[1][v] = tkv_fmadd(x1, bv[v], t->v[1][v]);
            t->v[2][v] = tkv_fmadd(x2, bv[v], t->v[2][v]);
            t->v[3][v] = tkv_fmadd(x3, bv[v], t->v[3][v]);
        }
    }
}

/* tile += a (m rows, k terms) x b (k rows, cols <= TK_TILE_COLS columns). */
static TK_ALWAYS_INLINE void tk_tile_fma(tk_tile *t, const float *a, size_t lda, size_t m, const float *b,
                                         size_t ldb, size_t k, size_t cols) {
    const int nv = (int)((cols + TKV_W - 1) / TKV_W);
    const size_t last = cols - (size_t)(nv - 1) * TKV_W;
    switch (nv) {
    case 1: tk_tile_fma_nv(t, 1, a, lda, m, b, ldb, k, last); break;
    case 2: tk_tile_fma_nv(t, 2, a, lda, m, b, ldb, k, last); break;
    case 3: tk_tile_fma_nv(t, 3, a, lda, m, b, ldb, k, last); break;
    default: tk_tile_fma_nv(t, 4, a, lda, m, b, ldb, k, last); break;
    }
}

#endif
