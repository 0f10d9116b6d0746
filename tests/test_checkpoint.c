/* The section container (base/container.c): round trips, atomic replacement, and hostile files
 * (every truncation, every single-bit flip, forged headers with valid checksums). Forged files are
 * built here byte by byte from the layout documented in container.h, with zlib's crc32. */
#define _GNU_SOURCE
#include "test_util.h"
#include "container.h"
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char MAGIC[8] = {'Q', 'A', 'T', 'C', 'K', 'P', 'T', '1'};

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int suite_init(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qat_ckpt_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : 1;
}

static int suite_clean(void) {
    chmod(tmpdir, 0700);
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

#define slurp test_slurp
#define spit(p, b, n) test_spit(p, b, (size_t)(n))

static int has(const char *s) { return strstr(qat_last_error(), s) != NULL; }

static int count_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- fixture: a small file with four sections, one of them empty ------------------------- */

static float params[100];
static int64_t step_value = 4242;
static const char odd_bytes[13] = "thirteen byte";

static void fill_sections(qat_section s[4]) {
    for (int i = 0; i < 100; i++) params[i] = (float)i * 0.5f - 7.0f;
    memset(s, 0, 4 * sizeof *s);
    strcpy(s[0].name, "params"), s[0].data = params, s[0].size = sizeof params;
    strcpy(s[1].name, "empty"), s[1].data = NULL, s[1].size = 0;
    strcpy(s[2].name, "step"), s[2].data = &step_value, s[2].size = sizeof step_value;
    strcpy(s[3].name, "opt.state"), s[3].data = odd_bytes, s[3].size = sizeof odd_bytes;
}

static void write_fixture(const char *path) {
    qat_section s[4];
    fill_sections(s);
    CU_ASSERT_EQUAL_FATAL(qat_container_write(path, MAGIC, 1, s, 4), QAT_OK);
}

static qat_status read_at(const char *path, uint32_t max_version) {
    qat_container *c = (qat_container *)1;
    qat_status st = qat_container_read(path, MAGIC, max_version, &c);
    if (st != QAT_OK) CU_ASSERT_PTR_NULL(c);
    qat_container_free(c);
    return st;
}

/* ---- layout helpers for forged files ----------------------------------------------------- */

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void wr64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static unsigned char *entry_at(unsigned char *b, int i) { return b + 16 + 36 * i; }
/* Recomputes the header checksum so the forged field itself is what the reader must catch. */
static void fix_header_crc(unsigned char *b) {
    uint32_t n = rd32(b + 12);
    size_t body = 16 + 36 * (size_t)n;
    wr32(b + body, (uint32_t)crc32(0L, b, (uInt)body));
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_roundtrip(void) {
    const char *path = tpath("rt.ckpt");
    write_fixture(path);
    qat_container *c = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_container_read(path, MAGIC, 1, &c), QAT_OK);
    CU_ASSERT_EQUAL(qat_container_version(c), 1);
    CU_ASSERT_STRING_EQUAL(qat_container_path(c), path);
    CU_ASSERT_EQUAL(qat_container_count(c), 4);
    CU_ASSERT_STRING_EQUAL(qat_container_name(c, 3), "opt.state");
    CU_ASSERT_PTR_NULL(qat_container_name(c, 4));
    uint64_t size = 99;
    const float *p = qat_container_find(c, "params", &size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(size, sizeof params);
    CU_ASSERT_EQUAL((uintptr_t)p % 64, 0);
    CU_ASSERT(memcmp(p, params, sizeof params) == 0);
    const void *e = qat_container_find(c, "empty", &size);
    CU_ASSERT_PTR_NOT_NULL(e);
    CU_ASSERT_EQUAL(size, 0);
    const void *d;
    CU_ASSERT_EQUAL(qat_container_get(c, "step", 8, &d, &size), QAT_OK);
    CU_ASSERT_EQUAL(*(const int64_t *)d, 4242);
    CU_ASSERT_EQUAL(qat_container_get(c, "opt.state", 0, &d, &size), QAT_OK);
    CU_ASSERT_EQUAL(size, 13);
    CU_ASSERT(memcmp(d, odd_bytes, 13) == 0);
    CU_ASSERT_EQUAL((uintptr_t)d % 64, 0);
    /* absent, and present with the wrong size: errors name the file and the section */
    CU_ASSERT_PTR_NULL(qat_container_find(c, "nope", &size));
    CU_ASSERT_EQUAL(size, 0);
    CU_ASSERT_NOT_EQUAL(qat_container_get(c, "nope", 0, &d, &size), QAT_OK);
    CU_ASSERT(has(path) && has("'nope'") && has("missing"));
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT_NOT_EQUAL(qat_container_get(c, "params", 404, &d, NULL), QAT_OK);
    CU_ASSERT(has(path) && has("'params'") && has("400") && has("404"));
    qat_container_free(c);

    /* no sections at all is a valid file too */
    const char *empty = tpath("none.ckpt");
    CU_ASSERT_EQUAL_FATAL(qat_container_write(empty, MAGIC, 7, NULL, 0), QAT_OK);
    CU_ASSERT_EQUAL_FATAL(qat_container_read(empty, MAGIC, 7, &c), QAT_OK);
    CU_ASSERT_EQUAL(qat_container_count(c), 0);
    CU_ASSERT_EQUAL(qat_container_version(c), 7);
    CU_ASSERT_PTR_NULL(qat_container_find(c, "params", &size));
    qat_container_free(c);

    /* rewriting replaces the content; no temporary files stay behind */
    int before = count_files();
    params[0] = 0;
    qat_section one = {"params", params, 4};
    float v = 123.5f;
    one.data = &v;
    CU_ASSERT_EQUAL_FATAL(qat_container_write(path, MAGIC, 1, &one, 1), QAT_OK);
    CU_ASSERT_EQUAL(count_files(), before);
    CU_ASSERT_EQUAL_FATAL(qat_container_read(path, MAGIC, 1, &c), QAT_OK);
    CU_ASSERT_EQUAL(qat_container_count(c), 1);
    CU_ASSERT_EQUAL(*(const float *)qat_container_find(c, "params", &size), 123.5f);
    qat_container_free(c);
}

static void test_write_rejects(void) {
    const char *path = tpath("bad.ckpt");
    qat_section s[2] = {{"a", "x", 1}, {"a", "y", 1}};
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 1, s, 2), QAT_ERR_ARG);
    CU_ASSERT(has("duplicate") && has("'a'"));
    strcpy(s[1].name, "has space");
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 1, s, 2), QAT_ERR_ARG);
    memset(s[1].name, 'z', 16); /* no NUL within 16 bytes */
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 1, s, 2), QAT_ERR_ARG);
    s[1].name[0] = 0; /* empty name */
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 1, s, 2), QAT_ERR_ARG);
    strcpy(s[1].name, "b");
    s[1].data = NULL; /* bytes but no data */
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 1, s, 2), QAT_ERR_ARG);
    s[1].data = "y";
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 0, s, 2), QAT_ERR_ARG); /* version 0 */
    CU_ASSERT_EQUAL(qat_container_write(path, MAGIC, 1, s, -1), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(access(path, F_OK), -1); /* nothing was created */
}

