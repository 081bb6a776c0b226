/*
 * backend.c: the backends Linux has (os/backends.h): io_uring, and epoll
 * where io_uring is missing, refused, or cannot be rebuilt exactly. A build
 * without io_uring (VIGIL_HAVE_URING 0: -During=disabled, or no liburing)
 * has epoll alone.
 */
#include "core/loop.h"
#include "os/backends.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VIGIL_HAVE_URING /* meson defines it: 1 with liburing, 0 without */
#define VIGIL_HAVE_URING 1
#endif

#if VIGIL_HAVE_URING
static const char *uring_unavailable(int rc) {
    switch (rc) {
    case -ENOSYS: return "ENOSYS: the kernel has no io_uring";
    case -EPERM: return "EPERM: denied by a seccomp profile or kernel.io_uring_disabled";
    case -EACCES: return "EACCES: denied by a security module";
    case -EINVAL: return "EINVAL: the kernel rejected every ring setup tried";
    case -ENOTSUP: return "ENOTSUP: a required feature is missing (buffer rings, NODROP, opcodes)";
    default: return NULL; /* a real error (ENOMEM, EMFILE): no fallback */
    }
}
#endif

int vigil__backend_choose(vigil_loop *loop) {
    vigil_backend want = loop->opts.backend;
    const char *how = "forced by option";
    const char *env = getenv("VIGIL_BACKEND");
    if (want == VIGIL_BACKEND_AUTO && env && *env) {
        if (!strcmp(env, "uring") || !strcmp(env, "io_uring"))
            want = VIGIL_BACKEND_URING;
        else if (!strcmp(env, "epoll"))
            want = VIGIL_BACKEND_EPOLL;
        else if (strcmp(env, "auto") != 0)
            return -EINVAL;
        how = "forced by VIGIL_BACKEND";
    }
    if (want == VIGIL_BACKEND_EPOLL) {
        loop->be = &vigil__epoll_backend;
        snprintf(loop->reason, sizeof(loop->reason), "%s", how);
        return loop->be->init(loop);
    }
#if !VIGIL_HAVE_URING
    /* Asked for by name, io_uring fails as a kernel without the features
     * vigil needs does (-ENOTSUP); AUTO takes epoll and says why. */
    if (want == VIGIL_BACKEND_URING)
        return -ENOTSUP;
    loop->be = &vigil__epoll_backend;
    snprintf(loop->reason, sizeof(loop->reason),
             "auto: io_uring not built in (vigil was built with -During=disabled or without liburing)");
    return loop->be->init(loop);
#else
    loop->be = &vigil__uring_backend;
    int rc = loop->be->init(loop);
    if (rc == 0 && want == VIGIL_BACKEND_AUTO && (loop->opts.flags & VIGIL_LOOP_SUPERVISED) &&
        !(loop->info.features & VIGIL_FEATURE_DEFER_TASKRUN)) {
        /* A stuck thread's ring without DEFER_TASKRUN keeps receiving into
         * its buffers: no rebuild could be exact (kernel-facts.md). */
        loop->be->fini(loop);
        memset(&loop->info, 0, sizeof(loop->info));
        loop->be = &vigil__epoll_backend;
        snprintf(loop->reason, sizeof(loop->reason), "auto: supervised, and io_uring without "
                 "DEFER_TASKRUN (%s) cannot be rebuilt exactly",
                 (loop->opts.flags & VIGIL_LOOP_NO_DEFER_TASKRUN) ? "turned off" : "Linux < 6.1");
        return loop->be->init(loop);
    }
    if (rc == 0) {
        snprintf(loop->reason, sizeof(loop->reason), "%s",
                 want == VIGIL_BACKEND_URING ? how : "auto: io_uring available");
        return 0;
    }
    const char *why = uring_unavailable(rc);
    if (want == VIGIL_BACKEND_URING || !why)
        return rc;
    memset(&loop->info, 0, sizeof(loop->info));
    loop->be = &vigil__epoll_backend;
    snprintf(loop->reason, sizeof(loop->reason), "auto: io_uring unavailable (%s)", why);
    return loop->be->init(loop);
#endif
}

/* Out of rings (a limit, memory): epoll still serves. */
const vigil__backend *vigil__backend_fallback(void) { return &vigil__epoll_backend; }
