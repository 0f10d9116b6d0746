/* The .q8 file: the INT8 model of q8.h in the section container (base/container.h). Layout in
 * docs/formats.md ("INT8 models"); the invariants every loaded or saved model goes through are
 * runtime/q8_model.c's.
 *
 * Loading treats the bytes as hostile: the container checks CRCs and bounds; here every record
 * is decoded field by field from sections whose exact size was checked first, the geometry of
 * every layer is validated before any array size is derived from it, every array is checked to
 * fit in what remains of its section before it is allocated (so no allocation is larger than the
 * file), and the finished model is validated as a whole. Depends only on qat.h, the container,
 * the format's own files and header-only parts of kernels/int8.h, so the deploy-only runtime
 * and the fuzzer carry it. */
#include "container.h"
#include "q8_internal.h"
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char Q8_MAGIC[8] = {'Q', 'A', 'T', 'I', 'N', 'T', '8', '\0'};
/* Version 2 added the LUT and MUL kinds, the hardswish/hardsigmoid activation codes and the
 * "table" section. Save writes version 1 (7 sections, no table) when the model uses none of
 * these, so older readers still take such models and their files stay byte for byte the same;
 * load takes both. */
#define Q8_VERSION 5
/* Version 3 added the float layers (kinds DEQUANT, QUANT, FCONV, FLINEAR and the "fweight"
 * section), written likewise only by models that have one. Version 4 packs low-bit weights:
 * a layer with wbits 2 stores four weights a byte, wbits 3 or 4 two a byte (the W4A8 model
 * shrinks by almost half); written only when a layer has wbits <= 4, so 8-bit models keep their
 * older version and bytes. Version 5 added the windowed pools (kinds MAXPOOL, AVGPOOL2D) and the
 * sigmoid table's activation code, written likewise only by models that have one. */

/* Bits one weight of array a of layer L takes in a file of `version`. */
static int stored_bits(const qat_q8_layer *L, int a, uint32_t version) {
    if (a != QAT_Q8_ARR_WEIGHT || version < 4 || L->wbits > 4) return 8;
    return L->wbits <= 2 ? 2 : 4;
}

/* Bytes array a of layer L takes in the file (shape validated: no overflow). */
static uint64_t stored_bytes(const qat_q8_layer *L, int a, uint32_t version) {
    const uint64_t n = (uint64_t)qat_q8_array_count(L, a);
    const int b = stored_bits(L, a, version);
    return b < 8 ? (n * (uint64_t)b + 7) / 8 : n * qat_q8_elem_bytes(qat_q8_arrays[a].type);
}

/* Arrays (sections after "model" and "layers") and kinds a file of `version` knows. */
static int version_arrays(uint32_t v) {
    return v < 2 ? QAT_Q8_ARR_TABLE : v < 3 ? QAT_Q8_ARR_FWEIGHT : QAT_Q8_ARR_COUNT;
}
static uint32_t version_kinds(uint32_t v) {
    return v < 2 ? QAT_Q8_LUT : v < 3 ? QAT_Q8_DEQUANT : v < 5 ? QAT_Q8_MAXPOOL : QAT_Q8_KIND_COUNT;
}

/* ---- little-endian records, field by field ------------------------------------------------- */

typedef struct {
    unsigned char *p;
} writer;
typedef struct {
    const unsigned char *p;
} reader;

static void put_u32(writer *w, uint32_t v) {
    for (int i = 0; i < 4; i++) *w->p++ = (unsigned char)(v >> (8 * i));
}
static void put_i32(writer *w, int32_t v) { put_u32(w, (uint32_t)v); }
/* Floats as their IEEE-754 bits: NaN payloads and -0 survive a round trip. */
static void put_f32(writer *w, float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    put_u32(w, b);
}
static void put_text(writer *w, const char *s, size_t cap) {
    /* NUL-padded: the bytes after the terminator are zero, whatever memory held */
    size_t n = strnlen(s, cap);
    memcpy(w->p, s, n);
    memset(w->p + n, 0, cap - n);
    w->p += cap;
}

static uint32_t get_u32(reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)*r->p++ << (8 * i);
    return v;
}
static int32_t get_i32(reader *r) {
    uint32_t u = get_u32(r);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}
static float get_f32(reader *r) {
    uint32_t b = get_u32(r);
    float v;
    memcpy(&v, &b, 4);
    return v;
}
static void get_text(reader *r, char *s, size_t cap) {
    memcpy(s, r->p, cap);
    r->p += cap;
}

