/* AdamW, exactly torch.optim.AdamW (amsgrad off, single-tensor path), at step t (1-based):
 *   p = p * (1 - lr*wd)                   (decoupled decay, before the moment update)
 *   m = m + (1-beta1)*(g - m)             (PyTorch's lerp form of beta1*m + (1-beta1)*g)
 *   v = beta2*v + (1-beta2)*g*g
 *   p = p - lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 * PyTorch derives 1-beta, 1-lr*wd and the bias corrections from Python doubles and rounds each to
 * float once; the caller passes doubles so we can do the same, and the loop keeps PyTorch's order
 * of operations (divide by sqrt(1-beta2^t), not multiply by its inverse). */
#include "optim.h"
#include <emmintrin.h> /* SSE2 is part of every x86-64 target: no run-time dispatch needed */
#include <math.h>

/* The loop body in SSE2 and, for the tail, the same arithmetic in scalar code (the reference):
 * sqrt and division are correctly rounded in both, and the baseline has no FMA to contract into,
 * so every element comes out bit-identical whichever path handles it. Written by hand because
 * under the default -fmath-errno GCC guards sqrtf with an errno branch and will not vectorise it
 * (4x slower: 6 ms instead of 1.6 ms per step for 2.2M parameters on one Zen 5 core). */
void qat_adamw_update(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, int64_t numel, double lr, double beta1, double beta2,
                      double eps, double wd, int64_t step) {
    const float decay = (float)(1.0 - lr * wd);
    const float step_size = (float)(lr / (1.0 - pow(beta1, (double)step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step));
    const float one_m_b1 = (float)(1.0 - beta1), one_m_b2 = (float)(1.0 - beta2);
    const float b2 = (float)beta2, epsf = (float)eps;
    int64_t i = 0;
    const __m128 vdecay = _mm_set1_ps(decay), vstep = _mm_set1_ps(step_size);
    const __m128 vbc2 = _mm_set1_ps(bc2_sqrt), vomb1 = _mm_set1_ps(one_m_b1);
    const __m128 vomb2 = _mm_set1_ps(one_m_b2), vb2 = _mm_set1_ps(b2), veps = _mm_set1_ps(epsf);
    for (; i + 4 <= numel; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i), mi = _mm_loadu_ps(m + i), vi = _mm_loadu_ps(v + i);
        __m128 pi = _mm_mul_ps(_mm_loadu_ps(p + i), vdecay);
        mi = _mm_add_ps(mi, _mm_mul_ps(vomb1, _mm_sub_ps(gi, mi)));
        vi = _mm_add_ps(_mm_mul_ps(vb2, vi), _mm_mul_ps(_mm_mul_ps(vomb2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc2), veps);
        _mm_storeu_ps(p + i, _mm_sub_ps(pi, _mm_mul_ps(vstep, _mm_div_ps(mi, denom))));
    }
    for (; i < numel; i++) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = m[i] + one_m_b1 * (gi - m[i]);
        float vi = b2 * v[i] + one_m_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + epsf));
    }
}
