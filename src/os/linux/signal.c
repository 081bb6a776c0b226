/*
 * signal.c: signals as loop events (vigil.h, "signals").
 *
 * Every watched signal is blocked on the loop thread and goes into one
 * signalfd per loop. A SIGREAD op waits for it to poll readable through
 * the backend (a one-shot poll on io_uring, EPOLLIN on epoll); the loop
 * thread then reads it without blocking and calls each watcher of each
 * signal read. What was read and not yet delivered stays in loop memory
 * (sig_q, sig_w_pos), so a fence in a watcher leaves the rest to the
 * rebuilt loop. A watcher is an op that is never in the kernel; it leaves
 * the watcher list only between deliveries, so the list never shifts under
 * a delivery in progress.
 */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

static bool watchable(int signo) {
    if (signo <= 0 || signo > SIGRTMAX)
        return false;
    switch (signo) {
    case SIGKILL: case SIGSTOP: /* cannot be blocked */
    case SIGSEGV: case SIGBUS: case SIGFPE: case SIGILL: case SIGTRAP: /* raised by the faulting thread itself */
        return false;
    default:
        return true;
    }
}

static vigil__op *watcher(vigil_loop *loop, uint32_t i) { return vigil__op_at(loop, loop->sig.watch[i] - 1); }

static uint32_t live_watchers(vigil_loop *loop) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < loop->sig.watch_n; i++)
        n += !(watcher(loop, i)->flags & VIGIL__OPF_STOPPED);
    return n;
}

/* Drops watchers that ended, unless a delivery is in progress. */
static void compact(vigil_loop *loop) {
    if (loop->sig.q_n)
        return;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < loop->sig.watch_n; i++) {
        vigil__op *w = watcher(loop, i);
        if ((w->flags & VIGIL__OPF_USER_DONE) && !(w->flags & VIGIL__OPF_LATER))
            vigil__op_release(loop, w);
        else
            loop->sig.watch[keep++] = loop->sig.watch[i];
    }
    loop->sig.watch_n = keep;
    if (!live_watchers(loop) && loop->sig.read) /* nothing to wait for: let the loop end */
        vigil__op_cancel_kernel(loop, vigil__op_at(loop, loop->sig.read - 1));
}

static int arm(vigil_loop *loop) {
    if (loop->sig.read)
        return 0;
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_SIGREAD);
    if (!op)
        return -ENOMEM;
    int rc = loop->be->poll(loop, op, loop->sig.fd, VIGIL__POLL_IN);
    if (rc < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return rc;
    }
    loop->sig.read = op->self + 1;
    return 0;
}

int vigil_signal_start(vigil_loop *loop, int signo, vigil_signal_cb cb, void *ud, vigil_op *out) {
    VIGIL__API(loop, 0);
    if (!cb || !watchable(signo))
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    if (loop->sig.watch_n == loop->sig.watch_cap) {
        uint32_t cap = loop->sig.watch_cap ? loop->sig.watch_cap * 2 : 8;
        uint32_t *m = realloc(loop->sig.watch, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        loop->sig.watch = m;
        loop->sig.watch_cap = cap;
    }
    /* Blocked first: one arriving before the signalfd sees it stays pending. */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    if (!sigismember(&loop->sig.mask, signo) || loop->sig.fd < 0) {
        sigset_t m = loop->sig.mask;
        sigaddset(&m, signo);
        int fd = signalfd(loop->sig.fd, &m, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0)
            return -errno;
        loop->sig.fd = fd;
        loop->sig.mask = m;
    }
    int rc = arm(loop);
    if (rc < 0)
        return rc;
    vigil__op *w = vigil__op_new(loop, VIGIL__OP_SIGNAL);
    if (!w)
        return -ENOMEM;
    w->cb = (void *)cb;
    w->ud = ud;
    w->u.signal.signo = signo;
    loop->sig.watch[loop->sig.watch_n++] = w->self + 1;
    if (out)
        *out = vigil__op_handle(loop, w);
    return 0;
}

static int signal_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    vigil__later(loop, op, -ECANCELED);
    return 0;
}

