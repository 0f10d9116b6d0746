/* Line and bar charts on the canvas of plot/canvas.c with the font of plot/font.c, and the
 * per-layer SQNR chart of `qat inspect --plot`. */
#include "plot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void disc(qat_canvas *c, int x, int y, int r, qat_rgb col) {
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++)
            if (dx * dx + dy * dy <= r * r + r) qat_canvas_set(c, x + dx, y + dy, col);
}

static void cross(qat_canvas *c, int x, int y, int r, qat_rgb col) {
    qat_canvas_line(c, x - r, y - r, x + r, y + r, 2, 0, col);
    qat_canvas_line(c, x - r, y + r, x + r, y - r, 2, 0, col);
}

static void rect_outline(qat_canvas *c, int x0, int y0, int x1, int y1, qat_rgb col) {
    qat_canvas_fill_rect(c, x0, y0, x1, y0, col);
    qat_canvas_fill_rect(c, x0, y1, x1, y1, col);
    qat_canvas_fill_rect(c, x0, y0, x0, y1, col);
    qat_canvas_fill_rect(c, x1, y0, x1, y1, col);
}

/* ---- ticks ----------------------------------------------------------------------------------- */

/* 1, 2, 5 or 10 times a power of ten, nearest to raw (Heckbert's "nice numbers"). */
static double nice_step(double raw) {
    double p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

qat_status qat_nice_ticks(double lo, double hi, int target, qat_ticks *t) {
    if (!isfinite(lo) || !isfinite(hi))
        return qat_fail(QAT_ERR_NUMERIC, "plot: axis range [%g, %g] is not finite", lo, hi);
    if (hi < lo) { double s = lo; lo = hi; hi = s; }
    if (hi - lo < 1e-12 * fmax(1, fabs(lo))) {
        /* one value: a range around it, so a single point still gets an axis */
        double d = lo != 0 ? fabs(lo) * 0.05 : 1;
        lo -= d, hi += d;
    }
    target = target < 2 ? 2 : target;
    t->step = nice_step((hi - lo) / (target - 1));
    /* the small slack keeps 0.30000000000000004 / 0.1 from adding a tick */
    t->lo = floor(lo / t->step + 1e-9) * t->step;
    t->hi = ceil(hi / t->step - 1e-9) * t->step;
    t->n = (int)lround((t->hi - t->lo) / t->step) + 1;
    int d = -(int)floor(log10(t->step) + 1e-9);
    t->decimals = d > 0 ? d : 0;
    return QAT_OK;
}

double qat_tick_value(const qat_ticks *t, int i) {
    double v = t->lo + i * t->step;
    return fabs(v) < t->step * 1e-6 ? 0 : v;
}

void qat_tick_label(const qat_ticks *t, int i, char *buf, int size) {
    double v = qat_tick_value(t, i);
    if (fabs(v) >= 1e7 || t->decimals > 6) snprintf(buf, (size_t)size, "%g", v);
    else snprintf(buf, (size_t)size, "%.*f", t->decimals, v);
}

/* ---- chart frame ------------------------------------------------------------------------------- */

int qat_plot_px(const qat_plot_frame *f, double x) {
    return (int)floor(f->left + (x - f->xlo) / (f->xhi - f->xlo) * (f->right - f->left) + 0.5);
}

int qat_plot_py(const qat_plot_frame *f, double y) {
    return (int)floor(f->bottom - (y - f->ylo) / (f->yhi - f->ylo) * (f->bottom - f->top) + 0.5);
}

#define TICK_LEN 5
#define PAD 10
#define TITLE_SCALE 2

/* The pieces around a plot area: title, y tick labels, vertical y label, x label. */
static int title_height(const qat_plot_opts *o) {
    return o->title && *o->title ? PAD + QAT_FONT_H * TITLE_SCALE + PAD : PAD + 4;
}

static int ytick_label_width(const qat_ticks *t) {
    int w = 0;
    char buf[48];
    for (int i = 0; i < t->n; i++) {
        qat_tick_label(t, i, buf, sizeof buf);
        int tw = qat_text_width(buf, 1);
        w = tw > w ? tw : w;
    }
    return w;
}

static int left_margin(const qat_plot_opts *o, const qat_ticks *yt) {
    return PAD + (o->ylabel && *o->ylabel ? QAT_FONT_H + PAD : 0) + ytick_label_width(yt) + 4 + TICK_LEN;
}

static int xlabel_height(const qat_plot_opts *o) {
    return o->xlabel && *o->xlabel ? QAT_FONT_H + 8 : 0;
}

static qat_status check_area(const qat_plot_frame *f) {
    if (f->right - f->left < 20 || f->bottom - f->top < 20)
        return qat_fail(QAT_ERR_ARG, "plot: box too small for the chart (plot area %dx%d)",
                        f->right - f->left, f->bottom - f->top);
    return QAT_OK;
}

static void draw_title(qat_canvas *c, int x, int y, int w, const qat_plot_opts *o) {
    if (!o->title || !*o->title) return;
    int tw = qat_text_width(o->title, TITLE_SCALE);
    qat_canvas_text(c, x + (w - tw) / 2, y + PAD, o->title, TITLE_SCALE, QAT_PLOT_INK);
}

static void draw_ylabel(qat_canvas *c, int x, const qat_plot_frame *f, const qat_plot_opts *o) {
    if (!o->ylabel || !*o->ylabel) return;
    int tw = qat_text_width(o->ylabel, 1);
    qat_canvas_text_up(c, x + PAD, (f->top + f->bottom) / 2 + tw / 2, o->ylabel, 1, QAT_PLOT_INK);
}

static void draw_xlabel(qat_canvas *c, int y, const qat_plot_frame *f, const qat_plot_opts *o) {
    if (!o->xlabel || !*o->xlabel) return;
    int tw = qat_text_width(o->xlabel, 1);
    qat_canvas_text(c, (f->left + f->right - tw) / 2, y, o->xlabel, 1, QAT_PLOT_INK);
}

/* Horizontal grid lines, y ticks and their labels. */
static void draw_yaxis(qat_canvas *c, const qat_plot_frame *f, const qat_ticks *yt) {
    char buf[48];
    for (int i = 0; i < yt->n; i++) {
        int py = qat_plot_py(f, qat_tick_value(yt, i));
        qat_canvas_fill_rect(c, f->left + 1, py, f->right - 1, py, QAT_PLOT_GRID);
        qat_canvas_fill_rect(c, f->left - TICK_LEN, py, f->left - 1, py, QAT_PLOT_INK);
        qat_tick_label(yt, i, buf, sizeof buf);
        int tw = qat_text_width(buf, 1);
        qat_canvas_text(c, f->left - TICK_LEN - 4 - tw, py - QAT_FONT_H / 2 + 1, buf, 1, QAT_PLOT_INK);
    }
}

static void draw_box(qat_canvas *c, const qat_plot_frame *f) {
    rect_outline(c, f->left, f->top, f->right, f->bottom, QAT_PLOT_INK);
}

/* ---- line chart ---------------------------------------------------------------------------------- */

typedef struct {
    double xlo, xhi, ylo, yhi;
    int finite, nonfinite;
} data_range;

static int point_ok(const qat_plot_series *s, int i) { return isfinite(s->x[i]) && isfinite(s->y[i]); }

static data_range series_range(const qat_plot_series *s, int n) {
    data_range r = {INFINITY, -INFINITY, INFINITY, -INFINITY, 0, 0};
    for (int k = 0; k < n; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!point_ok(&s[k], i)) {
                r.nonfinite++;
                continue;
            }
            r.finite++;
            r.xlo = fmin(r.xlo, s[k].x[i]), r.xhi = fmax(r.xhi, s[k].x[i]);
            r.ylo = fmin(r.ylo, s[k].y[i]), r.yhi = fmax(r.yhi, s[k].y[i]);
        }
    return r;
}

