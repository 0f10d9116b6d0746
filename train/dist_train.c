/* What a data-parallel training run (dist/dist.h, docs/distributed.md) adds to train/train.c,
 * kept here so the loop shows only where it happens: the start-up check that every rank was
 * given the same run, the gradient average, the epoch's totals over ranks, and the check that
 * every rank still holds the same state. With one process each is a no-op or the identity. */
#include "dist.h"
#include "dist_train.h"
#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const void *p, size_t n) {
    /* FNV-1a 64 over the bytes; strings and numbers alike */
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}
static uint64_t hash_str(const char *s) { return s ? hash_bytes(s, strlen(s)) : 7; }

qat_status qat_dist_check_options(const qat_train_opts *o, const qat_qat_opts *qo,
                                  const qat_dataset *train, const qat_dataset *test) {
    if (!qat_dist_active()) return QAT_OK;
    int32_t shape[6] = {train->n, test->n, train->h, train->w, train->c, train->nclasses};
    double sched[4] = {o->lr, o->warmup_epochs, o->freeze_bn_epochs, o->freeze_observer_epochs};
    double reg[4] = {o->weight_decay, o->momentum, o->label_smoothing, o->width};
    int32_t ints[4] = {o->epochs, o->opt, o->sched, o->qat_from_epoch};
    int32_t aug[3] = {o->crop_pad, o->hflip, o->bn_reestimate_batches};
    struct { const char *name; uint64_t h; } f[] = {
        {"--model", hash_str(o->model)},
        {"--data (the dataset's size or image shape)", hash_bytes(shape, sizeof shape)},
        {"--batch", hash_bytes(&o->batch, sizeof o->batch)},
        {"--epochs, --opt, --sched or --qat-from-epoch", hash_bytes(ints, sizeof ints)},
        {"--lr, --warmup-epochs or a --freeze option", hash_bytes(sched, sizeof sched)},
        {"--wd, --momentum, --label-smoothing or --width", hash_bytes(reg, sizeof reg)},
        {"--crop-pad, --flip or --bn-reestimate", hash_bytes(aug, sizeof aug)},
        {"--seed", hash_bytes(&o->seed, sizeof o->seed)},
        {"--max-steps", hash_bytes(&o->max_steps, sizeof o->max_steps)},
        {"--resume", hash_str(o->resume)},
        {"--init", hash_str(o->init)},
        {"--local-bn", (uint64_t)o->local_bn},
        {"--qconfig", hash_str(qo ? qo->qconfig : o->qconfig)},
        {"--ckpt", hash_str(qo ? qo->ckpt : NULL)},
    };
    enum { N = sizeof f / sizeof f[0] };
    uint64_t v[2 * N]; /* max of h and max of ~h: the min and max over ranks in one call */
    for (int i = 0; i < N; i++) v[i] = f[i].h, v[N + i] = ~f[i].h;
    qat_dist_max_u64(v, 2 * N);
    for (int i = 0; i < N; i++)
        if (v[i] != ~v[N + i]) {
            qat_dist_set_error_collective();
            return qat_fail(QAT_ERR_ARG, "the %d ranks were not given the same run: %s differs "
                            "between them (every rank needs the same options and data)",
                            qat_dist_size(), f[i].name);
        }
    return QAT_OK;
}

int qat_dist_average_grads(qat_run *r) {
    if (!qat_dist_active()) return 0;
    int buckets = qat_dist_average_f32(r->model->grads, (size_t)r->model->nparams);
    if (r->qmodel && r->qmodel->nlsq > 0 && r->has_qopt)
        buckets += qat_dist_average_f32(r->qmodel->lsq_grads, (size_t)r->qmodel->nlsq);
    return buckets;
}

void qat_dist_average_bn_buffers(qat_run *r) {
    if (qat_dist_active()) qat_dist_average_f32(r->model->buffers, (size_t)r->model->nbuffers);
}

void qat_dist_epoch_totals(double *loss_sum, long *correct, long *seen) {
    if (!qat_dist_active()) return;
    double v[3] = {*loss_sum, (double)*correct, (double)*seen};
    qat_dist_sum_f64(v, 3);
    *loss_sum = v[0], *correct = (long)v[1], *seen = (long)v[2];
}

qat_status qat_dist_check_state(const qat_run *r, uint64_t *hash) {
    const qat_model *m = r->model;
    uint64_t h[4] = {hash_bytes(m->params, (size_t)m->nparams * sizeof(float)),
                     hash_bytes(m->buffers, (size_t)m->nbuffers * sizeof(float)),
                     r->has_opt ? hash_bytes(r->opt.state, qat_optim_state_floats(&r->opt) * sizeof(float)) : 0,
                     0};
    if (r->qmodel) {
        size_t n = qat_qmodel_state_bytes(r->qmodel);
        void *buf = malloc(n);
        if (!buf) return qat_fail(QAT_ERR_NOMEM, "train: out of memory");
        qat_qmodel_pack(r->qmodel, buf);
        h[3] = hash_bytes(buf, n);
        free(buf);
    }
    *hash = hash_bytes(h, sizeof h);
    if (!qat_dist_active()) return QAT_OK;
    uint64_t v[8];
    for (int i = 0; i < 4; i++) v[i] = h[i], v[4 + i] = ~h[i];
    qat_dist_max_u64(v, 8);
    static const char *what[4] = {"parameters", "BN running statistics", "optimizer state",
                                  "quantizer state"};
    for (int i = 0; i < 4; i++)
        if (v[i] != ~v[4 + i]) {
            qat_dist_set_error_collective();
            return qat_fail(QAT_ERR_NUMERIC, "the %d ranks' %s differ after step %lld (they must "
                            "stay bitwise identical; a bug, or ranks on different hardware or "
                            "builds): stopped, the last checkpoint is kept",
                            qat_dist_size(), what[i], (long long)r->step);
        }
    return QAT_OK;
}
