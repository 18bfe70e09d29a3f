/* The LLM.int8() epilogue for one output, in plain C (tk.h: tk_qgemm_params):
 * the portable int8 product's. acc is the exact int32
 * product (the +128 correction already applied). */
#ifndef TK_QGEMM_STORE_ONE_H
#define TK_QGEMM_STORE_ONE_H

#include "../common/scalar.h"

/* y or acc for one (i, j), from the exact int32 product. */
static inline void tk_qgemm_store_one(const tk_qgemm_params *p, size_t i, size_t j, int32_t acc) {
    if (p->acc) {
        p->acc[i * p->acc_stride + j] = acc;
        return;
    }
    float v = (float)acc * (p->a_scale[i] * p->w_scale[j]);
    for (size_t o = 0; o < p->n_outliers; o++) v += p->xo[i * p->n_outliers + o] * p->wo[o * p->wo_stride + j];
    if (p->bias) v += p->bias[j];
    switch (p->y_dtype) {
    case TK_DTYPE_F32: ((float *)p->y)[i * p->y_stride + j] = v; break;
    case TK_DTYPE_F16: ((uint16_t *)p->y)[i * p->y_stride + j] = tk_f32_to_f16(v); break;
    case TK_DTYPE_BF16: ((uint16_t *)p->y)[i * p->y_stride + j] = tk_f32_to_bf16(v); break;
    }
}

#endif
