/* The data pipeline of a training run, said once: the dataset as the network sees it, the
 * augmentation (chosen per dataset kind unless given), label smoothing and the step plan. One
 * record, three renderings: the start-of-training line, the {"phase": "config"} line of
 * metrics.jsonl and the checkpoint's "data" section (train/checkpoint.c). */
#include "train.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Appends printf output to buf (size bytes) at *len, truncating safely. */
static void put(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t size, size_t *len, const char *fmt, ...) {
    if (*len >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n < size - *len ? (size_t)n : size - *len - 1;
}

/* s as a JSON string body: quotes, backslashes and control characters escaped. */
static void put_json_string(char *buf, size_t size, size_t *len, const char *s) {
    put(buf, size, len, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') put(buf, size, len, "\\%c", ch);
        else if (ch < 0x20) put(buf, size, len, "\\u%04x", ch);
        else put(buf, size, len, "%c", ch);
    }
    put(buf, size, len, "\"");
}

qat_status qat_pipeline_init(qat_pipeline *p, const qat_train_opts *o, const char *phase,
                             const qat_dataset *train, const qat_dataset *test, const qat_run *r,
                             int steps_per_epoch) {
    memset(p, 0, sizeof *p);
    int crop_pad, hflip;
    qat_augment_default(train->kind, &crop_pad, &hflip);
    if (o->crop_pad != -1) {
        int side = train->h < train->w ? train->h : train->w;
        if (o->crop_pad < 0 || o->crop_pad >= side)
            return qat_fail(QAT_ERR_ARG, "train: --crop-pad %d must be in 0..%d (less than the "
                            "%dx%d images' side)", o->crop_pad, side - 1, train->h, train->w);
        crop_pad = o->crop_pad;
        p->augment_given |= QAT_PIPELINE_CROP_GIVEN;
    }
    if (o->hflip != -1) {
        if (o->hflip != 0 && o->hflip != 1)
            return qat_fail(QAT_ERR_ARG, "train: hflip %d must be 0, 1 or -1 (the dataset's "
                            "default)", o->hflip);
        hflip = o->hflip;
        p->augment_given |= QAT_PIPELINE_FLIP_GIVEN;
    }
    if (!(o->label_smoothing >= 0 && o->label_smoothing < 1))
        return qat_fail(QAT_ERR_ARG, "train: --label-smoothing %g must be in [0, 1)",
                        (double)o->label_smoothing);
    snprintf(p->phase, sizeof p->phase, "%s", phase);
    snprintf(p->kind, sizeof p->kind, "%s", train->kind[0] ? train->kind : "unknown");
    snprintf(p->data, sizeof p->data, "%s", o->data ? o->data : "");
    p->train_n = train->n, p->test_n = test->n;
    p->val_split = train->val_split;
    p->split_seed = o->seed; /* what train_loop opened the data with */
    p->h = train->h, p->w = train->w, p->c = train->c, p->nclasses = train->nclasses;
    memcpy(p->mean, r->mean, sizeof p->mean);
    memcpy(p->std, r->std, sizeof p->std);
    p->crop_pad = crop_pad, p->hflip = hflip;
    p->label_smoothing = o->label_smoothing;
    p->batch = o->batch;
    p->steps_per_epoch = steps_per_epoch;
    p->total_steps = r->sched.total_steps;
    p->start_step = r->step;
    p->opt = r->opt.kind;
    p->sched = r->sched.kind;
    p->lr = r->sched.base_lr;
    p->warmup_steps = r->sched.kind == QAT_SCHED_COSINE ? r->sched.warmup_steps : 0;
    return QAT_OK;
}

/* "0.286" or "0.491,0.482,0.447": one value per channel. */
static void put_channels(char *buf, size_t size, size_t *len, const float *v, int c) {
    for (int k = 0; k < c && k < 4; k++) put(buf, size, len, "%s%.3f", k ? "," : "", (double)v[k]);
}

static void put_schedule(char *buf, size_t size, size_t *len, const qat_pipeline *p) {
    put(buf, size, len, "%s, lr %s ", qat_opt_name((qat_opt_kind)p->opt),
        qat_sched_name((qat_sched_kind)p->sched));
    switch (p->sched) {
    case QAT_SCHED_ONECYCLE: put(buf, size, len, "peak %g", (double)p->lr); break;
    case QAT_SCHED_COSINE:
        put(buf, size, len, "peak %g, ", (double)p->lr);
        if (p->warmup_steps > 0) put(buf, size, len, "warmup %lld steps", (long long)p->warmup_steps);
        else put(buf, size, len, "no warmup");
        break;
    default: put(buf, size, len, "%g", (double)p->lr); break;
    }
}

void qat_pipeline_describe(const qat_pipeline *p, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    put(buf, size, &len, "data: %s", p->kind);
    if (strcmp(p->data, p->kind)) put(buf, size, &len, " %s", p->data);
    put(buf, size, &len, ", %d train / %d test", p->train_n, p->test_n);
    if (p->val_split > 0)
        put(buf, size, &len, " (val-split %g, seed %llu)", (double)p->val_split,
            (unsigned long long)p->split_seed);
    put(buf, size, &len, ", %dx%dx%d, %d classes, normalise mean ", p->h, p->w, p->c, p->nclasses);
    put_channels(buf, size, &len, p->mean, p->c);
    put(buf, size, &len, " std ");
    put_channels(buf, size, &len, p->std, p->c);
    put(buf, size, &len, "; augment: ");
    if (p->crop_pad > 0) put(buf, size, &len, "crop-pad %d, ", p->crop_pad);
    else put(buf, size, &len, "no crop, ");
    put(buf, size, &len, "%s", p->hflip ? "flip" : "no flip");
    int given = p->augment_given & (QAT_PIPELINE_CROP_GIVEN | QAT_PIPELINE_FLIP_GIVEN);
    if (!given) put(buf, size, &len, " (%s defaults)", p->kind);
    else if (!(given & QAT_PIPELINE_CROP_GIVEN)) put(buf, size, &len, " (crop: %s default)", p->kind);
    else if (!(given & QAT_PIPELINE_FLIP_GIVEN)) put(buf, size, &len, " (flip: %s default)", p->kind);
    if (p->label_smoothing > 0)
        put(buf, size, &len, "; label smoothing %g", (double)p->label_smoothing);
    else
        put(buf, size, &len, "; no label smoothing");
    int64_t spe = p->steps_per_epoch > 0 ? p->steps_per_epoch : 1;
    long long epochs = (long long)((p->total_steps + spe - 1) / spe);
    put(buf, size, &len, "; %lld epoch%s x %d steps of %d (", epochs, epochs == 1 ? "" : "s",
        p->steps_per_epoch, p->batch);
    put_schedule(buf, size, &len, p);
    put(buf, size, &len, ")");
    if (p->start_step > 0) put(buf, size, &len, "; resumed at step %lld", (long long)p->start_step);
}

void qat_pipeline_json(const qat_pipeline *p, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    put(buf, size, &len, "{\"phase\": \"config\", \"run\": ");
    put_json_string(buf, size, &len, p->phase);
    put(buf, size, &len, ", \"dataset\": ");
    put_json_string(buf, size, &len, p->kind);
    put(buf, size, &len, ", \"data\": ");
    put_json_string(buf, size, &len, p->data);
    put(buf, size, &len, ", \"train_images\": %d, \"test_images\": %d, \"val_split\": %g, "
        "\"split_seed\": %llu, \"height\": %d, \"width\": %d, \"channels\": %d, \"classes\": %d, "
        "\"mean\": [", p->train_n, p->test_n, (double)p->val_split,
        (unsigned long long)p->split_seed, p->h, p->w, p->c, p->nclasses);
    for (int k = 0; k < p->c && k < 4; k++) put(buf, size, &len, "%s%.6g", k ? ", " : "", (double)p->mean[k]);
    put(buf, size, &len, "], \"std\": [");
    for (int k = 0; k < p->c && k < 4; k++) put(buf, size, &len, "%s%.6g", k ? ", " : "", (double)p->std[k]);
    put(buf, size, &len, "], \"crop_pad\": %d, \"crop_pad_from\": \"%s\", \"hflip\": %s, "
        "\"hflip_from\": \"%s\", \"label_smoothing\": %g, \"epochs\": %lld, \"steps_per_epoch\": %d, "
        "\"batch\": %d, \"total_steps\": %lld, \"start_step\": %lld, \"optimizer\": \"%s\", "
        "\"lr_schedule\": \"%s\", \"lr\": %g, \"warmup_steps\": %lld}",
        p->crop_pad, p->augment_given & QAT_PIPELINE_CROP_GIVEN ? "option" : "dataset default",
        p->hflip ? "true" : "false",
        p->augment_given & QAT_PIPELINE_FLIP_GIVEN ? "option" : "dataset default",
        (double)p->label_smoothing,
        (long long)(p->steps_per_epoch > 0 ? (p->total_steps + p->steps_per_epoch - 1) / p->steps_per_epoch : 0),
        p->steps_per_epoch, p->batch, (long long)p->total_steps, (long long)p->start_step,
        qat_opt_name((qat_opt_kind)p->opt), qat_sched_name((qat_sched_kind)p->sched), (double)p->lr,
        (long long)p->warmup_steps);
}

/* Below this many optimizer steps an FP32 run from scratch reports near-chance accuracy and
 * looks broken. Measured (mbv2-tiny, 512 synthetic 28x28 digits, scripts/make_digits.py, 2,000
 * test images): 16 steps 10.0% (chance), 60-64 steps 19-27%, 240 steps 87.0%, 480 steps 91.6%;
 * 8,000 images x 4 epochs = 248 steps 95.6%. QAT fine-tunes a trained network: no minimum. */
#define QAT_FEW_STEPS 200

void qat_pipeline_warning(const qat_pipeline *p, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    if (!strcmp(p->phase, "fp32") && p->total_steps < QAT_FEW_STEPS) {
        put(buf, size, &len, "warning: only %lld optimizer steps in all (%d per epoch of %d images): "
            "too few to train from scratch (on 512 digit images 16-64 steps stayed at 10-27%% "
            "accuracy, 240 reached 87%%); use a smaller --batch or more --epochs",
            (long long)p->total_steps, p->steps_per_epoch, p->batch);
    } else if (p->sched == QAT_SCHED_COSINE && p->warmup_steps >= p->total_steps && p->total_steps > 0) {
        put(buf, size, &len, "warning: the warmup (%lld steps) covers the whole run (%lld steps): "
            "the learning rate only rises and never anneals; lower --warmup-epochs or train more "
            "--epochs", (long long)p->warmup_steps, (long long)p->total_steps);
    }
}
