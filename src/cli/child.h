/*
 * child.h: the servers `vigil bench` and `vigil profile` start and stop
 * (Linux only: fork, exec, PR_SET_PDEATHSIG, CPU affinity).
 *
 * A child's stdout is a pipe, of which the first line is read (a server
 * says its port there); the rest stays in the pipe, unread. Its stderr goes
 * to an unlinked temporary file, shown when it fails to start, or to a pipe
 * that the caller reads. A child never outlives the process that started it
 * (PR_SET_PDEATHSIG: SIGKILL): a server left running would skew the next
 * measurement on the machine.
 */
#ifndef VIGIL_CLI_CHILD_H
#define VIGIL_CLI_CHILD_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct child_opts {
    int cpu;       /* pin it to this CPU; -1: not pinned */
    const int *cpus; /* ncpus > 0: pin it to these CPUs instead (cpu not used) */
    int ncpus;
    bool err_pipe; /* stderr into a pipe the caller reads (err_fd); else a temporary file */
    /* Holds its pid while it runs (0 otherwise), for a signal handler that
     * passes a signal on; may be NULL. */
    volatile sig_atomic_t *pid_slot;
} child_opts;

typedef struct child {
    const char *path; /* what was started, for messages */
    pid_t pid;      /* 0: not running (never started, or reaped) */
    int out_fd;     /* read end of its stdout, -1 when closed */
    int err_fd;     /* its stderr: a pipe's read end or the temporary file; -1 when closed */
    char line[512]; /* its first stdout line, without the newline (child_first_line) */
    volatile sig_atomic_t *pid_slot;
} child;

/* Starts path with argv. Returns 0, or -errno with why in err (nothing is
 * then left to stop; child_close still may be called). */
int child_spawn(child *c, const char *path, char *const argv[], const child_opts *o, char *err,
                size_t errlen);

/* Reads its first stdout line into c->line, waiting up to ms; gives up when
 * *stop (may be NULL) becomes nonzero. Returns 0, or -1 with why in err: the
 * line did not come in time, or the child ended first (its exit status and
 * the last line of its stderr, when that is a file, say why; it is reaped).
 * The child is left to the caller to stop either way. */
int child_first_line(child *c, int ms, const _Atomic int *stop, char *err, size_t errlen);

/* The port a server's line gives: the number after its last ':', else after
 * "port ". Returns 0 when there is none. */
uint16_t child_line_port(const char *line);

/* Stops it: sig, then SIGKILL if it has not ended grace_ms later; reaps it.
 * Returns its wait status, or -1 if it had to be killed or was not running. */
int child_stop(child *c, int sig, int grace_ms);

/* Closes its stdout and stderr (after child_stop, and after whatever reads
 * the stderr pipe is done with it). */
void child_close(child *c);

#endif
