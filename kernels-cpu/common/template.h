/* Token pasting for the per-dtype templates (a .inc included once per dtype). */
#ifndef TK_COMMON_TEMPLATE_H
#define TK_COMMON_TEMPLATE_H
#define TK_CAT_(a, b) a##b
#define TK_CAT(a, b) TK_CAT_(a, b)
#define TK_CAT3(a, b, c) TK_CAT(TK_CAT(a, b), c)

#if defined(__GNUC__) || defined(__clang__)
#define TK_ALWAYS_INLINE inline __attribute__((always_inline))
#define TK_NOINLINE __attribute__((noinline))
#else
#define TK_ALWAYS_INLINE inline
#define TK_NOINLINE
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
/* The weight stream of the decode GEMVs (qgemm/wgemv*.c): each 64-byte line
 * prefetched into L2 twice, TK_WEIGHT_PREFETCH_BYTES ahead and again half as
 * far, and the L1 streamer takes it from there. On a Zen 4 host a single
 * prefetch left the int8 VNNI loop at one row of X at 72% of the read probe
 * out of cache, though it runs at 2.3x that rate from L2, and the same
 * loop slowed by useless work streamed faster: as if some prefetches of a
 * fast loop never land (Zen 4 is reported to drop T1 prefetches at times).
 * A second request for each line: 1.19-1.25x in a same-process harness
 * (8 + 4 KiB; 24 + 12 KiB 1.15x; one at 6-96 KiB no better than at 24 KiB),
 * 1.10x in the report (72-73% -> 80-81% of its faster read sweep;
 * docs/qgemm.md). -D overrides the distance for measuring. */
#ifndef TK_WEIGHT_PREFETCH_BYTES
#define TK_WEIGHT_PREFETCH_BYTES 8192
#endif
#define TK_PREFETCH_WEIGHT_LINE(line)                                              \
    do {                                                                           \
        tkv_prefetch_l2((const char *)(line) + TK_WEIGHT_PREFETCH_BYTES);          \
        tkv_prefetch_l2((const char *)(line) + TK_WEIGHT_PREFETCH_BYTES / 2);      \
    } while (0)
/* Prefetches every cache line of the `count` elements at p, TK_PREFETCH_BYTES ahead. */
#define TK_PREFETCH(p, count)                                                                 \
    do {                                                                                      \
        for (size_t pf_ = 0; pf_ < (count) * sizeof(*(p)); pf_ += 64)                         \
            _mm_prefetch((const char *)(p) + TK_PREFETCH_BYTES + pf_, _MM_HINT_T0);           \
    } while (0)
#endif
