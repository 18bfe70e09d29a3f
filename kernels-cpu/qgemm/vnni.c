/* The int8 product on AVX-512 VNNI (tk.h: tk_qgemm_params): vpdpbusd
 * multiplies the packed unsigned weights (w + 128) by a broadcast dword of 4
 * signed activations; the epilogue subtracts 128 * rowsum. Register block:
 * 6 rows x 64 channels (24 accumulators, 4 weight vectors, 1 broadcast).
 * Loop order: one 64-channel weight strip (64 x k bytes: 256 KiB at k = 4096,
 * L2-resident) against every row block, so the weights come from memory once
 * and each row block (6 x k) streams from L2/L3. */
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/template.h"
#include "epilogue512.h"

#define TK_VNNI_MR 6

static TK_ALWAYS_INLINE void tk_vnni_block(const tk_qgemm_params *p, size_t i0, size_t j0, const size_t mr,
                                           const size_t np) {
    const size_t k = p->k, panel = (k / 4) * 64;
    const uint8_t *b = p->w + (j0 / 16) * panel;
    __m512i acc[TK_VNNI_MR][4];
    for (size_t i = 0; i < mr; i++)
        for (size_t q = 0; q < np; q++) acc[i][q] = _mm512_setzero_si512();
    for (size_t kk = 0; kk < k; kk += 4) {
        __m512i w[4];
        for (size_t q = 0; q < np; q++) {
            w[q] = _mm512_load_si512((const void *)(b + q * panel + kk * 16));
            _mm_prefetch((const char *)(b + q * panel + kk * 16 + 1024), _MM_HINT_T0);
        }
        for (size_t i = 0; i < mr; i++) {
            int32_t a4;
            memcpy(&a4, p->a + (i0 + i) * p->a_stride + kk, 4);
            const __m512i a = _mm512_set1_epi32(a4);
            for (size_t q = 0; q < np; q++) acc[i][q] = _mm512_dpbusd_epi32(acc[i][q], w[q], a);
        }
    }
    for (size_t i = 0; i < mr; i++)
        for (size_t q = 0; q < np; q++) {
            const size_t j = j0 + q * 16;
            if (j < p->n) tk_qgemm_epilogue16(p, i0 + i, j, p->n - j < 16 ? p->n - j : 16, acc[i][q]);
        }
}

void tk_qgemm_s8_avx512vnni(const tk_qgemm_params *p) {
    for (size_t j0 = 0; j0 < p->n; j0 += 64) {
        const size_t np = (p->n - j0 + 15) / 16 < 4 ? (p->n - j0 + 15) / 16 : 4;
        for (size_t i0 = 0; i0 < p->m; i0 += TK_VNNI_MR) {
            const size_t mr = p->m - i0 < TK_VNNI_MR ? p->m - i0 : TK_VNNI_MR;
            switch (mr * 8 + np) { /* one specialised body per block shape */
#define TK_VNNI_CASE(a, b) \
    case a * 8 + b: tk_vnni_block(p, i0, j0, a, b); break;
#define TK_VNNI_ROWS(a) TK_VNNI_CASE(a, 1) TK_VNNI_CASE(a, 2) TK_VNNI_CASE(a, 3) TK_VNNI_CASE(a, 4)
                TK_VNNI_ROWS(1) TK_VNNI_ROWS(2) TK_VNNI_ROWS(3) TK_VNNI_ROWS(4) TK_VNNI_ROWS(5) TK_VNNI_ROWS(6)
#undef TK_VNNI_ROWS
#undef TK_VNNI_CASE
            default: break;
            }
        }
    }
}

double tk_vnni_probe(size_t iters, int32_t *sink) {
    __m512i acc[24];
    const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
    for (int r = 0; r < 24; r++) acc[r] = _mm512_set1_epi32(r);
    for (size_t it = 0; it < iters; it++)
        for (int r = 0; r < 24; r++) acc[r] = _mm512_dpbusd_epi32(acc[r], a, b);
    __m512i s = acc[0];
    for (int r = 1; r < 24; r++) s = _mm512_add_epi32(s, acc[r]);
    *sink = _mm512_reduce_add_epi32(s);
    return (double)iters * 24.0 * 64.0 * 2.0;
}
