/*
 * owner.c: which thread runs a loop.
 *
 * A loop belongs to one thread at a time, its owner: the first thread that
 * calls into it, the next one after vigil_loop_handover, a thread of vigil's
 * that runs it (vigil_loop_start, vigil_serve), or the thread a rebuild
 * started (rebuild.c). Only the owner touches the loop's tables and backend;
 * a ring with SINGLE_ISSUER answers to it alone, so a loop that changes
 * hands gets a new backend on its new thread, made the way a rebuild makes
 * one (vigil__move_backend), minus the fence.
 *
 * A thread of vigil's that ran a loop to its end stays until the loop is
 * destroyed: vigil_loop_destroy from any other thread hands the destroy to
 * it (the handoff below), since only the owner may tear the backend down.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vigil__handoff { /* a destroy asked of the owner, a thread of vigil's */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    int rc;
} vigil__handoff;

/* ------------------------------------------------------------ hand-over */

int vigil_loop_handover(vigil_loop *loop) {
    if (!loop)
        return -EINVAL;
    if (atomic_load_explicit(&loop->sv.attached, memory_order_acquire) == 0)
        return 0; /* nobody has it yet: the next thread that calls takes it */
    int rc = vigil__enter(loop);
    if (rc < 0)
        return rc; /* only the owner lets it go */
    if (loop->running || loop->in_callback || loop->destroying)
        return -EBUSY;
    /* The supervisor may be looking at the runner right now: it stays
     * allocated until the loop is destroyed. */
    vigil__runner *r = atomic_exchange_explicit(&loop->sv.runner, NULL, memory_order_acq_rel);
    if (r) {
        r->retired_next = loop->retired;
        loop->retired = r;
    }
    loop->rehome = true;
    atomic_store_explicit(&loop->sv.attached, 0, memory_order_release);
    return 0;
}

/* On the thread that takes a handed-over loop: the old backend goes (its
 * thread runs none of the loop's code any more), a new one is made here. */
int vigil__rehome(vigil_loop *loop) {
    vigil__thread_signals_block(&loop->sig.mask); /* what the loop's watchers read */
    int rc = vigil__move_backend(loop, NULL);
    if (rc == 0)
        loop->rehome = false;
    return rc;
}

/* ------------------------------------------------- threads of vigil's */

void vigil__owned_by_vigil(vigil_loop *loop) {
    pthread_mutex_lock(&loop->owner_lock);
    loop->owned_by_vigil = true;
    loop->run_done = false;
    pthread_cond_broadcast(&loop->owner_cond);
    pthread_mutex_unlock(&loop->owner_lock);
}

/* A thread of vigil's running a loop blocks what the loop's signal watchers
 * read from their signalfd and what vigil_serve waits for, and nothing else
 * (the supervisor's signals must reach it). */
void vigil__loop_thread_signals(vigil_loop *loop) {
    vigil__sigset m;
    vigil__sigset_union(&m, &loop->sig.mask, &loop->serve_mask);
    vigil__thread_signals_mask(&m);
}

/* A loop run by a thread of vigil's ended its run: say so to vigil_loop_join,
 * then serve vigil_loop_destroy, which only this thread may do. A destroy
 * refused (-EBUSY: a fenced callback still runs) leaves the loop here, for a
 * later one. */
void vigil__owned_loop_ended(vigil_loop *loop, int run_rc) {
    pthread_mutex_lock(&loop->owner_lock);
    loop->run_done = true;
    loop->run_result = run_rc;
    pthread_cond_broadcast(&loop->owner_cond);
    for (;;) {
        while (!loop->handoff)
            pthread_cond_wait(&loop->owner_cond, &loop->owner_lock);
        vigil__handoff *h = loop->handoff;
        pthread_mutex_unlock(&loop->owner_lock);
        int rc = vigil_loop_destroy(loop); /* the loop's memory is gone after a 0 */
        if (rc != 0) {
            pthread_mutex_lock(&loop->owner_lock);
            loop->handoff = NULL;
            pthread_mutex_unlock(&loop->owner_lock);
        }
        pthread_mutex_lock(&h->mu);
        h->rc = rc;
        h->done = true;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->mu);
        if (rc == 0)
            return;
        pthread_mutex_lock(&loop->owner_lock);
    }
}

