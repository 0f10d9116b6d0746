/* The autograd engine: float32 tensors that are also tape nodes (ggml style), an arena for
 * per-step memory, and reverse-mode backward over the tape recorded during forward.
 *
 * Layouts: activations are NHWC (N, H, W, C); conv weights are OHWI (Cout, KH, KW, Cin/groups);
 * linear weights are (out, in). Backward functions ACCUMULATE into src[i]->grad (+=).
 */
#ifndef QAT_TENSOR_H
#define QAT_TENSOR_H

#include "arena.h"
#include "base.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define QAT_MAX_DIMS 4
#define QAT_MAX_SRC 4

/* Ops. Keep qat_op_names[] (autograd/backward.c) in the same order. */
typedef enum {
    QAT_OP_LEAF = 0,      /* parameter or input: no backward */
    QAT_OP_CONV2D,
    QAT_OP_BATCHNORM2D,
    QAT_OP_RELU,
    QAT_OP_RELU6,
    QAT_OP_HARDSWISH,
    QAT_OP_ADD,
    QAT_OP_MUL,
    QAT_OP_GLOBAL_AVGPOOL,
    QAT_OP_MAXPOOL2D,
    QAT_OP_AVGPOOL2D,
    QAT_OP_LINEAR,
    QAT_OP_RESHAPE,
    QAT_OP_DROPOUT,
    QAT_OP_SOFTMAX_CE,
    QAT_OP_MEAN,
    QAT_OP_SUM,
    QAT_OP_FAKEQUANT,
    QAT_OP_LSQ,
    QAT_OP_HARDSIGMOID,
    QAT_OP_CHANNEL_MUL,
    QAT_OP_SIGMOID,
    QAT_OP_COUNT
} qat_op;

extern const char *const qat_op_names[QAT_OP_COUNT];

typedef struct qat_tensor qat_tensor;
struct qat_tensor {
    int ndim;
    int shape[QAT_MAX_DIMS];
    int64_t numel;
    float *data;          /* numel floats */
    float *grad;          /* numel floats, NULL until backward reaches this tensor */
    int requires_grad;    /* leaf params: 1; op outputs: 1 if any src requires grad */
    int persistent;       /* 1 for parameters: data/grad owned by the model, not the arena */
    qat_op op;
    qat_tensor *src[QAT_MAX_SRC];
    void *saved;          /* op-specific state kept for backward (arena memory) */
    int iparam[8];        /* op-specific integer parameters (stride, pad, groups, ...) */
    float fparam[4];      /* op-specific float parameters (eps, momentum, p, ...) */
    const char *name;
};

/* The forward context: the arena for this step and the tape of op outputs in creation order. */
typedef struct qat_ctx {
    qat_arena arena;
    qat_tensor **tape;
    int ntape, tape_cap;
    int training;         /* 1: BN uses batch statistics, dropout active */
    int grad_enabled;     /* 0: ops record nothing for backward (inference) */
    qat_rng rng;          /* dropout masks */
} qat_ctx;

void qat_ctx_init(qat_ctx *ctx, size_t arena_bytes);
/* Runs fn(ctx, arg), the graph work of one step (forward, loss, backward), so that running out
 * of memory inside it returns QAT_ERR_NOMEM with a message instead of aborting: the arena and
 * the tape jump back here (setjmp/longjmp) when they cannot grow. The library's entry points
 * that run graphs (training, evaluation, calibration, inspect, benchmarks) go through here;
 * after QAT_ERR_NOMEM the context must be reset before its next use, and what the interrupted
 * step was updating (BN running statistics, observers) may be half done: start again from a
 * checkpoint. Outside qat_ctx_run, running out of memory is fatal (QAT_ASSERT). Nests. */
typedef qat_status (*qat_ctx_fn)(qat_ctx *ctx, void *arg);
qat_status qat_ctx_run(qat_ctx *ctx, qat_ctx_fn fn, void *arg);
void qat_ctx_free(qat_ctx *ctx);
/* Forgets the tape and resets the arena: call at the start of every step. */
void qat_ctx_reset(qat_ctx *ctx);

/* A new arena tensor (data uninitialised). shape has ndim entries. */
qat_tensor *qat_tensor_new(qat_ctx *ctx, int ndim, const int *shape);
qat_tensor *qat_tensor_4d(qat_ctx *ctx, int n, int h, int w, int c);
qat_tensor *qat_tensor_2d(qat_ctx *ctx, int n, int c);
/* A tensor produced by `op` from srcs; recorded on the tape when grad is enabled. */
qat_tensor *qat_tensor_op(qat_ctx *ctx, qat_op op, int ndim, const int *shape, int nsrc,
                          qat_tensor *const *srcs);
/* Persistent tensor (parameters): data and grad point into caller-owned memory. */
void qat_tensor_param(qat_tensor *t, int ndim, const int *shape, float *data, float *grad,
                      const char *name);

/* Gradient buffer of t (allocated zeroed from the arena the first time). */
float *qat_grad(qat_ctx *ctx, qat_tensor *t);

/* Runs backward from a scalar `loss` (its grad is set to 1): every op's backward in reverse
 * tape order. Parameter grads accumulate; call zero_grad on the model between steps. */
void qat_backward(qat_ctx *ctx, qat_tensor *loss);

/* Backward functions, one per op, each in its op's file; dispatched by qat_backward. */
typedef void (*qat_backward_fn)(qat_ctx *ctx, qat_tensor *out);
/* Runs one node's backward (its grad must be set). */
void qat_backward_node(qat_ctx *ctx, qat_tensor *t);

#endif
