/* The table of every compiled softmax variant, expanded from the one list in
 * tk.h. Rust reads it for dispatch, tests, benches and the report. */
#include "../common/enum_names.h"

#define TK_ALGO_ENUM_threepass TK_SOFTMAX_THREEPASS
#define TK_ALGO_ENUM_twopass TK_SOFTMAX_TWOPASS

#define TK_SOFTMAX_ENTRY(dtype, isa, algo)                                     \
    {"tk_softmax_" #dtype "_" #isa "_" #algo, TK_DTYPE_ENUM_##dtype, TK_ISA_ENUM_##isa, \
     TK_ALGO_ENUM_##algo, tk_softmax_##dtype##_##isa##_##algo},

const tk_softmax_variant tk_softmax_variants[] = {TK_SOFTMAX_VARIANTS(TK_SOFTMAX_ENTRY)};
const size_t tk_softmax_variant_count = sizeof(tk_softmax_variants) / sizeof(tk_softmax_variants[0]);
