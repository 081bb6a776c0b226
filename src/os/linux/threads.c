/*
 * threads.c: the signal masks of vigil's threads on Linux, and a pool
 * worker's cancel fd (platform.h).
 */
#include "os/platform.h"

#include <errno.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

void vigil__sigset_empty(vigil__sigset *s) { sigemptyset(s); }

void vigil__sigset_add_stop_requests(vigil__sigset *s) {
    sigaddset(s, SIGINT);
    sigaddset(s, SIGTERM);
}

void vigil__sigset_union(vigil__sigset *out, const vigil__sigset *a, const vigil__sigset *b) { sigorset(out, a, b); }

void vigil__thread_signals_block(const vigil__sigset *s) { pthread_sigmask(SIG_BLOCK, s, NULL); }

void vigil__thread_signals_mask(const vigil__sigset *s) { pthread_sigmask(SIG_SETMASK, s, NULL); }

int vigil__thread_start_unsignalled(pthread_t *t, void *(*fn)(void *), void *arg) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

/* ------------------------------------------- a pool worker's cancel fd */

int vigil__cancel_fd_open(int *out) {
    *out = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return *out < 0 ? -errno : 0;
}

void vigil__cancel_fd_signal(int fd) {
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof(one));
}

void vigil__cancel_fd_drain(int fd) {
    uint64_t stale;
    while (read(fd, &stale, sizeof(stale)) > 0)
        ;
}

void vigil__cancel_fd_close(int fd) {
    if (fd >= 0)
        close(fd);
}
