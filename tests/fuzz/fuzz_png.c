/* libFuzzer target for the PNG reader (datasets/images.c, libpng underneath), as `qat infer`
 * and ImageFolder datasets use it: `make fuzz`. An accepted image has sane dimensions and 1 or
 * 3 channels, and its pixels are all readable. */
#include "images.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_put(0, "fuzz.png", data, size);
    int h = 0, w = 0, c = 0;
    uint8_t *px = NULL;
    if (qat_png_read(path, &h, &w, &c, &px) == QAT_OK) {
        if (h < 1 || w < 1 || (c != 1 && c != 3) || !px) __builtin_trap();
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)h * w * c; i++) sum += px[i]; /* ASan sees every byte */
        (void)sum;
        free(px);
    }
    return 0;
}
