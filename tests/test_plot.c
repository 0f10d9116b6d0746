/* Plot tests: charts are rendered to PNG files in a mkdtemp directory, read back with libpng
 * directly (not through qat's reader) and checked pixel by pixel where the chart's frame says
 * the data went; plus the tick rule, the font, and the metrics.jsonl reader. */
#define _GNU_SOURCE
#include "plot.h"
#include "test_util.h"
#include "train.h"
#include <CUnit/CUnit.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/qat_plot_XXXXXX";

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static int suite_init(void) { return mkdtemp(tmpdir) ? 0 : 1; }
static int suite_clean(void) { return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static const char *tpath(const char *name) {
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- reading the PNG back (libpng's simplified API) -------------------------------------------- */

typedef struct {
    int w, h;
    uint8_t *rgb;
} image;

static image read_png(const char *path) {
    image im = {0, 0, NULL};
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&p, path)) return im;
    p.format = PNG_FORMAT_RGB;
    im.rgb = malloc(PNG_IMAGE_SIZE(p));
    if (im.rgb && png_image_finish_read(&p, NULL, im.rgb, 0, NULL)) {
        im.w = (int)p.width, im.h = (int)p.height;
    } else {
        free(im.rgb);
        im.rgb = NULL;
    }
    png_image_free(&p);
    return im;
}

static qat_rgb px(const image *im, int x, int y) {
    const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
    return (qat_rgb){p[0], p[1], p[2]};
}

static int same(qat_rgb a, qat_rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
static int dark(qat_rgb a) { return a.r < 80 && a.g < 80 && a.b < 80; }

/* Whether col appears within r pixels of (x, y). */
static int near(const image *im, int x, int y, int r, qat_rgb col) {
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            int xx = x + dx, yy = y + dy;
            if (xx >= 0 && yy >= 0 && xx < im->w && yy < im->h && same(px(im, xx, yy), col)) return 1;
        }
    return 0;
}

/* ---- ticks ------------------------------------------------------------------------------------- */

static void check_ticks(double lo, double hi, double step, double tlo, double thi, int n, int dec,
                        const char *first, const char *last) {
    qat_ticks t;
    CU_ASSERT_FATAL(qat_nice_ticks(lo, hi, 6, &t) == QAT_OK);
    CU_ASSERT_DOUBLE_EQUAL(t.step, step, step * 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(t.lo, tlo, step * 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(t.hi, thi, step * 1e-9);
    CU_ASSERT_EQUAL(t.n, n);
    CU_ASSERT_EQUAL(t.decimals, dec);
    char buf[32];
    qat_tick_label(&t, 0, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, first);
    qat_tick_label(&t, t.n - 1, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, last);
    if (strcmp(buf, last)) printf("\n  ticks [%g, %g]: last label %s, expected %s\n", lo, hi, buf, last);
}

static void test_ticks(void) {
    check_ticks(0.912, 0.934, 0.005, 0.910, 0.935, 6, 3, "0.910", "0.935");
    check_ticks(0, 2.3, 0.5, 0, 2.5, 6, 1, "0.0", "2.5");
    check_ticks(-5, 40, 10, -10, 40, 6, 0, "-10", "40");
    check_ticks(40, -5, 10, -10, 40, 6, 0, "-10", "40"); /* swapped bounds */
    check_ticks(0.2, 1.41, 0.2, 0.2, 1.6, 8, 1, "0.2", "1.6");
    check_ticks(0, 1e8, 2e7, 0, 1e8, 6, 0, "0", "1e+08");
    /* a single value still gets an axis around it; the middle tick reads 0, not -0 */
    qat_ticks t;
    CU_ASSERT_FATAL(qat_nice_ticks(3, 3, 6, &t) == QAT_OK);
    CU_ASSERT(t.lo < 3 && t.hi > 3 && t.n >= 2);
    CU_ASSERT_FATAL(qat_nice_ticks(-1, 1, 3, &t) == QAT_OK);
    char buf[32];
    for (int i = 0; i < t.n; i++) {
        qat_tick_label(&t, i, buf, sizeof buf);
        CU_ASSERT(strcmp(buf, "-0") != 0);
    }
    CU_ASSERT(qat_nice_ticks(0, INFINITY, 6, &t) == QAT_ERR_NUMERIC);
    CU_ASSERT(qat_nice_ticks(NAN, 1, 6, &t) == QAT_ERR_NUMERIC);
}

/* ---- font -------------------------------------------------------------------------------------- */

static void test_font(void) {
    /* every printable character but space has pixels; others fall back to '?' */
    for (int ch = '!'; ch <= '~'; ch++) {
        const uint8_t *g = qat_font_glyph((char)ch);
        int bits = 0;
        for (int r = 0; r < QAT_FONT_H; r++) bits |= g[r];
        CU_ASSERT(bits != 0 && (bits & ~0x1F) == 0);
    }
    CU_ASSERT(qat_font_glyph(' ')[3] == 0);
    CU_ASSERT(qat_font_glyph('\x01') == qat_font_glyph('?'));
    CU_ASSERT(qat_font_glyph((char)0xE9) == qat_font_glyph('?'));
    CU_ASSERT(memcmp(qat_font_glyph('O'), qat_font_glyph('0'), QAT_FONT_H) != 0);
    CU_ASSERT_EQUAL(qat_text_width("abc", 1), 17);
    CU_ASSERT_EQUAL(qat_text_width("abc", 2), 34);
    CU_ASSERT_EQUAL(qat_text_width("", 2), 0);

    qat_canvas c;
    CU_ASSERT_FATAL(qat_canvas_init(&c, 64, 64) == QAT_OK);
    /* 'T' at scale 2: row 0 is full (5 blocks of 2x2), row 1 only the middle column */
    qat_canvas_text(&c, 10, 20, "T", 2, QAT_PLOT_INK);
    for (int gx = 0; gx < 5; gx++) {
        CU_ASSERT(same(qat_canvas_get(&c, 10 + 2 * gx, 20), QAT_PLOT_INK));
        CU_ASSERT(same(qat_canvas_get(&c, 11 + 2 * gx, 21), QAT_PLOT_INK));
    }
    CU_ASSERT(same(qat_canvas_get(&c, 14, 22), QAT_PLOT_INK));
    CU_ASSERT(same(qat_canvas_get(&c, 10, 22), QAT_PLOT_WHITE));
    CU_ASSERT(same(qat_canvas_get(&c, 20, 20), QAT_PLOT_WHITE)); /* past the glyph */
    /* rotated: 'T' drawn upwards from row 50 at column 40: its top row becomes column 40 */
    qat_canvas_text_up(&c, 40, 50, "T", 1, QAT_PLOT_RED);
    for (int gx = 0; gx < 5; gx++) CU_ASSERT(same(qat_canvas_get(&c, 40, 50 - gx), QAT_PLOT_RED));
    CU_ASSERT(same(qat_canvas_get(&c, 41, 48), QAT_PLOT_RED));  /* the stem, glyph column 2 */
    CU_ASSERT(same(qat_canvas_get(&c, 41, 50), QAT_PLOT_WHITE));
    CU_ASSERT(same(qat_canvas_get(&c, 40, 51), QAT_PLOT_WHITE));
    qat_canvas_free(&c);
}

/* ---- line chart ------------------------------------------------------------------------------------ */

static void test_lines(void) {
    double x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {1.40, 0.71, 0.62, 0.58, 0.55, 0.53};
    double y2[6] = {0.65, 0.57, 0.45, 0.33, 0.32, 0.44};
    qat_plot_series s[2] = {{"train loss", x, y, 6, QAT_PLOT_BLUE, 0},
                            {"test loss", x, y2, 6, QAT_PLOT_ORANGE, 1}};
    qat_plot_opts o = {"Loss", "epoch", "loss", 1, 3.5, "QAT starts", 0};
    qat_plot_frame f;
    const char *path = tpath("lines.png");
    CU_ASSERT_FATAL(qat_plot_lines(path, s, 2, &o, &f) == QAT_OK);
    image im = read_png(path);
    CU_ASSERT_FATAL(im.rgb != NULL);
    CU_ASSERT_EQUAL(im.w, QAT_PLOT_W);
    CU_ASSERT_EQUAL(im.h, QAT_PLOT_H);
    /* the y axis covers the data with nice bounds, the plot area sits inside the image */
    CU_ASSERT(f.ylo <= 0.53 && f.yhi >= 1.40 && f.xlo < 1 && f.xhi > 6);
    CU_ASSERT(f.left > 20 && f.right < im.w - 5 && f.top > 20 && f.bottom < im.h - 20);
    CU_ASSERT(same(px(&im, 2, 2), QAT_PLOT_WHITE));
    CU_ASSERT(same(px(&im, im.w - 2, im.h - 2), QAT_PLOT_WHITE));
    /* the axes: left and bottom edges of the frame are dark along their length */
    for (int k = 1; k < 10; k++) {
        CU_ASSERT(dark(px(&im, f.left, f.top + k * (f.bottom - f.top) / 10)));
        CU_ASSERT(dark(px(&im, f.left + k * (f.right - f.left) / 10, f.bottom)));
    }
    /* every point is a marker of its series' colour, and the segments between them too */
    for (int i = 0; i < 6; i++) {
        CU_ASSERT(same(px(&im, qat_plot_px(&f, x[i]), qat_plot_py(&f, y[i])), QAT_PLOT_BLUE));
        CU_ASSERT(same(px(&im, qat_plot_px(&f, x[i]), qat_plot_py(&f, y2[i])), QAT_PLOT_ORANGE));
    }
    double xm = 1.75, ym = y[0] + 0.75 * (y[1] - y[0]);
    CU_ASSERT(near(&im, qat_plot_px(&f, xm), qat_plot_py(&f, ym), 1, QAT_PLOT_BLUE));
    /* a point far from both curves is background or grid */
    qat_rgb far = px(&im, qat_plot_px(&f, 5.5), qat_plot_py(&f, 1.2));
    CU_ASSERT(same(far, QAT_PLOT_WHITE) || same(far, QAT_PLOT_GRID));
    /* the dashed marker line at x = 3.5 has gaps */
    int vx = qat_plot_px(&f, 3.5), on = 0, off = 0;
    for (int yy = f.top + 30; yy < f.top + 130; yy++) {
        qat_rgb p = px(&im, vx, yy);
        if (same(p, (qat_rgb){90, 90, 90})) on++;
        else if (same(p, QAT_PLOT_WHITE) || same(p, QAT_PLOT_GRID)) off++;
    }
    CU_ASSERT(on > 30 && off > 10);
    CU_ASSERT_EQUAL(f.nonfinite, 0);
    free(im.rgb);
}

static void test_lines_nonfinite(void) {
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {1, 1, NAN, 1, INFINITY};
    qat_plot_series s = {"with gaps", x, y, 5, QAT_PLOT_RED, 0};
    qat_plot_frame f;
    const char *path = tpath("nan.png");
    CU_ASSERT_FATAL(qat_plot_lines(path, &s, 1, NULL, &f) == QAT_OK);
    CU_ASSERT_EQUAL(f.nonfinite, 2);
    image im = read_png(path);
    CU_ASSERT_FATAL(im.rgb != NULL);
    int row = qat_plot_py(&f, 1);
    /* drawn between 1 and 2, broken between 2 and 4 (around the NaN) */
    CU_ASSERT(same(px(&im, qat_plot_px(&f, 1.5), row), QAT_PLOT_RED));
    CU_ASSERT(!near(&im, qat_plot_px(&f, 2.5), row, 1, QAT_PLOT_RED));
    CU_ASSERT(!near(&im, qat_plot_px(&f, 3.5), row, 1, QAT_PLOT_RED));
    /* the NaN point is marked with an x on the bottom edge */
    CU_ASSERT(near(&im, qat_plot_px(&f, 3), f.bottom - 6, 2, QAT_PLOT_RED));
    CU_ASSERT(!near(&im, qat_plot_px(&f, 2), f.bottom - 6, 2, QAT_PLOT_RED));
    free(im.rgb);

    /* a single finite point still makes a chart */
    double x1 = 3, y1 = 0.91;
    qat_plot_series one = {"one", &x1, &y1, 1, QAT_PLOT_GREEN, 0};
    CU_ASSERT_FATAL(qat_plot_lines(tpath("one.png"), &one, 1, NULL, &f) == QAT_OK);
    CU_ASSERT(f.xlo < 3 && f.xhi > 3 && f.ylo < 0.91 && f.yhi > 0.91);
    im = read_png(tpath("one.png"));
    CU_ASSERT_FATAL(im.rgb != NULL);
    CU_ASSERT(same(px(&im, qat_plot_px(&f, 3), qat_plot_py(&f, 0.91)), QAT_PLOT_GREEN));
    free(im.rgb);

    /* nothing finite, or nothing at all: an error naming the problem, and no file */
    double nan2[2] = {NAN, NAN};
    qat_plot_series bad = {"bad", x, nan2, 2, QAT_PLOT_RED, 0};
    CU_ASSERT(qat_plot_lines(tpath("bad.png"), &bad, 1, NULL, NULL) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "no finite point") != NULL);
    CU_ASSERT(qat_plot_lines(tpath("none.png"), NULL, 0, NULL, NULL) == QAT_ERR_ARG);
    CU_ASSERT(!exists(tpath("bad.png")) && !exists(tpath("none.png")));
    /* a box too small for the chart */
    qat_canvas c;
    CU_ASSERT_FATAL(qat_canvas_init(&c, 60, 40) == QAT_OK);
    CU_ASSERT(qat_plot_lines_into(&c, 0, 0, 60, 40, &s, 1, NULL, NULL) == QAT_ERR_ARG);
    qat_canvas_free(&c);
}

/* ---- bar chart ------------------------------------------------------------------------------------- */

/* The first and last rows in column x (inside the plot area) with colour col; -1 when none. */
static void column_extent(const image *im, const qat_plot_frame *f, int x, qat_rgb col, int *first, int *last) {
    *first = *last = -1;
    for (int y = f->top + 1; y < f->bottom; y++)
        if (same(px(im, x, y), col)) {
            if (*first < 0) *first = y;
            *last = y;
        }
}

static void test_bars(void) {
    const char *labels[6] = {"conv", "dw", "neg", "exact", "broken", "fc"};
    double v[6] = {10, 20, -5, INFINITY, NAN, 15};
    qat_plot_opts o = {"SQNR", "layer", "dB", 0, 0, NULL, 1};
    qat_plot_frame f;
    const char *path = tpath("bars.png");
    CU_ASSERT_FATAL(qat_plot_bars(path, labels, v, 6, &o, &f) == QAT_OK);
    CU_ASSERT_EQUAL(f.nonfinite, 2);
    CU_ASSERT(f.ylo <= -5 && f.yhi > 20);
    image im = read_png(path);
    CU_ASSERT_FATAL(im.rgb != NULL);
    CU_ASSERT(im.w == QAT_PLOT_W && im.h == QAT_PLOT_H);
    int zero = qat_plot_py(&f, 0), first, last;
    /* bars run from the zero line (drawn dark over them, the axis has negative values) to
     * exactly the value's row */
    for (int i = 0; i < 6; i++) {
        if (!isfinite(v[i])) continue;
        int bx = qat_plot_px(&f, i + 0.5), top = qat_plot_py(&f, v[i]);
        column_extent(&im, &f, bx, QAT_PLOT_BLUE, &first, &last);
        CU_ASSERT(dark(px(&im, bx, zero)));
        if (v[i] > 0) {
            CU_ASSERT_EQUAL(first, top);
            CU_ASSERT_EQUAL(last, zero - 1);
        } else {
            CU_ASSERT_EQUAL(first, zero + 1);
            CU_ASSERT_EQUAL(last, top);
        }
    }
    /* bar heights are proportional: 20 is twice 10 */
    int h10 = zero - qat_plot_py(&f, 10), h20 = zero - qat_plot_py(&f, 20);
    CU_ASSERT(abs(h20 - 2 * h10) <= 1);
    /* the infinite bar reaches the top of the axis, light and hatched */
    int cx = qat_plot_px(&f, 3.5);
    CU_ASSERT(near(&im, cx, f.top + 20, 3, (qat_rgb){174, 199, 232}));
    CU_ASSERT(near(&im, cx, f.top + 20, 3, QAT_PLOT_BLUE));
    CU_ASSERT(near(&im, cx, zero - 2, 3, (qat_rgb){174, 199, 232}));
    CU_ASSERT(near(&im, cx, f.top + 8, 6, QAT_PLOT_RED));  /* the "inf" text */
    /* the NaN bar: no bar, a red x just above zero */
    column_extent(&im, &f, qat_plot_px(&f, 4.5), QAT_PLOT_BLUE, &first, &last);
    CU_ASSERT_EQUAL(first, -1);
    CU_ASSERT(near(&im, qat_plot_px(&f, 4.5), zero - 5, 2, QAT_PLOT_RED));
    /* labels under the axis are dark text */
    int ink = 0;
    for (int y = f.bottom + 8; y < f.bottom + 20; y++)
        for (int xx = qat_plot_px(&f, 0.2); xx < qat_plot_px(&f, 0.8); xx++) ink += dark(px(&im, xx, y));
    CU_ASSERT(ink > 5);
    free(im.rgb);

    CU_ASSERT(qat_plot_bars(tpath("nobars.png"), labels, v, 0, &o, NULL) == QAT_ERR_ARG);
    double allnan[2] = {NAN, NAN};
    CU_ASSERT(qat_plot_bars(tpath("nanbars.png"), labels, allnan, 2, &o, NULL) == QAT_ERR_ARG);
    CU_ASSERT(!exists(tpath("nobars.png")) && !exists(tpath("nanbars.png")));
}

static void test_many_bars(void) {
    enum { N = 200 };
    static char names[N][32];
    const char *labels[N];
    double v[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "features.%d.body.%d", i / 3, i % 3);
        labels[i] = names[i], v[i] = 20 + 10 * sin(i * 0.1);
    }
    qat_plot_frame f;
    const char *path = tpath("many.png");
    CU_ASSERT_FATAL(qat_plot_bars(path, labels, v, N, NULL, &f) == QAT_OK);
    image im = read_png(path);
    CU_ASSERT_FATAL(im.rgb != NULL);
    /* vertical labels need room: the plot area ends well above the image bottom */
    CU_ASSERT(f.bottom < im.h - 100 && f.bottom > im.h / 3);
    /* ~4 px per bar is too narrow for every label: bar 0 gets a tick and label, bar 1 not */
    CU_ASSERT(dark(px(&im, qat_plot_px(&f, 0.5), f.bottom + 2)));
    CU_ASSERT(!dark(px(&im, qat_plot_px(&f, 1.5), f.bottom + 2)));
    /* every bar is still drawn */
    for (int i = 0; i < N; i += 37) {
        int first, last;
        column_extent(&im, &f, qat_plot_px(&f, i + 0.5), QAT_PLOT_BLUE, &first, &last);
        CU_ASSERT(first >= 0 && abs(first - qat_plot_py(&f, v[i])) <= 1);
    }
    free(im.rgb);
}

/* qat inspect --plot: the layer names under the bars, an exact layer (+inf) capped and marked. */
static void test_layer_sqnr_plot(void) {
    char names[3][QAT_LAYER_NAME_MAX] = {"features.0", "pool", "fc"};
    double db[3] = {30, INFINITY, 12};
    qat_layer_sqnr s = {3, names, db};
    const char *path = tpath("sqnr.png");
    CU_ASSERT_FATAL(qat_plot_layer_sqnr(path, "runs/qat/last.ckpt", &s) == QAT_OK);
    image im = read_png(path);
    CU_ASSERT_FATAL(im.rgb != NULL);
    CU_ASSERT(im.w == QAT_PLOT_W && im.h == QAT_PLOT_H);
    int blue = 0, light = 0;
    for (int i = 0; i < im.w * im.h; i++) {
        qat_rgb p = {im.rgb[3 * i], im.rgb[3 * i + 1], im.rgb[3 * i + 2]};
        blue += same(p, QAT_PLOT_BLUE), light += same(p, (qat_rgb){174, 199, 232});
    }
    CU_ASSERT(blue > 1000 && light > 1000);
    free(im.rgb);
    qat_layer_sqnr empty = {0, NULL, NULL};
    CU_ASSERT(qat_plot_layer_sqnr(tpath("none.png"), "x.ckpt", &empty) == QAT_ERR_ARG);
    CU_ASSERT(!exists(tpath("none.png")));
}

/* ---- metrics.jsonl ---------------------------------------------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_metrics_read(void) {
    const char *path = tpath("metrics.jsonl");
    write_text(path,
               "{\"phase\": \"fp32\", \"epoch\": 1, \"step\": 468, \"lr\": 0.0151941, \"train_loss\": 1.41369, "
               "\"train_acc\": 0.54611, \"test_loss\": 0.64900, \"test_acc\": 0.76940, \"epoch_s\": 110.08, "
               "\"img_s\": 544.2}\n"
               "\n"
               "  {\"epoch\":2,\"train_loss\":nan,\"test_acc\":0.8, \"new_key\": \"x\\\"y\", \"flag\": true}\r\n"
               "{\"test_acc\": 0.9, \"phase\": \"qat\", \"epoch\": 1, \"lr\": 1.25171e-08, \"train_loss\": -inf}");
    qat_metrics m;
    qat_status st = qat_metrics_read(path, &m);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT_FATAL(m.n == 3);
    CU_ASSERT_STRING_EQUAL(m.rows[0].phase, "fp32");
    CU_ASSERT_EQUAL(m.rows[0].epoch, 1);
    CU_ASSERT_DOUBLE_EQUAL(m.rows[0].step, 468, 0);
    CU_ASSERT_DOUBLE_EQUAL(m.rows[0].train_loss, 1.41369, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(m.rows[0].test_acc, 0.76940, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(m.rows[0].img_s, 544.2, 1e-12);
    CU_ASSERT_STRING_EQUAL(m.rows[1].phase, "fp32"); /* absent: FP32 */
    CU_ASSERT_EQUAL(m.rows[1].epoch, 2);
    CU_ASSERT(isnan(m.rows[1].train_loss) && isnan(m.rows[1].test_loss));
    CU_ASSERT_DOUBLE_EQUAL(m.rows[1].test_acc, 0.8, 1e-12);
    CU_ASSERT_STRING_EQUAL(m.rows[2].phase, "qat");
    CU_ASSERT_DOUBLE_EQUAL(m.rows[2].lr, 1.25171e-08, 1e-20);
    CU_ASSERT(isinf(m.rows[2].train_loss) && m.rows[2].train_loss < 0);
    qat_metrics_free(&m);
    CU_ASSERT(m.rows == NULL && m.n == 0);
}

