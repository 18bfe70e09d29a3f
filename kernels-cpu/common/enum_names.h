/* tk.h enum values by the short names the variant lists use (f32, avx2, ...),
 * for expanding those lists into tables. */
#ifndef TK_COMMON_ENUM_NAMES_H
#define TK_COMMON_ENUM_NAMES_H
#include "tk.h"
#define TK_DTYPE_ENUM_f32 TK_DTYPE_F32
#define TK_DTYPE_ENUM_f16 TK_DTYPE_F16
#define TK_DTYPE_ENUM_bf16 TK_DTYPE_BF16
#define TK_ISA_ENUM_scalar TK_ISA_SCALAR
#define TK_ISA_ENUM_avx2 TK_ISA_AVX2
#define TK_ISA_ENUM_avx512 TK_ISA_AVX512
#define TK_ISA_ENUM_avx512bf16 TK_ISA_AVX512BF16
#endif
