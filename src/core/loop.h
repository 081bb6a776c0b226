/*
 * loop.h: the loop's internal state, the op table and the backend interface.
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
#ifndef VIGIL_IO_LOOP_H
#define VIGIL_IO_LOOP_H

#include "vigil.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#define VIGIL__OPF_MSGOUT    (1u << 11) /* UDP receive: its buffers start with the recvmsg_out
                                         * header and the address (udp.c) */
#define VIGIL__OPF_ENGINE    (1u << 10) /* its request is in the loop's file engine, not the
                                         * backend: a rebuild leaves it where it is */

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
        struct { uint8_t *data; uint32_t len; uint32_t done; void *flight; } send;
        struct { void *addr; uint32_t addrlen; } connect;
        struct { uint32_t retry_pending; } accept;
        struct { struct vigil__fsjob *job; } fs;
        struct { int signo; } signal;
        struct { void *rx; } udp;
        struct { struct vigil__resjob *job; } resolve;
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
    /* vigil_cancel on its handle; NULL: not the user's to cancel (-EBADF) */
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

enum vigil__conn_kind { VIGIL__CONN_FREE = 0, VIGIL__CONN_STREAM, VIGIL__CONN_LISTENER, VIGIL__CONN_DGRAM };
#define VIGIL__UDP_NAME_MAX 28 /* sizeof(struct sockaddr_in6): the address room in a receive buffer */
/* The head of a datagram's buffer with OPF_MSGOUT, as io_uring's multishot
 * recvmsg writes it (struct io_uring_recvmsg_out); the address follows,
 * then the payload, at VIGIL__UDP_HEAD. */
typedef struct vigil__msgout { uint32_t namelen, controllen, payloadlen, flags; } vigil__msgout;
#define VIGIL__UDP_HEAD (sizeof(vigil__msgout) + VIGIL__UDP_NAME_MAX)

/* conn->flags */
#define VIGIL__CF_CONNECTING (1u << 0)
#define VIGIL__CF_CLOSING    (1u << 1) /* vigil_close/abort called */
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

typedef struct vigil__parked { uint32_t buf; uint32_t len; } vigil__parked;

typedef struct vigil__conn {
    uint32_t gen;
    uint8_t kind;
    uint8_t be_mark; /* the backend's own, zeroed with the connection (iocp: fd bound to the port) */
    uint16_t flags;
    vigil_socket fd;
    uint32_t recv_op;   /* op slot + 1, or 0 */
    uint32_t send_head; /* send queue: op slot + 1 */
    uint32_t send_tail;
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
    vigil__parked *parked; /* receives that arrived while paused, in order */
    uint32_t parked_pos, parked_n, parked_cap; /* [pos, n) still to deliver */
    int32_t parked_final;  /* final status behind the parked data */
    int32_t fail_status;   /* what the queued sends fail with once the stream broke */
} vigil__conn;

/* A completion as the core sees it, copied out of the kernel's queue so that
 * reaped-but-not-yet-handled completions stay reachable in loop memory. */
typedef struct vigil__cqe {
    uint64_t tag;
    int32_t res;
    uint32_t flags; /* VIGIL__CQE_* */
} vigil__cqe;
#define VIGIL__CQE_MORE (1u << 0)  /* a multishot op goes on */
#define VIGIL__CQE_BUF  (1u << 1)  /* bits 16-31 hold a buffer id */
/* in loop->carry only (rebuild.c): */
#define VIGIL__CQE_HELD   (1u << 2) /* held for a frozen connection: already accounted */
#define VIGIL__CQE_REPAIR (1u << 3) /* not a completion: repair connection `tag` */
#define VIGIL__CQE_BREAK  (1u << 4) /* not a completion: break connection `tag` with res */
#define VIGIL__CQE_FINISH (1u << 5) /* not a completion: the final callback of op `tag`
                                     * (status res), held behind the gate */

/* One piece of a send, in the backend's terms. */
typedef struct vigil__slice { const void *base; size_t len; } vigil__slice;

/* The backend interface: completion-based and free of OS types. Each start
 * function queues one request tagged with the op; its completions come back
 * through vigil__dispatch() from inside wait(). */
