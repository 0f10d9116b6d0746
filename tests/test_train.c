/* End-to-end training tests on a tiny synthetic IDX dataset written to a temp directory:
 * the loss falls, a fixed seed gives bitwise-identical weights, and --resume continues exactly
 * where a run stopped. */
#include "test_util.h"
#include "train.h"
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

static char spec_path[300], data_dir[300];

static int setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qat_train_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(data_dir, sizeof data_dir, "%s/data", tmpdir);
    mkdir(data_dir, 0777);
    test_write_bars_idx(data_dir, "train", 384, 12, 1);
    test_write_bars_idx(data_dir, "t10k", 96, 12, 2);
    snprintf(spec_path, sizeof spec_path, "%s/tiny.spec", tmpdir);
    FILE *f = fopen(spec_path, "w");
    if (!f) return 1;
    fputs(tiny_spec, f);
    fclose(f);
    return 0;
}

static int teardown(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) != 0;
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
    o->quiet = 1;
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
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
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
    char out[400], path[600], line[1024];
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
        CU_ASSERT_FATAL(qat_run_evaluate(&r, te, 32, &ev) == QAT_OK);
        acc = ev.accuracy;
        qat_dataset_free(tr), qat_dataset_free(te);
    }
    CU_ASSERT(acc > 0.8f); /* the fake-quant model still separates the three classes */
    qat_run_free(&r);
    /* a bad qconfig is reported when the switch happens */
    snprintf(out, sizeof out, "%s/qfe-bad", tmpdir);
    base_opts(&o, out);
    o.qat_from_epoch = 1;
    o.qconfig = "no-such-qconfig";
    CU_ASSERT(qat_train_run(&o) != QAT_OK);
    CU_ASSERT(strstr(qat_last_error(), "no-such-qconfig") != NULL);
}

void register_train_tests(void) {
    CU_pSuite s = CU_add_suite("train", setup, teardown);
    CU_add_test(s, "loss falls on a tiny dataset", test_loss_falls);
    CU_add_test(s, "fixed seed is bitwise deterministic; resume is exact", test_deterministic_and_resume);
    CU_add_test(s, "eval of a checkpoint matches the training report", test_eval_matches_training_report);
    CU_add_test(s, "bad model, checkpoint and data are reported", test_bad_inputs);
    CU_add_test(s, "qat train --qat-from-epoch switches to fake-quant", test_qat_from_epoch);
}
