/* qat_export_onnx_fp32 (include/qat.h): an FP32 checkpoint as a float ONNX graph. Loading the
 * checkpoint is train/'s; the graph is export/onnx_fp32.c's. */
#include "onnx.h"
#include "train.h"
#include <string.h>

qat_status qat_export_onnx_fp32(const char *ckpt, const char *out, qat_onnx_info *info) {
    if (!ckpt || !out) return qat_fail(QAT_ERR_ARG, "export: a checkpoint and an output path are required");
    qat_run r;
    memset(&r, 0, sizeof r);
    qat_status st = qat_checkpoint_load(ckpt, &r);
    if (st) return st;
    if (r.qmodel) /* its float weights are not the model it stands for: the INT8 model is */
        st = qat_fail(QAT_ERR_ARG, "%s: a PTQ/QAT checkpoint; export its INT8 model instead "
                                   "(qat convert --ckpt %s -o M.q8, then qat export M.q8)", ckpt, ckpt);
    else
        st = qat_onnx_from_model(r.model, r.mean, r.std, ckpt, out, info);
    qat_run_free(&r);
    return st;
}