typedef struct vigil__backend {
    const char *name;
    /* creates kernel objects; may run on any thread (rings are created disabled) */
    int (*init)(vigil_loop *loop); /* uses buffers in state VIGIL__BUF_KERNEL only */
    /* first call on the loop thread: bind the kernel objects to it */
    int (*attach)(vigil_loop *loop);
    /* tears down; every op must have had its final completion (or be abandoned) */
    void (*fini)(vigil_loop *loop);
    int (*accept)(vigil_loop *loop, vigil__op *op, vigil_socket fd);
    int (*recv)(vigil_loop *loop, vigil__op *op, vigil_socket fd);
    int (*send)(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *s, int n);
    int (*connect)(vigil_loop *loop, vigil__op *op, vigil_socket fd, const void *addr, uint32_t len);
    int (*close)(vigil_loop *loop, vigil__op *op, vigil_socket fd);
    int (*cancel)(vigil_loop *loop, vigil__op *op);
    int (*nop)(vigil_loop *loop, uint64_t tag);
    /* submits what is queued, waits up to timeout_ns (0 = poll, < 0 = forever),
     * hands completions to vigil__dispatch; returns completions handled or -errno */
    int (*wait)(vigil_loop *loop, int64_t timeout_ns);
    /* an fd that polls readable when completions or events wait (supervisor) */
    int (*poll_fd)(vigil_loop *loop);
    /* a receive buffer goes back to the kernel */
    void (*buf_recycle)(vigil_loop *loop, uint32_t buf_id);
    /* rebuilds (rebuild.c), on the new thread, with the old thread fenced: */
    /* waits for an orphaned connect's socket to become writable (a connect
     * the fenced backend started); completes with >= 0, then SO_ERROR decides */
    int (*resume_connect)(vigil_loop *loop, vigil__op *op, vigil_socket fd);
    /* one completion (res > 0) when fd polls readable (out: writable); the
     * core does the reading or writing */
    int (*poll)(vigil_loop *loop, vigil__op *op, vigil_socket fd, bool out);
    /* copies up to max completions that an abandoned state still holds (the
     * fenced ring's CQ, queued results) into out; returns how many; call
     * until it returns 0. *overflowed: some were lost in the kernel. */
    uint32_t (*harvest)(void *old_state, vigil__cqe *out, uint32_t max, bool *overflowed);
    /* tears an abandoned state down, from any thread */
    void (*abandon)(void *old_state);
    /* Set where the kernel objects cannot be replaced (IOCP: a socket stays
     * bound to its completion port for life): the new thread takes the
     * fenced thread's state over as it is instead of harvest, abandon and
     * init. Every request still in flight gets the loop's new epoch (its op
     * is then not issued again) and what the fenced thread had dequeued and
     * not handled is handled by the next wait. */
    int (*handover)(vigil_loop *loop);
    /* Windows (NULL elsewhere): a file the loop opened joins its port for
     * life (file_bind, on the loop thread); a read or write of it is then an
     * overlapped request at offset whose packet completes op (file_rw). */
    int (*file_bind)(vigil_loop *loop, intptr_t handle);
    int (*file_rw)(vigil_loop *loop, vigil__op *op, intptr_t handle, void *buf, uint32_t len, int64_t offset,
                   bool write);
} vigil__backend;

extern const vigil__backend vigil__uring_backend;
extern const vigil__backend vigil__epoll_backend;
extern const vigil__backend vigil__iocp_backend; /* Windows */

/* The thread that runs a loop, as the supervisor sees it (docs/supervisor.md,
 * "State machine"). state is one word, changed only by compare-and-swap:
 * the loop thread moves it between LIBRARY, CALLBACK, WAIT and OUTSIDE; the
 * supervisor may only turn CALLBACK into FENCED. A fenced thread never
 * touches its loop again: it leaves through bail (a longjmp to its
 * vigil_loop_run) the moment it returns from the callback, and any vigil
 * call it makes first fails with -EOWNERDEAD. The runner is reference
 * counted so that a fenced thread that comes back late, after its loop was
 * rebuilt or destroyed, still finds it. */
