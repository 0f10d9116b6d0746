/* From the PTQ/QAT model to the INT8 model, and the integer-exact simulation of the INT8 model.
 *
 *   qat_q8_model *m;
 *   if (qat_convert_qmodel(qmodel, mean, std, &m)) die(qat_last_error()); // fold BN, quantize
 *   ... qat_q8_save(m, "model.q8") (runtime/q8.h) ...
 *   qat_tensor *logits = qat_qsim_forward(m, &ctx, x, NULL);  // what the INT8 runtime computes
 *   qat_q8_free(m);
 *
 * Convert (export/convert.c) reads every quantization parameter from the fake-quant points
 * exactly as the QAT model's eval forward uses them, folds BN exactly as that forward folds it
 * (the running-statistics path of the conv layer's fake-quant graph), and stores the int8
 * weights, int32 biases and float multipliers once (docs/quantization.md, "Convert").
 *
 * The simulation (export/qsim.c) evaluates that same qat_q8_model with the float engine
 * (qat_conv2d and qat_linear on integer-valued floats, which are exact while partial sums stay
 * below 2^24 — checked per layer, with an integer loop beyond it) and qmath.h's
 * requantization: an implementation of the INT8 arithmetic independent of the int8 kernels.
 * The evaluation of PTQ/QAT models uses it (qat_quantized_forward), so the accuracy QAT
 * reports is the accuracy the INT8 model delivers.
 */
#ifndef QAT_EXPORT_H
#define QAT_EXPORT_H

#include "q8.h"
#include "qmodel.h"

/* 1 when q can be converted (every point quantized with an INT8 kernel behind it); otherwise 0
 * and, if why != NULL, the reason (cap bytes). */
int qat_convertible(const qat_qmodel *q, char *why, size_t cap);

/* Builds the INT8 model of q. q's points must have qparams (observers that saw data, or learned
 * quantizers); dirty qparams are computed first, as the forward would. Errors: QAT_ERR_ARG
 * naming the layer for anything without an INT8 kernel (hardswish, signed or affine-weight
 * schemes, fake-quant off, BN folding off), QAT_ERR_NUMERIC when a value does not fit
 * (accumulator bound, non-finite scale). mean/std: input normalisation recorded in the file. */
qat_status qat_convert_qmodel(qat_qmodel *q, const float mean[4], const float std[4],
                              qat_q8_model **out);

/* The integer-exact simulation: x (N, H, W, C) normalised floats -> logits (N, nclasses).
 * codes (optional): per layer, an arena array of that layer's u8 output codes (N * out
 * elements; f32 elements for a float value, qat_q8_value_is_float; NULL for the last layer). NULL with the error set on a shape mismatch. */
qat_tensor *qat_qsim_forward(const qat_q8_model *m, qat_ctx *ctx, const qat_tensor *x,
                             uint8_t **codes);

/* The network a PTQ/QAT model is: in eval mode (not calibrating, no trace, q->exact_eval, and
 * convertible) the integer-exact simulation of its INT8 model, so that evaluation reports what
 * the INT8 runtime delivers; otherwise (training, calibration, or q->exact_eval = 0) the
 * fake-quant graph of qat_qmodel_forward. */
qat_tensor *qat_quantized_forward(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x);

#endif
