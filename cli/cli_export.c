/* qat export: an INT8 model (.q8) as an ONNX QDQ graph, or an FP32 checkpoint as a float ONNX
 * graph (export/onnx_*.c through include/qat.h). Prints what a caller of the model needs to
 * know: its input layout and the normalisation it applies itself. */
#include "cli.h"
#include "qat.h"
#include <stdio.h>
#include <string.h>

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    int json = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "instead of MODEL.q8: an FP32 checkpoint, written as a float graph with "
                                 "BatchNorm folded into the conv weights and biases"},
        {"out", OPT_STR, &out, "ONNX file to write (also -o); written to a temp file, then renamed"},
        {"json", OPT_FLAG, &json, "print one JSON object"},
    };
    for (int a = 0; a < argc; a++)
        if (!strcmp(argv[a], "-o")) argv[a] = "--out";
    char *pos[1];
    int npos = 0;
    if (parse_opts_pos("export", "MODEL.q8 -o MODEL.onnx  |  --ckpt FP32.ckpt -o MODEL.onnx   "
                                 "(INT8: an ONNX QDQ graph, opset 13, 14 with HardSwish)",
                       opts, NOPTS(opts), argc, argv, pos, 1, &npos))
        return 0;
    if ((npos == 1) == (ckpt != NULL)) usage_error("export", "%s", "give either MODEL.q8 or --ckpt FP32.ckpt");
    if (!out) usage_error("export", "%s", "-o MODEL.onnx is required");
    qat_onnx_info info;
    qat_status st = ckpt ? qat_export_onnx_fp32(ckpt, out, &info) : qat_export_onnx(pos[0], out, &info);
    if (st) die(qat_last_error());
    const char *form = ckpt ? "FP32 (BN folded)" : "INT8 QDQ";
    if (json) {
        printf("{\"onnx\": \"%s\", \"form\": \"%s\", \"opset\": %d, \"nodes\": %d, \"initializers\": %d, "
               "\"bytes\": %lld, \"input\": \"%s\", \"normalisation\": \"%s\"",
               out, ckpt ? "fp32" : "int8-qdq", info.opset, info.nodes, info.initializers,
               (long long)info.bytes, info.input, info.normalisation);
        if (!ckpt)
            printf(", \"input_exact\": [%d, %d], \"mult_exact\": [%d, %d], \"lut_exact\": [%d, %d]",
                   info.input_exact, info.input_values, info.mult_exact, info.mults, info.lut_exact,
                   info.lut_entries);
        printf("}\n");
        return 0;
    }
    printf("%s: %s, opset %d, %d nodes, %d initializers, %lld bytes\n", out, form, info.opset, info.nodes,
           info.initializers, (long long)info.bytes);
    printf("  input: %s\n  normalisation: %s\n  output: logits: float32 (N, classes)\n", info.input,
           info.normalisation);
    if (!ckpt) {
        printf("  bit-exact with qat's INT8 arithmetic by ONNX's definitions: input codes %d/%d, "
               "requantization multipliers %d/%d", info.input_exact, info.input_values, info.mult_exact, info.mults);
        if (info.lut_entries) printf(", activation table entries %d/%d", info.lut_exact, info.lut_entries);
        printf(" (the rest differ by at most one rounding)\n");
    }
    return 0;
}
