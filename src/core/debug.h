/*
 * debug.h: the library's test hooks. Not in the public header (vigil.h) and
 * not exported by the shared library (hidden visibility): the tests reach
 * them through the static library (tests include "core/debug.h"). It needs
 * vigil.h alone.
 */
#ifndef VIGIL_CORE_DEBUG_H
#define VIGIL_CORE_DEBUG_H

#include <stdint.h>

#include "vigil.h"

/* Queues a no-op whose tag names a slot generation that no longer exists (a
 * stale completion, counted and dropped). */
int vigil__debug_stale_completion(vigil_loop *loop);
/* From a callback: asks the supervisor to fence this thread now, as if it were
 * stuck; the callback then waits until vigil__debug_fenced() says so. */
int vigil__debug_request_fence(vigil_loop *loop);
int vigil__debug_fenced(vigil_loop *loop);
/* The next rebuild finds the fenced ring's CQ overflowed. */
int vigil__debug_overflow_at_fence(vigil_loop *loop);
/* The next n UDP sends find their socket full (-EAGAIN), as under load. */
int vigil__debug_udp_full(vigil_loop *loop, uint32_t n);
/* The loop thread spins ms in vigil's own code at its next pass (a library stall). */
int vigil__debug_library_spin(vigil_loop *loop, uint32_t ms);
/* Loops created from now on, in this process, run on be (a scripted backend
 * of the suites': tests/fake_backend.c) instead of the one vigil would
 * choose; a rebuild keeps it. NULL: choose as usual again. */
struct vigil__backend;
int vigil__debug_force_backend(const struct vigil__backend *be);

#endif
