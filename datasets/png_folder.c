/* PNG decoding (libpng) and the ImageFolder layout: root/<class>/<files>, or
 * root/train/<class>/ and root/test/<class>/. The whole dataset is decoded up front (in
 * parallel over files), then converted to one channel count and size. Conventions are in
 * dataset.h. */
#include "images.h"
#include "base.h"
#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- one PNG file ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char msg[256];
} png_mem_reader;

static void read_error_fn(png_structp png, png_const_charp msg) {
    png_mem_reader *r = png_get_error_ptr(png);
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* The library prints nothing; warnings (e.g. a bad CRC in an ancillary chunk, which libpng
 * then skips) do not stop decoding. */
static void read_warning_fn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void mem_read_fn(png_structp png, png_bytep out, png_size_t len) {
    png_mem_reader *r = png_get_io_ptr(png);
    if (len > r->size - r->pos) png_error(png, "file ends early (truncated)");
    memcpy(out, r->data + r->pos, len);
    r->pos += len;
}

static qat_status read_whole_file(const char *path, uint8_t **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return qat_fail(QAT_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    if (fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return qat_fail(QAT_ERR_IO, "%s: read error", path);
    }
    fclose(f);
    *data = buf;
    *size = n;
    return QAT_OK;
}

/* Decodes from memory; on failure returns the libpng message in r->msg (pixels untouched). */
static int decode_png(png_mem_reader *r, int *ph, int *pw, int *pc, uint8_t **pixels) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, read_error_fn,
                                             read_warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(r->msg, sizeof r->msg, "out of memory");
        return -1;
    }
    /* Written after setjmp and read after a longjmp, hence volatile. */
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(raw);
        free(rows);
        return -1;
    }
    png_set_read_fn(png, r, mem_read_fn);
    png_set_user_limits(png, 1u << 15, 1u << 15);
    png_read_info(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png); /* v*255/65535 rounded, not just the high byte */
    png_set_interlace_handling(png);        /* Adam7: libpng assembles the passes */
    png_read_update_info(png, info);
    /* Alpha (including expanded tRNS) is dropped below, whatever channel count libpng gives. */
    int h = (int)png_get_image_height(png, info), w = (int)png_get_image_width(png, info);
    int nch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || nch < 1 || nch > 4 || rowbytes != (size_t)w * nch)
        png_error(png, "unexpected pixel layout after expansion");
    raw = malloc(rowbytes * (size_t)h);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!raw || !rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = raw + rowbytes * (size_t)y;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* checks the rest of the file up to IEND (truncation, CRCs) */
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);

    int c = nch >= 3 ? 3 : 1;
    uint8_t *out = malloc((size_t)h * w * c);
    if (!out) {
        free(raw);
        snprintf(r->msg, sizeof r->msg, "out of memory");
        return -1;
    }
    int64_t npix = (int64_t)h * w;
    for (int64_t i = 0; i < npix; i++)
        for (int k = 0; k < c; k++) out[i * c + k] = raw[i * nch + k];
    free(raw);
    *ph = h;
    *pw = w;
    *pc = c;
    *pixels = out;
    return 0;
}

/* The IHDR's dimensions (a PNG starts with its 8-byte signature and the 13-byte IHDR chunk);
 * 0 when the bytes are not that. */
static int ihdr_size(const uint8_t *d, size_t n, uint32_t *h, uint32_t *w) {
    if (n < 24 || png_sig_cmp(d, 0, 8) || memcmp(d + 12, "IHDR", 4)) return 0;
    *w = (uint32_t)d[16] << 24 | (uint32_t)d[17] << 16 | (uint32_t)d[18] << 8 | d[19];
    *h = (uint32_t)d[20] << 24 | (uint32_t)d[21] << 16 | (uint32_t)d[22] << 8 | d[23];
    return 1;
}

qat_status qat_png_size(const char *path, int *h, int *w) {
    FILE *f = fopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[24];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    uint32_t hh, ww;
    if (!ihdr_size(head, n, &hh, &ww)) return qat_fail(QAT_ERR_FORMAT, "%s: not a PNG file (no PNG signature and IHDR)", path);
    *h = hh > INT32_MAX ? INT32_MAX : (int)hh, *w = ww > INT32_MAX ? INT32_MAX : (int)ww;
    return QAT_OK;
}

