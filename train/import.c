/* qat import: an ONNX model (export/onnx_import.c) written as a checkpoint that every command
 * takes like one of its own (eval, train --resume, ptq, qat, quantize, convert, export). The
 * preprocessing the model expects is the checkpoint's normalisation: x = (pixel / 255 - mean) /
 * std, which eval and training apply and convert folds into the INT8 input quantization. */
#include "onnx_import.h"
#include "train.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

qat_status qat_import_onnx_ckpt(const char *onnx, const char *ckpt, const char *spec_out, float mean,
                                float std, qat_model **model_out) {
    if (!(std > 0) || !(mean == mean) || mean > 1e6f || mean < -1e6f || std > 1e6f)
        return qat_fail(QAT_ERR_ARG, "import: --mean %g / --std %g: need finite values, std > 0", (double)mean,
                        (double)std);
    qat_model *m;
    qat_status st = qat_onnx_import(onnx, &m);
    if (st) return st;
    if (spec_out) {
        /* the spec first: a failure there leaves no checkpoint behind */
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%.4000s.tmp", spec_out);
        FILE *f = fopen(tmp, "wb");
        const char *text = qat_spec_text(m->spec);
        int ok = f && fprintf(f, "# imported from %s by qat import (the general form: docs/model-spec.md)\n%s",
                              onnx, text) > 0;
        if (f && fclose(f)) ok = 0;
        if (!ok || rename(tmp, spec_out)) {
            int e = errno;
            remove(tmp);
            qat_model_free(m);
            return qat_fail(QAT_ERR_IO, "%s: cannot write: %s", spec_out, strerror(e));
        }
    }
    qat_run r;
    memset(&r, 0, sizeof r);
    r.model = m;
    r.spec = m->spec;
    for (int c = 0; c < 4; c++) r.mean[c] = mean, r.std[c] = std;
    r.seed = 1;
    qat_rng_seed(&r.rng, 1);
    st = qat_checkpoint_save(ckpt, &r);
    if (!st && model_out) *model_out = m;
    else qat_model_free(m);
    return st;
}
