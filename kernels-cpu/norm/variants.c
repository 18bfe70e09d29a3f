/* The table of every compiled norm variant, expanded from the one list in tk.h. */
#include "../common/enum_names.h"

#define TK_NORM_ENTRY(dtype, isa)                                              \
    {"tk_norm_" #dtype "_" #isa, TK_DTYPE_ENUM_##dtype, TK_ISA_ENUM_##isa,     \
     tk_norm_forward_##dtype##_##isa, tk_norm_backward_##dtype##_##isa},

const tk_norm_variant tk_norm_variants[] = {TK_NORM_VARIANTS(TK_NORM_ENTRY)};
const size_t tk_norm_variant_count = sizeof(tk_norm_variants) / sizeof(tk_norm_variants[0]);
