/*
 * loop.c: the loop core, independent of the backend: the op and connection
 * tables, timers and deadlines, the later list, cross-thread posts, the run
 * loop, destroy, and the receive-buffer pool.
 *
 * Ordering contract of one pass through the loop:
 *   1. expired timers and deadlines, in (due time, start order);
 *   2. the later list: final callbacks that need no kernel completion;
 *   3. posted callbacks, in post order;
 *   4. the sends the pass's callbacks queued start, all of a connection's
 *      in one vectored send (tcp.c);
 *   5. the backend waits (not at all if 1-3 left work; with a timer pending,
 *      until a standing kernel timer the backend keeps for its due time)
 *      and dispatches completions in the order the kernel posted them.
 */
#include "core/engine.h"
#include "core/loop.h"
#include "os/backends.h"
#include "os/files.h"
#include "os/platform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *vigil_version(void) { return VIGIL_VERSION_STRING; }

_Thread_local vigil_loop *vigil__tls_loop;
static atomic_uint next_loop_id = 1;

/* ------------------------------------------------------- op classes */

/* The loop's own requests: the cross-thread wake read, and no-ops (tests). */
static void wake_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    atomic_store_explicit(&loop->wake_pending, 0, memory_order_release);
    if (!loop->destroying) {
        loop->be->wake(loop, op); /* re-arm the wake read */
        return;
    }
    op->flags |= VIGIL__OPF_USER_DONE;
    vigil__op_release(loop, op);
}

static void nop_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    op->flags |= VIGIL__OPF_USER_DONE;
    vigil__op_release(loop, op);
}

const vigil__op_class vigil__wake_class = {
    .name = "wake",
    .flags = VIGIL__CLASS_INTERNAL | VIGIL__CLASS_STANDING,
    .complete = wake_complete,
};

const vigil__op_class vigil__nop_class = {
    .name = "nop",
    .flags = VIGIL__CLASS_INTERNAL,
    .complete = nop_complete,
};

static const vigil__op_class free_class = {.name = ""};

/* Every kind's class: the one place that knows which file does what. */
const vigil__op_class *const vigil__op_classes[VIGIL__OP_KINDS] = {
    [VIGIL__OP_FREE] = &free_class,
    [VIGIL__OP_TIMER] = &vigil__timer_class,
    [VIGIL__OP_ACCEPT] = &vigil__accept_class,
    [VIGIL__OP_RECV] = &vigil__recv_class,
    [VIGIL__OP_SEND] = &vigil__send_class,
    [VIGIL__OP_CONNECT] = &vigil__connect_class,
    [VIGIL__OP_CLOSE] = &vigil__close_class,
    [VIGIL__OP_WAKE] = &vigil__wake_class,
    [VIGIL__OP_NOP] = &vigil__nop_class,
    [VIGIL__OP_FS] = &vigil__fs_class,
    [VIGIL__OP_SIGNAL] = &vigil__signal_class,
    [VIGIL__OP_SIGREAD] = &vigil__sigread_class,
    [VIGIL__OP_RESOLVE] = &vigil__resolve_class,
    [VIGIL__OP_DIAL] = &vigil__dial_class,
    [VIGIL__OP_UDP_RECV] = &vigil__udp_recv_class,
    [VIGIL__OP_UDP_SEND] = &vigil__udp_send_class,
    [VIGIL__OP_UDP_WAIT] = &vigil__udp_wait_class,
    [VIGIL__OP_WORK] = &vigil__work_class,
    [VIGIL__OP_POLL] = &vigil__poll_class,
    [VIGIL__OP_FILL] = &vigil__fill_class,
};
/* a kind added to the enum without a class here leaves a hole, which
 * vigil_loop_create refuses; a class here without a kind does not compile */
_Static_assert(sizeof(vigil__op_classes) / sizeof(vigil__op_classes[0]) == VIGIL__OP_KINDS,
               "one class per op kind");

const char *vigil__op_kind_name(int kind) {
    if (kind == VIGIL__OP_KINDS)
        return "post"; /* the supervisor's name for a posted callback */
    return kind >= 0 && kind < VIGIL__OP_KINDS ? vigil__op_classes[kind]->name : "";
}

uint32_t vigil_loop_get_id(const vigil_loop *loop) { return loop ? loop->id : 0; }
uint64_t vigil_now_ns(void) { return vigil__clock_ns(); }

/* ------------------------------------------------------------ op table */

void *vigil__table_grow(vigil__table *t, size_t elem) {
    uint32_t chunk = t->cap >> VIGIL__CHUNK_SHIFT;
    void *c = chunk < VIGIL__MAX_CHUNKS ? calloc(VIGIL__CHUNK, elem) : NULL;
    if (c) {
        t->chunks[chunk] = c;
        t->cap += VIGIL__CHUNK;
    }
    return c;
}

void vigil__table_free(vigil__table *t) {
    for (uint32_t i = 0; i < (t->cap >> VIGIL__CHUNK_SHIFT); i++)
        free(t->chunks[i]);
    t->cap = 0;
}

static int grow_ops(vigil_loop *loop) {
    uint32_t base = loop->ops.cap;
    if (vigil__heap_reserve(loop, base + VIGIL__CHUNK) < 0) /* a deadline push never allocates */
        return -ENOMEM;
    if (loop->rb.held_cap && vigil__rebuild_reserve(loop, VIGIL__CHUNK, 0) < 0) /* nor a rebuild */
        return -ENOMEM;
    vigil__op *c = vigil__table_grow(&loop->ops, sizeof(*c));
    if (!c)
        return -ENOMEM;
    /* push in reverse so low slots are used first */
    for (uint32_t i = VIGIL__CHUNK; i-- > 0;) {
        c[i].self = base + i;
        c[i].heap = -1;
        c[i].next = loop->ops_free;
        loop->ops_free = base + i + 1;
    }
    return 0;
}

vigil__op *vigil__op_at(vigil_loop *loop, uint32_t slot) { return VIGIL__TABLE_AT(&loop->ops, vigil__op, slot); }

vigil__op *vigil__op_new(vigil_loop *loop, int kind) {
    if (!loop->ops_free && grow_ops(loop) < 0)
        return NULL;
    vigil__op *op = vigil__op_at(loop, loop->ops_free - 1);
    loop->ops_free = op->next;
    uint32_t gen = op->gen, self = op->self;
    memset(op, 0, sizeof(*op));
    op->gen = gen;
    op->self = self;
    op->heap = -1;
    op->kind = (uint8_t)kind;
    return op;
}

/* A handle (vigil_op, vigil_conn, ...): the slot + 1 in bits 0-23, the
 * slot's generation (low 24 bits) in 24-47, and the loop's handle tag in
 * 48-63, so that a handle given to another loop names nothing there. */
