/* Same-process A/B of two builds of the weight-only product (tk_wgemv_*,
 * entry points renamed old_* and new_*; built and run by kernels_ab.sh
 * qgemm): each round times old and new (who goes first alternating) on the
 * same x, cycling through enough 4096 x 4096 layers to stream the weights
 * from memory (WGEMV_AB_MIB, default 256), medians over the rounds. Both
 * builds must give the same bits, unless WGEMV_AB_DIFF is set: then the
 * largest difference between them is printed, relative to sum |x w_deq|
 * of its output. Arguments after the rounds: the variant filter (words of
 * "int8|int4 f32|f16|bf16 avx2|avx512", "digits" for the int4 integer path
 * on AVX2; default "avx2") and the row counts
 * (default "1,2,3,4,8,16"). Prints GB/s of weight bytes (values + scales).
 * Filter "gemm": the LLM.int8() product on AMX (tk_qgemm_s8_amx) instead,
 * m x 4096 x 4096 (QGEMM_AB_K sets k) for each row count (default
 * "256,512,2048"), QGEMM_AB_OUTLIERS f32 outlier columns (default 20), f16
 * out, random bytes (the timing and the bit check need no real weights);
 * prints GOP/s. */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tk.h"

#include "../kernels-cpu/common/scalar.h"

#define PAIR(dt, isa)                                                          \
    void old_tk_wgemv_##dt##_##isa(const tk_wgemv_params *);                   \
    void new_tk_wgemv_##dt##_##isa(const tk_wgemv_params *);
PAIR(f32, avx2)
PAIR(f16, avx2)
PAIR(bf16, avx2)
PAIR(f32, avx512)
PAIR(f16, avx512)
PAIR(bf16, avx512)

/* the int4 integer path on AVX2 (tk_wgemv_int4_avx2), which must take the call */
int old_tk_wgemv_int4_avx2(const tk_wgemv_params *, tk_dtype);
int new_tk_wgemv_int4_avx2(const tk_wgemv_params *, tk_dtype);
#define DIGITS(side, dt, DT)                                                   \
    static void side##_digits_##dt(const tk_wgemv_params *p) {                 \
        if (!side##_tk_wgemv_int4_avx2(p, DT)) {                               \
            fprintf(stderr, #side " tk_wgemv_int4_avx2 declined\n");           \
            exit(1);                                                           \
        }                                                                      \
    }
DIGITS(old, f32, TK_DTYPE_F32)
DIGITS(new, f32, TK_DTYPE_F32)
DIGITS(old, f16, TK_DTYPE_F16)
DIGITS(new, f16, TK_DTYPE_F16)
DIGITS(old, bf16, TK_DTYPE_BF16)
DIGITS(new, bf16, TK_DTYPE_BF16)

#define VARIANT(dt, isa, elem) {#dt " " #isa, elem, old_tk_wgemv_##dt##_##isa, new_tk_wgemv_##dt##_##isa}
#define DIGITS_VARIANT(dt, elem) {#dt " avx2 digits", elem, old_digits_##dt, new_digits_##dt}
static const struct {
    const char *name;
    size_t elem;
    void (*old_fn)(const tk_wgemv_params *);
    void (*new_fn)(const tk_wgemv_params *);
} variants[] = {
    VARIANT(f32, avx2, 4),   VARIANT(f16, avx2, 2),   VARIANT(bf16, avx2, 2),
    VARIANT(f32, avx512, 4), VARIANT(f16, avx512, 2), VARIANT(bf16, avx512, 2),
    DIGITS_VARIANT(f32, 4),  DIGITS_VARIANT(f16, 2),  DIGITS_VARIANT(bf16, 2),
};

/* x in [-4, 4) with a few small values, as f32 / f16 / bf16 bits. */
static void fill_x(void *x, size_t n, size_t elem, int bf16) {
    for (size_t i = 0; i < n; i++) {
        float f = ((float)rand() / (float)RAND_MAX * 8.0f - 4.0f) * (i % 16 == 0 ? 1e-3f : 1.0f);
        uint32_t u;
        memcpy(&u, &f, 4);
        if (elem == 4) ((float *)x)[i] = f;
        else if (bf16) ((uint16_t *)x)[i] = (uint16_t)(u >> 16);
        else ((uint16_t *)x)[i] = tk_f32_to_f16(f);
    }
}

