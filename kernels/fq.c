/* Fake-quant, straight-through and min/max kernels (kernels/fq.h): the scalar references, the
 * drivers that split a tensor into runs and tasks, and the dispatch to the ISA variants.
 *
 * Cost: an observing fake-quant is two passes over x (min/max, then quantize + clipping codes);
 * the codes are one byte per element. Tasks have fixed sizes, so the results do not depend on
 * the thread count. */
#include "fq.h"
#include "kernels.h"
#include <math.h>

#define FQ_TASK ((int64_t)1 << 15) /* elements per task of the per-tensor pass; multiple of 64 */
#define FQ_PAR_ELEMS ((int64_t)1 << 16)

void qat_fq_consts_fill(qat_fq_consts *k, int32_t qmin, int32_t qmax, int C, const float *scale,
                        const int32_t *zero_point, float *work) {
    float *inv = work, *lo = work + C, *hi = work + 2 * C;
    k->qmin = qmin, k->qmax = qmax;
    for (int c = 0; c < C; c++) {
        inv[c] = 1.0f / scale[c];
        lo[c] = (float)(k->qmin - zero_point[c]);
        hi[c] = (float)(k->qmax - zero_point[c]);
    }
    k->scale = scale, k->inv = inv, k->zero_point = zero_point, k->lo = lo, k->hi = hi;
}

/* ---- fake-quant ------------------------------------------------------------------------------ */

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

void qat_fq_run_ref(float *restrict y, uint8_t *restrict code, const float *restrict x,
                    int64_t n, const qat_fq_consts *k, int c, int per_elem) {
    for (int64_t i = 0; i < n; i++) {
        int ch = per_elem ? c + (int)i : c;
        y[i] = qat_fake_quantize(x[i], k->scale[ch], k->inv[ch], k->zero_point[ch], k->qmin,
                                 k->qmax);
        if (code) code[i] = fq_code(x[i], k->inv[ch], k->zero_point[ch], k->qmin, k->qmax);
    }
}

static void fq_impl(float *y, uint8_t *code, const float *x, const qat_qlayout *l,
                    const qat_fq_consts *k, qat_fq_run_fn run) {
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
    qat_fq_run_fn run = qat_fq_run_ref;
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: run = qat_fq_run_avx512; break;
    case QAT_ISA_AVX2: run = qat_fq_run_avx2; break;
    default: break;
    }
    fq_impl(y, code, x, l, k, run);
}

/* ---- straight-through gradient ------------------------------------------------------------- */

void qat_fq_ste_grad_ref(float *dx, const float *dy, const uint8_t *code, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (code[i] == QAT_FQ_INSIDE) dx[i] += dy[i];
}

void qat_fq_ste_store_ref(float *dx, const float *dy, const uint8_t *code, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = code[i] == QAT_FQ_INSIDE ? 0.0f + dy[i] : 0.0f;
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
    ste_parallel(qat_fq_ste_grad_ref, qat_fq_ste_run_avx2, qat_fq_ste_run_avx512, dx, dy, code, n);
}

void qat_fq_ste_grad_store(float *dx, const float *dy, const uint8_t *code, int64_t n) {
    ste_parallel(qat_fq_ste_store_ref, qat_fq_ste_store_avx2, qat_fq_ste_store_avx512, dx, dy,
                 code, n);
}

/* ---- min/max --------------------------------------------------------------------------------- */

/* NaN is skipped by writing each comparison so that an unordered compare keeps the running
 * value (x < m ? x : m, and minps(x, m) returns m when x is NaN), then counted separately. */
void qat_minmax_run_ref(const float *restrict x, int64_t n, float *mn, float *mx, int64_t *nan) {
    float a = *mn, b = *mx;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        a = v < a ? v : a;
        b = v > b ? v : b;
        k += v != v;
    }
    *mn = a, *mx = b, *nan += k;
}

typedef void (*minmax_run_fn)(const float *, int64_t, float *, float *, int64_t *);

/* Channels innermost: one row of C values updates C running ranges. Element-wise over the
 * channels, so it vectorises as plain code. */
