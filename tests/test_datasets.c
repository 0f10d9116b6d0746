/* Dataset tests: every file is written here (under a mkdtemp directory) with known pixels by
 * an independent writer (zlib, libpng directly, plain fwrite), read back through the public
 * API and compared; every malformed input must fail with the file named in the message. */
#define _GNU_SOURCE
#include "dataset.h"
#include "test_util.h"
#include <CUnit/CUnit.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- temp dirs and writers ----------------------------------------------------------- */

static char tmp_root[256];
static void tmp_end(void);

/* A test stopped by a fatal assertion leaves its directory behind; the next one removes it. */
static void tmp_begin(void) {
    if (tmp_root[0]) tmp_end();
    snprintf(tmp_root, sizeof tmp_root, "/tmp/qat_datasets_XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(tmp_root));
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void tmp_end(void) {
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmp_root[0] = 0;
}

/* tmp_root/rel in a static rotating buffer (a few paths alive at once). */
static const char *tp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tp(const char *fmt, ...) {
    static char bufs[8][1024];
    static int k;
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *b = bufs[k++ % 8];
    snprintf(b, 1024, "%s/%s", tmp_root, rel);
    return b;
}

static void mkdirs(const char *path) {
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void write_bytes(const char *path, const void *data, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        if (n) CU_ASSERT_EQUAL(gzwrite(f, data, (unsigned)n), (int)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        CU_ASSERT_EQUAL(fwrite(data, 1, n, f), n);
        fclose(f);
    }
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX image file of n (h, w) images with pixel (i, y, x) = idx_pixel(...). */
static uint8_t idx_pixel(int i, int y, int x) { return (uint8_t)(i * 50 + y * 7 + x * 3 + 1); }

static void write_idx_images(const char *path, int n, int h, int w, int gz, uint32_t magic) {
    size_t size = 16 + (size_t)n * h * w;
    uint8_t *b = malloc(size);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)h);
    put_be32(b + 12, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) b[16 + ((size_t)i * h + y) * w + x] = idx_pixel(i, y, x);
    write_bytes(path, b, size, gz);
    free(b);
}

static void write_idx_labels(const char *path, int n, const uint8_t *labels, int gz,
                             uint32_t magic) {
    uint8_t *b = malloc(8 + (size_t)n);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    memcpy(b + 8, labels, (size_t)n);
    write_bytes(path, b, 8 + (size_t)n, gz);
    free(b);
}

static const uint8_t idx_train_labels[5] = {3, 0, 1, 3, 2};
static const uint8_t idx_test_labels[2] = {1, 4}; /* max label 4 -> 5 classes */

static void write_idx_dir(const char *dir, int gz) {
    char p[1024];
    const char *ext = gz ? ".gz" : "";
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte%s", dir, ext);
    write_idx_images(p, 5, 3, 4, gz, 2051);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte%s", dir, ext);
    write_idx_labels(p, 5, idx_train_labels, gz, 2049);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte%s", dir, ext);
    write_idx_images(p, 2, 3, 4, gz, 2051);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte%s", dir, ext);
    write_idx_labels(p, 2, idx_test_labels, gz, 2049);
}

/* A PNG written by libpng itself. rows: h rows of packed samples as the PNG stores them
 * (16-bit big-endian, sub-byte MSB first). */
static void write_png_raw(const char *path, int w, int h, int color, int depth, int interlace,
                          const uint8_t *data, size_t rowbytes, const png_color *pal, int npal,
                          const uint8_t *trans, int ntrans) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        CU_FAIL("libpng write failed");
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trans) png_set_tRNS(png, info, trans, ntrans, NULL);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(data + (size_t)y * rowbytes);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

/* An 8-bit gray or RGB PNG whose pixels are all `v` (per channel v, v+1, v+2). */
static void write_png_const(const char *path, int w, int h, int c, int v) {
    uint8_t *p = malloc((size_t)w * h * c);
    for (int i = 0; i < w * h; i++)
        for (int k = 0; k < c; k++) p[i * c + k] = (uint8_t)(v + k);
    qat_status s = c == 3 ? qat_png_write_rgb(path, w, h, p) : qat_png_write_gray(path, w, h, p);
    CU_ASSERT_EQUAL(s, QAT_OK);
    free(p);
}

/* The call failed with `status` and the message names `file`. */
static void expect_error(qat_status got, qat_status status, const char *file, const char *also) {
    CU_ASSERT_EQUAL(got, status);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), file));
    if (also) CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), also));
    if (got != status || !strstr(qat_last_error(), file) || (also && !strstr(qat_last_error(), also)))
        printf("\n  unexpected error: status %d, message '%s' (wanted %d naming %s%s%s)\n", got,
               qat_last_error(), status, file, also ? ", " : "", also ? also : "");
}

/* ---- IDX ------------------------------------------------------------------------------- */

static void check_idx_dataset(const qat_dataset *d, int n, const uint8_t *labels) {
    CU_ASSERT_EQUAL_FATAL(d->n, n);
    CU_ASSERT_EQUAL(d->h, 3);
    CU_ASSERT_EQUAL(d->w, 4);
    CU_ASSERT_EQUAL(d->c, 1);
    CU_ASSERT_EQUAL(d->nclasses, 5);
    CU_ASSERT_STRING_EQUAL(d->class_names[4], "4");
    int bad = 0;
    for (int i = 0; i < n; i++) {
        bad += d->labels[i] != labels[i];
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 4; x++) bad += d->images[(i * 3 + y) * 4 + x] != idx_pixel(i, y, x);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void idx_roundtrip(int gz) {
    tmp_begin();
    write_idx_dir(tp("idx"), gz);
    qat_dataset *tr = NULL, *te = NULL;
    qat_status s = qat_dataset_open(tp("idx"), NULL, &tr, &te);
    CU_ASSERT_EQUAL_FATAL(s, QAT_OK);
    check_idx_dataset(tr, 5, idx_train_labels);
    check_idx_dataset(te, 2, idx_test_labels);
    qat_dataset_free(tr);
    qat_dataset_free(te);
    /* Options apply to IDX too: 3 channels (gray repeated) at 6x8. */
    qat_data_opts o = {.channels = 3, .height = 6, .width = 8};
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("idx"), &o, &tr, &te), QAT_OK);
    CU_ASSERT(tr->c == 3 && tr->h == 6 && tr->w == 8 && te->c == 3 && te->h == 6);
    CU_ASSERT_EQUAL(tr->images[0], idx_pixel(0, 0, 0)); /* corner pixel survives upscaling */
    CU_ASSERT_EQUAL(tr->images[1], idx_pixel(0, 0, 0));
    CU_ASSERT_EQUAL(tr->images[2], idx_pixel(0, 0, 0));
    qat_dataset_free(tr);
    qat_dataset_free(te);
    tmp_end();
}

static void test_idx_raw(void) { idx_roundtrip(0); }
static void test_idx_gz(void) { idx_roundtrip(1); }

