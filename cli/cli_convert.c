/* qat convert: PTQ/QAT checkpoint -> INT8 model file (.q8). */
#include "cli.h"
#include "qat.h"
#include <stdio.h>
#include <string.h>

int cmd_convert(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    int json = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "PTQ or QAT checkpoint (qat ptq --out, qat qat --out DIR/last.ckpt)"},
        {"out", OPT_STR, &out, "INT8 model file to write (.q8; also -o)"},
        {"json", OPT_FLAG, &json, "print one JSON object"},
    };
    /* the short form -o is --out (the table lists options with two dashes only) */
    for (int a = 0; a < argc; a++)
        if (!strcmp(argv[a], "-o")) argv[a] = "--out";
    if (parse_opts("convert", "--ckpt QAT.ckpt -o MODEL.q8", opts, NOPTS(opts), argc, argv)) return 0;
    if (!ckpt || !out) usage_error("convert", "%s", "--ckpt and -o are required");
    qat_convert_info m;
    if (qat_convert(ckpt, out, &m)) die(qat_last_error());
    if (json)
        printf("{\"model\": \"%s\", \"layers\": %d, \"weights\": %lld, \"macs\": %lld, \"qconfig\": \"%s\", "
               "\"float_layers\": %d, \"float_weights\": %lld}\n", out, m.layers, (long long)m.weights,
               (long long)m.macs, m.qconfig, m.float_layers, (long long)m.float_weights);
    else if (m.float_layers)
        printf("%s: %d INT8-model layers (%d in float), %lld weights (%lld int8, %lld float), %.2f MMAC per image, "
               "qconfig %s, input %dx%dx%d\n", out, m.layers, m.float_layers, (long long)m.weights,
               (long long)(m.weights - m.float_weights), (long long)m.float_weights, m.macs / 1e6, m.qconfig,
               m.in_h, m.in_w, m.in_c);
    else
        printf("%s: %d INT8 layers, %lld weights (%.1f KiB as int8), %.2f MMAC per image, qconfig %s, input %dx%dx%d\n",
               out, m.layers, (long long)m.weights, m.weights / 1024.0, m.macs / 1e6, m.qconfig, m.in_h,
               m.in_w, m.in_c);
    return 0;
}
