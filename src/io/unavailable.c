/*
 * unavailable.c: the calls a system does not have yet, each refused with
 * -ENOTSUP (never a silent no-op), and the core's hooks for them, which
 * then have nothing to do. Built on Windows, where signals have no
 * signalfd and file calls wait for the IOCP backend (overlapped ReadFile
 * and WriteFile on the loop's port, docs/windows.md).
 */
#include "io/engine.h"

#include <errno.h>

/* signals */
int vigil_signal_start(vigil_loop *loop, int signo, vigil_signal_cb cb, void *ud, vigil_op *op) {
    (void)loop, (void)signo, (void)cb, (void)ud, (void)op;
    return -ENOTSUP;
}
/* no watcher can exist, so these never find one */
int vigil__signal_cancel(vigil_loop *loop, vigil__op *op) { return -EBADF; }
void vigil__signal_finish(vigil_loop *loop, vigil__op *op, int status) {}
void vigil__signal_ready(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {}
void vigil__signals_run(vigil_loop *loop) { loop->sig_q_pos = loop->sig_q_n = 0; }
void vigil__signals_destroy(vigil_loop *loop) {}

/* file calls */
int vigil_fs_open(vigil_loop *loop, int dir_fd, const char *path, int flags, uint32_t mode,
                  uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    return -ENOTSUP;
}
int vigil_fs_read(vigil_loop *loop, int fd, void *buf, size_t len, int64_t offset, uint32_t deadline_ms,
                  vigil_fs_cb cb, void *ud, vigil_op *op) {
    return -ENOTSUP;
}
int vigil_fs_write(vigil_loop *loop, int fd, const void *buf, size_t len, int64_t offset,
                   uint32_t deadline_ms, vigil_fs_cb cb, void *ud, vigil_op *op) {
    return -ENOTSUP;
}
int vigil_fs_fsync(vigil_loop *loop, int fd, uint32_t flags, uint32_t deadline_ms, vigil_fs_cb cb, void *ud,
                   vigil_op *op) {
    return -ENOTSUP;
}
int vigil_fs_stat(vigil_loop *loop, int dir_fd, const char *path, vigil_stat *out, uint32_t deadline_ms,
                  vigil_fs_cb cb, void *ud, vigil_op *op) {
    return -ENOTSUP;
}
int vigil_fs_close(vigil_loop *loop, int fd, vigil_fs_cb cb, void *ud, vigil_op *op) { return -ENOTSUP; }
/* no file op can exist */
int vigil__fs_cancel(vigil_loop *loop, vigil__op *op) { return -EBADF; }
void vigil__fs_deadline(vigil_loop *loop, vigil__op *op) {}
void vigil__fs_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {}
