/* Reader of the metrics.jsonl that train/train.c appends one flat JSON object per epoch to
 * (after a {"phase": "config", ...} line per start of training, which the plots skip).
 * Tolerant where the writer can be (whitespace, key order, unknown keys, bare nan/inf that
 * printf writes for a diverged loss), strict where a file is broken: every problem is reported
 * as "path:line: what, at column N". */
#include "metrics.h"
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef struct {
    const char *path;
    int lineno;
    const char *s;   /* the line */
    size_t pos;
} cursor;

static qat_status syntax(const cursor *c, const char *what) {
    return qat_fail(QAT_ERR_FORMAT, "%s:%d: %s at column %d", c->path, c->lineno, what,
                    (int)c->pos + 1);
}

static void skip_ws(cursor *c) {
    while (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' || c->s[c->pos] == '\r' || c->s[c->pos] == '\n')
        c->pos++;
}

/* A JSON string into buf (truncated to size - 1; \uXXXX escapes become '?', keys and phases
 * are ASCII). */
static qat_status parse_string(cursor *c, char *buf, size_t size) {
    if (c->s[c->pos] != '"') return syntax(c, "expected a string");
    c->pos++;
    size_t n = 0;
    for (;;) {
        char ch = c->s[c->pos];
        if (!ch) return syntax(c, "unterminated string");
        c->pos++;
        if (ch == '"') break;
        if (ch == '\\') {
            char e = c->s[c->pos];
            if (!e) return syntax(c, "unterminated string");
            c->pos++;
            if (e == 'u') {
                for (int k = 0; k < 4; k++, c->pos++)
                    if (!strchr("0123456789abcdefABCDEF", c->s[c->pos]) || !c->s[c->pos])
                        return syntax(c, "bad \\u escape");
                ch = '?';
            } else {
                const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *p = strchr(from, e);
                if (!p) return syntax(c, "bad escape in string");
                ch = to[p - from];
            }
        }
        if (n + 1 < size) buf[n++] = ch;
    }
    buf[n] = 0;
    return QAT_OK;
}

static int is_delim(char ch) { return !ch || strchr(" \t\r\n,}]", ch); }

/* Words printf and JSON writers use for special values. */
static int parse_word(cursor *c, double *v) {
    static const struct { const char *word; double value; } words[] = {
        {"nan", NAN}, {"-nan", NAN}, {"NaN", NAN}, {"null", NAN}, {"inf", INFINITY},
        {"-inf", -INFINITY}, {"Infinity", INFINITY}, {"-Infinity", -INFINITY},
        {"true", 1}, {"false", 0},
    };
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
        size_t len = strlen(words[k].word);
        if (!strncmp(c->s + c->pos, words[k].word, len) && is_delim(c->s[c->pos + len])) {
            c->pos += len, *v = words[k].value;
            return 1;
        }
    }
    return 0;
}

static qat_status parse_number(cursor *c, double *v) {
    if (parse_word(c, v)) return QAT_OK;
    const char *start = c->s + c->pos;
    char ch = *start;
    if (!(ch == '-' || (ch >= '0' && ch <= '9'))) return syntax(c, "expected a value");
    char *end;
    errno = 0;
    *v = strtod(start, &end);
    if (end == start || !is_delim(*end)) return syntax(c, "bad number");
    c->pos += (size_t)(end - start);
    return QAT_OK;
}

typedef enum { VAL_NUMBER, VAL_STRING, VAL_ARRAY } val_kind;

typedef struct {
    val_kind kind;
    double num;
    char str[64];
} json_value;

static qat_status parse_scalar(cursor *c, json_value *v) {
    char ch = c->s[c->pos];
    if (ch == '{' || ch == '[') return syntax(c, "nested objects and arrays are not expected");
    if (ch == '"') {
        v->kind = VAL_STRING;
        return parse_string(c, v->str, sizeof v->str);
    }
    v->kind = VAL_NUMBER;
    return parse_number(c, &v->num);
}

/* A scalar, or a flat array of scalars (the config line's per-channel mean/std), which no key
 * the plots read holds: it comes back as VAL_ARRAY. */
static qat_status parse_value(cursor *c, json_value *v) {
    if (c->s[c->pos] != '[') return parse_scalar(c, v);
    c->pos++;
    skip_ws(c);
    if (c->s[c->pos] != ']') {
        for (;;) {
            json_value item;
            qat_status st;
            skip_ws(c);
            if ((st = parse_scalar(c, &item))) return st;
            skip_ws(c);
            if (c->s[c->pos] == ']') break;
            if (c->s[c->pos] != ',')
                return syntax(c, c->s[c->pos] ? "expected ',' or ']'" : "line ends inside an array");
            c->pos++;
        }
    }
    c->pos++;
    v->kind = VAL_ARRAY;
    v->str[0] = 0;
    return QAT_OK;
}

