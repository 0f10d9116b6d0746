/* The model-spec parser (format in docs/model-spec.md).
 *
 * Every line kind that takes key=value options describes its keys in a key_desc table: name,
 * type, where the value goes, default, range. Parsing, defaults, range checks and the
 * canonical writer all walk the same tables, so a new key (stage 2's per-layer quantization
 * overrides, say) is one field in qat_spec_stage plus one table row.
 */
#include "spec.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const qat_act_names[QAT_ACT_COUNT] = {"none", "relu", "relu6", "hardswish",
                                                    "hardsigmoid", "sigmoid"};
_Static_assert(sizeof qat_act_names / sizeof qat_act_names[0] == QAT_ACT_COUNT, "act names");

static const char *const pool_names[QAT_POOL_COUNT] = {"avg"};

const char *const qat_node_op_names[QAT_NODE_OP_COUNT] = {"conv", "act", "add", "avgpool", "dropout",
                                                          "linear", "maxpool", "avgpool2d", "fc", "mul"};
_Static_assert(sizeof qat_node_op_names / sizeof qat_node_op_names[0] == QAT_NODE_OP_COUNT, "ops");

int qat_make_divisible(double v, int divisor) {
    /* Same arithmetic as torchvision's _make_divisible, in double like Python. */
    long nv = (long)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor) nv = divisor;
    if ((double)nv < 0.9 * v) nv += divisor;
    return (int)nv;
}

/* ---- key tables ------------------------------------------------------------------------ */

typedef enum { KEY_INT, KEY_FLOAT, KEY_ACT } key_type;

typedef struct {
    const char *key;
    key_type type;
    size_t offset;   /* of the field in the struct the line fills */
    double def;      /* default; NAN when the key is required */
    double min, max; /* accepted range (numbers) */
    int odd;         /* integer must be odd: padding k/2 keeps "same" geometry only for odd k */
} key_desc;

#define REQUIRED NAN
#define STAGE(f) offsetof(qat_spec_stage, f)
#define KEY_K(def) {"k", KEY_INT, STAGE(k), def, 1, 15, 1}
#define KEY_C {"c", KEY_INT, STAGE(c), REQUIRED, 1, 4096, 0}
#define KEY_S {"s", KEY_INT, STAGE(s), 1, 1, 8, 0}
#define KEY_N {"n", KEY_INT, STAGE(n), 1, 1, 64, 0}
#define KEY_T {"t", KEY_INT, STAGE(t), 1, 1, 32, 0}
#define KEY_ACT_DEF {"act", KEY_ACT, STAGE(act), QAT_ACT_RELU6, 0, 0, 0}
#define KEY_WBITS {"wbits", KEY_INT, STAGE(wbits), 0, 0, 8, 0}
#define KEY_QUANT {"quant", KEY_INT, STAGE(quant), 1, 0, 1, 0}
#define KEY_E {"e", KEY_INT, STAGE(e), REQUIRED, 1, 65536, 0}
#define KEY_SE {"se", KEY_INT, STAGE(se), 0, 0, 1, 0}

/* Canonical text writes keys in table order. */
static const key_desc stem_keys[] = {KEY_K(3), KEY_C, KEY_S, KEY_ACT_DEF, KEY_WBITS, KEY_QUANT, {0}};
static const key_desc head_keys[] = {KEY_K(1), KEY_C, KEY_S, KEY_ACT_DEF, KEY_WBITS, KEY_QUANT, {0}};
static const key_desc ir_keys[] = {KEY_T, KEY_C, KEY_N, KEY_S, KEY_K(3), KEY_ACT_DEF, KEY_WBITS, KEY_QUANT, {0}};
static const key_desc v3_keys[] = {KEY_E, KEY_C, KEY_N, KEY_S, KEY_K(3), KEY_SE,
                                   {"act", KEY_ACT, STAGE(act), QAT_ACT_RELU, 0, 0, 0},
                                   KEY_WBITS, KEY_QUANT, {0}};
