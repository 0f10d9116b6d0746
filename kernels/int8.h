/* INT8 inference kernels (stage 3): u8 activations x s8 per-channel weights -> s32 accumulators,
 * requantized to u8 in the epilogue. A scalar reference plus AVX2, AVX-512BW, AVX-VNNI and
 * AVX512-VNNI variants, chosen at run time; every variant is bit-identical to the reference.
 *
 * Usage (a 1x1 conv / linear layer; the caller owns every buffer, CMSIS-NN style):
 *
 *   size_t sz = qat_i8_gemm_packed_size(N, K);                   // once, at model load
 *   void *buf = malloc(sz);
 *   qat_i8_gemm_weights pw;                                        // w (N, K) s8, bias (N) s32
 *   qat_status s = qat_i8_gemm_pack(&pw, buf, sz, w, bias, N, K, zx);
 *   if (s) return s;                                               // qat_last_error() says why
 *   for (int c = 0; c < N; c++) mult[c] = qat_requant_mult(sx, sw[c], sy);
 *   qat_i8_requant rq = {mult, zy, zy, 255};                       // lo = zy: fused ReLU
 *   s = qat_i8_gemm_u8(y, N, x, K, M, &pw, &rq);                   // x (M, K) u8 -> y (M, N) u8
 *
 * Dense KxK conv: the same packed weights (K = KH*KW*Cin) + qat_i8_conv with a scratch buffer of
 * qat_i8_conv_get_buffer_size(); depthwise: qat_i8_dw_pack + qat_i8_dwconv; then qat_i8_add,
 * qat_i8_global_avgpool, and qat_i8_gemm_f32 for the logits.
 *
 * The arithmetic (see kernels/qmath.h, which defines it once):
 *   acc = bias[c] + sum_k (x[k] - zx) * w[c][k]             exact int32
 *   y   = clamp(nearbyintf((float)acc * mult[c]) + zy, lo, hi) = qat_requantize(acc, mult[c], ...)
 * The SIMD variants compute acc as sum_k x*w + bias_eff[c] with bias_eff = bias - zx * colsum(w)
 * (same integer), (float)acc * mult as one float multiply (never fused with anything), round to
 * nearest even with the MXCSR mode (cvtps2dq, as nearbyintf), and clamp: bit-identical.
 *
 * Integer range: pack functions refuse weights for which |bias| + 255 * sum_k |w[c][k]| could
 * exceed INT32_MAX, so no accumulator can overflow on any input (QAT_ERR_NUMERIC otherwise).
 * That allows K up to 65536 at full-scale weights.
 *
 * Layouts: activations NHWC (N, H, W, C) u8; conv weights OHWI (Cout, KH, KW, Cin) s8;
 * depthwise weights (C, KH, KW); linear weights (out, in). All zero points (zx, zy, za, zb) are
 * in [0, 255] and clamp bounds satisfy 0 <= lo <= hi <= 255.
 *
 * Threads: kernels use OpenMP with qat_kernel_threads() threads over independent output rows:
 * qat_get_threads(), or 1 when called inside a parallel region (the runtime runs each thread's
 * share of a batch through the whole network that way, runtime/rt.c).
 * Not re-entrant only in the path selection (qat_i8_set_path is a process-wide setting).
 */
#ifndef QAT_INT8_H
#define QAT_INT8_H

#include "qat.h"
#include "qmath.h"
#include <stddef.h>
#include <stdint.h>

/* Threads a kernel's parallel region uses: qat_get_threads(), or 1 inside a parallel region
 * (kernels/cpu.c; also declared in kernels.h for the FP32 kernels). */
int qat_kernel_threads(void);

