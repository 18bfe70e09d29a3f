/* The portable vector interface (tkv_*) on AVX2 + FMA + F16C: 8 f32 lanes.
 * AVX2 has no 16-bit masked loads, so partial vectors go through a small
 * buffer (tails only: n is a constant TKV_W in the main loops). */
#ifndef TK_COMMON_VEC_AVX2_H
#define TK_COMMON_VEC_AVX2_H

#include <string.h>

#include "avx2.h"

#define TKV_ISA avx2
#define TKV_W 8
typedef __m256 tkv;

static inline tkv tkv_zero(void) { return _mm256_setzero_ps(); }
static inline tkv tkv_set1(float f) { return _mm256_set1_ps(f); }
static inline tkv tkv_add(tkv a, tkv b) { return _mm256_add_ps(a, b); }
static inline tkv tkv_sub(tkv a, tkv b) { return _mm256_sub_ps(a, b); }
static inline tkv tkv_mul(tkv a, tkv b) { return _mm256_mul_ps(a, b); }
static inline tkv tkv_fmadd(tkv a, tkv b, tkv c) { return _mm256_fmadd_ps(a, b, c); }
static inline tkv tkv_max(tkv a, tkv b) { return _mm256_max_ps(a, b); }
static inline tkv tkv_min(tkv a, tkv b) { return _mm256_min_ps(a, b); }
static inline tkv tkv_abs(tkv a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline float tkv_hsum(tkv v) { return tk256_hsum(v); }
static inline float tkv_hmax(tkv v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
static inline tkv tkv_keep(tkv v, size_t n) {
    if (n >= 8) return v;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
    return _mm256_and_ps(v, _mm256_castsi256_ps(in));
}
/* The Walsh-Hadamard butterflies between the lanes of one vector (strides 1,
 * 2, 4; unnormalised): lane i gets v[i] + v[i ^ s] where bit s of i is
 * clear, v[i ^ s] - v[i] where it is set: one FMA by +-1 a stage (exact
 * product, one rounding: the bits of the add or subtract). */
static inline tkv tkv_fwht_lanes(tkv v) {
    const __m256 one = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
    v = _mm256_fmadd_ps(v, _mm256_blend_ps(one, minus, 0xAA), _mm256_permute_ps(v, 0xB1));
    v = _mm256_fmadd_ps(v, _mm256_blend_ps(one, minus, 0xCC), _mm256_permute_ps(v, 0x4E));
    return _mm256_fmadd_ps(v, _mm256_blend_ps(one, minus, 0xF0), _mm256_permute2f128_ps(v, v, 0x01));
}

#define TKV_AVX2_IO(dt, T)                                                      \
    static inline tkv tkv_load_##dt(const T *p, size_t n) {                     \
        if (n >= 8) return tk256_load_##dt(p);                                  \
        T buf[8] = {0};                                                         \
        memcpy(buf, p, n * sizeof(T));                                          \
        return tk256_load_##dt(buf);                                            \
    }                                                                           \
    static inline void tkv_store_##dt(T *p, size_t n, tkv v) {                  \
        if (n >= 8) { tk256_store_##dt(p, v); return; }                         \
        T buf[8];                                                               \
        tk256_store_##dt(buf, v);                                               \
        memcpy(p, buf, n * sizeof(T));                                          \
    }                                                                           \
    static inline void tkv_stream_##dt(T *p, tkv v) { tk256_stream_##dt(p, v); }
TKV_AVX2_IO(f32, float)
TKV_AVX2_IO(f16, uint16_t)
TKV_AVX2_IO(bf16, uint16_t)
#undef TKV_AVX2_IO
static inline void tkv_stream_fence(void) { _mm_sfence(); }
/* Streams one vector of raw elements (bytes = TKV_W x the element size: 32 or
 * 16, a constant) from src to dst aligned to it: a copy without conversion. */
static inline void tkv_stream_raw(void *dst, const void *src, size_t bytes) {
    if (bytes == 32) _mm256_stream_si256((__m256i *)dst, _mm256_loadu_si256((const __m256i *)src));
    else _mm_stream_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src));
}
#define TKV_HAS_STREAM 1

static inline tkv tkv_round_f32(tkv v) { return v; }
static inline tkv tkv_round_f16(tkv v) { return _mm256_cvtph_ps(tk256_to_f16(v)); }
static inline tkv tkv_round_bf16(tkv v) {
    return _mm256_castsi256_ps(_mm256_and_si256(tk256_bf16_high_halves(v), _mm256_set1_epi32((int)0xFFFF0000u)));
}

static inline void tkv_store_i8(int8_t *p, size_t n, tkv v) {
    const __m256i i = _mm256_cvtps_epi32(v);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    const __m128i b = _mm_packs_epi16(w, w);
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)p, b);
        return;
    }
    int8_t buf[16];
    _mm_storeu_si128((__m128i *)buf, b);
    memcpy(p, buf, n);
}

/* 4 x 8 values (integer-valued after rounding to nearest even) as 32 int8 in
 * the order a, b, c, d, saturated to [-127, 127]. */