static void test_idx_truncated(void) {
    tmp_begin();
    qat_dataset *tr = NULL, *te = NULL;
    /* Raw file cut short in the pixel data. */
    write_idx_dir(tp("raw"), 0);
    const char *img = tp("raw/train-images-idx3-ubyte");
    CU_ASSERT_EQUAL(truncate(img, 16 + 20), 0);
    expect_error(qat_dataset_open(tp("raw"), NULL, &tr, &te), QAT_ERR_FORMAT, img, "truncated");
    CU_ASSERT(tr == NULL && te == NULL);
    /* Raw file cut inside the header. */
    CU_ASSERT_EQUAL(truncate(img, 10), 0);
    expect_error(qat_dataset_open(tp("raw"), NULL, &tr, &te), QAT_ERR_FORMAT, img, "truncated");
    /* Raw file with extra bytes after the data. */
    write_idx_images(img, 5, 3, 4, 0, 2051);
    FILE *f = fopen(img, "ab");
    fputs("xx", f);
    fclose(f);
    expect_error(qat_dataset_open(tp("raw"), NULL, &tr, &te), QAT_ERR_FORMAT, img, "longer");

    /* gzip stream cut in the middle, and one with a corrupted body. Pixels are made
     * incompressible-ish so the compressed stream is long enough to cut. */
    const char *gzimg = tp("t10k-images-idx3-ubyte.gz");
    {
        int n = 40, h = 16, w = 16;
        size_t size = 16 + (size_t)n * h * w;
        uint8_t *b = malloc(size);
        put_be32(b, 2051), put_be32(b + 4, (uint32_t)n), put_be32(b + 8, 16), put_be32(b + 12, 16);
        uint32_t r = 12345;
        for (size_t i = 16; i < size; i++) b[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 24);
        write_bytes(gzimg, b, size, 1);
        free(b);
    }
    size_t n;
    uint8_t *whole = slurp(gzimg, &n);
    CU_ASSERT_FATAL(whole && n > 200);
    write_bytes(gzimg, whole, n / 2, 0);
    int ni, h, w;
    uint8_t *pix = NULL;
    expect_error(qat_idx_read_images(gzimg, &ni, &h, &w, &pix), QAT_ERR_FORMAT, gzimg, NULL);
    whole[n / 2] ^= 0x55;
    whole[n / 2 + 1] ^= 0xAA;
    write_bytes(gzimg, whole, n, 0);
    expect_error(qat_idx_read_images(gzimg, &ni, &h, &w, &pix), QAT_ERR_FORMAT, gzimg, NULL);
    /* Only the gzip CRC trailer damaged: the data decompresses but must still be rejected. */
    whole[n / 2] ^= 0x55;
    whole[n / 2 + 1] ^= 0xAA;
    whole[n - 6] ^= 0x01;
    write_bytes(gzimg, whole, n, 0);
    expect_error(qat_idx_read_images(gzimg, &ni, &h, &w, &pix), QAT_ERR_FORMAT, gzimg, "gzip");
    free(whole);
    tmp_end();
}

static void test_idx_wrong_magic(void) {
    tmp_begin();
    write_idx_dir(tp("d"), 0);
    const char *lab = tp("d/train-labels-idx1-ubyte");
    write_idx_labels(lab, 5, idx_train_labels, 0, 2051); /* image magic in a label file */
    qat_dataset *tr = NULL, *te = NULL;
    expect_error(qat_dataset_open(tp("d"), NULL, &tr, &te), QAT_ERR_FORMAT, lab, "magic");
    write_idx_labels(lab, 5, idx_train_labels, 0, 2049);
    const char *img = tp("d/t10k-images-idx3-ubyte");
    write_idx_images(img, 2, 3, 4, 0, 0x12345678);
    expect_error(qat_dataset_open(tp("d"), NULL, &tr, &te), QAT_ERR_FORMAT, img, "magic");
    tmp_end();
}

static void test_idx_count_mismatch(void) {
    tmp_begin();
    write_idx_dir(tp("d"), 1);
    const char *lab = tp("d/t10k-labels-idx1-ubyte.gz");
    write_idx_labels(lab, 1, idx_test_labels, 1, 2049);
    qat_dataset *tr = NULL, *te = NULL;
    expect_error(qat_dataset_open(tp("d"), NULL, &tr, &te), QAT_ERR_FORMAT, lab, "labels");
    /* A missing file is named too. */
    remove(lab);
    expect_error(qat_dataset_open(tp("d"), NULL, &tr, &te), QAT_ERR_IO, "t10k-labels-idx1-ubyte",
                 "missing");
    tmp_end();
}

/* ---- PNG decoding ---------------------------------------------------------------------- */

enum { PW = 7, PH = 5 }; /* odd sizes: rows that do not fill whole bytes at low bit depths */

static uint8_t pat(int x, int y, int k) { return (uint8_t)(x * 31 + y * 17 + k * 80 + 3); }
static uint16_t pat16(int x, int y, int k) { return (uint16_t)(x * 7919 + y * 3001 + k * 20011 + 129); }

/* Reads path and compares with expect (PH, PW, c) within tol. */
static void check_png(const char *what, const char *path, int c, const uint8_t *expect, int tol) {
    int h = 0, w = 0, cc = 0;
    uint8_t *pix = NULL;
    qat_status s = qat_png_read(path, &h, &w, &cc, &pix);
    CU_ASSERT_EQUAL_FATAL(s, QAT_OK);
    CU_ASSERT(h == PH && w == PW && cc == c);
    if (h != PH || w != PW || cc != c) {
        printf("\n  %s: got %dx%dx%d\n", what, h, w, cc);
        free(pix);
        return;
    }
    int bad = 0;
    for (int i = 0; i < PH * PW * c; i++)
        if (abs(pix[i] - expect[i]) > tol) {
            if (!bad) printf("\n  %s: first mismatch at %d: %d vs %d\n", what, i, pix[i], expect[i]);
            bad++;
        }
    CU_ASSERT_EQUAL(bad, 0);
    free(pix);
}

