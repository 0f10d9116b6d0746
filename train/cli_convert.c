/* qat convert: PTQ/QAT checkpoint -> INT8 model file (.q8). */
#include "cli.h"
#include "train.h"
#include <stdio.h>
#include <string.h>

int cmd_convert(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    int json = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "PTQ or QAT checkpoint (qat ptq --out, qat qat --out DIR/last.ckpt)"},
        {"o", OPT_STR, &out, "INT8 model file to write (.q8)"},
        {"out", OPT_STR, &out, "same as -o"},
        {"json", OPT_FLAG, &json, "print one JSON object"},
    };
    /* accept the short form -o as well as --o/--out */
    for (int a = 0; a < argc; a++)
        if (!strcmp(argv[a], "-o")) argv[a] = "--out";
    if (parse_opts("convert", "--ckpt QAT.ckpt -o MODEL.q8", opts, NOPTS(opts), argc, argv)) return 0;
    if (!ckpt || !out) usage_error("convert", "%s", "--ckpt and -o are required");
    qat_q8_model *m;
    if (qat_convert_checkpoint(ckpt, out, &m)) die(qat_last_error());
    int64_t macs = 0, weights = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const qat_q8_layer *L = &m->layers[i];
        macs += qat_q8_layer_macs(L);
        weights += qat_q8_layer_weights(L);
    }
    if (json)
        printf("{\"model\": \"%s\", \"layers\": %d, \"weights\": %lld, \"macs\": %lld, \"qconfig\": \"%s\"}\n", out,
               (int)m->nlayers, (long long)weights, (long long)macs, m->qconfig);
    else
        printf("%s: %d INT8 layers, %lld weights (%.1f KiB as int8), %.2f MMAC per image, qconfig %s, input %dx%dx%d\n",
               out, (int)m->nlayers, (long long)weights, weights / 1024.0, macs / 1e6, m->qconfig, (int)m->in_h,
               (int)m->in_w, (int)m->in_c);
    qat_q8_free(m);
    return 0;
}
