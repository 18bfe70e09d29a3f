/* LLM.int8() activation quantization and the weight-only product on the
 * scalar vector interface, for f32, f16 and bf16 (the templates
 * activation.inc and wgemv.inc, once per dtype). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/vec_scalar.h"
#include "../common/template.h"

#define TK_TEMPLATE "../qgemm/activation.inc" /* relative to common/ */
#include "../common/instantiate.h"
#define TK_TEMPLATE "../qgemm/wgemv.inc"
#include "../common/instantiate.h"
