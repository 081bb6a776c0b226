/*
 * backend.h: the seam between the core and a backend (io_uring, epoll,
 * IOCP: src/backend). A backend queues requests tagged with an op and hands
 * their completions back, in the kernel's order, as vigil__cqe records; it
 * never calls user code and never frees an op.
 */
#ifndef VIGIL_CORE_BACKEND_H
#define VIGIL_CORE_BACKEND_H

#include "core/op.h"

#include <pthread.h>

/* A completion as the core sees it, copied out of the kernel's queue so that
 * reaped-but-not-yet-handled completions stay reachable in loop memory. */
typedef struct vigil__cqe {
    uint64_t tag;
    int32_t res;
    uint32_t flags; /* VIGIL__CQE_* */
} vigil__cqe;
#define VIGIL__CQE_MORE (1u << 0)  /* a multishot op goes on */
#define VIGIL__CQE_BUF  (1u << 1)  /* bits 16-31 hold a buffer id */
#define VIGIL__CQE_MSGOUT (1u << 6) /* a datagram receive's: its buffer starts with the
                                     * vigil__msgout head and the address (op.h) */
/* in loop->rb.carry only (rebuild.c): */
#define VIGIL__CQE_HELD   (1u << 2) /* held for a frozen connection: already accounted */
#define VIGIL__CQE_REPAIR (1u << 3) /* not a completion: repair connection `tag` */
#define VIGIL__CQE_BREAK  (1u << 4) /* not a completion: break connection `tag` with res */
#define VIGIL__CQE_FINISH (1u << 5) /* not a completion: the final callback of op `tag`
                                     * (status res), held behind the gate */

/* Readiness, as a poll request asks for it and its completion reports it
 * (the values of VIGIL_POLL_READABLE and _WRITABLE). */
#define VIGIL__POLL_IN  1u
#define VIGIL__POLL_OUT 2u

/* One piece of a send, in the backend's terms. */
typedef struct vigil__slice { const void *base; size_t len; } vigil__slice;

/* backend->caps */
#define VIGIL__CAP_FILE_RING (1u << 0) /* file calls may run on an io_uring of their own
                                        * (engine.c) beside the loop's */
#define VIGIL__CAP_FALLBACK  (1u << 1) /* the backend a rebuild falls back to when the
                                        * kernel refuses a new one of another kind */
#define VIGIL__CAP_HANDOVER  (1u << 2) /* its kernel objects cannot be replaced: a rebuild
                                        * takes them over (handover) */
#define VIGIL__CAP_FILE_IO   (1u << 3) /* it reads and writes the loop's files itself
                                        * (file_bind, file_rw) */

/* All a backend may use of its loop's data (the calls below and in the
 * rest of this file aside): the receive-buffer pool, the wake fd, the
 * options the loop was made with, the info it reports, and the batch it
 * dispatches from. Set once by vigil_loop_create; a rebuild keeps it. */
typedef struct vigil__be_env {
    const vigil_loop_options *opts;  /* buf_size, buf_count, ring_entries, flags */
    uint8_t *buf_base;               /* buffer id's bytes: buf_base + id * opts->buf_size */
    const uint8_t *buf_state;        /* init takes the buffers in state VIGIL__BUF_KERNEL */
    int wake_fd;                     /* what wake() reads */
    vigil_loop_info *info;           /* the backend fills in features and ring sizes in init */
    pthread_mutex_t *info_lock;      /* ... and holds this to change them later (other threads read) */
    _Atomic uint64_t *cq_overflows;  /* the loop's counter of completion-queue overflows */
    /* When wait() is given a timeout from the loop's run: the vigil__clock_ns
     * it ends at (the next timer's due time, mostly the same from one wait to
     * the next); 0 otherwise. */
    uint64_t wait_until_ns;
    /* The batch being dispatched: completions copied out of the kernel's
     * queue, handed to vigil__dispatch in order; in loop memory so that a
     * fence in a callback leaves the rest [batch_pos + 1, batch_len) for the
     * rebuild to carry. */
    vigil__cqe batch[256];
    uint32_t batch_len, batch_pos;
} vigil__be_env;

/* The backend interface: completion-based and free of OS types. Each start
 * function queues one request tagged with the op; its completions come back
 * through vigil__dispatch() from inside wait(). */
