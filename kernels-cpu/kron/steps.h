/* The dtype-independent steps of a Kronecker transform on one token held as
 * an f32 n1 x n2 row-major matrix in the workspace (included after a vec_*.h
 * and tile.h): a dense factor is a register-tiled product, a Hadamard factor
 * a fast Walsh-Hadamard transform (unnormalised butterflies). */
#ifndef TK_KRON_STEPS_H
#define TK_KRON_STEPS_H

#include "../common/tile.h"

/* c (m x cols, row stride cols) = a (m x k, row stride k) b (k x cols, row
 * stride cols): every tile of TK_MR rows by TK_TILE_COLS columns summed in
 * registers over the whole k, then stored once. */
static void tk_kron_product(const float *a, size_t m, size_t k, const float *b, size_t cols, float *c) {
    for (size_t j0 = 0; j0 < cols; j0 += TK_TILE_COLS) {
        const size_t nc = cols - j0 < TK_TILE_COLS ? cols - j0 : TK_TILE_COLS;
        for (size_t i0 = 0; i0 < m; i0 += TK_MR) {
            const size_t rows = m - i0 < TK_MR ? m - i0 : TK_MR;
            tk_tile t;
            tk_tile_zero(&t);
            tk_tile_fma(&t, a + i0 * k, k, rows, b + j0, cols, k, nc);
            for (size_t r = 0; r < rows; r++)
                for (int v = 0; v < TK_NV; v++) {
                    const size_t w = tk_tile_lanes(nc, v);
                    if (w) tkv_store_f32(c + (i0 + r) * cols + j0 + (size_t)v * TKV_W, w, t.v[r][v]);
                }
        }
    }
}

/* One butterfly stage over two runs of len floats: (a, b) <- (a + b, a - b). */
static TK_ALWAYS_INLINE void tk_kron_butterfly(float *a, float *b, size_t len) {
    size_t j = 0;
    for (; j + TKV_W <= len; j += TKV_W) {
        const tkv x = tkv_load_f32(a + j, TKV_W), y = tkv_load_f32(b + j, TKV_W);
        tkv_store_f32(a + j, TKV_W, tkv_add(x, y));
        tkv_store_f32(b + j, TKV_W, tkv_sub(x, y));
    }
    for (; j < len; j++) {
        const float x = a[j], y = b[j];
        a[j] = x + y;
        b[j] = x - y;
    }
}

/* The Hadamard transform of order `rows` (a power of two) applied across the
 * rows of buf (rows x len): row i becomes sum_r H[i][r] row r. Whole-vector
 * butterflies between rows, log2(rows) stages. */
static void tk_kron_fwht_across(float *buf, size_t rows, size_t len) {
    for (size_t h = 1; h < rows; h <<= 1)
        for (size_t i = 0; i < rows; i += 2 * h)
            for (size_t r = i; r < i + h; r++) tk_kron_butterfly(buf + r * len, buf + (r + h) * len, len);
}

/* The Hadamard transform of order len (a power of two) along each of the
 * `rows` rows of buf: strides below the vector width inside registers
 * (tkv_fwht_lanes), the rest as butterflies between vectors. */
static void tk_kron_fwht_rows(float *buf, size_t rows, size_t len) {
    for (size_t r = 0; r < rows; r++) {
        float *row = buf + r * len;
        size_t h = 1;
        if (len >= TKV_W) {
            for (size_t j = 0; j < len; j += TKV_W) tkv_store_f32(row + j, TKV_W, tkv_fwht_lanes(tkv_load_f32(row + j, TKV_W)));
            h = TKV_W;
        }
        for (; h < len; h <<= 1)
            for (size_t i = 0; i < len; i += 2 * h) tk_kron_butterfly(row + i, row + i + h, h);
    }
}

#endif