#define VIGIL__AT_LIBRARY 0  /* in vigil's own code: holds the tables and the ring */
#define VIGIL__AT_CALLBACK 1 /* in user code called by the loop */
#define VIGIL__AT_WAIT 2     /* in the backend's kernel wait */
#define VIGIL__AT_OUTSIDE 3  /* not inside vigil_loop_run: nothing to watch */
#define VIGIL__AT_FENCED 4   /* cut off by the supervisor; the loop lives on elsewhere */

#define VIGIL__REFUSED_MAX 8
typedef struct vigil__runner {
    _Atomic int state;
    _Atomic int refs;       /* the loop's, and the thread's while inside vigil_loop_run */
    _Atomic int returned;   /* a fenced thread came back from its callback */
    _Atomic int acked;      /* a fenced thread ran the fence signal: its writes are visible */
    const vigil_loop *loop; /* identity only: a fenced thread never dereferences it */
    uint32_t loop_id;
    pthread_t thread;
    int tid;
    jmp_buf *bail;                 /* in this thread's vigil_loop_run frame */
    struct vigil__runner *outer;   /* an enclosing vigil_loop_run's runner on this thread */
    struct vigil__runner *retired_next; /* the loop's list of runners let go by a hand-over */
    _Atomic uint32_t refused_n;    /* calls refused after the fence, and the connections */
    _Atomic uint64_t refused[VIGIL__REFUSED_MAX]; /* they named (0: none) */
} vigil__runner;

typedef struct vigil__post {
    struct vigil__post *next;
    vigil_post_cb fn;
    void *arg;
} vigil__post;

struct vigil_loop {
    const vigil__backend *be;
    void *be_state;
    vigil_loop_options opts;
    vigil_loop_info info;
    char reason[128];
    uint8_t epoch;

    /* the loop thread: set by the first call on it, replaced by a rebuild */
    atomic_int attached;
    _Atomic(vigil__runner *) runner;
    vigil__runner *cur_runner; /* runner while inside vigil_loop_run, else NULL */
    int in_callback;   /* depth of user callbacks */
    uint64_t callbacks; /* user callbacks called (RUN_ONCE: did one run?) */
    int running;
    bool destroying;

    /* op table */
    vigil__op *ops[VIGIL__MAX_CHUNKS];
    uint32_t ops_cap, ops_free; /* free list head: slot + 1 */
    /* connection table */
    vigil__conn *conns[VIGIL__MAX_CHUNKS];
    uint32_t conns_cap, conns_free;
    uint32_t live_conns, live_listeners, live_timers;

    /* timers and deadlines: a binary min-heap of op slots by (due_ns, seq) */
    uint32_t *heap;
    uint32_t heap_len, heap_cap;
    uint64_t seq;

    /* ops whose final callback is due without a kernel completion */
    uint32_t later_head, later_tail;
    /* connections waiting for receive buffers */
    uint32_t buf_wait_head, buf_wait_tail;

    /* receive buffers: one mapping of buf_count * buf_size bytes */
    uint8_t *buf_base;
    size_t buf_map_len;
    uint8_t *buf_state;  /* VIGIL__BUF_* per buffer */
    uint32_t bufs_free;  /* buffers the kernel can receive into */
    uint32_t buf_current;/* buffer in the current receive callback, or UINT32_MAX */

    /* freed send copies, by power-of-two size class (64 B .. 64 KiB), so a
     * busy stream does not malloc/free (and page-fault) every message */
    void *send_cache[11];
    size_t send_cached;

    /* the batch being dispatched, reachable from loop memory */
    vigil__cqe batch[256];
    uint32_t batch_len, batch_pos;
    /* later-list entries and posts taken for this pass and not yet run, so
     * that a fence in one of their callbacks leaves the rest in loop memory */
    uint32_t later_run;
    struct vigil__post *posts_run;

