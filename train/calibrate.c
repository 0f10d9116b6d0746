/* Calibration: batches of training data through a PTQ/QAT model with the observers on and
 * fake-quant off (PTQ, and the seed of the learned scales before LSQ QAT). */
#include "train.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    qat_qmodel *q;
    const qat_dataset *d;
    const float *x;
    int B;
} calib_batch;

static qat_status calib_step(qat_ctx *ctx, void *arg) {
    calib_batch *c = arg;
    qat_tensor *xt = qat_tensor_4d(ctx, c->B, c->d->h, c->d->w, c->d->c);
    memcpy(xt->data, c->x, (size_t)xt->numel * sizeof(float));
    return qat_qmodel_forward(c->q, ctx, xt) ? QAT_OK : QAT_ERR_SHAPE;
}

/* Runs up to n batches of `d` through q with the observers on (eval mode: BN running stats, no
 * dropout, no gradients, fake-quant off). Shuffled with the run's seed: an ImageFolder train split is sorted by
 * class, so the first batches alone would see one class. No augmentation. */
qat_status qat_calibrate(qat_run *r, const qat_dataset *d, int batch, int n, const qat_progress *p) {
    double t0 = qat_now();
    qat_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.batch = batch;
    lo.shuffle = 1;
    lo.seed = r->seed;
    lo.prefetch = 0; /* batches come from decoded memory; see qat_loader_opts.prefetch */
    for (int c = 0; c < 4; c++) lo.mean[c] = r->mean[c], lo.std[c] = r->std[c];
    qat_loader *l;
    qat_status st = qat_loader_create(d, &lo, &l);
    if (st) return st;
    float *x = malloc((size_t)batch * d->h * d->w * d->c * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    qat_ctx ctx;
    qat_ctx_init(&ctx, 32u << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    if (!x || !y) st = qat_fail(QAT_ERR_NOMEM, "ptq: out of memory for calibration batches");
    int nb = qat_loader_num_batches(l);
    if (n > nb) n = nb;
    /* Observers see the FP32 activations, as in PyTorch's prepare/calibrate/convert. */
    r->qmodel->calibrating = 1;
    qat_qmodel_enable_fake_quant(r->qmodel, 0);
    for (int b = 0; b < n && !st; b++) {
        calib_batch cb = {r->qmodel, d, x, qat_loader_get(l, 0, b, x, y)};
        qat_ctx_reset(&ctx);
        st = qat_ctx_run(&ctx, calib_step, &cb);
        qat_progress_report(p, b + 1, n, (int64_t)(b + 1) * batch, t0);
    }
    r->qmodel->calibrating = 0;
    qat_qmodel_enable_fake_quant(r->qmodel, 1);
    qat_ctx_free(&ctx);
    free(x), free(y);
    qat_loader_free(l);
    return st;
}

