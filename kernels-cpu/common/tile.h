/* Register-blocked f32 matrix tiles on the tkv interface (included after a
 * vec_*.h): the block products of the lightning and Kronecker kernels. A tile is TK_MR rows
 * by up to TK_NV vectors of TKV_W columns, held in registers while a product
 * sums over its inner dimension:
 *   tile[r][col] += sum_{p < K} a[r * lda + p] * b[p * ldb + col].
 * Every product of the block scheme (Q K^T, A V, Q S, K^T V) has this shape
 * once K is stored transposed, so this is the only inner loop; the Kronecker
 * transforms (kron/) use it for both factor products. */
#ifndef TK_COMMON_TILE_H
#define TK_COMMON_TILE_H

#include "template.h"

/* Tile shapes per vector width: 16 (AVX-512, 32 registers): 6 rows x 4
 * vectors, 24 accumulators, 10 loads (4 B vectors, 6 broadcasts) per 24 FMAs
 * (8 x 2 had 10 per 16: 40% -> 52% of the FMA peak, docs/lightning.md); 8
 * (AVX2, 16 registers) and scalar: 4 x 2, 8 accumulators (enough chains to
 * hide the FMA latency; 4 x 4 spilled). */
#if TKV_W >= 16
#define TK_MR 6
#define TK_NV 4
#else
#define TK_MR 4
#define TK_NV 2
#endif
#define TK_TILE_COLS (TK_NV * TKV_W)

typedef struct tk_tile {
    tkv v[TK_MR][TK_NV];
} tk_tile;

static TK_ALWAYS_INLINE void tk_tile_zero(tk_tile *t) {
#pragma GCC unroll 8
    for (int r = 0; r < TK_MR; r++)
#pragma GCC unroll 4
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
    const float *ar[TK_MR];
#pragma GCC unroll 8
    for (int r = 0; r < TK_MR; r++) ar[r] = a + ((size_t)r < m ? (size_t)r * lda : 0);
    /* a local copy: GCC keeps it in registers, but stored the tile behind the
     * pointer back to memory on every step (16 stores per 16 FMAs) */
    tk_tile acc = *t;
    for (size_t p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        tkv bv[TK_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = tkv_load_f32(bp + v * TKV_W, v == nv - 1 ? last : TKV_W);
#pragma GCC unroll 8
        for (int r = 0; r < TK_MR; r++) {
            const tkv x = tkv_set1(ar[r][p]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc.v[r][v] = tkv_fmadd(x, bv[v], acc.v[r][v]);
        }
    }
    *t = acc;
}

/* tile += a (m rows, k terms) x b (k rows, cols <= TK_TILE_COLS columns). */
static TK_ALWAYS_INLINE void tk_tile_fma(tk_tile *t, const float *a, size_t lda, size_t m, const float *b,
                                         size_t ldb, size_t k, size_t cols) {
    const int nv = (int)((cols + TKV_W - 1) / TKV_W);
    const size_t last = cols - (size_t)(nv - 1) * TKV_W;
    switch (nv) {
    case 1: tk_tile_fma_nv(t, 1, a, lda, m, b, ldb, k, last); break;
    case 2: tk_tile_fma_nv(t, 2, a, lda, m, b, ldb, k, last); break;
#if TK_NV > 2
    case 3: tk_tile_fma_nv(t, 3, a, lda, m, b, ldb, k, last); break;
    case 4: tk_tile_fma_nv(t, 4, a, lda, m, b, ldb, k, last); break;
#endif
    }
}

#endif
