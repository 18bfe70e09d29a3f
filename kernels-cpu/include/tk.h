/*
 * transformer-kernels: the C ABI of every CPU microkernel.
 *
 * This header is bindgen's input (src/ffi/bindings.rs is generated from it).
 * Microkernels are pure functions over raw pointers with explicit lengths and
 * strides: no allocation, no global state, no reads or writes past the lengths
 * they are given. Each family has one params struct and one list of variants
 * (an X-macro); the list produces the declarations below and the table that the
 * Rust side reads, so adding a variant is one line in the list.
 */
#ifndef TK_H
#define TK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of a kernel's input and output. Arithmetic is always f32. */
typedef enum tk_dtype {
    TK_DTYPE_F32 = 0,
    TK_DTYPE_F16 = 1,
    TK_DTYPE_BF16 = 2,
} tk_dtype;

/* Instruction set a variant is compiled for. */
typedef enum tk_isa {
    TK_ISA_SCALAR = 0, /* portable C, any target */
    TK_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA + F16C */
    TK_ISA_AVX512 = 2, /* x86-64 AVX-512 F, BW, DQ, VL */
    /* AVX-512 as above + AVX512_BF16: f32 -> bf16 rounding in one instruction.
     * Only bf16 variants of the memory-bound families exist at this level;
     * every other (family, dtype) runs its avx512 variant here. */
    TK_ISA_AVX512BF16 = 3,
} tk_isa;

/* ---------------------------------------------------------------- softmax */

typedef enum tk_softmax_algo {
    /* max; exp, store and sum; scale the stored values (three sweeps). */
    TK_SOFTMAX_THREEPASS = 0,
    /* Dukhan & Ablavatski: sum of exp as (mantissa, exponent) pairs, then
     * recompute exp and scale (two sweeps over the input, one write). */
    TK_SOFTMAX_TWOPASS = 1,
} tk_softmax_algo;

/* Flags of tk_softmax_params.flags. */
#define TK_SOFTMAX_LOG 1u         /* log-softmax instead of softmax */
#define TK_SOFTMAX_NONTEMPORAL 2u /* streaming stores for the final output */

/*
 * Row-wise softmax of a row-major [rows, cols] buffer:
 *   z = fl32(scale * x);  y = exp(z - max z) / sum exp(z - max z)
 * (or y = z - log sum exp z with TK_SOFTMAX_LOG). x and y hold elements of the
 * variant's dtype; rows are x_stride / y_stride elements apart. y may equal x
 * (in place) but must not overlap it otherwise. cols >= 1.
 */
typedef struct tk_softmax_params {
    const void *x;
    void *y;
    size_t rows;
    size_t cols;
    size_t x_stride;
    size_t y_stride;
    float scale;
    uint32_t flags;
} tk_softmax_params;

typedef void (*tk_softmax_fn)(const tk_softmax_params *params);

/* The variant list: X(dtype, isa, algo). One line per variant. */
#define TK_SOFTMAX_VARIANTS_PORTABLE(X)                                        \
    X(f32, scalar, threepass) X(f16, scalar, threepass) X(bf16, scalar, threepass) \
    X(f32, scalar, twopass) X(f16, scalar, twopass) X(bf16, scalar, twopass)

#define TK_SOFTMAX_VARIANTS_X86(X)                                             \
    X(f32, avx2, threepass) X(f16, avx2, threepass) X(bf16, avx2, threepass)   \
    X(f32, avx2, twopass) X(f16, avx2, twopass) X(bf16, avx2, twopass)         \
    X(f32, avx512, threepass) X(f16, avx512, threepass) X(bf16, avx512, threepass) \
    X(f32, avx512, twopass) X(f16, avx512, twopass) X(bf16, avx512, twopass)   \
    X(bf16, avx512bf16, threepass) X(bf16, avx512bf16, twopass)

#if defined(__x86_64__) || defined(_M_X64)
#define TK_SOFTMAX_VARIANTS(X) TK_SOFTMAX_VARIANTS_PORTABLE(X) TK_SOFTMAX_VARIANTS_X86(X)
#else
#define TK_SOFTMAX_VARIANTS(X) TK_SOFTMAX_VARIANTS_PORTABLE(X)
#endif

#define TK_DECLARE_SOFTMAX(dtype, isa, algo)                                   \
    void tk_softmax_##dtype##_##isa##_##algo(const tk_softmax_params *params);
