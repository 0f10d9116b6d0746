/* Option parsing and error exits of the qat command line (see cli.h). */
#include "cli.h"
#include "qat.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_command = NULL;

/* In a job of several ranks (mpirun, docs/distributed.md) rank 0 says an error; the others only
 * when it may be theirs alone (not one every rank found together), naming their rank. */
static int rank_says_it(char *who, size_t size) {
    who[0] = 0;
    if (qat_dist_size() <= 1 || qat_dist_rank() == 0) return 1;
    if (qat_dist_error_collective()) return 0;
    snprintf(who, size, " (rank %d)", qat_dist_rank());
    return 1;
}

/* An error every rank found together ends the job cleanly; any other ends the whole job, since
 * the other ranks would wait for this one in their next collective. */
static __attribute__((noreturn)) void error_exit(int code) {
    if (qat_dist_size() > 1 && !qat_dist_error_collective()) qat_dist_abort(code);
    qat_dist_finalize();
    exit(code);
}

void cli_error_line(const char *msg) {
    char who[32];
    if (!rank_says_it(who, sizeof who)) return;
    /* "qat CMD: " as usage errors begin; a library message that opens with the command's own
     * name ("train: --epochs ...") does not repeat it */
    if (!cli_command) {
        fprintf(stderr, "qat%s: %s\n", who, msg);
        return;
    }
    size_t n = strlen(cli_command);
    if (!strncmp(msg, cli_command, n) && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    fprintf(stderr, "qat %s%s: %s\n", cli_command, who, msg);
}

void die(const char *msg) {
    cli_error_line(msg);
    error_exit(1);
}

void die_run(qat_status st) {
    cli_error_line(qat_last_error());
    error_exit(st == QAT_ERR_ARG ? 2 : 1);
}

void usage_error(const char *cmd, const char *fmt, const char *arg) {
    char who[32];
    if (rank_says_it(who, sizeof who)) {
        fprintf(stderr, "qat %s%s: ", cmd, who);
        fprintf(stderr, fmt, arg);
        fprintf(stderr, " (see 'qat %s --help')\n", cmd);
    }
    error_exit(2);
}

static void print_help(const char *cmd, const char *synopsis, const cli_opt *opts, int n) {
    printf("usage: qat %s %s\n\noptions:\n", cmd, synopsis);
    for (int i = 0; i < n; i++) {
        opt_kind k = opts[i].kind;
        const char *arg = k == OPT_FLAG ? "" : (k == OPT_STR || k == OPT_OPTIM || k == OPT_SCHED || k == OPT_FREEZE) ? " X" : " N";
        printf("  --%s%-*s %s\n", opts[i].name, (int)(22 - strlen(opts[i].name)), arg, opts[i].help);
    }
    printf("  --help%-18s this text\n", "");
}

static int parse_number(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

/* Parses argv into the targets; returns 1 when --help was asked. */
int parse_opts_pos(const char *cmd, const char *synopsis, const cli_opt *opts, int n, int argc,
                   char **argv, char **pos, int max_pos, int *npos) {
    if (npos) *npos = 0;
    for (int a = 0; a < argc; a++) {
        const char *s = argv[a];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            print_help(cmd, synopsis, opts, n);
            return 1;
        }
        if (strncmp(s, "--", 2)) {
            if (!pos || *npos >= max_pos) usage_error(cmd, "unexpected argument '%s'", s);
            pos[(*npos)++] = argv[a];
            continue;
        }
        const cli_opt *o = NULL;
        for (int i = 0; i < n; i++)
            if (!strcmp(s + 2, opts[i].name)) o = &opts[i];
        if (!o) usage_error(cmd, "unknown option '%s'", s);
        if (o->kind == OPT_FLAG) {
            *(int *)o->target = 1;
            continue;
        }
        if (a + 1 >= argc) usage_error(cmd, "option '%s' needs a value", s);
        const char *v = argv[++a];
        double d;
        char what[300]; /* the message of a bad value names the option */
        snprintf(what, sizeof what, "%s: expected a non-negative integer, got '%.200s'", s, v);
        switch (o->kind) {
        case OPT_STR: *(const char **)o->target = v; break;
        case OPT_OPTIM:
            if (qat_opt_parse(v, (qat_opt_kind *)o->target)) usage_error(cmd, "unknown optimizer '%s' (sgd, adamw)", v);
            break;
        case OPT_SCHED:
            if (qat_sched_parse(v, (qat_sched_kind *)o->target))
                usage_error(cmd, "unknown schedule '%s' (constant, step, cosine, onecycle)", v);
            break;
        case OPT_FLOAT:
            if (!parse_number(v, &d) || !(d == d) || d > 1e30 || d < -1e30) {
                snprintf(what, sizeof what, "%s: bad number '%.200s'", s, v);
                usage_error(cmd, "%s", what);
            }
            *(float *)o->target = (float)d;
            break;
        case OPT_INT:
            if (!parse_number(v, &d) || d != (double)(long)d || d < 0 || d > INT_MAX)
                usage_error(cmd, "%s", what);
            *(int *)o->target = (int)d;
            break;
        case OPT_I64:
            if (!parse_number(v, &d) || d != (double)(long long)d || d < 0 || d > 9e15)
                usage_error(cmd, "%s", what);
            *(int64_t *)o->target = (int64_t)d;
            break;
        case OPT_U64:
            if (!parse_number(v, &d) || d != (double)(long long)d || d < 0 || d > 9e15)
                usage_error(cmd, "%s", what);
            *(uint64_t *)o->target = (uint64_t)d;
            break;
        case OPT_FREEZE:
            if (!strcmp(v, "auto"))
                *(float *)o->target = QAT_FREEZE_AUTO;
            else if (!strcmp(v, "never"))
                *(float *)o->target = QAT_FREEZE_NEVER;
            else if (parse_number(v, &d) && d >= 0 && d <= 1e6)
                *(float *)o->target = (float)d;
            else
                usage_error(cmd, "expected epochs >= 0, 'auto' or 'never', got '%s'", v);
            break;
        case OPT_FLAG: break;
        }
    }
    return 0;
}


int parse_opts(const char *cmd, const char *synopsis, const cli_opt *opts, int n, int argc,
               char **argv) {
    return parse_opts_pos(cmd, synopsis, opts, n, argc, argv, NULL, 0, NULL);
}

int opt_given(int argc, char **argv, const char *name) {
    for (int a = 0; a < argc; a++)
        if (!strncmp(argv[a], "--", 2) && !strcmp(argv[a] + 2, name)) return 1;
    return 0;
}

void check_observer_settings(const char *cmd, int argc, char **argv, const char *observer) {
    if (opt_given(argc, argv, "percentile") && strcmp(observer, "percentile"))
        usage_error(cmd, "%s", "--percentile applies to --observer percentile only");
    if (opt_given(argc, argv, "averaging-constant") && strcmp(observer, "moving-average"))
        usage_error(cmd, "%s", "--averaging-constant applies to --observer moving-average only");
}
