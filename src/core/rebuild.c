/*
 * rebuild.c: a fenced loop goes on, on a new thread and a new backend.
 *
 * docs/supervisor.md ("Fence and rebuild") has the reasons; kernel-facts.md
 * the kernel behaviour they rest on. The supervisor fences the stuck thread
 * (fence.c) and starts a thread here, which:
 *   1. takes the loop over (a new runner: every vigil call now belongs here);
 *   2. freezes the connection the stuck callback was handling: its events are
 *      held until that callback returns (it then moves over) or the grace
 *      period passes (it is then reset, with an explicit error to its owner);
 *   3. harvests what the fenced backend had received and not handled: the
 *      rest of the batch being dispatched, then the fenced ring's CQ; with
 *      DEFER_TASKRUN, and on epoll, nothing moves after the fence, so this is
 *      every byte;
 *   4. tears the fenced backend down (the ring then holds no socket
 *      references, so a close sends FIN again);
 *   5. creates the new backend with the buffers that are free, applies the
 *      harvest in order, and re-issues every op whose request died with the
 *      old backend, from the exact byte offset for sends;
 *   6. runs the loop until it is stopped, then waits for vigil_loop_destroy.
 * Connections are plain fds, so they simply go on; ops keep their slots and
 * generations, so every handle the application holds stays valid.
 */
#include "core/loop.h"
#include "os/backends.h"
#include "os/platform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A fenced thread whose callback has not been accounted for yet. */
typedef struct vigil__fence {
    struct vigil__fence *next;
    vigil__runner *runner; /* the fenced thread's; the loop's reference */
    uint64_t conn_id;      /* the connection its callback handled (frozen), or 0 */
    uint32_t lent_buf;     /* the receive buffer that callback had, or UINT32_MAX */
    uint64_t grace_due_ns;
    bool settled;          /* the connection moved over or was reset */
    bool late_seen;        /* came back after the grace period: its late calls handled */
} vigil__fence;

/* ------------------------------------------------- frozen connections */

static bool frozen(vigil_loop *loop, const vigil__op *op) {
    if (!loop->rb.fences) /* a frozen connection always has its fence on the list */
        return false;
    vigil__conn *c = op->conn ? vigil__conn_at(loop, op->conn) : NULL;
    return c && (c->flags & VIGIL__CF_FROZEN);
}

/* How many entries the held list and the carry may need at once: a
 * completion holding a receive buffer each (the pool bounds them), a final
 * completion or a re-issue answer and a finished-send marker per op, a
 * repair or break marker or two per connection, accepted connections up
 * to twice VIGIL__GATE_ACCEPTS_MAX (hold_op), and the rest of a batch. */
static uint64_t room_needed(const vigil_loop *loop, uint32_t more_ops, uint32_t more_conns) {
    return (uint64_t)loop->opts.buf_count + 2ull * (loop->ops.cap + more_ops) +
           2ull * (loop->conns.cap + more_conns) + 2ull * VIGIL__GATE_ACCEPTS_MAX + VIGIL__REFUSED_MAX + 512;
}

static int grow_to(vigil__cqe **a, uint32_t *cap, uint64_t want) {
    if (want <= *cap)
        return 0;
    if (want > UINT32_MAX / sizeof(vigil__cqe))
        return -ENOMEM;
    vigil__cqe *m = realloc(*a, (size_t)want * sizeof(**a));
    if (!m)
        return -ENOMEM;
    *a = m;
    *cap = (uint32_t)want;
    return 0;
}

int vigil__rebuild_reserve(vigil_loop *loop, uint32_t more_ops, uint32_t more_conns) {
    uint64_t want = room_needed(loop, more_ops, more_conns);
    if (grow_to(&loop->rb.held, &loop->rb.held_cap, want) < 0 ||
        grow_to(&loop->rb.carry, &loop->rb.carry_cap, want) < 0)
        return -ENOMEM;
    return 0;
}

/* Keeps a completion (or a marker) in loop memory, in order, until its
 * connection thaws or the gate opens; the room was reserved. False only for
 * an accepted descriptor beyond that room, which the caller closes. */
