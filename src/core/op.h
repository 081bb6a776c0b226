/*
 * op.h: ops and connections, their tables and their classes.
 *
 * Lifetime contract (read this before touching ops):
 * - Every unit of work is an op in the op table: timers, accepts, receives,
 *   sends, connects, closes, and the internal wake read. An op lives in a
 *   slot; the kernel sees only its tag (slot, generation, loop epoch), never
 *   a pointer, so a late or duplicated completion can at worst name a slot
 *   whose generation moved on: it is counted as stale and dropped.
 * - An op is "in the kernel" from the moment its request is queued until its
 *   final completion (for multishot ops, the one without "more"). It is
 *   "user-done" once its final user callback ran. Its slot is freed only when
 *   both are true, and only then does the generation change.
 * - Slots live in fixed-size chunks that never move, so a pointer to an op
 *   stays valid while callbacks start new ops; pointers are never stored in
 *   anything the kernel or another thread can see.
 * - Connections and listeners live in a second table with the same rules.
 *   They own plain fds, never registered ones, so they can outlive a ring.
 */
#ifndef VIGIL_CORE_OP_H
#define VIGIL_CORE_OP_H

#include "vigil.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIGIL__CHUNK_SHIFT 10
#define VIGIL__CHUNK (1u << VIGIL__CHUNK_SHIFT)
#define VIGIL__MAX_CHUNKS 4096 /* 4M slots per table */

/* A completion tag: slot index in bits 0-31, generation in 32-55, loop epoch in 56-63. */
#define VIGIL__TAG_GEN_BITS 24
#define VIGIL__TAG_GEN_MASK ((1u << VIGIL__TAG_GEN_BITS) - 1)
#define VIGIL__TAG_IGNORE UINT64_MAX /* requests whose completion carries no news (cancels) */
#define VIGIL__STATUS_RESUME INT32_MIN /* later-list marker: deliver parked bytes, re-arm */

enum vigil__op_kind {
    VIGIL__OP_FREE = 0,
    VIGIL__OP_TIMER,
    VIGIL__OP_ACCEPT,
    VIGIL__OP_RECV,
    VIGIL__OP_SEND,
    VIGIL__OP_CONNECT,
    VIGIL__OP_CLOSE,   /* closes a connection's fd; its deadline is the flush deadline */
    VIGIL__OP_WAKE,    /* the cross-thread wake read */
    VIGIL__OP_NOP,     /* test hook */
    VIGIL__OP_FS,      /* a file call (fs.c), in the loop's file engine */
    VIGIL__OP_SIGNAL,  /* a signal watcher (signal.c): never in the kernel */
    VIGIL__OP_SIGREAD, /* readiness of the loop's signalfd */
    VIGIL__OP_RESOLVE, /* a name lookup on the pool (resolve.c) */
    VIGIL__OP_DIAL,    /* connect by name: a lookup, then connects (resolve.c); never in the kernel */
    VIGIL__OP_UDP_RECV,/* receiving datagrams (udp.c) */
    VIGIL__OP_UDP_SEND,/* a queued datagram: never in the kernel (sendto does not wait) */
    VIGIL__OP_UDP_WAIT,/* a full UDP socket: waiting for it to take more */
    VIGIL__OP_WORK,    /* the program's work on the pool (work.c) */
    VIGIL__OP_POLL,    /* an fd watcher: readiness of an fd the loop does not own (poll.c) */
    VIGIL__OP_FILL,    /* a file message's next pages read in on the pool (send_file.c) */
    VIGIL__OP_KINDS
};

/* op->flags */
#define VIGIL__OPF_KERNEL    (1u << 0) /* a request is queued or in the kernel */
#define VIGIL__OPF_USER_DONE (1u << 1) /* final user callback delivered */
#define VIGIL__OPF_CANCELING (1u << 2) /* a cancel was sent for it */
#define VIGIL__OPF_TIMED_OUT (1u << 3) /* its deadline passed: report -ETIMEDOUT */
#define VIGIL__OPF_PAUSED    (1u << 4) /* receive paused by the user */
#define VIGIL__OPF_LATER     (1u << 5) /* on the loop's later list */
#define VIGIL__OPF_STOPPED   (1u << 6) /* user asked it to end (cancel/close) */
#define VIGIL__OPF_STARTED   (1u << 7) /* send: some bytes went out */
#define VIGIL__OPF_RESUMED   (1u << 8) /* connect: waiting for one a fenced ring had started */
#define VIGIL__OPF_CARRIED   (1u << 9) /* its final completion waits in loop memory (the
                                         * carry or the held list), not in the kernel: it
                                         * must be neither issued again nor freed */
