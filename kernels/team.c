/* How many threads the FP32 engine's next step runs on, under other processes' load (issue 19).
 *
 * A step of the FP32 engine opens about 150 parallel regions (mbv2-tiny, batch 64), each a
 * fork/join of a few hundred microseconds. When another process holds one of the cores, the
 * join waits for whichever of our threads the scheduler has put behind it, a slice of
 * milliseconds, at almost every region, and the spinning of the thread that arrived first
 * holds the other core: measured on a 2-core AMD Zen 4, 2 threads beside one busy loop trained
 * at 322 img/s, 1 thread at 874, 2 threads on quiet cores at 1,558.
 *
 * So the team is fitted to the load once per step (qat_ctx_reset calls qat_team_tick): the
 * kernel's own scheduler statistics (/proc/self/task/TID/schedstat: nanoseconds each thread
 * was runnable but waiting for a core) say whether the team waited. Waiting more than
 * TEAM_WAIT_SHARE of the window caps the team, by the number of cores' worth of time it
 * waited. A capped team cannot see the other process leave (it fits beside it), so it runs
 * one window with the whole team again (a probe) once /proc/loadavg has counted no other
 * runnable task for two windows, or at the latest after a backoff that doubles while the
 * probes keep finding load (0.5 s up to 8 s). The results do not depend on the cap: every reduction of the
 * engine is chunked by shape, never by thread count (tests/test_train.c: 1 and 2 threads
 * train to the same bits).
 *
 * QAT_ADAPT_THREADS=0 turns this off (the team stays at qat_get_threads()); without procfs
 * schedstat it stays off by itself. QAT_TEAM_DEBUG=1 prints each window's measurements and
 * decision on stderr. The decision (qat_team_decide) is apart from the measurements, so that
 * tests can drive it (tests/test_kernels.c). */
#include "kernels.h"
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TEAM_MAX 64
/* Shorter windows are added up: a batch-1 step is a fraction of a millisecond, and the
 * statistics are only worth their reads over several scheduler ticks. */
#define TEAM_WINDOW_NS 20000000LL
/* Waiting share (summed over the team's threads) above which the team is capped, in
 * TEAM_HOT_WINDOWS windows in a row (a probe decides in one). On quiet cores it stays below 1%
 * but a single window now and then reaches 10-15% (some short task of the machine's); one
 * busy loop beside 2 threads puts it at 60-80%. */
#define TEAM_WAIT_SHARE 0.15
#define TEAM_HOT_WINDOWS 2
/* A capped team looks again at the whole team after TEAM_IDLE_WINDOWS windows in a row in
 * which /proc/loadavg counted no runnable task but its own, or at the latest after the backoff
 * (TEAM_PROBE_MIN_NS, doubling up to TEAM_PROBE_MAX_NS while the probes find load). */
#define TEAM_IDLE_WINDOWS 2
#define TEAM_PROBE_MIN_NS 500000000LL
#define TEAM_PROBE_MAX_NS 8000000000LL

static struct {
    int state;          /* 0: not set up, 1: on, -1: off */
    int debug;          /* QAT_TEAM_DEBUG set: one line per window on stderr */
    int n;              /* the configured thread count the fds belong to */
    int nfd, fd[TEAM_MAX];
    int loadavg_fd;     /* /proc/loadavg, for its count of runnable tasks (-1: none) */
    long long t0, wait0; /* start of the current window and the team's wait then */
    qat_team_state d;
} tm;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The team's summed wait in ns, or -1 if a thread is gone (libgomp replaced its pool). */
static long long team_wait(void) {
    long long sum = 0;
    for (int i = 0; i < tm.nfd; i++) {
        char buf[96];
        ssize_t k = pread(tm.fd[i], buf, sizeof buf - 1, 0);
        if (k <= 0) return -1;
        buf[k] = 0;
        unsigned long long run, wait;
        if (sscanf(buf, "%llu %llu", &run, &wait) != 2) return -1;
        sum += (long long)wait;
    }
    return sum;
}

/* Runnable tasks on the whole machine now (the caller is one of them), or -1. */
static int runnable_now(void) {
    char buf[128];
    if (tm.loadavg_fd < 0) return -1;
    ssize_t k = pread(tm.loadavg_fd, buf, sizeof buf - 1, 0);
    if (k <= 0) return -1;
    buf[k] = 0;
    double l1, l5, l15;
    int running;
    return sscanf(buf, "%lf %lf %lf %d/", &l1, &l5, &l15, &running) == 4 ? running : -1;
}

