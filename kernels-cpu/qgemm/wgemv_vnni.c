/* The int8 and int4 weight-only products on AVX-512 VNNI for up to 16 rows
 * of X (tk.h: tk_wgemv_vnni).
 *
 * With float X an int8 weight costs a widening and a conversion per 16
 * weights, shared by the rows, and an FMA per row (int4: a widening and two
 * table lookups per 32); vpdpbusd does 64 weight-by-byte products in one
 * instruction (two a cycle here).
 * So X is split, exactly, into int8 digits: per row and group, with e the
 * exponent of the group's max |x| and nd digits (3 to 6: the fewest that
 * hold the group exactly), every x = 2^E D with E = e + 3 - 8 nd and an
 * integer |D| < 2^(8 nd - 2), written in nd balanced base-256 digits in
 * [-128, 128). A line of a W panel (16 channels x 4 k, +128 to make it
 * unsigned; int4: 16 x 8 k, +8, the two nibbles of each byte apart) times
 * the broadcast 4 digits of each plane gives nd exact int32 sums per
 * channel; the group's sum of D q is recombined in f64 (exact up to
 * 4 digits, within 2^-53 beyond), multiplied by 2^E s and summed over groups
 * in f64, rounded once to y. So the result is within an f32 and an output
 * rounding of the exact product, far inside the SIMD kernel's bound.
 *
 * A group splits exactly when its x are multiples of 2^E: with 6 digits,
 * any f16 group; bf16 within 38 binades of the group's max; f32 within 22
 * (the call checks). Calls that do not fit (int4 in rows, more than 16
 * rows, groups above 2^15, some x NaN / inf / not split exactly) decline
 * (return 0, nothing written but the workspace) and the caller runs the
 * SIMD kernel. Each digit plane costs a vpdpbusd per line and row (3 for
 * most groups of bf16 activations: a group needs a fourth only when some x
 * lies 15 binades below its max; int4 two per line of 128 weights), against
 * 4 FMAs per row and 8 shared conversions on the SIMD path (int4: 8 FMAs
 * and 16 shared ops); the caller's VNNI_ROWS say where each is faster
 * (measured). Rows go in passes of 4 over each panel. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/template.h"
#include "../common/vec_avx512.h"
#include "wgemv_digits_avx512.h"
#include "wgemv_split.h"

#define TK_WVNNI_MAX_ROWS 16
#define TK_WVNNI_PASS_ROWS 4
#define TK_WVNNI_MIN_DIGITS 3
#define TK_WVNNI_MAX_GROUP 32768
/* acc + u times the digit dword at x broadcast, the broadcast embedded in
 * vpdpbusd's memory operand (GCC does not fold a set1 into it: a separate
 * vpbroadcastd per product). */
static TK_ALWAYS_INLINE __m512i dpbusd_bcast(__m512i acc, __m512i u, const int8_t *x) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t(*)[1])x));
    return acc;
}

/* The split X (wgemv_split.h): here the corrections are -128 sum d per
 * plane (the +128 of the weights), and the call uses each group's `most`
 * digits for every row: one base pointer per row for the broadcasts. */
static __m512 load_x(const void *x, tk_dtype dt, size_t at) {
    switch (dt) {
    case TK_DTYPE_F16: return tkv_load_f16((const uint16_t *)x + at, 16);
    case TK_DTYPE_BF16: return tkv_load_bf16((const uint16_t *)x + at, 16);
    default: return tkv_load_f32((const float *)x + at, 16);
    }
}

/* Eight x times 2^-E as int64 (exact in f64), and which are integers. */
static __m512i to_int(__m256 v, __m512d inv, __mmask8 *exact) {
    const __m512d d = _mm512_mul_pd(_mm512_cvtps_pd(v), inv);
    const __m512i i = _mm512_cvtpd_epi64(d);
    *exact = _mm512_cmp_pd_mask(_mm512_cvtepi64_pd(i), d, _CMP_EQ_OQ);
    return i;
}

