/* End-to-end training tests on a tiny synthetic IDX dataset written to a temp directory:
 * the loss falls, a fixed seed gives bitwise-identical weights, and --resume continues exactly
 * where a run stopped. */
#include "test_util.h"
#include "container.h"
#include "plot.h"
#include "train.h"
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tiny_spec =
    "# tiny test network\n"
    "name tiny\n"
    "stem conv k=3 c=8 s=1 act=relu6\n"
    "block ir t=2 c=8 n=1 s=1\n"
    "block ir t=2 c=16 n=1 s=2\n"
    "head conv k=1 c=16 act=relu6\n"
    "pool avg\n"
    "classifier\n";

static char spec_path[300], data_dir[300], folder_dir[300];

static int setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qat_train_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(data_dir, sizeof data_dir, "%s/data", tmpdir);
    mkdir(data_dir, 0777);
    test_write_bars_idx(data_dir, "train", 384, 12, 1);
    test_write_bars_idx(data_dir, "t10k", 96, 12, 2);
    snprintf(folder_dir, sizeof folder_dir, "%s/folder", tmpdir);
    test_write_bars_folder(folder_dir, 150, 12, 3); /* 135 train / 15 held out (val-split 0.1) */
    snprintf(spec_path, sizeof spec_path, "%s/tiny.spec", tmpdir);
    FILE *f = fopen(spec_path, "w");
    if (!f) return 1;
    fputs(tiny_spec, f);
    fclose(f);
    return 0;
}

static int teardown(void) {
    return test_rm_tree(tmpdir);
}

static void base_opts(qat_train_opts *o, const char *out) {
    qat_train_opts_default(o);
    o->data = data_dir;
    o->model = spec_path;
    o->out_dir = out;
    o->epochs = 3;
    o->batch = 32;
    o->threads = 1;
    o->lr = 0.05f;
    o->seed = 7;
}

static qat_run load(const char *dir, const char *file) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    qat_run r;
    qat_status st = qat_checkpoint_load(path, &r);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    return r;
}

/* Reads test_loss/test_acc of the first and last lines of metrics.jsonl. */
static void metrics(const char *dir, int epochs, float *first_loss, float *last_loss,
                    float *last_acc) {
    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "\"phase\": \"config\"")) continue; /* written when a run starts */
        float tl = -1, ta = -1;
        char *p = strstr(line, "\"train_loss\": ");
        CU_ASSERT_FATAL(p != NULL);
        tl = strtof(p + 14, NULL);
        p = strstr(line, "\"test_acc\": ");
        CU_ASSERT_FATAL(p != NULL);
        ta = strtof(p + 12, NULL);
        if (n++ == 0) *first_loss = tl;
        *last_loss = tl, *last_acc = ta;
    }
    fclose(f);
    CU_ASSERT(n == epochs);
}

static void test_loss_falls(void) {
    char out[400];
    snprintf(out, sizeof out, "%s/a", tmpdir);
    qat_train_opts o;
    base_opts(&o, out);
    o.epochs = 6;
    o.sched = QAT_SCHED_CONSTANT;
    qat_status st = qat_train_run(&o);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    float l0 = 0, l1 = 0, acc = 0;
    metrics(out, 6, &l0, &l1, &acc);
    CU_ASSERT(l1 < 0.7f * l0);
    CU_ASSERT(acc > 0.8f); /* three well-separated classes */
    qat_run r = load(out, "last.ckpt");
    CU_ASSERT(r.epoch == 6);
    CU_ASSERT(r.step == 6 * (384 / 32));
    qat_run_free(&r);
}

