/* Shared by the peer benches: a monotonic clock, a qsort comparator for
 * medians, and (after oneapi/dnnl/dnnl.h) oneDNN status checks. */
#ifndef TK_SCRIPTS_BENCH_UTIL_H
#define TK_SCRIPTS_BENCH_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Whether every space-separated word of `filter` (NULL: none) occurs in `name`. */
static inline int matches(const char *filter, const char *name) {
    char words[256];
    if (!filter) return 1;
    snprintf(words, sizeof words, "%s", filter);
    for (char *w = strtok(words, " "); w; w = strtok(NULL, " "))
        if (!strstr(name, w)) return 0;
    return 1;
}

#define AB_MAX_ROUNDS 64

/* struct NAME {old_fn, new_fn, p} for entry points taking `const PARAMS *`,
 * each side on its own params (p[0] old, p[1] new), and run_NAME for
 * ab_medians. */
#define AB_PAIR(NAME, PARAMS)                                                  \
    struct NAME {                                                              \
        void (*old_fn)(const PARAMS *);                                        \
        void (*new_fn)(const PARAMS *);                                        \
        const PARAMS *p;                                                       \
    };                                                                         \
    static void run_##NAME(int s, void *ctx) {                                 \
        const struct NAME *c = ctx;                                            \
        (s ? c->new_fn : c->old_fn)(&c->p[s]);                                 \
    }

/* The same-process A/B of the *_ab.c harnesses: run(side, ctx) for side 0
 * (old) and 1 (new), `calls` calls a sample, `rounds` samples each (at most
 * AB_MAX_ROUNDS), who goes first alternating; med[side] = the median time of
 * one call. */
static inline void ab_medians(int rounds, int calls, void (*run)(int side, void *ctx), void *ctx, double med[2]) {
    double t[2][AB_MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 2; i++) {
            const int s = (i + r) % 2;
            const double t0 = now();
            for (int c = 0; c < calls; c++) run(s, ctx);
            t[s][r] = (now() - t0) / calls;
        }
    for (int s = 0; s < 2; s++) {
        qsort(t[s], (size_t)rounds, sizeof(double), cmp);
        med[s] = t[s][rounds / 2];
    }
}
#endif
