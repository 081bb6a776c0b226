/*
 * threads.c: the signal masks of vigil's threads on Windows (platform.h):
 * there are no signals to mask, so the set is empty and masking it changes
 * nothing. Apart from platform.c because these need pthreads, which
 * platform.c's own test (tests/win/platform_test.c) does not link.
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
