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

/* The syntax the range table promises (cli/cli_ranges.c): plain decimal, so that "0x10", " 5",
 * "5abc", "inf", "nan" and "" are refused rather than read by strtod's wider grammar. A leading
 * '-' is syntax, so that "-1" gets the range in its error line. */
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_decimal_int(const char *s) {
    if (*s == '-') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (!is_digit(*s)) return 0;
    return 1;
}

static int is_decimal_number(const char *s) {
    int digits = 0;
    if (*s == '-') s++;
    for (; is_digit(*s); s++) digits++;
    if (*s == '.')
        for (s++; is_digit(*s); s++) digits++;
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!is_digit(*s)) return 0;
        while (is_digit(*s)) s++;
    }
    return !*s;
}

/* The value as the user typed it, quoted when it would not read as one word. */
static const char *shown(const char *v, char *buf, size_t size) {
    if (*v && !strpbrk(v, " \t\n\r\v\f")) return v;
    snprintf(buf, size, "'%s'", v);
    return buf;
}

void range_error(const char *cmd, const char *name, const char *value, const cli_range *r) {
    char span[96], msg[512], q[300];
    cli_range_format(r, span, sizeof span);
    snprintf(msg, sizeof msg, "--%s %.200s: must be in %s", name, shown(value, q, sizeof q), span);
    if (!strcmp(name, "freeze-bn-epoch") || !strcmp(name, "freeze-observer-epoch"))
        strncat(msg, ", auto or never", sizeof msg - strlen(msg) - 1);
    const char *saved = cli_command;
    cli_command = cmd;
    cli_error_line(msg);
    cli_command = saved;
    error_exit(2);
}

static __attribute__((noreturn)) void syntax_error(const char *cmd, const char *name, const char *value,
                                                   const char *what) {
    char msg[512], q[300];
    snprintf(msg, sizeof msg, "--%s %.200s: %s", name, shown(value, q, sizeof q), what);
    const char *saved = cli_command;
    cli_command = cmd;
    cli_error_line(msg);
    cli_command = saved;
    error_exit(2);
}

static const cli_range *range_or_die(const char *cmd, const char *name) {
    const cli_range *r = cli_range_of(cmd, name);
    if (!r) {
        fprintf(stderr, "qat %s: internal: option --%s has no range in cli/cli_ranges.c\n", cmd, name);
        exit(70);
    }
    return r;
}

long long cli_parse_int(const char *cmd, const char *name, const char *v) {
    const cli_range *r = range_or_die(cmd, name);
    if (!is_decimal_int(v)) syntax_error(cmd, name, v, "not a decimal integer");
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    if (errno == ERANGE || !cli_range_holds(r, (double)x))
        range_error(cmd, name, v, r);
    /* (double)x rounds above 2^53: compare as integers at the top end too */
    if (r->hi < 9.2e18 && x > (long long)r->hi) range_error(cmd, name, v, r);
    return x;
}

double cli_parse_number(const char *cmd, const char *name, const char *v) {
    const cli_range *r = range_or_die(cmd, name);
    if (!is_decimal_number(v)) syntax_error(cmd, name, v, "not a decimal number");
    errno = 0;
    double x = strtod(v, NULL);
    /* ERANGE: beyond a double (1e999), or so small it rounds to a denormal or zero (1e-999):
     * either way not the value typed */
    if (errno == ERANGE || !cli_range_holds(r, x) || !cli_range_holds(r, (float)x))
        range_error(cmd, name, v, r);
    return x;
}

static int is_numeric(opt_kind k) {
    return k == OPT_INT || k == OPT_I64 || k == OPT_U64 || k == OPT_FLOAT || k == OPT_FREEZE;
}

/* Parses argv into the targets; returns 1 when --help was asked. */
int parse_opts_pos(const char *cmd, const char *synopsis, const cli_opt *opts, int n, int argc,
                   char **argv, char **pos, int max_pos, int *npos) {
    if (npos) *npos = 0;
    for (int i = 0; i < n; i++) /* every numeric option has a range, before any value is read */
        if (is_numeric(opts[i].kind)) range_or_die(cmd, opts[i].name);
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
        switch (o->kind) {
        case OPT_STR: *(const char **)o->target = v; break;
        case OPT_OPTIM:
            if (qat_opt_parse(v, (qat_opt_kind *)o->target)) usage_error(cmd, "unknown optimizer '%s' (sgd, adamw)", v);
            break;
        case OPT_SCHED:
            if (qat_sched_parse(v, (qat_sched_kind *)o->target))
                usage_error(cmd, "unknown schedule '%s' (constant, step, cosine, onecycle)", v);
            break;
        case OPT_FLOAT: *(float *)o->target = (float)cli_parse_number(cmd, o->name, v); break;
        case OPT_INT: *(int *)o->target = (int)cli_parse_int(cmd, o->name, v); break;
        case OPT_I64: *(int64_t *)o->target = (int64_t)cli_parse_int(cmd, o->name, v); break;
        case OPT_U64: *(uint64_t *)o->target = (uint64_t)cli_parse_int(cmd, o->name, v); break;
        case OPT_FREEZE:
            if (!strcmp(v, "auto"))
                *(float *)o->target = QAT_FREEZE_AUTO;
            else if (!strcmp(v, "never"))
                *(float *)o->target = QAT_FREEZE_NEVER;
            else if (is_decimal_number(v))
                *(float *)o->target = (float)cli_parse_number(cmd, o->name, v);
            else
                syntax_error(cmd, o->name, v, "not a number of epochs, auto or never");
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
