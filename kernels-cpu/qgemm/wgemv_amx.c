/* The weight-only int4 product on AMX-BF16 (tk.h: tk_wgemv_int4_amx).
 *
 * On AVX-512 an int4 weight costs a table lookup and an FMA per row of X.
 * Here the vector units only unpack: 64 bytes of a W row (128 weights) become
 * four rows of 32 bf16 (exact: integers -8..7) by three shifts and four
 * 32-entry vpermw lookups, in a k order that X's tile follows, and
 * tdpbf16ps multiplies them by every row of X at once. The tiles cost about
 * the same for 1 row as for 8, the SIMD kernel's FMAs grow with the rows:
 * measured, this wins above 4 rows (the caller's AMX_MIN_ROWS).
 *
 * Tiles: A (tmm4, tmm5) = 16 channels x 32 k of W as bf16; B (tmm6, tmm7) =
 * the same 32 k of X as bf16 pairs, one column per (row of X, part); C
 * (tmm0-3) = the sums of four 128-k spans (independent chains). X is split
 * exactly into bf16 parts (f32 into three: 8 + 8 + 8 bits of significand;
 * f16 into two; bf16 is one), exact with every part and product a normal
 * float for |x| in [2^-60, 2^100), so the products are exact and only the
 * f32 sums round (in order, RNE), as on the SIMD path; each span's sums are
 * scaled once by its group's scale and accumulated in f32. Calls that do not
 * fit (groups not a multiple of 128, rows x parts above 16, x outside that
 * range) decline (return 0, nothing written) and the caller runs the SIMD
 * kernel. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cpuid.h>

#include "tk.h"

#include "amx_tiles.h"

#include "../common/scalar.h"

/* Spans of 128 k whose sums are in flight at once (one C tile each). */
#define TK_WAMX_SPANS 4

int tk_amx_bf16_ready(void) {
    static int state = -1; /* CPUID once: it traps to the hypervisor in a VM */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (s >= 0) return s;
    unsigned a, b, c, d;
    s = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) && tk_amx_ready();
    __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    return s;
}

static size_t tk_wamx_parts(tk_dtype dt) { return dt == TK_DTYPE_F32 ? 3 : dt == TK_DTYPE_F16 ? 2 : 1; }

static float tk_wamx_load(const tk_wgemv_params *p, tk_dtype dt, size_t r, size_t c) {
    const size_t e = r * p->x_stride + c;
    switch (dt) {
    case TK_DTYPE_F16: return tk_f16_to_f32(((const uint16_t *)p->x)[e]);
    case TK_DTYPE_BF16: return tk_bf16_to_f32(((const uint16_t *)p->x)[e]);
    default: return ((const float *)p->x)[e];
    }
}

/* x = sum of parts[0..n) exactly (each a bf16), or 0 when x is NaN / inf or
 * outside [2^-60, 2^100) and not zero: below, a part or a sum could meet the
 * flush to zero of tdpbf16ps; above, sum x q could overflow. */
static int tk_wamx_split(float x, size_t n, uint16_t *parts) {
    const float a = fabsf(x);
    if (!(a == 0.0f || (a >= 0x1p-60f && a < 0x1p100f))) return 0;
    for (size_t i = 0; i < n; i++) {
        parts[i] = tk_f32_to_bf16(x);
        x -= tk_bf16_to_f32(parts[i]); /* exact */
    }
    return x == 0.0f;
}

/* B for every 32 k (tile t): 16 rows (k pairs) x cols dwords in the k order
 * of tk_wamx_unpack: tile t = 4 s + c of span s (128 k) holds, at pair kk,
 * k = 128 s + 8 kk + c and that + 4; dword (kk, r parts + i) = part i of
 * the first x of row r | part i of the second << 16. */
