/* The INT8 runtime: executes a qat_q8_model (runtime/q8.h) on the kernels of kernels/int8.h or,
 * per conv/linear layer, on oneDNN (kernels/int8_onednn.h). What each layer kind does at load
 * and per batch is its row in qat_rt_kinds[] (runtime/rt_kinds.c); this file plans the buffers,
 * runs the layers in order, picks the backends and answers the queries of qat_rt.h.
 *
 * Load packs every weight once and plans the activation buffers: each value (the quantized
 * input, each layer's output) gets an offset in one arena, and its memory is reused by other
 * values once its last reader has run (see plan_offsets). Offsets are planned per image
 * and scaled by the batch size (every value's size is linear in it, so disjoint per-image
 * intervals stay disjoint), which lets any batch size run on one plan; a batch larger than the
 * arena only grows the arena. The logits go straight into the caller's array.
 *
 * Threads: a batch of several images is split between the threads ("lanes"), and each lane runs
 * its images through the whole network, one parallel region per batch: the kernels inside run
 * on one thread each (qat_kernel_threads) and oneDNN layers on the lane's own primitives. Split
 * per layer instead, every layer ended in a join that waited for the slowest thread: 64 of them
 * per MobileNetV2 forward, and under load each one waited for a thread the system had put off.
 * Images are independent and every kernel's bytes do not depend on how many images it is given,
 * so the logits do not depend on the thread count. Batch 1 (and tiny batches) keep the per-layer
 * split inside the kernels, which those open only for large layers. */
#include "rt_internal.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Alignment of every value's per-image offset and size (cache lines; SIMD loads never split). */
#define RT_ALIGN 64
#define AUTO_REPS 5

struct qat_rt {
    int in_h, in_w, in_c, nclasses;
    float inv_in_scale;
    int32_t in_zp, in_qmin, in_qmax;
    float mean[4], std[4];
    uint8_t lut[4][256];          /* pixel -> quantized input code, per channel */
    qat_rt_backend backend;
    int nlayers;
    qat_rt_node *layers;
    /* buffer plan: value v (-1..nlayers-1) at arena + off[v + 1] * n */
    size_t *off;
    size_t peak_per_img, total_per_img;
    int planned_n;
    uint8_t *arena;
    size_t arena_size;
    void *scratch;                /* lanes x lane_scratch bytes (lane_scratch 64-byte aligned) */
    size_t scratch_size, lane_scratch;
    size_t arena_imgs;            /* images the arena's regions hold for the largest batch run */
    int sized_lanes, sized_cap;   /* the split (split_of) the arena and scratch were last sized for */
    size_t in_img_bytes;          /* the quantized input per image */
    int64_t macs_per_img;
    char (*class_names)[QAT_Q8_CLASS_NAME_MAX]; /* NULL: the model has none */
};

static const char *const backend_names[QAT_RT_BACKEND_COUNT] = {"auto", "native", "onednn",
                                                                 "ref"};

void qat_rt_options_default(qat_rt_options *o) {
    memset(o, 0, sizeof *o);
    o->backend = QAT_RT_BACKEND_AUTO;
    o->batch = 1;
}

qat_status qat_rt_backend_parse(const char *s, qat_rt_backend *out) {
    for (int i = 0; s && i < QAT_RT_BACKEND_COUNT; i++)
        if (!strcmp(s, backend_names[i])) {
            *out = (qat_rt_backend)i;
            return QAT_OK;
        }
    return qat_fail(QAT_ERR_ARG, "runtime: unknown backend '%s' (auto, native, onednn, ref)",
                    s ? s : "(null)");
}

const char *qat_rt_backend_name(qat_rt_backend b) {
    return (unsigned)b < QAT_RT_BACKEND_COUNT ? backend_names[b] : "unknown";
}

const char *qat_rt_last_error(void) { return qat_last_error(); }