/* "model": one record. */
#define MODEL_BYTES (4 * 4 + 4 + 3 * 4 + 4 * 4 + 4 * 4 + 16 + 32 + 4)
_Static_assert(MODEL_BYTES == 116, "model record layout is part of the file format");
_Static_assert(sizeof(((qat_q8_model *)0)->qconfig) == 16 &&
                   sizeof(((qat_q8_model *)0)->arch) == 32,
               "text field sizes are part of the file format");

static void write_model(writer *w, const qat_q8_model *m) {
    put_i32(w, m->in_h), put_i32(w, m->in_w), put_i32(w, m->in_c), put_i32(w, m->nclasses);
    put_f32(w, m->in_scale);
    put_i32(w, m->in_zp), put_i32(w, m->in_qmin), put_i32(w, m->in_qmax);
    for (int c = 0; c < 4; c++) put_f32(w, m->mean[c]);
    for (int c = 0; c < 4; c++) put_f32(w, m->std[c]);
    put_text(w, m->qconfig, sizeof m->qconfig);
    put_text(w, m->arch, sizeof m->arch);
    put_i32(w, m->nlayers);
}

static void read_model(reader *r, qat_q8_model *m) {
    m->in_h = get_i32(r), m->in_w = get_i32(r), m->in_c = get_i32(r), m->nclasses = get_i32(r);
    m->in_scale = get_f32(r);
    m->in_zp = get_i32(r), m->in_qmin = get_i32(r), m->in_qmax = get_i32(r);
    for (int c = 0; c < 4; c++) m->mean[c] = get_f32(r);
    for (int c = 0; c < 4; c++) m->std[c] = get_f32(r);
    get_text(r, m->qconfig, sizeof m->qconfig);
    get_text(r, m->arch, sizeof m->arch);
    m->nlayers = get_i32(r);
}

/* "layers": one record per layer. The int32/float fields after the header fields, in order. */
typedef enum { F_I32, F_F32 } field_type;
typedef struct {
    size_t offset;
    field_type type;
} field_desc;
#define FI(f) {offsetof(qat_q8_layer, f), F_I32}
#define FF(f) {offsetof(qat_q8_layer, f), F_F32}
static const field_desc layer_fields[] = {
    FI(input), FI(skip), FI(in_h), FI(in_w), FI(in_c), FI(out_h), FI(out_w), FI(out_c),
    FI(k), FI(stride), FI(pad), FI(groups), FI(wbits), FF(sx), FI(zx), FF(sb), FI(zb),
    FF(sy), FI(zy), FI(lo), FI(hi), FF(pool_mult),
};
#define NLAYER_FIELDS ((int)(sizeof layer_fields / sizeof layer_fields[0]))
/* kind, name, act, array mask, then the fields */
#define LAYER_BYTES (4 + QAT_Q8_NAME_MAX + 4 + 4 + 4 * NLAYER_FIELDS)
_Static_assert(LAYER_BYTES == 148, "layer record layout is part of the file format");

static void write_layer(writer *w, const qat_q8_layer *L) {
    put_u32(w, (uint32_t)L->kind);
    put_text(w, L->name, sizeof L->name);
    put_u32(w, (uint32_t)L->act);
    put_u32(w, qat_q8_arrays_present(L));
    for (int f = 0; f < NLAYER_FIELDS; f++) {
        const char *p = (const char *)L + layer_fields[f].offset;
        if (layer_fields[f].type == F_I32) {
            int32_t v;
            memcpy(&v, p, 4);
            put_i32(w, v);
        } else {
            float v;
            memcpy(&v, p, 4);
            put_f32(w, v);
        }
    }
}

/* Decodes one record into L (arrays stay NULL); returns the array mask, or fails. */
static qat_status read_layer(reader *r, qat_q8_layer *L, int i, const char *what, unsigned *mask,
                             uint32_t version) {
    const uint32_t kind = get_u32(r);
    get_text(r, L->name, sizeof L->name);
    const uint32_t act = get_u32(r);
    *mask = get_u32(r);
    for (int f = 0; f < NLAYER_FIELDS; f++) {
        char *p = (char *)L + layer_fields[f].offset;
        if (layer_fields[f].type == F_I32) {
            int32_t v = get_i32(r);
            memcpy(p, &v, 4);
        } else {
            float v = get_f32(r);
            memcpy(p, &v, 4);
        }
    }
    /* Range-check the enums before storing them in enum-typed fields. */
    const int name_ok = qat_q8_text_ok(L->name, sizeof L->name);
    const uint32_t nkinds = version_kinds(version);
    const uint32_t nacts = version < 2 ? QAT_Q8_ACT_HARDSWISH : version < 5 ? QAT_Q8_ACT_SIGMOID : QAT_Q8_ACT_COUNT;
    if (kind >= nkinds)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, name_ok, "unknown kind %u", kind);
    if (act >= nacts)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, name_ok, "unknown activation %u", act);
    if (name_ok && !qat_q8_zero_tail(L->name, sizeof L->name))
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "nonzero bytes after the name's NUL");
    if (*mask & ~((1u << version_arrays(version)) - 1))
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, name_ok, "unknown array flags 0x%x", *mask);
    L->kind = (qat_q8_kind)kind;
    L->act = (qat_q8_act)act;
    return QAT_OK;
}

