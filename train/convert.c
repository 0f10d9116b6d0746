/* `qat convert`: a PTQ/QAT checkpoint to an INT8 model file (export/convert.c does the work). */
#include "train.h"
#include <stdio.h>
#include <string.h>

qat_status qat_convert_checkpoint(const char *ckpt, const char *out, qat_q8_model **model) {
    if (model) *model = NULL;
    qat_run r;
    memset(&r, 0, sizeof r);
    qat_status st = qat_checkpoint_load(ckpt, &r);
    if (st) return st;
    qat_q8_model *m = NULL;
    if (!r.qmodel)
        st = qat_fail(QAT_ERR_ARG, "%s: an FP32 checkpoint has no quantization parameters "
                                   "(run qat ptq or qat qat on it first, or qat quantize)", ckpt);
    else
        st = qat_convert_qmodel(r.qmodel, r.mean, r.std, &m);
    if (!st && r.class_names) { /* the names move to the INT8 model */
        m->class_names = r.class_names;
        r.class_names = NULL;
    }
    if (st && r.qmodel) st = qat_fail(st, "%s: %s", ckpt, qat_last_error());
    if (!st && out) st = qat_q8_save(m, out);
    qat_run_free(&r);
    if (!st && model) *model = m;
    else qat_q8_free(m);
    return st;
}

qat_status qat_convert(const char *ckpt, const char *out, qat_convert_info *info) {
    if (!ckpt || !out) return qat_fail(QAT_ERR_ARG, "convert: a checkpoint and an output path are required");
    qat_q8_model *m;
    qat_status st = qat_convert_checkpoint(ckpt, out, &m);
    if (st) return st;
    if (info) {
        memset(info, 0, sizeof *info);
        info->layers = m->nlayers;
        for (int i = 0; i < m->nlayers; i++) {
            info->macs += qat_q8_layer_macs(&m->layers[i]);
            info->weights += qat_q8_layer_weights(&m->layers[i]);
            if (m->layers[i].fweight)
                info->float_layers++, info->float_weights += qat_q8_layer_weights(&m->layers[i]);
        }
        snprintf(info->qconfig, sizeof info->qconfig, "%s", m->qconfig);
        info->in_h = m->in_h, info->in_w = m->in_w, info->in_c = m->in_c;
    }
    qat_q8_free(m);
    return QAT_OK;
}

qat_status qat_checkpoint_float_layers(const char *ckpt, char *buf, size_t cap) {
    if (cap) buf[0] = 0;
    qat_run r;
    qat_status st = qat_checkpoint_load(ckpt, &r);
    if (st) return st;
    if (r.qmodel) qat_qmodel_float_names(r.qmodel, buf, cap);
    qat_run_free(&r);
    return QAT_OK;
}
