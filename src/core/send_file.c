/*
 * send_file.c: a file's bytes as a message in a connection's send queue
 * (vigil_conn_send_file). The message is a send op like any other: tcp.c
 * orders it with the rest, applies confirmed bytes to it and carries it
 * across a rebuild. What is different is where its bytes come from, and
 * that is here.
 *
 * Where the backend sends files itself (IOCP: TransmitFile), the message
 * goes out alone, as one request for the rest of it from its next unsent
 * byte. Elsewhere (io_uring, epoll) its file is mapped read-only (the
 * loop keeps the mapping for the file's next messages: os/linux/files.c)
 * and the pump sends from the mapping as from any buffer: the
 * kernel copies from the page cache into the socket, the one copy a send
 * from a buffer of ours would make too, after a read into it. A page not in
 * memory would make that send wait for the disk on the loop thread, so
 * before each window of the mapping goes, mincore says how much of it is
 * in; when nothing is, a fill op faults the window in on the loop's pool
 * (MADV_POPULATE_READ) and the pump goes on when it returns. Only the
 * kernel touches the mapping: a file cut short meanwhile is an -EFAULT from
 * the fill or the send, never a SIGBUS, and the message fails -ENODATA
 * (tcp.c breaks the stream: its bytes cannot be skipped).
 *
 * The fill names its message by slot and generation, never by pointer: a
 * message that ended while its fill ran (cancelled, failed, the loop
 * rebuilt) is simply not found when the fill comes back. Its pages are read
 * in for nothing then, which is harmless; so is a fill of a range unmapped
 * meanwhile (madvise fails, nothing is touched).
 */
#include "core/engine.h"
#include "os/files.h"

#include <errno.h>
#include <stdlib.h>

/* Bytes of a mapping one send may carry, and one fill reads in: 256 pages,
 * more than a socket takes at once. */
#define WINDOW (1u << 20)

struct vigil__file_msg {
    vigil__file_src src;
    int64_t offset; /* of the message's first byte in the file */
    bool filling;   /* a fill of the window at the next unsent byte runs */
    bool filled;    /* ... and came back: that window goes without another look */
};

int vigil__file_msg_new(vigil_loop *loop, int fd, int64_t offset, size_t len, vigil__file_msg **out) {
    vigil__file_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rc = vigil__file_src_open(loop, &m->src, fd, offset, len);
    if (rc < 0) {
        free(m);
        return rc;
    }
    m->offset = offset;
    *out = m;
    return 0;
}

uint8_t *vigil__file_msg_data(vigil__file_msg *m) { return (uint8_t *)m->src.data; }

void vigil__file_msg_free(vigil_loop *loop, vigil__file_msg *m) {
    vigil__file_src_close(loop, &m->src);
    free(m);
}

int vigil__file_msg_transmit(vigil_loop *loop, vigil__conn *c, vigil__op *op) {
    vigil__file_msg *m = op->u.send.block;
    uint32_t done = op->u.send.done;
    return loop->be->send_file(loop, op, c->fd, m->src.handle, m->offset + done, op->u.send.len - done);
}

/* ---------------------------------------------------------------- fill */

typedef struct vigil__filljob {
    vigil__job job; /* first: the pool's part */
    const uint8_t *p;
    size_t n;
    uint32_t send_slot, send_gen; /* the message it reads for */
    uint64_t conn_id;
} vigil__filljob;

static int fill_run(vigil__job *job, int cancel_fd) {
    (void)cancel_fd; /* a page fault cannot be interrupted; destroy may abandon it */
    vigil__filljob *j = (vigil__filljob *)job;
    return vigil__file_populate(j->p, j->n);
}

/* Starts reading [p, p + n) in for op; false when the pool cannot take it
 * (full, or no thread): the window then goes as it is, and the kernel's
 * send reads what is missing on the loop thread (slow, but nothing lost). */
