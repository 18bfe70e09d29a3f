/* Token pasting for the per-dtype templates (a .inc included once per dtype). */
#ifndef TK_COMMON_TEMPLATE_H
#define TK_COMMON_TEMPLATE_H
#define TK_CAT_(a, b) a##b
#define TK_CAT(a, b) TK_CAT_(a, b)
#define TK_CAT3(a, b, c) TK_CAT(TK_CAT(a, b), c)

/* Element storage type per dtype name. */
#define TK_STORAGE_f32 float
#define TK_STORAGE_f16 uint16_t
#define TK_STORAGE_bf16 uint16_t
#define TK_STORAGE(dt) TK_CAT(TK_STORAGE_, dt)

/* Elements per summation block: SIMD partial sums are merged into a double
 * total once per block, so f32 rounding error grows with the block, not the row. */
#define TK_SUM_BLOCK 2048
#endif
