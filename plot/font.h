/* Text on a canvas with a built-in 5x8 bitmap font (plot/font.c): no font files, no
 * FreeType. */
#ifndef QAT_PLOT_FONT_INCLUDED
#define QAT_PLOT_FONT_INCLUDED

#include "canvas.h"

/* 5x8 glyphs, 6 px advance, printable ASCII; others draw as '?'. */
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

#endif