/* Each broken line must fail with QAT_ERR_FORMAT and a message "path:LINE: ...". */
static void expect_corrupt(const char *text, int line, const char *what) {
    const char *path = tpath("bad.jsonl");
    write_text(path, text);
    qat_metrics m;
    qat_status st = qat_metrics_read(path, &m);
    CU_ASSERT_EQUAL(st, QAT_ERR_FORMAT);
    char want[600];
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    const char *msg = qat_last_error();
    int ok = st == QAT_ERR_FORMAT && strstr(msg, want) && strstr(msg, what);
    CU_ASSERT(ok);
    if (!ok) printf("\n  expected \"%s...%s\", got \"%s\"\n", want, what, msg);
    CU_ASSERT(m.rows == NULL && m.n == 0);
}

static void test_metrics_errors(void) {
    const char *good = "{\"phase\": \"fp32\", \"epoch\": 1, \"train_loss\": 1.0}\n";
    char text[1024];
    snprintf(text, sizeof text, "%s%s{\"phase\": \"fp32\", \"epoch\": 3, \"train_loss\": 0.9\n", good, good);
    expect_corrupt(text, 3, "line ends inside the object");  /* a truncated last line */
    snprintf(text, sizeof text, "%s\n{\"epoch\": 2, \"train_loss\": 1.0x}\n", good);
    expect_corrupt(text, 3, "bad number");
    expect_corrupt("{\"epoch\": 1, \"train_loss\": \"low\"}\n", 1, "should be a number");
    expect_corrupt("{\"train_loss\": 1.0}\n", 1, "no \"epoch\"");
    expect_corrupt("{\"epoch\": 1.5}\n", 1, "whole number");
    expect_corrupt("{\"epoch\": 1, \"phase\": 3}\n", 1, "\"phase\" should be a string");
    expect_corrupt("{\"epoch\": 1, \"x\": [1, [2]]}\n", 1, "nested");
    expect_corrupt("{\"epoch\": 1, \"x\": {\"y\": 2}}\n", 1, "nested");
    expect_corrupt("{\"epoch\": 1, \"x\": [1, 2}\n", 1, "expected ',' or ']'");
    expect_corrupt("{\"epoch\": 1, \"lr\": [1]}\n", 1, "\"lr\" should be a number, not an array");
    expect_corrupt("{\"epoch\": 1} trailing\n", 1, "text after the object");
    expect_corrupt("epoch 1\n", 1, "expected '{'");
    expect_corrupt("{\"epoch\" 1}\n", 1, "expected ':'");
    expect_corrupt("{\"epoch\": 1, \"phase\": \"qa\n", 1, "unterminated string");
}

