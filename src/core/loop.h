/*
 * loop.h: the loop, made of the parts each module owns. The lifetime
 * contract of ops is at the top of op.h; the backend seam in backend.h; the
 * runner state machine in runner.h; what other threads may read in probe.h.
 *
 * Ordering contract of one pass through the loop (loop.c):
 *   1. expired timers and deadlines, in (due time, start order);
 *   2. the later list: final callbacks that need no kernel completion;
 *   3. posted callbacks, in post order;
 *   4. the backend waits (not at all if 1-3 left work) and dispatches
 *      completions in the order the kernel posted them.
 */
#ifndef VIGIL_CORE_LOOP_H
#define VIGIL_CORE_LOOP_H

#include "core/backend.h"
#include "core/conn.h"
#include "core/debug.h"
#include "core/op.h"
#include "core/probe.h"
#include "core/rebuild.h"
#include "core/runner.h"
#include "core/signal.h"
#include "core/timer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct vigil__post {
    struct vigil__post *next;
    vigil_post_cb fn;
    void *arg;
} vigil__post;

struct vigil_loop {
    vigil__probe sv;            /* what other threads read: first, apart from the rest */
    const vigil__backend *be;
    void *be_state;
    vigil_loop_options opts;
    vigil_loop_info info;       /* changes under owner_lock (other threads read it) */
    char reason[128];
    uint32_t id;
    uint16_t handle_tag;        /* in every handle of the loop's (loop.c) */
    uint8_t epoch;              /* in every tag: a fenced backend's completions are stale */

    /* the loop thread (fence.c, owner.c) */
    vigil__runner *cur_runner;  /* runner while inside vigil_loop_run, else NULL */
    int in_callback;            /* depth of user callbacks */
    uint64_t callbacks;         /* user callbacks called (RUN_ONCE: did one run?) */
    int running;
    bool destroying;

    /* the op and connection tables: chunks that never move */
    vigil__table ops, conns;
    uint32_t ops_free, conns_free; /* free list heads: slot + 1 */
    uint32_t live_conns, live_listeners, live_timers, live_polls;

    vigil__timers tm;           /* timer.c */
    vigil__queue later;         /* ops whose final callback needs no completion */
    vigil__queue buf_wait;      /* connections waiting for receive buffers */

    /* receive buffers: one mapping of buf_count * buf_size bytes */
    uint8_t *buf_base;
    size_t buf_map_len;
    uint8_t *buf_state;         /* VIGIL__BUF_* per buffer */
    vigil__parked *buf_park;    /* per buffer: its place in a paused stream's queue (tcp.c) */
    uint32_t bufs_free;         /* buffers the kernel can receive into */
    uint32_t buf_current;       /* buffer in the current receive callback, or UINT32_MAX */

    /* freed send copies, by power-of-two size class (64 B .. 64 KiB), so a
     * busy stream does not malloc/free (and page-fault) every message */
    void *send_cache[11];
    size_t send_cached;
    /* connections (ids) whose queued sends start before the wait (tcp.c) */
    uint64_t *pump_ids;
    uint32_t pump_n, pump_cap;

    vigil__be_env env;          /* all the backend may use of the loop (backend.h) */
    /* later-list entries and posts taken for this pass and not yet run: a
     * fence in one of their callbacks leaves the rest in loop memory */
    uint32_t later_run;
    struct vigil__post *posts_run;

    /* ops outside the backend (engine.c): the file ring (io_uring loops),
     * the worker pool, both made on first use; their ops not yet final */
    struct vigil__fs_ring *fs_ring;
    struct vigil__pool *pool;
    uint32_t engine_live;
    bool fs_chosen;
    intptr_t *port_files;       /* Windows (os/win/files.c): by fd, the handle of a file */
    uint32_t port_files_cap;    /* bound to the port, or 0; unused elsewhere */
    struct vigil__file_maps *file_maps; /* Linux (os/linux/files.c): files mapped for file messages */

    vigil__signals sig;         /* os/linux/signal.c */

    /* cross-thread */
    pthread_mutex_t post_lock;
    vigil__post *post_head, *post_tail;
    _Atomic(void *) user_data;  /* vigil_loop_set_data: any thread */
    atomic_int wake_pending;
    atomic_int stop_requested;
    int wake_fd;                /* the loop's, not a backend's: it outlives rebuilds */

    vigil__rebuild_state rb;          /* rebuild.c */

    /* which thread runs it (owner.c) */
    pthread_mutex_t owner_lock; /* info, run_done, handoff: between a rebuilt loop's thread and others */
    pthread_cond_t owner_cond;
    bool run_done;              /* a rebuilt loop's thread finished running it */
    int run_result;             /* ... and how its run ended */
    bool owned_by_vigil;        /* the owner is a thread of vigil's (after a rebuild) */
    struct vigil__handoff *handoff; /* a destroy asked of that thread */
    bool rehome;                /* handed over: the next thread makes its backend anew */
    struct vigil__runner *retired; /* runners of threads that handed it over */
    vigil__sigset serve_mask;   /* what vigil_serve waits for: blocked on vigil's threads */

    uint32_t debug_library_spin_ms; /* test hooks (debug.h) */
    uint32_t debug_udp_full;
};

void vigil__run_later(vigil_loop *loop); /* the later list, now */
/* vigil_loop_run without its wait for a rebuilt loop: -EOWNERDEAD when fenced */
int vigil__run(vigil_loop *loop, vigil_run_mode mode, int timeout_ms);
/* vigil_loop_join, and how the loop's run ended there (*result: 0, 1 or -errno) */
int vigil__join(vigil_loop *loop, int timeout_ms, int *result);
/* The supervisor's progress stamp: now, or at a time just read. */
void vigil__stamp(vigil_loop *loop);
void vigil__stamp_at(vigil_loop *loop, uint64_t now);
/* the backend's identity and features, for vigil_loop_info and the probe
 * (under owner_lock) */
void vigil__publish_backend(vigil_loop *loop);

#endif
