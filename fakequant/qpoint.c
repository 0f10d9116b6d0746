/* The quantization point (qat_qpoint, fakequant/quant.h): a named place of a model with its
 * observer-driven and learned quantizers, and the few things a model does to all its points. */
#include "quant.h"
#include <stdio.h>
#include <string.h>

qat_status qat_qpoint_init(qat_qpoint *p, const char *name, int weight, const qat_qscheme *s,
                           qat_observer_kind kind, int nchannels) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->weight = weight != 0;
    /* fq.name and obs.name point at p->name: the point must not move afterwards */
    return qat_fq_init(&p->fq, s, kind, nchannels, p->name);
}

void qat_qpoint_free(qat_qpoint *p) { qat_fq_free(&p->fq); }

int qat_qpoint_on(const qat_qpoint *p, int lsq) {
    return lsq ? p->lsq.fake_quant_enabled : p->fq.fake_quant_enabled;
}

void qat_qpoint_enable(qat_qpoint *p, int on) {
    const int e = on != 0 && !p->keep_float;
    p->fq.fake_quant_enabled = e;
    p->lsq.fake_quant_enabled = e;
}

qat_status qat_qpoint_qparams(qat_qpoint *p, int lsq, float *scale, int32_t *zero_point) {
    if (lsq) {
        qat_lsq_qparams(&p->lsq, scale, zero_point);
        return QAT_OK;
    }
    qat_fq *fq = &p->fq;
    qat_status st = fq->qparams_dirty ? qat_fq_compute_qparams(fq) : QAT_OK;
    if (st) return st;
    memcpy(scale, fq->scale, (size_t)fq->nchannels * sizeof(float));
    memcpy(zero_point, fq->zero_point, (size_t)fq->nchannels * sizeof(int32_t));
    return QAT_OK;
}

qat_status qat_qpoint_freeze(qat_qpoint *p) {
    qat_fq *fq = &p->fq;
    if (fq->obs.seen > 0 && fq->qparams_dirty) {
        qat_status st = qat_fq_compute_qparams(fq);
        if (st) return st;
    } else if (fq->obs.seen == 0) {
        return qat_fail(QAT_ERR_ARG, "qmodel: observer %s saw no data before freezing", fq->name);
    }
    fq->observer_enabled = 0;
    fq->obs.frozen = 1;
    return QAT_OK;
}
