/* Softmax, AVX2 + FMA + F16C: three-pass baseline and Dukhan-Ablavatski
 * two-pass, instantiated for f32, f16 and bf16 I/O by avx2.inc. */
#include <math.h>

#include "../common/avx2.h"
#include "../common/template.h"
#include "tk.h"

#define TK_TEMPLATE "../softmax/avx2.inc" /* relative to common/ */
#include "../common/instantiate.h"

void tk_expext_f32_avx2(const float *z, float *m, float *e, size_t count) {
    for (size_t i = 0; i < count; i += 8) {
        float zb[8], mb[8], eb[8];
        const size_t k = count - i < 8 ? count - i : 8;
        for (size_t j = 0; j < 8; j++) zb[j] = j < k ? z[i + j] : 0.0f;
        __m256 n;
        _mm256_storeu_ps(mb, tk256_expext(_mm256_loadu_ps(zb), &n));
        _mm256_storeu_ps(eb, n);
        for (size_t j = 0; j < k; j++) {
            m[i + j] = mb[j];
            e[i + j] = eb[j];
        }
    }
}

void tk_exp_nonpositive_f32_avx2(const float *d, float *y, size_t count) {
    for (size_t i = 0; i < count; i += 8) {
        float db[8], yb[8];
        const size_t k = count - i < 8 ? count - i : 8;
        for (size_t j = 0; j < 8; j++) db[j] = j < k ? d[i + j] : 0.0f;
        _mm256_storeu_ps(yb, tk256_exp_nonpositive(_mm256_loadu_ps(db)));
        for (size_t j = 0; j < k; j++) y[i + j] = yb[j];
    }
}
