/* fakequant: y = qat_fake_quantize(x) with observer-driven qparams, straight-through backward.
 * Also the fake-quant kernel the LSQ op shares, and the backward dispatch of every
 * QAT_OP_FAKEQUANT node (iparam[0] says which quantizer made it).
 *
 * Cost: an observing forward is two passes over x (min/max, then quantize + clipping codes),
 * no allocation beyond the output and one byte per element of codes (only when the output
 * needs a gradient). The backward is one pass.
 *
 * The SIMD variants do not call qat_fake_quantize per element; they compute the same numbers
 * in float: for r = nearbyint(x * inv) (integer-valued), qmath's
 *   (float)(clamp(r + zp, qmin, qmax) - zp) * scale  ==  clamp(r, qmin - zp, qmax - zp) * scale
 * exactly, because qmin - zp and qmax - zp are small integers, float compares of integers are
 * exact, and both sides end in the same single multiply. NaN goes to qmin in qmath; here
 * max(r, lo) with r NaN returns lo (maxps returns its second operand on NaN). -0.0 from the
 * rounding becomes +0.0 (qmath converts through an integer) by adding +0.0f. The tests check
 * every variant bit for bit against the _ref on halves, NaN, infinities and huge values.
 * They live here (target attributes) rather than in *_avx512.c files: this file owns the op. */
#include "kernels.h"
#include "quant.h"
#include <immintrin.h>
#include <string.h>

#define FQ_TASK ((int64_t)1 << 15) /* elements per task of the per-tensor pass; multiple of 64 */
#define FQ_PAR_ELEMS ((int64_t)1 << 16)

void qat_fq_consts_fill(qat_fq_consts *k, const qat_qscheme *s, int C, const float *scale,
                        const int32_t *zero_point, float *work) {
    float *inv = work, *lo = work + C, *hi = work + 2 * C;
    qat_qscheme_range(s, &k->qmin, &k->qmax);
    for (int c = 0; c < C; c++) {
        inv[c] = 1.0f / scale[c];
        lo[c] = (float)(k->qmin - zero_point[c]);
        hi[c] = (float)(k->qmax - zero_point[c]);
    }
    k->scale = scale, k->inv = inv, k->zero_point = zero_point, k->lo = lo, k->hi = hi;
}

/* ---- scalar ---------------------------------------------------------------------------------- */

static inline uint8_t fq_code(float x, float inv, int32_t zp, int32_t qmin, int32_t qmax) {
    float r = qat_round(x * inv);
    if (r != r) return QAT_FQ_BELOW;
    double q = (double)r + zp; /* exact: r is an integer-valued float */
    return q < qmin ? QAT_FQ_BELOW : (q > qmax ? QAT_FQ_ABOVE : QAT_FQ_INSIDE);
}

void qat_fq_kernel_ref(float *y, uint8_t *code, const float *x, const qat_qlayout *l,
                       const qat_fq_consts *k) {
    const int C = l->channels;
    for (int64_t o = 0; o < l->outer; o++)
        for (int c = 0; c < C; c++)
            for (int64_t i = 0; i < l->inner; i++) {
                int64_t e = (o * C + c) * l->inner + i;
                y[e] = qat_fake_quantize(x[e], k->scale[c], k->inv[c], k->zero_point[c], k->qmin,
                                         k->qmax);
                if (code) code[e] = fq_code(x[e], k->inv[c], k->zero_point[c], k->qmin, k->qmax);
            }
}

/* A run of n elements; channel c for all of them, or (per_elem) channel c + i for element i. */
typedef void (*fq_run_fn)(float *y, uint8_t *code, const float *x, int64_t n,
                          const qat_fq_consts *k, int c, int per_elem);

static void fq_run_scalar(float *restrict y, uint8_t *restrict code, const float *restrict x,
                          int64_t n, const qat_fq_consts *k, int c, int per_elem) {
    for (int64_t i = 0; i < n; i++) {
        int ch = per_elem ? c + (int)i : c;
        y[i] = qat_fake_quantize(x[i], k->scale[ch], k->inv[ch], k->zero_point[ch], k->qmin,
                                 k->qmax);
        if (code) code[i] = fq_code(x[i], k->inv[ch], k->zero_point[ch], k->qmin, k->qmax);
    }
}

/* ---- AVX2 ------------------------------------------------------------------------------------ */

#define AVX2_ATTR __attribute__((target("avx2,fma")))

