/* Optimizers and LR schedules against the PyTorch formulas, written here again independently as
 * scalar double code (torch.optim.SGD with dampening 0, torch.optim.AdamW with amsgrad off,
 * OneCycleLR two-phase cos), plus a few values worked out by hand to check those references. */
#include "test_util.h"
#include "optim.h"
#include <math.h>
#include <omp.h>
#include <string.h>

/* ---- independent double references ------------------------------------------------------- */

typedef struct {
    double momentum, wd;
    int nesterov;
    double *buf;
    int has_buf;
} ref_sgd;

/* torch.optim.SGD._single_tensor_sgd for one tensor, in double. */
static void ref_sgd_step(ref_sgd *s, double *p, const double *g, int n, double lr, int decay) {
    for (int i = 0; i < n; i++) {
        double d = g[i];
        if (decay && s->wd != 0) d = d + s->wd * p[i];
        if (s->momentum != 0) {
            if (!s->has_buf) s->buf[i] = d;
            else s->buf[i] = s->momentum * s->buf[i] + d;
            d = s->nesterov ? d + s->momentum * s->buf[i] : s->buf[i];
        }
        p[i] = p[i] - lr * d;
    }
}

typedef struct {
    double b1, b2, eps, wd;
    double *m, *v;
    int t;
} ref_adamw;

/* torch.optim.AdamW._single_tensor_adamw for one tensor, in double; s->t already incremented. */
static void ref_adamw_step(ref_adamw *s, double *p, const double *g, int n, double lr, int decay) {
    double bc1 = 1 - pow(s->b1, s->t), bc2 = 1 - pow(s->b2, s->t);
    for (int i = 0; i < n; i++) {
        if (decay) p[i] *= 1 - lr * s->wd;
        s->m[i] = s->b1 * s->m[i] + (1 - s->b1) * g[i];
        s->v[i] = s->b2 * s->v[i] + (1 - s->b2) * g[i] * g[i];
        double denom = sqrt(s->v[i]) / sqrt(bc2) + s->eps;
        p[i] -= lr / bc1 * s->m[i] / denom;
    }
}

static double rnd(uint64_t *x) { /* xorshift in [-1, 1) */
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return (double)(*x >> 11) / (double)(1ull << 52) - 1.0;
}

/* Relative error of a float against a double reference; prints the first bad index. */
static int close_all(const char *what, const float *a, const double *b, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= tol * fmax(1.0, fabs(b[i])))) {
            printf("\n%s: index %d got %.9g expected %.9g\n", what, i, a[i], b[i]);
            return 0;
        }
    return 1;
}

/* ---- worked by hand ----------------------------------------------------------------------- */

static void test_sgd_by_hand(void) {
    /* p=1, g=0.5 twice, lr=0.1, momentum 0.9, nesterov, no decay:
     * step 1: buf=0.5, d=0.5+0.9*0.5=0.95, p=1-0.095=0.905
     * step 2: buf=0.9*0.5+0.5=0.95, d=0.5+0.9*0.95=1.355, p=0.905-0.1355=0.7695 */
    qat_param_seg seg = {0, 1, 0};
    qat_optimizer o;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_SGD, 1, &seg, 1), QAT_OK);
    float p = 1.0f, g = 0.5f;
    qat_optim_step(&o, &p, &g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p, 0.905, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(o.state[0], 0.5, 1e-7);
    qat_optim_step(&o, &p, &g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p, 0.7695, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(o.state[0], 0.95, 1e-6);
    CU_ASSERT_EQUAL(o.step, 2);
    qat_optim_free(&o);

    /* L2 decay folds into the gradient: p=2, g=0, wd=0.5, lr=0.1, plain SGD: p = 2 - 0.1*1 = 1.9 */
    seg.decay = 1;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_SGD, 1, &seg, 1), QAT_OK);
    o.momentum = 0;
    o.nesterov = 0;
    o.weight_decay = 0.5f;
    p = 2.0f, g = 0.0f;
    qat_optim_step(&o, &p, &g, 0.1f);
    CU_ASSERT_DOUBLE_EQUAL(p, 1.9, 1e-6);
    qat_optim_free(&o);
}

