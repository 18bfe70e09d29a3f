/*
 * transformer-kernels: the C ABI of every CPU microkernel.
 *
 * This header is bindgen's input (src/ffi/bindings.rs is generated from it).
 * Microkernels are pure functions over raw pointers with explicit lengths and
 * strides: no allocation, no global state, no reads or writes past the lengths
 * they are given. Each family has one params struct and one list of variants
 * (an X-macro); the list produces the declarations below and the table that the
 * Rust side reads, so adding a variant is one line in the list.
 */
#ifndef TK_H
#define TK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of a kernel's input and output. Arithmetic is always f32. */
typedef enum tk_dtype {
    TK_DTYPE_F32 = 0,
    TK_DTYPE_F16 = 1,
    TK_DTYPE_BF16 = 2,
} tk_dtype;

/* Instruction set a variant is compiled for. */
typedef enum tk_isa {
    TK_ISA_SCALAR = 0, /* portable C, any target */
    TK_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA + F16C */
    TK_ISA_AVX512 = 2, /* x86-64 AVX-512 F, BW, DQ, VL */
} tk_isa;

/* ---------------------------------------------------------------- softmax */

typedef enum tk_softmax_algo {
    /* max; exp, store and sum; scale the stored values (three sweeps). */
    TK_SOFTMAX_THREEPASS = 0,
    /* Dukhan & Ablavatski: sum of exp as (mantissa, exponent) pairs, then
     * recompute exp and scale (two sweeps over the input, one write). */
    TK_SOFTMAX_TWOPASS = 1,
} tk_softmax_algo;

/* Flags of tk_softmax_params.flags. */
#define TK_SOFTMAX_LOG 1u         /* log-softmax instead of softmax */
#define TK_SOFTMAX_NONTEMPORAL 2u /* streaming stores for the final output */

/*
 * Row-wise softmax of a row-major [rows, cols] buffer:
 *   z = fl32(scale * x);  y = exp(z - max z) / sum exp(z - max z)
 * (or y = z - log sum exp z with TK_SOFTMAX_LOG). x and y hold elements of the
 * variant's dtype; rows are x_stride / y_stride elements apart. y may equal x
 * (in place) but must not overlap it otherwise. cols >= 1.
 */
typedef struct tk_softmax_params {
    const void *x;
    void *y;
    size_t rows;
    size_t cols;
    size_t x_stride;
    size_t y_stride;
    float scale;
    uint32_t flags;
} tk_softmax_params;

typedef void (*tk_softmax_fn)(const tk_softmax_params *params);

/* The variant list: X(dtype, isa, algo). One line per variant. */
#define TK_SOFTMAX_VARIANTS_PORTABLE(X)                                        \
    X(f32, scalar, threepass) X(f16, scalar, threepass) X(bf16, scalar, threepass) \
    X(f32, scalar, twopass) X(f16, scalar, twopass) X(bf16, scalar, twopass)

#define TK_SOFTMAX_VARIANTS_X86(X)                                             \
    X(f32, avx2, threepass) X(f16, avx2, threepass) X(bf16, avx2, threepass)   \
    X(f32, avx2, twopass) X(f16, avx2, twopass) X(bf16, avx2, twopass)         \
    X(f32, avx512, threepass) X(f16, avx512, threepass) X(bf16, avx512, threepass) \
    X(f32, avx512, twopass) X(f16, avx512, twopass) X(bf16, avx512, twopass)

#if defined(__x86_64__) || defined(_M_X64)
#define TK_SOFTMAX_VARIANTS(X) TK_SOFTMAX_VARIANTS_PORTABLE(X) TK_SOFTMAX_VARIANTS_X86(X)
#else
#define TK_SOFTMAX_VARIANTS(X) TK_SOFTMAX_VARIANTS_PORTABLE(X)
#endif

#define TK_DECLARE_SOFTMAX(dtype, isa, algo)                                   \
    void tk_softmax_##dtype##_##isa##_##algo(const tk_softmax_params *params);
TK_SOFTMAX_VARIANTS(TK_DECLARE_SOFTMAX)
#undef TK_DECLARE_SOFTMAX

/* One entry of the variant table, for dispatch, tests, benches and reports. */
typedef struct tk_softmax_variant {
    const char *name; /* the C symbol */
    tk_dtype dtype;
    tk_isa isa;
    tk_softmax_algo algo;
    tk_softmax_fn run;
} tk_softmax_variant;

/* Every softmax variant compiled into this library. */
extern const tk_softmax_variant tk_softmax_variants[];
extern const size_t tk_softmax_variant_count;

/* The extended exp the kernels use, exposed so its error can be tested on its
 * own: m[i] * 2^e[i] = exp(z[i]) for i < count. One per ISA (X86 ones only on
 * x86-64); the index is the tk_isa value. */
typedef void (*tk_expext_fn)(const float *z, float *m, float *e, size_t count);
void tk_expext_f32_scalar(const float *z, float *m, float *e, size_t count);
#if defined(__x86_64__) || defined(_M_X64)
void tk_expext_f32_avx2(const float *z, float *m, float *e, size_t count);
void tk_expext_f32_avx512(const float *z, float *m, float *e, size_t count);
#endif

#ifdef __cplusplus
}
#endif

#endif /* TK_H */
