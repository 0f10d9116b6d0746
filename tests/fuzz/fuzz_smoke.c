/* A fuzz smoke run for `make test` (and `make asan`) without libFuzzer: a libFuzzer target's
 * LLVMFuzzerTestOneInput (linked in beside this file) on its seeds and on a fixed number of
 * deterministic mutants of them: bit flips, bytes set to boundary values, bytes inserted and
 * erased, truncations, a chunk of one seed spliced into another. The target traps on a finding
 * (a crash, a multi-line error, a model that does not re-parse), which fails the run; libFuzzer
 * itself (`make fuzz-import`) explores far more, this keeps the cheap part in every test run.
 *
 *   fuzz_smoke_onnx RUNS [SEED]     (exit 0: every input ran; the count is printed)
 *
 * The target writes its seeds into a fresh directory (QAT_FUZZ_SEEDS, LLVMFuzzerInitialize). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_SEEDS 16
#define MAX_LEN (1 << 16)

static uint64_t state;
static uint32_t next(void) { /* splitmix64, upper half */
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

typedef struct {
    uint8_t *b;
    size_t n;
} blob;

/* One mutation of buf (length *n, capacity MAX_LEN) in place. */
static void mutate(uint8_t *buf, size_t *n, const blob *seeds, int nseeds) {
    static const uint8_t boundary[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x08, 0x0a, 0x12, 0x1a};
    size_t len = *n;
    if (len == 0) return;
    switch (next() % 7) {
    case 0: buf[next() % len] ^= (uint8_t)(1u << (next() % 8)); break;
    case 1: buf[next() % len] = boundary[next() % sizeof boundary]; break;
    case 2: /* insert a byte */
        if (len < MAX_LEN) {
            size_t at = next() % (len + 1);
            memmove(buf + at + 1, buf + at, len - at);
            buf[at] = (uint8_t)next();
            *n = len + 1;
        }
        break;
    case 3: { /* erase up to 8 bytes */
        size_t at = next() % len, k = 1 + next() % 8;
        if (k > len - at) k = len - at;
        memmove(buf + at, buf + at + k, len - at - k);
        *n = len - k;
        break;
    }
    case 4: *n = next() % len; break; /* truncate */
    case 5: { /* a varint (length, count, dimension) pushed to a large value */
        size_t at = next() % len;
        buf[at] |= 0x80;
        if (at + 1 < len) buf[at + 1] = 0x7f;
        break;
    }
    default: { /* splice a chunk of some seed over a random place */
        const blob *s = &seeds[next() % nseeds];
        if (s->n == 0) break;
        size_t from = next() % s->n, k = 1 + next() % 64, at = next() % len;
        if (k > s->n - from) k = s->n - from;
        if (k > len - at) k = len - at;
        memcpy(buf + at, s->b + from, k);
    }
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s RUNS [SEED]\n", argv[0]);
        return 2;
    }
    long runs = atol(argv[1]);
    state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    char dir[] = "/tmp/qat_fuzz_smoke_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    setenv("QAT_FUZZ_SEEDS", dir, 1);
    LLVMFuzzerInitialize(&argc, &argv);
    blob seeds[MAX_SEEDS];
    int nseeds = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && nseeds < MAX_SEEDS) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        blob *s = &seeds[nseeds];
        s->b = malloc(MAX_LEN);
        s->n = fread(s->b, 1, MAX_LEN, f);
        fclose(f);
        unlink(path);
        nseeds++;
    }
    if (d) closedir(d);
    rmdir(dir);
    if (nseeds == 0) {
        fprintf(stderr, "%s: the target wrote no seeds\n", argv[0]);
        return 1;
    }
    uint8_t *buf = malloc(MAX_LEN);
    for (int i = 0; i < nseeds; i++) LLVMFuzzerTestOneInput(seeds[i].b, seeds[i].n);
    for (long r = 0; r < runs; r++) {
        const blob *s = &seeds[next() % nseeds];
        size_t n = s->n;
        memcpy(buf, s->b, n);
        int k = 1 + (int)(next() % 4); /* stacked mutations, as libFuzzer does */
        for (int j = 0; j < k; j++) mutate(buf, &n, seeds, nseeds);
        /* a copy of exactly n bytes: ASan sees a read past the input */
        uint8_t *in = malloc(n ? n : 1);
        memcpy(in, buf, n);
        LLVMFuzzerTestOneInput(in, n);
        free(in);
    }
    printf("fuzz smoke: %d seeds and %ld mutants through the target, no finding\n", nseeds, runs);
    free(buf);
    for (int i = 0; i < nseeds; i++) free(seeds[i].b);
    return 0;
}
