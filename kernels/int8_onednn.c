/* oneDNN 2.6 int8 primitives computing exactly the arithmetic of kernels/int8.h (see
 * int8_onednn.h for the contract).
 *
 * What oneDNN 2.6 computes for u8 src x s8 weights, s32 bias, per-channel output scales, src/dst
 * zero points and eltwise post-ops (established by probes on a Zen 5, and pinned by
 * tests/test_onednn.c for the implementations oneDNN picks for our layers: brgconv, brgconv_1x1,
 * brdgmm_dw, jit_int8 and brgemm inner product on avx512_core_vnni; jit_uni_int8(_1x1) and
 * gemm_s8u8s32 inner product with ONEDNN_MAX_CPU_ISA=AVX2_VNNI):
 *   acc  = sum (x - zx) * w                     int32 (padded taps contribute 0)
 *   f    = (float)acc + (float)bias             the s32 bias is added in FLOAT
 *   f    = f * scale[c]                         one float multiply
 *   f    = post-ops(f)                          eltwise round / clip, in float
 *   f    = f + (float)zy                        the dst zero point is added BEFORE rounding
 *   y    = cvt_rne(saturate(f, 0, 255))
 * Ours is y = clamp(rne((float)(acc + bias) * mult) + zy, lo, hi). Two differences follow, and
 * how they are closed:
 *   - rne(p + zy) != rne(p) + zy at every tie when zy is odd (p = 0.5, zy = 1: 2 vs 1) and near
 *     ties otherwise (p + zy rounds off low bits of p). An eltwise_round post-op (round half to
 *     even) makes p an integer first, so the zero point add and the final conversion are exact;
 *     the clamp becomes a clip post-op to [lo - zy, hi - zy] (integer bounds commute with
 *     rounding).
 *   - (float)acc + (float)bias rounds once |values| exceed 2^24. create checks, per output
 *     channel, |bias| + 255 * sum|w| <= 2^24: then every partial sum oneDNN can form (raw dot
 *     product, zero-point compensation, bias) is an exactly representable integer and the float
 *     add is exact. Layers beyond that bound are refused (QAT_ERR_ARG), the runtime then uses the
 *     native kernels.
 * Without VNNI oneDNN's u8 x s8 kernels sum pairs of products in s16 with saturation (probed:
 *   640 taps of 255 * 127 gave 10485432 instead of 20726400 with ONEDNN_MAX_CPU_ISA=AVX512_CORE),
 *   so the backend is only offered when oneDNN's effective ISA has VNNI.
 */
#include "int8_onednn.h"
#include <dnnl.h>
#include <dnnl_debug.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_TAG "kernels/int8_onednn.c"

/* Primitives kept per layer, one per batch size (1 and the training/eval batch are typical);
 * the least recently used one is replaced. */
#define DNNL_SLOTS 4
/* Largest integer magnitude up to which every int32 is exact in float. */
#define EXACT_F32_INT (1 << 24)

/* ---- engine ---------------------------------------------------------------------------------- */

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;