#define VIGIL__OPF_ENGINE    (1u << 10) /* its request is in the loop's file engine, not the
                                         * backend: a rebuild leaves it where it is */
#define VIGIL__OPF_FILE      (1u << 11) /* send: a file message; block is its
                                         * vigil__file_msg (send_file.c) */

typedef struct vigil__op {
    uint32_t gen;
    uint8_t kind;
    uint8_t req_epoch;   /* loop epoch of its request in the kernel (see rebuild.c) */
    uint16_t flags;
    uint32_t conn;       /* connection slot + 1, or 0 */
    uint32_t next;       /* free list, send queue, later list: slot + 1 */
    int32_t heap;        /* position in the timer heap, or -1 */
    int32_t status;      /* final status once known (later list) */
    uint32_t self;       /* own slot index */
    uint64_t due_ns;     /* timer due time or deadline; 0 = none */
    uint64_t seq;        /* timer heap tie-break: start order */
    void *cb;
    void *ud;
    union {
        struct { uint64_t repeat_ns; } timer;
        struct { uint64_t idle_ns; uint64_t last_ns; int64_t unsent; } recv; /* unsent: for the idle check */
        /* block: vigil's copy of the bytes, or (OPF_FILE) the file message */
        struct { uint8_t *data; uint32_t len; uint32_t done; void *block; } send;
        struct { void *addr; uint32_t addrlen; } connect;
        struct { uint32_t retry_pending; } accept;
        struct { struct vigil__fsjob *job; } fs;
        struct { int signo; } signal;
        struct { void *rx; } udp;
        struct { struct vigil__resjob *job; } resolve;
        struct { struct vigil__workjob *job; } work;
        /* fs, resolve and work alike: each job block starts with its pool
         * part, so the engine's class members reach any of them (engine.c) */
        struct { struct vigil__job *job; } engine;
        struct { vigil_socket fd; uint8_t events, armed; bool owned; } poll; /* armed: in flight */
        struct { struct vigil__dial *d; } dial;
    } u;
} vigil__op;

/* What the core does with an op, by kind: one class per kind, defined in
 * the file of its kind, gathered in one table (loop.c). The core never
 * switches on a kind; it asks the op's class. A NULL member does nothing
 * unless its comment says otherwise. */
struct vigil__cqe;
struct vigil__job;
typedef struct vigil__op_class {
    const char *name;  /* in stall reports */
    uint32_t flags;    /* VIGIL__CLASS_* */
    /* a completion of its request (from the backend, an engine, the carry
     * or the held list); NULL: counted as stale */
    void (*complete)(vigil_loop *loop, vigil__op *op, const struct vigil__cqe *c);
    /* its final status, from the later list; NULL: the slot is freed */
    void (*finish)(vigil_loop *loop, vigil__op *op, int status);
    /* vigil_op_cancel on its handle; NULL: not the user's to cancel (-EBADF) */
    int (*cancel)(vigil_loop *loop, vigil__op *op);
    /* its due time (a timer's, or a deadline) came; it is out of the heap
     * and op->due_ns is 0 */
    void (*deadline)(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now);
    /* a rebuild: its request died with the fenced backend (rebuild.c);
     * NULL: it ends with -ECANCELED */
    void (*reissue)(vigil_loop *loop, vigil__op *op);
    /* a completion arrives behind a rebuild's gate: true if this dealt with
     * it; false (or NULL): it is held, in order, until the gate opens */
    bool (*behind_gate)(vigil_loop *loop, vigil__op *op, const struct vigil__cqe *c);
    /* frees what the op owns besides its slot */
    void (*release)(vigil_loop *loop, vigil__op *op);
    /* engine ops: the op's pool job; forget: the op lets go of it (destroy
     * abandoned it to a worker stuck in the call, engine.c) */
    struct vigil__job *(*job)(vigil__op *op, bool forget);
} vigil__op_class;

#define VIGIL__CLASS_INTERNAL (1u << 0) /* the loop's own request, no user code: passes the
                                          * gate; a rebuild drops it (the wake, test no-ops) */
#define VIGIL__CLASS_REARMS   (1u << 1) /* a bare -EAGAIN only re-arms it: runs behind the gate */
#define VIGIL__CLASS_STANDING (1u << 2) /* a standing request of the loop's: destroy cancels it */
#define VIGIL__CLASS_NEW_FD   (1u << 3) /* a completion's res >= 0 is a new descriptor (accept) */

