/* The histogram observer: QAT_HIST_BINS bins on a grid that only grows, and the search for a
 * clipping range on it (MSE or percentile).
 *
 * Growing without interpolation: the grid is (lo, width). When a batch falls outside, the new
 * grid starts j old bins lower and its bins are k old bins wide (j, k integers), so old bin i
 * lands entirely in new bin (i + j) / k: counts move exactly, with no re-binning error. (PyTorch
 * upsamples the old histogram and spreads its counts instead.) */
#include "quant.h"
#include "kernels.h"
#include <math.h>
#include <string.h>

#define B QAT_HIST_BINS

/* A grid for data that is one value v so far: tiny bins starting at v, to be widened by
 * the first batch with a spread. */
static double degenerate_width(double v) { return fmax(fabs(v), 1.0) * 0x1p-30; }

static void hist_grow(qat_observer *o, double bmin, double bmax) {
    double lo = o->hist_lo, w = o->hist_width, hi = lo + B * w;
    if (bmin >= lo && bmax <= hi) return;
    int64_t j = bmin < lo ? (int64_t)ceil((lo - bmin) / w) : 0;
    while (lo - (double)j * w > bmin) j++; /* guard the division's rounding */
    double nlo = lo - (double)j * w;
    double top = bmax > hi ? bmax : hi;
    int64_t k = (int64_t)ceil((top - nlo) / (B * w));
    if (k < 1) k = 1;
    while (nlo + (double)k * B * w < top) k++;
    if (k * B < j + B) k = (j + 2 * B - 1) / B; /* every old bin must land inside */
    double nh[B];
    memset(nh, 0, sizeof nh);
    for (int i = 0; i < B; i++) nh[(i + j) / k] += o->hist[i];
    memcpy(o->hist, nh, sizeof nh);
    o->hist_lo = nlo;
    o->hist_width = (double)k * w;
}

qat_status qat_hist_update(qat_observer *o, const float *x, int64_t n, float bmin, float bmax) {
    if (o->seen == 0) {
        memset(o->hist, 0, B * sizeof(double));
        o->zeros = 0;
        o->hist_lo = bmin;
        o->hist_width = ((double)bmax - (double)bmin) / B;
        if (!(o->hist_width > 0)) o->hist_width = degenerate_width(bmin);
    } else {
        hist_grow(o, bmin, bmax);
    }
    const double lo = o->hist_lo, invw = 1.0 / o->hist_width;
    double *hist = o->hist, zeros = 0;
    int nt = n >= (1 << 17) ? qat_kernel_threads() : 1;
    /* Counts are integers, so merging the per-thread histograms in any order is exact. */
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : zeros)
    {
        uint32_t local[B];
        memset(local, 0, sizeof local);
        int64_t nz = 0;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            double t = ((double)x[i] - lo) * invw;
            int b = t < 0 ? 0 : (t >= B ? B - 1 : (int)t);
            local[b]++;
            nz += x[i] == 0.0f;
        }
        zeros += (double)nz;
#pragma omp critical(qat_hist_merge)
        for (int b = 0; b < B; b++) hist[b] += local[b];
    }
    o->zeros += zeros;
    return QAT_OK;
}

/* ---- percentile ------------------------------------------------------------------------------ */

/* The value below which a fraction p of the counts lies, interpolating inside the bin. */
static double hist_quantile(const qat_observer *o, double total, double p) {
    double target = p * total, cum = 0;
    for (int k = 0; k < B; k++) {
        double h = o->hist[k];
        if (h > 0 && cum + h >= target) {
            double f = (target - cum) / h;
            return o->hist_lo + ((double)k + f) * o->hist_width;
        }
        cum += h;
    }
    return o->hist_lo + (double)B * o->hist_width;
}

/* ---- MSE search ------------------------------------------------------------------------------ */

/* Everything in bin units (positions u = (x - lo) / width, bin k centred at k + 0.5), with the
 * mass of a bin at its centre plus a uniform spread of width^2 / 12. For qparams (scale, zp) the
 * representable interval is [cl, ch] = [(qmin - zp) * scale, (qmax - zp) * scale] and
 *   E = sum_{centre < cl} n (u - cl)^2 + sum_{centre > ch} n (u - ch)^2 + n_clipped / 12
 *     + (n_inside - zeros) * (scale / width)^2 / 12
 * (rounding noise of a uniform grid step; exact zeros are representable and cost nothing). */
typedef struct {
    double s0[B + 1], s1[B + 1], s2[B + 1]; /* prefix sums of n, n*u, n*u^2 over bins < k */
    double total, zeros;
    const qat_observer *o;
    const qat_qscheme *s;
    int32_t qmin, qmax;
    float vmin, vmax;                        /* observed min/max: candidates never go beyond */
} mse_ctx;

static float edge_value(const mse_ctx *m, int i) {
    double v = m->o->hist_lo + (double)i * m->o->hist_width;
    float f = (float)v;
    return f < m->vmin ? m->vmin : (f > m->vmax ? m->vmax : f);
}

