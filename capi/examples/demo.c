/* A C engine's view of transformer-kernels: links libtfk (static or shared),
 * runs softmax, a fused residual + RMSNorm, the LLM.int8() GEMM, the weight-only
 * int4 GEMV and a Hadamard transform with int8 output, and checks each result
 * against plain C double-precision code with the library's documented bounds.
 * Exits 0 when everything agrees. CI builds and runs it (capi/run-demo.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfk.h"

static int failures = 0;

#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) {                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                      \
            fprintf(stderr, "\n");                             \
            failures++;                                        \
        }                                                      \
    } while (0)

#define CALL(expr)                                                            \
    do {                                                                      \
        tfk_status s_ = (expr);                                               \
        if (s_ != TFK_OK) {                                                   \
            fprintf(stderr, "FAIL %s:%d: %s -> %d: %s\n", __FILE__, __LINE__, \
                    #expr, s_, tfk_last_error());                            \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* Deterministic values in [-1, 1). */
static float uniform(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)((*state >> 8) * (1.0 / 8388608.0) - 1.0);
}

static void fill(float *v, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) v[i] = uniform(&seed);
}

static void softmax_demo(void) {
    enum { ROWS = 3, COLS = 37 };
    float x[ROWS * COLS], y[ROWS * COLS];
    fill(x, ROWS * COLS, 1);
    for (size_t i = 0; i < ROWS * COLS; i++) x[i] *= 8.0f;
    CALL(tfk_softmax(TFK_F32, x, y, ROWS, COLS, 0.5f, false));
    for (int r = 0; r < ROWS; r++) {
        double max = -INFINITY, sum = 0;
        for (int c = 0; c < COLS; c++) max = fmax(max, 0.5 * x[r * COLS + c]);
        for (int c = 0; c < COLS; c++) sum += exp(0.5 * x[r * COLS + c] - max);
        for (int c = 0; c < COLS; c++) {
            double want = exp(0.5 * x[r * COLS + c] - max) / sum;
            CHECK(fabs(y[r * COLS + c] - want) <= 1e-6 * want + 1e-30, "softmax [%d,%d] %g vs %g", r, c,
                  y[r * COLS + c], want);
        }
    }
    /* Errors: a NULL output is refused with a message, and nothing is written. */
    tfk_status s = tfk_softmax(TFK_F32, x, NULL, ROWS, COLS, 1.0f, false);
    CHECK(s == TFK_ERROR_POINTER && strstr(tfk_last_error(), "y") != NULL, "NULL y: %d %s", s,
          tfk_last_error());
    s = tfk_softmax(7, x, y, ROWS, COLS, 1.0f, false);
    CHECK(s == TFK_ERROR_INVALID_ARGUMENT, "bad dtype: %d", s);
    printf("softmax: ok\n");
}

static void norm_demo(void) {
    enum { ROWS = 4, COLS = 96 };
    float x[ROWS * COLS], res[ROWS * COLS], res0[ROWS * COLS], y[ROWS * COLS], gamma[COLS];
    fill(x, ROWS * COLS, 2);
    fill(res, ROWS * COLS, 3);
    fill(gamma, COLS, 4);
    memcpy(res0, res, sizeof res);
    tfk_norm norm;
    CALL(tfk_norm_init(&norm, TFK_NORM_RMS));
    norm.gamma = gamma;
    CALL(tfk_norm_forward(&norm, TFK_F32, ROWS, COLS, x, res, y, NULL, NULL, NULL, NULL));
    for (int r = 0; r < ROWS; r++) {
        double ss = 0;
        for (int c = 0; c < COLS; c++) {
            float h = x[r * COLS + c] + res0[r * COLS + c];
            CHECK(res[r * COLS + c] == h, "residual [%d,%d]", r, c);
            ss += (double)h * h;
        }
        double rstd = 1.0 / sqrt(ss / COLS + norm.eps);
        for (int c = 0; c < COLS; c++) {
            double want = (double)res[r * COLS + c] * rstd * gamma[c];
            CHECK(fabs(y[r * COLS + c] - want) <= 1e-5 * (fabs(want) + 1e-3), "rmsnorm [%d,%d] %g vs %g", r,
                  c, y[r * COLS + c], want);
        }
    }
    /* A wrong row count for the statistics' buffers is a length error only
     * when they are given; an output is required. */
    tfk_status s = tfk_norm_forward(&norm, TFK_F32, ROWS, COLS, x, NULL, NULL, NULL, NULL, NULL, NULL);
    CHECK(s == TFK_ERROR_INVALID_ARGUMENT, "no output: %d", s);
    printf("rmsnorm + residual: ok\n");
}

