/* Kronecker transforms on the scalar vector interface, for f32, f16 and bf16
 * tokens (the template kron.inc, once per dtype). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"

#include "../common/vec_scalar.h"
#include "steps.h"

#define TK_TEMPLATE "../kron/kron.inc" /* relative to common/ */
#include "../common/instantiate.h"
