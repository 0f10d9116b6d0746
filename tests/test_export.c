/* The .q8 INT8 model file (runtime/q8_file.c, runtime/q8_model.c): bit-exact round trip, every validation rule with
 * a message naming the layer, damaged files, and a deterministic fuzz smoke test whose
 * mutations get their CRCs recomputed so they reach the parser and validator behind them. */
#define _GNU_SOURCE
#include "test_util.h"
#include "container.h"
#include "q8.h"
#include "qat_rt.h"
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}
static int suite_init(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qat_q8_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : 1;
}
static int suite_clean(void) { return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len) {
    long n;
    unsigned char *b = test_slurp(path, &n);
    *len = n < 0 ? 0 : (size_t)n;
    return b;
}

#define spit test_spit

static int has(const char *s) {
    if (strstr(qat_last_error(), s)) return 1;
    printf("\n  expected '%s' in: %s\n", s, qat_last_error());
    return 0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static float bits_f(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* ---- a small valid model: dense 3x3 conv, depthwise 3x3 s2, 1x1 conv, add, avgpool, linear -- */

static void *fill_s8(int64_t n, int lim) {
    int8_t *w = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) w[i] = (int8_t)((int)(xorshift() % (2 * lim + 1)) - lim);
    return w;
}
static int32_t *fill_s32(int n, int lim) {
    int32_t *b = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) b[i] = (int32_t)(xorshift() % (2 * (uint64_t)lim + 1)) - lim;
    return b;
}
static float *fill_pos(int n, float base) {
    float *v = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) v[i] = base * (1.0f + (float)(xorshift() % 1000) / 997.0f);
    return v;
}

static void conv(qat_q8_layer *L, const char *name, int input, int h, int w, int cin, int cout,
                 int k, int stride, int pad, int groups, float sx, int zx, float sy, int zy) {
    snprintf(L->name, sizeof L->name, "%s", name);
    L->kind = QAT_Q8_CONV;
    L->input = input, L->skip = -1;
    L->in_h = h, L->in_w = w, L->in_c = cin;
    L->out_h = (h + 2 * pad - k) / stride + 1, L->out_w = (w + 2 * pad - k) / stride + 1;
    L->out_c = cout;
    L->k = k, L->stride = stride, L->pad = pad, L->groups = groups;
    L->wbits = 8;
    const int per = k * k * (groups == 1 ? cin : 1);
    L->weight = fill_s8((int64_t)cout * per, 127);
    L->bias = fill_s32(cout, 5000);
    L->mult = fill_pos(cout, 1e-3f);
    L->wscale = fill_pos(cout, 1e-2f);
    L->sx = sx, L->zx = zx, L->sy = sy, L->zy = zy;
    L->lo = zy, L->hi = 255;
    L->act = QAT_Q8_ACT_RELU;
}

static qat_q8_model *make_model(void) {
    qat_q8_model *m = calloc(1, sizeof *m);
    m->in_h = 8, m->in_w = 8, m->in_c = 3, m->nclasses = 10;
    m->in_scale = 1.0f / 64, m->in_zp = 128, m->in_qmin = 0, m->in_qmax = 255;
    const float mean[4] = {0.5f, 0.25f, -0.125f, 0}, std[4] = {0.3f, 0.2f, 0.1f, 0};
    memcpy(m->mean, mean, sizeof mean);
    memcpy(m->std, std, sizeof std);
    snprintf(m->qconfig, sizeof m->qconfig, "x86");
    snprintf(m->arch, sizeof m->arch, "tiny-test");
    m->nlayers = 6;
    m->layers = calloc(6, sizeof *m->layers);
    qat_q8_layer *L = m->layers;
    conv(&L[0], "features.0.conv", -1, 8, 8, 3, 8, 3, 1, 1, 1, m->in_scale, 128, 0.05f, 0);
    L[0].hi = 120, L[0].act = QAT_Q8_ACT_RELU6;
    L[0].pool_mult = bits_f(0x7fc12345); /* unused by a conv: must still round-trip bit-exact */
    conv(&L[1], "features.1.dw", 0, 8, 8, 8, 8, 3, 2, 1, 8, 0.05f, 0, 0.04f, 3);
    conv(&L[2], "features.1.pw", 1, 4, 4, 8, 8, 1, 1, 0, 1, 0.04f, 3, 0.06f, 100);
    L[2].lo = 0, L[2].act = QAT_Q8_ACT_NONE;
    L[2].sb = -0.0f;
    qat_q8_layer *A = &L[3];
    snprintf(A->name, sizeof A->name, "features.1.add");
    A->kind = QAT_Q8_ADD, A->input = 2, A->skip = 1;
    A->in_h = A->out_h = 4, A->in_w = A->out_w = 4, A->in_c = A->out_c = 8;
    A->sx = 0.06f, A->zx = 100, A->sb = 0.04f, A->zb = 3, A->sy = 0.08f, A->zy = 90;
    A->lo = 0, A->hi = 255;
    qat_q8_layer *P = &L[4];
    snprintf(P->name, sizeof P->name, "pool");
    P->kind = QAT_Q8_AVGPOOL, P->input = 3, P->skip = -1;
    P->in_h = 4, P->in_w = 4, P->in_c = 8, P->out_h = 1, P->out_w = 1, P->out_c = 8;
    P->sx = 0.08f, P->zx = 90, P->sy = 0.05f, P->zy = 80, P->lo = 0, P->hi = 255;
    P->pool_mult = 0.08f / (16.0f * 0.05f);
    qat_q8_layer *C = &L[5];
    snprintf(C->name, sizeof C->name, "classifier");
    C->kind = QAT_Q8_LINEAR, C->input = 4, C->skip = -1;
    C->in_h = C->in_w = C->out_h = C->out_w = 1, C->in_c = 8, C->out_c = 10;
    C->wbits = 8;
    C->weight = fill_s8(80, 127);
    C->mult = fill_pos(10, 1e-3f);
    C->wscale = fill_pos(10, 1e-2f);
    C->fbias = fill_pos(10, 0.1f);
    C->fbias[3] = -0.0f, C->fbias[4] = bits_f(1); /* sign of zero and a subnormal survive */
    C->sx = 0.05f, C->zx = 80;
    C->sy = bits_f(0xffffffff); /* unused by linear */
    return m;
}

