/* Issue 15: what the command line does when things go wrong — a run that diverges, a checkpoint
 * with impossible values, outputs that are not regular files, two runs on one directory,
 * leftovers of a killed run, errors that must name the right file. Runs ./qat on a tiny
 * dataset like tests/test_cli.c; skipped when ./qat is not built. The long fault harness is
 * tests/faults/ (make faults). */
#include "test_util.h"
#include "container.h"
#include "images.h"
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256], data_dir[300], spec_path[300], good_ckpt[500];
static int have_cli;


static int qat_cli(const char *args, char **out, char **err);

static int setup(void) {
    have_cli = access("./qat", X_OK) == 0;
    if (test_cli_fixture("/tmp/qat_faults_XXXXXX", tmpdir, data_dir, spec_path)) return 1;
    good_ckpt[0] = 0;
    return 0;
}

static int teardown(void) {
    return test_rm_tree(tmpdir);
}

static int qat_cli(const char *args, char **out, char **err) { return test_run_qat(tmpdir, "", args, out, err); }

static int lines(const char *s) { return test_count_lines(s); }

static int skip(void) {
    if (!have_cli) printf("\n  note: ./qat not built, fault tests skipped\n");
    return !have_cli;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* The tiny training command into dir (extra options appended). */
static int train(const char *dir, const char *extra, char **out, char **err) {
    char a[3072];
    snprintf(a, sizeof a, "train --data %s --model %s --batch 32 --threads 1 --quiet --out %s %s",
             data_dir, spec_path, dir, extra);
    return qat_cli(a, out, err);
}

/* A checkpoint after the first of three epochs of the tiny model (3 steps of 32 images each;
 * trained once per suite run): a resume has two epochs left to train. */
static const char *good(void) {
    if (good_ckpt[0]) return good_ckpt;
    char dir[400], *out, *err;
    snprintf(dir, sizeof dir, "%s/good", tmpdir);
    int code = train(dir, "--epochs 3 --max-steps 3", &out, &err);
    CU_ASSERT_FATAL(code == 0);
    free(out), free(err);
    snprintf(good_ckpt, sizeof good_ckpt, "%s/last.ckpt", dir);
    return good_ckpt;
}

/* The fixed layout of the checkpoint's "meta" section (train/checkpoint.c, ckpt_meta, pinned by
 * a _Static_assert there): byte offsets of the fields the tests change. */
enum {
    META_MEAN = 36, META_STD = 52, META_MOMENTUM = 112, META_PCT_START = 176,
    META_TOTAL_STEPS = 192, META_WARMUP_STEPS = 200,
};

/* Copies src to dst with fn applied to the named section (CRCs rewritten: the file is valid as
 * a container, only its values are wrong). */
typedef void (*mutate_fn)(void *data, uint64_t size);
static void mutate(const char *src, const char *dst, const char *section, mutate_fn fn) {
    qat_container *c;
    CU_ASSERT_FATAL(qat_container_read(src, "QATCKPT1", 1, &c) == QAT_OK);
    int n = qat_container_count(c);
    qat_section secs[16];
    void *copies[16];
    CU_ASSERT_FATAL(n <= 16);
    for (int i = 0; i < n; i++) {
        uint64_t size;
        const void *p = qat_container_find(c, qat_container_name(c, i), &size);
        copies[i] = malloc(size ? size : 1);
        memcpy(copies[i], p, size);
        snprintf(secs[i].name, sizeof secs[i].name, "%s", qat_container_name(c, i));
        secs[i].data = copies[i], secs[i].size = size;
        if (!strcmp(secs[i].name, section)) fn(copies[i], size);
    }
    CU_ASSERT_FATAL(qat_container_write(dst, "QATCKPT1", 1, secs, n) == QAT_OK);
    for (int i = 0; i < n; i++) free(copies[i]);
    qat_container_free(c);
}

static void put_f32(void *d, int off, float v) { memcpy((char *)d + off, &v, sizeof v); }
static void put_i64(void *d, int off, int64_t v) { memcpy((char *)d + off, &v, sizeof v); }
static void all_floats(void *d, uint64_t size, float v) {
    for (uint64_t i = 0; i + 4 <= size; i += 4) put_f32(d, (int)i, v);
}
static void buffers_nan(void *d, uint64_t size) { all_floats(d, size, NAN); }
static void buffers_negative(void *d, uint64_t size) { all_floats(d, size, -1.0f); }
static void optim_inf(void *d, uint64_t size) { all_floats(d, size, INFINITY); }
static void optim_huge(void *d, uint64_t size) { all_floats(d, size, 3e38f); }
static void mean_nan(void *d, uint64_t size) { put_f32(d, META_MEAN, NAN); }
static void std_zero(void *d, uint64_t size) { put_f32(d, META_STD, 0.0f); }
static void std_negative(void *d, uint64_t size) { put_f32(d, META_STD, -1.0f); }
static void pct_start_bad(void *d, uint64_t size) { put_f32(d, META_PCT_START, 7.0f); }
static void total_steps_bad(void *d, uint64_t size) { put_i64(d, META_TOTAL_STEPS, -5); }
static void warmup_negative(void *d, uint64_t size) { put_i64(d, META_WARMUP_STEPS, -3); }
static void momentum_bad(void *d, uint64_t size) { put_f32(d, META_MOMENTUM, NAN); }

/* Issue 15 point 2: `eval --ckpt` took a checkpoint with NaN or negative BN running variance,
 * a std of 0 or -1 (silently using 1), a NaN mean (blamed on t10k-images-idx3-ubyte), and
 * schedule fields out of range: each is now one line naming the checkpoint, exit 1. */
static void test_loader_refuses_bad_values(void) {
    if (skip()) return;
    static const struct {
        const char *name, *section;
        mutate_fn fn;
        const char *want;
    } cases[] = {
        {"var_nan", "buffers", buffers_nan, "BN features."},
        {"var_neg", "buffers", buffers_negative, "running_var"},
        {"mean_nan", "meta", mean_nan, "mean"},
        {"std_zero", "meta", std_zero, "std"},
        {"std_neg", "meta", std_negative, "std"},
        {"pct_start", "meta", pct_start_bad, "schedule"},
        {"total_steps", "meta", total_steps_bad, "schedule"},
        {"warmup", "meta", warmup_negative, "schedule"},
        {"momentum", "meta", momentum_bad, "optimizer"},
        {"optim_inf", "optim", optim_inf, "optimizer state"},
    };
    const char *src = good();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char bad[400], a[1024], *out, *err;
        snprintf(bad, sizeof bad, "%s/%s.ckpt", tmpdir, cases[i].name);
        mutate(src, bad, cases[i].section, cases[i].fn);
        snprintf(a, sizeof a, "eval --ckpt %s --data %s --threads 1", bad, data_dir);
        int code = qat_cli(a, &out, &err);
        char prefix[512];
        snprintf(prefix, sizeof prefix, "qat eval: %s: ", bad);
        int ok = code == 1 && lines(err) == 1 && !strncmp(err, prefix, strlen(prefix)) &&
                 strstr(err, cases[i].want) && !strstr(err, "t10k") && !*out;
        CU_ASSERT(ok);
        if (!ok) printf("\n  %s: exit %d, stderr: %s", cases[i].name, code, err);
        free(out), free(err);
    }
}

