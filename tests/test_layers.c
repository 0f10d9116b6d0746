/* Tests of the model-spec parser, the presets and the model built from a spec.
 *
 * The PyTorch golden logits below come from the peer's own MBV2Tiny (torch_peer.py) with
 * deterministic weights; this script (run with /usr/bin/python3 next to torch_peer.py)
 * printed them:
 *
 *   import math, torch
 *   from torch_peer import MBV2Tiny
 *   m = MBV2Tiny()
 *   sd = [(k, v) for k, v in m.state_dict().items() if 'num_batches' not in k]
 *   for seg, (name, t) in enumerate(sd):
 *       g = lambda *s: torch.meshgrid(*[torch.arange(d, dtype=torch.float64) for d in s],
 *                                     indexing='ij')
 *       if t.dim() == 4:
 *           O, I, KH, KW = t.shape; o, i, kh, kw = g(*t.shape)
 *           v = torch.sin(0.31*o + 0.17*i + 0.013*o*i + 0.57*kh + 0.73*kw + seg) \
 *               * math.sqrt(3.0 / (I*KH*KW))
 *       elif t.dim() == 2:
 *           O, I = t.shape; o, i = g(O, I)
 *           v = torch.sin(0.31*o + 0.17*i + 0.013*o*i + seg) * math.sqrt(3.0 / I)
 *       else:
 *           s = torch.sin(0.43 * torch.arange(t.shape[0], dtype=torch.float64) + seg)
 *           v = (1 + 0.5*s*s if name.endswith('running_var') else 0.1*s
 *                if name.endswith('running_mean') else 1 + 0.2*s if name.endswith('weight')
 *                else 0.1*s)
 *       with torch.no_grad(): t.copy_(v.to(torch.float32))
 *   n, c, h, w = torch.meshgrid(*[torch.arange(d, dtype=torch.float64) for d in (2, 1, 28, 28)],
 *                               indexing='ij')
 *   x = torch.sin(0.21*h + 0.13*w + 0.05*h*w/28 + 1.7*n).to(torch.float32)
 *   with torch.no_grad(): print(m.eval()(x), m.train()(x))
 */
#include "model.h"
#include "test_util.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const float golden_eval[2][10] = {
    {-3.530656e+00f, 4.618970e-01f, 1.497664e+00f, -1.008239e+00f, 2.054053e-01f, 1.474674e+00f,
     -1.265309e+00f, 4.143552e-01f, 4.744390e+00f, -5.285081e-02f},
    {-3.312676e+00f, 7.002816e-01f, 1.391692e+00f, -1.271060e+00f, 2.821205e-01f, 1.837846e+00f,
     -1.224042e+00f, 1.768001e-01f, 4.864753e+00f, 2.224464e-01f},
};
static const float golden_train[2][10] = {
    {-9.116551e-01f, -3.535160e-01f, -5.073211e-02f, -6.467876e-01f, -3.404205e-01f,
     2.517529e-01f, 7.281689e-02f, 1.994644e-01f, 4.504605e-01f, 1.592784e-01f},
    {-9.013309e-01f, -4.841059e-01f, -5.983791e-02f, -3.085028e-01f, -1.553359e-01f,
     1.677499e-02f, -3.657941e-01f, -1.376793e-01f, 5.256799e-01f, 2.834126e-01f},
};

/* ---- helpers --------------------------------------------------------------------------- */

static qat_model *build(const char *name_or_text, int is_text, float width, int h, int w, int c,
                        int classes) {
    qat_spec *s = NULL;
    qat_status st = is_text ? qat_spec_parse(name_or_text, "test.spec", &s)
                            : qat_spec_load(name_or_text, &s);
    if (st) {
        printf("\n  spec failed: %s\n", qat_last_error());
        CU_FAIL("spec");
        return NULL;
    }
    qat_model *m = NULL;
    st = qat_model_create(s, width, h, w, c, classes, &m);
    qat_spec_free(s);
    if (st) {
        printf("\n  model failed: %s\n", qat_last_error());
        CU_FAIL("model");
        return NULL;
    }
    return m;
}

static qat_tensor *input_tensor(qat_ctx *ctx, int n, int h, int w, int c, uint64_t seed) {
    qat_tensor *x = qat_tensor_4d(ctx, n, h, w, c);
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = qat_rng_normal(&r);
    return x;
}

static int count_kind(const qat_model *m, qat_layer_kind k) {
    int n = 0;
    for (int i = 0; i < qat_model_num_layers(m); i++) n += qat_model_layer(m, i)->kind == k;
    return n;
}

static const qat_tensor *param(const qat_model *m, const char *name) {
    int i = qat_model_find_param(m, name);
    if (i < 0) {
        printf("\n  no parameter %s\n", name);
        return NULL;
    }
    return m->param_info[i].tensor;
}

/* ---- presets and counts ---------------------------------------------------------------- */

static void test_mbv2_tiny_reference(void) {
    qat_model *m = build("mbv2-tiny", 0, 0.0f, 28, 28, 1, 10);
    if (!m) return;
    CU_ASSERT_EQUAL(m->nparams, 86634);
    CU_ASSERT_STRING_EQUAL(qat_spec_name(m->spec), "mbv2-tiny");
    CU_ASSERT_EQUAL(m->width_mult, 1.0f);
    /* 22 conv+BN units (3 params each) and the classifier's weight and bias */
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_CONV_BN_ACT), 22);
    CU_ASSERT_EQUAL(m->nsegs, 22 * 3 + 2);
    /* residuals where stride 1 and in == out: features.1, .3, .5, .7 */
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_ADD), 4);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_DROPOUT), 0);
    /* The peer's docstring: 4.86 M MACs per image. */
    CU_ASSERT(m->macs > 4855000 && m->macs < 4865000);
    /* PyTorch state_dict names and OHWI shapes */
    const qat_tensor *dw = param(m, "features.3.body.1.0.weight");
    CU_ASSERT_FATAL(dw != NULL);
    CU_ASSERT(dw->ndim == 4 && dw->shape[0] == 96 && dw->shape[1] == 3 && dw->shape[2] == 3 &&
              dw->shape[3] == 1);
    const qat_tensor *fc = param(m, "fc.weight");
    CU_ASSERT_FATAL(fc != NULL);
    CU_ASSERT(fc->ndim == 2 && fc->shape[0] == 10 && fc->shape[1] == 128);
    CU_ASSERT(param(m, "features.1.body.1.0.weight") != NULL); /* t=1: dw, project */
    CU_ASSERT(qat_model_find_param(m, "features.1.body.2.0.weight") < 0);
    CU_ASSERT(param(m, "features.8.0.weight") != NULL);        /* head */
    CU_ASSERT(qat_model_find_buffer(m, "features.8.1.running_var") >= 0);
    int64_t bn_channels = 0; /* buffers: running mean and var of every BN */
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == QAT_LAYER_CONV_BN_ACT) bn_channels += m->layers[i].out_c;
    CU_ASSERT_EQUAL(m->nbuffers, 2 * bn_channels);
    CU_ASSERT_EQUAL(bn_channels, 1952);
    const qat_layer *last = qat_model_layer(m, qat_model_num_layers(m) - 1);
    CU_ASSERT(last->kind == QAT_LAYER_LINEAR && last->out_c == 10 && last->in_c == 128);

    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    qat_rng r;
    qat_rng_seed(&r, 5);
    qat_model_init(m, &r);
    qat_tensor *y = qat_model_forward(m, &ctx, input_tensor(&ctx, 3, 28, 28, 1, 1));
    CU_ASSERT_FATAL(y != NULL);
    CU_ASSERT(y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 10);
    for (int64_t i = 0; i < y->numel; i++) CU_ASSERT(isfinite(y->data[i]));
    /* the wrong input shape is an error, not a crash */
    CU_ASSERT(qat_model_forward(m, &ctx, input_tensor(&ctx, 1, 28, 27, 1, 1)) == NULL);
    CU_ASSERT(strstr(qat_last_error(), "(N, 28, 28, 1) NHWC, got 4-d (1, 28, 27, 1)") != NULL);
    qat_ctx_free(&ctx);
    qat_model_free(m);
}

