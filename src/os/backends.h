/*
 * backends.h: which backends this OS has (os/linux/backend.c,
 * os/win/backend.c): the one a new loop gets, and the one a rebuild falls
 * back to. Free of core types beyond a name, so the supervisor may ask too.
 */
#ifndef VIGIL_OS_BACKENDS_H
#define VIGIL_OS_BACKENDS_H

#include "vigil.h"

struct vigil__backend; /* core/backend.h */

/* Picks and initialises a new loop's backend (loop->be, from opts.backend
 * and VIGIL_BACKEND: see vigil_backend in vigil.h) and says why in
 * loop->reason: 0 or -errno. */
int vigil__backend_choose(vigil_loop *loop);

/* The backend a rebuild turns to when the kernel refuses a new one of the
 * loop's kind, and the one the restart budget's VIGIL_BUDGET_EPOLL rebuilds
 * a loop on: epoll on Linux; NULL on Windows, which has IOCP only. */
const struct vigil__backend *vigil__backend_fallback(void);

#endif
