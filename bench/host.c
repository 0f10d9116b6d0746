/* The host block of every bench/ table (see host.h). */
#include "host.h"
#include "int8.h"
#include "kernels.h"
#include "qat.h"
#include <dnnl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void cpuinfo(bench_host *h) {
    snprintf(h->cpu, sizeof h->cpu, "unknown");
    snprintf(h->vendor, sizeof h->vendor, "unknown");
    h->family = h->model = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    /* the first processor's block; the fields end at the first blank line */
    while (fgets(line, sizeof line, f) && line[0] != '\n') {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1 + (colon[1] == ' ');
        v[strcspn(v, "\n")] = 0;
        if (!strncmp(line, "model name", 10)) snprintf(h->cpu, sizeof h->cpu, "%s", v);
        else if (!strncmp(line, "vendor_id", 9)) snprintf(h->vendor, sizeof h->vendor, "%s", v);
        else if (!strncmp(line, "cpu family", 10)) h->family = atoi(v);
        else if (!strncmp(line, "model\t", 6)) h->model = atoi(v);
    }
    fclose(f);
}

static const char *dnnl_isa_name(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* Best of n short trials: on a shared machine a trial may lose its core; the best one shows
 * what a core retires when it has it. */
static double best_of(double (*probe)(double), int n) {
    double best = 0;
    for (int i = 0; i < n; i++) {
        double r = probe(0.01);
        if (r > best) best = r;
    }
    return best * 1e-9;
}

void bench_host_probe(bench_host *h, int threads) {
    memset(h, 0, sizeof *h);
    cpuinfo(h);
    h->nprocs = (int)sysconf(_SC_NPROCESSORS_ONLN);
    qat_isa isa = qat_cpu_isa();
    h->fp32_isa = qat_isa_name(isa);
    h->gemm_isa = dnnl_isa_name();
    h->int8_path = qat_i8_path_name(qat_i8_active_path());
    h->avx512_vnni = qat_cpu_has_avx512_vnni();
    h->avx_vnni = qat_cpu_has_avx_vnni();
    h->fma_width = "none";
    if (isa >= QAT_ISA_AVX512) h->fma_width = "zmm", h->fma_gflop_1t = best_of(qat_fma512_probe, 10);
    else if (isa >= QAT_ISA_AVX2) h->fma_width = "ymm", h->fma_gflop_1t = best_of(qat_fma256_probe, 10);
    if (h->avx512_vnni) h->vnni_gmac_1t = best_of(qat_i8_vnni512_probe, 10);
    h->threads = threads;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &h->load[0], &h->load[1], &h->load[2]) != 3)
            h->load[0] = h->load[1] = h->load[2] = -1;
        fclose(f);
    }
}

void bench_host_print(const bench_host *h, FILE *f) {
    fprintf(f, "host     %s (%s family %d model %d), %d CPUs online\n", h->cpu, h->vendor,
            h->family, h->model, h->nprocs);
    fprintf(f, "isa      fp32 kernels %s, oneDNN sgemm %s, int8 runtime %s (AVX512-VNNI %s, "
               "AVX-VNNI %s)\n", h->fp32_isa, h->gemm_isa, h->int8_path,
            h->avx512_vnni ? "yes" : "no", h->avx_vnni ? "yes" : "no");
    fprintf(f, "peaks    fp32 FMA %s %.1f GFMA/s per thread", h->fma_width, h->fma_gflop_1t);
    if (h->vnni_gmac_1t > 0) fprintf(f, ", int8 vpdpbusd zmm %.1f GMAC/s per thread", h->vnni_gmac_1t);
    else fprintf(f, ", int8 vpdpbusd zmm: no AVX512-VNNI");
    fprintf(f, " (best of 10 x 10 ms probes; x%d threads = %.1f GFMA/s, %.1f GMAC/s)\n", h->threads,
            h->fma_gflop_1t * h->threads, h->vnni_gmac_1t * h->threads);
    fprintf(f, "load     %d threads, load average %.2f %.2f %.2f\n", h->threads, h->load[0],
            h->load[1], h->load[2]);
}

int bench_host_json(const bench_host *h, char *buf, size_t size) {
    char cpu[sizeof h->cpu];
    size_t j = 0;
    for (size_t i = 0; h->cpu[i] && j + 1 < sizeof cpu; i++) /* no quotes or backslashes */
        if (h->cpu[i] != '"' && h->cpu[i] != '\\') cpu[j++] = h->cpu[i];
    cpu[j] = 0;
    return snprintf(buf, size,
                    "\"host\": {\"cpu\": \"%s\", \"family\": %d, \"model\": %d, \"fp32_isa\": \"%s\", "
                    "\"gemm_isa\": \"%s\", \"int8_path\": \"%s\", \"fma_gflop_1t\": %.1f, "
                    "\"vnni_gmac_1t\": %.1f, \"threads\": %d, \"load1\": %.2f}",
                    cpu, h->family, h->model, h->fp32_isa, h->gemm_isa, h->int8_path,
                    h->fma_gflop_1t, h->vnni_gmac_1t, h->threads, h->load[0]);
}