/* The x axis spans the data plus a margin (not rounded out to ticks: epochs 1..15 should not
 * leave an empty epoch 16). */
static void x_extent(const data_range *r, int integer_x, double *lo, double *hi) {
    double span = r->xhi - r->xlo;
    double pad = span > 0 ? span * 0.03 : (r->xlo != 0 ? fabs(r->xlo) * 0.05 : 1);
    if (integer_x) pad = span > 0 ? fmax(pad, 0.25) : 1;
    *lo = r->xlo - pad, *hi = r->xhi + pad;
}

static void draw_xticks(qat_canvas *c, const qat_plot_frame *f, int integer_x) {
    qat_ticks t;
    qat_nice_ticks(f->xlo, f->xhi, 8, &t);
    if (integer_x && t.step < 1) {
        t.step = 1, t.decimals = 0;
        t.lo = floor(f->xlo), t.n = (int)(ceil(f->xhi) - t.lo) + 1;
    }
    char buf[48];
    for (int i = 0; i < t.n; i++) {
        double v = qat_tick_value(&t, i);
        if (v < f->xlo || v > f->xhi) continue;
        int px = qat_plot_px(f, v);
        qat_canvas_fill_rect(c, px, f->top + 1, px, f->bottom - 1, QAT_PLOT_GRID);
        qat_canvas_fill_rect(c, px, f->bottom + 1, px, f->bottom + TICK_LEN, QAT_PLOT_INK);
        qat_tick_label(&t, i, buf, sizeof buf);
        qat_canvas_text(c, px - qat_text_width(buf, 1) / 2, f->bottom + TICK_LEN + 4, buf, 1, QAT_PLOT_INK);
    }
}

