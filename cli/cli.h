/* Shared by the files of the qat command line (cli/main.c, cli/cli_*.c): option tables from
 * which both parsing and --help are generated, and the error exits. Only the CLI prints errors
 * and exits; the library returns qat_status. */
#ifndef QAT_CLI_H
#define QAT_CLI_H

#include "qat_status.h"
#include <stddef.h>

/* OPT_FREEZE: a float of epochs >= 0, or "auto" / "never" (QAT_FREEZE_AUTO / QAT_FREEZE_NEVER). */
typedef enum { OPT_STR, OPT_INT, OPT_I64, OPT_FLOAT, OPT_FLAG, OPT_U64, OPT_OPTIM, OPT_SCHED, OPT_FREEZE } opt_kind;
typedef struct {
    const char *name; /* without the leading -- */
    opt_kind kind;
    void *target;
    const char *help;
} cli_opt;

/* The range of a numeric option (cli/cli_ranges.c): lo..hi, each end open or closed; cmd NULL
 * for every command. */
typedef struct {
    const char *cmd, *name;
    double lo, hi;
    int lo_open, hi_open;
    const char *why; /* a note for `qat help options`, or NULL */
} cli_range;
const cli_range *cli_range_of(const char *cmd, const char *name);
int cli_range_holds(const cli_range *r, double v);
/* "[1, 256]", "(0, 1]" */
void cli_range_format(const cli_range *r, char *buf, size_t size);
/* A value of option --name checked against its range (strict decimal syntax; an error line and
 * exit 2 otherwise): for values the option tables do not parse themselves (bench --batch 1,64). */
long long cli_parse_int(const char *cmd, const char *name, const char *v);
double cli_parse_number(const char *cmd, const char *name, const char *v);
/* `qat help options`: the table. */
void cli_print_ranges(void);
/* A value of option --name (of command cmd) found outside its range: "qat CMD: --name VALUE:
 * must be in [lo, hi]", exit 2. */
void range_error(const char *cmd, const char *name, const char *value, const cli_range *r) __attribute__((noreturn));

#define NOPTS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The running subcommand ("train"), set by main: every error line starts "qat train: ". */
extern const char *cli_command;
/* "qat CMD: msg" on stderr (msg's own leading "CMD: " not repeated). Under mpirun with several
 * ranks, rank 0 prints it, another rank only an error of its own ("qat CMD (rank 1): msg"); the
 * exits below then end the whole job unless every rank found the error (qat_dist_abort). */
void cli_error_line(const char *msg);
/* cli_error_line, exit 1. */
void die(const char *msg) __attribute__((noreturn));
/* A library call's error: cli_error_line(qat_last_error()); an option value found wrong by the
 * library (QAT_ERR_ARG: a combination of options, --crop-pad larger than the images once the data
 * is open) is a usage error like the parser's, exit 2; others exit 1. */
void die_run(qat_status st) __attribute__((noreturn));
/* In a job of several ranks: on SIGTERM (mpirun ending the job after a rank died) rank 0 prints
 * one line saying the run stopped and, with out_dir, how to resume; every rank exits 143. */
void cli_dist_watch(const char *cmd, const char *out_dir);
/* "qat CMD: <fmt with arg> (see 'qat CMD --help')" on stderr, exit 2. */
void usage_error(const char *cmd, const char *fmt, const char *arg) __attribute__((noreturn));
/* Parses argv (options only; every argument must be an option) into the targets; returns 1 when
 * --help was asked (the help is printed). Bad options exit through usage_error. */
int parse_opts(const char *cmd, const char *synopsis, const cli_opt *opts, int n, int argc,
               char **argv);
/* Like parse_opts, but arguments that do not start with "--" are collected into pos (up to
 * max_pos, more is a usage error); *npos gets their count. */
int parse_opts_pos(const char *cmd, const char *synopsis, const cli_opt *opts, int n, int argc,
                   char **argv, char **pos, int max_pos, int *npos);

/* 1 when --name appears among argv's options (an option whose default cannot tell "given"
 * from "left alone"): for the checks across options, which the parser does not make. */
int opt_given(int argc, char **argv, const char *name);

/* --percentile / --averaging-constant go with --observer percentile / moving-average only
 * (ptq and quantize). */
void check_observer_settings(const char *cmd, int argc, char **argv, const char *observer);
#define OBSERVER_OPTS(obs, pct, avg, dflt)                                                          \
    {"observer", OPT_STR, &(obs),                                                                  \
     "activation observer: minmax, moving-average, mse (= histogram), percentile [" dflt "]"},    \
    {"percentile", OPT_FLOAT, &(pct), "--observer percentile: the range kept, in percent (50, 100] [99.99]"}, \
    {"averaging-constant", OPT_FLOAT, &(avg), "--observer moving-average: c of new = old + c (batch - old) [0.01]"}

/* Commands implemented outside main.c. */
int cmd_convert(int argc, char **argv);   /* cli/cli_convert.c */
int cmd_export(int argc, char **argv);    /* cli/cli_export.c */
int cmd_infer(int argc, char **argv);     /* cli/cli_int8.c */
int cmd_bench(int argc, char **argv);     /* cli/cli_int8.c */
/* `qat eval --int8 MODEL.q8`: accuracy of the INT8 runtime on data's test split. */
struct cli_report; /* cli/progress.h */
int cli_eval_int8(const char *model, const char *data, float val_split, int batch, int threads,
                  const char *backend, int json, struct cli_report *progress);
int cmd_plot(int argc, char **argv);      /* cli/cli_plot.c */
int cmd_quantize(int argc, char **argv);  /* cli/cli_quantize.c */
int cmd_sensitivity(int argc, char **argv); /* cli/cli_sensitivity.c */

/* eval's per-class figures (cli/cli_int8.c): the text line "per class: NAME 93.1%, ...", or
 * the JSON members "classes": [...], "per_class_accuracy": [...], "confusion": [[...], ...]
 * (with a leading ", "). */
struct qat_class_report;
void cli_print_classes(const struct qat_class_report *cr);
void cli_json_classes(const struct qat_class_report *cr);

/* Mixed precision options of ptq, qat and quantize. */
#define LAYER_QCONFIG_HELP \
    "per-layer qconfig file: 'PATTERN float' / 'PATTERN int8' lines (layer names or globs), float layers run in float inside the INT8 model"
#define FLOAT_LAYERS_HELP "comma-separated layer names or globs to leave in float (after --layer-qconfig)"

#endif
