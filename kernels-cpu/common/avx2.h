/* AVX2 + FMA + F16C helpers: dtype I/O, tails through a small buffer (AVX2 has
 * no 16-bit masked loads), the extended exp and 2^d without scalef. */
#ifndef TK_COMMON_AVX2_H
#define TK_COMMON_AVX2_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "scalar.h"

static inline __m256 tk256_load_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 tk256_load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
/* bf16 -> f32 is a 16-bit shift; one 128-bit broadcast and an in-lane byte
 * shuffle do it (vpmovzxwd crosses the 128-bit lanes: 2.8 vs 1.5 cycles a
 * vector on Zen 1, docs/norm.md). */
static inline __m256 tk256_load_bf16(const uint16_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    const __m256i to_high_halves = _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7,  /**/
                                                    -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1, -1, 14, 15);
    return _mm256_castsi256_ps(_mm256_shuffle_epi8(b, to_high_halves));
}
static inline __m128i tk256_to_f16(__m256 v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* f32 rounded to nearest even bf16 in the high half of each lane (the low
 * half is left over): u + 0x7FFF, + 1 more where the kept part is odd; a NaN
 * becomes quiet instead (its rounding could carry into the sign). The odd
 * test is a mask and a compare, one shift fewer than (u >> 16) & 1. */
static inline __m256i tk256_bf16_high_halves(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i even = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x10000)), _mm256_setzero_si256());
    const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x8000)), even);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
}
/* Round to nearest even; NaN becomes a quiet NaN. The two halves packed as
 * 128-bit vectors (a 256-bit pack needs a lane-crossing permute after it):
 * 5.0 instead of 6.6 cycles a vector on Zen 1, docs/norm.md. */
