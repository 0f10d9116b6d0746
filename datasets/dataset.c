/* Opening a dataset by path (format detection), statistics, augmentation defaults and the batch
 * loader. The loader's output is a pure function of (seed, epoch, batch index): the epoch's
 * permutation and every sample's augmentation draw their random numbers from generators
 * seeded by hashing those values, so batches can be asked for in any order, resumed
 * mid-epoch, or prepared ahead in a background thread without changing a single value. */
#include "dataset.h"
#include "base.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- datasets ---------------------------------------------------------------------------- */

static qat_status reshape_dataset(qat_dataset *d, int c, int h, int w) {
    if (d->c == c && d->h == h && d->w == w) return QAT_OK;
    size_t out_img = (size_t)h * w * c, mid_img = (size_t)d->h * d->w * c;
    uint8_t *out = malloc(d->n ? (size_t)d->n * out_img : 1);
    uint8_t *mid = malloc(mid_img);
    if (!out || !mid) {
        free(out);
        free(mid);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", d->source);
    }
    for (int i = 0; i < d->n; i++) {
        const uint8_t *src = d->images + (size_t)i * d->h * d->w * d->c;
        qat_image_convert(src, d->c, mid, c, (int64_t)d->h * d->w);
        qat_image_resize(mid, d->h, d->w, out + (size_t)i * out_img, h, w, c);
    }
    free(mid);
    free(d->images);
    d->images = out;
    d->c = c;
    d->h = h;
    d->w = w;
    return QAT_OK;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists_in(const char *dir, const char *name) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

qat_status qat_dataset_open(const char *path, const qat_data_opts *o, qat_dataset **train,
                            qat_dataset **test) {
    if (!train || !test) return qat_fail(QAT_ERR_ARG, "qat_dataset_open: NULL output");
    *train = *test = NULL;
    if (!path || !*path) return qat_fail(QAT_ERR_ARG, "qat_dataset_open: empty dataset path");
    qat_data_opts opts = o ? *o : (qat_data_opts){0};
    if (opts.channels != 0 && opts.channels != 1 && opts.channels != 3)
        return qat_fail(QAT_ERR_ARG, "%s: channels must be 0 (native), 1 or 3, not %d", path,
                        opts.channels);
    if (opts.height < 0 || opts.width < 0 || opts.height > 16384 || opts.width > 16384)
        return qat_fail(QAT_ERR_ARG, "%s: bad image size %dx%d", path, opts.height, opts.width);

    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') dir[--len] = 0;
    /* Well-known names live where the Debian dataset packages put them, unless a local
     * directory of that name exists; either way the name is the dataset's kind. */
    const char *builtin = !strcmp(dir, "fashion-mnist") ? "fashion-mnist"
                          : !strcmp(dir, "mnist")       ? "mnist"
                                                        : NULL;
    if (!is_dir(dir) && builtin) {
        char sys[4096];
        snprintf(sys, sizeof sys, "/usr/share/datasets/%.64s", dir);
        if (!is_dir(sys))
            return qat_fail(QAT_ERR_IO, "%s: not found (looked for ./%s and %s; `make deps-data` "
                            "installs Fashion-MNIST)", path, dir, sys);
        snprintf(dir, sizeof dir, "%s", sys);
    }
    if (!is_dir(dir)) {
        struct stat st;
        return qat_fail(QAT_ERR_IO, "%s: %s", path,
                        stat(dir, &st) == 0 ? "not a directory (a dataset is a directory)"
                                            : "no such directory");
    }
    char sub[sizeof dir];
    if (snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir) < (int)sizeof sub && is_dir(sub))
        memcpy(dir, sub, sizeof dir);

    qat_dataset *tr = NULL, *te = NULL;
    qat_status s;
    int needs_reshape = 1;
    const char *kind;
    if (exists_in(dir, "train-images-idx3-ubyte") || exists_in(dir, "train-images-idx3-ubyte.gz") ||
        exists_in(dir, "t10k-images-idx3-ubyte") || exists_in(dir, "t10k-images-idx3-ubyte.gz")) {
        s = qat_idx_open(dir, &tr, &te);
        kind = "idx";
    } else if (exists_in(dir, "data_batch_1.bin") || exists_in(dir, "test_batch.bin")) {
        s = qat_cifar_open(dir, &tr, &te);
        kind = "cifar10";
    } else {
        s = qat_imagefolder_open(dir, &opts, &tr, &te);
        kind = "imagefolder";
        needs_reshape = 0; /* it sized and converted every image itself */
    }
    if (s) return s;
    /* The recipe belongs to the built-in name (IDX files opened by it), not to the files. */
    if (builtin && !strcmp(kind, "idx")) kind = builtin;
    snprintf(tr->kind, sizeof tr->kind, "%s", kind);
    snprintf(te->kind, sizeof te->kind, "%s", kind);
    if (needs_reshape) {
        int c = opts.channels ? opts.channels : tr->c;
        int h = opts.height ? opts.height : tr->h, w = opts.width ? opts.width : tr->w;
        if ((s = reshape_dataset(tr, c, h, w)) || (s = reshape_dataset(te, c, h, w))) {
            qat_dataset_free(tr);
            qat_dataset_free(te);
            return s;
        }
    }
    *train = tr;
    *test = te;
    return QAT_OK;
}