#define SAME(f) (memcmp(&a->f, &b->f, sizeof a->f) == 0)

static int arrays_equal(const void *x, const void *y, size_t bytes) {
    if (!x || !y) return x == y;
    return memcmp(x, y, bytes) == 0;
}

/* Bit-exact equality of two models, field by field (padding bytes ignored). */
static int models_equal(const qat_q8_model *a, const qat_q8_model *b) {
    if (!(SAME(in_h) && SAME(in_w) && SAME(in_c) && SAME(nclasses) && SAME(in_scale) &&
          SAME(in_zp) && SAME(in_qmin) && SAME(in_qmax) && SAME(mean) && SAME(std) &&
          SAME(qconfig) && SAME(arch) && SAME(nlayers)))
        return 0;
    for (int i = 0; i < a->nlayers; i++) {
        const qat_q8_layer *x = &a->layers[i], *y = &b->layers[i];
#define SAMEL(f) (memcmp(&x->f, &y->f, sizeof x->f) == 0)
        if (!(SAMEL(kind) && strcmp(x->name, y->name) == 0 && SAMEL(input) && SAMEL(skip) &&
              SAMEL(in_h) && SAMEL(in_w) && SAMEL(in_c) && SAMEL(out_h) && SAMEL(out_w) &&
              SAMEL(out_c) && SAMEL(k) && SAMEL(stride) && SAMEL(pad) && SAMEL(groups) &&
              SAMEL(act) && SAMEL(wbits) && SAMEL(sx) && SAMEL(zx) && SAMEL(sb) && SAMEL(zb) &&
              SAMEL(sy) && SAMEL(zy) && SAMEL(lo) && SAMEL(hi) && SAMEL(pool_mult))) {
            printf("\n  layer %d differs\n", i);
            return 0;
        }
#undef SAMEL
        const size_t nw = (size_t)(qat_q8_layer_macs(x) / ((int64_t)x->out_h * x->out_w));
        const size_t nc = (size_t)x->out_c;
        if (!arrays_equal(x->weight, y->weight, nw) || !arrays_equal(x->bias, y->bias, nc * 4) ||
            !arrays_equal(x->mult, y->mult, nc * 4) || !arrays_equal(x->fbias, y->fbias, nc * 4) ||
            !arrays_equal(x->wscale, y->wscale, nc * 4)) {
            printf("\n  layer %d arrays differ\n", i);
            return 0;
        }
    }
    return 1;
}

/* Saves a fresh valid model and returns the file's bytes. */
static unsigned char *valid_bytes(size_t *len) {
    qat_q8_model *m = make_model();
    char *p = tpath("valid.q8");
    CU_ASSERT_EQUAL(qat_q8_save(m, p), QAT_OK);
    qat_q8_free(m);
    return slurp(p, len);
}

/* ---- container surgery: recompute every CRC so a mutation reaches the q8 parser -------------- */

#include "fuzz/container_crc.h"
#define rd32 crcfix_rd32
#define rd64 crcfix_rd64
#define wr32 crcfix_wr32

