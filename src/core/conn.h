/*
 * conn.h: what the rest of the core asks of connections: streams and
 * listeners (tcp.c), file messages in a stream's send queue (send_file.c)
 * and datagram sockets (udp.c).
 */
#ifndef VIGIL_CORE_CONN_H
#define VIGIL_CORE_CONN_H

#include "core/backend.h"
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
void vigil__tcp_pump(vigil_loop *loop, vigil__conn *c); /* sends what can go now */

/* send_file.c: file messages (vigil_conn_send_file) */
typedef struct vigil__file_msg vigil__file_msg;
int vigil__file_msg_new(vigil_loop *loop, int fd, int64_t offset, size_t len, vigil__file_msg **out);
uint8_t *vigil__file_msg_data(vigil__file_msg *m); /* its first byte in the mapping; NULL: none */
void vigil__file_msg_free(vigil_loop *loop, vigil__file_msg *m);
/* What of the file message op can go out now from its mapping: bytes from
 * its next unsent one, as *s; 0 while its pages are read in on the pool. */
size_t vigil__file_msg_window(vigil_loop *loop, vigil__conn *c, vigil__op *op, vigil__slice *s);
/* Backends that send files themselves: the rest of op, from the file (one
 * request, alone in flight). */
int vigil__file_msg_transmit(vigil_loop *loop, vigil__conn *c, vigil__op *op);

/* udp.c */
void vigil__udp_rearm(vigil_loop *loop, vigil__conn *c);  /* a buffer came back */
void vigil__udp_repair(vigil_loop *loop, vigil__conn *c); /* after a fence */
void vigil__udp_destroy_all(vigil_loop *loop);
void vigil__polls_destroy(vigil_loop *loop); /* poll.c: fd watchers */

#endif