static void test_adamw_by_hand(void) {
    /* Step 1 of Adam moves by lr*g/(|g|+eps) ~ lr*sign(g); AdamW first shrinks p by 1-lr*wd:
     * p=1, g=0.5, lr=0.01, wd=0.05: p = 0.9995 - 0.01*0.5/(0.5+1e-8) = 0.9895 */
    qat_param_seg seg = {0, 1, 1};
    qat_optimizer o;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_ADAMW, 1, &seg, 1), QAT_OK);
    CU_ASSERT_DOUBLE_EQUAL(o.weight_decay, 0.05, 1e-9);
    float p = 1.0f, g = 0.5f;
    qat_optim_step(&o, &p, &g, 0.01f);
    CU_ASSERT_DOUBLE_EQUAL(p, 0.9895, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(o.state[0], 0.05, 1e-9);     /* m = 0.1*g */
    CU_ASSERT_DOUBLE_EQUAL(o.state[1], 0.00025, 1e-10); /* v = 0.001*g^2 */
    qat_optim_free(&o);
}

/* ---- multi-step against the references ---------------------------------------------------- */

/* Layout with a gap: [0,5) decay, [5,8) untouched, [8,19) no decay, [19,23) decay. */
static const qat_param_seg gap_segs[] = {{0, 5, 1}, {8, 11, 0}, {19, 4, 1}};
#define GAP_N 23

static int in_gap(int i) { return i >= 5 && i < 8; }
static int decays(int i) { return i < 5 || i >= 19; }

static void run_sgd_case(const char *what, float momentum, int nesterov, float wd) {
    qat_optimizer o;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_SGD, GAP_N, gap_segs, 3), QAT_OK);
    CU_ASSERT_EQUAL(qat_optim_state_floats(&o), GAP_N);
    o.momentum = momentum;
    o.nesterov = nesterov;
    o.weight_decay = wd;
    float p[GAP_N], g[GAP_N], p0[GAP_N];
    double rp[GAP_N], rg[GAP_N], rbuf[GAP_N] = {0};
    ref_sgd r = {momentum, wd, nesterov, rbuf, 0};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < GAP_N; i++) p0[i] = p[i] = (float)rnd(&x), rp[i] = p[i];
    const float lrs[4] = {0.1f, 0.05f, 0.2f, 0.01f};
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < GAP_N; i++) g[i] = (float)rnd(&x), rg[i] = g[i];
        qat_optim_step(&o, p, g, lrs[t]);
        for (int i = 0; i < GAP_N; i++) {
            r.buf = rbuf + i;
            if (!in_gap(i)) ref_sgd_step(&r, &rp[i], &rg[i], 1, lrs[t], decays(i));
        }
        r.has_buf = 1;
    }
    CU_ASSERT(close_all(what, p, rp, GAP_N, 1e-5));
    for (int i = 5; i < 8; i++) CU_ASSERT_EQUAL(p[i], p0[i]); /* bit-identical: untouched */
    qat_optim_free(&o);
}

static void test_sgd_plain(void) { run_sgd_case("sgd plain", 0.0f, 0, 0.0f); }
static void test_sgd_momentum(void) { run_sgd_case("sgd momentum", 0.9f, 0, 0.0f); }
static void test_sgd_nesterov(void) { run_sgd_case("sgd nesterov", 0.9f, 1, 0.0f); }
static void test_sgd_weight_decay(void) {
    run_sgd_case("sgd plain+wd", 0.0f, 0, 0.1f);
    run_sgd_case("sgd momentum+wd", 0.9f, 0, 0.1f);
    run_sgd_case("sgd nesterov+wd", 0.9f, 1, 0.1f);
}

