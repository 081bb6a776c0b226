/*
 * fs.c: file calls without blocking the loop thread (vigil.h, "files").
 *
 * Each call is an op of kind VIGIL__OP_FS that owns a job (fs.h). The job
 * goes to the loop's file engine, chosen at the first call: the file ring
 * when the loop runs on io_uring, the worker pool otherwise. The op is
 * marked ENGINE: its request does not live in the backend, so a rebuild
 * neither re-issues it nor treats its completion as stale.
 */
#include "fs.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#define FS_MAX_LEN 0x7ffff000u     /* what one read or write moves at most, as Linux */

/* ------------------------------------------------ the pool's side */

/* Pipes, sockets and terminals can wait for ever: wait for them where a
 * cancel can interrupt, then move bytes without blocking. */
static int pool_rw(vigil__fsjob *j, int cancel_fd) {
    struct stat st;
    bool waitable = fstat(j->fd, &st) == 0 &&
                    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode));
    size_t len = j->len > FS_MAX_LEN ? FS_MAX_LEN : j->len;
    struct iovec iov = {j->buf, len};
    int nowait = waitable ? RWF_NOWAIT : 0;
    for (;;) {
        if (waitable) {
            int rc = vigil__pool_wait_fd(j->fd, j->call == VIGIL__FS_READ ? POLLIN : POLLOUT, cancel_fd);
            if (rc < 0)
                return rc;
        }
        ssize_t n = j->call == VIGIL__FS_READ ? preadv2(j->fd, &iov, 1, j->offset, nowait)
                                              : pwritev2(j->fd, &iov, 1, j->offset, nowait);
        if (n >= 0)
            return (int)n;
        if (errno == EOPNOTSUPP && nowait) {
            nowait = 0; /* an old kernel: the wait above has to do */
            continue;
        }
        if (errno == EINTR || (waitable && errno == EAGAIN))
            continue;
        return -errno;
    }
}

static int pool_run(vigil__job *job, int cancel_fd) {
    vigil__fsjob *j = (vigil__fsjob *)job;
    long rc;
    switch (j->call) {
    case VIGIL__FS_OPEN:
        if (j->beneath)
            rc = syscall(SYS_openat2, j->fd, j->path, &j->how, sizeof(j->how));
        else
            rc = openat(j->fd, j->path, j->flags, j->mode);
        break;
    case VIGIL__FS_READ:
    case VIGIL__FS_WRITE:
        return pool_rw(j, cancel_fd);
    case VIGIL__FS_FSYNC:
        rc = (j->flags & VIGIL_FSYNC_DATA) ? fdatasync(j->fd) : fsync(j->fd);
        break;
    case VIGIL__FS_STAT:
        rc = statx(j->fd, j->path, j->flags, STATX_BASIC_STATS, &j->stx);
        break;
    case VIGIL__FS_CLOSE:
        rc = close(j->fd); /* never retried: on Linux the fd is gone even on EINTR */
        break;
    default:
        return -EINVAL;
    }
    return rc < 0 ? -errno : (int)rc;
}

/* ------------------------------------------------------ the engine */

/* Where file calls go, chosen at the first one: 1 the file ring, 0 the pool. */
static int fs_engine(vigil_loop *loop) {
    if (loop->fs_ring)
        return 1;
    if (!loop->fs_chosen) {
        loop->fs_chosen = true;
        /* if the kernel will not give one more ring (memory, a limit), the pool serves */
        if (loop->be == &vigil__uring_backend && vigil__fs_ring_new(&loop->fs_ring, loop->wake_fd) == 0)
            return 1;
    }
    int rc = vigil__pool_get(loop);
    return rc < 0 ? rc : 0;
}

static int engine_cancel(vigil_loop *loop, vigil__op *op) {
    vigil__fsjob *j = op->u.fs.job;
    if (!(op->flags & VIGIL__OPF_KERNEL) || (op->flags & VIGIL__OPF_CANCELING))
        return 0;
    op->flags |= VIGIL__OPF_CANCELING;
    if (loop->fs_ring)
        return vigil__fs_ring_cancel(loop->fs_ring, j->job.tag); /* the tag it was issued with */
    vigil__pool_cancel(loop->pool, &j->job);
    return 0;
}

/* ------------------------------------------------------- the calls */

static void fs_final(vigil_loop *loop, vigil__op *op, int status) {
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    op->flags |= VIGIL__OPF_USER_DONE;
    loop->engine_live--;
    vigil_fs_cb cb = (vigil_fs_cb)op->cb;
    void *ud = op->ud;
    vigil_op h = vigil__op_handle(loop, op);
    vigil__op_release(loop, op); /* frees the job: nothing of it is used below */
    if (cb)
        VIGIL__CALLBACK(loop, cb(loop, h, status, ud));
}