static void test_png_color_types(void) {
    tmp_begin();
    uint8_t data[PH * PW * 8], expect[PH * PW * 3];
    const char *p;

    /* gray 8 and gray 8 interlaced */
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) data[y * PW + x] = expect[y * PW + x] = pat(x, y, 0);
    write_png_raw(p = tp("g8.png"), PW, PH, PNG_COLOR_TYPE_GRAY, 8, 0, data, PW, NULL, 0, NULL, 0);
    check_png("gray8", p, 1, expect, 0);
    write_png_raw(p = tp("g8i.png"), PW, PH, PNG_COLOR_TYPE_GRAY, 8, 1, data, PW, NULL, 0, NULL, 0);
    check_png("gray8 interlaced", p, 1, expect, 0);

    /* gray 16: 16 -> 8 bit within 1 of v * 255 / 65535 */
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            uint16_t v = pat16(x, y, 0);
            data[(y * PW + x) * 2] = (uint8_t)(v >> 8);
            data[(y * PW + x) * 2 + 1] = (uint8_t)v;
            expect[y * PW + x] = (uint8_t)lround(v * 255.0 / 65535.0);
        }
    write_png_raw(p = tp("g16.png"), PW, PH, PNG_COLOR_TYPE_GRAY, 16, 0, data, PW * 2, NULL, 0, NULL, 0);
    check_png("gray16", p, 1, expect, 1);

    /* gray + alpha 8: alpha dropped, gray kept */
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            data[(y * PW + x) * 2] = expect[y * PW + x] = pat(x, y, 0);
            data[(y * PW + x) * 2 + 1] = (uint8_t)(x * 40);
        }
    write_png_raw(p = tp("ga8.png"), PW, PH, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, data, PW * 2, NULL, 0, NULL, 0);
    check_png("gray+alpha8", p, 1, expect, 0);

    /* gray 1, 2, 4 bit: packed MSB first, scaled to 0..255 */
    for (int depth = 1; depth <= 4; depth *= 2) {
        int maxv = (1 << depth) - 1;
        size_t rowbytes = (size_t)(PW * depth + 7) / 8;
        memset(data, 0, sizeof data);
        for (int y = 0; y < PH; y++)
            for (int x = 0; x < PW; x++) {
                int v = (x + 2 * y) % (maxv + 1);
                int bit = x * depth;
                data[y * rowbytes + bit / 8] |= (uint8_t)(v << (8 - depth - bit % 8));
                expect[y * PW + x] = (uint8_t)(v * 255 / maxv);
            }
        char name[32];
        snprintf(name, sizeof name, "g%d.png", depth);
        write_png_raw(p = tp("%s", name), PW, PH, PNG_COLOR_TYPE_GRAY, depth, 0, data, rowbytes, NULL, 0, NULL, 0);
        check_png(name, p, 1, expect, 0);
        snprintf(name, sizeof name, "g%di.png", depth);
        write_png_raw(p = tp("%s", name), PW, PH, PNG_COLOR_TYPE_GRAY, depth, 1, data, rowbytes, NULL, 0, NULL, 0);
        check_png(name, p, 1, expect, 0);
    }

    /* rgb 8, interlaced rgb 8 */
    for (int i = 0; i < PH * PW; i++)
        for (int k = 0; k < 3; k++) data[i * 3 + k] = expect[i * 3 + k] = pat(i % PW, i / PW, k);
    write_png_raw(p = tp("rgb8.png"), PW, PH, PNG_COLOR_TYPE_RGB, 8, 0, data, PW * 3, NULL, 0, NULL, 0);
    check_png("rgb8", p, 3, expect, 0);
    write_png_raw(p = tp("rgb8i.png"), PW, PH, PNG_COLOR_TYPE_RGB, 8, 1, data, PW * 3, NULL, 0, NULL, 0);
    check_png("rgb8 interlaced", p, 3, expect, 0);

    /* rgba 8: alpha dropped (not composited: a fully transparent pixel keeps its colour) */
    for (int i = 0; i < PH * PW; i++) {
        for (int k = 0; k < 3; k++) data[i * 4 + k] = expect[i * 3 + k] = pat(i % PW, i / PW, k);
        data[i * 4 + 3] = (uint8_t)(i % 3 == 0 ? 0 : 200);
    }
    write_png_raw(p = tp("rgba8.png"), PW, PH, PNG_COLOR_TYPE_RGBA, 8, 0, data, PW * 4, NULL, 0, NULL, 0);
    check_png("rgba8", p, 3, expect, 0);

    /* rgb 16 and rgba 16 (interlaced) */
    for (int i = 0; i < PH * PW; i++)
        for (int k = 0; k < 3; k++) {
            uint16_t v = pat16(i % PW, i / PW, k);
            data[(i * 3 + k) * 2] = (uint8_t)(v >> 8);
            data[(i * 3 + k) * 2 + 1] = (uint8_t)v;
            expect[i * 3 + k] = (uint8_t)lround(v * 255.0 / 65535.0);
        }
    write_png_raw(p = tp("rgb16.png"), PW, PH, PNG_COLOR_TYPE_RGB, 16, 0, data, PW * 6, NULL, 0, NULL, 0);
    check_png("rgb16", p, 3, expect, 1);
    for (int i = 0; i < PH * PW; i++)
        for (int k = 0; k < 4; k++) {
            uint16_t v = k < 3 ? pat16(i % PW, i / PW, k) : (uint16_t)(i * 1000);
            data[(i * 4 + k) * 2] = (uint8_t)(v >> 8);
            data[(i * 4 + k) * 2 + 1] = (uint8_t)v;
        }
    write_png_raw(p = tp("rgba16i.png"), PW, PH, PNG_COLOR_TYPE_RGBA, 16, 1, data, PW * 8, NULL, 0, NULL, 0);
    check_png("rgba16 interlaced", p, 3, expect, 1);

    /* palette (8-bit and 2-bit indices), and palette with tRNS */
    png_color pal[4] = {{10, 20, 30}, {200, 0, 50}, {0, 255, 7}, {128, 129, 130}};
    uint8_t trans[4] = {0, 128, 255, 10};
    for (int i = 0; i < PH * PW; i++) {
        int ix = (i * 3 + i / PW) % 4;
        data[i] = (uint8_t)ix;
        expect[i * 3] = pal[ix].red, expect[i * 3 + 1] = pal[ix].green, expect[i * 3 + 2] = pal[ix].blue;
    }
    write_png_raw(p = tp("pal8.png"), PW, PH, PNG_COLOR_TYPE_PALETTE, 8, 0, data, PW, pal, 4, NULL, 0);
    check_png("palette8", p, 3, expect, 0);
    write_png_raw(p = tp("pal8t.png"), PW, PH, PNG_COLOR_TYPE_PALETTE, 8, 0, data, PW, pal, 4, trans, 4);
    check_png("palette8+tRNS", p, 3, expect, 0);
    {
        uint8_t packed[PH * 2] = {0};
        for (int y = 0; y < PH; y++)
            for (int x = 0; x < PW; x++)
                packed[y * 2 + x / 4] |= (uint8_t)(data[y * PW + x] << (6 - 2 * (x % 4)));
        write_png_raw(p = tp("pal2ti.png"), PW, PH, PNG_COLOR_TYPE_PALETTE, 2, 1, packed, 2, pal, 4, trans, 2);
        check_png("palette2+tRNS interlaced", p, 3, expect, 0);
    }

    /* The project's own writers round-trip. */
    for (int i = 0; i < PH * PW * 3; i++) data[i] = expect[i] = (uint8_t)(i * 13);
    CU_ASSERT_EQUAL(qat_png_write_rgb(p = tp("w_rgb.png"), PW, PH, data), QAT_OK);
    check_png("qat_png_write_rgb", p, 3, expect, 0);
    CU_ASSERT_EQUAL(qat_png_write_gray(p = tp("w_gray.png"), PW, PH, data), QAT_OK);
    check_png("qat_png_write_gray", p, 1, expect, 0);
    tmp_end();
}

