/* Observers: the running statistics that qparams are computed from. MinMax and moving-average
 * MinMax (per tensor or per channel) live here with the min/max kernel they share; the
 * histogram observer's binning and clipping search are in histogram.c. */
#include "quant.h"
#include "kernels.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- min/max kernel --------------------------------------------------------------------- */

/* NaN is skipped by writing each comparison so that an unordered compare keeps the running
 * value (x < m ? x : m, and minps(x, m) returns m when x is NaN), then counted separately. */
static void minmax_run_scalar(const float *restrict x, int64_t n, float *mn, float *mx,
                              int64_t *nan) {
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

__attribute__((target("avx2,fma"))) static void minmax_run_avx2(const float *restrict x,
                                                                 int64_t n, float *mn, float *mx,
                                                                 int64_t *nan) {
    __m256 a = _mm256_set1_ps(*mn), b = _mm256_set1_ps(*mx);
    __m256i cnt = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a = _mm256_min_ps(v, a);
        b = _mm256_max_ps(v, b);
        /* unordered compare: all-ones (= -1) lanes for NaN */
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    float la[8], lb[8];
    int32_t lc[8];
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(lb, b);
    _mm256_storeu_si256((__m256i *)lc, cnt);
    float ra = la[0], rb = lb[0];
    int64_t k = lc[0];
    for (int j = 1; j < 8; j++) {
        ra = la[j] < ra ? la[j] : ra;
        rb = lb[j] > rb ? lb[j] : rb;
        k += lc[j];
    }
    *mn = ra, *mx = rb, *nan += k;
    minmax_run_scalar(x + i, n - i, mn, mx, nan);
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq"))) static void
minmax_run_avx512(const float *restrict x, int64_t n, float *mn, float *mx, int64_t *nan) {
    __m512 a = _mm512_set1_ps(*mn), b = _mm512_set1_ps(*mx);
    __m512i cnt = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        a = _mm512_min_ps(v, a);
        b = _mm512_max_ps(v, b);
        cnt = _mm512_mask_add_epi32(cnt, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), cnt, one);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        a = _mm512_mask_min_ps(a, m, v, a);
        b = _mm512_mask_max_ps(b, m, v, b);
        cnt = _mm512_mask_add_epi32(cnt, _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q), cnt, one);
    }
    /* no lane holds NaN, so the reduction order cannot change the result */
    *mn = _mm512_reduce_min_ps(a);
    *mx = _mm512_reduce_max_ps(b);
    *nan += _mm512_reduce_add_epi32(cnt);
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
    minmax_run_fn run = minmax_run_scalar;
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: run = minmax_run_avx512; break;
    case QAT_ISA_AVX2: run = minmax_run_avx2; break;
    default: break;
    }
    minmax_impl(mn, mx, nan_count, x, l, run);
}

/* ---- observers ---------------------------------------------------------------------------- */

static const char *obs_name(const qat_observer *o) { return o->name ? o->name : "(unnamed)"; }

qat_status qat_observer_init(qat_observer *o, qat_observer_kind kind, const qat_qscheme *s,
                             int nchannels, const char *name) {
    memset(o, 0, sizeof *o);
    qat_status st = qat_qscheme_check(s);
    if (st) return st;
    if ((unsigned)kind >= QAT_OBS_KIND_COUNT)
        return qat_fail(QAT_ERR_ARG, "fakequant/observer.c: observer %s: unknown kind %d",
                        name ? name : "(unnamed)", (int)kind);
    if (nchannels < 1 || (!s->per_channel && nchannels != 1))
        return qat_fail(QAT_ERR_ARG,
                        "fakequant/observer.c: observer %s: %d channels for a %s scheme",
                        name ? name : "(unnamed)", nchannels,
                        s->per_channel ? "per-channel" : "per-tensor");
    if (kind == QAT_OBS_HISTOGRAM && s->per_channel)
        return qat_fail(QAT_ERR_ARG,
                        "fakequant/observer.c: observer %s: histogram observers are per-tensor",
                        name ? name : "(unnamed)");
    o->kind = kind;
    o->name = name;
    o->per_channel = s->per_channel;
    o->axis = s->axis;
    o->nchannels = nchannels;
    o->enabled = 1;
    o->averaging_constant = QAT_OBS_AVERAGING_CONSTANT;
    o->method = QAT_HIST_MSE;
    o->percentile = 99.99f;
    /* min, max, then two arrays of batch scratch (not state) */
    o->min_val = malloc(4 * (size_t)nchannels * sizeof(float));
    if (kind == QAT_OBS_HISTOGRAM) o->hist = calloc(QAT_HIST_BINS, sizeof(double));
    if (!o->min_val || (kind == QAT_OBS_HISTOGRAM && !o->hist)) {
        qat_observer_free(o);
        return qat_fail(QAT_ERR_NOMEM, "fakequant/observer.c: observer %s: out of memory",
                        name ? name : "(unnamed)");
    }
    o->max_val = o->min_val + nchannels;
    qat_observer_reset(o);
    return QAT_OK;
}

