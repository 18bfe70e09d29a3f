/* AVX-512 (F, BW, DQ, VL) helpers: masked dtype I/O and the extended exp. */
#ifndef TK_COMMON_AVX512_H
#define TK_COMMON_AVX512_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "scalar.h"

/* The level's name in kernel symbols. Compiled with -mavx512bf16, the same
 * code is the avx512bf16 level: its bf16 rounding is one instruction
 * (tk512_to_bf16 below). */
#ifdef __AVX512BF16__
#define TK512_ISA avx512bf16
#else
#define TK512_ISA avx512
#endif

static inline __mmask16 tk_mask16(size_t count) {
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
}

/* Load up to 16 elements as f32; lanes outside the mask read as `fill`. */
static inline __m512 tk512_load_f32(const float *p, __mmask16 m, __m512 fill) {
    return _mm512_mask_loadu_ps(fill, m, p);
}
static inline __m512 tk512_load_f16(const uint16_t *p, __mmask16 m, __m512 fill) {
    const __m512 v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_mask_blend_ps(m, fill, v);
}
static inline __m512 tk512_load_bf16(const uint16_t *p, __mmask16 m, __m512 fill) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_mask_blend_ps(m, fill, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
}

static inline void tk512_store_f32(float *p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
static inline __m256i tk512_to_f16(__m512 v) {
    return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* Round to nearest even; NaN becomes a quiet NaN (9 instructions). */
static inline __m256i tk512_to_bf16_emulated(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}
#ifdef __AVX512BF16__
/* The same rounding in one instruction (compiled with -mavx512bf16: the
 * avx512bf16 level). vcvtneps2bf16 rounds to nearest even and quiets NaN as
 * above, but reads a subnormal input as 0 (bf16 has f32's exponent range, so
 * only subnormal inputs give subnormal outputs): vectors holding one take
 * the emulated path, a branch that is not taken on ordinary data. */
static inline __m256i tk512_to_bf16(__m512 v) {
    const __m256i fast = (__m256i)_mm512_cvtneps_pbh(v);
    const __mmask16 subnormal = _mm512_fpclass_ps_mask(v, 0x20);
    if (__builtin_expect(subnormal != 0, 0)) return tk512_to_bf16_emulated(v);
    return fast;
}
#else
static inline __m256i tk512_to_bf16(__m512 v) { return tk512_to_bf16_emulated(v); }
#endif
static inline void tk512_store_f16(uint16_t *p, __mmask16 m, __m512 v) {
    _mm256_mask_storeu_epi16(p, m, tk512_to_f16(v));
}
static inline void tk512_store_bf16(uint16_t *p, __mmask16 m, __m512 v) {
    _mm256_mask_storeu_epi16(p, m, tk512_to_bf16(v));
}
/* Streaming (non-temporal) stores of a full vector to a 64/32-byte aligned address. */
static inline void tk512_stream_f32(float *p, __m512 v) { _mm512_stream_ps(p, v); }
static inline void tk512_stream_f16(uint16_t *p, __m512 v) { _mm256_stream_si256((__m256i *)p, tk512_to_f16(v)); }
static inline void tk512_stream_bf16(uint16_t *p, __m512 v) { _mm256_stream_si256((__m256i *)p, tk512_to_bf16(v)); }

/* Coefficients of the exp polynomial, optionally all multiplied by a factor
 * (pass 2 of the two-pass softmax folds 1/sum into them: one multiply less). */
typedef struct tk512_poly {
    __m512 c0, c1, c2, c3, c4, c5;
} tk512_poly;

static inline tk512_poly tk512_poly_scaled(float f) {
    tk512_poly k;
    k.c0 = _mm512_set1_ps(f);
    k.c1 = _mm512_set1_ps(TK_EXP_C1 * f);
    k.c2 = _mm512_set1_ps(TK_EXP_C2 * f);
    k.c3 = _mm512_set1_ps(TK_EXP_C3 * f);
    k.c4 = _mm512_set1_ps(TK_EXP_C4 * f);
    k.c5 = _mm512_set1_ps(TK_EXP_C5 * f);
    return k;
}

/* exp(z) * f = p * 2^n, p = f * poly(t), t = z - n ln2 clamped to +-TK_EXP_TMAX,
 * with k = tk512_poly_scaled(f). n is -inf for z = -inf, so scalef(p, n - e)
 * gives 0 without a special case. Callers screen out rows with NaN or +inf
 * (tk512_bad) before using results. */
static inline __m512 tk512_expext_k(__m512 z, __m512 *n, const tk512_poly *k) {
    /* clamp z to +-ZMAX (n to +-NMAX), except that z = -inf keeps n = -inf (exactly 0) */
    __m512 zc = _mm512_min_ps(z, _mm512_set1_ps(TK_EXP_ZMAX));
    const __mmask16 finite_low = _mm512_cmp_ps_mask(z, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
    zc = _mm512_mask_max_ps(zc, finite_low, zc, _mm512_set1_ps(-TK_EXP_ZMAX));
    /* n = round(z log2 e) with one rounding of the exact product (magic-number FMA) */
    const __m512 magic = _mm512_set1_ps(TK_ROUND_MAGIC);
    const __m512 vn = _mm512_sub_ps(_mm512_fmadd_ps(zc, _mm512_set1_ps(TK_LOG2E), magic), magic);
    __m512 t = _mm512_fmadd_ps(vn, _mm512_set1_ps(TK_MINUS_LN2_HI), z);
    t = _mm512_fmadd_ps(vn, _mm512_set1_ps(TK_MINUS_LN2_LO), t);
    /* z = -inf gives t = NaN: replace it through the mask already at hand (the
     * compiler may swap the operands of max/min, so their NaN rule cannot be
     * relied on), then clamp. NaN z leaves NaN t, but such rows are discarded. */
    t = _mm512_mask_mov_ps(_mm512_set1_ps(-TK_EXP_TMAX), finite_low, t);
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-TK_EXP_TMAX)), _mm512_set1_ps(TK_EXP_TMAX));
    __m512 p = _mm512_fmadd_ps(k->c5, t, k->c4);
    p = _mm512_fmadd_ps(p, t, k->c3);
    p = _mm512_fmadd_ps(p, t, k->c2);
    p = _mm512_fmadd_ps(p, t, k->c1);
    p = _mm512_fmadd_ps(p, t, k->c0);
    *n = vn;
    return p;
}

static inline __m512 tk512_expext(__m512 z, __m512 *n) {
    const tk512_poly k = tk512_poly_scaled(1.0f);
    return tk512_expext_k(z, n, &k);
}

/* Fold one vector of extended sums into a scalar (m, e) pair. */
static inline void tk512_extsum_reduce(__m512 m, __m512 e, float *m_out, float *e_out) {
    const float emax = _mm512_reduce_max_ps(e);
    *e_out = emax;
    *m_out = _mm512_reduce_add_ps(_mm512_scalef_ps(m, _mm512_sub_ps(e, _mm512_set1_ps(emax))));
}

/* Lanes holding NaN or +inf (which make a softmax row NaN). */
static inline __mmask16 tk512_bad(__m512 z) { return _mm512_cmp_ps_mask(z, _mm512_set1_ps(3.4028235e38f), _CMP_NLE_UQ); }

#endif
