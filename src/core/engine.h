/*
 * engine.h: what the core asks of the ops that live outside the backend
 * (file calls, name lookups: fs.c, resolve.c and the pool), on every OS,
 * and of the OS's own file engine. fs.h has the file calls behind it.
 */
#ifndef VIGIL_IO_ENGINE_H
#define VIGIL_IO_ENGINE_H

#include "core/loop.h"
#include "core/pool.h"

/* fs_uring.c (Linux): the loop's file ring. Its completions signal wake_fd. */
typedef struct vigil__fs_ring vigil__fs_ring;
void vigil__fs_ring_flush(vigil__fs_ring *r);     /* submits what is queued */
bool vigil__fs_ring_take(vigil__fs_ring *r, vigil__cqe *out);
bool vigil__fs_ring_ready(vigil__fs_ring *r);     /* a completion waits */
int vigil__fs_ring_wait(vigil__fs_ring *r, int timeout_ms); /* for one (destroy): 0, -ETIME */
void vigil__fs_ring_free(vigil__fs_ring *r);

/* The OS's file engine beside the pool (os/linux/files.c: the file ring;
 * os/win/files.c: overlapped reads and writes, whose packets the backend's
 * wait hands over, and the files bound to the port), on the loop thread. */
/* each pass: submits what it queued and dispatches up to max of its completions */
void vigil__fs_os_poll(vigil_loop *loop, int max);
bool vigil__fs_os_ready(vigil_loop *loop); /* a completion of its waits */
/* destroy: waits up to timeout_ms for one of its completions; false when
 * it has nothing to wait for (the pool is waited for instead) */
bool vigil__fs_os_wait(vigil_loop *loop, int timeout_ms);
void vigil__fs_os_free(vigil_loop *loop);  /* destroy, the pool gone: it goes too */

void vigil__fs_poll(vigil_loop *loop);     /* each pass: submit, take what finished */
bool vigil__fs_ready(vigil_loop *loop);    /* completions wait: do not sleep */
void vigil__fs_destroy(vigil_loop *loop);  /* final callbacks of every engine op, engines gone */
int vigil__pool_get(vigil_loop *loop);     /* the loop's pool, made on first use */
/* The op class members of every op whose job runs on the pool (file calls,
 * lookups, work): its job block is freed with the op; destroy may take it. */
void vigil__engine_release(vigil_loop *loop, vigil__op *op);
struct vigil__job *vigil__engine_job(vigil__op *op, bool forget);
/* an engine op was handed over: in flight, counted, its deadline set */
void vigil__engine_started(vigil_loop *loop, vigil__op *op, uint32_t deadline_ms, vigil_op *out);

#endif