TK_SOFTMAX_VARIANTS(TK_DECLARE_SOFTMAX)
#undef TK_DECLARE_SOFTMAX

/* One entry of the variant table, for dispatch, tests, benches and reports. */
typedef struct tk_softmax_variant {
    const char *name; /* the C symbol */
    tk_dtype dtype;
    tk_isa isa;
    tk_softmax_algo algo;
    tk_softmax_fn run;
} tk_softmax_variant;

/* Every softmax variant compiled into this library. */
extern const tk_softmax_variant tk_softmax_variants[];
extern const size_t tk_softmax_variant_count;

/* The extended exp the kernels use, exposed so its error can be tested on its
 * own: m[i] * 2^e[i] = exp(z[i]) for i < count. One per ISA (X86 ones only on
 * x86-64); the index is the tk_isa value. */
typedef void (*tk_expext_fn)(const float *z, float *m, float *e, size_t count);
void tk_expext_f32_scalar(const float *z, float *m, float *e, size_t count);
#if defined(__x86_64__) || defined(_M_X64)
void tk_expext_f32_avx2(const float *z, float *m, float *e, size_t count);
void tk_expext_f32_avx512(const float *z, float *m, float *e, size_t count);
/* The AVX2 three-pass kernel's exp(d) for d <= 0 (d = z - max z), exposed to
 * test it against the extended exp bit for bit: y[i] = exp(d[i]). */
void tk_exp_nonpositive_f32_avx2(const float *d, float *y, size_t count);
#endif

/* ------------------------------------------------------------------- norm */

typedef enum tk_norm_kind {
    /* (h - mean) * rstd, rstd = 1 / sqrt(var + eps) */
    TK_NORM_LAYERNORM = 0,
    /* h * rstd, rstd = 1 / sqrt(mean(h^2) + eps) */
    TK_NORM_RMSNORM = 1,
    /* no row statistics: h itself (frozen per-channel statistics, such as
     * inference-time BatchNorm or PowerNorm, folded into gamma and beta) */
    TK_NORM_CHANNEL = 2,
} tk_norm_kind;

/* Flags of tk_norm_params.flags and tk_norm_backward_params.flags. */
#define TK_NORM_CRMS 1u        /* RMSNorm on rows that store d - 1 coordinates of a zero-mean
                                * d-vector: mean(h^2) includes the implied last one, -sum(h) */
#define TK_NORM_PARAMS_F32 2u  /* gamma and beta are f32 (else the I/O dtype) */
#define TK_NORM_NONTEMPORAL 4u /* streaming stores for y and h (forward), dx (backward) */

/*
 * Row-wise normalisation of a row-major [rows, cols] buffer:
 *   h = x + residual (rounded to the dtype; h = x without a residual)
 *   y = ((h - mean) * rstd * gamma + beta) * out_scale
 * with mean = 0 for RMSNorm and mean = 0, rstd = 1 for TK_NORM_CHANNEL.
 * Outputs, each optional: h (only with a residual; may equal residual), y in
 * the dtype (may equal x), q/q_scale (int8 per row: q_scale = max|y| / 127,
 * q = round_even(y * 127 / max|y|); a row of zeros gives scale 0 and q = 0; a
 * row with NaN or inf in y gives scale NaN and q = 0), mean/rstd (f32 per
 * row). No other overlaps. cols >= 1; gamma/beta NULL mean 1/0.
 */
typedef struct tk_norm_params {
    const void *x;
    const void *residual;
    void *h;
    void *y;
    int8_t *q;
    float *q_scale;
    const void *gamma;
    const void *beta;
    float *mean;
    float *rstd;
    size_t rows;
    size_t cols;
    size_t x_stride;
    size_t residual_stride; /* of residual and h */
    size_t y_stride;
    size_t q_stride;
    float eps;
    float out_scale;
    tk_norm_kind kind;
    uint32_t flags;
} tk_norm_params;

/*
 * Gradients of tk_norm for one [rows, cols] batch, from the statistics the
 * forward saved (mean is read for LayerNorm only, rstd not for CHANNEL):
 *   xhat = (h - mean) * rstd,  g = dy * gamma * out_scale
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) + dh   (LayerNorm)
 *   dx = rstd * (g - xhat * mean(g * xhat)) + dh             (RMSNorm)
 *   dx = g + dh                                              (CHANNEL)
 *   dgamma_acc[j] += sum_rows dy * xhat * out_scale;  dbeta_acc[j] += sum_rows dy * out_scale
 * h is the normalised input (x + residual when the forward fused them); dh,
 * the gradient reaching h through the residual stream, is optional; with a
 * residual dx is also the residual's gradient. The accumulators are f64 so the
 * row order alone fixes the result bits; either may be NULL. dx may equal dy.
 * TK_NORM_CRMS is not supported here.
 */