    /* ops outside the backend (fs.c): the file ring (io_uring loops), the
     * worker pool (file calls elsewhere, name resolution everywhere), both
     * made on first use; their ops not yet final */
    struct vigil__fs_ring *fs_ring;
    struct vigil__pool *pool;
    uint32_t engine_live;
    bool fs_chosen;
#ifdef _WIN32
    intptr_t *port_files; /* by fd: the handle of a file bound to the port, or 0 (fs_win.c) */
    uint32_t port_files_cap;
#endif

    /* signals (signal.c): one signalfd for every watched signal */
    int sig_fd;
#ifndef _WIN32
    sigset_t sig_mask;
#endif
    uint32_t *sig_watch;       /* watcher op slots + 1, in start order */
    uint32_t sig_watch_n, sig_watch_cap;
    uint32_t sig_read;         /* the SIGREAD op: slot + 1, or 0 */
    int32_t sig_q[32];         /* signals read and not yet delivered to every watcher: */
    uint32_t sig_q_pos, sig_q_n, sig_w_pos; /* in loop memory, so a fence leaves the rest */

    /* cross-thread */
    pthread_mutex_t post_lock;
    vigil__post *post_head, *post_tail;
    atomic_int wake_pending;
    atomic_int stop_requested;
    int wake_fd;                /* the loop's, not a backend's: it outlives rebuilds */

    /* rebuilds (rebuild.c) */
    vigil__cqe *carry;          /* completions a rebuild carried over, applied first, in order */
    uint32_t carry_pos, carry_n, carry_cap;
    vigil__cqe *held;           /* completions for frozen connections, in order */
    uint32_t held_n, held_cap;
    uint32_t held_later_head, held_later_tail; /* their later-list entries */
    struct vigil__fence *fences;/* fenced threads not yet accounted for */
    bool gated;                 /* a fenced callback still runs: no other may (rebuild.c) */
    uint32_t gate_accepts;      /* connections accepted behind the gate */
    _Atomic int sv_poll_fd;     /* the backend's poll fd, for the supervisor */
    pthread_mutex_t owner_lock; /* run_done, handoff: between a rebuilt loop's thread and others */
    pthread_cond_t owner_cond;
    bool run_done;              /* a rebuilt loop's thread finished running it */
    int run_result;             /* ... and how its run ended */
    bool owned_by_vigil;        /* the owner is a thread of vigil's (after a rebuild) */
    struct vigil__handoff *handoff; /* a destroy asked of that thread */
    bool rehome;                /* handed over: the next thread makes its backend anew */
    struct vigil__runner *retired; /* runners of threads that handed it over */
#ifndef _WIN32
    sigset_t serve_mask;        /* what vigil_serve waits for: blocked on vigil's threads */
#endif

    /* where the loop thread is, for the supervisor thread (relaxed atomics) */
    uint32_t id;
    uint16_t handle_tag;            /* in every handle of the loop's (loop.c) */
    _Atomic int sv_op_kind;         /* kind of op being handled (VIGIL__OP_KINDS = a post) */
    _Atomic uint64_t sv_conn;       /* its connection id, or 0 */
    _Atomic(void *) sv_cb;          /* the user function called last */
    _Atomic uintptr_t sv_cb_sp;     /* a stack address just above its frames (vigil's caller's) */
    _Atomic uint64_t sv_next_due_ns;/* earliest timer or deadline; UINT64_MAX = none */
    _Atomic int sv_posts;           /* posts waiting */
    _Atomic int sv_gated;           /* work waits behind the gate on purpose */
    _Atomic uint32_t sv_gate_released; /* events the last gate opening let through */
    _Atomic(vigil__runner *) sv_fence_request; /* test hook: fence this runner now */
    _Atomic int sv_rebuilt;         /* 0 while a rebuild takes the loop over; then 1, or -errno */
    _Atomic uint32_t sv_rebuilds_timed; /* rebuilds whose time is in stats.last_rebuild_us */
    uint64_t rebuild_t0_ns;         /* fence time of the rebuild whose first pass is due */
    bool debug_overflow;            /* test hooks, below */
    uint32_t debug_library_spin_ms;
    uint32_t debug_udp_full;        /* the next sends find the UDP socket full */
    _Atomic uint64_t sv_fenced_ns;  /* when the supervisor fenced it */
    void *bt_frames[48];            /* written by the backtrace signal handler */
    _Atomic int bt_n;               /* frames written; -1 while a backtrace is requested */

