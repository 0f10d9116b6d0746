/* Per-step bump allocator. A step that outgrows the arena takes overflow chunks; reset merges
 * them into one block of the step's peak size, so steady-state steps never call malloc. */
#include "tensor.h"
#include <string.h>

#define ARENA_ALIGN 64

static void *aligned_or_die(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = ARENA_ALIGN;
    if (posix_memalign(&p, ARENA_ALIGN, bytes) != 0 || !p) {
        fprintf(stderr, "qat: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
    return p;
}

void qat_arena_init(qat_arena *a, size_t initial_bytes) {
    memset(a, 0, sizeof *a);
    a->cap = initial_bytes;
    a->base = initial_bytes ? aligned_or_die(initial_bytes) : NULL;
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
        a->base = aligned_or_die(a->cap);
    }
    a->used = 0;
}

void *qat_arena_alloc(qat_arena *a, size_t bytes) {
    size_t sz = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (a->base && a->used + sz <= a->cap) {
        void *p = a->base + a->used;
        a->used += sz;
        return p;
    }
    if (a->nextra == a->extra_cap) {
        a->extra_cap = a->extra_cap ? 2 * a->extra_cap : 16;
        a->extra = realloc(a->extra, (size_t)a->extra_cap * sizeof *a->extra);
        QAT_ASSERT(a->extra);
    }
    void *p = aligned_or_die(sz);
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
