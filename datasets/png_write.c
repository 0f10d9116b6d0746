/* 8-bit gray / RGB PNG writers (plots, tests). Encoded in memory, then written by the shared
 * atomic writer (qat_file_write_atomic: temp file, fsync, rename; symlinks followed, special
 * files refused), so a reader never sees half a file. */
#include "container.h"
#include "images.h"
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char msg[256];
} png_write_err;

static void write_error_fn(png_structp png, png_const_charp msg) {
    png_write_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void write_warning_fn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

typedef struct {
    unsigned char *data;
    size_t size, cap;
    int failed;
} png_buf;

static void buf_write(png_structp png, png_bytep data, png_size_t n) {
    png_buf *b = png_get_io_ptr(png);
    if (b->failed) return;
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->size + n) cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p, b->cap = cap;
    }
    memcpy(b->data + b->size, data, n);
    b->size += n;
}

static void buf_flush(png_structp png) { (void)png; }

static qat_status write_png(const char *path, int w, int h, int channels, const uint8_t *pix) {
    if (w <= 0 || h <= 0 || !pix)
        return qat_fail(QAT_ERR_ARG, "%s: cannot write a %dx%d image", path, w, h);
    png_write_err err = {{0}};
    png_buf out = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, write_error_fn,
                                              write_warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(out.data);
        return qat_fail(QAT_ERR_IO, "%s: cannot write PNG (libpng: %s)", path, err.msg);
    }
    png_set_write_fn(png, &out, buf_write, buf_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(pix + (size_t)y * w * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (out.failed) {
        free(out.data);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    qat_status st = qat_file_write_atomic(path, out.data, out.size);
    free(out.data);
    return st;
}

qat_status qat_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb) {
    return write_png(path, w, h, 3, rgb);
}

qat_status qat_png_write_gray(const char *path, int w, int h, const uint8_t *gray) {
    return write_png(path, w, h, 1, gray);
}