static void test_mbv1_tiny_builds(void) {
    qat_model *m = build("mbv1-tiny", 0, 0.0f, 28, 28, 1, 10);
    if (!m) return;
    /* stem 1->16; ds 16->32, 32->64 s2, 64->64, 64->128 s2, 128->128 x2, 128->256 s2; fc */
    int64_t expect = 9 * 16 + 32;
    int ch[][2] = {{16, 32}, {32, 64}, {64, 64}, {64, 128}, {128, 128}, {128, 128}, {128, 256}};
    for (int i = 0; i < 7; i++) expect += 9 * ch[i][0] + 2 * ch[i][0] + ch[i][0] * ch[i][1] +
                                          2 * ch[i][1];
    expect += 256 * 10 + 10;
    CU_ASSERT_EQUAL(m->nparams, expect);
    CU_ASSERT_EQUAL(m->nparams, 90890);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_ADD), 0);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_CONV_BN_ACT), 15);
    const qat_layer *pool = NULL;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == QAT_LAYER_GLOBAL_AVGPOOL) pool = &m->layers[i];
    CU_ASSERT_FATAL(pool != NULL);
    CU_ASSERT(pool->in_h == 4 && pool->in_w == 4 && pool->in_c == 256); /* 28 -> 14 -> 7 -> 4 */
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    qat_rng r;
    qat_rng_seed(&r, 6);
    qat_model_init(m, &r);
    qat_tensor *y = qat_model_forward(m, &ctx, input_tensor(&ctx, 2, 28, 28, 1, 2));
    CU_ASSERT_FATAL(y != NULL);
    CU_ASSERT(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 10);
    qat_ctx_free(&ctx);
    qat_model_free(m);
}

static void test_make_divisible(void) {
    /* values from torchvision's _make_divisible(v, 8) */
    CU_ASSERT_EQUAL(qat_make_divisible(32 * 0.35, 8), 16); /* 8 would be > 10% below 11.2 */
    CU_ASSERT_EQUAL(qat_make_divisible(12, 8), 16);
    CU_ASSERT_EQUAL(qat_make_divisible(20, 8), 24);
    CU_ASSERT_EQUAL(qat_make_divisible(4, 8), 8);
    CU_ASSERT_EQUAL(qat_make_divisible(1, 8), 8);
    CU_ASSERT_EQUAL(qat_make_divisible(0.5, 8), 8);
    CU_ASSERT_EQUAL(qat_make_divisible(27.999999999999996, 8), 32);
    CU_ASSERT_EQUAL(qat_make_divisible(100, 8), 104);
    CU_ASSERT_EQUAL(qat_make_divisible(36, 8), 40);
    CU_ASSERT_EQUAL(qat_make_divisible(44, 8), 48);
    CU_ASSERT_EQUAL(qat_make_divisible(64, 8), 64);
}

static void test_width_multiplier(void) {
    /* Counts from the peer's MBV2Tiny with torchvision's width rule (channels
     * _make_divisible(c*w, 8), head _make_divisible(128*max(1, w), 8)). */
    struct { float w; int64_t params; int stem, last_block, head; } cases[] = {
        {0.5f, 29738, 8, 32, 128},  {2.0f, 321738, 32, 128, 256}, {0.35f, 20234, 8, 24, 128},
        {1.4f, 163882, 24, 88, 176}, {0.75f, 58762, 16, 48, 128},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qat_model *m = build("mbv2-tiny", 0, cases[i].w, 28, 28, 1, 10);
        if (!m) return;
        CU_ASSERT_EQUAL(m->width_mult, cases[i].w);
        if (m->nparams != cases[i].params)
            printf("\n  width %g: %lld params, expected %lld\n", (double)cases[i].w,
                   (long long)m->nparams, (long long)cases[i].params);
        CU_ASSERT_EQUAL(m->nparams, cases[i].params);
        CU_ASSERT_EQUAL(m->layers[0].out_c, cases[i].stem);
        const qat_layer *fc = &m->layers[m->nlayers - 1];
        CU_ASSERT_EQUAL(fc->in_c, cases[i].head);
        const qat_tensor *proj = param(m, "features.7.body.2.0.weight");
        CU_ASSERT(proj && proj->shape[0] == cases[i].last_block);
        qat_model_free(m);
    }
    /* the spec's `width` line is used when the argument is <= 0, and overridden otherwise */
    const char *text = "width 0.5\nstem conv c=16\nblock ir t=4 c=24 n=2 s=2\nclassifier\n";
    qat_model *a = build(text, 1, 0.0f, 16, 16, 1, 10);
    qat_model *b = build(text, 1, 1.0f, 16, 16, 1, 10);
    if (a && b) {
        CU_ASSERT_EQUAL(a->width_mult, 0.5f);
        CU_ASSERT_EQUAL(a->layers[0].out_c, 8);
        CU_ASSERT_EQUAL(b->width_mult, 1.0f);
        CU_ASSERT_EQUAL(b->layers[0].out_c, 16);
        /* rebuilding from (spec, width_mult) gives the same model */
        qat_model *c = NULL;
        CU_ASSERT_EQUAL(qat_model_create(a->spec, a->width_mult, 16, 16, 1, 10, &c), QAT_OK);
        if (c) CU_ASSERT_EQUAL(c->nparams, a->nparams);
        qat_model_free(c);
    }
    qat_model_free(a);
    qat_model_free(b);
}

/* ---- forward ---------------------------------------------------------------------------- */

static const char *small_spec =
    "# every block kind, activation and residual case in a few layers\n"
    "name small\n"
    "stem conv k=3 c=8 s=1 act=relu6\n"
    "block ir t=2 c=8 n=1 s=1 k=3 act=relu6   # residual\n"
    "block ds c=16 n=1 s=2 k=5 act=hardswish\n"
    "block ir t=1 c=16 s=1 act=relu           # t=1: no expand, residual\n"
    "head conv k=1 c=24 act=none\n"
    "pool avg\n"
    "classifier dropout=0.0\n";

/* A copy of one of the model's parameters with its own grad, for the hand-built graph. */
typedef struct {
    qat_tensor t;
    float *data, *grad;
    char name[QAT_PARAM_NAME_MAX];
} hand_param;

static qat_tensor *hand(hand_param *hp, int *np, const qat_model *m, const char *name) {
    const qat_tensor *src = param(m, name);
    QAT_ASSERT(src);
    hand_param *h = &hp[(*np)++];
    h->data = malloc((size_t)src->numel * sizeof(float));
    h->grad = calloc((size_t)src->numel, sizeof(float));
    memcpy(h->data, src->data, (size_t)src->numel * sizeof(float));
    snprintf(h->name, sizeof h->name, "%s", name);
    qat_tensor_param(&h->t, src->ndim, src->shape, h->data, h->grad, h->name);
    return &h->t;
}

