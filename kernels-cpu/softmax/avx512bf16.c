/* Softmax for bf16 I/O at the avx512bf16 level (AVX-512 + AVX512_BF16): the
 * avx512 template compiled with -mavx512bf16, so rounding each output to bf16
 * takes one instruction instead of nine (common/avx512.h). */
#include <math.h>

#include "../common/avx512.h"
#include "../common/template.h"
#include "tk.h"

#define TK_DT bf16
#include "avx512.inc"
#undef TK_DT
