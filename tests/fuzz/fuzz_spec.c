/* libFuzzer target for the model spec parser (layers/spec.c) and the model it describes
 * (models/model.c at 28x28x1, 10 classes), as `qat summary --model FILE` and `qat train --model`
 * run them: `make fuzz`. An accepted spec must print its canonical text, and that text must
 * parse to a spec with the same text again. */
#include "model.h"
#include "spec.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    qat_spec *s = NULL;
    if (qat_spec_parse(text, "fuzz.spec", &s) == QAT_OK) {
        qat_spec *again = NULL;
        if (qat_spec_parse(qat_spec_text(s), "fuzz.spec (canonical)", &again) != QAT_OK) __builtin_trap();
        if (strcmp(qat_spec_text(s), qat_spec_text(again))) __builtin_trap();
        qat_spec_free(again);
        qat_model *m = NULL;
        if (qat_model_create(s, 0.0f, 28, 28, 1, 10, &m) == QAT_OK) {
            if (m->nparams < 0 || m->macs < 0) __builtin_trap();
            qat_model_free(m);
        }
        qat_spec_free(s);
    }
    free(text);
    return 0;
}