/* Offset and size of a section of a well-formed file. */
static int find_section(const unsigned char *b, size_t len, const char *name, size_t *off,
                        size_t *size) {
    const uint32_t count = rd32(b + 12);
    for (uint32_t i = 0; i < count && 16 + 36 * (size_t)(i + 1) <= len; i++) {
        const unsigned char *e = b + 16 + 36 * (size_t)i;
        if (!strncmp((const char *)e, name, 16)) {
            *off = (size_t)rd64(e + 16), *size = (size_t)rd64(e + 24);
            return 1;
        }
    }
    return 0;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_roundtrip(void) {
    qat_q8_model *m = make_model();
    CU_ASSERT_EQUAL_FATAL(qat_q8_validate(m, "model"), QAT_OK);
    char *p = tpath("rt.q8"), *p2 = tpath("rt2.q8");
    CU_ASSERT_EQUAL_FATAL(qat_q8_save(m, p), QAT_OK);
    qat_q8_model *back = (qat_q8_model *)1;
    CU_ASSERT_EQUAL_FATAL(qat_q8_load(p, &back), QAT_OK);
    CU_ASSERT_TRUE(models_equal(m, back));
    /* loaded arrays are their own blocks: the original can go */
    CU_ASSERT_PTR_NOT_EQUAL(back->layers[0].weight, m->layers[0].weight);
    /* canonical: saving what was loaded gives the same bytes */
    CU_ASSERT_EQUAL(qat_q8_save(back, p2), QAT_OK);
    size_t n1, n2;
    unsigned char *b1 = slurp(p, &n1), *b2 = slurp(p2, &n2);
    CU_ASSERT_TRUE(n1 > 0 && n1 == n2 && memcmp(b1, b2, n1) == 0);
    CU_ASSERT_EQUAL(memcmp(b1, "QATINT8\0", 8), 0);
    CU_ASSERT_EQUAL(rd32(b1 + 8), 1u);
    /* the same from memory */
    qat_q8_model *mem = NULL;
    CU_ASSERT_EQUAL(qat_q8_load_memory(b1, n1, "buf", &mem), QAT_OK);
    CU_ASSERT_TRUE(mem && models_equal(m, mem));
    /* the bits that must survive: a NaN payload in an unused field, -0 and a subnormal */
    uint32_t bits;
    memcpy(&bits, &back->layers[0].pool_mult, 4);
    CU_ASSERT_EQUAL(bits, 0x7fc12345u);
    memcpy(&bits, &back->layers[5].fbias[3], 4);
    CU_ASSERT_EQUAL(bits, 0x80000000u);
    CU_ASSERT_PTR_NULL(back->layers[5].bias);
    CU_ASSERT_PTR_NULL(back->layers[3].weight);
    qat_q8_free(mem);
    qat_q8_free(back);
    qat_q8_free(m);
    free(b1);
    free(b2);
    qat_q8_free(NULL);
}

/* Issue 16 point 3: 4-bit weights two a byte, 2-bit four a byte (format version 4, only when a
 * layer has wbits <= 4); they load back to the same int8 values, canonically; a weight that does
 * not fit its bits is refused at save. */
static void test_packed_weights(void) {
    qat_q8_model *m = make_model();
    char *plain = tpath("plain.q8"), *packed = tpath("packed.q8"), *again = tpath("again.q8");
    qat_q8_layer *L0 = &m->layers[0], *L1 = &m->layers[1];
    const int64_t n0 = qat_q8_layer_weights(L0), n1 = qat_q8_layer_weights(L1);
    for (int64_t j = 0; j < n0; j++) L0->weight[j] = (int8_t)((j * 7) % 16 - 8); /* -8..7 */
    for (int64_t j = 0; j < n1; j++) L1->weight[j] = (int8_t)((j * 5) % 4 - 2);  /* -2..1 */
    CU_ASSERT_EQUAL_FATAL(qat_q8_save(m, plain), QAT_OK);
    L0->wbits = 4, L1->wbits = 2;
    CU_ASSERT_EQUAL_FATAL(qat_q8_save(m, packed), QAT_OK);
    size_t np, nq, na;
    unsigned char *bp = slurp(plain, &np), *bq = slurp(packed, &nq);
    CU_ASSERT_EQUAL(rd32(bp + 8), 1u);
    CU_ASSERT_EQUAL(rd32(bq + 8), 4u);
    qat_q8_model *back = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_q8_load(packed, &back), QAT_OK);
    CU_ASSERT_TRUE(models_equal(m, back));
    CU_ASSERT_EQUAL(qat_q8_save(back, again), QAT_OK);
    unsigned char *ba = slurp(again, &na);
    CU_ASSERT_TRUE(na == nq && !memcmp(ba, bq, nq));
    /* the weight section: 216 + 72 + 64 + 80 bytes as int8, 108 + 18 + 64 + 80 packed */
    const void *data;
    uint64_t wsz = 0;
    qat_container *c;
    CU_ASSERT_FATAL(qat_container_read_memory(bq, nq, "packed", "QATINT8", 4, &c) == QAT_OK);
    CU_ASSERT(qat_container_get(c, "weight", 0, &data, &wsz) == QAT_OK);
    CU_ASSERT_EQUAL(wsz, (uint64_t)(n0 / 2 + n1 / 4 + 64 + 80));
    qat_container_free(c);
    /* a 4-bit layer holding a weight of 8 is not written */
    back->layers[0].weight[5] = 8;
    CU_ASSERT_NOT_EQUAL(qat_q8_save(back, again), QAT_OK);
    CU_ASSERT_TRUE(has("does not fit its 4 bits"));
    qat_q8_free(back);
    qat_q8_free(m);
    free(bp), free(bq), free(ba);
}

/* Issue 16 point 7: an ImageFolder's class names ride in an optional "classes" section (a model
 * without them saves as before); names that do not parse are refused. */
static void test_class_names(void) {
    qat_q8_model *m = make_model();
    char *p = tpath("names.q8"), *p2 = tpath("names2.q8");
    m->class_names = calloc(10, sizeof *m->class_names);
    for (int k = 0; k < 10; k++) snprintf(m->class_names[k], sizeof m->class_names[k], "class-%c name", 'a' + k);
    CU_ASSERT_EQUAL_FATAL(qat_q8_save(m, p), QAT_OK);
    qat_q8_model *back = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_q8_load(p, &back), QAT_OK);
    CU_ASSERT_TRUE(models_equal(m, back) && back->class_names &&
                   !memcmp(back->class_names, m->class_names, 10 * sizeof *m->class_names));
    CU_ASSERT_EQUAL(qat_q8_save(back, p2), QAT_OK);
    size_t n1, n2;
    unsigned char *b1 = slurp(p, &n1), *b2 = slurp(p2, &n2);
    CU_ASSERT_TRUE(n1 == n2 && !memcmp(b1, b2, n1));
    qat_rt *rt;
    CU_ASSERT_FATAL(qat_rt_load(p, NULL, &rt) == QAT_OK);
    CU_ASSERT_STRING_EQUAL(qat_rt_class_name(rt, 3), "class-d name");
    CU_ASSERT_PTR_NULL(qat_rt_class_name(rt, 10));
    qat_rt_free(rt);
    char (*names)[QAT_Q8_CLASS_NAME_MAX];
    CU_ASSERT(qat_class_names_parse("a\nb\n", 4, 3, "x", &names) == QAT_ERR_FORMAT && has("2 class names for 3"));
    CU_ASSERT(qat_class_names_parse("a\n\nc\n", 5, 3, "x", &names) == QAT_ERR_FORMAT && has("class name 1"));
    CU_ASSERT(qat_class_names_parse("a\nb\nc", 5, 3, "x", &names) == QAT_ERR_FORMAT);
    CU_ASSERT(qat_class_names_parse("a\nb\tx\nc\n", 7, 3, "x", &names) == QAT_ERR_FORMAT);
    qat_q8_free(back);
    qat_q8_free(m);
    free(b1), free(b2);
}

