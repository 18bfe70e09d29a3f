/* Norm forward and backward on the avx512 vector interface, for f32, f16 and
 * bf16 I/O (the templates forward.inc and backward.inc, once per dtype). */
#include "../common/vec_avx512.h"
#include "../common/template.h"
#include "stats.h"

#define TK_TEMPLATE "../norm/forward.inc" /* relative to common/ */
#include "../common/instantiate.h"
#define TK_TEMPLATE "../norm/backward.inc"
#include "../common/instantiate.h"
