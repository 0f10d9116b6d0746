/* A versioned little-endian file of named sections, used for checkpoints (magic "QATCKPT1") and
 * INT8 model files. Depends only on qat.h and zlib, so the deploy-only runtime can carry it.
 *
 *   qat_section secs[] = {{"params", params, n * sizeof(float)}, {"step", &step, 8}};
 *   if (qat_container_write("run/last.ckpt", "QATCKPT1", 1, secs, 2)) die(qat_last_error());
 *   qat_container *c;
 *   if (qat_container_read("run/last.ckpt", "QATCKPT1", 1, &c)) die(qat_last_error());
 *   const void *p; uint64_t size;
 *   if (qat_container_get(c, "params", n * sizeof(float), &p, &size)) die(qat_last_error());
 *   memcpy(params, p, size);
 *   qat_container_free(c);
 *
 * Layout (all integers little-endian, no struct is written as-is):
 *   0   magic[8]
 *   8   u32 version (>= 1)
 *   12  u32 section count (<= QAT_CONTAINER_MAX_SECTIONS)
 *   16  section table, per section: name[16] (printable ASCII, NUL-terminated, zero-padded),
 *       u64 offset, u64 size, u32 crc32 of the data                     (36 bytes each)
 *   ..  u32 crc32 of everything above (magic through the table)
 *   ..  section data in table order, each starting on a 64-byte file offset; the gaps are zero.
 *       The file ends exactly where the last section's data (or the header) ends.
 * Every byte of a valid file is therefore covered by a checksum, a zero check or a bounds
 * check, and any single-bit corruption is reported.
 */
#ifndef QAT_CONTAINER_H
#define QAT_CONTAINER_H

#include "qat.h"
#include <stdint.h>

#define QAT_CONTAINER_NAME_MAX 16       /* bytes of a section name including its NUL */
#define QAT_CONTAINER_MAX_SECTIONS 65536
#define QAT_CONTAINER_ALIGN 64          /* file offset (and, after read, address) of section data */

typedef struct { char name[QAT_CONTAINER_NAME_MAX]; const void *data; uint64_t size; } qat_section;

/* Writes atomically: a temp file in the same directory, fwrite, fflush, fsync, rename over path
 * (a crash never leaves a half-written file at path; an existing good file stays until the
 * rename). Names must be non-empty printable ASCII (no spaces) of at most 15 characters and
 * distinct; data may be NULL only when size is 0. */
qat_status qat_container_write(const char *path, const char magic[8], uint32_t version,
                               const qat_section *secs, int nsec);

/* The same atomic write for one buffer that is a whole file in another format (ONNX models):
 * temp file beside path, fsync, rename; on failure path is untouched and no temp file is left. */
qat_status qat_file_write_atomic(const char *path, const void *data, uint64_t size);

/* Where an output named path really goes, as cp and install treat their destination (issue 15
 * point 3; every file qat writes goes through here, via the two writers above): a symlink is
 * followed to the file it names (the link stays, its target is replaced), and anything but a
 * regular file or a new name (a device such as /dev/full, a FIFO, a socket, a directory) is
 * refused with one line naming path, where the rename used to replace it. *target is malloc'd. */
qat_status qat_output_target(const char *path, char **target);

typedef struct qat_container qat_container;

/* Reads the whole file and validates everything: magic, version (1 ..max_version, else "written
 * by a newer qat"), section count, every offset+size within the file without overflow, order,
 * alignment, zero padding, header crc, every section crc, names, no duplicates. Any failure
 * returns an error with one line naming the path and the problem, e.g.
 * "run/last.ckpt: section 'params' checksum mismatch (file corrupt)", and *out = NULL. */
qat_status qat_container_read(const char *path, const char magic[8], uint32_t max_version,
                              qat_container **out);
/* The same checks on a buffer already in memory (fuzzing, embedded models); `name` stands for
 * the path in messages. The container keeps its own aligned copy of the bytes. */
qat_status qat_container_read_memory(const void *buf, size_t size, const char *name,
                                     const char magic[8], uint32_t max_version,
                                     qat_container **out);
uint32_t qat_container_version(const qat_container *c);
/* Number of sections and the name of section i (0 <= i < count), in file order. */
int qat_container_count(const qat_container *c);
const char *qat_container_name(const qat_container *c, int i);
/* The section's data (64-byte aligned) or NULL if absent; *size set (0 when absent). An empty
 * section that is present returns a non-NULL pointer that must not be dereferenced. */
const void *qat_container_find(const qat_container *c, const char *name, uint64_t *size);
/* Like find but fails with a clear error naming path and section when missing or
 * size != expect (expect 0 = any size). size may be NULL. */
qat_status qat_container_get(const qat_container *c, const char *name, uint64_t expect,
                             const void **data, uint64_t *size);
const char *qat_container_path(const qat_container *c);
void qat_container_free(qat_container *c);

#endif
