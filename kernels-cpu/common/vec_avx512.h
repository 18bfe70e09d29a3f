/* The portable vector interface (tkv_*) on AVX-512: 16 f32 lanes. Templates
 * written against it (norm/) compile unchanged for scalar, AVX2 and AVX-512.
 * Every load/store takes n <= TKV_W: lanes >= n are read as 0 and not written. */
#ifndef TK_COMMON_VEC_AVX512_H
#define TK_COMMON_VEC_AVX512_H

#include "avx512.h"

#define TKV_ISA TK512_ISA
#define TKV_W 16
typedef __m512 tkv;

static inline tkv tkv_zero(void) { return _mm512_setzero_ps(); }
static inline tkv tkv_set1(float f) { return _mm512_set1_ps(f); }
static inline tkv tkv_add(tkv a, tkv b) { return _mm512_add_ps(a, b); }
static inline tkv tkv_sub(tkv a, tkv b) { return _mm512_sub_ps(a, b); }
static inline tkv tkv_mul(tkv a, tkv b) { return _mm512_mul_ps(a, b); }
static inline tkv tkv_fmadd(tkv a, tkv b, tkv c) { return _mm512_fmadd_ps(a, b, c); }
static inline tkv tkv_max(tkv a, tkv b) { return _mm512_max_ps(a, b); }
static inline tkv tkv_min(tkv a, tkv b) { return _mm512_min_ps(a, b); }
static inline tkv tkv_abs(tkv a) { return _mm512_abs_ps(a); }
static inline float tkv_hsum(tkv v) { return _mm512_reduce_add_ps(v); }
static inline float tkv_hmax(tkv v) { return _mm512_reduce_max_ps(v); }
/* Lanes >= n become 0. */
static inline tkv tkv_keep(tkv v, size_t n) { return _mm512_maskz_mov_ps(tk_mask16(n), v); }
/* The Walsh-Hadamard butterflies between the lanes of one vector (strides 1,
 * 2, 4, 8; unnormalised): lane i gets v[i] + v[i ^ s] where bit s of i is
 * clear, v[i ^ s] - v[i] where it is set: one FMA by +-1 a stage (exact
 * product, one rounding: the bits of the add or subtract). */
static inline tkv tkv_fwht_lanes(tkv v) {
    const __m512 one = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
    v = _mm512_fmadd_ps(v, _mm512_mask_blend_ps(0xAAAA, one, minus), _mm512_permute_ps(v, 0xB1));
    v = _mm512_fmadd_ps(v, _mm512_mask_blend_ps(0xCCCC, one, minus), _mm512_permute_ps(v, 0x4E));
    v = _mm512_fmadd_ps(v, _mm512_mask_blend_ps(0xF0F0, one, minus), _mm512_shuffle_f32x4(v, v, 0xB1));
    return _mm512_fmadd_ps(v, _mm512_mask_blend_ps(0xFF00, one, minus), _mm512_shuffle_f32x4(v, v, 0x4E));
}

static inline tkv tkv_load_f32(const float *p, size_t n) { return _mm512_maskz_loadu_ps(tk_mask16(n), p); }
static inline tkv tkv_load_f16(const uint16_t *p, size_t n) { return tk512_load_f16(p, tk_mask16(n), _mm512_setzero_ps()); }
static inline tkv tkv_load_bf16(const uint16_t *p, size_t n) { return tk512_load_bf16(p, tk_mask16(n), _mm512_setzero_ps()); }
static inline void tkv_store_f32(float *p, size_t n, tkv v) { tk512_store_f32(p, tk_mask16(n), v); }
static inline void tkv_store_f16(uint16_t *p, size_t n, tkv v) { tk512_store_f16(p, tk_mask16(n), v); }
static inline void tkv_store_bf16(uint16_t *p, size_t n, tkv v) { tk512_store_bf16(p, tk_mask16(n), v); }
/* Full-vector streaming stores; p aligned to TKV_W elements. */
static inline void tkv_stream_f32(float *p, tkv v) { tk512_stream_f32(p, v); }
static inline void tkv_stream_f16(uint16_t *p, tkv v) { tk512_stream_f16(p, v); }
static inline void tkv_stream_bf16(uint16_t *p, tkv v) { tk512_stream_bf16(p, v); }
static inline void tkv_stream_fence(void) { _mm_sfence(); }
/* Streams one vector of raw elements (bytes = TKV_W x the element size: 64 or
 * 32, a constant) from src to dst aligned to it: a copy without conversion. */
static inline void tkv_stream_raw(void *dst, const void *src, size_t bytes) {
    if (bytes == 64) _mm512_stream_si512(dst, _mm512_loadu_si512(src));
    else _mm256_stream_si256((__m256i *)dst, _mm256_loadu_si256((const __m256i *)src));
}
#define TKV_HAS_STREAM 1

/* v rounded to the dtype and widened back (what a store then a load gives). */
static inline tkv tkv_round_f32(tkv v) { return v; }
static inline tkv tkv_round_f16(tkv v) { return _mm512_cvtph_ps(tk512_to_f16(v)); }
static inline tkv tkv_round_bf16(tkv v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(tk512_to_bf16(v)), 16));
}

/* Rounds to the nearest integer, ties to even (integer-valued v in [-127, 127]), and stores n int8. */
static inline void tkv_store_i8(int8_t *p, size_t n, tkv v) {
    _mm512_mask_cvtsepi32_storeu_epi8(p, tk_mask16(n), _mm512_cvtps_epi32(v));
}

/* 4 x 16 values (integer-valued after rounding to nearest even) as 64 int8
 * in the order a, b, c, d, saturated to [-127, 127]: 3 packs, one permute and
 * one max per 64 values instead of a narrowing store per 16. */