/* A write that fails at any point leaves the previous file intact and no temporary behind. */
static void test_failed_write_keeps_old(void) {
    const char *path = tpath("keep.ckpt");
    write_fixture(path);
    long len0, len1;
    unsigned char *orig = slurp(path, &len0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
    int files = count_files();
    float big[4096] = {0};
    qat_section s = {"params", big, sizeof big};

    /* 1. the write itself fails half-way: the process may not grow a file past 1 KiB */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit lim = {1024, old.rlim_max};
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of dying */
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) {
        signal(SIGXFSZ, old_handler);
        CU_FAIL_FATAL("setrlimit(RLIMIT_FSIZE) failed");
    }
    qat_status st = qat_container_write(path, MAGIC, 1, &s, 1);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CU_ASSERT_EQUAL(st, QAT_ERR_IO);
    CU_ASSERT(has(path));
    unsigned char *now = slurp(path, &len1);
    CU_ASSERT(now && len1 == len0 && memcmp(orig, now, (size_t)len0) == 0);
    free(now);
    CU_ASSERT_EQUAL(count_files(), files);
    CU_ASSERT_EQUAL(read_at(path, 1), QAT_OK);

    /* 2. the temporary file cannot be created: unwritable directory (not enforced for root, so
     * there a file name at the length limit makes the temporary's name too long instead) */
    char sub[512], target[1024];
    snprintf(sub, sizeof sub, "%s/ro", tmpdir);
    mkdir(sub, 0700);
    char longname[256];
    memset(longname, 'k', 250);
    longname[250] = 0;
    snprintf(target, sizeof target, "%s/%s", sub, geteuid() == 0 ? longname : "x.ckpt");
    spit(target, orig, len0); /* plainly: our writer cannot create the long name either */
    if (geteuid() != 0) chmod(sub, 0500);
    st = qat_container_write(target, MAGIC, 1, &s, 1);
    chmod(sub, 0700);
    CU_ASSERT_EQUAL(st, QAT_ERR_IO);
    CU_ASSERT(has("temporary"));
    now = slurp(target, &len1);
    CU_ASSERT(now && len1 == len0 && memcmp(orig, now, (size_t)len0) == 0);
    free(now);
    CU_ASSERT_EQUAL(read_at(target, 1), QAT_OK);
    remove(target);
    rmdir(sub);

    /* 3. a directory that does not exist */
    CU_ASSERT_EQUAL(qat_container_write(tpath("no/such/dir.ckpt"), MAGIC, 1, &s, 1), QAT_ERR_IO);
    CU_ASSERT(has("no/such/dir.ckpt"));
    free(orig);
}