static void engine_init(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static int isa_has_vnni(dnnl_cpu_isa_t isa) {
    /* the ISA values are bit sets: each one includes the bits of those it extends */
    return (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
           (isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
}

int qat_i8_dnnl_available(void) {
    pthread_once(&engine_once, engine_init);
    return engine_status == dnnl_success && isa_has_vnni(dnnl_get_effective_cpu_isa());
}

static qat_status check_available(const char *what) {
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: oneDNN CPU engine: %s", what,
                        dnnl_status2str(engine_status));
    if (!isa_has_vnni(dnnl_get_effective_cpu_isa()))
        return qat_fail(QAT_ERR_ARG,
                        FILE_TAG ": %s: oneDNN ISA %#x has no VNNI; its u8 x s8 kernels saturate "
                                 "pair sums in s16, so they are not exact",
                        what, (unsigned)dnnl_get_effective_cpu_isa());
    return QAT_OK;
}

static qat_status dnnl_fail(dnnl_status_t s, const char *what, const char *call, int line) {
    return qat_fail(s == dnnl_out_of_memory ? QAT_ERR_NOMEM : QAT_ERR_ARG,
                    FILE_TAG ":%d: %s: %s: %s", line, what, call, dnnl_status2str(s));
}

/* Jumps to `out` with st set when a oneDNN call fails (needs `st` and `what` in scope). */
#define DNNL_TRY(call)                                                                             \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success) {                                                                  \
            st = dnnl_fail(s_, what, #call, __LINE__);                                             \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* ---- what conv and linear share: weights, per-batch primitives, zero points -------------------- */

typedef struct {
    int n; /* batch size; 0: empty */
    unsigned long last_use;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst; /* data handles set at each run */
    dnnl_memory_t wei;      /* layer->wei_main or owned (own_wei) */
    dnnl_memory_t scratch;  /* the primitive's own scratchpad (user mode) or NULL */
    int own_wei;
} dnnl_slot;

/* What one lane (a thread running its share of a batch, see int8_onednn.h) owns: its primitives
 * and stream. Primitives get a scratchpad of their own (scratchpad mode "user"): with the
 * library's shared scratchpad a primitive must run on the thread that created it, and an
 * OpenMP team does not promise that lane t is the same system thread at every run. */
typedef struct {
    dnnl_stream_t stream;
    dnnl_slot slot[DNNL_SLOTS];
    unsigned long tick;
} dnnl_lane;

/* Builds the primitive descriptor for batch n (conv or inner product). */
typedef qat_status (*pd_builder)(const void *layer, int n, dnnl_primitive_desc_t *pd);

typedef struct {
    const char *what;
    pd_builder build;
    dnnl_memory_desc_t wei_user_md; /* the caller's layout, over wei_user */
    int8_t *wei_user;
    dnnl_memory_t wei_main; /* reordered once for the first primitive's layout (by lane 0) */
    dnnl_memory_t bias;     /* s32 (cout) or NULL */
    int32_t *bias_data;
    dnnl_memory_t zx_mem, zy_mem; /* runtime zero points or NULL */
    int32_t zx, zy;
    dnnl_lane *lane[QAT_I8_DNNL_LANES]; /* made by each lane on its first run */
    int64_t macs; /* multiply-adds per image: whether a batch is small (see one_thread_begin) */
    char impl[64]; /* oneDNN implementation of the batch-1 primitive */
} dnnl_layer;

/* A batch of less than QAT_I8_PAR_MIN_WORK multiply-adds runs on the calling thread, as the
 * native kernels do (kernels/int8.h): oneDNN's primitives fix their thread count when they are
 * created (from omp_get_max_threads()) and open a parallel region per run however small, so
 * nthreads-var is 1 both while the batch's primitive is made and while it runs. nthreads-var
 * is per thread in OpenMP: setting and restoring it touches no other thread. Returns the value
 * to restore (0: nothing changed). */
static int one_thread_begin(const dnnl_layer *L, int n) {
    if (L->macs * n >= QAT_I8_PAR_MIN_WORK || omp_in_parallel()) return 0;
    int saved = omp_get_max_threads();
    if (saved <= 1) return 0;
    omp_set_num_threads(1);
    return saved;
}

static void one_thread_end(int saved) {
    if (saved) omp_set_num_threads(saved);
}

static dnnl_memory_desc_t scalar_s32_md(void) {
    dnnl_memory_desc_t md;
    dnnl_dims_t one = {1};
    dnnl_memory_desc_init_by_tag(&md, 1, one, dnnl_s32, dnnl_a);
    return md;
}

static void slot_clear(dnnl_slot *s) {
    if (s->prim) dnnl_primitive_destroy(s->prim);
    if (s->src) dnnl_memory_destroy(s->src);
    if (s->dst) dnnl_memory_destroy(s->dst);
    if (s->own_wei && s->wei) dnnl_memory_destroy(s->wei);
    if (s->scratch) dnnl_memory_destroy(s->scratch);
    memset(s, 0, sizeof *s);
}

static void lane_free(dnnl_lane *ln) {
    if (!ln) return;
    for (int i = 0; i < DNNL_SLOTS; i++) slot_clear(&ln->slot[i]);
    if (ln->stream) dnnl_stream_destroy(ln->stream);
    free(ln);
}

static void layer_clear(dnnl_layer *L) {
    for (int i = 0; i < QAT_I8_DNNL_LANES; i++) lane_free(L->lane[i]);
    if (L->wei_main) dnnl_memory_destroy(L->wei_main);
    if (L->bias) dnnl_memory_destroy(L->bias);
    if (L->zx_mem) dnnl_memory_destroy(L->zx_mem);
    if (L->zy_mem) dnnl_memory_destroy(L->zy_mem);
    free(L->wei_user);
    free(L->bias_data);
}

/* Weights in the layout `md` wants, reordered from the caller's copy. */
static qat_status reorder_weights(dnnl_layer *L, dnnl_stream_t stream, const dnnl_memory_desc_t *md,
                                  dnnl_memory_t *out) {
    const char *what = L->what;
    qat_status st = QAT_OK;
    dnnl_memory_t user = NULL, wei = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    DNNL_TRY(dnnl_memory_create(&user, &L->wei_user_md, engine, L->wei_user));
    DNNL_TRY(dnnl_memory_create(&wei, md, engine, DNNL_MEMORY_ALLOCATE));
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &L->wei_user_md, engine, md, engine, NULL));
    DNNL_TRY(dnnl_primitive_create(&r, rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, wei}};
    DNNL_TRY(dnnl_primitive_execute(r, stream, 2, args));
    DNNL_TRY(dnnl_stream_wait(stream));
    *out = wei;
    wei = NULL;
out:
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (user) dnnl_memory_destroy(user);
    if (wei) dnnl_memory_destroy(wei);
    return st;
}

/* Fills slot s of lane ln with the primitive for batch n. The weights in the first primitive's
 * layout (wei_main) are made at create, by lane 0 on the creating thread, before any lane runs:
 * lanes only read them. */
static qat_status slot_make(dnnl_layer *L, dnnl_lane *ln, dnnl_slot *s, int n) {
    const char *what = L->what;
    dnnl_primitive_desc_t pd = NULL;
    qat_status st = L->build(L, n, &pd);
    if (st) return st;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (!wmd || !smd || !dmd) {
        st = qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: primitive descriptor without memory descriptors", what);
        goto out;
    }
    if (!L->wei_main) {
        st = reorder_weights(L, ln->stream, wmd, &L->wei_main);
        if (st) goto out;
        const char *impl = "";
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success)
            snprintf(L->impl, sizeof L->impl, "%s", impl);
    }
    const dnnl_memory_desc_t *main_md = NULL;
    DNNL_TRY(dnnl_memory_get_memory_desc(L->wei_main, &main_md));
    if (dnnl_memory_desc_equal(wmd, main_md)) {
        s->wei = L->wei_main;
    } else { /* this batch size wants another weights layout */
        st = reorder_weights(L, ln->stream, wmd, &s->wei);
        if (st) goto out;
        s->own_wei = 1;
    }
    DNNL_TRY(dnnl_memory_create(&s->src, smd, engine, DNNL_MEMORY_NONE));
    DNNL_TRY(dnnl_memory_create(&s->dst, dmd, engine, DNNL_MEMORY_NONE));
    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (pmd && dnnl_memory_desc_get_size(pmd) > 0)
        DNNL_TRY(dnnl_memory_create(&s->scratch, pmd, engine, DNNL_MEMORY_ALLOCATE));
    DNNL_TRY(dnnl_primitive_create(&s->prim, pd));
    s->n = n;
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (st) slot_clear(s);
    return st;
}

