/* CUnit runner. Each area's tests live in tests/test_<area>.c and register their suites in a
 * register_<area>_tests() function; an area not built yet is skipped (weak symbols). */
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AREAS(X) \
    X(core) X(kernels) X(conv) X(ops) X(datasets) X(optim) X(checkpoint) X(layers) X(train) \
    X(fakequant) X(qat) X(int8) X(onednn) X(export) X(qint) X(runtime) X(plot) X(quantize) X(cli) X(cli_usage) X(rgb) X(faults) X(onnx) X(graph) X(onnx_import) X(onnx_import_ops) \
    X(import_train) X(import_fuzz)
#define DECLARE(a) void register_##a##_tests(void) __attribute__((weak));
AREAS(DECLARE)

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
#define CALL(a) if (register_##a##_tests) register_##a##_tests();
    AREAS(CALL)
    /* test_qat [-v] [SUBSTRING]: only the suites whose name contains SUBSTRING */
    int verbose = 0;
    const char *only = NULL;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "-v")) verbose = 1;
        else only = argv[a];
    }
    if (only)
        for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext)
            CU_set_suite_active(s, strstr(s->pName, only) ? CU_TRUE : CU_FALSE);
    CU_basic_set_mode(verbose ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
    CU_basic_run_tests();
    /* read the counts before cleanup, which resets them */
    unsigned failures = CU_get_number_of_failures();
    unsigned tests_failed = CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    printf("\n%u passed, %u failed\n", run - tests_failed, tests_failed);
    return (failures || tests_failed || run == 0) ? 1 : 0;
}
