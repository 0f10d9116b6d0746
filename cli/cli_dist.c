/* When a rank of an mpirun job dies (killed, out of memory, a node lost), Open MPI's runtime ends
 * the job: mpirun sends SIGTERM to the ranks still running (about a second after a kill -9,
 * docs/distributed.md) and prints its own notice. Rank 0 then says in one line what that means
 * for the run: stopped, the checkpoints on disk are whole (atomic writes), how to go on. */
#include "cli.h"
#include "qat.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char stop_line[1400];
static size_t stop_len;

static void on_term(int sig) {
    (void)sig;
    if (stop_len) {
        ssize_t w = write(STDERR_FILENO, stop_line, stop_len);
        (void)w;
    }
    _exit(143);
}

void cli_dist_watch(const char *cmd, const char *out_dir) {
    if (qat_dist_size() <= 1) return;
    if (qat_dist_rank() == 0) {
        if (out_dir)
            snprintf(stop_line, sizeof stop_line, "\nqat %s: stopped: the mpirun job is ending (a rank "
                     "died or the job was interrupted); %s/last.ckpt holds the last finished epoch "
                     "(written atomically): --resume %s/last.ckpt goes on from there\n", cmd, out_dir,
                     out_dir);
        else
            snprintf(stop_line, sizeof stop_line, "\nqat %s: stopped: the mpirun job is ending (a rank "
                     "died or the job was interrupted)\n", cmd);
        stop_len = strlen(stop_line);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
}