bool vigil__hold(vigil_loop *loop, const vigil__cqe *c) {
    if (loop->rb.held_n == loop->rb.held_cap)
        return false;
    loop->rb.held[loop->rb.held_n++] = *c;
    vigil__stat_add(&loop->sv.stats.events_held_total, 1);
    atomic_store_explicit(&loop->sv.stats.events_held, loop->rb.held_n, memory_order_relaxed);
    return true;
}

/* An op's completion held: a final one marks the op, whose end now waits
 * in loop memory (neither issued again nor freed). */
static void hold_op(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    bool new_fd = (vigil__class_of(op)->flags & VIGIL__CLASS_NEW_FD) && c->res >= 0;
    /* Accepts held (behind the gate, or for a listener whose callback is
     * stuck) stop at VIGIL__GATE_ACCEPTS_MAX: the accept is cancelled (its
     * -ECANCELED re-arms it once it is let through) and the next connections
     * wait in the backlog. The few already on their way when the cancel
     * lands have room up to twice that; past it one is refused (reset). */
    if (new_fd && loop->rb.held_accepts < 2 * VIGIL__GATE_ACCEPTS_MAX) {
        if (++loop->rb.held_accepts == VIGIL__GATE_ACCEPTS_MAX && (c->flags & VIGIL__CQE_MORE))
            vigil__op_cancel_kernel(loop, op);
    } else if (new_fd) {
        vigil__socket_close_now((vigil_socket)c->res);
        vigil__stat_add(&loop->sv.stats.accept_emfile, 1);
        if (c->flags & VIGIL__CQE_MORE)
            return;
        vigil__cqe e = *c;
        e.res = -ECONNABORTED; /* its end still reaches the accept, in order */
        op->flags |= VIGIL__OPF_CARRIED;
        vigil__hold(loop, &e);
        return;
    }
    if (!(c->flags & VIGIL__CQE_MORE))
        op->flags |= VIGIL__OPF_CARRIED;
    vigil__hold(loop, c);
}

/* A completion for a frozen connection waits in loop memory, in order. */
bool vigil__hold_if_frozen(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    if (!frozen(loop, op))
        return false;
    hold_op(loop, op, c);
    return true;
}

/* Moves held entries, in order, to the front of the carry: all of them
 * (slot1 0: the gate opens) or those of connection slot1 (it thawed). They
 * are older than anything the carry still holds (what a rebuild harvested
 * later, or what a fenced pass had not reached yet), and each leaves the
 * queue before its handler runs. Completions are marked HELD (checked and
 * accounted for already); markers stay what they are. */
static bool held_for(vigil_loop *loop, const vigil__cqe *e, uint32_t slot1) {
    if (!slot1)
        return true;
    if (e->flags & (VIGIL__CQE_REPAIR | VIGIL__CQE_BREAK))
        return false; /* a marker (held behind the gate): it names a connection, not an op */
    vigil__op *op = vigil__op_at(loop, (uint32_t)e->tag);
    return op && op->conn == slot1;
}

static void release_held(vigil_loop *loop, uint32_t slot1) {
    uint32_t moved = 0, keep = 0;
    for (uint32_t i = 0; i < loop->rb.held_n; i++)
        moved += held_for(loop, &loop->rb.held[i], slot1);
    if (!moved)
        return;
    /* The carry's rest moves up behind them, within its reserved room. */
    uint32_t rest = loop->rb.carry_n - loop->rb.carry_pos;
    memmove(loop->rb.carry + moved, loop->rb.carry + loop->rb.carry_pos, rest * sizeof(vigil__cqe));
    uint32_t n = 0;
    for (uint32_t i = 0; i < loop->rb.held_n; i++) {
        vigil__cqe e = loop->rb.held[i];
        if (!held_for(loop, &e, slot1)) {
            loop->rb.held[keep++] = e;
            continue;
        }
        if (!(e.flags & (VIGIL__CQE_REPAIR | VIGIL__CQE_BREAK | VIGIL__CQE_FINISH)))
            e.flags |= VIGIL__CQE_HELD;
        loop->rb.carry[n++] = e;
    }
    loop->rb.held_n = keep;
    if (!keep)
        loop->rb.held_accepts = 0;
    loop->rb.carry_pos = 0;
    loop->rb.carry_n = n + rest;
    atomic_store_explicit(&loop->sv.stats.events_held, loop->rb.held_n, memory_order_relaxed);
}

