/* How many rows an RMSNorm statistics sweep should read at once on this
 * core: minimal AVX2 f32 RMSNorm kernels (no prefetch, streaming stores) over
 * 16384 x D (default 8192), out of cache, pinned by the caller, medians of 11
 * interleaved rounds, against memcpy of the same bytes:
 *   "1 row"   the statistics sweep of one row, then its write sweep;
 *   "2 rows", "4 rows"  the statistics of 2 / 4 rows in one sweep (2 / 4 read
 *             streams), then each row's write sweep, one after another;
 *   "2 rows, pair write"  2 rows' statistics, then both rows' y written
 *             vector by vector in one sweep (2 interleaved store streams).
 *   gcc -O3 -mavx2 -mfma scripts/norm_streams.c -o /tmp/norm_streams -lm
 *   taskset -c 1 /tmp/norm_streams [D]
 * docs/norm.md, "Zen 1 host, 2026-12-07 (stop 44)", has what it printed. */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 11

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float hsum(__m256 v) {
    float o[8];
    _mm256_storeu_ps(o, v);
    double s = 0;
    for (int k = 0; k < 8; k++) s += o[k];
    return (float)s;
}

/* The statistics of R rows from row i, one sweep, into rs[0..R). */
#define STATS(R, x, i, d, rs)                                                              \
    do {                                                                                   \
        __m256 a[R][2];                                                                    \
        for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();               \
        for (size_t j = 0; j < d; j += 16)                                                 \
            for (int r = 0; r < R; r++) {                                                  \
                const float *xr = x + (i + r) * d + j;                                     \
                __m256 v0 = _mm256_loadu_ps(xr), v1 = _mm256_loadu_ps(xr + 8);             \
                a[r][0] = _mm256_fmadd_ps(v0, v0, a[r][0]);                                \
                a[r][1] = _mm256_fmadd_ps(v1, v1, a[r][1]);                                \
            }                                                                              \
        for (int r = 0; r < R; r++)                                                        \
            rs[r] = _mm256_set1_ps(1.0f / sqrtf(hsum(_mm256_add_ps(a[r][0], a[r][1])) / d + 1e-5f)); \
    } while (0)

static void write_row(const float *x, const float *g, float *y, size_t d, __m256 rs) {
    for (size_t j = 0; j < d; j += 8) _mm256_stream_ps(y + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(g + j)), rs));
}

#define ROWS_KERNEL(R)                                                                            \
    __attribute__((noinline)) static void rows##R(const float *x, const float *g, float *y, size_t rows, size_t d) { \
        for (size_t i = 0; i < rows; i += R) {                                                    \
            __m256 rs[R];                                                                         \
            STATS(R, x, i, d, rs);                                                                \
            for (int r = 0; r < R; r++) write_row(x + (i + r) * d, g, y + (i + r) * d, d, rs[r]); \
        }                                                                                         \
        _mm_sfence();                                                                             \
    }
ROWS_KERNEL(1)
ROWS_KERNEL(2)
ROWS_KERNEL(4)

__attribute__((noinline)) static void pair_write(const float *x, const float *g, float *y, size_t rows, size_t d) {
    for (size_t i = 0; i < rows; i += 2) {
        __m256 rs[2];
        STATS(2, x, i, d, rs);
        for (size_t j = 0; j < d; j += 8) {
            const __m256 gv = _mm256_loadu_ps(g + j);
            for (int r = 0; r < 2; r++)
                _mm256_stream_ps(y + (i + r) * d + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + (i + r) * d + j), gv), rs[r]));
        }
    }
    _mm_sfence();
}

static int cmp(const void *a, const void *b) {
    const double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

int main(int argc, char **argv) {
    const size_t rows = 16384, d = argc > 1 ? (size_t)atoi(argv[1]) : 8192, n = rows * d;
    if (d == 0 || d % 16) return fprintf(stderr, "D: a positive multiple of 16\n"), 2;
    float *x = aligned_alloc(64, n * 4), *y = aligned_alloc(64, n * 4), *z = aligned_alloc(64, n * 4);
    float *g = aligned_alloc(64, d * 4);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (size_t j = 0; j < d; j++) g[j] = 1.0f + j * 1e-4f;
    memset(y, 0, n * 4);
    memset(z, 0, n * 4);
    const char *name[] = {"1 row", "2 rows", "4 rows", "2 rows, pair write", "memcpy"};
    double t[5][ROUNDS];
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < 5; k++) {
            const double s = now();
            switch (k) {
            case 0: rows1(x, g, y, rows, d); break;
            case 1: rows2(x, g, y, rows, d); break;
            case 2: rows4(x, g, y, rows, d); break;
            case 3: pair_write(x, g, y, rows, d); break;
            default: memcpy(z, x, n * 4); break;
            }
            t[k][r] = now() - s;
        }
    for (int k = 0; k < 5; k++) qsort(t[k], ROUNDS, sizeof(double), cmp);
    for (int k = 0; k < 5; k++)
        printf("16384 x %zu %-20s %6.2f GB/s (read + written)  %.2fx one row\n", d, name[k],
               2.0 * n * 4 / t[k][ROUNDS / 2] / 1e9, t[0][ROUNDS / 2] / t[k][ROUNDS / 2]);
    return 0;
}
