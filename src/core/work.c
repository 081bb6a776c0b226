/*
 * work.c: the program's own blocking or CPU-heavy work, run on the loop's
 * pool with its completion back on the loop thread (vigil.h, "work").
 *
 * A work item is an op of kind VIGIL__OP_WORK that owns a pool job, as a
 * name lookup does (resolve.c), and is marked ENGINE: a rebuild leaves it on
 * the pool and its completion comes to the loop's new thread. Unlike a
 * lookup it is never answered early: the work runs on the program's memory
 * (ud), so its callback, after which the program may free that memory,
 * comes only once the work returned, or instead of it if it never started.
 */
#include "core/engine.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

typedef struct vigil__workjob {
    vigil__job job; /* first: the pool's part */
    vigil_work_fn fn;
    void *ud;
} vigil__workjob;

static int work_run(vigil__job *job, int cancel_fd) {
    (void)cancel_fd; /* the program's work: nothing of vigil's can interrupt it */
    vigil__workjob *j = (vigil__workjob *)job;
    return j->fn(j->ud);
}

int vigil_work_queue(vigil_loop *loop, vigil_work_fn fn, vigil_work_cb done, void *ud, vigil_op *out) {
    VIGIL__API(loop, 0);
    if (!fn || !done)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    int rc = vigil__pool_get(loop);
    if (rc < 0)
        return rc;
    vigil__workjob *j = calloc(1, sizeof(*j));
    vigil__op *op = j ? vigil__op_new(loop, VIGIL__OP_WORK) : NULL;
    if (!op) {
        free(j);
        return -ENOMEM;
    }
    j->fn = fn;
    j->ud = ud;
    j->job.run = work_run;
    j->job.detachable = false; /* it runs on the program's memory: waited for, never left */
    j->job.tag = vigil__op_tag(loop, op);
    op->cb = (void *)done;
    op->ud = ud;
    op->u.work.job = j;
    op->flags |= VIGIL__OPF_ENGINE;
    if ((rc = vigil__pool_submit(loop->pool, &j->job)) < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return rc; /* -EAGAIN: pool_queue items wait already */
    }
    vigil__engine_started(loop, op, 0, out);
    return 0;
}

static void work_final(vigil_loop *loop, vigil__op *op, int status) {
    op->flags |= VIGIL__OPF_USER_DONE;
    loop->engine_live--;
    vigil_work_cb cb = (vigil_work_cb)op->cb;
    void *ud = op->ud;
    vigil_op h = vigil__op_handle(loop, op);
    vigil__op_release(loop, op);
    VIGIL__CALLBACK(loop, cb, (loop, h, status, ud));
}

static void work_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    if (op->flags & VIGIL__OPF_USER_DONE) { /* destroy reported it */
        vigil__op_release(loop, op);
        return;
    }
    work_final(loop, op, c->res);
}

/* Only work that has not started can be cancelled: its callback then says
 * -ECANCELED (from the pool, as any completion). Work that runs is the
 * program's, on its memory: it ends when it returns. */
static int work_cancel(vigil_loop *loop, vigil__op *op) {
    if (!vigil__pool_cancel_queued(loop->pool, &op->u.work.job->job))
        return -EBUSY;
    op->flags |= VIGIL__OPF_STOPPED;
    return 0;
}

_Static_assert(offsetof(vigil__workjob, job) == 0, "the engine frees a job by its pool part");

/* on the loop's pool (OPF_ENGINE: a rebuild leaves it there); no deadline:
 * vigil_op_set_deadline refuses it, as it could not end the work */
const vigil__op_class vigil__work_class = {
    .name = "work",
    .complete = work_complete,
    .cancel = work_cancel,
    .release = vigil__engine_release,
    .job = vigil__engine_job,
};