static int64_t ns_of(struct statx_timestamp t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

void vigil__fs_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    vigil__fsjob *j = op->u.fs.job;
    int res = c->res;
    /* CANCELING is gone by now (the request ended): what asked for the stop stays */
    if ((op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT)) && (res == -ECANCELED || res == -EINTR))
        res = (op->flags & VIGIL__OPF_TIMED_OUT) ? -ETIMEDOUT : -ECANCELED;
    if (j->call == VIGIL__FS_STAT && res == 0) {
        *j->st_out = (vigil_stat){
            .size = j->stx.stx_size, .blocks = j->stx.stx_blocks, .ino = j->stx.stx_ino,
            .dev = makedev(j->stx.stx_dev_major, j->stx.stx_dev_minor), .nlink = j->stx.stx_nlink,
            .mode = j->stx.stx_mode, .uid = j->stx.stx_uid, .gid = j->stx.stx_gid,
            .atime_ns = ns_of(j->stx.stx_atime), .mtime_ns = ns_of(j->stx.stx_mtime),
            .ctime_ns = ns_of(j->stx.stx_ctime)};
    }
    fs_final(loop, op, res);
}

int vigil__fs_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    return engine_cancel(loop, op);
}

void vigil__fs_deadline(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_TIMED_OUT;
    vigil__stat_add(&loop->stats.deadlines_expired, 1);
    engine_cancel(loop, op);
}

static vigil__fsjob *job_new(int call, const char *path) {
    size_t plen = path ? strlen(path) + 1 : 0;
    vigil__fsjob *j = calloc(1, sizeof(*j) + plen);
    if (!j)
        return NULL;
    j->call = (uint8_t)call;
    if (path)
        memcpy(j->path, path, plen);
    j->job.run = pool_run;
    return j;
}

static int fs_start(vigil_loop *loop, vigil__fsjob *j, uint32_t deadline_ms, vigil_fs_cb cb, void *ud,
                    vigil_op *out) {
    int on_ring = loop->destroying ? -ESHUTDOWN : fs_engine(loop);
    int rc = on_ring;
    vigil__op *op = rc < 0 ? NULL : vigil__op_new(loop, VIGIL__OP_FS);
    if (!op) {
        free(j);
        return rc < 0 ? rc : -ENOMEM;
    }
    op->cb = (void *)cb;
    op->ud = ud;
    op->u.fs.job = j;
    op->flags |= VIGIL__OPF_ENGINE;
    j->job.tag = vigil__op_tag(loop, op);
    rc = on_ring ? vigil__fs_ring_submit(loop->fs_ring, j, j->job.tag) : vigil__pool_submit(loop->pool, &j->job);
    if (rc < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return rc;
    }
    vigil__engine_started(loop, op, deadline_ms, out);
    return 0;
}

int vigil_fs_open(vigil_loop *loop, int dir_fd, const char *path, int flags, uint32_t mode,
                  uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (!path || !cb) /* without a callback the fd would be lost */
        return -EINVAL;
    vigil__fsjob *j = job_new(VIGIL__FS_OPEN, path);
    if (!j)
        return -ENOMEM;
    j->fd = dir_fd;
    j->beneath = (flags & VIGIL_O_BENEATH) != 0;
    j->flags = (flags & ~VIGIL_O_BENEATH) | O_CLOEXEC;
    j->mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0; /* openat2 refuses a stray mode */
    j->how = (struct open_how){.flags = (uint64_t)(unsigned)j->flags, .mode = j->mode,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    return fs_start(loop, j, deadline_ms, cb, ud, op);
}

static int fs_rw(vigil_loop *loop, int call, int fd, void *buf, size_t len, int64_t offset,
                 uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    if (fd < 0)
        return -EBADF;
    if ((!buf && len) || offset < -1)
        return -EINVAL;
    vigil__fsjob *j = job_new(call, NULL);
    if (!j)
        return -ENOMEM;
    j->fd = fd;
    j->buf = buf;
    j->len = len;
    j->offset = offset;
    return fs_start(loop, j, deadline_ms, cb, ud, op);
}

int vigil_fs_read(vigil_loop *loop, int fd, void *buf, size_t len, int64_t offset,
                  uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    return fs_rw(loop, VIGIL__FS_READ, fd, buf, len, offset, deadline_ms, cb, ud, op);
}

int vigil_fs_write(vigil_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                   uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    return fs_rw(loop, VIGIL__FS_WRITE, fd, (void *)buf, len, offset, deadline_ms, cb, ud, op);
}

int vigil_fs_fsync(vigil_loop *loop, int fd, uint32_t flags, uint32_t deadline_ms, vigil_fs_cb cb,
                   void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (fd < 0)
        return -EBADF;
    if (flags & ~VIGIL_FSYNC_DATA)
        return -EINVAL;
    vigil__fsjob *j = job_new(VIGIL__FS_FSYNC, NULL);
    if (!j)
        return -ENOMEM;
    j->fd = fd;
    j->flags = (int)flags;
    return fs_start(loop, j, deadline_ms, cb, ud, op);
}

int vigil_fs_stat(vigil_loop *loop, int dir_fd, const char *path, vigil_stat *out,
                  uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (!path || !out)
        return -EINVAL;
    vigil__fsjob *j = job_new(VIGIL__FS_STAT, path);
    if (!j)
        return -ENOMEM;
    j->fd = dir_fd;
    j->flags = path[0] ? 0 : AT_EMPTY_PATH;
    j->st_out = out;
    return fs_start(loop, j, deadline_ms, cb, ud, op);
}

int vigil_fs_close(vigil_loop *loop, int fd, vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (fd < 0)
        return -EBADF;
    vigil__fsjob *j = job_new(VIGIL__FS_CLOSE, NULL);
    if (!j)
        return -ENOMEM;
    j->fd = fd;
    return fs_start(loop, j, 0, cb, ud, op);
}

