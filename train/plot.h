/* Charts drawn to PNG without a plotting library: an RGB canvas, a built-in 5x8 bitmap font,
 * "nice" 1-2-5 axis ticks, line charts (training curves) and bar charts (per-layer SQNR), plus
 * the reader of the metrics.jsonl that training writes. Used by `qat plot` and `qat inspect
 * --plot`.
 *
 *   qat_plot_series s = {"test acc", epochs, acc, n, QAT_PLOT_BLUE, 0};
 *   qat_plot_opts o = {.title = "accuracy", .xlabel = "epoch", .ylabel = "%"};
 *   if (qat_plot_lines("acc.png", &s, 1, &o, NULL)) fprintf(stderr, "%s\n", qat_last_error());
 */
#ifndef QAT_TRAIN_PLOT_H
#define QAT_TRAIN_PLOT_H

#include "qat.h"
#include <stdint.h>

typedef struct {
    uint8_t r, g, b;
} qat_rgb;

#define QAT_PLOT_BLUE ((qat_rgb){31, 119, 180})
#define QAT_PLOT_ORANGE ((qat_rgb){255, 127, 14})
#define QAT_PLOT_GREEN ((qat_rgb){44, 160, 44})
#define QAT_PLOT_RED ((qat_rgb){214, 39, 40})
#define QAT_PLOT_PURPLE ((qat_rgb){148, 103, 189})
#define QAT_PLOT_GRAY ((qat_rgb){127, 127, 127})
#define QAT_PLOT_INK ((qat_rgb){34, 34, 34})     /* axes and text */
#define QAT_PLOT_GRID ((qat_rgb){225, 225, 225})
#define QAT_PLOT_WHITE ((qat_rgb){255, 255, 255})

/* Default image size of the one-chart functions. */
#define QAT_PLOT_W 960
#define QAT_PLOT_H 600

/* ---- canvas ------------------------------------------------------------------------------ */
typedef struct {
    int w, h;
    uint8_t *pix;                /* (h, w, 3) RGB */
    int clip_x0, clip_y0, clip_x1, clip_y1; /* drawing is limited to this box (inclusive) */
} qat_canvas;

/* A white w x h canvas (clip = whole canvas). */
qat_status qat_canvas_init(qat_canvas *c, int w, int h);
void qat_canvas_free(qat_canvas *c);
void qat_canvas_clip(qat_canvas *c, int x0, int y0, int x1, int y1);
void qat_canvas_unclip(qat_canvas *c);
qat_rgb qat_canvas_get(const qat_canvas *c, int x, int y);
void qat_canvas_set(qat_canvas *c, int x, int y, qat_rgb col);
/* Filled rectangle, corners inclusive, in any order. */
void qat_canvas_fill_rect(qat_canvas *c, int x0, int y0, int x1, int y1, qat_rgb col);
/* Bresenham line with a thickness x thickness square pen; dash > 0 draws dash pixels on,
 * dash/2 + 1 off. */
void qat_canvas_line(qat_canvas *c, int x0, int y0, int x1, int y1, int thickness, int dash,
                     qat_rgb col);
qat_status qat_canvas_write_png(const qat_canvas *c, const char *path);

/* ---- text (built-in font: 5x8 glyphs, 6 px advance, printable ASCII; others draw as '?') ---- */
#define QAT_FONT_W 5
#define QAT_FONT_H 8
#define QAT_FONT_ADVANCE 6
/* The glyph of ch: QAT_FONT_H rows, bit 4 of each row is the leftmost pixel. */
const uint8_t *qat_font_glyph(char ch);
int qat_text_width(const char *s, int scale);
/* Horizontal text with its top-left corner at (x, y). */
void qat_canvas_text(qat_canvas *c, int x, int y, const char *s, int scale, qat_rgb col);
/* Text rotated 90 degrees counter-clockwise (read bottom to top): it starts at row y and goes
 * up; the glyphs' tops face column x. */
void qat_canvas_text_up(qat_canvas *c, int x, int y, const char *s, int scale, qat_rgb col);

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

/* ---- metrics.jsonl (train/metrics_read.c) -------------------------------------------------- */
/* One line of metrics.jsonl (train/train.c: append_metrics). Keys missing from a line are NaN;
 * accuracies are fractions (0..1). */
typedef struct {
    char phase[16];          /* "fp32" or "qat" ("fp32" when the key is absent); "config" */
    int epoch;
    double step, lr, train_loss, train_acc, test_loss, test_acc, epoch_s, img_s;
} qat_metrics_row;

typedef struct {
    qat_metrics_row *rows;
    int n;
} qat_metrics;

/* Reads a metrics.jsonl: one flat JSON object per line (blank lines skipped, unknown keys
 * ignored, values may be flat arrays, bare nan/inf accepted since printf writes them for a
 * diverged loss). Every epoch line needs an integer "epoch"; the {"phase": "config", ...} line
 * a run writes when it starts (train/pipeline.c) is checked and skipped. Errors name the file
 * and line ("path:7: ..."). Free with qat_metrics_free. */
qat_status qat_metrics_read(const char *path, qat_metrics *m);
/* Parses one line into row (the same rules; lineno only for the message). A config line gives
 * a row with phase "config" (epoch 0, no "epoch" needed). */
qat_status qat_metrics_parse_line(const char *path, int lineno, const char *line,
                                  qat_metrics_row *row);
void qat_metrics_free(qat_metrics *m);

#endif
