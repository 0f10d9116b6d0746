/* xoshiro256** seeded through splitmix64: small, fast, and its state fits in a checkpoint. */
#include "base.h"
#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void qat_rng_seed(qat_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t qat_rng_next(qat_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float qat_rng_uniform(qat_rng *r) { return (float)(qat_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

float qat_rng_normal(qat_rng *r) {
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - (double)(qat_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(qat_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t qat_rng_below(qat_rng *r, uint32_t n) {
    return (uint32_t)(((qat_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}