static const key_desc ds_keys[] = {KEY_C, KEY_N, KEY_S, KEY_K(3), KEY_ACT_DEF, KEY_WBITS, KEY_QUANT, {0}};
static const key_desc classifier_keys[] = {
    {"dropout", KEY_FLOAT, offsetof(qat_spec, dropout), 0.0, 0.0, 0.99, 0},
    {0},
};

/* The general form's `layer` lines, one table per op. pad=-1 (the default) means k/2; the
 * canonical text writes the value in effect. */
static const key_desc node_conv_keys[] = {
    KEY_C, {"k", KEY_INT, STAGE(k), 1, 1, 15, 0}, KEY_S, {"pad", KEY_INT, STAGE(pad), -1, 0, 15, 0},
    {"g", KEY_INT, STAGE(g), 1, 1, 65536, 0}, {"bn", KEY_INT, STAGE(bn), 1, 0, 1, 0},
    {"act", KEY_ACT, STAGE(act), QAT_ACT_NONE, 0, 0, 0}, KEY_WBITS, KEY_QUANT, {0}};
static const key_desc node_act_keys[] = {{"act", KEY_ACT, STAGE(act), REQUIRED, 0, 0, 0}, {0}};
static const key_desc node_no_keys[] = {{0}};
static const key_desc node_dropout_keys[] = {{"p", KEY_FLOAT, STAGE(p), 0.0, 0.0, 0.99, 0}, {0}};
static const key_desc node_linear_keys[] = {KEY_C, KEY_WBITS, KEY_QUANT, {0}};
/* pooling windows: pad at most k/2 (PyTorch's rule: every window holds a real pixel) */
static const key_desc node_pool_keys[] = {{"k", KEY_INT, STAGE(k), REQUIRED, 1, 15, 0}, KEY_S,
                                          {"pad", KEY_INT, STAGE(pad), 0, 0, 7, 0}, {0}};
static const key_desc node_fc_keys[] = {KEY_C, {"act", KEY_ACT, STAGE(act), QAT_ACT_NONE, 0, 0, 0},
                                        KEY_WBITS, KEY_QUANT, {0}};
static const key_desc *const node_keys[QAT_NODE_OP_COUNT] = {
    [QAT_NODE_CONV] = node_conv_keys,       [QAT_NODE_ACT] = node_act_keys,
    [QAT_NODE_ADD] = node_no_keys,          [QAT_NODE_AVGPOOL] = node_no_keys,
    [QAT_NODE_DROPOUT] = node_dropout_keys, [QAT_NODE_LINEAR] = node_linear_keys,
    [QAT_NODE_MAXPOOL] = node_pool_keys,    [QAT_NODE_AVGPOOL2D] = node_pool_keys,
    [QAT_NODE_FC] = node_fc_keys,           [QAT_NODE_MUL] = node_no_keys,
};
static const int node_arity[QAT_NODE_OP_COUNT] = {1, 1, 2, 1, 1, 1, 1, 1, 1, 2};

/* Stage lines: "<word> <kind> key=value ...". */
typedef struct {
    const char *word, *kind;
    qat_stage_kind stage;
    const key_desc *keys;
} stage_line;

static const stage_line stage_lines[QAT_STAGE_KIND_COUNT] = {
    [QAT_STAGE_STEM] = {"stem", "conv", QAT_STAGE_STEM, stem_keys},
    [QAT_STAGE_IR] = {"block", "ir", QAT_STAGE_IR, ir_keys},
    [QAT_STAGE_DS] = {"block", "ds", QAT_STAGE_DS, ds_keys},
    [QAT_STAGE_HEAD] = {"head", "conv", QAT_STAGE_HEAD, head_keys},
    [QAT_STAGE_V3] = {"block", "v3", QAT_STAGE_V3, v3_keys},
    [QAT_STAGE_NODE] = {"layer", "", QAT_STAGE_NODE, NULL}, /* parse_node, not this table */
};