static void draw_series(qat_canvas *c, const qat_plot_frame *f, const qat_plot_series *s) {
    int prev = -1, markers = s->n <= 60;
    for (int i = 0; i < s->n; i++) {
        if (!point_ok(s, i)) {
            /* the gap is visible as a break; the x on the bottom edge says why */
            if (isfinite(s->x[i]) && s->x[i] >= f->xlo && s->x[i] <= f->xhi)
                cross(c, qat_plot_px(f, s->x[i]), f->bottom - 6, 3, s->color);
            prev = -1;
            continue;
        }
        int px = qat_plot_px(f, s->x[i]), py = qat_plot_py(f, s->y[i]);
        if (prev >= 0)
            qat_canvas_line(c, qat_plot_px(f, s->x[prev]), qat_plot_py(f, s->y[prev]), px, py, 2,
                            s->dashed ? 8 : 0, s->color);
        if (markers) disc(c, px, py, 3, s->color);
        prev = i;
    }
}

static void draw_vline(qat_canvas *c, const qat_plot_frame *f, const qat_plot_opts *o) {
    if (!o->vline_label || !isfinite(o->vline_x) || o->vline_x < f->xlo || o->vline_x > f->xhi) return;
    int px = qat_plot_px(f, o->vline_x);
    qat_rgb col = {90, 90, 90};
    qat_canvas_line(c, px, f->top + 1, px, f->bottom - 1, 2, 6, col);
    qat_canvas_text(c, px + 5, f->top + 6, o->vline_label, 1, col);
}

#define LEGEND_ROW 16
#define LEGEND_SWATCH 24
#define LEGEND_GAP 22

static int legend_entry_width(const qat_plot_series *s) {
    return LEGEND_SWATCH + 6 + qat_text_width(s->name, 1) + LEGEND_GAP;
}

/* The legend is a strip above the plot area, wrapped into rows of at most width pixels:
 * outside the data, so it never hides a curve. Returns the rows it needs (0: no names). */
static int legend_rows(const qat_plot_series *s, int n, int width) {
    int rows = 0, used = 0;
    for (int k = 0; k < n; k++) {
        if (!s[k].name) continue;
        int ew = legend_entry_width(&s[k]);
        if (!rows || used + ew > width) rows++, used = 0;
        used += ew;
    }
    return rows;
}

/* Width of the legend row that starts at series *k; advances *k past it. */
static int legend_row_width(const qat_plot_series *s, int n, int width, int *k) {
    int used = 0;
    for (; *k < n; ++*k) {
        if (!s[*k].name) continue;
        int ew = legend_entry_width(&s[*k]);
        if (used && used + ew > width) break;
        used += ew;
    }
    return used - LEGEND_GAP;
}

static void draw_legend(qat_canvas *c, const qat_plot_frame *f, int y, const qat_plot_series *s, int n) {
    int width = f->right - f->left, k = 0;
    for (int row = 0; k < n; row++) {
        int first = k, rw = legend_row_width(s, n, width, &k);
        int x = (f->left + f->right - rw) / 2, ry = y + row * LEGEND_ROW + LEGEND_ROW / 2;
        for (int j = first; j < k; j++) {
            if (!s[j].name) continue;
            qat_canvas_line(c, x, ry, x + LEGEND_SWATCH, ry, 2, s[j].dashed ? 6 : 0, s[j].color);
            disc(c, x + LEGEND_SWATCH / 2, ry, 3, s[j].color);
            qat_canvas_text(c, x + LEGEND_SWATCH + 6, ry - QAT_FONT_H / 2 + 1, s[j].name, 1, QAT_PLOT_INK);
            x += legend_entry_width(&s[j]);
        }
    }
}

