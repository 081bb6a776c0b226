/*
 * probe.h: what a loop publishes for other threads, and all the supervisor
 * may do to a loop. supervisor.c includes this and runner.h and nothing
 * else of the core, so "the supervisor never touches a live loop's data" is
 * checked by the compiler: it reads these atomics (relaxed unless said),
 * signals the loop thread, moves its runner from CALLBACK to FENCED, and
 * asks for a rebuild, which a thread of rebuild.c carries out.
 */
#ifndef VIGIL_CORE_PROBE_H
#define VIGIL_CORE_PROBE_H

#include "core/runner.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct vigil__probe {
    uint32_t id;                     /* the loop's (vigil_loop_get_id) */
    _Atomic(vigil__runner *) runner; /* the loop thread's; a rebuild replaces it (acquire) */
    atomic_int attached;             /* 0 until a thread owns the loop (acquire) */
    _Atomic int backend;             /* VIGIL_BACKEND_URING or _EPOLL; 0 on Windows */
    _Atomic uint32_t features;       /* the backend's VIGIL_FEATURE_* */
    _Atomic int poll_fd;             /* polls readable while completions or events wait */
    /* what the loop thread is doing */
    _Atomic int op_kind;             /* kind of op being handled (VIGIL__OP_KINDS = a post) */
    _Atomic uint64_t conn;           /* its connection id, or 0 */
    _Atomic(void *) cb;              /* the user function called last */
    _Atomic uintptr_t cb_sp;         /* a stack address just above its frames (vigil's caller's) */
    _Atomic uint64_t next_due_ns;    /* earliest timer or deadline; UINT64_MAX = none */
    _Atomic int posts;               /* posts waiting */
    _Atomic int gated;               /* work waits behind the gate on purpose */
    _Atomic uint32_t gate_released;  /* events the last gate opening let through */
    /* fences and rebuilds */
    _Atomic(vigil__runner *) fence_request; /* test hook: fence this runner now (acquire) */
    _Atomic uint64_t fenced_ns;      /* when the supervisor fenced it */
    _Atomic int rebuilt;             /* 0 while a rebuild takes the loop over; then 1, or -errno */
    _Atomic uint32_t rebuilds_timed; /* rebuilds whose time is in stats.last_rebuild_us (acquire) */
    /* a backtrace of the loop thread, written by its own signal handler */
    void *bt_frames[48];
    _Atomic int bt_n;                /* frames written; -1 while one is requested (acquire) */
    /* progress counters, written by the loop thread only */
    struct {
        _Atomic uint64_t iterations, completions, ops_in_flight, last_progress_ns,
            stale_completions, cq_overflows, enobufs_rearms, accept_emfile, connections,
            deadlines_expired, deadline_shutdowns, rebuilds, conns_migrated, bytes_carried,
            ops_reissued, stuck_returned, stuck_reset, refused_calls, last_rebuild_us, gated,
            events_held, events_held_total;
    } stats;
} vigil__probe;

vigil__probe *vigil__probe_of(vigil_loop *loop); /* loop.c */
const char *vigil__op_kind_name(int kind);       /* loop.c: names probe.op_kind */

/* Takes a fenced loop over on a new thread of rebuild.c's; backend:
 * VIGIL_BACKEND_AUTO for the one it had, or VIGIL_BACKEND_EPOLL. */
int vigil__rebuild_start(vigil_loop *loop, int backend, uint32_t grace_ms);

#endif