static void test_macs_and_names(void) {
    qat_q8_model *m = make_model();
    const int64_t want[6] = {8 * 8 * 8 * 27, 4 * 4 * 8 * 9, 4 * 4 * 8 * 8, 0, 0, 80};
    for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(qat_q8_layer_macs(&m->layers[i]), want[i]);
    CU_ASSERT_STRING_EQUAL(qat_q8_kinds[QAT_Q8_CONV].name, "conv");
    CU_ASSERT_STRING_EQUAL(qat_q8_kinds[QAT_Q8_ADD].name, "add");
    CU_ASSERT_STRING_EQUAL(qat_q8_kinds[QAT_Q8_AVGPOOL].name, "avgpool");
    CU_ASSERT_STRING_EQUAL(qat_q8_kinds[QAT_Q8_LINEAR].name, "linear");
    m->layers[0].k = 65536, m->layers[0].out_h = 65536, m->layers[0].out_w = 65536;
    m->layers[0].out_c = 65536, m->layers[0].in_c = 65536;
    CU_ASSERT_EQUAL(qat_q8_layer_macs(&m->layers[0]), 0); /* overflow: 0, not garbage */
    qat_q8_free(m);
}

/* One broken invariant: the mutation, the layer it is reported for (-1: model) and a substring. */
typedef struct {
    const char *label;
    void (*mutate)(qat_q8_model *m);
    int layer;
    const char *expect;
} violation;

static void *stash[4]; /* arrays a mutation detached, freed after the check */

static void v_pad(qat_q8_model *m) { m->layers[0].pad = 5; }
static void v_pad_neg(qat_q8_model *m) { m->layers[0].pad = -1; }
static void v_stride(qat_q8_model *m) { m->layers[1].stride = 0; }
static void v_k(qat_q8_model *m) { m->layers[2].k = 0; }
static void v_outh(qat_q8_model *m) { m->layers[1].out_h = 5; }
static void v_big_kernel(qat_q8_model *m) { m->layers[2].k = 7, m->layers[2].pad = 1; }
static void v_groups(qat_q8_model *m) { m->layers[1].groups = 4; }
static void v_dw_taps(qat_q8_model *m) {
    qat_q8_layer *L = &m->layers[1];
    L->k = 12, L->pad = 2, L->stride = 2, L->out_h = L->out_w = 1;
}
static void v_future(qat_q8_model *m) { m->layers[2].input = 3; }
static void v_input_low(qat_q8_model *m) { m->layers[2].input = -2; }
static void v_skip_conv(qat_q8_model *m) { m->layers[2].skip = 0; }
static void v_zx(qat_q8_model *m) { m->layers[2].zx = 5; }
static void v_sx(qat_q8_model *m) { m->layers[2].sx = 0.041f; }
static void v_chain_shape(qat_q8_model *m) { m->layers[2].in_c = 7; }
static void v_zy(qat_q8_model *m) { m->layers[4].zy = 256; }
static void v_lohi(qat_q8_model *m) { m->layers[3].lo = 200, m->layers[3].hi = 100; }
static void v_sy_nan(qat_q8_model *m) { m->layers[4].sy = NAN; }
static void v_sy_zero(qat_q8_model *m) { m->layers[3].sy = 0; }
static void v_mult_inf(qat_q8_model *m) { m->layers[2].mult[3] = INFINITY; }
static void v_mult_neg(qat_q8_model *m) { m->layers[0].mult[0] = -1; }
static void v_wscale(qat_q8_model *m) { m->layers[5].wscale[9] = 0; }
static void v_fbias(qat_q8_model *m) { m->layers[5].fbias[0] = NAN; }
static void v_pool_mult(qat_q8_model *m) { m->layers[4].pool_mult = -0.5f; }
static void v_acc(qat_q8_model *m) { m->layers[2].bias[2] = INT32_MAX; }
static void v_acc_edge(qat_q8_model *m) {
    /* 1x1 conv, 8 taps of -128: 255 * 1024 = 261120; one over the bound */
    qat_q8_layer *L = &m->layers[2];
    memset(L->weight, 0x80, 8);
    L->bias[0] = -(INT32_MAX - 261120) - 1;
}
static void v_no_bias(qat_q8_model *m) { m->layers[1].bias = NULL; /* restored after */ }
static void v_extra_fbias(qat_q8_model *m) { m->layers[0].fbias = stash[0] = calloc(8, 4); }
static void v_linear_bias(qat_q8_model *m) { m->layers[5].bias = stash[0] = calloc(10, 4); }
static void v_add_weight(qat_q8_model *m) { m->layers[3].weight = stash[0] = calloc(8, 1); }
static void v_add_skip_shape(qat_q8_model *m) { m->layers[3].skip = 0; }
static void v_add_sb(qat_q8_model *m) { m->layers[3].zb = 4; }
static void v_add_out(qat_q8_model *m) { m->layers[3].out_c = 4; }
static void v_pool_out(qat_q8_model *m) { m->layers[4].out_h = 2; }
static void v_last(qat_q8_model *m) { m->nlayers = 5; }
static void v_classes(qat_q8_model *m) { m->nclasses = 11; }
static void v_linear_shape(qat_q8_model *m) { m->layers[5].out_h = 2; }
static void v_name(qat_q8_model *m) { memset(m->layers[2].name, 'a', QAT_Q8_NAME_MAX); }
static void v_name_ctrl(qat_q8_model *m) { m->layers[2].name[1] = '\n'; }
static void v_kind(qat_q8_model *m) { m->layers[2].kind = (qat_q8_kind)17; }
static void v_act(qat_q8_model *m) { m->layers[2].act = (qat_q8_act)9; }
static void v_wbits(qat_q8_model *m) { m->layers[0].wbits = 9; }
static void v_dim(qat_q8_model *m) { m->layers[2].out_c = 0; }
static void v_dim_big(qat_q8_model *m) { m->layers[4].in_h = 70000; }
static void v_elems(qat_q8_model *m) {
    m->layers[0].out_h = m->layers[0].out_w = 40000; /* 1.6e9 * 8 elements */
}
static void v_in_c(qat_q8_model *m) { m->in_c = 5; }
static void v_nlayers(qat_q8_model *m) { m->nlayers = 0; }
static void v_nlayers_big(qat_q8_model *m) { m->nlayers = QAT_Q8_MAX_LAYERS + 1; }
static void v_in_scale(qat_q8_model *m) { m->in_scale = INFINITY; }
static void v_in_zp(qat_q8_model *m) { m->in_qmin = 10, m->in_qmax = 5; }
static void v_std(qat_q8_model *m) { m->std[2] = 0; }
static void v_qconfig(qat_q8_model *m) { memset(m->qconfig, 'x', sizeof m->qconfig); }
static void v_arch(qat_q8_model *m) { m->arch[0] = 1; }
static void v_linear_mid(qat_q8_model *m) {
    /* a second linear before the last one */
    m->layers[4].kind = QAT_Q8_LINEAR;
}

