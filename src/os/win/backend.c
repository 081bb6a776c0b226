/*
 * backend.c: the backend Windows has (os/backends.h): the I/O completion
 * port, and nothing to fall back to.
 */
#include "core/loop.h"
#include "os/backends.h"

#include <errno.h>
#include <stdio.h>

int vigil__backend_choose(vigil_loop *loop) {
    if (loop->opts.backend != VIGIL_BACKEND_AUTO)
        return -ENOTSUP; /* io_uring and epoll are Linux's */
    loop->be = &vigil__iocp_backend;
    snprintf(loop->reason, sizeof(loop->reason), "windows: I/O completion port");
    return loop->be->init(loop);
}

const vigil__backend *vigil__backend_fallback(void) { return NULL; }
