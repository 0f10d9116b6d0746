#ifndef QAT_PROGRESS_H
#define QAT_PROGRESS_H

typedef struct {
    const char *phase; /* "train", "qat" */
    int epochs, batches, quiet, tty;
    double epoch_start, last_print;
    long images;
} qat_progress;

void qat_progress_init(qat_progress *p, const char *phase, int epochs, int batches, int quiet);
void qat_progress_epoch_start(qat_progress *p);
/* Reports batch `batch` (0-based) of `epoch` with running-average loss and accuracy. */
void qat_progress_step(qat_progress *p, int epoch, int batch, int images, float loss, float acc);

#endif
