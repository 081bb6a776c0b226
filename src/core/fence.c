/*
 * fence.c: the state word between a loop thread and the supervisor.
 *
 * docs/supervisor.md ("State machine") has the picture and the reasons. In
 * short: the loop thread publishes where it is (library code, a user
 * callback, the kernel wait, outside vigil_loop_run) in its runner's state
 * word. The supervisor may turn CALLBACK into FENCED, and nothing else. The
 * thread changes the word only by compare-and-swap when leaving CALLBACK or
 * WAIT, so it cannot miss a fence: the failed swap is how it learns of one,
 * and from then on it touches nothing of the loop.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

_Thread_local vigil__runner *vigil__tls_runner;

/* The loop this thread was fenced from (its id: ids are never reused): any
 * call it makes on that loop afterwards is refused with -EOWNERDEAD. */
static _Thread_local uint32_t tls_fenced_from;

vigil__runner *vigil__runner_new(vigil_loop *loop) {
    vigil__runner *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    atomic_init(&r->state, VIGIL__AT_OUTSIDE);
    atomic_init(&r->refs, 1); /* the loop's */
    r->loop = loop;
    r->loop_id = loop->id;
    r->thread = pthread_self();
    r->tid = vigil__thread_id();
    pthread_mutex_init(&r->sched_lock, NULL);
    return r;
}

/* The supervisor, just after the fence: the fenced thread gets the least
 * CPU the OS gives, unless its callback returned already (then it has put
 * nothing back, and nothing is taken). */
int vigil__runner_yield_cpu(vigil__runner *r) {
    int rc = 0;
    pthread_mutex_lock(&r->sched_lock);
    if (atomic_load_explicit(&r->returned, memory_order_acquire))
        rc = -ESRCH;
    else if ((rc = vigil__thread_sched_lower(r->tid, &r->sched_saved)) == 0)
        r->sched_lowered = true;
    pthread_mutex_unlock(&r->sched_lock);
    return rc;
}

void vigil__runner_unref(vigil__runner *r) {
    if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&r->sched_lock);
        free(r);
    }
}

int vigil__runner_state(const vigil_loop *loop) {
    vigil__runner *r = atomic_load_explicit(&((vigil_loop *)loop)->sv.runner, memory_order_acquire);
    return r ? atomic_load_explicit(&r->state, memory_order_acquire) : VIGIL__AT_OUTSIDE;
}

_Noreturn void vigil__bail(vigil__runner *r) {
    tls_fenced_from = r->loop_id; /* the loop itself may be gone: never touched */
    pthread_mutex_lock(&r->sched_lock);
    atomic_store_explicit(&r->returned, 1, memory_order_release);
    if (r->sched_lowered) { /* the supervisor made this thread yield its CPU: back to what it was */
        r->sched_lowered = false;
        atomic_store_explicit(&r->sched_restore_rc, vigil__thread_sched_restore(&r->sched_saved),
                              memory_order_relaxed);
    }
    pthread_mutex_unlock(&r->sched_lock);
    longjmp(*r->bail, 1);
}

void vigil__cb_return(vigil__runner *r) {
    int s = VIGIL__AT_CALLBACK;
    if (!atomic_compare_exchange_strong_explicit(&r->state, &s, VIGIL__AT_LIBRARY,
                                                 memory_order_acq_rel, memory_order_acquire))
        vigil__bail(r); /* fenced while in the callback */
}

void vigil__wait_enter(vigil_loop *loop) {
    if (loop->cur_runner)
        atomic_store_explicit(&loop->cur_runner->state, VIGIL__AT_WAIT, memory_order_release);
}

void vigil__wait_leave(vigil_loop *loop) {
    vigil__runner *r = loop->cur_runner;
    int s = VIGIL__AT_WAIT;
    if (r && !atomic_compare_exchange_strong_explicit(&r->state, &s, VIGIL__AT_LIBRARY,
                                                      memory_order_acq_rel, memory_order_acquire) &&
        s == VIGIL__AT_FENCED)
        vigil__bail(r);
}

