/* The int4 weight-only product on AVX2 for up to 16 rows of X, in integers
 * (tk.h: tk_wgemv_int4_avx2).
 *
 * On a core with 128-bit vector units (AMD Zen 1) the SIMD kernel's int4
 * loop is bound by its conversions: per 8 weights two shifts, an int-to-float
 * conversion and half a widening, each one 128-bit unit's work (3.5-3.9
 * cycles per 8 weights, 16% of the read sweep). vpmaddubsw multiplies 32
 * unsigned bytes by 32 signed bytes and adds pairs into 16 bits: with the
 * nibbles made unsigned (+8) and X split exactly into int8 digits, as the
 * VNNI path does (wgemv_vnni.c, whose workspace layout this file shares),
 * a 32-byte half line of a panel (8 channels x 8 k) costs a mask, a 16-bit
 * shift and a mask for the two nibbles, then two vpmaddubsw and two 16-bit
 * adds per digit. The 16-bit sums stay exact for 4 lines (a pair is at most
 * 2 x 15 x 128, 4 lines of two pairs 30720 < 2^15), then vpmaddwd by ones
 * widens them to the group's int32 sums. Per group: nd exact sums per
 * channel, -8 sum d per plane (the +8) added, recombined in f64, times 2^E s,
 * summed over groups in f64 and rounded once to y (the VNNI contract).
 *
 * Rows are independent: each has its own split (digit counts per group) and
 * runs the one-row loop over each half panel in turn, so the weights come
 * from memory once per call and from L1/L2 for the other rows. The loop is
 * bound by vpmaddubsw, not by the weight stream (one row reads the weights
 * at a third of the read sweep on Zen 1), so m rows cost about m times one
 * row: on Zen 1 still 1.0-1.2x the speed of the SIMD kernel at 2-16 rows
 * (docs/qgemm.md).
 *
 * Declines (returns 0, nothing written but the workspace) what it does not
 * take: int8, int4 in rows, more than 16 rows, groups above 2^15, X with a
 * NaN / inf or a group that needs more than 6 digits in any row. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/template.h"
#include "../common/vec_avx2.h"
#include "wgemv_split.h"

#define TK_WI4_MIN_DIGITS 3
#define TK_WI4_MAX_GROUP 32768
#define TK_WI4_MAX_ROWS 16 /* the rows tk_wgemv_workspace_floats sizes the layout for */
/* Lines whose 16-bit sums stay exact (see above). */
#define TK_WI4_LINES_16 4

/* One row's split X (wgemv_split.h, tk_wsplit_row): here the corrections
 * are -8 sum d per group and plane (the +8 of the nibbles), and each line of
 * 8 k holds its 4 even k, then its 4 odd. */

/* Eight x of one line (k 8l..8l+7), the even k in the low half. */
static __m256 load_line(const void *x, tk_dtype dt, size_t at) {
    __m256 v;
    switch (dt) {
    case TK_DTYPE_F16: v = tkv_load_f16((const uint16_t *)x + at, 8); break;
    case TK_DTYPE_BF16: v = tkv_load_bf16((const uint16_t *)x + at, 8); break;
    default: v = tkv_load_f32((const float *)x + at, 8); break;
    }
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

static __m256d half_pd(__m256 v, int h) {
    return _mm256_cvtps_pd(h ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v));
}