AVX2_ATTR static inline __m256 fq8(__m256 v, __m256 sc, __m256 inv, __m256 lo, __m256 hi,
                                   __m256 *r_out) {
    __m256 r = _mm256_round_ps(_mm256_mul_ps(v, inv), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
    __m256 t = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
    *r_out = r;
    return _mm256_mul_ps(_mm256_add_ps(t, _mm256_setzero_ps()), sc);
}

AVX2_ATTR static inline void code8(uint8_t *dst, __m256 r, __m256 lo, __m256 hi) {
    __m256 in = _mm256_and_ps(_mm256_cmp_ps(r, lo, _CMP_GE_OQ), _mm256_cmp_ps(r, hi, _CMP_LE_OQ));
    __m256 ab = _mm256_cmp_ps(r, hi, _CMP_GT_OQ);
    __m256i ci = _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(in), _mm256_set1_epi32(1)),
                                 _mm256_and_si256(_mm256_castps_si256(ab), _mm256_set1_epi32(2)));
    __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(ci), _mm256_extracti128_si256(ci, 1));
    _mm_storel_epi64((__m128i *)dst, _mm_packus_epi16(p16, p16));
}

AVX2_ATTR static void fq_run_avx2(float *restrict y, uint8_t *restrict code,
                                  const float *restrict x, int64_t n, const qat_fq_consts *k,
                                  int c, int per_elem) {
    int64_t i = 0;
    if (per_elem) {
        for (; i + 8 <= n; i += 8) {
            __m256 sc = _mm256_loadu_ps(k->scale + c + i), inv = _mm256_loadu_ps(k->inv + c + i);
            __m256 lo = _mm256_loadu_ps(k->lo + c + i), hi = _mm256_loadu_ps(k->hi + c + i), r;
            _mm256_storeu_ps(y + i, fq8(_mm256_loadu_ps(x + i), sc, inv, lo, hi, &r));
            if (code) code8(code + i, r, lo, hi);
        }
    } else {
        __m256 sc = _mm256_set1_ps(k->scale[c]), inv = _mm256_set1_ps(k->inv[c]);
        __m256 lo = _mm256_set1_ps(k->lo[c]), hi = _mm256_set1_ps(k->hi[c]), r;
        if (code) {
            for (; i + 8 <= n; i += 8) {
                _mm256_storeu_ps(y + i, fq8(_mm256_loadu_ps(x + i), sc, inv, lo, hi, &r));
                code8(code + i, r, lo, hi);
            }
        } else {
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, fq8(_mm256_loadu_ps(x + i), sc, inv, lo, hi, &r));
        }
    }
    if (i < n)
        fq_run_scalar(y + i, code ? code + i : NULL, x + i, n - i, k, per_elem ? c + (int)i : c,
                      per_elem);
}

/* ---- AVX-512 --------------------------------------------------------------------------------- */

#define AVX512_ATTR __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

AVX512_ATTR static inline __m512 fq16(__m512 v, __m512 sc, __m512 inv, __m512 lo, __m512 hi,
                                      __m512 *r_out) {
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(v, inv), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
    __m512 t = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
    *r_out = r;
    return _mm512_mul_ps(_mm512_add_ps(t, _mm512_setzero_ps()), sc);
}

