/* How much per-line compute a single-core weight stream can carry: one
 * 64-byte line loaded, prefetched into L2 once 24 KiB ahead (as the decode
 * GEMVs did until 2026-12-06) or twice, 8 and 4 KiB ahead (as they do now),
 * and used by 0, 3, 6 or 12 vpdpbusd (each with an
 * embedded digit broadcast, twice as many accumulators as products so that
 * latency stays hidden: the shape of wgemv_vnni.c's loop at one row of X;
 * int8 with 3 digits is 3 a line, int4 6), against the read probe on the
 * same buffer, alternating, medians. Run out of cache and in L2: where the
 * in-L2 rate of a variant is not well above the probe's out-of-cache rate,
 * the compute, not the memory, sets the GEMV's speed. Where AMX-INT8 is
 * ready, one more variant: the stream as 1 KiB tiles (16 lines: 64 k x 16
 * channels in the panel layout, which is AMX's B layout), one tdpbusd each
 * against 3 digit rows of x, the 3 x 16 sums stored every 2 KiB (a group of
 * 128 k at one row), lines prefetched twice as above.
 *   gcc -O3 -march=native -Ikernels-cpu/include -Iscripts scripts/stream_compute.c \
 *       kernels-cpu/probe/avx512.c -o /tmp/sc && taskset -c 1 /tmp/sc ROUNDS MIB */
#define _GNU_SOURCE /* syscall() */
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define MAX_ROUNDS 64
uint64_t tk_read_probe_avx512(const void *p, size_t bytes);

#define DP(acc, u, x) __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t(*)[1])(x)))

/* Twelve accumulators for each of the two lines, named one by one: GCC keeps
 * an array of them that feeds an asm operand on the stack (a 64-byte store
 * after every product), which the loop should not measure. */
#define TWELVE(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECLARE(i) __m512i e##i = _mm512_setzero_si512(), o##i = _mm512_setzero_si512();
#define PRODUCTS(i) \
    if (i < ops) { \
        DP(e##i, ue, xe + 4 * i); \
        DP(o##i, uo, xo + 4 * i); \
    }
#define SUM(i) sum = _mm512_add_epi32(sum, _mm512_add_epi32(e##i, o##i));

static inline __attribute__((always_inline)) uint64_t stream(const char *w, size_t bytes, const int8_t *digits, int ops,
                                                            int twice) {
    TWELVE(DECLARE)
    for (size_t at = 0; at < bytes; at += 128) { /* two lines, two sets of accumulators */
        for (size_t l = at; l < at + 128; l += 64)
            if (twice) {
                _mm_prefetch(w + l + 8192, _MM_HINT_T1);
                _mm_prefetch(w + l + 4096, _MM_HINT_T1);
            } else
                _mm_prefetch(w + l + 24576, _MM_HINT_T1);
        const __m512i ue = _mm512_loadu_si512(w + at), uo = _mm512_loadu_si512(w + at + 64);
        const int8_t *xe = digits + ((at / 64) % 512) * 48, *xo = digits + ((at / 64 + 1) % 512) * 48;
        if (ops == 0) {
            e0 = _mm512_add_epi32(e0, ue);
            o0 = _mm512_add_epi32(o0, uo);
        }
        TWELVE(PRODUCTS)
    }
    __m512i sum = _mm512_setzero_si512();
    TWELVE(SUM)
    return (uint64_t)_mm512_reduce_add_epi64(sum);
}

#define STREAM(n, twice)                                                                         \
    static __attribute__((noinline)) uint64_t stream##n##_##twice(const char *w, size_t b, const int8_t *d) { \
        return stream(w, b, d, n, twice);                                                        \
    }
STREAM(0, 0)
STREAM(3, 0)
STREAM(6, 0)
STREAM(12, 0)
STREAM(0, 1)
STREAM(3, 1)
STREAM(6, 1)
STREAM(12, 1)

/* Palette 1: tile 0 the 3 x 16 int32 sums, 1 the 3 digit rows of 64 bytes, 2 a 1 KiB weight tile. */
static int amx_setup(void) {
    if (!__builtin_cpu_supports("amx-int8") || syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 0;
    struct __attribute__((packed)) {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.colsb[0] = 64, cfg.rows[0] = 3;
    cfg.colsb[1] = 64, cfg.rows[1] = 3;
    cfg.colsb[2] = 64, cfg.rows[2] = 16;
    _tile_loadconfig(&cfg);
    return 1;
}

static __attribute__((noinline, target("amx-tile,amx-int8"))) uint64_t stream_amx(const char *w, size_t bytes,
                                                                                   const int8_t *digits) {
    int32_t c[3][16] __attribute__((aligned(64)));
    uint64_t total = 0;
    _tile_loadd(1, digits, 64);
    for (size_t at = 0; at < bytes; at += 2048) {
        _tile_zero(0);
        for (size_t t = at; t < at + 2048; t += 1024) {
            for (size_t l = t; l < t + 1024; l += 64) {
                _mm_prefetch(w + l + 8192, _MM_HINT_T1);
                _mm_prefetch(w + l + 4096, _MM_HINT_T1);
            }
            _tile_loadd(2, w + t, 64);
            _tile_dpbusd(0, 1, 2);
        }
        _tile_stored(0, c, 64);
        total += (uint32_t)c[0][at / 2048 % 16];
    }
    return total;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 9;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 9;
    const size_t bytes = (size_t)(argc > 2 ? atoi(argv[2]) : 640) << 20;
    char *w = malloc(bytes);
    int8_t *digits = malloc(512 * 48);
    memset(w, 1, bytes);
    memset(digits, 3, 512 * 48);
    const int ops[] = {0, 3, 6, 12, 0, 3, 6, 12};
    uint64_t (*const fns[])(const char *, size_t, const int8_t *) = {stream0_0, stream3_0, stream6_0, stream12_0,
                                                                      stream0_1, stream3_1, stream6_1, stream12_1};
    enum { PROBE = 8, AMX = 9 };
    const int amx = amx_setup(), last = amx ? AMX : PROBE;
    double t[AMX + 1][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j <= last; j++) {
            const int v = (j + r) % (last + 1); /* who goes first rotates */
            const double t0 = now();
            volatile uint64_t sink = v == PROBE ? tk_read_probe_avx512(w, bytes)
                                     : v == AMX ? stream_amx(w, bytes, digits)
                                                : fns[v](w, bytes, digits);
            (void)sink;
            t[v][r] = now() - t0;
        }
    for (int v = 0; v <= last; v++) qsort(t[v], (size_t)rounds, sizeof(double), cmp);
    printf("%zu MiB, medians of %d\n", bytes >> 20, rounds);
    for (int v = 0; v <= last; v++) {
        const double med = t[v][rounds / 2];
        if (v == AMX)
            printf("AMX: a tdpbusd per 1 KiB, prefetched twice %6.2f GB/s  %.2f of the probe\n", bytes / med / 1e9,
                   t[PROBE][rounds / 2] / med);
        else if (v == PROBE)
            printf("read probe          %6.2f GB/s\n", bytes / med / 1e9);
        else
            printf("%2d vpdpbusd a line, prefetched %-5s %6.2f GB/s  %.2f of the probe\n", ops[v],
                   v < 4 ? "once" : "twice", bytes / med / 1e9,
                   t[PROBE][rounds / 2] / med);
    }
    free(w);
    free(digits);
    return 0;
}