/* n signed weights of `bits` bits, low bits of each byte first; the unused bits of the last
 * byte are zero. */
static void pack_weights(writer *w, const int8_t *v, int64_t n, int bits) {
    const int per = 8 / bits;
    const unsigned mask = (1u << bits) - 1;
    for (int64_t j = 0; j < n; j += per) {
        unsigned byte = 0;
        for (int k = 0; k < per && j + k < n; k++) byte |= ((unsigned)v[j + k] & mask) << (k * bits);
        *w->p++ = (unsigned char)byte;
    }
}

/* The inverse (sign-extending); 0 when the last byte's unused bits are not zero. */
static int unpack_weights(reader *r, int8_t *v, int64_t n, int bits) {
    const int per = 8 / bits;
    const unsigned mask = (1u << bits) - 1, sign = 1u << (bits - 1);
    for (int64_t j = 0; j < n; j += per) {
        unsigned byte = *r->p++;
        for (int k = 0; k < per; k++, byte >>= bits) {
            if (j + k >= n) return byte == 0;
            const unsigned u = byte & mask;
            v[j + k] = (int8_t)((int)(u ^ sign) - (int)sign);
        }
    }
    return 1;
}

static void write_array(writer *w, const qat_q8_layer *L, int a, uint32_t version) {
    const void *v = qat_q8_array_get(L, a);
    if (!v) return;
    const int64_t n = qat_q8_array_count(L, a);
    const int bits = stored_bits(L, a, version);
    if (bits < 8) {
        pack_weights(w, v, n, bits);
        return;
    }
    switch (qat_q8_arrays[a].type) {
    case ELEM_S8:
        memcpy(w->p, v, (size_t)n);
        w->p += n;
        break;
    case ELEM_S32:
        for (int64_t j = 0; j < n; j++) put_i32(w, ((const int32_t *)v)[j]);
        break;
    case ELEM_F32:
        for (int64_t j = 0; j < n; j++) put_f32(w, ((const float *)v)[j]);
        break;
    }
}

static void *read_array(reader *r, int a, int64_t n, int bits, int *canonical) {
    void *v = malloc(n ? (size_t)n * qat_q8_elem_bytes(qat_q8_arrays[a].type) : 1);
    if (!v) return NULL;
    if (bits < 8) {
        *canonical = unpack_weights(r, v, n, bits);
        return v;
    }
    switch (qat_q8_arrays[a].type) {
    case ELEM_S8:
        memcpy(v, r->p, (size_t)n);
        r->p += n;
        break;
    case ELEM_S32:
        for (int64_t j = 0; j < n; j++) ((int32_t *)v)[j] = get_i32(r);
        break;
    case ELEM_F32:
        for (int64_t j = 0; j < n; j++) ((float *)v)[j] = get_f32(r);
        break;
    }
    return v;
}

/* ---- save ------------------------------------------------------------------------------------ */