/* Layer records a stage expands to, at most (layers/build.c builds exactly these or fewer). */
static int stage_max_layers(const qat_spec_stage *st) {
    /* hardswish / hardsigmoid after a conv is a record of its own (layers/act.c) */
    const int a = qat_act_is_table(st->act) ? 2 : 1;
    switch (st->kind) {
    case QAT_STAGE_IR: return st->n * ((st->t > 1 ? 2 : 1) * a + 2); /* expand, dw, project, add */
    case QAT_STAGE_DS: return st->n * 2 * a;                         /* dw, pw */
    /* expand, dw, SE (pool, fc1, fc2, hardsigmoid, mul), project, add */
    case QAT_STAGE_V3: return st->n * (2 * a + (st->se ? 5 : 0) + 2);
    case QAT_STAGE_NODE: return st->op == QAT_NODE_CONV ? a : 1;
    default: return a;
    }
}

/* ---- parser state ---------------------------------------------------------------------- */

typedef struct {
    const char *source;
    int line;
    qat_spec *spec;
    int cap;
    int phase;   /* order of stage lines: see the PHASE_ values */
    int nlayers; /* upper bound on layer records so far */
    int name_line, width_line, stem_line, head_line, pool_line;
} parser;

enum { PHASE_START, PHASE_BLOCKS, PHASE_HEAD, PHASE_POOL, PHASE_CLASSIFIER };

static qat_status perr(const parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static qat_status perr(const parser *p, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qat_fail(QAT_ERR_SPEC, "%s:%d: %s", p->source, p->line, msg);
}

/* Tokens are echoed in messages; %.40s keeps a runaway token from swamping the line. */
#define TOK "'%.40s'"

static int parse_int(const char *s, long *v) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (*end || errno) return 0;
    *v = x;
    return 1;
}

static int parse_float(const char *s, double *v) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (*end || errno || !isfinite(x)) return 0;
    *v = x;
    return 1;
}

/* Shortest %g text that reads back as the same float, so canonical text round-trips. */
static void format_float(char *buf, size_t cap, float v) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

static void key_list(const key_desc *keys, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (const key_desc *k = keys; k->key && used < cap; k++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", used ? " " : "", k->key);
}

static int find_act(const char *s) {
    for (int a = 0; a < QAT_ACT_COUNT; a++)
        if (!strcmp(s, qat_act_names[a])) return a;
    return -1;
}

/* Parses "key=value" tokens into `base` following `keys`; missing keys get their default. */
static qat_status parse_keys(const parser *p, char **tok, int ntok, const key_desc *keys,
                             void *base, const char *what) {
    enum { MAX_KEYS = 32 };
    int given[MAX_KEYS] = {0};
    for (int i = 0; i < ntok; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq || eq == tok[i]) return perr(p, "%s: expected key=value, got " TOK, what, tok[i]);
        *eq = 0;
        const char *key = tok[i], *val = eq + 1;
        int j = 0;
        while (keys[j].key && strcmp(keys[j].key, key)) j++;
        if (!keys[j].key) {
            char known[128];
            key_list(keys, known, sizeof known);
            return perr(p, "%s: unknown key " TOK " (known keys: %s)", what, key, known);
        }
        if (j >= MAX_KEYS) return perr(p, "%s: internal key table too large", what);
        if (given[j]) return perr(p, "%s: key " TOK " given twice", what, key);
        given[j] = 1;
        const key_desc *k = &keys[j];
        void *dst = (char *)base + k->offset;
        if (k->type == KEY_ACT) {
            int a = find_act(val);
            if (a < 0)
                return perr(p, "%s: unknown act " TOK " (relu, relu6, hardswish, hardsigmoid, none)", what, val);
            *(qat_act *)dst = (qat_act)a;
        } else if (k->type == KEY_INT) {
            long v;
            if (!parse_int(val, &v))
                return perr(p, "%s: %s=" TOK " is not an integer", what, key, val);
            if (v < k->min || v > k->max)
                return perr(p, "%s: %s=%ld out of range (%g to %g)", what, key, v, k->min, k->max);
            if (k->odd && v % 2 == 0)
                return perr(p, "%s: %s=%ld must be odd (padding is %s/2)", what, key, v, key);
            *(int *)dst = (int)v;
        } else {
            double v;
            if (!parse_float(val, &v))
                return perr(p, "%s: %s=" TOK " is not a finite number", what, key, val);
            if (v < k->min || v > k->max)
                return perr(p, "%s: %s=%g out of range (%g to %g)", what, key, v, k->min, k->max);
            *(float *)dst = (float)v;
        }
    }
    for (int j = 0; keys[j].key; j++) {
        if (given[j]) continue;
        const key_desc *k = &keys[j];
        if (isnan(k->def)) return perr(p, "%s: missing required key %s=", what, k->key);
        void *dst = (char *)base + k->offset;
        if (k->type == KEY_ACT) *(qat_act *)dst = (qat_act)(int)k->def;
        else if (k->type == KEY_INT) *(int *)dst = (int)k->def;
        else *(float *)dst = (float)k->def;
    }
    return QAT_OK;
}

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= QAT_SPEC_NAME_MAX) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.') return 0;
    return 1;
}