extern const vigil__op_class *const vigil__op_classes[VIGIL__OP_KINDS];
static inline const vigil__op_class *vigil__class_of(const vigil__op *op) { return vigil__op_classes[op->kind]; }

/* each in the file of its kind */
extern const vigil__op_class vigil__timer_class;                         /* timer.c */
extern const vigil__op_class vigil__wake_class, vigil__nop_class;        /* loop.c */
extern const vigil__op_class vigil__accept_class, vigil__recv_class, vigil__send_class,
    vigil__connect_class, vigil__close_class;                             /* tcp.c */
extern const vigil__op_class vigil__fs_class;                            /* fs.c */
extern const vigil__op_class vigil__signal_class, vigil__sigread_class;  /* os/{linux,win}/signal.c */
extern const vigil__op_class vigil__resolve_class, vigil__dial_class;    /* resolve.c */
extern const vigil__op_class vigil__udp_recv_class, vigil__udp_send_class, vigil__udp_wait_class; /* udp.c */
extern const vigil__op_class vigil__work_class; /* work.c */
extern const vigil__op_class vigil__poll_class; /* poll.c */
extern const vigil__op_class vigil__fill_class; /* send_file.c */

/* A queue of table entries (ops or connections) linked through their own
 * `next` field by slot + 1, 0 ending it: the later list, send queues, the
 * connections waiting for buffers. No allocation, and an entry is in one
 * queue at most (it has one `next`). */
typedef struct vigil__queue { uint32_t head, tail; } vigil__queue;
typedef uint32_t *(*vigil__link_fn)(vigil_loop *loop, uint32_t slot1); /* entry slot1's `next` */
uint32_t *vigil__op_link(vigil_loop *loop, uint32_t slot1);
uint32_t *vigil__conn_link(vigil_loop *loop, uint32_t slot1);
void vigil__queue_push(vigil_loop *loop, vigil__queue *q, uint32_t slot1, vigil__link_fn link);
uint32_t vigil__queue_pop(vigil_loop *loop, vigil__queue *q, vigil__link_fn link); /* slot + 1, or 0 */
bool vigil__queue_remove(vigil_loop *loop, vigil__queue *q, uint32_t slot1, vigil__link_fn link);

enum vigil__conn_kind { VIGIL__CONN_FREE = 0, VIGIL__CONN_STREAM, VIGIL__CONN_LISTENER, VIGIL__CONN_DGRAM };
#define VIGIL__UDP_NAME_MAX 28 /* sizeof(struct sockaddr_in6): the address room in a receive buffer */
/* The head of a datagram's buffer with OPF_MSGOUT, as io_uring's multishot
 * recvmsg writes it (struct io_uring_recvmsg_out); the address follows,
 * then the payload, at VIGIL__UDP_HEAD. */
typedef struct vigil__msgout { uint32_t namelen, controllen, payloadlen, flags; } vigil__msgout;
#define VIGIL__UDP_HEAD (sizeof(vigil__msgout) + VIGIL__UDP_NAME_MAX)

/* conn->flags */
#define VIGIL__CF_CONNECTING (1u << 0)
#define VIGIL__CF_CLOSING    (1u << 1) /* vigil_conn_close/abort called */
#define VIGIL__CF_ABORT      (1u << 2) /* discard and RST */
#define VIGIL__CF_BROKEN     (1u << 3) /* a send failed: later sends fail too */
#define VIGIL__CF_SHUT_WR    (1u << 4) /* FIN requested after the queue */
#define VIGIL__CF_FIN_SENT   (1u << 5)
#define VIGIL__CF_OVER_HWM   (1u << 6) /* queue went past the high-water mark */
#define VIGIL__CF_BUF_WAIT   (1u << 7) /* receive waits for free buffers */
#define VIGIL__CF_CLOSE_SENT (1u << 8) /* the fd close is under way */
#define VIGIL__CF_EOF_PARKED (1u << 9) /* a final receive status waits behind parked data */
#define VIGIL__CF_DRAINING   (1u << 10) /* graceful close: FIN sent, reading until the peer's */
#define VIGIL__CF_DRAINED    (1u << 11)
#define VIGIL__CF_FROZEN     (1u << 12) /* its callback is stuck on a fenced thread: hold its events */
#define VIGIL__CF_DISCARD    (1u << 13) /* broken after a fence: received bytes are dropped */
#define VIGIL__CF_PUMP_SOON  (1u << 14) /* on the loop's list of sends to start before the wait */