qat_status qat_plot_lines_into(qat_canvas *c, int x, int y, int w, int h,
                               const qat_plot_series *s, int n, const qat_plot_opts *o,
                               qat_plot_frame *frame) {
    static const qat_plot_opts none;
    o = o ? o : &none;
    for (int k = 0; k < n; k++)
        if (s[k].n < 0 || (s[k].n > 0 && (!s[k].x || !s[k].y)))
            return qat_fail(QAT_ERR_ARG, "plot: series %d has %d points but no data", k, s[k].n);
    data_range r = series_range(s, n);
    if (!r.finite)
        return qat_fail(QAT_ERR_ARG, "plot%s%s: nothing to draw (%d series, no finite point)",
                        o->title ? " " : "", o->title ? o->title : "", n);
    /* a little headroom so markers on the extreme values are not cut by the frame */
    double pad = (r.yhi - r.ylo) * 0.02;
    qat_ticks yt;
    qat_status st = qat_nice_ticks(r.ylo - pad, r.yhi + pad, 6, &yt);
    if (st) return st;
    qat_plot_frame f;
    f.left = x + left_margin(o, &yt);
    f.right = x + w - 2 * PAD;
    int legend_y = y + title_height(o);
    f.top = legend_y + legend_rows(s, n, f.right - f.left) * LEGEND_ROW + 6;
    f.bottom = y + h - (TICK_LEN + 4 + QAT_FONT_H + 6 + xlabel_height(o) + PAD);
    x_extent(&r, o->integer_x, &f.xlo, &f.xhi);
    f.ylo = yt.lo, f.yhi = yt.hi, f.nonfinite = r.nonfinite;
    if ((st = check_area(&f))) return st;
    draw_title(c, x, y, w, o);
    draw_ylabel(c, x, &f, o);
    draw_yaxis(c, &f, &yt);
    draw_xticks(c, &f, o->integer_x);
    draw_xlabel(c, f.bottom + TICK_LEN + 4 + QAT_FONT_H + 8, &f, o);
    qat_canvas_clip(c, f.left + 1, f.top + 1, f.right - 1, f.bottom - 1);
    draw_vline(c, &f, o);
    for (int k = 0; k < n; k++) draw_series(c, &f, &s[k]);
    qat_canvas_unclip(c);
    draw_legend(c, &f, legend_y, s, n);
    draw_box(c, &f);
    if (frame) *frame = f;
    return QAT_OK;
}

/* ---- bar chart ------------------------------------------------------------------------------------ */

#define BAR_LABEL_MAX 28
#define BAR_LIGHT ((qat_rgb){174, 199, 232})

/* Labels longer than BAR_LABEL_MAX keep their end (the distinguishing part of a module path). */
static void bar_label(const char *const *labels, int i, char *buf) {
    const char *s = labels && labels[i] ? labels[i] : "";
    size_t len = strlen(s);
    if (len > BAR_LABEL_MAX) snprintf(buf, BAR_LABEL_MAX + 1, "..%s", s + len - (BAR_LABEL_MAX - 2));
    else snprintf(buf, BAR_LABEL_MAX + 1, "%s", s);
}

typedef struct {
    int vertical;   /* labels rotated */
    int every;      /* only every k-th label */
    int height;     /* pixels below the axis they need */
} label_layout;

static label_layout bar_labels_layout(const char *const *labels, int n, double slot) {
    label_layout l = {0, 1, QAT_FONT_H};
    int maxw = 0;
    char buf[BAR_LABEL_MAX + 1];
    for (int i = 0; i < n; i++) {
        bar_label(labels, i, buf);
        int tw = qat_text_width(buf, 1);
        maxw = tw > maxw ? tw : maxw;
    }
    if (maxw <= slot - 4) return l;
    l.vertical = 1, l.height = maxw;
    if (slot < QAT_FONT_H + 2) l.every = (int)ceil((QAT_FONT_H + 2) / slot);
    return l;
}

typedef struct {
    double lo, hi;  /* finite range including 0 */
    int finite, inf, nan;
} bar_range;

static bar_range bars_range(const double *v, int n) {
    bar_range r = {0, 0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        if (isnan(v[i])) r.nan++;
        else if (isinf(v[i])) r.inf++;
        else r.finite++, r.lo = fmin(r.lo, v[i]), r.hi = fmax(r.hi, v[i]);
    }
    return r;
}