static void int8_gemm_demo(void) {
    enum { M = 5, N = 48, K = 100 };
    static float w[N * K], x[M * K], y[M * N];
    fill(w, N * K, 5);
    fill(x, M * K, 6);
    x[2 * K + 17] = 8.0f; /* column 17 holds an outlier (|x| >= 6): multiplied in f32 */
    tfk_int8_weight *wq = NULL;
    tfk_int8_workspace *ws = NULL;
    CALL(tfk_int8_weight_prepare(TFK_F32, w, N, K, 6.0f, NULL, 0, &wq));
    CALL(tfk_int8_workspace_new(wq, M, K / 10, &ws));
    CALL(tfk_int8_matmul(wq, ws, TFK_INT8_AUTO, TFK_F32, x, M, TFK_F32, y, NULL));
    for (int i = 0; i < M; i++) {
        double xmax = 0;
        for (int c = 0; c < K; c++)
            if (c != 17) xmax = fmax(xmax, fabs(x[i * K + c]));
        for (int j = 0; j < N; j++) {
            double wmax = 0, want = 0, bound = 1e-5;
            for (int c = 0; c < K; c++) wmax = fmax(wmax, fabs(w[j * K + c]));
            for (int c = 0; c < K; c++) {
                double xv = x[i * K + c], wv = w[j * K + c];
                want += xv * wv;
                /* rounding x to xmax/127 steps and w to wmax/127 steps */
                if (c != 17)
                    bound += fabs(xv) * wmax / 254 + fabs(wv) * xmax / 254 + xmax * wmax / (254.0 * 254);
            }
            CHECK(fabs(y[i * N + j] - want) <= bound, "int8 gemm [%d,%d] %g vs %g (bound %g)", i, j,
                  y[i * N + j], want, bound);
        }
    }
    /* More rows than the workspace holds: refused, y untouched. */
    static float x2[(M + 1) * K], y2[(M + 1) * N];
    y2[0] = 42.0f;
    tfk_status s = tfk_int8_matmul(wq, ws, TFK_INT8_AUTO, TFK_F32, x2, M + 1, TFK_F32, y2, NULL);
    CHECK(s == TFK_ERROR_INVALID_ARGUMENT && y2[0] == 42.0f, "m > max_m: %d", s);
    tfk_int8_workspace_free(ws);
    tfk_int8_weight_free(wq);
    printf("int8 gemm (LLM.int8(), one outlier column): ok\n");
}

static void weight_only_demo(void) {
    enum { M = 2, N = 32, K = 256, GROUP = 64 };
    static float w[N * K], x[M * K], y[M * N];
    fill(w, N * K, 7);
    fill(x, M * K, 8);
    tfk_quantized_weight *wq = NULL;
    CALL(tfk_quantized_weight_new(TFK_F32, w, N, K, 4, GROUP, &wq));
    CALL(tfk_weight_only_gemv(wq, TFK_F32, x, M, y, NULL, NULL, 0));
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double want = 0, bound = 1e-4;
            for (int g = 0; g < K; g += GROUP) {
                double wmax = 0;
                for (int c = g; c < g + GROUP; c++) wmax = fmax(wmax, fabs(w[j * K + c]));
                for (int c = g; c < g + GROUP; c++) {
                    want += (double)x[i * K + c] * w[j * K + c];
                    bound += fabs(x[i * K + c]) * wmax / 14; /* half an int4 step */
                }
            }
            CHECK(fabs(y[i * N + j] - want) <= bound, "int4 gemv [%d,%d] %g vs %g", i, j, y[i * N + j], want);
        }
    tfk_quantized_weight_free(wq);
    printf("weight-only int4 gemv: ok\n");
}

static void hadamard_demo(void) {
    enum { TOKENS = 3, N = 64 };
    float x[TOKENS * N], y[TOKENS * N], scales[TOKENS];
    int8_t q[TOKENS * N];
    fill(x, TOKENS * N, 9);
    tfk_kron *h = NULL;
    CALL(tfk_kron_hadamard(N, NULL, &h));
    CHECK(tfk_kron_size(h) == N, "size");
    CALL(tfk_kron_apply(h, TFK_F32, x, TOKENS, y, q, NULL, scales, 1.0f, NULL, 0));
    for (int t = 0; t < TOKENS; t++) {
        double max = 0;
        for (int j = 0; j < N; j++) {
            double want = 0;
            for (int i = 0; i < N; i++) /* Sylvester Hadamard: sign = (-1)^popcount(i & j) */
                want += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * x[t * N + i];
            want /= sqrt((double)N);
            CHECK(fabs(y[t * N + j] - want) <= 1e-5, "hadamard [%d,%d] %g vs %g", t, j, y[t * N + j], want);
            max = fmax(max, fabs(y[t * N + j]));
        }
        CHECK(fabs(scales[t] - max / 127) <= 1e-6 * max, "scale %d", t);
        for (int j = 0; j < N; j++)
            CHECK(abs(q[t * N + j] - (int)rintf(y[t * N + j] / scales[t])) <= 1, "q [%d,%d]", t, j);
    }
    /* The inverse undoes it. */
    tfk_kron *inv = NULL;
    float back[TOKENS * N];
    CALL(tfk_kron_inverse(h, &inv));
    CALL(tfk_kron_apply(inv, TFK_F32, y, TOKENS, back, NULL, NULL, NULL, 1.0f, NULL, 0));
    for (int i = 0; i < TOKENS * N; i++) CHECK(fabs(back[i] - x[i]) <= 1e-5, "round trip %d", i);
    tfk_kron_free(inv);
    tfk_kron_free(h);
    printf("hadamard + int8: ok\n");
}

int main(void) {
    tfk_isa isa = TFK_ISA_AUTO;
    CALL(tfk_selected_isa(&isa));
    printf("libtfk %s, isa %d\n", tfk_version(), isa);
    /* the library's pool, one pinned worker per CPU; only before first use */
    CALL(tfk_init_pinned_pool(0));
    CHECK(tfk_init_pinned_pool(0) == TFK_ERROR_INVALID_ARGUMENT, "a second pool is refused\n");
    for (int pass = 0; pass < 2; pass++) {
        /* second pass: calls may use every thread of the library's pool */
        tfk_set_threads(pass == 0 ? 1 : 0);
        printf("%s:\n", pass == 0 ? "one thread" : "all threads");
        softmax_demo();
        norm_demo();
        int8_gemm_demo();
        weight_only_demo();
        hadamard_demo();
    }
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