    /* progress counters, read lock-free by other threads */
    struct {
        _Atomic uint64_t iterations, completions, ops_in_flight, last_progress_ns,
            stale_completions, cq_overflows, enobufs_rearms, accept_emfile, connections,
            deadlines_expired, deadline_shutdowns, rebuilds, conns_migrated, bytes_carried,
            ops_reissued, stuck_returned, stuck_reset, refused_calls, last_rebuild_us, gated,
            events_held, events_held_total;
    } stats;
};

#define VIGIL__BUF_KERNEL 0 /* in the kernel's ring */
#define VIGIL__BUF_USER   1 /* in a receive callback */
#define VIGIL__BUF_KEPT   2 /* kept by the user */
#define VIGIL__BUF_PARKED 3 /* holds bytes received while paused */
#define VIGIL__BUF_CARRIED 4 /* named by a fenced backend's completion not yet applied */
#define VIGIL__BUF_LENT   5 /* in a fenced thread's stuck callback */

/* op table */
vigil__op *vigil__op_new(vigil_loop *loop, int kind);
vigil__op *vigil__op_at(vigil_loop *loop, uint32_t slot);
vigil__op *vigil__op_from_handle(vigil_loop *loop, vigil_op h);
vigil_op vigil__op_handle(vigil_loop *loop, vigil__op *op);
uint64_t vigil__op_tag(vigil_loop *loop, vigil__op *op);
void vigil__op_release(vigil_loop *loop, vigil__op *op); /* frees if kernel- and user-done */
void vigil__op_kernel_started(vigil_loop *loop, vigil__op *op);
void vigil__later(vigil_loop *loop, vigil__op *op, int status);
int vigil__op_cancel_kernel(vigil_loop *loop, vigil__op *op);

/* memory for send copies */
void *vigil__send_alloc(vigil_loop *loop, size_t len);
void vigil__send_free(vigil_loop *loop, void *p, size_t len);

/* connection table */
vigil__conn *vigil__conn_new(vigil_loop *loop, int kind, vigil_socket fd);
vigil__conn *vigil__conn_at(vigil_loop *loop, uint32_t slot1);
vigil__conn *vigil__conn_from_id(vigil_loop *loop, uint64_t id);
uint64_t vigil__conn_id(vigil_loop *loop, vigil__conn *c);
uint32_t vigil__conn_slot1(vigil_loop *loop, vigil__conn *c);
void vigil__conn_free(vigil_loop *loop, vigil__conn *c);

/* memory for send copies */
void *vigil__send_alloc(vigil_loop *loop, size_t len);
void vigil__send_free(vigil_loop *loop, void *p, size_t len);

/* timer.c: timers and deadlines */
int vigil__heap_reserve(vigil_loop *loop, uint32_t ops); /* room for that many ops */
void vigil__heap_push(vigil_loop *loop, vigil__op *op);  /* never fails */
void vigil__heap_remove(vigil_loop *loop, vigil__op *op);
void vigil__timers_run(vigil_loop *loop, uint64_t now);  /* what came due, by class */
void vigil__timers_destroy(vigil_loop *loop);            /* every timer's final callback */

/* Calls user function fn with args. Outside vigil_loop_run (in destroy)
 * there is no runner and nothing to fence. The function is published for
 * the supervisor (a stall report names it). After the call only the local
 * runner pointer is used: if the supervisor fenced the thread meanwhile,
 * vigil__cb_return leaves at once, before anything of the loop is touched. */