#define HANDLE_FIELD 0xFFFFFFu
_Static_assert(((uint64_t)VIGIL__MAX_CHUNKS << VIGIL__CHUNK_SHIFT) < HANDLE_FIELD, "a slot + 1 fits in 24 bits");

static uint64_t handle_make(const vigil_loop *loop, uint32_t gen, uint32_t slot1) {
    return ((uint64_t)loop->handle_tag << 48) | ((uint64_t)(gen & HANDLE_FIELD) << 24) | slot1;
}

/* The slot + 1 a handle names in this loop (0: none), and its generation. */
static uint32_t handle_slot1(const vigil_loop *loop, uint64_t id, uint32_t *gen) {
    *gen = (uint32_t)(id >> 24) & HANDLE_FIELD;
    return (uint16_t)(id >> 48) == loop->handle_tag ? (uint32_t)id & HANDLE_FIELD : 0;
}

vigil_op vigil__op_handle(vigil_loop *loop, vigil__op *op) {
    return (vigil_op){handle_make(loop, op->gen, op->self + 1)};
}

vigil__op *vigil__op_from_handle(vigil_loop *loop, vigil_op h) {
    uint32_t gen, slot1 = handle_slot1(loop, h.id, &gen);
    if (!slot1)
        return NULL;
    vigil__op *op = vigil__op_at(loop, slot1 - 1);
    if (!op || op->kind == VIGIL__OP_FREE || (op->gen & HANDLE_FIELD) != gen)
        return NULL;
    return op;
}

uint64_t vigil__op_tag(vigil_loop *loop, vigil__op *op) {
    return ((uint64_t)loop->epoch << 56) | ((uint64_t)(op->gen & VIGIL__TAG_GEN_MASK) << 32) | op->self;
}

void vigil__op_kernel_started(vigil_loop *loop, vigil__op *op) {
    op->req_epoch = loop->epoch; /* which ring holds its request (rebuild.c) */
    if (!(op->flags & VIGIL__OPF_KERNEL)) {
        op->flags |= VIGIL__OPF_KERNEL;
        vigil__stat_add(&loop->sv.stats.ops_in_flight, 1);
    }
}

/* What an op owns besides its slot. */
static void free_extra(vigil_loop *loop, vigil__op *op) {
    const vigil__op_class *cls = vigil__class_of(op);
    if (cls->release)
        cls->release(loop, op);
}

void vigil__op_release(vigil_loop *loop, vigil__op *op) {
    if (op->kind == VIGIL__OP_FREE ||
        (op->flags & (VIGIL__OPF_KERNEL | VIGIL__OPF_LATER | VIGIL__OPF_CARRIED)) ||
        !(op->flags & VIGIL__OPF_USER_DONE))
        return;
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    free_extra(loop, op);
    op->kind = VIGIL__OP_FREE;
    op->gen = (op->gen + 1) & VIGIL__TAG_GEN_MASK;
    op->next = loop->ops_free;
    loop->ops_free = op->self + 1;
}

/* ------------------------------------------------------------ queues */

uint32_t *vigil__op_link(vigil_loop *loop, uint32_t slot1) { return &vigil__op_at(loop, slot1 - 1)->next; }
uint32_t *vigil__conn_link(vigil_loop *loop, uint32_t slot1) { return &vigil__conn_at(loop, slot1)->next; }

void vigil__queue_push(vigil_loop *loop, vigil__queue *q, uint32_t slot1, vigil__link_fn link) {
    *link(loop, slot1) = 0;
    if (q->tail)
        *link(loop, q->tail) = slot1;
    else
        q->head = slot1;
    q->tail = slot1;
}

uint32_t vigil__queue_pop(vigil_loop *loop, vigil__queue *q, vigil__link_fn link) {
    uint32_t s1 = q->head;
    if (!s1)
        return 0;
    uint32_t *next = link(loop, s1);
    q->head = *next;
    if (!q->head)
        q->tail = 0;
    *next = 0;
    return s1;
}

/* Takes entry slot1 out of the middle of q; false if it is not there. */
bool vigil__queue_remove(vigil_loop *loop, vigil__queue *q, uint32_t slot1, vigil__link_fn link) {
    uint32_t prev = 0, cur = q->head;
    while (cur && cur != slot1) {
        prev = cur;
        cur = *link(loop, cur);
    }
    if (!cur)
        return false;
    uint32_t *next = link(loop, cur);
    if (prev)
        *link(loop, prev) = *next;
    else
        q->head = *next;
    if (q->tail == slot1)
        q->tail = prev;
    *next = 0;
    return true;
}

/* ------------------------------------------------------- the later list */

/* Queues op's final callback (status) for the next pass: callbacks never run
 * inside the API call that caused them. */
void vigil__later(vigil_loop *loop, vigil__op *op, int status) {
    if (op->flags & VIGIL__OPF_LATER)
        return;
    op->flags |= VIGIL__OPF_LATER;
    op->status = status;
    vigil__queue_push(loop, &loop->later, op->self + 1, vigil__op_link);
}

int vigil__op_cancel_kernel(vigil_loop *loop, vigil__op *op) {
    if (!(op->flags & VIGIL__OPF_KERNEL) || (op->flags & VIGIL__OPF_CANCELING))
        return 0;
    op->flags |= VIGIL__OPF_CANCELING;
    return loop->be->cancel(loop, op);
}

/* ------------------------------------------------- send copy memory */

#define SEND_CACHE_MIN_SHIFT 6
#define SEND_CACHE_MAX_SHIFT 16
#define SEND_CACHE_BYTES (8u << 20) /* at most this much kept for reuse */

static int send_class(size_t len) {
    int shift = SEND_CACHE_MIN_SHIFT;
    while (((size_t)1 << shift) < len)
        shift++;
    return shift;
}

void *vigil__send_alloc(vigil_loop *loop, size_t len) {
    if (len > ((size_t)1 << SEND_CACHE_MAX_SHIFT))
        return malloc(len);
    int shift = send_class(len);
    void **head = &loop->send_cache[shift - SEND_CACHE_MIN_SHIFT];
    if (*head) {
        void *p = *head;
        *head = *(void **)p;
        loop->send_cached -= (size_t)1 << shift;
        return p;
    }
    return malloc((size_t)1 << shift);
}

void vigil__send_free(vigil_loop *loop, void *p, size_t len) {
    if (!p)
        return;
    if (len > ((size_t)1 << SEND_CACHE_MAX_SHIFT)) {
        free(p);
        return;
    }
    int shift = send_class(len);
    if (loop->send_cached + ((size_t)1 << shift) > SEND_CACHE_BYTES) {
        free(p);
        return;
    }
    void **head = &loop->send_cache[shift - SEND_CACHE_MIN_SHIFT];
    *(void **)p = *head;
    *head = p;
    loop->send_cached += (size_t)1 << shift;
}