/* Lane `lane` of L, made on first use (only that lane's thread touches its pointer). */
static qat_status layer_lane(dnnl_layer *L, int lane, dnnl_lane **out) {
    const char *what = L->what;
    qat_status st = QAT_OK;
    if (lane < 0 || lane >= QAT_I8_DNNL_LANES)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: lane %d outside 0..%d", what, lane,
                        QAT_I8_DNNL_LANES - 1);
    dnnl_lane *ln = NULL; /* a new lane until it is stored */
    if (!L->lane[lane]) {
        if (!(ln = calloc(1, sizeof *ln))) return qat_fail(QAT_ERR_NOMEM, FILE_TAG ": %s: lane", what);
        DNNL_TRY(dnnl_stream_create(&ln->stream, engine, dnnl_stream_default_flags));
        L->lane[lane] = ln;
        ln = NULL;
    }
    *out = L->lane[lane];
out:
    lane_free(ln);
    return st;
}

static qat_status layer_slot(dnnl_layer *L, int lane, int n, dnnl_slot **out) {
    dnnl_lane *ln = NULL;
    qat_status st = layer_lane(L, lane, &ln);
    if (st) return st;
    dnnl_slot *victim = NULL; /* an empty slot, else the least recently used */
    for (int i = 0; i < DNNL_SLOTS; i++) {
        dnnl_slot *s = &ln->slot[i];
        if (s->n == n) {
            s->last_use = ++ln->tick;
            *out = s;
            return QAT_OK;
        }
        if (!victim || (victim->n && (!s->n || s->last_use < victim->last_use))) victim = s;
    }
    slot_clear(victim);
    if ((st = slot_make(L, ln, victim, n))) return st;
    victim->last_use = ++ln->tick;
    *out = victim;
    return QAT_OK;
}

