/*
 * fs_none.c: the file ring where io_uring is not built in (-During=disabled,
 * or no liburing when vigil was built). Only an io_uring loop asks for a
 * file ring (VIGIL__CAP_FILE_RING) and there is none, so file calls always
 * go to the worker pool: this keeps os/linux/files.c one file for both
 * builds, and says so if it is ever asked.
 */
#include "core/engine.h"
#include "core/fs.h"

#include <errno.h>

int vigil__fs_ring_new(vigil__fs_ring **out, int wake_fd) {
    (void)wake_fd;
    *out = NULL;
    return -ENOTSUP;
}

int vigil__fs_ring_submit(vigil__fs_ring *r, vigil__fsjob *j, uint64_t tag) {
    (void)r, (void)j, (void)tag;
    return -ENOTSUP;
}

int vigil__fs_ring_cancel(vigil__fs_ring *r, uint64_t tag) {
    (void)r, (void)tag;
    return -ENOTSUP;
}

void vigil__fs_ring_opened(vigil__fs_ring *r, int fd) { (void)r, (void)fd; }
void vigil__fs_ring_flush(vigil__fs_ring *r) { (void)r; }
bool vigil__fs_ring_take(vigil__fs_ring *r, vigil__cqe *out) { return (void)r, (void)out, false; }
bool vigil__fs_ring_ready(vigil__fs_ring *r) { return (void)r, false; }
int vigil__fs_ring_wait(vigil__fs_ring *r, int timeout_ms) { return (void)r, (void)timeout_ms, -ETIME; }
void vigil__fs_ring_free(vigil__fs_ring *r) { (void)r; }
