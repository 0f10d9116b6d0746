/* Quantization schemes and the one function that turns a range into (scale, zero point). PTQ,
 * QAT and convert all call qat_qparams_from_range, so they cannot disagree on a rounding. */
#include "quant.h"
#include <math.h>

static int is_flag(int v) { return v == 0 || v == 1; }

qat_status qat_qscheme_check(const qat_qscheme *s) {
    if (!s) return qat_fail(QAT_ERR_ARG, "fakequant/qparams.c: no quantization scheme");
    if (s->bits < 2 || s->bits > 8)
        return qat_fail(QAT_ERR_ARG, "fakequant/qparams.c: %d bits is outside 2..8", s->bits);
    if (!is_flag(s->is_signed) || !is_flag(s->symmetric) || !is_flag(s->narrow_range) ||
        !is_flag(s->per_channel))
        return qat_fail(QAT_ERR_ARG, "fakequant/qparams.c: scheme flags must be 0 or 1");
    return QAT_OK;
}

void qat_qscheme_range(const qat_qscheme *s, int32_t *qmin, int32_t *qmax) {
    if (s->is_signed) {
        *qmin = -(1 << (s->bits - 1)) + (s->narrow_range ? 1 : 0);
        *qmax = (1 << (s->bits - 1)) - 1;
    } else {
        *qmin = s->narrow_range ? 1 : 0;
        *qmax = (1 << s->bits) - 1;
    }
}

int32_t qat_qscheme_symmetric_zp(const qat_qscheme *s) {
    if (s->is_signed || !s->symmetric) return 0;
    int32_t qmin, qmax;
    qat_qscheme_range(s, &qmin, &qmax);
    return (qmin + qmax + 1) / 2;
}

qat_status qat_qparams_from_range(const qat_qscheme *s, float min, float max, float *scale,
                                  int32_t *zero_point) {
    qat_status st = qat_qscheme_check(s);
    if (st) return st;
    if (!isfinite(min) || !isfinite(max))
        return qat_fail(QAT_ERR_NUMERIC, "fakequant/qparams.c: range [%g, %g] is not finite",
                        (double)min, (double)max);
    if (min > max)
        return qat_fail(QAT_ERR_ARG, "fakequant/qparams.c: range [%g, %g] has min > max",
                        (double)min, (double)max);
    int32_t qmin, qmax;
    qat_qscheme_range(s, &qmin, &qmax);
    /* Zero must be exactly representable (padding, ReLU zeros), so the range always holds it. */
    float min_neg = min < 0.0f ? min : 0.0f;
    float max_pos = max > 0.0f ? max : 0.0f;
    float sc;
    int32_t zp;
    if (s->symmetric) {
        float amax = -min_neg > max_pos ? -min_neg : max_pos;
        sc = amax / ((float)(qmax - qmin) / 2.0f);
        zp = qat_qscheme_symmetric_zp(s);
    } else {
        sc = (max_pos - min_neg) / (float)(qmax - qmin);
        zp = 0; /* below, once the scale is floored */
    }
    if (!isfinite(sc))
        return qat_fail(QAT_ERR_NUMERIC,
                        "fakequant/qparams.c: range [%g, %g] overflows the float scale",
                        (double)min, (double)max);
    if (sc < QAT_QPARAMS_EPS) sc = QAT_QPARAMS_EPS;
    if (!s->symmetric) {
        /* PyTorch: quant_min - round(min_neg / scale) in float32, clamped. |min_neg / sc| is at
         * most qmax - qmin after the floor, so the conversion is defined. */
        float r = qat_round(min_neg / sc);
        zp = qat_clamp_i32(qmin - (int32_t)r, qmin, qmax);
    }
    *scale = sc;
    *zero_point = zp;
    return QAT_OK;
}

qat_status qat_qparams_from_ranges(const qat_qscheme *s, int n, const float *min,
                                   const float *max, float *scale, int32_t *zero_point) {
    for (int c = 0; c < n; c++) {
        qat_status st = qat_qparams_from_range(s, min[c], max[c], &scale[c], &zero_point[c]);
        if (st) return qat_fail(st, "%s (channel %d)", qat_last_error(), c);
    }
    return QAT_OK;
}

qat_status qat_qlayout_of(const qat_qscheme *s, int ndim, const int *shape, qat_qlayout *l) {
    int64_t numel = qat_shape_numel(ndim, shape);
    if (!s->per_channel) {
        l->outer = 1;
        l->channels = 1;
        l->inner = numel;
        return QAT_OK;
    }
    int ax = s->axis < 0 ? ndim + s->axis : s->axis;
    if (ax < 0 || ax >= ndim)
        return qat_fail(QAT_ERR_SHAPE, "fakequant/qparams.c: channel axis %d outside a %d-d tensor",
                        s->axis, ndim);
    l->outer = qat_shape_numel(ax, shape);
    l->channels = shape[ax];
    l->inner = qat_shape_numel(ndim - ax - 1, shape + ax + 1);
    return QAT_OK;
}

void qat_fq_consts_of(qat_fq_consts *k, const qat_qscheme *s, int C, const float *scale,
                      const int32_t *zero_point, float *work) {
    int32_t qmin, qmax;
    qat_qscheme_range(s, &qmin, &qmax);
    qat_fq_consts_fill(k, qmin, qmax, C, scale, zero_point, work);
}
