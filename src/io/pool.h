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
 */
#ifndef VIGIL_IO_POOL_H
#define VIGIL_IO_POOL_H

#include "vigil.h"

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
    int state;        /* VIGIL__JOB_* */
    bool cancel;      /* asked to stop */
    /* Runs on a worker. A call that can wait for ever (a pipe, a socket)
     * waits through vigil__pool_wait_fd so a cancel can interrupt it. */
    int (*run)(vigil__job *job, int cancel_fd);
};
#define VIGIL__JOB_QUEUED 1
#define VIGIL__JOB_RUNNING 2
#define VIGIL__JOB_DONE 3

typedef struct vigil__pool vigil__pool;

int vigil__pool_new(vigil__pool **out, vigil_loop *loop, uint32_t threads, uint32_t queue);
/* Queues a job: 0, or -EAGAIN when the queue is full, -ENOMEM/-EAGAIN when
 * no worker could be started and none runs. */
int vigil__pool_submit(vigil__pool *p, vigil__job *j);
/* A queued job is done at once with -ECANCELED; a running one is asked to
 * stop (only waits through vigil__pool_wait_fd can be interrupted). */
void vigil__pool_cancel(vigil__pool *p, vigil__job *j);
/* The next finished job, or NULL; whether one waits. */
bool vigil__pool_has_done(vigil__pool *p);
vigil__job *vigil__pool_take(vigil__pool *p);
/* Waits up to timeout_ms until a job is finished (destroy). false when none is. */
bool vigil__pool_wait_done(vigil__pool *p, int timeout_ms);
/* Joins the workers once they finished what they run; nothing may be queued. */
void vigil__pool_stop(vigil__pool *p);
/* Frees it, after vigil__pool_stop and once every finished job was taken. */
void vigil__pool_free(vigil__pool *p);

/* For run functions: waits until fd is ready for events (POLLIN/POLLOUT):
 * 0, or -ECANCELED when the job was cancelled. */
int vigil__pool_wait_fd(int fd, short events, int cancel_fd);

#endif
