/* Charts drawn to PNG without a plotting library: "nice" 1-2-5 axis ticks, line charts
 * (training curves) and bar charts (per-layer SQNR) on the canvas of plot/canvas.h with the
 * font of plot/font.h. Used by `qat plot` (with the metrics.jsonl reader of plot/metrics.h)
 * and `qat inspect --plot`.
 *
 *   qat_plot_series s = {"test acc", epochs, acc, n, QAT_PLOT_BLUE, 0};
 *   qat_plot_opts o = {.title = "accuracy", .xlabel = "epoch", .ylabel = "%"};
 *   if (qat_plot_lines("acc.png", &s, 1, &o, NULL)) fprintf(stderr, "%s\n", qat_last_error());
 */
#ifndef QAT_PLOT_INCLUDED
#define QAT_PLOT_INCLUDED

#include "canvas.h"
#include "font.h"
#include "metrics.h"

/* Default image size of the one-chart functions. */
#define QAT_PLOT_W 960
#define QAT_PLOT_H 600

/* ---- ticks ------------------------------------------------------------------------------- */
typedef struct {
    double step;     /* 1, 2 or 5 times a power of ten */
    double lo, hi;   /* multiples of step covering the range asked for */
    int n;           /* ticks lo, lo + step, ..., hi */
    int decimals;    /* digits after the point that tell the ticks apart */
} qat_ticks;

/* About `target` ticks covering [lo, hi] (hi < lo is swapped; lo == hi widened). Non-finite
 * bounds fail with QAT_ERR_NUMERIC. */
qat_status qat_nice_ticks(double lo, double hi, int target, qat_ticks *t);
double qat_tick_value(const qat_ticks *t, int i);
/* Tick i as text with t->decimals digits ("-0" printed as "0"). */
void qat_tick_label(const qat_ticks *t, int i, char *buf, int size);

/* ---- charts ------------------------------------------------------------------------------ */
typedef struct {
    const char *name;        /* legend text; NULL: not in the legend */
    const double *x, *y;     /* n points; non-finite ones are skipped (the line breaks there)
                              * and marked with an x on the bottom edge */
    int n;
    qat_rgb color;
    int dashed;
} qat_plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int integer_x;           /* x ticks at whole numbers only (epochs) */
    double vline_x;          /* a dashed vertical marker at this x (ignored unless vline_label) */
    const char *vline_label;
    int show_values;         /* bars: the value above each bar when it fits */
} qat_plot_opts;

/* Where a chart's data went: its plot area in pixels and the data range at its edges, so
 * callers (and tests) can map values to pixels. */
typedef struct {
    int left, top, right, bottom;
    double xlo, xhi, ylo, yhi;
    int nonfinite;           /* points / bars that were not finite */
} qat_plot_frame;

int qat_plot_px(const qat_plot_frame *f, double x);
int qat_plot_py(const qat_plot_frame *f, double y);

/* A line chart in the box (x, y, w, h) of c. Fails when no series has a finite point. */
qat_status qat_plot_lines_into(qat_canvas *c, int x, int y, int w, int h,
                               const qat_plot_series *s, int n, const qat_plot_opts *o,
                               qat_plot_frame *frame);
/* A bar chart in the box: bar i is labels[i] (may be NULL) with height values[i]. +inf / -inf
 * bars are drawn hatched to the edge of the axis with "inf" above; NaN bars as an x at 0. Many
 * bars get vertical labels, and only every k-th label when even those do not fit. */
qat_status qat_plot_bars_into(qat_canvas *c, int x, int y, int w, int h, const char *const *labels,
                              const double *values, int n, const qat_plot_opts *o,
                              qat_plot_frame *frame);
/* The same as a QAT_PLOT_W x QAT_PLOT_H PNG at path (nothing is written on error). */
qat_status qat_plot_lines(const char *path, const qat_plot_series *s, int n,
                          const qat_plot_opts *o, qat_plot_frame *frame);
qat_status qat_plot_bars(const char *path, const char *const *labels, const double *values, int n,
                         const qat_plot_opts *o, qat_plot_frame *frame);

/* The SQNR of each layer as a bar chart PNG (layer names below, dB up; +inf bars capped and
 * marked "inf"); ckpt only names the chart (`qat inspect --plot`). */
qat_status qat_plot_layer_sqnr(const char *path, const char *ckpt, const qat_layer_sqnr *s);

#endif