/* This thread's runner for loop, if it is inside that loop's vigil_loop_run. */
static vigil__runner *my_runner(const vigil_loop *loop) {
    for (vigil__runner *r = vigil__tls_runner; r; r = r->outer)
        if (r->loop == loop)
            return r;
    return NULL;
}

static void note_refused(vigil__runner *r, uint64_t conn_id) {
    uint32_t i = atomic_fetch_add_explicit(&r->refused_n, 1, memory_order_relaxed);
    if (conn_id && i < VIGIL__REFUSED_MAX)
        atomic_store_explicit(&r->refused[i], conn_id, memory_order_release);
}

/* The first thread that calls into a loop nobody owns takes it: attached
 * goes 0 -> 2 (taking it) -> 1 by compare-and-swap, so two threads calling at
 * once cannot both become the owner; the other waits the moment it takes. */
int vigil__take(vigil_loop *loop) {
    vigil__runner *r = vigil__runner_new(loop);
    if (!r)
        return -ENOMEM;
    atomic_store_explicit(&loop->sv.runner, r, memory_order_release);
    int rc = loop->rehome ? vigil__rehome(loop) : loop->be->attach(loop);
    if (rc < 0) {
        atomic_store_explicit(&loop->sv.runner, NULL, memory_order_release);
        vigil__runner_unref(r);
        atomic_store_explicit(&loop->sv.attached, 0, memory_order_release);
        return rc;
    }
    atomic_store_explicit(&loop->sv.attached, 1, memory_order_release);
    return 0;
}

int vigil__enter(vigil_loop *loop) {
    if (!loop)
        return -EINVAL;
    vigil__runner *mine = my_runner(loop);
    if (mine && atomic_load_explicit(&mine->state, memory_order_acquire) == VIGIL__AT_FENCED)
        return -EOWNERDEAD; /* touch nothing: the loop may be rebuilt or gone */
    if (tls_fenced_from && tls_fenced_from == loop->id)
        return -EOWNERDEAD; /* this thread was fenced off the loop */
    int attached = 0;
    if (atomic_compare_exchange_strong_explicit(&loop->sv.attached, &attached, 2, memory_order_acq_rel,
                                                memory_order_acquire))
        return vigil__take(loop);
    while (attached == 2) { /* another thread is taking it */
        sched_yield();
        attached = atomic_load_explicit(&loop->sv.attached, memory_order_acquire);
    }
    vigil__runner *owner = atomic_load_explicit(&loop->sv.runner, memory_order_acquire);
    if (owner && pthread_equal(owner->thread, pthread_self())) /* fenced, not yet taken over? */
        return atomic_load_explicit(&owner->state, memory_order_acquire) == VIGIL__AT_FENCED
                   ? -EOWNERDEAD : 0;
    return -EPERM;
}

int vigil__api_enter(vigil_loop *loop, uint64_t conn_id, vigil__api_scope *scope) {
    scope->restore = NULL;
    if (!loop)
        return -EINVAL;
    vigil__runner *mine = my_runner(loop);
    if (mine) {
        int s = VIGIL__AT_CALLBACK;
        if (atomic_compare_exchange_strong_explicit(&mine->state, &s, VIGIL__AT_LIBRARY,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            scope->restore = mine; /* a call from a callback: back to CALLBACK on return */
            return 0;
        }
        if (s == VIGIL__AT_FENCED) {
            note_refused(mine, conn_id);
            return -EOWNERDEAD;
        }
        return 0; /* already in library code (a call from library code) */
    }
    return vigil__enter(loop);
}

void vigil__api_leave(vigil__api_scope *scope) {
    if (!scope->restore)
        return;
    /* Only this thread moves LIBRARY: a plain store would do, the swap keeps
     * the rule "state changes by compare-and-swap" without exceptions. */
    int s = VIGIL__AT_LIBRARY;
    atomic_compare_exchange_strong_explicit(&scope->restore->state, &s, VIGIL__AT_CALLBACK,
                                            memory_order_acq_rel, memory_order_acquire);
}