AVX512_ATTR static inline __m128i code16(__m512 r, __m512 lo, __m512 hi) {
    __mmask16 in = _mm512_cmp_ps_mask(r, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(r, hi, _CMP_LE_OQ);
    __mmask16 ab = _mm512_cmp_ps_mask(r, hi, _CMP_GT_OQ);
    return _mm_or_si128(_mm_maskz_mov_epi8(in, _mm_set1_epi8(QAT_FQ_INSIDE)),
                        _mm_maskz_mov_epi8(ab, _mm_set1_epi8(QAT_FQ_ABOVE)));
}

AVX512_ATTR static void fq_run_avx512(float *restrict y, uint8_t *restrict code,
                                      const float *restrict x, int64_t n, const qat_fq_consts *k,
                                      int c, int per_elem) {
    int64_t i = 0;
    __m512 r;
    if (per_elem) {
        /* full vectors with plain stores (masked stores are slow on AMD Zen 4/5), then one
         * masked tail whose off lanes get scale, bounds and x of 0 and are not stored */
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
            __m512 sc = _mm512_maskz_loadu_ps(m, k->scale + c + i);
            __m512 inv = _mm512_maskz_loadu_ps(m, k->inv + c + i);
            __m512 lo = _mm512_maskz_loadu_ps(m, k->lo + c + i);
            __m512 hi = _mm512_maskz_loadu_ps(m, k->hi + c + i);
            __m512 v = fq16(_mm512_maskz_loadu_ps(m, x + i), sc, inv, lo, hi, &r);
            if (m == 0xffff) {
                _mm512_storeu_ps(y + i, v);
                if (code) _mm_storeu_si128((__m128i *)(code + i), code16(r, lo, hi));
            } else {
                _mm512_mask_storeu_ps(y + i, m, v);
                if (code) _mm_mask_storeu_epi8(code + i, m, code16(r, lo, hi));
            }
        }
        return;
    }
    __m512 sc = _mm512_set1_ps(k->scale[c]), inv = _mm512_set1_ps(k->inv[c]);
    __m512 lo = _mm512_set1_ps(k->lo[c]), hi = _mm512_set1_ps(k->hi[c]);
    if (code) {
        for (; i + 16 <= n; i += 16) {
            _mm512_storeu_ps(y + i, fq16(_mm512_loadu_ps(x + i), sc, inv, lo, hi, &r));
            _mm_storeu_si128((__m128i *)(code + i), code16(r, lo, hi));
        }
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(y + i, fq16(_mm512_loadu_ps(x + i), sc, inv, lo, hi, &r));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = fq16(_mm512_maskz_loadu_ps(m, x + i), sc, inv, lo, hi, &r);
        _mm512_mask_storeu_ps(y + i, m, v);
        if (code) _mm_mask_storeu_epi8(code + i, m, code16(r, lo, hi));
    }
}

/* ---- driver ---------------------------------------------------------------------------------- */

static void fq_impl(float *y, uint8_t *code, const float *x, const qat_qlayout *l,
                    const qat_fq_consts *k, fq_run_fn run) {
    const int C = l->channels;
    const int64_t numel = l->outer * C * l->inner;
    const int nt = numel >= FQ_PAR_ELEMS ? qat_kernel_threads() : 1;
    if (C == 1) {
        /* per tensor: the flat array in fixed tasks */
        const int64_t ntask = (numel + FQ_TASK - 1) / FQ_TASK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t t = 0; t < ntask; t++) {
            int64_t b = t * FQ_TASK, n = numel - b < FQ_TASK ? numel - b : FQ_TASK;
            run(y + b, code ? code + b : NULL, x + b, n, k, 0, 0);
        }
    } else if (l->inner == 1) {
        /* channels innermost (NHWC activations): each row is one vector of channel params */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t o = 0; o < l->outer; o++)
            run(y + o * C, code ? code + o * C : NULL, x + o * C, C, k, 0, 1);
    } else {
        /* channels outer (OHWI weights): each (o, c) is a contiguous run with one scale */
        const int64_t nrun = l->outer * C;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < nrun; r++) {
            int64_t b = r * l->inner;
            run(y + b, code ? code + b : NULL, x + b, l->inner, k, (int)(r % C), 0);
        }
    }
}

void qat_fq_kernel(float *y, uint8_t *code, const float *x, const qat_qlayout *l,
                   const qat_fq_consts *k) {
    fq_run_fn run = fq_run_scalar;
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: run = fq_run_avx512; break;
    case QAT_ISA_AVX2: run = fq_run_avx2; break;
    default: break;
    }
    fq_impl(y, code, x, l, k, run);
}

/* ---- straight-through gradient ------------------------------------------------------------- */

void qat_fq_ste_grad_ref(float *dx, const float *dy, const uint8_t *code, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (code[i] == QAT_FQ_INSIDE) dx[i] += dy[i];
}

/* Clipped elements are left alone rather than given += 0.0f, so every variant (and the _ref)
 * leaves a -0.0 gradient as it was. */
AVX2_ATTR static void ste_run_avx2(float *restrict dx, const float *restrict dy,
                                   const uint8_t *restrict code, int64_t n) {
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(QAT_FQ_INSIDE);
    for (; i + 8 <= n; i += 8) {
        __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + i)));
        __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, one));
        __m256 d = _mm256_loadu_ps(dx + i);
        _mm256_storeu_ps(dx + i, _mm256_blendv_ps(d, _mm256_add_ps(d, _mm256_loadu_ps(dy + i)), m));
    }
    qat_fq_ste_grad_ref(dx + i, dy + i, code + i, n - i);
}

