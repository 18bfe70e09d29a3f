/* The table of the activation-side / weight-only variants (expanded from the
 * one list in tk.h), the weight packing every int8 kernel shares, and the
 * portable int8 product (the exact reference the SIMD kernels are tested
 * against, and the fallback where they cannot run). */
#include <string.h>

#include "tk.h"

#include "../common/enum_names.h"
#include "../common/scalar.h"
#include "amx_tiles.h"
#include "store_one.h"

#define TK_QGEMM_ENTRY(dtype, isa)                                                               \
    {"tk_qgemm_" #dtype "_" #isa, TK_DTYPE_ENUM_##dtype, TK_ISA_ENUM_##isa,                       \
     tk_qgemm_quantize_##dtype##_##isa, tk_qgemm_colmax_##dtype##_##isa, tk_wgemv_##dtype##_##isa},

const tk_qgemm_variant tk_qgemm_variants[] = {TK_QGEMM_VARIANTS(TK_QGEMM_ENTRY)};
const size_t tk_qgemm_variant_count = sizeof(tk_qgemm_variants) / sizeof(tk_qgemm_variants[0]);

/* The widened X, plus one group's worth for the int4 de-interleave, plus 15
 * floats for the kernels to start it on a cache line (vector loads of X that
 * straddle two lines cost two). */
/* Columns of the AMX-BF16 kernel's X tile for m rows in the widest case that
 * still fits (f32: 3 parts up to 5 rows, f16: 2 up to 8, bf16: 1 up to 16). */
static size_t tk_wgemv_amx_cols(size_t m) { return m <= 5 ? 3 * m : m <= 8 ? 2 * m : m <= 16 ? m : 0; }

size_t tk_wgemv_workspace_floats(size_t m, size_t k) {
    const size_t simd = m * k + k + 1 + 15; /* X widened, a group's de-interleave, the verdict, alignment */
    const size_t cols = tk_wgemv_amx_cols(m);
    /* X as bf16 pairs (k / 2 x cols dwords), twice 16 KiB of W tiles, 4 KiB
     * of span sums and 1 KiB of accumulators, alignment of the start and of
     * the tiles */
    const size_t amx = cols ? cols * k / 2 + 16 + 2 * (4096 + 1024 + 256) + 16 : 0;
    /* The integer paths' split X (wgemv_split.h), up to 16 rows: per row
     * and group (at most k / 32) an f64 and 7 int32, per group an int32, 6 k
     * digit bytes per row and 6 k more for the AMX tiles' copy, the
     * alignment of both starts. */
    const size_t vnni = m <= 16 ? (m * (k / 32) * 36 + (k / 32) * 4 + 2 * m * 6 * k) / 4 + 32 : 0;
    const size_t most = simd > amx ? simd : amx;
    return most > vnni ? most : vnni;
}

size_t tk_qgemm_amx_scratch(size_t k) { return k > TK_AMX_KC ? (size_t)TK_AMX_MC * TK_AMX_PART_STRIDE : 0; }
size_t tk_qgemm_n_pad(size_t n) { return (n + 31) / 32 * 32; }
size_t tk_qgemm_packed_bytes(size_t n, size_t k) { return tk_qgemm_n_pad(n) * k; }

void tk_qgemm_pack_weight(const int8_t *w, size_t w_stride, size_t n, size_t k, uint8_t *packed) {
    const size_t np = tk_qgemm_n_pad(n);
    for (size_t j = 0; j < np; j++) {
        uint8_t *panel = packed + (j / 16) * (k / 4) * 64 + (j % 16) * 4;
        for (size_t kk = 0; kk < k; kk++)
            panel[(kk / 4) * 64 + kk % 4] = j < n ? (uint8_t)(w[j * w_stride + kk] + 128) : 128;
    }
}

void tk_qgemm_s8_scalar(const tk_qgemm_params *p) {
    const size_t k = p->k;
    for (size_t i = 0; i < p->m; i++) {
        const int8_t *a = p->a + i * p->a_stride;
        for (size_t j = 0; j < p->n; j++) {
            const uint8_t *panel = p->w + (j / 16) * (k / 4) * 64 + (j % 16) * 4;
            int32_t acc = 0;
            for (size_t kk = 0; kk < k; kk++) acc += (int32_t)a[kk] * (int32_t)panel[(kk / 4) * 64 + kk % 4];
            tk_qgemm_store_one(p, i, j, acc - 128 * p->a_rowsum[i]);
        }
    }
}