static void test_threads_bitwise(void) {
    /* 1 and 2 threads give the same weights to the bit: every reduction of a training step is
     * chunked by shape, never by thread count (batch 128 takes the depthwise weight gradient
     * of the first block over the threaded size). */
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/threads1", tmpdir);
    snprintf(b, sizeof b, "%s/threads2", tmpdir);
    qat_train_opts o;
    base_opts(&o, a);
    o.batch = 128;
    o.epochs = 1;
    o.max_steps = 2;
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    base_opts(&o, b);
    o.batch = 128;
    o.epochs = 1;
    o.max_steps = 2;
    o.threads = 2;
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    qat_run ra = load(a, "last.ckpt"), rb = load(b, "last.ckpt");
    CU_ASSERT_FATAL(ra.model->nparams == rb.model->nparams);
    CU_ASSERT(memcmp(ra.model->params, rb.model->params,
                     (size_t)ra.model->nparams * sizeof(float)) == 0);
    CU_ASSERT(memcmp(ra.model->buffers, rb.model->buffers,
                     (size_t)ra.model->nbuffers * sizeof(float)) == 0);
    qat_run_free(&ra), qat_run_free(&rb);
}

static void test_deterministic_and_resume(void) {
    char a[400], b[400], c[400];
    snprintf(a, sizeof a, "%s/det1", tmpdir);
    snprintf(b, sizeof b, "%s/det2", tmpdir);
    snprintf(c, sizeof c, "%s/resumed", tmpdir);
    qat_train_opts o;
    base_opts(&o, a);
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    base_opts(&o, b);
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    /* stop mid-epoch 2, then resume from the checkpoint it left */
    base_opts(&o, c);
    o.max_steps = 17;
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    qat_run mid = load(c, "last.ckpt");
    CU_ASSERT(mid.step == 17);
    qat_run_free(&mid);
    char resume[600];
    snprintf(resume, sizeof resume, "%s/last.ckpt", c);
    /* a --model that contradicts the checkpoint is refused, and the checkpoint stays as it was */
    base_opts(&o, c);
    o.resume = resume;
    o.model = "mbv1-tiny";
    CU_ASSERT(qat_train_run(&o) == QAT_ERR_MISMATCH && strstr(qat_last_error(), "another network"));
    qat_run still = load(c, "last.ckpt");
    CU_ASSERT(still.step == 17);
    qat_run_free(&still);
    base_opts(&o, c);
    o.resume = resume;
    qat_status st = qat_train_run(&o);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);

    qat_run ra = load(a, "last.ckpt"), rb = load(b, "last.ckpt"), rc = load(c, "last.ckpt");
    CU_ASSERT_FATAL(ra.model->nparams == rb.model->nparams);
    size_t bytes = (size_t)ra.model->nparams * sizeof(float);
    CU_ASSERT(memcmp(ra.model->params, rb.model->params, bytes) == 0);
    CU_ASSERT(memcmp(ra.model->params, rc.model->params, bytes) == 0);
    CU_ASSERT(memcmp(ra.model->buffers, rc.model->buffers,
                     (size_t)ra.model->nbuffers * sizeof(float)) == 0);
    CU_ASSERT(memcmp(ra.opt.state, rc.opt.state,
                     (size_t)qat_optim_state_floats(&ra.opt) * sizeof(float)) == 0);
    CU_ASSERT(rc.step == ra.step && rc.epoch == ra.epoch);
    qat_run_free(&ra), qat_run_free(&rb), qat_run_free(&rc);
}

static void test_eval_matches_training_report(void) {
    char out[400];
    snprintf(out, sizeof out, "%s/a", tmpdir);
    qat_run r = load(out, "last.ckpt");
    qat_data_opts d;
    memset(&d, 0, sizeof d);
    qat_dataset *tr, *te;
    CU_ASSERT_FATAL(qat_dataset_open(data_dir, &d, &tr, &te) == QAT_OK);
    qat_eval_result ev;
    CU_ASSERT_FATAL(qat_evaluate(r.model, te, r.mean, r.std, 7, &ev) == QAT_OK);
    float l0, l1, acc;
    metrics(out, 6, &l0, &l1, &acc);
    CU_ASSERT(ev.n == 96);
    CU_ASSERT(fabsf(ev.accuracy - acc) < 1e-4f); /* batch size of evaluation does not matter */
    qat_dataset_free(tr), qat_dataset_free(te);
    qat_run_free(&r);
}

