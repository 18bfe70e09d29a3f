/* The LLM.int8() block epilogue on the portable vector interface (include
 * after a vec_*.h), for the 256-bit int8 kernels (AVX-VNNI, AVX2): mr rows x
 * nv vectors of TKV_W output channels from j0, either the int32 products, or
 * y = acc * (a_scale * w_scale) + sum_o xo * wo + bias in f32, stored in
 * y_dtype (tk_qgemm_epilogue_vec16: 16 channels, the kernels' block). As
 * in epilogue512.h (the AVX-512 kernels' own, with masked
 * 512-bit I/O) the outlier product runs register-blocked, mr x nv independent
 * FMA chains, not one chain per output. mr and nv are compile-time
 * constants at every call (inlined). */
#ifndef TK_QGEMM_EPILOGUE_VEC_H
#define TK_QGEMM_EPILOGUE_VEC_H

#include <string.h>

#include "../common/template.h"

#define TK_EPI_VEC_MAX_ROWS 6
#define TK_EPI_VEC_MAX_VECS 2

/* sums: the block's exact int32 products (the +128 correction applied), row
 * r at sums + r * stride (ints). */
static TK_ALWAYS_INLINE void tk_qgemm_epilogue_vec(const tk_qgemm_params *p, size_t i0, size_t j0,
                                                   const int32_t *sums, size_t stride, const size_t mr,
                                                   const size_t nv) {
    const size_t no = p->n_outliers, n_pad = (p->n + 31) / 32 * 32; /* tk_qgemm_n_pad */
    size_t width[TK_EPI_VEC_MAX_VECS];
    for (size_t q = 0; q < nv; q++) {
        const size_t j = j0 + TKV_W * q;
        width[q] = j >= p->n ? 0 : (p->n - j < TKV_W ? p->n - j : TKV_W);
    }
    if (p->acc) {
        for (size_t i = 0; i < mr; i++)
            for (size_t q = 0; q < nv; q++)
                memcpy(p->acc + (i0 + i) * p->acc_stride + j0 + TKV_W * q, sums + i * stride + TKV_W * q,
                       width[q] * sizeof(int32_t));
        return;
    }
    tkv v[TK_EPI_VEC_MAX_ROWS][TK_EPI_VEC_MAX_VECS], ws[TK_EPI_VEC_MAX_VECS];
#pragma GCC unroll 2
    for (size_t q = 0; q < nv; q++) ws[q] = tkv_load_f32(p->w_scale + j0 + TKV_W * q, width[q]);
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++) {
        const tkv as = tkv_set1(p->a_scale[i0 + i]);
#pragma GCC unroll 2
        for (size_t q = 0; q < nv; q++)
            v[i][q] = tkv_mul(tkv_load_i32(sums + i * stride + TKV_W * q, TKV_W), tkv_mul(as, ws[q]));
    }
    for (size_t o = 0; o < no; o++) {
        tkv wo[TK_EPI_VEC_MAX_VECS];
#pragma GCC unroll 2
        for (size_t q = 0; q < nv; q++) wo[q] = tkv_load_f32(p->wo + o * n_pad + j0 + TKV_W * q, width[q]);
#pragma GCC unroll 6
        for (size_t i = 0; i < mr; i++) {
            const tkv x = tkv_set1(p->xo[(i0 + i) * no + o]);
#pragma GCC unroll 2
            for (size_t q = 0; q < nv; q++) v[i][q] = tkv_fmadd(x, wo[q], v[i][q]);
        }
    }
    if (p->bias)
#pragma GCC unroll 2
        for (size_t q = 0; q < nv; q++) {
            const tkv b = tkv_load_f32(p->bias + j0 + TKV_W * q, width[q]);
#pragma GCC unroll 6
            for (size_t i = 0; i < mr; i++) v[i][q] = tkv_add(v[i][q], b);
        }
#pragma GCC unroll 6
    for (size_t i = 0; i < mr; i++)
#pragma GCC unroll 2
        for (size_t q = 0; q < nv; q++) {
            const size_t off = (i0 + i) * p->y_stride + j0 + TKV_W * q;
            switch (p->y_dtype) {
            case TK_DTYPE_F32: tkv_store_f32((float *)p->y + off, width[q], v[i][q]); break;
            case TK_DTYPE_F16: tkv_store_f16((uint16_t *)p->y + off, width[q], v[i][q]); break;
            case TK_DTYPE_BF16: tkv_store_bf16((uint16_t *)p->y + off, width[q], v[i][q]); break;
            }
        }
}

/* The epilogue of 1..6 rows x 16 channels (the kernels' block), out of line:
 * one copy per file, not one per block shape. */
static __attribute__((noinline)) void tk_qgemm_epilogue_vec16(const tk_qgemm_params *p, size_t i0, size_t j0,
                                                              const int32_t *sums, size_t stride, size_t mr) {
    switch (mr) {
    case 1: tk_qgemm_epilogue_vec(p, i0, j0, sums, stride, 1, 16 / TKV_W); break;
    case 2: tk_qgemm_epilogue_vec(p, i0, j0, sums, stride, 2, 16 / TKV_W); break;
    case 3: tk_qgemm_epilogue_vec(p, i0, j0, sums, stride, 3, 16 / TKV_W); break;
    case 4: tk_qgemm_epilogue_vec(p, i0, j0, sums, stride, 4, 16 / TKV_W); break;
    case 5: tk_qgemm_epilogue_vec(p, i0, j0, sums, stride, 5, 16 / TKV_W); break;
    default: tk_qgemm_epilogue_vec(p, i0, j0, sums, stride, 6, 16 / TKV_W); break;
    }
}

#endif
