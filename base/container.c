/* The section container behind checkpoints and INT8 model files (layout in container.h).
 *
 * Reading treats the file as hostile: it is read whole into a buffer sized by the real file
 * length (never by a header field), and every header field is checked against that length with
 * overflow-free arithmetic before anything is dereferenced. Kept free of the training code: only
 * qat.h (qat_fail) and zlib. */
#include "container.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HEAD_BYTES 16  /* magic, version, count */
#define ENTRY_BYTES 36 /* name[16], offset, size, crc */
#define CRC_BYTES 4
_Static_assert(HEAD_BYTES == 8 + 4 + 4, "header layout");
_Static_assert(ENTRY_BYTES == QAT_CONTAINER_NAME_MAX + 8 + 8 + 4, "table entry layout");
_Static_assert((QAT_CONTAINER_ALIGN & (QAT_CONTAINER_ALIGN - 1)) == 0, "alignment is a power of 2");

typedef struct {
    char name[QAT_CONTAINER_NAME_MAX];
    uint64_t offset, size;
    uint32_t crc;
} entry;

struct qat_container {
    char *path;
    unsigned char *buf; /* the whole file, QAT_CONTAINER_ALIGN-aligned */
    uint64_t len;
    uint32_t version;
    int nsec;
    entry *secs;
};

/* ---- little-endian fields and checksums ------------------------------------------------ */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* zlib's crc32 takes a 32-bit length; feed large sections in pieces. */
static uint32_t crc_of(const void *data, uint64_t size) {
    const unsigned char *p = data;
    uLong crc = crc32(0L, Z_NULL, 0);
    while (size > 0) {
        uInt piece = size > (1u << 30) ? (1u << 30) : (uInt)size;
        crc = crc32(crc, p, piece);
        p += piece;
        size -= piece;
    }
    return (uint32_t)crc;
}

static uint64_t align_up(uint64_t x) {
    return (x + (QAT_CONTAINER_ALIGN - 1)) & ~(uint64_t)(QAT_CONTAINER_ALIGN - 1);
}

/* A name is 1..15 printable non-space ASCII characters, then NUL, then zeros (the zeros make the
 * table bytes canonical, so the header checksum covers exactly what the writer meant). */
static int name_ok(const char name[QAT_CONTAINER_NAME_MAX], int require_zero_tail) {
    int n = 0;
    while (n < QAT_CONTAINER_NAME_MAX && name[n]) {
        if (name[n] < 0x21 || name[n] > 0x7e) return 0;
        n++;
    }
    if (n == 0 || n == QAT_CONTAINER_NAME_MAX) return 0;
    if (require_zero_tail)
        for (int i = n; i < QAT_CONTAINER_NAME_MAX; i++)
            if (name[i]) return 0;
    return 1;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the index (into names) of a duplicated name, -1 if all distinct, -2 if out of memory.
 * Sorting keeps this O(n log n) for a hostile table of 65536 entries. */
static int find_duplicate(const char *const *names, int n) {
    if (n < 2) return -1;
    const char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return -2;
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name_ptr);
    int dup = -1;
    for (int i = 1; i < n && dup < 0; i++)
        if (!strcmp(sorted[i], sorted[i - 1]))
            for (int j = 0; j < n; j++)
                if (names[j] == sorted[i]) dup = j;
    free(sorted);
    return dup;
}