typedef struct tk_norm_backward_params {
    const void *dy;
    const void *h;
    const void *dh;
    void *dx;
    const void *gamma;
    const float *mean;
    const float *rstd;
    double *dgamma_acc;
    double *dbeta_acc;
    size_t rows;
    size_t cols;
    size_t dy_stride;
    size_t h_stride;
    size_t dh_stride;
    size_t dx_stride;
    float out_scale;
    tk_norm_kind kind;
    uint32_t flags;
} tk_norm_backward_params;

typedef void (*tk_norm_fn)(const tk_norm_params *params);
typedef void (*tk_norm_backward_fn)(const tk_norm_backward_params *params);

/* The variant list: X(dtype, isa). Each variant is a forward and a backward kernel. */
#define TK_NORM_VARIANTS_PORTABLE(X) X(f32, scalar) X(f16, scalar) X(bf16, scalar)
#define TK_NORM_VARIANTS_X86(X)                                                \
    X(f32, avx2) X(f16, avx2) X(bf16, avx2) X(f32, avx512) X(f16, avx512) X(bf16, avx512) \
    X(bf16, avx512bf16)

#if defined(__x86_64__) || defined(_M_X64)
#define TK_NORM_VARIANTS(X) TK_NORM_VARIANTS_PORTABLE(X) TK_NORM_VARIANTS_X86(X)
#else
#define TK_NORM_VARIANTS(X) TK_NORM_VARIANTS_PORTABLE(X)
#endif

#define TK_DECLARE_NORM(dtype, isa)                                            \
    void tk_norm_forward_##dtype##_##isa(const tk_norm_params *params);        \
    void tk_norm_backward_##dtype##_##isa(const tk_norm_backward_params *params);
TK_NORM_VARIANTS(TK_DECLARE_NORM)
#undef TK_DECLARE_NORM

typedef struct tk_norm_variant {
    const char *name; /* tk_norm_<dtype>_<isa>; the symbols add _forward / _backward */
    tk_dtype dtype;
    tk_isa isa;
    tk_norm_fn forward;
    tk_norm_backward_fn backward;
} tk_norm_variant;

/* Every norm variant compiled into this library. */
extern const tk_norm_variant tk_norm_variants[];
extern const size_t tk_norm_variant_count;

/* -------------------------------------------------------------- lightning */

/* Tokens per block of the CPU kernels: the intra-block product is B x B. */
#define TK_LIGHTNING_BLOCK 64

/* Where element (sequence b, head h, token t, channel c) of a tensor lives, in
 * elements from its base: b * batch + h * head + t * token + c. With packed
 * sequences (offsets), t is the token's index in the packed buffer and batch
 * is unused. */
typedef struct tk_lightning_layout {
    ptrdiff_t batch;
    ptrdiff_t head;
    ptrdiff_t token;
} tk_lightning_layout;

/*
 * Causal linear attention with a per-head decay (Lightning Attention):
 *   S_t = decay[h] * S_{t-1} + k_t^T v_t,   o_t = q_t S_t,   S_0 = state_in or 0
 * for every (sequence, head), S a dk x dv f32 matrix, computed in blocks of
 * TK_LIGHTNING_BLOCK tokens (intra-block masked product + inter-block state).
 * q, k are dk wide (layout qk), v, o are dv wide (layout vo), elements of the
 * variant's dtype. Sequences: `batch` of n tokens each, or, with offsets,
 * sequence b holds tokens offsets[b] .. offsets[b + 1] of the packed buffers.
 * state_in / state_out: NULL or [batch, heads, dk, dv] f32 (they may be equal).
 * decay[h] in (0, 1], a normal float. workspace: tk_lightning_workspace_floats.
 */
typedef struct tk_lightning_params {
    const void *q;
    const void *k;
    const void *v;
    void *o;
    tk_lightning_layout qk;
    tk_lightning_layout vo;
    const size_t *offsets;
    size_t batch;
    size_t heads;
    size_t n;
    size_t dk;
    size_t dv;
    const float *decay;
    const float *state_in;
    float *state_out;
    float *workspace;
} tk_lightning_params;

