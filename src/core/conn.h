/*
 * conn.h: what the rest of the core asks of connections: streams and
 * listeners (tcp.c) and datagram sockets (udp.c).
 */
#ifndef VIGIL_CORE_CONN_H
#define VIGIL_CORE_CONN_H

#include "core/op.h"

/* tcp.c */
void vigil__tcp_destroy_all(vigil_loop *loop);
void vigil__tcp_buffers_freed(vigil_loop *loop);
void vigil__tcp_repair(vigil_loop *loop, vigil__conn *c); /* after a fence */
void vigil__tcp_break(vigil_loop *loop, vigil__conn *c, int status);
void vigil__tcp_reset_now(vigil_loop *loop, vigil__conn *c); /* RST, the callbacks later */
bool vigil__send_unlink(vigil_loop *loop, vigil__conn *c, vigil__op *op); /* false: not queued */
void vigil__tcp_pump_soon_run(vigil_loop *loop); /* before the wait: sends queued in this pass */
void vigil__buf_recycle(vigil_loop *loop, uint32_t id);

/* udp.c */
void vigil__udp_rearm(vigil_loop *loop, vigil__conn *c);  /* a buffer came back */
void vigil__udp_repair(vigil_loop *loop, vigil__conn *c); /* after a fence */
void vigil__udp_destroy_all(vigil_loop *loop);
void vigil__polls_destroy(vigil_loop *loop); /* poll.c: fd watchers */

#endif
