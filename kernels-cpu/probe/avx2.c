/* The FMA peak probe (fma.inc) on avx2. */
#include "../common/vec_avx2.h"
#include "../common/template.h"
#include "fma.inc"
