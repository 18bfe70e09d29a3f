/* Same-process A/B of two builds of the softmax kernels (entry points renamed
 * old_* and new_*; built and run by kernels_ab.sh): each round times old and
 * new (who goes first alternates) on the same rows, medians over the rounds;
 * y must come out with the same bits. Every x86 variant this CPU runs, or
 * those whose name holds argv[2]; shapes ROWSxCOLS from SOFTMAX_AB_SHAPES
 * (default 1x4096, 1x65536, 1x2097152, 256x16384). SOFTMAX_AB_SCALE sets the
 * scale (default 1), SOFTMAX_AB_LOG=1 log-softmax. */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "bench_util.h"
#include "tk.h"

#define DECLARE(dt, isa, algo)                                                 \
    void old_tk_softmax_##dt##_##isa##_##algo(const tk_softmax_params *);      \
    void new_tk_softmax_##dt##_##isa##_##algo(const tk_softmax_params *);
TK_SOFTMAX_VARIANTS_X86(DECLARE)
#undef DECLARE

static const struct {
    const char *name, *isa;
    size_t elem;
    void (*old_fn)(const tk_softmax_params *);
    void (*new_fn)(const tk_softmax_params *);
} variants[] = {
#define ENTRY(dt, isa, algo)                                                   \
    {#dt " " #isa " " #algo, #isa, #dt[1] == '3' ? 4 : 2, old_tk_softmax_##dt##_##isa##_##algo,                 \
     new_tk_softmax_##dt##_##isa##_##algo},
    TK_SOFTMAX_VARIANTS_X86(ENTRY)
#undef ENTRY
};

static int cpu_runs(const char *isa) {
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (!strcmp(isa, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(isa, "avx512")) return avx512;
    return avx512 && __builtin_cpu_supports("avx512bf16");
}

AB_PAIR(pair, tk_softmax_params)

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1 || rounds > AB_MAX_ROUNDS) rounds = 15;
    const char *only = argc > 2 ? argv[2] : "";
    const char *shapes_env = getenv("SOFTMAX_AB_SHAPES");
    char shapes[256];
    snprintf(shapes, sizeof shapes, "%s", shapes_env ? shapes_env : "1x4096,1x65536,1x2097152,256x16384");
    const float scale = getenv("SOFTMAX_AB_SCALE") ? (float)atof(getenv("SOFTMAX_AB_SCALE")) : 1.0f;
    const uint32_t flags = getenv("SOFTMAX_AB_LOG") && atoi(getenv("SOFTMAX_AB_LOG")) ? TK_SOFTMAX_LOG : 0;
    printf("| variant | rows x cols | old ms | new ms | old / new | same bits |\n|---|---|---:|---:|---:|---|\n");
    for (char *tok = strtok(shapes, ","); tok; tok = strtok(NULL, ",")) {
        size_t rows = 0, cols = 0;
        if (sscanf(tok, "%zux%zu", &rows, &cols) != 2 || !rows || !cols) {
            fprintf(stderr, "bad shape %s\n", tok);
            return 2;
        }
        const size_t count = rows * cols;
        float *xf = malloc(count * 4);
        uint16_t *xh = malloc(count * 2), *xb = malloc(count * 2);
        srand(11);
        for (size_t i = 0; i < count; i++) {
            xf[i] = ((float)rand() / (float)RAND_MAX * 2.0f - 1.0f) * 8.0f;
            xh[i] = _cvtss_sh(xf[i], 0);
            uint32_t u;
            memcpy(&u, &xf[i], 4);
            xb[i] = (uint16_t)(u >> 16);
        }
        void *y[2] = {malloc(count * 4), malloc(count * 4)};
        for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
            if (!cpu_runs(variants[vi].isa) || !strstr(variants[vi].name, only)) continue;
            const size_t elem = variants[vi].elem;
            const int is_f16 = !strncmp(variants[vi].name, "f16", 3);
            const void *x = elem == 4 ? (const void *)xf : is_f16 ? (const void *)xh : (const void *)xb;
            tk_softmax_params p[2];
            for (int s = 0; s < 2; s++) {
                p[s] = (tk_softmax_params){x, y[s], rows, cols, cols, cols, scale, flags};
                memset(y[s], 0, count * elem);
            }
            variants[vi].old_fn(&p[0]);
            variants[vi].new_fn(&p[1]);
            const int same = !memcmp(y[0], y[1], count * elem);
            struct pair c = {variants[vi].old_fn, variants[vi].new_fn, p};
            const int calls = count * elem >= (1u << 22) ? 1 : (int)((1u << 22) / (count * elem));
            double med[2];
            ab_medians(rounds, calls, run_pair, &c, med);
            printf("| %s | %zux%zu | %.4f | %.4f | %.3fx | %s |\n", variants[vi].name, rows, cols, 1e3 * med[0],
                   1e3 * med[1], med[0] / med[1], same ? "yes" : "NO");
            fflush(stdout);
        }
        free(xf);
        free(xh);
        free(xb);
        free(y[0]);
        free(y[1]);
    }
    return 0;
}