/*
 * Gradients of tk_lightning_params' forward for dout = dL/do: dq, dk (layout
 * qk), dv (layout vo), and with dstate_in non-NULL dL/dS_0. q, k, v, decay,
 * offsets and state_in are the forward's; dstate_out is dL/dS_n (NULL: zero).
 * Computed as three passes of the forward's block scheme: dq forward in time
 * (from S^T), dk and dv backward in time (from the reverse state
 * G_t = sum_{s >= t} decay^(s-t) q_s^T dout_s + decay^(n-t) dstate_out).
 */
typedef struct tk_lightning_backward_params {
    const void *q;
    const void *k;
    const void *v;
    const void *dout;
    void *dq;
    void *dk;
    void *dv;
    tk_lightning_layout qk;
    tk_lightning_layout vo;
    const size_t *offsets;
    size_t batch;
    size_t heads;
    size_t n;
    size_t dk_dim;
    size_t dv_dim;
    const float *decay;
    const float *state_in;
    const float *dstate_out;
    float *dstate_in;
    float *workspace;
} tk_lightning_backward_params;

/*
 * One decoding step for `count` = batch * heads independent (sequence, head)
 * pairs: S <- decay[i % heads] * S + k^T v, o = q S. q, k: [count, dk];
 * v, o: [count, dv] (the dtype); state: [count, dk, dv] f32, updated in place.
 * dk, dv <= 256 (the kernels widen q, k, v into stack buffers of that size).
 */
typedef struct tk_lightning_decode_params {
    const void *q;
    const void *k;
    const void *v;
    void *o;
    float *state;
    const float *decay;
    size_t count;
    size_t heads;
    size_t dk;
    size_t dv;
} tk_lightning_decode_params;

/* Floats of workspace a forward (backward = 0) or backward (1) call needs. */
size_t tk_lightning_workspace_floats(size_t dk, size_t dv, int backward);

typedef void (*tk_lightning_fn)(const tk_lightning_params *params);
typedef void (*tk_lightning_backward_fn)(const tk_lightning_backward_params *params);
typedef void (*tk_lightning_decode_fn)(const tk_lightning_decode_params *params);

/* The variant list: X(dtype, isa), each a forward, backward and decode kernel. */
#define TK_LIGHTNING_VARIANTS_PORTABLE(X) X(f32, scalar) X(f16, scalar) X(bf16, scalar)
#define TK_LIGHTNING_VARIANTS_X86(X)                                           \
    X(f32, avx2) X(f16, avx2) X(bf16, avx2) X(f32, avx512) X(f16, avx512) X(bf16, avx512)

#if defined(__x86_64__) || defined(_M_X64)
#define TK_LIGHTNING_VARIANTS(X) TK_LIGHTNING_VARIANTS_PORTABLE(X) TK_LIGHTNING_VARIANTS_X86(X)
#else
#define TK_LIGHTNING_VARIANTS(X) TK_LIGHTNING_VARIANTS_PORTABLE(X)
#endif

#define TK_DECLARE_LIGHTNING(dtype, isa)                                                 \
    void tk_lightning_forward_##dtype##_##isa(const tk_lightning_params *params);        \
    void tk_lightning_backward_##dtype##_##isa(const tk_lightning_backward_params *params); \
    void tk_lightning_decode_##dtype##_##isa(const tk_lightning_decode_params *params);
TK_LIGHTNING_VARIANTS(TK_DECLARE_LIGHTNING)
#undef TK_DECLARE_LIGHTNING

typedef struct tk_lightning_variant {
    const char *name; /* tk_lightning_<dtype>_<isa>; symbols add _forward / _backward / _decode */
    tk_dtype dtype;
    tk_isa isa;
    tk_lightning_fn forward;
    tk_lightning_backward_fn backward;
    tk_lightning_decode_fn decode;
} tk_lightning_variant;

/* Every lightning variant compiled into this library. */
extern const tk_lightning_variant tk_lightning_variants[];
extern const size_t tk_lightning_variant_count;

/* ------------------------------------------------------------------- kron */

