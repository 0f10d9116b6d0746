#include "onnx.h"
qat_status qat_onnx_from_model(const struct qat_model *m, const float mean[4], const float std[4],
                               const char *what, const char *out, qat_onnx_info *info) {
    return qat_fail(QAT_ERR_ARG, "%s: FP32 export not yet", what);
}
