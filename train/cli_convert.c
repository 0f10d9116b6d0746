/* qat convert: PTQ/QAT checkpoint -> INT8 model file. (Being built in this session.) */
#include "cli.h"
#include <stdio.h>

int cmd_convert(int argc, char **argv) {
    fprintf(stderr, "qat convert: not built yet\n");
    return 1;
}