static void test_bad_inputs(void) {
    char out[400], path[600];
    snprintf(out, sizeof out, "%s/bad", tmpdir);
    qat_train_opts o;
    base_opts(&o, out);
    o.model = "no-such-model";
    CU_ASSERT(qat_train_run(&o) != QAT_OK);
    CU_ASSERT(strstr(qat_last_error(), "no-such-model") != NULL);
    /* a checkpoint that is not one */
    snprintf(path, sizeof path, "%s/garbage.ckpt", tmpdir);
    FILE *f = fopen(path, "wb");
    fputs("definitely not a checkpoint", f);
    fclose(f);
    qat_run r;
    CU_ASSERT(qat_checkpoint_load(path, &r) != QAT_OK);
    CU_ASSERT(strstr(qat_last_error(), "garbage.ckpt") != NULL);
    /* resuming a checkpoint of other input shape is rejected */
    base_opts(&o, out);
    o.data = "/nonexistent/dir";
    CU_ASSERT(qat_train_run(&o) != QAT_OK);
    CU_ASSERT(strstr(qat_last_error(), "/nonexistent/dir") != NULL);
}

/* qat train --qat-from-epoch 3: epochs 1-2 FP32, epoch 3 on with fake-quant; the checkpoint
 * then carries the quant state and resuming it continues the QAT phase. */
static void test_qat_from_epoch(void) {
    char out[400], path[600], line[4096];
    snprintf(out, sizeof out, "%s/qfe", tmpdir);
    qat_train_opts o;
    base_opts(&o, out);
    o.epochs = 4;
    o.qat_from_epoch = 3;
    qat_status st = qat_train_run(&o);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    const char *expect[4] = {"fp32", "fp32", "qat", "qat"};
    int n = 0;
    while (fgets(line, sizeof line, f) && n < 4) {
        if (strstr(line, "\"phase\": \"config\"")) continue;
        char want[64];
        snprintf(want, sizeof want, "\"phase\": \"%s\"", expect[n]);
        CU_ASSERT(strstr(line, want) != NULL);
        n++;
    }
    fclose(f);
    CU_ASSERT(n == 4);
    qat_run r = load(out, "last.ckpt");
    CU_ASSERT(r.qmodel != NULL);
    float acc = 0;
    if (r.qmodel) {
        qat_data_opts d;
        memset(&d, 0, sizeof d);
        qat_dataset *tr, *te;
        CU_ASSERT_FATAL(qat_dataset_open(data_dir, &d, &tr, &te) == QAT_OK);
        qat_eval_result ev;
        CU_ASSERT_FATAL(qat_run_evaluate(&r, te, 32, &ev, NULL) == QAT_OK);
        acc = ev.accuracy;
        qat_dataset_free(tr), qat_dataset_free(te);
    }
    CU_ASSERT(acc > 0.8f); /* the fake-quant model still separates the three classes */
    qat_run_free(&r);
    /* a bad qconfig is reported (before the data is read: test_option_combinations_checked_first) */
    snprintf(out, sizeof out, "%s/qfe-bad", tmpdir);
    base_opts(&o, out);
    o.qat_from_epoch = 1;
    o.qconfig = "no-such-qconfig";
    CU_ASSERT(qat_train_run(&o) != QAT_OK);
    CU_ASSERT(strstr(qat_last_error(), "no-such-qconfig") != NULL);
}

/* The lines a run's events become on the command line's stderr (cli/progress.c: the start line
 * and its warning, "qat: " notes, epoch and stop lines; the progress bar left out). */
typedef struct {
    char *buf;
    size_t size, len;
} event_lines;

static void put_line(event_lines *t, const char *prefix, const char *text) {
    int n = snprintf(t->buf + t->len, t->size - t->len, "%s%s\n", prefix, text);
    if (n > 0) t->len += (size_t)n < t->size - t->len ? (size_t)n : t->size - t->len - 1;
}