static void test_png_corrupt(void) {
    tmp_begin();
    uint8_t pix[PH * PW * 3];
    for (int i = 0; i < PH * PW * 3; i++) pix[i] = (uint8_t)(i * 7);
    const char *good = tp("good.png");
    CU_ASSERT_EQUAL_FATAL(qat_png_write_rgb(good, PW, PH, pix), QAT_OK);
    size_t n;
    uint8_t *b = slurp(good, &n);
    CU_ASSERT_FATAL(b && n > 60);
    int h, w, c;
    uint8_t *out = NULL;
    const char *p;

    write_bytes(p = tp("trunc.png"), b, n - 20, 0); /* cut inside IDAT */
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, "corrupt PNG");
    write_bytes(p = tp("noiend.png"), b, n - 12, 0); /* IEND missing */
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, "corrupt PNG");
    write_bytes(p = tp("hdr.png"), b, 20, 0); /* cut inside IHDR */
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, NULL);

    /* A wrong IDAT CRC, and a flipped byte inside the IDAT data (which zlib or the CRC
     * check, whichever comes first, must catch). */
    uint8_t *idat = memmem(b, n, "IDAT", 4);
    CU_ASSERT_FATAL(idat != NULL);
    uint32_t len = (uint32_t)idat[-4] << 24 | (uint32_t)idat[-3] << 16 | (uint32_t)idat[-2] << 8 | idat[-1];
    CU_ASSERT_FATAL(idat + 4 + len + 4 <= b + n);
    idat[4 + len + 1] ^= 0x10;
    write_bytes(p = tp("crc.png"), b, n, 0);
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, "CRC");
    idat[4 + len + 1] ^= 0x10;
    idat[6] ^= 0x40;
    write_bytes(p = tp("idat.png"), b, n, 0);
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, "corrupt PNG");
    idat[6] ^= 0x40;

    write_bytes(p = tp("text.png"), "hello, not a png at all\n", 24, 0);
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, "not a PNG");
    write_bytes(p = tp("empty.png"), "", 0, 0);
    expect_error(qat_png_read(p, &h, &w, &c, &out), QAT_ERR_FORMAT, p, "not a PNG");
    expect_error(qat_png_read(tp("missing.png"), &h, &w, &c, &out), QAT_ERR_IO, "missing.png", NULL);
    CU_ASSERT_PTR_NULL(out);
    free(b);
    tmp_end();
}

/* ---- ImageFolder ----------------------------------------------------------------------- */

/* Finds the image whose first pixel value is v; -1 if none. */
static int find_first_pixel(const qat_dataset *d, int v) {
    for (int i = 0; i < d->n; i++)
        if (d->images[(size_t)i * d->h * d->w * d->c] == v) return i;
    return -1;
}

static void test_imagefolder_train_test(void) {
    tmp_begin();
    /* train: cat (3 gray), dog (2 gray + 1 rgb), zebra (1); test: cat (1), zebra (1), no dog. */
    mkdirs(tp("r/train/cat"));
    mkdirs(tp("r/train/dog/sub"));
    mkdirs(tp("r/train/zebra"));
    mkdirs(tp("r/test/cat"));
    mkdirs(tp("r/test/zebra"));
    write_png_const(tp("r/train/cat/a.png"), 4, 3, 1, 10);
    write_png_const(tp("r/train/cat/b.png"), 4, 3, 1, 11);
    write_png_const(tp("r/train/cat/c.png"), 4, 3, 1, 12);
    write_png_const(tp("r/train/dog/x.png"), 4, 3, 1, 20);
    write_png_const(tp("r/train/dog/y.png"), 4, 3, 3, 21);
    write_png_const(tp("r/train/dog/sub/z.png"), 4, 3, 1, 22); /* nested: found recursively */
    write_png_const(tp("r/train/zebra/q.png"), 4, 3, 1, 30);
    write_png_const(tp("r/test/cat/t.png"), 4, 3, 1, 40);
    write_png_const(tp("r/test/zebra/u.png"), 4, 3, 1, 41);
    write_bytes(tp("r/train/cat/.DS_Store"), "junk", 4, 0); /* hidden files are skipped */
    write_bytes(tp("r/README.txt"), "about", 5, 0);         /* files at the root are ignored */

    qat_dataset *tr = NULL, *te = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("r"), NULL, &tr, &te), QAT_OK);
    CU_ASSERT_EQUAL(tr->n, 7);
    CU_ASSERT_EQUAL(te->n, 2);
    CU_ASSERT(tr->h == 3 && tr->w == 4 && tr->c == 3); /* one RGB image makes the set RGB */
    CU_ASSERT(tr->nclasses == 3 && te->nclasses == 3);
    CU_ASSERT_STRING_EQUAL(tr->class_names[0], "cat");
    CU_ASSERT_STRING_EQUAL(tr->class_names[1], "dog");
    CU_ASSERT_STRING_EQUAL(te->class_names[2], "zebra");
    static const int vals[7] = {10, 11, 12, 20, 21, 22, 30}, labs[7] = {0, 0, 0, 1, 1, 1, 2};
    for (int k = 0; k < 7; k++) {
        int i = find_first_pixel(tr, vals[k]);
        CU_ASSERT_FATAL(i >= 0);
        CU_ASSERT_EQUAL(tr->labels[i], labs[k]);
        const uint8_t *px = tr->images + (size_t)i * 36 + 33; /* last pixel */
        int rgb = vals[k] == 21;
        CU_ASSERT(px[0] == vals[k] && px[1] == vals[k] + rgb && px[2] == vals[k] + 2 * rgb);
    }
    int it = find_first_pixel(te, 40), iu = find_first_pixel(te, 41);
    CU_ASSERT(it >= 0 && iu >= 0 && te->labels[it] == 0 && te->labels[iu] == 2);
    qat_dataset_free(tr);
    qat_dataset_free(te);

    /* channels = 1: RGB (21, 22, 23) -> round(0.299*21 + 0.587*22 + 0.114*23) = 22 */
    qat_data_opts o = {.channels = 1};
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("r"), &o, &tr, &te), QAT_OK);
    CU_ASSERT(tr->c == 1 && te->c == 1);
    CU_ASSERT_EQUAL(tr->labels[find_first_pixel(tr, 20)], 1);
    int n22 = 0;
    for (int i = 0; i < tr->n; i++) n22 += tr->images[i * 12] == 22;
    CU_ASSERT_EQUAL(n22, 2); /* z.png and the converted y.png */
    qat_dataset_free(tr);
    qat_dataset_free(te);

    /* A test/ class that train/ does not have is an error naming it. */
    mkdirs(tp("r/test/yak"));
    write_png_const(tp("r/test/yak/v.png"), 4, 3, 1, 50);
    expect_error(qat_dataset_open(tp("r"), NULL, &tr, &te), QAT_ERR_FORMAT, "r/test/yak", "train");
    tmp_end();
}