/* ------------------------------------------------------------ the gate */

/* While a fenced callback still runs on its old thread, no other callback of
 * the loop may run (docs/supervisor.md, "The contract"): the program's code
 * would run on two threads at once. The rebuilt thread keeps the kernel side
 * going meanwhile: the wake read, sends (they go on from the confirmed byte;
 * the messages they finish are reported when the gate opens), and receives
 * and accepts, whose completions wait here, in order, until then. Receives
 * stop by themselves when the buffer pool runs dry (the bytes wait in the
 * kernel); accepts are cancelled past VIGIL__GATE_ACCEPTS_MAX and re-armed later
 * (the connections wait in the backlog). Timers, deadlines, the later list,
 * posts and signals do not run at all while the gate is closed. */

/* A completion that only means "issue it again" (a rebuild re-issues a
 * receive or an accept that had moved nothing with -EAGAIN): its handler
 * re-arms it and calls nobody, so it runs behind the gate too, and the
 * kernel side goes on receiving and accepting. */
static bool only_rearms(vigil_loop *loop, const vigil__op *op, const vigil__cqe *c) {
    if (c->res != -EAGAIN || (c->flags & (VIGIL__CQE_BUF | VIGIL__CQE_MORE)) ||
        (op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT | VIGIL__OPF_USER_DONE)))
        return false;
    const vigil__conn *conn = op->conn ? vigil__conn_at(loop, op->conn) : NULL;
    if (!conn || (conn->flags & (VIGIL__CF_CLOSING | VIGIL__CF_FROZEN)))
        return false;
    return vigil__class_of(op)->flags & VIGIL__CLASS_REARMS;
}

bool vigil__gate_holds(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    const vigil__op_class *cls = vigil__class_of(op);
    if (!loop->rb.gated || (cls->flags & VIGIL__CLASS_INTERNAL) || only_rearms(loop, op, c))
        return false;
    if (cls->behind_gate && cls->behind_gate(loop, op, c))
        return true;
    hold_op(loop, op, c);
    return true;
}

/* The gate opens: everything held goes to the front of the carry, in the
 * order it arrived (it is older than anything the carry still holds). */
static void gate_open(vigil_loop *loop) {
    loop->rb.gated = false;
    atomic_store_explicit(&loop->sv.gate_released, loop->rb.held_n, memory_order_relaxed);
    atomic_store_explicit(&loop->sv.gated, 0, memory_order_relaxed);
    atomic_store_explicit(&loop->sv.stats.gated, 0, memory_order_relaxed);
    release_held(loop, 0);
}

static void gate_close(vigil_loop *loop) {
    loop->rb.gated = true;
    atomic_store_explicit(&loop->sv.gated, 1, memory_order_relaxed);
    atomic_store_explicit(&loop->sv.stats.gated, 1, memory_order_relaxed);
}

bool vigil__later_is_frozen(vigil_loop *loop, const vigil__op *op) { return frozen(loop, op); }

/* ------------------------------------------------------ the rebuild */

/* The carry: completions a rebuild takes over, applied by vigil_loop_run
 * before anything else (vigil__run_carry), so that no user callback runs
 * inside the rebuild itself and a fence in one of them is just another
 * fence. */
static void carry_push(vigil_loop *loop, vigil__cqe e) {
    if (loop->rb.carry_n == loop->rb.carry_cap && loop->rb.carry_pos) { /* what was applied goes */
        loop->rb.carry_n -= loop->rb.carry_pos;
        memmove(loop->rb.carry, loop->rb.carry + loop->rb.carry_pos, loop->rb.carry_n * sizeof(e));
        loop->rb.carry_pos = 0;
    }
    /* the room was reserved (vigil__rebuild_reserve): never full here */
    loop->rb.carry[loop->rb.carry_n++] = e;
}