static const violation violations[] = {
    {"pad >= k", v_pad, 0, "pad 5 outside 0..k-1 (k 3)"},
    {"pad < 0", v_pad_neg, 0, "pad -1"},
    {"stride 0", v_stride, 1, "stride 0"},
    {"k 0", v_k, 2, "kernel 0"},
    {"output height", v_outh, 1, "output 5x4, but k 3 stride 2 pad 1 on 8x8 give 4x4"},
    {"kernel larger than input", v_big_kernel, 2, "larger than padded input"},
    {"groups", v_groups, 1, "groups 4"},
    {"depthwise taps", v_dw_taps, 1, "exceeds 128 taps"},
    {"value not yet produced", v_future, 2, "reads value 3, not produced before it"},
    {"value -2", v_input_low, 2, "reads value -2"},
    {"skip on conv", v_skip_conv, 2, "skip 0 on a conv layer"},
    {"zx != producer zy", v_zx, 2, "input qparams (0.04, 5) != value 1's output qparams (0.04, 3)"},
    {"sx != producer sy", v_sx, 2, "input qparams (0.041, 3)"},
    {"shape chain", v_chain_shape, 2, "input shape 4x4x7 != shape 4x4x8 of value 1"},
    {"zy 256", v_zy, 4, "output zero point 256"},
    {"lo > hi", v_lohi, 3, "clamp [200, 100]"},
    {"sy NaN", v_sy_nan, 4, "output scale nan"},
    {"sy 0", v_sy_zero, 3, "output scale 0"},
    {"mult inf", v_mult_inf, 2, "mult[3] = inf is not finite and > 0"},
    {"mult < 0", v_mult_neg, 0, "mult[0] = -1"},
    {"wscale 0", v_wscale, 5, "wscale[9] = 0"},
    {"fbias NaN", v_fbias, 5, "fbias[0] = nan is not finite"},
    {"pool mult", v_pool_mult, 4, "pool multiplier -0.5"},
    {"accumulator", v_acc, 2, "channel 2 could overflow the int32 accumulator"},
    {"accumulator edge", v_acc_edge, 2, "channel 0 could overflow"},
    {"conv without bias", v_no_bias, 1, "conv layer without bias array"},
    {"conv with fbias", v_extra_fbias, 0, "conv layer has a fbias array"},
    {"linear with int32 bias", v_linear_bias, 5, "linear layer has a bias array"},
    {"add with weights", v_add_weight, 3, "add layer has a weight array"},
    {"add operand shapes", v_add_skip_shape, 3, "skip shape 4x4x8 != shape 8x8x8 of value 0"},
    {"add skip qparams", v_add_sb, 3, "skip qparams (0.04, 4)"},
    {"add output shape", v_add_out, 3, "add output 4x4x4"},
    {"pool output", v_pool_out, 4, "global average pool output 2x1x8"},
    {"last not linear", v_last, 4, "the last layer is a avgpool"},
    {"classes", v_classes, 5, "10 outputs for 11 classes"},
    {"linear shape", v_linear_shape, 5, "linear shape 1x1x8 -> 2x1x10"},
    {"name unterminated", v_name, 2, "layer 2: name is not printable"},
    {"name control char", v_name_ctrl, 2, "layer 2: name is not printable"},
    {"unknown kind", v_kind, 2, "unknown kind 17"},
    {"unknown act", v_act, 2, "unknown activation 9"},
    {"weight bits", v_wbits, 0, "weight bits 9"},
    {"dimension 0", v_dim, 2, "each dimension must be 1..65536"},
    {"dimension > 65536", v_dim_big, 4, "shape 70000x4x8 -> 1x1x8"},
    {"elements per image", v_elems, 0, "more than 2^28 elements"},
    {"input channels", v_in_c, -1, "input shape 8x8x5"},
    {"no layers", v_nlayers, -1, "0 layers"},
    {"too many layers", v_nlayers_big, -1, "4097 layers"},
    {"input scale", v_in_scale, -1, "input scale inf"},
    {"input range", v_in_zp, -1, "range [10, 5]"},
    {"std 0", v_std, -1, "input channel 2: mean -0.125 / std 0"},
    {"qconfig unterminated", v_qconfig, -1, "qconfig name"},
    {"arch control char", v_arch, -1, "architecture name"},
    {"linear before last", v_linear_mid, 4, "linear layer before the last"},
};