static size_t align_up(size_t v) { return (v + RT_ALIGN - 1) / RT_ALIGN * RT_ALIGN; }

static void *aligned_alloc_zero(size_t n) {
    void *p = aligned_alloc(RT_ALIGN, align_up(n ? n : 1));
    if (p) memset(p, 0, align_up(n ? n : 1));
    return p;
}

/* ---- per-layer preparation ----------------------------------------------------------------- */

/* What every kind shares; then the kind's prepare (runtime/rt_kinds.c). */
static qat_status prepare_layer(qat_rt_node *l, const qat_q8_layer *L) {
    const qat_q8_kind_desc *k = &qat_q8_kinds[L->kind];
    l->kind = L->kind;
    snprintf(l->name, sizeof l->name, "%s", L->name);
    l->input = L->input;
    l->skip = k->second_input ? L->skip : -2;
    l->in_h = L->in_h, l->in_w = L->in_w, l->in_c = L->in_c;
    l->out_h = L->out_h, l->out_w = L->out_w, l->out_c = L->out_c;
    l->out_bytes = k->float_output ? 0
                   : align_up((size_t)L->out_h * L->out_w * L->out_c * (k->float_value ? sizeof(float) : 1));
    l->macs = qat_q8_layer_macs(L);
    return qat_rt_kinds[L->kind].prepare(l, L);
}

/* ---- buffer plan -----------------------------------------------------------------------------
 * Offline greedy by size (as TFLite's arena planner): values are placed largest first, each at
 * the lowest offset where it overlaps no already placed value whose lifetime meets its own.
 * A value lives from the layer that writes it to its last reader, inclusive: a layer's output
 * and its inputs are alive together, so outputs never alias inputs. */

typedef struct {
    size_t size;
    int birth, death; /* layer indices; the model input is born at -1 */
} value_span;

typedef struct {
    size_t size;
    int value;
} size_key;

static int cmp_size_desc(const void *a, const void *b) {
    const size_key *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->value - y->value; /* ties in model order: a deterministic plan */
}

typedef struct {
    size_t off, end;
} interval;

