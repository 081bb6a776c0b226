/*
 * unavailable.c: the calls a system does not have yet, each refused with
 * -ENOTSUP (never a silent no-op), and the core's hooks for them, which
 * then have nothing to do. Built on Windows, where signals have no
 * signalfd (docs/windows.md).
 */
#include "core/engine.h"

#include <errno.h>

/* signals */
int vigil_signal_start(vigil_loop *loop, int signo, vigil_signal_cb cb, void *ud, vigil_op *op) {
    (void)loop, (void)signo, (void)cb, (void)ud, (void)op;
    return -ENOTSUP;
}
/* no watcher can exist, so these never find one */
const vigil__op_class vigil__signal_class = {.name = "signal"};
const vigil__op_class vigil__sigread_class = {.name = "sigread"};
void vigil__signals_run(vigil_loop *loop) { loop->sig.q_pos = loop->sig.q_n = 0; }
void vigil__signals_destroy(vigil_loop *loop) {}
