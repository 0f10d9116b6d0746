/* The ground floor of the numbers: CPU feature detection and the thread count (kernels/cpu.c)
 * and the FP32 kernels behind the autograd ops — a GEMM wrapper, NHWC im2col/col2im, depthwise
 * convolution. The other kernels have their own headers here: the quantization arithmetic
 * (qmath.h), fake-quant / straight-through / min-max (fq.h), the BatchNorm passes (bn.h), the
 * INT8 kernels and oneDNN backend of the runtime (int8.h, int8_onednn.h), the simulation's
 * requantization (requant.h). Every SIMD kernel has a scalar `_ref` beside it, lives in a file
 * named for its ISA (*_avx2.c, *_avx512.c, *_vnni512.c, *_avxvnni.c, built with those flags),
 * and the unsuffixed name dispatches on qat_cpu_isa().
 *
 * Threading: kernels open their own OpenMP regions sized by qat_get_threads(); called from
 * inside a parallel region they run on the calling thread only. OpenBLAS is always kept
 * single-threaded so the two thread pools never oversubscribe the cores.
 */
#ifndef QAT_KERNELS_H
#define QAT_KERNELS_H

#include "qat.h"
#include <stddef.h>
#include <stdint.h>

/* ---- CPU features (kernels/cpu.c) ------------------------------------------------------ */

/* Best ISA the hardware and OS support, ignoring QAT_ISA and qat_set_isa. */
qat_isa qat_cpu_isa_hw(void);
/* Parses a QAT_ISA value ("scalar", "avx2", "avx512", case-insensitive). Returns 0 and sets
 * *out on success, -1 for anything else (the caller then ignores the variable). */
int qat_isa_parse(const char *s, qat_isa *out);

/* ---- GEMM (kernels/gemm.c) ------------------------------------------------------------- */

/* Row-major C (M x N) = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T when trans_x.
 * op(A) is M x K, op(B) is K x N; lda/ldb/ldc are row strides of the matrices as stored.
 * Backed by oneDNN's sgemm (measured faster than OpenBLAS here, see gemm.c), threaded over
 * our OpenMP pool; inside a parallel region it runs on the calling thread. The result
 * depends only on the thread count. beta == 0 overwrites C (NaNs in C are not propagated). */
