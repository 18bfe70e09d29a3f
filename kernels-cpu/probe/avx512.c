/* The FMA peak probe (fma.inc) on avx512. */
#include "../common/vec_avx512.h"
#include "../common/template.h"
#include "fma.inc"