static void collect_events(const qat_event *e, void *user) {
    event_lines *t = user;
    if (e->kind == QAT_EVENT_STEP || e->kind == QAT_EVENT_DONE) return;
    put_line(t, e->kind == QAT_EVENT_NOTE ? "qat: " : "", e->text);
    if (e->kind == QAT_EVENT_START && e->warning) put_line(t, "", e->warning);
}

/* Runs o with stderr captured into err (size bytes) and stdout discarded; with lines, the
 * run's events as the command line prints them go to lines (lsize bytes). */
static qat_status run_captured(const qat_train_opts *o, char *err, size_t size, char *lines,
                               size_t lsize) {
    event_lines t = {lines, lsize, 0};
    qat_train_opts oe = *o;
    if (lines) {
        lines[0] = 0;
        oe.on_event = collect_events, oe.event_user = &t;
    }
    char path[400];
    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    fflush(stdout), fflush(stderr);
    int saved_err = dup(2), saved_out = dup(1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), null = open("/dev/null", O_WRONLY);
    CU_ASSERT_FATAL(fd >= 0 && null >= 0 && saved_err >= 0 && saved_out >= 0);
    dup2(fd, 2), dup2(null, 1);
    close(fd), close(null);
    qat_status st = qat_train_run(&oe);
    fflush(stdout), fflush(stderr);
    dup2(saved_err, 2), dup2(saved_out, 1);
    close(saved_err), close(saved_out);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    size_t n = fread(err, 1, size - 1, f);
    err[n] = 0;
    fclose(f);
    return st;
}

static void folder_opts(qat_train_opts *o, const char *out) {
    base_opts(o, out);
    o->data = folder_dir;
    o->epochs = 1;
}

/* The augmentation comes from the dataset kind unless given, and what is recorded is what the
 * loader got: an ImageFolder run with the defaults is bitwise the run with hflip = 0 given. */
/* Combinations a run cannot honour fail before the data is read: the data path here does not
 * exist, so an error about the options (not about the data) proves the order, and nothing is
 * written. */
static void test_option_combinations_checked_first(void) {
    char out[400], missing[400];
    snprintf(out, sizeof out, "%s/combo", tmpdir);
    snprintf(missing, sizeof missing, "%s/no-such-data", tmpdir);
    struct {
        int from, epochs;
        const char *qconfig;
        float freeze_bn;
        const char *want;
    } cases[] = {
        {2, 3, "lsq", QAT_FREEZE_AUTO, "does not support the lsq qconfig"},
        {5, 3, NULL, QAT_FREEZE_AUTO, "--qat-from-epoch 5 is after the last epoch (--epochs 3)"},
        {1, 3, "int3", QAT_FREEZE_AUTO, "unknown preset 'int3'"},
        {0, 3, "w4a8", QAT_FREEZE_AUTO, "give --qat-from-epoch K too"},
        {0, 3, NULL, 1.0f, "give --qat-from-epoch K too"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qat_train_opts o;
        base_opts(&o, out);
        o.data = missing;
        o.qat_from_epoch = cases[i].from;
        o.epochs = cases[i].epochs;
        o.qconfig = cases[i].qconfig;
        o.freeze_bn_epochs = cases[i].freeze_bn;
        qat_status st = qat_train_run(&o);
        int ok = st == QAT_ERR_ARG && strstr(qat_last_error(), cases[i].want);
        CU_ASSERT(ok);
        if (!ok) printf("\n  case %zu: status %d, %s\n", i, (int)st, qat_last_error());
    }
    /* a combination that is fine gets as far as opening the data (the check is not over-eager) */
    qat_train_opts o;
    base_opts(&o, out);
    o.data = missing;
    o.qat_from_epoch = 3;
    CU_ASSERT(qat_train_run(&o) == QAT_ERR_IO); /* got as far as opening the data */
    CU_ASSERT(access(out, F_OK) != 0);
    qat_qat_opts qo;
    qat_qat_opts_default(&qo);
    qo.train.data = missing;
    qo.ckpt = missing;
    qo.qconfig = "int3";
    CU_ASSERT(qat_qat_run(&qo) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "int3") != NULL);
}