static qat_status add_stage(parser *p, const qat_spec_stage *st) {
    qat_spec *s = p->spec;
    const int max_stages = st->kind == QAT_STAGE_NODE ? QAT_SPEC_MAX_LAYERS : QAT_SPEC_MAX_STAGES;
    if (s->nstages >= max_stages)
        return perr(p, "too many %s lines (at most %d)", st->kind == QAT_STAGE_NODE ? "layer" : "stage",
                    max_stages);
    p->nlayers += stage_max_layers(st);
    if (p->nlayers > QAT_SPEC_MAX_LAYERS)
        return perr(p, "too many layers (more than %d after expanding repeats)",
                    QAT_SPEC_MAX_LAYERS);
    if (s->nstages == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        qat_spec_stage *ns = realloc(s->stages, (size_t)cap * sizeof *ns);
        if (!ns) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory parsing spec", p->source);
        s->stages = ns;
        p->cap = cap;
    }
    s->stages[s->nstages++] = *st;
    return QAT_OK;
}

static const char *phase_word(int phase) {
    switch (phase) {
    case PHASE_HEAD: return "head";
    case PHASE_POOL: return "pool";
    default: return "classifier";
    }
}

/* The stage index of the node called `name` (-1: "input"), or -2 when there is none so far. */
static int find_node(const qat_spec *s, const char *name) {
    if (!strcmp(name, "input")) return -1;
    for (int i = 0; i < s->nstages; i++)
        if (!strcmp(s->stages[i].node, name)) return i;
    return -2;
}

/* "layer <name> <op> [in=a,b] key=value ...": one node of the general form. Inputs name
 * earlier layers (or `input`), so the nodes are a DAG in execution order by construction: a
 * cycle or a dangling input cannot be written. Without in= a layer reads the previous one. */
