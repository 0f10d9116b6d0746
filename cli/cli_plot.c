/* qat plot RUN_DIR [-o curves.png]: the loss and accuracy curves of a training run, read from
 * RUN_DIR/metrics.jsonl, as one PNG with two panels. FP32 and QAT epochs get their own colours
 * and a dashed line marks where QAT starts. */
#include "cli.h"
#include "plot.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CURVES_W 960
#define CURVES_H 1000
#define HEADER_H 56

/* The x of each row: its epoch, except that a phase which restarts its epoch count (a `qat qat`
 * run appended after the FP32 one) continues after the previous phase. */
static void row_positions(const qat_metrics *m, double *x) {
    double offset = 0;
    for (int i = 0; i < m->n; i++) {
        x[i] = m->rows[i].epoch + offset;
        if (i > 0 && strcmp(m->rows[i].phase, m->rows[i - 1].phase) && x[i] <= x[i - 1]) {
            offset = x[i - 1] + 1 - m->rows[i].epoch;
            x[i] = x[i - 1] + 1;
        }
    }
}

typedef struct {
    double *x, *y;
    int n;
} points;

/* Plotting by step: rows come from steps.jsonl (train figures) and metrics.jsonl (test
 * figures), each row carrying only some fields, so a curve takes only the rows that have it. */
static int by_step;

/* The rows of one phase with their values of the field at off (times scale). */
static points select_points(const qat_metrics *m, const double *x, const char *phase, size_t off,
                            double scale) {
    points p = {malloc((size_t)m->n * sizeof(double)), malloc((size_t)m->n * sizeof(double)), 0};
    if (!p.x || !p.y) die("plot: out of memory");
    int finite = 0;
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->rows[i].phase, phase)) continue;
        double v = *(const double *)((const char *)&m->rows[i] + off);
        if (by_step && !isfinite(v)) continue;
        p.x[p.n] = x[i], p.y[p.n++] = v * scale;
        finite += isfinite(v) != 0;
    }
    if (!finite) p.n = 0;  /* e.g. no test set: no test curve rather than a row of x marks */
    return p;
}

typedef struct {
    const char *name;
    size_t off;
    qat_rgb fp32, qat;
} curve;

/* One panel: for each curve its FP32 and QAT series (those with data). */
static void panel(qat_canvas *c, int y, int h, const qat_metrics *m, const double *x,
                  const curve *cv, int ncv, double scale, const qat_plot_opts *o) {
    qat_plot_series s[8];
    points pts[8];
    char names[8][64];
    int n = 0;
    static const char *phases[2] = {"fp32", "qat"};
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < ncv && n < 8; k++) {
            pts[n] = select_points(m, x, phases[p], cv[k].off, scale);
            if (!pts[n].n) {
                free(pts[n].x), free(pts[n].y);
                continue;
            }
            snprintf(names[n], sizeof names[n], "%s (%s)", cv[k].name, p ? "QAT" : "FP32");
            s[n] = (qat_plot_series){names[n], pts[n].x, pts[n].y, pts[n].n, p ? cv[k].qat : cv[k].fp32, 0};
            n++;
        }
    qat_status st = qat_plot_lines_into(c, 0, y, c->w, h, s, n, o, NULL);
    for (int k = 0; k < n; k++) free(pts[k].x), free(pts[k].y);
    if (st) die(qat_last_error());
}

static double last_test_acc(const qat_metrics *m) {
    for (int i = m->n - 1; i >= 0; i--)
        if (isfinite(m->rows[i].test_acc)) return m->rows[i].test_acc;
    return NAN;
}

static void header(qat_canvas *c, const char *run, const qat_metrics *m) {
    char title[300], sub[200];
    snprintf(title, sizeof title, "Training curves: %.250s", run);
    int nfp = 0, nq = 0, best = -1;
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->rows[i].phase, "qat")) nfp++;
        else nq++;
        if (isfinite(m->rows[i].test_acc) && (best < 0 || m->rows[i].test_acc > m->rows[best].test_acc)) best = i;
    }
    if (by_step) { /* the rows with a test figure are the epochs */
        nfp = nq = 0;
        for (int i = 0; i < m->n; i++)
            if (isfinite(m->rows[i].test_acc) || isfinite(m->rows[i].test_loss)) {
                if (strcmp(m->rows[i].phase, "qat")) nfp++;
                else nq++;
            }
    }
    int len = nfp && nq ? snprintf(sub, sizeof sub, "%d FP32 + %d QAT epochs", nfp, nq)
                        : snprintf(sub, sizeof sub, "%d %s epoch%s", nfp + nq, nq ? "QAT" : "FP32", nfp + nq != 1 ? "s" : "");
    if (by_step)
        len += snprintf(sub + len, sizeof sub - (size_t)len, ", by step (%.0f steps)", m->rows[m->n - 1].step);
    if (best >= 0)
        snprintf(sub + len, sizeof sub - (size_t)len, "; best test accuracy %.2f%% (%s epoch %d), last %.2f%%",
                 100 * m->rows[best].test_acc, strcmp(m->rows[best].phase, "qat") ? "FP32" : "QAT",
                 m->rows[best].epoch, 100 * last_test_acc(m));
    qat_canvas_text(c, (c->w - qat_text_width(title, 2)) / 2, 10, title, 2, QAT_PLOT_INK);
    qat_canvas_text(c, (c->w - qat_text_width(sub, 1)) / 2, 36, sub, 1, (qat_rgb){80, 80, 80});
}

