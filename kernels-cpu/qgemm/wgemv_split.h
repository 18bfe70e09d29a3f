/* The split X of the weight-only GEMV's integer paths (wgemv_vnni.c, and
 * wgemv_int4_avx2.c, which shares it) in the workspace that
 * tk_wgemv_workspace_floats (variants.c) sizes for up to 16 rows: X split
 * exactly into int8 digit planes per group. One layout, so that the sizes
 * there and the offsets here agree in one place. */
#ifndef TK_QGEMM_WGEMV_SPLIT_H
#define TK_QGEMM_WGEMV_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "tk.h"

/* The most digit planes a group may need (a group that needs more declines). */
#define TK_WSPLIT_MAX_DIGITS 6
/* Digit bytes per 4 k: the MAX_DIGITS dwords of one line of 4 k. */
#define TK_WSPLIT_LINE (4 * TK_WSPLIT_MAX_DIGITS)

/* From the workspace's first 64-byte boundary, the arrays of all m rows one
 * after another, each indexed by row first: per row and group 2^E and the
 * digit count, per group the largest count of the rows, per row, group and
 * plane the correction of the weights' offset, then per row and line of 4 k
 * the MAX_DIGITS digit dwords (the least significant plane first); last,
 * from a 64-byte boundary, the AMX tiles' copy of the planes
 * (wgemv_int8_amx.c): per 64 k, nd rows of 64 digit bytes per row of X. */
typedef struct {
    double *escale;  /* [m][groups] */
    int32_t *digits; /* [m][groups]: nd */
    int32_t *most;   /* [groups]: the largest nd of the rows */
    int32_t *corr;   /* [m][groups][MAX_DIGITS] */
    int8_t *planes;  /* [m][k / 4][MAX_DIGITS][4] */
    int8_t *rows;    /* [k / 64][m][nd][64], nd <= MAX_DIGITS */
} tk_wsplit;

static inline tk_wsplit tk_wsplit_layout(const tk_wgemv_params *p) {
    const size_t groups = p->k / p->group, m = p->m;
    char *base = (char *)(((uintptr_t)p->workspace + 63) & ~(uintptr_t)63);
    tk_wsplit s;
    s.escale = (double *)base;
    s.digits = (int32_t *)(s.escale + m * groups);
    s.most = s.digits + m * groups;
    s.corr = s.most + groups;
    s.planes = (int8_t *)(s.corr + m * groups * TK_WSPLIT_MAX_DIGITS);
    s.rows = (int8_t *)(((uintptr_t)(s.planes + m * (p->k / 4) * TK_WSPLIT_LINE) + 63) & ~(uintptr_t)63);
    return s;
}

/* Splits every row of X into s (AVX-512; wgemv_vnni.c): 0 when some group
 * cannot be split exactly. */
int tk_wgemv_split_x(const tk_wgemv_params *p, tk_dtype dtype, const tk_wsplit *s);

/* Row i's arrays (`most` and `rows` are left as the call's). */
static inline tk_wsplit tk_wsplit_row(const tk_wgemv_params *p, size_t i) {
    const size_t groups = p->k / p->group;
    tk_wsplit s = tk_wsplit_layout(p);
    s.escale += i * groups;
    s.digits += i * groups;
    s.corr += i * groups * TK_WSPLIT_MAX_DIGITS;
    s.planes += i * (p->k / 4) * TK_WSPLIT_LINE;
    return s;
}

#endif