/* Every line of dir/metrics.jsonl free of nan/inf (not JSON); returns the epoch lines. */
static int metrics_clean(const char *dir) {
    char path[500];
    long n;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *s = (char *)test_slurp(path, &n);
    if (!s) return 0;
    CU_ASSERT(!strstr(s, "nan") && !strstr(s, "inf"));
    int epochs = 0;
    for (char *p = s; (p = strstr(p, "\"epoch\": ")); p++) epochs++;
    free(s);
    return epochs;
}

/* Issue 15 point 2: `train --lr 1e16 --max-steps 4` exited 0 with NaN parameters in last.ckpt;
 * with more epochs it claimed "the last good checkpoint ... is kept" when none existed, and
 * metrics.jsonl got "test_loss": -nan. Now: exit 1, no checkpoint written, the line says which
 * good one there is (none; or epoch 1's, which loads), metrics.jsonl stays JSON. */
static void test_divergence_writes_nothing(void) {
    if (skip()) return;
    char dir[400], ckpt[500], *out, *err;
    /* lr 1000 with momentum 0.99 and weight decay 0.9 (all inside their ranges) overflows the
     * BN running variance within six steps of 16 images */
    const char *wild = "--lr 1000 --sched constant --momentum 0.99 --wd 0.9";
    char a[1024];
    snprintf(dir, sizeof dir, "%s/diverge", tmpdir);
    snprintf(a, sizeof a, "%s --batch 16 --max-steps 6", wild);
    int code = train(dir, a, &out, &err);
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", dir);
    int ok = code == 1 && lines(err) == 1 && strstr(err, "diverged at epoch 1") &&
             strstr(err, "no checkpoint of this run was written") && !exists(ckpt);
    CU_ASSERT(ok);
    if (!ok) printf("\n  exit %d, last.ckpt %s, stderr: %s", code, exists(ckpt) ? "written" : "absent", err);
    free(out), free(err);
    CU_ASSERT(metrics_clean(dir) == 0);

    /* batches of 32: epoch 1 (3 steps) is fine, epoch 2 diverges; its checkpoint stays */
    snprintf(dir, sizeof dir, "%s/diverge2", tmpdir);
    snprintf(a, sizeof a, "%s --epochs 3", wild);
    code = train(dir, a, &out, &err);
    char want[600];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", dir);
    snprintf(want, sizeof want, "the last good one is %s (epoch 1, step 3)", ckpt);
    ok = code == 1 && lines(err) == 1 && strstr(err, "diverged at epoch 2") && strstr(err, want);
    CU_ASSERT(ok);
    if (!ok) printf("\n  --epochs 3: exit %d, stderr: %s", code, err);
    free(out), free(err);
    CU_ASSERT(metrics_clean(dir) == 1);
    snprintf(a, sizeof a, "eval --ckpt %s --data %s --threads 1 --quiet", ckpt, data_dir);
    code = qat_cli(a, &out, &err);
    CU_ASSERT(code == 0); /* the checkpoint it names loads */
    if (code) printf("\n  eval of the last good one: %s", err);
    free(out), free(err);
}

