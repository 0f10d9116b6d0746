/* qat plot: training curves to PNG. (Being built in this session.) */
#include "cli.h"
#include <stdio.h>

int cmd_plot(int argc, char **argv) {
    fprintf(stderr, "qat plot: not built yet\n");
    return 1;
}