qat_status qat_q8_save(const qat_q8_model *m, const char *path) {
    if (!path || !*path) return qat_fail(QAT_ERR_ARG, "q8: empty output path");
    if (!m) return qat_fail(QAT_ERR_ARG, "%s: no model", path);
    qat_status st = qat_q8_check(m, path, 1);
    if (st) return st; /* never write a model the loader would refuse */
    uint32_t version = 1; /* the oldest that holds the model */
    for (int i = 0; i < m->nlayers; i++) {
        const qat_q8_layer *L = &m->layers[i];
        const uint32_t v = L->kind >= QAT_Q8_MAXPOOL || L->act >= QAT_Q8_ACT_SIGMOID ? 5
                         : L->weight && L->wbits <= 4 ? 4
                         : L->kind >= QAT_Q8_DEQUANT || L->fweight ? 3
                         : L->kind >= QAT_Q8_LUT || L->act >= QAT_Q8_ACT_HARDSWISH || L->table ? 2 : 1;
        version = v > version ? v : version;
    }
    /* packed weights must fit their bits (convert's always do: they were quantized to them) */
    for (int i = 0; i < m->nlayers; i++) {
        const qat_q8_layer *L = &m->layers[i];
        const int bits = stored_bits(L, QAT_Q8_ARR_WEIGHT, version);
        const int64_t n = L->weight ? qat_q8_array_count(L, QAT_Q8_ARR_WEIGHT) : 0;
        for (int64_t j = 0; bits < 8 && j < n; j++)
            if (L->weight[j] < -(1 << (bits - 1)) || L->weight[j] >= (1 << (bits - 1)))
                return qat_q8_layer_fail(QAT_ERR_NUMERIC, path, i, L, 1,
                                         "weight %lld = %d does not fit its %d bits (wbits %d)",
                                         (long long)j, L->weight[j], bits, L->wbits);
    }
    uint64_t bytes[QAT_Q8_ARR_COUNT] = {0};
    for (int i = 0; i < m->nlayers; i++)
        for (int a = 0; a < QAT_Q8_ARR_COUNT; a++)
            if (qat_q8_array_get(&m->layers[i], a)) bytes[a] += stored_bytes(&m->layers[i], a, version);
    const int narrays = version_arrays(version);
    unsigned char *model = malloc(MODEL_BYTES);
    unsigned char *layers = malloc((size_t)m->nlayers * LAYER_BYTES);
    unsigned char *data[QAT_Q8_ARR_COUNT] = {0};
    int nomem = !model || !layers;
    for (int a = 0; a < QAT_Q8_ARR_COUNT && !nomem; a++)
        nomem = !(data[a] = malloc(bytes[a] ? (size_t)bytes[a] : 1));
    if (!nomem) {
        writer w = {model};
        write_model(&w, m);
        w.p = layers;
        for (int i = 0; i < m->nlayers; i++) write_layer(&w, &m->layers[i]);
        for (int a = 0; a < QAT_Q8_ARR_COUNT; a++) {
            w.p = data[a];
            for (int i = 0; i < m->nlayers; i++) write_array(&w, &m->layers[i], a, version);
        }
        qat_section secs[3 + QAT_Q8_ARR_COUNT] = {
            {"model", model, MODEL_BYTES},
            {"layers", layers, (uint64_t)m->nlayers * LAYER_BYTES},
        };
        for (int a = 0; a < QAT_Q8_ARR_COUNT; a++) {
            snprintf(secs[2 + a].name, sizeof secs[2 + a].name, "%s", qat_q8_arrays[a].name);
            secs[2 + a].data = data[a];
            secs[2 + a].size = bytes[a];
        }
        /* the class names (optional; only ImageFolder models have them) after the arrays */
        size_t nlen = 0;
        char *names = m->class_names ? qat_class_names_join(m->class_names, m->nclasses, &nlen) : NULL;
        int nsec = 2 + narrays;
        if (names) {
            snprintf(secs[nsec].name, sizeof secs[nsec].name, "classes");
            secs[nsec].data = names, secs[nsec++].size = nlen;
        }
        st = m->class_names && !names ? qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path)
                                      : qat_container_write(path, Q8_MAGIC, version, secs, nsec);
        free(names);
    } else {
        st = qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    free(model);
    free(layers);
    for (int a = 0; a < QAT_Q8_ARR_COUNT; a++) free(data[a]);
    return st;
}

/* ---- load ------------------------------------------------------------------------------------ */

/* Reads array a of every layer (per the masks) from its section, which must be used exactly. */
static qat_status read_arrays(const qat_container *c, const char *what, qat_q8_model *m,
                              const unsigned *masks, int a, uint32_t version) {
    const void *data;
    uint64_t size;
    qat_status st = qat_container_get(c, qat_q8_arrays[a].name, 0, &data, &size);
    if (st) return st;
    reader r = {data};
    uint64_t left = size;
    for (int i = 0; i < m->nlayers; i++) {
        qat_q8_layer *L = &m->layers[i];
        if (!((masks[i] >> a) & 1)) continue;
        /* geometry validated: count <= 2^16 * 2^24, no overflow in bytes */
        const int64_t n = qat_q8_array_count(L, a);
        const uint64_t need = stored_bytes(L, a, version);
        if (need > left)
            return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                              "%s array of %lld elements runs past the end of section '%s' "
                              "(%llu bytes left)", qat_q8_arrays[a].name, (long long)n, qat_q8_arrays[a].name,
                              (unsigned long long)left);
        int canonical = 1;
        void *v = read_array(&r, a, n, stored_bits(L, a, version), &canonical);
        if (!v) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", what);
        qat_q8_array_set(L, a, v);
        if (!canonical)
            return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "nonzero bits after the last "
                                     "packed weight (file corrupt)");
        left -= need;
    }
    if (left)
        return qat_fail(QAT_ERR_FORMAT, "%s: section '%s' has %llu bytes beyond its arrays "
                        "(file corrupt)", what, qat_q8_arrays[a].name, (unsigned long long)left);
    return QAT_OK;
}