/* Full-width loads and stores with a blend: AVX-512 masked stores are slow on AMD Zen 4/5. */
AVX512_ATTR static void ste_run_avx512(float *restrict dx, const float *restrict dy,
                                       const uint8_t *restrict code, int64_t n) {
    const __m128i one = _mm_set1_epi8(QAT_FQ_INSIDE);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 m = _mm_cmpeq_epi8_mask(_mm_loadu_si128((const __m128i *)(code + i)), one);
        __m512 d = _mm512_loadu_ps(dx + i);
        _mm512_storeu_ps(dx + i, _mm512_mask_add_ps(d, m, d, _mm512_loadu_ps(dy + i)));
    }
    qat_fq_ste_grad_ref(dx + i, dy + i, code + i, n - i);
}

typedef void (*ste_fn)(float *, const float *, const uint8_t *, int64_t);

/* Runs an STE kernel (chosen by ISA) over fixed-size tasks, in parallel for large tensors. */
static void ste_parallel(ste_fn ref, ste_fn avx2, ste_fn avx512, float *dx, const float *dy,
                         const uint8_t *code, int64_t n) {
    ste_fn run = ref;
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: run = avx512; break;
    case QAT_ISA_AVX2: run = avx2; break;
    default: break;
    }
    const int nt = n >= FQ_PAR_ELEMS ? qat_kernel_threads() : 1;
    const int64_t ntask = (n + FQ_TASK - 1) / FQ_TASK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < ntask; t++) {
        int64_t b = t * FQ_TASK;
        run(dx + b, dy + b, code + b, n - b < FQ_TASK ? n - b : FQ_TASK);
    }
}

void qat_fq_ste_grad(float *dx, const float *dy, const uint8_t *code, int64_t n) {
    ste_parallel(qat_fq_ste_grad_ref, ste_run_avx2, ste_run_avx512, dx, dy, code, n);
}

/* dx = (the zeroed grad qat_grad would give) + masked dy, stored without the zeroing pass and
 * the read: 0.0f + dy inside (so -0.0 becomes +0.0 exactly as the add did), +0.0 where
 * clipped. */
static void ste_store_ref(float *dx, const float *dy, const uint8_t *code, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = code[i] == QAT_FQ_INSIDE ? 0.0f + dy[i] : 0.0f;
}

AVX2_ATTR static void ste_store_avx2(float *restrict dx, const float *restrict dy,
                                     const uint8_t *restrict code, int64_t n) {
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(QAT_FQ_INSIDE);
    for (; i + 8 <= n; i += 8) {
        __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + i)));
        __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, one));
        __m256 v = _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(dy + i));
        _mm256_storeu_ps(dx + i, _mm256_and_ps(v, m));
    }
    ste_store_ref(dx + i, dy + i, code + i, n - i);
}

AVX512_ATTR static void ste_store_avx512(float *restrict dx, const float *restrict dy,
                                         const uint8_t *restrict code, int64_t n) {
    const __m128i one = _mm_set1_epi8(QAT_FQ_INSIDE);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 m = _mm_cmpeq_epi8_mask(_mm_loadu_si128((const __m128i *)(code + i)), one);
        _mm512_storeu_ps(dx + i, _mm512_maskz_add_ps(m, _mm512_setzero_ps(), _mm512_loadu_ps(dy + i)));
    }
    ste_store_ref(dx + i, dy + i, code + i, n - i);
}

/* The straight-through gradient into a grad that does not exist yet: allocated uninitialised
 * and stored (bitwise qat_fq_ste_grad into qat_grad's zeros). */
static void ste_grad_new(qat_ctx *ctx, qat_tensor *x, const float *dy, const uint8_t *code) {
    x->grad = qat_arena_floats(&ctx->arena, x->numel);
    ste_parallel(ste_store_ref, ste_store_avx2, ste_store_avx512, x->grad, dy, code, x->numel);
}

/* ---- the quantizer object -------------------------------------------------------------------- */