static qat_status layer_run(dnnl_layer *L, void *y, const void *x, int n, int lane) {
    const char *what = L->what;
    qat_status st = QAT_OK;
    dnnl_slot *s;
    const int saved = one_thread_begin(L, n);
    if ((st = layer_slot(L, lane, n, &s))) goto out;
    DNNL_TRY(dnnl_memory_set_data_handle(s->src, (void *)x));
    DNNL_TRY(dnnl_memory_set_data_handle(s->dst, y));
    dnnl_exec_arg_t args[7];
    int na = 0;
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, s->src};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, s->wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->dst};
    if (L->bias) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, L->bias};
    if (L->zx_mem) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, L->zx_mem};
    if (L->zy_mem) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, L->zy_mem};
    if (s->scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->scratch};
    DNNL_TRY(dnnl_primitive_execute(s->prim, L->lane[lane]->stream, na, args));
    DNNL_TRY(dnnl_stream_wait(L->lane[lane]->stream));
out:
    one_thread_end(saved);
    return st;
}

/* s32 bias memory (bias may be NULL: none) and runtime zero-point memories (a zero point of 0 is
 * left out, which lets oneDNN pick kernels without zero-point support). */
static qat_status layer_init(dnnl_layer *L, const int32_t *bias, int nbias, int32_t zx, int32_t zy) {
    const char *what = L->what;
    qat_status st = QAT_OK;
    L->zx = zx;
    L->zy = zy;
    dnnl_memory_desc_t zmd = scalar_s32_md();
    if (zx) DNNL_TRY(dnnl_memory_create(&L->zx_mem, &zmd, engine, &L->zx));
    if (zy) DNNL_TRY(dnnl_memory_create(&L->zy_mem, &zmd, engine, &L->zy));
    if (bias) {
        L->bias_data = malloc((size_t)nbias * sizeof(int32_t));
        if (!L->bias_data) return qat_fail(QAT_ERR_NOMEM, FILE_TAG ": %s: bias copy", what);
        memcpy(L->bias_data, bias, (size_t)nbias * sizeof(int32_t));
        dnnl_memory_desc_t bmd;
        dnnl_dims_t bd = {nbias};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_s32, dnnl_a));
        DNNL_TRY(dnnl_memory_create(&L->bias, &bmd, engine, L->bias_data));
    }
out:
    return st;
}

/* 1 if every integer oneDNN forms for output channel c is exact in float (see the top comment):
 * |bias| + 255 * sum_k |w[k]| <= 2^24. */
static int channel_exact(const int8_t *w, int K, int64_t bias) {
    int64_t s = 0;
    for (int k = 0; k < K; k++) s += w[k] < 0 ? -(int64_t)w[k] : w[k];
    return (bias < 0 ? -bias : bias) + 255 * s <= EXACT_F32_INT;
}

