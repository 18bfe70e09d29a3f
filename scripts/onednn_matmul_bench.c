/* oneDNN's int8 matmul (s8 x s8 -> s32, weights prepacked in the layout the
 * primitive picks) on [m, k] x [k, n], single thread, for a same-machine
 * comparison with the report's qgemm section
 * (`cargo run --release -- --family qgemm --onednn-matmul target/onednn_mm`).
 *
 *   apt-get install libdnnl-dev
 *   gcc -O2 scripts/onednn_matmul_bench.c -ldnnl -o target/onednn_mm
 *   OMP_NUM_THREADS=1 DNNL_MAX_CPU_ISA=AVX512_CORE_AMX target/onednn_mm 512 4096 4096
 *
 * Prints "<implementation> <median seconds> <GOP/s>" (2 m n k operations). */
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"

int main(int argc, char **argv) {
    const long m = argc > 1 ? atol(argv[1]) : 512, k = argc > 2 ? atol(argv[2]) : 4096,
               n = argc > 3 ? atol(argv[3]) : 4096;
    const int reps = argc > 4 ? atoi(argv[4]) : 15;
    int8_t *a = malloc(m * k), *b = malloc(k * n);
    int32_t *c = malloc(sizeof(int32_t) * m * n);
    for (long i = 0; i < m * k; i++) a[i] = (int8_t)(i % 251 - 125);
    for (long i = 0; i < k * n; i++) b[i] = (int8_t)(i % 241 - 120);

    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    dnnl_dims_t ad = {m, k}, bd = {k, n}, cd = {m, n};
    dnnl_memory_desc_t amd, bmd_plain, bmd_any, cmd;
    CHECK(dnnl_memory_desc_init_by_tag(&amd, 2, ad, dnnl_s8, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&bmd_plain, 2, bd, dnnl_s8, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&bmd_any, 2, bd, dnnl_s8, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_s32, dnnl_ab));
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &amd, &bmd_any, NULL, &cmd));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, eng, NULL));
    dnnl_primitive_t prim;
    CHECK(dnnl_primitive_create(&prim, pd));
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    const dnnl_memory_desc_t *bmd_packed = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);

    /* prepack the weights once (not timed) */
    dnnl_memory_t am, bm_plain, bm, cm;
    CHECK(dnnl_memory_create(&am, &amd, eng, a));
    CHECK(dnnl_memory_create(&bm_plain, &bmd_plain, eng, b));
    CHECK(dnnl_memory_create(&bm, bmd_packed, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&cm, &cmd, eng, c));
    dnnl_primitive_desc_t rpd;
    CHECK(dnnl_reorder_primitive_desc_create(&rpd, &bmd_plain, eng, bmd_packed, eng, NULL));
    dnnl_primitive_t reorder;
    CHECK(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, bm_plain}, {DNNL_ARG_TO, bm}};
    CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
    CHECK(dnnl_stream_wait(stream));

    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    double *t = malloc(sizeof(double) * reps);
    CHECK(dnnl_primitive_execute(prim, stream, 3, args)); /* warm-up */
    CHECK(dnnl_stream_wait(stream));
    for (int r = 0; r < reps; r++) {
        const double s = now();
        CHECK(dnnl_primitive_execute(prim, stream, 3, args));
        CHECK(dnnl_stream_wait(stream));
        t[r] = now() - s;
    }
    qsort(t, reps, sizeof(double), cmp);
    const double med = t[reps / 2];
    printf("%s %.9f %.3f\n", impl, med, 2.0 * m * n * k / med / 1e9);
    return 0;
}
