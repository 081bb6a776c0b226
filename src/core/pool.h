/*
 * pool.h: a small pool of threads that run blocking calls for one loop.
 *
 * The loop never waits for it: a job goes in with the tag of its op, a
 * worker runs it, and its result comes back as a completion that the loop
 * takes (vigil__pool_take) after the worker woke it through the loop's own
 * wake fd. The pool belongs to the loop, not to a backend, so a rebuild
 * leaves it alone: a job in flight when the loop is fenced completes on the
 * new thread. Workers start on demand up to the limit and keep every signal
 * blocked, so no application or supervisor signal lands on them.
 *
 * A worker stuck in a call nothing interrupts (a hung NFS or FUSE server,
 * a socket's lingering close) must not hold destroy for ever: a job marked
 * detachable can be abandoned (vigil__pool_abandon). From then on the job
 * block is its worker's, which drops the result and frees the block when
 * the call returns, touching neither the pool nor the loop; the pool
 * detaches the thread instead of joining it.
 */
#ifndef VIGIL_IO_POOL_H
#define VIGIL_IO_POOL_H

#include "vigil.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define VIGIL__POOL_THREADS_DEFAULT 4
#define VIGIL__POOL_THREADS_MAX 64
#define VIGIL__POOL_QUEUE_DEFAULT 1024

typedef struct vigil__job vigil__job;
struct vigil__job {
    vigil__job *next; /* queue or done list, under the pool lock */
    uint64_t tag;     /* the op's completion tag */
    int32_t res;
    int state;        /* VIGIL__JOB_*, under the pool lock */
    bool cancel;      /* asked to stop */
    /* Set by the submitter: run touches nothing but this block (no caller
     * buffer), so its worker may be abandoned with it. Not a read or write. */
    bool detachable;
    /* Who owns the block while run runs: RUNNING, then whichever of the
     * worker (RETURNED) or an abandon (ABANDONED) swaps it first. Atomic,
     * without the lock: an abandoned worker may not take the pool's lock. */
    _Atomic int hand;
    /* Runs on a worker. A call that can wait for ever (a pipe, a socket)
     * waits for cancel_fd too (os/linux/files.c), so a cancel can interrupt
     * it; cancel_fd is -1 where there is none (Windows). */
    int (*run)(vigil__job *job, int cancel_fd);
    /* An abandoned job's result, which nobody will take (an fd to close);
     * on its worker, before the block is freed. May be NULL. */
    void (*drop)(vigil__job *job, int res);
};
#define VIGIL__JOB_QUEUED 1
#define VIGIL__JOB_RUNNING 2
#define VIGIL__JOB_DONE 3
#define VIGIL__JOB_RETURNED 4  /* hand: run returned, the pool finishes it */
#define VIGIL__JOB_ABANDONED 5 /* hand: the worker frees it */

/* How long destroy waits for pool jobs that were cancelled but still run
 * before it abandons the detachable ones. */
#define VIGIL__POOL_ABANDON_MS 2000

typedef struct vigil__pool vigil__pool;

int vigil__pool_new(vigil__pool **out, vigil_loop *loop, uint32_t threads, uint32_t queue);
/* Queues a job: 0, or -EAGAIN when the queue is full, -ENOMEM/-EAGAIN when
 * no worker could be started and none runs. */
int vigil__pool_submit(vigil__pool *p, vigil__job *j);
/* A queued job is done at once with -ECANCELED; a running one is asked to
 * stop (only waits that include its cancel_fd can be interrupted). */
void vigil__pool_cancel(vigil__pool *p, vigil__job *j);
/* Only if j is still queued: done at once with -ECANCELED, true. */
bool vigil__pool_cancel_queued(vigil__pool *p, vigil__job *j);
/* The next finished job, or NULL; whether one waits. */
bool vigil__pool_has_done(vigil__pool *p);
vigil__job *vigil__pool_take(vigil__pool *p);
/* Waits up to timeout_ms until a job is finished (destroy). false when none is. */
bool vigil__pool_wait_done(vigil__pool *p, int timeout_ms);
/* Gives up on j if a worker runs it, it is detachable and run has not
 * returned: true, and j is no longer the caller's (it may be freed at any
 * time, do not read it); the caller completes its op (-ECANCELED). false:
 * j is queued, done, about to be done, or not detachable. */
bool vigil__pool_abandon(vigil__pool *p, vigil__job *j);
/* Jobs a worker runs now (abandoned ones not counted). */
uint32_t vigil__pool_running(vigil__pool *p);
/* Joins the workers once they finished what they run (abandoned ones are
 * detached); nothing may be queued. */
void vigil__pool_stop(vigil__pool *p);
/* Frees it, after vigil__pool_stop and once every finished job was taken. */
void vigil__pool_free(vigil__pool *p);

#endif
