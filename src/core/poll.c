/*
 * poll.c: watching an fd the loop does not own for readiness (vigil.h, "fd
 * readiness"), the way libcurl, c-ares or libpq want their sockets driven.
 *
 * A watcher is an op of kind VIGIL__OP_POLL whose request is the backend's
 * readiness wait (a poll on io_uring, both epoll interests under one tag,
 * an AFD poll on IOCP). It is level-triggered: after each completion the
 * wait is issued again before the callback runs, and only then the program
 * is told, so that a callback the supervisor fences leaves the watcher armed
 * for the rebuild (which issues it again, as it does a receive). A change
 * of events while a wait is in flight cancels that wait; its completion
 * issues the new one. On Linux the watcher waits on a duplicate of the fd of
 * its own (os/platform.h): the program's fd number may be closed or reused
 * without vigil mistaking another file for it.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>

#define POLL_EVENTS (VIGIL_POLL_READABLE | VIGIL_POLL_WRITABLE)
_Static_assert(VIGIL_POLL_READABLE == VIGIL__POLL_IN && VIGIL_POLL_WRITABLE == VIGIL__POLL_OUT,
               "the public bits are the backend's");

/* Issues the wait for the events wanted now, unless one is in flight or
 * none is wanted (the watcher then sleeps until vigil_poll_update). */
static int poll_arm(vigil_loop *loop, vigil__op *op) {
    uint32_t ev = op->u.poll.events;
    if (!ev || (op->flags & VIGIL__OPF_KERNEL))
        return 0;
    op->u.poll.armed = (uint8_t)ev;
    return loop->be->poll(loop, op, op->u.poll.fd, ev);
}

int vigil_poll_start(vigil_loop *loop, vigil_socket fd, uint32_t events, vigil_poll_cb cb, void *ud,
                     vigil_op *out) {
    VIGIL__API(loop, 0);
    if (!cb || (events & ~POLL_EVENTS))
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil_socket w;
    bool owned;
    int rc = vigil__watch_fd(fd, &w, &owned);
    if (rc < 0)
        return rc;
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_POLL);
    if (!op) {
        if (owned)
            vigil__socket_close_now(w);
        return -ENOMEM;
    }
    op->cb = (void *)cb;
    op->ud = ud;
    op->u.poll.fd = w;
    op->u.poll.events = (uint8_t)events;
    op->u.poll.owned = owned;
    if ((rc = poll_arm(loop, op)) < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op); /* closes the duplicate */
        return rc;
    }
    loop->live_polls++;
    if (out)
        *out = vigil__op_handle(loop, op);
    return 0;
}

int vigil_poll_update(vigil_loop *loop, vigil_op h, uint32_t events) {
    VIGIL__API(loop, 0);
    if (events & ~POLL_EVENTS)
        return -EINVAL;
    vigil__op *op = vigil__op_from_handle(loop, h);
    if (!op || op->kind != VIGIL__OP_POLL ||
        (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_LATER | VIGIL__OPF_STOPPED)))
        return -EBADF;
    op->u.poll.events = (uint8_t)events;
    if (op->flags & VIGIL__OPF_KERNEL) {
        if (op->u.poll.armed != events)
            vigil__op_cancel_kernel(loop, op); /* its completion issues the new wait */
        return 0;
    }
    return poll_arm(loop, op);
}

static void poll_final(vigil_loop *loop, vigil__op *op, int status) {
    op->flags |= VIGIL__OPF_USER_DONE | VIGIL__OPF_STOPPED;
    loop->live_polls--;
    vigil_poll_cb cb = (vigil_poll_cb)op->cb;
    void *ud = op->ud;
    vigil_op h = vigil__op_handle(loop, op);
    if (!(op->flags & VIGIL__OPF_KERNEL))
        vigil__op_release(loop, op); /* else when its wait's completion comes */
    VIGIL__CALLBACK(loop, cb, (loop, h, status, ud));
}

static void poll_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    if (op->flags & VIGIL__OPF_USER_DONE) { /* destroy called it back already */
        vigil__op_release(loop, op);
        return;
    }
    if (op->flags & VIGIL__OPF_STOPPED) { /* cancelled: this was its wait ending */
        poll_final(loop, op, -ECANCELED);
        return;
    }
    int res = c->res;
    if (res < 0 && res != -EAGAIN && res != -ECANCELED && res != -EINTR) {
        poll_final(loop, op, res); /* the fd failed for good */
        return;
    }
    /* -EAGAIN: a rebuild issues it again; -ECANCELED: the events changed */
    uint32_t ready = res > 0 ? (uint32_t)res & op->u.poll.events : 0;
    int rc = poll_arm(loop, op);
    if (rc < 0) {
        poll_final(loop, op, rc);
        return;
    }
    if (ready)
        VIGIL__CALLBACK(loop, (vigil_poll_cb)op->cb, (loop, vigil__op_handle(loop, op), (int)ready, op->ud));
}

static int poll_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    if (op->flags & VIGIL__OPF_KERNEL)
        vigil__op_cancel_kernel(loop, op); /* its wait's completion ends it */
    else
        vigil__later(loop, op, -ECANCELED);
    return 0;
}

static void poll_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (op->flags & VIGIL__OPF_USER_DONE) {
        vigil__op_release(loop, op);
        return;
    }
    poll_final(loop, op, status);
}

static void poll_release(vigil_loop *loop, vigil__op *op) {
    if (op->u.poll.owned)
        vigil__socket_close_now(op->u.poll.fd);
}

/* Destroy: every watcher's final callback (-ECANCELED), its wait cancelled. */
void vigil__polls_destroy(vigil_loop *loop) {
    for (uint32_t slot = 0; slot < loop->ops.cap; slot++) {
        vigil__op *op = vigil__op_at(loop, slot);
        if (op->kind != VIGIL__OP_POLL || (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_LATER)))
            continue;
        if (op->flags & VIGIL__OPF_KERNEL)
            vigil__op_cancel_kernel(loop, op);
        poll_final(loop, op, -ECANCELED);
    }
}

/* a watcher: its wait goes on behind the gate and across rebuilds */
const vigil__op_class vigil__poll_class = {
    .name = "poll",
    .flags = VIGIL__CLASS_REARMS,
    .complete = poll_complete,
    .finish = poll_finish,
    .cancel = poll_cancel,
    .reissue = vigil__reissue_again,
    .release = poll_release,
};
