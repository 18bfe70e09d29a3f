/* Lightning attention on the avx2 vector interface, for f32, f16 and bf16 I/O
 * (the template lightning.inc, once per dtype). */
#include <string.h>

#include "../common/vec_avx2.h"
#include "../common/tile.h"
#include "decay.h"

#define TK_TEMPLATE "../lightning/lightning.inc" /* relative to common/ */
#include "../common/instantiate.h"
