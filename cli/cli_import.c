/* qat import: an FP32 ONNX model as a qat checkpoint (export/onnx_import.c, train/import.c). */
#include "cli.h"
#include "onnx_import.h"
#include <stdio.h>
#include <string.h>

int cmd_import(int argc, char **argv) {
    const char *out = NULL, *spec_out = NULL;
    float mean = 0.0f, std = 1.0f;
    const cli_opt opts[] = {
        {"out", OPT_STR, &out, "checkpoint to write (also -o)"},
        {"spec-out", OPT_STR, &spec_out, "also write the model's spec (layer lines, docs/model-spec.md)"},
        {"mean", OPT_FLOAT, &mean, "the model's input normalisation: x = (pixel/255 - mean) / std [0]"},
        {"std", OPT_FLOAT, &std, "see --mean [1]"},
    };
    for (int a = 0; a < argc; a++)
        if (!strcmp(argv[a], "-o")) argv[a] = "--out";
    char *pos[1];
    int npos = 0;
    if (parse_opts_pos("import", "MODEL.onnx -o MODEL.ckpt [--spec-out M.spec] [--mean M --std S]", opts,
                       NOPTS(opts), argc, argv, pos, 1, &npos))
        return 0;
    if (npos != 1) usage_error("import", "%s", "give the ONNX file to import");
    if (!out) usage_error("import", "%s", "-o MODEL.ckpt is required");
    qat_model *m;
    if (qat_import_onnx_ckpt(pos[0], out, spec_out, mean, std, &m)) die(qat_last_error());
    printf("%s: %d layers, %lld parameters, input %dx%dx%d, %d classes, normalisation (pixel/255 - %g) / %g; "
           "written %s%s%s\n", pos[0], m->nlayers, (long long)m->nparams, m->in_h, m->in_w, m->in_c, m->nclasses,
           (double)mean, (double)std, out, spec_out ? " and " : "", spec_out ? spec_out : "");
    qat_model_free(m);
    return 0;
}