void qat_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* The same on OpenBLAS: large products are split over M (or N) across OpenMP threads, each
 * running single-threaded OpenBLAS on its slice (qat_sgemm's fallback). */
void qat_sgemm_openblas(int trans_a, int trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc);
/* Naive triple loop with double accumulation: the reference the tests compare against. */
void qat_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- Convolution geometry -------------------------------------------------------------- */

/* A 2-d convolution over NHWC input; channel counts are per call (see below). */
typedef struct {
    int n, h, w;       /* input batch and spatial size */
    int c;             /* channels of x that the kernel sees (depthwise: all of them) */
    int kh, kw;        /* kernel size */
    int stride, pad;   /* same in both directions */
    int oh, ow;        /* output spatial size: (h + 2*pad - kh) / stride + 1 */
} qat_conv_geom;

/* Fills g and computes oh/ow. Returns 0, or -1 if the output would be empty or the numbers are
 * not positive (stride >= 1, pad >= 0, kernel >= 1). */
int qat_conv_geom_init(qat_conv_geom *g, int n, int h, int w, int c, int kh, int kw, int stride,
                       int pad);

/* ---- im2col / col2im for NHWC (kernels/im2col.c) ---------------------------------------- */

/* cols (N*OH*OW, KH*KW*cg): row p = (n, oh, ow), column (kh, kw, ci), taken from channels
 * [c0, c0+cg) of x (N, H, W, ctot); padding reads as 0. g->c is ignored (ctot/c0/cg say it). */
void qat_im2col_nhwc(float *cols, const float *x, const qat_conv_geom *g, int ctot, int c0,
                     int cg);
/* The adjoint: dx[..., c0:c0+cg] += scatter of cols (same layout). Parallel over images, so
 * deterministic. */
void qat_col2im_nhwc_add(float *dx, const float *cols, const qat_conv_geom *g, int ctot, int c0,
                         int cg);
/* 1x1 strided conv without padding: xs (N*OH*OW, C) = x[n, oh*stride, ow*stride, :]. */
void qat_gather_strided(float *xs, const float *x, const qat_conv_geom *g);
/* The adjoint: dx[n, oh*stride, ow*stride, :] += dxs. */
void qat_scatter_strided_add(float *dx, const float *dxs, const qat_conv_geom *g);

/* out (rows, C) += bias (C) broadcast over rows. */
void qat_bias_add(float *out, const float *bias, int64_t rows, int C);
/* db (C) += column sums of dy (rows, C). The rows are summed in chunks that depend on the
 * shape only, added in chunk order: bitwise the same on any thread count.
 * scratch: qat_bias_grad_scratch(rows, C) floats. */
size_t qat_bias_grad_scratch(int64_t rows, int C);
void qat_bias_grad(float *db, const float *dy, int64_t rows, int C, float *scratch);

/* ---- Depthwise convolution, NHWC (kernels/dwconv*.c) ------------------------------------ */
/* x (N, H, W, C), out/dy (N, OH, OW, C), g->c = C. Weights are repacked from the op's OHWI
 * (C, KH, KW, 1) into wk (KH, KW, C) so channels are contiguous and vectorise. */

void qat_dw_pack_weights(float *wk, const float *w_ohwi, int C, int KH, int KW);
/* dw_ohwi (C, KH, KW) += dwk (KH, KW, C) */
void qat_dw_unpack_add(float *dw_ohwi, const float *dwk, int C, int KH, int KW);

/* out = depthwise(x, wk) + bias (bias may be NULL). Overwrites out. */
void qat_dwconv_fwd(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                    const float *bias);
void qat_dwconv_fwd_ref(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                        const float *bias);
void qat_dwconv_fwd_avx2(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                         const float *bias);
void qat_dwconv_fwd_avx512(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                           const float *bias);

/* dx += the transpose of the forward applied to dy; with accumulate == 0, dx = ... instead
 * (dx need not be initialised: every element is written). The op uses that when it is the
 * first to produce x's gradient, which saves zeroing and re-reading a large buffer. */
void qat_dwconv_bwd_data(const qat_conv_geom *g, float *dx, const float *dy, const float *wk,
                         int accumulate);
void qat_dwconv_bwd_data_ref(const qat_conv_geom *g, float *dx, const float *dy,
                             const float *wk, int accumulate);
void qat_dwconv_bwd_data_avx2(const qat_conv_geom *g, float *dx, const float *dy,
                              const float *wk, int accumulate);
void qat_dwconv_bwd_data_avx512(const qat_conv_geom *g, float *dx, const float *dy,
                                const float *wk, int accumulate);

/* dwk (KH, KW, C) += sum over n, oh, ow of x * dy at each tap; db (C) += sum of dy (db may be
 * NULL). The output rows are cut into qat_dw_weight_chunks(g) chunks, which depend on the
 * shape only; each chunk is summed privately in scratch and the chunks are added in order, so
 * the result is bitwise the same on any thread count. scratch: qat_dwconv_bwd_weight_scratch(g)
 * floats (the _ref needs none and accepts NULL). */
int qat_dw_weight_chunks(const qat_conv_geom *g);
/* Below this many multiply-adds a depthwise pass runs on one thread: a fork/join beats one
 * thread from about 2^15 on idle cores, but beside busy processes every join can wait a
 * scheduler slice for the other thread (issue 19); 2^20 (about 30 us of work) keeps batch-1
 * layers on one thread. */
#define QAT_DW_PARALLEL_MIN_MACS (1 << 20)
size_t qat_dwconv_bwd_weight_scratch(const qat_conv_geom *g);
void qat_dwconv_bwd_weight(const qat_conv_geom *g, float *dwk, float *db, const float *dy,
                           const float *x, float *scratch);
void qat_dwconv_bwd_weight_ref(const qat_conv_geom *g, float *dwk, float *db, const float *dy,
                               const float *x, float *scratch);
void qat_dwconv_bwd_weight_avx2(const qat_conv_geom *g, float *dwk, float *db, const float *dy,
                                const float *x, float *scratch);
void qat_dwconv_bwd_weight_avx512(const qat_conv_geom *g, float *dwk, float *db,
                                  const float *dy, const float *x, float *scratch);

/* Threads a kernel's parallel region should use: qat_get_threads(), at most the cap, or 1 when
 * already inside a parallel region. Every parallel region of the FP32 engine names it in
 * num_threads(), so the cap reaches them all (and oneDNN's sgemm, see kernels/gemm.c). */
int qat_kernel_threads(void);
/* The cap (0: none) the FP32 engine's team governor sets when other processes hold the cores;
 * qat_set_threads() lifts it. */
void qat_set_thread_cap(int n);
int qat_thread_cap(void);
/* Fits the cap to the load once per step (kernels/team.c); qat_ctx_reset calls it. */
void qat_team_tick(void);
/* The governor's decision, apart from its measurements so that tests can drive it. */
typedef struct {
    int n;            /* the whole team */
    int cap;          /* 0: the whole team, else the threads the next window runs */
    int probing;      /* the current window runs the whole team to look at the load */
    int hot_windows;  /* windows in a row whose wait share was over the threshold */
    int idle_windows; /* capped windows in a row that saw no other runnable task */
    long long next_probe, backoff; /* ns */
} qat_team_state;
void qat_team_init(qat_team_state *d, int n);
/* One window ending at t (ns): share = the team's summed runnable-but-waiting time over the
 * window's length, runnable = /proc/loadavg's runnable count now (-1: not known). Returns the
 * cap for the next window (0: the whole team). */
int qat_team_decide(qat_team_state *d, double share, int runnable, long long t);

/* FP32 FMA throughput of one thread over about `seconds`, in multiply-adds per second: zmm
 * (needs AVX-512) and ymm (needs AVX2+FMA). For the host line of bench/ (bench/host.c). */
double qat_fma512_probe(double seconds);
double qat_fma256_probe(double seconds);

/* For a program's main(), before any OpenMP call: re-executes the program with a short OpenMP
 * spin (GOMP_SPINCOUNT=20000) unless the user set GOMP_SPINCOUNT or OMP_WAIT_POLICY. See cpu.c. */
void qat_exec_with_omp_defaults(char **argv);

#endif
