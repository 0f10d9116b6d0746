/* The spec's general form (layer lines, docs/model-spec.md "General form"): a hand-written
 * graph builds the same model as the preset it spells out (same records, parameter names and
 * count, same forward bit for bit on the same weights); convs with a bias and no BN train; the
 * canonical text round-trips; malformed graphs fail with file:line: problem. */
#include "model.h"
#include "export.h"
#include "qmodel.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mbv2-tiny (layers/presets/mbv2-tiny.spec) written out layer by layer, with the preset's names
 * so the parameter names match too; 3 classes as test_random_model builds them. */
static const char *mbv2_graph =
    "name mbv2-tiny-graph\n"
    "layer features.0 conv in=input c=16 k=3 act=relu6\n"
    "layer features.1.body.0 conv c=16 k=3 g=16 act=relu6\n"
    "layer features.1.body.1 conv c=16\n"
    "layer features.1.add add in=features.1.body.1,features.0\n"
    "layer features.2.body.0 conv c=64 act=relu6\n"
    "layer features.2.body.1 conv c=64 k=3 s=2 g=64 act=relu6\n"
    "layer features.2.body.2 conv c=24\n"
    "layer features.3.body.0 conv c=96 act=relu6\n"
    "layer features.3.body.1 conv c=96 k=3 g=96 act=relu6\n"
    "layer features.3.body.2 conv c=24\n"
    "layer features.3.add add in=features.3.body.2,features.2.body.2\n"
    "layer features.4.body.0 conv c=96 act=relu6\n"
    "layer features.4.body.1 conv c=96 k=3 s=2 g=96 act=relu6\n"
    "layer features.4.body.2 conv c=32\n"
    "layer features.5.body.0 conv c=128 act=relu6\n"
    "layer features.5.body.1 conv c=128 k=3 g=128 act=relu6\n"
    "layer features.5.body.2 conv c=32\n"
    "layer features.5.add add in=features.5.body.2,features.4.body.2\n"
    "layer features.6.body.0 conv c=128 act=relu6\n"
    "layer features.6.body.1 conv c=128 k=3 s=2 g=128 act=relu6\n"
    "layer features.6.body.2 conv c=64\n"
    "layer features.7.body.0 conv c=256 act=relu6\n"
    "layer features.7.body.1 conv c=256 k=3 g=256 act=relu6\n"
    "layer features.7.body.2 conv c=64\n"
    "layer features.7.add add in=features.7.body.2,features.6.body.2\n"
    "layer features.8 conv c=128 act=relu6\n"
    "layer pool avgpool\n"
    "layer fc linear c=3\n";

static qat_tensor *random_input(qat_ctx *ctx, int n, int s, uint64_t seed) {
    qat_rng r;
    qat_rng_seed(&r, seed);
    qat_tensor *x = qat_tensor_4d(ctx, n, s, s, 1);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = qat_rng_normal(&r);
    return x;
}

static void test_graph_equals_preset(void) {
    const char *preset = qat_spec_preset("mbv2-tiny");
    CU_ASSERT_FATAL(preset != NULL);
    qat_spec *ps, *gs;
    qat_model *pm = test_random_model(preset, 28, &ps, 5);
    CU_ASSERT_FATAL(qat_spec_parse(mbv2_graph, "graph", &gs) == QAT_OK);
    qat_model *gm;
    CU_ASSERT_FATAL(qat_model_create(gs, 0, 28, 28, 1, 3, &gm) == QAT_OK);
    CU_ASSERT_EQUAL(gm->nparams, pm->nparams);
    CU_ASSERT_EQUAL(gm->nbuffers, pm->nbuffers);
    CU_ASSERT_EQUAL(gm->nlayers, pm->nlayers);
    CU_ASSERT_EQUAL(gm->macs, pm->macs);
    CU_ASSERT_FATAL(gm->nsegs == pm->nsegs);
    for (int i = 0; i < gm->nsegs; i++) CU_ASSERT_STRING_EQUAL(gm->param_info[i].name, pm->param_info[i].name);
    for (int i = 0; i < gm->nlayers && i < pm->nlayers; i++) {
        const qat_layer *a = &gm->layers[i], *b = &pm->layers[i];
        CU_ASSERT(a->kind == b->kind && a->nin == b->nin && a->in[0] == b->in[0] && a->in[1] == b->in[1]);
        CU_ASSERT(a->out_h == b->out_h && a->out_c == b->out_c && a->groups == b->groups && a->act == b->act);
    }
    memcpy(gm->params, pm->params, (size_t)pm->nparams * sizeof(float));
    memcpy(gm->buffers, pm->buffers, (size_t)pm->nbuffers * sizeof(float));
    for (int training = 0; training < 2; training++) {
        qat_ctx ctx;
        qat_ctx_init(&ctx, 1 << 24);
        ctx.training = training;
        qat_tensor *x = random_input(&ctx, 4, 28, 9);
        qat_tensor *yp = qat_model_forward(pm, &ctx, x), *yg = qat_model_forward(gm, &ctx, x);
        CU_ASSERT_FATAL(yp && yg && yp->numel == yg->numel);
        CU_ASSERT(!memcmp(yp->data, yg->data, (size_t)yp->numel * sizeof(float)));
        qat_ctx_free(&ctx);
    }
    /* canonical text: every key written out; parsing it gives the same text */
    const char *canon = qat_spec_text(gs);
    CU_ASSERT(strstr(canon, "layer features.1.add add in=features.1.body.1,features.0\n") != NULL);
    CU_ASSERT(strstr(canon, "layer features.2.body.1 conv in=features.2.body.0 c=64 k=3 s=2 pad=1 g=64 bn=1 act=relu6 wbits=0 quant=1\n") != NULL);
    qat_spec *again;
    CU_ASSERT_FATAL(qat_spec_parse(canon, "canon", &again) == QAT_OK);
    CU_ASSERT_STRING_EQUAL(qat_spec_text(again), canon);
    qat_spec_free(again);
    qat_model_free(pm), qat_model_free(gm);
    qat_spec_free(ps), qat_spec_free(gs);
}