static int same_file(const char *a, const char *b) {
    long na, nb;
    unsigned char *x = test_slurp(a, &na), *y = test_slurp(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, (size_t)na);
    free(x), free(y);
    return same;
}

/* Issue 15 point 2: resuming from a checkpoint whose optimizer state is inf wrote an unloadable
 * checkpoint and exited 0; now the load refuses it. A huge but finite state loads, the run
 * diverges on its first steps, and the line names the checkpoint it resumed from as the last
 * good one, left as it was. */
static void test_resume_poisoned_optimizer(void) {
    if (skip()) return;
    char dir[400], bad[500], copy[500], a[2048], *out, *err;
    snprintf(dir, sizeof dir, "%s/poison", tmpdir);
    mkdir(dir, 0777);
    snprintf(bad, sizeof bad, "%s/inf.ckpt", dir);
    mutate(good(), bad, "optim", optim_inf);
    snprintf(a, sizeof a, "train --data %s --batch 32 --threads 1 --quiet --out %s --resume %s", data_dir, dir, bad);
    int code = qat_cli(a, &out, &err);
    char want[600];
    snprintf(want, sizeof want, "qat train: %s: ", bad);
    int ok = code == 1 && lines(err) == 1 && !strncmp(err, want, strlen(want)) &&
             strstr(err, "optimizer state");
    CU_ASSERT(ok);
    if (!ok) printf("\n  inf: exit %d, stderr: %s", code, err);
    free(out), free(err);
    char last[500];
    snprintf(last, sizeof last, "%s/last.ckpt", dir);
    CU_ASSERT(!exists(last));

    snprintf(bad, sizeof bad, "%s/huge.ckpt", dir);
    snprintf(copy, sizeof copy, "%s/huge.copy", dir);
    mutate(good(), bad, "optim", optim_huge);
    mutate(good(), copy, "optim", optim_huge);
    snprintf(a, sizeof a, "train --data %s --batch 32 --threads 1 --quiet --out %s --resume %s", data_dir, dir, bad);
    code = qat_cli(a, &out, &err);
    ok = code == 1 && lines(err) == 1 && strstr(err, "diverged") && strstr(err, bad) &&
         same_file(bad, copy) && !exists(last);
    CU_ASSERT(ok);
    if (!ok) printf("\n  huge: exit %d, stderr: %s", code, err);
    free(out), free(err);
}


/* A PTQ checkpoint of the good run (for convert), made once. */
static const char *ptq_ckpt(void) {
    static char path[400];
    if (path[0]) return path;
    char a[2048], *out, *err;
    snprintf(path, sizeof path, "%s/ptq.ckpt", tmpdir);
    snprintf(a, sizeof a, "ptq --ckpt %s --data %s --calib-batches 2 --batch 16 --threads 1 --quiet --out %s",
             good(), data_dir, path);
    int code = qat_cli(a, &out, &err);
    CU_ASSERT_FATAL(code == 0);
    free(out), free(err);
    return path;
}

