/* The layer kinds: one row per qat_layer_kind, each the descriptor its file defines
 * (layers/layer.h). Adding a kind: its file, its enum value and its row here. */
#include "layer.h"

const qat_layer_desc *const qat_layer_kinds[QAT_LAYER_KIND_COUNT] = {
    [QAT_LAYER_CONV_BN_ACT] = &qat_layer_conv_bn_act,
    [QAT_LAYER_ADD] = &qat_layer_add,
    [QAT_LAYER_GLOBAL_AVGPOOL] = &qat_layer_global_avgpool,
    [QAT_LAYER_DROPOUT] = &qat_layer_dropout,
    [QAT_LAYER_LINEAR] = &qat_layer_linear,
    [QAT_LAYER_ACT] = &qat_layer_act,
    [QAT_LAYER_FC] = &qat_layer_fc,
    [QAT_LAYER_CHANNEL_MUL] = &qat_layer_channel_mul,
    [QAT_LAYER_MAXPOOL] = &qat_layer_maxpool,
    [QAT_LAYER_AVGPOOL] = &qat_layer_avgpool,
};