/* Magic bytes for a message: non-printable bytes shown as '?'. */
static void show_magic(char out[9], const unsigned char *m, size_t n) {
    size_t i = 0;
    for (; i < n && i < 8; i++) out[i] = (m[i] >= 0x20 && m[i] < 0x7f) ? (char)m[i] : '?';
    out[i] = 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

static int write_all(FILE *f, const void *data, uint64_t size) {
    const unsigned char *p = data;
    while (size > 0) {
        size_t piece = size > (1u << 30) ? (1u << 30) : (size_t)size;
        if (fwrite(p, 1, piece, f) != piece) return -1;
        p += piece;
        size -= piece;
    }
    return 0;
}

/* Makes the rename itself durable; failure only weakens crash safety, so it is not an error. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* What lstat says a path is, for the refusal below. */
static const char *kind_of(mode_t m) {
    return S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO"
         : S_ISSOCK(m) ? "a socket" : S_ISDIR(m) ? "a directory" : "not a regular file";
}

qat_status qat_output_target(const char *path, char **target) {
    *target = NULL;
    if (!path || !*path) return qat_fail(QAT_ERR_ARG, "empty output path");
    char *cur = strdup(path);
    if (!cur) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0) {
            if (errno == ENOENT) break; /* a new file (or a dangling link's target) */
            int e = errno;
            free(cur);
            return qat_fail(QAT_ERR_IO, "%s: %s", path, strerror(e));
        }
        if (S_ISREG(st.st_mode)) break;
        if (!S_ISLNK(st.st_mode)) {
            free(cur);
            return qat_fail(QAT_ERR_IO, "%s: %s, not a regular file: refusing to replace it", path,
                            kind_of(st.st_mode));
        }
        char link[4096];
        ssize_t n = hops < 40 ? readlink(cur, link, sizeof link - 1) : -1;
        if (n < 0) {
            int e = hops < 40 ? errno : ELOOP;
            free(cur);
            return qat_fail(QAT_ERR_IO, "%s: %s", path, strerror(e));
        }
        link[n] = 0;
        /* a relative link is relative to the directory holding it */
        const char *slash = strrchr(cur, '/');
        size_t dlen = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
        char *next = malloc(dlen + (size_t)n + 1);
        if (!next) {
            free(cur);
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
        }
        memcpy(next, cur, dlen);
        memcpy(next + dlen, link, (size_t)n + 1);
        free(cur);
        cur = next;
    }
    *target = cur;
    return QAT_OK;
}

/* Creates path.tmp.<pid>.<n> exclusively (mode 0666 less umask, like an ordinary new file). */
static int create_temp(const char *path, char **tmp_out) {
    static unsigned counter;
    size_t cap = strlen(path) + 48;
    char *tmp = malloc(cap);
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        snprintf(tmp, cap, "%s.tmp.%ld.%u", path, (long)getpid(), n);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            *tmp_out = tmp;
            return fd;
        }
        if (errno != EEXIST) break;
    }
    int e = errno;
    free(tmp);
    errno = e;
    return -1;
}

qat_status qat_container_write(const char *path, const char magic[8], uint32_t version,
                               const qat_section *secs, int nsec) {
    if (!path || !*path) return qat_fail(QAT_ERR_ARG, "container: empty output path");
    if (!magic) return qat_fail(QAT_ERR_ARG, "%s: no magic given", path);
    if (version == 0) return qat_fail(QAT_ERR_ARG, "%s: format version must be >= 1", path);
    if (nsec < 0 || nsec > QAT_CONTAINER_MAX_SECTIONS || (nsec > 0 && !secs))
        return qat_fail(QAT_ERR_ARG, "%s: bad section count %d", path, nsec);
    for (int i = 0; i < nsec; i++) {
        if (!name_ok(secs[i].name, 0))
            return qat_fail(QAT_ERR_ARG,
                            "%s: section %d: name must be 1-%d printable characters without spaces",
                            path, i, QAT_CONTAINER_NAME_MAX - 1);
        if (secs[i].size > 0 && !secs[i].data)
            return qat_fail(QAT_ERR_ARG, "%s: section '%s' has %llu bytes but no data", path,
                            secs[i].name, (unsigned long long)secs[i].size);
    }
    const char **names = malloc((size_t)(nsec ? nsec : 1) * sizeof *names);
    const uint64_t head_len = HEAD_BYTES + (uint64_t)ENTRY_BYTES * (uint64_t)nsec + CRC_BYTES;
    unsigned char *head = malloc((size_t)head_len);
    if (!names || !head) {
        free(names);
        free(head);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for a %d-section header", path, nsec);
    }
    for (int i = 0; i < nsec; i++) names[i] = secs[i].name;
    int dup = find_duplicate(names, nsec);
    free(names);
    if (dup != -1) {
        free(head);
        return dup == -2 ? qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path)
                         : qat_fail(QAT_ERR_ARG, "%s: duplicate section name '%s'", path,
                                    secs[dup].name);
    }

    /* Layout: header, then each section at the next aligned offset. */
    memcpy(head, magic, 8);
    put_u32(head + 8, version);
    put_u32(head + 12, (uint32_t)nsec);
    uint64_t pos = head_len;
    for (int i = 0; i < nsec; i++) {
        unsigned char *e = head + HEAD_BYTES + (size_t)ENTRY_BYTES * (size_t)i;
        uint64_t off = align_up(pos);
        if (secs[i].size > UINT64_MAX - off - QAT_CONTAINER_ALIGN) {
            free(head);
            return qat_fail(QAT_ERR_ARG, "%s: section '%s' is too large", path, secs[i].name);
        }
        memset(e, 0, QAT_CONTAINER_NAME_MAX);
        memcpy(e, secs[i].name, strlen(secs[i].name));
        put_u64(e + 16, off);
        put_u64(e + 24, secs[i].size);
        put_u32(e + 32, crc_of(secs[i].data, secs[i].size));
        pos = off + secs[i].size;
    }
    put_u32(head + head_len - CRC_BYTES, crc_of(head, head_len - CRC_BYTES));

    char *target = NULL, *tmp = NULL;
    qat_status tst = qat_output_target(path, &target);
    if (tst) {
        free(head);
        return tst;
    }
    int fd = create_temp(target, &tmp);
    if (fd < 0) {
        int e = errno;
        free(head);
        free(target);
        return qat_fail(QAT_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(e));
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        free(target);
        free(head);
        return qat_fail(QAT_ERR_IO, "%s: %s", path, strerror(e));
    }
    static const unsigned char zeros[QAT_CONTAINER_ALIGN];
    int err = write_all(f, head, head_len);
    pos = head_len;
    for (int i = 0; i < nsec && !err; i++) {
        uint64_t off = get_u64(head + HEAD_BYTES + (size_t)ENTRY_BYTES * (size_t)i + 16);
        err = write_all(f, zeros, off - pos) || write_all(f, secs[i].data, secs[i].size);
        pos = off + secs[i].size;
    }
    free(head);
    int e = errno;
    if (!err && fflush(f) != 0) err = 1, e = errno;
    if (!err && fsync(fileno(f)) != 0) err = 1, e = errno;
    if (fclose(f) != 0 && !err) err = 1, e = errno;
    if (err) {
        unlink(tmp);
        free(tmp);
        free(target);
        return qat_fail(QAT_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, target) != 0) {
        e = errno;
        unlink(tmp);
        free(tmp);
        free(target);
        return qat_fail(QAT_ERR_IO, "%s: cannot replace the file: %s", path, strerror(e));
    }
    free(tmp);
    sync_parent_dir(target);
    free(target);
    return QAT_OK;
}

