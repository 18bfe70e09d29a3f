/* Same-process A/B of two builds of the norm forward kernels (entry points
 * renamed old_* and new_*; built and run by kernels_ab.sh): each round times
 * old and new (who goes first alternates) on the same buffers (in cache: 20
 * calls a sample), medians over the rounds; h and y must come out with the same bits. Shapes: 256 x 4096
 * (in cache) and 16384 x 8192 with streaming stores (out of cache, as the
 * report and the Rust API run them). */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tk.h"

typedef void (*norm_fn)(const tk_norm_params *);
#define PAIR(dt, isa)                                                          \
    void old_tk_norm_forward_##dt##_##isa(const tk_norm_params *);             \
    void new_tk_norm_forward_##dt##_##isa(const tk_norm_params *);
PAIR(f32, avx512)
PAIR(f16, avx512)
PAIR(bf16, avx512)
PAIR(bf16, avx512bf16)

static const struct {
    const char *name;
    size_t elem;
    norm_fn old_fn, new_fn;
} variants[] = {
    {"f32 avx512", 4, old_tk_norm_forward_f32_avx512, new_tk_norm_forward_f32_avx512},
    {"f16 avx512", 2, old_tk_norm_forward_f16_avx512, new_tk_norm_forward_f16_avx512},
    {"bf16 avx512", 2, old_tk_norm_forward_bf16_avx512, new_tk_norm_forward_bf16_avx512},
    {"bf16 avx512bf16", 2, old_tk_norm_forward_bf16_avx512bf16, new_tk_norm_forward_bf16_avx512bf16},
};

/* One call of the old or the new build, each on its own outputs. */
AB_PAIR(pair, tk_norm_params)

/* Fills n elements with values in [-2, 2): f32 (elem 4), else bf16 or f16
 * bit patterns (truncated from f32; f16 from a normal exponent, in [1, 2)). */
static void fill(void *p, size_t n, size_t elem, int bf16, unsigned seed) {
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        const float f = (float)rand() / (float)RAND_MAX * 4.0f - 2.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        if (elem == 4) ((float *)p)[i] = f;
        else if (bf16) ((uint16_t *)p)[i] = (uint16_t)(u >> 16);
        else ((uint16_t *)p)[i] = (uint16_t)(0x3c00 | (u >> 13 & 0x3ff));
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > AB_MAX_ROUNDS) rounds = 15;
    const size_t shapes[2][2] = {{256, 4096}, {16384, 8192}};
    const struct {
        const char *name;
        tk_norm_kind kind;
        int residual, y;
    } ops[] = {{"residual+rmsnorm", TK_NORM_RMSNORM, 1, 1},
               {"residual+layernorm", TK_NORM_LAYERNORM, 1, 1},
               {"add", TK_NORM_RMSNORM, 1, 0},
               {"rmsnorm", TK_NORM_RMSNORM, 0, 1}};
    for (size_t si = 0; si < 2; si++) {
        const size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        const uint32_t flags = TK_NORM_PARAMS_F32 | (si ? TK_NORM_NONTEMPORAL : 0);
        for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
            const size_t e = variants[vi].elem;
            char *x = malloc(n * e), *r = malloc(n * e), *h[2] = {malloc(n * e), malloc(n * e)};
            char *y[2] = {malloc(n * e), malloc(n * e)};
            float *gamma = malloc(cols * 4), *beta = malloc(cols * 4);
            const int bf16 = strstr(variants[vi].name, "bf16") != NULL;
            fill(x, n, e, bf16, 2), fill(r, n, e, bf16, 4);
            for (size_t j = 0; j < cols; j++) gamma[j] = 1.0f + 0.001f * (float)(j % 7), beta[j] = 0.01f;
            for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
                tk_norm_params p[2];
                for (int s = 0; s < 2; s++) {
                    memset(&p[s], 0, sizeof p[s]);
                    p[s].x = x, p[s].residual = ops[oi].residual ? r : NULL;
                    p[s].h = ops[oi].residual ? h[s] : NULL, p[s].y = ops[oi].y ? y[s] : NULL;
                    p[s].gamma = gamma, p[s].beta = ops[oi].kind == TK_NORM_LAYERNORM ? beta : NULL;
                    p[s].rows = rows, p[s].cols = cols, p[s].x_stride = p[s].residual_stride = p[s].y_stride = cols;
                    p[s].eps = 1e-5f, p[s].out_scale = 1.0f, p[s].kind = ops[oi].kind, p[s].flags = flags;
                }
                struct pair pc = {variants[vi].old_fn, variants[vi].new_fn, p};
                double med[2];
                ab_medians(rounds, si ? 1 : 20, run_pair, &pc, med); /* in cache: 20 calls a sample */
                const int same = (!ops[oi].residual || !memcmp(h[0], h[1], n * e)) &&
                                 (!ops[oi].y || !memcmp(y[0], y[1], n * e));
                printf("%5zu x %4zu %-16s %-19s old %8.3f ms  new %8.3f ms  new speed / old %.3f  %s\n", rows, cols,
                       variants[vi].name, ops[oi].name, med[0] * 1e3, med[1] * 1e3, med[0] / med[1], same ? "same bits" : "BITS DIFFER");
            }
            free(x), free(r), free(h[0]), free(h[1]), free(y[0]), free(y[1]), free(gamma), free(beta);
        }
    }
    return 0;
}