static void test_validate_rejects(void) {
    for (size_t v = 0; v < sizeof violations / sizeof violations[0]; v++) {
        const violation *V = &violations[v];
        qat_q8_model *m = make_model();
        qat_q8_model saved = *m;
        qat_q8_layer layer_copy[6];
        memcpy(layer_copy, m->layers, sizeof layer_copy);
        memset(stash, 0, sizeof stash);
        V->mutate(m);
        char expect_where[160];
        if (V->layer >= 0)
            snprintf(expect_where, sizeof expect_where, "MODEL.q8: layer %d '%s': ", V->layer,
                     layer_copy[V->layer].name);
        else
            snprintf(expect_where, sizeof expect_where, "MODEL.q8: ");
        if (V->mutate == v_name || V->mutate == v_name_ctrl)
            snprintf(expect_where, sizeof expect_where, "MODEL.q8: ");
        qat_status st = qat_q8_validate(m, "MODEL.q8");
        if (st == QAT_OK) printf("\n  violation '%s' accepted\n", V->label);
        CU_ASSERT_NOT_EQUAL(st, QAT_OK);
        if (st != QAT_OK) {
            CU_ASSERT_TRUE(has(expect_where));
            CU_ASSERT_TRUE(has(V->expect));
        }
        /* save refuses it too and leaves no file */
        char *p = tpath("invalid.q8");
        unlink(p);
        CU_ASSERT_NOT_EQUAL(qat_q8_save(m, p), QAT_OK);
        CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
        /* undo what the free must not see (detached or foreign arrays, counts) */
        memcpy(m->layers, layer_copy, sizeof layer_copy);
        m->nlayers = saved.nlayers;
        free(stash[0]);
        qat_q8_free(m);
    }
    CU_ASSERT_EQUAL(qat_q8_validate(NULL, NULL), QAT_ERR_ARG);
}

/* A boundary that must be accepted: the accumulator bound exactly met. */
static void test_validate_accepts_edges(void) {
    qat_q8_model *m = make_model();
    qat_q8_layer *L = &m->layers[2];
    memset(L->weight, 0x80, 8);
    L->bias[0] = -(INT32_MAX - 261120);
    CU_ASSERT_EQUAL(qat_q8_validate(m, "m"), QAT_OK);
    /* fbias is optional for the classifier */
    free(m->layers[5].fbias);
    m->layers[5].fbias = NULL;
    CU_ASSERT_EQUAL(qat_q8_validate(m, "m"), QAT_OK);
    char *p = tpath("nofbias.q8");
    CU_ASSERT_EQUAL(qat_q8_save(m, p), QAT_OK);
    qat_q8_model *back = NULL;
    CU_ASSERT_EQUAL(qat_q8_load(p, &back), QAT_OK);
    CU_ASSERT_TRUE(back && models_equal(m, back));
    qat_q8_free(back);
    qat_q8_free(m);
}

/* The container read from memory sees what the read from the file sees. */
static void test_container_from_memory(void) {
    size_t n;
    unsigned char *good = valid_bytes(&n);
    CU_ASSERT_FATAL(good && n > 0);
    qat_container *a, *b;
    CU_ASSERT_EQUAL_FATAL(qat_container_read(tpath("valid.q8"), "QATINT8\0", 1, &a), QAT_OK);
    CU_ASSERT_EQUAL_FATAL(qat_container_read_memory(good, n, "mem", "QATINT8\0", 1, &b), QAT_OK);
    free(good); /* the container keeps its own copy */
    CU_ASSERT_STRING_EQUAL(qat_container_path(b), "mem");
    CU_ASSERT_EQUAL(qat_container_version(b), 1u);
    CU_ASSERT_EQUAL(qat_container_count(a), qat_container_count(b));
    for (int i = 0; i < qat_container_count(a); i++) {
        uint64_t sa, sb;
        const void *da = qat_container_find(a, qat_container_name(a, i), &sa);
        const void *db = qat_container_find(b, qat_container_name(b, i), &sb);
        CU_ASSERT_STRING_EQUAL(qat_container_name(a, i), qat_container_name(b, i));
        CU_ASSERT_TRUE(sa == sb && memcmp(da, db, (size_t)sa) == 0);
        CU_ASSERT_EQUAL((uintptr_t)db % QAT_CONTAINER_ALIGN, 0);
    }
    qat_container_free(a);
    qat_container_free(b);
    CU_ASSERT_EQUAL(qat_container_read_memory("", 0, "empty", "QATINT8\0", 1, &b), QAT_ERR_FORMAT);
    CU_ASSERT_PTR_NULL(b);
    CU_ASSERT_TRUE(has("empty: truncated"));
    CU_ASSERT_EQUAL(qat_container_read_memory(NULL, 5, "null", "QATINT8\0", 1, &b), QAT_ERR_ARG);
    CU_ASSERT_PTR_NULL(b);
}

static qat_status load_bytes(const unsigned char *b, size_t n, qat_q8_model **out) {
    char *p = tpath("bad.q8");
    spit(p, b, n);
    *out = (qat_q8_model *)1;
    qat_status st = qat_q8_load(p, out);
    CU_ASSERT_TRUE(st == QAT_OK || *out == NULL);
    CU_ASSERT_TRUE(st == QAT_OK || has(p));
    return st;
}