void qat_dataset_stats(const qat_dataset *d, float *mean, float *std) {
    /* Per-channel histograms make the sums exact whatever the dataset size. */
    uint64_t (*hist)[256] = calloc((size_t)d->c, sizeof *hist);
    QAT_ASSERT(hist);
    int64_t npix = (int64_t)d->n * d->h * d->w;
    const uint8_t *p = d->images;
    for (int64_t i = 0; i < npix; i++)
        for (int k = 0; k < d->c; k++) hist[k][p[i * d->c + k]]++;
    for (int k = 0; k < d->c; k++) {
        double s = 0, cnt = (double)npix;
        for (int v = 0; v < 256; v++) s += (double)hist[k][v] * (v / 255.0);
        double m = cnt > 0 ? s / cnt : 0, var = 0;
        for (int v = 0; v < 256; v++) {
            double dv = v / 255.0 - m;
            var += (double)hist[k][v] * dv * dv;
        }
        mean[k] = (float)m;
        std[k] = (float)(cnt > 0 ? sqrt(var / cnt) : 0);
    }
    free(hist);
}

void qat_augment_default(const char *kind, int *crop_pad, int *hflip) {
    int fashion = kind && !strcmp(kind, "fashion-mnist");
    *crop_pad = fashion ? 2 : QAT_CROP_PAD_GENERIC;
    *hflip = fashion;
}

/* ---- loader ------------------------------------------------------------------------------ */

/* The permutation of one epoch, cached per thread that builds batches. */
typedef struct {
    int epoch, valid;
    int32_t *perm; /* (n) */
} perm_cache;

struct qat_loader {
    const qat_dataset *d;
    qat_loader_opts o;
    int nbatches;
    float lut[4][256]; /* (pixel/255 - mean) / std per channel and value */
    perm_cache main_perm;

    /* Prefetch: one slot, filled by the worker thread, guarded by mu. */
    int threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int want_valid, want_epoch, want_index;       /* next job asked for */
    int busy, job_epoch, job_index;               /* job in progress */
    int have_valid, have_epoch, have_index, have_count;
    float *slot_x;                                /* (batch, h, w, c) */
    int32_t *slot_labels;                         /* (batch) */
    perm_cache worker_perm;
};

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
    z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return z ^ (z >> 33);
}

/* A generator seeded from (seed, epoch, stream, position): distinct streams for the epoch's
 * shuffle and for each sample's augmentation. */
static void derive_rng(qat_rng *r, uint64_t seed, int epoch, uint64_t stream, uint64_t pos) {
    uint64_t h = mix64(seed ^ 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ ((uint64_t)(uint32_t)epoch + 0x632BE59BD9B4E019ull));
    h = mix64(h ^ (stream * 0x85EBCA77C2B2AE63ull));
    h = mix64(h ^ (pos + 0x27D4EB2F165667C5ull));
    qat_rng_seed(r, h);
}

