/*
 * signal.h: signals as events (os/linux/signal.c: one signalfd for every
 * watched signal; os/win/signal.c refuses them).
 */
#ifndef VIGIL_CORE_SIGNAL_H
#define VIGIL_CORE_SIGNAL_H

#include "core/op.h"
#include "os/platform.h"

/* The signals' part of a loop. Signals read and not yet delivered to every
 * watcher stay in loop memory, so a fence leaves the rest for the rebuild. */
typedef struct vigil__signals {
    int fd;                    /* the signalfd, or -1 */
    vigil__sigset mask;        /* the signals watched (empty on Windows) */
    uint32_t *watch;           /* watcher op slots + 1, in start order */
    uint32_t watch_n, watch_cap;
    uint32_t read;             /* the SIGREAD op: slot + 1, or 0 */
    int32_t q[32];             /* signals read, */
    uint32_t q_pos, q_n, w_pos;/* and how far their delivery got */
} vigil__signals;

void vigil__signals_run(vigil_loop *loop);     /* deliver what was read */
void vigil__signals_destroy(vigil_loop *loop); /* every watcher's final callback */

#endif
