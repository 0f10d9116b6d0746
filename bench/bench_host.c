/* Prints the host block (bench/host.h) for the bench/ scripts, which run it before each table.
 *
 *   build/bench_host [--threads 2] [--json 1]
 */
#include "host.h"
#include "kernels.h" /* qat_exec_with_omp_defaults */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int threads = 2, json = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json")) json = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_host: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1) {
        fprintf(stderr, "bench_host: --threads must be positive\n");
        return 2;
    }
    bench_host h;
    bench_host_probe(&h, threads);
    if (json) {
        char buf[1024];
        bench_host_json(&h, buf, sizeof buf);
        printf("{%s}\n", buf);
    } else bench_host_print(&h, stdout);
    return 0;
}
