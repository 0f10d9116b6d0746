/* The learned quantizer of LSQ / LSQ+ (qat_lsq, fakequant/quant.h): its scales and offsets (in
 * arrays the caller owns, so a model keeps all of them in one allocation), their
 * initialisation, the qparams they stand for, the floor on the scale. The op that applies it
 * and differentiates the scale and offset is autograd/ops/lsq.c. */
#include "quant.h"
#include <math.h>
#include <string.h>

static const char *lsq_name(const qat_lsq *q) { return q->name ? q->name : "(unnamed)"; }

qat_status qat_lsq_init(qat_lsq *q, const qat_qscheme *s, int plus, int nchannels, float *scale,
                        float *scale_grad, float *offset, float *offset_grad, int per_example,
                        const char *name) {
    memset(q, 0, sizeof *q);
    qat_status st = qat_qscheme_check(s);
    if (st) return st;
    const char *nm = name ? name : "(unnamed)";
    if (!scale || nchannels < 1 || (!s->per_channel && nchannels != 1))
        return qat_fail(QAT_ERR_ARG, "fakequant/lsq.c: %s: scale must have 1 element per "
                        "tensor or one per channel", nm);
    if (plus && !offset)
        return qat_fail(QAT_ERR_ARG, "fakequant/lsq.c: %s: LSQ+ needs an offset with as many "
                        "elements as the scale", nm);
    if (!plus && offset)
        return qat_fail(QAT_ERR_ARG, "fakequant/lsq.c: %s: an offset needs LSQ+ (plus = 1)", nm);
    q->name = name;
    q->scheme = *s;
    q->plus = plus != 0;
    q->nchannels = nchannels;
    q->scale = scale, q->scale_grad = scale_grad;
    q->offset = offset, q->offset_grad = plus ? offset_grad : NULL;
    q->per_example = per_example != 0;
    q->scale_floor = QAT_QPARAMS_EPS;
    q->fake_quant_enabled = 1;
    return QAT_OK;
}

void qat_lsq_channel(const qat_lsq *q, int c, int32_t qmin, int32_t qmax, float *scale,
                     float *inv, int32_t *zp) {
    float s = q->scale[c];
    if (!(s >= q->scale_floor)) s = q->scale_floor; /* also NaN */
    float is = 1.0f / s;
    *scale = s, *inv = is;
    /* LSQ+: zp = clamp(round(-beta / s)) is qmath's quantize of -beta with zero point 0 */
    *zp = q->plus ? qat_quantize(-q->offset[c], is, 0, qmin, qmax)
                  : qat_qscheme_symmetric_zp(&q->scheme);
}

void qat_lsq_qparams(const qat_lsq *q, float *scale, int32_t *zero_point) {
    int32_t qmin, qmax;
    qat_qscheme_range(&q->scheme, &qmin, &qmax);
    float inv;
    for (int c = 0; c < q->nchannels; c++) qat_lsq_channel(q, c, qmin, qmax, &scale[c], &inv, &zero_point[c]);
}

void qat_lsq_clamp_scale(qat_lsq *q) {
    float *s = q->scale;
    for (int c = 0; c < q->nchannels; c++)
        if (!(s[c] >= q->scale_floor)) s[c] = q->scale_floor;
}

qat_status qat_lsq_init_from_data(qat_lsq *q, const float *x, int ndim, const int *shape) {
    qat_qlayout l;
    qat_status st = qat_qlayout_of(&q->scheme, ndim, shape, &l);
    if (st) return st;
    if (l.channels != q->nchannels)
        return qat_fail(QAT_ERR_SHAPE, "fakequant/lsq.c: %s: %d channels, expected %d",
                        lsq_name(q), l.channels, q->nchannels);
    int32_t qmin, qmax;
    qat_qscheme_range(&q->scheme, &qmin, &qmax);
    const int C = l.channels;
    const int64_t per = l.outer * l.inner;
    for (int c = 0; c < C; c++) {
        double sum = 0;
        for (int64_t o = 0; o < l.outer; o++)
            for (int64_t i = 0; i < l.inner; i++) sum += fabs((double)x[(o * C + c) * l.inner + i]);
        if (!isfinite(sum))
            return qat_fail(QAT_ERR_NUMERIC, "fakequant/lsq.c: %s: data has NaN/inf", lsq_name(q));
        float s = per ? (float)(2.0 * (sum / (double)per) / sqrt((double)qmax)) : 0.0f;
        q->scale[c] = s >= q->scale_floor ? s : q->scale_floor;
        if (q->plus) q->offset[c] = 0.0f;
    }
    return QAT_OK;
}

qat_status qat_lsq_init_from_qparams(qat_lsq *q, const float *scale, const int32_t *zero_point) {
    for (int c = 0; c < q->nchannels; c++)
        if (!(scale[c] > 0) || !isfinite(scale[c]))
            return qat_fail(QAT_ERR_NUMERIC, "fakequant/lsq.c: %s: scale %g of channel %d is not "
                            "finite and positive", lsq_name(q), (double)scale[c], c);
    for (int c = 0; c < q->nchannels; c++) {
        q->scale[c] = scale[c] >= q->scale_floor ? scale[c] : q->scale_floor;
        if (q->plus) q->offset[c] = -(float)zero_point[c] * q->scale[c];
    }
    return QAT_OK;
}
