/* The int8 product on AVX-VNNI (tk.h: tk_qgemm_params), for CPUs with the
 * VEX-encoded vpdpbusd but no AVX-512 (Alder Lake and later client cores;
 * Sapphire Rapids has both): each 64-byte line of the packed weights (16
 * channels x 4 k, unsigned w + 128) is two 256-bit vpdpbusd operands of 8
 * channels, multiplied by a broadcast dword of the row's 4 signed
 * activations, as the AVX-512 VNNI kernel does with one 512-bit operand.
 * Register block: 6 rows x 16 channels (12 accumulators, 2 weight halves, 1
 * broadcast of the 16 ymm registers). Block epilogue: epilogue_vec.h. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/vec_avx2.h"
#include "epilogue_vec.h"

#define TK_AVXVNNI_MR 6

/* Rows i0..i0+mr (a constant after inlining) of the 16 channels from j0. */
static TK_ALWAYS_INLINE void tk_avxvnni_block(const tk_qgemm_params *p, size_t i0, size_t j0, const size_t mr) {
    const size_t k = p->k;
    const uint8_t *b = p->w + (j0 / 16) * (k / 4) * 64;
    __m256i lo[TK_AVXVNNI_MR], hi[TK_AVXVNNI_MR];
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) lo[i] = hi[i] = _mm256_setzero_si256();
    for (size_t kk = 0; kk < k; kk += 4) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(b + kk * 16));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(b + kk * 16 + 32));
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++) {
            int32_t a4;
            memcpy(&a4, p->a + (i0 + i) * p->a_stride + kk, 4);
            const __m256i a = _mm256_set1_epi32(a4);
            lo[i] = _mm256_dpbusd_avx_epi32(lo[i], w0, a);
            hi[i] = _mm256_dpbusd_avx_epi32(hi[i], w1, a);
        }
    }
    int32_t sums[TK_AVXVNNI_MR][16];
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) {
        _mm256_storeu_si256((__m256i *)&sums[i][0], lo[i]);
        _mm256_storeu_si256((__m256i *)&sums[i][8], hi[i]);
    }
    tk_qgemm_epilogue16(p, i0, j0, &sums[0][0], 16, mr);
}

void tk_qgemm_s8_avxvnni(const tk_qgemm_params *p) {
    for (size_t j0 = 0; j0 < p->n; j0 += 16)
        for (size_t i0 = 0; i0 < p->m; i0 += TK_AVXVNNI_MR) {
            const size_t mr = p->m - i0 < TK_AVXVNNI_MR ? p->m - i0 : TK_AVXVNNI_MR;
            switch (mr) { /* one specialised body per block height */
            case 1: tk_avxvnni_block(p, i0, j0, 1); break;
            case 2: tk_avxvnni_block(p, i0, j0, 2); break;
            case 3: tk_avxvnni_block(p, i0, j0, 3); break;
            case 4: tk_avxvnni_block(p, i0, j0, 4); break;
            case 5: tk_avxvnni_block(p, i0, j0, 5); break;
            default: tk_avxvnni_block(p, i0, j0, 6); break;
            }
        }
}
