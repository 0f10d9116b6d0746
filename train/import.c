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

/* The predicted class of every test image of data (dataset order) by the checkpoint's network,
 * written as one byte each (classes < 256) to out: what `qat eval --pred-out` writes, so an
 * imported model's predictions can be compared with the original framework's. */
qat_status qat_checkpoint_predict(const char *ckpt, const char *data, const char *out, int batch) {
    qat_run run;
    qat_status st = qat_checkpoint_load(ckpt, &run);
    if (st) return st;
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.seed = run.seed;
    qat_dataset *train = NULL, *test = NULL;
    float *logits = NULL;
    if (!(st = qat_dataset_open(data, &dopt, &train, &test))) {
        const qat_model *m = run.model;
        if (m->in_h != test->h || m->in_w != test->w || m->in_c != test->c || m->nclasses != test->nclasses ||
            m->nclasses > 256)
            st = qat_fail(QAT_ERR_MISMATCH, "%s: checkpoint expects %dx%dx%d images and %d classes (at most 256 "
                          "for --pred-out), %s has %dx%dx%d and %d", ckpt, m->in_h, m->in_w, m->in_c, m->nclasses,
                          test->source, test->h, test->w, test->c, test->nclasses);
        else if (!(logits = malloc((size_t)test->n * m->nclasses * sizeof(float))))
            st = qat_fail(QAT_ERR_NOMEM, "%s: out of memory", ckpt);
        else {
            qat_eval_result res;
            st = qat_evaluate_net((qat_forward_fn)qat_run_forward, &run, test, run.mean, run.std, batch, &res,
                                  logits, NULL);
        }
        if (!st) {
            char tmp[4200];
            snprintf(tmp, sizeof tmp, "%.4000s.tmp", out);
            FILE *f = fopen(tmp, "wb");
            int ok = f != NULL;
            for (int64_t i = 0; ok && i < test->n; i++)
                ok = fputc(qat_argmax(logits + (size_t)i * m->nclasses, m->nclasses), f) != EOF;
            if (f && fclose(f)) ok = 0;
            if (!ok || rename(tmp, out)) {
                remove(tmp);
                st = qat_fail(QAT_ERR_IO, "%s: cannot write", out);
            }
        }
    }
    free(logits);
    qat_dataset_free(train);
    qat_dataset_free(test);
    qat_run_free(&run);
    return st;
}