static void test_imagefolder_val_split(void) {
    tmp_begin();
    /* 3 classes x 10 images, each with a unique value; val_split 0.2 -> 2 per class in test. */
    const char *cls[3] = {"b_two", "a_one", "c_three"};
    for (int k = 0; k < 3; k++) {
        mkdirs(tp("s/%s", cls[k]));
        for (int i = 0; i < 10; i++)
            write_png_const(tp("s/%s/img%02d.png", cls[k], i), 5, 5, 1, 100 + k * 10 + i);
    }
    qat_data_opts o = {.val_split = 0.2f, .seed = 7};
    qat_dataset *tr = NULL, *te = NULL, *tr2 = NULL, *te2 = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("s"), &o, &tr, &te), QAT_OK);
    CU_ASSERT_EQUAL(tr->n, 24);
    CU_ASSERT_EQUAL(te->n, 6);
    CU_ASSERT_STRING_EQUAL(tr->class_names[0], "a_one"); /* sorted by name */
    int seen[30] = {0}, per_class_test[3] = {0};
    const qat_dataset *both[2] = {tr, te};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < both[s]->n; i++) {
            int v = both[s]->images[i * 25] - 100, k = v / 10; /* k: index in cls[] */
            CU_ASSERT_FATAL(v >= 0 && v < 30);
            seen[v]++;
            int want_label = k == 0 ? 1 : k == 1 ? 0 : 2;
            CU_ASSERT_EQUAL(both[s]->labels[i], want_label);
            if (s) per_class_test[k]++;
        }
    for (int v = 0; v < 30; v++) CU_ASSERT_EQUAL(seen[v], 1); /* disjoint and complete */
    for (int k = 0; k < 3; k++) CU_ASSERT_EQUAL(per_class_test[k], 2); /* stratified */
    /* Same seed, same split; another seed, another split. */
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("s"), &o, &tr2, &te2), QAT_OK);
    CU_ASSERT(te2->n == te->n && !memcmp(te2->images, te->images, (size_t)te->n * 25));
    qat_dataset_free(tr2);
    qat_dataset_free(te2);
    int differs = 0;
    for (uint64_t seed = 8; seed < 12 && !differs; seed++) {
        o.seed = seed;
        CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("s"), &o, &tr2, &te2), QAT_OK);
        differs = memcmp(te2->images, te->images, (size_t)te->n * 25) != 0;
        qat_dataset_free(tr2);
        qat_dataset_free(te2);
    }
    CU_ASSERT(differs);
    /* Default split (0 -> 0.1): one test image per class of 10. */
    o = (qat_data_opts){0};
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("s"), &o, &tr2, &te2), QAT_OK);
    CU_ASSERT(tr2->n == 27 && te2->n == 3);
    qat_dataset_free(tr2);
    qat_dataset_free(te2);
    o.val_split = 1.5f;
    expect_error(qat_dataset_open(tp("s"), &o, &tr2, &te2), QAT_ERR_ARG, "val_split", NULL);
    qat_dataset_free(tr);
    qat_dataset_free(te);
    tmp_end();
}

static void test_imagefolder_sizes(void) {
    tmp_begin();
    /* First image 2x4 (h x w), another 4x8: resized to 2x4. Constant images stay constant;
     * a horizontal ramp 1x2 -> 1x4 follows half-pixel bilinear (0, 64, 191, 255). */
    mkdirs(tp("m/k"));
    write_png_const(tp("m/k/a.png"), 4, 2, 1, 90);
    write_png_const(tp("m/k/b.png"), 8, 4, 1, 70);
    qat_data_opts o = {.val_split = 0.01f};
    qat_dataset *tr = NULL, *te = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("m"), &o, &tr, &te), QAT_OK);
    CU_ASSERT(tr->n == 2 && te->n == 0 && tr->h == 2 && tr->w == 4 && tr->c == 1);
    int bad = 0;
    for (int i = 0; i < 8; i++) bad += tr->images[i] != 90 || tr->images[8 + i] != 70;
    CU_ASSERT_EQUAL(bad, 0);
    qat_dataset_free(tr);
    qat_dataset_free(te);
    o.height = 3;
    o.width = 5;
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("m"), &o, &tr, &te), QAT_OK);
    CU_ASSERT(tr->h == 3 && tr->w == 5 && tr->images[14] == 90);
    qat_dataset_free(tr);
    qat_dataset_free(te);

    uint8_t ramp[2] = {0, 255}, up[4];
    qat_image_resize(ramp, 1, 2, up, 1, 4, 1);
    CU_ASSERT(up[0] == 0 && up[1] == 64 && up[2] == 191 && up[3] == 255);
    uint8_t four[4] = {0, 100, 200, 250}, down[2];
    qat_image_resize(four, 1, 4, down, 1, 2, 1);
    CU_ASSERT(down[0] == 50 && down[1] == 225);
    uint8_t rgb[9] = {255, 0, 0, 0, 255, 0, 0, 0, 255}, gray[3], back[9];
    qat_image_convert(rgb, 3, gray, 1, 3);
    CU_ASSERT(gray[0] == 76 && gray[1] == 150 && gray[2] == 29);
    qat_image_convert(gray, 1, back, 3, 3);
    CU_ASSERT(back[3] == 150 && back[4] == 150 && back[5] == 150);
    tmp_end();
}

static void test_imagefolder_errors(void) {
    tmp_begin();
    qat_dataset *tr = NULL, *te = NULL;
    /* empty class folder */
    mkdirs(tp("e/full"));
    mkdirs(tp("e/empty"));
    write_png_const(tp("e/full/a.png"), 3, 3, 1, 1);
    expect_error(qat_dataset_open(tp("e"), NULL, &tr, &te), QAT_ERR_FORMAT, tp("e/empty"), "empty");
    /* corrupt PNG among good ones: the bad file is named */
    mkdirs(tp("c/x"));
    for (int i = 0; i < 20; i++) write_png_const(tp("c/x/%02d.png", i), 3, 3, 1, i);
    size_t n;
    uint8_t *b = slurp(tp("c/x/05.png"), &n);
    write_bytes(tp("c/x/05.png"), b, n - 15, 0);
    free(b);
    expect_error(qat_dataset_open(tp("c"), NULL, &tr, &te), QAT_ERR_FORMAT, tp("c/x/05.png"), NULL);
    /* a non-PNG file in a class folder */
    write_png_const(tp("c/x/05.png"), 3, 3, 1, 5);
    write_bytes(tp("c/x/notes.txt"), "text", 4, 0);
    expect_error(qat_dataset_open(tp("c"), NULL, &tr, &te), QAT_ERR_FORMAT, tp("c/x/notes.txt"),
                 "not a PNG");
    remove(tp("c/x/notes.txt"));
    CU_ASSERT_EQUAL(qat_dataset_open(tp("c"), NULL, &tr, &te), QAT_OK);
    qat_dataset_free(tr);
    qat_dataset_free(te);
    /* no images at all: no class folders */
    mkdirs(tp("none"));
    write_bytes(tp("none/file.txt"), "x", 1, 0);
    expect_error(qat_dataset_open(tp("none"), NULL, &tr, &te), QAT_ERR_FORMAT, tp("none"),
                 "no class folders");
    /* missing directory, and a plain file instead of a directory */
    expect_error(qat_dataset_open(tp("nothere"), NULL, &tr, &te), QAT_ERR_IO, tp("nothere"),
                 "no such directory");
    expect_error(qat_dataset_open(tp("none/file.txt"), NULL, &tr, &te), QAT_ERR_IO,
                 tp("none/file.txt"), "not a directory");
    /* bad options */
    qat_data_opts o = {.channels = 2};
    expect_error(qat_dataset_open(tp("c"), &o, &tr, &te), QAT_ERR_ARG, "channels", NULL);
    CU_ASSERT(tr == NULL && te == NULL);
    tmp_end();
}

/* ---- CIFAR-10 -------------------------------------------------------------------------- */

static uint8_t cifar_px(int r, int ch, int p) { return (uint8_t)(r * 29 + ch * 100 + p * 3); }

static void write_cifar(const char *path, int nrec, int label0) {
    uint8_t *b = malloc((size_t)nrec * 3073);
    for (int r = 0; r < nrec; r++) {
        b[r * 3073] = (uint8_t)((label0 + r) % 10);
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 1024; p++) b[r * 3073 + 1 + ch * 1024 + p] = cifar_px(r, ch, p);
    }
    write_bytes(path, b, (size_t)nrec * 3073, 0);
    free(b);
}

