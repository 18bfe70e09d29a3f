/* Same-process A/B of two builds of the Kronecker kernels (entry points
 * renamed old_* and new_*; built and run by kernels_ab.sh): each round times
 * old and new (who goes first alternates) on the same 512 tokens (in cache),
 * medians over the rounds; y, q and the scales must come out with the same
 * bits. Shapes: Hadamard 4096 (64 x 64), 64 x 64 dense, 86 dense x 128
 * Hadamard; outputs int8, int4 or y. */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tk.h"

typedef void (*kron_fn)(const tk_kron_params *);
#define PAIR(dt, isa)                                                          \
    void old_tk_kron_##dt##_##isa(const tk_kron_params *);                     \
    void new_tk_kron_##dt##_##isa(const tk_kron_params *);
PAIR(f32, avx512)
PAIR(bf16, avx512)
PAIR(f32, avx2)

#define TOKENS 512

static const struct {
    const char *name;
    size_t elem;
    kron_fn old_fn, new_fn;
} variants[] = {
    {"f32 avx512", 4, old_tk_kron_f32_avx512, new_tk_kron_f32_avx512},
    {"bf16 avx512", 2, old_tk_kron_bf16_avx512, new_tk_kron_bf16_avx512},
    {"f32 avx2", 4, old_tk_kron_f32_avx2, new_tk_kron_f32_avx2},
};

/* One call of the old or the new build, each on its own outputs. */
AB_PAIR(pair, tk_kron_params)

static float uniform(void) { return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f; }

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > AB_MAX_ROUNDS) rounds = 15;
    const struct {
        const char *name;
        size_t n1, n2;
        int dense_left, dense_right, q_bits; /* q_bits 0: y only */
    } shapes[] = {
        {"hadamard 64x64 int8", 64, 64, 0, 0, 8},
        {"hadamard 64x64 int4", 64, 64, 0, 0, 4},
        {"hadamard 64x64 y", 64, 64, 0, 0, 0},
        {"dense 64x64 int8", 64, 64, 1, 1, 8},
        {"86 dense x 128 hadamard int8", 86, 128, 1, 0, 8},
    };
    srand(7);
    const size_t max_n = 86 * 128;
    float *xf = malloc(TOKENS * max_n * 4), *smooth = NULL;
    uint16_t *xb = malloc(TOKENS * max_n * 2);
    for (size_t i = 0; i < TOKENS * max_n; i++) {
        xf[i] = uniform();
        uint32_t u;
        memcpy(&u, &xf[i], 4);
        xb[i] = (uint16_t)(u >> 16);
    }
    float *left = malloc(128 * 128 * 4), *right = malloc(128 * 128 * 4);
    for (size_t i = 0; i < 128 * 128; i++) left[i] = uniform() * 0.1f, right[i] = uniform() * 0.1f;
    void *ws = aligned_alloc(64, tk_kron_workspace_bytes(128, 128));
    void *out[2], *q[2];
    float *scale[2];
    for (int s = 0; s < 2; s++) {
        out[s] = malloc(TOKENS * max_n * 4);
        q[s] = malloc(TOKENS * max_n);
        scale[s] = malloc(TOKENS * 4);
    }
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
        for (size_t vi = 0; vi < sizeof(variants) / sizeof(variants[0]); vi++) {
            const size_t n = shapes[si].n1 * shapes[si].n2, elem = variants[vi].elem;
            tk_kron_params p = {elem == 4 ? (const void *)xf : (const void *)xb,
                                n,
                                TOKENS,
                                shapes[si].n1,
                                shapes[si].n2,
                                smooth,
                                shapes[si].dense_left ? left : NULL,
                                shapes[si].dense_right ? right : NULL,
                                1.0f / sqrtf((float)n),
                                NULL,
                                n,
                                NULL,
                                n,
                                NULL,
                                shapes[si].q_bits,
                                1.0f,
                                ws};
            tk_kron_params ps[2] = {p, p};
            for (int s = 0; s < 2; s++) {
                memset(out[s], 0, TOKENS * n * elem);
                memset(q[s], 0, TOKENS * n);
                ps[s].y = shapes[si].q_bits ? NULL : out[s];
                ps[s].q = shapes[si].q_bits ? q[s] : NULL;
                ps[s].q_scale = shapes[si].q_bits ? scale[s] : NULL;
                ps[s].q_stride = shapes[si].q_bits == 4 ? (n + 1) / 2 : n;
            }
            struct pair pc = {variants[vi].old_fn, variants[vi].new_fn, ps};
            double med[2];
            ab_medians(rounds, 1, run_pair, &pc, med);
            const int same = memcmp(out[0], out[1], TOKENS * n * elem) == 0 && memcmp(q[0], q[1], TOKENS * n) == 0 &&
                             (!shapes[si].q_bits || memcmp(scale[0], scale[1], TOKENS * 4) == 0);
            const double told = med[0], tnew = med[1];
            printf("%-30s %-12s old %8.3f ms (%.2e tokens/s)  new %8.3f ms  new speed / old %.3f%s\n", shapes[si].name,
                   variants[vi].name, told * 1e3, TOKENS / told, tnew * 1e3, told / tnew,
                   same ? "" : "  DIFFERENT BITS");
        }
    return 0;
}