static inline __m512i tk512_pack4_i8(tkv a, tkv b, tkv c, tkv d) {
    const __m512i ab = _mm512_packs_epi32(_mm512_cvtps_epi32(a), _mm512_cvtps_epi32(b));
    const __m512i cd = _mm512_packs_epi32(_mm512_cvtps_epi32(c), _mm512_cvtps_epi32(d));
    /* dword 4L + v holds lane L of input v: gather input v's lanes in order */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i q = _mm512_permutexvar_epi32(order, _mm512_packs_epi16(ab, cd));
    return _mm512_max_epi8(q, _mm512_set1_epi8(-127));
}
static inline void tkv_store4_i8(int8_t *p, tkv a, tkv b, tkv c, tkv d) {
    _mm512_storeu_si512(p, tk512_pack4_i8(a, b, c, d));
}
/* p aligned to 64 bytes. */
static inline void tkv_stream4_i8(int8_t *p, tkv a, tkv b, tkv c, tkv d) {
    _mm512_stream_si512((void *)p, tk512_pack4_i8(a, b, c, d));
}

/* acc[i] += v[i] in f64 for i < n. */
static inline void tkv_acc_f64(double *acc, size_t n, tkv v) {
    const __mmask16 k = tk_mask16(n);
    const __mmask8 lo = (__mmask8)k, hi = (__mmask8)(k >> 8);
    const __m512d vl = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d vh = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    _mm512_mask_storeu_pd(acc, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, acc), vl));
    _mm512_mask_storeu_pd(acc + 8, hi, _mm512_add_pd(_mm512_maskz_loadu_pd(hi, acc + 8), vh));
}

/* max(acc, v) lane-wise where a NaN in either wins and stays. */
static inline tkv tkv_max_nan(tkv acc, tkv v) {
    const __mmask16 take = _mm512_cmp_ps_mask(v, acc, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(acc, take, v);
}
/* int8 panels (qgemm/wgemv.inc): vector q of a line is channels 4q..4q+3 x
 * k mod 4. bcast4: x[0..4) in every group of 4 lanes; expand4: s[4q + L/4]
 * in lane L. */
static inline tkv tkv_bcast4(const float *x, size_t q) {
    (void)q;
    return _mm512_broadcast_f32x4(_mm_loadu_ps(x));
}
static inline tkv tkv_expand4(const float *s, size_t q) {
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(s + 4 * q)));
}
/* n (<= 16) int8 values as floats. */
static inline tkv tkv_load_i8(const int8_t *p, size_t n) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(tk_mask16(n), p)));
}
/* n (<= 16) int32 values minus c (exact), as floats (rounded beyond 2^24) or
 * stored as int32. */
static inline tkv tkv_load_i32_sub(const int32_t *p, size_t n, int32_t c) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_maskz_loadu_epi32(tk_mask16(n), p), _mm512_set1_epi32(c)));
}
static inline void tkv_store_i32_sub(int32_t *dst, size_t n, const int32_t *p, int32_t c) {
    const __mmask16 k = tk_mask16(n);
    _mm512_mask_storeu_epi32(dst, k, _mm512_sub_epi32(_mm512_maskz_loadu_epi32(k, p), _mm512_set1_epi32(c)));
}
/* n (<= 16) bytes, each two signed 4-bit values: lo gets the low nibbles, hi
 * the high ones. A vpermps lookup reads only the low 4 bits of each index
 * lane, so each nibble becomes its float in one table lookup (the high one
 * after a shift): 4 ops per 32 weights, where shifts and conversions (one
 * 512-bit port) took 6. */
static inline void tkv_load_nibbles(const uint8_t *p, size_t n, tkv *lo, tkv *hi) {
    const __m512 values = _mm512_set_ps(-1, -2, -3, -4, -5, -6, -7, -8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i d = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(tk_mask16(n), p));
    *lo = _mm512_permutexvar_ps(d, values);
    *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(d, 4), values);
}

/* The 16 x 16 block at src (row stride lds) transposed: r[c] = column c.
 * Pairs of rows interleaved by 32 then 64 bits leave column 4k + m of rows
 * 4i..4i+3 in 128-bit lane k of t[4i + m]; two lane shuffles gather the
 * four lanes of each column (64 shuffles where scalar code moved 256 floats
 * one at a time). */
static inline void tkv_transpose(const float *src, size_t lds, tkv r[16]) {
    __m512 a[16], t[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int h = 0; h < 2; h++) {
            const __m512d x = _mm512_castps_pd(t[i + h]), y = _mm512_castps_pd(t[i + h + 2]);
            a[i + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
            a[i + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
        }
    for (int m = 0; m < 4; m++) {
        const __m512 lo02 = _mm512_shuffle_f32x4(a[m], a[4 + m], 0x88), lo13 = _mm512_shuffle_f32x4(a[m], a[4 + m], 0xDD);
        const __m512 hi02 = _mm512_shuffle_f32x4(a[8 + m], a[12 + m], 0x88);
        const __m512 hi13 = _mm512_shuffle_f32x4(a[8 + m], a[12 + m], 0xDD);
        r[m] = _mm512_shuffle_f32x4(lo02, hi02, 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(lo02, hi02, 0xDD);
        r[4 + m] = _mm512_shuffle_f32x4(lo13, hi13, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(lo13, hi13, 0xDD);
    }
}

/* Macros, not functions: GCC marks a void function whose only effect is a
 * prefetch as const, then deletes its calls as dead code. */
#define tkv_prefetch(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define tkv_prefetch_l2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)

#endif
