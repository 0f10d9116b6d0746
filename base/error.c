/* Library errors: a status code plus one thread-local line naming the file and the problem. */
#include "qat.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

static const char *const status_names[QAT_STATUS_COUNT] = {
    "ok", "bad argument", "I/O error", "bad format", "bad model spec",
    "shape mismatch", "out of memory", "non-finite value", "mismatch",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == QAT_STATUS_COUNT, "status names");

const char *qat_last_error(void) { return last_error[0] ? last_error : "no error"; }

const char *qat_status_name(qat_status s) {
    return (unsigned)s < QAT_STATUS_COUNT ? status_names[s] : "unknown status";
}

qat_status qat_fail(qat_status s, const char *fmt, ...) {
    /* Format into a scratch buffer first: callers may pass qat_last_error() as an argument. */
    char buf[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(last_error, buf, sizeof buf);
    return s;
}