static int is_kind(const char *path, mode_t kind) {
    struct stat st;
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == kind;
}

/* one line "qat CMD: PATH: ..." holding want, exit 1 */
static void expect_refusal(const char *args, const char *cmd, const char *path, const char *want) {
    char *out, *err, prefix[600];
    int code = qat_cli(args, &out, &err);
    snprintf(prefix, sizeof prefix, "qat %s: %s: ", cmd, path);
    int ok = code == 1 && lines(err) == 1 && !strncmp(err, prefix, strlen(prefix)) && strstr(err, want);
    CU_ASSERT(ok);
    if (!ok) printf("\n  qat %s: exit %d, stderr: %s", args, code, err);
    free(out), free(err);
}

/* Issue 15 point 3: as root `qat convert -o /dev/full` replaced the device with a regular file,
 * FIFOs likewise, and a symlink was replaced rather than written through. Every writer goes
 * through qat_output_target now: special files are refused and left as they were, a symlink's
 * target is written (the link stays). A device node of our own stands in for /dev/full. */
static void test_outputs_not_regular(void) {
    if (skip()) return;
    char fifo[400], dev[400], dir[400], a[2048];
    const char *ptq = ptq_ckpt();
    snprintf(fifo, sizeof fifo, "%s/fifo.q8", tmpdir);
    CU_ASSERT_FATAL(mkfifo(fifo, 0666) == 0);
    snprintf(a, sizeof a, "convert --ckpt %s -o %s", ptq, fifo);
    expect_refusal(a, "convert", fifo, "a FIFO, not a regular file");
    CU_ASSERT(is_kind(fifo, S_IFIFO));
    snprintf(a, sizeof a, "ptq --ckpt %s --data %s --calib-batches 1 --batch 16 --threads 1 --quiet --out %s",
             good(), data_dir, fifo);
    expect_refusal(a, "ptq", fifo, "a FIFO, not a regular file");
    CU_ASSERT(is_kind(fifo, S_IFIFO));
    snprintf(dir, sizeof dir, "%s/run-for-plot", tmpdir);
    char run[400];
    snprintf(run, sizeof run, "%s/good", tmpdir);
    snprintf(a, sizeof a, "plot %s -o %s", run, fifo);
    expect_refusal(a, "plot", fifo, "a FIFO, not a regular file");
    snprintf(a, sizeof a, "quantize --ckpt %s --data %s --threads 1 --quiet -o %s", good(), data_dir, fifo);
    expect_refusal(a, "quantize", fifo, "a FIFO, not a regular file");
    CU_ASSERT(is_kind(fifo, S_IFIFO));
    if (geteuid() == 0) { /* a character device like /dev/full (1, 7), in our own directory */
        snprintf(dev, sizeof dev, "%s/full", tmpdir);
        CU_ASSERT_FATAL(mknod(dev, S_IFCHR | 0666, makedev(1, 7)) == 0);
        snprintf(a, sizeof a, "convert --ckpt %s -o %s", ptq, dev);
        expect_refusal(a, "convert", dev, "a character device, not a regular file");
        CU_ASSERT(is_kind(dev, S_IFCHR));
    }
    snprintf(a, sizeof a, "convert --ckpt %s -o %s", ptq, tmpdir);
    expect_refusal(a, "convert", tmpdir, "a directory, not a regular file");

    /* symlinks: to an existing file (relative link), and dangling */
    char target[400], link[400], dangling[400], where[400], *out, *err;
    snprintf(target, sizeof target, "%s/real.q8", tmpdir);
    test_spit(target, "old", 3);
    snprintf(link, sizeof link, "%s/link.q8", tmpdir);
    CU_ASSERT_FATAL(symlink("real.q8", link) == 0);
    snprintf(a, sizeof a, "convert --ckpt %s -o %s", ptq, link);
    int code = qat_cli(a, &out, &err);
    struct stat st;
    CU_ASSERT(code == 0 && is_kind(link, S_IFLNK) && stat(target, &st) == 0 && st.st_size > 100);
    if (code) printf("\n  symlink: %s", err);
    free(out), free(err);
    snprintf(dangling, sizeof dangling, "%s/dangling.png", tmpdir);
    snprintf(where, sizeof where, "%s/made-through-link.png", tmpdir);
    CU_ASSERT_FATAL(symlink(where, dangling) == 0);
    snprintf(a, sizeof a, "plot %s -o %s", run, dangling);
    code = qat_cli(a, &out, &err);
    CU_ASSERT(code == 0 && is_kind(dangling, S_IFLNK) && is_kind(where, S_IFREG));
    if (code) printf("\n  dangling: %s", err);
    free(out), free(err);
}

