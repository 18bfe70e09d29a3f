/* XNNPACK's f32 softmax operator (xnn_create_softmax_nc_f32) on a [rows, cols]
 * batch, one thread (no pthreadpool), for the report's softmax peer column
 * (`cargo run --release --features peers`, which builds this; or
 * `--xnnpack BIN`).
 *
 *   apt-get install libxnnpack-dev
 *   gcc -O2 scripts/xnnpack_softmax_bench.c -lXNNPACK -o target/xnnpack_softmax
 *   target/xnnpack_softmax 1 65536 15
 *
 * Prints "xnnpack <median seconds> <sum of row 0>". */
#include <stdio.h>
#include <stdlib.h>
#include <xnnpack.h>

#include "bench_util.h"

#define CHECK(x)                                                               \
    do {                                                                       \
        enum xnn_status s_ = (x);                                              \
        if (s_ != xnn_status_success) {                                        \
            fprintf(stderr, "%s failed: %d\n", #x, (int)s_);                   \
            return 1;                                                          \
        }                                                                      \
    } while (0)

int main(int argc, char **argv) {
    const size_t rows = argc > 1 ? (size_t)atol(argv[1]) : 1, cols = argc > 2 ? (size_t)atol(argv[2]) : 65536;
    int reps = argc > 3 ? atoi(argv[3]) : 15;
    if (reps < 1) reps = 1;
    if (reps > 256) reps = 256;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    if (!x || !y) return 1;
    /* the report's inputs: values in [-8, 8) */
    for (size_t i = 0; i < rows * cols; i++) x[i] = (float)((i * 2654435761u) % 16384) / 1024.0f - 8.0f;
    CHECK(xnn_initialize(NULL));
    xnn_operator_t op = NULL;
    CHECK(xnn_create_softmax_nc_f32(cols, cols, cols, 0, &op));
    CHECK(xnn_setup_softmax_nc_f32(op, rows, x, y, NULL));
    double t[256];
    for (int r = -1; r < reps; r++) {
        const double s = now();
        CHECK(xnn_run_operator(op, NULL));
        if (r >= 0) t[r] = now() - s; /* r = -1: warm-up, page faults */
    }
    /* Row 0's sum, in double: XNNPACK accumulates in f32, and its long rows
     * drift (1 + 4e-3 at 16M elements, 1 + 1.5e-2 at 64M on this machine). */
    double sum = 0;
    for (size_t j = 0; j < cols; j++) sum += y[j];
    qsort(t, reps, sizeof(double), cmp);
    printf("xnnpack %.9f %.9f\n", t[reps / 2], sum);
    xnn_delete_operator(op);
    return 0;
}
