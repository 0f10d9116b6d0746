/* The host a benchmark ran on, printed with every bench/ table so figures from different
 * machines are never mixed up: CPU model, family/model, the ISA paths the run-time dispatch
 * takes, the measured FP32 FMA and int8 VNNI peaks, threads and load average. */
#ifndef QAT_BENCH_HOST_H
#define QAT_BENCH_HOST_H
#include <stddef.h>
#include <stdio.h>

typedef struct {
    char cpu[128];       /* "model name" of /proc/cpuinfo */
    char vendor[16];     /* "vendor_id" */
    int family, model;   /* "cpu family", "model" */
    int nprocs;          /* online CPUs */
    const char *fp32_isa;  /* qat's FP32 kernels: scalar, avx2, avx512 */
    const char *gemm_isa;  /* what oneDNN's sgemm JITs for */
    const char *int8_path; /* the int8 runtime's kernels: ref, avx2, avx512, avxvnni, vnni512 */
    int avx512_vnni, avx_vnni;
    double fma_gflop_1t;   /* FP32 multiply-adds per second, one thread, in G (0: no probe) */
    const char *fma_width; /* "zmm", "ymm" or "none" */
    double vnni_gmac_1t;   /* int8 vpdpbusd zmm multiply-adds per second, one thread, in G */
    int threads;
    double load[3];        /* /proc/loadavg */
} bench_host;

/* Fills h: reads /proc, asks the dispatch, runs the peak probes (best of a few 10 ms trials
 * each, about 0.3 s in all). */
void bench_host_probe(bench_host *h, int threads);
/* A few "host ..." lines, for the top of a table. */
void bench_host_print(const bench_host *h, FILE *f);
/* `"host": {...}` (no braces around), for a bench's JSON line. Returns what snprintf returns. */
int bench_host_json(const bench_host *h, char *buf, size_t size);

#endif
