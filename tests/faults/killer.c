/* killer DIR PID: waits (inotify) for a file whose name holds ".ckpt.tmp." to be created in DIR,
 * then kills PID with SIGKILL at once: a kill -9 in the middle of a checkpoint write, which a
 * kill after a random delay almost never hits (the write takes about a millisecond). Exits 0
 * after the kill, 1 when PID ended first (polled every 10 ms), for the fault harness. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: killer DIR PID\n");
        return 2;
    }
    pid_t pid = (pid_t)atol(argv[2]);
    int fd = inotify_init1(IN_CLOEXEC);
    if (fd < 0 || inotify_add_watch(fd, argv[1], IN_CREATE) < 0) return perror(argv[1]), 2;
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 10);
        if (r == 0) {
            if (kill(pid, 0) != 0 && errno == ESRCH) return 1;
            continue;
        }
        ssize_t n = read(fd, buf, sizeof buf);
        for (char *q = buf; n > 0 && q < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)q;
            if (e->len && strstr(e->name, ".ckpt.tmp.")) {
                kill(pid, SIGKILL);
                return 0;
            }
            q += sizeof *e + e->len;
        }
    }
}