/* Takes a completion of the fenced backend (or of the rest of its batch)
 * into the carry if it names a live op; a stale one is dropped here, and its
 * buffer is free again. Finals mark their op so it is not re-issued. */
static void carry_take(vigil_loop *loop, const vigil__cqe *e, uint8_t epoch) {
    if (e->tag == VIGIL__TAG_IGNORE)
        return;
    vigil__op *op = vigil__op_at(loop, (uint32_t)e->tag);
    uint32_t gen = (uint32_t)(e->tag >> 32) & VIGIL__TAG_GEN_MASK;
    if (!op || op->kind == VIGIL__OP_FREE || op->gen != gen || (uint8_t)(e->tag >> 56) != epoch ||
        !(op->flags & VIGIL__OPF_KERNEL) || (op->flags & VIGIL__OPF_CARRIED)) {
        vigil__stat_add(&loop->sv.stats.stale_completions, 1);
        if (e->flags & VIGIL__CQE_BUF)
            loop->buf_state[e->flags >> 16] = VIGIL__BUF_KERNEL; /* not received by anyone */
        return;
    }
    if (!(e->flags & VIGIL__CQE_MORE))
        op->flags |= VIGIL__OPF_CARRIED;
    if (e->flags & VIGIL__CQE_BUF) {
        loop->buf_state[e->flags >> 16] = VIGIL__BUF_CARRIED;
        if (e->res > 0)
            vigil__stat_add(&loop->sv.stats.bytes_carried, e->res);
    }
    carry_push(loop, *e);
}

/* The final completion of an op whose request died with the old backend, as
 * the new one would have posted it, queued behind what was carried. */
/* A rebuild answers an op whose request died with the fenced backend with
 * the completion res, queued on the carry (no user code runs here). */
void vigil__reissue_result(vigil_loop *loop, vigil__op *op, int res) {
    op->req_epoch = loop->epoch;
    op->flags |= VIGIL__OPF_CARRIED;
    carry_push(loop, (vigil__cqe){vigil__op_tag(loop, op), res, 0});
}

/* Receives, accepts, sends and readiness waits get the completion a kernel
 * gives when nothing moved (-EAGAIN): the core re-arms them, and a send goes
 * on from its confirmed offset. */
void vigil__reissue_again(vigil_loop *loop, vigil__op *op) { vigil__reissue_result(loop, op, -EAGAIN); }

/* Forgets the dead request of an op that is issued again by other means. */
void vigil__reissue_drop(vigil_loop *loop, vigil__op *op) {
    op->flags &= (uint16_t)~(VIGIL__OPF_KERNEL | VIGIL__OPF_CANCELING);
    vigil__stat_add(&loop->sv.stats.ops_in_flight, -1);
}

/* Re-issues an op whose request died with the fenced backend, as its class
 * says (a close is issued again, a connect judged by the socket: tcp.c).
 * The loop's own requests go (the new backend makes its own wake); ops being
 * cancelled, and kinds with nothing to issue again, get -ECANCELED. Nothing
 * here calls user code. */
static void reissue(vigil_loop *loop, vigil__op *op) {
    vigil__stat_add(&loop->sv.stats.ops_reissued, 1);
    const vigil__op_class *cls = vigil__class_of(op);
    if (cls->flags & VIGIL__CLASS_INTERNAL) {
        vigil__reissue_drop(loop, op);
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
    } else if ((op->flags & VIGIL__OPF_CANCELING) || !cls->reissue) {
        vigil__reissue_result(loop, op, -ECANCELED);
    } else {
        cls->reissue(loop, op);
    }
}

/* Steps 3 to 6 of a rebuild, on the thread that takes the loop over, while
 * the thread that had it runs none of its code (fenced, or it handed the loop
 * over): harvest what the old backend holds, tear it down, make a new one
 * (on target, if not NULL), and issue again every op whose request died with
 * the old one. */
