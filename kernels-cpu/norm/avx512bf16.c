/* Norm forward and backward for bf16 I/O at the avx512bf16 level (AVX-512 +
 * AVX512_BF16): the avx512 templates compiled with -mavx512bf16, so rounding
 * to bf16 (outputs, and h = x + residual) takes one instruction instead of
 * nine (common/avx512.h). */
#include "../common/vec_avx512.h"
#include "../common/template.h"
#include "stats.h"

#define TK_DT bf16
#include "forward.inc"
#include "backward.inc"
#undef TK_DT
