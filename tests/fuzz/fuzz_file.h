/* Shared by the file-parser fuzz targets (tests/fuzz/fuzz_{ckpt,idx,png,cifar,spec}.c): the
 * parsers read paths, as the CLI gives them, so each input is written to a scratch file on a
 * tmpfs (/dev/shm, else /tmp) that the target then opens. One scratch directory per process. */
#ifndef QAT_FUZZ_FILE_H
#define QAT_FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *fuzz_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/qat-fuzz-%ld", base, (long)getpid());
        mkdir(dir, 0700);
    }
    return dir;
}

/* dir/name with data written to it; returns the path (static buffer per slot 0..3). */
static const char *fuzz_put(int slot, const char *name, const uint8_t *data, size_t size) {
    static char paths[4][512];
    char *p = paths[slot & 3];
    snprintf(p, 512, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return p;
}

#endif