typedef struct {
    hand_param hp[40];
    int np;
    qat_bn_state bn[16];
    float stats[16][2][32];
    int nbn;
} hand_net;

static qat_tensor *hand_cba(qat_ctx *ctx, hand_net *hn, const qat_model *m, qat_tensor *x,
                            const char *layer, int stride, int pad, int groups, qat_act act) {
    char n[80];
    snprintf(n, sizeof n, "%s.0.weight", layer);
    qat_tensor *w = hand(hn->hp, &hn->np, m, n);
    snprintf(n, sizeof n, "%s.1.weight", layer);
    qat_tensor *g = hand(hn->hp, &hn->np, m, n);
    snprintf(n, sizeof n, "%s.1.bias", layer);
    qat_tensor *b = hand(hn->hp, &hn->np, m, n);
    /* running statistics copied from the model, kept apart so both graphs update their own */
    qat_bn_state *st = &hn->bn[hn->nbn];
    float (*s)[32] = hn->stats[hn->nbn++];
    snprintf(n, sizeof n, "%s.1.running_mean", layer);
    const qat_buffer_info *bm = &m->buffer_info[qat_model_find_buffer(m, n)];
    snprintf(n, sizeof n, "%s.1.running_var", layer);
    const qat_buffer_info *bv = &m->buffer_info[qat_model_find_buffer(m, n)];
    QAT_ASSERT(bm->numel <= 32);
    memcpy(s[0], m->buffers + bm->offset, (size_t)bm->numel * sizeof(float));
    memcpy(s[1], m->buffers + bv->offset, (size_t)bv->numel * sizeof(float));
    *st = (qat_bn_state){s[0], s[1], 0.1f, 1e-5f, 1};
    qat_tensor *y = qat_conv2d(ctx, x, w, NULL, stride, pad, groups);
    y = qat_batchnorm2d(ctx, y, g, b, st);
    switch (act) {
    case QAT_ACT_RELU: return qat_relu(ctx, y);
    case QAT_ACT_RELU6: return qat_relu6(ctx, y);
    case QAT_ACT_HARDSWISH: return qat_hardswish(ctx, y);
    default: return y;
    }
}

static qat_tensor *hand_forward(qat_ctx *ctx, hand_net *hn, const qat_model *m, qat_tensor *x) {
    qat_tensor *h = hand_cba(ctx, hn, m, x, "features.0", 1, 1, 1, QAT_ACT_RELU6), *in;
    in = h; /* ir t=2 c=8: expand 8->16, dw, project 16->8, + input */
    h = hand_cba(ctx, hn, m, h, "features.1.body.0", 1, 0, 1, QAT_ACT_RELU6);
    h = hand_cba(ctx, hn, m, h, "features.1.body.1", 1, 1, 16, QAT_ACT_RELU6);
    h = hand_cba(ctx, hn, m, h, "features.1.body.2", 1, 0, 1, QAT_ACT_NONE);
    h = qat_add(ctx, h, in);
    /* ds c=16 s=2 k=5 */
    h = hand_cba(ctx, hn, m, h, "features.2.body.0", 2, 2, 8, QAT_ACT_HARDSWISH);
    h = hand_cba(ctx, hn, m, h, "features.2.body.1", 1, 0, 1, QAT_ACT_HARDSWISH);
    in = h; /* ir t=1 c=16: dw, project, + input */
    h = hand_cba(ctx, hn, m, h, "features.3.body.0", 1, 1, 16, QAT_ACT_RELU);
    h = hand_cba(ctx, hn, m, h, "features.3.body.1", 1, 0, 1, QAT_ACT_NONE);
    h = qat_add(ctx, h, in);
    h = hand_cba(ctx, hn, m, h, "features.4", 1, 0, 1, QAT_ACT_NONE);
    h = qat_global_avgpool(ctx, h);
    return qat_linear(ctx, h, hand(hn->hp, &hn->np, m, "fc.weight"),
                      hand(hn->hp, &hn->np, m, "fc.bias"));
}

static void hand_free(hand_net *hn) {
    for (int i = 0; i < hn->np; i++) {
        free(hn->hp[i].data);
        free(hn->hp[i].grad);
    }
}

/* Random BN affine parameters and running statistics, so eval mode is not the identity. */
static void randomize_bn(qat_model *m, uint64_t seed) {
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (L->kind != QAT_LAYER_CONV_BN_ACT) continue;
        for (int c = 0; c < L->out_c; c++) {
            L->gamma.data[c] = 1.0f + 0.3f * qat_rng_normal(&r);
            L->beta.data[c] = 0.2f * qat_rng_normal(&r);
            L->bn.running_mean[c] = 0.2f * qat_rng_normal(&r);
            L->bn.running_var[c] = 0.5f + qat_rng_uniform(&r);
        }
    }
    for (int c = 0; c < m->nclasses; c++)
        m->layers[m->nlayers - 1].bias.data[c] = 0.1f * qat_rng_normal(&r);
}

static void check_forward_matches(int training) {
    qat_model *m = build(small_spec, 1, 0.0f, 9, 7, 3, 5);
    if (!m) return;
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_ADD), 2);
    qat_rng r;
    qat_rng_seed(&r, 11);
    qat_model_init(m, &r);
    randomize_bn(m, 12);
    hand_net *hn = calloc(1, sizeof *hn);
    qat_ctx ca, cb;
    qat_ctx_init(&ca, 1 << 20);
    qat_ctx_init(&cb, 1 << 20);
    ca.training = cb.training = training;
    qat_tensor *xa = input_tensor(&ca, 4, 9, 7, 3, 13), *xb = input_tensor(&cb, 4, 9, 7, 3, 13);
    qat_tensor *hb = hand_forward(&cb, hn, m, xb); /* before the model updates its stats */
    qat_tensor *ya = qat_model_forward(m, &ca, xa);
    CU_ASSERT_FATAL(ya != NULL);
    CU_ASSERT(ya->ndim == 2 && ya->shape[0] == 4 && ya->shape[1] == 5);
    CU_ASSERT(hb->numel == ya->numel);
    test_compare(training ? "train forward" : "eval forward", ya->data, hb->data, ya->numel,
                 1e-6);
    /* the same running-statistics updates */
    for (int i = 0, k = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (L->kind != QAT_LAYER_CONV_BN_ACT) continue;
        test_compare("running mean", L->bn.running_mean, hn->bn[k].running_mean, L->out_c, 1e-6);
        test_compare("running var", L->bn.running_var, hn->bn[k].running_var, L->out_c, 1e-6);
        k++;
    }
    /* gradients land in m->grads where the hand graph's own grads say */
    int labels[4] = {0, 3, 4, 1};
    qat_model_zero_grad(m);
    qat_backward(&ca, qat_softmax_cross_entropy(&ca, ya, labels, 0.0f));
    qat_backward(&cb, qat_softmax_cross_entropy(&cb, hb, labels, 0.0f));
    double total = 0;
    for (int i = 0; i < hn->np; i++) {
        const qat_tensor *t = &hn->hp[i].t;
        int s = qat_model_find_param(m, t->name);
        CU_ASSERT_FATAL(s >= 0);
        test_compare(t->name, m->grads + m->segs[s].offset, t->grad, t->numel, 1e-5);
        for (int64_t j = 0; j < t->numel; j++) total += fabs(t->grad[j]);
    }
    CU_ASSERT(total > 0); /* the comparison above is not between two zero arrays */
    CU_ASSERT_EQUAL(hn->np, m->nsegs);
    hand_free(hn);
    free(hn);
    qat_ctx_free(&ca);
    qat_ctx_free(&cb);
    qat_model_free(m);
}