void qat_observer_free(qat_observer *o) {
    free(o->min_val);
    free(o->hist);
    memset(o, 0, sizeof *o);
}

void qat_observer_reset(qat_observer *o) {
    o->seen = 0;
    for (int c = 0; c < o->nchannels; c++) o->min_val[c] = INFINITY, o->max_val[c] = -INFINITY;
    if (o->hist) memset(o->hist, 0, QAT_HIST_BINS * sizeof(double));
    o->hist_lo = o->hist_width = o->zeros = 0;
}

/* A batch's per-channel range (bmin, bmax: C floats, nan NaN values) into the observed range:
 * the part of an update that does not need the data. */
static qat_status range_update(qat_observer *o, const float *bmin, const float *bmax, int64_t nan) {
    const int C = o->nchannels;
    if (nan)
        return qat_fail(QAT_ERR_NUMERIC,
                        "fakequant/observer.c: observer %s: batch has %lld NaN values (ignored)",
                        obs_name(o), (long long)nan);
    for (int c = 0; c < C; c++)
        if (!isfinite(bmin[c]) || !isfinite(bmax[c]))
            return qat_fail(QAT_ERR_NUMERIC,
                            "fakequant/observer.c: observer %s: batch has infinite values (ignored)",
                            obs_name(o));
    switch (o->kind) {
    case QAT_OBS_MINMAX:
    case QAT_OBS_HISTOGRAM:
        for (int c = 0; c < C; c++) {
            if (bmin[c] < o->min_val[c]) o->min_val[c] = bmin[c];
            if (bmax[c] > o->max_val[c]) o->max_val[c] = bmax[c];
        }
        break;
    case QAT_OBS_MOVING_AVG: {
        const float k = o->averaging_constant;
        for (int c = 0; c < C; c++) {
            if (o->seen == 0) {
                o->min_val[c] = bmin[c], o->max_val[c] = bmax[c];
            } else { /* PyTorch: min_val + c * (min_cur - min_val), in float */
                o->min_val[c] = o->min_val[c] + k * (bmin[c] - o->min_val[c]);
                o->max_val[c] = o->max_val[c] + k * (bmax[c] - o->max_val[c]);
            }
        }
        break;
    }
    default: QAT_ASSERT(0);
    }
    return QAT_OK;
}

qat_status qat_observer_update(qat_observer *o, const float *x, int ndim, const int *shape) {
    if (!o->enabled || o->frozen) return QAT_OK;
    qat_qscheme lay = {.bits = 8, .per_channel = o->per_channel, .axis = o->axis};
    qat_qlayout l;
    qat_status st = qat_qlayout_of(&lay, ndim, shape, &l);
    if (st) return qat_fail(st, "observer %s: %s", obs_name(o), qat_last_error());
    if (l.channels != o->nchannels)
        return qat_fail(QAT_ERR_SHAPE, "fakequant/observer.c: observer %s: %d channels, expected %d",
                        obs_name(o), l.channels, o->nchannels);
    if (l.outer * l.channels * l.inner == 0) return QAT_OK;
    const int C = o->nchannels;
    float *bmin = o->min_val + 2 * C, *bmax = o->min_val + 3 * C;
    int64_t nan;
    qat_minmax(bmin, bmax, &nan, x, &l);
    st = range_update(o, bmin, bmax, nan);
    if (st) return st;
    if (o->kind == QAT_OBS_HISTOGRAM) {
        st = qat_hist_update(o, x, l.inner, bmin[0], bmax[0]);
        if (st) return st;
    }
    o->seen++;
    return QAT_OK;
}

/* qat_observer_update of a non-empty batch whose per-channel min, max and NaN count the caller
 * computed exactly as qat_minmax does (NaN skipped; on a tie of -0.0 and +0.0 the same zero
 * kept): lets a fused pass observe a tensor it never stores. Histogram observers need the
 * data itself. */
qat_status qat_observer_update_minmax(qat_observer *o, const float *bmin, const float *bmax,
                                      int64_t nan) {
    if (!o->enabled || o->frozen) return QAT_OK;
    if (o->kind == QAT_OBS_HISTOGRAM)
        return qat_fail(QAT_ERR_ARG,
                        "fakequant/observer.c: observer %s: a histogram observer needs the data",
                        obs_name(o));
    qat_status st = range_update(o, bmin, bmax, nan);
    if (st) return st;
    o->seen++;
    return QAT_OK;
}

qat_status qat_observer_range(const qat_observer *o, const qat_qscheme *s, float *lo, float *hi) {
    if (o->seen == 0)
        return qat_fail(QAT_ERR_ARG, "fakequant/observer.c: observer %s saw no data", obs_name(o));
    if (o->kind == QAT_OBS_HISTOGRAM) return qat_hist_range(o, s, lo, hi);
    memcpy(lo, o->min_val, (size_t)o->nchannels * sizeof(float));
    memcpy(hi, o->max_val, (size_t)o->nchannels * sizeof(float));
    return QAT_OK;
}

