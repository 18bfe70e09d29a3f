/* Softmax, AVX2 + FMA + F16C: three-pass baseline and Dukhan-Ablavatski
 * two-pass, instantiated for f32, f16 and bf16 I/O by avx2.inc. */
#include <math.h>

#include "../common/avx2.h"
#include "../common/template.h"
#include "tk.h"

#define TK_TEMPLATE "../softmax/avx2.inc" /* relative to common/ */
#include "../common/instantiate.h"