static inline __m128i tk256_to_bf16(__m256 v) {
    const __m256i r = _mm256_srli_epi32(tk256_bf16_high_halves(v), 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
static inline void tk256_store_f32(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
static inline void tk256_store_f16(uint16_t *p, __m256 v) { _mm_storeu_si128((__m128i *)p, tk256_to_f16(v)); }
static inline void tk256_store_bf16(uint16_t *p, __m256 v) { _mm_storeu_si128((__m128i *)p, tk256_to_bf16(v)); }
static inline void tk256_stream_f32(float *p, __m256 v) { _mm256_stream_ps(p, v); }
static inline void tk256_stream_f16(uint16_t *p, __m256 v) { _mm_stream_si128((__m128i *)p, tk256_to_f16(v)); }
static inline void tk256_stream_bf16(uint16_t *p, __m256 v) { _mm_stream_si128((__m128i *)p, tk256_to_bf16(v)); }

/* Exp polynomial coefficients, optionally scaled (as tk512_poly). */
typedef struct tk256_poly {
    __m256 c0, c1, c2, c3, c4, c5;
} tk256_poly;

static inline tk256_poly tk256_poly_scaled(float f) {
    tk256_poly k;
    k.c0 = _mm256_set1_ps(f);
    k.c1 = _mm256_set1_ps(TK_EXP_C1 * f);
    k.c2 = _mm256_set1_ps(TK_EXP_C2 * f);
    k.c3 = _mm256_set1_ps(TK_EXP_C3 * f);
    k.c4 = _mm256_set1_ps(TK_EXP_C4 * f);
    k.c5 = _mm256_set1_ps(TK_EXP_C5 * f);
    return k;
}

/* exp(z) * f = p * 2^n, as tk512_expext_k. */
static inline __m256 tk256_expext_k(__m256 z, __m256 *n, const tk256_poly *k) {
    /* clamp z to +-ZMAX (n to +-NMAX), except that z = -inf keeps n = -inf (exactly 0) */
    __m256 zc = _mm256_min_ps(z, _mm256_set1_ps(TK_EXP_ZMAX));
    const __m256 neg_inf = _mm256_cmp_ps(z, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
    zc = _mm256_blendv_ps(_mm256_max_ps(zc, _mm256_set1_ps(-TK_EXP_ZMAX)), zc, neg_inf);
    /* n = round(z log2 e) with one rounding of the exact product (magic-number FMA) */
    const __m256 magic = _mm256_set1_ps(TK_ROUND_MAGIC);
    const __m256 vn = _mm256_sub_ps(_mm256_fmadd_ps(zc, _mm256_set1_ps(TK_LOG2E), magic), magic);
    __m256 t = _mm256_fmadd_ps(vn, _mm256_set1_ps(TK_MINUS_LN2_HI), z);
    t = _mm256_fmadd_ps(vn, _mm256_set1_ps(TK_MINUS_LN2_LO), t);
    /* z = -inf gives t = NaN: replace it through the mask at hand, then clamp (as tk512_expext_k) */
    t = _mm256_blendv_ps(t, _mm256_set1_ps(-TK_EXP_TMAX), neg_inf);
    t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-TK_EXP_TMAX)), _mm256_set1_ps(TK_EXP_TMAX));
    __m256 p = _mm256_fmadd_ps(k->c5, t, k->c4);
    p = _mm256_fmadd_ps(p, t, k->c3);
    p = _mm256_fmadd_ps(p, t, k->c2);
    p = _mm256_fmadd_ps(p, t, k->c1);
    p = _mm256_fmadd_ps(p, t, k->c0);
    *n = vn;
    return p;
}

static inline __m256 tk256_expext(__m256 z, __m256 *n) {
    const tk256_poly k = tk256_poly_scaled(1.0f);
    return tk256_expext_k(z, n, &k);
}

/* 2^d for integer-valued d <= 0 or -inf; results below 2^-126 flush to 0.
 * d must not be NaN (callers screen NaN rows out first). */
static inline __m256 tk256_exp2_nonpositive(__m256 d) {
    const __m256 dc = _mm256_max_ps(d, _mm256_set1_ps(-127.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(dc), _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(bits);
}

/* exp(d) for d <= 0 or -inf (not NaN): the three-pass softmax's exp(z - max).
 * Bit for bit p * tk256_exp2_nonpositive(n) of tk256_expext(d, &n), in 13
 * instructions instead of 22: on that range no clamp can bite, and the bias
 * 127 rides in the rounding constant, so 2^n is one shift of n's bits
 * (n = -127 gives 0, as tk256_exp2_nonpositive does). The constant moves no
 * rounding: d log2e is never a half-integer for |d| < 2^22. Below d = -88
 * (n < -127, where the shift wraps, and -inf) the result is masked to 0. */
static inline __m256 tk256_exp_nonpositive(__m256 d) {
    const __m256 magic = _mm256_set1_ps(TK_ROUND_MAGIC + 127.0f);
    const __m256 biased = _mm256_fmadd_ps(d, _mm256_set1_ps(TK_LOG2E), magic); /* magic + n */
    const __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(biased), 23));
    const __m256 n = _mm256_sub_ps(biased, magic);
    __m256 t = _mm256_fmadd_ps(n, _mm256_set1_ps(TK_MINUS_LN2_HI), d);
    t = _mm256_fmadd_ps(n, _mm256_set1_ps(TK_MINUS_LN2_LO), t);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(TK_EXP_C5), t, _mm256_set1_ps(TK_EXP_C4));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(TK_EXP_C3));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(TK_EXP_C2));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(TK_EXP_C1));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f));
    const __m256 underflow = _mm256_cmp_ps(d, _mm256_set1_ps(-88.0f), _CMP_LT_OQ);
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, s));
}

static inline float tk256_hsum(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Lanes holding NaN or +inf (which make a softmax row NaN). */
static inline __m256 tk256_bad(__m256 z) { return _mm256_cmp_ps(z, _mm256_set1_ps(3.4028235e38f), _CMP_NLE_UQ); }

#endif
