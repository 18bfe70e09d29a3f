/* The int8 product on AVX-512 VNNI (tk.h: tk_qgemm_params): vpdpbusd
 * multiplies the packed unsigned weights (w + 128) by a broadcast dword of 4
 * signed activations; the epilogue subtracts 128 * rowsum. Register block:
 * 6 rows x 64 channels (24 accumulators, 4 weight vectors, 1 broadcast).
 * Loop order: for each 64-channel weight strip, k in passes of up to 4096:
 * the strip's slice stays in L2 while every row block streams past it,
 * partial sums parked in the scratch between passes. The weights come from
 * memory once; the activations once per strip and pass, from L2/L3. Register
 * block measured against 8 x 3 (0.98x) and 12 x 2 (0.9x). */
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/vec_avx512.h"
#include "epilogue_vec.h"

#ifndef TK_VNNI_MR
#define TK_VNNI_MR 6
#endif
#ifndef TK_VNNI_NP
#define TK_VNNI_NP 4
#endif
/* k per pass over the rows: the 64-channel weight slice (at most 256 KiB)
 * stays in L2 while every row block streams past it. Shorter passes that keep
 * it in L1 measured slower (0.85-0.9x at k = 4096: the partial sums' trips
 * through the scratch cost more than the L2 reads they save). */
#define TK_VNNI_KC 4096

/* Rows i0..i0+mr, panels j0/16..+np, k in [k0, k0 + kc): partial sums from
 * and to the scratch (first / last pass: start at 0 / run the epilogue). */
static TK_ALWAYS_INLINE void tk_vnni_block(const tk_qgemm_params *p, size_t i0, size_t j0, size_t k0, size_t kc,
                                           int first, int last, const size_t mr, const size_t np) {
    const size_t panel = (p->k / 4) * 64;
    const uint8_t *b = p->w + (j0 / 16) * panel;
    int32_t *part = p->scratch + i0 * 64;
    /* every loop over rows and panels fully unrolled, so the accumulators
     * stay in registers (GCC otherwise keeps the array on the stack) */
    __m512i acc[TK_VNNI_MR][TK_VNNI_NP];
#pragma GCC unroll 12
    for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++)
            acc[i][q] = first ? _mm512_setzero_si512() : _mm512_load_si512((const void *)(part + i * 64 + q * 16));
    for (size_t kk = k0; kk < k0 + kc; kk += 4) {
        __m512i w[TK_VNNI_NP];
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++) w[q] = _mm512_load_si512((const void *)(b + q * panel + kk * 16));
#pragma GCC unroll 12
        for (size_t i = 0; i < mr; i++) {
            int32_t a4;
            memcpy(&a4, p->a + (i0 + i) * p->a_stride + kk, 4);
            const __m512i a = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
            for (size_t q = 0; q < np; q++) acc[i][q] = _mm512_dpbusd_epi32(acc[i][q], w[q], a);
        }
    }
    int32_t done[TK_VNNI_MR * 64] __attribute__((aligned(64)));
    int32_t *const out = last ? done : part;
#pragma GCC unroll 12
    for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++) _mm512_store_si512((void *)(out + i * 64 + q * 16), acc[i][q]);
    if (last) tk_qgemm_epilogue(p, i0, j0, done, 64, mr, np);
}

void tk_qgemm_s8_avx512vnni(const tk_qgemm_params *p) {
    for (size_t j0 = 0; j0 < p->n; j0 += 16 * TK_VNNI_NP) {
        const size_t np = (p->n - j0 + 15) / 16 < TK_VNNI_NP ? (p->n - j0 + 15) / 16 : TK_VNNI_NP;
        for (size_t k0 = 0; k0 < p->k; k0 += TK_VNNI_KC) {
            const size_t kc = p->k - k0 < TK_VNNI_KC ? p->k - k0 : TK_VNNI_KC;
            const int first = k0 == 0, last = k0 + kc == p->k;
            for (size_t i0 = 0; i0 < p->m; i0 += TK_VNNI_MR) {
                const size_t mr = p->m - i0 < TK_VNNI_MR ? p->m - i0 : TK_VNNI_MR;
                switch (mr * 8 + np) { /* one specialised body per block shape */
#define TK_VNNI_CASE(a, b) \
    case a * 8 + b: if (a <= TK_VNNI_MR && b <= TK_VNNI_NP) tk_vnni_block(p, i0, j0, k0, kc, first, last, a, b); break;
#define TK_VNNI_ROWS(a) TK_VNNI_CASE(a, 1) TK_VNNI_CASE(a, 2) TK_VNNI_CASE(a, 3) TK_VNNI_CASE(a, 4)
                    TK_VNNI_ROWS(1) TK_VNNI_ROWS(2) TK_VNNI_ROWS(3) TK_VNNI_ROWS(4) TK_VNNI_ROWS(5) TK_VNNI_ROWS(6)
                    TK_VNNI_ROWS(7) TK_VNNI_ROWS(8) TK_VNNI_ROWS(9) TK_VNNI_ROWS(10) TK_VNNI_ROWS(11) TK_VNNI_ROWS(12)
#undef TK_VNNI_ROWS
#undef TK_VNNI_CASE
                default: break;
                }
            }
        }
    }
}

/* 12 independent chains (more than two ports times the 5-cycle latency),
 * named one by one: GCC keeps an array of them on the stack. */
double tk_vnni_probe(size_t iters, int32_t *sink) {
    const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
    __m512i c0 = _mm512_set1_epi32(0), c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2),
            c3 = _mm512_set1_epi32(3), c4 = _mm512_set1_epi32(4), c5 = _mm512_set1_epi32(5),
            c6 = _mm512_set1_epi32(6), c7 = _mm512_set1_epi32(7), c8 = _mm512_set1_epi32(8),
            c9 = _mm512_set1_epi32(9), c10 = _mm512_set1_epi32(10), c11 = _mm512_set1_epi32(11);
    for (size_t it = 0; it < iters; it++) {
        c0 = _mm512_dpbusd_epi32(c0, a, b);
        c1 = _mm512_dpbusd_epi32(c1, a, b);
        c2 = _mm512_dpbusd_epi32(c2, a, b);
        c3 = _mm512_dpbusd_epi32(c3, a, b);
        c4 = _mm512_dpbusd_epi32(c4, a, b);
        c5 = _mm512_dpbusd_epi32(c5, a, b);
        c6 = _mm512_dpbusd_epi32(c6, a, b);
        c7 = _mm512_dpbusd_epi32(c7, a, b);
        c8 = _mm512_dpbusd_epi32(c8, a, b);
        c9 = _mm512_dpbusd_epi32(c9, a, b);
        c10 = _mm512_dpbusd_epi32(c10, a, b);
        c11 = _mm512_dpbusd_epi32(c11, a, b);
    }
    const __m512i s0 = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                        _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    const __m512i s1 = _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11));
    *sink = _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
    return (double)iters * 12.0 * 64.0 * 2.0;
}