#define VIGIL__CALLBACK(loop, fn, args)                                                     \
    do {                                                                                    \
        vigil__runner *cb_runner_ = (loop)->cur_runner;                                     \
        (loop)->in_callback++;                                                              \
        (loop)->callbacks++;                                                                \
        atomic_store_explicit(&(loop)->sv_cb, (void *)(fn), memory_order_relaxed);          \
        atomic_store_explicit(&(loop)->sv_cb_sp, (uintptr_t)__builtin_frame_address(0),     \
                              memory_order_relaxed);                                        \
        if (cb_runner_)                                                                     \
            atomic_store_explicit(&cb_runner_->state, VIGIL__AT_CALLBACK, memory_order_release); \
        (fn) args;                                                                          \
        if (cb_runner_)                                                                     \
            vigil__cb_return(cb_runner_);                                                   \
        (loop)->in_callback--;                                                              \
    } while (0)

/* fence.c: the runner state machine */
void vigil__cb_return(vigil__runner *r);     /* CALLBACK -> LIBRARY, or leave if fenced */
_Noreturn void vigil__bail(vigil__runner *r); /* a fenced thread leaves for vigil_loop_run */
void vigil__wait_enter(vigil_loop *loop);    /* LIBRARY -> WAIT before the kernel wait */
void vigil__wait_leave(vigil_loop *loop);    /* WAIT -> LIBRARY after it, or leave */
vigil__runner *vigil__runner_new(vigil_loop *loop);
void vigil__runner_unref(vigil__runner *r);
int vigil__runner_state(const vigil_loop *loop); /* any thread */

/* the innermost vigil_loop_run on this thread: its loop (for the backtrace
 * signal handler) and its runner */
extern _Thread_local vigil_loop *vigil__tls_loop;
extern _Thread_local vigil__runner *vigil__tls_runner;
const char *vigil__op_kind_name(int kind);

/* The loop-thread check of internal entry points: attaches the loop to the
 * first thread that calls, then -EPERM for other threads, -EOWNERDEAD for a
 * thread the supervisor fenced. */
int vigil__enter(vigil_loop *loop);
/* The calling thread takes a loop whose attached word it moved 0 -> 2. */
int vigil__take(vigil_loop *loop);

/* The entry check of public calls that touch loop state, with its exit: a
 * call from inside a callback moves the thread to LIBRARY for the call (so
 * the supervisor never fences it half-way through a change) and back to
 * CALLBACK when the function returns, by a cleanup handler. A fenced thread
 * is refused with -EOWNERDEAD (conn_id: the connection the call names, or
 * 0), and its refused calls are remembered for the rebuild. */
typedef struct vigil__api_scope { vigil__runner *restore; } vigil__api_scope;
int vigil__api_enter(vigil_loop *loop, uint64_t conn_id, vigil__api_scope *scope);
void vigil__api_leave(vigil__api_scope *scope);
#define VIGIL__API_OR(loop, conn_id, fail)                                                  \
    vigil__api_scope api_scope_ __attribute__((cleanup(vigil__api_leave))) = {0};          \
    int api_rc_ = vigil__api_enter((loop), (conn_id), &api_scope_);                        \
    if (api_rc_ < 0)                                                                        \
        return fail
#define VIGIL__API(loop, conn_id) VIGIL__API_OR(loop, conn_id, api_rc_)

void vigil__run_later(vigil_loop *loop); /* the later list, now */
/* vigil_loop_run without its wait for a rebuilt loop: -EOWNERDEAD when fenced */
int vigil__run(vigil_loop *loop, vigil_run_mode mode, int timeout_ms);
/* vigil_loop_join, and how the loop's run ended there (*result: 0, 1 or -errno) */
int vigil__join(vigil_loop *loop, int timeout_ms, int *result);

/* completion dispatch, called by backends */
void vigil__dispatch(vigil_loop *loop, const vigil__cqe *c);
/* a completion from the loop's file engine: valid across rebuilds (any epoch) */
void vigil__dispatch_engine(vigil_loop *loop, const vigil__cqe *c);
void vigil__note_progress(vigil_loop *loop);
void vigil__stamp(vigil_loop *loop);

