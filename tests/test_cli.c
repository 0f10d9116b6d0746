/* The qat command line as a user meets it: ./qat (built by `make test` next to the suite) is
 * run on a tiny dataset; exit codes, the one-line errors, the start-of-training line, `qat
 * plot` on a metrics.jsonl that opens with the config line, and `qat summary --ckpt`. Skipped
 * (with a note) when ./qat is not there, e.g. under `make asan` without a normal build. */
#include "test_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256], data_dir[300], spec_path[300];
static int have_cli;


static int setup(void) {
    have_cli = access("./qat", X_OK) == 0;
    if (test_cli_fixture("/tmp/qat_cli_XXXXXX", tmpdir, data_dir, spec_path)) return 1;
    return 0;
}

static int teardown(void) {
    return test_rm_tree(tmpdir);
}

/* Runs "./qat ARGS" with stdout and stderr into out and err (malloc'd, NUL-terminated);
 * returns the exit status. */
static int qat_cli(const char *args, char **out, char **err) { return test_run_qat(tmpdir, "", args, out, err); }

static int lines(const char *s) { return test_count_lines(s); }

static int skip(void) {
    if (!have_cli) printf("\n  note: ./qat not built, CLI test skipped\n");
    return !have_cli;
}

/* Contradicting or out-of-range augmentation options: one line naming the option, exit 2. */
static void expect_usage_error(const char *args, const char *names) {
    char *out, *err;
    int code = qat_cli(args, &out, &err);
    int ok = code == 2 && lines(err) == 1 && strstr(err, names) && !*out;
    CU_ASSERT(ok);
    if (!ok) printf("\n  qat %s: exit %d, stderr: %s", args, code, err);
    free(out), free(err);
}

static void test_cli_bad_augment(void) {
    if (skip()) return;
    char args[1024];
    snprintf(args, sizeof args, "train --data %s --flip --no-flip", data_dir);
    expect_usage_error(args, "--flip and --no-flip");
    snprintf(args, sizeof args, "qat --ckpt x.ckpt --data %s --no-flip --flip", data_dir);
    expect_usage_error(args, "--flip and --no-flip");
    snprintf(args, sizeof args, "train --data %s --crop-pad -1", data_dir);
    expect_usage_error(args, "--crop-pad");
    /* too large for the 12x12 images: found once the data is open, still exit 2 */
    snprintf(args, sizeof args, "train --data %s --model %s --batch 32 --crop-pad 12 --out %s/never --quiet",
             data_dir, spec_path, tmpdir);
    expect_usage_error(args, "--crop-pad 12");
    char never[400];
    snprintf(never, sizeof never, "%s/never", tmpdir);
    CU_ASSERT(access(never, F_OK) != 0); /* nothing written */
    expect_usage_error("summary --ckpt x.ckpt --model mbv1-tiny", "--ckpt");
}

/* A run prints its pipeline first; plot and summary read what it wrote. */
static void test_cli_start_line_plot_summary(void) {
    if (skip()) return;
    char args[1024], *out, *err;
    snprintf(args, sizeof args, "train --data %s --model %s --epochs 2 --batch 32 --threads 1 "
             "--out %s/run", data_dir, spec_path, tmpdir);
    int code = qat_cli(args, &out, &err);
    CU_ASSERT_FATAL(code == 0);
    char want[600];
    snprintf(want, sizeof want, "data: idx %s, 96 train / 32 test, 12x12x1, 3 classes, normalise "
             "mean ", data_dir);
    CU_ASSERT(!strncmp(err, want, strlen(want)));
    CU_ASSERT(strstr(err, "; augment: no crop, no flip (idx defaults); label smoothing 0.05; "
                          "2 epochs x 3 steps of 32 (sgd, lr onecycle peak 0.1)\n") != NULL);
    if (strncmp(err, want, strlen(want))) printf("\n  stderr: %s", err);
    char first[4096];
    snprintf(first, sizeof first, "%.*s", (int)(strchr(err, '\n') - err), err);
    free(out), free(err);

    snprintf(args, sizeof args, "plot %s/run -o %s/run/curves.png", tmpdir, tmpdir);
    code = qat_cli(args, &out, &err);
    /* two epochs of three steps: drawn by step from steps.jsonl (issue 16 point 9), one point
     * per step of so short an epoch, the test figures at each epoch's last step */
    CU_ASSERT(code == 0 && strstr(out, "(2 epochs by step: 6 points from "));
    if (code || !strstr(out, "by step")) printf("\n  qat plot: %s%s", out, err);
    free(out), free(err);
    struct stat st;
    snprintf(args, sizeof args, "%s/run/curves.png", tmpdir);
    CU_ASSERT(stat(args, &st) == 0 && st.st_size > 1000);

    snprintf(args, sizeof args, "summary --ckpt %s/run/last.ckpt", tmpdir);
    code = qat_cli(args, &out, &err);
    CU_ASSERT(code == 0);
    CU_ASSERT(strstr(out, "parameters") || strstr(out, "params"));
    char line[4200];
    snprintf(line, sizeof line, "fp32 training: %s\n", first);
    CU_ASSERT(strstr(out, line) != NULL); /* the start line, as recorded */
    if (!strstr(out, line)) printf("\n  summary: %s\n  want: %s", out, line);
    free(out), free(err);

    snprintf(args, sizeof args, "train --data %s --model %s --epochs 1 --batch 32 --threads 1 "
             "--flip --crop-pad 1 --quiet --out %s/quiet", data_dir, spec_path, tmpdir);
    code = qat_cli(args, &out, &err);
    CU_ASSERT(code == 0 && !*err && !*out); /* --quiet: nothing at all */
    free(out), free(err);
    snprintf(args, sizeof args, "summary --ckpt %s/quiet/last.ckpt", tmpdir);
    code = qat_cli(args, &out, &err);
    CU_ASSERT(code == 0 && strstr(out, "augment: crop-pad 1, flip; "));
    free(out), free(err);
}

void register_cli_tests(void) {
    CU_pSuite s = CU_add_suite("cli", setup, teardown);
    CU_add_test(s, "contradicting / out-of-range augmentation options exit 2", test_cli_bad_augment);
    CU_add_test(s, "start line, qat plot and qat summary --ckpt", test_cli_start_line_plot_summary);
}