/* Whether 2^-E x is an integer for every x of the group. */
static int splits(const void *x, tk_dtype dt, size_t c0, size_t g, __m512d inv) {
    for (size_t c = c0; c < c0 + g; c += 16) {
        const __m512 v = load_x(x, dt, c);
        __mmask8 lo, hi;
        (void)to_int(tk_wdig_half(v, 0), inv, &lo);
        (void)to_int(tk_wdig_half(v, 1), inv, &hi);
        if ((lo & hi) != 0xFF) return 0;
    }
    return 1;
}

/* Splits row i of X; 0 when some group cannot be split exactly. For int4
 * each 8 k are stored as their 4 even k, then their 4 odd ones: the digit
 * dwords of the two nibbles of a line's bytes. */
static int split_row(const tk_wgemv_params *p, tk_dtype dt, const tk_wsplit *s, size_t i) {
    const __m512i order = p->w_bits == 4 ? _mm512_set_epi64(7, 5, 3, 1, 6, 4, 2, 0) : _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const int32_t offset = p->w_bits == 4 ? 8 : 128; /* what makes a weight unsigned */
    const size_t k = p->k, g = p->group, groups = k / g;
    const void *x = (const char *)p->x + i * p->x_stride * (dt == TK_DTYPE_F32 ? 4 : 2);
    int8_t *planes = s->planes + i * (k / 4) * TK_WSPLIT_LINE;
    for (size_t gi = 0; gi < groups; gi++) {
        __m512 big = _mm512_setzero_ps();
        for (size_t c = gi * g; c < (gi + 1) * g; c += 16) big = tkv_max_nan(big, _mm512_abs_ps(load_x(x, dt, c)));
        const float amax = tkv_hmax(big);
        if (!(amax <= 0x1.fffffep127f)) return 0; /* NaN or inf */
        const int e = amax > 0.0f ? ilogbf(amax) : 0;
        int nd = TK_WVNNI_MIN_DIGITS;
        while (!splits(x, dt, gi * g, g, _mm512_set1_pd(ldexp(1.0, 8 * nd - 3 - e))))
            if (++nd > TK_WSPLIT_MAX_DIGITS) return 0;
        const __m512d inv = _mm512_set1_pd(ldexp(1.0, 8 * nd - 3 - e));
        s->escale[i * groups + gi] = ldexp(1.0, e + 3 - 8 * nd);
        s->digits[i * groups + gi] = nd;
        __m512i sums[TK_WSPLIT_MAX_DIGITS];
        for (int d = 0; d < nd; d++) sums[d] = _mm512_setzero_si512();
        for (size_t c16 = gi * g; c16 < (gi + 1) * g; c16 += 16) {
            const __m512 v = load_x(x, dt, c16); /* each 16 read once, split as two halves of 8 */
            for (size_t c = c16; c < c16 + 16; c += 8) {
                __mmask8 ok;
                __m512i d = _mm512_permutexvar_epi64(order, to_int(tk_wdig_half(v, (int)((c - c16) / 8)), inv, &ok));
                for (int plane = 0; plane < nd; plane++) {
                    /* balanced digit ((d + 128) mod 256) - 128; the top one is what is left (|.| <= 64) */
                    const __m512i digit =
                        plane < nd - 1 ? _mm512_sub_epi64(_mm512_and_si512(_mm512_add_epi64(d, _mm512_set1_epi64(128)),
                                                                           _mm512_set1_epi64(255)),
                                                          _mm512_set1_epi64(128))
                                       : d;
                    d = _mm512_srai_epi64(_mm512_sub_epi64(d, digit), 8);
                    sums[plane] = _mm512_add_epi64(sums[plane], digit);
                    const uint64_t eight = (uint64_t)_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(digit));
                    const uint32_t lo4 = (uint32_t)eight, hi4 = (uint32_t)(eight >> 32);
                    memcpy(planes + (c / 4) * TK_WSPLIT_LINE + 4 * plane, &lo4, 4);
                    memcpy(planes + (c / 4 + 1) * TK_WSPLIT_LINE + 4 * plane, &hi4, 4);
                }
            }
        }
        for (int plane = 0; plane < nd; plane++)
            s->corr[(i * groups + gi) * TK_WSPLIT_MAX_DIGITS + plane] =
                (int32_t)(-offset * _mm512_reduce_add_epi64(sums[plane]));
    }
    return 1;
}