static void test_augment_follows_dataset(void) {
    char a[400], b[400], c[400];
    snprintf(a, sizeof a, "%s/aug-default", tmpdir);
    snprintf(b, sizeof b, "%s/aug-noflip", tmpdir);
    snprintf(c, sizeof c, "%s/aug-flip", tmpdir);
    qat_train_opts o;
    folder_opts(&o, a);
    CU_ASSERT(o.hflip == -1 && o.crop_pad == -1); /* the defaults defer to the dataset */
    qat_status st = qat_train_run(&o);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    folder_opts(&o, b);
    o.hflip = 0, o.crop_pad = QAT_CROP_PAD_GENERIC;
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    folder_opts(&o, c);
    o.hflip = 1;
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    qat_run ra = load(a, "last.ckpt"), rb = load(b, "last.ckpt"), rc = load(c, "last.ckpt");
    CU_ASSERT_FATAL(ra.has_pipeline && rb.has_pipeline && rc.has_pipeline);
    CU_ASSERT_STRING_EQUAL(ra.pipeline.kind, "imagefolder");
    CU_ASSERT(ra.pipeline.hflip == 0 && ra.pipeline.crop_pad == QAT_CROP_PAD_GENERIC);
    CU_ASSERT(ra.pipeline.augment_given == 0);
    CU_ASSERT(rb.pipeline.augment_given == (QAT_PIPELINE_CROP_GIVEN | QAT_PIPELINE_FLIP_GIVEN));
    CU_ASSERT(rc.pipeline.hflip == 1 && rc.pipeline.augment_given == QAT_PIPELINE_FLIP_GIVEN);
    size_t bytes = (size_t)ra.model->nparams * sizeof(float);
    CU_ASSERT(memcmp(ra.model->params, rb.model->params, bytes) == 0);
    CU_ASSERT(memcmp(ra.model->params, rc.model->params, bytes) != 0); /* flips did happen */
    qat_run_free(&ra), qat_run_free(&rb), qat_run_free(&rc);
    /* an IDX folder is generic too (test_loss_falls trained on one) */
    char idx_run[400];
    snprintf(idx_run, sizeof idx_run, "%s/a", tmpdir);
    qat_run ri = load(idx_run, "last.ckpt");
    CU_ASSERT(ri.has_pipeline && !strcmp(ri.pipeline.kind, "idx") && ri.pipeline.hflip == 0);
    qat_run_free(&ri);

    /* the built-in Fashion-MNIST keeps its recipe (no files needed: the kind decides) */
    qat_dataset *tr = qat_dataset_alloc(4, 28, 28, 1, 10, "fm train");
    qat_dataset *te = qat_dataset_alloc(2, 28, 28, 1, 10, "fm test");
    CU_ASSERT_FATAL(tr && te);
    snprintf(tr->kind, sizeof tr->kind, "fashion-mnist");
    qat_run r;
    memset(&r, 0, sizeof r);
    r.seed = 1;
    qat_sched_default(&r.sched, QAT_SCHED_ONECYCLE, 0.1f, 15 * 468);
    qat_train_opts_default(&o);
    o.data = "fashion-mnist";
    qat_pipeline p;
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_OK);
    CU_ASSERT(p.hflip == 1 && p.crop_pad == 2 && p.augment_given == 0);
    o.hflip = 0;
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_OK);
    CU_ASSERT(p.hflip == 0 && p.augment_given == QAT_PIPELINE_FLIP_GIVEN);
    o.hflip = -1;
    snprintf(tr->kind, sizeof tr->kind, "imagefolder");
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_OK);
    CU_ASSERT(p.hflip == 0 && p.crop_pad == QAT_CROP_PAD_GENERIC);
    /* values that do not fit are refused, naming the option */
    o.crop_pad = 28;
    CU_ASSERT(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_ERR_ARG &&
              strstr(qat_last_error(), "--crop-pad 28"));
    o.crop_pad = -2;
    CU_ASSERT(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_ERR_ARG &&
              strstr(qat_last_error(), "--crop-pad -2"));
    o.crop_pad = -1, o.hflip = 2;
    CU_ASSERT(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_ERR_ARG &&
              strstr(qat_last_error(), "hflip 2"));
    o.hflip = -1, o.label_smoothing = 1.0f;
    CU_ASSERT(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_ERR_ARG &&
              strstr(qat_last_error(), "--label-smoothing"));
    /* warnings: few steps from scratch (not for QAT), a warmup as long as the run */
    o.crop_pad = -1, o.label_smoothing = 0.05f;
    char warn[1024];
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_OK);
    qat_pipeline_warning(&p, warn, sizeof warn);
    CU_ASSERT_STRING_EQUAL(warn, ""); /* the Fashion-MNIST recipe: 7020 steps */
    qat_sched_default(&r.sched, QAT_SCHED_ONECYCLE, 0.1f, 4 * 4);
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 4) == QAT_OK);
    qat_pipeline_warning(&p, warn, sizeof warn);
    CU_ASSERT(!strncmp(warn, "warning: only 16 optimizer steps", 32));
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "qat", tr, te, &r, 4) == QAT_OK);
    qat_pipeline_warning(&p, warn, sizeof warn);
    CU_ASSERT_STRING_EQUAL(warn, "");
    qat_sched_default(&r.sched, QAT_SCHED_COSINE, 0.1f, 3 * 468);
    r.sched.warmup_steps = 3 * 468;
    CU_ASSERT_FATAL(qat_pipeline_init(&p, &o, "fp32", tr, te, &r, 468) == QAT_OK);
    qat_pipeline_warning(&p, warn, sizeof warn);
    CU_ASSERT(strstr(warn, "warning: the warmup (1404 steps) covers the whole run (1404 steps)") == warn);
    qat_dataset_free(tr), qat_dataset_free(te);
    /* and through a real run: nothing written */
    folder_opts(&o, c);
    o.crop_pad = 12;
    CU_ASSERT(qat_train_run(&o) == QAT_ERR_ARG && strstr(qat_last_error(), "--crop-pad 12"));
}