qat_status qat_png_read(const char *path, int *h, int *w, int *c, uint8_t **pixels) {
    uint8_t *data = NULL;
    size_t size = 0;
    qat_status s = read_whole_file(path, &data, &size);
    if (s) return s;
    if (size < 8 || png_sig_cmp(data, 0, 8)) {
        free(data);
        return qat_fail(QAT_ERR_FORMAT, "%s: not a PNG file (no PNG signature)", path);
    }
    /* A 1 MB PNG of 32768x32768 was decoded in full (26 s, 2.1 GB) before its size was
     * refused: the header's dimensions are checked first. */
    uint32_t hh, ww;
    if (ihdr_size(data, size, &hh, &ww) && (hh > QAT_PNG_MAX_SIDE || ww > QAT_PNG_MAX_SIDE)) {
        free(data);
        return qat_fail(QAT_ERR_FORMAT, "%s: %ux%u image: larger than %d pixels on a side (no model "
                        "takes more), refused before decoding", path, ww, hh, QAT_PNG_MAX_SIDE);
    }
    png_mem_reader r = {.data = data, .size = size, .pos = 0};
    int bad = decode_png(&r, h, w, c, pixels);
    free(data);
    if (bad) return qat_fail(QAT_ERR_FORMAT, "%s: corrupt PNG (libpng: %s)", path, r.msg);
    return QAT_OK;
}

/* ---- the folder tree --------------------------------------------------------------------- */

typedef struct {
    char **v;
    int n, cap;
} strlist;

