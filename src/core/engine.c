/*
 * engine.c: the ops that live outside the backend (engine.h), on every OS:
 * taking their completions each pass from the OS's file engine (the file
 * ring of io_uring loops on Linux) and from the worker pool, and ending
 * them all at destroy.
 */
#include "core/engine.h"
#include "os/platform.h"

#include <errno.h>
#include <stdlib.h>

#define FS_TAKE_PER_PASS 256 /* completions handled per pass: sockets get their turn */

int vigil__pool_get(vigil_loop *loop) {
    return loop->pool ? 0 : vigil__pool_new(&loop->pool, loop, loop->opts.pool_threads, loop->opts.pool_queue);
}

void vigil__fs_poll(vigil_loop *loop) {
    vigil__fs_os_poll(loop, FS_TAKE_PER_PASS);
    if (loop->pool) {
        vigil__job *j;
        for (int n = 0; n < FS_TAKE_PER_PASS && (j = vigil__pool_take(loop->pool)); n++) {
            vigil__cqe c = {j->tag, j->res, 0};
            vigil__dispatch_engine(loop, &c);
        }
    }
}

bool vigil__fs_ready(vigil_loop *loop) {
    return vigil__fs_os_ready(loop) || (loop->pool && vigil__pool_has_done(loop->pool));
}

void vigil__engine_started(vigil_loop *loop, vigil__op *op, uint32_t deadline_ms, vigil_op *out) {
    vigil__op_kernel_started(loop, op);
    loop->engine_live++;
    if (deadline_ms) {
        op->due_ns = vigil__clock_ns() + (uint64_t)deadline_ms * 1000000ull;
        vigil__heap_push(loop, op);
    }
    if (out)
        *out = vigil__op_handle(loop, op);
}

void vigil__engine_release(vigil_loop *loop, vigil__op *op) { free(op->u.engine.job); }

vigil__job *vigil__engine_job(vigil__op *op, bool forget) {
    vigil__job *j = op->u.engine.job;
    if (forget)
        op->u.engine.job = NULL;
    return j;
}

/* ---------------------------------------------------------- destroy */

/* Destroy gives up on pool workers still stuck in a call past the bound
 * (pool.h): each op whose job was abandoned loses its job pointer first,
 * so that releasing it frees nothing the worker still writes, then ends
 * through the usual dispatch with -ECANCELED (its one final completion).
 * Returns how many. */
static uint32_t abandon_stuck(vigil_loop *loop) {
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < loop->ops.cap; slot++) {
        vigil__op *op = vigil__op_at(loop, slot);
        const vigil__op_class *cls = vigil__class_of(op);
        bool in_engine = (op->flags & VIGIL__OPF_ENGINE) && (op->flags & VIGIL__OPF_KERNEL);
        vigil__job *j = in_engine && cls->job ? cls->job(op, false) : NULL;
        if (!j)
            continue;
        uint64_t tag = j->tag; /* j is the worker's once abandoned */
        if (!vigil__pool_abandon(loop->pool, j))
            continue;
        cls->job(op, true);
        vigil__cqe c = {tag, -ECANCELED, 0};
        vigil__dispatch_engine(loop, &c);
        n++;
    }
    return n;
}

/* Every op outside the backend gets its final callback; then the engines go.
 * Pool jobs still running VIGIL__POOL_ABANDON_MS after the cancels are
 * abandoned when they may be (not reads and writes, which may still fill
 * the caller's buffer); the rest are waited for. */
void vigil__fs_destroy(vigil_loop *loop) {
    if (!loop->fs_ring && !loop->pool)
        return;
    for (uint32_t slot = 0; slot < loop->ops.cap; slot++) {
        vigil__op *op = vigil__op_at(loop, slot);
        if (!(op->flags & VIGIL__OPF_ENGINE) || (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_STOPPED)))
            continue;
        vigil__class_of(op)->cancel(loop, op); /* file calls and lookups */
    }
    uint64_t abandon_ns = vigil__clock_ns() + (uint64_t)VIGIL__POOL_ABANDON_MS * 1000000ull;
    for (;;) {
        vigil__fs_poll(loop);
        vigil__run_later(loop);
        /* a lookup answered at its cancel still runs, and counts here */
        uint32_t busy = loop->pool ? vigil__pool_running(loop->pool) : 0;
        if (!loop->engine_live && !busy)
            break;
        if (busy && vigil__clock_ns() >= abandon_ns) {
            if (abandon_stuck(loop))
                continue;
            if (!loop->engine_live)
                break; /* what still runs cannot be abandoned: joined below */
        }
        if (vigil__fs_os_wait(loop, 10))
            continue;
        if (loop->pool)
            vigil__pool_wait_done(loop->pool, 10);
    }
    /* Workers are idle now, or abandoned (detached, never joined), or run
     * a read or write that could not be abandoned: joining waits for it. */
    if (loop->pool) {
        vigil__pool_stop(loop->pool);
        vigil__fs_poll(loop);
        vigil__pool_free(loop->pool);
    }
    loop->pool = NULL;
    vigil__fs_os_free(loop);
}