/* MobileNetV3: hardswish stem, a v3 block without expand (e == in) with SE and a residual, a
 * strided 5x5 v3 block with expand, SE and hardswish; against the ops composed by hand. */
static const char *v3_small_spec =
    "name v3small\n"
    "stem conv k=3 c=8 s=1 act=hardswish\n"
    "block v3 e=8 c=8 k=3 s=1 se=1 act=relu\n"
    "block v3 e=24 c=16 k=5 s=2 se=1 act=hardswish\n"
    "pool avg\n"
    "classifier\n";

static qat_tensor *hand_se(qat_ctx *ctx, hand_net *hn, const qat_model *m, qat_tensor *x,
                           const char *layer) {
    char w[80], b[80];
    qat_tensor *g = qat_global_avgpool(ctx, x);
    snprintf(w, sizeof w, "%s.fc1.weight", layer), snprintf(b, sizeof b, "%s.fc1.bias", layer);
    g = qat_relu(ctx, qat_linear(ctx, g, hand(hn->hp, &hn->np, m, w), hand(hn->hp, &hn->np, m, b)));
    snprintf(w, sizeof w, "%s.fc2.weight", layer), snprintf(b, sizeof b, "%s.fc2.bias", layer);
    g = qat_linear(ctx, g, hand(hn->hp, &hn->np, m, w), hand(hn->hp, &hn->np, m, b));
    return qat_channel_mul(ctx, x, qat_hardsigmoid(ctx, g));
}

static qat_tensor *hand_forward_v3(qat_ctx *ctx, hand_net *hn, const qat_model *m, qat_tensor *x) {
    qat_tensor *h = hand_cba(ctx, hn, m, x, "features.0", 1, 1, 1, QAT_ACT_HARDSWISH), *in = h;
    h = hand_cba(ctx, hn, m, h, "features.1.block.0", 1, 1, 8, QAT_ACT_RELU);
    h = hand_se(ctx, hn, m, h, "features.1.block.1");
    h = hand_cba(ctx, hn, m, h, "features.1.block.2", 1, 0, 1, QAT_ACT_NONE);
    h = qat_add(ctx, h, in);
    h = hand_cba(ctx, hn, m, h, "features.2.block.0", 1, 0, 1, QAT_ACT_HARDSWISH);
    h = hand_cba(ctx, hn, m, h, "features.2.block.1", 2, 2, 24, QAT_ACT_HARDSWISH);
    h = hand_se(ctx, hn, m, h, "features.2.block.2");
    h = hand_cba(ctx, hn, m, h, "features.2.block.3", 1, 0, 1, QAT_ACT_NONE);
    h = qat_global_avgpool(ctx, h);
    return qat_linear(ctx, h, hand(hn->hp, &hn->np, m, "fc.weight"), hand(hn->hp, &hn->np, m, "fc.bias"));
}

static void test_forward_matches_ops_v3(void) {
    qat_model *m = build(v3_small_spec, 1, 0.0f, 9, 7, 3, 5);
    if (!m) return;
    /* records: stem + hswish, [dw, SE x5, project, add], [expand + hswish, dw + hswish, SE x5,
     * project], pool, fc */
    CU_ASSERT_EQUAL(m->nlayers, 2 + 8 + 10 + 2);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_ACT), 5);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_FC), 4);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_CHANNEL_MUL), 2);
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_ADD), 1);
    /* SE squeeze = make_divisible(e / 4, 8): 8 for both */
    CU_ASSERT(param(m, "features.2.block.2.fc1.weight") && param(m, "features.2.block.2.fc1.weight")->shape[0] == 8);
    for (int training = 0; training < 2; training++) {
        qat_rng r;
        qat_rng_seed(&r, 11);
        qat_model_init(m, &r);
        randomize_bn(m, 12);
        for (int64_t i = 0; i < m->nparams; i++) /* biases too, so the SE convs' are not all 0 */
            m->params[i] += 0.05f * qat_rng_normal(&r);
        hand_net *hn = calloc(1, sizeof *hn);
        qat_ctx ca, cb;
        qat_ctx_init(&ca, 1 << 20);
        qat_ctx_init(&cb, 1 << 20);
        ca.training = cb.training = training;
        qat_tensor *xa = input_tensor(&ca, 4, 9, 7, 3, 13), *xb = input_tensor(&cb, 4, 9, 7, 3, 13);
        qat_tensor *hb = hand_forward_v3(&cb, hn, m, xb);
        qat_tensor *ya = qat_model_forward(m, &ca, xa);
        CU_ASSERT_FATAL(ya != NULL && hb->numel == ya->numel);
        test_compare(training ? "v3 train forward" : "v3 eval forward", ya->data, hb->data, ya->numel, 1e-6);
        int labels[4] = {0, 3, 4, 1};
        qat_model_zero_grad(m);
        qat_backward(&ca, qat_softmax_cross_entropy(&ca, ya, labels, 0.0f));
        qat_backward(&cb, qat_softmax_cross_entropy(&cb, hb, labels, 0.0f));
        double total = 0;
        for (int i = 0; i < hn->np; i++) {
            const qat_tensor *t = &hn->hp[i].t;
            int s = qat_model_find_param(m, t->name);
            CU_ASSERT_FATAL(s >= 0);
            test_compare(t->name, m->grads + m->segs[s].offset, t->grad, t->numel, 1e-5);
            for (int64_t j = 0; j < t->numel; j++) total += fabs(t->grad[j]);
        }
        CU_ASSERT(total > 0);
        CU_ASSERT_EQUAL(hn->np, m->nsegs);
        hand_free(hn);
        free(hn);
        qat_ctx_free(&ca);
        qat_ctx_free(&cb);
    }
    qat_model_free(m);
}

static void test_forward_matches_ops_eval(void) { check_forward_matches(0); }
static void test_forward_matches_ops_train(void) { check_forward_matches(1); }

/* Sets every parameter and buffer from the formula of the golden script at the top. */
static void golden_fill(qat_model *m) {
    int seg = 0; /* index in PyTorch's state_dict without num_batches_tracked */
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (L->kind == QAT_LAYER_CONV_BN_ACT) {
            int O = L->out_c, K = L->k, I = L->in_c / L->groups;
            for (int o = 0; o < O; o++)
                for (int kh = 0; kh < K; kh++)
                    for (int kw = 0; kw < K; kw++)
                        for (int c = 0; c < I; c++)
                            L->weight.data[((o * K + kh) * K + kw) * I + c] =
                                (float)(sin(0.31 * o + 0.17 * c + 0.013 * o * c + 0.57 * kh +
                                            0.73 * kw + seg) *
                                        sqrt(3.0 / (I * K * K)));
            for (int c = 0; c < O; c++) {
                L->gamma.data[c] = (float)(1.0 + 0.2 * sin(0.43 * c + seg + 1));
                L->beta.data[c] = (float)(0.1 * sin(0.43 * c + seg + 2));
                L->bn.running_mean[c] = (float)(0.1 * sin(0.43 * c + seg + 3));
                double s = sin(0.43 * c + seg + 4);
                L->bn.running_var[c] = (float)(1.0 + 0.5 * s * s);
            }
            seg += 5;
        } else if (L->kind == QAT_LAYER_LINEAR) {
            int O = L->out_c, I = L->in_c;
            for (int o = 0; o < O; o++)
                for (int c = 0; c < I; c++)
                    L->weight.data[o * I + c] =
                        (float)(sin(0.31 * o + 0.17 * c + 0.013 * o * c + seg) * sqrt(3.0 / I));
            for (int o = 0; o < O; o++) L->bias.data[o] = (float)(0.1 * sin(0.43 * o + seg + 1));
            seg += 2;
        }
    }
}