qat_status qat_file_write_atomic(const char *path, const void *data, uint64_t size) {
    char *target = NULL, *tmp = NULL;
    qat_status tst = qat_output_target(path, &target);
    if (tst) return tst;
    int fd = create_temp(target, &tmp);
    if (fd < 0) {
        int e = errno;
        free(target);
        return qat_fail(QAT_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                        strerror(e));
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        free(target);
        return qat_fail(QAT_ERR_IO, "%s: %s", path, strerror(e));
    }
    int err = write_all(f, data, size), e = errno;
    if (!err && fflush(f) != 0) err = 1, e = errno;
    if (!err && fsync(fileno(f)) != 0) err = 1, e = errno;
    if (fclose(f) != 0 && !err) err = 1, e = errno;
    if (!err && rename(tmp, target) != 0) err = 2, e = errno;
    if (err) {
        unlink(tmp);
        free(tmp);
        free(target);
        return qat_fail(QAT_ERR_IO, err == 2 ? "%s: cannot replace the file: %s" : "%s: write failed: %s",
                        path, strerror(e));
    }
    free(tmp);
    sync_parent_dir(target);
    free(target);
    return QAT_OK;
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Checks buf[0, len) and fills c->version, c->nsec, c->secs. */
static qat_status parse(qat_container *c, const char magic[8], uint32_t max_version) {
    const char *path = c->path;
    const unsigned char *buf = c->buf;
    const uint64_t len = c->len;
    char got[9], want[9];
    show_magic(want, (const unsigned char *)magic, 8);
    if (memcmp(buf, magic, len < 8 ? (size_t)len : 8) != 0) {
        show_magic(got, buf, len < 8 ? (size_t)len : 8);
        return qat_fail(QAT_ERR_FORMAT, "%s: not a '%s' file (starts with '%s')", path, want, got);
    }
    if (len < HEAD_BYTES + CRC_BYTES)
        return qat_fail(QAT_ERR_FORMAT, "%s: truncated (%llu bytes, shorter than a header)", path,
                        (unsigned long long)len);
    const uint32_t version = get_u32(buf + 8), count = get_u32(buf + 12);
    if (version == 0)
        return qat_fail(QAT_ERR_FORMAT, "%s: format version 0 is invalid (file corrupt)", path);
    if (version > max_version)
        return qat_fail(QAT_ERR_FORMAT,
                        "%s: written by a newer qat (format version %u, this build reads up to %u)",
                        path, version, max_version);
    if (count > QAT_CONTAINER_MAX_SECTIONS)
        return qat_fail(QAT_ERR_FORMAT, "%s: %u sections, more than the limit %d (file corrupt)",
                        path, count, QAT_CONTAINER_MAX_SECTIONS);
    const uint64_t head_len = HEAD_BYTES + (uint64_t)ENTRY_BYTES * count + CRC_BYTES;
    if (head_len > len)
        return qat_fail(QAT_ERR_FORMAT,
                        "%s: truncated (the %u-section header needs %llu bytes, file has %llu)",
                        path, count, (unsigned long long)head_len, (unsigned long long)len);
    if (crc_of(buf, head_len - CRC_BYTES) != get_u32(buf + head_len - CRC_BYTES))
        return qat_fail(QAT_ERR_FORMAT, "%s: header checksum mismatch (file corrupt)", path);

    entry *secs = calloc(count ? count : 1, sizeof *secs);
    const char **names = malloc((size_t)(count ? count : 1) * sizeof *names);
    if (!secs || !names) {
        free(secs);
        free(names);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %u sections", path, count);
    }
    qat_status st = QAT_OK;
    uint64_t pos = head_len; /* end of what has been accounted for so far */
    for (uint32_t i = 0; i < count && st == QAT_OK; i++) {
        const unsigned char *e = buf + HEAD_BYTES + (size_t)ENTRY_BYTES * i;
        entry *s = &secs[i];
        memcpy(s->name, e, QAT_CONTAINER_NAME_MAX);
        s->offset = get_u64(e + 16);
        s->size = get_u64(e + 24);
        s->crc = get_u32(e + 32);
        names[i] = s->name;
        if (!name_ok(s->name, 1)) {
            st = qat_fail(QAT_ERR_FORMAT, "%s: section %u has a malformed name (file corrupt)",
                          path, i);
        } else if (s->offset % QAT_CONTAINER_ALIGN) {
            st = qat_fail(QAT_ERR_FORMAT,
                          "%s: section '%s' offset %llu is not %d-byte aligned (file corrupt)",
                          path, s->name, (unsigned long long)s->offset, QAT_CONTAINER_ALIGN);
        } else if (s->offset < pos) {
            st = qat_fail(QAT_ERR_FORMAT,
                          "%s: section '%s' at offset %llu overlaps the header or the previous "
                          "section (file corrupt)",
                          path, s->name, (unsigned long long)s->offset);
        } else if (s->offset > len || s->size > len - s->offset) {
            st = qat_fail(QAT_ERR_FORMAT,
                          "%s: section '%s' (%llu bytes at offset %llu) extends past the end of "
                          "the %llu-byte file (truncated or corrupt)",
                          path, s->name, (unsigned long long)s->size,
                          (unsigned long long)s->offset, (unsigned long long)len);
        } else {
            for (uint64_t k = pos; k < s->offset; k++)
                if (buf[k]) {
                    st = qat_fail(QAT_ERR_FORMAT,
                                  "%s: nonzero padding before section '%s' (file corrupt)", path,
                                  s->name);
                    break;
                }
            pos = s->offset + s->size;
        }
    }
    if (st == QAT_OK && pos != len)
        st = qat_fail(QAT_ERR_FORMAT, "%s: %llu unexpected byte(s) after the last section "
                      "(file corrupt)", path, (unsigned long long)(len - pos));
    if (st == QAT_OK) {
        int dup = find_duplicate(names, (int)count);
        if (dup == -2)
            st = qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
        else if (dup >= 0)
            st = qat_fail(QAT_ERR_FORMAT, "%s: duplicate section '%s' (file corrupt)", path,
                          secs[dup].name);
    }
    for (uint32_t i = 0; i < count && st == QAT_OK; i++)
        if (crc_of(buf + secs[i].offset, secs[i].size) != secs[i].crc)
            st = qat_fail(QAT_ERR_FORMAT, "%s: section '%s' checksum mismatch (file corrupt)",
                          path, secs[i].name);
    free(names);
    if (st != QAT_OK) {
        free(secs);
        return st;
    }
    c->version = version;
    c->nsec = (int)count;
    c->secs = secs;
    return QAT_OK;
}

/* Reads the whole regular file at c->path into c->buf. */
static qat_status slurp(qat_container *c) {
    const char *path = c->path;
    FILE *f = fopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return qat_fail(QAT_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return qat_fail(QAT_ERR_IO, "%s: not a regular file", path);
    }
    const uint64_t len = (uint64_t)st.st_size;
    if (len > SIZE_MAX - QAT_CONTAINER_ALIGN) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: file too large (%llu bytes)", path,
                        (unsigned long long)len);
    }
    void *buf = NULL;
    if (posix_memalign(&buf, QAT_CONTAINER_ALIGN, len ? (size_t)len : 1)) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %llu bytes", path,
                        (unsigned long long)len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    int read_error = ferror(f);
    fclose(f);
    if (got != len) {
        free(buf);
        return read_error ? qat_fail(QAT_ERR_IO, "%s: read error", path)
                          : qat_fail(QAT_ERR_IO, "%s: file shrank while being read", path);
    }
    c->buf = buf;
    c->len = len;
    return QAT_OK;
}

