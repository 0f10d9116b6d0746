/* IDX files (MNIST, Fashion-MNIST), raw or gzip. zlib's gzread reads both, so one reader
 * serves; sizes come from the big-endian header and are checked against what the file holds. */
#include "images.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 2051 /* 0x00000803: unsigned bytes, 3 dims */
#define IDX_MAGIC_LABELS 2049 /* 0x00000801: unsigned bytes, 1 dim */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* gzerror's message without the "path: " prefix zlib puts in front of it. */
static const char *zlib_message(gzFile f, const char *path, int *zerr) {
    const char *msg = gzerror(f, zerr);
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

/* Why a gzread came up short: a zlib error (corrupt / truncated stream) or plain end of data. */
static qat_status short_read(gzFile f, const char *path, const char *what, uint64_t want,
                             uint64_t got) {
    int zerr = Z_OK;
    const char *msg = zlib_message(f, path, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END)
        return qat_fail(QAT_ERR_FORMAT, "%s: corrupt or truncated gzip data (zlib: %s)", path, msg);
    return qat_fail(QAT_ERR_FORMAT, "%s: truncated: the header promises %llu bytes of %s but the "
                    "file holds %llu", path, (unsigned long long)want, what,
                    (unsigned long long)got);
}

/* Reads exactly `want` bytes into a malloc'd buffer. The buffer grows as data arrives, so a
 * corrupt header claiming gigabytes fails as truncated instead of allocating them. */
static qat_status read_body(gzFile f, const char *path, const char *what, uint64_t want,
                            uint8_t **out) {
    size_t cap = want < (1u << 24) ? (size_t)want : (1u << 24), got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %s", path, what);
    while (got < want) {
        if (got == cap) {
            size_t ncap = cap * 2 < want ? cap * 2 : (size_t)want;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %s", path, what);
            }
            buf = nb;
            cap = ncap;
        }
        size_t chunk = cap - got;
        if (chunk > (1u << 30)) chunk = 1u << 30;
        int r = gzread(f, buf + got, (unsigned)chunk);
        if (r <= 0) {
            free(buf);
            return short_read(f, path, what, want, got);
        }
        got += (size_t)r;
    }
    /* Nothing may follow the data: this read also makes zlib check the gzip CRC trailer. */
    unsigned char extra;
    int r = gzread(f, &extra, 1);
    if (r != 0) {
        free(buf);
        if (r > 0)
            return qat_fail(QAT_ERR_FORMAT, "%s: longer than its header says (%llu bytes of %s "
                            "expected)", path, (unsigned long long)want, what);
        return short_read(f, path, what, want, got);
    }
    int zerr = Z_OK;
    const char *msg = zlib_message(f, path, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        free(buf);
        return qat_fail(QAT_ERR_FORMAT, "%s: corrupt gzip data (zlib: %s)", path, msg);
    }
    *out = buf;
    return QAT_OK;
}

/* Opens and reads the magic + `ndims` dimensions. */
static qat_status read_header(const char *path, uint32_t magic_want, int ndims, gzFile *fp,
                              uint32_t *dims) {
    gzFile f = gzopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char hdr[16];
    int want = 4 * (1 + ndims);
    int r = gzread(f, hdr, (unsigned)want);
    if (r != want) {
        qat_status s = r < 0 ? short_read(f, path, "header", (uint64_t)want, 0)
                             : qat_fail(QAT_ERR_FORMAT, "%s: truncated: %d bytes, shorter than "
                                        "the %d-byte IDX header", path, r, want);
        gzclose(f);
        return s;
    }
    uint32_t magic = be32(hdr);
    if (magic != magic_want) {
        gzclose(f);
        return qat_fail(QAT_ERR_FORMAT, "%s: wrong magic %u (0x%08x); an IDX %s file starts "
                        "with %u", path, magic, magic,
                        magic_want == IDX_MAGIC_IMAGES ? "image" : "label", magic_want);
    }
    for (int i = 0; i < ndims; i++) dims[i] = be32(hdr + 4 + 4 * i);
    *fp = f;
    return QAT_OK;
}

qat_status qat_idx_read_images(const char *path, int *n, int *h, int *w, uint8_t **pixels) {
    gzFile f;
    uint32_t d[3];
    qat_status s = read_header(path, IDX_MAGIC_IMAGES, 3, &f, d);
    if (s) return s;
    if (d[0] > (uint32_t)INT32_MAX || d[1] == 0 || d[2] == 0 || d[1] > 65535 || d[2] > 65535) {
        gzclose(f);
        return qat_fail(QAT_ERR_FORMAT, "%s: implausible image dimensions %u x %u x %u", path,
                        d[0], d[1], d[2]);
    }
    uint64_t bytes = (uint64_t)d[0] * d[1] * d[2];
    s = read_body(f, path, "pixels", bytes, pixels);
    gzclose(f);
    if (s) return s;
    *n = (int)d[0];
    *h = (int)d[1];
    *w = (int)d[2];
    return QAT_OK;
}