int vigil__move_backend(vigil_loop *loop, const vigil__backend *target) {
    /* 3. Harvest, oldest first: what an earlier rebuild carried and the
     * fenced thread had not applied yet (still in the carry, and marked), the
     * rest of the batch being dispatched (the entry at batch_pos is the stuck
     * one: its handler ran), then what the fenced backend still holds. */
    uint8_t old_epoch = loop->epoch;
    const vigil__backend *old_be = loop->be;
    int rc = vigil__rebuild_reserve(loop, 0, 0); /* before anything moves */
    if (rc < 0)
        return rc;
    bool overflowed = loop->rb.debug_overflow; /* test hook: as if the CQ had overflowed */
    loop->rb.debug_overflow = false;
    if ((old_be->caps & VIGIL__CAP_HANDOVER) && (!target || target == old_be)) {
        /* 3-5 where the port cannot change (IOCP): the same state, a new epoch. */
        loop->epoch++;
        if ((rc = old_be->handover(loop)) < 0)
            return rc;
        goto reissue;
    }
    /* Buffers named by completions not applied yet hold received bytes: the
     * new backend must not get them (those of the carry, and those held for
     * frozen connections). */
    for (uint32_t i = loop->rb.carry_pos; i < loop->rb.carry_n; i++)
        if (loop->rb.carry[i].flags & VIGIL__CQE_BUF)
            loop->buf_state[loop->rb.carry[i].flags >> 16] = VIGIL__BUF_CARRIED;
    for (uint32_t i = 0; i < loop->rb.held_n; i++)
        if (loop->rb.held[i].flags & VIGIL__CQE_BUF)
            loop->buf_state[loop->rb.held[i].flags >> 16] = VIGIL__BUF_CARRIED;
    for (uint32_t i = loop->env.batch_pos + 1; i < loop->env.batch_len; i++)
        carry_take(loop, &loop->env.batch[i], old_epoch);
    loop->env.batch_len = loop->env.batch_pos = 0;
    vigil__cqe got[256];
    uint32_t n;
    while ((n = loop->be->harvest(loop->be_state, got, 256, &overflowed)) > 0)
        for (uint32_t i = 0; i < n; i++)
            carry_take(loop, &got[i], old_epoch);

    /* 4. The fenced backend goes: afterwards it holds no socket references. */
    loop->be->abandon(loop->be_state);
    loop->be_state = NULL;

    /* 5. The new backend, with the buffers that are free (info, which other
     * threads may read, changes under owner_lock). */
    loop->epoch++;
    if (target)
        loop->be = target;
    pthread_mutex_lock(&loop->owner_lock);
    memset(&loop->info, 0, sizeof(loop->info));
    loop->info.reason = loop->reason;
    loop->info.buf_size = loop->opts.buf_size;
    loop->info.buf_count = loop->opts.buf_count;
    rc = loop->be->init(loop);
    const vigil__backend *fallback = vigil__backend_fallback(); /* epoll on Linux; none on Windows */
    if (rc < 0 && fallback && !(loop->be->caps & VIGIL__CAP_FALLBACK)) { /* out of rings: epoll still serves */
        loop->be = fallback;
        rc = loop->be->init(loop);
    }
    if (rc == 0 && target && target != old_be)
        snprintf(loop->reason, sizeof(loop->reason), "rebuilt on %s: restart budget exhausted", target->name);
    vigil__publish_backend(loop);
    pthread_mutex_unlock(&loop->owner_lock);
    if (rc < 0)
        return rc; /* the supervisor escalates: nothing can run this loop */
    for (uint32_t i = 0; i < loop->opts.buf_count; i++)
        if (loop->buf_state[i] == VIGIL__BUF_CARRIED)
            loop->buf_state[i] = VIGIL__BUF_KERNEL; /* as the kernel left them: received */
reissue:
    if ((rc = loop->be->attach(loop)) < 0)
        return rc;
    atomic_store(&loop->sv.poll_fd, loop->be->poll_fd(loop));

    /* 6. Re-issue every op whose request died with the fenced backend. */
    for (uint32_t slot = 0; slot < loop->ops.cap; slot++) {
        vigil__op *op = vigil__op_at(loop, slot);
        if (op->kind != VIGIL__OP_FREE && (op->flags & VIGIL__OPF_KERNEL) &&
            !(op->flags & (VIGIL__OPF_CARRIED | VIGIL__OPF_ENGINE)) && op->req_epoch == old_epoch)
            reissue(loop, op);
    }
    /* A CQ that overflowed at the fence lost completions in the kernel that
     * only the fenced thread could have flushed: the streams that were
     * receiving cannot be trusted to be exact any more. Say so, loudly. */
    if (overflowed) {
        for (uint32_t s1 = 1; s1 <= loop->conns.cap; s1++) {
            vigil__conn *c = vigil__conn_at(loop, s1);
            if (c->kind == VIGIL__CONN_STREAM && c->recv_op) {
                c->flags |= VIGIL__CF_DISCARD;
                carry_push(loop, (vigil__cqe){vigil__conn_id(loop, c), -EIO, VIGIL__CQE_BREAK});
            }
        }
    }

    return 0;
}