static int64_t colsum(const int8_t *w, int K) {
    int64_t s = 0;
    for (int k = 0; k < K; k++) s += w[k];
    return s;
}

static qat_status check_finite(const float *v, int n, const char *what, const char *name) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: %s[%d] = %g is not finite", what, name, i,
                            (double)v[i]);
    return QAT_OK;
}

/* ---- convolution ------------------------------------------------------------------------------ */

struct qat_i8_dnnl_conv {
    dnnl_layer L; /* first: the builder receives the layer pointer */
    qat_i8_dnnl_conv_desc d; /* pointer fields not used after create */
    int oh, ow;
    int fold_zx; /* zx folded into the bias instead of a src zero point (no padding) */
    float *mult;
};

static qat_status conv_build(const void *layer, int n, dnnl_primitive_desc_t *pd) {
    const qat_i8_dnnl_conv *c = layer;
    const qat_i8_dnnl_conv_desc *d = &c->d;
    const char *what = c->L.what;
    qat_status st = QAT_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    dnnl_dims_t sd = {n, d->cin, d->h, d->w}, dd = {n, d->cout, c->oh, c->ow};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_u8, dnnl_nhwc));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_u8, dnnl_nhwc));
    if (d->groups == 1) {
        dnnl_dims_t wd = {d->cout, d->cin, d->k, d->k};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_s8, dnnl_format_tag_any));
    } else {
        dnnl_dims_t wd = {d->groups, 1, 1, d->k, d->k};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 5, wd, dnnl_s8, dnnl_format_tag_any));
    }
    if (c->L.bias) {
        dnnl_dims_t bd = {d->cout};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_s32, dnnl_a));
    }
    dnnl_convolution_desc_t cd;
    dnnl_dims_t strides = {d->stride, d->stride}, pad = {d->pad, d->pad};
    DNNL_TRY(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                &smd, &wmd, c->L.bias ? &bmd : NULL, &dmd, strides,
                                                pad, pad));
    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, d->cout, 1 << 1, c->mult));
    const int32_t runtime = DNNL_RUNTIME_S32_VAL;
    if (c->L.zx_mem) DNNL_TRY(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &runtime));
    if (c->L.zy_mem) DNNL_TRY(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &runtime));
    DNNL_TRY(dnnl_post_ops_create(&po));
    /* oneDNN adds the dst zero point before its final rounding: round first (see the top) */
    if (d->zy) DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_round, 0.0f, 0.0f));
    if (d->lo > 0 || d->hi < 255)
        DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, (float)(d->lo - d->zy),
                                              (float)(d->hi - d->zy)));
    DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_status_t s = dnnl_primitive_desc_create(pd, &cd, attr, engine, NULL);
    if (s == dnnl_unimplemented)
        st = qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: oneDNN has no implementation for this int8 conv", what);
    else if (s != dnnl_success)
        st = dnnl_fail(s, what, "dnnl_primitive_desc_create", __LINE__);
out:
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