static void test_pytorch_golden(void) {
    qat_model *m = build("mbv2-tiny", 0, 0.0f, 28, 28, 1, 10);
    if (!m) return;
    golden_fill(m);
    for (int training = 0; training <= 1; training++) {
        qat_ctx ctx;
        qat_ctx_init(&ctx, 1 << 20);
        ctx.training = training;
        ctx.grad_enabled = 0;
        qat_tensor *x = qat_tensor_4d(&ctx, 2, 28, 28, 1);
        for (int n = 0; n < 2; n++)
            for (int h = 0; h < 28; h++)
                for (int w = 0; w < 28; w++)
                    x->data[(n * 28 + h) * 28 + w] =
                        (float)sin(0.21 * h + 0.13 * w + 0.05 * h * w / 28 + 1.7 * n);
        qat_tensor *y = qat_model_forward(m, &ctx, x);
        CU_ASSERT_FATAL(y != NULL && y->numel == 20);
        test_compare(training ? "PyTorch train-mode logits" : "PyTorch eval-mode logits", y->data,
                     training ? &golden_train[0][0] : &golden_eval[0][0], 20, 2e-4);
        qat_ctx_free(&ctx);
    }
    qat_model_free(m);
}

/* ---- spec parsing ---------------------------------------------------------------------- */

#define STEM "stem conv c=8\n"
#define CLS "classifier\n"

static void test_malformed_specs(void) {
    static const struct {
        const char *text;
        int line;
        const char *says;
    } cases[] = {
        {STEM "block ir c=8 q=float\n" CLS, 2, "unknown key 'q'"},
        {STEM "block xx c=8\n" CLS, 2, "unknown block kind 'xx'"},
        {STEM "block ir c=8 act=gelu\n" CLS, 2, "unknown act 'gelu'"},
        {"stem conv c=0\n" CLS, 1, "c=0 out of range"},
        {STEM "block ds c=-8\n" CLS, 2, "c=-8 out of range"},
        {STEM "block ir c=8 s=0\n" CLS, 2, "s=0 out of range"},
        {STEM "block ir c=8 k=4\n" CLS, 2, "k=4 must be odd"},
        {STEM "block ir c=8 k=0\n" CLS, 2, "k=0 out of range"},
        {"stem conv c=8 k=-1\n" CLS, 1, "k=-1 out of range"},
        {"name a\n\n# comment only\n" CLS, 4, "before the stem"},
        {"name a\n# nothing else\n", 2, "no stem line"},
        {"", 1, "no stem line"},
        {"name a\n" STEM "block ir c=8\n", 3, "no classifier line"},
        {"name a\n" STEM "name b\n" CLS, 3, "duplicate name"},
        {STEM "block ir c=12x\n" CLS, 2, "c='12x' is not an integer"},
        {STEM "block ir c=8 k=3.5\n" CLS, 2, "k='3.5' is not an integer"},
        {STEM "block ir c=\n" CLS, 2, "c='' is not an integer"},
        {STEM "block ir c=99999999999999999999\n" CLS, 2, "is not an integer"},
        {STEM "classifier dropout=abc\n", 2, "dropout='abc' is not a finite number"},
        {STEM "classifier dropout=nan\n", 2, "is not a finite number"},
        {STEM "classifier dropout=1.0\n", 2, "dropout=1 out of range"},
        {"width 0.5x\n" STEM CLS, 1, "width '0.5x' is not a finite number"},
        {"width 0\n" STEM CLS, 1, "width 0 out of range"},
        {"width 17\n" STEM CLS, 1, "width 17 out of range"},
        {STEM "block ir t=4 c=8 n=64\nblock ir t=4 c=8 n=64\n" CLS, 3, /* 1 + 256 + 256 */
         "too many layers"},
        {STEM "block ir c=8 n=65\n" CLS, 2, "n=65 out of range"},
        {STEM "block ir c=8 t=0\n" CLS, 2, "t=0 out of range"},
        {STEM "block ir c\n" CLS, 2, "expected key=value, got 'c'"},
        {STEM "block ir =8\n" CLS, 2, "expected key=value"},
        {STEM "block ir c=8 c=16\n" CLS, 2, "key 'c' given twice"},
        {"stem conv k=3\n" CLS, 1, "missing required key c="},
        {"block ir c=8\n" STEM CLS, 1, "block before the stem"},
        {STEM "head conv c=16\nblock ir c=8\n" CLS, 3, "block after the head"},
        {STEM "head conv c=16\nhead conv c=16\n" CLS, 3, "duplicate head"},
        {STEM STEM CLS, 2, "duplicate stem"},
        {STEM CLS CLS, 3, "duplicate classifier"},
        {STEM CLS "pool avg\n", 3, "pool after the classifier"},
        {STEM "pool avg\npool avg\n" CLS, 3, "duplicate pool"},
        {STEM "pool max\n" CLS, 2, "unknown pool kind 'max'"},
        {STEM "pool avg\nhead conv c=8\n" CLS, 3, "head after the pool"},
        {STEM "layer conv c=8\n" CLS, 2, "unknown line 'layer'"},
        {STEM "block\n" CLS, 2, "block: missing kind"},
        {STEM "block c=8\n" CLS, 2, "block: missing kind"},
        {"stem depthwise c=8\n" CLS, 1, "unknown stem kind 'depthwise'"},
        {"name bad/name\n" STEM CLS, 1, "name 'bad/name'"},
        {"name\n" STEM CLS, 1, "name: expected one word"},
        {STEM "block ir c=8\x01\n" CLS, 2, "control character 0x01"},
        {STEM "block ir c=8 s=9\n" CLS, 2, "s=9 out of range"},
        {STEM "block ir c=4097\n" CLS, 2, "c=4097 out of range"},
        {STEM "classifier bias=0\n", 2, "classifier: unknown key 'bias'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qat_spec *s = (qat_spec *)1;
        qat_status st = qat_spec_parse(cases[i].text, "bad.spec", &s);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "bad.spec:%d: ", cases[i].line);
        const char *msg = qat_last_error();
        int ok = st == QAT_ERR_SPEC && s == NULL && !strncmp(msg, prefix, strlen(prefix)) &&
                 strstr(msg, cases[i].says) && !strchr(msg, '\n');
        if (!ok)
            printf("\n  case %zu: status %d, message \"%s\"; expected \"%s...%s\"\n", i, st, msg,
                   prefix, cases[i].says);
        CU_ASSERT(ok);
        if (st == QAT_OK) qat_spec_free(s);
    }
}

