/* Same-process A/B of two builds of the Lightning CPU kernels (entry points
 * renamed old_* and new_*; built and run by kernels_ab.sh): each round times
 * old and new (who goes first alternates) on the same buffers, medians over
 * the rounds, and checks that both forwards write the same bits. On a shared
 * host whose speed moves by up to 2x between minutes, only a same-process
 * ratio is worth quoting. */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tk.h"

#define PAIR(name, params)                                                     \
    void old_##name(const params *);                                           \
    void new_##name(const params *);
PAIR(tk_lightning_forward_f32_avx512, tk_lightning_params)
PAIR(tk_lightning_forward_bf16_avx512, tk_lightning_params)
PAIR(tk_lightning_backward_f32_avx512, tk_lightning_backward_params)
PAIR(tk_lightning_forward_f32_avx2, tk_lightning_params)

#define HEADS 4
#define N 2048

static float uniform(void) { return (float)rand() / (float)RAND_MAX - 0.5f; }

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* Variant w of the four measured, on side 0 (old) or 1 (new). */
struct which {
    int w;
    const tk_lightning_params *p, *pb;
    const tk_lightning_backward_params *bp;
};

static void run_which(int s, void *ctx) {
    const struct which *c = ctx;
    switch (c->w) {
    case 0: (s ? new_tk_lightning_forward_f32_avx512 : old_tk_lightning_forward_f32_avx512)(c->p); break;
    case 1: (s ? new_tk_lightning_forward_bf16_avx512 : old_tk_lightning_forward_bf16_avx512)(c->pb); break;
    case 2: (s ? new_tk_lightning_backward_f32_avx512 : old_tk_lightning_backward_f32_avx512)(c->bp); break;
    default: (s ? new_tk_lightning_forward_f32_avx2 : old_tk_lightning_forward_f32_avx2)(c->p); break;
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > AB_MAX_ROUNDS) rounds = 15;
    const size_t dims[] = {64, 128};
    for (size_t di = 0; di < 2; di++) {
        const size_t d = dims[di], total = (size_t)HEADS * N * d;
        float *x[4], *o2 = malloc(total * 4), *grad[3];
        uint16_t *xb[4];
        for (int i = 0; i < 4; i++) x[i] = malloc(total * 4), xb[i] = malloc(total * 2);
        for (int i = 0; i < 3; i++) grad[i] = malloc(total * 4);
        for (size_t i = 0; i < total; i++)
            for (int j = 0; j < 3; j++) {
                x[j][i] = uniform() * (j < 2 ? 0.1f : 1.0f); /* q, k small: outputs of order 1 */
                xb[j][i] = to_bf16(x[j][i]);
            }
        const float decay[HEADS] = {0.99f, 0.9f, 0.999f, 1.0f};
        float *ws = malloc(sizeof(float) * tk_lightning_workspace_floats(d, d, 1));
        const tk_lightning_layout lay = {0, (ptrdiff_t)(N * d), (ptrdiff_t)d};
        const tk_lightning_params p = {x[0], x[1], x[2], x[3], lay, lay, NULL, 1, HEADS, N, d, d, decay, NULL, NULL, ws};
        tk_lightning_params pb = p;
        pb.q = xb[0], pb.k = xb[1], pb.v = xb[2], pb.o = xb[3];
        const tk_lightning_backward_params bp = {x[0], x[1], x[2], x[2], grad[0], grad[1], grad[2], lay, lay, NULL,
                                                 1, HEADS, N, d, d, decay, NULL, NULL, NULL, ws};
        const char *names[] = {"forward f32 avx512", "forward bf16 avx512", "backward f32 avx512",
                               "forward f32 avx2"};
        for (int w = 0; w < 4; w++) {
            struct which w_ctx = {w, &p, &pb, &bp};
            double med[2];
            ab_medians(rounds, 1, run_which, &w_ctx, med);
            const double told = med[0], tnew = med[1];
            /* the report's flop count: per block of 64 tokens 64 * 65 * 2d + 4 * 64 d^2; backward 3 passes */
            const double flops = (double)HEADS * (N / 64) * (64.0 * 65 * 2 * d + 4.0 * 64 * d * d) * (w == 2 ? 3 : 1);
            printf("d = %3zu %-20s old %7.3f ms (%5.1f GFLOP/s)  new %7.3f ms (%5.1f GFLOP/s)  new speed / old %.3f\n",
                   d, names[w], told * 1e3, flops / told / 1e9, tnew * 1e3, flops / tnew / 1e9, told / tnew);
        }
        old_tk_lightning_forward_f32_avx512(&p);
        memcpy(o2, x[3], total * 4);
        new_tk_lightning_forward_f32_avx512(&p);
        printf("d = %3zu forward f32 avx512: old and new outputs %s\n", d,
               memcmp(o2, x[3], total * 4) ? "DIFFER" : "bit-identical");
        for (int i = 0; i < 4; i++) free(x[i]), free(xb[i]);
        for (int i = 0; i < 3; i++) free(grad[i]);
        free(o2), free(ws);
    }
    return 0;
}