/* ---------------------------------------------------- connection table */

static int grow_conns(vigil_loop *loop) {
    uint32_t base = loop->conns.cap;
    if (loop->rb.held_cap && vigil__rebuild_reserve(loop, 0, VIGIL__CHUNK) < 0) /* rebuild.c */
        return -ENOMEM;
    vigil__conn *c = vigil__table_grow(&loop->conns, sizeof(*c));
    if (!c)
        return -ENOMEM;
    for (uint32_t i = VIGIL__CHUNK; i-- > 0;) {
        c[i].self = base + i;
        c[i].fd = -1;
        c[i].next = loop->conns_free;
        loop->conns_free = base + i + 1;
    }
    return 0;
}

/* by slot + 1: 0 names no connection */
vigil__conn *vigil__conn_at(vigil_loop *loop, uint32_t slot1) {
    return slot1 ? VIGIL__TABLE_AT(&loop->conns, vigil__conn, slot1 - 1) : NULL;
}

vigil__conn *vigil__conn_new(vigil_loop *loop, int kind, vigil_socket fd) {
    if (!loop->conns_free && grow_conns(loop) < 0)
        return NULL;
    vigil__conn *c = vigil__conn_at(loop, loop->conns_free);
    loop->conns_free = c->next;
    uint32_t gen = c->gen, self = c->self;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->self = self;
    c->kind = (uint8_t)kind;
    c->fd = fd;
    if (kind == VIGIL__CONN_LISTENER)
        loop->live_listeners++;
    else {
        loop->live_conns++;
        vigil__stat_add(&loop->sv.stats.connections, 1);
    }
    return c;
}

uint32_t vigil__conn_slot1(vigil_loop *loop, vigil__conn *c) {
    (void)loop;
    return c->self + 1;
}

uint64_t vigil__conn_id(vigil_loop *loop, vigil__conn *c) { return handle_make(loop, c->gen, c->self + 1); }

vigil__conn *vigil__conn_from_id(vigil_loop *loop, uint64_t id) {
    uint32_t gen, slot1 = handle_slot1(loop, id, &gen);
    vigil__conn *c = vigil__conn_at(loop, slot1);
    if (!c || c->kind == VIGIL__CONN_FREE || (c->gen & HANDLE_FIELD) != gen)
        return NULL;
    return c;
}

void vigil__conn_free(vigil_loop *loop, vigil__conn *c) {
    if (c->kind == VIGIL__CONN_LISTENER)
        loop->live_listeners--;
    else {
        loop->live_conns--;
        vigil__stat_add(&loop->sv.stats.connections, -1);
    }
    c->parked_head = c->parked_tail = 0;
    c->kind = VIGIL__CONN_FREE;
    c->fd = -1;
    c->gen++;
    c->next = loop->conns_free;
    loop->conns_free = c->self + 1;
}

int vigil_op_cancel(vigil_loop *loop, vigil_op h) {
    VIGIL__API(loop, 0);
    vigil__op *op = vigil__op_from_handle(loop, h);
    if (!op || (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_LATER | VIGIL__OPF_STOPPED)))
        return -EBADF;
    const vigil__op_class *cls = vigil__class_of(op);
    return cls->cancel ? cls->cancel(loop, op) : -EBADF; /* internal ops have no public handle */
}

int vigil_op_set_deadline(vigil_loop *loop, vigil_op h, uint32_t ms) {
    VIGIL__API(loop, 0);
    vigil__op *op = vigil__op_from_handle(loop, h);
    if (!op || (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_LATER | VIGIL__OPF_STOPPED)))
        return -EBADF;
    /* Only the engine's calls (files, lookups) end at a deadline as a
     * cancel would; the others' deadlines mean more (a send's aborts its
     * stream) and are given when they start. */
    if (!(op->flags & VIGIL__OPF_ENGINE) || !vigil__class_of(op)->deadline)
        return -EINVAL; /* work: a deadline could not end it */
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    op->due_ns = 0;
    if (ms) {
        op->due_ns = vigil__clock_ns() + (uint64_t)ms * 1000000ull;
        vigil__heap_push(loop, op);
    }
    return 0;
}

/* An op's final status reaches its class (an op with no final callback of
 * its own only has its slot to free). */
static void finish(vigil_loop *loop, vigil__op *op, int status) {
    const vigil__op_class *cls = vigil__class_of(op);
    if (cls->finish) {
        cls->finish(loop, op, status);
    } else {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
    }
}

static void run_later(vigil_loop *loop) {
    if (loop->rb.gated)
        return;
    /* Take the list as it is now (callbacks may append to the live one), but
     * keep it in loop memory: after a fence the rebuild runs the rest. */
    if (!loop->later_run) {
        loop->later_run = loop->later.head;
        loop->later = (vigil__queue){0};
    }
    while (loop->later_run) {
        vigil__op *op = vigil__op_at(loop, loop->later_run - 1);
        loop->later_run = op->next;
        op->next = 0;
        if (vigil__later_is_frozen(loop, op)) { /* its callback is stuck: keep it for later */
            vigil__queue_push(loop, &loop->rb.held_later, op->self + 1, vigil__op_link);
            continue;
        }
        op->flags &= (uint16_t)~VIGIL__OPF_LATER;
        finish(loop, op, op->status);
    }
}

void vigil__run_later(vigil_loop *loop) { run_later(loop); }

/* A frozen connection moved over: its held later-list entries run again. */
void vigil__unhold_later(vigil_loop *loop, uint32_t conn_slot1) {
    vigil__queue held = loop->rb.held_later;
    loop->rb.held_later = (vigil__queue){0};
    for (uint32_t s1; (s1 = vigil__queue_pop(loop, &held, vigil__op_link));) {
        vigil__op *op = vigil__op_at(loop, s1 - 1);
        if (op->conn == conn_slot1) {
            op->flags &= (uint16_t)~VIGIL__OPF_LATER;
            vigil__later(loop, op, op->status);
        } else {
            vigil__queue_push(loop, &loop->rb.held_later, s1, vigil__op_link);
        }
    }
}

/* ------------------------------------------------------ cross-thread */

int vigil_loop_post(vigil_loop *loop, vigil_post_cb fn, void *arg) {
    if (!loop || !fn)
        return -EINVAL;
    vigil__post *p = malloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->destroying && loop->running < 0) { /* gone past the last drain */
        pthread_mutex_unlock(&loop->post_lock);
        free(p);
        return -VIGIL_ESHUTDOWN;
    }
    if (loop->post_tail)
        loop->post_tail->next = p;
    else
        loop->post_head = p;
    loop->post_tail = p;
    atomic_store_explicit(&loop->sv.posts, 1, memory_order_relaxed);
    pthread_mutex_unlock(&loop->post_lock);
    return vigil_loop_wake(loop);
}

