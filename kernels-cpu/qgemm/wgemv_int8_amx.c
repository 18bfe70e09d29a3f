/* The int8 weight-only product on AMX-INT8 tiles for 1-16 rows of X (tk.h:
 * tk_wgemv_int8_amx): the digit split of wgemv_vnni.c, multiplied by tiles.
 *
 * X is split exactly into nd balanced int8 digit planes per group (nd the
 * largest of the call, at most 6; tk_wgemv_split_x), copied once per call
 * into tile rows: per 64 k, one 64-byte row per (row of X, plane). 16
 * consecutive lines of a W panel (16 channels x 4 k each) are exactly an AMX
 * B tile (64 k x 16 channels, 4 k per dword), so one tdpbssd multiplies a
 * KiB of weights, signed as stored, by up to 16 digit rows (the VNNI loop
 * needs a vpdpbusd per line, row and plane, and the +128 correction). The
 * group's int32 sums (exact: |digit| <= 128, |w| <= 127, group <= 2^15) are
 * recombined in f64, scaled and summed over groups in the VNNI kernel's order
 * (wgemv_digits_avx512.h): the same bits as tk_wgemv_vnni. A group's
 * recombination runs after the next group's products are issued (two
 * buffers of sums), so the vector work overlaps the tiles: 1.2x at 8 rows.
 * Faster than the VNNI loop from 8 rows (docs/qgemm.md), where the library
 * uses it.
 *
 * Tiles: C tmm0.. one per 16 digit rows (m nd rows in all), A tmm6 (16 rows)
 * and tmm5 (the last, partial tile's rows), B tmm7. Calls that do not fit
 * (not int8 panels, m above 16, group not a multiple of 64 or above 2^15,
 * m nd above 80 rows unless a multiple of 16 up to 96, AMX not granted, X
 * the split declines) return 0 having written nothing but the workspace. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "amx_tiles.h"

#include "../common/template.h"
#include "wgemv_digits_avx512.h"
#include "wgemv_split.h"

#define TK_WI8_MAX_ROWS 16
#define TK_WI8_MAX_GROUP 32768
#define TK_WI8_MAX_TILES 6

/* The digit count of the call: the largest of the groups'. */
static int tk_wi8_digits(const tk_wgemv_params *p, const tk_wsplit *s) {
    int nd = 0;
    for (size_t gi = 0; gi < p->k / p->group; gi++)
        if (s->most[gi] > nd) nd = s->most[gi];
    return nd;
}

/* The planes as tile rows; planes a group does not use are 0 (the same D). */
static void tk_wi8_rows(const tk_wgemv_params *p, const tk_wsplit *s, int nd) {
    const size_t k = p->k, r_all = p->m * (size_t)nd;
    for (size_t i = 0; i < p->m; i++)
        for (int d = 0; d < nd; d++)
            for (size_t l = 0; l < k / 4; l++) {
                int8_t *to = s->rows + ((l / 16) * r_all + i * (size_t)nd + (size_t)d) * 64 + (l % 16) * 4;
                if (d < s->most[l * 4 / p->group])
                    memcpy(to, s->planes + (i * (k / 4) + l) * TK_WSPLIT_LINE + 4 * d, 4);
                else
                    memset(to, 0, 4);
            }
}

/* Palette 1; a tile in use has both rows and bytes per row, one not in use
 * neither (ldtilecfg faults otherwise). */
static void tk_wi8_configure(size_t r_all) {
    tk_tile_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (size_t t = 0; t * 16 < r_all; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = (uint8_t)(r_all - 16 * t < 16 ? r_all - 16 * t : 16);
    }
    if (r_all % 16) { /* the partial A tile (with every tile full there is none: tmm5 may be a C tile) */
        cfg.colsb[5] = 64;
        cfg.rows[5] = (uint8_t)(r_all % 16);
    }
    cfg.colsb[6] = 64;
    cfg.rows[6] = 16;
    cfg.colsb[7] = 64;
    cfg.rows[7] = 16;
    _tile_loadconfig(&cfg);
}

/* Group gi's stored int32 sums (row i x digit d at c[i nd + d]) of panel b,
 * recombined, scaled and added to the rows' f64 sums: wgemv_vnni.c's order. */
static TK_ALWAYS_INLINE void tk_wi8_group_sums(const tk_wgemv_params *p, const tk_wsplit *s, int32_t (*c)[16],
                                               size_t b, size_t gi, int nd, __m512d *ylo, __m512d *yhi) {
    const size_t groups = p->k / p->group;
    const __m512 sc = _mm512_loadu_ps(p->w_scale + (b * groups + gi) * 16);
    const __m512d sc_lo = _mm512_cvtps_pd(tk_wdig_half(sc, 0)), sc_hi = _mm512_cvtps_pd(tk_wdig_half(sc, 1));
    for (size_t i = 0; i < p->m; i++) {
        __m512i sd[TK_WSPLIT_MAX_DIGITS];
        for (int d = 0; d < nd; d++) sd[d] = _mm512_load_si512(&c[i * (size_t)nd + (size_t)d][0]);
        const __m512d e = _mm512_set1_pd(s->escale[i * groups + gi]);
        ylo[i] = _mm512_fmadd_pd(tk_wdig_recombine(sd, nd, 0), _mm512_mul_pd(sc_lo, e), ylo[i]);
        yhi[i] = _mm512_fmadd_pd(tk_wdig_recombine(sd, nd, 1), _mm512_mul_pd(sc_hi, e), yhi[i]);
    }
}

