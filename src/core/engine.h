/*
 * engine.h: what the core asks of the ops that live outside the backend
 * (file calls, name lookups: fs.c, resolve.c and the pool), on every OS.
 * fs.h has the Linux engines behind it.
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

void vigil__fs_poll(vigil_loop *loop);     /* each pass: submit, take what finished */
bool vigil__fs_ready(vigil_loop *loop);    /* completions wait: do not sleep */
void vigil__fs_destroy(vigil_loop *loop);  /* final callbacks of every engine op, engines gone */
int vigil__pool_get(vigil_loop *loop);     /* the loop's pool, made on first use */
/* an engine op was handed over: in flight, counted, its deadline set */
void vigil__engine_started(vigil_loop *loop, vigil__op *op, uint32_t deadline_ms, vigil_op *out);

#endif