/* A conv with a bias and no BN (bn=0): forward is conv2d + bias + act, both the weight and the
 * bias get gradients, and the fake-quant graph (QAT) trains it too. */
static void test_conv_bias_trains(void) {
    const char *text = "layer a conv in=input c=6 k=3 bn=0 act=relu6\n"
                       "layer b conv c=6 k=3 g=6 pad=0 bn=0\n"
                       "layer p avgpool\n"
                       "layer fc linear c=3\n";
    qat_spec *s;
    qat_model *m = test_random_model(text, 9, &s, 3);
    const qat_layer *A = &m->layers[0], *B = &m->layers[1];
    CU_ASSERT(A->conv_bias && B->conv_bias && A->bias.numel == 6 && A->gamma.data == NULL);
    CU_ASSERT_EQUAL(B->out_h, 7);
    CU_ASSERT_EQUAL(m->nparams, 6 * 9 + 6 + 6 * 9 + 6 + 3 * 6 + 3);
    CU_ASSERT(qat_model_find_param(m, "a.bias") >= 0 && qat_model_find_param(m, "b.weight") >= 0);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 22);
    ctx.training = 1;
    qat_tensor *x = random_input(&ctx, 2, 9, 4);
    qat_tensor *y = qat_model_forward(m, &ctx, x);
    CU_ASSERT_FATAL(y != NULL);
    int labels[2] = {0, 2};
    qat_model_zero_grad(m);
    qat_backward(&ctx, qat_softmax_cross_entropy(&ctx, y, labels, 0.0f));
    double gb = 0, gw = 0;
    for (int c = 0; c < 6; c++) gb += fabs(A->bias.grad[c]);
    for (int64_t i = 0; i < A->weight.numel; i++) gw += fabs(A->weight.grad[i]);
    CU_ASSERT(gb > 0 && gw > 0);
    qat_ctx_reset(&ctx);
    /* QAT: the fake-quant graph trains the bias as well */
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &cfg) == QAT_OK);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, QAT_OBS_MINMAX, &q) == QAT_OK);
    ctx.training = 1;
    x = random_input(&ctx, 2, 9, 4);
    qat_model_zero_grad(m);
    qat_tensor *yq = qat_quantized_forward(q, &ctx, x);
    CU_ASSERT_FATAL(yq != NULL);
    qat_backward(&ctx, qat_softmax_cross_entropy(&ctx, yq, labels, 0.0f));
    gb = 0;
    for (int c = 0; c < 6; c++) gb += fabs(B->bias.grad[c]);
    CU_ASSERT(gb > 0);
    qat_qmodel_free(q);
    qat_ctx_free(&ctx);
    qat_model_free(m);
    qat_spec_free(s);
}