static void test_spec_defaults_and_canonical(void) {
    qat_spec *s;
    CU_ASSERT_FATAL(qat_spec_parse("stem conv c=16   # trailing comment\r\n"
                                   "\tblock  ir c=24 s=2 t=6\n"
                                   "block ds c=32\n"
                                   "head conv c=64 act=hardswish\n"
                                   "classifier dropout=0.2",
                                   "dir/my-net.spec", &s) == QAT_OK);
    CU_ASSERT_STRING_EQUAL(qat_spec_name(s), "my-net"); /* from the file name */
    CU_ASSERT_EQUAL(s->nstages, 4);
    const qat_spec_stage *st = &s->stages[1];
    CU_ASSERT(st->kind == QAT_STAGE_IR && st->t == 6 && st->c == 24 && st->n == 1 && st->s == 2 &&
              st->k == 3 && st->act == QAT_ACT_RELU6 && st->line == 2);
    CU_ASSERT(s->stages[0].k == 3 && s->stages[0].s == 1);
    CU_ASSERT(s->stages[3].k == 1 && s->stages[3].act == QAT_ACT_HARDSWISH);
    CU_ASSERT(s->has_head && s->pool == QAT_POOL_AVG);
    CU_ASSERT_EQUAL(s->dropout, 0.2f);
    CU_ASSERT_EQUAL(s->width, 1.0f);
    const char *expect = "name my-net\n"
                         "width 1\n"
                         "stem conv k=3 c=16 s=1 act=relu6 wbits=0 quant=1\n"
                         "block ir t=6 c=24 n=1 s=2 k=3 act=relu6 wbits=0 quant=1\n"
                         "block ds c=32 n=1 s=1 k=3 act=relu6 wbits=0 quant=1\n"
                         "head conv k=1 c=64 s=1 act=hardswish wbits=0 quant=1\n"
                         "pool avg\n"
                         "classifier dropout=0.2\n";
    CU_ASSERT_STRING_EQUAL(qat_spec_text(s), expect);
    /* the original text is kept as given */
    CU_ASSERT(strstr(s->text, "# trailing comment") != NULL);
    /* canonical text parses to itself; a copy is independent */
    qat_spec *t, *c;
    CU_ASSERT_FATAL(qat_spec_parse(qat_spec_text(s), "canon", &t) == QAT_OK);
    CU_ASSERT_STRING_EQUAL(qat_spec_text(t), expect);
    CU_ASSERT_FATAL(qat_spec_copy(s, &c) == QAT_OK);
    qat_spec_free(s);
    CU_ASSERT_STRING_EQUAL(qat_spec_text(c), expect);
    CU_ASSERT_EQUAL(c->stages[1].t, 6);
    qat_spec_free(t);
    qat_spec_free(c);

    /* floats round-trip */
    CU_ASSERT_FATAL(qat_spec_parse("name w\nwidth 0.35\n" STEM "classifier dropout=0.1\n", NULL,
                                   &s) == QAT_OK);
    CU_ASSERT(strstr(qat_spec_text(s), "width 0.35\n") != NULL);
    CU_ASSERT(strstr(qat_spec_text(s), "dropout=0.1\n") != NULL);
    qat_spec_free(s);

    /* every preset's canonical text rebuilds the same model */
    for (int i = 0; i < qat_spec_num_presets(); i++) {
        qat_spec *p;
        CU_ASSERT_FATAL(qat_spec_load(qat_spec_preset_name(i), &p) == QAT_OK);
        CU_ASSERT_STRING_EQUAL(qat_spec_name(p), qat_spec_preset_name(i));
        qat_model *a = build(qat_spec_preset_name(i), 0, 0.0f, 28, 28, 1, 10);
        qat_model *b = build(qat_spec_text(p), 1, 0.0f, 28, 28, 1, 10);
        if (a && b) {
            CU_ASSERT_EQUAL(a->nparams, b->nparams);
            CU_ASSERT_EQUAL(a->nlayers, b->nlayers);
            CU_ASSERT_STRING_EQUAL(qat_spec_text(a->spec), qat_spec_text(b->spec));
        }
        qat_model_free(a);
        qat_model_free(b);
        qat_spec_free(p);
    }
    CU_ASSERT(qat_spec_preset("mbv2-tiny") != NULL);
    CU_ASSERT(qat_spec_preset("mbv3-huge") == NULL);
    CU_ASSERT(qat_spec_preset_name(-1) == NULL && qat_spec_preset_name(99) == NULL);
}

/* Reads a whole file, or returns NULL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The directory of preset files: tests run from the repository root, or from elsewhere with
 * this file's path (as the compiler saw it) pointing back at the tree. */
static const char *presets_dir(void) {
    static char dir[512];
    const char *cands[] = {"layers/presets", "../layers/presets"};
    for (size_t i = 0; i < 2; i++)
        if (access(cands[i], R_OK) == 0) return cands[i];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (!slash) return NULL;
    snprintf(slash, sizeof dir - (size_t)(slash - dir), "/../layers/presets");
    return access(dir, R_OK) == 0 ? dir : NULL;
}

static void test_presets_match_files(void) {
    const char *dir = presets_dir();
    if (!dir) {
        CU_FAIL("layers/presets not found (run the tests from the repository root)");
        return;
    }
    for (int i = 0; i < qat_spec_num_presets(); i++) {
        char path[640];
        snprintf(path, sizeof path, "%s/%s.spec", dir, qat_spec_preset_name(i));
        size_t n = 0;
        char *text = slurp(path, &n);
        if (!text) printf("\n  cannot read %s\n", path);
        CU_ASSERT_FATAL(text != NULL);
        int same = n == strlen(qat_spec_preset_text(i)) && !memcmp(text, qat_spec_preset_text(i), n);
        if (!same) printf("\n  %s differs from layers/presets.c: run scripts/embed_presets.sh\n",
                          path);
        CU_ASSERT(same);
        free(text);
    }
    /* and no .spec file is missing from presets.c */
    DIR *d = opendir(dir);
    CU_ASSERT_FATAL(d != NULL);
    int nfiles = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".spec")) nfiles++;
    }
    closedir(d);
    CU_ASSERT_EQUAL(nfiles, qat_spec_num_presets());
}