static double to_f64(const void *p, size_t i, size_t elem, int bf16) {
    if (elem == 4) return ((const float *)p)[i];
    const uint16_t b = ((const uint16_t *)p)[i];
    if (bf16) {
        const uint32_t u = (uint32_t)b << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return tk_f16_to_f32(b);
}

AB_PAIR(pair, tk_wgemv_params)

void old_tk_qgemm_s8_amx(const tk_qgemm_params *);
void new_tk_qgemm_s8_amx(const tk_qgemm_params *);
int new_tk_amx_ready(void);
AB_PAIR(gemm_pair, tk_qgemm_params)

static int gemm_ab(int rounds, const char *rows_arg) {
    const size_t n = 4096, k = getenv("QGEMM_AB_K") ? strtoul(getenv("QGEMM_AB_K"), NULL, 10) : 4096;
    const size_t no = getenv("QGEMM_AB_OUTLIERS") ? strtoul(getenv("QGEMM_AB_OUTLIERS"), NULL, 10) : 20;
    if (!new_tk_amx_ready()) {
        fprintf(stderr, "no AMX here (CPU or OS)\n");
        return 1;
    }
    if (k % 64) {
        fprintf(stderr, "k must be a multiple of 64\n");
        return 1;
    }
    printf("| m x n x k | outliers | old GOP/s | new GOP/s | new / old |\n|---|---:|---:|---:|---:|\n");
    for (const char *at = rows_arg; *at;) {
        char *end;
        const size_t m = strtoul(at, &end, 10), m_pad = (m + 31) / 32 * 32;
        at = *end == ',' ? end + 1 : end;
        if (m == 0) continue;
        int8_t *a = aligned_alloc(64, m_pad * k);
        uint8_t *w = aligned_alloc(64, n * k);
        float *as = malloc(m * 4), *wsc = malloc(n * 4), *xo = malloc((m * no + 1) * 4), *wo = malloc((no * n + 1) * 4);
        int32_t *rowsum = malloc(m * 4), *scratch[2];
        uint16_t *y[2];
        srand(2);
        for (size_t i = 0; i < m_pad * k; i++) a[i] = i / k < m ? (int8_t)(rand() % 255 - 127) : 0;
        for (size_t i = 0; i < n * k; i++) w[i] = (uint8_t)(rand() % 255 + 1);
        for (size_t i = 0; i < m; i++) {
            as[i] = (float)(rand() % 1000 + 1) * 1e-5f;
            rowsum[i] = 0;
            for (size_t c = 0; c < k; c++) rowsum[i] += a[i * k + c];
        }
        for (size_t j = 0; j < n; j++) wsc[j] = (float)(rand() % 1000 + 1) * 1e-5f;
        for (size_t i = 0; i < m * no; i++) xo[i] = (float)rand() / (float)RAND_MAX * 16.0f - 8.0f;
        for (size_t i = 0; i < no * n; i++) wo[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        tk_qgemm_params p[2];
        for (int s = 0; s < 2; s++) {
            y[s] = calloc(m * n, 2);
            scratch[s] = aligned_alloc(64, (tk_qgemm_amx_scratch(k) + 16) * 4);
            p[s] = (tk_qgemm_params){.m = m, .n = n, .k = k, .a = a, .a_stride = k, .a_scale = as,
                                     .a_rowsum = rowsum, .w = w, .w_scale = wsc, .xo = xo, .n_outliers = no,
                                     .wo = wo, .wo_stride = n, .y = y[s], .y_stride = n,
                                     .y_dtype = TK_DTYPE_F16, .scratch = scratch[s]};
        }
        struct gemm_pair c = {old_tk_qgemm_s8_amx, new_tk_qgemm_s8_amx, p};
        const int calls = m >= 1024 ? 1 : (int)(1024 / m);
        double med[2];
        ab_medians(rounds < AB_MAX_ROUNDS ? rounds : AB_MAX_ROUNDS, calls, run_gemm_pair, &c, med);
        if (memcmp(y[0], y[1], m * n * 2)) {
            fprintf(stderr, "m %zu: the two builds' outputs differ\n", m);
            return 1;
        }
        const double ops = 2.0 * (double)m * (double)n * (double)k;
        printf("| %zu x %zu x %zu | %zu | %.0f | %.0f | %.3fx |\n", m, n, k, no, ops / med[0] / 1e9,
               ops / med[1] / 1e9, med[0] / med[1]);
        fflush(stdout);
        free(a), free(w), free(as), free(wsc), free(xo), free(wo), free(rowsum);
        for (int s = 0; s < 2; s++) free(y[s]), free(scratch[s]);
    }
    return 0;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 9;
    const char *filter = argc > 2 ? argv[2] : "avx2";
    if (argc > 2 && !strcmp(argv[2], "gemm")) return gemm_ab(rounds, argc > 3 ? argv[3] : "256,512,2048");
    const char *rows_arg = argc > 3 ? argv[3] : "1,2,3,4,8,16";
    const size_t n = 4096, k = 4096, group = 128, groups = k / group, max_m = 16;
    const size_t mib = getenv("WGEMV_AB_MIB") ? strtoul(getenv("WGEMV_AB_MIB"), NULL, 10) : 256;
    const int diff = getenv("WGEMV_AB_DIFF") != NULL;
    const int have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    void *x = malloc(max_m * k * 4), *y[2] = {malloc(max_m * n * 4), malloc(max_m * n * 4)};
    float *ws[2];
    const size_t ws_floats = tk_wgemv_workspace_floats(max_m, k);
    for (int s = 0; s < 2; s++) ws[s] = malloc(ws_floats * 4);
    printf("| rows | weights | variant | old GB/s | new GB/s | new / old |\n|---:|---|---|---:|---:|---:|\n");
    for (int bits = 8; bits >= 4; bits -= 4) {
        const size_t layer = n * k * (size_t)bits / 8 + n * groups * 4;
        const size_t layers = (mib << 20) / layer + 1;
        uint8_t *w = NULL;
        float *scale = NULL;
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            char name[64];
            snprintf(name, sizeof name, "int%d %s", bits, variants[v].name);
            if (!matches(filter, name) || (strstr(name, "avx512") && !have_avx512)) continue;
            if (strstr(name, "digits") && bits != 4) continue;
            if (!w) { /* random panels and scales, once per weight format */
                w = aligned_alloc(64, layers * n * k * bits / 8);
                scale = aligned_alloc(64, layers * n * groups * 4);
                srand(1);
                for (size_t i = 0; i < layers * n * k * bits / 8; i++) w[i] = (uint8_t)(rand() % (bits == 8 ? 255 : 256) - (bits == 8 ? 127 : 0));
                for (size_t i = 0; i < layers * n * groups; i++) scale[i] = (float)(rand() % 1000 + 1) * 1e-4f;
            }
            const int bf16 = strstr(variants[v].name, "bf16") != NULL;
            for (const char *at = rows_arg; *at;) {
                char *end;
                const size_t m = strtoul(at, &end, 10);
                at = *end == ',' ? end + 1 : end;
                if (m == 0 || m > max_m) continue;
                fill_x(x, m * k, variants[v].elem, bf16);
                tk_wgemv_params p[2];
                for (int s = 0; s < 2; s++)
                    p[s] = (tk_wgemv_params){.x = x, .x_stride = k, .m = m, .k = k, .n = n, .w = w,
                                             .w_stride = k * bits / 8, .w_bits = bits, .w_panels = 1,
                                             .w_scale = scale, .group = group, .y = y[s], .y_stride = n,
                                             .workspace = ws[s]};
                struct pair c = {variants[v].old_fn, variants[v].new_fn, p};
                /* one sample: a call per layer (the layers stream from memory) */
                double t[2][AB_MAX_ROUNDS];
                const int r_max = rounds < AB_MAX_ROUNDS ? rounds : AB_MAX_ROUNDS;
                for (int r = 0; r < r_max; r++)
                    for (int i = 0; i < 2; i++) {
                        const int s = (i + r) % 2;
                        const double t0 = now();
                        for (size_t l = 0; l < layers; l++) {
                            p[s].w = w + l * n * k * bits / 8;
                            p[s].w_scale = scale + l * n * groups;
                            run_pair(s, &c);
                        }
                        t[s][r] = (now() - t0) / (double)layers;
                    }
                double med[2];
                for (int s = 0; s < 2; s++) {
                    qsort(t[s], (size_t)r_max, sizeof(double), cmp);
                    med[s] = t[s][r_max / 2];
                }
                /* the last layer's outputs of both builds */
                double worst = 0;
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++) {
                        const double a = to_f64(y[0], i * n + j, variants[v].elem, bf16);
                        const double b = to_f64(y[1], i * n + j, variants[v].elem, bf16);
                        if (!diff && memcmp((char *)y[0] + (i * n + j) * variants[v].elem,
                                            (char *)y[1] + (i * n + j) * variants[v].elem, variants[v].elem)) {
                            fprintf(stderr, "%s m %zu: row %zu channel %zu differs: %.9g vs %.9g\n", name, m, i, j, a, b);
                            return 1;
                        }
                        if (diff) {
                            double mag = 0;
                            const uint8_t *wl = w + (layers - 1) * n * k * bits / 8;
                            const float *sl = scale + (layers - 1) * n * groups;
                            for (size_t c = 0; c < k; c++) {
                                const size_t line = bits == 8 ? c / 4 : c / 8, at_b = (j / 16) * 16 * k * bits / 8 + line * 64 + (j % 16) * 4 + (bits == 8 ? c % 4 : (c % 8) / 2);
                                int q = bits == 8 ? (int8_t)wl[at_b] : (int)((c % 2 ? wl[at_b] >> 4 : wl[at_b] & 15) ^ 8) - 8;
                                mag += fabs(to_f64(x, i * k + c, variants[v].elem, bf16) * q * sl[((j / 16) * groups + c / group) * 16 + j % 16]);
                            }
                            if (fabs(a - b) / mag > worst) worst = fabs(a - b) / mag;
                        }
                    }
                const double bytes = (double)layer;
                printf("| %zu | int%d g%zu | %s | %.2f | %.2f | %.2fx |", m, bits, group, variants[v].name,
                       bytes / med[0] / 1e9, bytes / med[1] / 1e9, med[0] / med[1]);
                if (diff) printf(" max |new - old| / sum|x w| %.2e |", worst);
                printf("\n");
                fflush(stdout);
            }
        }
        free(w);
        free(scale);
    }
    return 0;
}