/* rebuild.c: fence and rebuild */
void vigil__dispatch_held(vigil_loop *loop, const vigil__cqe *c);
void vigil__hold(vigil_loop *loop, const vigil__cqe *c); /* keeps it, in order, for later */
bool vigil__gate_holds(vigil_loop *loop, vigil__op *op, const vigil__cqe *c);
bool vigil__fenced_callback_runs(vigil_loop *loop); /* a fenced callback has not returned */
void vigil__run_carry(vigil_loop *loop);
bool vigil__hold_if_frozen(vigil_loop *loop, vigil__op *op, const vigil__cqe *c);
bool vigil__later_is_frozen(vigil_loop *loop, const vigil__op *op);
void vigil__unhold_later(vigil_loop *loop, uint32_t conn_slot1);
bool vigil__fences_poll(vigil_loop *loop, uint64_t now); /* true while one is unsettled */
void vigil__fences_free(vigil_loop *loop);
int vigil__rebuild(vigil_loop *loop, const vigil__backend *target, uint32_t grace_ms);
int vigil__rebuild_start(vigil_loop *loop, const vigil__backend *target, uint32_t grace_ms);
int vigil__move_backend(vigil_loop *loop, const vigil__backend *target); /* steps 3-6 */
/* reissuing an op whose request died with the fenced backend (op classes): */
void vigil__reissue_result(vigil_loop *loop, vigil__op *op, int res); /* completes with res */
void vigil__reissue_again(vigil_loop *loop, vigil__op *op);  /* -EAGAIN: nothing moved, re-arm */
void vigil__reissue_drop(vigil_loop *loop, vigil__op *op);   /* issued again by other means */
/* accepts that may complete behind the gate before the accept is cancelled */
#define VIGIL__GATE_ACCEPTS_MAX 1024

/* owner.c: which thread runs a loop: hand-over, threads of vigil's, serve */
int vigil__destroy_handoff(vigil_loop *loop);
void vigil__owned_by_vigil(vigil_loop *loop);  /* from now on a thread of vigil's runs it */
void vigil__owned_loop_ended(vigil_loop *loop, int run_rc); /* on vigil's thread: serve destroy */
void vigil__loop_thread_signals(vigil_loop *loop); /* the mask of a thread of vigil's running it */
int vigil__rehome(vigil_loop *loop);   /* a handed-over loop's new thread takes it */

/* udp.c */
void vigil__udp_rearm(vigil_loop *loop, vigil__conn *c);  /* a buffer came back */
void vigil__udp_repair(vigil_loop *loop, vigil__conn *c); /* after a fence */
void vigil__udp_destroy_all(vigil_loop *loop);

/* signal.c */
void vigil__signals_run(vigil_loop *loop);     /* deliver what was read */
void vigil__signals_destroy(vigil_loop *loop); /* every watcher's final callback */

/* tcp.c */
void vigil__tcp_destroy_all(vigil_loop *loop);
void vigil__tcp_buffers_freed(vigil_loop *loop);
void vigil__tcp_repair(vigil_loop *loop, vigil__conn *c); /* after a fence */
void vigil__tcp_break(vigil_loop *loop, vigil__conn *c, int status);
void vigil__tcp_reset_now(vigil_loop *loop, vigil__conn *c); /* RST, the callbacks later */
bool vigil__send_unlink(vigil_loop *loop, vigil__conn *c, vigil__op *op); /* false: not queued */
void vigil__buf_recycle(vigil_loop *loop, uint32_t id);

static inline void vigil__stat_add(_Atomic uint64_t *c, int64_t d) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* test hooks (not in the public header) */
int vigil__debug_stale_completion(vigil_loop *loop);
/* From a callback: asks the supervisor to fence this thread now, as if it were
 * stuck; the callback then waits until vigil__debug_fenced() says so. */
int vigil__debug_request_fence(vigil_loop *loop);
int vigil__debug_fenced(vigil_loop *loop);
/* The next rebuild finds the fenced ring's CQ overflowed. */
int vigil__debug_overflow_at_fence(vigil_loop *loop);
/* The next n UDP sends find their socket full (-EAGAIN), as under load. */
int vigil__debug_udp_full(vigil_loop *loop, uint32_t n);
/* The loop thread spins ms in vigil's own code at its next pass (a library stall). */
int vigil__debug_library_spin(vigil_loop *loop, uint32_t ms);

#endif
