/* Decay tables of one head for the block scheme, computed in double from
 * log(lambda) so that lambda^m stays accurate for small lambda and long
 * blocks (a running product would compound one rounding per step):
 *   pw[m] = lambda^m for m = 0 .. TK_LIGHTNING_BLOCK;
 *   rev[x] = lambda^(B - 1 - x) for x < B, 0 for B <= x < 2B,
 * so that lambda^(i - j) for consecutive j, and the causal zero above the
 * diagonal, is the contiguous slice rev + (B - 1 - i + j). */
#ifndef TK_LIGHTNING_DECAY_H
#define TK_LIGHTNING_DECAY_H

#include <math.h>

#include "tk.h"

/* Row stride (floats) of a d-wide block buffer: whole cache lines plus one,
 * so that rows 2^k bytes apart do not all fall into the same few L1 sets
 * (at d = 128 the state's 512-byte rows used 16 of the 64 sets). */
static inline size_t tk_lightning_ld(size_t d) { return (d + 15) / 16 * 16 + 16; }

static inline void tk_decay_tables(float lambda, float *pw, float *rev) {
    const size_t b = TK_LIGHTNING_BLOCK;
    const double ln = log((double)lambda);
    for (size_t m = 0; m <= b; m++) pw[m] = (float)exp((double)m * ln);
    for (size_t x = 0; x < 2 * b; x++) rev[x] = x < b ? pw[b - 1 - x] : 0.0f;
}

#endif
