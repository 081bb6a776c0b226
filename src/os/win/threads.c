/*
 * threads.c: the signal masks of vigil's threads on Windows (platform.h):
 * there are no signals to mask, so the set is empty and masking it changes
 * nothing; and a pool worker's cancel fd, of which there is none. Apart
 * from platform.c because these need pthreads, which platform.c's own test
 * (tests/win/platform_test.c) does not link.
 */
#include "os/platform.h"

void vigil__sigset_empty(vigil__sigset *s) { s->none = 0; }
void vigil__sigset_add_stop_requests(vigil__sigset *s) { (void)s; /* a console control handler, not signals */ }
void vigil__sigset_union(vigil__sigset *out, const vigil__sigset *a, const vigil__sigset *b) {
    (void)a, (void)b;
    out->none = 0;
}
void vigil__thread_signals_block(const vigil__sigset *s) { (void)s; }
void vigil__thread_signals_mask(const vigil__sigset *s) { (void)s; }

int vigil__thread_start_unsignalled(pthread_t *t, void *(*fn)(void *), void *arg) {
    return -pthread_create(t, NULL, fn, arg);
}

/* A pool worker's cancel fd: none (no call of ours waits through one). */
int vigil__cancel_fd_open(int *out) {
    *out = -1;
    return 0;
}
void vigil__cancel_fd_signal(int fd) { (void)fd; }
void vigil__cancel_fd_drain(int fd) { (void)fd; }
void vigil__cancel_fd_close(int fd) { (void)fd; }
