/* Same-process A/B of two builds of the norm kernels (entry points renamed
 * old_* and new_*; built and run by kernels_ab.sh): each round times old and
 * new (who goes first alternates) on the same buffers (in cache: 20 calls a
 * sample), medians over the rounds. Forward (the default): h, y and q (with
 * its scales) must come out with the same bits. Backward (second argument
 * "backward", a third keeps the variants whose name holds it, e.g. "f16
 * avx512"): dx must, and the largest difference of dgamma/dbeta between the
 * builds is printed relative to sum |term| of its column; with NOACC set in
 * the environment the new side computes dx only (what the sums cost).
 * Shapes: 256 x 4096 (in cache) and 16384 x 8192 with streaming stores (out
 * of cache, as the report and the Rust API run them), or NORM_AB_SHAPES
 * (e.g. "16384x8192,32768x4096"; past 64 MiB a tensor streams). Forward
 * takes a second argument that keeps the rows whose "variant op" name holds
 * each of its words (e.g. "f32 int8"); NORM_AB_PARAMS=dtype passes gamma
 * and beta in the I/O dtype instead of f32; NORM_AB_H_OFFSET=BYTES places h
 * that many bytes off malloc's alignment (y keeps it). */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tk.h"

typedef void (*norm_fn)(const tk_norm_params *);
typedef void (*norm_bwd_fn)(const tk_norm_backward_params *);
#define PAIR(dt, isa)                                                          \
    void old_tk_norm_forward_##dt##_##isa(const tk_norm_params *);             \
    void new_tk_norm_forward_##dt##_##isa(const tk_norm_params *);             \
    void old_tk_norm_backward_##dt##_##isa(const tk_norm_backward_params *);   \
    void new_tk_norm_backward_##dt##_##isa(const tk_norm_backward_params *);
PAIR(f32, avx2)
PAIR(f16, avx2)
PAIR(bf16, avx2)
PAIR(f32, avx512)
PAIR(f16, avx512)
PAIR(bf16, avx512)
PAIR(bf16, avx512bf16)

