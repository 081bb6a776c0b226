/*
 * timer.h: timers, and the heap that times every deadline (timer.c).
 */
#ifndef VIGIL_CORE_TIMER_H
#define VIGIL_CORE_TIMER_H

#include "core/op.h"

/* The timers' part of a loop: a binary min-heap of op slots by (due_ns, seq). */
typedef struct vigil__timers {
    uint32_t *heap;
    uint32_t len, cap; /* cap follows the op table: a push never allocates */
    uint64_t seq;
} vigil__timers;

int vigil__heap_reserve(vigil_loop *loop, uint32_t ops); /* room for that many ops */
void vigil__heap_push(vigil_loop *loop, vigil__op *op);  /* never fails */
void vigil__heap_remove(vigil_loop *loop, vigil__op *op);
void vigil__timers_run(vigil_loop *loop, uint64_t now);  /* what came due, by class */
void vigil__timers_destroy(vigil_loop *loop);            /* every timer's final callback */

#endif