/* The {"phase": "config"} line a run writes when it starts (train/pipeline.c): arrays, strings,
 * no "epoch"; skipped, so the plots see the epochs only, wherever a (re)start put one. */
static void test_metrics_config_line(void) {
    const char *config =
        "{\"phase\": \"config\", \"run\": \"fp32\", \"dataset\": \"imagefolder\", \"data\": "
        "\"/d/a \\\"b\\\"\", \"train_images\": 540, \"mean\": [0.286], \"std\": [0.1, 0.2, 0.3], "
        "\"hflip\": false, \"empty\": [], \"lr\": 0.1}\n";
    char text[2048];
    snprintf(text, sizeof text,
             "%s{\"phase\": \"fp32\", \"epoch\": 1, \"test_acc\": 0.5}\n"
             "%s{\"phase\": \"fp32\", \"epoch\": 2, \"test_acc\": 0.6}\n", config, config);
    const char *path = tpath("config.jsonl");
    write_text(path, text);
    qat_metrics m;
    qat_status st = qat_metrics_read(path, &m);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT_FATAL(m.n == 2);
    CU_ASSERT(m.rows[0].epoch == 1 && m.rows[1].epoch == 2);
    CU_ASSERT_DOUBLE_EQUAL(m.rows[1].test_acc, 0.6, 1e-12);
    CU_ASSERT_STRING_EQUAL(m.rows[0].phase, "fp32");
    qat_metrics_free(&m);
    qat_metrics_row r;
    CU_ASSERT_EQUAL(qat_metrics_parse_line("m.jsonl", 1, config, &r), QAT_OK);
    CU_ASSERT_STRING_EQUAL(r.phase, "config");
    /* a run stopped before its first epoch ended: a config line and nothing to plot */
    write_text(path, config);
    CU_ASSERT_EQUAL(qat_metrics_read(path, &m), QAT_ERR_FORMAT);
    CU_ASSERT(strstr(qat_last_error(), "no epoch lines") != NULL);
}