static void test_cifar(void) {
    tmp_begin();
    mkdirs(tp("cifar/cifar-10-batches-bin"));
    write_cifar(tp("cifar/cifar-10-batches-bin/data_batch_1.bin"), 3, 7);
    write_cifar(tp("cifar/cifar-10-batches-bin/test_batch.bin"), 2, 0);
    const char *names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write_bytes(tp("cifar/cifar-10-batches-bin/batches.meta.txt"), names, strlen(names), 0);
    qat_dataset *tr = NULL, *te = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open(tp("cifar"), NULL, &tr, &te), QAT_OK);
    CU_ASSERT(tr->n == 3 && te->n == 2 && tr->h == 32 && tr->w == 32 && tr->c == 3);
    CU_ASSERT(tr->nclasses == 10 && te->nclasses == 10);
    CU_ASSERT_STRING_EQUAL(tr->class_names[9], "truck");
    CU_ASSERT(tr->labels[0] == 7 && tr->labels[1] == 8 && tr->labels[2] == 9 && te->labels[1] == 1);
    int bad = 0;
    for (int r = 0; r < 3; r++)
        for (int p = 0; p < 1024; p++)
            for (int ch = 0; ch < 3; ch++) bad += tr->images[(r * 1024 + p) * 3 + ch] != cifar_px(r, ch, p);
    CU_ASSERT_EQUAL(bad, 0);
    qat_dataset_free(tr);
    qat_dataset_free(te);
    /* A size that is not a multiple of 3073 names the file. */
    const char *b2 = tp("cifar/cifar-10-batches-bin/data_batch_2.bin");
    write_cifar(b2, 2, 0);
    CU_ASSERT_EQUAL(truncate(b2, 3073 * 2 - 5), 0);
    expect_error(qat_dataset_open(tp("cifar"), NULL, &tr, &te), QAT_ERR_FORMAT, b2, "3073");
    /* A label beyond the class list. */
    write_cifar(b2, 2, 0);
    FILE *f = fopen(b2, "r+b");
    fputc(12, f);
    fclose(f);
    expect_error(qat_dataset_open(tp("cifar"), NULL, &tr, &te), QAT_ERR_FORMAT, b2, "label 12");
    remove(b2);
    remove(tp("cifar/cifar-10-batches-bin/test_batch.bin"));
    expect_error(qat_dataset_open(tp("cifar"), NULL, &tr, &te), QAT_ERR_IO, "test_batch.bin", "missing");
    tmp_end();
}

/* ---- dataset kinds and their augmentation --------------------------------------------- */

static void expect_kind(const char *path, const char *kind, float val_split) {
    qat_dataset *tr = NULL, *te = NULL;
    qat_status s = qat_dataset_open(path, NULL, &tr, &te);
    if (s) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QAT_OK);
    int ok = !strcmp(tr->kind, kind) && !strcmp(te->kind, kind) && tr->val_split == val_split &&
             te->val_split == val_split;
    CU_ASSERT(ok);
    if (!ok) printf("\n  %s: kind '%s' val_split %g, expected '%s' %g\n", path, tr->kind,
                    (double)tr->val_split, kind, (double)val_split);
    qat_dataset_free(tr);
    qat_dataset_free(te);
}

/* The recipe belongs to the built-in names: the same IDX files opened by path are plain "idx";
 * every generic kind gets no flips. */
static void test_dataset_kinds(void) {
    tmp_begin();
    write_idx_dir(tp("idx"), 0);
    expect_kind(tp("idx"), "idx", 0);
    mkdirs(tp("tt/train/a"));
    mkdirs(tp("tt/test/a"));
    mkdirs(tp("tt/train/b"));
    mkdirs(tp("one/a"));
    mkdirs(tp("one/b"));
    for (int i = 0; i < 4; i++) {
        write_png_const(tp("tt/train/a/%d.png", i), 3, 3, 1, 10 + i);
        write_png_const(tp("tt/train/b/%d.png", i), 3, 3, 1, 50 + i);
        write_png_const(tp("one/a/%d.png", i), 3, 3, 1, 10 + i);
        write_png_const(tp("one/b/%d.png", i), 3, 3, 1, 50 + i);
    }
    write_png_const(tp("tt/test/a/t.png"), 3, 3, 1, 9);
    expect_kind(tp("tt"), "imagefolder", 0);      /* its own test/ folder */
    expect_kind(tp("one"), "imagefolder", 0.1f);  /* held out: the default val_split */
    mkdirs(tp("cifar"));
    write_cifar(tp("cifar/data_batch_1.bin"), 2, 0);
    write_cifar(tp("cifar/test_batch.bin"), 1, 0);
    expect_kind(tp("cifar"), "cifar10", 0);
    /* by name: ./mnist (IDX files) is the built-in MNIST, with or without a trailing slash; the
     * same folder by another path is "idx" */
    char cwd[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    write_idx_dir(tp("mnist"), 0);
    CU_ASSERT_EQUAL_FATAL(chdir(tmp_root), 0);
    expect_kind("mnist", "mnist", 0);
    expect_kind("mnist/", "mnist", 0);
    expect_kind("./mnist", "idx", 0);
    CU_ASSERT_EQUAL_FATAL(chdir(cwd), 0);
    tmp_end();

    static const struct { const char *kind; int crop_pad, hflip; } want[] = {
        {"fashion-mnist", 2, 1}, {"mnist", QAT_CROP_PAD_GENERIC, 0}, {"idx", QAT_CROP_PAD_GENERIC, 0},
        {"imagefolder", QAT_CROP_PAD_GENERIC, 0}, {"cifar10", QAT_CROP_PAD_GENERIC, 0},
        {"", QAT_CROP_PAD_GENERIC, 0}, {NULL, QAT_CROP_PAD_GENERIC, 0},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        int crop = -7, flip = -7;
        qat_augment_default(want[k].kind, &crop, &flip);
        CU_ASSERT(crop == want[k].crop_pad && flip == want[k].hflip);
        if (crop != want[k].crop_pad || flip != want[k].hflip)
            printf("\n  %s: crop %d flip %d\n", want[k].kind ? want[k].kind : "NULL", crop, flip);
    }
}

/* ---- stats ----------------------------------------------------------------------------- */

static void test_stats(void) {
    qat_dataset *d = qat_dataset_alloc(3, 2, 2, 3, 2, "tiny");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    for (int i = 0; i < 36; i++) d->images[i] = (uint8_t)((i * 37) % 256);
    double m[3] = {0}, v[3] = {0};
    for (int i = 0; i < 36; i++) m[i % 3] += d->images[i] / 255.0 / 12;
    for (int i = 0; i < 36; i++) v[i % 3] += pow(d->images[i] / 255.0 - m[i % 3], 2) / 12;
    float mean[3], std[3];
    qat_dataset_stats(d, mean, std);
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_DOUBLE_EQUAL(mean[k], m[k], 1e-6);
        CU_ASSERT_DOUBLE_EQUAL(std[k], sqrt(v[k]), 1e-6);
    }
    /* constant image: std 0 */
    memset(d->images, 51, 36);
    qat_dataset_stats(d, mean, std);
    CU_ASSERT_DOUBLE_EQUAL(mean[1], 0.2, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(std[1], 0.0, 1e-6);
    qat_dataset_free(d);
}

/* ---- loader ---------------------------------------------------------------------------- */

/* n images of (h, w, c); image i is filled with i+1 and labelled i (so a batch names its
 * images through its labels). */
static qat_dataset *numbered_dataset(int n, int h, int w, int c) {
    qat_dataset *d = qat_dataset_alloc(n, h, w, c, n, "numbered");
    for (int i = 0; i < n; i++) {
        d->labels[i] = i;
        for (int j = 0; j < h * w * c; j++) d->images[(size_t)i * h * w * c + j] = (uint8_t)(i + 1 + j);
    }
    return d;
}

static void test_loader_cover(void) {
    qat_dataset *d = numbered_dataset(23, 2, 3, 1);
    for (int drop = 0; drop < 2; drop++) {
        qat_loader_opts o = {.batch = 5, .shuffle = 1, .seed = 3, .drop_last = drop};
        qat_loader *l;
        CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &l), QAT_OK);
        CU_ASSERT_EQUAL(qat_loader_num_batches(l), drop ? 4 : 5);
        float x[5 * 6];
        int32_t lab[5];
        int order[2][23];
        for (int epoch = 0; epoch < 2; epoch++) {
            int seen[23] = {0}, total = 0, identity = 1;
            for (int b = 0; b < qat_loader_num_batches(l); b++) {
                int cnt = qat_loader_get(l, epoch, b, x, lab);
                CU_ASSERT_EQUAL(cnt, b == 4 ? 3 : 5);
                for (int j = 0; j < cnt; j++) {
                    CU_ASSERT_FATAL(lab[j] >= 0 && lab[j] < 23);
                    seen[lab[j]]++;
                    order[epoch][total] = lab[j];
                    identity &= lab[j] == total;
                    total++;
                    /* the image travels with its label */
                    CU_ASSERT_DOUBLE_EQUAL(x[j * 6 + 2], (lab[j] + 3) / 255.0f, 1e-7);
                }
            }
            CU_ASSERT_EQUAL(total, drop ? 20 : 23);
            for (int i = 0; i < 23; i++) CU_ASSERT(drop ? seen[i] <= 1 : seen[i] == 1);
            CU_ASSERT(!identity);
        }
        CU_ASSERT(memcmp(order[0], order[1], sizeof(int) * (drop ? 20 : 23)) != 0);
        CU_ASSERT_EQUAL(qat_loader_get(l, 0, 99, x, lab), 0);
        qat_loader_free(l);
    }
    /* without shuffle: in order */
    qat_loader_opts o = {.batch = 10};
    qat_loader *l;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &l), QAT_OK);
    float x[10 * 6];
    int32_t lab[10];
    CU_ASSERT_EQUAL(qat_loader_get(l, 5, 2, x, lab), 3);
    CU_ASSERT(lab[0] == 20 && lab[2] == 22);
    qat_loader_free(l);
    o.batch = 0;
    CU_ASSERT_EQUAL(qat_loader_create(d, &o, &l), QAT_ERR_ARG);
    qat_dataset_free(d);
}