/* Whether 2^-E x (inv = 2^-E) is an integer for every x of the group. */
static int splits(const void *x, tk_dtype dt, size_t c0, size_t g, __m256d inv) {
    for (size_t c = c0; c < c0 + g; c += 8) {
        const __m256 v = load_line(x, dt, c);
        for (int h = 0; h < 2; h++) {
            const __m256d d = _mm256_mul_pd(half_pd(v, h), inv);
            const __m256d r = _mm256_round_pd(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            if (_mm256_movemask_pd(_mm256_cmp_pd(d, r, _CMP_EQ_OQ)) != 0xF) return 0;
        }
    }
    return 1;
}

/* Splits row i of X; 0 when some group cannot be split exactly. */
static int split_row(const tk_wgemv_params *p, tk_dtype dt, size_t i) {
    const size_t k = p->k, g = p->group, groups = k / g;
    const tk_wsplit row = tk_wsplit_row(p, i), *s = &row;
    const void *x = (const char *)p->x + i * p->x_stride * (dt == TK_DTYPE_F32 ? 4 : 2);
    for (size_t gi = 0; gi < groups; gi++) {
        __m256 big = _mm256_setzero_ps();
        for (size_t c = gi * g; c < (gi + 1) * g; c += 8) big = tkv_max_nan(big, tkv_abs(load_line(x, dt, c)));
        const float amax = tkv_hmax(big);
        if (!(amax <= 0x1.fffffep127f)) return 0; /* NaN or inf */
        const int e = amax > 0.0f ? ilogbf(amax) : 0;
        int nd = TK_WI4_MIN_DIGITS;
        while (!splits(x, dt, gi * g, g, _mm256_set1_pd(ldexp(1.0, 8 * nd - 3 - e))))
            if (++nd > TK_WSPLIT_MAX_DIGITS) return 0;
        const __m256d inv = _mm256_set1_pd(ldexp(1.0, 8 * nd - 3 - e));
        s->escale[gi] = ldexp(1.0, e + 3 - 8 * nd);
        s->digits[gi] = nd;
        __m256d sums[TK_WSPLIT_MAX_DIGITS];
        for (int d = 0; d < nd; d++) sums[d] = _mm256_setzero_pd();
        for (size_t c = gi * g; c < (gi + 1) * g; c += 8) {
            const __m256 v = load_line(x, dt, c);
            for (int h = 0; h < 2; h++) { /* the even k, then the odd */
                /* |D| < 2^(8 nd - 2) <= 2^46: exact in f64, as every step below */
                __m256d rest = _mm256_mul_pd(half_pd(v, h), inv);
                for (int plane = 0; plane < nd; plane++) {
                    /* balanced digit D - 256 floor((D + 128) / 256) in [-128, 128); the top one is what is left (|.| <= 64) */
                    const __m256d digit =
                        plane < nd - 1
                            ? _mm256_sub_pd(rest, _mm256_mul_pd(_mm256_floor_pd(_mm256_mul_pd(
                                                                    _mm256_add_pd(rest, _mm256_set1_pd(128.0)),
                                                                    _mm256_set1_pd(1.0 / 256))),
                                                                _mm256_set1_pd(256.0)))
                            : rest;
                    rest = _mm256_mul_pd(_mm256_sub_pd(rest, digit), _mm256_set1_pd(1.0 / 256));
                    sums[plane] = _mm256_add_pd(sums[plane], digit);
                    const __m128i i32 = _mm256_cvtpd_epi32(digit);
                    const __m128i i8 = _mm_packs_epi16(_mm_packs_epi32(i32, i32), _mm_setzero_si128());
                    const int32_t four = _mm_cvtsi128_si32(i8);
                    memcpy(s->planes + (c / 4 + (size_t)h) * TK_WSPLIT_LINE + 4 * plane, &four, 4);
                }
            }
        }
        for (int plane = 0; plane < nd; plane++) {
            double four[4];
            _mm256_storeu_pd(four, sums[plane]);
            s->corr[gi * TK_WSPLIT_MAX_DIGITS + plane] = (int32_t)(-8.0 * ((four[0] + four[1]) + (four[2] + four[3])));
        }
    }
    return 1;
}

/* Group gi of half h (channels 8h..8h+7) of panel b with nd digits (a
 * constant after inlining), added to y (f64, 4 channels each); `fetch`: the
 * first touch of the panel's lines (half 0 of row 0), which prefetches them. */
static TK_ALWAYS_INLINE void group(const tk_wgemv_params *p, const tk_wsplit *s, size_t b, int h, size_t gi,
                                   const int nd, const int fetch, __m256d *ylo, __m256d *yhi) {
    const size_t k = p->k, g = p->group, groups = k / g;
    const uint8_t *panel = (const uint8_t *)p->w + b * 16 * p->w_stride;
    const __m256i flip = _mm256_set1_epi8((char)0x88), low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256i sum32[TK_WSPLIT_MAX_DIGITS];
    for (int d = 0; d < nd; d++) sum32[d] = _mm256_set1_epi32(s->corr[gi * TK_WSPLIT_MAX_DIGITS + d]);
    for (size_t l0 = gi * g / 8; l0 < (gi + 1) * g / 8; l0 += TK_WI4_LINES_16) {
        __m256i sum16[TK_WSPLIT_MAX_DIGITS];
        for (int d = 0; d < nd; d++) sum16[d] = _mm256_setzero_si256();
        for (size_t l = l0; l < l0 + TK_WI4_LINES_16; l++) {
            const uint8_t *line = panel + l * 64;
            if (fetch) TK_PREFETCH_WEIGHT_LINE(line);
            const __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(line + 32 * h)), flip);
            const __m256i lo = _mm256_and_si256(u, low), hi = _mm256_and_si256(_mm256_srli_epi16(u, 4), low);
            const int8_t *even = s->planes + 2 * l * TK_WSPLIT_LINE, *odd = even + TK_WSPLIT_LINE;
            for (int d = 0; d < nd; d++) {
                int32_t de, dodd;
                memcpy(&de, even + 4 * d, 4);
                memcpy(&dodd, odd + 4 * d, 4);
                sum16[d] = _mm256_add_epi16(sum16[d], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(de)));
                sum16[d] = _mm256_add_epi16(sum16[d], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(dodd)));
            }
        }
        for (int d = 0; d < nd; d++) sum32[d] = _mm256_add_epi32(sum32[d], _mm256_madd_epi16(sum16[d], ones));
    }
    /* sum_p 256^p S_p per channel (exact up to 4 digits, within 2^-53 beyond), times 2^E s */
    __m256d vlo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(sum32[nd - 1]));
    __m256d vhi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(sum32[nd - 1], 1));
    for (int d = nd - 2; d >= 0; d--) {
        vlo = _mm256_fmadd_pd(vlo, _mm256_set1_pd(256.0), _mm256_cvtepi32_pd(_mm256_castsi256_si128(sum32[d])));
        vhi = _mm256_fmadd_pd(vhi, _mm256_set1_pd(256.0), _mm256_cvtepi32_pd(_mm256_extracti128_si256(sum32[d], 1)));
    }
    const __m256 sc = _mm256_loadu_ps(p->w_scale + (b * groups + gi) * 16 + 8 * h);
    const __m256d e = _mm256_set1_pd(s->escale[gi]);
    *ylo = _mm256_fmadd_pd(vlo, _mm256_mul_pd(half_pd(sc, 0), e), *ylo);
    *yhi = _mm256_fmadd_pd(vhi, _mm256_mul_pd(half_pd(sc, 1), e), *yhi);
}