int vigil_loop_wake(vigil_loop *loop) {
    if (!loop)
        return -EINVAL;
    /* One wake in flight is enough: the loop clears the flag before it drains
     * posts, so a post after the clear wakes it again. */
    if (atomic_exchange_explicit(&loop->wake_pending, 1, memory_order_acq_rel))
        return 0;
    return vigil__wakefd_signal(loop->wake_fd);
}

int vigil_loop_stop(vigil_loop *loop) {
    if (!loop)
        return -EINVAL;
    atomic_store_explicit(&loop->stop_requested, 1, memory_order_release);
    return vigil_loop_wake(loop);
}

/* Runs the posts taken now, in order. They stay in loop memory (posts_run)
 * until each one's turn, and each is freed before its callback, so a fence
 * in one leaves the rest for the rebuilt loop and nothing to clean up. */
static bool run_posts(vigil_loop *loop, int status) {
    if (loop->rb.gated)
        return false;
    if (!loop->posts_run) {
        pthread_mutex_lock(&loop->post_lock);
        loop->posts_run = loop->post_head;
        loop->post_head = loop->post_tail = NULL;
        atomic_store_explicit(&loop->sv.posts, 0, memory_order_relaxed);
        pthread_mutex_unlock(&loop->post_lock);
    }
    bool any = loop->posts_run != NULL;
    if (any) {
        atomic_store_explicit(&loop->sv.op_kind, VIGIL__OP_KINDS, memory_order_relaxed);
        atomic_store_explicit(&loop->sv.conn, 0, memory_order_relaxed);
    }
    while (loop->posts_run) {
        vigil__post *p = loop->posts_run;
        loop->posts_run = p->next;
        vigil_post_cb fn = p->fn;
        void *arg = p->arg;
        free(p);
        VIGIL__CALLBACK(loop, fn, (loop, status, arg));
    }
    return any;
}

static bool posts_waiting(vigil_loop *loop) {
    pthread_mutex_lock(&loop->post_lock);
    bool any = loop->post_head != NULL;
    pthread_mutex_unlock(&loop->post_lock);
    return any;
}

/* ---------------------------------------------------------- dispatch */

void vigil__stamp(vigil_loop *loop) { vigil__stamp_at(loop, vigil__clock_ns()); }

void vigil__stamp_at(vigil_loop *loop, uint64_t now) {
    atomic_store_explicit(&loop->sv.stats.last_progress_ns, now, memory_order_relaxed);
}

int vigil_loop_mark_progress(vigil_loop *loop) {
    VIGIL__API(loop, 0);
    vigil__stamp(loop);
    return 0;
}

static void dispatch_op(vigil_loop *loop, vigil__op *op, const vigil__cqe *c);

/* The live op a completion names, or NULL: the completion is then stale,
 * counted, and its buffer, if it carries one, goes back to the pool.
 * any_epoch: carried or held by a rebuild (checked when it was taken).
 * in_kernel: the op must still wait for it (not yet accounted). */
static vigil__op *completion_op(vigil_loop *loop, const vigil__cqe *c, bool any_epoch, bool in_kernel) {
    vigil__op *op = vigil__op_at(loop, (uint32_t)c->tag);
    uint32_t gen = (uint32_t)(c->tag >> 32) & VIGIL__TAG_GEN_MASK;
    if (op && op->kind != VIGIL__OP_FREE && op->gen == gen &&
        (any_epoch || (uint8_t)(c->tag >> 56) == loop->epoch) &&
        (!in_kernel || (op->flags & VIGIL__OPF_KERNEL)))
        return op;
    vigil__stat_add(&loop->sv.stats.stale_completions, 1);
    if (c->flags & VIGIL__CQE_BUF) {
        loop->bufs_free--; /* the kernel had taken it, as a live op's would say (tcp.c) */
        vigil__buf_recycle(loop, c->flags >> 16);
    }
    return NULL;
}

bool vigil__slot_array_fit(void **arr, uint32_t *cap, uint32_t slot, size_t elem) {
    if (slot < *cap)
        return true;
    uint32_t n = *cap ? *cap : 1024;
    while (n <= slot)
        n *= 2;
    char *a = realloc(*arr, (size_t)n * elem);
    if (!a)
        return false;
    memset(a + (size_t)*cap * elem, 0, (size_t)(n - *cap) * elem);
    *arr = a;
    *cap = n;
    return true;
}

bool vigil__tag_live(vigil_loop *loop, uint64_t tag) {
    vigil__op *op = vigil__op_at(loop, (uint32_t)tag);
    return op && op->kind != VIGIL__OP_FREE && (op->flags & VIGIL__OPF_KERNEL) && vigil__op_tag(loop, op) == tag;
}

/* Tells the supervisor what is being handled (a stall report names it; a
 * rebuild freezes that connection), then hands the completion to its op,
 * unless the op's connection is frozen: then it waits in loop memory. */
static void handle(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    atomic_store_explicit(&loop->sv.op_kind, op->kind, memory_order_relaxed);
    atomic_store_explicit(&loop->sv.conn, op->conn ? vigil__conn_id(loop, vigil__conn_at(loop, op->conn)) : 0,
                          memory_order_relaxed);
    if (!vigil__gate_holds(loop, op, c) && !vigil__hold_if_frozen(loop, op, c))
        dispatch_op(loop, op, c);
}

/* A final completion ends the op's request. */
static void end_request(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    if (!(c->flags & VIGIL__CQE_MORE)) {
        op->flags &= (uint16_t)~(VIGIL__OPF_KERNEL | VIGIL__OPF_CANCELING | VIGIL__OPF_CARRIED);
        vigil__stat_add(&loop->sv.stats.ops_in_flight, -1);
    }
}

/* any_epoch: the loop's own engines outlive rebuilds, so their tags may
 * carry an older epoch; the backend's never do. */
static void dispatch_checked(vigil_loop *loop, const vigil__cqe *c, bool any_epoch) {
    vigil__stat_add(&loop->sv.stats.completions, 1);
    if (c->tag == VIGIL__TAG_IGNORE)
        return;
    vigil__op *op = completion_op(loop, c, any_epoch, true);
    if (!op)
        return;
    end_request(loop, op, c);
    handle(loop, op, c);
}

void vigil__dispatch(vigil_loop *loop, const vigil__cqe *c) { dispatch_checked(loop, c, false); }
void vigil__dispatch_engine(vigil_loop *loop, const vigil__cqe *c) { dispatch_checked(loop, c, true); }

