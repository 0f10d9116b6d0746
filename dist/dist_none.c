/* dist.h without MPI: one process, every collective the identity. A qat built this way that is
 * started by mpirun with more than one process refuses to run instead of letting N copies write
 * the same checkpoints (qat_dist_init). */
#include "base.h"
#include "dist.h"
#include <stdlib.h>

qat_status qat_dist_init(void) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return qat_fail(QAT_ERR_ARG, "this qat was built without MPI (no mpicc when it was built) "
                                     "and cannot join a %s-process mpirun job: install "
                                     "libopenmpi-dev and rebuild (make clean; make)", n);
    return QAT_OK;
}
void qat_dist_finalize(void) {}
void qat_dist_abort(int code) { exit(code); }
int qat_dist_rank(void) { return 0; }
int qat_dist_size(void) { return 1; }
const char *qat_dist_backend(void) { return "none (built without MPI)"; }
int qat_dist_active(void) { return 0; }
void qat_dist_sum_f64(double *buf, size_t n) { (void)buf, (void)n; }
void qat_dist_max_f64(double *buf, size_t n) { (void)buf, (void)n; }
void qat_dist_max_u64(uint64_t *buf, size_t n) { (void)buf, (void)n; }
int qat_dist_average_f32(float *buf, size_t n) { (void)buf, (void)n; return 0; }
void qat_dist_sync_begin(void) {}
void qat_dist_sync_end(void) {}
int qat_dist_syncing(void) { return 0; }
int qat_dist_syncing_bn(void) { return 0; }
void qat_dist_set_local_bn(int local) { (void)local; }
double qat_dist_take_comm_seconds(double *grads_s) {
    if (grads_s) *grads_s = 0;
    return 0;
}
int qat_dist_fault_nogradsync(void) { return 0; }
void qat_dist_set_error_collective(void) {}
int qat_dist_error_collective(void) { return 0; }