static void test_loader_deterministic(void) {
    qat_dataset *d = numbered_dataset(37, 5, 4, 3);
    const int B = 4, img = 5 * 4 * 3;
    qat_loader_opts o = {.batch = B, .shuffle = 1, .crop_pad = 2, .hflip = 1, .seed = 99,
                         .mean = {0.1f, 0.2f, 0.3f}, .std = {0.5f, 0.25f, 2.0f}};
    qat_loader *ref, *a, *p;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &ref), QAT_OK);
    int nb = qat_loader_num_batches(ref);
    CU_ASSERT_EQUAL_FATAL(nb, 10);
    /* Reference: all batches of epochs 0..2 in order, no prefetch. */
    float *rx = malloc(sizeof(float) * 3 * nb * B * img), x[4 * 60];
    int32_t *rl = malloc(sizeof(int32_t) * 3 * nb * B), lab[4];
    int rc[30];
    for (int e = 0; e < 3; e++)
        for (int b = 0; b < nb; b++)
            rc[e * nb + b] = qat_loader_get(ref, e, b, rx + (size_t)(e * nb + b) * B * img,
                                            rl + (e * nb + b) * B);
    /* Another plain loader asked in a scrambled order, and a prefetching one asked in order,
     * backwards, and at random: every batch identical to the reference. */
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &a), QAT_OK);
    o.prefetch = 1;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &p), QAT_OK);
    int mismatches = 0;
    qat_rng r;
    qat_rng_seed(&r, 5);
    for (int pass = 0; pass < 4; pass++)
        for (int t = 0; t < 3 * nb; t++) {
            int k = pass == 0 ? t : pass == 1 ? 3 * nb - 1 - t : (int)qat_rng_below(&r, 3 * nb);
            int e = k / nb, b = k % nb;
            qat_loader *l = pass == 3 ? a : p;
            /* Now and then let the worker finish its (often useless) guess first, so both the
             * "slot holds another batch" and the "worker still busy" paths are taken. */
            if (pass && t % 3 == 0) usleep(1000);
            int cnt = qat_loader_get(l, e, b, x, lab);
            mismatches += cnt != rc[k];
            if (cnt == rc[k])
                mismatches += memcmp(x, rx + (size_t)k * B * img, sizeof(float) * cnt * img) != 0 ||
                              memcmp(lab, rl + k * B, sizeof(int32_t) * cnt) != 0;
        }
    CU_ASSERT_EQUAL(mismatches, 0);
    /* The augmentation depends on the epoch (without shuffle, the same images in batch 0 of
     * epochs 0 and 1 are cropped / flipped differently) and on the seed. */
    qat_loader_free(p);
    qat_loader_free(a);
    o.prefetch = 0;
    o.shuffle = 0;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &a), QAT_OK);
    float x1[4 * 60];
    qat_loader_get(a, 0, 0, x, lab);
    qat_loader_get(a, 1, 0, x1, lab);
    CU_ASSERT(memcmp(x, x1, sizeof x) != 0);
    qat_loader_free(a);
    o.seed = 100;
    o.shuffle = 1;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &a), QAT_OK);
    qat_loader_get(a, 0, 0, x, lab);
    CU_ASSERT(memcmp(lab, rl, sizeof lab) != 0 || memcmp(x, rx, sizeof x) != 0);
    qat_loader_free(a);
    qat_loader_free(ref);
    free(rx);
    free(rl);
    qat_dataset_free(d);
}

static void test_loader_normalise(void) {
    qat_dataset *d = qat_dataset_alloc(2, 1, 128, 3, 1, "norm");
    for (int i = 0; i < 2 * 128 * 3; i++) d->images[i] = (uint8_t)(i % 256);
    qat_loader_opts o = {.batch = 2, .mean = {0.5f, 0.25f, 0.0f}, .std = {0.5f, 2.0f, 0.0f}};
    qat_loader *l;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &l), QAT_OK);
    float x[2 * 128 * 3];
    int32_t lab[2];
    CU_ASSERT_EQUAL(qat_loader_get(l, 0, 0, x, lab), 2);
    float expect[2 * 128 * 3];
    for (int i = 0; i < 2 * 128 * 3; i++) {
        int k = i % 3;
        float sd = k == 2 ? 1.0f : o.std[k]; /* std 0 means 1 */
        expect[i] = (d->images[i] / 255.0f - o.mean[k]) / sd;
    }
    test_compare("normalisation", x, expect, 2 * 128 * 3, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(x[255], 1.0, 1e-6);           /* 255, mean .5, std .5 -> 1 */
    CU_ASSERT_DOUBLE_EQUAL(x[0], -1.0, 1e-6);            /* 0 -> -1 */
    qat_loader_free(l);
    qat_dataset_free(d);
}

