/* The data-parallel parts of the training loop (train/dist_train.c); identities in one process. */
#ifndef QAT_DIST_TRAIN_H
#define QAT_DIST_TRAIN_H

#include "train.h"

/* Collective: QAT_ERR_ARG naming the option when the ranks were not given the same run (options
 * that shape the run, the dataset's size and image shape). */
qat_status qat_dist_check_options(const qat_train_opts *o, const qat_qat_opts *qo,
                                  const qat_dataset *train, const qat_dataset *test);
/* The gradient allreduce of a step: r's model grads and LSQ grads averaged over ranks, in
 * buckets; returns the number of MPI_Allreduce calls (0 in one process). */
int qat_dist_average_grads(qat_run *r);
/* --local-bn: BN running statistics averaged over ranks (before evaluation and checkpoints). */
void qat_dist_average_bn_buffers(qat_run *r);
/* An epoch's training loss sum, correct count and images summed over ranks. */
void qat_dist_epoch_totals(double *loss_sum, long *correct, long *seen);
/* Collective: a hash of r's parameters, BN statistics, optimizer and quantizer state in *hash;
 * QAT_ERR_NUMERIC naming the part when the ranks' hashes differ. */
qat_status qat_dist_check_state(const qat_run *r, uint64_t *hash);

#endif
