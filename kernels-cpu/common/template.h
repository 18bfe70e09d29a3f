/* Token pasting for the per-dtype templates (a .inc included once per dtype). */
#ifndef TK_COMMON_TEMPLATE_H
#define TK_COMMON_TEMPLATE_H
#define TK_CAT_(a, b) a##b
#define TK_CAT(a, b) TK_CAT_(a, b)
#define TK_CAT3(a, b, c) TK_CAT(TK_CAT(a, b), c)

#if defined(__GNUC__) || defined(__clang__)
#define TK_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define TK_ALWAYS_INLINE inline
#endif

/* Element storage type per dtype name. */
#define TK_STORAGE_f32 float
#define TK_STORAGE_f16 uint16_t
#define TK_STORAGE_bf16 uint16_t
#define TK_STORAGE(dt) TK_CAT(TK_STORAGE_, dt)

/* Elements per summation block: SIMD partial sums are merged into a double
 * total once per block, so f32 rounding error grows with the block, not the row. */
#define TK_SUM_BLOCK 2048

/* Software prefetch this far ahead of a streaming sweep. The kernels do enough
 * arithmetic per cache line that the out-of-order window alone keeps too few
 * misses in flight to reach the single-core bandwidth. Prefetches past the end
 * of a buffer are harmless (they never fault). */
#ifndef TK_PREFETCH_BYTES
#define TK_PREFETCH_BYTES 4096
#endif
/* The weight stream of the decode GEMVs (qgemm/wgemv*.c): prefetched this far
 * ahead into L2, and the L1 streamer takes it from there. On a Zen 4 host,
 * one row of X: 1.2-1.5x the 6 KiB into L1 these kernels had (6-48 KiB into
 * L2 within 5% of each other, 24 KiB the best; docs/qgemm.md). -D overrides it
 * for measuring. */
#ifndef TK_WEIGHT_PREFETCH_BYTES
#define TK_WEIGHT_PREFETCH_BYTES 24576
#endif
/* Prefetches every cache line of the `count` elements at p, TK_PREFETCH_BYTES ahead. */
#define TK_PREFETCH(p, count)                                                                 \
    do {                                                                                      \
        for (size_t pf_ = 0; pf_ < (count) * sizeof(*(p)); pf_ += 64)                         \
            _mm_prefetch((const char *)(p) + TK_PREFETCH_BYTES + pf_, _MM_HINT_T0);           \
    } while (0)
#endif
