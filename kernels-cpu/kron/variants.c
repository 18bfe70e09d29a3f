/* The table of every compiled Kronecker variant, expanded from the one list
 * in tk.h, and the workspace size they share. */
#include "tk.h"

#include "../common/enum_names.h"

/* Two f32 copies of the token (the product's source and destination) and the
 * int8 values before int4 packing, each rounded up to 64 bytes. */
size_t tk_kron_workspace_bytes(size_t n1, size_t n2) {
    const size_t n = n1 * n2, f = (n * sizeof(float) + 63) / 64 * 64, b = (n + 63) / 64 * 64;
    return 2 * f + b;
}

#define TK_KRON_ENTRY(dtype, isa) {"tk_kron_" #dtype "_" #isa, TK_DTYPE_ENUM_##dtype, TK_ISA_ENUM_##isa, tk_kron_##dtype##_##isa},

const tk_kron_variant tk_kron_variants[] = {TK_KRON_VARIANTS(TK_KRON_ENTRY)};
const size_t tk_kron_variant_count = sizeof(tk_kron_variants) / sizeof(tk_kron_variants[0]);