static qat_status conv_check(const qat_i8_dnnl_conv_desc *d, int *oh, int *ow) {
    const char *what = "dnnl_conv_create";
    if (!d->weight || !d->mult) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL weight or mult", what);
    if (d->h < 1 || d->w < 1 || d->cin < 1 || d->cout < 1 || d->k < 1 || d->stride < 1 || d->pad < 0)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: bad geometry %dx%dx%d -> %d, k %d s %d p %d", what,
                        d->h, d->w, d->cin, d->cout, d->k, d->stride, d->pad);
    if ((int64_t)d->k * d->k * d->cin > EXACT_F32_INT || (int64_t)d->h * d->w * d->cin > INT32_MAX / 2)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: layer too large (k %d, %dx%dx%d)", what, d->k, d->h,
                        d->w, d->cin);
    if (d->pad >= d->k)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: padding %d not below kernel %d", what, d->pad, d->k);
    if (!(d->groups == 1 || (d->groups == d->cin && d->groups == d->cout)))
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: groups %d is neither 1 nor cin = cout (%d, %d)",
                        what, d->groups, d->cin, d->cout);
    if (d->h + 2 * d->pad < d->k || d->w + 2 * d->pad < d->k)
        return qat_fail(QAT_ERR_SHAPE, FILE_TAG ": %s: kernel %d larger than padded input %dx%d", what,
                        d->k, d->h + 2 * d->pad, d->w + 2 * d->pad);
    if (d->zx < 0 || d->zx > 255 || d->zy < 0 || d->zy > 255 || d->lo < 0 || d->hi > 255 || d->lo > d->hi)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: zero points %d, %d / clamp [%d, %d] outside u8", what,
                        d->zx, d->zy, d->lo, d->hi);
    *oh = (d->h + 2 * d->pad - d->k) / d->stride + 1;
    *ow = (d->w + 2 * d->pad - d->k) / d->stride + 1;
    return check_finite(d->mult, d->cout, what, "mult");
}

/* The s32 bias given to oneDNN, or NULL if none is needed: bias, minus zx * colsum(w) when the
 * zero point is folded. Refuses channels whose integers would not all be exact in float. */
static qat_status conv_bias(const qat_i8_dnnl_conv_desc *d, int fold_zx, int32_t **out) {
    const int K = d->k * d->k * (d->cin / d->groups);
    *out = NULL;
    if (!d->bias && !(fold_zx && d->zx)) return QAT_OK;
    int32_t *b = malloc((size_t)d->cout * sizeof(int32_t));
    if (!b) return qat_fail(QAT_ERR_NOMEM, FILE_TAG ": dnnl_conv_create: bias");
    for (int c = 0; c < d->cout; c++) {
        const int8_t *wc = d->weight + (size_t)c * K;
        int64_t v = (d->bias ? d->bias[c] : 0) - (fold_zx ? (int64_t)d->zx * colsum(wc, K) : 0);
        b[c] = (int32_t)v; /* |v| <= |bias| + 255 sum|w| <= 2^24 once channel_exact holds */
    }
    *out = b;
    return QAT_OK;
}

qat_status qat_i8_dnnl_conv_create(qat_i8_dnnl_conv **out, const qat_i8_dnnl_conv_desc *d) {
    const char *what = "dnnl_conv_create";
    if (!out || !d) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL argument", what);
    *out = NULL;
    int oh = 0, ow = 0;
    qat_status st = conv_check(d, &oh, &ow);
    if (st) return st;
    const int K = d->k * d->k * (d->cin / d->groups);
    for (int c = 0; c < d->cout; c++)
        if (!channel_exact(d->weight + (size_t)c * K, K, d->bias ? d->bias[c] : 0))
            return qat_fail(QAT_ERR_ARG,
                            FILE_TAG ": %s: channel %d: |bias| + 255 * sum|w| exceeds 2^24; oneDNN adds "
                                     "the bias in float, which would round",
                            what, c);
    if ((st = check_available(what))) return st;

    int32_t *bias = NULL;
    dnnl_slot *slot;
    qat_i8_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) return qat_fail(QAT_ERR_NOMEM, FILE_TAG ": %s: layer", what);
    c->L.what = "dnnl_conv";
    c->L.build = conv_build;
    c->d = *d;
    c->oh = oh;
    c->ow = ow;
    c->fold_zx = d->pad == 0;
    size_t wbytes = (size_t)d->cout * K;
    c->L.wei_user = malloc(wbytes);
    c->mult = malloc((size_t)d->cout * sizeof(float));
    if (!c->L.wei_user || !c->mult) {
        st = qat_fail(QAT_ERR_NOMEM, FILE_TAG ": %s: weights copy", what);
        goto out;
    }
    memcpy(c->L.wei_user, d->weight, wbytes);
    memcpy(c->mult, d->mult, (size_t)d->cout * sizeof(float));
    c->d.weight = NULL;
    c->d.bias = NULL;
    c->d.mult = NULL;
    /* caller's layouts: OHWI for dense, (C, KH, KW) = goihw with o = i = 1 for depthwise */
    if (d->groups == 1) {
        dnnl_dims_t wd = {d->cout, d->cin, d->k, d->k};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&c->L.wei_user_md, 4, wd, dnnl_s8, dnnl_ohwi));
    } else {
        dnnl_dims_t wd = {d->groups, 1, 1, d->k, d->k};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&c->L.wei_user_md, 5, wd, dnnl_s8, dnnl_goihw));
    }
    if ((st = conv_bias(d, c->fold_zx, &bias))) goto out;
    if ((st = layer_init(&c->L, bias, d->cout, c->fold_zx ? 0 : d->zx, d->zy))) goto out;
    /* the batch-1 primitive now: whether oneDNN takes this layer is known at create */
    c->L.macs = (int64_t)oh * ow * d->cout * K;
    int saved = one_thread_begin(&c->L, 1);
    st = layer_slot(&c->L, 0, 1, &slot);
    one_thread_end(saved);