/* Group gi of panel b for rows i0..i0+mi, nd digits each (mi, nd and bits
 * constants after inlining), added to y (f64, 16 channels per row). int8:
 * with few planes in flight each plane's sum runs as two chains (even and
 * odd lines) so that vpdpbusd's latency stays hidden. int4 (8 k a line):
 * the low nibbles (+8: unsigned) times the even k's digits in one chain,
 * the high ones in place (16 times their value, which the end shifts out
 * exactly) times the odd k's in the other. */
static TK_ALWAYS_INLINE void group(const tk_wgemv_params *p, const tk_wsplit *s, size_t b, size_t gi, size_t i0,
                                   const size_t mi, const int nd, const int bits, __m512d *ylo, __m512d *yhi) {
    const size_t k = p->k, g = p->group, groups = k / g;
    const int chains = bits == 4 || mi * nd <= 8 ? 2 : 1;
    const uint8_t *w = (const uint8_t *)p->w + b * 16 * p->w_stride;
    const __m512i flip = _mm512_set1_epi8((char)(bits == 8 ? 0x80 : 0x88));
    __m512i acc[TK_WVNNI_PASS_ROWS][TK_WSPLIT_MAX_DIGITS][2];
    for (size_t i = 0; i < mi; i++)
        for (int d = 0; d < nd; d++) {
            acc[i][d][0] = _mm512_set1_epi32(s->corr[((i0 + i) * groups + gi) * TK_WSPLIT_MAX_DIGITS + d]);
            acc[i][d][1] = _mm512_setzero_si512();
        }
    const int8_t *xrow[TK_WVNNI_PASS_ROWS];
    for (size_t i = 0; i < mi; i++) xrow[i] = s->planes + (i0 + i) * (k / 4) * TK_WSPLIT_LINE;
    if (bits == 4) {
        const __m512i low = _mm512_set1_epi8(0x0F), high = _mm512_set1_epi8((char)0xF0);
        for (size_t l = gi * g / 8; l < (gi + 1) * g / 8; l++) {
            const uint8_t *line = w + l * 64;
            TK_PREFETCH_WEIGHT_LINE(line);
            const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(line), flip);
            const __m512i nib[2] = {_mm512_and_si512(u, low), _mm512_and_si512(u, high)};
            for (int c = 0; c < 2; c++)
                for (size_t i = 0; i < mi; i++)
                    for (int d = 0; d < nd; d++) {
                        acc[i][d][c] = dpbusd_bcast(acc[i][d][c], nib[c], xrow[i] + (2 * l + c) * TK_WSPLIT_LINE + 4 * d);
                    }
        }
        for (size_t i = 0; i < mi; i++)
            for (int d = 0; d < nd; d++) acc[i][d][1] = _mm512_srai_epi32(acc[i][d][1], 4);
    } else
        for (size_t l = gi * g / 4; l < (gi + 1) * g / 4; l += chains)
            for (int c = 0; c < chains; c++) {
                const uint8_t *line = w + (l + c) * 64;
                TK_PREFETCH_WEIGHT_LINE(line);
                const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(line), flip);
                for (size_t i = 0; i < mi; i++)
                    for (int d = 0; d < nd; d++) {
                        acc[i][d][c] = dpbusd_bcast(acc[i][d][c], u, xrow[i] + (l + c) * TK_WSPLIT_LINE + 4 * d);
                    }
            }
    const __m512 sc = _mm512_loadu_ps(p->w_scale + (b * groups + gi) * 16);
    const __m512d sc_lo = _mm512_cvtps_pd(tk_wdig_half(sc, 0)), sc_hi = _mm512_cvtps_pd(tk_wdig_half(sc, 1));
    for (size_t i = 0; i < mi; i++) {
        __m512i sd[TK_WSPLIT_MAX_DIGITS];
        for (int d = 0; d < nd; d++) sd[d] = _mm512_add_epi32(acc[i][d][0], acc[i][d][1]);
        const __m512d e = _mm512_set1_pd(s->escale[(i0 + i) * groups + gi]);
        ylo[i] = _mm512_fmadd_pd(tk_wdig_recombine(sd, nd, 0), _mm512_mul_pd(sc_lo, e), ylo[i]);
        yhi[i] = _mm512_fmadd_pd(tk_wdig_recombine(sd, nd, 1), _mm512_mul_pd(sc_hi, e), yhi[i]);
    }
}

