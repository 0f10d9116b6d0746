/* The run directory of qat train / qat qat (--out): one run at a time in it, and what a killed
 * run left behind cleared before the next one writes (issue 15 points 4 and 5). */
#include "train.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "container.h"

/* Two runs into one --out both exited 0 with metrics.jsonl interleaving their epochs and both
 * checkpoints holding one run's model. An flock on DIR/run.lock is held for the whole run: the
 * kernel drops it when the process ends however it ends (kill -9 included), so a stale lock file
 * never blocks a later run, and the pid written in it names the holder. */
qat_status qat_run_dir_lock(const char *dir, int *fd_out) {
    char path[1100];
    snprintf(path, sizeof path, "%s/run.lock", dir);
    *fd_out = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return qat_fail(QAT_ERR_IO, "%s: cannot create the run's lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return qat_fail(QAT_ERR_IO, "%s: another run (pid %s) is writing to this directory; "
                            "give another --out, or wait for it to end", dir, pid[0] ? pid : "unknown");
        return qat_fail(QAT_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return qat_fail(QAT_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    *fd_out = fd;
    return QAT_OK;
}

void qat_run_dir_unlock(int fd) {
    if (fd >= 0) close(fd); /* closing drops the flock */
}

/* A kill -9 during a checkpoint write leaves DIR/NAME.ckpt.tmp.<pid>.<n> (up to 709 KB seen);
 * with the directory locked no other qat is writing one, so every such file is stale. */
qat_status qat_run_dir_clean(const char *dir, int *removed) {
    *removed = 0;
    DIR *d = opendir(dir);
    if (!d) return QAT_OK; /* nothing there yet */
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".ckpt.tmp.");
        if (!t) continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) (*removed)++;
    }
    closedir(d);
    return QAT_OK;
}

/* metrics.jsonl as of the checkpoint a run resumes from: the epoch lines of steps after it were
 * written by the run that went on past the checkpoint (and died, or is being redone), so they go;
 * the resumed run writes its own. Config lines stay. Rewritten atomically. */
qat_status qat_metrics_truncate(const char *dir, int64_t step, int *dropped) {
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    *dropped = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return QAT_OK;
    char *text = NULL;
    size_t cap = 0, len = 0;
    char line[8192];
    int kept_any = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        int whole = n > 0 && line[n - 1] == '\n';
        const char *s = strstr(line, "\"step\": ");
        /* a line cut short by a kill has no newline: dropped too */
        int drop = !whole || (s && strtoll(s + 8, NULL, 10) > step);
        if (!whole) /* skip the rest of an over-long line */
            for (int c; (c = fgetc(f)) != EOF && c != '\n';) {}
        if (drop) {
            (*dropped)++;
            continue;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *p = realloc(text, cap);
            if (!p) {
                free(text);
                fclose(f);
                return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
            }
            text = p;
        }
        memcpy(text + len, line, n);
        len += n;
        kept_any = 1;
    }
    fclose(f);
    qat_status st = QAT_OK;
    if (*dropped) st = qat_file_write_atomic(path, kept_any ? text : "", len);
    free(text);
    return st;
}
