/* An RGB canvas to draw charts on, written to PNG with libpng (datasets/png_write.c): filled
 * rectangles and Bresenham lines with a square pen, clipped to a box. No anti-aliasing: charts
 * stay crisp and tests can check exact pixels. */
#ifndef QAT_CANVAS_H
#define QAT_CANVAS_H

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

#endif