/*
 * A Kronecker-factored transform of each token (FlatQuant): a token x of
 * n = n1 * n2 elements, read as the n1 x n2 row-major matrix X, becomes
 *   y = out_scale * x (P1 kron P2) = out_scale * vec(P1^T X P2)
 * after x *= smooth (per channel, n floats) when smooth is non-NULL.
 * left: P1^T as n1 x n1 row-major f32 (left[k * n1 + i] = P1[i][k]), or NULL
 * for the unnormalised Walsh-Hadamard matrix of order n1 (entries +-1, n1 a
 * power of two); right: P2 as n2 x n2 row-major, or NULL for Hadamard of
 * order n2. Arithmetic in f32.
 * Outputs, any of: y (the dtype, y_stride elements per token); q and q_scale,
 * symmetric per-token quantization with q_bits 8 (int8) or 4 (two values per
 * byte, the even element in the low nibble, ceil(n / 2) bytes; a last odd
 * element leaves the high nibble 0), q_stride bytes per token:
 *   scale = clip * max|y| / qmax (qmax 127 or 7), q = rint(y * (qmax / (clip * max|y|)))
 * clamped to [-qmax, qmax], rint ties to even; a zero token: scale 0, q 0; a
 * token with NaN or inf in y: scale NaN, q 0. clip in (0, 1].
 * workspace: tk_kron_workspace_bytes(n1, n2) bytes, 64-byte aligned.
 */
typedef struct tk_kron_params {
    const void *x;
    size_t x_stride;
    size_t tokens;
    size_t n1;
    size_t n2;
    const float *smooth;
    const float *left;
    const float *right;
    float out_scale;
    void *y;
    size_t y_stride;
    void *q;
    size_t q_stride;
    float *q_scale;
    int q_bits;
    float clip;
    void *workspace;
} tk_kron_params;

/* Bytes of workspace a call with these factor orders needs. */
size_t tk_kron_workspace_bytes(size_t n1, size_t n2);

typedef void (*tk_kron_fn)(const tk_kron_params *params);

/* The variant list: X(dtype, isa). */
#define TK_KRON_VARIANTS_PORTABLE(X) X(f32, scalar) X(f16, scalar) X(bf16, scalar)
#define TK_KRON_VARIANTS_X86(X)                                                \
    X(f32, avx2) X(f16, avx2) X(bf16, avx2) X(f32, avx512) X(f16, avx512) X(bf16, avx512)

#if defined(__x86_64__) || defined(_M_X64)
#define TK_KRON_VARIANTS(X) TK_KRON_VARIANTS_PORTABLE(X) TK_KRON_VARIANTS_X86(X)
#else
#define TK_KRON_VARIANTS(X) TK_KRON_VARIANTS_PORTABLE(X)
#endif

#define TK_DECLARE_KRON(dtype, isa) void tk_kron_##dtype##_##isa(const tk_kron_params *params);
TK_KRON_VARIANTS(TK_DECLARE_KRON)
#undef TK_DECLARE_KRON

typedef struct tk_kron_variant {
    const char *name; /* tk_kron_<dtype>_<isa>, also the symbol */
    tk_dtype dtype;
    tk_isa isa;
    tk_kron_fn run;
} tk_kron_variant;

/* Every Kronecker variant compiled into this library. */
extern const tk_kron_variant tk_kron_variants[];
extern const size_t tk_kron_variant_count;

/* ------------------------------------------------------------------ qgemm */

/*
 * LLM.int8() and weight-only quantized matrix products. X is [m, k] (one
 * token per row), W is [n, k] (one output channel per row), Y = X W^T [m, n].
 *
 * Activation side (tk_qgemm_colmax_*, tk_qgemm_quantize_*): the outlier
 * columns are given as a sorted list; every other column of a row is
 * quantized with the row's scale = max|x| / 127 (over those columns),
 * q = rint(x * (127 / max|x|)) (ties to even); outlier columns are written 0
 * in q and gathered, as f32, into xo [rows, n_outliers]. A row whose
 * quantized columns hold NaN or inf gets scale NaN and q 0; an all-zero row
 * scale 0. q has q_rows x q_cols bytes (row stride q_stride): columns
 * cols..q_cols and rows rows..q_rows are written 0. q_rowsum[r] = sum of
 * q[r][*] (the integer kernels' correction term). workspace: cols floats.
 */
typedef struct tk_qgemm_quant_params {
    const void *x;
    size_t x_stride; /* elements */
    size_t rows;
    size_t cols;
    const uint32_t *outliers;
    size_t n_outliers;
    int8_t *q;
    size_t q_stride; /* bytes */
    size_t q_rows;
    size_t q_cols;
    float *q_scale;
    int32_t *q_rowsum;
    float *xo;
    float *workspace;
} tk_qgemm_quant_params;

