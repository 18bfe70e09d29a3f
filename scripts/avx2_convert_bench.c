/* The AVX2 bf16 conversions of kernels-cpu/common/avx2.h (and vec_avx2.h's
 * tkv_round_bf16) against their textbook forms: checked equal on every input
 * (all 2^16 bf16 words loaded, all 2^32 f32 bit patterns rounded), then timed
 * beside f16's instructions in cycles per vector
 * of 8 (four independent chains over a 4096-element buffer in L1; the clock
 * from TK_GHZ, default 2.36, the Zen 1 host's FMA probe).
 *   gcc -O2 -mavx2 -mfma -mf16c -Ikernels-cpu/include scripts/avx2_convert_bench.c \
 *       -o /tmp/convert && taskset -c 1 /tmp/convert */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../kernels-cpu/common/vec_avx2.h"

/* bf16 -> f32 widened with vpmovzxwd (crosses the 128-bit lanes) */
static inline __m256 textbook_load_bf16(const uint16_t *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
/* f32 -> bf16: (u + 0x7FFF + ((u >> 16) & 1)) >> 16, NaN quietened, packed
 * by a 256-bit pack and a lane-crossing permute */
static inline __m128i textbook_to_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, quiet, nan);
    const __m256i packed = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 4096
#define REPS 100000
static uint16_t h[N] __attribute__((aligned(64)));
static float f[N] __attribute__((aligned(64)));

static void report(const char *name, double secs) {
    const char *g = getenv("TK_GHZ");
    printf("%-28s %5.2f cycles / vector\n", name, secs * (g ? atof(g) : 2.36) * 1e9 / (REPS * (N / 8.0)));
}
#define TIME_LOAD(name, LOAD)                                                                      \
    do {                                                                                           \
        double t = now();                                                                          \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                \
        for (int r = 0; r < REPS; r++)                                                             \
            for (int i = 0; i < N; i += 32) {                                                      \
                a0 = _mm256_add_ps(a0, LOAD(h + i));                                               \
                a1 = _mm256_add_ps(a1, LOAD(h + i + 8));                                           \
                a2 = _mm256_add_ps(a2, LOAD(h + i + 16));                                          \
                a3 = _mm256_add_ps(a3, LOAD(h + i + 24));                                          \
            }                                                                                      \
        __asm__ volatile("" ::"x"(a0), "x"(a1), "x"(a2), "x"(a3));                                 \
        report(name, now() - t);                                                                   \
    } while (0)
#define TIME_STORE(name, TO)                                                                       \
    do {                                                                                           \
        double t = now();                                                                          \
        for (int r = 0; r < REPS; r++) {                                                           \
            for (int i = 0; i < N; i += 8) _mm_store_si128((__m128i *)(h + i), TO(_mm256_load_ps(f + i))); \
            __asm__ volatile("" ::"m"(h), "m"(f));                                                 \
        }                                                                                          \
        report(name, now() - t);                                                                   \
    } while (0)

int main(void) {
    long bad = 0;
    uint16_t w[8], a[8], b[8];
    float fa[8], fb[8];
    for (uint32_t x = 0; x < 65536; x += 8) {
        for (int k = 0; k < 8; k++) w[k] = (uint16_t)(x + k);
        _mm256_storeu_ps(fa, textbook_load_bf16(w));
        _mm256_storeu_ps(fb, tk256_load_bf16(w));
        bad += memcmp(fa, fb, sizeof fa) != 0;
    }
    for (uint64_t x = 0; x < (1ull << 32); x += 8) {
        uint32_t u[8];
        for (int k = 0; k < 8; k++) u[k] = (uint32_t)(x + k);
        __m256 v;
        memcpy(&v, u, sizeof v);
        _mm_storeu_si128((__m128i *)a, textbook_to_bf16(v));
        _mm_storeu_si128((__m128i *)b, tk256_to_bf16(v));
        bad += memcmp(a, b, sizeof a) != 0;
        /* tkv_round_bf16: the textbook rounding widened back */
        _mm256_storeu_ps(fa, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(textbook_to_bf16(v)), 16)));
        _mm256_storeu_ps(fb, tkv_round_bf16(v));
        bad += memcmp(fa, fb, sizeof fa) != 0;
    }
    printf("every input: %s\n", bad ? "MISMATCH" : "same bits");
    for (int i = 0; i < N; i++) {
        f[i] = i * 0.37f - 700;
        h[i] = (uint16_t)(0x3c00 + i % 1000);
    }
    TIME_LOAD("f16 load (vcvtph2ps)", tk256_load_f16);
    TIME_LOAD("bf16 load, textbook", textbook_load_bf16);
    TIME_LOAD("bf16 load, tk256_load_bf16", tk256_load_bf16);
    TIME_STORE("f16 store (vcvtps2ph)", tk256_to_f16);
    TIME_STORE("bf16 store, textbook", textbook_to_bf16);
    TIME_STORE("bf16 store, tk256_to_bf16", tk256_to_bf16);
    return bad != 0;
}