static const int32_t *epoch_perm(const qat_loader *l, perm_cache *pc, int epoch) {
    if (pc->valid && pc->epoch == epoch) return pc->perm;
    int n = l->d->n;
    for (int i = 0; i < n; i++) pc->perm[i] = i;
    if (l->o.shuffle) {
        qat_rng r;
        derive_rng(&r, l->o.seed, epoch, 1, 0);
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)qat_rng_below(&r, (uint32_t)i + 1);
            int32_t t = pc->perm[i];
            pc->perm[i] = pc->perm[j];
            pc->perm[j] = t;
        }
    }
    pc->epoch = epoch;
    pc->valid = 1;
    return pc->perm;
}

/* Builds batch `index` of `epoch` into x (count, h, w, c) and labels; returns count. */
static int fill_batch(const qat_loader *l, perm_cache *pc, int epoch, int index, float *x,
                      int32_t *labels) {
    const qat_dataset *d = l->d;
    const int h = d->h, w = d->w, c = d->c, pad = l->o.crop_pad;
    const int64_t start = (int64_t)index * l->o.batch;
    int count = (int)(d->n - start < l->o.batch ? d->n - start : l->o.batch);
    const int32_t *perm = epoch_perm(l, pc, epoch);
    const size_t img = (size_t)h * w * c;
    for (int j = 0; j < count; j++) {
        int64_t pos = start + j;
        int32_t id = perm[pos];
        const uint8_t *src = d->images + (size_t)id * img; /* (h, w, c) */
        float *dst = x + (size_t)j * img;                  /* (h, w, c) */
        labels[j] = d->labels[id];
        int flip = 0, dy = 0, dx = 0;
        if (pad > 0 || l->o.hflip) {
            qat_rng r;
            derive_rng(&r, l->o.seed, epoch, 2, (uint64_t)pos);
            /* torchvision order: RandomCrop(padding) then RandomHorizontalFlip. */
            if (pad > 0) {
                dy = (int)qat_rng_below(&r, 2 * (uint32_t)pad + 1) - pad;
                dx = (int)qat_rng_below(&r, 2 * (uint32_t)pad + 1) - pad;
            }
            if (l->o.hflip) flip = (int)qat_rng_below(&r, 2);
        }
        if (!flip && !dy && !dx) {
            for (size_t i = 0; i < img; i += c)
                for (int k = 0; k < c; k++) dst[i + k] = l->lut[k][src[i + k]];
            continue;
        }
        /* out(y, x) = crop(y, flip ? w-1-x : x) = src(y + dy, x' + dx), black outside. */
        for (int y = 0; y < h; y++) {
            int sy = y + dy;
            for (int xo = 0; xo < w; xo++) {
                int sx = (flip ? w - 1 - xo : xo) + dx;
                float *o = dst + ((size_t)y * w + xo) * c;
                if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
                    for (int k = 0; k < c; k++) o[k] = l->lut[k][0];
                } else {
                    const uint8_t *s = src + ((size_t)sy * w + sx) * c;
                    for (int k = 0; k < c; k++) o[k] = l->lut[k][s[k]];
                }
            }
        }
    }
    return count;
}