static inline __m256i tk256_pack4_i8(tkv a, tkv b, tkv c, tkv d) {
    const __m256i ab = _mm256_packs_epi32(_mm256_cvtps_epi32(a), _mm256_cvtps_epi32(b));
    const __m256i cd = _mm256_packs_epi32(_mm256_cvtps_epi32(c), _mm256_cvtps_epi32(d));
    /* dwords: a b c d of the low lanes, then of the high lanes */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
    return _mm256_max_epi8(q, _mm256_set1_epi8(-127));
}
static inline void tkv_store4_i8(int8_t *p, tkv a, tkv b, tkv c, tkv d) {
    _mm256_storeu_si256((__m256i *)p, tk256_pack4_i8(a, b, c, d));
}
/* p aligned to 32 bytes. */
static inline void tkv_stream4_i8(int8_t *p, tkv a, tkv b, tkv c, tkv d) {
    _mm256_stream_si256((__m256i *)p, tk256_pack4_i8(a, b, c, d));
}

static inline void tkv_acc_f64(double *acc, size_t n, tkv v) {
    if (n >= 8) {
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), lo));
        _mm256_storeu_pd(acc + 4, _mm256_add_pd(_mm256_loadu_pd(acc + 4), hi));
        return;
    }
    float buf[8];
    _mm256_storeu_ps(buf, v);
    for (size_t i = 0; i < n; i++) acc[i] += (double)buf[i];
}

/* max(acc, v) lane-wise where a NaN in either wins and stays. */
static inline tkv tkv_max_nan(tkv acc, tkv v) {
    const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, acc, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_ps(acc, v, take);
}
/* int8 panels (qgemm/wgemv.inc): vector q of a line is channels 2q, 2q+1 x
 * k mod 4. bcast4: x[0..4) in both halves; expand4: s[2q + L/4] in lane L. */
static inline tkv tkv_bcast4(const float *x, size_t q) {
    (void)q;
    return _mm256_broadcast_ps((const __m128 *)x);
}
static inline tkv tkv_expand4(const float *s, size_t q) {
    return _mm256_set_m128(_mm_set1_ps(s[2 * q + 1]), _mm_set1_ps(s[2 * q]));
}
/* n (<= 8) int8 values as floats. */
static inline tkv tkv_load_i8(const int8_t *p, size_t n) {
    int64_t bits = 0;
    memcpy(&bits, p, n < 8 ? n : 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bits)));
}
/* n (<= 8) bytes, each two signed 4-bit values: lo gets the low nibbles, hi the high ones. */
static inline void tkv_load_nibbles(const uint8_t *p, size_t n, tkv *lo, tkv *hi) {
    int64_t bits = 0;
    memcpy(&bits, p, n < 8 ? n : 8);
    const __m256i d = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bits));
    *lo = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(d, 28), 28));
    *hi = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(d, 24), 28));
}

/* n (<= 8) int32 values minus c (exact), as floats (rounded beyond 2^24) or
 * stored as int32. */
static inline tkv tkv_load_i32_sub(const int32_t *p, size_t n, int32_t c) {
    int32_t buf[8] = {0};
    if (n < 8) memcpy(buf, p, n * sizeof(int32_t));
    const __m256i v = _mm256_loadu_si256((const __m256i *)(n < 8 ? buf : p));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(c)));
}
static inline void tkv_store_i32_sub(int32_t *dst, size_t n, const int32_t *p, int32_t c) {
    int32_t buf[8] = {0};
    if (n < 8) memcpy(buf, p, n * sizeof(int32_t));
    const __m256i v = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(n < 8 ? buf : p)), _mm256_set1_epi32(c));
    if (n >= 8) {
        _mm256_storeu_si256((__m256i *)dst, v);
        return;
    }
    _mm256_storeu_si256((__m256i *)buf, v);
    memcpy(dst, buf, n * sizeof(int32_t));
}

/* The 8 x 8 block at src (row stride lds) transposed: r[c] = column c.
 * Pairs of rows interleaved by 32 then 64 bits leave column 4k + m of rows
 * 4i..4i+3 in 128-bit lane k of t[4i + m]; one lane permute joins them. */
static inline void tkv_transpose(const float *src, size_t lds, tkv r[8]) {
    __m256 a[8], t[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(a[i], a[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(a[i], a[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; h++) {
            const __m256d x = _mm256_castps_pd(t[i + h]), y = _mm256_castps_pd(t[i + h + 2]);
            a[i + 2 * h] = _mm256_castpd_ps(_mm256_unpacklo_pd(x, y));
            a[i + 2 * h + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(x, y));
        }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(a[m], a[4 + m], 0x20);
        r[4 + m] = _mm256_permute2f128_ps(a[m], a[4 + m], 0x31);
    }
}

/* Macros, not functions: GCC marks a void function whose only effect is a
 * prefetch as const, then deletes its calls as dead code. */
#define tkv_prefetch(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define tkv_prefetch_l2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)

#endif
