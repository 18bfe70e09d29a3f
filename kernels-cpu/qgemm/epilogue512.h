/* The LLM.int8() epilogue on AVX-512 for a block of mr rows x np panels of 16
 * output channels, shared by the VNNI and AMX kernels (tk.h:
 * tk_qgemm_params): sums - 128 * rowsum (the packed weights are w + 128),
 * then either the int32 products, or y = acc * (a_scale * w_scale) +
 * sum_o xo * wo + bias in f32, stored in y_dtype. The outlier product runs
 * as a small register-blocked GEMM (mr x np independent accumulators): one
 * accumulator per output would chain n_outliers FMAs back to back. mr and np
 * are compile-time constants at every call (inlined). */
#ifndef TK_QGEMM_EPILOGUE512_H
#define TK_QGEMM_EPILOGUE512_H

#include "../common/avx512.h"
#include "../common/template.h"

#define TK_EPI_MAX_ROWS 6
#define TK_EPI_MAX_PANELS 4

/* sums: the block's int32 products, row r at sums + r * stride (ints). */
static TK_ALWAYS_INLINE void tk_qgemm_epilogue(const tk_qgemm_params *p, size_t i0, size_t j0, const int32_t *sums,
                                               size_t stride, const size_t mr, const size_t np) {
    const size_t no = p->n_outliers, n_pad = (p->n + 31) / 32 * 32; /* tk_qgemm_n_pad */
    __mmask16 keep[TK_EPI_MAX_PANELS];
#pragma GCC unroll 4
    for (size_t q = 0; q < np; q++) {
        const size_t j = j0 + 16 * q;
        keep[q] = j < p->n ? tk_mask16(p->n - j) : 0;
    }
    __m512i acc[TK_EPI_MAX_ROWS][TK_EPI_MAX_PANELS];
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) {
        const __m512i corr = _mm512_set1_epi32(128 * p->a_rowsum[i0 + i]);
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++)
            acc[i][q] = _mm512_sub_epi32(_mm512_load_si512((const void *)(sums + i * stride + 16 * q)), corr);
    }
    if (p->acc) {
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (size_t q = 0; q < np; q++)
                _mm512_mask_storeu_epi32(p->acc + (i0 + i) * p->acc_stride + j0 + 16 * q, keep[q], acc[i][q]);
        return;
    }
    __m512 v[TK_EPI_MAX_ROWS][TK_EPI_MAX_PANELS], ws[TK_EPI_MAX_PANELS];
#pragma GCC unroll 4
    for (size_t q = 0; q < np; q++) ws[q] = _mm512_loadu_ps(p->w_scale + j0 + 16 * q);
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) {
        const __m512 as = _mm512_set1_ps(p->a_scale[i0 + i]);
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++) v[i][q] = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[i][q]), _mm512_mul_ps(as, ws[q]));
    }
    for (size_t o = 0; o < no; o++) {
        __m512 wo[TK_EPI_MAX_PANELS];
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++) wo[q] = _mm512_loadu_ps(p->wo + o * n_pad + j0 + 16 * q);
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++) {
            const __m512 x = _mm512_set1_ps(p->xo[(i0 + i) * no + o]);
#pragma GCC unroll 4
            for (size_t q = 0; q < np; q++) v[i][q] = _mm512_fmadd_ps(x, wo[q], v[i][q]);
        }
    }
    if (p->bias) {
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++) {
            const __m512 b = _mm512_maskz_loadu_ps(keep[q], p->bias + j0 + 16 * q);
#pragma GCC unroll 6
            for (size_t i = 0; i < mr; i++) v[i][q] = _mm512_add_ps(v[i][q], b);
        }
    }
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (size_t q = 0; q < np; q++) {
            const size_t off = (i0 + i) * p->y_stride + j0 + 16 * q;
            switch (p->y_dtype) {
            case TK_DTYPE_F32: tk512_store_f32((float *)p->y + off, keep[q], v[i][q]); break;
            case TK_DTYPE_F16: tk512_store_f16((uint16_t *)p->y + off, keep[q], v[i][q]); break;
            case TK_DTYPE_BF16: tk512_store_bf16((uint16_t *)p->y + off, keep[q], v[i][q]); break;
            }
        }
}

#endif
