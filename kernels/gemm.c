/* FP32 GEMM. Two backends, one thread pool (OpenMP):
 *
 *  - oneDNN's dnnl_sgemm (the default). It JITs AVX-512/AVX2 kernels and threads over our
 *    OpenMP pool itself (omp_get_max_threads(), which qat_set_threads sets), running
 *    sequentially when called inside a parallel region. On the shapes of a MobileNet training
 *    step (tall-skinny activations x small weights, and the weight gradients' long K) it
 *    measured 1.5-2.7x faster than OpenBLAS 0.3.21 (whose Zen 5 build falls back to Haswell
 *    kernels) on 2 threads, largely because it splits the long K of dW = dY^T X itself.
 *  - OpenBLAS, threaded by us: one contiguous slice of rows (or columns) per OpenMP thread,
 *    each a single-threaded cblas_sgemm. Used if oneDNN refuses a call, and kept callable as
 *    qat_sgemm_openblas for comparison.
 *
 * Both give a result that depends only on the thread count. Also the bias helpers that go
 * with GEMM-based layers. */
#include "kernels.h"
#include <cblas.h>
#include <dnnl.h>
#include <omp.h>
#include <string.h>

/* Below this many multiply-adds a fork/join costs more than it saves. */
#define GEMM_PARALLEL_MIN_MACS (1 << 18)
/* oneDNN's sgemm runs on one thread below this many multiply-adds (see qat_sgemm). */
#define GEMM_ONEDNN_ONE_THREAD_MACS (1 << 20)
/* Column slices are multiples of this, so each thread's slice stays SIMD friendly. */
#define GEMM_COL_QUANTUM 16

static int blas_single_threaded;

static void ensure_blas_single_threaded(void) {
    /* qat_set_threads() does this too; repeat it once here for callers that never set the
     * thread count, since the pthread OpenBLAS otherwise starts its own pool per call. */
    if (!__atomic_load_n(&blas_single_threaded, __ATOMIC_RELAXED)) {
        openblas_set_num_threads(1);
        __atomic_store_n(&blas_single_threaded, 1, __ATOMIC_RELAXED);
    }
}

static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

static void blas(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void qat_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        /* BLAS would reject the leading dimensions of empty operands; the answer is beta*C. */
        scale_c(M, N, beta, C, ldc);
        return;
    }
    /* oneDNN threads every call over all of omp_get_max_threads(), however small. A small
     * GEMM (batch-1 inference: every conv of mbv2-tiny is under 1 M MACs) gains a few
     * microseconds from a second thread on idle cores, but when other processes hold the
     * cores each fork/join waits for the descheduled thread's next time slice: issue 19
     * measured FP32 batch 1 falling 40x beside two busy loops. One thread below 2^20 MACs
     * (about 30 us on one core): on this shared 2-core AMD host (load average 25) that took
     * mbv2-tiny's FP32 batch 1 from 25.8 to 1230 img/s, where 2^18 left 7 regions per
     * forward (bench/contention.sh). Above it, the team governor's cap (kernels/team.c)
     * applies here too. nthreads-var is per thread in OpenMP, so setting and restoring it
     * here touches no other thread. */
    int want = 0, saved = 0;
    if (!omp_in_parallel()) {
        want = (double)M * N * K < GEMM_ONEDNN_ONE_THREAD_MACS ? 1 : qat_kernel_threads();
        saved = omp_get_max_threads();
        if (want < saved) omp_set_num_threads(want);
    }
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda,
                                  B, ldb, beta, C, ldc);
    if (want < saved) omp_set_num_threads(saved);
    if (st == dnnl_success) return;
    qat_sgemm_openblas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void qat_sgemm_openblas(int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    ensure_blas_single_threaded();
    int nt = qat_kernel_threads();
    double macs = (double)M * N * K;
    if (nt <= 1 || macs < GEMM_PARALLEL_MIN_MACS) {
        blas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the larger of M and N; a slice of op(A) rows starts at row m0 of A, or column m0
     * when A is stored transposed (and likewise for the columns of op(B)). */
    int split_m = M >= N || N < 2 * GEMM_COL_QUANTUM;
    int len = split_m ? M : N;
    if (nt > len) nt = len;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), nteam = omp_get_num_threads();
        int lo, hi;
        if (split_m) {
            lo = (int)((int64_t)len * t / nteam);
            hi = (int)((int64_t)len * (t + 1) / nteam);
        } else {
            int q = (len + GEMM_COL_QUANTUM - 1) / GEMM_COL_QUANTUM;
            lo = (int)((int64_t)q * t / nteam) * GEMM_COL_QUANTUM;
            hi = (int)((int64_t)q * (t + 1) / nteam) * GEMM_COL_QUANTUM;
            if (hi > len) hi = len;
        }
        if (hi > lo) {
            if (split_m) {
                const float *a = trans_a ? A + lo : A + (size_t)lo * lda;
                blas(trans_a, trans_b, hi - lo, N, K, alpha, a, lda, B, ldb, beta,
                     C + (size_t)lo * ldc, ldc);
            } else {
                const float *b = trans_b ? B + (size_t)lo * ldb : B + lo;
                blas(trans_a, trans_b, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
            }
        }
    }
}

void qat_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

void qat_bias_add(float *out, const float *bias, int64_t rows, int C) {
    int nt = qat_kernel_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * C >= (1 << 16))
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * C;
        for (int c = 0; c < C; c++) o[c] += bias[c];
    }
}

/* Chunks of rows for the bias gradient: a function of the shape only (see kernels.h). */
#define BIAS_GRAD_PAR_ELEMS (1 << 16)
#define BIAS_GRAD_CHUNKS 16

static int64_t bias_grad_chunks(int64_t rows, int C) {
    if (rows * C < BIAS_GRAD_PAR_ELEMS || rows < 2) return 1;
    return rows < BIAS_GRAD_CHUNKS ? rows : BIAS_GRAD_CHUNKS;
}

size_t qat_bias_grad_scratch(int64_t rows, int C) {
    return (size_t)bias_grad_chunks(rows, C) * (size_t)C;
}

void qat_bias_grad(float *db, const float *dy, int64_t rows, int C, float *scratch) {
    const int64_t nch = bias_grad_chunks(rows, C);
    const int nt = nch > 1 ? qat_kernel_threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t k = 0; k < nch; k++) {
        const int64_t lo = rows * k / nch, hi = rows * (k + 1) / nch;
        float *acc = scratch + (size_t)k * C;
        memset(acc, 0, (size_t)C * sizeof(float));
        for (int64_t r = lo; r < hi; r++) {
            const float *g = dy + r * C;
            for (int c = 0; c < C; c++) acc[c] += g[c];
        }
    }
    for (int64_t k = 0; k < nch; k++)
        for (int c = 0; c < C; c++) db[c] += scratch[(size_t)k * C + c];
}
