/* Tensor creation, the forward context and the tape. */
#include "tensor.h"
#include "kernels.h" /* qat_team_tick */
#include <string.h>

void qat_ctx_init(qat_ctx *ctx, size_t arena_bytes) {
    memset(ctx, 0, sizeof *ctx);
    qat_arena_init(&ctx->arena, arena_bytes);
    ctx->grad_enabled = 1;
    ctx->training = 1;
    qat_rng_seed(&ctx->rng, 0);
}

void qat_ctx_free(qat_ctx *ctx) {
    qat_arena_free(&ctx->arena);
    free(ctx->tape);
    memset(ctx, 0, sizeof *ctx);
}

qat_status qat_ctx_run(qat_ctx *ctx, qat_ctx_fn fn, void *arg) {
    jmp_buf here, *outer = ctx->arena.oom;
    ctx->arena.oom = &here;
    if (setjmp(here)) {
        ctx->arena.oom = outer;
        size_t lim = qat_arena_limit();
        char cap[96] = "";
        if (lim) snprintf(cap, sizeof cap, " (memory limit %zu bytes per step)", lim);
        return qat_fail(QAT_ERR_NOMEM, "out of memory: a step needed %zu more bytes of graph "
                        "memory after %zu%s", ctx->arena.failed_bytes,
                        ctx->arena.used + ctx->arena.extra_bytes, cap);
    }
    qat_status st = fn(ctx, arg);
    ctx->arena.oom = outer;
    return st;
}

void qat_ctx_reset(qat_ctx *ctx) {
    ctx->ntape = 0;
    qat_arena_reset(&ctx->arena);
    qat_team_tick(); /* a step starts: fit its thread count to the load (kernels/team.c) */
}

static qat_tensor *tensor_alloc(qat_ctx *ctx, int ndim, const int *shape) {
    QAT_ASSERT(ndim >= 1 && ndim <= QAT_MAX_DIMS);
    qat_tensor *t = qat_arena_alloc(&ctx->arena, sizeof *t);
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        QAT_ASSERT(shape[i] >= 0);
        t->shape[i] = shape[i];
    }
    t->numel = qat_shape_numel(ndim, shape);
    t->data = qat_arena_floats(&ctx->arena, t->numel);
    return t;
}

qat_tensor *qat_tensor_new(qat_ctx *ctx, int ndim, const int *shape) {
    return tensor_alloc(ctx, ndim, shape);
}

qat_tensor *qat_tensor_4d(qat_ctx *ctx, int n, int h, int w, int c) {
    int s[4] = {n, h, w, c};
    return tensor_alloc(ctx, 4, s);
}

qat_tensor *qat_tensor_2d(qat_ctx *ctx, int n, int c) {
    int s[2] = {n, c};
    return tensor_alloc(ctx, 2, s);
}

qat_tensor *qat_tensor_op(qat_ctx *ctx, qat_op op, int ndim, const int *shape, int nsrc,
                          qat_tensor *const *srcs) {
    QAT_ASSERT(nsrc <= QAT_MAX_SRC);
    qat_tensor *t = tensor_alloc(ctx, ndim, shape);
    t->op = op;
    for (int i = 0; i < nsrc; i++) {
        t->src[i] = srcs[i];
        if (srcs[i] && srcs[i]->requires_grad) t->requires_grad = 1;
    }
    if (ctx->grad_enabled && t->requires_grad) {
        if (ctx->ntape == ctx->tape_cap) {
            int cap = ctx->tape_cap ? 2 * ctx->tape_cap : 256;
            qat_tensor **tape = realloc(ctx->tape, (size_t)cap * sizeof *tape);
            if (!tape) qat_arena_fail(&ctx->arena, (size_t)cap * sizeof *tape);
            ctx->tape = tape, ctx->tape_cap = cap;
        }
        ctx->tape[ctx->ntape++] = t;
    } else {
        t->requires_grad = 0;
    }
    return t;
}

void qat_tensor_param(qat_tensor *t, int ndim, const int *shape, float *data, float *grad,
                      const char *name) {
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = qat_shape_numel(ndim, shape);
    t->data = data;
    t->grad = grad;
    t->requires_grad = grad != NULL;
    t->persistent = 1;
    t->op = QAT_OP_LEAF;
    t->name = name;
}

float *qat_grad(qat_ctx *ctx, qat_tensor *t) {
    if (!t->grad) t->grad = qat_arena_zeros(&ctx->arena, t->numel);
    return t->grad;
}
