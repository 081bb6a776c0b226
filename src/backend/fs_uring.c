/*
 * fs_uring.c: the loop's file ring (see fs.h for why it is not the
 * backend's ring).
 *
 * Set up with no flags: no SINGLE_ISSUER (after a rebuild another thread
 * submits), no DEFER_TASKRUN or COOP_TASKRUN (io-wq workers post their
 * completions at once, whatever the submitting thread is doing). The loop's
 * wake fd is registered as the ring's eventfd, so a completion wakes the
 * loop through the wake read it already has on every backend.
 */
#include "core/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FS_RING_ENTRIES 256

struct vigil__fs_ring {
    struct io_uring ring;
    unsigned queued; /* prepared, not yet submitted */
    /* fds this ring opened and has not closed, one bit each: never a socket
     * (an open of one fails -ENXIO), so their close may run inline */
    uint64_t *opened;
    size_t opened_words;
};

int vigil__fs_ring_new(vigil__fs_ring **out, int wake_fd) {
    vigil__fs_ring *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    p.cq_entries = FS_RING_ENTRIES * 16;
    int rc = io_uring_queue_init_params(FS_RING_ENTRIES, &r->ring, &p);
    if (rc < 0) {
        free(r);
        return rc;
    }
    if (!(p.features & IORING_FEAT_NODROP)) { /* a full CQ would lose completions */
        io_uring_queue_exit(&r->ring);
        free(r);
        return -ENOTSUP;
    }
    if ((rc = io_uring_register_eventfd(&r->ring, wake_fd)) < 0) {
        io_uring_queue_exit(&r->ring);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void vigil__fs_ring_flush(vigil__fs_ring *r) {
    if (!r || !r->queued)
        return;
    int rc;
    do
        rc = io_uring_submit(&r->ring);
    while (rc == -EINTR);
    if (rc >= 0)
        r->queued -= (unsigned)rc < r->queued ? (unsigned)rc : r->queued;
    /* -EAGAIN/-EBUSY: the kernel is short of memory or the CQ is full;
     * the requests stay queued and go with the next flush. */
}

static struct io_uring_sqe *get_sqe(vigil__fs_ring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        vigil__fs_ring_flush(r);
        sqe = io_uring_get_sqe(&r->ring);
    }
    if (sqe)
        r->queued++;
    return sqe;
}

void vigil__fs_ring_opened(vigil__fs_ring *r, int fd) {
    size_t w = (size_t)fd / 64;
    if (w >= r->opened_words) {
        size_t n = r->opened_words ? r->opened_words : 16;
        while (n <= w)
            n *= 2;
        uint64_t *p = realloc(r->opened, n * sizeof(*p));
        if (!p)
            return; /* its close asks the kernel for the type instead */
        memset(p + r->opened_words, 0, (n - r->opened_words) * sizeof(*p));
        r->opened = p;
        r->opened_words = n;
    }
    r->opened[w] |= 1ull << (fd % 64);
}

static bool closes_inline(vigil__fs_ring *r, int fd) {
    size_t w = (size_t)fd / 64;
    if (fd >= 0 && w < r->opened_words && (r->opened[w] >> (fd % 64) & 1)) {
        r->opened[w] &= ~(1ull << (fd % 64));
        return true; /* opened here: a file, a directory, a FIFO or a device */
    }
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) < 0)
        return false;
    return S_ISREG(stx.stx_mode) || S_ISDIR(stx.stx_mode);
}

int vigil__fs_ring_submit(vigil__fs_ring *r, vigil__fsjob *j, uint64_t tag) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EAGAIN;
    unsigned len = j->len > 0x7ffff000u ? 0x7ffff000u : (unsigned)j->len;
    switch (j->call) {
    case VIGIL__FS_OPEN:
        if (j->beneath) {
            io_uring_prep_openat2(sqe, j->fd, j->path, &j->how);
        } else {
            io_uring_prep_openat(sqe, j->fd, j->path, j->flags, j->mode);
        }
        break;
    case VIGIL__FS_READ:
        io_uring_prep_read(sqe, j->fd, j->buf, len, (uint64_t)j->offset);
        break;
    case VIGIL__FS_WRITE:
        io_uring_prep_write(sqe, j->fd, j->buf, len, (uint64_t)j->offset);
        break;
    case VIGIL__FS_FSYNC:
        io_uring_prep_fsync(sqe, j->fd, (j->flags & VIGIL_FSYNC_DATA) ? IORING_FSYNC_DATASYNC : 0);
        break;
    case VIGIL__FS_STAT:
        io_uring_prep_statx(sqe, j->fd, j->path, j->flags, STATX_BASIC_STATS, &j->stx);
        break;
    case VIGIL__FS_CLOSE:
        /* A file without ->flush (a socket) is closed inline, and its last
         * fput then runs as task work of the submitter, the loop thread,
         * where a socket with SO_LINGER and unsent bytes would hold it for
         * the whole linger time (a terminal's close can wait to drain too).
         * So an fd this ring did not open, unless it is a regular file or a
         * directory, closes on an io-wq worker; the rest close inline, a
         * thread hop cheaper (the type comes from cached attributes: no
         * round trip to an NFS server). */
        io_uring_prep_close(sqe, j->fd);
        if (!closes_inline(r, j->fd))
            io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
        break;
    default:
        io_uring_prep_nop(sqe);
        break;
    }
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vigil__fs_ring_cancel(vigil__fs_ring *r, uint64_t tag) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return -EAGAIN;
    io_uring_prep_cancel64(sqe, tag, 0);
    io_uring_sqe_set_data64(sqe, VIGIL__TAG_IGNORE);
    return 0;
}

bool vigil__fs_ring_ready(vigil__fs_ring *r) { return r && io_uring_cq_ready(&r->ring) > 0; }

bool vigil__fs_ring_take(vigil__fs_ring *r, vigil__cqe *out) {
    struct io_uring_cqe *cqe;
    if (!r || io_uring_peek_cqe(&r->ring, &cqe) != 0)
        return false; /* the peek also flushes a CQ that overflowed into the kernel */
    *out = (vigil__cqe){cqe->user_data, cqe->res, 0};
    io_uring_cqe_seen(&r->ring, cqe);
    return true;
}

int vigil__fs_ring_wait(vigil__fs_ring *r, int timeout_ms) {
    vigil__fs_ring_flush(r);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000ll};
    int rc;
    do
        rc = io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
    while (rc == -EINTR);
    return rc;
}

void vigil__fs_ring_free(vigil__fs_ring *r) {
    if (!r)
        return;
    io_uring_queue_exit(&r->ring);
    free(r->opened);
    free(r);
}
