/* qat eval --int8 / bench / infer: the INT8 side of the command line.
 * (Being built in this session: the runtime lands with these commands.) */
#include "cli.h"
#include <stdio.h>

static int not_built(const char *cmd) {
    fprintf(stderr, "qat %s: the INT8 runtime is not built yet\n", cmd);
    return 1;
}
int cmd_infer(int argc, char **argv) { return not_built("infer"); }
int cmd_bench(int argc, char **argv) { return not_built("bench"); }
int cli_eval_int8(const char *model, const char *data, float val_split, int batch, int threads,
                  const char *backend, int json) {
    return not_built("eval --int8");
}