int vigil__rebuild(vigil_loop *loop, const vigil__backend *target, uint32_t grace_ms) {
    uint64_t t0 = atomic_load_explicit(&loop->sv.fenced_ns, memory_order_relaxed);
    if (!t0)
        t0 = vigil__clock_ns(); /* rebuild time counts from the fence */
    vigil__runner *old = atomic_load_explicit(&loop->sv.runner, memory_order_acquire);
    vigil__runner *mine = vigil__runner_new(loop);
    vigil__fence *f = calloc(1, sizeof(*f));
    if (!mine || !f) {
        free(mine);
        free(f);
        return -ENOMEM;
    }

    /* 1. This thread owns the loop from now on. */
    f->runner = old; /* takes over the loop's reference */
    f->conn_id = atomic_load_explicit(&loop->sv.conn, memory_order_relaxed);
    f->lent_buf = UINT32_MAX;
    f->grace_due_ns = vigil__clock_ns() + (uint64_t)grace_ms * 1000000ull;
    atomic_store_explicit(&loop->sv.runner, mine, memory_order_release);
    loop->in_callback = 0;
    loop->running = 0;
    loop->cur_runner = NULL;
    if (loop->buf_current < loop->opts.buf_count && loop->buf_state[loop->buf_current] == VIGIL__BUF_USER) {
        f->lent_buf = loop->buf_current; /* the stuck callback may still read it */
        loop->buf_state[f->lent_buf] = VIGIL__BUF_LENT;
    }
    loop->buf_current = UINT32_MAX;

    /* 2. Freeze the connection whose callback is stuck. */
    vigil__conn *stuck = f->conn_id ? vigil__conn_from_id(loop, f->conn_id) : NULL;
    if (stuck)
        stuck->flags |= VIGIL__CF_FROZEN;
    else
        f->conn_id = 0;
    f->next = loop->rb.fences;
    loop->rb.fences = f;

    int rc = vigil__move_backend(loop, target);
    if (rc < 0)
        return rc; /* the supervisor escalates: nothing can run this loop */

    vigil__stat_add(&loop->sv.stats.rebuilds, 1);
    vigil__stat_add(&loop->sv.stats.conns_migrated, (int64_t)loop->live_conns);
    loop->rb.t0_ns = t0; /* the first pass that re-arms everything ends the rebuild */
    vigil__stamp(loop);
    return 0;
}

/* ------------------------------------- settling a fenced thread's callback */

/* Calls the stuck callback made after the fence were refused: the streams
 * they named may miss what the application meant to do. Never a silent gap:
 * they are reset with an explicit error. True if the stuck connection is
 * among them (or too many were refused to know which). */