static void test_damaged_files(void) {
    size_t n;
    unsigned char *good = valid_bytes(&n);
    CU_ASSERT_FATAL(good && n > 0);
    unsigned char *b = malloc(n);
    qat_q8_model *m;
    /* every truncation */
    for (size_t len = 0; len < n; len += (len < 64 ? 1 : 37)) {
        qat_q8_model *mm = (qat_q8_model *)1;
        CU_ASSERT_NOT_EQUAL(qat_q8_load_memory(good, len, "trunc.q8", &mm), QAT_OK);
        CU_ASSERT_PTR_NULL(mm);
    }
    CU_ASSERT_NOT_EQUAL(load_bytes(good, n - 1, &m), QAT_OK);
    CU_ASSERT_TRUE(has("truncated") || has("past the end"));
    /* a bit flip in the weights: the section CRC names it */
    size_t off, size;
    CU_ASSERT_FATAL(find_section(good, n, "weight", &off, &size));
    memcpy(b, good, n);
    b[off + size / 2] ^= 0x10;
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("section 'weight' checksum mismatch"));
    /* wrong magic */
    memcpy(b, good, n);
    memcpy(b, "QATCKPT1", 8);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("not a 'QATINT8?' file"));
    /* a version 1 file (no LUT/MUL layers) relabelled as version 2 lacks the "table" section */
    CU_ASSERT_EQUAL(rd32(good + 8), 1);
    memcpy(b, good, n);
    wr32(b + 8, 2);
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("missing section 'table'"));
    /* newer version, header CRC made valid */
    memcpy(b, good, n);
    wr32(b + 8, 99);
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("newer"));
    /* a renamed section = a missing one ("mult" -> "mulx"), CRCs fixed */
    memcpy(b, good, n);
    for (uint32_t i = 0; i < rd32(b + 12); i++)
        if (!strcmp((char *)b + 16 + 36 * i, "mult")) b[16 + 36 * i + 3] = 'x';
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("missing section 'mult'"));
    /* a layer field out of range behind valid CRCs: the validator names the layer */
    CU_ASSERT_FATAL(find_section(good, n, "layers", &off, &size));
    memcpy(b, good, n);
    wr32(b + off + 148 * 2 + 4 + 48 + 4 + 4 + 4 * 10, 9); /* layer 2 pad (field 10) */
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("layer 2 'features.1.pw': pad 9"));
    /* an array flag the kind does not allow */
    memcpy(b, good, n);
    wr32(b + off + 148 * 3 + 4 + 48 + 4, 1); /* the add gets a weight */
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("layer 3 'features.1.add': add layer has a weight array"));
    /* unknown flag bits */
    memcpy(b, good, n);
    wr32(b + off + 148 * 3 + 4 + 48 + 4, 0x40);
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("unknown array flags 0x40"));
    /* a model record with an unterminated qconfig */
    CU_ASSERT_FATAL(find_section(good, n, "model", &off, &size));
    CU_ASSERT_EQUAL(size, 116);
    memcpy(b, good, n);
    memset(b + off + 64, 'q', 16);
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("qconfig name"));
    /* junk after the NUL of a text field: files are canonical */
    memcpy(b, good, n);
    b[off + 80 + 30] = 'z'; /* arch "tiny-test\0...z" */
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("nonzero bytes after the NUL of the qconfig or architecture name"));
    CU_ASSERT_FATAL(find_section(good, n, "layers", &off, &size));
    memcpy(b, good, n);
    b[off + 148 + 4 + 47] = 'z'; /* layer 1's name */
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("layer 1 'features.1.dw': nonzero bytes after the name's NUL"));
    CU_ASSERT_FATAL(find_section(good, n, "model", &off, &size));
    /* nlayers larger than the layers section */
    memcpy(b, good, n);
    wr32(b + off + 112, 7);
    fix_crcs(b, n);
    CU_ASSERT_NOT_EQUAL(load_bytes(b, n, &m), QAT_OK);
    CU_ASSERT_TRUE(has("section 'layers' has 888 bytes, expected 1036"));
    /* an array section with a byte too many or too few (rewritten through the container) */
    qat_container *c;
    CU_ASSERT_EQUAL_FATAL(qat_container_read_memory(good, n, "good", "QATINT8\0", 1, &c), QAT_OK);
    for (int delta = -1; delta <= 2; delta += 3) {
        qat_section secs[8];
        int ns = qat_container_count(c);
        CU_ASSERT_EQUAL(ns, 7);
        unsigned char *grown = NULL;
        for (int i = 0; i < ns; i++) {
            uint64_t sz;
            const void *d = qat_container_find(c, qat_container_name(c, i), &sz);
            snprintf(secs[i].name, sizeof secs[i].name, "%s", qat_container_name(c, i));
            secs[i].data = d, secs[i].size = sz;
            if (!strcmp(secs[i].name, "wscale")) {
                grown = calloc(1, sz + 2);
                memcpy(grown, d, sz);
                secs[i].data = grown, secs[i].size = sz + (uint64_t)(int64_t)delta;
            }
        }
        CU_ASSERT_EQUAL(qat_container_write(tpath("sz.q8"), "QATINT8\0", 1, secs, ns), QAT_OK);
        m = (qat_q8_model *)1;
        CU_ASSERT_NOT_EQUAL(qat_q8_load(tpath("sz.q8"), &m), QAT_OK);
        CU_ASSERT_PTR_NULL(m);
        CU_ASSERT_TRUE(delta < 0 ? has("wscale array of 10 elements runs past the end")
                                 : has("section 'wscale' has 2 bytes beyond its arrays"));
        /* and an unknown extra section */
        if (delta > 0) {
            secs[ns - 1].size -= 2;
            secs[ns] = (qat_section){"extra", "x", 1};
            CU_ASSERT_EQUAL(qat_container_write(tpath("sz.q8"), "QATINT8\0", 1, secs, ns + 1),
                            QAT_OK);
            CU_ASSERT_NOT_EQUAL(qat_q8_load(tpath("sz.q8"), &m), QAT_OK);
            CU_ASSERT_TRUE(has("8 sections, expected 7"));
        }
        free(grown);
    }
    qat_container_free(c);
    /* files that are not there or not files */
    CU_ASSERT_EQUAL(qat_q8_load(tpath("absent.q8"), &m), QAT_ERR_IO);
    CU_ASSERT_EQUAL(qat_q8_load(tmpdir, &m), QAT_ERR_IO);
    free(b);
    free(good);
}