static void *prefetch_main(void *arg) {
    qat_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->want_valid && !(l->have_valid && l->have_epoch == l->want_epoch &&
                               l->have_index == l->want_index)) {
            l->job_epoch = l->want_epoch;
            l->job_index = l->want_index;
            l->want_valid = 0;
            l->have_valid = 0; /* the slot is being overwritten */
            l->busy = 1;
            pthread_mutex_unlock(&l->mu);
            int cnt = fill_batch(l, &l->worker_perm, l->job_epoch, l->job_index, l->slot_x,
                                 l->slot_labels);
            pthread_mutex_lock(&l->mu);
            l->have_epoch = l->job_epoch;
            l->have_index = l->job_index;
            l->have_count = cnt;
            l->have_valid = 1;
            l->busy = 0;
            pthread_cond_broadcast(&l->cv);
        } else {
            l->want_valid = 0;
            pthread_cond_wait(&l->cv, &l->mu);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

qat_status qat_loader_create(const qat_dataset *d, const qat_loader_opts *o, qat_loader **out) {
    *out = NULL;
    if (!d || !o) return qat_fail(QAT_ERR_ARG, "qat_loader_create: NULL dataset or options");
    if (o->batch <= 0)
        return qat_fail(QAT_ERR_ARG, "%s: loader batch size %d must be positive", d->source,
                        o->batch);
    if (d->c < 1 || d->c > 4)
        return qat_fail(QAT_ERR_ARG, "%s: the loader handles 1 to 4 channels, not %d",
                        d->source, d->c);
    if (o->crop_pad < 0 || o->crop_pad > 4096)
        return qat_fail(QAT_ERR_ARG, "%s: crop padding %d out of range", d->source, o->crop_pad);
    qat_loader *l = calloc(1, sizeof *l);
    if (!l) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", d->source);
    l->d = d;
    l->o = *o;
    l->nbatches = o->drop_last ? d->n / o->batch : (d->n + o->batch - 1) / o->batch;
    for (int k = 0; k < d->c; k++) {
        float sd = o->std[k] != 0 ? o->std[k] : 1.0f;
        if (!isfinite(o->mean[k]) || !isfinite(sd)) {
            free(l);
            return qat_fail(QAT_ERR_ARG, "%s: non-finite normalisation for channel %d",
                            d->source, k);
        }
        for (int v = 0; v < 256; v++) l->lut[k][v] = (v / 255.0f - o->mean[k]) / sd;
    }
    size_t n = d->n ? (size_t)d->n : 1;
    l->main_perm.perm = malloc(n * sizeof(int32_t));
    if (!l->main_perm.perm) goto nomem;
    if (o->prefetch) {
        l->worker_perm.perm = malloc(n * sizeof(int32_t));
        l->slot_x = malloc((size_t)o->batch * d->h * d->w * d->c * sizeof(float));
        l->slot_labels = malloc((size_t)o->batch * sizeof(int32_t));
        if (!l->worker_perm.perm || !l->slot_x || !l->slot_labels) goto nomem;
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        int e = pthread_create(&l->thread, NULL, prefetch_main, l);
        if (e) {
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->cv);
            qat_loader_free(l);
            return qat_fail(QAT_ERR_IO, "%s: cannot start the prefetch thread: %s", d->source,
                            strerror(e));
        }
        l->threaded = 1;
    }
    *out = l;
    return QAT_OK;
nomem:
    qat_loader_free(l);
    return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for the loader", d->source);
}

int qat_loader_num_batches(const qat_loader *l) { return l->nbatches; }

int qat_loader_get(qat_loader *l, int epoch, int index, float *x, int32_t *labels) {
    if (index < 0 || index >= l->nbatches) return 0;
    if (!l->threaded) return fill_batch(l, &l->main_perm, epoch, index, x, labels);

    int count = -1;
    pthread_mutex_lock(&l->mu);
    while (l->busy && l->job_epoch == epoch && l->job_index == index)
        pthread_cond_wait(&l->cv, &l->mu);
    if (l->have_valid && l->have_epoch == epoch && l->have_index == index) {
        /* The worker cannot start another job while we hold the lock, so the slot is stable. */
        count = l->have_count;
        size_t img = (size_t)l->d->h * l->d->w * l->d->c;
        memcpy(x, l->slot_x, (size_t)count * img * sizeof(float));
        memcpy(labels, l->slot_labels, (size_t)count * sizeof(int32_t));
    }
    pthread_mutex_unlock(&l->mu);
    if (count < 0) count = fill_batch(l, &l->main_perm, epoch, index, x, labels);

    /* Ask for the batch that usually comes next: the following one, or the next epoch's first. */
    pthread_mutex_lock(&l->mu);
    l->want_epoch = index + 1 < l->nbatches ? epoch : epoch + 1;
    l->want_index = index + 1 < l->nbatches ? index + 1 : 0;
    l->want_valid = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return count;
}

void qat_loader_free(qat_loader *l) {
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    free(l->main_perm.perm);
    free(l->worker_perm.perm);
    free(l->slot_x);
    free(l->slot_labels);
    free(l);
}
