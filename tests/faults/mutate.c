/* mutate SEED OUT K [crc]: writes OUT, the K-th mutant of the file SEED (deterministic in K), for
 * the fault harness (tests/faults/faults.sh). One to four edits: flip 1-8 bits, set a byte or a
 * 4-byte word to a boundary value (0, 0xff, 0x7f, 0x80, 0x7fffffff, 0xffffffff, a float NaN or
 * inf), zero or copy a run of bytes, truncate, or append garbage. With "crc" the container
 * checksums (base/container.h) are recomputed after the edits, so that the mutant reaches the
 * parser behind them (.q8 and checkpoints). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/container_crc.h"

static uint64_t state;
static uint32_t next(void) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: mutate SEED OUT K [crc]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) return perror(argv[1]), 1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t cap = (size_t)n + 4096;
    unsigned char *b = malloc(cap);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);
    state = strtoull(argv[3], NULL, 10) * 0x2545f4914f6cdd1dull + 1;
    size_t len = (size_t)n;
    int edits = 1 + next() % 4;
    static const uint32_t words[] = {0, 0xffffffffu, 0x7fffffffu, 0x80000000u, 0x7fc00000u /* NaN */,
                                     0x7f800000u /* inf */, 0xff800000u, 1, 0x00010000u};
    for (int e = 0; e < edits && len > 0; e++) {
        /* positions near the start (headers, tables) are picked more often */
        size_t pos = next() % 2 ? next() % (len < 512 ? len : 512) : next() % len;
        switch (next() % 8) {
        case 0:
        case 1:
            for (int k = 1 + next() % 8; k > 0; k--) {
                size_t p = next() % 2 ? pos : next() % len;
                b[p] ^= (unsigned char)(1u << (next() % 8));
            }
            break;
        case 2: {
            static const unsigned char vals[] = {0, 0xff, 0x7f, 0x80, 1, 0xfe};
            b[pos] = vals[next() % sizeof vals];
            break;
        }
        case 3:
            if (pos + 4 <= len) {
                uint32_t w = words[next() % (sizeof words / sizeof words[0])];
                memcpy(b + pos, &w, 4);
            }
            break;
        case 4: {
            size_t run = 1 + next() % 64;
            if (pos + run > len) run = len - pos;
            memset(b + pos, 0, run);
            break;
        }
        case 5: {
            size_t run = 1 + next() % 64, from = next() % len;
            if (pos + run > len) run = len - pos;
            if (from + run > len) run = len - from;
            memmove(b + pos, b + from, run);
            break;
        }
        case 6:
            len = pos; /* truncate */
            break;
        case 7:
            for (int k = 1 + next() % 64; k > 0 && len < cap; k--) b[len++] = (unsigned char)next();
            break;
        }
    }
    if (argc > 4 && !strcmp(argv[4], "crc") && next() % 4) fix_crcs(b, len); /* a quarter keep bad CRCs */
    f = fopen(argv[2], "wb");
    if (!f || fwrite(b, 1, len, f) != len || fclose(f)) return perror(argv[2]), 1;
    free(b);
    return 0;
}