static void *started_main(void *arg) {
    vigil_loop *loop = arg;
    char name[16];
    snprintf(name, sizeof(name), "vigil-loop%u", loop->id);
    pthread_setname_np(pthread_self(), name); /* for top -H, gdb and /proc */
    vigil__loop_thread_signals(loop);
    int rc = vigil__take(loop); /* reserved for this thread by vigil_loop_start */
    if (rc == 0)
        rc = vigil__run(loop, VIGIL_RUN_DEFAULT, -1);
    if (rc == -EOWNERDEAD)
        return NULL; /* fenced: the thread of the rebuild has the loop */
    vigil__owned_loop_ended(loop, rc);
    return NULL;
}

int vigil_loop_start(vigil_loop *loop) {
    if (!loop)
        return -EINVAL;
    pthread_mutex_lock(&loop->owner_lock);
    bool ours = loop->owned_by_vigil; /* started already, or rebuilt: a thread of vigil's has it */
    pthread_mutex_unlock(&loop->owner_lock);
    if (ours)
        return -EBUSY;
    int rc = vigil_loop_handover(loop);
    if (rc < 0)
        return rc;
    /* Reserved for the thread below, which takes it: another thread that
     * calls meanwhile waits for that, then is refused (-EPERM). */
    int free_word = 0;
    if (!atomic_compare_exchange_strong_explicit(&loop->sv.attached, &free_word, 2, memory_order_acq_rel,
                                                 memory_order_acquire))
        return -EBUSY;
    vigil__owned_by_vigil(loop);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    rc = pthread_create(&t, &a, started_main, loop);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        pthread_mutex_lock(&loop->owner_lock);
        loop->owned_by_vigil = false;
        pthread_mutex_unlock(&loop->owner_lock);
        atomic_store_explicit(&loop->sv.attached, 0, memory_order_release);
        return -rc;
    }
    return 0;
}

/* Waits until the loop's run on a thread of vigil's has ended and, with
 * callbacks_too, until no fenced callback of it still runs. */
static int join(vigil_loop *loop, int timeout_ms, bool callbacks_too, int *result) {
    if (!loop)
        return -EINVAL;
    uint64_t until = timeout_ms < 0 ? UINT64_MAX : vigil__clock_ns() + (uint64_t)timeout_ms * 1000000ull;
    pthread_mutex_lock(&loop->owner_lock);
    int rc = 0;
    /* Running on a thread of vigil's, or fenced with the rebuild about to
     * start (a fenced thread calls this the moment it is let go), or ended
     * with a fenced callback still running somewhere (the fence list is read
     * only once the owner ended its run: it changes it no more until a
     * destroy, which no join may overlap). */
    while ((loop->owned_by_vigil && (!loop->run_done || (callbacks_too && vigil__fenced_callback_runs(loop)))) ||
           vigil__runner_state(loop) == VIGIL__AT_FENCED) {
        uint64_t now = vigil__clock_ns();
        if (now >= until) {
            rc = -ETIMEDOUT;
            break;
        }
        uint64_t left = until - now;
        if (left > 10000000ull)
            left = 10000000ull; /* the fenced state changes outside the lock: look again */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + left;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&loop->owner_cond, &loop->owner_lock, &ts);
    }
    if (result)
        *result = loop->owned_by_vigil ? loop->run_result : 0;
    pthread_mutex_unlock(&loop->owner_lock);
    return rc;
}

int vigil__join(vigil_loop *loop, int timeout_ms, int *result) { return join(loop, timeout_ms, true, result); }
int vigil_loop_join(vigil_loop *loop, int timeout_ms) { return join(loop, timeout_ms, true, NULL); }

/* vigil_loop_destroy from a thread that is not the owner of a loop run by a
 * thread of vigil's: that thread runs the destroy (its ring answers only to
 * it). */
