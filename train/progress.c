/* Training progress: a one-line bar redrawn in place on a terminal, plain lines otherwise
 * (logs and CI should not fill with carriage returns). */
#include "progress.h"
#include "base.h"
#include <stdio.h>
#include <time.h>
#include <unistd.h>

void qat_progress_init(qat_progress *p, const char *phase, int epochs, int batches, int quiet) {
    p->phase = phase;
    p->epochs = epochs;
    p->batches = batches;
    p->quiet = quiet;
    p->tty = isatty(fileno(stderr));
    p->last_print = 0;
    p->epoch_start = qat_now();
    p->images = 0;
}

void qat_progress_epoch_start(qat_progress *p) {
    p->epoch_start = qat_now();
    p->images = 0;
    p->last_print = 0;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

void qat_progress_step(qat_progress *p, int epoch, int batch, int images, float loss, float acc) {
    p->images += images;
    if (p->quiet) return;
    double now = qat_now(), el = now - p->epoch_start;
    int done = batch + 1;
    int last = done == p->batches;
    /* a terminal gets ~5 redraws a second; a log gets a line per quarter epoch */
    if (p->tty) {
        if (!last && now - p->last_print < 0.2) return;
    } else if (!last && done % ((p->batches + 3) / 4) != 0) {
        return;
    }
    p->last_print = now;
    double ips = el > 0 ? p->images / el : 0;
    double eta = done > 0 ? el / done * (p->batches - done) : 0;
    char etas[32];
    fmt_time(etas, sizeof etas, eta);
    if (p->tty) {
        char bar[21];
        int fill = (int)(20.0 * done / p->batches);
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[20] = 0;
        fprintf(stderr, "\r%s epoch %d/%d [%s] %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %s  ",
                p->phase, epoch + 1, p->epochs, bar, done, p->batches, loss, 100.0 * acc, ips, etas);
        if (last) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s epoch %d/%d step %d/%d loss %.4f acc %.2f%% %.0f img/s ETA %s\n",
                p->phase, epoch + 1, p->epochs, done, p->batches, loss, 100.0 * acc, ips, etas);
    }
    fflush(stderr);
}