qat_status qat_fq_init(qat_fq *fq, const qat_qscheme *s, qat_observer_kind kind, int nchannels,
                       const char *name) {
    memset(fq, 0, sizeof *fq);
    qat_status st = qat_observer_init(&fq->obs, kind, s, nchannels, name);
    if (st) return st;
    fq->scale = malloc((size_t)nchannels * sizeof(float));
    fq->zero_point = malloc((size_t)nchannels * sizeof(int32_t));
    if (!fq->scale || !fq->zero_point) {
        qat_fq_free(fq);
        return qat_fail(QAT_ERR_NOMEM, "autograd/ops/fakequant.c: %s: out of memory",
                        name ? name : "(unnamed)");
    }
    fq->name = name;
    fq->scheme = *s;
    fq->nchannels = nchannels;
    /* PyTorch's FakeQuantize starts from scale 1 and the default zero point as well */
    for (int c = 0; c < nchannels; c++)
        fq->scale[c] = 1.0f, fq->zero_point[c] = qat_qscheme_symmetric_zp(s);
    fq->fake_quant_enabled = 1;
    fq->observer_enabled = 1;
    return QAT_OK;
}

void qat_fq_free(qat_fq *fq) {
    qat_observer_free(&fq->obs);
    free(fq->scale);
    free(fq->zero_point);
    memset(fq, 0, sizeof *fq);
}

qat_status qat_fq_compute_qparams(qat_fq *fq) {
    qat_status st = qat_observer_qparams(&fq->obs, &fq->scheme, fq->scale, fq->zero_point);
    if (st == QAT_OK) fq->qparams_dirty = 0;
    return st;
}

static qat_status check_qparams(const qat_fq *fq, const float *scale, const int32_t *zero_point) {
    int32_t qmin, qmax;
    qat_qscheme_range(&fq->scheme, &qmin, &qmax);
    for (int c = 0; c < fq->nchannels; c++) {
        if (!(scale[c] > 0) || !isfinite(scale[c]))
            return qat_fail(QAT_ERR_NUMERIC, "autograd/ops/fakequant.c: %s: scale %g of channel %d "
                            "is not finite and positive", fq->name ? fq->name : "(unnamed)",
                            (double)scale[c], c);
        if (zero_point[c] < qmin || zero_point[c] > qmax)
            return qat_fail(QAT_ERR_ARG, "autograd/ops/fakequant.c: %s: zero point %d of channel "
                            "%d outside [%d, %d]", fq->name ? fq->name : "(unnamed)",
                            (int)zero_point[c], c, (int)qmin, (int)qmax);
    }
    return QAT_OK;
}

qat_status qat_fq_set_qparams(qat_fq *fq, const float *scale, const int32_t *zero_point) {
    qat_status st = check_qparams(fq, scale, zero_point);
    if (st) return st;
    memcpy(fq->scale, scale, (size_t)fq->nchannels * sizeof(float));
    memcpy(fq->zero_point, zero_point, (size_t)fq->nchannels * sizeof(int32_t));
    fq->qparams_dirty = 0;
    return QAT_OK;
}

#define FQ_MAGIC 0x53514651u /* "QFQS" */
#define FQ_VERSION 1u
typedef struct {
    uint32_t magic, version;
    int32_t nchannels, fake_quant_enabled, observer_enabled, qparams_dirty;
    int64_t skipped;
} fq_header;
_Static_assert(sizeof(fq_header) == 32, "fake-quant state header layout");

size_t qat_fq_state_bytes(const qat_fq *fq) {
    return sizeof(fq_header) + (size_t)fq->nchannels * (sizeof(float) + sizeof(int32_t)) +
           qat_observer_state_bytes(&fq->obs);
}

void qat_fq_pack(const qat_fq *fq, void *buf) {
    fq_header h = {FQ_MAGIC, FQ_VERSION, fq->nchannels, fq->fake_quant_enabled,
                   fq->observer_enabled, fq->qparams_dirty, fq->skipped};
    char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, fq->scale, (size_t)fq->nchannels * sizeof(float));
    p += (size_t)fq->nchannels * sizeof(float);
    memcpy(p, fq->zero_point, (size_t)fq->nchannels * sizeof(int32_t));
    p += (size_t)fq->nchannels * sizeof(int32_t);
    qat_observer_pack(&fq->obs, p);
}

