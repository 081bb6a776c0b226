/*
 * runner.h: the state machine a loop thread shares with the supervisor
 * (fence.c; docs/supervisor.md, "State machine"), and the wrappers around
 * user callbacks and public calls that move it.
 */
#ifndef VIGIL_CORE_RUNNER_H
#define VIGIL_CORE_RUNNER_H

#include "vigil.h"
#include "os/platform.h" /* vigil__sched_saved */

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The thread that runs a loop, as the supervisor sees it (docs/supervisor.md,
 * "State machine"). state is one word, changed only by compare-and-swap:
 * the loop thread moves it between LIBRARY, CALLBACK, WAIT and OUTSIDE; the
 * supervisor may only turn CALLBACK into FENCED. A fenced thread never
 * touches its loop again: it leaves through bail (a longjmp to its
 * vigil_loop_run) the moment it returns from the callback, and any vigil
 * call it makes first fails with -EOWNERDEAD. The runner is reference
 * counted so that a fenced thread that comes back late, after its loop was
 * rebuilt or destroyed, still finds it. */
#define VIGIL__AT_LIBRARY 0  /* in vigil's own code: holds the tables and the ring */
#define VIGIL__AT_CALLBACK 1 /* in user code called by the loop */
#define VIGIL__AT_WAIT 2     /* in the backend's kernel wait */
#define VIGIL__AT_OUTSIDE 3  /* not inside vigil_loop_run: nothing to watch */
#define VIGIL__AT_FENCED 4   /* cut off by the supervisor; the loop lives on elsewhere */

#define VIGIL__REFUSED_MAX 8
typedef struct vigil__runner {
    _Atomic int state;
    _Atomic int refs;       /* the loop's, and the thread's while inside vigil_loop_run */
    _Atomic int returned;   /* a fenced thread came back from its callback */
    _Atomic int acked;      /* a fenced thread ran the fence signal: its writes are visible */
    const vigil_loop *loop; /* identity only: a fenced thread never dereferences it */
    uint32_t loop_id;
    pthread_t thread;
    int tid;
    jmp_buf *bail;                 /* in this thread's vigil_loop_run frame */
    struct vigil__runner *outer;   /* an enclosing vigil_loop_run's runner on this thread */
    struct vigil__runner *retired_next; /* the loop's list of runners let go by a hand-over */
    /* A fenced thread's scheduling, lowered by the supervisor and put back
     * by the thread when its callback returns, under sched_lock (whichever
     * comes second sees what the first did). */
    pthread_mutex_t sched_lock;
    bool sched_lowered;
    vigil__sched_saved sched_saved;
    _Atomic int sched_restore_rc;  /* the put back's result: 0 or -errno */
    _Atomic uint32_t refused_n;    /* calls refused after the fence, and the connections */
    _Atomic uint64_t refused[VIGIL__REFUSED_MAX]; /* they named (0: none) */
} vigil__runner;

/* fence.c: the runner state machine */
void vigil__cb_return(vigil__runner *r);     /* CALLBACK -> LIBRARY, or leave if fenced */
_Noreturn void vigil__bail(vigil__runner *r); /* a fenced thread leaves for vigil_loop_run */
/* the supervisor, after a fence: the thread yields its CPU (0 or -errno;
 * -ESRCH when its callback had returned already) */
int vigil__runner_yield_cpu(vigil__runner *r);
void vigil__wait_enter(vigil_loop *loop);    /* LIBRARY -> WAIT before the kernel wait */
void vigil__wait_leave(vigil_loop *loop);    /* WAIT -> LIBRARY after it, or leave */
vigil__runner *vigil__runner_new(vigil_loop *loop);
void vigil__runner_unref(vigil__runner *r);
int vigil__runner_state(const vigil_loop *loop); /* any thread */

/* the innermost vigil_loop_run on this thread: its loop (for the backtrace
 * signal handler) and its runner */
extern _Thread_local vigil_loop *vigil__tls_loop;
extern _Thread_local vigil__runner *vigil__tls_runner;

/* The loop-thread check of internal entry points: attaches the loop to the
 * first thread that calls, then -EPERM for other threads, -EOWNERDEAD for a
 * thread the supervisor fenced. */
int vigil__enter(vigil_loop *loop);
/* The calling thread takes a loop whose attached word it moved 0 -> 2. */
int vigil__take(vigil_loop *loop);

/* The entry check of public calls that touch loop state, with its exit: a
 * call from inside a callback moves the thread to LIBRARY for the call (so
 * the supervisor never fences it half-way through a change) and back to
 * CALLBACK when the function returns, by a cleanup handler. A fenced thread
 * is refused with -EOWNERDEAD (conn_id: the connection the call names, or
 * 0), and its refused calls are remembered for the rebuild. */
typedef struct vigil__api_scope { vigil__runner *restore; } vigil__api_scope;
int vigil__api_enter(vigil_loop *loop, uint64_t conn_id, vigil__api_scope *scope);
void vigil__api_leave(vigil__api_scope *scope);
#define VIGIL__API_OR(loop, conn_id, fail)                                                  \
    vigil__api_scope api_scope_ __attribute__((cleanup(vigil__api_leave))) = {0};          \
    int api_rc_ = vigil__api_enter((loop), (conn_id), &api_scope_);                        \
    if (api_rc_ < 0)                                                                        \
        return fail
#define VIGIL__API(loop, conn_id) VIGIL__API_OR(loop, conn_id, api_rc_)

/* The other entry check: an option struct's reserved tail is zero, so that
 * what a later version puts there is never mistaken for a setting. */
static inline bool vigil__zero(const uint64_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}
#define VIGIL__RESERVED_ZERO(opts) vigil__zero((opts).reserved, sizeof((opts).reserved) / sizeof(uint64_t))

void vigil__run_later(vigil_loop *loop); /* the later list, now */

/* Calls user function fn with args. Outside vigil_loop_run (in destroy)
 * there is no runner and nothing to fence. The function is published for
 * the supervisor (a stall report names it). After the call only the local
 * runner pointer is used: if the supervisor fenced the thread meanwhile,
 * vigil__cb_return leaves at once, before anything of the loop is touched. */
#define VIGIL__CALLBACK(loop, fn, args)                                                     \
    do {                                                                                    \
        vigil__runner *cb_runner_ = (loop)->cur_runner;                                     \
        (loop)->in_callback++;                                                              \
        (loop)->callbacks++;                                                                \
        atomic_store_explicit(&(loop)->sv.cb, (void *)(fn), memory_order_relaxed);          \
        atomic_store_explicit(&(loop)->sv.cb_sp, (uintptr_t)__builtin_frame_address(0),     \
                              memory_order_relaxed);                                        \
        if (cb_runner_)                                                                     \
            atomic_store_explicit(&cb_runner_->state, VIGIL__AT_CALLBACK, memory_order_release); \
        (fn) args;                                                                          \
        if (cb_runner_)                                                                     \
            vigil__cb_return(cb_runner_);                                                   \
        (loop)->in_callback--;                                                              \
    } while (0)


#endif
