/* Observers: the running statistics that qparams are computed from. MinMax and moving-average
 * MinMax (per tensor or per channel) live here, on the min/max kernel of kernels/fq.h; the
 * histogram observer's binning and clipping search are in histogram.c. */
#include "quant.h"
#include "dist.h"
#include "kernels.h"
#include <math.h>
#include <string.h>

/* ---- observers ---------------------------------------------------------------------------- */

qat_status qat_observer_parse(const char *name, qat_observer_kind *kind, qat_hist_method *method) {
    static const struct {
        const char *name;
        qat_observer_kind kind;
        qat_hist_method method;
    } names[] = {
        {"minmax", QAT_OBS_MINMAX, QAT_HIST_MSE},
        {"moving-average", QAT_OBS_MOVING_AVG, QAT_HIST_MSE},
        {"histogram", QAT_OBS_HISTOGRAM, QAT_HIST_MSE},
        {"mse", QAT_OBS_HISTOGRAM, QAT_HIST_MSE},
        {"percentile", QAT_OBS_HISTOGRAM, QAT_HIST_PERCENTILE},
    };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) {
            *kind = names[i].kind;
            if (method) *method = names[i].method;
            return QAT_OK;
        }
    return qat_fail(QAT_ERR_ARG, "unknown observer '%s' (%s)", name ? name : "(null)", QAT_OBSERVER_NAMES);
}

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
    float *gmin = NULL, *gmax = NULL;
    if (qat_dist_syncing()) { /* data-parallel: the global batch's range on every rank */
        double buf[2 * QAT_DIST_OBS_MAX + 1], *all = C <= QAT_DIST_OBS_MAX ? buf
                                                   : malloc((2 * (size_t)C + 1) * sizeof(double));
        QAT_ASSERT(all);
        for (int c = 0; c < C; c++) all[c] = -(double)bmin[c], all[C + c] = bmax[c];
        all[2 * C] = (double)nan;
        qat_dist_max_f64(all, 2 * (size_t)C + 1);
        /* the batch's own arrays are the caller's const: the global range goes to o's spare */
        gmin = o->min_val + 2 * C, gmax = o->min_val + 3 * C;
        /* + 0.0f: MPI_MAX need not pick the same of -0.0 and +0.0 on every rank */
        for (int c = 0; c < C; c++) gmin[c] = (float)-all[c] + 0.0f, gmax[c] = (float)all[C + c] + 0.0f;
        nan = (int64_t)all[2 * C];
        if (all != buf) free(all);
        bmin = gmin, bmax = gmax;
    }
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