static void test_corrupt_section(void) {
    const char *path = tpath("corrupt.ckpt");
    write_fixture(path);
    long len;
    unsigned char *b = slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    long at = (long)rd32(entry_at(b, 0) + 16) + 123; /* inside "params" (offset < 4 GiB) */
    b[at] ^= 0x20;
    spit(path, b, len);
    CU_ASSERT_EQUAL(read_at(path, 1), QAT_ERR_FORMAT);
    CU_ASSERT(has(path) && has("'params'") && has("checksum"));
    b[at] ^= 0x20;
    /* last byte of the last section */
    b[len - 1] ^= 1;
    spit(path, b, len);
    CU_ASSERT_EQUAL(read_at(path, 1), QAT_ERR_FORMAT);
    CU_ASSERT(has("'opt.state'") && has("checksum"));
    free(b);
}

static void test_corrupt_header(void) {
    const char *path = tpath("hdr.ckpt");
    write_fixture(path);
    long len;
    unsigned char *b = slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    entry_at(b, 2)[0] = 'S'; /* rename "step" without fixing the checksum */
    spit(path, b, len);
    CU_ASSERT_EQUAL(read_at(path, 1), QAT_ERR_FORMAT);
    CU_ASSERT(has(path) && has("header checksum"));
    free(b);
}

