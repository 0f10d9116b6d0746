/* The per-layer qconfig (models/qmodel.h, "float layers"): which layers of a PTQ/QAT model stay
 * in float, by layer name or glob pattern, from a small text file (--layer-qconfig) or a list
 * (qat quantize --allow-float's choice). Every rule must match a layer with a weight, so a typo
 * in a name is an error rather than a silently quantized layer. */
#include "qmodel.h"
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

qat_status qat_qmodel_set_float_pattern(qat_qmodel *q, const char *pattern, int on,
                                        const char *what, int *matched) {
    const qat_model *m = q->model;
    int n = 0;
    for (int i = 0; i < m->nlayers; i++) {
        if (q->layers[i].weight < 0 || fnmatch(pattern, m->layers[i].name, 0)) continue;
        qat_status st = qat_qmodel_set_float(q, i, on);
        if (st) return st;
        n++;
    }
    if (matched) *matched = n;
    if (!n)
        return qat_fail(QAT_ERR_ARG, "%s: '%s' matches no conv, fc or linear layer (names as in "
                        "qat inspect, e.g. features.0, features.3.body.1, fc)",
                        what, pattern);
    return QAT_OK;
}

qat_status qat_qmodel_apply_layer_qconfig(qat_qmodel *q, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    char line[512], what[600];
    qat_status st = QAT_OK;
    for (int ln = 1; !st && fgets(line, sizeof line, f); ln++) {
        snprintf(what, sizeof what, "%s:%d", path, ln);
        if (!strchr(line, '\n') && !feof(f)) {
            st = qat_fail(QAT_ERR_ARG, "%s: line longer than %d characters", what, (int)sizeof line - 2);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char pat[256], choice[64], extra[8];
        int n = sscanf(line, "%255s %63s %7s", pat, choice, extra);
        if (n <= 0) continue; /* blank or comment */
        if (n != 2) {
            st = qat_fail(QAT_ERR_ARG, "%s: expected 'PATTERN float' or 'PATTERN int8'", what);
            break;
        }
        for (char *c = choice; *c; c++) *c = (char)tolower((unsigned char)*c);
        const int is_float = !strcmp(choice, "float") || !strcmp(choice, "fp32");
        if (!is_float && strcmp(choice, "int8") && strcmp(choice, "quant")) {
            st = qat_fail(QAT_ERR_ARG, "%s: unknown choice '%s' (float or int8)", what, choice);
            break;
        }
        st = qat_qmodel_set_float_pattern(q, pat, is_float, what, NULL);
    }
    fclose(f);
    return st;
}

qat_status qat_qmodel_apply_float_list(qat_qmodel *q, const char *list, const char *what) {
    char pat[256];
    for (const char *s = list; s && *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len >= sizeof pat) return qat_fail(QAT_ERR_ARG, "%s: pattern too long", what);
        memcpy(pat, s, len);
        pat[len] = 0;
        if (len) {
            qat_status st = qat_qmodel_set_float_pattern(q, pat, 1, what, NULL);
            if (st) return st;
        }
        s = e ? e + 1 : s + len;
    }
    return QAT_OK;
}

void qat_qmodel_float_names(const qat_qmodel *q, char *buf, size_t cap) {
    size_t used = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < q->model->nlayers; i++) {
        if (!q->layers[i].is_float) continue;
        int w = snprintf(buf + used, cap > used ? cap - used : 0, "%s%s", used ? "," : "",
                         q->model->layers[i].name);
        if (w < 0 || used + (size_t)w >= cap) break;
        used += (size_t)w;
    }
}
