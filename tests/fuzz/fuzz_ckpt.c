/* libFuzzer target for the checkpoint loader (train/checkpoint.c over base/container.c, the
 * spec, the model and the quantization state): `make fuzz`. Each input is tried as given and
 * with its CRCs recomputed (container_crc.h), so that mutations reach the values behind the
 * checksums. An accepted checkpoint must pass the checks a save makes (qat_run_check_state). */
#include "train.h"
#include "fuzz_file.h"
#include "container_crc.h"

static void try_load(const uint8_t *data, size_t size) {
    const char *path = fuzz_put(0, "fuzz.ckpt", data, size);
    qat_run r;
    if (qat_checkpoint_load(path, &r) != QAT_OK) return;
    if (qat_run_check_state(&r, path) != QAT_OK) __builtin_trap();
    qat_run_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 22) return 0;
    try_load(data, size);
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    try_load(copy, size);
    free(copy);
    return 0;
}