typedef struct vigil__backend {
    const char *name;
    int id;        /* VIGIL_BACKEND_URING or VIGIL_BACKEND_EPOLL; 0 for IOCP */
    uint32_t caps; /* VIGIL__CAP_*: what the core may ask of it beyond the calls below */
    /* creates kernel objects; may run on any thread (rings are created disabled) */
    int (*init)(vigil_loop *loop); /* uses buffers in state VIGIL__BUF_KERNEL only */
    /* first call on the loop thread: bind the kernel objects to it */
    int (*attach)(vigil_loop *loop);
    /* tears down; every op must have had its final completion (or be abandoned) */
    void (*fini)(vigil_loop *loop);
    /* Requests. Each names what it asks for; a backend keeps what it needs
     * of a request in its own memory and reads nothing of the op but its tag
     * (vigil__op_tag). Multishot where the kernel can: accepts, receives. */
    int (*accept)(vigil_loop *loop, vigil__op *op, vigil_socket fd);
    /* a stream's bytes into pool buffers (completions with VIGIL__CQE_BUF) */
    int (*recv)(vigil_loop *loop, vigil__op *op, vigil_socket fd);
    /* datagrams into pool buffers: with VIGIL__CQE_MSGOUT each buffer holds
     * head, address and payload; without, the payload only, and the address
     * lands in one_shot (a struct msghdr of the caller's that lives until
     * the completion; NULL on Windows) */
    int (*recv_dgram)(vigil_loop *loop, vigil__op *op, vigil_socket fd, void *one_shot);
    /* the loop's cross-thread wake: completes once wake_fd was signalled */
    int (*wake)(vigil_loop *loop, vigil__op *op);
    int (*send)(vigil_loop *loop, vigil__op *op, vigil_socket fd, const vigil__slice *s, int n);
    /* len bytes of a file from offset, read by the kernel itself (IOCP:
     * TransmitFile; file is the handle); completes with the bytes sent, 0
     * when the file ended first. NULL: the core sends files from a mapping
     * with send (send_file.c). */
    int (*send_file)(vigil_loop *loop, vigil__op *op, vigil_socket fd, intptr_t file, int64_t offset,
                     uint32_t len);
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
    /* one completion when fd is ready for one of events (VIGIL__POLL_*):
     * res > 0 is which of them (an error or hang-up: all of them); the
     * core does the reading or writing */
    int (*poll)(vigil_loop *loop, vigil__op *op, vigil_socket fd, uint32_t events);
    /* copies up to max completions that an abandoned state still holds (the
     * fenced ring's CQ, queued results) into out; returns how many; call
     * until it returns 0. *overflowed: some were lost in the kernel. */
    uint32_t (*harvest)(void *old_state, vigil__cqe *out, uint32_t max, bool *overflowed);
    /* tears an abandoned state down, from any thread */
    void (*abandon)(void *old_state);
    /* With VIGIL__CAP_HANDOVER, where the kernel objects cannot be replaced
     * (IOCP: a socket stays bound to its completion port for life): the new thread takes the
     * fenced thread's state over as it is instead of harvest, abandon and
     * init. Every request still in flight gets the loop's new epoch (its op
     * is then not issued again) and what the fenced thread had dequeued and
     * not handled is handled by the next wait. */
    int (*handover)(vigil_loop *loop);
    /* With VIGIL__CAP_FILE_IO (IOCP): a file the loop opened joins the
     * backend's kernel object for life (file_bind, on the loop thread); a
     * read or write of it is then a request at offset that completes op
     * (file_rw). Other backends leave file calls to the loop's engines. */
    int (*file_bind)(vigil_loop *loop, intptr_t handle);
    int (*file_rw)(vigil_loop *loop, vigil__op *op, intptr_t handle, void *buf, uint32_t len, int64_t offset,
                   bool write);
} vigil__backend;

extern const vigil__backend vigil__uring_backend;
extern const vigil__backend vigil__epoll_backend;
extern const vigil__backend vigil__iocp_backend; /* Windows */

/* completion dispatch, called by backends (loop.c) */
void vigil__dispatch(vigil_loop *loop, const vigil__cqe *c);
/* a completion from the loop's file engine: valid across rebuilds (any epoch) */
void vigil__dispatch_engine(vigil_loop *loop, const vigil__cqe *c);
void vigil__buf_recycle(vigil_loop *loop, uint32_t id); /* a receive buffer is free again */
/* the op tag names still waits for its request's completion: a readiness
 * backend asks before it acts for it (loop.c) */
bool vigil__tag_live(vigil_loop *loop, uint64_t tag);
/* A backend's records of its requests, by op slot: grows *arr (zeroed
 * entries of elem bytes) until entry slot exists; false when out of memory. */
bool vigil__slot_array_fit(void **arr, uint32_t *cap, uint32_t slot, size_t elem);

#endif