qat_status qat_observer_qparams(const qat_observer *o, const qat_qscheme *s, float *scale,
                                int32_t *zero_point) {
    if (s->per_channel != o->per_channel)
        return qat_fail(QAT_ERR_ARG, "fakequant/observer.c: observer %s: scheme is %s, observer %s",
                        obs_name(o), s->per_channel ? "per-channel" : "per-tensor",
                        o->per_channel ? "per-channel" : "per-tensor");
    const int C = o->nchannels;
    /* the batch scratch is free between updates */
    float *lo = o->min_val + 2 * C, *hi = o->min_val + 3 * C;
    qat_status st = qat_observer_range(o, s, lo, hi);
    if (st) return st;
    st = qat_qparams_from_ranges(s, C, lo, hi, scale, zero_point);
    if (st) return qat_fail(st, "observer %s: %s", obs_name(o), qat_last_error());
    return QAT_OK;
}

/* ---- checkpoint state ----------------------------------------------------------------------- */

#define OBS_MAGIC 0x53424f51u /* "QOBS" little-endian */
#define OBS_VERSION 1u

typedef struct {
    uint32_t magic, version;
    int32_t kind, nchannels, bins, enabled, frozen, pad;
    int64_t seen;
    double hist_lo, hist_width, zeros;
} obs_header;
_Static_assert(sizeof(obs_header) == 64, "observer state header layout");

size_t qat_observer_state_bytes(const qat_observer *o) {
    size_t n = sizeof(obs_header) + 2 * (size_t)o->nchannels * sizeof(float);
    if (o->kind == QAT_OBS_HISTOGRAM) n += QAT_HIST_BINS * sizeof(double);
    return n;
}

void qat_observer_pack(const qat_observer *o, void *buf) {
    obs_header h = {
        .magic = OBS_MAGIC, .version = OBS_VERSION, .kind = (int32_t)o->kind,
        .nchannels = o->nchannels, .bins = o->hist ? QAT_HIST_BINS : 0, .enabled = o->enabled,
        .frozen = o->frozen, .seen = o->seen, .hist_lo = o->hist_lo,
        .hist_width = o->hist_width, .zeros = o->zeros,
    };
    char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, o->min_val, (size_t)o->nchannels * sizeof(float));
    p += (size_t)o->nchannels * sizeof(float);
    memcpy(p, o->max_val, (size_t)o->nchannels * sizeof(float));
    p += (size_t)o->nchannels * sizeof(float);
    if (o->hist) memcpy(p, o->hist, QAT_HIST_BINS * sizeof(double));
}

qat_status qat_observer_unpack(qat_observer *o, const void *buf, size_t bytes) {
    obs_header h;
    if (bytes < sizeof h)
        return qat_fail(QAT_ERR_FORMAT, "fakequant/observer.c: observer %s: state truncated",
                        obs_name(o));
    memcpy(&h, buf, sizeof h);
    if (h.magic != OBS_MAGIC || h.version != OBS_VERSION)
        return qat_fail(QAT_ERR_FORMAT, "fakequant/observer.c: observer %s: not an observer state",
                        obs_name(o));
    if (h.kind != (int32_t)o->kind || h.nchannels != o->nchannels ||
        h.bins != (o->hist ? QAT_HIST_BINS : 0))
        return qat_fail(QAT_ERR_MISMATCH,
                        "fakequant/observer.c: observer %s: state of kind %d with %d channels, "
                        "expected kind %d with %d",
                        obs_name(o), h.kind, h.nchannels, (int)o->kind, o->nchannels);
    if (bytes != qat_observer_state_bytes(o))
        return qat_fail(QAT_ERR_FORMAT, "fakequant/observer.c: observer %s: state has %zu bytes, "
                        "expected %zu", obs_name(o), bytes, qat_observer_state_bytes(o));
    if (h.seen < 0 || (h.enabled != 0 && h.enabled != 1) || (h.frozen != 0 && h.frozen != 1))
        return qat_fail(QAT_ERR_FORMAT, "fakequant/observer.c: observer %s: corrupt state",
                        obs_name(o));
    const char *p = (const char *)buf + sizeof h;
    o->enabled = h.enabled, o->frozen = h.frozen, o->seen = h.seen;
    o->hist_lo = h.hist_lo, o->hist_width = h.hist_width, o->zeros = h.zeros;
    memcpy(o->min_val, p, (size_t)o->nchannels * sizeof(float));
    p += (size_t)o->nchannels * sizeof(float);
    memcpy(o->max_val, p, (size_t)o->nchannels * sizeof(float));
    p += (size_t)o->nchannels * sizeof(float);
    if (o->hist) memcpy(o->hist, p, QAT_HIST_BINS * sizeof(double));
    return QAT_OK;
}