/* One start line with the whole pipeline (an event, printed by the command line); the same as
 * the first line of metrics.jsonl and in the checkpoint; nothing with quiet. */
static void test_start_line(void) {
    char out[400], path[600], printed[16384], err[16384], line[4096], want[1024];
    snprintf(out, sizeof out, "%s/start", tmpdir);
    qat_train_opts o;
    folder_opts(&o, out);
    o.epochs = 2;
    /* err: what the command line prints on stderr for this run's events */
    qat_status st = run_captured(&o, printed, sizeof printed, err, sizeof err);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT_STRING_EQUAL(printed, ""); /* the library itself prints nothing */
    snprintf(want, sizeof want, "data: imagefolder %s, 135 train / 15 test (val-split 0.1, seed 7), "
             "12x12x1, 3 classes, normalise mean ", folder_dir);
    int ok = strncmp(err, want, strlen(want)) == 0;
    CU_ASSERT(ok);
    if (!ok) printf("\n  got: %.300s\n  want: %s\n", err, want);
    const char *tail = "; augment: no crop, no flip (imagefolder defaults); label smoothing 0.05; "
                       "2 epochs x 4 steps of 32 (sgd, lr onecycle peak 0.05)\n";
    char *nl = strchr(err, '\n');
    CU_ASSERT_FATAL(nl != NULL);
    ok = (size_t)(nl + 1 - err) > strlen(tail) && !strncmp(nl + 1 - strlen(tail), tail, strlen(tail));
    CU_ASSERT(ok);
    if (!ok) printf("\n  got: %.*s\n  want tail: %s", (int)(nl + 1 - err), err, tail);
    int starts = 0;
    for (const char *q = err; q; q = strchr(q, '\n'), q = q ? q + 1 : NULL)
        starts += !strncmp(q, "data: ", 6);
    CU_ASSERT(starts == 1);
    CU_ASSERT(strstr(err, "epoch 2: train loss") != NULL);
    /* 8 steps: said right under it */
    CU_ASSERT(!strncmp(nl + 1, "warning: only 8 optimizer steps in all (4 per epoch of 32 images)", 65));
    /* the checkpoint says the same (qat summary --ckpt prints it) */
    qat_run r = load(out, "last.ckpt");
    CU_ASSERT_FATAL(r.has_pipeline);
    qat_pipeline_describe(&r.pipeline, line, sizeof line);
    CU_ASSERT(strlen(line) == (size_t)(nl - err) && !strncmp(line, err, (size_t)(nl - err)));
    CU_ASSERT_STRING_EQUAL(r.pipeline.phase, "fp32");
    CU_ASSERT(r.pipeline.train_n == 135 && r.pipeline.test_n == 15 && r.pipeline.nclasses == 3);
    CU_ASSERT(r.pipeline.mean[0] == r.mean[0] && r.pipeline.std[0] == r.std[0]);
    qat_run_free(&r);
    /* metrics.jsonl opens with the config line; the plots' reader skips it */
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    const char *head = "{\"phase\": \"config\", \"run\": \"fp32\", \"dataset\": \"imagefolder\", ";
    CU_ASSERT(!strncmp(line, head, strlen(head)));
    const char *keys[] = {"\"train_images\": 135", "\"test_images\": 15", "\"val_split\": 0.1",
                          "\"split_seed\": 7", "\"classes\": 3", "\"mean\": [", "\"crop_pad\": 0",
                          "\"crop_pad_from\": \"dataset default\"", "\"hflip\": false",
                          "\"label_smoothing\": 0.05", "\"steps_per_epoch\": 4", "\"lr_schedule\": \"onecycle\""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        CU_ASSERT(strstr(line, keys[k]) != NULL);
        if (!strstr(line, keys[k])) printf("\n  %s missing from %s", keys[k], line);
    }
    qat_metrics m;
    st = qat_metrics_read(path, &m);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT(m.n == 2 && m.rows[0].epoch == 1 && m.rows[1].epoch == 2);
    qat_metrics_free(&m);
    /* --quiet (no callback) prints nothing */
    snprintf(out, sizeof out, "%s/start-quiet", tmpdir);
    folder_opts(&o, out);
    CU_ASSERT_FATAL(run_captured(&o, err, sizeof err, NULL, 0) == QAT_OK);
    CU_ASSERT_STRING_EQUAL(err, "");
}

