/* Softmax, AVX-512 (F, BW, DQ, VL): three-pass baseline and Dukhan-Ablavatski
 * two-pass, instantiated for f32, f16 and bf16 I/O by softmax_avx512.inc. */
#include <math.h>

#include "../common/avx512.h"
#include "../common/template.h"
#include "tk.h"

#define TK_TEMPLATE "../softmax/avx512.inc" /* relative to common/ */
#include "../common/instantiate.h"