#ifdef __cplusplus
extern "C" {
#endif

/* ---- variant selection --------------------------------------------------------------------- */
typedef enum {
    QAT_I8_AUTO = 0,  /* best available: VNNI512 > AVXVNNI > AVX512 > AVX2 > REF */
    QAT_I8_REF,       /* portable scalar reference */
    QAT_I8_AVX2,      /* AVX2, widening u8/s8 -> s16 and vpmaddwd (no VNNI) */
    QAT_I8_AVX512,    /* AVX-512 F/BW, same widening scheme on zmm (no VNNI) */
    QAT_I8_AVXVNNI,   /* AVX-VNNI, vpdpbusd on ymm */
    QAT_I8_VNNI512,   /* AVX512-VNNI, vpdpbusd on zmm */
    QAT_I8_PATH_COUNT
} qat_i8_path;

/* Forces a variant (QAT_I8_AUTO restores automatic choice); returns the previous setting.
 * A forced variant the CPU cannot run (see qat_i8_path_available) is ignored: the automatic
 * choice is used instead, so a forced setting never leads to an illegal instruction. */
qat_i8_path qat_i8_set_path(qat_i8_path p);
/* 1 if this CPU (under the QAT_ISA cap of qat_cpu_isa()) can run variant p. REF and AUTO: 1. */
int qat_i8_path_available(qat_i8_path p);
/* The variant the next kernel call will run (never QAT_I8_AUTO). */
qat_i8_path qat_i8_active_path(void);
const char *qat_i8_path_name(qat_i8_path p);

/* vpdpbusd zmm multiply-accumulates per second of the calling thread over about `seconds`: the
 * machine's int8 peak (kernels/int8_peak_vnni512.c; only call on a CPU with AVX512-VNNI). */
double qat_i8_vnni512_probe(double seconds);

/* ---- common parameter structs ---------------------------------------------------------------- */
typedef struct {
    int n, h, w, c;
} qat_i8_dims;

/* Square-or-not kernel, one stride and one symmetric padding for both axes (as qat_conv2d):
 * OH = (H + 2*pad - kh) / stride + 1. Padded taps read the input zero point zx. */
typedef struct {
    int kh, kw, stride, pad;
} qat_i8_conv_params;

/* Per-output-channel requantization into u8. mult[c] = qat_requant_mult(sx, sw[c], sy).
 * ReLU: lo = zy, hi = 255. ReLU6: lo = zy, hi = min(255, zy + round(6 / sy)). */
typedef struct {
    const float *mult; /* (N) or (C) */
    int32_t zy, lo, hi;
} qat_i8_requant;

/* ---- 1. GEMM / pointwise conv / linear ----------------------------------------------------------
 * Y(M, N) = epilogue(X(M, K) u8 . W(N, K)^T s8 + bias). Weights are packed once into the VNNI
 * layout [Np/16][Kp/4][16][4] (Np = N rounded up to 16, Kp = K rounded up to 4, zero padded),
 * with bias_eff[n] = bias[n] - zx * sum_k W[n][k] folded in: the packing fixes the input zero
 * point zx. Every variant reads the same packed buffer. */
typedef struct {
    int N, K;            /* logical sizes */
    int Np, Kp;          /* padded sizes */
    int32_t zx;          /* input zero point folded into bias_eff */
    int32_t *bias_eff;   /* (Np) bias[n] - zx * colsum[n] (0 for padded n) */
    int32_t *colsum;     /* (Np) sum_k W[n][k] */
    int8_t *w;           /* [Np/16][Kp/4][16][4] */
} qat_i8_gemm_weights;

/* Bytes of the buffer qat_i8_gemm_pack needs (0 if N or K is out of range). */
size_t qat_i8_gemm_packed_size(int N, int K);
/* Packs w (N, K) s8 row-major and bias (N) s32 (NULL: zero) into buf (4-byte aligned, at least
 * qat_i8_gemm_packed_size(N, K) bytes; 64-byte aligned is best) and fills *pw, whose pointers
 * point into buf. zx is the zero point of every X this layer will see. */
qat_status qat_i8_gemm_pack(qat_i8_gemm_weights *pw, void *buf, size_t buf_size, const int8_t *w,
                            const int32_t *bias, int N, int K, int32_t zx);

/* y (M, ldy) u8: y[m][n] = qat_requantize(acc[m][n], rq->mult[n], rq->zy, rq->lo, rq->hi).
 * x (M, ldx) u8 with ldx >= K, ldy >= N. M = 0 is a no-op. */
qat_status qat_i8_gemm_u8(uint8_t *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                          const qat_i8_gemm_weights *w, const qat_i8_requant *rq);
/* y (M, ldy) s32: the raw accumulator acc[m][n] (bias included). */
qat_status qat_i8_gemm_s32(int32_t *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                           const qat_i8_gemm_weights *w);
/* y (M, ldy) float, for classifier logits (linear with M = batch):
 *   p = (float)acc[m][n] * deq_scale[n];  y[m][n] = fbias ? p + fbias[n] : p
 * with p rounded to float before the add (no FMA), deq_scale[n] = sx * sw[n] typically.
 * fbias may be NULL (then put the bias in the int32 bias at pack time instead). */
qat_status qat_i8_gemm_f32(float *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                           const qat_i8_gemm_weights *w, const float *deq_scale,
                           const float *fbias);

/* ---- 2. dense KxK conv (im2col + GEMM) -----------------------------------------------------------
 * x (in->n, in->h, in->w, in->c) u8 -> y (in->n, OH, OW, w->N) u8. Weights OHWI (Cout, KH, KW, Cin)
 * are packed with qat_i8_gemm_pack(N = Cout, K = KH*KW*Cin, zx). Each image is unfolded into
 * scratch (rows of K bytes, padding taps = zx so that the colsum correction stays exact), then
 * multiplied; a 1x1 stride-1 pad-0 conv skips the unfolding (buffer size 0).
 * Scratch: one image's unfolding (OH*OW rows of K rounded up to 4 bytes) is the minimum; each
 * further such slot lets one more image be processed in parallel (small images are run one per
 * thread). qat_i8_conv_get_buffer_size returns one slot per qat_kernel_threads() thread (at most
 * in->n); a buffer planned once at load stays valid if the thread count changes later. */
qat_status qat_i8_conv_out_dims(const qat_i8_dims *in, const qat_i8_conv_params *p, int cout,
                                qat_i8_dims *out);
size_t qat_i8_conv_get_buffer_size(const qat_i8_dims *in, const qat_i8_conv_params *p);
qat_status qat_i8_conv(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                       const qat_i8_conv_params *p, const qat_i8_gemm_weights *w,
                       const qat_i8_requant *rq, void *buf, size_t buf_size);

/* ---- 3. depthwise KxK conv ----------------------------------------------------------------------
 * x (N, H, W, C) u8 -> y (N, OH, OW, C) u8, weights (C, KH, KW) s8, bias (C) s32:
 *   acc[c] = bias[c] + sum_{taps} (x_tap[c] - zx) * w[c][tap]   (padded taps contribute 0)
 *   y[c]   = qat_requantize(acc[c], rq->mult[c], rq->zy, rq->lo, rq->hi)
 * Packed layout: taps taken in pairs (odd count: a zero-weight tap appended), the s16 weights of
 * a pair side by side, channels in blocks of 32 split into even and odd channels:
 * [npairs][Cp/32][2 (even, odd)][16][2 (tap 2p, 2p+1)], Cp = C rounded up to 32 (see
 * qat_i8_dw_pair_index), plus bias_eff[c] = bias[c] - zx*sum_t w[c][t] in channel order.
 * For vpdpbusd (the VNNI512 path, kernels/int8_dw_vnni512.c) the same weights also as s8 byte
 * quads: each kernel row's taps in groups of 4 along the row (nq = ceil(KW/4) quads, missing
 * taps 0), 16 channels per 64 bytes: wq[(((i * nq + q) * (Cp/16) + c/16) * 16 + c%16) * 4 + b]
 * = w[c][i][4q + b]. KH*KW <= 128.
 * Scratch (qat_i8_dwconv_get_buffer_size): one row of zx bytes (read by out-of-image taps), then
 * on a CPU with AVX512-VNNI one slot per thread of input rows rearranged into quads (see
 * int8_dw_vnni512.c); with a buffer of only the zx row the VNNI512 path uses the AVX-512 kernel. */
typedef struct {
    int C, Cp, kh, kw, npairs, nq;
    int32_t zx;
    int32_t *bias_eff; /* (Cp) */
    int16_t *w;        /* [npairs][Cp/32][2][16][2] */
    int8_t *wq;        /* [kh][nq][Cp/16][16][4] */
} qat_i8_dw_weights;

/* Offset in qat_i8_dw_weights.w of the weight pair (tap 2p, tap 2p+1) of channel c. The
 * even/odd split lets the SIMD kernels form (tap 2p, tap 2p+1) activation pairs with a shift and
 * a blend per vector instead of byte shuffles (see int8_avx512.c). */
static inline size_t qat_i8_dw_pair_index(int Cp, int p, int c) {
    return (((size_t)p * (Cp / 32) + c / 32) * 2 + (c & 1)) * 32 + (size_t)((c % 32) / 2) * 2;
}

size_t qat_i8_dw_packed_size(int C, int kh, int kw);
qat_status qat_i8_dw_pack(qat_i8_dw_weights *pw, void *buf, size_t buf_size, const int8_t *w,
                          const int32_t *bias, int C, int kh, int kw, int32_t zx);
size_t qat_i8_dwconv_get_buffer_size(const qat_i8_dims *in, const qat_i8_conv_params *p);
qat_status qat_i8_dwconv(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                         const qat_i8_conv_params *p, const qat_i8_dw_weights *w,
                         const qat_i8_requant *rq, void *buf, size_t buf_size);

/* ---- 4. element-wise add of two u8 tensors ------------------------------------------------------
 * Defined as dequantize, float add, quantize — exactly what the fake-quant graph of stage 2
 * computes for a quantized add (two fake-quantized inputs, a float add, an output fake-quant),
 * so the simulation matches without a special case:
 *   fa = (float)(a - za) * sa;  fb = (float)(b - zb) * sb;   (each rounded to float)
 *   s  = fa + fb;                                            (rounded to float, no FMA)
 *   y  = clamp(nearbyintf(s * inv_sy) + zy, lo, hi)
 *      = qat_quantize(qat_dequantize(a, sa, za) + qat_dequantize(b, sb, zb), inv_sy, zy, lo, hi)
 * inv_sy = 1.0f / sy (computed once in float, as qat_quantize expects). Fused ReLU: lo = zy. */
typedef struct {
    float sa, sb, inv_sy;
    int32_t za, zb, zy, lo, hi;
} qat_i8_add_params;

/* One element of qat_i8_add: the definition every variant reproduces. The asm statements keep
 * each product a separately rounded float even where the compiler may form FMAs. */
static inline uint8_t qat_i8_add_one(uint8_t a, uint8_t b, const qat_i8_add_params *p) {
    float fa = (float)((int32_t)a - p->za) * p->sa;
    float fb = (float)((int32_t)b - p->zb) * p->sb;
    __asm__("" : "+x"(fa));
    __asm__("" : "+x"(fb));
    return (uint8_t)qat_quantize(fa + fb, p->inv_sy, p->zy, p->lo, p->hi);
}

/* y, a, b: n elements (any shape, same layout). y may alias a or b. */
qat_status qat_i8_add(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t n,
                      const qat_i8_add_params *p);

/* ---- 5. global average pool ---------------------------------------------------------------------
 * x (N, H, W, C) u8 -> y (N, C) u8 with HW = H*W:
 *   sum = sum_{h,w} x[n][h][w][c]                     (int32)
 *   y   = qat_requantize(sum - HW*zx, mult, zy, lo, hi)
 *       = clamp(nearbyintf((float)(sum - HW*zx) * mult) + zy, lo, hi)
 * with mult = qat_i8_avgpool_mult(sx, sy, HW) = sx / ((float)HW * sy), all in float.
 * H*W <= 2^23 (sum and HW*zx stay exact). */
typedef struct {
    float mult;
    int32_t zx, zy, lo, hi;
} qat_i8_pool_params;

static inline float qat_i8_avgpool_mult(float sx, float sy, int hw) {
    return sx / ((float)hw * sy);
}

qat_status qat_i8_global_avgpool(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                                 const qat_i8_pool_params *p);

/* ---- 7. lookup table and channel-wise multiply (MobileNetV3: hardswish, squeeze-and-excite) -----
 * qat_i8_lut: y[i] = table[x[i]] for n bytes (any layout): an activation whose 256 output codes
 * convert computed once (kernels/qmath.h's qat_hardswish_f / qat_hardsigmoid_f, quantized). One
 * load per byte in the scalar loop (qat_i8_lut_ref); on the AVX-512 paths of a CPU with
 * AVX512-VBMI (Zen 4, Ice Lake and later) qat_i8_lut_vbmi does 64 bytes per vpermi2b pair
 * (kernels/int8_vbmi.c), the other paths run the scalar loop. Both give the same bytes.
 *
 * qat_i8_channel_mul: x (N, H, W, C) u8 times a per-image gate g (N, C) u8:
 *   acc = (x[n][h][w][c] - zx) * (g[n][c] - zg)          exact int32 (|acc| <= 255^2)
 *   y   = qat_requantize(acc, mult[c], zy, lo, hi)       mult[c] = qat_requant_mult(sx, sg, sy)
 * A scalar _ref plus AVX2 and AVX-512 variants (the VNNI paths use their width's), bit-identical. */
typedef struct {
    const float *mult; /* (C) */
    int32_t zx, zg, zy, lo, hi;
} qat_i8_mul_params;

qat_status qat_i8_lut(uint8_t *y, const uint8_t *x, int64_t n, const uint8_t *table);
/* y may alias x. */
qat_status qat_i8_channel_mul(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                              const qat_i8_mul_params *p);

/* ---- 9. windowed pools (kernels/int8_pool.c) -------------------------------------------------------
 * x (N, H, W, C) u8 -> y (N, OH, OW, C) u8 over kh x kw windows (OH = (H + 2 pad - kh) / stride + 1),
 * 2 pad <= kh, kw (every window holds a real pixel). qat_i8_maxpool: the largest code of the window,
 * padded taps skipped (-inf), clamped to [lo, hi] (the output has the input's qparams).
 * qat_i8_avgpool: y = qat_requantize(sum over the window of (x - zx), p->mult, zy, lo, hi), padded
 * taps adding 0 (they count in the divisor: mult = qat_i8_avgpool_mult(sx, sy, kh * kw)). One scalar
 * path; the _ref functions do image n. */
qat_status qat_i8_maxpool(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                          int32_t lo, int32_t hi);
qat_status qat_i8_avgpool(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                          const qat_i8_pool_params *p);
void qat_i8_maxpool_ref(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                        int32_t lo, int32_t hi, int n);
void qat_i8_avgpool_ref(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                        const qat_i8_pool_params *p, int n);

/* ---- 8. float layers inside an INT8 model (kernels/int8_float.c) --------------------------------
 * A per-layer qconfig can leave a layer in float: the runtime dequantizes into it, runs it in
 * f32 and quantizes out of it, and the integer-exact simulation calls these same functions, so
 * the two agree bit for bit. One path (no SIMD variant: correctness first; the weights are
 * packed output-channel-innermost so the compiler vectorises across output channels without
 * reordering any sum). Each output element is computed by one thread in one fixed order
 * (bias, then the taps in (kh, kw, ci) order), so the result does not depend on the thread count.
 *   dequant: y = qat_dequantize(x, sx, zx)        quant: y = qat_quantize(x, inv_sy, zy, lo, hi)
 *   conv:    y = act(bias[c] + sum x * w)          dense or depthwise, NHWC, zero padding
 *   linear:  y[n][o] = bias[o] + sum_k x[n][k] * w[o][k]   (no activation: the logits) */
typedef enum {
    QAT_F32_ACT_NONE = 0,
    QAT_F32_ACT_RELU,
    QAT_F32_ACT_RELU6,
    QAT_F32_ACT_HARDSWISH,
    QAT_F32_ACT_HARDSIGMOID,
} qat_f32_act;

void qat_f32_dequant(float *y, const uint8_t *x, int64_t n, float sx, int32_t zx);
void qat_f32_quant(uint8_t *y, const float *x, int64_t n, float inv_sy, int32_t zy, int32_t lo,
                   int32_t hi);
/* Packed weights: dense conv (k, k, in_c, out_c) from OHWI, depthwise (k, k, C) from (C, k, k),
 * linear (in, out) from (out, in). Same number of floats as w. */
size_t qat_f32_conv_packed_floats(int out_c, int k, int in_c, int groups);
void qat_f32_conv_pack(float *packed, const float *w, int out_c, int k, int in_c, int groups);
/* x (N, H, W, in_c) -> y (N, OH, OW, out_c); groups 1 or in_c == out_c. */
qat_status qat_f32_conv(float *y, const float *x, const qat_i8_dims *in,
                        const qat_i8_conv_params *p, int out_c, int groups, const float *packed,
                        const float *bias, qat_f32_act act);
/* x (N, in) -> y (N, out); bias may be NULL. */
qat_status qat_f32_linear(float *y, const float *x, int n, int in, int out, const float *packed,
                          const float *bias);

/* ---- 6. linear ----------------------------------------------------------------------------------
 * A linear layer is the GEMM with M = batch, x (batch, in), w (out, in): qat_i8_gemm_u8 between
 * hidden layers, qat_i8_gemm_f32 for the logits. */

/* ================================================================================================
 * Internal: shared by kernels/int8_*.c only (each SIMD file implements the row-range workers of
 * its ISA; int8_ref.c validates arguments, splits work over threads and dispatches).
 * ================================================================================================ */
typedef enum { QAT_I8_OUT_U8, QAT_I8_OUT_S32, QAT_I8_OUT_F32 } qat_i8_out_kind;

typedef struct {
    const uint8_t *x;
    int64_t ldx;
    const qat_i8_gemm_weights *w;
    qat_i8_out_kind kind;
    void *y;
    int64_t ldy;
    const float *mult;  /* U8: requant multiplier; F32: deq_scale */
    const float *fbias; /* F32 only, may be NULL */
    int32_t zy, lo, hi; /* U8 only */
} qat_i8_gemm_job;

typedef struct {
    const uint8_t *x;
    uint8_t *y;
    qat_i8_dims in;
    int oh, ow;
    qat_i8_conv_params p;
    const qat_i8_dw_weights *w;
    const float *mult;
    int32_t zy, lo, hi;
    const uint8_t *zx_row; /* Cp bytes of zx (read by taps outside the image) */
    uint8_t *slot;         /* this thread's quad rows (VNNI512 kernel only), 64-byte aligned */
} qat_i8_dw_job;

/* Rows [m0, m1) of the GEMM. */
typedef void (*qat_i8_gemm_fn)(const qat_i8_gemm_job *j, int m0, int m1);
/* Output rows [r0, r1) of the depthwise conv, row r = n * OH + oh. */
typedef void (*qat_i8_dw_fn)(const qat_i8_dw_job *j, int r0, int r1);
/* Elements [i0, i1). */
typedef void (*qat_i8_add_fn)(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0,
                              int64_t i1, const qat_i8_add_params *p);
/* Pixels [p0, p1) of the N*H*W pixels (each in->c channels); the gate row of pixel p is
 * g + (p / (H*W)) * C. */
typedef void (*qat_i8_mul_fn)(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                              const qat_i8_mul_params *p, int64_t p0, int64_t p1);
void qat_i8_mul_pixels_ref(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                           const qat_i8_mul_params *p, int64_t p0, int64_t p1);
void qat_i8_mul_pixels_avx2(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                            const qat_i8_mul_params *p, int64_t p0, int64_t p1);
void qat_i8_mul_pixels_avx512(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                              const qat_i8_mul_params *p, int64_t p0, int64_t p1);
/* The lookup table's variants (section 7); _vbmi only where qat_cpu_has_avx512_vbmi(). */
void qat_i8_lut_ref(uint8_t *y, const uint8_t *x, int64_t n, const uint8_t *table);
void qat_i8_lut_vbmi(uint8_t *y, const uint8_t *x, int64_t n, const uint8_t *table);
int qat_cpu_has_avx512_vbmi(void);
/* Images [n0, n1). */
typedef void (*qat_i8_pool_fn)(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                               const qat_i8_pool_params *p, int n0, int n1);

void qat_i8_gemm_rows_ref(const qat_i8_gemm_job *j, int m0, int m1);
void qat_i8_gemm_rows_avx2(const qat_i8_gemm_job *j, int m0, int m1);
void qat_i8_gemm_rows_avx512(const qat_i8_gemm_job *j, int m0, int m1);
void qat_i8_gemm_rows_avxvnni(const qat_i8_gemm_job *j, int m0, int m1);
void qat_i8_gemm_rows_vnni512(const qat_i8_gemm_job *j, int m0, int m1);

void qat_i8_dw_rows_ref(const qat_i8_dw_job *j, int r0, int r1);
void qat_i8_dw_rows_avx2(const qat_i8_dw_job *j, int r0, int r1);
void qat_i8_dw_rows_avx512(const qat_i8_dw_job *j, int r0, int r1);
void qat_i8_dw_rows_vnni512(const qat_i8_dw_job *j, int r0, int r1);
/* The VNNI512 path's kernel for 3x3 and 5x5 at strides 1 and 2 on CPUs with AVX512-VBMI too
 * (qat_i8_dw_rows_vnni512 hands those shapes to it; kernels/int8_dw_vnnivbmi.c), and the quad-row
 * kernel that runs everything else there (also callable directly, for tests). */
int qat_i8_dw_vbmi_fits(const qat_i8_conv_params *p);
void qat_i8_dw_rows_vnnivbmi(const qat_i8_dw_job *j, int r0, int r1);
void qat_i8_dw_rows_vnni512_quads(const qat_i8_dw_job *j, int r0, int r1);

/* Geometry of the VNNI512 depthwise kernel (strides 1 and 2; other strides run the AVX-512
 * kernel): an input row as "quad row" positions, position i holding for every channel the bytes
 * of padded columns s*i .. s*i+3, as many positions as the taps read (OW + (nq-1)*4/s); C16 =
 * C rounded up to 16; a thread's slot holds KH quad rows plus one row of zx. */
static inline int qat_i8_dw_vnni_stride(int stride) { return stride == 1 || stride == 2; }
static inline int qat_i8_dw_quad_cols(int ow, int stride, int nq) { return ow + (nq - 1) * 4 / stride; }
static inline size_t qat_i8_dw_quad_row_bytes(int ow, int stride, int nq, int C) {
    return (size_t)qat_i8_dw_quad_cols(ow, stride, nq) * (size_t)((C + 15) / 16 * 16) * 4;
}
static inline size_t qat_i8_dw_slot_bytes(int ow, int stride, int kh, int kw, int C) {
    return (size_t)(kh + 1) * qat_i8_dw_quad_row_bytes(ow, stride, (kw + 3) / 4, C);
}

void qat_i8_add_range_ref(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0, int64_t i1,
                          const qat_i8_add_params *p);
void qat_i8_add_range_avx2(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0, int64_t i1,
                           const qat_i8_add_params *p);
void qat_i8_add_range_avx512(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0,
                             int64_t i1, const qat_i8_add_params *p);

void qat_i8_pool_images_ref(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                            const qat_i8_pool_params *p, int n0, int n1);
void qat_i8_pool_images_avx2(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                             const qat_i8_pool_params *p, int n0, int n1);
void qat_i8_pool_images_avx512(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                               const qat_i8_pool_params *p, int n0, int n1);

#define QAT_I8_DW_MAX_TAPS 128

/* Below this much work (multiply-adds, or element operations weighed as such) a kernel runs on
 * the calling thread. A fork/join gains a few microseconds on idle cores, but beside busy
 * processes each join can wait a scheduler time slice for a descheduled team member (issue 19:
 * the FP32 path fell 40x at batch 1). 2^20 (about 10-30 us on one core) keeps every layer of a
 * batch-1 mbv2-tiny / mbv3-tiny forward on one thread, as kernels/gemm.c and dwconv_simd.h do
 * for FP32. Used by kernels/int8_ref.c, int8_se.c, int8_float.c and int8_onednn.c. */
#define QAT_I8_PAR_MIN_WORK (1 << 20)

/* Input pointers of the KH*KW taps of output pixel (n, oh, ow), in (kh, kw) order, plus one more
 * when the count is odd (it pairs with a zero weight). Taps outside the image point at zx_row,
 * so every variant runs the same branch-free sum and padding contributes (zx - zx) * w = 0. */
static inline void qat_i8_dw_taps(const qat_i8_dw_job *j, int n, int oh, int ow,
                                  const uint8_t **tp) {
    const qat_i8_dims *in = &j->in;
    const int kh = j->p.kh, kw = j->p.kw, C = in->c;
    const int ih0 = oh * j->p.stride - j->p.pad, iw0 = ow * j->p.stride - j->p.pad;
    const uint8_t *img = j->x + (size_t)n * in->h * in->w * C;
    if (ih0 >= 0 && iw0 >= 0 && ih0 + kh <= in->h && iw0 + kw <= in->w) {
        /* interior pixel (most of them): no per-tap bounds checks */
        const uint8_t *p0 = img + ((size_t)ih0 * in->w + iw0) * C;
        for (int i = 0; i < kh; i++, p0 += (size_t)in->w * C)
            for (int jj = 0; jj < kw; jj++) tp[i * kw + jj] = p0 + (size_t)jj * C;
        if ((kh * kw) & 1) tp[kh * kw] = j->zx_row;
        return;
    }
    for (int i = 0; i < kh; i++) {
        int ih = ih0 + i;
        for (int jj = 0; jj < kw; jj++) {
            int iw = iw0 + jj;
            tp[i * kw + jj] = (ih < 0 || ih >= in->h || iw < 0 || iw >= in->w)
                                  ? j->zx_row
                                  : img + ((size_t)ih * in->w + iw) * C;
        }
    }
    if ((kh * kw) & 1) tp[kh * kw] = j->zx_row;
}

/* Scalar depthwise for channels [c0, c1) of one pixel given its taps (SIMD channel tails). */
static inline void qat_i8_dw_pixel_scalar(const qat_i8_dw_job *j, const uint8_t *const *tp,
                                          uint8_t *yp, int c0, int c1) {
    const qat_i8_dw_weights *w = j->w;
    for (int c = c0; c < c1; c++) {
        int32_t acc = w->bias_eff[c];
        for (int p = 0; p < w->npairs; p++) {
            const int16_t *wc = w->w + qat_i8_dw_pair_index(w->Cp, p, c);
            acc += (int32_t)tp[2 * p][c] * wc[0] + (int32_t)tp[2 * p + 1][c] * wc[1];
        }
        yp[c] = (uint8_t)qat_requantize(acc, j->mult[c], j->zy, j->lo, j->hi);
    }
}

/* Scalar helpers the SIMD files use for their tails (same arithmetic as the reference). */
static inline uint8_t qat_i8_requant_u8(int32_t acc, float mult, int32_t zy, int32_t lo,
                                        int32_t hi) {
    return (uint8_t)qat_requantize(acc, mult, zy, lo, hi);
}
static inline float qat_i8_dequant_f32(int32_t acc, float scale, const float *fbias, int n) {
    float p = (float)acc * scale;
    __asm__("" : "+x"(p)); /* keep the product rounded: no FMA with the bias add */
    return fbias ? p + fbias[n] : p;
}

#ifdef __cplusplus
}
#endif
#endif