static void test_adamw_steps(void) {
    qat_optimizer o;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_ADAMW, GAP_N, gap_segs, 3), QAT_OK);
    CU_ASSERT_EQUAL(qat_optim_state_floats(&o), 2 * GAP_N);
    o.weight_decay = 0.1f;
    float p[GAP_N], g[GAP_N], p0[GAP_N];
    double rp[GAP_N], rg[GAP_N], rm[GAP_N] = {0}, rv[GAP_N] = {0};
    ref_adamw r = {0.9, 0.999, 1e-8, 0.1, rm, rv, 0};
    uint64_t x = 12345;
    for (int i = 0; i < GAP_N; i++) p0[i] = p[i] = (float)rnd(&x), rp[i] = p[i];
    const float lrs[3] = {0.01f, 0.003f, 0.02f};
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < GAP_N; i++) g[i] = (float)rnd(&x), rg[i] = g[i];
        g[0] = 0.0f, rg[0] = 0; /* zero gradient: only decay moves it, denominators stay eps */
        qat_optim_step(&o, p, g, lrs[t]);
        r.t++;
        for (int i = 0; i < GAP_N; i++) {
            r.m = rm + i, r.v = rv + i;
            if (!in_gap(i)) ref_adamw_step(&r, &rp[i], &rg[i], 1, lrs[t], decays(i));
        }
    }
    CU_ASSERT_EQUAL(o.step, 3);
    CU_ASSERT(close_all("adamw", p, rp, GAP_N, 2e-6));
    for (int i = 5; i < 8; i++) CU_ASSERT_EQUAL(p[i], p0[i]);
    /* moments: m in state[0, n), v in state[n, 2n) */
    CU_ASSERT(close_all("adamw m", o.state, rm, 5, 1e-6));
    CU_ASSERT(close_all("adamw v", o.state + GAP_N + 8, rv + 8, 11, 1e-6));
    qat_optim_free(&o);
}

/* Large enough to run threaded; odd segment sizes exercise the per-thread split. Results must be
 * bit-identical for 1 and 2 threads and match the reference everywhere (no element skipped). */
static void run_threads_case(qat_opt_kind kind) {
    enum { N = 200003 };
    const qat_param_seg segs[] = {{0, 3, 1}, {3, 131071, 1}, {131074, 17, 0}, {131100, 68903, 0}};
    float *p1 = malloc(N * sizeof(float)), *p2 = malloc(N * sizeof(float));
    float *g = malloc(N * sizeof(float)), *p0 = malloc(N * sizeof(float));
    double *rp = malloc(N * sizeof(double)), *rg = malloc(N * sizeof(double));
    double *s1 = calloc(N, sizeof(double)), *s2 = calloc(N, sizeof(double));
    uint64_t x = 777;
    for (int i = 0; i < N; i++) p0[i] = (float)rnd(&x);
    memcpy(p1, p0, N * sizeof(float));
    memcpy(p2, p0, N * sizeof(float));
    for (int i = 0; i < N; i++) rp[i] = p0[i];
    qat_optimizer a, b;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&a, kind, N, segs, 4), QAT_OK);
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&b, kind, N, segs, 4), QAT_OK);
    ref_sgd rs = {a.momentum, a.weight_decay, a.nesterov, s1, 0};
    ref_adamw ra = {a.beta1, a.beta2, a.eps, a.weight_decay, s1, s2, 0};
    int saved = qat_get_threads();
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)rnd(&x), rg[i] = g[i];
        qat_set_threads(1);
        qat_optim_step(&a, p1, g, 0.01f);
        qat_set_threads(2);
        qat_optim_step(&b, p2, g, 0.01f);
        ra.t++;
        for (int s = 0; s < 4; s++) {
            int64_t off = segs[s].offset;
            if (kind == QAT_OPT_SGD) {
                /* the reference keeps its buffer per element; offset it like the params */
                ref_sgd r2 = rs;
                r2.buf = s1 + off;
                ref_sgd_step(&r2, rp + off, rg + off, (int)segs[s].numel, 0.01, segs[s].decay);
            } else {
                ref_adamw r2 = ra;
                r2.m = s1 + off, r2.v = s2 + off;
                ref_adamw_step(&r2, rp + off, rg + off, (int)segs[s].numel, 0.01, segs[s].decay);
            }
        }
        rs.has_buf = 1;
    }
    qat_set_threads(saved);
    CU_ASSERT(memcmp(p1, p2, N * sizeof(float)) == 0);
    CU_ASSERT(memcmp(a.state, b.state, (size_t)qat_optim_state_floats(&a) * sizeof(float)) == 0);
    CU_ASSERT(close_all(kind == QAT_OPT_SGD ? "sgd threaded" : "adamw threaded", p2, rp, N, 1e-5));
    /* the gap between the third and fourth segments must be untouched */
    for (int i = 131091; i < 131100; i++) CU_ASSERT_EQUAL(p2[i], p0[i]);
    qat_optim_free(&a);
    qat_optim_free(&b);
    free(p1), free(p2), free(g), free(p0), free(rp), free(rg), free(s1), free(s2);
}