/* ---- fuzz smoke test ------------------------------------------------------------------------- */

static const uint32_t extremes[] = {0,          1,          2,          3,          7,
                                    8,          127,        128,        255,        256,
                                    65535,      65536,      65537,      0x7fffffff, 0x80000000,
                                    0xffffffff, 0xfffffffe, 0x7fc00000, 0x7f800000, 0xff800000,
                                    0x00000001, 0x3f800000, 0xbf800000, 4096,       4097};
#define NEXTREMES (sizeof extremes / sizeof extremes[0])

/* Mutates b[0, *len) in place (capacity cap) with one of several operators. */
static void mutate(unsigned char *b, size_t *len, size_t cap, const unsigned char *good,
                   size_t good_len) {
    size_t off, size;
    const char *targets[] = {"model", "layers", "layers", "layers", "weight", "bias", "mult",
                             "fbias", "wscale"};
    const int nmut = 1 + (int)(xorshift() % 3);
    for (int k = 0; k < nmut; k++) {
        const uint64_t r = xorshift();
        switch (r % 7) {
        case 0: /* a bit flip anywhere */
            if (*len) b[(r >> 8) % *len] ^= (unsigned char)(1u << ((r >> 40) % 8));
            break;
        case 1: /* a byte set anywhere */
            if (*len) b[(r >> 8) % *len] = (unsigned char)(r >> 48);
            break;
        case 2: /* truncation */
            if (*len) *len = (size_t)((r >> 8) % *len);
            break;
        case 3: case 4: case 5: { /* an aligned 4-byte field of a section set to an extreme */
            const char *t = targets[(r >> 8) % (sizeof targets / sizeof targets[0])];
            if (find_section(good, good_len, t, &off, &size) && size >= 4 && off + size <= *len) {
                size_t at = off + 4 * ((r >> 16) % (size / 4));
                wr32(b + at, extremes[(r >> 40) % NEXTREMES]);
            }
            break;
        }
        default: /* grow by a few bytes */
            if (*len + 8 <= cap) {
                for (int i = 0; i < 8; i++) b[*len + i] = (unsigned char)(r >> (8 * i));
                *len += 1 + (r >> 60) % 8;
            }
            break;
        }
    }
}

static void test_fuzz_smoke(void) {
    size_t n;
    unsigned char *good = valid_bytes(&n);
    CU_ASSERT_FATAL(good && n > 0);
    const size_t cap = n + 64;
    unsigned char *b = malloc(cap);
    rng_state = 0x243f6a8885a308d3ull;
    int accepted = 0, container_rejects = 0, model_rejects = 0;
    const int iters = 4000;
    for (int it = 0; it < iters; it++) {
        size_t len = n;
        memcpy(b, good, n);
        mutate(b, &len, cap, good, n);
        if (xorshift() % 8) fix_crcs(b, len); /* mostly reach past the checksums */
        qat_q8_model *m = (qat_q8_model *)1;
        qat_status st = qat_q8_load_memory(b, len, "fuzz.q8", &m);
        if (st == QAT_OK) {
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            CU_ASSERT_EQUAL(qat_q8_validate(m, "fuzz.q8"), QAT_OK);
            /* whatever load accepts, save writes and load reads back unchanged (a sample: the
             * writes fsync) */
            if (accepted < 40) {
                qat_q8_model *again = NULL;
                CU_ASSERT_EQUAL(qat_q8_save(m, tpath("fuzz-resave.q8")), QAT_OK);
                CU_ASSERT_EQUAL(qat_q8_load(tpath("fuzz-resave.q8"), &again), QAT_OK);
                CU_ASSERT_TRUE(again && models_equal(m, again));
                qat_q8_free(again);
            }
            accepted++;
            qat_q8_free(m);
        } else {
            CU_ASSERT_PTR_NULL(m);
            CU_ASSERT_TRUE(strncmp(qat_last_error(), "fuzz.q8: ", 9) == 0);
            /* the container's own messages vs the q8 parser's and validator's */
            if (strstr(qat_last_error(), "layer ") || strstr(qat_last_error(), "input ") ||
                strstr(qat_last_error(), "classes") || strstr(qat_last_error(), "layers") ||
                strstr(qat_last_error(), "name") || strstr(qat_last_error(), "beyond its arrays"))
                model_rejects++;
            else
                container_rejects++;
        }
    }
    /* the mutations reach every level: some survive, many die behind the checksums */
    CU_ASSERT_TRUE(accepted > iters / 50);
    CU_ASSERT_TRUE(model_rejects > iters / 5);
    CU_ASSERT_TRUE(container_rejects > iters / 20);
    free(b);
    free(good);
}

void register_export_tests(void) {
    CU_pSuite s = CU_add_suite("export q8", suite_init, suite_clean);
    CU_add_test(s, "save/load round trip bit-exact", test_roundtrip);
    CU_add_test(s, "W4 / W2 weights packed two / four a byte (version 4)", test_packed_weights);
    CU_add_test(s, "class names: optional section, round trip, runtime, bad names", test_class_names);
    CU_add_test(s, "layer MACs and kind names", test_macs_and_names);
    CU_add_test(s, "validate rejects each invariant, naming the layer", test_validate_rejects);
    CU_add_test(s, "validate accepts the edges", test_validate_accepts_edges);
    CU_add_test(s, "damaged files: truncation, CRC, magic, version, sections", test_damaged_files);
    CU_add_test(s, "container read from memory", test_container_from_memory);
    CU_add_test(s, "fuzz smoke: 4000 CRC-fixed mutations", test_fuzz_smoke);
}
