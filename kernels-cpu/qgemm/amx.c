#define _GNU_SOURCE /* syscall() */
/* The int8 product on AMX (tk.h: tk_qgemm_params): tdpbsud multiplies signed
 * activation tiles (16 rows x 64 k) by the packed unsigned weights (w + 128;
 * 16 k-groups x 16 channels, a 1 KiB slice of the shared panel layout); the
 * epilogue subtracts 128 * rowsum. Register block: 2 x 2 accumulator tiles
 * (32 rows x 32 channels), 2 activation and 2 weight tiles. Loop order: one
 * 32-channel weight strip (32 x k bytes, L2) against every 32-row block. */
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>

#include "tk.h"

#include "amx_tiles.h"

#include "../common/vec_avx512.h"
#include "epilogue_vec.h"

#define TK_ARCH_REQ_XCOMP_PERM 0x1023
#define TK_XFEATURE_XTILEDATA 18

int tk_amx_ready(void) {
    static int state = -1; /* the syscall is idempotent: a racing second ask is harmless */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s >= 0) return s;
    unsigned a, b, c, d;
    s = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 24)) && (d & (1u << 25)))
        s = syscall(SYS_arch_prctl, TK_ARCH_REQ_XCOMP_PERM, TK_XFEATURE_XTILEDATA) == 0;
    __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    return s;
}

/* Palette 1: tiles 0-3 accumulators (16 x 16 int32), 4-5 activations, 6-7
 * weights, every one 16 rows of 64 bytes. */
static void tk_amx_configure(void) {
    tk_tile_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
}

void tk_qgemm_s8_amx(const tk_qgemm_params *p) {
    const size_t k = p->k, panel = (k / 4) * 64, lda = p->a_stride;
    int32_t c[32][32] __attribute__((aligned(64)));
    tk_amx_configure();
    for (size_t j0 = 0; j0 < p->n; j0 += 32) {
        const uint8_t *b0 = p->w + (j0 / 16) * panel, *b1 = b0 + panel;
        for (size_t i0 = 0; i0 < p->m; i0 += 32) {
            const int8_t *a0 = p->a + i0 * lda, *a1 = a0 + 16 * lda;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t kk = 0; kk < k; kk += 64) {
                _tile_loadd(4, a0 + kk, lda);
                _tile_loadd(6, b0 + kk * 16, 64);
                _tile_dpbsud(0, 4, 6);
                _tile_loadd(7, b1 + kk * 16, 64);
                _tile_dpbsud(1, 4, 7);
                _tile_loadd(5, a1 + kk, lda);
                _tile_dpbsud(2, 5, 6);
                _tile_dpbsud(3, 5, 7);
            }
            _tile_stored(0, &c[0][0], 128);
            _tile_stored(1, &c[0][16], 128);
            _tile_stored(2, &c[16][0], 128);
            _tile_stored(3, &c[16][16], 128);
            const size_t rows = p->m - i0 < 32 ? p->m - i0 : 32;
            size_t r = 0;
            for (; r + 4 <= rows; r += 4) tk_qgemm_epilogue(p, i0 + r, j0, &c[r][0], 32, 4, 2);
            switch (rows - r) {
            case 3: tk_qgemm_epilogue(p, i0 + r, j0, &c[r][0], 32, 3, 2); break;
            case 2: tk_qgemm_epilogue(p, i0 + r, j0, &c[r][0], 32, 2, 2); break;
            case 1: tk_qgemm_epilogue(p, i0 + r, j0, &c[r][0], 32, 1, 2); break;
            default: break;
            }
        }
    }
    _tile_release();
}

double tk_amx_probe(size_t iters, int32_t *sink) {
    static const int8_t ones[16 * 64] __attribute__((aligned(64))) = {0};
    int32_t out[16 * 16] __attribute__((aligned(64)));
    tk_amx_configure();
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (size_t it = 0; it < iters; it++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    *sink = out[0];
    return (double)iters * 4.0 * 16.0 * 16.0 * 64.0 * 2.0;
}