qat_status qat_container_read(const char *path, const char magic[8], uint32_t max_version,
                              qat_container **out) {
    *out = NULL;
    if (!path || !magic) return qat_fail(QAT_ERR_ARG, "container: no path or magic given");
    qat_container *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    qat_status st = slurp(c);
    if (st == QAT_OK) st = parse(c, magic, max_version);
    if (st != QAT_OK) {
        qat_container_free(c);
        return st;
    }
    *out = c;
    return QAT_OK;
}

qat_status qat_container_read_memory(const void *buf, size_t size, const char *name,
                                     const char magic[8], uint32_t max_version,
                                     qat_container **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!magic || (!buf && size))
        return qat_fail(QAT_ERR_ARG, "%s: no buffer or magic given", name);
    if (size > SIZE_MAX - QAT_CONTAINER_ALIGN)
        return qat_fail(QAT_ERR_NOMEM, "%s: buffer too large (%zu bytes)", name, size);
    qat_container *c = calloc(1, sizeof *c);
    void *copy = NULL;
    if (!c || !(c->path = strdup(name)) ||
        posix_memalign(&copy, QAT_CONTAINER_ALIGN, size ? size : 1)) {
        if (c) free(c->path);
        free(c);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %zu bytes", name, size);
    }
    /* A private aligned copy: section data keeps the alignment promise of qat_container_find
     * and the caller's buffer may go away. */
    if (size) memcpy(copy, buf, size);
    c->buf = copy;
    c->len = size;
    qat_status st = parse(c, magic, max_version);
    if (st != QAT_OK) {
        qat_container_free(c);
        return st;
    }
    *out = c;
    return QAT_OK;
}

