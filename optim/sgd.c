/* SGD with momentum, exactly torch.optim.SGD with dampening 0:
 *   g = g + wd*p                          (L2 folded into the gradient, not decoupled)
 *   buf = g on the first step, else momentum*buf + g
 *   g = nesterov ? g + momentum*buf : buf
 *   p = p - lr*g
 * PyTorch creates the buffer as a copy of g on the first step rather than scaling a zero buffer;
 * copying also keeps whatever is in the buffer before the first step from mattering.
 * Each case is its own branch-free loop so that `omp simd` vectorises it (GCC's -O2 cost model
 * alone leaves these loops scalar). */
#include "optim.h"

void qat_sgd_update(float *restrict p, const float *restrict g, float *restrict buf, int64_t numel,
                    float lr, float momentum, int nesterov, float wd, int first_step) {
    if (momentum == 0.0f) {
        /* PyTorch keeps no buffer without momentum; neither do we (buf is left alone). */
#pragma omp simd
        for (int64_t i = 0; i < numel; i++) p[i] -= lr * (g[i] + wd * p[i]);
    } else if (first_step && nesterov) {
#pragma omp simd
        for (int64_t i = 0; i < numel; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * (d + momentum * d);
        }
    } else if (first_step) {
#pragma omp simd
        for (int64_t i = 0; i < numel; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * d;
        }
    } else if (nesterov) {
#pragma omp simd
        for (int64_t i = 0; i < numel; i++) {
            float d = g[i] + wd * p[i];
            float b = momentum * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * (d + momentum * b);
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < numel; i++) {
            float d = g[i] + wd * p[i];
            float b = momentum * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}
