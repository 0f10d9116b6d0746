/* The reader of the metrics.jsonl that training writes (train/train.c: one line per epoch,
 * train/pipeline.c: the config line first), for `qat plot`. */
#ifndef QAT_METRICS_H
#define QAT_METRICS_H

#include "qat.h"

/* One line of metrics.jsonl (train/train.c: append_metrics). Keys missing from a line are NaN;
 * accuracies are fractions (0..1). */
typedef struct {
    char phase[16];          /* "fp32" or "qat" ("fp32" when the key is absent); "config" */
    int epoch;
    double step, lr, train_loss, train_acc, test_loss, test_acc, epoch_s, img_s;
} qat_metrics_row;

typedef struct {
    qat_metrics_row *rows;
    int n;
} qat_metrics;

/* Reads a metrics.jsonl: one flat JSON object per line (blank lines skipped, unknown keys
 * ignored, values may be flat arrays, bare nan/inf accepted since printf writes them for a
 * diverged loss). Every epoch line needs an integer "epoch"; the {"phase": "config", ...} line
 * a run writes when it starts (train/pipeline.c) is checked and skipped. Errors name the file
 * and line ("path:7: ..."). Free with qat_metrics_free. */
qat_status qat_metrics_read(const char *path, qat_metrics *m);
/* Parses one line into row (the same rules; lineno only for the message). A config line gives
 * a row with phase "config" (epoch 0, no "epoch" needed). */
qat_status qat_metrics_parse_line(const char *path, int lineno, const char *line,
                                  qat_metrics_row *row);
void qat_metrics_free(qat_metrics *m);

#endif
