/* oneDNN's CPU LayerNorm (forward inference, f32, scale and shift) on a
 * [rows, d] batch, for a same-machine comparison with the report's norm
 * section (`cargo run --release -- --family norm --onednn target/onednn_ln`).
 *
 *   apt-get install libdnnl-dev
 *   gcc -O2 scripts/onednn_layernorm_bench.c -ldnnl -o target/onednn_ln
 *   OMP_NUM_THREADS=1 target/onednn_ln 16384 8192
 *
 * Prints one markdown table row: GB/s of input + output, median of the runs. */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"

int main(int argc, char **argv) {
    const long rows = argc > 1 ? atol(argv[1]) : 16384, d = argc > 2 ? atol(argv[2]) : 8192;
    const int reps = argc > 3 ? atoi(argv[3]) : 9;
    float *x = malloc(sizeof(float) * rows * d), *y = malloc(sizeof(float) * rows * d);
    float *g = malloc(sizeof(float) * d), *b = malloc(sizeof(float) * d);
    for (long i = 0; i < rows * d; i++) x[i] = (float)(i % 997) * 0.004f - 1.5f;
    for (long j = 0; j < d; j++) g[j] = 1.0f + 0.001f * (float)j, b[j] = 0.5f;

    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    dnnl_dims_t dims = {rows, d}, wdims = {d};
    dnnl_memory_desc_t md, wmd;
    CHECK(dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&wmd, 1, wdims, dnnl_f32, dnnl_a));
    dnnl_layer_normalization_desc_t desc;
    CHECK(dnnl_layer_normalization_forward_desc_init(&desc, dnnl_forward_inference, &md, NULL, 1e-5f,
                                                     dnnl_use_scale | dnnl_use_shift));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    dnnl_primitive_t prim;
    CHECK(dnnl_primitive_create(&prim, pd));
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    dnnl_memory_t xm, ym, gm, bm;
    CHECK(dnnl_memory_create(&xm, &md, eng, x));
    CHECK(dnnl_memory_create(&ym, &md, eng, y));
    CHECK(dnnl_memory_create(&gm, &wmd, eng, g));
    CHECK(dnnl_memory_create(&bm, &wmd, eng, b));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_SCALE, gm}, {DNNL_ARG_SHIFT, bm}};
    double t[64];
    for (int r = -1; r < reps && r < 64; r++) {
        const double s = now();
        CHECK(dnnl_primitive_execute(prim, stream, 4, args));
        CHECK(dnnl_stream_wait(stream));
        if (r >= 0) t[r] = now() - s; /* r = -1: warm-up, page faults */
    }
    qsort(t, reps, sizeof(double), cmp);
    const double med = t[reps / 2];
    const dnnl_version_t *v = dnnl_version();
    printf("| oneDNN %d.%d.%d layer_normalization (%s), %ld x %ld f32 | %.2f | %.1f |\n", v->major, v->minor,
           v->patch, impl, rows, d, 8.0 * rows * d / med / 1e9, med * 1e3);
    return 0;
}
