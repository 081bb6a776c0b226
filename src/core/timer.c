/*
 * timer.c: timers, and the heap that times every deadline (receive idle,
 * send, connect, close flush, file calls, lookups).
 *
 * The heap is a binary min-heap of op slots by (due time, start order), so
 * timers due at the same time fire in the order they were started. Its
 * capacity follows the op table's (an op is in it at most once): pushing a
 * deadline never allocates and so never fails. What a due op does is its
 * class's deadline (loop.h): a timer fires here; a connection's deadline
 * is tcp.c's.
 */
#include "core/loop.h"
#include "os/platform.h"

#include <errno.h>
#include <stdlib.h>

/* ------------------------------------------------------- timer heap */

static bool heap_less(vigil_loop *loop, uint32_t a, uint32_t b) {
    vigil__op *x = vigil__op_at(loop, a), *y = vigil__op_at(loop, b);
    return x->due_ns < y->due_ns || (x->due_ns == y->due_ns && x->seq < y->seq);
}

static void heap_set(vigil_loop *loop, uint32_t pos, uint32_t slot) {
    loop->tm.heap[pos] = slot;
    vigil__op_at(loop, slot)->heap = (int32_t)pos;
}

static void heap_up(vigil_loop *loop, uint32_t pos) {
    uint32_t slot = loop->tm.heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!heap_less(loop, slot, loop->tm.heap[parent]))
            break;
        heap_set(loop, pos, loop->tm.heap[parent]);
        pos = parent;
    }
    heap_set(loop, pos, slot);
}

static void heap_down(vigil_loop *loop, uint32_t pos) {
    uint32_t slot = loop->tm.heap[pos];
    for (;;) {
        uint32_t l = 2 * pos + 1, best = pos;
        uint32_t best_slot = slot;
        if (l < loop->tm.len && heap_less(loop, loop->tm.heap[l], best_slot))
            best = l, best_slot = loop->tm.heap[l];
        if (l + 1 < loop->tm.len && heap_less(loop, loop->tm.heap[l + 1], best_slot))
            best = l + 1, best_slot = loop->tm.heap[l + 1];
        if (best == pos)
            break;
        heap_set(loop, pos, best_slot);
        pos = best;
    }
    heap_set(loop, pos, slot);
}

/* Room for every op of the table: an op is in the heap at most once, so a
 * push never allocates (a deadline cannot be dropped for want of memory).
 * Called as the op table grows. */
int vigil__heap_reserve(vigil_loop *loop, uint32_t ops) {
    if (ops <= loop->tm.cap)
        return 0;
    uint32_t *h = realloc(loop->tm.heap, ops * sizeof(*h));
    if (!h)
        return -ENOMEM;
    loop->tm.heap = h;
    loop->tm.cap = ops;
    return 0;
}

void vigil__heap_push(vigil_loop *loop, vigil__op *op) {
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    op->seq = ++loop->tm.seq;
    loop->tm.heap[loop->tm.len++] = op->self;
    heap_up(loop, loop->tm.len - 1);
}

void vigil__heap_remove(vigil_loop *loop, vigil__op *op) {
    if (op->heap < 0)
        return;
    uint32_t pos = (uint32_t)op->heap;
    op->heap = -1;
    uint32_t last = loop->tm.heap[--loop->tm.len];
    if (pos == loop->tm.len)
        return;
    heap_set(loop, pos, last);
    heap_up(loop, pos);
    heap_down(loop, (uint32_t)vigil__op_at(loop, last)->heap);
}

/* ------------------------------------------------------------ timers */


int vigil_timer_start(vigil_loop *loop, uint64_t delay_ms, uint64_t repeat_ms,
                      vigil_timer_cb cb, void *ud, vigil_op *out) {
    VIGIL__API(loop, 0);
    if (!cb || delay_ms > UINT64_MAX / 2000000 || repeat_ms > UINT64_MAX / 2000000)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_TIMER);
    if (!op)
        return -ENOMEM;
    op->cb = (void *)cb;
    op->ud = ud;
    op->due_ns = vigil__clock_ns() + delay_ms * 1000000ull;
    op->u.timer.repeat_ns = repeat_ms * 1000000ull;
    vigil__heap_push(loop, op);
    loop->live_timers++;
    if (out)
        *out = vigil__op_handle(loop, op);
    return 0;
}