uint32_t qat_container_version(const qat_container *c) { return c->version; }
int qat_container_count(const qat_container *c) { return c->nsec; }
const char *qat_container_path(const qat_container *c) { return c->path; }

const char *qat_container_name(const qat_container *c, int i) {
    return i >= 0 && i < c->nsec ? c->secs[i].name : NULL;
}

const void *qat_container_find(const qat_container *c, const char *name, uint64_t *size) {
    for (int i = 0; i < c->nsec; i++)
        if (!strcmp(c->secs[i].name, name)) {
            if (size) *size = c->secs[i].size;
            return c->buf + c->secs[i].offset;
        }
    if (size) *size = 0;
    return NULL;
}

qat_status qat_container_get(const qat_container *c, const char *name, uint64_t expect,
                             const void **data, uint64_t *size) {
    uint64_t got = 0;
    const void *p = qat_container_find(c, name, &got);
    *data = NULL;
    if (size) *size = 0;
    if (!p) return qat_fail(QAT_ERR_FORMAT, "%s: missing section '%s'", c->path, name);
    if (expect && got != expect)
        return qat_fail(QAT_ERR_MISMATCH, "%s: section '%s' has %llu bytes, expected %llu",
                        c->path, name, (unsigned long long)got, (unsigned long long)expect);
    *data = p;
    if (size) *size = got;
    return QAT_OK;
}

void qat_container_free(qat_container *c) {
    if (!c) return;
    free(c->path);
    free(c->buf);
    free(c->secs);
    free(c);
}
