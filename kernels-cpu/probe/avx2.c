/* The FMA peak probe (fma.inc) and the read-bandwidth probe on avx2. */
#include <string.h>

#include "../common/vec_avx2.h"
#include "../common/template.h"
#include "fma.inc"

/* Four streams: each 1 MiB block's quarters walked in lockstep, 64 bytes of
 * each a step, into independent sums. On the Zen 1 host one sequential
 * stream reads 10.6-14.3 GB/s and this 15.9-18.5 (64 MiB - 1 GiB; its
 * prefetchers follow each stream); the quarters of the whole buffer as the
 * streams read a 1 GiB buffer at 12.0 (streams 256 MiB apart), blocks of
 * 256 KiB - 16 MiB all within 3%. Software prefetch 1 or 4 KiB ahead made
 * one stream 1.1x faster and four 0.9-0.95x slower. The tail's last word is
 * zero-padded, as in the AVX-512 probe. */
uint64_t tk_read_probe_avx2(const void *p, size_t bytes) {
    enum { BLOCK = 1 << 20 };
    const char *c = (const char *)p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    while (bytes - i >= 256) {
        const size_t block = bytes - i >= BLOCK ? BLOCK : (bytes - i) / 256 * 256, q = block / 4;
        for (const char *s = c + i; s < c + i + q; s += 64) {
#define TK_LINE(a, at) \
    a = _mm256_add_epi64(a, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)(at)), \
                                             _mm256_loadu_si256((const __m256i *)((at) + 32))))
            TK_LINE(a0, s);
            TK_LINE(a1, s + q);
            TK_LINE(a2, s + 2 * q);
            TK_LINE(a3, s + 3 * q);
#undef TK_LINE
        }
        i += block;
    }
    uint64_t w[4], sum = 0;
    _mm256_storeu_si256((__m256i *)w, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    for (int k = 0; k < 4; k++) sum += w[k];
    for (; i < bytes; i += 8) {
        uint64_t v = 0;
        memcpy(&v, c + i, bytes - i < 8 ? bytes - i : 8);
        sum += v;
    }
    return sum;
}