/* Where QAT starts: between the last FP32 row and the first QAT row, when both exist. */
static double qat_start(const qat_metrics *m, const double *x) {
    for (int i = 1; i < m->n; i++)
        if (!strcmp(m->rows[i].phase, "qat") && strcmp(m->rows[i - 1].phase, "qat"))
            return (x[i - 1] + x[i]) / 2;
    return NAN;
}

static void draw_curves(const char *run, const qat_metrics *m, const char *out) {
    double *x = malloc((size_t)m->n * sizeof(double));
    if (!x) die("plot: out of memory");
    if (by_step)
        for (int i = 0; i < m->n; i++) x[i] = m->rows[i].step;
    else
        row_positions(m, x);
    qat_canvas c;
    if (qat_canvas_init(&c, CURVES_W, CURVES_H)) die(qat_last_error());
    header(&c, run, m);
    double qs = qat_start(m, x);
    const char *vlabel = isfinite(qs) ? "QAT starts" : NULL;
    const curve loss[] = {
        {"train loss", offsetof(qat_metrics_row, train_loss), QAT_PLOT_BLUE, QAT_PLOT_GREEN},
        {"test loss", offsetof(qat_metrics_row, test_loss), QAT_PLOT_ORANGE, QAT_PLOT_RED},
    };
    const curve acc[] = {
        {"train acc", offsetof(qat_metrics_row, train_acc), QAT_PLOT_BLUE, QAT_PLOT_GREEN},
        {"test acc", offsetof(qat_metrics_row, test_acc), QAT_PLOT_ORANGE, QAT_PLOT_RED},
    };
    int ph = (CURVES_H - HEADER_H) / 2;
    const char *xl = by_step ? "step" : "epoch";
    qat_plot_opts lo = {"Loss", xl, "loss", 1, qs, vlabel, 0};
    qat_plot_opts ao = {"Accuracy", xl, "accuracy (%)", 1, qs, vlabel, 0};
    panel(&c, HEADER_H, ph, m, x, loss, NOPTS(loss), 1, &lo);
    panel(&c, HEADER_H + ph, ph, m, x, acc, NOPTS(acc), 100, &ao);
    if (qat_canvas_write_png(&c, out)) die(qat_last_error());
    qat_canvas_free(&c);
    free(x);
}

static int cmp_step(const void *a, const void *b) {
    const qat_metrics_row *x = a, *y = b;
    return (x->step > y->step) - (x->step < y->step);
}

/* `-o X` is the usual spelling for an output; parse_opts_pos only knows --options. */
static void short_out_option(int argc, char **argv) {
    for (int a = 0; a < argc; a++)
        if (!strcmp(argv[a], "-o")) argv[a] = "--out";
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    const cli_opt opts[] = {
        {"out", OPT_STR, &out, "PNG to write (also -o) [RUN_DIR/curves.png]"},
    };
    char *pos[1];
    int npos = 0;
    short_out_option(argc, argv);
    if (parse_opts_pos("plot", "RUN_DIR [-o curves.png]   (RUN_DIR holds metrics.jsonl; a .jsonl file also works)",
                       opts, NOPTS(opts), argc, argv, pos, 1, &npos))
        return 0;
    if (npos != 1) usage_error("plot", "%s", "expected one RUN_DIR");
    const char *run = pos[0];
    struct stat sb;
    int is_dir = stat(run, &sb) == 0 && S_ISDIR(sb.st_mode);
    char metrics[1100], def_out[1100];
    snprintf(metrics, sizeof metrics, is_dir ? "%s/metrics.jsonl" : "%s", run);
    if (!out) {
        snprintf(def_out, sizeof def_out, is_dir ? "%s/curves.png" : "%s.png", run);
        out = def_out;
    }
    qat_metrics m;
    if (qat_metrics_read(metrics, &m)) die(qat_last_error());
    /* Few epochs (a --max-steps run, a short QAT): their steps.jsonl, when there, draws the
     * curves by step, with the test figures at the steps the epochs ended. */
    char steps[1100];
    snprintf(steps, sizeof steps, "%s/steps.jsonl", run);
    qat_metrics s = {0};
    struct stat ss;
    if (is_dir && m.n < 3 && stat(steps, &ss) == 0) {
        if (qat_metrics_read(steps, &s)) die(qat_last_error());
        if (s.n >= 2) {
            qat_metrics_row *rows = realloc(s.rows, (size_t)(s.n + m.n) * sizeof *rows);
            if (!rows) die("plot: out of memory");
            s.rows = rows;
            for (int i = 0; i < s.n; i++) s.rows[i].test_loss = s.rows[i].test_acc = NAN;
            for (int i = 0; i < m.n; i++) { /* an epoch's test figures, at its last step */
                s.rows[s.n + i] = m.rows[i];
                s.rows[s.n + i].train_loss = s.rows[s.n + i].train_acc = NAN;
            }
            s.n += m.n;
            qsort(s.rows, (size_t)s.n, sizeof *s.rows, cmp_step);
            by_step = 1;
        }
    }
    draw_curves(run, by_step ? &s : &m, out);
    if (by_step)
        printf("wrote %s (%d epoch%s by step: %d points from %s)\n", out, m.n, m.n == 1 ? "" : "s",
               s.n - m.n, steps);
    else
        printf("wrote %s (%d epochs from %s)\n", out, m.n, metrics);
    qat_metrics_free(&m);
    qat_metrics_free(&s);
    return 0;
}