static int tk_wamx_prepare_x(const tk_wgemv_params *p, tk_dtype dt, size_t parts, uint32_t *b) {
    const size_t cols = p->m * parts;
    for (size_t r = 0; r < p->m; r++)
        for (size_t t = 0; t < p->k / 32; t++)
            for (size_t kk = 0; kk < 16; kk++) {
                const size_t c0 = 128 * (t / 4) + 8 * kk + t % 4;
                uint16_t lo[3], hi[3];
                if (!tk_wamx_split(tk_wamx_load(p, dt, r, c0), parts, lo) ||
                    !tk_wamx_split(tk_wamx_load(p, dt, r, c0 + 4), parts, hi))
                    return 0;
                uint32_t *row = b + (t * 16 + kk) * cols + r * parts;
                for (size_t i = 0; i < parts; i++) row[i] = lo[i] | (uint32_t)hi[i] << 16;
            }
    return 1;
}


/* One span of a W row (128 k, 64 bytes; the even k in the low nibble) to
 * four A rows of 32 bf16: a 16-bit word holds k = 4i .. 4i + 3 as its four
 * nibbles, so row c (c = 0..3) is the word's nibble c, k = 4i + c, looked up
 * after a shift by 4c (vpermw reads the low 5 bits; entries i and i + 16
 * agree). Four lookups and three shifts for 128 weights. */
static inline void tk_wamx_unpack(const uint8_t *src, __m512i table, uint16_t *a) {
    const __m512i v = _mm512_loadu_si512(src);
    _mm512_store_si512(a, _mm512_permutexvar_epi16(v, table));
    _mm512_store_si512(a + 16 * 32, _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 4), table));
    _mm512_store_si512(a + 2 * 16 * 32, _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 8), table));
    _mm512_store_si512(a + 3 * 16 * 32, _mm512_permutexvar_epi16(_mm512_srli_epi16(v, 12), table));
}

/* One unit of work: 16 channels (block jb) x up to TK_WAMX_SPANS spans
 * (span group sg), in three steps that the main loop staggers so that the
 * vector unpack of a unit overlaps the tile products of the one before. */
typedef struct {
    const tk_wgemv_params *p;
    tk_dtype dt;
    size_t parts, cols, spans, groups, nsg;
    __m512i table;
    __mmask16 colmask;
    const uint32_t *b;
} tk_wamx_call;

static size_t tk_wamx_rows(const tk_wamx_call *c, size_t jb) {
    return c->p->n - jb * 16 < 16 ? c->p->n - jb * 16 : 16;
}

static size_t tk_wamx_nspans(const tk_wamx_call *c, size_t sg) {
    return c->spans - sg * TK_WAMX_SPANS < TK_WAMX_SPANS ? c->spans - sg * TK_WAMX_SPANS : TK_WAMX_SPANS;
}

/* Items [lo, hi) of unit u's unpack (item = one span of one W row: 128
 * weights into 4 A rows) into its A tiles; the first call of a partial
 * block zeroes rows nr..16. */
static void tk_wamx_unpack_items(const tk_wamx_call *c, size_t u, uint16_t *a, size_t lo, size_t hi) {
    const size_t jb = u / c->nsg, sg = u % c->nsg, nr = tk_wamx_rows(c, jb);
    const size_t stride = c->p->w_stride, ahead = 16 * stride;
    if (lo == 0 && nr < 16) memset(a, 0, TK_WAMX_SPANS * 4 * 16 * 32 * sizeof(uint16_t));
    const uint8_t *w0 = (const uint8_t *)c->p->w + jb * 16 * stride + sg * TK_WAMX_SPANS * 64;
    for (size_t it = lo; it < hi; it++) {
        const size_t gg = it / nr, j = it % nr;
        const uint8_t *src = w0 + j * stride + gg * 64;
        _mm_prefetch((const char *)src + ahead, _MM_HINT_T0); /* the next block's line */
        tk_wamx_unpack(src, c->table, a + (gg * 4 * 16 + j) * 32);
    }
}

