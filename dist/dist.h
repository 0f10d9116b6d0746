/* Data-parallel runs across processes (docs/distributed.md): who this process is in the job and
 * the few collective operations training needs. Two builds of one interface: dist_mpi.c on Open
 * MPI when the Makefile finds mpicc, dist_none.c (one process, every reduction the identity)
 * otherwise. Floor 1, beside base/: the BN op (autograd/) and the observers (fakequant/) call
 * it, so it includes nothing but qat.h and base.h.
 *
 * Every collective here must be called by every rank in the same order with the same sizes;
 * the training loop keeps them in lockstep (same number of steps, same graph, same batch size on
 * every rank), and the reductions inside the graph (SyncBN, observer ranges) only happen between
 * qat_dist_sync_begin and qat_dist_sync_end, i.e. inside training steps, never in evaluation or
 * calibration, which every rank runs identically on the same data. An MPI error aborts the job
 * (MPI_ERRORS_ARE_FATAL), which is what a dead peer should do to the others. */
#ifndef QAT_DIST_H
#define QAT_DIST_H

#include "qat.h"
#include <stddef.h>
#include <stdint.h>

/* qat_dist_size() > 1: a data-parallel run. */
int qat_dist_active(void);

/* buf[0..n) summed over ranks, in place (every rank gets the same bits). */
void qat_dist_sum_f64(double *buf, size_t n);
/* buf[0..n) = the largest over ranks, in place. */
void qat_dist_max_f64(double *buf, size_t n);
void qat_dist_max_u64(uint64_t *buf, size_t n);
/* The gradient allreduce: buf[0..n) summed over ranks then scaled by 1/size, in buckets of at
 * most QAT_DIST_BUCKET_FLOATS (one MPI_Allreduce each). Returns the number of buckets. */
#define QAT_DIST_BUCKET_FLOATS (1 << 20) /* 4 MiB */
int qat_dist_average_f32(float *buf, size_t n);

/* Reductions inside the graph (BN batch statistics, observer ranges) happen only while the
 * counter is positive: the training step and BN re-estimation raise it. */
void qat_dist_sync_begin(void);
void qat_dist_sync_end(void);
/* The observers' ranges are reduced now. */
int qat_dist_syncing(void);
/* BN batch statistics are reduced now (syncing and not qat_dist_set_local_bn(1)). */
int qat_dist_syncing_bn(void);
void qat_dist_set_local_bn(int local);

/* Channels an observer reduces with a buffer on the stack (more: one malloc per reduction). */
#define QAT_DIST_OBS_MAX 1024

/* Seconds spent inside collectives since the last call (then reset to 0), waiting for the
 * slower rank included; *grads_s (if not NULL) the part of them in qat_dist_average_f32, the
 * rest is SyncBN's, the observers' and the small ones of the loop. */
double qat_dist_take_comm_seconds(double *grads_s);

/* The error just failed is one every rank found together (qat_dist_error_collective). */
void qat_dist_set_error_collective(void);

/* Testing the guards: QAT_DIST_FAULT=nogradsync in the environment makes qat_dist_average_f32 a
 * no-op on rank 1, so the ranks drift apart and the state check must catch it. */
int qat_dist_fault_nogradsync(void);

#endif
