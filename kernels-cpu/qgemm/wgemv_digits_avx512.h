/* The AVX-512 pieces the exact-digit weight-only GEMVs share (wgemv_vnni.c's
 * vpdpbusd loop, wgemv_int8_amx.c's tiles): the f64 recombination of a
 * group's per-plane int32 sums and the store of a row's 16 channels. Both
 * kernels recombine and accumulate in the same order, so they give the same
 * bits. Included only by units built with AVX-512 F/DQ. */
#ifndef TK_QGEMM_WGEMV_DIGITS_AVX512_H
#define TK_QGEMM_WGEMV_DIGITS_AVX512_H

#include <immintrin.h>

#include "tk.h"

#include "../common/vec_avx512.h"

/* Lanes 0-7 (h 0) or 8-15 (h 1) of v. */
static inline __m256 tk_wdig_half(__m512 v, int h) {
    return h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) : _mm512_castps512_ps256(v);
}

/* Channels h*8..h*8+7 of the nd planes' int32 sums (least significant
 * first) as the f64 sum of D q. */
static TK_ALWAYS_INLINE __m512d tk_wdig_recombine(const __m512i *sd, int nd, int h) {
    const __m512d radix = _mm512_set1_pd(256.0);
    __m512d v = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sd[nd - 1], h));
    for (int plane = nd - 2; plane >= 0; plane--)
        v = _mm512_fmadd_pd(v, radix, _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sd[plane], h)));
    return v;
}

/* Row i, channels j0.. (up to 16) of y from their f64 sums, + bias, rounded once to f32 then dt. */
static inline void tk_wdig_store_y(const tk_wgemv_params *p, tk_dtype dt, size_t i, size_t j0, __m512d lo,
                                   __m512d hi) {
    const size_t nc = p->n - j0 < 16 ? p->n - j0 : 16;
    if (p->bias) {
        const __m512 bias = _mm512_maskz_loadu_ps(tk_mask16(nc), p->bias + j0);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(bias)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(tk_wdig_half(bias, 1)));
    }
    const __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
    const size_t at = i * p->y_stride + j0;
    switch (dt) {
    case TK_DTYPE_F16: tkv_store_f16((uint16_t *)p->y + at, nc, v); break;
    case TK_DTYPE_BF16: tkv_store_bf16((uint16_t *)p->y + at, nc, v); break;
    default: tkv_store_f32((float *)p->y + at, nc, v); break;
    }
}

#endif
