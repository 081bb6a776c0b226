/*
 * fs.c: file calls without blocking the loop thread (vigil.h, "files"),
 * on every OS: the calls' checks, their ops and their final callbacks.
 *
 * Each call is an op of kind VIGIL__OP_FS that owns a job (fs.h). The OS's
 * side takes the job (os/linux/files.c: the file ring when the loop runs
 * on io_uring, else the worker pool; os/win/files.c: the loop's completion
 * port for reads and writes of files the loop opened, else the pool). The op is
 * marked ENGINE: its request does not live in the backend's fenced state,
 * so a rebuild neither re-issues it nor treats its completion as stale.
 */
#include "core/fs.h"
#include "os/platform.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ the engine */

static int engine_cancel(vigil_loop *loop, vigil__op *op) {
    if (!(op->flags & VIGIL__OPF_KERNEL) || (op->flags & VIGIL__OPF_CANCELING))
        return 0;
    op->flags |= VIGIL__OPF_CANCELING;
    return vigil__fs_os_cancel(loop, op, op->u.fs.job);
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
        VIGIL__CALLBACK(loop, cb, (loop, h, status, ud));
}

static void fs_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    int res = c->res;
    /* CANCELING is gone by now (the request ended): what asked for the stop stays */
    if ((op->flags & (VIGIL__OPF_STOPPED | VIGIL__OPF_TIMED_OUT)) && (res == -ECANCELED || res == -EINTR))
        res = (op->flags & VIGIL__OPF_TIMED_OUT) ? -ETIMEDOUT : -ECANCELED;
    /* no job: destroy abandoned it to a stuck worker (engine.c), res is -ECANCELED */
    fs_final(loop, op, op->u.fs.job ? vigil__fs_os_done(loop, op->u.fs.job, res) : res);
}

static int fs_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    return engine_cancel(loop, op);
}

static void fs_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    op->flags |= VIGIL__OPF_TIMED_OUT;
    vigil__stat_add(&loop->sv.stats.deadlines_expired, 1);
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
    return j;
}

static int fs_start(vigil_loop *loop, vigil__fsjob *j, vigil_fs_cb cb, void *ud,
                    vigil_op *out) {
    vigil__op *op = loop->destroying ? NULL : vigil__op_new(loop, VIGIL__OP_FS);
    if (!op) {
        free(j);
        return loop->destroying ? -VIGIL_ESHUTDOWN : -ENOMEM;
    }
    op->cb = (void *)cb;
    op->ud = ud;
    op->u.fs.job = j;
    op->flags |= VIGIL__OPF_ENGINE;
    j->job.tag = vigil__op_tag(loop, op);
    vigil__fs_os_prepare(j);
    int rc = vigil__fs_os_submit(loop, op, j);
    if (rc < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return rc;
    }
    vigil__engine_started(loop, op, 0, out); /* a deadline: vigil_op_set_deadline */
    return 0;
}

int vigil_fs_open(vigil_loop *loop, int dir_fd, const char *path, int flags, uint32_t mode,
                  vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (!path || !cb) /* without a callback the fd would be lost */
        return -EINVAL;
    vigil__fsjob *j = job_new(VIGIL__FS_OPEN, path);
    if (!j)
        return -ENOMEM;
    j->fd = dir_fd;
    j->beneath = (flags & VIGIL_O_BENEATH) != 0;
    j->flags = flags & ~(VIGIL_O_BENEATH | VIGIL_O_DIRECTORY);
    if (flags & VIGIL_O_DIRECTORY)
        j->flags |= vigil__o_directory;
    j->mode = mode;
    return fs_start(loop, j, cb, ud, op);
}

static int fs_rw(vigil_loop *loop, int call, int fd, void *buf, size_t len, int64_t offset,
                 vigil_fs_cb cb, void *ud, vigil_op *op) {
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
    return fs_start(loop, j, cb, ud, op);
}

int vigil_fs_read(vigil_loop *loop, int fd, void *buf, size_t len, int64_t offset, vigil_fs_cb cb,
                  void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    return fs_rw(loop, VIGIL__FS_READ, fd, buf, len, offset, cb, ud, op);
}

int vigil_fs_write(vigil_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                   vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    return fs_rw(loop, VIGIL__FS_WRITE, fd, (void *)buf, len, offset, cb, ud, op);
}

int vigil_fs_fsync(vigil_loop *loop, int fd, uint32_t flags, vigil_fs_cb cb, void *ud,
                   vigil_op *op) {
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
    return fs_start(loop, j, cb, ud, op);
}

int vigil_fs_stat(vigil_loop *loop, int dir_fd, const char *path, vigil_stat *out, vigil_fs_cb cb,
                  void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (!path || !out)
        return -EINVAL;
    vigil__fsjob *j = job_new(VIGIL__FS_STAT, path);
    if (!j)
        return -ENOMEM;
    j->fd = dir_fd; /* with path "": the file itself */
    j->st_out = out;
    return fs_start(loop, j, cb, ud, op);
}

int vigil_fs_close(vigil_loop *loop, int fd, vigil_fs_cb cb, void *ud, vigil_op *op) {
    VIGIL__API(loop, 0);
    if (fd < 0)
        return -EBADF;
    vigil__fsjob *j = job_new(VIGIL__FS_CLOSE, NULL);
    if (!j)
        return -ENOMEM;
    j->fd = fd;
    return fs_start(loop, j, cb, ud, op);
}


/* ------------------------------------------------------ the op class */

_Static_assert(offsetof(vigil__fsjob, job) == 0, "the engine frees a job by its pool part");

/* Its request is in the loop's file engine, not the backend (OPF_ENGINE):
 * a rebuild leaves it where it is. */
const vigil__op_class vigil__fs_class = {
    .name = "fs",
    .complete = fs_complete,
    .cancel = fs_cancel,
    .deadline = fs_deadline,
    .release = vigil__engine_release,
    .job = vigil__engine_job,
};
