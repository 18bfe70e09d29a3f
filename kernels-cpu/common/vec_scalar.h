/* The portable vector interface (tkv_*) with one lane: plain C for any
 * target, so the scalar variants run the same algorithm as the SIMD ones.
 * Separate multiply and add (no fmaf: without an FMA unit it is a libm call). */
#ifndef TK_COMMON_VEC_SCALAR_H
#define TK_COMMON_VEC_SCALAR_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "scalar.h"

#define TKV_ISA scalar
#define TKV_W 1
typedef float tkv;

static inline tkv tkv_zero(void) { return 0.0f; }
static inline tkv tkv_set1(float f) { return f; }
static inline tkv tkv_add(tkv a, tkv b) { return a + b; }
static inline tkv tkv_sub(tkv a, tkv b) { return a - b; }
static inline tkv tkv_mul(tkv a, tkv b) { return a * b; }
static inline tkv tkv_fmadd(tkv a, tkv b, tkv c) { return a * b + c; }
static inline tkv tkv_max(tkv a, tkv b) { return a > b ? a : b; }
static inline tkv tkv_min(tkv a, tkv b) { return a < b ? a : b; }
static inline tkv tkv_abs(tkv a) { return fabsf(a); }
static inline float tkv_hsum(tkv v) { return v; }
static inline float tkv_hmax(tkv v) { return v; }
static inline tkv tkv_keep(tkv v, size_t n) { return n ? v : 0.0f; }
/* The Walsh-Hadamard butterflies between the lanes of one vector (none here). */
static inline tkv tkv_fwht_lanes(tkv v) { return v; }

static inline tkv tkv_load_f32(const float *p, size_t n) { return n ? *p : 0.0f; }
static inline tkv tkv_load_f16(const uint16_t *p, size_t n) { return n ? tk_f16_to_f32(*p) : 0.0f; }
static inline tkv tkv_load_bf16(const uint16_t *p, size_t n) { return n ? tk_bf16_to_f32(*p) : 0.0f; }
static inline void tkv_store_f32(float *p, size_t n, tkv v) { if (n) *p = v; }
static inline void tkv_store_f16(uint16_t *p, size_t n, tkv v) { if (n) *p = tk_f32_to_f16(v); }
static inline void tkv_store_bf16(uint16_t *p, size_t n, tkv v) { if (n) *p = tk_f32_to_bf16(v); }
static inline void tkv_stream_f32(float *p, tkv v) { *p = v; }
static inline void tkv_stream_f16(uint16_t *p, tkv v) { *p = tk_f32_to_f16(v); }
static inline void tkv_stream_bf16(uint16_t *p, tkv v) { *p = tk_f32_to_bf16(v); }
static inline void tkv_stream_fence(void) {}
static inline void tkv_stream_raw(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
#define TKV_HAS_STREAM 0

static inline tkv tkv_round_f32(tkv v) { return v; }
static inline tkv tkv_round_f16(tkv v) { return tk_f16_to_f32(tk_f32_to_f16(v)); }
static inline tkv tkv_round_bf16(tkv v) { return tk_bf16_to_f32(tk_f32_to_bf16(v)); }

static inline void tkv_store_i8(int8_t *p, size_t n, tkv v) { if (n) *p = (int8_t)nearbyintf(v); }
static inline void tkv_acc_f64(double *acc, size_t n, tkv v) { if (n) *acc += (double)v; }
/* 4 values rounded to nearest even, saturated to [-127, 127], stored as int8. */
static inline void tkv_store4_i8(int8_t *p, tkv a, tkv b, tkv c, tkv d) {
    const tkv v[4] = {a, b, c, d};
    for (int u = 0; u < 4; u++) p[u] = (int8_t)nearbyintf(v[u] > 127.0f ? 127.0f : v[u] < -127.0f ? -127.0f : v[u]);
}
static inline void tkv_stream4_i8(int8_t *p, tkv a, tkv b, tkv c, tkv d) { tkv_store4_i8(p, a, b, c, d); }
/* max(acc, v) lane-wise where a NaN in either wins and stays. */
static inline tkv tkv_max_nan(tkv acc, tkv v) { return (v > acc || v != v) ? v : acc; }
/* int8 panels (qgemm/wgemv.inc): "vector" q of a line is byte q, channel
 * q / 4 at k mod 4 = q % 4. */
static inline tkv tkv_bcast4(const float *x, size_t q) { return x[q % 4]; }
static inline tkv tkv_expand4(const float *s, size_t q) { return s[q / 4]; }
/* n (<= W) int8 values as floats. */
static inline tkv tkv_load_i8(const int8_t *p, size_t n) { return n ? (float)*p : 0.0f; }
/* n (<= W) bytes, each two signed 4-bit values: lo gets the low nibbles, hi the high ones. */
static inline tkv tkv_load_i32_sub(const int32_t *p, size_t n, int32_t c) { return n ? (float)(*p - c) : 0.0f; }
static inline void tkv_store_i32_sub(int32_t *dst, size_t n, const int32_t *p, int32_t c) {
    if (n) *dst = *p - c;
}
static inline void tkv_load_nibbles(const uint8_t *p, size_t n, tkv *lo, tkv *hi) {
    const int b = n ? *p : 0;
    *lo = (float)((b & 15) - ((b & 8) << 1));
    *hi = (float)((b >> 4) - ((b & 128) >> 3));
}
/* The 1 x 1 block at src transposed (lightning's K^T). */
static inline void tkv_transpose(const float *src, size_t lds, tkv r[1]) {
    (void)lds;
    r[0] = src[0];
}
/* Macros, not functions: GCC marks a void function whose only effect is a
 * prefetch as const, then deletes its calls as dead code. */
#define tkv_prefetch(p) ((void)(p))
#define tkv_prefetch_l2(p) ((void)(p))

#endif
