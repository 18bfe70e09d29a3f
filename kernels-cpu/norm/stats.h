/* Row statistics shared by every norm variant (plain C, dtype- and ISA-free). */
#ifndef TK_NORM_STATS_H
#define TK_NORM_STATS_H

#include <math.h>
#include <stddef.h>

#include "tk.h"

/* Rows up to this many bytes (per input) are prefetched a whole row ahead. */
#define TK_NORM_PREFETCH_ROW_MAX (256u * 1024u)
/* Streamed residual rows of up to this many bytes keep h = x + residual in a
 * stack row of this size between their sweeps (forward_rows.inc). */
#define TK_NORM_SCRATCH_BYTES (32u * 1024u)

/* f32 RMSNorm rows go in pairs where a row and gamma take more than this
 * many bytes: more than the L1 of the smallest AVX-512 cores (forward_rows.inc). */
#define TK_NORM_PAIR_MIN_BYTES (32u * 1024u)

static inline size_t tk_norm_min(size_t a, size_t b) { return a < b ? a : b; }

/* A call that only adds (h = x + residual): nothing uses the statistics. */
static inline int tk_norm_add_only(const tk_norm_params *p) { return !(p->y || p->q || p->mean || p->rstd); }

/* What the write sweep needs of a row: y = ((h - mean_hi) - mean_lo) * rstd.
 * The mean is kept as an f32 pair so that h - mean stays exact-ish when the
 * mean is large and the spread small (mean 1e4, std 1e-2: a single f32 mean
 * would be off by 5e-4, 5% of the spread). */
typedef struct tk_norm_row {
    float mean_hi, mean_lo, rstd;
} tk_norm_row;

/* Count, mean and sum of squared deviations of the blocks merged so far. */
typedef struct tk_norm_moments {
    size_t n;
    double mean, m2;
} tk_norm_moments;

/* Adds a block of nb elements whose sums centred on c are s1 (h - c) and
 * s2 ((h - c)^2): its mean is c + s1/nb, its m2 is s2 - s1^2/nb, and the two
 * sets merge as in Chan, Golub and LeVeque's pairwise update. */
static inline void tk_norm_merge(tk_norm_moments *mo, size_t nb, float c, float s1, float s2) {
    const double bn = (double)nb;
    const double bmean = (double)c + (double)s1 / bn;
    double bm2 = (double)s2 - (double)s1 * (double)s1 / bn;
    if (bm2 < 0.0) bm2 = 0.0;
    const double total = (double)(mo->n + nb);
    if (!isfinite(bmean) || !isfinite(mo->mean)) {
        /* a block with inf or NaN (c = its sum / nb, no centred sums): the row
         * mean is whatever IEEE makes of the sum (-inf and finite: -inf; inf
         * and -inf: NaN) and the variance NaN, as in the f64 reference; the
         * update below would turn -inf then finite into inf - inf = NaN */
        mo->mean += bmean;
        mo->m2 = NAN;
        mo->n += nb;
        return;
    }
    const double delta = bmean - mo->mean;
    mo->m2 += bm2 + delta * delta * ((double)mo->n * bn / total);
    mo->mean += delta * bn / total;
    mo->n += nb;
}

/* Whether sums s1 (h - c), s2 ((h - c)^2) of nb elements keep the block's
 * m2 accurate: c within one standard deviation of the block's mean, so that
 * m2 = s2 - s1^2 / nb >= s2 / 2 (forward_rows.inc, L(layernorm_block)). */
static inline int tk_norm_shift_ok(size_t nb, float s1, float s2) {
    return isfinite(s1) && isfinite(s2) && 2.0 * (double)s1 * (double)s1 <= (double)nb * (double)s2;
}

static inline tk_norm_row tk_norm_split_mean(double mean, double rstd) {
    tk_norm_row st;
    st.mean_hi = (float)mean;
    st.mean_lo = (float)(mean - (double)st.mean_hi);
    st.rstd = (float)rstd;
    return st;
}

static inline tk_norm_row tk_norm_layernorm_row(const tk_norm_moments *mo, float eps) {
    const double var = mo->m2 / (double)mo->n;
    return tk_norm_split_mean(mo->mean, 1.0 / sqrt(var + (double)eps));
}

/* RMSNorm; with TK_NORM_CRMS the row is d - 1 stored coordinates and the
 * implied last one, -sum, joins the mean of squares. */
static inline tk_norm_row tk_norm_rms_row(double sum, double sumsq, size_t cols, uint32_t flags, float eps) {
    double d = (double)cols;
    if (flags & TK_NORM_CRMS) {
        sumsq += sum * sum;
        d += 1.0;
    }
    return tk_norm_split_mean(0.0, 1.0 / sqrt(sumsq / d + (double)eps));
}

static inline tk_norm_row tk_norm_identity_row(void) {
    tk_norm_row st = {0.0f, 0.0f, 1.0f};
    return st;
}

#endif