/* What a rebuild queued besides completions: a frozen connection moved over
 * (repair) or could not be (break), or a send's final callback that waited
 * behind the gate (finish). Behind the gate (again) it waits in order. */
static void apply_marker(vigil_loop *loop, const vigil__cqe *c) {
    if (loop->rb.gated) {
        vigil__hold(loop, c);
        return;
    }
    if (c->flags & VIGIL__CQE_FINISH) {
        vigil__op *op = completion_op(loop, c, true, false);
        if (op) {
            op->flags &= (uint16_t)~VIGIL__OPF_CARRIED;
            finish(loop, op, c->res);
        }
        return;
    }
    vigil__conn *conn = vigil__conn_from_id(loop, c->tag);
    if (conn && (c->flags & VIGIL__CQE_BREAK))
        vigil__tcp_break(loop, conn, c->res);
    else if (conn)
        vigil__tcp_repair(loop, conn);
}

/* Completions a rebuild carried over (rebuild.c checked them when it took
 * them), applied before anything else, each leaving the queue before its
 * handler runs: a fence in a callback leaves the rest for the next rebuild. */
void vigil__run_carry(vigil_loop *loop) {
    while (loop->rb.carry_pos < loop->rb.carry_n) {
        vigil__cqe c = loop->rb.carry[loop->rb.carry_pos++];
        if (loop->rb.carry_pos == loop->rb.carry_n)
            loop->rb.carry_pos = loop->rb.carry_n = 0;
        if (c.flags & (VIGIL__CQE_HELD | VIGIL__CQE_REPAIR | VIGIL__CQE_BREAK | VIGIL__CQE_FINISH)) {
            vigil__dispatch_held(loop, &c); /* accounted for already, or a marker */
            continue;
        }
        vigil__stat_add(&loop->sv.stats.completions, 1);
        vigil__op *op = completion_op(loop, &c, true, true);
        if (!op)
            continue;
        end_request(loop, op, &c);
        handle(loop, op, &c);
    }
}

/* A held completion, once its connection is no longer frozen or the gate
 * opened: it was checked and accounted for when it arrived (only its CARRIED
 * mark is left). Markers (rebuild.c) go their own way. */
void vigil__dispatch_held(vigil_loop *loop, const vigil__cqe *c) {
    if (c->flags & (VIGIL__CQE_REPAIR | VIGIL__CQE_BREAK | VIGIL__CQE_FINISH)) {
        apply_marker(loop, c);
        return;
    }
    vigil__op *op = completion_op(loop, c, true, false);
    if (!op)
        return;
    vigil__cqe e = *c;
    e.flags &= ~(uint32_t)VIGIL__CQE_HELD;
    if (!(e.flags & VIGIL__CQE_MORE))
        op->flags &= (uint16_t)~VIGIL__OPF_CARRIED;
    handle(loop, op, &e); /* frozen again by a later fence: held again */
}

static void dispatch_op(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    const vigil__op_class *cls = vigil__class_of(op);
    if (cls->complete)
        cls->complete(loop, op, c);
    else
        vigil__stat_add(&loop->sv.stats.stale_completions, 1);
}

/* Test hook: queue a no-op whose tag names a slot generation that is gone. */
int vigil__debug_stale_completion(vigil_loop *loop) {
    VIGIL__API(loop, 0);
    vigil__op *op = vigil__op_new(loop, VIGIL__OP_NOP);
    if (!op)
        return -ENOMEM;
    uint64_t tag = vigil__op_tag(loop, op);
    op->flags |= VIGIL__OPF_USER_DONE;
    vigil__op_release(loop, op); /* generation moves on: tag is now stale */
    return loop->be->nop(loop, tag);
}

/* ------------------------------------------------------ buffer pool */

void vigil__buf_recycle(vigil_loop *loop, uint32_t id) {
    if (id >= loop->opts.buf_count)
        return;
    loop->buf_state[id] = VIGIL__BUF_KERNEL;
    loop->bufs_free++;
    loop->be->buf_recycle(loop, id);
    if (loop->buf_wait.head)
        vigil__tcp_buffers_freed(loop);
}

int vigil_buf_keep(vigil_loop *loop, const vigil_buf *buf) {
    VIGIL__API(loop, 0);
    if (!buf || buf->id >= loop->opts.buf_count || buf->id != loop->buf_current ||
        loop->buf_state[buf->id] != VIGIL__BUF_USER)
        return -EINVAL;
    loop->buf_state[buf->id] = VIGIL__BUF_KEPT;
    return 0;
}

int vigil_buf_release(vigil_loop *loop, const vigil_buf *kept) {
    VIGIL__API(loop, 0);
    if (!kept || kept->id >= loop->opts.buf_count || loop->buf_state[kept->id] != VIGIL__BUF_KEPT)
        return -EINVAL;
    vigil__buf_recycle(loop, kept->id);
    return 0;
}

/* Both off, or a batch of 2..4096 within 1 us..100 ms. */
static bool wait_batch_ok(uint32_t n, uint32_t us) {
    return !n == !us && n != 1 && n <= 4096 && us <= 100000;
}

int vigil_loop_set_wait_batch(vigil_loop *loop, uint32_t wait_batch, uint32_t wait_batch_us) {
    VIGIL__API(loop, 0);
    if (!wait_batch_ok(wait_batch, wait_batch_us))
        return -EINVAL;
    loop->opts.wait_batch = wait_batch; /* the backend reads them at each wait */
    loop->opts.wait_batch_us = wait_batch_us;
    return 0;
}

int vigil_loop_set_data(vigil_loop *loop, void *data) {
    if (!loop)
        return -EINVAL;
    atomic_store_explicit(&loop->user_data, data, memory_order_release);
    return 0;
}

void *vigil_loop_get_data(const vigil_loop *loop) {
    return loop ? atomic_load_explicit(&((vigil_loop *)loop)->user_data, memory_order_acquire) : NULL;
}

/* --------------------------------------------------------- lifecycle */

static uint32_t round_pow2(uint32_t v) {
    uint32_t p = 1;
    while (p < v && p < (1u << 15))
        p <<= 1;
    return p;
}

/* Test hook (debug.h): the backend every loop created from now on runs on. */
static _Atomic(const vigil__backend *) forced_backend;

int vigil__debug_force_backend(const vigil__backend *be) {
    atomic_store(&forced_backend, be);
    return 0;
}

static int init_forced(vigil_loop *loop, const vigil__backend *be) {
    loop->be = be;
    snprintf(loop->reason, sizeof(loop->reason), "forced by a test hook: %s", be->name);
    return be->init(loop);
}

