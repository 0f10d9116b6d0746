/* CRC repair of the container layout (base/container.h), shared by the fuzz harness and the
 * fuzz smoke test: after a mutation, recompute every section CRC whose range lies inside the
 * buffer, then the header CRC, so that mutations reach the parser behind the checksums. */
#ifndef QAT_CONTAINER_CRC_H
#define QAT_CONTAINER_CRC_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

static inline uint32_t crcfix_rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t crcfix_rd64(const unsigned char *p) {
    return crcfix_rd32(p) | (uint64_t)crcfix_rd32(p + 4) << 32;
}
static inline void crcfix_wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static inline void fix_crcs(unsigned char *b, size_t len) {
    if (len < 20) return;
    const uint64_t count = crcfix_rd32(b + 12), head = 16 + 36 * count + 4;
    if (head > len) return;
    for (uint64_t i = 0; i < count; i++) {
        unsigned char *e = b + 16 + 36 * i;
        const uint64_t off = crcfix_rd64(e + 16), size = crcfix_rd64(e + 24);
        if (off <= len && size <= len - off && size <= UINT32_MAX)
            crcfix_wr32(e + 32, (uint32_t)crc32(0L, b + off, (uInt)size));
    }
    crcfix_wr32(b + head - 4, (uint32_t)crc32(0L, b, (uInt)(head - 4)));
}

#endif
