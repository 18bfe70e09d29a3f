/* The int8 product on AVX2 (tk.h: tk_qgemm_params), for CPUs without
 * AVX-512 VNNI: the packed unsigned weights (w + 128, 4 channels x 4 k per 16
 * bytes) widened to 16 bits, times the row's 4 activations widened and
 * broadcast, by vpmaddwd (u8 x s8 pairs fit 16 bits; pair sums 32 bits, exact).
 * Each accumulator holds 4 channels x 2 partial sums, folded by vphaddd at
 * the end. Register block: 2 rows x 16 channels (8 accumulators). Block
 * epilogue: epilogue_vec.h. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/vec_avx2.h"
#include "epilogue_vec.h"

/* 4 activations of one row as 16-bit values, repeated over the 4 x 64 bits. */
static inline __m256i tk_avx2_row4(const int8_t *a) {
    int32_t a4;
    memcpy(&a4, a, 4);
    return _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(a4)));
}

/* 8 channel sums from two accumulators of 4 channels x 2 partials each. */
static inline __m256i tk_avx2_fold(__m256i lo, __m256i hi) {
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xD8);
}

void tk_qgemm_s8_avx2(const tk_qgemm_params *p) {
    const size_t k = p->k, panel = (k / 4) * 64;
    for (size_t j0 = 0; j0 < p->n; j0 += 16) {
        const uint8_t *b = p->w + (j0 / 16) * panel;
        for (size_t i0 = 0; i0 < p->m; i0 += 2) {
            const size_t rows = p->m - i0 < 2 ? p->m - i0 : 2;
            const int8_t *a0 = p->a + i0 * p->a_stride, *a1 = rows > 1 ? a0 + p->a_stride : a0;
            __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00;
            __m256i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            for (size_t kk = 0; kk < k; kk += 4) {
                const uint8_t *line = b + kk * 16;
                const __m256i w0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)line));
                const __m256i w1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(line + 16)));
                const __m256i w2 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(line + 32)));
                const __m256i w3 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(line + 48)));
                const __m256i x0 = tk_avx2_row4(a0 + kk), x1 = tk_avx2_row4(a1 + kk);
                c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(w0, x0));
                c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(w1, x0));
                c02 = _mm256_add_epi32(c02, _mm256_madd_epi16(w2, x0));
                c03 = _mm256_add_epi32(c03, _mm256_madd_epi16(w3, x0));
                c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(w0, x1));
                c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(w1, x1));
                c12 = _mm256_add_epi32(c12, _mm256_madd_epi16(w2, x1));
                c13 = _mm256_add_epi32(c13, _mm256_madd_epi16(w3, x1));
            }
            int32_t sums[2][16];
            _mm256_storeu_si256((__m256i *)&sums[0][0], tk_avx2_fold(c00, c01));
            _mm256_storeu_si256((__m256i *)&sums[0][8], tk_avx2_fold(c02, c03));
            _mm256_storeu_si256((__m256i *)&sums[1][0], tk_avx2_fold(c10, c11));
            _mm256_storeu_si256((__m256i *)&sums[1][8], tk_avx2_fold(c12, c13));
            tk_qgemm_epilogue16(p, i0, j0, &sums[0][0], 16, rows);
        }
    }
}

/* The peak of this kernel's unit of work, vpmaddwd then vpaddd into an
 * accumulator, in 12 independent chains of 16 multiply-adds (tk.h). */
double tk_madd_probe_avx2(size_t iters, int32_t *sink) {
    const __m256i b = _mm256_set1_epi16(5);
    __m256i c[12];
    for (int u = 0; u < 12; u++) c[u] = _mm256_set1_epi32(u);
    /* each product reads its own accumulator, so none is loop-invariant; 12
     * chains of (4 + 1)-cycle latency keep any core's multipliers busy */
    for (size_t it = 0; it < iters; it++)
        for (int u = 0; u < 12; u++) c[u] = _mm256_add_epi32(c[u], _mm256_madd_epi16(c[u], b));
    __m256i s = c[0];
    for (int u = 1; u < 12; u++) s = _mm256_add_epi32(s, c[u]);
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, s);
    *sink = lanes[0] + lanes[7];
    return (double)iters * 12.0 * 16.0 * 2.0;
}