/* Channels j0.. of row i of y. */
static void store_y(const tk_wgemv_params *p, tk_dtype dt, size_t i, size_t j0, __m256d lo, __m256d hi) {
    const size_t nc = p->n - j0 < 8 ? p->n - j0 : 8;
    if (p->bias) {
        const __m256 bias = tkv_load_f32(p->bias + j0, nc);
        lo = _mm256_add_pd(lo, half_pd(bias, 0));
        hi = _mm256_add_pd(hi, half_pd(bias, 1));
    }
    const __m256 v = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    const size_t at = i * p->y_stride + j0;
    switch (dt) {
    case TK_DTYPE_F16: tkv_store_f16((uint16_t *)p->y + at, nc, v); break;
    case TK_DTYPE_BF16: tkv_store_bf16((uint16_t *)p->y + at, nc, v); break;
    default: tkv_store_f32((float *)p->y + at, nc, v); break;
    }
}

int tk_wgemv_int4_avx2(const tk_wgemv_params *p, tk_dtype dtype) {
    if (p->w_bits != 4 || !p->w_panels || p->m < 1 || p->m > TK_WI4_MAX_ROWS || p->group > TK_WI4_MAX_GROUP)
        return 0;
    if (!p->x_ready)
        for (size_t i = 0; i < p->m; i++)
            if (!split_row(p, dtype, i)) return 0;
    const size_t groups = p->k / p->group;
    /* Each panel in two passes of 8 channels (the second from L2), each
     * pass row by row (the half panel from L1/L2 after the first row). */
    for (size_t b = 0; b < (p->n + 15) / 16; b++)
        for (int h = 0; h < 2 && 16 * b + 8 * (size_t)h < p->n; h++)
            for (size_t i = 0; i < p->m; i++) {
                const tk_wsplit s = tk_wsplit_row(p, i);
                const int fetch = h == 0 && i == 0;
                __m256d ylo = _mm256_setzero_pd(), yhi = _mm256_setzero_pd();
                for (size_t gi = 0; gi < groups; gi++) switch (s.digits[gi]) {
                    case 3: group(p, &s, b, h, gi, 3, fetch, &ylo, &yhi); break;
                    case 4: group(p, &s, b, h, gi, 4, fetch, &ylo, &yhi); break;
                    case 5: group(p, &s, b, h, gi, 5, fetch, &ylo, &yhi); break;
                    default: group(p, &s, b, h, gi, 6, fetch, &ylo, &yhi); break;
                    }
                store_y(p, dtype, i, 16 * b + 8 * (size_t)h, ylo, yhi);
            }
    return 1;
}