static void test_threads_sgd(void) { run_threads_case(QAT_OPT_SGD); }
static void test_threads_adamw(void) { run_threads_case(QAT_OPT_ADAMW); }

/* AdamW's SSE2 body and its scalar tail must agree bit for bit: the same 37 floats updated as one
 * segment (36 in the body, 1 in the tail) and as 37 one-float segments (all in the tail). */
static void test_adamw_simd_vs_scalar(void) {
    enum { N = 37 };
    qat_param_seg whole = {0, N, 1}, single[N];
    for (int i = 0; i < N; i++) single[i] = (qat_param_seg){i, 1, 1};
    qat_optimizer a, b;
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&a, QAT_OPT_ADAMW, N, &whole, 1), QAT_OK);
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&b, QAT_OPT_ADAMW, N, single, N), QAT_OK);
    float pa[N], pb[N], g[N];
    uint64_t x = 4242;
    for (int i = 0; i < N; i++) pa[i] = pb[i] = (float)(rnd(&x) * pow(10, i % 7 - 3));
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)(rnd(&x) * pow(10, (i + t) % 9 - 5));
        qat_optim_step(&a, pa, g, 0.01f);
        qat_optim_step(&b, pb, g, 0.01f);
    }
    CU_ASSERT(memcmp(pa, pb, sizeof pa) == 0);
    CU_ASSERT(memcmp(a.state, b.state, 2 * N * sizeof(float)) == 0);
    qat_optim_free(&a);
    qat_optim_free(&b);
}

