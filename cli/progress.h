/* How the qat command line shows a training run: the callback of qat_train_opts.on_event
 * (include/qat.h) printing the run's events — the start line, QAT notes, a progress bar redrawn
 * in place on a terminal (plain lines, a quarter epoch or QAT_PROGRESS_SECONDS apart, in a
 * log), the epoch lines — on stderr, and the final summary on stdout (one JSON object with
 * --json). The same bar (or lines) for the long steps outside training (QAT_EVENT_PROGRESS:
 * calibration, evaluation, the INT8 verification); nothing under quiet. */
#ifndef QAT_CLI_PROGRESS_H
#define QAT_CLI_PROGRESS_H

#include "qat.h"

typedef struct cli_report {
    int quiet;            /* nothing on stderr, and no summary unless json */
    int json;             /* the summary as one JSON object */
    int tty;              /* stderr is a terminal: redraw the bar in place */
    int epoch;            /* the epoch the bar is drawing (-1: none yet) */
    double last_print;
    double log_interval;  /* not a terminal: a line at least this often, in seconds
                           * (QAT_PROGRESS_SECONDS, default 10) */
    const char *what;     /* the step QAT_EVENT_PROGRESS is drawing */
} cli_report;

void cli_report_init(cli_report *r, int quiet, int json);
/* qat_event_fn; user is a cli_report. */
void cli_report_event(const qat_event *e, void *user);

#endif
