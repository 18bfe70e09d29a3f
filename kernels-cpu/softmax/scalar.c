/* Softmax, portable scalar C: the three-pass baseline and the two-pass
 * algorithm, for f32, f16 and bf16 I/O (template in scalar.inc). Sums are
 * accumulated in double. Builds for any target. */
#include <float.h>
#include <math.h>

#include "../common/scalar.h"
#include "../common/template.h"
#include "tk.h"

static inline float tk_load_f32(const float *p) { return *p; }
static inline float tk_load_f16(const uint16_t *p) { return tk_f16_to_f32(*p); }
static inline float tk_load_bf16(const uint16_t *p) { return tk_bf16_to_f32(*p); }
static inline void tk_store_f32(float *p, float v) { *p = v; }
static inline void tk_store_f16(uint16_t *p, float v) { *p = tk_f32_to_f16(v); }
static inline void tk_store_bf16(uint16_t *p, float v) { *p = tk_f32_to_bf16(v); }

#define TK_TEMPLATE "../softmax/scalar.inc" /* relative to common/ */
#include "../common/instantiate.h"

void tk_expext_f32_scalar(const float *z, float *m, float *e, size_t count) {
    for (size_t i = 0; i < count; i++) m[i] = tk_expext(z[i], &e[i]);
}