/* Panel b (channels 16 b ..) for rows i0..i0+mi (mi and bits constants
 * after inlining), nds[gi] digits in group gi. */
static TK_ALWAYS_INLINE void panel(const tk_wgemv_params *p, tk_dtype dt, const tk_wsplit *s, const int32_t *nds,
                                   size_t b, size_t i0, const size_t mi, const int bits) {
    const size_t groups = p->k / p->group;
    __m512d ylo[TK_WVNNI_PASS_ROWS], yhi[TK_WVNNI_PASS_ROWS];
    for (size_t i = 0; i < mi; i++) ylo[i] = yhi[i] = _mm512_setzero_pd();
    for (size_t gi = 0; gi < groups; gi++) switch (nds[gi]) {
        case 3: group(p, s, b, gi, i0, mi, 3, bits, ylo, yhi); break;
        case 4: group(p, s, b, gi, i0, mi, 4, bits, ylo, yhi); break;
        case 5: group(p, s, b, gi, i0, mi, 5, bits, ylo, yhi); break;
        default: group(p, s, b, gi, i0, mi, 6, bits, ylo, yhi); break;
        }
    for (size_t i = 0; i < mi; i++) tk_wdig_store_y(p, dt, i0 + i, 16 * b, ylo[i], yhi[i]);
}

/* Splits every row of X into the workspace; 0 when some group cannot be
 * split exactly. One digit count per group for all rows: a row with fewer
 * gets zero planes above its own (the same D). */
int tk_wgemv_split_x(const tk_wgemv_params *p, tk_dtype dtype, const tk_wsplit *s) {
    const size_t groups = p->k / p->group;
    for (size_t i = 0; i < p->m; i++)
        if (!split_row(p, dtype, s, i)) return 0;
    int32_t *nds = s->most;
    for (size_t gi = 0; gi < groups; gi++) {
        nds[gi] = TK_WVNNI_MIN_DIGITS;
        for (size_t i = 0; i < p->m; i++)
            if (s->digits[i * groups + gi] > nds[gi]) nds[gi] = s->digits[i * groups + gi];
    }
    for (size_t i = 0; i < p->m; i++)
        for (size_t gi = 0; gi < groups; gi++)
            for (int d = s->digits[i * groups + gi]; d < nds[gi]; d++) {
                for (size_t l = gi * p->group / 4; l < (gi + 1) * p->group / 4; l++)
                    memset(s->planes + (i * (p->k / 4) + l) * TK_WSPLIT_LINE + 4 * d, 0, 4);
                s->corr[(i * groups + gi) * TK_WSPLIT_MAX_DIGITS + d] = 0;
            }
    return 1;
}

int tk_wgemv_vnni(const tk_wgemv_params *p, tk_dtype dtype) {
    if (!(p->w_bits == 8 || (p->w_bits == 4 && p->w_panels)) || p->m == 0 || p->m > TK_WVNNI_MAX_ROWS ||
        p->group > TK_WVNNI_MAX_GROUP)
        return 0;
    const tk_wsplit s = tk_wsplit_layout(p);
    const int32_t *nds = s.most;
    if (!p->x_ready && !tk_wgemv_split_x(p, dtype, &s)) return 0;
    /* Rows in passes of up to 4 over each panel (the panel stays in L2). */
    const int int4 = p->w_bits == 4;
    for (size_t b = 0; b < (p->n + 15) / 16; b++)
        for (size_t i0 = 0; i0 < p->m; i0 += TK_WVNNI_PASS_ROWS) {
            const size_t mi = p->m - i0 < TK_WVNNI_PASS_ROWS ? p->m - i0 : TK_WVNNI_PASS_ROWS;
            switch (mi * 2 + int4) {
#define TK_WVNNI_CASE(a)                                      \
    case a * 2: panel(p, dtype, &s, nds, b, i0, a, 8); break; \
    case a * 2 + 1: panel(p, dtype, &s, nds, b, i0, a, 4); break;
                TK_WVNNI_CASE(1) TK_WVNNI_CASE(2) TK_WVNNI_CASE(3) TK_WVNNI_CASE(4)
#undef TK_WVNNI_CASE
            default: break;
            }
        }
    return 1;
}