/* The numeric keys of a row, by name. */
static double *numeric_field(qat_metrics_row *r, const char *key) {
    static const struct { const char *key; size_t off; } fields[] = {
        {"step", offsetof(qat_metrics_row, step)},
        {"lr", offsetof(qat_metrics_row, lr)},
        {"train_loss", offsetof(qat_metrics_row, train_loss)},
        {"train_acc", offsetof(qat_metrics_row, train_acc)},
        {"test_loss", offsetof(qat_metrics_row, test_loss)},
        {"test_acc", offsetof(qat_metrics_row, test_acc)},
        {"epoch_s", offsetof(qat_metrics_row, epoch_s)},
        {"img_s", offsetof(qat_metrics_row, img_s)},
    };
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
        if (!strcmp(key, fields[k].key)) return (double *)((char *)r + fields[k].off);
    return NULL;
}

static qat_status store(const cursor *c, qat_metrics_row *r, const char *key, const json_value *v,
                        int *has_epoch) {
    double *num = numeric_field(r, key);
    if (!strcmp(key, "phase")) {
        if (v->kind != VAL_STRING)
            return qat_fail(QAT_ERR_FORMAT, "%s:%d: \"phase\" should be a string", c->path, c->lineno);
        snprintf(r->phase, sizeof r->phase, "%.15s", v->str);
    } else if (!strcmp(key, "epoch")) {
        if (v->kind != VAL_NUMBER || !(v->num >= 0 && v->num <= 1e9) || v->num != floor(v->num))
            return qat_fail(QAT_ERR_FORMAT, "%s:%d: \"epoch\" should be a whole number >= 0",
                            c->path, c->lineno);
        r->epoch = (int)v->num, *has_epoch = 1;
    } else if (num) {
        if (v->kind != VAL_NUMBER)
            return qat_fail(QAT_ERR_FORMAT, "%s:%d: \"%s\" should be a number, not %s%s%s", c->path,
                            c->lineno, key, v->kind == VAL_ARRAY ? "an array" : "\"", v->str,
                            v->kind == VAL_ARRAY ? "" : "\"");
        *num = v->num;
    }
    return QAT_OK;  /* other keys: written by a newer qat, not needed for plots */
}

static void row_init(qat_metrics_row *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->phase, sizeof r->phase, "fp32");
    r->step = r->lr = r->train_loss = r->train_acc = NAN;
    r->test_loss = r->test_acc = r->epoch_s = r->img_s = NAN;
}

static qat_status parse_members(cursor *c, qat_metrics_row *row, int *has_epoch) {
    skip_ws(c);
    if (c->s[c->pos] == '}') return QAT_OK;
    for (;;) {
        char key[64];
        json_value v;
        qat_status st;
        skip_ws(c);
        if ((st = parse_string(c, key, sizeof key))) return st;
        skip_ws(c);
        if (c->s[c->pos] != ':') return syntax(c, "expected ':' after a key");
        c->pos++;
        skip_ws(c);
        if ((st = parse_value(c, &v))) return st;
        if ((st = store(c, row, key, &v, has_epoch))) return st;
        skip_ws(c);
        if (c->s[c->pos] == '}') return QAT_OK;
        if (c->s[c->pos] != ',') return syntax(c, c->s[c->pos] ? "expected ',' or '}'" : "line ends inside the object");
        c->pos++;
    }
}

qat_status qat_metrics_parse_line(const char *path, int lineno, const char *line,
                                  qat_metrics_row *row) {
    cursor c = {path, lineno, line, 0};
    row_init(row);
    skip_ws(&c);
    if (c.s[c.pos] != '{') return syntax(&c, "expected '{'");
    c.pos++;
    int has_epoch = 0;
    qat_status st = parse_members(&c, row, &has_epoch);
    if (st) return st;
    c.pos++;
    skip_ws(&c);
    if (c.s[c.pos]) return syntax(&c, "text after the object");
    if (!has_epoch && strcmp(row->phase, "config"))
        return qat_fail(QAT_ERR_FORMAT, "%s:%d: no \"epoch\" key", path, lineno);
    return QAT_OK;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) return 0;
    return 1;
}

static qat_status append_row(qat_metrics *m, int *cap, const qat_metrics_row *r, const char *path) {
    if (m->n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        qat_metrics_row *p = realloc(m->rows, (size_t)nc * sizeof *p);
        if (!p) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
        m->rows = p, *cap = nc;
    }
    m->rows[m->n++] = *r;
    return QAT_OK;
}

qat_status qat_metrics_read(const char *path, qat_metrics *m) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t len = 0;
    int cap = 0, lineno = 0;
    qat_status st = QAT_OK;
    ssize_t got;
    while (!st && (got = getline(&line, &len, f)) != -1) {
        lineno++;
        if ((size_t)got != strlen(line)) {
            st = qat_fail(QAT_ERR_FORMAT, "%s:%d: NUL byte in the line (not a text file?)", path, lineno);
            break;
        }
        if (blank(line)) continue;
        qat_metrics_row r;
        st = qat_metrics_parse_line(path, lineno, line, &r);
        if (!st && strcmp(r.phase, "config")) st = append_row(m, &cap, &r, path);
    }
    if (!st && ferror(f)) st = qat_fail(QAT_ERR_IO, "%s: read error after line %d", path, lineno);
    if (!st && m->n == 0)
        st = qat_fail(QAT_ERR_FORMAT, "%s: no epoch lines (empty file, or no epoch finished yet)", path);
    free(line);
    fclose(f);
    if (st) qat_metrics_free(m);
    return st;
}

void qat_metrics_free(qat_metrics *m) {
    free(m->rows);
    memset(m, 0, sizeof *m);
}