/* colmax[c] = max(colmax[c], max over rows of |x[r][c]|), NaN when any is
 * NaN (the outlier test is !(colmax < threshold)). The caller sets colmax
 * (zeros) before the first call; later calls on more rows merge into it. */
typedef struct tk_qgemm_colmax_params {
    const void *x;
    size_t x_stride; /* elements */
    size_t rows;
    size_t cols;
    float *colmax;
} tk_qgemm_colmax_params;

/*
 * Weight-only quantized product for decoding: Y[m, n] = sum_k X[m, k] W[n, k]
 * (+ bias[n]) with W in int8 (w_bits 8) or packed int4 (w_bits 4), dequantized
 * on the fly by one f32 scale per (channel n, group of `group` consecutive k).
 * k a multiple of group, group a multiple of 32. X and Y in the dtype;
 * arithmetic in f32. workspace: tk_wgemv_workspace_floats(m, k) floats.
 * Layouts (w_stride bytes per channel: k for int8, k / 2 for int4):
 *   int8: panels of 16 channels (n padded to a multiple of 16 with zeros),
 *     panel b at b * 16 * w_stride, its 64-byte line l holding k 4l..4l+3 of
 *     its 16 channels, 4 bytes each: w[b * 16 k + 64 l + 4 (n % 16) + k % 4];
 *     w_scale[((n / 16) * (k / group) + k / group) * 16 + n % 16].
 *   int4, w_panels 1: the same panels and scales with 8 k per line, two
 *     signed values per byte, the even k in the low nibble:
 *     byte w[b * 8 k + 64 l + 4 (n % 16) + (k % 8) / 2], l = k / 8.
 *   int4, w_panels 0: rows of W, two signed values per byte, the even k in
 *     the low nibble; w_scale[n * (k / group) + k / group].
 */
typedef struct tk_wgemv_params {
    const void *x;
    size_t x_stride; /* elements */
    size_t m;
    size_t k;
    size_t n;
    const void *w;
    size_t w_stride; /* bytes per row of W */
    int w_bits;
    int w_panels; /* int4: 1 for panels, 0 for rows (int8: always panels) */
    const float *w_scale;
    size_t group;
    const float *bias;
    void *y;
    size_t y_stride; /* elements */
    float *workspace;
    /* Nonzero: the workspace already holds this kernel's conversion of this
     * x (a call of the same kernel and dtype on the same x, m, k, group, bits
     * and layout, through this workspace, did the whole product, and nothing
     * wrote the workspace since), so the call skips the conversion: a split
     * of the channels into several calls converts x once. */
    int x_ready;
} tk_wgemv_params;

size_t tk_wgemv_workspace_floats(size_t m, size_t k);

typedef void (*tk_qgemm_quantize_fn)(const tk_qgemm_quant_params *params);
typedef void (*tk_qgemm_colmax_fn)(const tk_qgemm_colmax_params *params);
typedef void (*tk_wgemv_fn)(const tk_wgemv_params *params);

/* The activation-side and weight-only variants: X(dtype, isa). */
#define TK_QGEMM_VARIANTS_PORTABLE(X) X(f32, scalar) X(f16, scalar) X(bf16, scalar)
#define TK_QGEMM_VARIANTS_X86(X)                                               \
    X(f32, avx2) X(f16, avx2) X(bf16, avx2) X(f32, avx512) X(f16, avx512) X(bf16, avx512)

#if defined(__x86_64__) || defined(_M_X64)
#define TK_QGEMM_VARIANTS(X) TK_QGEMM_VARIANTS_PORTABLE(X) TK_QGEMM_VARIANTS_X86(X)
#else
#define TK_QGEMM_VARIANTS(X) TK_QGEMM_VARIANTS_PORTABLE(X)
#endif

#define TK_DECLARE_QGEMM(dtype, isa)                                                   \
    void tk_qgemm_quantize_##dtype##_##isa(const tk_qgemm_quant_params *params);       \
    void tk_qgemm_colmax_##dtype##_##isa(const tk_qgemm_colmax_params *params);        \
    void tk_wgemv_##dtype##_##isa(const tk_wgemv_params *params);