qat_status qat_idx_read_labels(const char *path, int *n, uint8_t **labels) {
    gzFile f;
    uint32_t d[1];
    qat_status s = read_header(path, IDX_MAGIC_LABELS, 1, &f, d);
    if (s) return s;
    if (d[0] > (uint32_t)INT32_MAX) {
        gzclose(f);
        return qat_fail(QAT_ERR_FORMAT, "%s: implausible label count %u", path, d[0]);
    }
    s = read_body(f, path, "labels", d[0], labels);
    gzclose(f);
    if (s) return s;
    *n = (int)d[0];
    return QAT_OK;
}

/* dir/name, or dir/name.gz when only that exists; fails naming the file that is missing. */
static qat_status find_file(const char *dir, const char *name, char *out, size_t outlen) {
    struct stat st;
    snprintf(out, outlen, "%s/%s", dir, name);
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return QAT_OK;
    snprintf(out, outlen, "%s/%s.gz", dir, name);
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return QAT_OK;
    return qat_fail(QAT_ERR_IO, "%s/%s[.gz]: missing (an IDX dataset needs train-images-idx3-"
                    "ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                    "t10k-labels-idx1-ubyte, raw or .gz)", dir, name);
}

/* Reads one images + labels pair into a dataset (nclasses filled in later). */
static qat_status read_split(const char *dir, const char *img_name, const char *lab_name,
                             qat_dataset **out) {
    char ip[1024], lp[1024];
    qat_status s;
    if ((s = find_file(dir, img_name, ip, sizeof ip))) return s;
    if ((s = find_file(dir, lab_name, lp, sizeof lp))) return s;
    int n, h, w, nl;
    uint8_t *pix = NULL, *lab = NULL;
    if ((s = qat_idx_read_images(ip, &n, &h, &w, &pix))) return s;
    if ((s = qat_idx_read_labels(lp, &nl, &lab))) {
        free(pix);
        return s;
    }
    if (nl != n) {
        free(pix);
        free(lab);
        return qat_fail(QAT_ERR_FORMAT, "%s: %d labels but %s holds %d images", lp, nl, ip, n);
    }
    qat_dataset *d = qat_dataset_alloc(0, h, w, 1, 1, ip);
    if (!d) {
        free(pix);
        free(lab);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", ip);
    }
    free(d->labels);
    d->labels = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!d->labels) {
        free(pix);
        free(lab);
        qat_dataset_free(d);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", lp);
    }
    free(d->images);
    d->images = pix;
    d->n = n;
    for (int i = 0; i < n; i++) d->labels[i] = lab[i];
    free(lab);
    *out = d;
    return QAT_OK;
}

static qat_status set_classes(qat_dataset *d, int nclasses) {
    char (*names)[64] = calloc((size_t)nclasses, sizeof *names);
    if (!names) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", d->source);
    for (int k = 0; k < nclasses; k++) snprintf(names[k], sizeof names[k], "%d", k);
    free(d->class_names);
    d->class_names = names;
    d->nclasses = nclasses;
    return QAT_OK;
}

qat_status qat_idx_open(const char *dir, qat_dataset **train, qat_dataset **test) {
    qat_dataset *tr = NULL, *te = NULL;
    qat_status s = read_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", &tr);
    if (s) return s;
    if ((s = read_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", &te))) {
        qat_dataset_free(tr);
        return s;
    }
    if (tr->h != te->h || tr->w != te->w) {
        s = qat_fail(QAT_ERR_FORMAT, "%s: images are %dx%d but the training images are %dx%d",
                     te->source, te->h, te->w, tr->h, tr->w);
        goto fail;
    }
    if (tr->n == 0) {
        s = qat_fail(QAT_ERR_FORMAT, "%s: no images", tr->source);
        goto fail;
    }
    /* Labels are bytes, so nclasses <= 256; both splits share the training set's count. The
     * classes are 0..K-1, each with training images: a stray label byte of 10..255 used to make
     * up to 256 classes silently, so a label beyond a class without training images is refused,
     * naming its file and image. */
    int maxl = 0, has[256] = {0};
    for (int i = 0; i < tr->n; i++) maxl = tr->labels[i] > maxl ? tr->labels[i] : maxl, has[tr->labels[i]] = 1;
    for (int i = 0; i < te->n; i++) maxl = te->labels[i] > maxl ? te->labels[i] : maxl;
    for (int k = 0; k < maxl; k++) {
        if (has[k]) continue;
        int in_train = 0, at = -1;
        for (int i = 0; i < tr->n && at < 0; i++)
            if (tr->labels[i] > k) in_train = 1, at = i;
        for (int i = 0; i < te->n && at < 0; i++)
            if (te->labels[i] > k) at = i;
        const qat_dataset *d = in_train ? tr : te;
        char lp[1024];
        find_file(dir, in_train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", lp, sizeof lp);
        s = qat_fail(QAT_ERR_FORMAT, "%s: label %d of image %d, but class %d has no training image "
                     "(IDX classes are 0..K-1, each trained): a corrupt label?", lp,
                     d->labels[at], at, k);
        goto fail;
    }
    if ((s = set_classes(tr, maxl + 1)) || (s = set_classes(te, maxl + 1))) goto fail;
    *train = tr;
    *test = te;
    return QAT_OK;
fail:
    qat_dataset_free(tr);
    qat_dataset_free(te);
    return s;
}