static int cmp_interval(const void *a, const void *b) {
    const interval *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

/* Lowest offset of a block of `size` bytes between the (conflicting) blocks in busy. */
static size_t first_fit(interval *busy, int nbusy, size_t size) {
    qsort(busy, (size_t)nbusy, sizeof *busy, cmp_interval);
    size_t at = 0;
    for (int i = 0; i < nbusy; i++) {
        if (busy[i].off >= at + size) break;
        if (busy[i].end > at) at = busy[i].end;
    }
    return at;
}

static qat_status plan_offsets(qat_rt *rt) {
    int nv = rt->nlayers + 1; /* value v at index v + 1 */
    value_span *span = malloc(sizeof(value_span) * (size_t)nv);
    size_key *order = malloc(sizeof(size_key) * (size_t)nv);
    int *placed = malloc(sizeof(int) * (size_t)nv);
    interval *busy = malloc(sizeof(interval) * (size_t)nv);
    rt->off = calloc((size_t)nv, sizeof(size_t));
    if (!span || !order || !placed || !busy || !rt->off) {
        free(span), free(order), free(placed), free(busy);
        return qat_fail(QAT_ERR_NOMEM, "runtime: out of memory planning buffers");
    }
    span[0] = (value_span){align_up((size_t)rt->in_h * rt->in_w * rt->in_c), -1, -1};
    for (int i = 0; i < rt->nlayers; i++) span[i + 1] = (value_span){rt->layers[i].out_bytes, i, i};
    for (int i = 0; i < rt->nlayers; i++) {
        const qat_rt_node *l = &rt->layers[i];
        span[l->input + 1].death = i;
        if (l->skip >= -1) span[l->skip + 1].death = i;
    }
    rt->peak_per_img = rt->total_per_img = 0;
    for (int v = 0; v < nv; v++) order[v] = (size_key){span[v].size, v}, rt->total_per_img += span[v].size;
    qsort(order, (size_t)nv, sizeof *order, cmp_size_desc);
    for (int k = 0; k < nv; k++) {
        const value_span *s = &span[order[k].value];
        placed[k] = order[k].value;
        if (!s->size) continue; /* the logits go to the caller's array */
        int nbusy = 0;
        for (int j = 0; j < k; j++) {
            const value_span *o = &span[placed[j]];
            if (o->size && o->birth <= s->death && s->birth <= o->death)
                busy[nbusy++] = (interval){rt->off[placed[j]], rt->off[placed[j]] + o->size};
        }
        size_t at = first_fit(busy, nbusy, s->size);
        rt->off[order[k].value] = at;
        if (at + s->size > rt->peak_per_img) rt->peak_per_img = at + s->size;
    }
    free(span), free(order), free(placed), free(busy);
    return QAT_OK;
}

static size_t scratch_need(const qat_rt *rt, int n) {
    size_t need = 0;
    for (int i = 0; i < rt->nlayers; i++) {
        const qat_rt_node *l = &rt->layers[i];
        size_t s = qat_rt_kinds[l->kind].scratch ? qat_rt_kinds[l->kind].scratch(l, n) : 0;
        if (s > need) need = s;
    }
    return need;
}

/* Lanes (threads, each running its share of the images through the whole network) for a batch
 * of n: one for batch 1, for a batch whose work is below the kernels' own threshold for a
 * second thread, or when already inside a parallel region (the caller's threads are the lanes). */
int64_t qat_rt_lane_min_work = QAT_I8_PAR_MIN_WORK;

static int lanes_for(const qat_rt *rt, int n) {
    int t = qat_kernel_threads();
    if (t > n) t = n;
    if (t > QAT_I8_DNNL_LANES) t = QAT_I8_DNNL_LANES;
    if (t < 2 || rt->macs_per_img * n < qat_rt_lane_min_work) return 1;
    return t;
}

/* How a batch of n runs: `lanes` threads take `parts` parts of at most `cap` images, each lane
 * running a part through the whole network in its own arena region of cap images. A part's
 * activations stay within qat_rt_part_bytes: MobileNetV2-1.0 at batch 256 on one thread (30 MiB
 * of activations) ran 20-25% slower per image than at batch 64 (7.5 MiB) on the AMD Zen 4 host
 * (32 MiB L3). A constant, not the L3 size the system reports: under KVM that is wrong (320 MB
 * on that host). */
size_t qat_rt_part_bytes = (size_t)8 << 20;

typedef struct {
    int lanes, parts, cap;
} batch_split;

static batch_split split_of(const qat_rt *rt, int n) {
    batch_split b = {lanes_for(rt, n), 1, n};
    size_t fit = qat_rt_part_bytes / rt->peak_per_img;
    int per_part = fit < 1 ? 1 : fit > (size_t)n ? n : (int)fit;
    int rounds = (n + b.lanes * per_part - 1) / (b.lanes * per_part); /* parts per lane */
    b.parts = b.lanes * rounds;
    if (b.parts > n) b.parts = n;
    b.cap = (n + b.parts - 1) / b.parts;
    return b;
}

/* Scratch for `lanes` lanes, each running parts of up to cap images: each lane's share, 64-byte
 * aligned. Grows only; the thread count may change between runs (qat_set_threads). */
static qat_status ensure_scratch(qat_rt *rt, int n, int lanes, int cap) {
    size_t per = align_up(scratch_need(rt, cap));
    if (per > SIZE_MAX / 2 / (size_t)lanes) return qat_fail(QAT_ERR_ARG, "runtime: batch %d too large", n);
    if (per * (size_t)lanes <= rt->scratch_size && per <= rt->lane_scratch) return QAT_OK;
    size_t need = per * (size_t)lanes;
    if (need < rt->scratch_size) need = rt->scratch_size;
    void *s = aligned_alloc_zero(need);
    if (!s) return qat_fail(QAT_ERR_NOMEM, "runtime: cannot allocate %zu bytes of scratch for batch %d", need, n);
    free(rt->scratch);
    rt->scratch = s, rt->scratch_size = need;
    rt->lane_scratch = per;
    return QAT_OK;
}

/* Makes the arena and scratch big enough for batch n (they only grow). With lanes, each part of
 * the batch runs in a region of its own laid out by the same plan for the largest part: the
 * lanes do not run in step, so one lane must not write where the plan reuses memory another
 * lane still reads. */
static qat_status ensure_batch(qat_rt *rt, int n) {
    const batch_split b = split_of(rt, n);
    if (b.lanes == rt->sized_lanes && b.cap == rt->sized_cap) {
        if (n > rt->planned_n) rt->planned_n = n;
        return QAT_OK;
    }
    const size_t imgs = (size_t)b.lanes * (size_t)b.cap;
    if (imgs > SIZE_MAX / 2 / rt->peak_per_img) return qat_fail(QAT_ERR_ARG, "runtime: batch %d too large", n);
    if (imgs * rt->peak_per_img > rt->arena_size) {
        size_t need = rt->peak_per_img * imgs;
        uint8_t *a = aligned_alloc_zero(need);
        if (!a)
            return qat_fail(QAT_ERR_NOMEM, "runtime: cannot allocate %zu bytes of activations for batch %d",
                            need, n);
        free(rt->arena);
        rt->arena = a, rt->arena_size = need;
    }
    if (imgs > rt->arena_imgs) rt->arena_imgs = imgs;
    qat_status st = ensure_scratch(rt, n, b.lanes, b.cap);
    if (st) return st;
    rt->sized_lanes = b.lanes, rt->sized_cap = b.cap;
    if (n > rt->planned_n) rt->planned_n = n;
    return QAT_OK;
}

/* ---- execution ------------------------------------------------------------------------------- */

/* Where the model input comes from: floats (qat_rt_run) or raw pixels (qat_rt_run_u8); neither
 * when only timing layers. */
typedef struct {
    const float *x;
    const uint8_t *px;
} rt_input;

/* A run of images [a, a + cnt) of the batch through some layers: in a region of the arena laid
 * out for `cap` images (value v at base + off[v + 1] * cap), on lane `lane` (its scratch share
 * and oneDNN primitives). */
typedef struct {
    int a, cnt, cap, lane;
    uint8_t *base;
    void *scratch;
    size_t scratch_size;
} rt_part;

static uint8_t *value_ptr(const qat_rt *rt, const rt_part *p, int v) {
    return p->base + rt->off[v + 1] * (size_t)p->cap;
}

/* The part's images, quantized into value -1 (the loader's normalisation and the input
 * quantizer for pixels, by table). */
static void quantize_input(const qat_rt *rt, const rt_part *p, const rt_input *in, int threads) {
    uint8_t *q = value_ptr(rt, p, -1);
    const size_t per = rt->in_img_bytes;
    const int64_t cnt = (int64_t)p->cnt * (int64_t)per;
    if (in->x) {
        const float *x = in->x + (size_t)p->a * per;
        const float inv = rt->inv_in_scale;
#pragma omp parallel for num_threads(threads) if (threads > 1 && cnt > (1 << 16)) schedule(static)
        for (int64_t i = 0; i < cnt; i++)
            q[i] = (uint8_t)qat_quantize(x[i], inv, rt->in_zp, rt->in_qmin, rt->in_qmax);
    } else {
        const uint8_t *px = in->px + (size_t)p->a * per;
        const int c = rt->in_c;
        for (int64_t i = 0; i < cnt; i += c)
            for (int k = 0; k < c; k++) q[i + k] = rt->lut[k][px[i + k]];
    }
}

static qat_status run_layer(qat_rt *rt, qat_rt_node *l, const rt_part *p, float *logits) {
    const uint8_t *x = value_ptr(rt, p, l->input);
    const uint8_t *x2 = l->skip >= -1 ? value_ptr(rt, p, l->skip) : NULL;
    uint8_t *y = l->out_bytes ? value_ptr(rt, p, (int)(l - rt->layers)) : NULL;
    float *lg = l->out_bytes || !logits ? logits : logits + (size_t)p->a * l->out_c;
    if (l->use_dnnl)
        return l->dlin ? qat_i8_dnnl_linear_run_lane(l->dlin, lg, x, p->cnt, p->lane)
                       : qat_i8_dnnl_conv_run_lane(l->dconv, y, x, p->cnt, p->lane);
    return qat_rt_kinds[l->kind].run(l, p->cnt, x, x2, y, lg, p->scratch, p->scratch_size);
}

/* Layers [first, last) on part p (the input quantized first when `in` is given). With `timed`,
 * each layer's time goes to last_ms. */
static qat_status run_part(qat_rt *rt, int first, int last, const rt_part *p, const rt_input *in,
                           int timed, float *logits) {
    if (in) quantize_input(rt, p, in, qat_kernel_threads());
    qat_status st = QAT_OK;
    for (int i = first; i < last && !st; i++) {
        qat_rt_node *l = &rt->layers[i];
        double t0 = omp_get_wtime();
        st = run_layer(rt, l, p, logits);
        if (timed) l->last_ms = (omp_get_wtime() - t0) * 1e3;
        if (st) st = qat_fail(st, "runtime: layer %d '%s': %s", i, l->name, qat_last_error());
    }
    return st;
}

/* Part c of the batch of n cut in `parts`: images [a, a + cnt). */
static void part_images(rt_part *p, int n, int parts, int c) {
    p->a = (int)((int64_t)n * c / parts);
    p->cnt = (int)((int64_t)n * (c + 1) / parts) - p->a;
}

/* Layers [first, last) on the batch of n as split_of says: one part (the kernels may split each
 * layer between threads), parts one after the other on this thread, or parts taken by the lanes
 * as they become free (a thread that starts late finds its part taken), each lane in its own
 * region of the arena. Lane-sized parts where they fit qat_rt_part_bytes: more, smaller ones
 * measured no better on MobileNetV2-1.0 at batch 64 (the kernels lose efficiency on fewer
 * images). last_ms: the time of part 0, about what each lane spent on the layer per part. */
static qat_status run_span(qat_rt *rt, int first, int last, int n, const rt_input *in, float *logits) {
    /* The reference backend forces the scalar kernels for this run only (process-wide). */
    qat_i8_path prev = rt->backend == QAT_RT_BACKEND_REF ? qat_i8_set_path(QAT_I8_REF) : QAT_I8_AUTO;
    const batch_split b = split_of(rt, n);
    qat_status st = QAT_OK;
    if (b.lanes == 1) {
        rt_part p = {.cap = b.cap, .lane = 0, .base = rt->arena,
                     .scratch = rt->scratch, .scratch_size = rt->scratch_size};
        for (int c = 0; c < b.parts && !st; c++) {
            part_images(&p, n, b.parts, c);
            st = run_part(rt, first, last, &p, in, c == 0, logits);
        }
    } else {
        qat_status lst[QAT_I8_DNNL_LANES] = {0};
        char msg[QAT_I8_DNNL_LANES][256];
#pragma omp parallel num_threads(b.lanes)
        {
            const int t = omp_get_thread_num();
            /* oneDNN sizes a primitive's threads by nthreads-var when it is made: one per lane
             * (nthreads-var is per thread in OpenMP; restored below) */
            const int saved = omp_get_max_threads();
            omp_set_num_threads(1);
            rt_part p = {.cap = b.cap, .lane = t,
                         .base = rt->arena + (size_t)t * b.cap * rt->peak_per_img,
                         .scratch = (uint8_t *)rt->scratch + (size_t)t * rt->lane_scratch,
                         .scratch_size = rt->lane_scratch};
#pragma omp for schedule(dynamic, 1)
            for (int c = 0; c < b.parts; c++) {
                if (lst[t]) continue;
                part_images(&p, n, b.parts, c);
                lst[t] = run_part(rt, first, last, &p, in, c == 0, logits);
                if (lst[t]) snprintf(msg[t], sizeof msg[t], "%s", qat_last_error());
            }
            omp_set_num_threads(saved);
        }
        for (int t = 0; t < b.lanes && !st; t++)
            if (lst[t]) st = qat_fail(lst[t], "%s", msg[t]);
    }
    if (rt->backend == QAT_RT_BACKEND_REF) qat_i8_set_path(prev);
    return st;
}

static qat_status run_batch(qat_rt *rt, const rt_input *in, int n, float *logits) {
    if (!rt || !(in->x || in->px) || !logits) return qat_fail(QAT_ERR_ARG, "qat_rt_run: NULL argument");
    if (n <= 0) return qat_fail(QAT_ERR_ARG, "qat_rt_run: batch size %d (must be >= 1)", n);
    qat_status st = ensure_batch(rt, n);
    return st ? st : run_span(rt, 0, rt->nlayers, n, in, logits);
}

qat_status qat_rt_run(qat_rt *rt, const float *x, int n, float *logits) {
    rt_input in = {.x = x};
    return run_batch(rt, &in, n, logits);
}

qat_status qat_rt_run_u8(qat_rt *rt, const uint8_t *pixels, int n, float *logits) {
    rt_input in = {.px = pixels};
    return run_batch(rt, &in, n, logits);
}

/* ---- backend choice -------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median time (ms) of the layer on the planned batch with the given backend. The arena's
 * contents are whatever is there: integer kernels take the same time on any data. */
static qat_status time_layer(qat_rt *rt, qat_rt_node *l, int use_dnnl, double *ms) {
    int n = rt->planned_n;
    float *logits = NULL;
    if (!l->out_bytes && !(logits = malloc(sizeof(float) * (size_t)n * l->out_c)))
        return qat_fail(QAT_ERR_NOMEM, "out of memory");
    l->use_dnnl = use_dnnl;
    double t[AUTO_REPS];
    const int i = (int)(l - rt->layers);
    qat_status st = run_span(rt, i, i + 1, n, NULL, logits); /* warm-up: first-touch, JIT, caches */
    for (int r = 0; r < AUTO_REPS && !st; r++) {
        double t0 = omp_get_wtime();
        st = run_span(rt, i, i + 1, n, NULL, logits);
        t[r] = omp_get_wtime() - t0;
    }
    free(logits);
    if (st) return st;
    qsort(t, AUTO_REPS, sizeof t[0], cmp_double);
    *ms = t[AUTO_REPS / 2] * 1e3;
    return QAT_OK;
}

static qat_status choose_backends(qat_rt *rt) {
    for (int i = 0; i < rt->nlayers; i++) {
        qat_rt_node *l = &rt->layers[i];
        int has_dnnl = l->dconv || l->dlin;
        if (rt->backend != QAT_RT_BACKEND_AUTO || !has_dnnl) {
            l->use_dnnl = has_dnnl && rt->backend == QAT_RT_BACKEND_ONEDNN;
            continue;
        }
        double native_ms, dnnl_ms;
        qat_status st = time_layer(rt, l, 0, &native_ms);
        if (!st) st = time_layer(rt, l, 1, &dnnl_ms);
        if (st) return qat_fail(st, "runtime: timing layer '%s': %s", l->name, qat_last_error());
        l->use_dnnl = dnnl_ms < native_ms;
    }
    return QAT_OK;
}

/* ---- load / free ----------------------------------------------------------------------------- */

static void build_input_lut(qat_rt *rt) {
    for (int k = 0; k < rt->in_c; k++) {
        /* the loader's normalisation (datasets/dataset.c), value by value */
        float sd = rt->std[k] != 0 ? rt->std[k] : 1.0f;
        for (int v = 0; v < 256; v++)
            rt->lut[k][v] = (uint8_t)qat_quantize((v / 255.0f - rt->mean[k]) / sd,
                                                  rt->inv_in_scale, rt->in_zp, rt->in_qmin,
                                                  rt->in_qmax);
    }
}

qat_status qat_rt_from_model(const qat_q8_model *m, const qat_rt_options *opt, qat_rt **out) {
    if (!out) return qat_fail(QAT_ERR_ARG, "qat_rt_from_model: NULL output");
    *out = NULL;
    qat_rt_options o;
    if (opt)
        o = *opt;
    else
        qat_rt_options_default(&o);
    if ((unsigned)o.backend >= QAT_RT_BACKEND_COUNT)
        return qat_fail(QAT_ERR_ARG, "runtime: unknown backend %d", (int)o.backend);
    if (o.batch <= 0) o.batch = 1;
    /* every invariant the executor relies on (shapes chain, values produced before use,
     * accumulator bounds, LINEAR last) */
    qat_status st = qat_q8_validate(m, "model");
    if (st) return st;
    if (o.threads > 0) qat_set_threads(o.threads);
    qat_rt *rt = calloc(1, sizeof *rt);
    if (!rt || !(rt->layers = calloc((size_t)m->nlayers, sizeof(qat_rt_node)))) {
        free(rt);
        return qat_fail(QAT_ERR_NOMEM, "runtime: out of memory");
    }
    rt->nlayers = m->nlayers;
    rt->in_h = m->in_h, rt->in_w = m->in_w, rt->in_c = m->in_c, rt->nclasses = m->nclasses;
    rt->inv_in_scale = 1.0f / m->in_scale; /* the float qat_quantize expects, computed once */
    rt->in_zp = m->in_zp, rt->in_qmin = m->in_qmin, rt->in_qmax = m->in_qmax;
    memcpy(rt->mean, m->mean, sizeof rt->mean);
    memcpy(rt->std, m->std, sizeof rt->std);
    rt->backend = o.backend;
    if (m->class_names) {
        if (!(rt->class_names = malloc((size_t)m->nclasses * sizeof *rt->class_names))) {
            qat_rt_free(rt);
            return qat_fail(QAT_ERR_NOMEM, "runtime: out of memory");
        }
        memcpy(rt->class_names, m->class_names, (size_t)m->nclasses * sizeof *rt->class_names);
    }
    build_input_lut(rt);
    rt->in_img_bytes = (size_t)rt->in_h * rt->in_w * rt->in_c;
    for (int i = 0; i < m->nlayers && !st; i++) {
        st = prepare_layer(&rt->layers[i], &m->layers[i]);
        if (st) st = qat_fail(st, "model: layer %d '%s': %s", i, m->layers[i].name, qat_last_error());
        else rt->macs_per_img += rt->layers[i].macs;
        if (!st && (o.backend == QAT_RT_BACKEND_AUTO || o.backend == QAT_RT_BACKEND_ONEDNN) &&
            qat_rt_kinds[m->layers[i].kind].prepare_onednn)
            qat_rt_kinds[m->layers[i].kind].prepare_onednn(&rt->layers[i], &m->layers[i]);
    }
    if (!st) st = plan_offsets(rt);
    if (!st) st = ensure_batch(rt, o.batch);
    if (!st) st = choose_backends(rt);
    if (st) {
        qat_rt_free(rt);
        return st;
    }
    *out = rt;
    return QAT_OK;
}

qat_status qat_rt_load(const char *path, const qat_rt_options *opt, qat_rt **out) {
    if (out) *out = NULL;
    if (!path || !out) return qat_fail(QAT_ERR_ARG, "qat_rt_load: NULL argument");
    qat_q8_model *m;
    qat_status st = qat_q8_load(path, &m);
    if (st) return st;
    st = qat_rt_from_model(m, opt, out);
    if (st) st = qat_fail(st, "%s: %s", path, qat_last_error());
    qat_q8_free(m);
    return st;
}

void qat_rt_free(qat_rt *rt) {
    if (!rt) return;
    for (int i = 0; rt->layers && i < rt->nlayers; i++) {
        qat_rt_node *l = &rt->layers[i];
        free(l->pack);
        free(l->mult);
        free(l->fbias);
        if (l->dconv) qat_i8_dnnl_conv_free(l->dconv);
        if (l->dlin) qat_i8_dnnl_linear_free(l->dlin);
    }
    free(rt->layers);
    free(rt->class_names);
    free(rt->off);
    free(rt->arena);
    free(rt->scratch);
    free(rt);
}

/* ---- queries --------------------------------------------------------------------------------- */

void qat_rt_input_shape(const qat_rt *rt, int *h, int *w, int *c) {
    if (h) *h = rt->in_h;
    if (w) *w = rt->in_w;
    if (c) *c = rt->in_c;
}

int qat_rt_nclasses(const qat_rt *rt) { return rt->nclasses; }

const char *qat_rt_class_name(const qat_rt *rt, int k) {
    return rt && rt->class_names && k >= 0 && k < rt->nclasses ? rt->class_names[k] : NULL;
}

void qat_rt_input_norm(const qat_rt *rt, float *mean, float *std) {
    for (int k = 0; k < rt->in_c; k++) {
        if (mean) mean[k] = rt->mean[k];
        if (std) std[k] = rt->std[k];
    }
}

size_t qat_rt_peak_activation_bytes(const qat_rt *rt) { return rt->peak_per_img * rt->arena_imgs; }
size_t qat_rt_total_activation_bytes(const qat_rt *rt) { return rt->total_per_img * (size_t)rt->planned_n; }
size_t qat_rt_scratch_bytes(const qat_rt *rt) { return rt->scratch_size; }
int qat_rt_planned_batch(const qat_rt *rt) { return rt->planned_n; }
int qat_rt_num_layers(const qat_rt *rt) { return rt->nlayers; }

qat_status qat_rt_layer(const qat_rt *rt, int i, qat_rt_layer_info *out) {
    if (!rt || !out || i < 0 || i >= rt->nlayers)
        return qat_fail(QAT_ERR_ARG, "qat_rt_layer: index %d out of range", i);
    const qat_rt_node *l = &rt->layers[i];
    out->name = l->name;
    out->kind = l->kind_text;
    out->backend = l->use_dnnl ? "onednn" : rt->backend == QAT_RT_BACKEND_REF ? "ref" : "native";
    out->macs = l->macs;
    out->last_ms = l->last_ms;
    out->out_h = l->out_h, out->out_w = l->out_w, out->out_c = l->out_c;
    return QAT_OK;
}

double qat_rt_vnni_peak_gmacs(int threads) {
    if (!qat_cpu_has_avx512_vnni()) return 0;
    if (threads <= 0) threads = qat_get_threads();
    /* The best of short trials on one thread, times the thread count: on a shared machine a
     * trial (or a second thread) may lose its core, and the best one shows what a core
     * retires when it has it. Cores are taken to be alike. */
    double best = 0;
    for (int t = 0; t < 10; t++) {
        double r = qat_i8_vnni512_probe(0.01);
        if (r > best) best = r;
    }
    return best * threads * 1e-9;
}

int qat_rt_vnni_peak_probes(int threads, int n, double *gmacs) {
    if (!qat_cpu_has_avx512_vnni() || n <= 0) return 0;
    if (threads <= 0) threads = qat_get_threads();
    for (int i = 0; i < n; i++) gmacs[i] = qat_i8_vnni512_probe(0.01) * threads * 1e-9;
    return n;
}
