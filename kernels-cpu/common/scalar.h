/* Portable scalar helpers: 16-bit float conversions and the extended exp. */
#ifndef TK_COMMON_SCALAR_H
#define TK_COMMON_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t tk_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float tk_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE binary16 -> binary32, exact (denormals, inf and NaN included). */
static inline float tk_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t man = h & 0x3FFu;
    if (exp == 0x1Fu) return tk_f32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp != 0) return tk_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    /* zero or denormal: man * 2^-24, exact in f32 */
    const float mag = (float)man * 0x1p-24f;
    return sign ? -mag : mag;
}

/* binary32 -> binary16, round to nearest even; NaN stays a quiet NaN. */
static inline uint16_t tk_f32_to_f16(float f) {
    const uint32_t u = tk_f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return (uint16_t)(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u : 0));
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* an f16 denormal (or zero): quantum 2^-24. Adding 0.5 (whose ulp is
         * 2^-24) rounds to nearest even; 2^-14 itself comes out as 0x400. */
        const float mag = tk_f32_from_bits(a);
        const float q = (mag + 0.5f) - 0.5f;
        return (uint16_t)(sign | (uint16_t)(q * 0x1p24f));
    }
    /* normal: drop 13 mantissa bits with round to nearest even; carries into the exponent */
    const uint32_t rounded = a + 0xFFFu + ((a >> 13) & 1u);
    return (uint16_t)(sign | (uint16_t)((rounded - 0x38000000u) >> 13));
}

static inline float tk_bf16_to_f32(uint16_t b) { return tk_f32_from_bits((uint32_t)b << 16); }

/* binary32 -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
static inline uint16_t tk_f32_to_bf16(float f) {
    const uint32_t u = tk_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Polynomial for exp(t) on |t| <= TK_EXP_TMAX, minimax on [-ln2/2, ln2/2]
 * (the coefficients of XNNPACK's p5 family). */
#define TK_EXP_C1 0x1.FFFFF6p-1f
#define TK_EXP_C2 0x1.FFFDC6p-2f
#define TK_EXP_C3 0x1.555A80p-3f
#define TK_EXP_C4 0x1.573A1Ap-5f
#define TK_EXP_C5 0x1.0F9F9Cp-7f
#define TK_LOG2E 0x1.715476p+0f
#define TK_MINUS_LN2_HI (-0x1.62E43p-1f)
#define TK_MINUS_LN2_LO 0x1.05C61p-29f
/* Reduced arguments are clamped to this range, so huge or infinite inputs
 * give a finite mantissa (their exponent carries the magnitude). Every exact
 * reduction of |z| <= 2^20 stays inside it (see softmax/README.md). */
#define TK_EXP_TMAX 0x1.BB9D3Cp-2f /* 0.625 * ln 2 */
/* |z * log2 e| is clamped here before rounding, so |z| up to FLT_MAX keeps a
 * finite exponent (beyond 2^126 ln 2 ~ 5.9e37, inputs saturate to equal). */
#define TK_EXP_NMAX 0x1p126f
#define TK_EXP_ZMAX 0x1.62E43p+125f /* TK_EXP_NMAX * ln 2, rounded up */
/* Adding then subtracting 1.5 * 2^23 rounds to an integer; with an FMA the
 * product z * log2(e) is rounded only once, there. */
#define TK_ROUND_MAGIC 0x1.8p23f

static inline float tk_exp_poly(float t) {
    float p = TK_EXP_C5;
    p = p * t + TK_EXP_C4;
    p = p * t + TK_EXP_C3;
    p = p * t + TK_EXP_C2;
    p = p * t + TK_EXP_C1;
    return p * t + 1.0f;
}

/* exp(z) = p * 2^n with p in [0.53, 1.9]. n is an integer-valued float (-inf
 * for z = -inf, clamped to +-TK_EXP_NMAX otherwise). The reduction runs in
 * double: n = round(z / ln 2) to within 2^-30 for |z| <= 2^20, so |t| stays in
 * the polynomial's interval. */
static inline float tk_expext(float z, float *n) {
    if (z == -INFINITY) {
        *n = -INFINITY;
        return 1.0f;
    }
    double nd = nearbyint((double)z * 0x1.71547652B82FEp+0);
    nd = nd > TK_EXP_NMAX ? TK_EXP_NMAX : (nd < -TK_EXP_NMAX ? -TK_EXP_NMAX : nd);
    const float vn = (float)nd; /* exact for |nd| <= 2^24; huge z then clamp below */
    double t = (double)z - (double)vn * 0x1.62E42FEFA39EFp-1;
    if (!(t >= -TK_EXP_TMAX)) t = -TK_EXP_TMAX; /* NaN lands here too */
    if (t > TK_EXP_TMAX) t = TK_EXP_TMAX;
    *n = vn;
    return tk_exp_poly((float)t);
}

/* 2^d for an integer-valued d <= 0 (or -inf), flushing below 2^-1000. */
static inline double tk_exp2_nonpositive(double d) {
    return d < -1000.0 ? 0.0 : ldexp(1.0, (int)d);
}

/* Running sum of exp values as (mantissa, exponent): value = m * 2^e. Blocks of
 * SIMD partial sums are merged here in double, which keeps the summation error
 * bounded by the block length instead of the row length. */
typedef struct tk_extsum {
    double m;
    float e;
} tk_extsum;

#define TK_EXTSUM_EMPTY ((tk_extsum){0.0, -0x1.FFFFFEp+127f})

static inline void tk_extsum_add(tk_extsum *s, float m, float e) {
    if (m != m || e != e || s->m != s->m) { s->m = NAN; return; }
    if (e > s->e) {
        s->m = s->m * tk_exp2_nonpositive((double)s->e - (double)e) + m;
        s->e = e;
    } else {
        s->m += m * tk_exp2_nonpositive((double)e - (double)s->e);
    }
}

/* log of the sum: log(m) + e * ln 2. */
static inline float tk_extsum_log(const tk_extsum *s) {
    return (float)(log(s->m) + (double)s->e * 0x1.62E42FEFA39EFp-1);
}

#endif