static void test_optim_init_checks(void) {
    qat_optimizer o;
    qat_param_seg overlap[] = {{0, 10, 1}, {20, 5, 1}, {9, 3, 0}};
    CU_ASSERT_EQUAL(qat_optim_init(&o, QAT_OPT_SGD, 30, overlap, 3), QAT_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "overlap"));
    qat_param_seg outside[] = {{25, 6, 1}};
    CU_ASSERT_EQUAL(qat_optim_init(&o, QAT_OPT_SGD, 30, outside, 1), QAT_ERR_ARG);
    qat_param_seg negative[] = {{-1, 2, 1}};
    CU_ASSERT_EQUAL(qat_optim_init(&o, QAT_OPT_ADAMW, 30, negative, 1), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_optim_init(&o, QAT_OPT_COUNT, 30, NULL, 0), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_optim_init(&o, QAT_OPT_SGD, -5, NULL, 0), QAT_ERR_ARG);
    /* defaults, and the caller's segment array is copied */
    qat_param_seg segs[] = {{0, 10, 1}, {10, 20, 0}};
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_SGD, 30, segs, 2), QAT_OK);
    segs[0].numel = 999;
    CU_ASSERT_EQUAL(o.segs[0].numel, 10);
    segs[0].numel = 10;
    CU_ASSERT_DOUBLE_EQUAL(o.momentum, 0.9, 1e-7);
    CU_ASSERT_EQUAL(o.nesterov, 1);
    CU_ASSERT_DOUBLE_EQUAL(o.weight_decay, 4e-5, 1e-10);
    CU_ASSERT_EQUAL(o.step, 0);
    for (int i = 0; i < 30; i++) CU_ASSERT_EQUAL(o.state[i], 0.0f);
    qat_optim_free(&o);
    CU_ASSERT_EQUAL_FATAL(qat_optim_init(&o, QAT_OPT_ADAMW, 30, segs, 2), QAT_OK);
    CU_ASSERT_DOUBLE_EQUAL(o.beta1, 0.9, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(o.beta2, 0.999, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(o.eps, 1e-8, 1e-12);
    qat_optim_free(&o);
}

static void test_opt_names(void) {
    for (int k = 0; k < QAT_OPT_COUNT; k++) {
        qat_opt_kind out = QAT_OPT_COUNT;
        CU_ASSERT_EQUAL(qat_opt_parse(qat_opt_name((qat_opt_kind)k), &out), 0);
        CU_ASSERT_EQUAL(out, k);
    }
    qat_opt_kind out;
    CU_ASSERT_STRING_EQUAL(qat_opt_name(QAT_OPT_SGD), "sgd");
    CU_ASSERT_STRING_EQUAL(qat_opt_name(QAT_OPT_ADAMW), "adamw");
    CU_ASSERT_NOT_EQUAL(qat_opt_parse("adam", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_opt_parse("SGD", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_opt_parse("", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_opt_parse(NULL, &out), 0);
}

/* ---- schedules ---------------------------------------------------------------------------- */

static void test_sched_constant_step(void) {
    qat_sched s;
    qat_sched_default(&s, QAT_SCHED_CONSTANT, 0.3f, 100);
    for (int64_t t = 0; t < 150; t += 7) CU_ASSERT_EQUAL(qat_sched_lr(&s, t), 0.3f);
    qat_sched_default(&s, QAT_SCHED_STEP, 0.1f, 90);
    CU_ASSERT_EQUAL(s.step_size, 30);
    CU_ASSERT_DOUBLE_EQUAL(s.gamma, 0.1, 1e-7);
    s.step_size = 10;
    s.gamma = 0.5f;
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 0), 0.1, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 9), 0.1, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 10), 0.05, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 25), 0.025, 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 89), 0.1 / 256, 1e-9);
}

static void test_sched_cosine(void) {
    qat_sched s;
    qat_sched_default(&s, QAT_SCHED_COSINE, 1.0f, 100);
    CU_ASSERT_EQUAL(s.warmup_steps, 5);
    s.warmup_steps = 10;
    s.warmup_start = 0.1f;
    s.min_lr = 0.01f;
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 0), 0.1, 1e-6);          /* warmup start */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 5), 0.55, 1e-6);         /* halfway up */
    for (int64_t t = 0; t < 10; t++) /* the whole warmup line */
        CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, t), 0.1 + 0.9 * (double)t / 10, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 10), 1.0, 1e-6);         /* end of warmup: peak */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 55), 0.505, 1e-6);       /* middle of the cosine */
    double at99 = 0.01 + 0.99 * 0.5 * (1 + cos(M_PI * 89.0 / 90.0));
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 99), at99, 1e-6);        /* last step used */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 100), 0.01, 1e-7);       /* end: floor */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 1000), 0.01, 1e-7);      /* past the end: held */
    /* monotone: up during warmup, down after */
    for (int64_t t = 1; t <= 100; t++) {
        float a = qat_sched_lr(&s, t - 1), b = qat_sched_lr(&s, t);
        CU_ASSERT(t <= 10 ? b > a : b <= a);
    }
    /* no warmup: starts at the peak */
    s.warmup_steps = 0;
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 0), 1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 50), 0.505, 1e-6);
}