static size_t tk_wamx_items(const tk_wamx_call *c, size_t u) {
    return tk_wamx_rows(c, u / c->nsg) * tk_wamx_nspans(c, u % c->nsg);
}

/* C tile gg += A (tile c of span gg, tmm4 / tmm5) x B: tile numbers are
 * immediates, hence the switch. */
#define TK_WAMX_DP(gg, A, B)                                                                       \
    switch (gg) {                                                                                  \
    case 0: _tile_dpbf16ps(0, A, B); break;                                                        \
    case 1: _tile_dpbf16ps(1, A, B); break;                                                        \
    case 2: _tile_dpbf16ps(2, A, B); break;                                                        \
    default: _tile_dpbf16ps(3, A, B); break;                                                       \
    }

/* The span sums of unit u into cbuf (4 x 16 x 16 f32), with the unpack of
 * unit `next` (into a_next; none when next == SIZE_MAX) spread between the
 * products: the W loads and prefetches keep flowing while the tiles work. */
static void tk_wamx_tiles_unit(const tk_wamx_call *c, size_t u, const uint16_t *a, float *cbuf, size_t next,
                               uint16_t *a_next) {
    const size_t sg = u % c->nsg, ns = tk_wamx_nspans(c, sg), cols = c->cols, steps = 4 * ns;
    const size_t items = next == SIZE_MAX ? 0 : tk_wamx_items(c, next), per = (items + steps - 1) / steps;
    size_t done = 0;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (size_t q = 0; q < 4; q++) /* consecutive products feed different C tiles */
        for (size_t gg = 0; gg < ns; gg++) {
            const uint16_t *at = a + (gg * 4 + q) * 16 * 32;
            const uint32_t *bt = c->b + ((sg * TK_WAMX_SPANS + gg) * 4 + q) * 16 * cols;
            if (gg & 1) {
                _tile_loadd(5, at, 64);
                _tile_loadd(7, bt, cols * 4);
                TK_WAMX_DP(gg, 5, 7);
            } else {
                _tile_loadd(4, at, 64);
                _tile_loadd(6, bt, cols * 4);
                TK_WAMX_DP(gg, 4, 6);
            }
            const size_t hi = done + per < items ? done + per : items;
            if (hi > done) tk_wamx_unpack_items(c, next, a_next, done, hi);
            done = hi;
        }
    if (done < items) tk_wamx_unpack_items(c, next, a_next, done, items);
    _tile_stored(0, cbuf, 64);
    _tile_stored(1, cbuf + 256, 64);
    _tile_stored(2, cbuf + 512, 64);
    _tile_stored(3, cbuf + 768, 64);
}

/* acc += each span's sums x its group's scale; after a block's last unit,
 * its outputs (the parts summed, bias, stored) and acc cleared. */
static void tk_wamx_flush_unit(const tk_wamx_call *c, size_t u, const float *cbuf, float *acc) {
    const tk_wgemv_params *p = c->p;
    const size_t jb = u / c->nsg, sg = u % c->nsg, nr = tk_wamx_rows(c, jb), ns = tk_wamx_nspans(c, sg);
    const size_t j0 = jb * 16, parts = c->parts;
    for (size_t gg = 0; gg < ns; gg++) {
        const size_t gi = (sg * TK_WAMX_SPANS + gg) * 128 / p->group;
        for (size_t j = 0; j < nr; j++) {
            const __m512 sc = _mm512_set1_ps(p->w_scale[(j0 + j) * c->groups + gi]);
            const __m512 v = _mm512_maskz_loadu_ps(c->colmask, cbuf + gg * 256 + j * 16);
            _mm512_store_ps(acc + j * 16, _mm512_fmadd_ps(v, sc, _mm512_load_ps(acc + j * 16)));
        }
    }
    if (sg + 1 < c->nsg) return;
    for (size_t j = 0; j < nr; j++)
        for (size_t r = 0; r < p->m; r++) {
            float v = acc[j * 16 + r * parts];
            for (size_t i = 1; i < parts; i++) v += acc[j * 16 + r * parts + i];
            if (p->bias) v += p->bias[j0 + j];
            const size_t e = r * p->y_stride + j0 + j;
            switch (c->dt) {
            case TK_DTYPE_F16: ((uint16_t *)p->y)[e] = tk_f32_to_f16(v); break;
            case TK_DTYPE_BF16: ((uint16_t *)p->y)[e] = tk_f32_to_bf16(v); break;
            default: ((float *)p->y)[e] = v;
            }
        }
    memset(acc, 0, 16 * 16 * sizeof(float));
}