static void test_loader_crop_flip(void) {
    /* 64 copies of a 6x6 gray image with one bright pixel at (2, 1). */
    const int n = 64, H = 6, W = 6, py = 2, px = 1;
    qat_dataset *d = qat_dataset_alloc(n, H, W, 1, n, "dot");
    for (int i = 0; i < n; i++) {
        d->labels[i] = i;
        d->images[(size_t)i * H * W + py * W + px] = 255;
    }
    for (int mode = 0; mode < 3; mode++) { /* 0 crop only, 1 flip only, 2 both */
        qat_loader_opts o = {.batch = n, .shuffle = 1, .seed = 11, .crop_pad = mode != 1 ? 1 : 0,
                             .hflip = mode != 0, .mean = {0.5f}, .std = {0.5f}};
        qat_loader *l;
        CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &l), QAT_OK);
        float x[64 * 36];
        int32_t lab[64];
        CU_ASSERT_EQUAL(qat_loader_get(l, 0, 0, x, lab), n);
        int flipped = 0, positions = 0, bad = 0, labels_ok = 1;
        int at[6][6] = {{0}};
        for (int j = 0; j < n; j++) {
            labels_ok &= lab[j] >= 0 && lab[j] < n && d->labels[lab[j]] == lab[j];
            int nb = 0, by = -1, bx = -1;
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    float v = x[j * 36 + y * W + xx];
                    if (v == 1.0f) nb++, by = y, bx = xx;
                    else bad += v != -1.0f; /* background and black padding: (0 - .5) / .5 */
                }
            bad += nb != 1;
            if (nb != 1) continue;
            at[by][bx]++;
            int is_flipped = bx >= 3; /* unflipped x in [0, 2], flipped (W-1-x) in [3, 5] */
            flipped += is_flipped;
            int ux = is_flipped ? W - 1 - bx : bx;
            int shift_y = by - py, shift_x = ux - px;
            if (mode == 1) bad += shift_y != 0 || shift_x != 0;
            else bad += abs(shift_y) > 1 || abs(shift_x) > 1;
            if (mode == 0) bad += is_flipped;
        }
        for (int y = 0; y < 6; y++)
            for (int xx = 0; xx < 6; xx++) positions += at[y][xx] > 0;
        CU_ASSERT(labels_ok);
        CU_ASSERT_EQUAL(bad, 0);
        if (mode) CU_ASSERT(flipped > 10 && flipped < 54); /* p = 0.5 over 64 draws */
        if (mode == 0) CU_ASSERT(positions >= 6);         /* 9 possible shifts */
        if (mode == 1) CU_ASSERT_EQUAL(positions, 2);
        qat_loader_free(l);
    }
    qat_dataset_free(d);

    /* Flipping an RGB row reverses the pixels but not the channels. */
    d = qat_dataset_alloc(1, 1, 3, 3, 1, "row");
    for (int i = 0; i < 9; i++) d->images[i] = (uint8_t)(i * 10);
    qat_loader_opts o = {.batch = 1, .hflip = 1};
    qat_loader *l;
    CU_ASSERT_EQUAL_FATAL(qat_loader_create(d, &o, &l), QAT_OK);
    int found_flip = 0;
    for (int e = 0; e < 40 && !found_flip; e++) {
        float x[9];
        int32_t lab[1];
        qat_loader_get(l, e, 0, x, lab);
        if (x[0] != 0) {
            found_flip = 1;
            static const int want[9] = {60, 70, 80, 30, 40, 50, 0, 10, 20};
            for (int i = 0; i < 9; i++) CU_ASSERT_DOUBLE_EQUAL(x[i], want[i] / 255.0f, 1e-7);
        }
    }
    CU_ASSERT(found_flip);
    qat_loader_free(l);
    qat_dataset_free(d);
}

/* ---- the real Fashion-MNIST, when installed -------------------------------------------- */

static void test_fashion_mnist(void) {
    if (tmp_root[0]) tmp_end(); /* registered last: cleans up after an aborted test */
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) != 0) {
        printf("\n  note: /usr/share/datasets/fashion-mnist absent, test skipped\n");
        return;
    }
    qat_dataset *tr = NULL, *te = NULL;
    qat_status s = qat_dataset_open("fashion-mnist", NULL, &tr, &te);
    if (s) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QAT_OK);
    CU_ASSERT(tr->n == 60000 && te->n == 10000);
    CU_ASSERT_STRING_EQUAL(tr->kind, "fashion-mnist"); /* the name carries the recipe ... */
    qat_dataset *tr2 = NULL, *te2 = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_dataset_open("/usr/share/datasets/fashion-mnist", NULL, &tr2, &te2), QAT_OK);
    CU_ASSERT_STRING_EQUAL(tr2->kind, "idx");          /* ... the path does not */
    qat_dataset_free(tr2);
    qat_dataset_free(te2);
    CU_ASSERT(tr->h == 28 && tr->w == 28 && tr->c == 1 && te->h == 28);
    CU_ASSERT(tr->nclasses == 10 && te->nclasses == 10);
    int count[10] = {0};
    for (int i = 0; i < tr->n; i++) count[tr->labels[i]]++;
    for (int k = 0; k < 10; k++) CU_ASSERT_EQUAL(count[k], 6000); /* balanced classes */
    float mean, std;
    qat_dataset_stats(tr, &mean, &std);
    CU_ASSERT_DOUBLE_EQUAL(mean, 0.2860, 0.0005); /* the published Fashion-MNIST statistics */
    CU_ASSERT_DOUBLE_EQUAL(std, 0.3530, 0.0005);
    qat_dataset_free(tr);
    qat_dataset_free(te);
}

void register_datasets_tests(void) {
    test_add_suite("datasets",
                   "IDX raw round trip", test_idx_raw,
                   "IDX gzip round trip", test_idx_gz,
                   "IDX truncated / corrupt gzip", test_idx_truncated,
                   "IDX wrong magic", test_idx_wrong_magic,
                   "IDX count mismatch / missing file", test_idx_count_mismatch,
                   "PNG every colour type", test_png_color_types,
                   "PNG corrupt files", test_png_corrupt,
                   "ImageFolder train/test", test_imagefolder_train_test,
                   "ImageFolder val_split", test_imagefolder_val_split,
                   "ImageFolder sizes / resize / convert", test_imagefolder_sizes,
                   "ImageFolder errors", test_imagefolder_errors,
                   "CIFAR-10 binary", test_cifar,
                   "dataset kinds and their augmentation", test_dataset_kinds,
                   "dataset stats", test_stats,
                   "loader covers every image", test_loader_cover,
                   "loader deterministic (order, prefetch)", test_loader_deterministic,
                   "loader normalisation", test_loader_normalise,
                   "loader crop and flip", test_loader_crop_flip,
                   "Fashion-MNIST (if installed)", test_fashion_mnist,
                   NULL);
}