TK_QGEMM_VARIANTS(TK_DECLARE_QGEMM)
#undef TK_DECLARE_QGEMM

typedef struct tk_qgemm_variant {
    const char *name; /* tk_qgemm_<dtype>_<isa>; symbols tk_qgemm_quantize_, tk_qgemm_colmax_, tk_wgemv_ */
    tk_dtype dtype;
    tk_isa isa;
    tk_qgemm_quantize_fn quantize;
    tk_qgemm_colmax_fn colmax;
    tk_wgemv_fn wgemv;
} tk_qgemm_variant;

extern const tk_qgemm_variant tk_qgemm_variants[];
extern const size_t tk_qgemm_variant_count;

/*
 * The int8 product with its LLM.int8() epilogue:
 *   acc[i][j] = sum_k a[i][k] * w[j][k]                       (exact int32)
 *   y[i][j]   = acc * (a_scale[i] * w_scale[j]) + sum_o xo[i][o] * wo[o][j] + bias[j]
 * in f32, stored as y_dtype (f32, f16, bf16; round to nearest even). a: the
 * quantizer's q (k a multiple of 64, padded columns 0; the AMX kernel reads
 * rows up to m rounded up to 32, which the quantizer zeroes). w: packed by
 * tk_qgemm_pack_weight. wo: n_outliers rows of wo_stride f32 (the outlier
 * columns of W, transposed). With acc non-NULL the kernel writes the exact
 * int32 products there (acc_stride elements per row) instead of y. A range
 * of channels j0 .. j0 + n (j0 a multiple of 32) is a call with w + j0 k,
 * w_scale + j0, wo + j0, bias + j0 and y + j0.
 */
typedef struct tk_qgemm_params {
    size_t m;
    size_t n;
    size_t k;
    const int8_t *a;
    size_t a_stride; /* bytes */
    const float *a_scale;
    const int32_t *a_rowsum;
    const uint8_t *w;
    const float *w_scale;
    const float *xo;
    size_t n_outliers;
    const float *wo;
    size_t wo_stride; /* floats between rows of wo (n_pad of the whole weight, so a call may take a range of channels) */
    const float *bias;
    void *y;
    size_t y_stride; /* elements */
    tk_dtype y_dtype;
    int32_t *acc;
    size_t acc_stride;
    int32_t *scratch; /* partial sums: round_up(m, 32) x 64 int32 (VNNI), tk_qgemm_amx_scratch(k) int32 (AMX) */
} tk_qgemm_params;

/* int32 of scratch the AMX product needs for its partial sums at this k (0
 * when k fits one pass); portable, so a caller can size the scratch anywhere. */
size_t tk_qgemm_amx_scratch(size_t k);
/* n rounded up to the packed panel width (32), and the packed weight's bytes. */
size_t tk_qgemm_n_pad(size_t n);
size_t tk_qgemm_packed_bytes(size_t n, size_t k);
/*
 * Packs int8 rows w[n][k] (k a multiple of 64, row stride w_stride bytes)
 * for every int8 kernel: panels of 16 output channels, then k in groups of
 * 4, then the 16 channels' 4 bytes: packed[((j / 16) * (k / 4) + kk / 4) * 64
 * + (j % 16) * 4 + kk % 4] = w[j][kk] + 128 (unsigned, so AVX-512 VNNI's
 * vpdpbusd and AMX's tdpbsud take it; the kernels subtract 128 * a_rowsum).
 * Channels n..n_pad hold 128 (a zero weight).
 */
void tk_qgemm_pack_weight(const int8_t *w, size_t w_stride, size_t n, size_t k, uint8_t *packed);

typedef void (*tk_qgemm_fn)(const tk_qgemm_params *params);
void tk_qgemm_s8_scalar(const tk_qgemm_params *params);
#if defined(__x86_64__) || defined(_M_X64)
void tk_qgemm_s8_avx2(const tk_qgemm_params *params);
void tk_qgemm_s8_avx512vnni(const tk_qgemm_params *params);
/* AVX2 + AVX-VNNI (VEX vpdpbusd on 256 bits), for CPUs without AVX-512. */
void tk_qgemm_s8_avxvnni(const tk_qgemm_params *params);
void tk_qgemm_s8_amx(const tk_qgemm_params *params);
/* 1 when this CPU has AMX-INT8 and the OS granted tile data to this process
 * (asked once, thread-safe), 0 otherwise. */