static int strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int ncap = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, (size_t)ncap * sizeof *nv);
        if (!nv) return -1;
        l->v = nv;
        l->cap = ncap;
    }
    if (!(l->v[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Sorted names of the entries of dir that are directories (want_dirs) or anything else,
 * skipping names that start with '.'. */
static qat_status list_dir(const char *dir, int want_dirs, strlist *out) {
    DIR *d = opendir(dir);
    if (!d) return qat_fail(QAT_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (is_dir(path) != !!want_dirs) continue;
        if (strlist_push(out, e->d_name)) {
            closedir(d);
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", dir);
        }
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return QAT_OK;
}

/* Appends every file under dir (recursively, sorted at each level) as a full path. The depth
 * bound stops symlink loops. */
static qat_status list_files(const char *dir, strlist *out, int depth) {
    if (depth > 16) return qat_fail(QAT_ERR_IO, "%s: directories nested too deep", dir);
    strlist files = {0}, subs = {0};
    qat_status s = list_dir(dir, 0, &files);
    if (!s) s = list_dir(dir, 1, &subs);
    char path[4096];
    for (int i = 0; !s && i < files.n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files.v[i]);
        if (strlist_push(out, path)) s = qat_fail(QAT_ERR_NOMEM, "%s: out of memory", dir);
    }
    for (int i = 0; !s && i < subs.n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs.v[i]);
        s = list_files(path, out, depth + 1);
    }
    strlist_free(&files);
    strlist_free(&subs);
    return s;
}

typedef struct {
    char *path;
    int label, split; /* split: 0 train, 1 test */
    int h, w, c;
    uint8_t *pix;     /* (h, w, c) after decoding */
} folder_item;

typedef struct {
    folder_item *v;
    int n, cap;
} item_list;

static qat_status add_class_files(const char *class_dir, int label, int split, item_list *items) {
    strlist files = {0};
    qat_status s = list_files(class_dir, &files, 0);
    if (!s && files.n == 0)
        s = qat_fail(QAT_ERR_FORMAT, "%s: empty class folder (no image files)", class_dir);
    for (int i = 0; !s && i < files.n; i++) {
        if (items->n == items->cap) {
            int ncap = items->cap ? 2 * items->cap : 256;
            folder_item *nv = realloc(items->v, (size_t)ncap * sizeof *nv);
            if (!nv) {
                s = qat_fail(QAT_ERR_NOMEM, "%s: out of memory", class_dir);
                break;
            }
            items->v = nv;
            items->cap = ncap;
        }
        /* Take ownership of the path string. */
        items->v[items->n++] = (folder_item){.path = files.v[i], .label = label, .split = split};
        files.v[i] = NULL;
    }
    strlist_free(&files);
    return s;
}

static void items_free(item_list *items) {
    for (int i = 0; i < items->n; i++) {
        free(items->v[i].path);
        free(items->v[i].pix);
    }
    free(items->v);
}

/* Stratified split of a single tree: per class, round(val_split * count) images chosen by a
 * seeded shuffle go to test, but at least one stays in train. Items of a class are contiguous. */
static void split_items(item_list *items, float val_split, uint64_t seed) {
    qat_rng rng;
    qat_rng_seed(&rng, seed);
    int *idx = malloc((size_t)items->n * sizeof *idx);
    QAT_ASSERT(idx);
    for (int start = 0; start < items->n;) {
        int end = start;
        while (end < items->n && items->v[end].label == items->v[start].label) end++;
        int cnt = end - start;
        for (int i = 0; i < cnt; i++) idx[i] = start + i;
        for (int i = cnt - 1; i > 0; i--) {
            int j = (int)qat_rng_below(&rng, (uint32_t)i + 1);
            int t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        int ntest = (int)(val_split * cnt + 0.5f);
        if (ntest > cnt - 1) ntest = cnt - 1;
        for (int i = 0; i < ntest; i++) items->v[idx[i]].split = 1;
        start = end;
    }
    free(idx);
}

/* Decodes every item, in parallel; on failure reports the first failing file in list order. */
static qat_status decode_items(item_list *items) {
    int fail_index = -1;
    qat_status fail_status = QAT_OK;
    char fail_msg[1024] = "";
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < items->n; i++) {
        int skip;
#pragma omp atomic read
        skip = fail_index;
        if (skip >= 0 && skip < i) continue; /* an earlier file already failed */
        folder_item *it = &items->v[i];
        qat_status s = qat_png_read(it->path, &it->h, &it->w, &it->c, &it->pix);
        if (s) {
            /* qat_last_error() is per thread: copy it out before leaving this one. */
#pragma omp critical(qat_png_folder_fail)
            if (fail_index < 0 || i < fail_index) {
                snprintf(fail_msg, sizeof fail_msg, "%s", qat_last_error());
                fail_status = s;
#pragma omp atomic write
                fail_index = i;
            }
        }
    }
    if (fail_index >= 0) return qat_fail(fail_status, "%s", fail_msg);
    return QAT_OK;
}

static qat_status build_split(const char *root, item_list *items, int split, int nclasses,
                              const strlist *classes, int c, int h, int w, qat_dataset **out) {
    int n = 0;
    for (int i = 0; i < items->n; i++) n += items->v[i].split == split;
    char src[600];
    snprintf(src, sizeof src, "%s (%s)", root, split ? "test" : "train");
    qat_dataset *d = qat_dataset_alloc(n, h, w, c, nclasses, src);
    if (!d) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", root);
    for (int k = 0; k < nclasses; k++)
        snprintf(d->class_names[k], sizeof d->class_names[k], "%s", classes->v[k]);
    uint8_t *tmp = NULL;
    size_t tmp_size = 0;
    int j = 0;
    for (int i = 0; i < items->n; i++) {
        folder_item *it = &items->v[i];
        if (it->split != split) continue;
        uint8_t *dst = d->images + (size_t)j * h * w * c;
        const uint8_t *src_pix = it->pix;
        if (it->c != c) {
            size_t need = (size_t)it->h * it->w * c;
            if (need > tmp_size) {
                uint8_t *nt = realloc(tmp, need);
                if (!nt) {
                    free(tmp);
                    qat_dataset_free(d);
                    return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", it->path);
                }
                tmp = nt;
                tmp_size = need;
            }
            qat_image_convert(it->pix, it->c, tmp, c, (int64_t)it->h * it->w);
            src_pix = tmp;
        }
        qat_image_resize(src_pix, it->h, it->w, dst, h, w, c);
        d->labels[j++] = it->label;
        free(it->pix); /* keep peak memory near one copy of the dataset */
        it->pix = NULL;
    }
    free(tmp);
    *out = d;
    return QAT_OK;
}

/* The set's image size: the most common size among the training images (the first such in
 * list order on a tie). The first image used to fix it, so one 3x100 PNG sorted first made the
 * whole set 3x100 and the error then named the model's spec. */
static int cmp_size(const void *a, const void *b) {
    const folder_item *x = *(const folder_item *const *)a, *y = *(const folder_item *const *)b;
    return x->h != y->h ? (x->h > y->h) - (x->h < y->h) : (x->w > y->w) - (x->w < y->w);
}

static void common_size(const item_list *items, const folder_item *first, int *h, int *w) {
    int n = 0;
    const folder_item **v = malloc((size_t)items->n * sizeof *v);
    *h = first->h, *w = first->w;
    if (!v) return;
    for (int i = 0; i < items->n; i++)
        if (items->v[i].split == 0) v[n++] = &items->v[i];
    qsort(v, (size_t)n, sizeof *v, cmp_size);
    int best = 0;
    for (int i = 0, j; i < n; i = j) {
        for (j = i; j < n && !cmp_size(&v[i], &v[j]); j++) {}
        if (j - i > best) best = j - i, *h = v[i]->h, *w = v[i]->w;
    }
    free(v);
}

/* Images of another size are resized to the set's; one whose shape is far from it (aspect
 * ratio off by more than 2x) is more likely a stray file than a photo to squeeze: named. */
static qat_status check_aspect(const item_list *items, int h, int w) {
    for (int i = 0; i < items->n; i++) {
        const folder_item *it = &items->v[i];
        double r = ((double)it->w / it->h) / ((double)w / h);
        if (r > 2.0 || r < 0.5)
            return qat_fail(QAT_ERR_FORMAT, "%s: %dx%d image in a set of %dx%d images (aspect ratio "
                            "%.2f vs %.2f): crop it or remove it", it->path, it->w, it->h, w, h,
                            (double)it->w / it->h, (double)w / h);
    }
    return QAT_OK;
}

qat_status qat_imagefolder_open(const char *root, const qat_data_opts *o, qat_dataset **train,
                                qat_dataset **test) {
    qat_data_opts opts = o ? *o : (qat_data_opts){0};
    float val_split = opts.val_split == 0 ? 0.1f : opts.val_split;
    if (!(val_split > 0 && val_split < 1))
        return qat_fail(QAT_ERR_ARG, "%s: val_split %g must be in (0, 1)", root,
                        (double)opts.val_split);
    char train_dir[4096], test_dir[4096];
    snprintf(train_dir, sizeof train_dir, "%s/train", root);
    snprintf(test_dir, sizeof test_dir, "%s/test", root);
    if (!is_dir(test_dir)) snprintf(test_dir, sizeof test_dir, "%s/val", root);
    int has_train = is_dir(train_dir), has_test = is_dir(test_dir);
    if (has_test && !has_train)
        return qat_fail(QAT_ERR_IO, "%s: has %s/ but no train/ folder", root,
                        strrchr(test_dir, '/') + 1);
    const char *tree = has_train ? train_dir : root; /* the tree that defines the classes */

    strlist classes = {0}, test_classes = {0};
    item_list items = {0};
    qat_status s = list_dir(tree, 1, &classes);
    if (!s && classes.n == 0)
        s = qat_fail(QAT_ERR_FORMAT, "%s: no class folders (expected %s/<class>/*.png)", tree,
                     tree);
    char path[4096 + 256];
    for (int k = 0; !s && k < classes.n; k++) {
        snprintf(path, sizeof path, "%s/%s", tree, classes.v[k]);
        s = add_class_files(path, k, 0, &items);
    }
    if (!s && has_test) {
        s = list_dir(test_dir, 1, &test_classes);
        for (int t = 0; !s && t < test_classes.n; t++) {
            char **hit = bsearch(&test_classes.v[t], classes.v, (size_t)classes.n,
                                 sizeof *classes.v, cmp_str);
            snprintf(path, sizeof path, "%s/%s", test_dir, test_classes.v[t]);
            if (!hit)
                s = qat_fail(QAT_ERR_FORMAT, "%s: class folder not present in %s", path,
                             train_dir);
            else
                s = add_class_files(path, (int)(hit - classes.v), 1, &items);
        }
    } else if (!s) {
        split_items(&items, val_split, opts.seed);
    }
    if (!s) s = decode_items(&items);
    if (!s) {
        /* The most common training size is the set's; any colour image makes the set RGB. */
        int any_color = 0;
        for (int i = 0; i < items.n; i++) any_color |= items.v[i].c == 3;
        int c = opts.channels ? opts.channels : (any_color ? 3 : 1);
        const folder_item *first = NULL;
        for (int i = 0; i < items.n && !first; i++)
            if (items.v[i].split == 0) first = &items.v[i];
        QAT_ASSERT(first); /* every train class folder holds at least one image */
        int h = opts.height, w = opts.width;
        if (!h || !w) common_size(&items, first, &h, &w);
        s = check_aspect(&items, h, w);
        if (s) goto out;
        qat_dataset *tr = NULL, *te = NULL;
        s = build_split(root, &items, 0, classes.n, &classes, c, h, w, &tr);
        if (!s) s = build_split(root, &items, 1, classes.n, &classes, c, h, w, &te);
        if (s) {
            qat_dataset_free(tr);
        } else {
            tr->val_split = te->val_split = has_test ? 0.0f : val_split;
            *train = tr;
            *test = te;
        }
    }
out:
    items_free(&items);
    strlist_free(&classes);
    strlist_free(&test_classes);
    return s;
}