static bool fill_start(vigil_loop *loop, vigil__conn *c, vigil__op *op, const uint8_t *p, size_t n) {
    if (loop->destroying || vigil__pool_get(loop) < 0)
        return false;
    vigil__filljob *j = calloc(1, sizeof(*j));
    vigil__op *f = j ? vigil__op_new(loop, VIGIL__OP_FILL) : NULL;
    if (!f) {
        free(j);
        return false;
    }
    *j = (vigil__filljob){.p = p, .n = n, .send_slot = op->self, .send_gen = op->gen,
                          .conn_id = vigil__conn_id(loop, c)};
    j->job.run = fill_run;
    j->job.detachable = true; /* it touches only the block (and the kernel the pages) */
    j->job.tag = vigil__op_tag(loop, f);
    f->u.engine.job = &j->job;
    f->flags |= VIGIL__OPF_ENGINE;
    if (vigil__pool_submit(loop->pool, &j->job) < 0) {
        f->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, f);
        return false;
    }
    vigil__engine_started(loop, f, 0, NULL);
    ((vigil__file_msg *)op->u.send.block)->filling = true;
    return true;
}

size_t vigil__file_msg_window(vigil_loop *loop, vigil__conn *c, vigil__op *op, vigil__slice *s) {
    vigil__file_msg *m = op->u.send.block;
    if (m->filling)
        return 0;
    const uint8_t *p = op->u.send.data + op->u.send.done;
    size_t left = op->u.send.len - op->u.send.done, n = left < WINDOW ? left : WINDOW;
    size_t in = m->filled ? n : vigil__file_resident(p, n);
    m->filled = false;
    if (in == 0 && fill_start(loop, c, op, p, n))
        return 0;
    *s = (vigil__slice){p, in ? in : n};
    return s->len;
}

/* Back from the pool, in the loop's dispatch (no callback of the program's
 * runs around it, so breaking the stream may call them). */
static void fill_complete(vigil_loop *loop, vigil__op *f, const vigil__cqe *e) {
    vigil__filljob *j = (vigil__filljob *)f->u.engine.job;
    uint32_t slot = j ? j->send_slot : 0, gen = j ? j->send_gen : 0;
    uint64_t conn_id = j ? j->conn_id : 0;
    f->flags |= VIGIL__OPF_USER_DONE;
    loop->engine_live--;
    vigil__op_release(loop, f);
    vigil__op *op = j ? vigil__op_at(loop, slot) : NULL;
    vigil__conn *c = vigil__conn_from_id(loop, conn_id);
    if (!op || op->kind != VIGIL__OP_SEND || op->gen != gen || !(op->flags & VIGIL__OPF_FILE) || !c)
        return; /* the message ended meanwhile */
    vigil__file_msg *m = op->u.send.block;
    m->filling = false;
    if (e->res == -ECANCELED || loop->destroying || (op->flags & VIGIL__OPF_STOPPED))
        return; /* (stopped: cancelled or failed, its callback on the way) */
    if (e->res == -EFAULT || e->res == -EIO) { /* the file ended before the message, or the disk failed */
        vigil__tcp_break(loop, c, e->res == -EFAULT ? -ENODATA : -EIO);
        return;
    }
    m->filled = true; /* read in, or (another error) sent as it is */
    vigil__tcp_pump(loop, c);
}

static int fill_cancel(vigil_loop *loop, vigil__op *f) {
    vigil__pool_cancel(loop->pool, f->u.engine.job); /* a queued one ends at once */
    return 0;
}

/* on the loop's pool (OPF_ENGINE: a rebuild leaves it there); held behind a
 * rebuild's gate like any completion (it may break a stream) */
const vigil__op_class vigil__fill_class = {
    .name = "file fill",
    .complete = fill_complete,
    .cancel = fill_cancel,
    .release = vigil__engine_release,
    .job = vigil__engine_job,
};

_Static_assert(offsetof(vigil__filljob, job) == 0, "the engine frees a job by its pool part");