/* C tile t += A rows 16 t.. of a (stride 64) times the B tile in tmm7. */
#define TK_WI8_PRODUCT(t)                                                      \
    do {                                                                       \
        if (16 * (t) + 16 <= r_all) {                                          \
            _tile_loadd(6, a + 16 * (t) * 64, 64);                             \
            _tile_dpbssd(t, 6, 7);                                             \
        } else if (16 * (t) < r_all) {                                         \
            _tile_loadd(5, a + 16 * (t) * 64, 64);                             \
            _tile_dpbssd(t, 5, 7);                                             \
        }                                                                      \
    } while (0)

/* tmm5 as a C tile: only with every tile full (it is then no A tile) */
#define TK_WI8_PRODUCT_FULL(t)                                                 \
    do {                                                                       \
        if (16 * (t) + 16 <= r_all) {                                          \
            _tile_loadd(6, a + 16 * (t) * 64, 64);                             \
            _tile_dpbssd(t, 6, 7);                                             \
        }                                                                      \
    } while (0)

#define TK_WI8_EACH_TILE(X) X(0); X(1); X(2); X(3); X(4); X(5)

int tk_wgemv_int8_amx(const tk_wgemv_params *p, tk_dtype dtype) {
    if (p->w_bits != 8 || !p->w_panels || p->m == 0 || p->m > TK_WI8_MAX_ROWS || p->group % 64 ||
        p->group > TK_WI8_MAX_GROUP || !tk_amx_ready())
        return 0;
    const tk_wsplit s = tk_wsplit_layout(p);
    if (!p->x_ready) {
        if (!tk_wgemv_split_x(p, dtype, &s)) return 0;
        const int nd = tk_wi8_digits(p, &s);
        const size_t r = p->m * (size_t)nd;
        if (r > 16 * TK_WI8_MAX_TILES || (r > 16 * (TK_WI8_MAX_TILES - 1) && r % 16)) return 0;
        tk_wi8_rows(p, &s, nd);
    }
    const int nd = tk_wi8_digits(p, &s);
    const size_t k = p->k, g = p->group, groups = k / g, m = p->m, r_all = m * (size_t)nd;
    /* two buffers of group sums: one group's recombination runs after the
     * next group's tile products are issued, so the two overlap */
    int32_t c[2][16 * TK_WI8_MAX_TILES][16] __attribute__((aligned(64)));
    tk_wi8_configure(r_all);
    for (size_t b = 0; b < (p->n + 15) / 16; b++) {
        const uint8_t *w = (const uint8_t *)p->w + b * 16 * p->w_stride;
        __m512d ylo[TK_WI8_MAX_ROWS], yhi[TK_WI8_MAX_ROWS];
        for (size_t i = 0; i < m; i++) ylo[i] = yhi[i] = _mm512_setzero_pd();
        for (size_t gi = 0; gi < groups; gi++) {
#define TK_WI8_ZERO(t)                                                         \
    if (16 * (t) < r_all) _tile_zero(t)
            TK_WI8_EACH_TILE(TK_WI8_ZERO);
#undef TK_WI8_ZERO
            for (size_t c64 = gi * g / 64; c64 < (gi + 1) * g / 64; c64++) {
                const uint8_t *tile = w + c64 * 1024;
                for (size_t line = 0; line < 1024; line += 64) TK_PREFETCH_WEIGHT_LINE(tile + line);
                _tile_loadd(7, tile, 64);
                const int8_t *a = s.rows + c64 * r_all * 64;
                TK_WI8_PRODUCT(0);
                TK_WI8_PRODUCT(1);
                TK_WI8_PRODUCT(2);
                TK_WI8_PRODUCT(3);
                TK_WI8_PRODUCT(4);
                TK_WI8_PRODUCT_FULL(5);
            }
            if (gi > 0) tk_wi8_group_sums(p, &s, c[(gi - 1) & 1], b, gi - 1, nd, ylo, yhi);
            int32_t(*cg)[16] = c[gi & 1];
#define TK_WI8_STORE(t)                                                        \
    if (16 * (t) < r_all) _tile_stored(t, &cg[16 * (t)][0], 64)
            TK_WI8_EACH_TILE(TK_WI8_STORE);
#undef TK_WI8_STORE
        }
        tk_wi8_group_sums(p, &s, c[(groups - 1) & 1], b, groups - 1, nd, ylo, yhi);
        for (size_t i = 0; i < m; i++) tk_wdig_store_y(p, dtype, i, 16 * b, ylo[i], yhi[i]);
    }
    _tile_release();
    return 1;
}
