/* Classifies PNG images with an INT8 model, using only the deploy API (include/qat_rt.h).
 *
 *   make examples      (or: cc examples/classify.c -Iinclude libqat_rt.a -ldnnl -lz -lm -lpng -fopenmp)
 *   examples/classify MODEL.q8 IMAGE.png...
 *
 * Each PNG must have the model's height and width; gray and colour images are converted to the
 * model's channel count (RGB -> gray with the integer luma qat's loader uses). */
#include "qat_rt.h"
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decodes path into (h, w, c) 8-bit pixels with libpng's simplified API; returns 0 on success. */
static int read_png(const char *path, int h, int w, int c, uint8_t *dst) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) {
        fprintf(stderr, "%s: %s\n", path, img.message);
        return 1;
    }
    if ((int)img.height != h || (int)img.width != w) {
        fprintf(stderr, "%s: image is %ux%u, the model takes %dx%d\n", path, img.width, img.height, w, h);
        png_image_free(&img);
        return 1;
    }
    /* Decode as RGB, then convert: libpng's own gray conversion is gamma-corrected, the
     * model was trained on the plain weighted sum. */
    img.format = PNG_FORMAT_RGB;
    uint8_t *rgb = malloc((size_t)h * w * 3);
    if (!rgb || !png_image_finish_read(&img, NULL, rgb, 0, NULL)) {
        fprintf(stderr, "%s: %s\n", path, rgb ? img.message : "out of memory");
        free(rgb);
        png_image_free(&img);
        return 1;
    }
    for (size_t p = 0; p < (size_t)h * w; p++) {
        const uint8_t *s = rgb + 3 * p;
        if (c == 1)
            dst[p] = (uint8_t)((299 * s[0] + 587 * s[1] + 114 * s[2] + 500) / 1000);
        else
            memcpy(dst + 3 * p, s, 3);
    }
    free(rgb);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.q8 IMAGE.png...\n", argv[0]);
        return 2;
    }
    qat_rt *rt;
    if (qat_rt_load(argv[1], NULL, &rt)) {
        fprintf(stderr, "%s\n", qat_rt_last_error());
        return 1;
    }
    int h, w, c, nc = qat_rt_nclasses(rt);
    qat_rt_input_shape(rt, &h, &w, &c);
    if (c != 1 && c != 3) {
        fprintf(stderr, "%s: %d input channels (this example handles 1 or 3)\n", argv[1], c);
        qat_rt_free(rt);
        return 1;
    }
    uint8_t *px = malloc((size_t)h * w * c);
    float *logits = malloc(sizeof(float) * nc);
    int status = px && logits ? 0 : 1;
    for (int i = 2; i < argc && !status; i++) {
        if (read_png(argv[i], h, w, c, px)) {
            status = 1;
            break;
        }
        if (qat_rt_run_u8(rt, px, 1, logits)) {
            fprintf(stderr, "%s\n", qat_rt_last_error());
            status = 1;
            break;
        }
        int best = 0;
        double sum = 0;
        for (int k = 1; k < nc; k++)
            if (logits[k] > logits[best]) best = k;
        for (int k = 0; k < nc; k++) sum += exp((double)logits[k] - logits[best]);
        printf("%s: class %d (p = %.3f)\n", argv[i], best, 1.0 / sum);
    }
    free(px);
    free(logits);
    qat_rt_free(rt);
    return status;
}
