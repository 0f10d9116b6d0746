/* The RGB canvas (plot/canvas.h). */
#include "canvas.h"
#include "dataset.h"
#include <stdlib.h>
#include <string.h>

qat_status qat_canvas_init(qat_canvas *c, int w, int h) {
    memset(c, 0, sizeof *c);
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384)
        return qat_fail(QAT_ERR_ARG, "plot: canvas %dx%d out of range (1..16384)", w, h);
    c->pix = malloc((size_t)w * h * 3);
    if (!c->pix) return qat_fail(QAT_ERR_NOMEM, "plot: out of memory for a %dx%d canvas", w, h);
    memset(c->pix, 255, (size_t)w * h * 3);
    c->w = w, c->h = h;
    qat_canvas_unclip(c);
    return QAT_OK;
}

void qat_canvas_free(qat_canvas *c) {
    free(c->pix);
    memset(c, 0, sizeof *c);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void qat_canvas_clip(qat_canvas *c, int x0, int y0, int x1, int y1) {
    c->clip_x0 = clampi(x0, 0, c->w - 1), c->clip_x1 = clampi(x1, 0, c->w - 1);
    c->clip_y0 = clampi(y0, 0, c->h - 1), c->clip_y1 = clampi(y1, 0, c->h - 1);
}

void qat_canvas_unclip(qat_canvas *c) { qat_canvas_clip(c, 0, 0, c->w - 1, c->h - 1); }

qat_rgb qat_canvas_get(const qat_canvas *c, int x, int y) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return QAT_PLOT_WHITE;
    const uint8_t *p = c->pix + ((size_t)y * c->w + x) * 3;
    return (qat_rgb){p[0], p[1], p[2]};
}

void qat_canvas_set(qat_canvas *c, int x, int y, qat_rgb col) {
    if (x < c->clip_x0 || x > c->clip_x1 || y < c->clip_y0 || y > c->clip_y1) return;
    uint8_t *p = c->pix + ((size_t)y * c->w + x) * 3;
    p[0] = col.r, p[1] = col.g, p[2] = col.b;
}

void qat_canvas_fill_rect(qat_canvas *c, int x0, int y0, int x1, int y1, qat_rgb col) {
    if (x0 > x1) { int t = x0; x0 = x1; x1 = t; }
    if (y0 > y1) { int t = y0; y0 = y1; y1 = t; }
    x0 = x0 < c->clip_x0 ? c->clip_x0 : x0, x1 = x1 > c->clip_x1 ? c->clip_x1 : x1;
    y0 = y0 < c->clip_y0 ? c->clip_y0 : y0, y1 = y1 > c->clip_y1 ? c->clip_y1 : y1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) qat_canvas_set(c, x, y, col);
}

void qat_canvas_line(qat_canvas *c, int x0, int y0, int x1, int y1, int thickness, int dash,
                     qat_rgb col) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    int lo = (thickness - 1) / 2, hi = thickness / 2, period = dash + dash / 2 + 1;
    for (int k = 0;; k++) {
        if (dash <= 0 || k % period < dash)
            qat_canvas_fill_rect(c, x0 - lo, y0 - lo, x0 + hi, y0 + hi, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

qat_status qat_canvas_write_png(const qat_canvas *c, const char *path) {
    return qat_png_write_rgb(path, c->w, c->h, c->pix);
}