static void draw_bar(qat_canvas *c, const qat_plot_frame *f, int i, double v, int show_value) {
    int x0 = qat_plot_px(f, i + 0.15), x1 = qat_plot_px(f, i + 0.85) - 1;
    x1 = x1 < x0 ? x0 : x1;
    int cx = qat_plot_px(f, i + 0.5), zero = qat_plot_py(f, 0);
    if (isnan(v)) {
        cross(c, cx, zero - 5, 3, QAT_PLOT_RED);
        if (x1 - x0 + 6 >= qat_text_width("nan", 1))
            qat_canvas_text(c, cx - qat_text_width("nan", 1) / 2, zero - 12 - QAT_FONT_H, "nan", 1, QAT_PLOT_RED);
        return;
    }
    if (isinf(v)) {
        /* capped at the axis edge, hatched, labelled: the value itself does not fit any axis */
        int end = v > 0 ? f->top + 1 : f->bottom - 1;
        int y0 = end < zero ? end : zero, y1 = end < zero ? zero : end;
        qat_canvas saved = *c;
        qat_canvas_clip(c, x0 > c->clip_x0 ? x0 : c->clip_x0, y0 > c->clip_y0 ? y0 : c->clip_y0,
                        x1 < c->clip_x1 ? x1 : c->clip_x1, y1 < c->clip_y1 ? y1 : c->clip_y1);
        qat_canvas_fill_rect(c, x0, y0, x1, y1, BAR_LIGHT);
        for (int yy = y0; yy <= y1 + (x1 - x0); yy += 6)
            qat_canvas_line(c, x0, yy, x1, yy - (x1 - x0), 1, 0, QAT_PLOT_BLUE);
        rect_outline(c, x0, y0, x1, y1, QAT_PLOT_BLUE);
        qat_canvas_clip(c, saved.clip_x0, saved.clip_y0, saved.clip_x1, saved.clip_y1);
        const char *txt = v > 0 ? "inf" : "-inf";
        int tw = qat_text_width(txt, 1);
        qat_canvas_fill_rect(c, cx - tw / 2 - 1, f->top + 3, cx + tw / 2 + 1, f->top + 4 + QAT_FONT_H, QAT_PLOT_WHITE);
        qat_canvas_text(c, cx - tw / 2, f->top + 4, txt, 1, QAT_PLOT_RED);
        return;
    }
    int top = qat_plot_py(f, v);
    qat_canvas_fill_rect(c, x0, zero, x1, top, QAT_PLOT_BLUE);
    if (!show_value) return;
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", v);
    int tw = qat_text_width(buf, 1);
    if (tw > x1 - x0 + 6) return;
    int ty = v >= 0 ? top - QAT_FONT_H - 2 : top + 3;
    qat_canvas_text(c, cx - tw / 2, ty, buf, 1, QAT_PLOT_INK);
}

static void draw_bar_labels(qat_canvas *c, const qat_plot_frame *f, const char *const *labels, int n,
                            const label_layout *l) {
    char buf[BAR_LABEL_MAX + 1];
    for (int i = 0; i < n; i += l->every) {
        bar_label(labels, i, buf);
        int cx = qat_plot_px(f, i + 0.5), tw = qat_text_width(buf, 1);
        qat_canvas_fill_rect(c, cx, f->bottom + 1, cx, f->bottom + TICK_LEN, QAT_PLOT_INK);
        if (l->vertical)
            qat_canvas_text_up(c, cx - QAT_FONT_H / 2 + 1, f->bottom + TICK_LEN + 4 + tw, buf, 1, QAT_PLOT_INK);
        else
            qat_canvas_text(c, cx - tw / 2, f->bottom + TICK_LEN + 4, buf, 1, QAT_PLOT_INK);
    }
}