static void test_load_files(void) {
    char dir[] = "/tmp/qat_layers_XXXXXX";
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    char good[600], bad[600], bin[600];
    snprintf(good, sizeof good, "%s/tiny net.spec", dir);
    snprintf(bad, sizeof bad, "%s/bad.spec", dir);
    snprintf(bin, sizeof bin, "%s/binary.spec", dir);
    FILE *f = fopen(good, "w");
    fputs("stem conv c=8 s=2\nblock ds c=16 s=2\nclassifier\n", f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("# a comment\nstem conv c=8\nblock ir c=8 act=swish\nclassifier\n", f);
    fclose(f);
    f = fopen(bin, "w");
    fwrite("stem conv c=8\n\0\0\0", 1, 17, f);
    fclose(f);

    qat_spec *s;
    CU_ASSERT(qat_spec_load(good, &s) == QAT_OK);
    if (s) {
        CU_ASSERT_STRING_EQUAL(qat_spec_name(s), "tiny_net");
        qat_model *m = NULL;
        CU_ASSERT(qat_model_create(s, 0, 8, 8, 3, 4, &m) == QAT_OK);
        if (m) CU_ASSERT(m->layers[1].out_h == 2 && m->layers[1].in_h == 4);
        qat_model_free(m);
        qat_spec_free(s);
    }
    CU_ASSERT(qat_spec_load(bad, &s) == QAT_ERR_SPEC && s == NULL);
    char expect[700];
    snprintf(expect, sizeof expect, "%s:3: block ir: unknown act 'swish'", bad);
    CU_ASSERT(strncmp(qat_last_error(), expect, strlen(expect)) == 0);
    CU_ASSERT(qat_spec_load(bin, &s) == QAT_ERR_SPEC);
    CU_ASSERT(strstr(qat_last_error(), "NUL") != NULL);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.spec", dir);
    CU_ASSERT(qat_spec_load(missing, &s) == QAT_ERR_IO && s == NULL);
    CU_ASSERT(strstr(qat_last_error(), "nope.spec") && strstr(qat_last_error(), "mbv2-tiny"));
    CU_ASSERT(qat_spec_load("mbv9-tiny", &s) == QAT_ERR_IO);

    remove(good);
    remove(bad);
    remove(bin);
    CU_ASSERT(rmdir(dir) == 0);
}

static void test_shape_errors(void) {
    qat_spec *s;
    CU_ASSERT_FATAL(qat_spec_load("mbv2-tiny", &s) == QAT_OK);
    qat_model *m = NULL;
    /* 8x8 -> 4 -> 2 -> 1: fine */
    CU_ASSERT(qat_model_create(s, 0, 8, 8, 1, 10, &m) == QAT_OK);
    qat_model_free(m);
    m = NULL;
    /* 4x4 -> 2 -> 1, then the third stride-2 stage (line 10 of the preset) has nothing left */
    CU_ASSERT(qat_model_create(s, 0, 4, 4, 1, 10, &m) == QAT_ERR_SHAPE && m == NULL);
    CU_ASSERT(strncmp(qat_last_error(), "layers/presets/mbv2-tiny.spec:10: ", 34) == 0);
    CU_ASSERT(strstr(qat_last_error(), "stride 2") != NULL);
    /* a 1-pixel-high input fails at the first stride */
    CU_ASSERT(qat_model_create(s, 0, 1, 28, 1, 10, &m) == QAT_ERR_SHAPE);
    CU_ASSERT(strstr(qat_last_error(), "mbv2-tiny.spec:8: ") != NULL);
    /* arguments */
    CU_ASSERT(qat_model_create(s, 0, 28, 28, 0, 10, &m) == QAT_ERR_ARG);
    CU_ASSERT(qat_model_create(s, 0, 28, 28, 1, 0, &m) == QAT_ERR_ARG);
    CU_ASSERT(qat_model_create(s, 0, 0, 28, 1, 10, &m) == QAT_ERR_ARG);
    CU_ASSERT(qat_model_create(s, 17.0f, 28, 28, 1, 10, &m) == QAT_ERR_ARG);
    CU_ASSERT(qat_model_create(s, NAN, 28, 28, 1, 10, &m) == QAT_ERR_ARG);
    CU_ASSERT(m == NULL);
    qat_spec_free(s);
    /* non-square inputs keep their own sizes */
    CU_ASSERT_FATAL(qat_spec_parse("stem conv c=8 s=2\nblock ds c=8 s=2 k=5\nclassifier\n",
                                   NULL, &s) == QAT_OK);
    CU_ASSERT(qat_model_create(s, 0, 32, 9, 2, 3, &m) == QAT_OK);
    if (m) CU_ASSERT(m->layers[2].out_h == 8 && m->layers[2].out_w == 3);
    qat_model_free(m);
    qat_spec_free(s);
}

/* ---- init, flags, grads ---------------------------------------------------------------- */

static void stats(const float *x, int64_t n, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int64_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(s2 / n);
}

static void test_init_statistics(void) {
    qat_model *m = build("mbv2-tiny", 0, 0.0f, 28, 28, 1, 10);
    if (!m) return;
    /* garbage first: init must reset everything it owns */
    for (int64_t i = 0; i < m->nparams; i++) m->params[i] = 7.0f;
    for (int64_t i = 0; i < m->nbuffers; i++) m->buffers[i] = 7.0f;
    qat_rng r;
    qat_rng_seed(&r, 42);
    qat_model_init(m, &r);
    static const struct { const char *name; double std; } big[] = {
        {"features.7.body.0.0.weight", 0.08838834764831845}, /* 1x1 64->256: sqrt(2/256) */
        {"features.7.body.2.0.weight", 0.17677669529663687}, /* 1x1 256->64: sqrt(2/64) */
        {"features.7.body.1.0.weight", 0.02946278254943948}, /* dw 3x3 x256: sqrt(2/2304) */
        {"fc.weight", 0.01},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        const qat_tensor *t = param(m, big[i].name);
        CU_ASSERT_FATAL(t != NULL);
        double mean, std;
        stats(t->data, t->numel, &mean, &std);
        if (fabs(std / big[i].std - 1) > 0.1 || fabs(mean) > 4 * big[i].std / sqrt(t->numel))
            printf("\n  %s: mean %g std %g, expected std %g\n", big[i].name, mean, std,
                   big[i].std);
        CU_ASSERT(fabs(std / big[i].std - 1) < 0.1);
        CU_ASSERT(fabs(mean) < 4 * big[i].std / sqrt(t->numel));
    }
    for (int i = 0; i < m->nlayers; i++) {
        const qat_layer *L = &m->layers[i];
        if (L->kind == QAT_LAYER_CONV_BN_ACT)
            for (int c = 0; c < L->out_c; c++) {
                CU_ASSERT(L->gamma.data[c] == 1.0f && L->beta.data[c] == 0.0f);
                CU_ASSERT(L->bn.running_mean[c] == 0.0f && L->bn.running_var[c] == 1.0f);
            }
        if (L->kind == QAT_LAYER_LINEAR)
            for (int c = 0; c < L->out_c; c++) CU_ASSERT(L->bias.data[c] == 0.0f);
    }
    /* same seed, same weights */
    float *copy = malloc((size_t)m->nparams * sizeof(float));
    memcpy(copy, m->params, (size_t)m->nparams * sizeof(float));
    qat_rng_seed(&r, 42);
    qat_model_init(m, &r);
    CU_ASSERT(memcmp(copy, m->params, (size_t)m->nparams * sizeof(float)) == 0);
    free(copy);
    qat_model_free(m);
}

static void test_param_layout_and_decay(void) {
    qat_model *m = build(small_spec, 1, 0.0f, 9, 7, 3, 5);
    qat_model *v2 = build("mbv2-tiny", 0, 0.0f, 28, 28, 1, 10);
    qat_model *models[2] = {m, v2};
    for (int k = 0; k < 2; k++) {
        qat_model *x = models[k];
        if (!x) continue;
        int64_t off = 0, sum = 0;
        for (int i = 0; i < x->nsegs; i++) {
            const qat_param_seg *s = &x->segs[i];
            const qat_param_info *pi = &x->param_info[i];
            CU_ASSERT_EQUAL(s->offset, off); /* contiguous, in order */
            CU_ASSERT_EQUAL(s->numel, pi->tensor->numel);
            CU_ASSERT(pi->tensor->data == x->params + s->offset);
            CU_ASSERT(pi->tensor->grad == x->grads + s->offset);
            CU_ASSERT(pi->tensor->requires_grad && pi->tensor->persistent);
            CU_ASSERT_STRING_EQUAL(pi->tensor->name, pi->name);
            /* decay: conv and linear weights only; BN gamma/beta and biases never */
            const qat_layer *L = &x->layers[pi->layer];
            int is_weight = pi->tensor == &L->weight;
            CU_ASSERT_EQUAL(s->decay, is_weight);
            CU_ASSERT_EQUAL(s->decay, pi->tensor->ndim >= 2);
            size_t l = strlen(pi->name);
            CU_ASSERT(is_weight == (l > 7 && !strcmp(pi->name + l - 7, ".weight") &&
                                    (L->kind == QAT_LAYER_LINEAR ||
                                     !strcmp(pi->name + l - 9, ".0.weight"))));
            for (int j = 0; j < i; j++) CU_ASSERT(strcmp(x->param_info[j].name, pi->name) != 0);
            off += s->numel;
            sum += s->numel;
        }
        CU_ASSERT_EQUAL(sum, x->nparams);
        int64_t boff = 0;
        for (int i = 0; i < x->nbuffer_segs; i++) {
            CU_ASSERT_EQUAL(x->buffer_info[i].offset, boff);
            boff += x->buffer_info[i].numel;
        }
        CU_ASSERT_EQUAL(boff, x->nbuffers);
        CU_ASSERT_EQUAL(x->nbuffer_segs, 2 * count_kind(x, QAT_LAYER_CONV_BN_ACT));
    }
    qat_model_free(m);
    qat_model_free(v2);
}

static void test_zero_grad_and_bn_freeze(void) {
    qat_model *m = build(small_spec, 1, 0.0f, 9, 7, 3, 5);
    if (!m) return;
    qat_rng r;
    qat_rng_seed(&r, 3);
    qat_model_init(m, &r);
    for (int64_t i = 0; i < m->nparams; i++) m->grads[i] = 1.5f;
    qat_model_zero_grad(m);
    int64_t nonzero = 0;
    for (int64_t i = 0; i < m->nparams; i++) nonzero += m->grads[i] != 0.0f;
    CU_ASSERT_EQUAL(nonzero, 0);

    float *before = malloc((size_t)m->nbuffers * sizeof(float));
    memcpy(before, m->buffers, (size_t)m->nbuffers * sizeof(float));
    qat_model_set_bn_update(m, 0);
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == QAT_LAYER_CONV_BN_ACT) CU_ASSERT(!m->layers[i].bn.update_stats);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = 1;
    CU_ASSERT(qat_model_forward(m, &ctx, input_tensor(&ctx, 2, 9, 7, 3, 4)) != NULL);
    CU_ASSERT(memcmp(before, m->buffers, (size_t)m->nbuffers * sizeof(float)) == 0);
    qat_model_set_bn_update(m, 1);
    qat_ctx_reset(&ctx);
    CU_ASSERT(qat_model_forward(m, &ctx, input_tensor(&ctx, 2, 9, 7, 3, 4)) != NULL);
    CU_ASSERT(memcmp(before, m->buffers, (size_t)m->nbuffers * sizeof(float)) != 0);
    qat_ctx_free(&ctx);
    free(before);
    qat_model_free(m);
}