/* The final callback; the op stays in the list until compact() frees it. */
static void signal_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (op->flags & VIGIL__OPF_USER_DONE) { /* its end came twice (destroy): free it now */
        compact(loop);
        return;
    }
    op->flags |= VIGIL__OPF_USER_DONE | VIGIL__OPF_STOPPED;
    vigil_signal_cb cb = (vigil_signal_cb)op->cb;
    VIGIL__CALLBACK(loop, cb, (loop, vigil__op_handle(loop, op), status, op->ud));
    compact(loop);
}

void vigil__signals_run(vigil_loop *loop) {
    while (loop->sig.q_pos < loop->sig.q_n) {
        int signo = loop->sig.q[loop->sig.q_pos];
        while (loop->sig.w_pos < loop->sig.watch_n) {
            vigil__op *w = watcher(loop, loop->sig.w_pos++); /* moved on first: a fence resumes after it */
            if (w->u.signal.signo != signo || (w->flags & VIGIL__OPF_STOPPED))
                continue;
            atomic_store_explicit(&loop->sv.op_kind, VIGIL__OP_SIGNAL, memory_order_relaxed);
            atomic_store_explicit(&loop->sv.conn, 0, memory_order_relaxed);
            vigil_signal_cb cb = (vigil_signal_cb)w->cb;
            VIGIL__CALLBACK(loop, cb, (loop, vigil__op_handle(loop, w), signo, w->ud));
        }
        loop->sig.w_pos = 0;
        loop->sig.q_pos++;
    }
    loop->sig.q_pos = loop->sig.q_n = 0;
    compact(loop);
}

/* The wait on the signalfd failed for good: every watcher ends with the
 * error as its final status, none silently. */
static void end_all(vigil_loop *loop, vigil__op *op, int status) {
    loop->sig.read = 0;
    op->flags |= VIGIL__OPF_USER_DONE;
    vigil__op_release(loop, op);
    for (uint32_t i = 0; i < loop->sig.watch_n; i++) {
        vigil__op *w = watcher(loop, i);
        if (!(w->flags & VIGIL__OPF_STOPPED)) {
            w->flags |= VIGIL__OPF_STOPPED;
            vigil__later(loop, w, status);
        }
    }
}

/* The signalfd polled readable (or a rebuild re-issued the wait: -EAGAIN). */
static void signal_ready(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    bool again = c->res >= 0 || c->res == -EAGAIN || c->res == -EINTR;
    if (c->res == -ECANCELED || loop->destroying || !live_watchers(loop)) {
        loop->sig.read = 0;
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return;
    }
    if (!again) {
        end_all(loop, op, c->res);
        return;
    }
    int rc = loop->be->poll(loop, op, loop->sig.fd, VIGIL__POLL_IN); /* re-armed first: nothing is missed */
    if (loop->sig.q_n == 0) { /* else a delivery cut by a fence goes first; the rest waits */
        struct signalfd_siginfo si[32];
        ssize_t n = read(loop->sig.fd, si, sizeof(si));
        for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(si[0]); i++)
            loop->sig.q[loop->sig.q_n++] = (int32_t)si[i].ssi_signo;
    }
    vigil__signals_run(loop);
    if (rc < 0 && loop->sig.read)
        end_all(loop, op, rc);
}

void vigil__signals_destroy(vigil_loop *loop) {
    loop->sig.q_pos = loop->sig.q_n = 0;
    for (uint32_t i = 0; i < loop->sig.watch_n; i++) {
        vigil__op *w = watcher(loop, i);
        if (!(w->flags & VIGIL__OPF_USER_DONE))
            signal_finish(loop, w, -ECANCELED);
    }
    compact(loop);
    if (loop->sig.read)
        vigil__op_cancel_kernel(loop, vigil__op_at(loop, loop->sig.read - 1));
}

/* a watcher: never in the kernel; its final callback comes from the later list */
const vigil__op_class vigil__signal_class = {
    .name = "signal",
    .finish = signal_finish,
    .cancel = signal_cancel,
};

/* readiness of the loop's signalfd */
const vigil__op_class vigil__sigread_class = {
    .name = "sigread",
    .flags = VIGIL__CLASS_STANDING,
    .complete = signal_ready,
    .reissue = vigil__reissue_again,
};