static qat_status parse_model(const qat_container *c, const char *what, qat_q8_model *m) {
    const void *data;
    qat_status st = qat_container_get(c, "model", MODEL_BYTES, &data, NULL);
    if (st) return st;
    reader r = {data};
    read_model(&r, m);
    if (!qat_q8_zero_tail(m->qconfig, sizeof m->qconfig) || !qat_q8_zero_tail(m->arch, sizeof m->arch))
        return qat_fail(QAT_ERR_FORMAT, "%s: nonzero bytes after the NUL of the qconfig or "
                        "architecture name (file corrupt)", what);
    const int32_t n = m->nlayers;
    if (n < 1 || n > QAT_Q8_MAX_LAYERS) {
        m->nlayers = 0; /* nothing allocated yet: qat_q8_free must not walk layers */
        return qat_fail(QAT_ERR_FORMAT, "%s: %d layers (must be 1..%d)", what, n,
                        QAT_Q8_MAX_LAYERS);
    }
    if ((st = qat_container_get(c, "layers", (uint64_t)n * LAYER_BYTES, &data, NULL))) return st;
    unsigned *masks = calloc((size_t)n, sizeof *masks);
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!masks || !m->layers) {
        free(masks);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %d layers", what, n);
    }
    r.p = data;
    const uint32_t version = qat_container_version(c);
    const int narrays = version_arrays(version);
    for (int i = 0; i < n && !st; i++) st = read_layer(&r, &m->layers[i], i, what, &masks[i], version);
    /* Shapes first: array sizes are derived from them. */
    if (!st) st = qat_q8_check(m, what, 0);
    for (int i = 0; i < n && !st; i++) st = qat_q8_check_array_set(what, i, &m->layers[i], masks[i]);
    for (int a = 0; a < narrays && !st; a++) st = read_arrays(c, what, m, masks, a, version);
    free(masks);
    uint64_t nlen = 0;
    const char *names = qat_container_find(c, "classes", &nlen);
    if (!st && qat_container_count(c) != 2 + narrays + (names != NULL))
        st = qat_fail(QAT_ERR_FORMAT, "%s: %d sections, expected %d for version %u (unknown section)",
                      what, qat_container_count(c), 2 + narrays + (names != NULL), (unsigned)version);
    if (!st) st = qat_class_names_parse(names, (size_t)nlen, m->nclasses, what, &m->class_names);
    if (!st) st = qat_q8_check(m, what, 1);
    return st;
}

static qat_status load_from(qat_container *c, const char *what, qat_q8_model **out) {
    qat_q8_model *m = calloc(1, sizeof *m);
    qat_status st =
        m ? parse_model(c, what, m) : qat_fail(QAT_ERR_NOMEM, "%s: out of memory", what);
    qat_container_free(c);
    if (st) {
        qat_q8_free(m);
        return st;
    }
    *out = m;
    return QAT_OK;
}

qat_status qat_q8_load(const char *path, qat_q8_model **out) {
    if (!out) return qat_fail(QAT_ERR_ARG, "q8: no output pointer");
    *out = NULL;
    if (!path) return qat_fail(QAT_ERR_ARG, "q8: no path");
    qat_container *c;
    qat_status st = qat_container_read(path, Q8_MAGIC, Q8_VERSION, &c);
    return st ? st : load_from(c, path, out);
}

qat_status qat_q8_load_memory(const void *buf, size_t size, const char *name, qat_q8_model **out) {
    if (!out) return qat_fail(QAT_ERR_ARG, "q8: no output pointer");
    *out = NULL;
    if (!name) name = "<memory>";
    qat_container *c;
    qat_status st = qat_container_read_memory(buf, size, name, Q8_MAGIC, Q8_VERSION, &c);
    return st ? st : load_from(c, name, out);
}