out:
    free(bias);
    if (st) {
        qat_i8_dnnl_conv_free(c);
        return st;
    }
    *out = c;
    return QAT_OK;
}

qat_status qat_i8_dnnl_conv_run_lane(qat_i8_dnnl_conv *c, uint8_t *y, const uint8_t *x, int n, int lane) {
    if (!c || n < 0) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dnnl_conv_run: NULL layer or n = %d", n);
    if (n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dnnl_conv_run: NULL x or y");
    return layer_run(&c->L, y, x, n, lane);
}

qat_status qat_i8_dnnl_conv_run(qat_i8_dnnl_conv *c, uint8_t *y, const uint8_t *x, int n) {
    return qat_i8_dnnl_conv_run_lane(c, y, x, n, 0);
}

const char *qat_i8_dnnl_conv_impl(const qat_i8_dnnl_conv *c) { return c ? c->L.impl : ""; }

void qat_i8_dnnl_conv_free(qat_i8_dnnl_conv *c) {
    if (!c) return;
    layer_clear(&c->L);
    free(c->mult);
    free(c);
}

/* ---- linear with float output --------------------------------------------------------------------
 * Inner product u8 x s8 -> f32 with output scales deq_scale: y = (float)acc * deq_scale, one
 * rounding (acc exact as above, zx folded into an s32 bias since there is no padding). fbias is
 * added here after the primitive, so the product is rounded to float before the add exactly as
 * in qat_i8_gemm_f32, whatever oneDNN would fuse. */

struct qat_i8_dnnl_linear {
    dnnl_layer L;
    int in, out;
    float *deq_scale;
    float *fbias; /* (out) or NULL */
};

static qat_status linear_build(const void *layer, int n, dnnl_primitive_desc_t *pd) {
    const qat_i8_dnnl_linear *l = layer;
    const char *what = l->L.what;
    qat_status st = QAT_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    dnnl_dims_t sd = {n, l->in}, wd = {l->out, l->in}, bd = {l->out}, dd = {n, l->out};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_u8, dnnl_nc));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_s8, dnnl_format_tag_any));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_s32, dnnl_a));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_nc));
    dnnl_inner_product_desc_t ipd;
    DNNL_TRY(dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &smd, &wmd,
                                                  l->L.bias ? &bmd : NULL, &dmd));
    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, l->out, 1 << 1, l->deq_scale));
    dnnl_status_t s = dnnl_primitive_desc_create(pd, &ipd, attr, engine, NULL);
    if (s == dnnl_unimplemented)
        st = qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: oneDNN has no implementation for this int8 linear", what);
    else if (s != dnnl_success)
        st = dnnl_fail(s, what, "dnnl_primitive_desc_create", __LINE__);
out:
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

