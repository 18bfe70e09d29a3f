#define _GNU_SOURCE /* syscall() */
/* The int8 product on AMX (tk.h: tk_qgemm_params): tdpbsud multiplies signed
 * activation tiles (16 rows x 64 k) by the packed unsigned weights (w + 128;
 * 16 k-groups x 16 channels, a 1 KiB slice of the shared panel layout); the
 * epilogue subtracts 128 * rowsum. Register block: 2 x 2 accumulator tiles
 * (32 rows x 32 channels), 2 activation and 2 weight tiles.
 *
 * Loop order (a tile load from L2 feeds the tiles at about 60% of their rate,
 * from L1 at 80%; from L3 far less): rows in groups of TK_AMX_MC whose k slice
 * (at most TK_AMX_KC bytes a row: 512 KiB) stays in L2 while every 32-channel
 * weight strip streams past it, the next strip prefetched into L2 meanwhile,
 * so the weights come from memory once per group and the activations once per
 * call. k longer than TK_AMX_KC is cut into passes over chunks of TK_AMX_NB
 * channels, the partial sums parked in the scratch (tk_qgemm_amx_scratch).
 * Measured against one strip at a time over every row (the activations from
 * L3 per strip): 1.4-1.6x at m = 512-1024, k = 4096-14336 (docs/qgemm.md). */
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

/* Rows i0..i0+32 x channels j0..j0+32 over k in [kb, ke): the sums start at 0
 * (first) or from part, and go to the epilogue (last) or back to part; the
 * next strip's weights for the same k range are prefetched, `per` lines of
 * each panel a k step, from *pf up to pf_end. */
static TK_ALWAYS_INLINE void tk_amx_block(const tk_qgemm_params *p, size_t i0, size_t j0, size_t kb, size_t ke,
                                          int first, int last, int32_t *part, const char **pf,
                                          const char *pf_end, size_t per) {
    const size_t panel = (p->k / 4) * 64, lda = p->a_stride, ps = TK_AMX_PART_STRIDE * 4;
    const uint8_t *b0 = p->w + (j0 / 16) * panel, *b1 = b0 + panel;
    const int8_t *a0 = p->a + i0 * lda, *a1 = a0 + 16 * lda;
    if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, part, ps);
        _tile_loadd(1, part + 16, ps);
        _tile_loadd(2, part + 16 * TK_AMX_PART_STRIDE, ps);
        _tile_loadd(3, part + 16 * TK_AMX_PART_STRIDE + 16, ps);
    }
    const char *f = *pf;
    for (size_t kk = kb; kk < ke; kk += 64) {
        _tile_loadd(4, a0 + kk, lda);
        _tile_loadd(6, b0 + kk * 16, 64);
        _tile_dpbsud(0, 4, 6);
        _tile_loadd(7, b1 + kk * 16, 64);
        _tile_dpbsud(1, 4, 7);
        _tile_loadd(5, a1 + kk, lda);
        _tile_dpbsud(2, 5, 6);
        _tile_dpbsud(3, 5, 7);
        for (size_t l = 0; l < per && f < pf_end; l++, f += 64) {
            _mm_prefetch(f, _MM_HINT_T1);
            _mm_prefetch(f + panel, _MM_HINT_T1);
        }
    }
    *pf = f;
    if (!last) {
        _tile_stored(0, part, ps);
        _tile_stored(1, part + 16, ps);
        _tile_stored(2, part + 16 * TK_AMX_PART_STRIDE, ps);
        _tile_stored(3, part + 16 * TK_AMX_PART_STRIDE + 16, ps);
        return;
    }
    int32_t c[32][32] __attribute__((aligned(64)));
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

void tk_qgemm_s8_amx(const tk_qgemm_params *p) {
    const size_t k = p->k, n = p->n, panel = (k / 4) * 64;
    /* k passes of equal length (multiples of 64); one pass needs no partials */
    const size_t passes = (k + TK_AMX_KC - 1) / TK_AMX_KC;
    const size_t kc = ((k + passes - 1) / passes + 63) / 64 * 64;
    const size_t nb = passes == 1 ? n : TK_AMX_NB;
    tk_amx_configure();
    for (size_t g = 0; g < p->m; g += TK_AMX_MC) {
        const size_t ge = g + TK_AMX_MC < p->m ? g + TK_AMX_MC : p->m;
        for (size_t c0 = 0; c0 < n; c0 += nb) {
            const size_t ce = c0 + nb < n ? c0 + nb : n;
            for (size_t kb = 0; kb < k; kb += kc) {
                const size_t ke = kb + kc < k ? kb + kc : k;
                /* spread the next strip's (ke - kb) / 4 lines a panel over this strip's k steps */
                const size_t steps = (ge - g + 31) / 32 * ((ke - kb) / 64);
                const size_t per = ((ke - kb) / 4 + steps - 1) / steps;
                for (size_t j0 = c0; j0 < ce; j0 += 32) {
                    const char *pf = (const char *)(p->w + (j0 / 16 + 2) * panel + kb * 16);
                    const char *pf_end = j0 + 32 < ce ? pf + (ke - kb) * 16 : pf;
                    for (size_t i0 = g; i0 < ge; i0 += 32)
                        tk_amx_block(p, i0, j0, kb, ke, kb == 0, ke == k,
                                     p->scratch + (i0 - g) * TK_AMX_PART_STRIDE + (j0 - c0), &pf, pf_end, per);
                }
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