/* Bytes received while paused wait in their buffers, queued through this
 * per-buffer link (loop->buf_park, one entry per pool buffer, made with the
 * pool): parking never allocates, and a buffer is in one queue at most. */
typedef struct vigil__parked { uint32_t next; uint32_t len; } vigil__parked; /* next: buffer id + 1 */

typedef struct vigil__conn {
    uint32_t gen;
    uint8_t kind;
    uint8_t be_mark; /* the backend's own, zeroed with the connection (iocp: fd bound to the port) */
    uint16_t flags;
    vigil_socket fd;
    uint32_t recv_op;   /* op slot + 1, or 0 */
    vigil__queue sendq; /* queued sends, in order (ops) */
    uint32_t io_op;     /* connect or accept op: slot + 1 */
    uint32_t close_op;  /* close op (holds the flush deadline): slot + 1 */
    uint32_t next;      /* free list / buffer wait list */
    uint32_t self;      /* own slot index */
    int32_t close_status;
    uint64_t queued;    /* bytes queued and not yet confirmed sent */
    uint64_t hwm, lwm;
    vigil_drain_cb drain_cb;
    void *drain_ud;
    vigil_close_cb close_cb;
    void *close_ud;
    void *data;
    uint32_t parked_head, parked_tail; /* buffers received into while paused: id + 1 */
    int32_t parked_final;  /* final status behind the parked data */
    int32_t fail_status;   /* what the queued sends fail with once the stream broke */
} vigil__conn;


#define VIGIL__BUF_KERNEL 0 /* in the kernel's ring */
#define VIGIL__BUF_USER   1 /* in a receive callback */
#define VIGIL__BUF_KEPT   2 /* kept by the user */
#define VIGIL__BUF_PARKED 3 /* holds bytes received while paused */
#define VIGIL__BUF_CARRIED 4 /* named by a fenced backend's completion not yet applied */
#define VIGIL__BUF_LENT   5 /* in a fenced thread's stuck callback */

/* The op and connection tables: entries in chunks of VIGIL__CHUNK that
 * never move once made, so a pointer to an entry stays valid while the
 * table grows (callbacks start ops while the core holds pointers). */
typedef struct vigil__table {
    void *chunks[VIGIL__MAX_CHUNKS];
    uint32_t cap; /* entries in the chunks made so far */
} vigil__table;
/* A new zeroed chunk of elem-sized entries (its first one), or NULL when
 * the table is full or memory is out; t->cap grows by VIGIL__CHUNK. */
void *vigil__table_grow(vigil__table *t, size_t elem);
void vigil__table_free(vigil__table *t);
#define VIGIL__TABLE_AT(t, type, slot)                                                      \
    ((slot) < (t)->cap ? (type *)(t)->chunks[(slot) >> VIGIL__CHUNK_SHIFT] + ((slot) & (VIGIL__CHUNK - 1)) : NULL)

/* op table (loop.c) */
vigil__op *vigil__op_new(vigil_loop *loop, int kind);
vigil__op *vigil__op_at(vigil_loop *loop, uint32_t slot);
vigil__op *vigil__op_from_handle(vigil_loop *loop, vigil_op h);
vigil_op vigil__op_handle(vigil_loop *loop, vigil__op *op);
uint64_t vigil__op_tag(vigil_loop *loop, vigil__op *op);
void vigil__op_release(vigil_loop *loop, vigil__op *op); /* frees if kernel- and user-done */
void vigil__op_kernel_started(vigil_loop *loop, vigil__op *op);
void vigil__later(vigil_loop *loop, vigil__op *op, int status);
int vigil__op_cancel_kernel(vigil_loop *loop, vigil__op *op);
const char *vigil__op_kind_name(int kind);

/* connection table (loop.c) */
vigil__conn *vigil__conn_new(vigil_loop *loop, int kind, vigil_socket fd);
vigil__conn *vigil__conn_at(vigil_loop *loop, uint32_t slot1);
vigil__conn *vigil__conn_from_id(vigil_loop *loop, uint64_t id);
uint64_t vigil__conn_id(vigil_loop *loop, vigil__conn *c);
uint32_t vigil__conn_slot1(vigil_loop *loop, vigil__conn *c);
void vigil__conn_free(vigil_loop *loop, vigil__conn *c);

/* memory for send copies (loop.c) */
void *vigil__send_alloc(vigil_loop *loop, size_t len);
void vigil__send_free(vigil_loop *loop, void *p, size_t len);

/* A counter only its loop thread writes and any thread reads. */
static inline void vigil__stat_add(_Atomic uint64_t *c, int64_t d) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

#endif
