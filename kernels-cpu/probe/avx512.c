/* The FMA peak probe (fma.inc) and the read-bandwidth probe on avx512. */
#include "../common/vec_avx512.h"
#include "../common/template.h"
#include "fma.inc"

/* 64-byte loads, four lines a step into independent sums, each line
 * prefetched into L2 4 KiB ahead: the fastest single-core read of the ways
 * tried (on a Zen 4 host 1.1x a plain loop and 1.25x the earlier 1 KiB into
 * L1, which had been 1.05-1.1x a plain loop on a Zen 5 host; 8 KiB and T2
 * alike). Masked tail. */
uint64_t tk_read_probe_avx512(const void *p, size_t bytes) {
    const char *c = (const char *)p;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 256 <= bytes; i += 256) {
        for (size_t l = 0; l < 256; l += 64) _mm_prefetch(c + i + 4096 + l, _MM_HINT_T1);
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(c + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(c + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(c + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(c + i + 192));
    }
    for (; i < bytes; i += 64) {
        const size_t n = bytes - i < 64 ? bytes - i : 64;
        a0 = _mm512_add_epi64(a0, _mm512_maskz_loadu_epi8(n == 64 ? ~0ull : (1ull << n) - 1, c + i));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}