static void test_truncated_every_length(void) {
    const char *path = tpath("full.ckpt"), *cut = tpath("cut.ckpt");
    write_fixture(path);
    long len;
    unsigned char *b = slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_FATAL(len > 300);
    int bad = 0;
    for (long n = 0; n < len; n++) {
        spit(cut, b, n);
        if (read_at(cut, 1) != QAT_ERR_FORMAT || !has(cut)) {
            if (!bad++) printf("\ntruncated to %ld of %ld bytes: %s\n", n, len, qat_last_error());
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* one extra byte is also wrong */
    unsigned char *longer = malloc((size_t)len + 1);
    memcpy(longer, b, (size_t)len);
    longer[len] = 0;
    spit(cut, longer, len + 1);
    CU_ASSERT_EQUAL(read_at(cut, 1), QAT_ERR_FORMAT);
    CU_ASSERT(has("after the last section"));
    free(longer);
    free(b);
}

/* Every byte of the file is covered by a checksum, a zero check or a bound, so every single-bit
 * flip must be reported (CRC-32 detects all single-bit errors). */
static void test_every_bit_flip(void) {
    const char *path = tpath("flip.ckpt"), *bent = tpath("bent.ckpt");
    write_fixture(path);
    long len;
    unsigned char *b = slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    int missed = 0;
    for (long i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char)(1u << bit);
            spit(bent, b, len);
            if (read_at(bent, 1) == QAT_OK && !missed++)
                printf("\nflip of byte %ld bit %d not detected\n", i, bit);
            b[i] ^= (unsigned char)(1u << bit);
        }
    CU_ASSERT_EQUAL(missed, 0);
    spit(bent, b, len);
    CU_ASSERT_EQUAL(read_at(bent, 1), QAT_OK); /* and the unflipped copy still reads */
    free(b);
}

static void test_wrong_magic_and_version(void) {
    const char *path = tpath("ver.ckpt");
    qat_section s = {"w", "abc", 3};
    CU_ASSERT_EQUAL_FATAL(qat_container_write(path, MAGIC, 3, &s, 1), QAT_OK);
    qat_container *c;
    CU_ASSERT_EQUAL(qat_container_read(path, "QATINT81", 3, &c), QAT_ERR_FORMAT);
    CU_ASSERT(has(path) && has("QATINT81") && has("QATCKPT1"));
    CU_ASSERT_EQUAL(read_at(path, 2), QAT_ERR_FORMAT);
    CU_ASSERT(has(path) && has("newer"));
    CU_ASSERT_EQUAL(read_at(path, 3), QAT_OK);
    CU_ASSERT_EQUAL(read_at(path, 4), QAT_OK); /* older files stay readable */
    /* a file that is not ours at all, and one too short for a magic */
    spit(path, "hello world, this is text\n", 26);
    CU_ASSERT_EQUAL(read_at(path, 3), QAT_ERR_FORMAT);
    spit(path, "QAT", 3);
    CU_ASSERT_EQUAL(read_at(path, 3), QAT_ERR_FORMAT);
    CU_ASSERT(has("truncated"));
    /* missing file and a directory: I/O errors naming the path */
    CU_ASSERT_EQUAL(read_at(tpath("missing.ckpt"), 1), QAT_ERR_IO);
    CU_ASSERT(has("missing.ckpt"));
    CU_ASSERT_EQUAL(read_at(tmpdir, 1), QAT_ERR_IO);
}

/* Forged headers whose checksum is valid, so the field checks themselves must catch them. */
static void test_forged_headers(void) {
    const char *path = tpath("base.ckpt"), *forged = tpath("forged.ckpt");
    write_fixture(path);
    long len;
    unsigned char *base = slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(base);
    unsigned char *b = malloc((size_t)len);
    /* each edit applied to a fresh copy of the good file */
    for (int k = 0; k < 12; k++) {
        memcpy(b, base, (size_t)len);
        const char *expect = NULL;
        switch (k) {
        case 0: /* duplicate names: "empty" renamed to "params" */
            memset(entry_at(b, 1), 0, 16), memcpy(entry_at(b, 1), "params", 6);
            expect = "duplicate";
            break;
        case 1: /* offset of the last section past the end (aligned) */
            wr64(entry_at(b, 3) + 16, ((uint64_t)len + 64) & ~(uint64_t)63);
            expect = "past the end";
            break;
        case 2: /* a lying huge size */
            wr64(entry_at(b, 3) + 24, UINT64_MAX - 10);
            expect = "past the end";
            break;
        case 3: /* offset + size overflows 64 bits */
            wr64(entry_at(b, 3) + 16, UINT64_MAX & ~(uint64_t)63);
            wr64(entry_at(b, 3) + 24, 128);
            expect = "past the end";
            break;
        case 4: /* unaligned offset */
            wr64(entry_at(b, 0) + 16, rd32(entry_at(b, 0) + 16) + 4);
            expect = "aligned";
            break;
        case 5: /* two sections at the same place */
            wr64(entry_at(b, 2) + 16, rd32(entry_at(b, 0) + 16));
            expect = "overlaps";
            break;
        case 6: /* a section inside the header */
            wr64(entry_at(b, 0) + 16, 0);
            expect = "overlaps";
            break;
        case 7: /* a name without its NUL */
            memset(entry_at(b, 1), 'n', 16);
            expect = "name";
            break;
        case 8: /* garbage after a name's NUL */
            entry_at(b, 1)[10] = 'x';
            expect = "name";
            break;
        case 9: /* far more sections than the file can hold */
            wr32(b + 12, 60000);
            expect = "truncated";
            break;
        case 10: /* more sections than any file may have */
            wr32(b + 12, 0xffffffffu);
            expect = "limit";
            break;
        case 11: /* version 0 */
            wr32(b + 8, 0);
            expect = "version 0";
            break;
        }
        if (k != 9 && k != 10) fix_header_crc(b);
        spit(forged, b, len);
        if (read_at(forged, 1) != QAT_ERR_FORMAT || !has(expect) || !has(forged)) {
            printf("\nforged case %d: expected '%s', got: %s\n", k, expect, qat_last_error());
            CU_FAIL("forged header not rejected as expected");
        }
    }
    /* nonzero padding between the header and the first section */
    memcpy(b, base, (size_t)len);
    size_t hdr_end = 16 + 36 * 4 + 4;
    CU_ASSERT_FATAL(rd32(entry_at(b, 0) + 16) > hdr_end);
    b[hdr_end] = 1;
    spit(forged, b, len);
    CU_ASSERT_EQUAL(read_at(forged, 1), QAT_ERR_FORMAT);
    CU_ASSERT(has("padding"));
    free(b);
    free(base);
}

void register_checkpoint_tests(void) {
    CU_pSuite s = CU_add_suite("checkpoint container", suite_init, suite_clean);
    CU_add_test(s, "write/read round trip", test_roundtrip);
    CU_add_test(s, "write rejects bad sections", test_write_rejects);
    CU_add_test(s, "failed write keeps the old file", test_failed_write_keeps_old);
    CU_add_test(s, "corrupt section names it", test_corrupt_section);
    CU_add_test(s, "corrupt header", test_corrupt_header);
    CU_add_test(s, "every truncation rejected", test_truncated_every_length);
    CU_add_test(s, "every bit flip rejected", test_every_bit_flip);
    CU_add_test(s, "wrong magic and newer version", test_wrong_magic_and_version);
    CU_add_test(s, "forged headers", test_forged_headers);
}
