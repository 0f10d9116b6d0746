/* The per-step bump allocator of the autograd engine: every activation, gradient and tape
 * node of a step comes from it; reset at the start of the next step. After the first step it
 * has grown to the step's peak and a step does no malloc (several chunks are merged into one
 * on reset).
 *
 * Out of memory: an allocation that cannot be served (malloc fails, or the process-wide cap of
 * qat_set_memory_limit would be exceeded) longjmps to a->oom when a qat_ctx_run is active
 * (the caller sees QAT_ERR_NOMEM), and is fatal otherwise (QAT_ASSERT: the engine was used
 * outside the library's entry points without a handler). */
#ifndef QAT_ARENA_H
#define QAT_ARENA_H

#include "base.h"
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *base;
    size_t used, cap;
    /* overflow chunks allocated during a step; freed and merged on reset */
    void **extra;
    int nextra, extra_cap;
    size_t extra_bytes, peak;
    jmp_buf *oom;         /* set by qat_ctx_run: where a failed allocation jumps */
    size_t failed_bytes;  /* the allocation that failed (for the message) */
} qat_arena;

void qat_arena_init(qat_arena *a, size_t initial_bytes);
void qat_arena_free(qat_arena *a);
void qat_arena_reset(qat_arena *a);
/* 64-byte aligned; never returns NULL (out of memory: see above). */
void *qat_arena_alloc(qat_arena *a, size_t bytes);
float *qat_arena_floats(qat_arena *a, int64_t n);           /* uninitialised */
float *qat_arena_zeros(qat_arena *a, int64_t n);            /* zeroed */
/* Out of memory for `bytes` more: jumps to a->oom, or aborts when there is no handler. */
void qat_arena_fail(qat_arena *a, size_t bytes) __attribute__((noreturn));
/* The cap of qat_set_memory_limit (include/qat.h): bytes one arena may hand out per step. */
size_t qat_arena_limit(void);

#endif
