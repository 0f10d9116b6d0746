/* A dataset's images in memory (datasets/images.h): the record, bilinear resizing and channel
 * conversion. */
#include "images.h"
#include "base.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qat_dataset *qat_dataset_alloc(int n, int h, int w, int c, int nclasses, const char *source) {
    qat_dataset *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n = n;
    d->h = h;
    d->w = w;
    d->c = c;
    d->nclasses = nclasses;
    snprintf(d->source, sizeof d->source, "%s", source ? source : "");
    size_t npix = (size_t)n * h * w * c;
    d->images = calloc(npix ? npix : 1, 1);
    d->labels = calloc(n ? (size_t)n : 1, sizeof *d->labels);
    d->class_names = calloc(nclasses ? (size_t)nclasses : 1, sizeof *d->class_names);
    if (!d->images || !d->labels || !d->class_names) {
        qat_dataset_free(d);
        return NULL;
    }
    for (int k = 0; k < nclasses; k++) snprintf(d->class_names[k], sizeof d->class_names[k], "%d", k);
    return d;
}

void qat_dataset_free(qat_dataset *d) {
    if (!d) return;
    free(d->images);
    free(d->labels);
    free(d->class_names);
    free(d);
}

void qat_image_resize(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, int c) {
    if (sh == dh && sw == dw) {
        memcpy(dst, src, (size_t)sh * sw * c);
        return;
    }
    /* Half-pixel centres: destination pixel x samples source coordinate (x + 0.5) * sw/dw - 0.5,
     * clamped at the borders. */
    float sy_scale = (float)sh / dh, sx_scale = (float)sw / dw;
    for (int y = 0; y < dh; y++) {
        float fy = (y + 0.5f) * sy_scale - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy;
        if (y0 > sh - 1) y0 = sh - 1;
        int y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
        float wy = fy - y0;
        if (wy > 1) wy = 1;
        for (int x = 0; x < dw; x++) {
            float fx = (x + 0.5f) * sx_scale - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx;
            if (x0 > sw - 1) x0 = sw - 1;
            int x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
            float wx = fx - x0;
            if (wx > 1) wx = 1;
            for (int k = 0; k < c; k++) {
                float top = src[((size_t)y0 * sw + x0) * c + k] * (1 - wx) +
                            src[((size_t)y0 * sw + x1) * c + k] * wx;
                float bot = src[((size_t)y1 * sw + x0) * c + k] * (1 - wx) +
                            src[((size_t)y1 * sw + x1) * c + k] * wx;
                float v = top * (1 - wy) + bot * wy + 0.5f;
                dst[((size_t)y * dw + x) * c + k] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
}

void qat_image_convert(const uint8_t *src, int cs, uint8_t *dst, int cd, int64_t npix) {
    if (cs == cd) {
        memcpy(dst, src, (size_t)npix * cs);
    } else if (cs == 3 && cd == 1) {
        for (int64_t i = 0; i < npix; i++) /* ITU-R 601 luma, as PIL's convert('L'), rounded */
            dst[i] = (uint8_t)((299 * src[3 * i] + 587 * src[3 * i + 1] + 114 * src[3 * i + 2] +
                                500) / 1000);
    } else {
        QAT_ASSERT(cs == 1 && cd == 3);
        for (int64_t i = 0; i < npix; i++) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i];
    }
}

/* Converts a loaded dataset in place to c channels and (h, w). */
