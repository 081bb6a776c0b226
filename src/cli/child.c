/* child.c: see child.h. */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "opts.h"

static void set_slot(child *c, pid_t pid) {
    if (c->pid_slot)
        *c->pid_slot = pid;
}

/* The last line or so of what the child wrote on stderr (a file), for error messages. */
static void stderr_tail(const child *c, char *buf, size_t len) {
    buf[0] = '\0';
    if (c->err_fd < 0)
        return;
    off_t end = lseek(c->err_fd, 0, SEEK_END);
    if (end <= 0)
        return;
    off_t from = end > (off_t)len - 1 ? end - (off_t)len + 1 : 0;
    ssize_t n = pread(c->err_fd, buf, len - 1, from);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    char *nl = strrchr(buf, '\n'); /* the last line is the one that says why */
    if (nl)
        memmove(buf, nl + 1, strlen(nl + 1) + 1);
}

/* Waits up to ms for the child to exit; returns its wait status or -1. */
static int wait_ms(pid_t pid, int ms) {
    uint64_t deadline = now_ns() + (uint64_t)ms * NS_PER_MS;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return 0; /* not ours any more */
        if (now_ns() >= deadline)
            return -1;
        usleep(10000);
    }
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void exec_child(const char *path, char *const argv[], const child_opts *o, pid_t parent,
                       int out_fd, int err_fd) {
    /* a server outliving us would skew the next measurement on this machine */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* it died before the line above */
        _exit(127);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
        _exit(127);
    if (o->cpu >= 0 || o->ncpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (o->ncpus > 0)
            for (int i = 0; i < o->ncpus; i++)
                CPU_SET(o->cpus[i], &set);
        else
            CPU_SET(o->cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0) {
            dprintf(STDERR_FILENO, "sched_setaffinity(%d...): %s\n", o->ncpus > 0 ? o->cpus[0] : o->cpu,
                    strerror(errno));
            _exit(127);
        }
    }
    execv(path, argv);
    dprintf(STDERR_FILENO, "exec %s: %s\n", path, strerror(errno));
    _exit(127);
}

/* stdout's pipe in out[], stderr's pipe or file in err[] (err[1]: the child's end). */
static int make_fds(const child_opts *o, int out[2], int err[2]) {
    if (pipe2(out, O_CLOEXEC) != 0)
        return -errno;
    if (o->err_pipe && pipe2(err, O_CLOEXEC) == 0)
        return 0;
    if (!o->err_pipe) {
        FILE *tmp = tmpfile(); /* unlinked: gone with its last descriptor */
        if (tmp) {
            err[0] = fcntl(fileno(tmp), F_DUPFD_CLOEXEC, 0);
            fclose(tmp);
            if (err[0] >= 0) {
                err[1] = err[0];
                return 0;
            }
        }
    }
    int e = -errno;
    close(out[0]);
    close(out[1]);
    return e;
}

int child_spawn(child *c, const char *path, char *const argv[], const child_opts *o, char *err,
                size_t errlen) {
    int out[2], errfd[2];
    memset(c, 0, sizeof(*c));
    c->out_fd = c->err_fd = -1;
    c->path = path;
    c->pid_slot = o->pid_slot;
    int rc = make_fds(o, out, errfd);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start %s: %s", path, strerror(-rc));
        return rc;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        exec_child(path, argv, o, parent, out[1], errfd[1]);
    rc = pid < 0 ? -errno : 0;
    close(out[1]);
    if (o->err_pipe)
        close(errfd[1]);
    c->out_fd = out[0];
    c->err_fd = errfd[0];
    if (rc < 0) {
        snprintf(err, errlen, "fork: %s", strerror(-rc));
        return rc;
    }
    c->pid = pid;
    set_slot(c, pid);
    return 0;
}

/* Its stdout closed before a whole line came: it exited, or is about to. */
static void ended_early(child *c, char *err, size_t errlen) {
    char tail[200];
    const char *name = c->path;
    int st = wait_ms(c->pid, 1000);
    stderr_tail(c, tail, sizeof(tail)); /* nothing from a pipe: it cannot be read back */
    const char *sep = tail[0] ? ": " : "";
    if (st >= 0 && WIFEXITED(st))
        snprintf(err, errlen, "%s exited with status %d%s%s", name, WEXITSTATUS(st), sep, tail);
    else if (st >= 0 && WIFSIGNALED(st))
        snprintf(err, errlen, "%s killed by signal %d%s%s", name, WTERMSIG(st), sep, tail);
    else
        snprintf(err, errlen, "%s closed its stdout%s%s", name, sep, tail);
    if (st >= 0) { /* reaped */
        c->pid = 0;
        set_slot(c, 0);
    }
}

int child_first_line(child *c, int ms, const _Atomic int *stop, char *err, size_t errlen) {
    size_t got = 0;
    uint64_t deadline = now_ns() + (uint64_t)ms * NS_PER_MS;
    c->line[0] = '\0';
    while (!memchr(c->line, '\n', got)) {
        uint64_t now = now_ns();
        if (stop && atomic_load(stop)) {
            snprintf(err, errlen, "interrupted");
            return -1;
        }
        if (now >= deadline || got + 1 >= sizeof(c->line)) {
            snprintf(err, errlen, "%s printed no port within %d s", c->path, ms / 1000);
            return -1;
        }
        struct pollfd p = {.fd = c->out_fd, .events = POLLIN};
        int n = poll(&p, 1, (int)((deadline - now) / NS_PER_MS + 1));
        if (n <= 0) /* EINTR (a signal: see stop) or the deadline */
            continue;
        ssize_t r = read(c->out_fd, c->line + got, sizeof(c->line) - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ended_early(c, err, errlen);
            return -1;
        }
        got += (size_t)r;
        c->line[got] = '\0';
    }
    *strchr(c->line, '\n') = '\0';
    return 0;
}

uint16_t child_line_port(const char *line) {
    const char *at[2] = {strrchr(line, ':'), strstr(line, "port ")};
    for (int i = 0; i < 2; i++) {
        if (!at[i])
            continue;
        const char *p = at[i] + (i ? 5 : 1);
        char digits[8];
        size_t n = strspn(p, "0123456789");
        long long port;
        if (n && n < sizeof(digits)) {
            memcpy(digits, p, n);
            digits[n] = '\0';
            if (num_ll(digits, 1, 65535, &port) == NUM_OK)
                return (uint16_t)port;
        }
    }
    return 0;
}

int child_stop(child *c, int sig, int grace_ms) {
    int st = -1;
    if (c->pid > 0) {
        kill(c->pid, sig);
        st = wait_ms(c->pid, grace_ms);
        if (st == -1) {
            kill(c->pid, SIGKILL);
            while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        c->pid = 0;
        set_slot(c, 0);
    }
    return st;
}

void child_close(child *c) {
    if (c->out_fd >= 0)
        close(c->out_fd);
    if (c->err_fd >= 0)
        close(c->err_fd);
    c->out_fd = c->err_fd = -1;
}