int tk_wgemv_int4_amx(const tk_wgemv_params *p, tk_dtype dt) {
    const size_t m = p->m, k = p->k, parts = tk_wamx_parts(dt), cols = m * parts;
    if (p->w_bits != 4 || p->w_panels || m == 0 || cols > 16 || p->group % 128 != 0 || !tk_amx_bf16_ready()) return 0;
    /* workspace: B, then A tiles, span sums and accumulators, two of each */
    uint8_t *ws = (uint8_t *)(((uintptr_t)p->workspace + 63) & ~(uintptr_t)63);
    uint32_t *b = (uint32_t *)ws;
    uint16_t *abuf = (uint16_t *)(ws + ((k / 2 * cols * 4 + 63) & ~(size_t)63));
    const size_t a_len = TK_WAMX_SPANS * 4 * 16 * 32, c_len = TK_WAMX_SPANS * 16 * 16;
    float *cbuf = (float *)(abuf + 2 * a_len), *acc = cbuf + 2 * c_len;
    if (!p->x_ready && !tk_wamx_prepare_x(p, dt, parts, b)) return 0;

    uint16_t tab[32];
    for (int i = 0; i < 32; i++) tab[i] = tk_f32_to_bf16((float)(((i & 15) ^ 8) - 8));
    tk_wamx_call c = {p, dt, parts, cols, k / 128, k / p->group, (k / 128 + TK_WAMX_SPANS - 1) / TK_WAMX_SPANS,
                      _mm512_loadu_si512(tab), (__mmask16)((1u << cols) - 1), b};
    memset(acc, 0, 2 * 16 * 16 * sizeof(float));

    /* tiles 0-3: the sums of 4 spans in flight (16 channels x cols f32),
     * 4-5: W (16 channels x 32 bf16), 6-7: X (16 pairs x cols) */
    tk_tile_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = (uint16_t)(t == 4 || t == 5 ? 64 : cols * 4);
    }
    _tile_loadconfig(&cfg);
    /* A software pipeline: a tile load of data the vector units stored just
     * before waits for those stores (about 20 ns a tile here), and the W
     * stream stalls if the unpack waits for the tiles, so step u runs the
     * tiles of unit u - 1 (unpacked a step ago) with the unpack of unit u
     * spread between its products, then adds up unit u - 2 (tile-stored a
     * step ago). */
    const size_t units = (p->n + 15) / 16 * c.nsg;
    tk_wamx_unpack_items(&c, 0, abuf, 0, tk_wamx_items(&c, 0));
    for (size_t u = 1; u <= units; u++) {
        const size_t prev = u - 1;
        tk_wamx_tiles_unit(&c, prev, abuf + (prev & 1) * a_len, cbuf + (prev & 1) * c_len, u < units ? u : SIZE_MAX,
                           abuf + (u & 1) * a_len);
        if (prev >= 1)
            tk_wamx_flush_unit(&c, prev - 1, cbuf + ((prev - 1) & 1) * c_len, acc + ((prev - 1) / c.nsg & 1) * 256);
    }
    tk_wamx_flush_unit(&c, units - 1, cbuf + ((units - 1) & 1) * c_len, acc + ((units - 1) / c.nsg & 1) * 256);
    _tile_release();
    return 1;
}