static void close_fds(void) {
    for (int i = 0; i < tm.nfd; i++) close(tm.fd[i]);
    tm.nfd = 0;
}

/* Opens the schedstat of each thread of an n-thread team; 0 on success. */
static int open_fds(int n) {
    int tids[TEAM_MAX], got = 0;
    qat_set_thread_cap(0);
#pragma omp parallel num_threads(n)
    {
        int t = omp_get_thread_num();
        if (t < TEAM_MAX) tids[t] = (int)syscall(SYS_gettid);
#pragma omp single
        got = omp_get_num_threads();
    }
    close_fds();
    for (int i = 0; i < got && i < TEAM_MAX; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tids[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            close_fds();
            return -1;
        }
        tm.fd[tm.nfd++] = fd;
    }
    return 0;
}

static void start_window(long long t) {
    tm.t0 = t;
    tm.wait0 = team_wait();
}

void qat_team_init(qat_team_state *d, int n) {
    memset(d, 0, sizeof *d);
    d->n = n;
    d->backoff = TEAM_PROBE_MIN_NS;
}

int qat_team_decide(qat_team_state *d, double share, int runnable, long long t) {
    const int hot = share > TEAM_WAIT_SHARE;
    d->hot_windows = hot ? d->hot_windows + 1 : 0;
    if (hot && (d->probing || d->cap > 0 || d->hot_windows >= TEAM_HOT_WINDOWS)) {
        /* Give up the cores' worth of time the team waited for, at least one thread. */
        const int drop = (int)(share + 0.999), from = d->cap > 0 ? d->cap : d->n;
        const int k = from - (drop < 1 ? 1 : drop);
        d->cap = k < 1 ? 1 : k;
        if (d->probing)
            d->backoff = d->backoff * 2 > TEAM_PROBE_MAX_NS ? TEAM_PROBE_MAX_NS : d->backoff * 2;
        d->probing = 0;
        d->idle_windows = 0;
        d->next_probe = t + d->backoff;
    } else if (d->probing) {
        d->probing = 0; /* the whole team ran without waiting: the load is gone */
        d->backoff = TEAM_PROBE_MIN_NS;
    } else if (d->cap > 0) {
        /* Probe when the machine looked idle for a few windows (nothing runnable but our
         * capped team), or at the latest when the backoff runs out. */
        d->idle_windows = runnable >= 0 && runnable <= d->cap ? d->idle_windows + 1 : 0;
        if (d->idle_windows >= TEAM_IDLE_WINDOWS || t >= d->next_probe) {
            d->cap = 0;
            d->probing = 1;
            d->idle_windows = 0;
        }
    }
    if (d->cap >= d->n) d->cap = 0;
    return d->cap;
}

void qat_team_tick(void) {
    if (tm.state < 0 || omp_in_parallel()) return;
    const int n = qat_get_threads();
    if (tm.state == 0) {
        const char *e = getenv("QAT_ADAPT_THREADS");
        if (e && !strcmp(e, "0")) {
            tm.state = -1;
            return;
        }
        tm.state = 1;
        tm.debug = getenv("QAT_TEAM_DEBUG") != NULL;
        tm.loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    }
    const long long t = now_ns();
    if (n != tm.n || (tm.d.cap > 0 && qat_thread_cap() == 0)) {
        /* first call, or qat_set_threads set the team again (and lifted the cap) */
        tm.n = n;
        close_fds();
        qat_team_init(&tm.d, n);
        if (n > 1 && open_fds(n) != 0) {
            tm.state = -1; /* no schedstat here: keep the whole team */
            return;
        }
        if (n > 1) start_window(t);
        return;
    }
    if (n <= 1 || t - tm.t0 < TEAM_WINDOW_NS) return;
    const long long w = team_wait();
    if (w < 0 || tm.wait0 < 0) { /* a thread is gone: set up again next tick */
        tm.n = 0;
        qat_set_thread_cap(0);
        return;
    }
    const double share = (double)(w - tm.wait0) / (double)(t - tm.t0);
    const int r = qat_thread_cap() > 0 ? runnable_now() : -1;
    const int cap = qat_team_decide(&tm.d, share, r, t);
    if (tm.debug)
        fprintf(stderr, "team: window %.1f ms, wait share %.3f, runnable %d -> cap %d%s\n",
                (t - tm.t0) / 1e6, share, r, cap, tm.d.probing ? " (probe)" : "");
    qat_set_thread_cap(cap);
    start_window(now_ns());
}