/* Issue 15 point 4: two runs into one --out both exited 0 with their epochs interleaved. The
 * second is refused at once naming the first's pid; after a kill -9 of the holder the lock is
 * gone with it and the directory resumes. */
static void test_second_run_refused(void) {
    if (skip()) return;
    char dir[400], pidfile[500], lock[500], a[2048], *out, *err;
    snprintf(dir, sizeof dir, "%s/locked", tmpdir);
    snprintf(pidfile, sizeof pidfile, "%s/holder.pid", tmpdir);
    snprintf(lock, sizeof lock, "%s/run.lock", dir);
    snprintf(a, sizeof a, "./qat train --data %s --model %s --batch 32 --threads 1 --quiet --epochs 100000 "
             "--out %s >/dev/null 2>&1 & echo $! > %s", data_dir, spec_path, dir, pidfile);
    CU_ASSERT_FATAL(system(a) == 0);
    long n;
    char *pid = NULL;
    for (int i = 0; i < 200; i++) { /* the holder has written its pid into the lock file */
        free(pid);
        pid = (char *)test_slurp(lock, &n);
        if (pid && n > 1) break;
        usleep(50000);
    }
    char *holder = (char *)test_slurp(pidfile, &n);
    CU_ASSERT_FATAL(holder != NULL);
    holder[strcspn(holder, "\n")] = 0;
    CU_ASSERT(pid && n > 1);
    if (!pid || n <= 1) { /* no lock file: a qat without the lock; stop the holder */
        kill((pid_t)atol(holder), SIGKILL);
        free(pid), free(holder);
        return;
    }
    pid[strcspn(pid, "\n")] = 0;
    CU_ASSERT(!strcmp(pid, holder));
    int code = train(dir, "--epochs 2", &out, &err);
    char want[200];
    snprintf(want, sizeof want, "another run (pid %s) is writing to this directory", holder);
    int ok = code == 1 && lines(err) == 1 && strstr(err, want) && strstr(err, dir);
    CU_ASSERT(ok);
    if (!ok) printf("\n  second run: exit %d, stderr: %s", code, err);
    free(out), free(err);
    kill((pid_t)atol(holder), SIGKILL);
    for (int i = 0; i < 100 && kill((pid_t)atol(holder), 0) == 0; i++) usleep(50000);
    char last[500];
    snprintf(last, sizeof last, "%s/last.ckpt", dir);
    for (int i = 0; i < 200 && !exists(last); i++) usleep(50000);
    if (exists(last)) { /* the killed run's lock went with it */
        snprintf(a, sizeof a, "train --data %s --batch 32 --threads 1 --quiet --out %s --resume %s --max-steps 1",
                 data_dir, dir, last);
        code = qat_cli(a, &out, &err);
        CU_ASSERT(code == 0);
        if (code) printf("\n  resume after kill: %s", err);
        free(out), free(err);
    }
    free(pid), free(holder);
}

static int count_epoch_lines(const char *dir, int epoch) {
    char path[500], key[64];
    long n;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(key, sizeof key, "\"epoch\": %d,", epoch);
    char *s = (char *)test_slurp(path, &n);
    int c = 0;
    for (char *p = s; p && (p = strstr(p, key)); p++) c++;
    free(s);
    return c;
}

/* Issue 15 point 5: a kill -9 during a checkpoint write left *.ckpt.tmp.* that a resume never
 * removed, and after a resume metrics.jsonl had duplicate epoch lines; the epoch line was
 * appended even when its checkpoint write failed; quantize left an empty m.q8.work/. */