int vigil_loop_create(vigil_loop **out, const vigil_loop_options *opts) {
    if (!out)
        return -EINVAL;
    *out = NULL;
    for (int k = 0; k < VIGIL__OP_KINDS; k++)
        if (!vigil__op_classes[k])
            return -ENOSYS; /* a kind without a class: a build defect */
    vigil_loop_options o = {0};
    if (opts)
        o = *opts;
    if ((o.backend != VIGIL_BACKEND_AUTO && o.backend != VIGIL_BACKEND_URING &&
         o.backend != VIGIL_BACKEND_EPOLL) ||
        !VIGIL__RESERVED_ZERO(o))
        return -EINVAL;
    if (o.buf_count && (o.buf_count & (o.buf_count - 1)))
        return -EINVAL; /* the kernel's buffer ring wants a power of two */
    if (o.flags & ~(VIGIL_LOOP_NO_MULTISHOT_ACCEPT | VIGIL_LOOP_NO_MULTISHOT_RECV |
                    VIGIL_LOOP_NO_DEFER_TASKRUN | VIGIL_LOOP_SUPERVISED |
                    VIGIL_LOOP_INDEPENDENT_CALLBACKS))
        return -EINVAL;
    if (o.buf_count > 32768 || o.ring_entries > 32768 || (o.buf_size && o.buf_size < 64) ||
        o.buf_size > (1u << 24))
        return -EINVAL;
    if (!o.ring_entries)
        o.ring_entries = 1024;
    o.ring_entries = round_pow2(o.ring_entries);
    if (!o.buf_size)
        o.buf_size = 16384;
    if (!o.buf_count)
        o.buf_count = 1024;
    if (o.pool_threads > VIGIL__POOL_THREADS_MAX || o.pool_queue > (1u << 20))
        return -EINVAL;
    if (!wait_batch_ok(o.wait_batch, o.wait_batch_us))
        return -EINVAL;
    if (!o.pool_threads)
        o.pool_threads = VIGIL__POOL_THREADS_DEFAULT;
    if (!o.pool_queue)
        o.pool_queue = VIGIL__POOL_QUEUE_DEFAULT;

    vigil_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return -ENOMEM;
    loop->opts = o;
    loop->id = atomic_fetch_add(&next_loop_id, 1);
    loop->sv.id = loop->id;
    loop->handle_tag = (uint16_t)((loop->id - 1) % 0xFFFFu + 1); /* never 0: a zeroed handle names nothing */
    atomic_store(&loop->sv.next_due_ns, UINT64_MAX);
    loop->buf_current = UINT32_MAX;
    loop->wake_fd = -1;
    loop->sig.fd = -1;
    vigil__sigset_empty(&loop->sig.mask);
    vigil__sigset_empty(&loop->serve_mask);
    pthread_mutex_init(&loop->post_lock, NULL);
    pthread_mutex_init(&loop->owner_lock, NULL);
    pthread_cond_init(&loop->owner_cond, NULL);

    int rc = vigil__wakefd_open(&loop->wake_fd);
    if (rc < 0)
        goto fail;
    rc = -ENOMEM;
    loop->buf_map_len = (size_t)o.buf_count * o.buf_size;
    loop->buf_base = vigil__mem_map(loop->buf_map_len);
    loop->buf_state = calloc(o.buf_count, 1);
    loop->buf_park = calloc(o.buf_count, sizeof(*loop->buf_park));
    if (!loop->buf_base || !loop->buf_state || !loop->buf_park)
        goto fail;
    loop->bufs_free = o.buf_count;
    loop->env = (vigil__be_env){.opts = &loop->opts, .buf_base = loop->buf_base, .buf_state = loop->buf_state,
                                .wake_fd = loop->wake_fd, .info = &loop->info, .info_lock = &loop->owner_lock,
                                .cq_overflows = &loop->sv.stats.cq_overflows};

    const vigil__backend *forced = atomic_load(&forced_backend);
    rc = forced ? init_forced(loop, forced) : vigil__backend_choose(loop); /* os/{linux,win}/backend.c */
    if (rc < 0)
        goto fail;
    atomic_store(&loop->sv.poll_fd, loop->be->poll_fd(loop));
    vigil__publish_backend(loop);
    loop->info.reason = loop->reason;
    loop->info.buf_size = o.buf_size;
    loop->info.buf_count = o.buf_count;
    atomic_store(&loop->sv.stats.last_progress_ns, vigil__clock_ns());
    *out = loop;
    return 0;
fail:
    vigil__mem_unmap(loop->buf_base, loop->buf_map_len);
    free(loop->buf_state);
    free(loop->buf_park);
    vigil__wakefd_close(loop->wake_fd);
    if (loop->sig.fd >= 0)
        close(loop->sig.fd);
    free(loop->sig.watch);
    pthread_mutex_destroy(&loop->post_lock);
    pthread_mutex_destroy(&loop->owner_lock);
    pthread_cond_destroy(&loop->owner_cond);
    free(loop);
    return rc;
}

/* Any thread: a rebuild rewrites info under owner_lock. */
/* Other threads see the backend through info (under owner_lock) and the
 * probe (atomics): both change here, at creation and at a rebuild. */
void vigil__publish_backend(vigil_loop *loop) {
    loop->info.backend = loop->be->name;
    atomic_store_explicit(&loop->sv.backend, loop->be->id, memory_order_relaxed);
    atomic_store_explicit(&loop->sv.features, loop->info.features, memory_order_relaxed);
}

vigil__probe *vigil__probe_of(vigil_loop *loop) { return &loop->sv; }

int vigil_loop_get_info(const vigil_loop *loop, vigil_loop_info *out) {
    if (!loop || !out)
        return -EINVAL;
    vigil_loop *l = (vigil_loop *)loop;
    pthread_mutex_lock(&l->owner_lock);
    *out = l->info;
    pthread_mutex_unlock(&l->owner_lock);
    return 0;
}

int vigil_loop_get_stats(const vigil_loop *loop, vigil_loop_stats *out) {
    if (!loop || !out)
        return -EINVAL;
    vigil_loop *l = (vigil_loop *)loop;
    memset(out, 0, sizeof(*out)); /* the reserved tail too */
#define LD(f) out->f = atomic_load_explicit(&l->sv.stats.f, memory_order_relaxed)
    LD(iterations);
    LD(completions);
    LD(ops_in_flight);
    LD(last_progress_ns);
    LD(stale_completions);
    LD(cq_overflows);
    LD(enobufs_rearms);
    LD(accept_emfile);
    LD(connections);
    LD(deadlines_expired);
    LD(deadline_shutdowns);
    LD(rebuilds);
    LD(conns_migrated);
    LD(bytes_carried);
    LD(ops_reissued);
    LD(stuck_returned);
    LD(stuck_reset);
    LD(refused_calls);
    LD(last_rebuild_us);
    LD(gated);
    LD(events_held);
    LD(events_held_total);
#undef LD
    return 0;
}

