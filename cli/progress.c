/* Training progress on the command line (cli/progress.h): a one-line bar redrawn in place on a
 * terminal, plain lines otherwise (logs and CI should not fill with carriage returns). */
#include "progress.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cli_report_init(cli_report *r, int quiet, int json) {
    r->quiet = quiet;
    r->json = json;
    r->tty = isatty(fileno(stderr));
    r->epoch = -1;
    r->last_print = now();
    r->what = NULL;
    const char *s = getenv("QAT_PROGRESS_SECONDS");
    char *end;
    double v = s ? strtod(s, &end) : 10.0;
    r->log_interval = s && (end == s || *end || !(v >= 0)) ? 10.0 : v;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

static void bar(char *buf, int done, int total) {
    int fill = total > 0 ? (int)(20.0 * done / total) : 0;
    for (int i = 0; i < 20; i++) buf[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    buf[20] = 0;
}

/* Batch e->batch (0-based) of e->epoch done: e->images this epoch so far, e->seconds of it. */
static void step(cli_report *p, const qat_event *e) {
    if (e->epoch != p->epoch) p->epoch = e->epoch, p->last_print = 0;
    double t = now(), el = e->seconds;
    int done = e->batch + 1;
    int last = done == e->batches;
    /* a terminal gets ~5 redraws a second; a log gets a line per quarter epoch */
    if (p->tty) {
        if (!last && t - p->last_print < 0.2) return;
    } else if (!last && done % ((e->batches + 3) / 4) != 0 && t - p->last_print < p->log_interval) {
        return; /* a log: a line per quarter epoch, or sooner when that is far apart */
    }
    p->last_print = t;
    double ips = el > 0 ? e->images / el : 0;
    double eta = done > 0 ? el / done * (e->batches - done) : 0;
    char etas[32];
    fmt_time(etas, sizeof etas, eta);
    if (p->tty) {
        char b[21];
        bar(b, done, e->batches);
        fprintf(stderr, "\r%s epoch %d/%d [%s] %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %s  ",
                e->phase, e->epoch + 1, e->epochs, b, done, e->batches, e->loss, 100.0 * e->acc,
                ips, etas);
        if (last) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s epoch %d/%d step %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %s\n",
                e->phase, e->epoch + 1, e->epochs, done, e->batches, e->loss, 100.0 * e->acc, ips,
                etas);
    }
    fflush(stderr);
}

/* A long step outside training: batch e->batch (1-based) of e->batches. */
static void progress(cli_report *p, const qat_event *e) {
    double t = now();
    if (!p->what || strcmp(p->what, e->text)) p->what = e->text, p->last_print = t - (p->tty ? 1 : 0);
    int last = e->batch >= e->batches;
    if (p->tty ? !last && t - p->last_print < 0.2 : t - p->last_print < p->log_interval) return;
    p->last_print = t;
    double ips = e->seconds > 0 ? e->images / e->seconds : 0;
    char etas[32], b[21];
    fmt_time(etas, sizeof etas, e->batch > 0 ? e->seconds / e->batch * (e->batches - e->batch) : 0);
    if (p->tty) {
        bar(b, e->batch, e->batches);
        if (last) fprintf(stderr, "\r\033[K"); /* the result line follows on a clean line */
        else fprintf(stderr, "\r%s [%s] %d/%d %.0f img/s ETA %s  ", e->text, b, e->batch, e->batches, ips, etas);
    } else {
        fprintf(stderr, "%s: batch %d/%d, %.0f img/s, ETA %s\n", e->text, e->batch, e->batches, ips, etas);
    }
    fflush(stderr);
}

void cli_report_event(const qat_event *e, void *user) {
    cli_report *r = user;
    if (e->kind == QAT_EVENT_DONE) {
        if (r->json)
            /* "epochs" counts as the epoch lines do ("epoch 1:" of a --max-steps run that
             * stopped inside it is 1), "epochs_complete" the full ones */
            printf("{\"accuracy\": %.4f, \"loss\": %.4f, \"best_accuracy\": %.4f, \"epochs\": %d, "
                   "\"epochs_complete\": %d, \"steps\": %lld, \"train_seconds\": %.1f, \"img_per_s\": %.1f, "
                   "\"params\": %lld, \"checkpoint\": \"%s\"}\n",
                   e->test_acc, e->test_loss, e->best_acc, e->epoch + 1, e->epochs_done, (long long)e->steps,
                   e->seconds, e->img_per_s, (long long)e->params, e->checkpoint);
        else if (!r->quiet)
            printf("test accuracy %.2f%% (best %.2f%%) after %lld steps, %.1f s training; checkpoints in %s\n",
                   100.0 * e->test_acc, 100.0 * e->best_acc, (long long)e->steps, e->seconds, e->out_dir);
        return;
    }
    if (r->quiet) return;
    switch (e->kind) {
    case QAT_EVENT_START:
        fprintf(stderr, "%s\n", e->text);
        if (e->warning) fprintf(stderr, "%s\n", e->warning);
        break;
    case QAT_EVENT_NOTE: fprintf(stderr, "qat: %s\n", e->text); break;
    case QAT_EVENT_STEP: step(r, e); break;
    case QAT_EVENT_PROGRESS: progress(r, e); break;
    default: fprintf(stderr, "%s\n", e->text); break; /* EPOCH, STOP */
    }
}
