/* qat_rt — the deploy-only INT8 runtime: loads a .q8 model (from `qat convert`) and runs it on
 * the INT8 kernels (AVX512-VNNI / AVX-VNNI / AVX-512 / AVX2 / scalar) or oneDNN. Link with
 * libqat_rt.a -ldnnl -lz -lm -fopenmp; no training code, no other qat header needed.
 *
 *   qat_rt *rt;
 *   if (qat_rt_load("model.q8", NULL, &rt)) { fprintf(stderr, "%s\n", qat_rt_last_error()); return 1; }
 *   int h, w, c;
 *   qat_rt_input_shape(rt, &h, &w, &c);
 *   float *logits = malloc(sizeof(float) * n * qat_rt_nclasses(rt));
 *   if (qat_rt_run_u8(rt, pixels, n, logits))   // pixels (n, h, w, c) 0..255, NHWC
 *       fprintf(stderr, "%s\n", qat_rt_last_error());
 *   qat_rt_free(rt);
 *
 * Status: every function that can fail returns a qat_status (include/qat_status.h, the codes
 * include/qat.h uses too: QAT_OK = 0, QAT_ERR_ARG, QAT_ERR_IO, QAT_ERR_FORMAT, ...,
 * QAT_ERR_NOMEM) and qat_rt_last_error() names the file and the problem in one line. Nothing
 * prints or exits.
 *
 * Threads: a runtime is used by one thread at a time (its activation buffers are its own);
 * the kernels themselves use OpenMP threads. The thread count and the kernel variant of the
 * native kernels are process-wide settings: `threads` > 0 in the options calls the library's
 * qat_set_threads at load, and the `ref` backend forces the scalar kernels for the duration of
 * each run (then restores the previous choice), so do not run a `ref` runtime concurrently with
 * another one.
 */
#ifndef QAT_RT_H
#define QAT_RT_H

#include "qat_status.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qat_rt qat_rt;

typedef enum {
    QAT_RT_BACKEND_AUTO = 0, /* per conv/linear layer: time native and oneDNN at load, keep the faster */
    QAT_RT_BACKEND_NATIVE,   /* qat's INT8 kernels, best SIMD variant of this CPU */
    QAT_RT_BACKEND_ONEDNN,   /* oneDNN for conv/linear layers (add/avgpool stay native) */
    QAT_RT_BACKEND_REF,      /* qat's scalar reference kernels (slow; for checking) */
    QAT_RT_BACKEND_COUNT
} qat_rt_backend;

typedef struct {
    int threads;            /* > 0: set the (process-wide) kernel thread count; 0: keep */
    qat_rt_backend backend;
    int batch;              /* batch size planned at load and timed by `auto` (default 1);
                             * any batch size can be run, larger ones re-plan the buffers */
} qat_rt_options;

void qat_rt_options_default(qat_rt_options *o);
/* "auto", "native", "onednn", "ref" -> *out; QAT_ERR_ARG for anything else. */
qat_status qat_rt_backend_parse(const char *s, qat_rt_backend *out);
const char *qat_rt_backend_name(qat_rt_backend b);

/* Loads, validates and prepares a .q8 model (weights packed once, buffers planned for
 * opt->batch). opt NULL: defaults. On failure *out = NULL. */
qat_status qat_rt_load(const char *path, const qat_rt_options *opt, qat_rt **out);
/* NULL is a no-op. */
void qat_rt_free(qat_rt *rt);

void qat_rt_input_shape(const qat_rt *rt, int *h, int *w, int *c);
int qat_rt_nclasses(const qat_rt *rt);
/* Class k's name when the model stores class names (an ImageFolder's folder names), else NULL
 * (also for k out of range). */
const char *qat_rt_class_name(const qat_rt *rt, int k);
/* Per-channel normalisation the model was trained with: x = (pixel/255 - mean[c]) / std[c]. */
void qat_rt_input_norm(const qat_rt *rt, float *mean, float *std);

/* x (n, h, w, c) normalised floats, NHWC -> logits (n, nclasses). */
qat_status qat_rt_run(qat_rt *rt, const float *x, int n, float *logits);
/* pixels (n, h, w, c) raw 0..255, NHWC: normalised with the model's mean/std, then quantized
 * (bit-identical to normalising in float and calling qat_rt_run). */
qat_status qat_rt_run_u8(qat_rt *rt, const uint8_t *pixels, int n, float *logits);

/* Bytes of the activation buffers planned for the largest batch seen so far (values share
 * memory once their last reader has run), and what the same batch would need if every
 * activation had its own buffer. Scratch of the im2col/depthwise kernels is reported apart. */
size_t qat_rt_peak_activation_bytes(const qat_rt *rt);
size_t qat_rt_total_activation_bytes(const qat_rt *rt);
size_t qat_rt_scratch_bytes(const qat_rt *rt);
int qat_rt_planned_batch(const qat_rt *rt);

typedef struct {
    const char *name;    /* the model's layer name */
    const char *kind;    /* "conv3x3/s1", "dw3x3/s2", "pw1x1", "add", "avgpool", "linear" */
    const char *backend; /* "native", "onednn" or "ref": what this layer runs on */
    int64_t macs;        /* multiply-accumulates per image */
    double last_ms;      /* wall time of this layer in the last run (whole batch) */
    int out_h, out_w, out_c;
} qat_rt_layer_info;

int qat_rt_num_layers(const qat_rt *rt);
/* i in [0, qat_rt_num_layers); the strings live as long as rt. */
qat_status qat_rt_layer(const qat_rt *rt, int i, qat_rt_layer_info *out);

/* The last error of the calling thread (shared with the rest of the library). */
const char *qat_rt_last_error(void);

/* Measured peak of this machine's int8 multiply-accumulate units: a short vpdpbusd (zmm)
 * throughput probe on `threads` threads (<= 0: the kernel thread count), in GMAC/s. 0 when
 * the CPU has no AVX512-VNNI. Takes about 0.1 s. */
double qat_rt_vnni_peak_gmacs(int threads);
/* The same probe n times (10 ms each, one thread, times `threads`), each result into gmacs[i]:
 * their spread says how busy the machine was while probing. Returns n, or 0 (nothing written)
 * when the CPU has no AVX512-VNNI. */
int qat_rt_vnni_peak_probes(int threads, int n, double *gmacs);

#ifdef __cplusplus
}
#endif
#endif