static void test_leftovers(void) {
    if (skip()) return;
    char dir[400], a[2048], path[600], *out, *err;
    snprintf(dir, sizeof dir, "%s/leftover", tmpdir);
    int code = train(dir, "--epochs 3 --max-steps 3", &out, &err); /* epoch 1 of 3 */
    CU_ASSERT_FATAL(code == 0);
    free(out), free(err);
    /* what a run killed in epoch 2's checkpoint write leaves: the temp file and (before this
     * fix wrote lines after checkpoints) epoch 2's line */
    snprintf(path, sizeof path, "%s/last.ckpt.tmp.99999.0", dir);
    test_spit(path, "partial", 7);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "a");
    CU_ASSERT_FATAL(f != NULL);
    fputs("{\"phase\": \"fp32\", \"epoch\": 2, \"step\": 6, \"lr\": 0.1, \"train_loss\": 1.0, "
          "\"train_acc\": 0.5, \"test_loss\": 1.0, \"test_acc\": 0.5, \"epoch_s\": 1.00, \"img_s\": 96.0}\n{\"phase\": \"fp", f);
    fclose(f);
    snprintf(a, sizeof a, "train --data %s --batch 32 --threads 1 --quiet --out %s --resume %s/last.ckpt", data_dir, dir, dir);
    code = qat_cli(a, &out, &err);
    CU_ASSERT(code == 0);
    if (code) printf("\n  resume: %s", err);
    free(out), free(err);
    snprintf(path, sizeof path, "%s/last.ckpt.tmp.99999.0", dir);
    CU_ASSERT(!exists(path));
    for (int e = 1; e <= 3; e++) {
        int c = count_epoch_lines(dir, e);
        CU_ASSERT(c == 1);
        if (c != 1) printf("\n  epoch %d: %d lines", e, c);
    }

    /* best.ckpt cannot be written (a directory stands in its place): no epoch line */
    snprintf(dir, sizeof dir, "%s/nobest", tmpdir);
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/best.ckpt", dir);
    mkdir(path, 0777);
    code = train(dir, "--epochs 1", &out, &err);
    CU_ASSERT(code == 1 && strstr(err, "best.ckpt") && count_epoch_lines(dir, 1) == 0);
    if (code != 1) printf("\n  nobest: exit %d, %s", code, err);
    free(out), free(err);

    /* quantize that fails leaves no work directory behind */
    char q8[400], work[450];
    snprintf(q8, sizeof q8, "%s/qfail/m.q8", tmpdir);
    snprintf(path, sizeof path, "%s/qfail", tmpdir);
    mkdir(path, 0777);
    snprintf(work, sizeof work, "%s.work", q8);
    snprintf(a, sizeof a, "quantize --ckpt %s/missing.ckpt --data %s --threads 1 --quiet -o %s", tmpdir, data_dir, q8);
    code = qat_cli(a, &out, &err);
    CU_ASSERT(code == 1 && !exists(work));
    if (exists(work)) printf("\n  %s left behind", work);
    free(out), free(err);
}

/* A PNG that is only its header: 8-byte signature, IHDR (w x h, 8-bit gray), an empty IDAT and
 * IEND, CRCs right: what a decompression bomb shows before its data. */