int tk_amx_ready(void);
/* 1 when this CPU has AMX-BF16 and tk_amx_ready(). */
int tk_amx_bf16_ready(void);
/* The int4 weight-only product (w_bits 4) on AMX-BF16 tiles, X in `dtype`:
 * returns 1 when done, 0 (nothing written) when the call does not fit it
 * (not int4 in rows, AMX-BF16 not ready, group not a multiple of 128, m x parts
 * above 16 with parts 3 for f32, 2 for f16, 1 for bf16, or some x NaN, inf,
 * of magnitude >= 2^100 or nonzero below 2^-60); then run the SIMD kernel.
 * Same result contract (tk_wgemv_params above); the workspace of
 * tk_wgemv_workspace_floats. */
int tk_wgemv_int4_amx(const tk_wgemv_params *params, tk_dtype dtype);
/* The int8 or int4 weight-only product (w_bits 8, or 4 in panels) for 1-16
 * rows of X on AVX-512 VNNI (the caller checks the CPU has it), X split
 * exactly into int8 digits: returns 1 when done, 0 (nothing written) when
 * the call does not fit it (int4 in rows, more than 16 rows, group above 2^15, some x NaN or inf, or some
 * x not a multiple of 2^(e - 45), e the exponent of its group's max |x|).
 * Exact integer sums per group, recombined and summed in f64, one rounding
 * to y: within the SIMD kernel's bound. Workspace as tk_wgemv_workspace_floats. */
int tk_wgemv_vnni(const tk_wgemv_params *params, tk_dtype dtype);
/* The int8 weight-only product (w_bits 8 in panels) for 1-16 rows of X on
 * AMX-INT8 tiles (the caller checks the CPU has AVX-512; the kernel asks for
 * the tiles): X split into digits as for tk_wgemv_vnni, a KiB of weights a
 * tdpbssd. The same bits as tk_wgemv_vnni where both take a call. Returns 0
 * (nothing written but the workspace) when the call does not fit it: what
 * tk_wgemv_vnni declines, and int4, group not a multiple of 64, rows x
 * digit planes above 80 (96 when a multiple of 16), or no AMX tiles. */
int tk_wgemv_int8_amx(const tk_wgemv_params *params, tk_dtype dtype);
/* The int4 weight-only product (w_bits 4 in panels) for 1 to 16 rows of X
 * on AVX2 (the caller checks the CPU has it), in integers: X split exactly
 * into int8 digits as for tk_wgemv_vnni, vpmaddubsw of the nibbles (+8) by
 * the digits. Returns 1 when done, 0 (nothing written but the workspace) when
 * the call does not fit it (int8, int4 in rows, m above 16, group above
 * 2^15, some x NaN or inf, or some x not a multiple of 2^(e - 45), e the
 * exponent of its group's max |x|). Same contract and workspace as
 * tk_wgemv_vnni. */
int tk_wgemv_int4_avx2(const tk_wgemv_params *params, tk_dtype dtype);
/* Single-core integer peak probes for the reports: independent vpdpbusd
 * (12 chains, 64 MACs each) or tdpbssd (16x16x64 MACs) for `iters` rounds; return the
 * int8 operations done (2 per MAC). */
double tk_vnni_probe(size_t iters, int32_t *sink);
double tk_amx_probe(size_t iters, int32_t *sink);
/* The AVX2 kernel's unit, vpmaddwd + vpaddd (12 chains, 16 MACs each). */
double tk_madd_probe_avx2(size_t iters, int32_t *sink);
#endif

/* ----------------------------------------------------------------- probes */

/* Single-core f32 FMA peak probes for the reports: `iters` rounds of 24
 * independent vector FMAs; returns the flops done (*sink keeps the result
 * alive). x86-64 only. */
#if defined(__x86_64__) || defined(_M_X64)
double tk_fma_probe_avx2(size_t iters, float *sink);
double tk_fma_probe_avx512(size_t iters, float *sink);
/* Read `bytes` at p as fast as one core can and return the wrapping sum of
 * their 64-bit words (the last one zero-padded): the read roof of the
 * memory-bound reports. AVX-512: one stream, software prefetch; AVX2: the
 * four quarters of the buffer in lockstep. */
uint64_t tk_read_probe_avx512(const void *p, size_t bytes);
uint64_t tk_read_probe_avx2(const void *p, size_t bytes);
#endif

#ifdef __cplusplus
}
#endif

#endif /* TK_H */