static double mse_of_range(const mse_ctx *m, float a, float b) {
    float scale;
    int32_t zp;
    if (qat_qparams_from_range(m->s, a, b, &scale, &zp)) return INFINITY;
    const double lo = m->o->hist_lo, w = m->o->hist_width;
    double tcl = ((double)(m->qmin - zp) * scale - lo) / w;
    double tch = ((double)(m->qmax - zp) * scale - lo) / w;
    /* bins k < kb have centre < tcl; bins k >= ka have centre > tch */
    double fb = ceil(tcl - 0.5), fa = floor(tch - 0.5) + 1;
    int kb = fb < 0 ? 0 : (fb > B ? B : (int)fb);
    int ka = fa < 0 ? 0 : (fa > B ? B : (int)fa);
    if (ka < kb) ka = kb;
    double n_b = m->s0[kb], n_a = m->total - m->s0[ka];
    double e_b = m->s2[kb] - 2 * tcl * m->s1[kb] + tcl * tcl * n_b;
    double s1a = m->s1[B] - m->s1[ka], s2a = m->s2[B] - m->s2[ka];
    double e_a = s2a - 2 * tch * s1a + tch * tch * n_a;
    double inside = m->total - n_b - n_a - m->zeros;
    if (inside < 0) inside = 0;
    double step = (double)scale / w;
    return e_b + e_a + (n_b + n_a) / 12.0 + inside * step * step / 12.0;
}

static void mse_search(const mse_ctx *m, float *lo, float *hi) {
    float best_a = m->vmin, best_b = m->vmax;
    double best = mse_of_range(m, best_a, best_b);
    if (m->s->symmetric) {
        /* one free parameter, max|x|: every bin edge is a candidate */
        for (int i = 0; i <= B; i++) {
            float t = fabsf(edge_value(m, i));
            double e = mse_of_range(m, -t, t);
            if (e < best) best = e, best_a = -t, best_b = t;
        }
    } else {
        /* Two parameters: all edge pairs (i, j) 16 bins apart, then every pair within 16 bins
         * of the best one. About 10k candidates instead of B^2 / 2 = 2M. */
        const int S = 16;
        int bi = 0, bj = B; /* the refinement starts from the full grid if nothing beats it */
        for (int i = 0; i <= B; i += S)
            for (int j = i + S; j <= B; j += S) {
                float a = edge_value(m, i), b = edge_value(m, j);
                double e = mse_of_range(m, a, b);
                if (e < best) best = e, bi = i, bj = j, best_a = a, best_b = b;
            }
        int i0 = bi - S < 0 ? 0 : bi - S, i1 = bi + S > B ? B : bi + S;
        int j0 = bj - S < 0 ? 0 : bj - S, j1 = bj + S > B ? B : bj + S;
        for (int i = i0; i <= i1; i++)
            for (int j = j0 > i + 1 ? j0 : i + 1; j <= j1; j++) {
                float a = edge_value(m, i), b = edge_value(m, j);
                double e = mse_of_range(m, a, b);
                if (e < best) best = e, best_a = a, best_b = b;
            }
    }
    *lo = best_a, *hi = best_b;
}

qat_status qat_hist_range(const qat_observer *o, const qat_qscheme *s, float *lo, float *hi) {
    qat_status st = qat_qscheme_check(s);
    if (st) return st;
    double total = 0;
    for (int k = 0; k < B; k++) total += o->hist[k];
    if (o->method == QAT_HIST_PERCENTILE) {
        double p = o->percentile / 100.0;
        if (!(p > 0.5 && p <= 1.0))
            return qat_fail(QAT_ERR_ARG, "fakequant/histogram.c: observer %s: percentile %g is "
                            "outside (50, 100]", o->name ? o->name : "(unnamed)",
                            (double)o->percentile);
        double a = hist_quantile(o, total, 1.0 - p), b = hist_quantile(o, total, p);
        float fa = (float)a, fb = (float)b;
        *lo = fa < o->min_val[0] ? o->min_val[0] : fa;
        *hi = fb > o->max_val[0] ? o->max_val[0] : fb;
        return QAT_OK;
    }
    mse_ctx *m = malloc(sizeof *m);
    if (!m) return qat_fail(QAT_ERR_NOMEM, "fakequant/histogram.c: out of memory");
    m->o = o, m->s = s, m->total = total, m->zeros = o->zeros;
    m->vmin = o->min_val[0], m->vmax = o->max_val[0];
    qat_qscheme_range(s, &m->qmin, &m->qmax);
    m->s0[0] = m->s1[0] = m->s2[0] = 0;
    for (int k = 0; k < B; k++) {
        double n = o->hist[k], u = k + 0.5;
        m->s0[k + 1] = m->s0[k] + n;
        m->s1[k + 1] = m->s1[k] + n * u;
        m->s2[k + 1] = m->s2[k] + n * u * u;
    }
    mse_search(m, lo, hi);
    free(m);
    return QAT_OK;
}