static void minmax_rows(const float *restrict x, int64_t rows, int C, float *restrict mn,
                        float *restrict mx, int64_t *nan) {
    int64_t k = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * C;
#pragma omp simd reduction(+ : k)
        for (int c = 0; c < C; c++) {
            float v = xr[c];
            mn[c] = v < mn[c] ? v : mn[c];
            mx[c] = v > mx[c] ? v : mx[c];
            k += v != v;
        }
    }
    *nan += k;
}

#define MINMAX_CHUNK ((int64_t)1 << 16) /* elements per task; below one chunk: one thread */
#define MINMAX_MAX_TASKS 256

static void minmax_impl(float *mn, float *mx, int64_t *nan_count, const float *x,
                        const qat_qlayout *l, minmax_run_fn run) {
    const int C = l->channels;
    *nan_count = 0;
    for (int c = 0; c < C; c++) mn[c] = INFINITY, mx[c] = -INFINITY;
    int64_t numel = l->outer * C * l->inner;
    if (numel == 0) return;
    int nt = numel >= 2 * MINMAX_CHUNK ? qat_kernel_threads() : 1;
    if (l->inner == 1 && C > 1) {
        /* Channels innermost (NHWC activations): row blocks with private ranges would need
         * scratch; one thread per fixed block of rows, combined in order, needs C floats each.
         * Per-channel activation observers are rare, so this stays single-threaded. */
        minmax_rows(x, l->outer, C, mn, mx, nan_count);
        return;
    }
    if (C == 1) {
        /* Per tensor: fixed tasks (min/max are exact, so only the NaN count needs a sum). */
        int64_t n = numel;
        int64_t chunk = (n + MINMAX_MAX_TASKS - 1) / MINMAX_MAX_TASKS;
        if (chunk < MINMAX_CHUNK) chunk = MINMAX_CHUNK;
        int ntask = (int)((n + chunk - 1) / chunk);
        float tmn[MINMAX_MAX_TASKS], tmx[MINMAX_MAX_TASKS];
        int64_t tnan[MINMAX_MAX_TASKS];
#pragma omp parallel for num_threads(nt) schedule(static) if (ntask > 1)
        for (int t = 0; t < ntask; t++) {
            int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
            tmn[t] = INFINITY, tmx[t] = -INFINITY, tnan[t] = 0;
            run(x + b, e - b, &tmn[t], &tmx[t], &tnan[t]);
        }
        for (int t = 0; t < ntask; t++) {
            mn[0] = tmn[t] < mn[0] ? tmn[t] : mn[0];
            mx[0] = tmx[t] > mx[0] ? tmx[t] : mx[0];
            *nan_count += tnan[t];
        }
        return;
    }
    /* Channels outer (OHWI weights, axis 0) or in the middle: contiguous runs of `inner`. */
    int64_t nan = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : nan) if (nt > 1)
    for (int c = 0; c < C; c++) {
        float a = INFINITY, b = -INFINITY;
        for (int64_t o = 0; o < l->outer; o++)
            run(x + (o * C + c) * l->inner, l->inner, &a, &b, &nan);
        mn[c] = a, mx[c] = b;
    }
    *nan_count = nan;
}

void qat_minmax_ref(float *mn, float *mx, int64_t *nan_count, const float *x,
                    const qat_qlayout *l) {
    /* The plainest form: every element visited in order with its channel index. */
    const int C = l->channels;
    for (int c = 0; c < C; c++) mn[c] = INFINITY, mx[c] = -INFINITY;
    int64_t k = 0;
    for (int64_t o = 0; o < l->outer; o++)
        for (int c = 0; c < C; c++)
            for (int64_t i = 0; i < l->inner; i++) {
                float v = x[(o * C + c) * l->inner + i];
                if (v != v) {
                    k++;
                    continue;
                }
                if (v < mn[c]) mn[c] = v;
                if (v > mx[c]) mx[c] = v;
            }
    *nan_count = k;
}

void qat_minmax(float *mn, float *mx, int64_t *nan_count, const float *x, const qat_qlayout *l) {
    minmax_run_fn run = qat_minmax_run_ref;
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: run = qat_minmax_run_avx512; break;
    case QAT_ISA_AVX2: run = qat_minmax_run_avx2; break;
    default: break;
    }
    minmax_impl(mn, mx, nan_count, x, l, run);
}