static void expect_error(const char *text, int nclasses, const char *want) {
    qat_spec *s = NULL;
    qat_status st = qat_spec_parse(text, "g.spec", &s);
    if (!st) {
        qat_model *m = NULL;
        st = qat_model_create(s, 0, 9, 9, 1, nclasses, &m);
        qat_model_free(m);
        qat_spec_free(s);
    }
    CU_ASSERT(st != QAT_OK);
    const char *e = qat_last_error();
    if (!strstr(e, want)) printf("\n  expected '%s' in: %s\n", want, e);
    CU_ASSERT(strstr(e, want) != NULL);
}

static void test_graph_errors(void) {
    expect_error("layer a conv c=4\nlayer fc linear in=nope c=3\n", 3,
                 "g.spec:2: layer fc: input 'nope' is not an earlier layer");
    expect_error("layer a conv c=4 in=b\nlayer b avgpool\nlayer fc linear c=3\n", 3,
                 "g.spec:1: layer a: input 'b' is not an earlier layer");
    expect_error("layer a conv c=4\nlayer a avgpool\nlayer fc linear c=3\n", 3, "g.spec:2: layer 'a': name used twice");
    expect_error("layer a conv c=4\nlayer p avgpool\n", 3, "the last layer must be linear");
    expect_error("layer a conv c=4\nlayer s add in=a\nlayer fc linear c=3\n", 3, "g.spec:2: layer s: add takes 2 inputs, got 1");
    expect_error("layer a frob c=4\n", 3, "g.spec:1: layer a: unknown op 'frob'");
    expect_error("stem conv c=8\nlayer a conv c=4\n", 3, "g.spec:2: layer lines and stem/block lines cannot be mixed");
    expect_error("layer a conv c=4\nstem conv c=8\n", 3, "g.spec:2: stem line in a spec of layer lines");
    expect_error("layer a conv c=4 s=2\nlayer s add in=a,input\nlayer p avgpool\nlayer fc linear c=3\n", 3,
                 "g.spec:2: layer s: add of 5x5x4 and 9x9x1");
    expect_error("layer a conv c=4 g=3\nlayer p avgpool\nlayer fc linear c=3\n", 3, "g.spec:1: layer a: groups g=3");
    expect_error("layer a conv c=4\nlayer fc linear c=3\n", 3, "g.spec:2: layer fc: linear needs a vector input");
    expect_error("layer a conv c=4\nlayer p avgpool\nlayer fc linear c=5\n", 3, "layer fc: 5 outputs, but the data has 3 classes");
    expect_error("layer a conv c=4 k=15 pad=0\nlayer p avgpool\nlayer fc linear c=3\n", 3, "kernel 15 does not fit");
    expect_error("layer input conv c=4\n", 3, "g.spec:1: layer 'input': a name is");
    expect_error("layer a conv c=4 bn=2\n", 3, "g.spec:1: layer a: bn=2 out of range");
    /* the pools, fc and mul of imported models */
    expect_error("layer a conv c=4\nlayer m maxpool k=3 pad=2\n", 3, "g.spec:2: layer m: pad=2 is more than half the window k=3");
    expect_error("layer a conv c=4\nlayer m avgpool2d s=2\n", 3, "g.spec:2: layer m: missing required key k=");
    expect_error("layer a conv c=4 s=2 pad=0\nlayer m maxpool k=7\nlayer p avgpool\nlayer fc linear c=3\n", 3,
                 "g.spec:2: layer m: window 7 does not fit a 5x5 input padded by 0");
    expect_error("layer a conv c=4\nlayer f fc c=4\nlayer fc linear c=3\n", 3, "g.spec:2: layer f: fc needs a vector input");
    expect_error("layer a conv c=4\nlayer p avgpool\nlayer f fc c=4 act=hardswish\nlayer fc linear c=3\n", 3,
                 "g.spec:3: layer f: fc takes act=none, relu or relu6");
    expect_error("layer a conv c=4\nlayer p avgpool\nlayer f fc c=5\nlayer m mul in=a,f\nlayer q avgpool\n"
                 "layer fc linear c=3\n", 3, "g.spec:4: layer m: mul takes a (H, W, C) map and a (C) gate of its 4 channels");
    expect_error("layer a conv c=4\nlayer m mul in=a,a\nlayer p avgpool\nlayer fc linear c=3\n", 3,
                 "g.spec:2: layer m: mul takes a (H, W, C) map");
}

void register_graph_tests(void) {
    test_add_suite("graph",
                   "hand-written mbv2-tiny graph == the preset (params, forward bitwise)", test_graph_equals_preset,
                   "conv + bias without BN: forward, grads, QAT", test_conv_bias_trains,
                   "malformed graphs: file:line: problem", test_graph_errors,
                   NULL);
}