#define VARIANT(dt, isa, elem)                                                  \
    {#dt " " #isa, elem, old_tk_norm_forward_##dt##_##isa, new_tk_norm_forward_##dt##_##isa, \
     old_tk_norm_backward_##dt##_##isa, new_tk_norm_backward_##dt##_##isa}
static const struct {
    const char *name;
    size_t elem;
    norm_fn old_fn, new_fn;
    norm_bwd_fn old_bwd, new_bwd;
} variants[] = {
    VARIANT(f32, avx512, 4), VARIANT(f16, avx512, 2), VARIANT(bf16, avx512, 2), VARIANT(bf16, avx512bf16, 2),
    VARIANT(f32, avx2, 4),   VARIANT(f16, avx2, 2),   VARIANT(bf16, avx2, 2),
};
/* The forward compares the AVX-512 builds only, unless a filter picks rows. */
#define FORWARD_VARIANTS 4

/* One call of the old or the new build, each on its own outputs. */
AB_PAIR(pair, tk_norm_params)
AB_PAIR(bwd_pair, tk_norm_backward_params)

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

/* Element i of a buffer filled by fill(), in f64. */
static double to_f64(const void *p, size_t i, size_t elem, int bf16) {
    if (elem == 4) return ((const float *)p)[i];
    const uint16_t b = ((const uint16_t *)p)[i];
    if (bf16) {
        const uint32_t u = (uint32_t)b << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    /* fill's f16 values: exponent 0 (sign and 10 mantissa bits), [1, 2) */
    return (b & 0x8000 ? -1.0 : 1.0) * (1.0 + (b & 0x3ff) / 1024.0);
}

/* The default shapes: one in cache, one past the L3 (streaming stores). */
static const size_t default_shapes[2][2] = {{256, 4096}, {16384, 8192}};
#define MAX_SHAPES 16
/* Buffers past this many bytes per tensor count as out of cache: streaming
 * stores, one call a sample. */
#define OUT_OF_CACHE_BYTES (64u << 20)

/* Shapes from NORM_AB_SHAPES ("ROWSxCOLS,ROWSxCOLS,.."), else the defaults. */
static size_t shapes_of(size_t shapes[MAX_SHAPES][2]) {
    const char *env = getenv("NORM_AB_SHAPES");
    size_t count = 0;
    for (const char *at = env; at && *at && count < MAX_SHAPES; count++) {
        char *end;
        shapes[count][0] = strtoul(at, &end, 10);
        shapes[count][1] = *end == 'x' ? strtoul(end + 1, &end, 10) : 0;
        if (!shapes[count][0] || !shapes[count][1]) {
            fprintf(stderr, "NORM_AB_SHAPES: expected ROWSxCOLS,.. at \"%s\"\n", at);
            exit(2);
        }
        at = *end == ',' ? end + 1 : end;
    }
    if (count) return count;
    memcpy(shapes, default_shapes, sizeof default_shapes);
    return 2;
}

/* Forward rows whose "variant op" name holds every word of `filter`; gamma
 * and beta in f32, or in the I/O dtype with NORM_AB_PARAMS=dtype. */
static void forward(int rounds, const char *filter) {
    size_t shapes[MAX_SHAPES][2];
    const size_t nshapes = shapes_of(shapes);
    const int params_f32 = !getenv("NORM_AB_PARAMS") || strcmp(getenv("NORM_AB_PARAMS"), "dtype");
    const struct {
        const char *name;
        tk_norm_kind kind;
        int residual, y, q;
    } ops[] = {{"residual+rmsnorm", TK_NORM_RMSNORM, 1, 1, 0},
               {"residual+layernorm", TK_NORM_LAYERNORM, 1, 1, 0},
               {"add", TK_NORM_RMSNORM, 1, 0, 0},
               {"rmsnorm", TK_NORM_RMSNORM, 0, 1, 0},
               {"layernorm", TK_NORM_LAYERNORM, 0, 1, 0},
               {"rmsnorm->int8", TK_NORM_RMSNORM, 0, 0, 1}};
    for (size_t si = 0; si < nshapes; si++) {
        const size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        for (size_t vi = 0; vi < (filter ? sizeof variants / sizeof variants[0] : FORWARD_VARIANTS); vi++) {
            const size_t e = variants[vi].elem;
            const int out_of_cache = n * e > OUT_OF_CACHE_BYTES;
            const uint32_t flags = (params_f32 ? TK_NORM_PARAMS_F32 : 0) | (out_of_cache ? TK_NORM_NONTEMPORAL : 0);
            const size_t h_off = getenv("NORM_AB_H_OFFSET") ? strtoul(getenv("NORM_AB_H_OFFSET"), NULL, 10) : 0;
            char *x = malloc(n * e), *r = malloc(n * e), *h_mem[2] = {malloc(n * e + h_off), malloc(n * e + h_off)};
            char *h[2] = {h_mem[0] + h_off, h_mem[1] + h_off};
            char *y[2] = {malloc(n * e), malloc(n * e)};
            int8_t *q[2] = {malloc(n), malloc(n)};
            float *qs[2] = {malloc(rows * 4), malloc(rows * 4)};
            float *gamma = malloc(cols * 4), *beta = malloc(cols * 4);
            const int bf16 = strstr(variants[vi].name, "bf16") != NULL;
            fill(x, n, e, bf16, 2), fill(r, n, e, bf16, 4);
            if (params_f32)
                for (size_t j = 0; j < cols; j++) gamma[j] = 1.0f + 0.001f * (float)(j % 7), beta[j] = 0.01f;
            else
                fill(gamma, cols, e, bf16, 6), fill(beta, cols, e, bf16, 8);
            for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
                char name[96];
                snprintf(name, sizeof name, "%s %s", variants[vi].name, ops[oi].name);
                if (!matches(filter, name)) continue;
                tk_norm_params p[2];
                for (int s = 0; s < 2; s++) {
                    memset(&p[s], 0, sizeof p[s]);
                    p[s].x = x, p[s].residual = ops[oi].residual ? r : NULL;
                    p[s].h = ops[oi].residual ? h[s] : NULL, p[s].y = ops[oi].y ? y[s] : NULL;
                    p[s].q = ops[oi].q ? q[s] : NULL, p[s].q_scale = ops[oi].q ? qs[s] : NULL, p[s].q_stride = cols;
                    p[s].gamma = gamma, p[s].beta = ops[oi].kind == TK_NORM_LAYERNORM ? beta : NULL;
                    p[s].rows = rows, p[s].cols = cols, p[s].x_stride = p[s].residual_stride = p[s].y_stride = cols;
                    p[s].eps = 1e-5f, p[s].out_scale = 1.0f, p[s].kind = ops[oi].kind, p[s].flags = flags;
                }
                struct pair pc = {variants[vi].old_fn, variants[vi].new_fn, p};
                double med[2];
                ab_medians(rounds, out_of_cache ? 1 : 20, run_pair, &pc, med); /* in cache: 20 calls a sample */
                const int same = (!ops[oi].residual || !memcmp(h[0], h[1], n * e)) &&
                                 (!ops[oi].y || !memcmp(y[0], y[1], n * e)) &&
                                 (!ops[oi].q || (!memcmp(q[0], q[1], n) && !memcmp(qs[0], qs[1], rows * 4)));
                printf("%5zu x %4zu %-16s %-19s old %8.3f ms  new %8.3f ms  new speed / old %.3f  %s\n", rows, cols,
                       variants[vi].name, ops[oi].name, med[0] * 1e3, med[1] * 1e3, med[0] / med[1], same ? "same bits" : "BITS DIFFER");
            }
            free(x), free(r), free(h_mem[0]), free(h_mem[1]), free(y[0]), free(y[1]), free(gamma), free(beta);
            free(q[0]), free(q[1]), free(qs[0]), free(qs[1]);
        }
    }
}

/* LayerNorm and RMSNorm backward with dgamma and dbeta (RMSNorm: dgamma
 * only), and residual + RMSNorm backward (dh). */
static void backward(int rounds, const char *only) {
    const struct {
        const char *name;
        tk_norm_kind kind;
        int dh;
    } ops[] = {{"layernorm bwd", TK_NORM_LAYERNORM, 0},
               {"rmsnorm bwd", TK_NORM_RMSNORM, 0},
               {"residual+rms bwd", TK_NORM_RMSNORM, 1}};
    for (size_t si = 0; si < 2; si++) {
        const size_t rows = default_shapes[si][0], cols = default_shapes[si][1], n = rows * cols;
        const uint32_t flags = TK_NORM_PARAMS_F32 | (si ? TK_NORM_NONTEMPORAL : 0);
        for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
            if (only && !strstr(variants[vi].name, only)) continue;
            const size_t e = variants[vi].elem;
            char *dy = malloc(n * e), *h = malloc(n * e), *dh = malloc(n * e), *dx[2] = {malloc(n * e), malloc(n * e)};
            float *gamma = malloc(cols * 4), *mean = malloc(rows * 4), *rstd = malloc(rows * 4);
            double *acc[2] = {malloc(2 * cols * 8), malloc(2 * cols * 8)}, *mag = malloc(2 * cols * 8);
            const int bf16 = strstr(variants[vi].name, "bf16") != NULL;
            fill(dy, n, e, bf16, 2), fill(h, n, e, bf16, 4), fill(dh, n, e, bf16, 6);
            for (size_t j = 0; j < cols; j++) gamma[j] = 1.0f + 0.001f * (float)(j % 7);
            for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
                /* the saved statistics, from the forward */
                tk_norm_params f;
                memset(&f, 0, sizeof f);
                f.x = h, f.mean = mean, f.rstd = rstd, f.rows = rows, f.cols = cols, f.x_stride = cols;
                f.eps = 1e-5f, f.out_scale = 1.0f, f.kind = ops[oi].kind, f.flags = flags;
                variants[vi].new_fn(&f);
                const int ln = ops[oi].kind == TK_NORM_LAYERNORM;
                tk_norm_backward_params p[2];
                for (int s = 0; s < 2; s++) {
                    memset(&p[s], 0, sizeof p[s]);
                    p[s].dy = dy, p[s].h = h, p[s].dh = ops[oi].dh ? dh : NULL, p[s].dx = dx[s];
                    p[s].gamma = gamma, p[s].mean = mean, p[s].rstd = rstd;
                    p[s].dgamma_acc = acc[s], p[s].dbeta_acc = ln ? acc[s] + cols : NULL;
                    p[s].rows = rows, p[s].cols = cols;
                    p[s].dy_stride = p[s].h_stride = p[s].dh_stride = p[s].dx_stride = cols;
                    p[s].out_scale = 1.0f, p[s].kind = ops[oi].kind, p[s].flags = flags;
                }
                if (getenv("NOACC")) p[1].dgamma_acc = p[1].dbeta_acc = NULL;
                struct bwd_pair pc = {variants[vi].old_bwd, variants[vi].new_bwd, p};
                double med[2];
                ab_medians(rounds, si ? 1 : 20, run_bwd_pair, &pc, med);
                /* one more call of each from zeroed sums, and the magnitudes
                 * sum |dy| (|xhat| + 1) per column (f64, from the saved stats) */
                for (int s = 0; s < 2; s++) {
                    memset(acc[s], 0, 2 * cols * 8);
                    (s ? variants[vi].new_bwd : variants[vi].old_bwd)(&p[s]);
                }
                memset(mag, 0, 2 * cols * 8);
                for (size_t i = 0; i < rows; i++)
                    for (size_t j = 0; j < cols; j++) {
                        const size_t at = i * cols + j;
                        const double d = fabs(to_f64(dy, at, e, bf16)) * gamma[j];
                        const double xh = (to_f64(h, at, e, bf16) - (ln ? mean[i] : 0.0)) * rstd[i];
                        mag[j] += d * (fabs(xh) + 1.0);
                        mag[cols + j] += d;
                    }
                double worst = 0.0;
                for (size_t j = 0; j < (ln ? 2 : 1) * cols; j++) {
                    const double r = fabs(acc[0][j] - acc[1][j]) / (mag[j] > 0.0 ? mag[j] : 1.0);
                    if (r > worst) worst = r;
                }
                const int same = !memcmp(dx[0], dx[1], n * e);
                printf("%5zu x %4zu %-16s %-19s old %8.3f ms  new %8.3f ms  new speed / old %.3f  dx %s, sums differ by "
                       "%.2g u sum|dy s|(|xhat|+1)\n",
                       rows, cols, variants[vi].name, ops[oi].name, med[0] * 1e3, med[1] * 1e3, med[0] / med[1],
                       same ? "same bits" : "BITS DIFFER", worst / 0x1p-24);
            }
            free(dy), free(h), free(dh), free(dx[0]), free(dx[1]), free(gamma), free(mean), free(rstd);
            free(acc[0]), free(acc[1]), free(mag);
        }
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > AB_MAX_ROUNDS) rounds = 15;
    if (argc > 2 && !strcmp(argv[2], "backward")) backward(rounds, argc > 3 ? argv[3] : NULL);
    else forward(rounds, argc > 2 ? argv[2] : NULL);
    return 0;
}