static void write_png_header(const char *path, uint32_t w, uint32_t h) {
    unsigned char b[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    unsigned char *p = b + 8;
    const unsigned char ihdr[17] = {'I', 'H', 'D', 'R', w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16,
                                    h >> 8, h, 8, 0, 0, 0, 0};
    p[3] = 13;
    memcpy(p + 4, ihdr, 17);
    uint32_t c = (uint32_t)crc32(0L, ihdr, 17);
    p[21] = c >> 24, p[22] = c >> 16, p[23] = c >> 8, p[24] = c;
    p += 25;
    const char *names[2] = {"IDAT", "IEND"};
    for (int k = 0; k < 2; k++, p += 12) {
        memcpy(p + 4, names[k], 4);
        c = (uint32_t)crc32(0L, (const unsigned char *)names[k], 4);
        p[8] = c >> 24, p[9] = c >> 16, p[10] = c >> 8, p[11] = c;
    }
    test_spit(path, b, sizeof b);
}

/* Issue 15 points 6 and 7: an odd-sized PNG in an ImageFolder sorted first made the whole set its
 * size (the error then named the spec); a 32768x32768 PNG was decoded in full (26 s, 2.1 GB)
 * before being refused; IDX label bytes of 10-255 silently made up to 256 classes. Each is now
 * one line naming the file, at once. */
static void test_errors_name_the_file(void) {
    if (skip()) return;
    char folder[400], odd[500], a[2048], *out, *err;
    snprintf(folder, sizeof folder, "%s/folder", tmpdir);
    mkdir(folder, 0777);
    test_write_bars_folder(folder, 60, 12, 3);
    snprintf(odd, sizeof odd, "%s/0/000-odd.png", folder); /* sorts before the class's images */
    uint8_t px[300];
    memset(px, 128, sizeof px);
    CU_ASSERT_FATAL(qat_png_write_gray(odd, 3, 100, px) == QAT_OK);
    snprintf(a, sizeof a, "train --data %s --model %s --batch 16 --threads 1 --quiet --epochs 1 --out %s/never",
             folder, spec_path, tmpdir);
    int code = qat_cli(a, &out, &err);
    int ok = code == 1 && lines(err) == 1 && strstr(err, odd) && strstr(err, "3x100 image in a set of 12x12");
    CU_ASSERT(ok);
    if (!ok) printf("\n  odd PNG: exit %d, stderr: %s", code, err);
    free(out), free(err);
    unlink(odd);

    char bomb[500];
    snprintf(bomb, sizeof bomb, "%s/1/000-bomb.png", folder);
    write_png_header(bomb, 32768, 32768);
    double t0 = (double)time(NULL);
    code = qat_cli(a, &out, &err);
    ok = code == 1 && lines(err) == 1 && strstr(err, bomb) && strstr(err, "refused before decoding") &&
         (double)time(NULL) - t0 < 10;
    CU_ASSERT(ok);
    if (!ok) printf("\n  bomb in a folder: exit %d, stderr: %s", code, err);
    free(out), free(err);
    char q8[400];
    snprintf(q8, sizeof q8, "%s/bomb-model.q8", tmpdir);
    snprintf(a, sizeof a, "convert --ckpt %s -o %s", ptq_ckpt(), q8);
    code = qat_cli(a, &out, &err);
    CU_ASSERT_FATAL(code == 0);
    free(out), free(err);
    snprintf(a, sizeof a, "infer %s %s --threads 1", q8, bomb);
    code = qat_cli(a, &out, &err);
    ok = code == 1 && lines(err) == 1 && strstr(err, bomb) && strstr(err, "32768x32768") && strstr(err, "takes 12x12");
    CU_ASSERT(ok);
    if (!ok) printf("\n  bomb to infer: exit %d, stderr: %s", code, err);
    free(out), free(err);

    /* IDX: a label byte of 200 in a 3-class set */
    char idx[400], labels[500];
    snprintf(idx, sizeof idx, "%s/idx200", tmpdir);
    mkdir(idx, 0777);
    test_write_bars_idx(idx, "train", 96, 12, 1);
    test_write_bars_idx(idx, "t10k", 32, 12, 2);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte", idx);
    long n;
    unsigned char *b = test_slurp(labels, &n);
    CU_ASSERT_FATAL(b && n > 20);
    b[8 + 17] = 200;
    test_spit(labels, b, (size_t)n);
    free(b);
    snprintf(a, sizeof a, "train --data %s --model %s --batch 32 --threads 1 --quiet --epochs 1 --out %s/never",
             idx, spec_path, tmpdir);
    code = qat_cli(a, &out, &err);
    ok = code == 1 && lines(err) == 1 && strstr(err, labels) && strstr(err, "label 200 of image 17");
    CU_ASSERT(ok);
    if (!ok) printf("\n  IDX label 200: exit %d, stderr: %s", code, err);
    free(out), free(err);
}

void register_faults_tests(void) {
    CU_pSuite s = CU_add_suite("faults", setup, teardown);
    CU_add_test(s, "checkpoint loader refuses NaN/negative variance, bad std/mean, schedule, optimizer", test_loader_refuses_bad_values);
    CU_add_test(s, "divergence: exit 1, no checkpoint written, names the last good one (or none)", test_divergence_writes_nothing);
    CU_add_test(s, "resume: inf optimizer state refused, huge one diverges naming the resumed file", test_resume_poisoned_optimizer);
    CU_add_test(s, "outputs: FIFO, device, directory refused; symlinks written through", test_outputs_not_regular);
    CU_add_test(s, "a second run into one --out is refused naming the holder's pid", test_second_run_refused);
    CU_add_test(s, "errors name the file: odd PNG, PNG bomb (before decoding), IDX label 200", test_errors_name_the_file);
    CU_add_test(s, "leftovers: temp checkpoints, metrics past the checkpoint, failed saves, quantize work dir", test_leftovers);
}