static void test_metrics_missing(void) {
    qat_metrics m;
    const char *path = tpath("no-such-dir/metrics.jsonl");
    CU_ASSERT_EQUAL(qat_metrics_read(path, &m), QAT_ERR_IO);
    CU_ASSERT(strstr(qat_last_error(), path) != NULL);
    /* an empty file (or only blank lines) has no epochs to plot */
    write_text(tpath("empty.jsonl"), "\n  \n");
    CU_ASSERT_EQUAL(qat_metrics_read(tpath("empty.jsonl"), &m), QAT_ERR_FORMAT);
    CU_ASSERT(strstr(qat_last_error(), "empty") != NULL);
    /* one line through the line parser: the message carries the line number given */
    qat_metrics_row r;
    CU_ASSERT_EQUAL(qat_metrics_parse_line("m.jsonl", 42, "{\"epoch\": }", &r), QAT_ERR_FORMAT);
    CU_ASSERT(strstr(qat_last_error(), "m.jsonl:42: expected a value at column 11") != NULL);
}

void register_plot_tests(void) {
    CU_pSuite s = CU_add_suite("plot", suite_init, suite_clean);
    CU_add_test(s, "nice 1-2-5 ticks", test_ticks);
    CU_add_test(s, "bitmap font, horizontal and rotated", test_font);
    CU_add_test(s, "line chart pixels (axes, curves, marker line)", test_lines);
    CU_add_test(s, "line chart NaN/inf, single point, empty", test_lines_nonfinite);
    CU_add_test(s, "bar chart pixels (tops, negative, inf, NaN)", test_bars);
    CU_add_test(s, "bar chart with 200 bars thins labels", test_many_bars);
    CU_add_test(s, "qat inspect --plot: SQNR bars with an exact layer", test_layer_sqnr_plot);
    CU_add_test(s, "metrics.jsonl reader", test_metrics_read);
    CU_add_test(s, "metrics.jsonl corrupt lines name the line", test_metrics_errors);
    CU_add_test(s, "metrics.jsonl missing or empty", test_metrics_missing);
    CU_add_test(s, "metrics.jsonl config line is skipped", test_metrics_config_line);
}