/* Checkpoints written before the "data" section existed still load (no pipeline then), and
 * saving such a run writes the old layout again. */
static void test_old_checkpoint_loads(void) {
    char path[600], old[600], again[600];
    snprintf(path, sizeof path, "%s/a/last.ckpt", tmpdir);
    snprintf(old, sizeof old, "%s/old-format.ckpt", tmpdir);
    snprintf(again, sizeof again, "%s/old-again.ckpt", tmpdir);
    static const char magic[8] = {'Q', 'A', 'T', 'C', 'K', 'P', 'T', '1'};
    qat_container *c;
    CU_ASSERT_FATAL(qat_container_read(path, magic, 1, &c) == QAT_OK);
    qat_section secs[16];
    int n = 0, had_data = 0;
    for (int i = 0; i < qat_container_count(c) && n < 16; i++) {
        const char *name = qat_container_name(c, i);
        if (!strcmp(name, "data")) {
            had_data = 1;
            continue;
        }
        snprintf(secs[n].name, sizeof secs[n].name, "%s", name);
        secs[n].data = qat_container_find(c, name, &secs[n].size);
        n++;
    }
    CU_ASSERT(had_data && n == 5); /* meta spec params buffers optim: the version-1 layout */
    CU_ASSERT_FATAL(qat_container_write(old, magic, 1, secs, n) == QAT_OK);
    qat_container_free(c);
    qat_run now = load(tmpdir, "a/last.ckpt"), before;
    qat_status st = qat_checkpoint_load(old, &before);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT(now.has_pipeline && !before.has_pipeline);
    CU_ASSERT(memcmp(now.model->params, before.model->params,
                     (size_t)now.model->nparams * sizeof(float)) == 0);
    CU_ASSERT(before.step == now.step && before.epoch == now.epoch);
    CU_ASSERT_FATAL(qat_checkpoint_save(again, &before) == QAT_OK);
    long la = 0, lb = 0;
    unsigned char *ba = test_slurp(old, &la), *bb = test_slurp(again, &lb);
    CU_ASSERT(la > 0 && la == lb && !memcmp(ba, bb, (size_t)la)); /* byte for byte */
    free(ba), free(bb);
    qat_run_free(&now), qat_run_free(&before);
    /* a "data" section too short for the record is a format error naming it */
    CU_ASSERT_FATAL(qat_container_read(old, magic, 1, &c) == QAT_OK);
    for (int i = 0; i < n; i++) secs[i].data = qat_container_find(c, secs[i].name, &secs[i].size);
    char junk[100] = {0};
    secs[n] = (qat_section){"data", junk, sizeof junk};
    CU_ASSERT_FATAL(qat_container_write(again, magic, 1, secs, n + 1) == QAT_OK);
    qat_container_free(c);
    CU_ASSERT(qat_checkpoint_load(again, &before) == QAT_ERR_FORMAT &&
              strstr(qat_last_error(), "section 'data'"));
}