int vigil_timer_restart(vigil_loop *loop, vigil_op h, uint64_t delay_ms, uint64_t repeat_ms) {
    VIGIL__API(loop, 0);
    if (delay_ms > UINT64_MAX / 2000000 || repeat_ms > UINT64_MAX / 2000000)
        return -EINVAL;
    vigil__op *op = vigil__op_from_handle(loop, h);
    if (!op || op->kind != VIGIL__OP_TIMER ||
        (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_LATER | VIGIL__OPF_STOPPED)))
        return -EBADF; /* a one-shot timer that fired, or one being cancelled */
    vigil__heap_remove(loop, op);
    op->due_ns = vigil__clock_ns() + delay_ms * 1000000ull;
    op->u.timer.repeat_ns = repeat_ms * 1000000ull;
    vigil__heap_push(loop, op);
    return 0;
}

/* The final callback of a timer. The slot is freed first, so that nothing is
 * left to do after the callback (a fence in it leaves nothing half done). */
static void timer_finish(vigil_loop *loop, vigil__op *op, int status) {
    vigil__heap_remove(loop, op);
    op->flags |= VIGIL__OPF_USER_DONE;
    loop->live_timers--;
    vigil_timer_cb cb = (vigil_timer_cb)op->cb;
    void *ud = op->ud;
    vigil_op h = vigil__op_handle(loop, op);
    vigil__op_release(loop, op);
    VIGIL__CALLBACK(loop, cb, (loop, h, status, ud));
}


/* Timers and deadlines that came due, each handed to its op's class. */
void vigil__timers_run(vigil_loop *loop, uint64_t now) {
    if (loop->rb.gated)
        return; /* every timer and deadline ends in a callback: after the gate */
    /* Bound the work per pass: timers re-armed with a past due time must not
     * starve I/O. */
    uint32_t budget = loop->tm.len + 1;
    while (loop->tm.len && budget--) {
        vigil__op *op = vigil__op_at(loop, loop->tm.heap[0]);
        if (op->due_ns > now)
            break;
        vigil__heap_remove(loop, op);
        atomic_store_explicit(&loop->sv.op_kind, op->kind, memory_order_relaxed);
        atomic_store_explicit(&loop->sv.conn, 0, memory_order_relaxed);
        if (vigil__later_is_frozen(loop, op)) {
            op->due_ns = now + 10000000ull; /* its callback is stuck: not yet */
            vigil__heap_push(loop, op);
            continue;
        }
        const vigil__op_class *cls = vigil__class_of(op);
        uint64_t due = op->due_ns;
        op->due_ns = 0;
        if (cls->deadline)
            cls->deadline(loop, op, due, now);
    }
}

/* A timer came due: it fires, and goes again or ends. */
static void timer_due(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    if (!op->u.timer.repeat_ns) {
        timer_finish(loop, op, 0);
        return;
    }
    op->due_ns = due + op->u.timer.repeat_ns;
    if (op->due_ns <= now) /* we fell behind: do not fire a burst */
        op->due_ns = now + op->u.timer.repeat_ns;
    vigil__heap_push(loop, op);
    vigil_timer_cb cb = (vigil_timer_cb)op->cb;
    VIGIL__CALLBACK(loop, cb, (loop, vigil__op_handle(loop, op), 0, op->ud));
}

static int timer_cancel(vigil_loop *loop, vigil__op *op) {
    vigil__heap_remove(loop, op);
    op->flags |= VIGIL__OPF_STOPPED;
    vigil__later(loop, op, -ECANCELED);
    return 0;
}

/* Destroy: every timer's final callback, in deadline order. */
void vigil__timers_destroy(vigil_loop *loop) {
    for (;;) {
        vigil__op *next = NULL;
        for (uint32_t i = 0; i < loop->tm.len; i++) {
            vigil__op *op = vigil__op_at(loop, loop->tm.heap[i]);
            if (op->kind == VIGIL__OP_TIMER && (!next || heap_less(loop, op->self, next->self)))
                next = op;
        }
        if (!next)
            break;
        timer_finish(loop, next, -ECANCELED);
    }
}

/* never in the kernel: the heap is its only request */
const vigil__op_class vigil__timer_class = {
    .name = "timer",
    .finish = timer_finish,
    .cancel = timer_cancel,
    .deadline = timer_due,
};