static bool break_refused(vigil_loop *loop, vigil__fence *f) {
    uint32_t refused = atomic_load_explicit(&f->runner->refused_n, memory_order_acquire);
    vigil__stat_add(&loop->sv.stats.refused_calls, refused);
    bool stuck_too = refused > VIGIL__REFUSED_MAX;
    for (uint32_t i = 0; i < refused && i < VIGIL__REFUSED_MAX; i++) {
        uint64_t id = atomic_load_explicit(&f->runner->refused[i], memory_order_acquire);
        if (id && id == f->conn_id)
            stuck_too = true;
        else if (id && vigil__conn_from_id(loop, id))
            carry_push(loop, (vigil__cqe){id, -EOWNERDEAD, VIGIL__CQE_BREAK});
    }
    return stuck_too;
}

/* The fenced thread came back (returned) or the grace period passed. Nothing
 * here calls user code: what has to happen to the connections (their held
 * completions, then a repair or a break) is queued on the carry, which runs
 * next with the same rules as any completion, so a fence in one of those
 * callbacks leaves the rest for the next rebuild. */
static void settle(vigil_loop *loop, vigil__fence *f, bool returned) {
    f->settled = true;
    f->late_seen = returned; /* back in time: its refused calls are handled here */
    vigil__conn *c = f->conn_id ? vigil__conn_from_id(loop, f->conn_id) : NULL;
    bool break_stuck = !returned;
    if (returned) {
        break_stuck = break_refused(loop, f);
        if (f->lent_buf != UINT32_MAX && loop->buf_state[f->lent_buf] == VIGIL__BUF_LENT)
            vigil__buf_recycle(loop, f->lent_buf);
        f->lent_buf = UINT32_MAX;
        vigil__stat_add(&loop->sv.stats.stuck_returned, 1);
    } else {
        /* The grace period passed: the callback may never come back. Its
         * buffer stays lent (it may still read it); its connection is reset. */
        vigil__stat_add(&loop->sv.stats.stuck_reset, 1);
    }
    if (!c)
        return;
    uint32_t slot1 = vigil__conn_slot1(loop, c);
    c->flags &= (uint16_t)~VIGIL__CF_FROZEN;
    if (break_stuck) {
        c->flags |= VIGIL__CF_DISCARD; /* bytes that arrive from now on are dropped */
        if (loop->rb.gated) /* the peer learns now; the owner when the gate opens */
            vigil__tcp_reset_now(loop, c);
        carry_push(loop, (vigil__cqe){f->conn_id, -EOWNERDEAD, VIGIL__CQE_BREAK});
    }
    release_held(loop, slot1);
    vigil__unhold_later(loop, slot1);
    if (!break_stuck)
        carry_push(loop, (vigil__cqe){f->conn_id, 0, VIGIL__CQE_REPAIR});
}

/* Each pass: fenced threads that came back, or whose grace period passed;
 * the gate is closed while one of them still runs its callback. Returns true
 * while the loop must look again soon. */
bool vigil__fences_poll(vigil_loop *loop, uint64_t now) {
    bool pending = false, running = false;
    for (vigil__fence **pp = &loop->rb.fences; *pp;) {
        vigil__fence *f = *pp;
        bool returned = atomic_load_explicit(&f->runner->returned, memory_order_acquire);
        if (!f->settled && (returned || now >= f->grace_due_ns))
            settle(loop, f, returned);
        if (f->settled && returned && !f->late_seen) { /* came back after the grace period */
            f->late_seen = true;
            if (f->lent_buf != UINT32_MAX && loop->buf_state[f->lent_buf] == VIGIL__BUF_LENT)
                vigil__buf_recycle(loop, f->lent_buf);
            f->lent_buf = UINT32_MAX;
            break_refused(loop, f); /* its own connection is reset already */
        }
        if (f->settled && returned) {
            *pp = f->next;
            vigil__runner_unref(f->runner);
            free(f);
            continue;
        }
        pending |= !f->settled;
        running |= !returned;
        pp = &f->next;
    }
    bool gate = running && !(loop->opts.flags & VIGIL_LOOP_INDEPENDENT_CALLBACKS);
    if (gate && !loop->rb.gated)
        gate_close(loop);
    else if (!gate && loop->rb.gated)
        gate_open(loop);
    return pending || loop->rb.gated;
}

