/* dist.h on Open MPI (compiled when the Makefile finds mpicc; dist_none.c otherwise).
 *
 * MPI is initialised only when the process was started by mpirun (OMPI_COMM_WORLD_SIZE or
 * PMIX_RANK in the environment): a plain `qat train` never touches MPI, so it starts as fast
 * as before and behaves as before, and `mpirun -np 1` is a job of one whose collectives are
 * skipped (qat_dist_active() is 0). Errors stay fatal (MPI_ERRORS_ARE_FATAL): when a peer dies,
 * Open MPI's runtime stops the job, which is what a data-parallel run wants (docs/distributed.md
 * has the times measured). */
#include "base.h"
#include "dist.h"
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static int g_inited, g_rank, g_size = 1, g_sync, g_local_bn, g_fault = -1;
/* seconds inside collectives: [0] all, [1] of them the gradient allreduce's */
static double g_comm_s[2];
static int g_in_grads;

qat_status qat_dist_init(void) {
    if (g_inited) return QAT_OK;
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK")) return QAT_OK;
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return qat_fail(QAT_ERR_IO, "MPI_Init failed");
    g_inited = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return QAT_OK;
}

void qat_dist_finalize(void) {
    if (!g_inited) return;
    MPI_Finalize();
    g_inited = 0;
}

void qat_dist_abort(int code) {
    if (g_inited && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int qat_dist_rank(void) { return g_rank; }
int qat_dist_size(void) { return g_size; }
const char *qat_dist_backend(void) {
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    if (!v[0]) {
        int len = 0;
        MPI_Get_library_version(v, &len);
        char *nl = strpbrk(v, ",\n");
        if (nl) *nl = 0;
    }
    return v;
}
int qat_dist_active(void) { return g_size > 1; }

static void allreduce(void *buf, size_t n, MPI_Datatype t, MPI_Op op) {
    if (g_size <= 1 || n == 0) return;
    QAT_ASSERT(n <= (size_t)INT32_MAX);
    double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, t, op, MPI_COMM_WORLD);
    double dt = MPI_Wtime() - t0;
    g_comm_s[0] += dt;
    if (g_in_grads) g_comm_s[1] += dt;
}

void qat_dist_sum_f64(double *buf, size_t n) { allreduce(buf, n, MPI_DOUBLE, MPI_SUM); }
void qat_dist_max_f64(double *buf, size_t n) { allreduce(buf, n, MPI_DOUBLE, MPI_MAX); }
void qat_dist_max_u64(uint64_t *buf, size_t n) { allreduce(buf, n, MPI_UINT64_T, MPI_MAX); }

int qat_dist_fault_nogradsync(void) {
    if (g_fault < 0) {
        const char *f = getenv("QAT_DIST_FAULT");
        g_fault = f && !strcmp(f, "nogradsync");
    }
    return g_fault;
}

int qat_dist_average_f32(float *buf, size_t n) {
    if (g_size <= 1 || n == 0) return 0;
    /* The test fault: rank 1 takes part in the collectives (no deadlock) but keeps its own. */
    float *keep = NULL;
    if (qat_dist_fault_nogradsync() && g_rank == 1 && (keep = malloc(n * sizeof *keep)))
        memcpy(keep, buf, n * sizeof *keep);
    int buckets = 0;
    const float inv = 1.0f / (float)g_size;
    g_in_grads = 1;
    for (size_t off = 0; off < n; off += QAT_DIST_BUCKET_FLOATS, buckets++) {
        size_t len = n - off < QAT_DIST_BUCKET_FLOATS ? n - off : QAT_DIST_BUCKET_FLOATS;
        allreduce(buf + off, len, MPI_FLOAT, MPI_SUM);
        for (size_t i = off; i < off + len; i++) buf[i] *= inv;
    }
    g_in_grads = 0;
    if (keep) memcpy(buf, keep, n * sizeof *keep);
    free(keep);
    return buckets;
}

void qat_dist_sync_begin(void) { g_sync++; }
void qat_dist_sync_end(void) { g_sync--; }
int qat_dist_syncing(void) { return g_size > 1 && g_sync > 0; }
int qat_dist_syncing_bn(void) { return g_size > 1 && g_sync > 0 && !g_local_bn; }
void qat_dist_set_local_bn(int local) { g_local_bn = local; }

double qat_dist_take_comm_seconds(double *grads_s) {
    double s = g_comm_s[0];
    if (grads_s) *grads_s = g_comm_s[1];
    g_comm_s[0] = g_comm_s[1] = 0;
    return s;
}

static int g_collective_error;
void qat_dist_set_error_collective(void) { g_collective_error = 1; }
int qat_dist_error_collective(void) { return g_collective_error; }
