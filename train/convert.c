/* `qat convert`: a PTQ/QAT checkpoint to an INT8 model file. */
#include "train.h"
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
    if (st && r.qmodel) st = qat_fail(st, "%s: %s", ckpt, qat_last_error());
    if (!st && out) st = qat_q8_save(m, out);
    qat_run_free(&r);
    if (!st && model) *model = m;
    else qat_q8_free(m);
    return st;
}
