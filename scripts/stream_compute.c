/* How much per-line compute a single-core weight stream can carry: one
 * 64-byte line loaded (prefetched into L2 TK_WEIGHT_PREFETCH_BYTES ahead,
 * as the decode GEMVs do) and used by 0, 3, 6 or 12 vpdpbusd (each with an
 * embedded digit broadcast, twice as many accumulators as products so that
 * latency stays hidden: the shape of wgemv_vnni.c's loop at one row of X;
 * int8 with 3 digits is 3 a line, int4 6), against the read probe on the
 * same buffer, alternating, medians. Run out of cache and in L2: where the
 * in-L2 rate of a variant is not well above the probe's out-of-cache rate,
 * the compute, not the memory, sets the GEMV's speed.
 *   gcc -O3 -march=native -Ikernels-cpu/include -Iscripts scripts/stream_compute.c \
 *       kernels-cpu/probe/avx512.c -o /tmp/sc && taskset -c 1 /tmp/sc ROUNDS MIB */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define TK_WEIGHT_PREFETCH_BYTES 24576
#define MAX_ROUNDS 64
uint64_t tk_read_probe_avx512(const void *p, size_t bytes);

#define DP(acc, u, x) __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t(*)[1])(x)))

static inline __attribute__((always_inline)) uint64_t stream(const char *w, size_t bytes, const int8_t *digits, int ops) {
    __m512i a[24];
    for (int i = 0; i < 24; i++) a[i] = _mm512_setzero_si512();
    for (size_t at = 0; at < bytes; at += 128)
        for (int odd = 0; odd < 2; odd++) { /* two lines, two sets of accumulators */
            const char *line = w + at + 64 * odd;
            _mm_prefetch(line + TK_WEIGHT_PREFETCH_BYTES, _MM_HINT_T1);
            const __m512i u = _mm512_loadu_si512(line);
            const int8_t *x = digits + ((at / 64 + (size_t)odd) % 512) * 48;
            __m512i *acc = a + 12 * odd;
            if (ops == 0) acc[0] = _mm512_add_epi32(acc[0], u);
            for (int i = 0; i < ops; i++) DP(acc[i], u, x + 4 * i); /* unrolled: ops is a constant below */
        }
    for (int i = 1; i < 24; i++) a[0] = _mm512_add_epi32(a[0], a[i]);
    return (uint64_t)_mm512_reduce_add_epi64(a[0]);
}

#define STREAM(n) \
    static __attribute__((noinline)) uint64_t stream##n(const char *w, size_t b, const int8_t *d) { return stream(w, b, d, n); }
STREAM(0)
STREAM(3)
STREAM(6)
STREAM(12)

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 9;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 9;
    const size_t bytes = (size_t)(argc > 2 ? atoi(argv[2]) : 640) << 20;
    char *w = malloc(bytes);
    int8_t *digits = malloc(512 * 48);
    memset(w, 1, bytes);
    memset(digits, 3, 512 * 48);
    const int ops[] = {0, 3, 6, 12};
    uint64_t (*const fns[])(const char *, size_t, const int8_t *) = {stream0, stream3, stream6, stream12};
    enum { PROBE = 4 };
    double t[PROBE + 1][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j <= PROBE; j++) {
            const int v = (j + r) % (PROBE + 1); /* who goes first rotates */
            const double t0 = now();
            volatile uint64_t sink = v == PROBE ? tk_read_probe_avx512(w, bytes) : fns[v](w, bytes, digits);
            (void)sink;
            t[v][r] = now() - t0;
        }
    for (int v = 0; v <= PROBE; v++) qsort(t[v], (size_t)rounds, sizeof(double), cmp);
    printf("%zu MiB, medians of %d\n", bytes >> 20, rounds);
    for (int v = 0; v <= PROBE; v++) {
        const double med = t[v][rounds / 2];
        if (v == PROBE)
            printf("read probe          %6.2f GB/s\n", bytes / med / 1e9);
        else
            printf("%2d vpdpbusd a line  %6.2f GB/s  %.2f of the probe\n", ops[v], bytes / med / 1e9,
                   t[PROBE][rounds / 2] / med);
    }
    free(w);
    free(digits);
    return 0;
}