/* Training and evaluation whose step outgrows qat_set_memory_limit return QAT_ERR_NOMEM (the
 * library does not abort), and run once the cap is lifted. */
static void test_out_of_memory(void) {
    char out[400], ckpt[600];
    snprintf(out, sizeof out, "%s/oom", tmpdir);
    qat_train_opts o;
    base_opts(&o, out);
    o.epochs = 1;
    qat_set_memory_limit(64 << 10);
    qat_status st = qat_train_run(&o);
    CU_ASSERT(st == QAT_ERR_NOMEM && strstr(qat_last_error(), "out of memory"));
    qat_set_memory_limit(0);
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", out);
    qat_eval_result ev;
    qat_set_memory_limit(64 << 10);
    CU_ASSERT(qat_checkpoint_evaluate(ckpt, data_dir, &ev) == QAT_ERR_NOMEM);
    qat_set_memory_limit(0);
    CU_ASSERT(qat_checkpoint_evaluate(ckpt, data_dir, &ev) == QAT_OK && ev.n == 96);
}

void register_train_tests(void) {
    CU_pSuite s = CU_add_suite("train", setup, teardown);
    CU_add_test(s, "loss falls on a tiny dataset", test_loss_falls);
    CU_add_test(s, "fixed seed is bitwise deterministic; resume is exact", test_deterministic_and_resume);
    CU_add_test(s, "1 and 2 threads train to the same bits", test_threads_bitwise);
    CU_add_test(s, "eval of a checkpoint matches the training report", test_eval_matches_training_report);
    CU_add_test(s, "bad model, checkpoint and data are reported", test_bad_inputs);
    CU_add_test(s, "qat train --qat-from-epoch switches to fake-quant", test_qat_from_epoch);
    CU_add_test(s, "option combinations are checked before the data is read", test_option_combinations_checked_first);
    CU_add_test(s, "augmentation follows the dataset kind unless given", test_augment_follows_dataset);
    CU_add_test(s, "start line = metrics config line = checkpoint record", test_start_line);
    CU_add_test(s, "a checkpoint without the data section loads", test_old_checkpoint_loads);
    CU_add_test(s, "out of memory is QAT_ERR_NOMEM, not an abort", test_out_of_memory);
}