bool vigil__fenced_callback_runs(vigil_loop *loop) {
    for (vigil__fence *f = loop->rb.fences; f; f = f->next)
        if (!atomic_load_explicit(&f->runner->returned, memory_order_acquire))
            return true;
    return false;
}

void vigil__fences_free(vigil_loop *loop) {
    while (loop->rb.fences) {
        vigil__fence *f = loop->rb.fences;
        loop->rb.fences = f->next;
        vigil__runner_unref(f->runner); /* a thread still stuck keeps its own reference */
        free(f);
    }
}

/* ------------------------------------------------ the rebuilt loop's thread */

typedef struct rebuild_job {
    vigil_loop *loop;
    const vigil__backend *target;
    uint32_t grace_ms;
} rebuild_job;

static void *rebuilt_main(void *arg) {
    rebuild_job j = *(rebuild_job *)arg;
    free(arg);
    vigil_loop *loop = j.loop;
    char name[16];
    snprintf(name, sizeof(name), "vigil-loop%u", loop->id);
    pthread_setname_np(pthread_self(), name); /* for top -H, gdb and /proc */
    /* Made by the supervisor thread, which blocks every signal: this one
     * takes the supervisor's signals again (read by the rebuild only after
     * the fence, so the old thread no longer changes what it reads). */
    vigil__loop_thread_signals(loop);
    int rc = vigil__rebuild(loop, j.target, j.grace_ms);
    /* the loop is ours: the supervisor watches it again (or escalates) */
    atomic_store_explicit(&loop->sv.rebuilt, rc < 0 ? rc : 1, memory_order_release);
    if (rc < 0)
        return NULL;
    rc = vigil__run(loop, VIGIL_RUN_DEFAULT, -1);
    if (rc == -EOWNERDEAD)
        return NULL; /* fenced in turn: the next thread has the loop */
    vigil__owned_loop_ended(loop, rc);
    return NULL;
}

int vigil__rebuild_start(vigil_loop *loop, int backend, uint32_t grace_ms) {
    const vigil__backend *target = NULL, *fallback = vigil__backend_fallback();
    if (backend != VIGIL_BACKEND_AUTO && fallback && fallback->id == backend)
        target = fallback; /* the restart budget's VIGIL_BUDGET_EPOLL (Linux) */
    if (backend != VIGIL_BACKEND_AUTO && !target)
        return -ENOTSUP;
    rebuild_job *j = malloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (rebuild_job){loop, target, grace_ms};
    /* Before the thread exists: the fenced thread may call vigil_loop_join
     * the moment it leaves its callback. */
    vigil__owned_by_vigil(loop);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &a, rebuilt_main, j);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        free(j);
        return -rc;
    }
    return 0;
}

int vigil__debug_request_fence(vigil_loop *loop) {
    for (vigil__runner *r = vigil__tls_runner; r; r = r->outer)
        if (r->loop == loop) { /* only this thread: a request must not outlive its fence */
            atomic_store_explicit(&loop->sv.fence_request, r, memory_order_release);
            return 0;
        }
    return -EPERM;
}

int vigil__debug_overflow_at_fence(vigil_loop *loop) {
    int rc = vigil__enter(loop);
    if (rc < 0)
        return rc;
    loop->rb.debug_overflow = true;
    return 0;
}

int vigil__debug_library_spin(vigil_loop *loop, uint32_t ms) {
    int rc = vigil__enter(loop);
    if (rc < 0)
        return rc;
    loop->debug_library_spin_ms = ms;
    return 0;
}

int vigil__debug_fenced(vigil_loop *loop) {
    for (vigil__runner *r = vigil__tls_runner; r; r = r->outer)
        if (r->loop == loop)
            return atomic_load_explicit(&r->state, memory_order_acquire) == VIGIL__AT_FENCED;
    return 0;
}