qat_status qat_i8_dnnl_linear_create(qat_i8_dnnl_linear **out, const qat_i8_dnnl_linear_desc *d) {
    const char *what = "dnnl_linear_create";
    if (!out || !d) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL argument", what);
    *out = NULL;
    if (!d->weight || !d->deq_scale) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL weight or deq_scale", what);
    if (d->in < 1 || d->out < 1 || d->in > EXACT_F32_INT || d->out > EXACT_F32_INT)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: bad sizes in %d out %d", what, d->in, d->out);
    if (d->zx < 0 || d->zx > 255)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: zero point %d outside u8", what, d->zx);
    qat_status st = check_finite(d->deq_scale, d->out, what, "deq_scale");
    if (st) return st;
    for (int o = 0; o < d->out; o++)
        if (!channel_exact(d->weight + (size_t)o * d->in, d->in, 0))
            return qat_fail(QAT_ERR_ARG,
                            FILE_TAG ": %s: output %d: 255 * sum|w| exceeds 2^24; oneDNN's float "
                                     "accumulator conversion would round",
                            what, o);
    if ((st = check_available(what))) return st;

    qat_i8_dnnl_linear *l = calloc(1, sizeof *l);
    int32_t *bias = NULL;
    dnnl_slot *slot;
    dnnl_dims_t wd = {d->out, d->in};
    if (!l) return qat_fail(QAT_ERR_NOMEM, FILE_TAG ": %s: layer", what);
    l->L.what = "dnnl_linear";
    l->L.build = linear_build;
    l->in = d->in;
    l->out = d->out;
    size_t wbytes = (size_t)d->out * d->in;
    l->L.wei_user = malloc(wbytes);
    l->deq_scale = malloc((size_t)d->out * sizeof(float));
    l->fbias = d->fbias ? malloc((size_t)d->out * sizeof(float)) : NULL;
    if (d->zx) bias = malloc((size_t)d->out * sizeof(int32_t));
    if (!l->L.wei_user || !l->deq_scale || (d->fbias && !l->fbias) || (d->zx && !bias)) {
        st = qat_fail(QAT_ERR_NOMEM, FILE_TAG ": %s: weights copy", what);
        goto out;
    }
    memcpy(l->L.wei_user, d->weight, wbytes);
    memcpy(l->deq_scale, d->deq_scale, (size_t)d->out * sizeof(float));
    if (d->fbias) memcpy(l->fbias, d->fbias, (size_t)d->out * sizeof(float));
    for (int o = 0; bias && o < d->out; o++)
        bias[o] = (int32_t)(-(int64_t)d->zx * colsum(d->weight + (size_t)o * d->in, d->in));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&l->L.wei_user_md, 2, wd, dnnl_s8, dnnl_oi));
    if ((st = layer_init(&l->L, bias, d->out, 0, 0))) goto out;
    l->L.macs = (int64_t)d->in * d->out;
    int saved = one_thread_begin(&l->L, 1);
    st = layer_slot(&l->L, 0, 1, &slot);
    one_thread_end(saved);
out:
    free(bias);
    if (st) {
        qat_i8_dnnl_linear_free(l);
        return st;
    }
    *out = l;
    return QAT_OK;
}

qat_status qat_i8_dnnl_linear_run_lane(qat_i8_dnnl_linear *l, float *y, const uint8_t *x, int n,
                                       int lane) {
    if (!l || n < 0) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dnnl_linear_run: NULL layer or n = %d", n);
    if (n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dnnl_linear_run: NULL x or y");
    qat_status st = layer_run(&l->L, y, x, n, lane);
    if (st || !l->fbias) return st;
    for (int m = 0; m < n; m++) {
        float *ym = y + (size_t)m * l->out;
        for (int o = 0; o < l->out; o++) ym[o] = ym[o] + l->fbias[o];
    }
    return QAT_OK;
}

qat_status qat_i8_dnnl_linear_run(qat_i8_dnnl_linear *l, float *y, const uint8_t *x, int n) {
    return qat_i8_dnnl_linear_run_lane(l, y, x, n, 0);
}

const char *qat_i8_dnnl_linear_impl(const qat_i8_dnnl_linear *l) { return l ? l->L.impl : ""; }

void qat_i8_dnnl_linear_free(qat_i8_dnnl_linear *l) {
    if (!l) return;
    layer_clear(&l->L);
    free(l->deq_scale);
    free(l->fbias);
    free(l);
}