static void test_dropout_layer(void) {
    qat_model *m = build("stem conv c=8\nclassifier dropout=0.5\n", 1, 0.0f, 6, 6, 1, 3);
    if (!m) return;
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_DROPOUT), 1);
    CU_ASSERT(m->layers[m->nlayers - 2].kind == QAT_LAYER_DROPOUT &&
              m->layers[m->nlayers - 2].dropout == 0.5f);
    CU_ASSERT_EQUAL(m->nparams, 9 * 8 + 16 + 8 * 3 + 3);
    qat_model_free(m);
}

static void test_summary(void) {
    qat_model *m = build("mbv2-tiny", 0, 0.0f, 28, 28, 1, 10);
    if (!m) return;
    size_t need = qat_model_summary(m, NULL, 0);
    CU_ASSERT(need > 100);
    char *buf = malloc(need + 1);
    CU_ASSERT_EQUAL(qat_model_summary(m, buf, need + 1), need);
    CU_ASSERT_EQUAL(strlen(buf), need);
    CU_ASSERT(strstr(buf, "86,634 parameters") != NULL);
    CU_ASSERT(strstr(buf, "features.7.add") != NULL);
    CU_ASSERT(strstr(buf, "features.3.body.1") != NULL);
    CU_ASSERT(strstr(buf, "28x28x16") != NULL && strstr(buf, "4x4x128") != NULL);
    /* one line per layer plus three */
    int lines = 0;
    for (char *c = buf; *c; c++) lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, m->nlayers + 3);
    /* truncation keeps a NUL-terminated prefix */
    char small[40];
    CU_ASSERT_EQUAL(qat_model_summary(m, small, sizeof small), need);
    CU_ASSERT(strlen(small) == sizeof small - 1 && !strncmp(small, buf, sizeof small - 1));
    free(buf);
    qat_model_free(m);
}

/* MobileNetV2-1.0 at 32x32x3 (issue 19): torchvision's mobilenet_v2 parameter counts,
 * 3,504,872 with 1000 classes, so 3,504,872 - 1281 * 990 = 2,236,682 with 10 (strides and
 * input size change no parameter). */
static void test_mbv2_1_0_preset(void) {
    qat_model *m = build("mbv2-1.0", 0, 0.0f, 32, 32, 3, 1000);
    if (!m) return;
    CU_ASSERT_EQUAL(m->nparams, 3504872);
    /* stem, 2 units in the t=1 block, 3 in each of the 16 others, head */
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_CONV_BN_ACT), 52);
    /* stride 1 and in == out: 1 + 2 + 3 + 2 + 2 blocks of the 24..160 stages */
    CU_ASSERT_EQUAL(count_kind(m, QAT_LAYER_ADD), 10);
    qat_model_free(m);
    m = build("mbv2-1.0", 0, 0.0f, 32, 32, 3, 10);
    if (!m) return;
    CU_ASSERT_EQUAL(m->nparams, 2236682);
    qat_model_free(m);
}

void register_layers_tests(void) {
    test_add_suite("layers",
                   "mbv2-tiny: 86,634 params, 4.86 M MACs, (N, 10)", test_mbv2_tiny_reference,
                   "mbv1-tiny builds", test_mbv1_tiny_builds,
                   "mbv2-1.0: torchvision's 3,504,872 params (2,236,682 with 10 classes)", test_mbv2_1_0_preset,
                   "make_divisible matches torchvision", test_make_divisible,
                   "width multiplier 0.35..2.0", test_width_multiplier,
                   "forward == hand-composed ops (eval)", test_forward_matches_ops_eval,
                   "forward == hand-composed ops (train, grads)", test_forward_matches_ops_train,
                   "MobileNetV3 forward and grads == hand-composed ops", test_forward_matches_ops_v3,
                   "mbv2-tiny == PyTorch peer (golden logits)", test_pytorch_golden,
                   "malformed specs: file:line: problem", test_malformed_specs,
                   "defaults, canonical text, copies", test_spec_defaults_and_canonical,
                   "presets.c == layers/presets/*.spec", test_presets_match_files,
                   "load from files", test_load_files,
                   "shape errors name the spec line", test_shape_errors,
                   "init statistics (torchvision MobileNetV2)", test_init_statistics,
                   "parameter layout and decay flags", test_param_layout_and_decay,
                   "zero_grad and BN freeze", test_zero_grad_and_bn_freeze,
                   "classifier dropout layer", test_dropout_layer,
                   "summary table", test_summary,
                   NULL);
}
