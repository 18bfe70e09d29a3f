/* Softmax, AVX-512 (F, BW, DQ, VL): three-pass baseline and Dukhan-Ablavatski
 * two-pass, instantiated for f32, f16 and bf16 I/O by softmax_avx512.inc. */
#include <math.h>

#include "../common/avx512.h"
#include "../common/template.h"
#include "tk.h"

#define TK_TEMPLATE "../softmax/avx512.inc" /* relative to common/ */
#include "../common/instantiate.h"

void tk_expext_f32_avx512(const float *z, float *m, float *e, size_t count) {
    for (size_t i = 0; i < count; i += 16) {
        const __mmask16 k = tk_mask16(count - i);
        __m512 n;
        _mm512_mask_storeu_ps(m + i, k, tk512_expext(_mm512_maskz_loadu_ps(k, z + i), &n));
        _mm512_mask_storeu_ps(e + i, k, n);
    }
}