/* Work that keeps VIGIL_RUN_DEFAULT going. The wake read does not count. */
static bool has_work(vigil_loop *loop) {
    uint64_t inflight = atomic_load_explicit(&loop->sv.stats.ops_in_flight, memory_order_relaxed);
    return loop->live_conns || loop->live_listeners || loop->live_timers || loop->live_polls || loop->later.head ||
           loop->rb.carry_n || inflight > 1;
}

/* How long the wait may sleep: until the next timer or deadline, or until.
 * Behind the gate timers do not run, so only until counts. */
static int64_t wait_timeout_ns(vigil_loop *loop, uint64_t now, uint64_t until) {
    uint64_t due = until;
    if (loop->tm.len && !loop->rb.gated) {
        uint64_t t = vigil__op_at(loop, loop->tm.heap[0])->due_ns;
        if (t < due)
            due = t;
    }
    if (due == UINT64_MAX)
        return -1;
    return due > now ? (int64_t)(due - now) : 0;
}

/* Everything that is ready without waiting, in the order of one pass (the
 * top of this file): what a rebuild carried, due timers and deadlines, the
 * later list, posts, a signal delivery a fence cut short, and what the file
 * engine finished. Behind the gate most of it waits (rebuild.c). */
static void run_ready(vigil_loop *loop, uint64_t now) {
    vigil__run_carry(loop);
    vigil__timers_run(loop, now);
    run_later(loop);
    run_posts(loop, 0);
    if (loop->sig.q_n && !loop->rb.gated)
        vigil__signals_run(loop);
    vigil__fs_poll(loop);
    run_later(loop); /* what the file engine's callbacks finished */
}

/* The loop's passes on this thread. *fenced: the supervisor fenced this
 * thread, which left through bail (the loop goes on elsewhere). */
static int run_passes(vigil_loop *loop, vigil_run_mode mode, int timeout_ms, bool *fenced) {
    *fenced = false;
    int rc = vigil__enter(loop);
    if (rc < 0)
        return rc;
    if (loop->in_callback || loop->running)
        return -EBUSY;
    if (mode != VIGIL_RUN_DEFAULT && mode != VIGIL_RUN_ONCE && mode != VIGIL_RUN_NOWAIT)
        return -EINVAL;
    /* A fenced thread comes back here (vigil__bail) and leaves touching
     * nothing of the loop: only its runner, which it holds a reference to. */
    vigil__runner *r = atomic_load_explicit(&loop->sv.runner, memory_order_acquire);
    vigil_loop *outer = vigil__tls_loop;
    jmp_buf bail;
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    r->outer = vigil__tls_runner;
    r->bail = &bail;
    vigil__tls_runner = r;
    vigil__tls_loop = loop;
    if (setjmp(bail)) {
        vigil__tls_runner = r->outer;
        vigil__tls_loop = outer;
        vigil__runner_unref(r);
        *fenced = true;
        return -EOWNERDEAD;
    }
    loop->running = 1;
    loop->cur_runner = r;
    vigil__stamp(loop);
    atomic_store_explicit(&r->state, VIGIL__AT_LIBRARY, memory_order_release);
    uint64_t start = vigil__clock_ns();
    uint64_t until = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000ull;
    uint64_t ran_before = loop->callbacks; /* ONCE: has a callback run in this call yet? */
    rc = 0;
    /* The clock is read twice an iteration: before the wait (its timeout
     * and the progress stamp) and after it (the stamp, due timers, the
     * end); with one connection at full speed each read is about 1 % of
     * the loop's CPU. */
    uint64_t now = start;
    for (;;) {
        bool look_soon = loop->rb.fences && vigil__fences_poll(loop, now);
        run_ready(loop, now);
        if (atomic_exchange_explicit(&loop->stop_requested, 0, memory_order_acq_rel))
            break;
        if (mode == VIGIL_RUN_DEFAULT && !has_work(loop) && !posts_waiting(loop))
            break;
        vigil__fs_poll(loop); /* submits what callbacks asked for */
        vigil__tcp_pump_soon_run(loop); /* starts the sends they queued */
        vigil__file_maps_sweep(loop, now);
        /* Sleep only if nothing is ready, and in ONCE only until something ran. */
        bool ready = vigil__fs_ready(loop) ||
                     (!loop->rb.gated && (loop->later.head || posts_waiting(loop)));
        bool may_sleep = mode == VIGIL_RUN_DEFAULT || (mode == VIGIL_RUN_ONCE && loop->callbacks == ran_before);
        uint64_t before = vigil__clock_ns();
        int64_t t = may_sleep && !ready ? wait_timeout_ns(loop, before, until) : 0;
        if (look_soon && (t < 0 || t > 10000000))
            t = 10000000; /* a fenced thread may come back: look again soon */
        if (loop->debug_library_spin_ms) { /* test hook: stuck in library code */
            uint64_t spin_until = vigil__clock_ns() + loop->debug_library_spin_ms * 1000000ull;
            loop->debug_library_spin_ms = 0;
            while (vigil__clock_ns() < spin_until)
                ;
            before = vigil__clock_ns();
        }
        if (loop->rb.t0_ns) {
            /* A rebuild ends here: every op is issued again (the wait below
             * submits what is still queued). The supervisor reads the time. */
            atomic_store_explicit(&loop->sv.stats.last_rebuild_us,
                                  (vigil__clock_ns() - loop->rb.t0_ns) / 1000, memory_order_relaxed);
            loop->rb.t0_ns = 0;
            atomic_fetch_add_explicit(&loop->sv.rebuilds_timed, 1, memory_order_release);
        }
        /* Timers held behind the gate are not due work for the supervisor. */
        atomic_store_explicit(&loop->sv.next_due_ns,
                              loop->tm.len && !loop->rb.gated ? vigil__op_at(loop, loop->tm.heap[0])->due_ns
                                                             : UINT64_MAX,
                              memory_order_relaxed);
        vigil__stamp_at(loop, before);
        /* the backend marks its kernel wait (vigil__wait_enter/leave) */
        loop->env.wait_until_ns = t > 0 ? before + (uint64_t)t : 0;
        rc = loop->be->wait(loop, t);
        loop->env.wait_until_ns = 0;
        now = vigil__clock_ns();
        vigil__stat_add(&loop->sv.stats.iterations, 1);
        vigil__stamp_at(loop, now);
        if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN && rc != -EBUSY)
            break;
        rc = 0;
        if (mode != VIGIL_RUN_DEFAULT) {
            /* Whatever the wait brought is delivered in this call: the wake
             * of a post, a file call or a lookup, a signal. */
            if (loop->rb.fences)
                vigil__fences_poll(loop, now);
            run_ready(loop, now);
            break;
        }
        if (now >= until)
            break;
    }
    vigil__tcp_pump_soon_run(loop); /* what the last pass's callbacks queued */
    loop->running = 0;
    loop->cur_runner = NULL;
    atomic_store_explicit(&r->state, VIGIL__AT_OUTSIDE, memory_order_release);
    vigil__tls_runner = r->outer;
    vigil__tls_loop = outer;
    vigil__runner_unref(r);
    if (rc < 0)
        return rc;
    return has_work(loop) ? 1 : 0;
}