/* torch.optim.lr_scheduler.OneCycleLR, two phases, anneal_strategy='cos'. */
static double ref_onecycle(double max_lr, int64_t total, double pct_start, double div,
                           double final_div, int64_t step) {
    double initial = max_lr / div, min_lr = initial / final_div;
    double ends[2] = {pct_start * (double)total - 1, (double)total - 1};
    double starts_lr[2] = {initial, max_lr}, ends_lr[2] = {max_lr, min_lr};
    double start_step = 0;
    for (int i = 0; i < 2; i++) {
        if ((double)step <= ends[i] || i == 1) {
            double pct = ((double)step - start_step) / (ends[i] - start_step);
            return ends_lr[i] + (starts_lr[i] - ends_lr[i]) / 2.0 * (cos(M_PI * pct) + 1);
        }
        start_step = ends[i];
    }
    return 0;
}

static void test_sched_onecycle(void) {
    qat_sched s;
    qat_sched_default(&s, QAT_SCHED_ONECYCLE, 0.1f, 100);
    CU_ASSERT_DOUBLE_EQUAL(s.pct_start, 0.3, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(s.div_factor, 25, 0);
    CU_ASSERT_DOUBLE_EQUAL(s.final_div_factor, 1e4, 0);
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 0), 0.1 / 25, 1e-8);            /* initial */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 29), 0.1, 1e-7);                /* peak */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 99), 0.1 / 25 / 1e4, 1e-11);    /* floor */
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 64), (0.1 + 4e-7) / 2, 1e-7);   /* middle of phase 2 */
    for (int64_t t = 0; t < 100; t++) {
        double want = ref_onecycle(0.1, 100, 0.3, 25, 1e4, t);
        float got = qat_sched_lr(&s, t);
        if (fabs(got - want) > 1e-6 * fmax(want, 1e-3)) {
            printf("\nonecycle step %lld: got %.9g expected %.9g\n", (long long)t, got, want);
            CU_FAIL("onecycle differs from OneCycleLR");
            break;
        }
    }
    CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, 500), 0.1 / 25 / 1e4, 1e-11); /* past the end */
    /* other factors and a non-integer phase boundary (0.25*37-1 = 8.25) */
    s.total_steps = 37, s.pct_start = 0.25f, s.div_factor = 10, s.final_div_factor = 100;
    for (int64_t t = 0; t < 37; t++) {
        double want = ref_onecycle(0.1, 37, (double)0.25f, 10, 100, t);
        CU_ASSERT_DOUBLE_EQUAL(qat_sched_lr(&s, t), want, 1e-7);
    }
}

static void test_sched_names(void) {
    const char *names[] = {"constant", "step", "cosine", "onecycle"};
    for (int k = 0; k < QAT_SCHED_COUNT; k++) {
        CU_ASSERT_STRING_EQUAL(qat_sched_name((qat_sched_kind)k), names[k]);
        qat_sched_kind out = QAT_SCHED_COUNT;
        CU_ASSERT_EQUAL(qat_sched_parse(names[k], &out), 0);
        CU_ASSERT_EQUAL(out, k);
    }
    qat_sched_kind out;
    CU_ASSERT_NOT_EQUAL(qat_sched_parse("cos", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_sched_parse("one-cycle", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_sched_parse("Cosine", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_sched_parse("", &out), 0);
    CU_ASSERT_NOT_EQUAL(qat_sched_parse(NULL, &out), 0);
}

void register_optim_tests(void) {
    test_add_suite("optim",
                   "sgd worked by hand", test_sgd_by_hand,
                   "adamw worked by hand", test_adamw_by_hand,
                   "sgd plain", test_sgd_plain,
                   "sgd momentum", test_sgd_momentum,
                   "sgd nesterov", test_sgd_nesterov,
                   "sgd weight decay", test_sgd_weight_decay,
                   "adamw 3 steps", test_adamw_steps,
                   "sgd threads bit-identical", test_threads_sgd,
                   "adamw threads bit-identical", test_threads_adamw,
                   "adamw simd body = scalar tail", test_adamw_simd_vs_scalar,
                   "init checks and defaults", test_optim_init_checks,
                   "optimizer names", test_opt_names,
                   "sched constant and step", test_sched_constant_step,
                   "sched cosine warmup", test_sched_cosine,
                   "sched onecycle", test_sched_onecycle,
                   "sched names", test_sched_names,
                   NULL);
}
