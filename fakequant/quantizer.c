/* The observer-driven quantizer of one quantization point (qat_fq, fakequant/quant.h): its
 * qparams and flags, their computation from the observer, and the checkpoint state. The op that
 * applies it to a tensor is autograd/ops/fakequant.c. */
#include "quant.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

qat_status qat_fq_init(qat_fq *fq, const qat_qscheme *s, qat_observer_kind kind, int nchannels,
                       const char *name) {
    memset(fq, 0, sizeof *fq);
    qat_status st = qat_observer_init(&fq->obs, kind, s, nchannels, name);
    if (st) return st;
    fq->scale = malloc((size_t)nchannels * sizeof(float));
    fq->zero_point = malloc((size_t)nchannels * sizeof(int32_t));
    if (!fq->scale || !fq->zero_point) {
        qat_fq_free(fq);
        return qat_fail(QAT_ERR_NOMEM, "fakequant/quantizer.c: %s: out of memory",
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
            return qat_fail(QAT_ERR_NUMERIC, "fakequant/quantizer.c: %s: scale %g of channel %d "
                            "is not finite and positive", fq->name ? fq->name : "(unnamed)",
                            (double)scale[c], c);
        if (zero_point[c] < qmin || zero_point[c] > qmax)
            return qat_fail(QAT_ERR_ARG, "fakequant/quantizer.c: %s: zero point %d of channel "
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
        return qat_fail(QAT_ERR_FORMAT, "fakequant/quantizer.c: %s: state truncated", name);
    memcpy(&h, buf, sizeof h);
    if (h.magic != FQ_MAGIC || h.version != FQ_VERSION)
        return qat_fail(QAT_ERR_FORMAT, "fakequant/quantizer.c: %s: not a fake-quant state",
                        name);
    if (h.nchannels != fq->nchannels)
        return qat_fail(QAT_ERR_MISMATCH, "fakequant/quantizer.c: %s: state has %d channels, "
                        "expected %d", name, h.nchannels, fq->nchannels);
    if (bytes < head)
        return qat_fail(QAT_ERR_FORMAT, "fakequant/quantizer.c: %s: state truncated", name);
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
