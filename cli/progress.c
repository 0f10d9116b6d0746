/* Training progress on the command line (cli/progress.h): a one-line bar redrawn in place on a
 * terminal, plain lines otherwise (logs and CI should not fill with carriage returns). */
#include "progress.h"
#include <stdio.h>
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
    r->last_print = 0;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
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
    } else if (!last && done % ((e->batches + 3) / 4) != 0) {
        return;
    }
    p->last_print = t;
    double ips = el > 0 ? e->images / el : 0;
    double eta = done > 0 ? el / done * (e->batches - done) : 0;
    char etas[32];
    fmt_time(etas, sizeof etas, eta);
    if (p->tty) {
        char bar[21];
        int fill = (int)(20.0 * done / e->batches);
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[20] = 0;
        fprintf(stderr, "\r%s epoch %d/%d [%s] %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %s  ",
                e->phase, e->epoch + 1, e->epochs, bar, done, e->batches, e->loss, 100.0 * e->acc,
                ips, etas);
        if (last) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s epoch %d/%d step %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %s\n",
                e->phase, e->epoch + 1, e->epochs, done, e->batches, e->loss, 100.0 * e->acc, ips,
                etas);
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
    default: fprintf(stderr, "%s\n", e->text); break; /* EPOCH, STOP */
    }
}