qat_status qat_plot_bars_into(qat_canvas *c, int x, int y, int w, int h, const char *const *labels,
                              const double *values, int n, const qat_plot_opts *o,
                              qat_plot_frame *frame) {
    static const qat_plot_opts none;
    o = o ? o : &none;
    if (n <= 0 || !values) return qat_fail(QAT_ERR_ARG, "plot: no bars to draw (%d values)", n);
    bar_range r = bars_range(values, n);
    if (!r.finite && !r.inf)
        return qat_fail(QAT_ERR_ARG, "plot: all %d bar values are NaN, nothing to draw", n);
    /* infinite bars need headroom above the finite ones to read as "off the scale" */
    double span = r.hi - r.lo > 0 ? r.hi - r.lo : 1;
    double hi = r.hi + (r.inf ? 0.15 * span : 0), lo = r.lo;
    if (r.inf && hi == 0) hi = span;
    /* room for the value printed above the highest bar (and below the lowest) */
    if (o->show_values) hi += hi > 0 ? 0.06 * span : 0, lo -= lo < 0 ? 0.06 * span : 0;
    qat_ticks yt;
    qat_status st = qat_nice_ticks(lo, hi, 6, &yt);
    if (st) return st;
    qat_plot_frame f;
    f.left = x + left_margin(o, &yt);
    f.right = x + w - 2 * PAD;
    f.top = y + title_height(o);
    f.xlo = 0, f.xhi = n, f.ylo = yt.lo, f.yhi = yt.hi, f.nonfinite = r.inf + r.nan;
    label_layout l = bar_labels_layout(labels, n, (double)(f.right - f.left) / n);
    f.bottom = y + h - (TICK_LEN + 4 + l.height + 6 + xlabel_height(o) + PAD);
    if ((st = check_area(&f))) return st;
    draw_title(c, x, y, w, o);
    draw_ylabel(c, x, &f, o);
    draw_yaxis(c, &f, &yt);
    draw_bar_labels(c, &f, labels, n, &l);
    draw_xlabel(c, f.bottom + TICK_LEN + 4 + l.height + 8, &f, o);
    qat_canvas_clip(c, f.left + 1, f.top + 1, f.right - 1, f.bottom - 1);
    for (int i = 0; i < n; i++) draw_bar(c, &f, i, values[i], o->show_values);
    if (f.ylo < 0) {
        int zero = qat_plot_py(&f, 0);
        qat_canvas_fill_rect(c, f.left, zero, f.right, zero, QAT_PLOT_INK);
    }
    qat_canvas_unclip(c);
    draw_box(c, &f);
    if (frame) *frame = f;
    return QAT_OK;
}

/* ---- one chart per PNG ----------------------------------------------------------------------------- */

qat_status qat_plot_lines(const char *path, const qat_plot_series *s, int n,
                          const qat_plot_opts *o, qat_plot_frame *frame) {
    qat_canvas c;
    qat_status st = qat_canvas_init(&c, QAT_PLOT_W, QAT_PLOT_H);
    if (!st) st = qat_plot_lines_into(&c, 0, 0, c.w, c.h, s, n, o, frame);
    if (!st) st = qat_canvas_write_png(&c, path);
    qat_canvas_free(&c);
    return st;
}

qat_status qat_plot_bars(const char *path, const char *const *labels, const double *values, int n,
                         const qat_plot_opts *o, qat_plot_frame *frame) {
    qat_canvas c;
    qat_status st = qat_canvas_init(&c, QAT_PLOT_W, QAT_PLOT_H);
    if (!st) st = qat_plot_bars_into(&c, 0, 0, c.w, c.h, labels, values, n, o, frame);
    if (!st) st = qat_canvas_write_png(&c, path);
    qat_canvas_free(&c);
    return st;
}

/* ---- qat inspect --plot ---------------------------------------------------------------------- */

qat_status qat_plot_layer_sqnr(const char *path, const char *ckpt, const qat_layer_sqnr *s) {
    const char **labels = malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof *labels);
    if (!labels) return qat_fail(QAT_ERR_NOMEM, "inspect: out of memory");
    for (int i = 0; i < s->n; i++) labels[i] = s->names[i];
    size_t len = strlen(ckpt);
    char title[160];
    /* the end of a long path names the run */
    snprintf(title, sizeof title, "SQNR per layer: %s%s", len > 56 ? ".." : "", ckpt + (len > 56 ? len - 56 : 0));
    int exact = 0;
    for (int i = 0; i < s->n; i++) exact += isinf(s->sqnr_db[i]) != 0;
    qat_plot_opts o = {title, exact ? "layer   (inf: the fake-quant output equals the FP32 output)" : "layer",
                       "SQNR (dB)", 0, 0, NULL, 1};
    qat_status st = qat_plot_bars(path, labels, s->sqnr_db, s->n, &o, NULL);
    free(labels);
    return st;
}