int vigil__run(vigil_loop *loop, vigil_run_mode mode, int timeout_ms) {
    bool fenced;
    return run_passes(loop, mode, timeout_ms, &fenced);
}

int vigil_loop_run(vigil_loop *loop, vigil_run_mode mode, int timeout_ms) {
    uint64_t start = vigil__clock_ns();
    bool fenced;
    int rc = run_passes(loop, mode, timeout_ms, &fenced);
    if (!fenced || mode != VIGIL_RUN_DEFAULT)
        return rc;
    /* This thread was fenced in a callback, and the loop went on on a thread
     * of vigil's. VIGIL_RUN_DEFAULT runs the loop until it ends, wherever it
     * runs: wait for that, so that a plain run-then-destroy main() keeps the
     * rescue. */
    int left = -1;
    if (timeout_ms >= 0) {
        uint64_t spent = (vigil__clock_ns() - start) / 1000000ull;
        left = spent >= (uint64_t)timeout_ms ? 0 : timeout_ms - (int)spent;
    }
    int result;
    if (vigil__join(loop, left, &result) < 0)
        return -EOWNERDEAD; /* still running there: vigil_loop_join waits for it */
    return result;
}

int vigil_loop_destroy(vigil_loop *loop) {
    if (!loop)
        return -EINVAL;
    int rc = vigil__enter(loop);
    bool in_my_run = false;
    for (vigil__runner *r = vigil__tls_runner; r; r = r->outer)
        in_my_run |= r->loop == loop;
    if (rc == -EPERM || (rc == -EOWNERDEAD && !in_my_run))
        return vigil__destroy_handoff(loop); /* -EPERM unless the loop was rebuilt */ /* a rebuilt loop: its own thread destroys it */
    if (rc < 0)
        return rc;
    if (loop->in_callback || loop->running)
        return -EBUSY;
    /* A fenced callback that has not returned may still use what the final
     * callbacks would free: the loop stays (exit the process instead). */
    if (vigil__fenced_callback_runs(loop))
        return -EBUSY;
    loop->destroying = true;
    /* Every fenced callback has returned: settle them (the gate opens, the
     * held go to the carry), then every connection gets its final callbacks
     * below, carried and held completions first, in order. */
    vigil__fences_poll(loop, vigil__clock_ns());
    vigil__run_carry(loop);
    for (uint32_t s1 = 1; s1 <= loop->conns.cap; s1++) {
        vigil__conn *c = vigil__conn_at(loop, s1);
        if (c->flags & VIGIL__CF_FROZEN) {
            c->flags &= (uint16_t)~VIGIL__CF_FROZEN;
            vigil__unhold_later(loop, s1);
        }
    }
    for (uint32_t i = 0; i < loop->rb.held_n; i++) {
        vigil__cqe c = loop->rb.held[i];
        vigil__dispatch_held(loop, &c);
    }
    loop->rb.held_n = 0;

    /* 1. timers, in deadline order */
    vigil__timers_destroy(loop);
    /* timers already cancelled and waiting on the later list */
    run_later(loop);
    /* 2. signal watchers, then fd watchers */
    vigil__signals_destroy(loop);
    run_later(loop);
    vigil__polls_destroy(loop);
    run_later(loop);
    /* 3, 4: listeners, then connections, each op's final callback now */
    vigil__tcp_destroy_all(loop);
    vigil__udp_destroy_all(loop);
    run_later(loop);
    /* 5. file calls, waited for; their engine goes */
    vigil__fs_destroy(loop);
    run_later(loop);
    /* 6. posts */
    run_posts(loop, -ECANCELED);

    /* Let the kernel finish every op before any memory goes: completions
     * that still arrive find user-done ops and only free their slots. */
    uint64_t give_up = vigil__clock_ns() + 5000000000ull;
    for (uint32_t i = 0; i < loop->ops.cap; i++) {
        vigil__op *op = vigil__op_at(loop, i);
        if (vigil__class_of(op)->flags & VIGIL__CLASS_STANDING)
            vigil__op_cancel_kernel(loop, op);
    }
    while (atomic_load(&loop->sv.stats.ops_in_flight) > 0 && vigil__clock_ns() < give_up) {
        loop->be->wait(loop, 10000000);
        run_later(loop);
    }
    pthread_mutex_lock(&loop->post_lock);
    loop->running = -1; /* later posts are refused */
    pthread_mutex_unlock(&loop->post_lock);
    run_posts(loop, -ECANCELED);

    loop->be->fini(loop);
#ifdef VIGIL_GUARD_BUFFERS
    /* Debug: never reuse retired buffer memory; a late kernel write faults. */
    vigil__mem_guard(loop->buf_base, loop->buf_map_len);
#else
    vigil__mem_unmap(loop->buf_base, loop->buf_map_len);
#endif
    free(loop->buf_state);
    free(loop->buf_park);
    for (uint32_t slot = 0; slot < loop->ops.cap; slot++)
        free_extra(loop, vigil__op_at(loop, slot));
    vigil__file_maps_free(loop); /* every file message is gone */
    vigil__table_free(&loop->ops);
    vigil__table_free(&loop->conns);
    for (int i = 0; i < 11; i++) {
        while (loop->send_cache[i]) {
            void *next = *(void **)loop->send_cache[i];
            free(loop->send_cache[i]);
            loop->send_cache[i] = next;
        }
    }
    free(loop->pump_ids);
    free(loop->tm.heap);
    free(loop->rb.held);
    free(loop->rb.carry);
    vigil__fences_free(loop);
    while (loop->retired) { /* runners of threads that handed the loop over */
        vigil__runner *r = loop->retired;
        loop->retired = r->retired_next;
        vigil__runner_unref(r);
    }
    vigil__wakefd_close(loop->wake_fd);
    if (loop->sig.fd >= 0)
        close(loop->sig.fd);
    free(loop->sig.watch);
    pthread_mutex_destroy(&loop->post_lock);
    pthread_mutex_destroy(&loop->owner_lock);
    pthread_cond_destroy(&loop->owner_cond);
    vigil__runner_unref(atomic_load(&loop->sv.runner));
    free(loop);
    return 0;
}
