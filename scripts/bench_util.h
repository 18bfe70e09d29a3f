/* Shared by the peer benches: a monotonic clock, a qsort comparator for
 * medians, and (after oneapi/dnnl/dnnl.h) oneDNN status checks. */
#ifndef TK_SCRIPTS_BENCH_UTIL_H
#define TK_SCRIPTS_BENCH_UTIL_H
#include <stdio.h>
#include <time.h>

#ifdef ONEAPI_DNNL_DNNL_H
#define CHECK(x)                                                               \
    do {                                                                       \
        dnnl_status_t s_ = (x);                                                \
        if (s_ != dnnl_success) {                                              \
            fprintf(stderr, "%s failed: %d\n", #x, (int)s_);                   \
            return 1;                                                          \
        }                                                                      \
    } while (0)
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
#endif
