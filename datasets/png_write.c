/* 8-bit gray / RGB PNG writers (plots, tests). Written to path.tmp and renamed, so a reader
 * never sees half a file. */
#include "images.h"
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
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

static qat_status write_png(const char *path, int w, int h, int channels, const uint8_t *pix) {
    if (w <= 0 || h <= 0 || !pix)
        return qat_fail(QAT_ERR_ARG, "%s: cannot write a %dx%d image", path, w, h);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    png_write_err err = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, write_error_fn,
                                              write_warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        remove(tmp);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(tmp);
        return qat_fail(QAT_ERR_IO, "%s: cannot write PNG (libpng: %s)", path, err.msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(pix + (size_t)y * w * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return qat_fail(QAT_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return qat_fail(QAT_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    return QAT_OK;
}

qat_status qat_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb) {
    return write_png(path, w, h, 3, rgb);
}

qat_status qat_png_write_gray(const char *path, int w, int h, const uint8_t *gray) {
    return write_png(path, w, h, 1, gray);
}