qat_status qat_fq_unpack(qat_fq *fq, const void *buf, size_t bytes) {
    const char *name = fq->name ? fq->name : "(unnamed)";
    fq_header h;
    size_t head = sizeof h + (size_t)fq->nchannels * (sizeof(float) + sizeof(int32_t));
    if (bytes < sizeof h)
        return qat_fail(QAT_ERR_FORMAT, "autograd/ops/fakequant.c: %s: state truncated", name);
    memcpy(&h, buf, sizeof h);
    if (h.magic != FQ_MAGIC || h.version != FQ_VERSION)
        return qat_fail(QAT_ERR_FORMAT, "autograd/ops/fakequant.c: %s: not a fake-quant state",
                        name);
    if (h.nchannels != fq->nchannels)
        return qat_fail(QAT_ERR_MISMATCH, "autograd/ops/fakequant.c: %s: state has %d channels, "
                        "expected %d", name, h.nchannels, fq->nchannels);
    if (bytes < head)
        return qat_fail(QAT_ERR_FORMAT, "autograd/ops/fakequant.c: %s: state truncated", name);
    /* Everything is checked before anything changes, so a bad state leaves fq as it was. */
    const char *p = (const char *)buf + sizeof h;
    float scale[fq->nchannels];
    int32_t zp[fq->nchannels];
    memcpy(scale, p, sizeof scale); /* the buffer need not be aligned */
    memcpy(zp, p + sizeof scale, sizeof zp);
    if (check_qparams(fq, scale, zp))
        return qat_fail(QAT_ERR_FORMAT, "%s (in a checkpoint)", qat_last_error());
    qat_status st = qat_observer_unpack(&fq->obs, p + sizeof scale + sizeof zp, bytes - head);
    if (st) return st;
    memcpy(fq->scale, scale, sizeof scale);
    memcpy(fq->zero_point, zp, sizeof zp);
    fq->fake_quant_enabled = h.fake_quant_enabled != 0;
    fq->observer_enabled = h.observer_enabled != 0;
    fq->qparams_dirty = h.qparams_dirty != 0;
    fq->skipped = h.skipped;
    return QAT_OK;
}

/* ---- the op ---------------------------------------------------------------------------------- */

void qat_fakequant_init(void) {
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        qat_register_backward(QAT_OP_FAKEQUANT, qat_fakequant_backward);
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
}

qat_tensor *qat_fakequant(qat_ctx *ctx, qat_tensor *x, qat_fq *fq) {
    qat_fakequant_init();
    qat_qlayout l;
    QAT_ASSERT(qat_qlayout_of(&fq->scheme, x->ndim, x->shape, &l) == QAT_OK);
    QAT_ASSERT(l.channels == fq->nchannels);
    if (fq->observer_enabled && fq->obs.enabled && !fq->obs.frozen) {
        /* A batch with NaN/inf is left out of the statistics (the message stays in
         * qat_last_error); the output is computed with the qparams from before. */
        if (qat_observer_update(&fq->obs, x->data, x->ndim, x->shape) == QAT_OK)
            fq->qparams_dirty = 1;
        else
            fq->skipped++;
    }
    if (!fq->fake_quant_enabled) return x;
    if (fq->qparams_dirty && fq->obs.seen > 0 && qat_fq_compute_qparams(fq) != QAT_OK)
        fq->skipped++;

    const int C = l.channels;
    qat_fq_consts k;
    qat_fq_consts_fill(&k, &fq->scheme, C, fq->scale, fq->zero_point,
                       qat_arena_floats(&ctx->arena, 3 * (int64_t)C));
    /* The scale/zero point arrays are read during this call only (the kernel runs now). */
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_FAKEQUANT, x->ndim, x->shape, 1, &x);
    out->iparam[0] = QAT_FQ_MODE_FIXED;
    uint8_t *code = NULL;
    if (out->requires_grad) {
        qat_fq_saved *sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        memset(sv, 0, sizeof *sv);
        code = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
        sv->code = code;
        sv->layout = l;
        out->saved = sv;
    }
    qat_fq_kernel(out->data, code, x->data, &l, &k);
    return out;
}

/* Straight-through estimator with PyTorch's mask: the gradient passes where the rounded value
 * was inside [qmin, qmax] before clamping, and is 0 where clipped (and for NaN inputs). */
void qat_fakequant_backward(qat_ctx *ctx, qat_tensor *out) {
    if (out->iparam[0] != QAT_FQ_MODE_FIXED) {
        qat_lsq_backward(ctx, out);
        return;
    }
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const qat_fq_saved *sv = out->saved;
    if (!x->grad)
        ste_grad_new(ctx, x, out->grad, sv->code);
    else
        qat_fq_ste_grad(x->grad, out->grad, sv->code, x->numel);
}
