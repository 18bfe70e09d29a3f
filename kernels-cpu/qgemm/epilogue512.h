/* The LLM.int8() epilogue on AVX-512 for 16 output channels of one row,
 * shared by the VNNI and AMX kernels (tk.h: tk_qgemm_params):
 * acc - 128 * rowsum (the packed weights are w + 128), then either the int32
 * products, or y = acc * (a_scale * w_scale) + sum_o xo * wo + bias in f32,
 * stored in y_dtype. count (<= 16) channels from column j are stored. */
#ifndef TK_QGEMM_EPILOGUE512_H
#define TK_QGEMM_EPILOGUE512_H

#include "../common/avx512.h"

static inline void tk_qgemm_epilogue16(const tk_qgemm_params *p, size_t i, size_t j, size_t count, __m512i acc) {
    const __mmask16 k = tk_mask16(count);
    acc = _mm512_sub_epi32(acc, _mm512_set1_epi32(128 * p->a_rowsum[i]));
    if (p->acc) {
        _mm512_mask_storeu_epi32(p->acc + i * p->acc_stride + j, k, acc);
        return;
    }
    const size_t no = p->n_outliers, np = tk_qgemm_n_pad(p->n);
    const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(p->a_scale[i]), _mm512_loadu_ps(p->w_scale + j));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
    for (size_t o = 0; o < no; o++)
        v = _mm512_fmadd_ps(_mm512_set1_ps(p->xo[i * no + o]), _mm512_loadu_ps(p->wo + o * np + j), v);
    if (p->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, p->bias + j));
    switch (p->y_dtype) {
    case TK_DTYPE_F32: tk512_store_f32((float *)p->y + i * p->y_stride + j, k, v); break;
    case TK_DTYPE_F16: tk512_store_f16((uint16_t *)p->y + i * p->y_stride + j, k, v); break;
    case TK_DTYPE_BF16: tk512_store_bf16((uint16_t *)p->y + i * p->y_stride + j, k, v); break;
    }
}

#endif