static qat_status parse_node(parser *p, char **tok, int ntok) {
    qat_spec *s = p->spec;
    if (p->stem_line)
        return perr(p, "layer lines and stem/block lines cannot be mixed in one spec");
    if (ntok < 3 || strchr(tok[1], '=') || strchr(tok[2], '='))
        return perr(p, "layer: expected 'layer <name> <op> [in=a,b] key=value ...'");
    const char *name = tok[1];
    size_t n = strlen(name);
    int ok = n < QAT_NODE_NAME_MAX && strcmp(name, "input");
    for (const char *c = name; ok && *c; c++)
        ok = isalnum((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.';
    if (!ok)
        return perr(p, "layer " TOK ": a name is 1-%d characters from A-Z a-z 0-9 - _ . (not 'input')",
                    name, QAT_NODE_NAME_MAX - 1);
    if (find_node(s, name) != -2) return perr(p, "layer " TOK ": name used twice", name);
    int op = 0;
    while (op < QAT_NODE_OP_COUNT && strcmp(tok[2], qat_node_op_names[op])) op++;
    if (op == QAT_NODE_OP_COUNT)
        return perr(p, "layer %s: unknown op " TOK " (conv, act, add, avgpool, dropout, linear, maxpool, "
                    "avgpool2d, fc, mul)", name, tok[2]);
    qat_spec_stage st;
    memset(&st, 0, sizeof st);
    st.kind = QAT_STAGE_NODE;
    st.line = p->line;
    st.op = (qat_node_op)op;
    snprintf(st.node, sizeof st.node, "%s", name);
    st.n = 1;
    char *rest[64];
    int nrest = 0, have_in = 0;
    for (int i = 3; i < ntok; i++) {
        if (strncmp(tok[i], "in=", 3)) {
            rest[nrest++] = tok[i];
            continue;
        }
        if (have_in) return perr(p, "layer %s: key 'in' given twice", name);
        have_in = 1;
        for (char *c = tok[i] + 3, *next; c; c = next) {
            next = strchr(c, ',');
            if (next) *next++ = 0;
            int src = find_node(s, c);
            if (src == -2)
                return perr(p, "layer %s: input " TOK " is not an earlier layer or 'input' (a layer "
                            "reads only layers above it)", name, c);
            if (st.nin == QAT_NODE_MAX_IN) return perr(p, "layer %s: too many inputs", name);
            st.in[st.nin++] = src;
        }
    }
    if (!have_in) st.in[st.nin++] = s->nstages - 1; /* the previous layer, or the input */
    if (st.nin != node_arity[op])
        return perr(p, "layer %s: %s takes %d input%s, got %d", name, qat_node_op_names[op],
                    node_arity[op], node_arity[op] > 1 ? "s" : "", st.nin);
    char what[80];
    snprintf(what, sizeof what, "layer %s", name);
    qat_status e = parse_keys(p, rest, nrest, node_keys[op], &st, what);
    if (e) return e;
    if (st.pad < 0) st.pad = st.k / 2;
    if (st.wbits == 1) return perr(p, "%s: wbits=1: weights take 2 to 8 bits (0: the qconfig's)", what);
    if ((op == QAT_NODE_MAXPOOL || op == QAT_NODE_AVGPOOL2D) && 2 * st.pad > st.k)
        return perr(p, "%s: pad=%d is more than half the window k=%d", what, st.pad, st.k);
    if (op != QAT_NODE_CONV && op != QAT_NODE_LINEAR && op != QAT_NODE_FC) st.quant = 1;
    if ((e = add_stage(p, &st))) return e;
    s->graph = 1;
    return QAT_OK;
}

/* One non-empty line split into tokens. */
static qat_status parse_line(parser *p, char **tok, int ntok) {
    qat_spec *s = p->spec;
    const char *word = tok[0];

    if (!strcmp(word, "name")) {
        if (p->name_line) return perr(p, "duplicate name line (first on line %d)", p->name_line);
        if (ntok != 2) return perr(p, "name: expected one word, e.g. 'name mbv2-tiny'");
        if (!valid_name(tok[1]))
            return perr(p, "name " TOK ": use 1-%d characters from A-Z a-z 0-9 - _ .", tok[1],
                        QAT_SPEC_NAME_MAX - 1);
        snprintf(s->name, sizeof s->name, "%s", tok[1]);
        p->name_line = p->line;
        return QAT_OK;
    }
    if (!strcmp(word, "width")) {
        double w;
        if (p->width_line) return perr(p, "duplicate width line (first on line %d)", p->width_line);
        if (ntok != 2) return perr(p, "width: expected one number, e.g. 'width 0.5'");
        if (!parse_float(tok[1], &w)) return perr(p, "width " TOK " is not a finite number", tok[1]);
        if (!(w > 0 && w <= 16)) return perr(p, "width %g out of range (0 to 16]", w);
        s->width = (float)w;
        p->width_line = p->line;
        return QAT_OK;
    }

    if (!strcmp(word, "layer")) return parse_node(p, tok, ntok);
    /* Layer lines, in network order: stem, blocks, head, pool, classifier. */
    if (s->graph)
        return perr(p, "%s line in a spec of layer lines (the general form); write one form or the other",
                    word);
    int is_layer = !strcmp(word, "stem") || !strcmp(word, "block") || !strcmp(word, "head") ||
                   !strcmp(word, "pool") || !strcmp(word, "classifier");
    if (!is_layer)
        return perr(p, "unknown line " TOK " (name, width, stem, block, head, pool, classifier, layer)",
                    word);
    if (p->phase == PHASE_CLASSIFIER && strcmp(word, "classifier"))
        return perr(p, "%s after the classifier line (line %d); the classifier comes last", word,
                    s->classifier_line);
    if (strcmp(word, "stem") && !p->stem_line)
        return perr(p, "%s before the stem line; the stem comes first", word);

    if (!strcmp(word, "pool")) {
        if (p->pool_line) return perr(p, "duplicate pool line (first on line %d)", p->pool_line);
        if (ntok != 2) return perr(p, "pool: expected one kind, e.g. 'pool avg'");
        int k = 0;
        while (k < QAT_POOL_COUNT && strcmp(tok[1], pool_names[k])) k++;
        if (k == QAT_POOL_COUNT) return perr(p, "unknown pool kind " TOK " (avg)", tok[1]);
        s->pool = (qat_pool_kind)k;
        p->pool_line = p->line;
        p->phase = PHASE_POOL;
        return QAT_OK;
    }
    if (!strcmp(word, "classifier")) {
        if (s->classifier_line)
            return perr(p, "duplicate classifier line (first on line %d)", s->classifier_line);
        qat_status st = parse_keys(p, tok + 1, ntok - 1, classifier_keys, s, "classifier");
        if (st) return st;
        s->classifier_line = p->line;
        p->phase = PHASE_CLASSIFIER;
        p->nlayers += 3; /* pool (implied when there is no pool line), dropout, linear */
        if (p->nlayers > QAT_SPEC_MAX_LAYERS)
            return perr(p, "too many layers (more than %d after expanding repeats)",
                        QAT_SPEC_MAX_LAYERS);
        return QAT_OK;
    }

    /* stem / block / head: "<word> <kind> key=value ..." */
    if (ntok < 2 || strchr(tok[1], '='))
        return perr(p, "%s: missing kind (e.g. '%s')", word,
                    !strcmp(word, "block") ? "block ir c=16" : !strcmp(word, "stem")
                                                                   ? "stem conv c=16"
                                                                   : "head conv c=128");
    int kind = -1;
    for (int i = 0; i < QAT_STAGE_KIND_COUNT; i++)
        if (!strcmp(stage_lines[i].word, word) && !strcmp(stage_lines[i].kind, tok[1])) kind = i;
    if (kind < 0) {
        if (!strcmp(word, "block"))
            return perr(p, "unknown block kind " TOK " (ir, ds, v3)", tok[1]);
        return perr(p, "unknown %s kind " TOK " (conv)", word, tok[1]);
    }
    if (kind == QAT_STAGE_STEM && p->stem_line)
        return perr(p, "duplicate stem line (first on line %d)", p->stem_line);
    if (kind == QAT_STAGE_HEAD && p->head_line)
        return perr(p, "duplicate head line (first on line %d)", p->head_line);
    if (kind != QAT_STAGE_STEM && p->phase > PHASE_BLOCKS)
        return perr(p, "%s after the %s line; order is stem, blocks, head, pool, classifier", word,
                    phase_word(p->phase));

    qat_spec_stage stage;
    memset(&stage, 0, sizeof stage);
    stage.kind = (qat_stage_kind)kind;
    stage.line = p->line;
    char what[32];
    snprintf(what, sizeof what, "%s %s", word, tok[1]);
    qat_status st = parse_keys(p, tok + 2, ntok - 2, stage_lines[kind].keys, &stage, what);
    if (st) return st;
    if (stage.wbits == 1) return perr(p, "%s: wbits=1: weights take 2 to 8 bits (0: the qconfig's)", what);
    if ((st = add_stage(p, &stage))) return st;
    if (kind == QAT_STAGE_STEM) {
        p->stem_line = p->line;
        p->phase = PHASE_BLOCKS;
    } else if (kind == QAT_STAGE_HEAD) {
        p->head_line = p->line;
        s->has_head = 1;
        p->phase = PHASE_HEAD;
    }
    return QAT_OK;
}

/* ---- canonical text -------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = 2 * b->cap + (size_t)n + 64;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

static void write_keys(strbuf *b, const key_desc *keys, const void *base) {
    for (const key_desc *k = keys; k->key; k++) {
        const void *src = (const char *)base + k->offset;
        if (k->type == KEY_ACT) {
            sb_printf(b, " %s=%s", k->key, qat_act_names[*(const qat_act *)src]);
        } else if (k->type == KEY_INT) {
            sb_printf(b, " %s=%d", k->key, *(const int *)src);
        } else {
            char f[32];
            format_float(f, sizeof f, *(const float *)src);
            sb_printf(b, " %s=%s", k->key, f);
        }
    }
}

static char *canonical_text(const qat_spec *s) {
    strbuf b = {malloc(256), 0, 256, 0};
    if (!b.buf) return NULL;
    b.buf[0] = 0;
    char w[32];
    format_float(w, sizeof w, s->width);
    sb_printf(&b, "name %s\nwidth %s\n", s->name, w);
    for (int i = 0; s->graph && i < s->nstages; i++) {
        const qat_spec_stage *st = &s->stages[i];
        sb_printf(&b, "layer %s %s in=", st->node, qat_node_op_names[st->op]);
        for (int j = 0; j < st->nin; j++)
            sb_printf(&b, "%s%s", j ? "," : "", st->in[j] < 0 ? "input" : s->stages[st->in[j]].node);
        write_keys(&b, node_keys[st->op], st);
        sb_printf(&b, "\n");
    }
    for (int i = 0; !s->graph && i < s->nstages; i++) {
        const stage_line *sl = &stage_lines[s->stages[i].kind];
        sb_printf(&b, "%s %s", sl->word, sl->kind);
        write_keys(&b, sl->keys, &s->stages[i]);
        sb_printf(&b, "\n");
    }
    if (!s->graph) {
        sb_printf(&b, "pool %s\nclassifier", pool_names[s->pool]);
        write_keys(&b, classifier_keys, s);
        sb_printf(&b, "\n");
    }
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

/* ---- public ---------------------------------------------------------------------------- */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Default name: the file's base name without ".spec", reduced to name characters. */
static void default_name(char *dst, const char *source) {
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    size_t n = 0;
    for (; *base && n + 1 < QAT_SPEC_NAME_MAX; base++) {
        if (!strcmp(base, ".spec")) break;
        char c = *base;
        dst[n++] = (isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.') ? c : '_';
    }
    dst[n] = 0;
    if (!n) snprintf(dst, QAT_SPEC_NAME_MAX, "unnamed");
}

void qat_spec_free(qat_spec *s) {
    if (!s) return;
    free(s->source);
    free(s->text);
    free(s->canonical);
    free(s->stages);
    free(s);
}

qat_status qat_spec_parse(const char *text, const char *source, qat_spec **out) {
    *out = NULL;
    if (!source) source = "<spec>";
    if (!text) return qat_fail(QAT_ERR_ARG, "%s: no spec text", source);
    qat_spec *s = calloc(1, sizeof *s);
    char *work = dup_str(text);
    if (!s || !work || !(s->text = dup_str(text)) || !(s->source = dup_str(source))) {
        free(work);
        qat_spec_free(s);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory parsing spec", source);
    }
    s->width = 1.0f;
    s->pool = QAT_POOL_AVG;
    parser p;
    memset(&p, 0, sizeof p);
    p.source = s->source;
    p.spec = s;

    qat_status st = QAT_OK;
    char *line = work;
    while (line && !st) {
        char *nl = strchr(line, '\n');
        if (!nl && !*line) break; /* the empty rest after a final newline is not a line */
        if (nl) *nl = 0;
        p.line++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        /* Control characters other than tab/CR are not text: refuse rather than echo them. */
        for (char *c = line; *c; c++)
            if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\r') {
                st = perr(&p, "control character 0x%02x in spec", (unsigned char)*c);
                break;
            }
        enum { MAX_TOKENS = 64 };
        char *tok[MAX_TOKENS];
        int ntok = 0;
        for (char *c = line; !st && *c;) {
            while (*c == ' ' || *c == '\t' || *c == '\r') *c++ = 0;
            if (!*c) break;
            if (ntok == MAX_TOKENS) {
                st = perr(&p, "too many fields on one line (at most %d)", MAX_TOKENS);
                break;
            }
            tok[ntok++] = c;
            while (*c && *c != ' ' && *c != '\t' && *c != '\r') c++;
        }
        if (!st && ntok) st = parse_line(&p, tok, ntok);
        line = nl ? nl + 1 : NULL;
    }
    s->nlines = p.line;
    free(work);
    if (p.line == 0) p.line = 1; /* messages about an empty spec point at line 1 */
    if (!st && s->graph && s->stages[s->nstages - 1].op != QAT_NODE_LINEAR)
        st = perr(&p, "the last layer must be linear (the classes), e.g. 'layer fc linear c=10'");
    if (!st && !s->graph && !p.stem_line)
        st = perr(&p, "no stem line (e.g. 'stem conv k=3 c=16 s=1')");
    if (!st && !s->graph && !s->classifier_line)
        st = perr(&p, "no classifier line (e.g. 'classifier dropout=0.0')");
    if (!st && !p.name_line) default_name(s->name, source);
    if (!st && !(s->canonical = canonical_text(s)))
        st = qat_fail(QAT_ERR_NOMEM, "%s: out of memory writing canonical spec", source);
    if (st) {
        qat_spec_free(s);
        return st;
    }
    *out = s;
    return QAT_OK;
}

qat_status qat_spec_copy(const qat_spec *s, qat_spec **out) {
    *out = NULL;
    qat_spec *d = malloc(sizeof *d);
    if (!d) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory copying spec", s->source);
    *d = *s;
    d->source = dup_str(s->source);
    d->text = dup_str(s->text);
    d->canonical = dup_str(s->canonical);
    d->stages = malloc((size_t)(s->nstages ? s->nstages : 1) * sizeof *d->stages);
    if (!d->source || !d->text || !d->canonical || !d->stages) {
        qat_spec_free(d);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory copying spec", s->source);
    }
    memcpy(d->stages, s->stages, (size_t)s->nstages * sizeof *d->stages);
    *out = d;
    return QAT_OK;
}

const char *qat_spec_text(const qat_spec *s) { return s->canonical; }
const char *qat_spec_name(const qat_spec *s) { return s->name; }

const char *qat_spec_preset(const char *name) {
    for (int i = 0; i < qat_spec_num_presets(); i++)
        if (!strcmp(name, qat_spec_preset_name(i))) return qat_spec_preset_text(i);
    return NULL;
}

qat_status qat_spec_load(const char *name_or_path, qat_spec **out) {
    *out = NULL;
    if (!name_or_path || !*name_or_path) return qat_fail(QAT_ERR_ARG, "model spec: empty name");
    const char *preset = qat_spec_preset(name_or_path);
    if (preset) {
        char src[128];
        snprintf(src, sizeof src, "layers/presets/%s.spec", name_or_path);
        return qat_spec_parse(preset, src, out);
    }
    FILE *f = fopen(name_or_path, "rb");
    if (!f) {
        char names[256];
        size_t used = 0;
        names[0] = 0;
        for (int i = 0; i < qat_spec_num_presets() && used < sizeof names; i++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                     qat_spec_preset_name(i));
        return qat_fail(QAT_ERR_IO, "%s: no such preset and cannot open as a spec file: %s "
                        "(presets: %s)", name_or_path, strerror(errno), names);
    }
    char *buf = malloc(QAT_SPEC_MAX_TEXT + 1);
    if (!buf) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory reading spec", name_or_path);
    }
    size_t n = fread(buf, 1, QAT_SPEC_MAX_TEXT + 1, f);
    int rerr = ferror(f);
    fclose(f);
    qat_status st;
    if (rerr) st = qat_fail(QAT_ERR_IO, "%s: read error", name_or_path);
    else if (n > QAT_SPEC_MAX_TEXT)
        st = qat_fail(QAT_ERR_SPEC, "%s: larger than %d bytes; not a model spec", name_or_path,
                      QAT_SPEC_MAX_TEXT);
    else if (memchr(buf, 0, n))
        st = qat_fail(QAT_ERR_SPEC, "%s: contains NUL bytes; not a text spec", name_or_path);
    else {
        buf[n] = 0;
        st = qat_spec_parse(buf, name_or_path, out);
    }
    free(buf);
    return st;
}
