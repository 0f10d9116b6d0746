/* Per-step bump allocator (arena.h). A step that outgrows the arena takes overflow chunks; reset
 * merges them into one block of the step's peak size, so steady-state steps never call malloc. */
#include "arena.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

/* qat_set_memory_limit: 0 = no cap. Process-wide, like the thread count. */
static size_t arena_cap_bytes;

void qat_set_memory_limit(size_t bytes) { __atomic_store_n(&arena_cap_bytes, bytes, __ATOMIC_RELAXED); }
size_t qat_arena_limit(void) { return __atomic_load_n(&arena_cap_bytes, __ATOMIC_RELAXED); }

void qat_arena_fail(qat_arena *a, size_t bytes) {
    a->failed_bytes = bytes;
    if (a->oom) longjmp(*a->oom, 1);
    fprintf(stderr, "qat: out of memory allocating %zu bytes of graph memory (no qat_ctx_run "
            "handler)\n", bytes);
    abort();
}

static void *aligned_or_null(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = ARENA_ALIGN;
    if (posix_memalign(&p, ARENA_ALIGN, bytes) != 0) return NULL;
    return p;
}

void qat_arena_init(qat_arena *a, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    const size_t lim = qat_arena_limit();
    if (lim && initial_bytes > lim) initial_bytes = lim;
    /* a failed first block is not an error yet: the step that needs the memory reports it */
    a->base = initial_bytes ? aligned_or_null(initial_bytes) : NULL;
    a->cap = a->base ? initial_bytes : 0;
}

static void free_extra(qat_arena *a) {
    for (int i = 0; i < a->nextra; i++) free(a->extra[i]);
    a->nextra = 0;
    a->extra_bytes = 0;
}

void qat_arena_free(qat_arena *a) {
    free_extra(a);
    free(a->extra);
    free(a->base);
    memset(a, 0, sizeof *a);
}

void qat_arena_reset(qat_arena *a) {
    size_t need = a->used + a->extra_bytes;
    if (need > a->peak) a->peak = need;
    if (a->nextra) {
        free_extra(a);
        free(a->base);
        a->cap = a->peak + a->peak / 8;
        /* no block of the peak size: the next step takes chunks again (and reports if those
         * fail too) */
        a->base = aligned_or_null(a->cap);
        if (!a->base) a->cap = 0;
    }
    a->used = 0;
}

void *qat_arena_alloc(qat_arena *a, size_t bytes) {
    size_t sz = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    const size_t lim = qat_arena_limit();
    if (sz < bytes || (lim && (sz > lim || a->used + a->extra_bytes > lim - sz)))
        qat_arena_fail(a, bytes);
    if (a->base && a->used + sz <= a->cap) {
        void *p = a->base + a->used;
        a->used += sz;
        return p;
    }
    if (a->nextra == a->extra_cap) {
        int cap = a->extra_cap ? 2 * a->extra_cap : 16;
        void **e = realloc(a->extra, (size_t)cap * sizeof *e);
        if (!e) qat_arena_fail(a, bytes);
        a->extra = e, a->extra_cap = cap;
    }
    void *p = aligned_or_null(sz);
    if (!p) qat_arena_fail(a, bytes);
    a->extra[a->nextra++] = p;
    a->extra_bytes += sz;
    return p;
}

float *qat_arena_floats(qat_arena *a, int64_t n) {
    return qat_arena_alloc(a, (size_t)n * sizeof(float));
}

float *qat_arena_zeros(qat_arena *a, int64_t n) {
    float *p = qat_arena_floats(a, n);
    memset(p, 0, (size_t)n * sizeof(float));
    return p;
}
