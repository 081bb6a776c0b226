/*
 * rebuild.h: fences and rebuilds (rebuild.c), and which thread runs a loop
 * (owner.c).
 */
#ifndef VIGIL_CORE_REBUILD_H
#define VIGIL_CORE_REBUILD_H

#include "core/backend.h"

/* The rebuild's part of a loop. */
typedef struct vigil__rebuild_state {
    vigil__cqe *carry;          /* completions a rebuild carried over, applied first, in order */
    uint32_t carry_pos, carry_n, carry_cap;
    vigil__cqe *held;           /* completions for frozen connections, in order */
    uint32_t held_n, held_cap;
    vigil__queue held_later;    /* their later-list entries */
    struct vigil__fence *fences;/* fenced threads not yet accounted for */
    bool gated;                 /* a fenced callback still runs: no other may */
    uint32_t held_accepts;      /* accepted connections held since the list was last empty */
    uint64_t t0_ns;             /* fence time of the rebuild whose first pass is due */
    bool debug_overflow;        /* test hook: the next rebuild finds the CQ overflowed */
} vigil__rebuild_state;

void vigil__dispatch_held(vigil_loop *loop, const vigil__cqe *c);
bool vigil__hold(vigil_loop *loop, const vigil__cqe *c); /* keeps it, in order, for later */
bool vigil__gate_holds(vigil_loop *loop, vigil__op *op, const vigil__cqe *c);
bool vigil__fenced_callback_runs(vigil_loop *loop); /* a fenced callback has not returned */
void vigil__run_carry(vigil_loop *loop);
bool vigil__hold_if_frozen(vigil_loop *loop, vigil__op *op, const vigil__cqe *c);
bool vigil__later_is_frozen(vigil_loop *loop, const vigil__op *op);
void vigil__unhold_later(vigil_loop *loop, uint32_t conn_slot1);
bool vigil__fences_poll(vigil_loop *loop, uint64_t now); /* true while one is unsettled */
void vigil__fences_free(vigil_loop *loop);
int vigil__rebuild(vigil_loop *loop, const vigil__backend *target, uint32_t grace_ms);
int vigil__move_backend(vigil_loop *loop, const vigil__backend *target); /* steps 3-6 */
/* Room in the held list and the carry for all they can hold at once, for
 * the tables grown by more_ops and more_conns entries: a rebuild reserves
 * it before it moves anything, and the tables keep it as they grow. */
int vigil__rebuild_reserve(vigil_loop *loop, uint32_t more_ops, uint32_t more_conns);
/* reissuing an op whose request died with the fenced backend (op classes): */
void vigil__reissue_result(vigil_loop *loop, vigil__op *op, int res); /* completes with res */
void vigil__reissue_again(vigil_loop *loop, vigil__op *op);  /* -EAGAIN: nothing moved, re-arm */
void vigil__reissue_drop(vigil_loop *loop, vigil__op *op);   /* issued again by other means */
/* accepts that may complete behind the gate before the accept is cancelled */
#define VIGIL__GATE_ACCEPTS_MAX 1024

/* owner.c: which thread runs a loop: hand-over, threads of vigil's, serve */
int vigil__destroy_handoff(vigil_loop *loop);
void vigil__owned_by_vigil(vigil_loop *loop);  /* from now on a thread of vigil's runs it */
void vigil__owned_loop_ended(vigil_loop *loop, int run_rc); /* on vigil's thread: serve destroy */
void vigil__loop_thread_signals(vigil_loop *loop); /* the mask of a thread of vigil's running it */
int vigil__rehome(vigil_loop *loop);   /* a handed-over loop's new thread takes it */

#endif
