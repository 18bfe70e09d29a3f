/* Softmax, AVX2 + FMA + F16C: three-pass baseline and Dukhan-Ablavatski
 * two-pass, instantiated for f32, f16 and bf16 I/O by avx2.inc. */
#include <math.h>

#include "../common/avx2.h"
#include "../common/template.h"
#include "tk.h"

#define TK_DT f32
#include "avx2.inc"
#undef TK_DT
#define TK_DT f16
#include "avx2.inc"
#undef TK_DT
#define TK_DT bf16
#include "avx2.inc"
#undef TK_DT
