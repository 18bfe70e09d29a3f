/* The table of every compiled lightning variant, expanded from the one list in
 * tk.h, and the workspace size every variant shares. */
#include "tk.h"

#include "decay.h"

#include "../common/enum_names.h"

/* One pass (lightning.inc): Q_b, decayed Q_b, V_b (B rows), K_b^T and its
 * decayed copy (d rows of B), A (B rows of B), S (d rows), rows padded to
 * tk_lightning_ld, and the decay tables (3B + 1); d is the larger head dim
 * because the backward passes swap dk and dv. The backward adds a d x d
 * start state. */
size_t tk_lightning_workspace_floats(size_t dk, size_t dv, int backward) {
    const size_t b = TK_LIGHTNING_BLOCK, d = dk > dv ? dk : dv, ld = tk_lightning_ld(d), lb = tk_lightning_ld(b);
    return 3 * b * ld + 2 * d * lb + b * lb + d * ld + 3 * b + 1 + (backward ? d * d : 0);
}

#define TK_LIGHTNING_ENTRY(dtype, isa)                                                        \
    {"tk_lightning_" #dtype "_" #isa, TK_DTYPE_ENUM_##dtype, TK_ISA_ENUM_##isa,                 \
     tk_lightning_forward_##dtype##_##isa, tk_lightning_backward_##dtype##_##isa,              \
     tk_lightning_decode_##dtype##_##isa},

const tk_lightning_variant tk_lightning_variants[] = {TK_LIGHTNING_VARIANTS(TK_LIGHTNING_ENTRY)};
const size_t tk_lightning_variant_count = sizeof(tk_lightning_variants) / sizeof(tk_lightning_variants[0]);
