/* The range of every numeric option of the qat command line, in one table (issue 15 point 1):
 * the parser (cli/cli.c) checks each value against it before any work, and `qat help options`
 * prints it. An option is found by name, so --threads has one range in every command; an entry
 * with a command name applies to that command only and comes before the general one.
 *
 * A numeric option missing here stops the command at once ("internal: ... has no range"), also
 * under --help, so that a new option cannot slip in unchecked: tests/test_cli_usage.c runs
 * `qat CMD --help` for every command. */
#include "cli.h"
#include <stdio.h>
#include <string.h>

/* The seeds and step counts stay below 2^53 so that every value prints exactly in the JSON of
 * metrics.jsonl and checkpoint metadata (doubles there). */
#define EXACT_IN_DOUBLE 9007199254740992.0

static const cli_range ranges[] = {
    /* 256 = the hardware threads of a large 2-socket x86 server (2 x 64 cores x SMT 2); more
     * threads only oversubscribe the cores while libgomp's per-thread stacks and the kernels'
     * per-thread scratch grow with them (65536 overflowed the stack in kernels/im2col.c,
     * 2147483647 asked libgomp for 481 GB). A fixed bound, not 4 x nproc, so that a command
     * line (and a run, deterministic per thread count) means the same on every machine. */
    {NULL, "threads", 1, 256, 0, 0, "more only oversubscribes; fixed so a command means the same everywhere"},
    /* 8192 images of the largest input (4096x4096 would not fit anyway) keep every
     * batch x image-size product in the loaders' int64 offsets and a 224x224x3 batch at 4.9 GB. */
    {NULL, "batch", 1, 8192, 0, 0, "a batch's images and activations must fit in memory"},
    {NULL, "epochs", 1, 100000, 0, 0, NULL},
    {"quantize", "qat-epochs", 0, 1000, 0, 0, "0: PTQ only"},
    {NULL, "qat-from-epoch", 1, 100000, 0, 0, "and at most --epochs"},
    {NULL, "max-steps", 1, EXACT_IN_DOUBLE, 0, 0, "2^53: exact in the JSON metadata"},
    {NULL, "seed", 0, EXACT_IN_DOUBLE, 0, 0, "2^53: exact in the JSON metadata"},
    /* A larger peak lr only diverges faster; the bound still lets a divergence be provoked on
     * purpose (tests/faults). */
    {NULL, "lr", 0, 1000, 1, 0, NULL},
    {NULL, "lsq-lr-mult", 0, 1000, 1, 0, "relative to --lr"},
    {NULL, "wd", 0, 1, 0, 1, "typical values are 1e-5 to 1e-3"},
    {NULL, "momentum", 0, 1, 0, 1, "1 never forgets a gradient"},
    {NULL, "warmup-epochs", 0, 100000, 0, 0, "and at most --epochs"},
    {NULL, "label-smoothing", 0, 1, 0, 1, "1 leaves no target"},
    {NULL, "val-split", 0, 1, 1, 1, NULL},
    {NULL, "crop-pad", 0, 4096, 0, 0, "and below the image side"},
    /* The spec loader's own limit (models/model.c). */
    {NULL, "width", 0, 16, 1, 0, "models/model.c's limit"},
    {NULL, "freeze-bn-epoch", 0, 100000, 0, 0, "or auto, never"},
    {NULL, "freeze-observer-epoch", 0, 100000, 0, 0, "or auto, never"},
    {NULL, "bn-reestimate", 0, 100000, 0, 0, "0: keep the moving averages"},
    {NULL, "calib-batches", 1, 100000, 0, 0, NULL},
    {NULL, "images", 1, 100000000, 0, 0, NULL},
    {NULL, "sensitivity-images", 1, 100000000, 0, 0, NULL},
    {NULL, "allow-float", 0, 100000, 0, 0, "layers left in float; 0: none"},
    {NULL, "percentile", 50, 100, 1, 0, NULL},
    {NULL, "averaging-constant", 0, 1, 1, 0, NULL},
    {NULL, "max-drop", 0, 100, 0, 0, "accuracy points"},
    {NULL, "top", 1, 100000, 0, 0, "more than the model's classes shows them all"},
    /* The default is 2000 at batch 1 and 4000/batch above; 10000 runs of batch 64 take minutes
     * here, 65536 took hours (the "runs for ever"). */
    {NULL, "iters", 1, 10000, 0, 0, "per batch size"},
    {NULL, "peak", 0, 1e7, 1, 0, "GMAC/s"},
    /* qat summary's model shape: the limits of models/model.c. */
    {NULL, "height", 1, 4096, 0, 0, NULL},
    {NULL, "in-width", 1, 4096, 0, 0, NULL},
    {NULL, "channels", 1, 4096, 0, 0, NULL},
    {NULL, "classes", 1, 100000, 0, 0, NULL},
};

const cli_range *cli_range_of(const char *cmd, const char *name) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < NOPTS(ranges); i++) {
            const cli_range *r = &ranges[i];
            if (strcmp(r->name, name)) continue;
            if (pass == 0 ? (r->cmd && cmd && !strcmp(r->cmd, cmd)) : !r->cmd) return r;
        }
    return NULL;
}

int cli_range_holds(const cli_range *r, double v) {
    if (!(v == v)) return 0;
    if (r->lo_open ? !(v > r->lo) : !(v >= r->lo)) return 0;
    if (r->hi_open ? !(v < r->hi) : !(v <= r->hi)) return 0;
    return 1;
}

void cli_range_format(const cli_range *r, char *buf, size_t size) {
    snprintf(buf, size, "%c%.17g, %.17g%c", r->lo_open ? '(' : '[', r->lo, r->hi,
             r->hi_open ? ')' : ']');
}

void cli_print_ranges(void) {
    printf("The range of every numeric option (checked before any work; a value outside is one\n"
           "error line and exit 2). Integers are plain decimal digits, numbers decimal with an\n"
           "optional fraction and exponent: no hex, no spaces, no inf or nan.\n\n");
    printf("  %-24s %-30s %s\n", "option", "range", "note");
    for (int i = 0; i < NOPTS(ranges); i++) {
        const cli_range *r = &ranges[i];
        char name[64], span[80];
        snprintf(name, sizeof name, "--%s%s%s", r->name, r->cmd ? " of " : "", r->cmd ? r->cmd : "");
        cli_range_format(r, span, sizeof span);
        printf("  %-24s %-30s %s\n", name, span, r->why ? r->why : "");
    }
    printf("\n  bench --batch takes a comma-separated list, each size in the range of --batch.\n");
}
