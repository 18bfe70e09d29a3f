/* The LLM.int8() block epilogue on the portable vector interface (include
 * after a vec_*.h), shared by every SIMD int8 kernel (AMX, AVX-512 VNNI,
 * AVX-VNNI, AVX2; tk.h: tk_qgemm_params): for mr rows x nv vectors of TKV_W
 * output channels from j0, sums - 128 * rowsum (the packed weights are
 * w + 128), then either the int32 products, or y = acc * (a_scale * w_scale)
 * + sum_o xo * wo + bias in f32, stored in y_dtype. The outlier product runs
 * as a small register-blocked GEMM (mr x nv independent accumulators): one
 * accumulator per output would chain n_outliers FMAs back to back. mr and nv
 * are compile-time constants at every call (inlined). */
#ifndef TK_QGEMM_EPILOGUE_VEC_H
#define TK_QGEMM_EPILOGUE_VEC_H

#include "../common/template.h"

#define TK_EPI_MAX_ROWS 6
#define TK_EPI_MAX_VECS 4

/* sums: the block's int32 products, row r at sums + r * stride (ints). */
static TK_ALWAYS_INLINE void tk_qgemm_epilogue(const tk_qgemm_params *p, size_t i0, size_t j0, const int32_t *sums,
                                               size_t stride, const size_t mr, const size_t nv) {
    const size_t no = p->n_outliers, n_pad = p->wo_stride;
    size_t width[TK_EPI_MAX_VECS];
    int32_t corr[TK_EPI_MAX_ROWS];
#pragma GCC unroll 4
    for (size_t q = 0; q < nv; q++) {
        const size_t j = j0 + TKV_W * q;
        width[q] = j >= p->n ? 0 : (p->n - j < TKV_W ? p->n - j : TKV_W);
    }
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) corr[i] = 128 * p->a_rowsum[i0 + i];
    if (p->acc) {
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (size_t q = 0; q < nv; q++)
                tkv_store_i32_sub(p->acc + (i0 + i) * p->acc_stride + j0 + TKV_W * q, width[q],
                                  sums + i * stride + TKV_W * q, corr[i]);
        return;
    }
    tkv v[TK_EPI_MAX_ROWS][TK_EPI_MAX_VECS], ws[TK_EPI_MAX_VECS];
#pragma GCC unroll 4
    for (size_t q = 0; q < nv; q++) ws[q] = tkv_load_f32(p->w_scale + j0 + TKV_W * q, width[q]);
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) {
        const tkv as = tkv_set1(p->a_scale[i0 + i]);
#pragma GCC unroll 4
        for (size_t q = 0; q < nv; q++)
            v[i][q] = tkv_mul(tkv_load_i32_sub(sums + i * stride + TKV_W * q, TKV_W, corr[i]), tkv_mul(as, ws[q]));
    }
    for (size_t o = 0; o < no; o++) {
        tkv wo[TK_EPI_MAX_VECS];
#pragma GCC unroll 4
        for (size_t q = 0; q < nv; q++) wo[q] = tkv_load_f32(p->wo + o * n_pad + j0 + TKV_W * q, width[q]);
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++) {
            const tkv x = tkv_set1(p->xo[(i0 + i) * no + o]);
#pragma GCC unroll 4
            for (size_t q = 0; q < nv; q++) v[i][q] = tkv_fmadd(x, wo[q], v[i][q]);
        }
    }
    if (p->bias)
#pragma GCC unroll 4
        for (size_t q = 0; q < nv; q++) {
            const tkv b = tkv_load_f32(p->bias + j0 + TKV_W * q, width[q]);
#pragma GCC unroll 6
            for (size_t i = 0; i < mr; i++) v[i][q] = tkv_add(v[i][q], b);
        }
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (size_t q = 0; q < nv; q++) {
            const size_t off = (i0 + i) * p->y_stride + j0 + TKV_W * q;
            switch (p->y_dtype) {
            case TK_DTYPE_F32: tkv_store_f32((float *)p->y + off, width[q], v[i][q]); break;
            case TK_DTYPE_F16: tkv_store_f16((uint16_t *)p->y + off, width[q], v[i][q]); break;
            case TK_DTYPE_BF16: tkv_store_bf16((uint16_t *)p->y + off, width[q], v[i][q]); break;
            }
        }
}

#if TKV_W == 8
/* 1..6 rows x 16 channels (the 256-bit kernels' block), out of line: one copy
 * per file, not one per block shape. */
static __attribute__((noinline)) void tk_qgemm_epilogue16(const tk_qgemm_params *p, size_t i0, size_t j0,
                                                          const int32_t *sums, size_t stride, size_t mr) {
    switch (mr) {
    case 1: tk_qgemm_epilogue(p, i0, j0, sums, stride, 1, 2); break;
    case 2: tk_qgemm_epilogue(p, i0, j0, sums, stride, 2, 2); break;
    case 3: tk_qgemm_epilogue(p, i0, j0, sums, stride, 3, 2); break;
    case 4: tk_qgemm_epilogue(p, i0, j0, sums, stride, 4, 2); break;
    case 5: tk_qgemm_epilogue(p, i0, j0, sums, stride, 5, 2); break;
    default: tk_qgemm_epilogue(p, i0, j0, sums, stride, 6, 2); break;
    }
}
#endif

#endif
