/* qconfig presets: which scheme and observer each quantization point uses. The x86 preset is
 * PyTorch's x86/onednn QAT qconfig without reduce_range (qat's INT8 kernels accumulate u8 x s8
 * products in int32 with VNNI, so the 7-bit activation workaround for vpmaddubsw is not needed). */
#include "quant.h"
#include <stdio.h>
#include <string.h>

static const qat_qscheme U8_AFFINE = {.bits = 8, .is_signed = 0, .symmetric = 0, .axis = -1};
static const qat_qscheme S8_SYM_PER_CHANNEL = {
    .bits = 8, .is_signed = 1, .symmetric = 1, .per_channel = 1, .axis = 0};
static const qat_qscheme S8_SYM_PER_TENSOR = {.bits = 8, .is_signed = 1, .symmetric = 1, .axis = 0};
/* 4-bit weights use the narrow range [-7, 7] so the grid is symmetric around 0. */
static const qat_qscheme S4_SYM_PER_CHANNEL = {
    .bits = 4, .is_signed = 1, .symmetric = 1, .narrow_range = 1, .per_channel = 1, .axis = 0};

static const struct {
    const char *name;
    const qat_qscheme *weight;
    int lsq;
} presets[] = {
    {"x86", &S8_SYM_PER_CHANNEL, 0},
    {"per-tensor", &S8_SYM_PER_TENSOR, 0},
    {"w4a8", &S4_SYM_PER_CHANNEL, 0},
    /* LSQ weights (zero point 0), LSQ+ activations (learned offset: project convs and adds are
     * signed), both initialised from min-max calibration. */
    {"lsq", &S8_SYM_PER_CHANNEL, 1},
};

const char *qat_qconfig_list(void) { return "x86, per-tensor, w4a8, lsq"; }

qat_status qat_qconfig_get(const char *name, qat_qconfig *out) {
    for (size_t i = 0; name && i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(name, presets[i].name)) continue;
        memset(out, 0, sizeof *out);
        snprintf(out->name, sizeof out->name, "%s", presets[i].name);
        out->act = U8_AFFINE;
        out->weight = *presets[i].weight;
        out->act_obs_qat = QAT_OBS_MOVING_AVG;
        out->act_obs_ptq = QAT_OBS_MINMAX;
        out->weight_obs = QAT_OBS_MINMAX;
        out->lsq = presets[i].lsq;
        if (out->lsq) out->act_obs_qat = QAT_OBS_MINMAX; /* the calibration that seeds the scales */
        return QAT_OK;
    }
    return qat_fail(QAT_ERR_ARG, "qconfig: unknown preset '%s' (known: %s)", name ? name : "(null)",
                    qat_qconfig_list());
}