int vigil__destroy_handoff(vigil_loop *loop) {
    vigil__handoff h = {.done = false};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cond, NULL);
    pthread_mutex_lock(&loop->owner_lock);
    while (!loop->owned_by_vigil && vigil__runner_state(loop) == VIGIL__AT_FENCED) {
        /* fenced a moment ago: the rebuild thread is about to be started */
        pthread_mutex_unlock(&loop->owner_lock);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&loop->owner_lock);
    }
    if (!loop->owned_by_vigil || loop->handoff) {
        pthread_mutex_unlock(&loop->owner_lock);
        pthread_mutex_destroy(&h.mu);
        pthread_cond_destroy(&h.cond);
        return loop->owned_by_vigil ? -EBUSY : -EPERM;
    }
    /* Stop it first: once the handoff is published its thread may destroy
     * the loop at any moment, and the loop must not be touched after that. */
    vigil_loop_stop(loop);
    loop->handoff = &h;
    pthread_cond_broadcast(&loop->owner_cond);
    pthread_mutex_unlock(&loop->owner_lock);
    pthread_mutex_lock(&h.mu);
    while (!h.done)
        pthread_cond_wait(&h.cond, &h.mu);
    pthread_mutex_unlock(&h.mu);
    pthread_mutex_destroy(&h.mu);
    pthread_cond_destroy(&h.cond);
    return h.rc;
}

/* ---------------------------------------------------------------- serve */

#define FENCED_WAIT_MS 250

/* Whether every loop's run has ended (fenced callbacks aside). */
static bool all_ended(vigil_loop *const *loops, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (join(loops[i], 0, false, NULL) < 0)
            return false;
    return true;
}

/* Each loop's run gets until `until` (and a moment for a stop to be seen);
 * then a fenced callback of it gets FENCED_WAIT_MS at most: one about to
 * return is let finish, one that hangs does not hold the exit up. */
static int wait_ended(vigil_loop *const *loops, size_t n, uint64_t until) {
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t now = vigil__clock_ns();
        int left = (now < until ? (int)((until - now) / 1000000ull) : 0) + 100;
        if (join(loops[i], left, false, NULL) < 0)
            rc = rc ? rc : -ETIMEDOUT;
        else if (join(loops[i], left < FENCED_WAIT_MS ? left : FENCED_WAIT_MS, true, NULL) < 0)
            rc = rc ? rc : -EDEADLK;
    }
    return rc;
}

int vigil_serve(vigil_loop *const *loops, size_t n, const vigil_serve_options *opts) {
    if (!loops || !n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!loops[i])
            return -EINVAL;
    vigil_serve_options o = {0};
    if (opts)
        o = *opts;
    if (!VIGIL__RESERVED_ZERO(o))
        return -EINVAL;
    if (!o.stop_ms)
        o.stop_ms = 2000;
    /* Stop requests are taken here, and blocked on the threads started
     * below (and on those of the rebuilds), so that none of them gets one. */
    vigil__stop_requests st;
    int rc = vigil__stop_requests_catch(&st);
    if (rc < 0)
        return rc;
    size_t started = 0;
    for (; started < n; started++) {
        vigil__sigset_add_stop_requests(&loops[started]->serve_mask);
        if ((rc = vigil_loop_start(loops[started])) < 0)
            break;
    }
    int sig = 0;
    if (rc == 0) {
        while (!(sig = vigil__stop_request_wait(&st, 50)))
            if (all_ended(loops, n)) { /* they ended by themselves: out of work, or stopped */
                rc = wait_ended(loops, n, vigil__clock_ns());
                vigil__stop_requests_release(&st);
                return rc;
            }
    }
    /* The end: a graceful one first if the program has one (on_stop posted
     * to each loop, which then ends when it runs out of work), until stop_ms
     * or a second request; then each loop is stopped where it is. */
    uint64_t until = vigil__clock_ns() + (uint64_t)o.stop_ms * 1000000ull;
    for (size_t i = 0; i < started; i++)
        if (!o.on_stop || vigil_loop_post(loops[i], o.on_stop, o.ud) < 0)
            vigil_loop_stop(loops[i]);
    while (rc == 0 && o.on_stop && vigil__clock_ns() < until && !all_ended(loops, started) &&
           !vigil__stop_request_wait(&st, 20))
        ;
    for (size_t i = 0; i < started; i++)
        vigil_loop_stop(loops[i]);
    int end = wait_ended(loops, started, until);
    vigil__stop_requests_release(&st);
    return rc < 0 ? rc : end < 0 ? end : sig;
}
