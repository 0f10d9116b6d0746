/* qat_status: the status codes of both public APIs, include/qat.h (training) and include/qat_rt.h
 * (the deploy-only INT8 runtime), so that a program using either or both sees one set of numbers.
 * Every function of the two that can fail returns one of these; qat_last_error() then names the
 * file and the problem in one line. */
#ifndef QAT_STATUS_H
#define QAT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QAT_OK = 0,
    QAT_ERR_ARG,      /* bad argument or option value */
    QAT_ERR_IO,       /* file missing, unreadable, unwritable */
    QAT_ERR_FORMAT,   /* file present but malformed, truncated or corrupt */
    QAT_ERR_SPEC,     /* malformed model spec */
    QAT_ERR_SHAPE,    /* shapes that do not fit together */
    QAT_ERR_NOMEM,    /* allocation failed (also a graph that outgrew qat_set_memory_limit) */
    QAT_ERR_NUMERIC,  /* NaN/inf where a finite value is required */
    QAT_ERR_MISMATCH, /* e.g. a checkpoint of another architecture */
    QAT_STATUS_COUNT
} qat_status;

/* One line describing the last error of the calling thread ("file: problem"). */
const char *qat_last_error(void);
/* "ok", "bad argument", "I/O error", ... */
const char *qat_status_name(qat_status s);

#ifdef __cplusplus
}
#endif
#endif
