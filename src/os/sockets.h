/*
 * sockets.h: the system's socket headers, for core files that need
 * sockaddr types or inet_ntop (udp.c, resolve.c): Winsock 2 on Windows, the
 * BSD headers elsewhere.
 */
#ifndef VIGIL_PLATFORM_SOCKETS_H
#define VIGIL_PLATFORM_SOCKETS_H

#include <stdint.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#define VIGIL__MSG_TRUNC 0x0100 /* Winsock says WSAEMSGSIZE instead; the backend sets this */
#else
#define VIGIL__MSG_TRUNC MSG_TRUNC
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

/* Where a one-shot datagram receive leaves the sender's address (the
 * payload goes to a pool buffer): the msghdr io_uring's recvmsg fills on
 * Linux; on Windows the backend lays every datagram out in the buffer
 * instead (VIGIL__CQE_MSGOUT), so this is never filled there. */
#ifdef _WIN32
typedef struct vigil__dgram_rx {
    SOCKADDR_STORAGE name;
    int namelen;
    unsigned long flags;
} vigil__dgram_rx;
#define VIGIL__RX_NAMELEN(rx) ((rx)->namelen)
#define VIGIL__RX_FLAGS(rx) ((rx)->flags)
static inline void vigil__dgram_rx_init(vigil__dgram_rx *rx, uint32_t buf_size) {
    (void)buf_size;
    rx->namelen = sizeof(rx->name);
}
#else
typedef struct vigil__dgram_rx {
    struct msghdr mh; /* first: the backend is handed the msghdr */
    struct iovec iov;
    struct sockaddr_storage name;
} vigil__dgram_rx;
#define VIGIL__RX_NAMELEN(rx) ((rx)->mh.msg_namelen)
#define VIGIL__RX_FLAGS(rx) ((rx)->mh.msg_flags)
static inline void vigil__dgram_rx_init(vigil__dgram_rx *rx, uint32_t buf_size) {
    rx->mh.msg_name = &rx->name;
    rx->mh.msg_iov = &rx->iov;
    rx->mh.msg_iovlen = 1;
    rx->iov.iov_len = buf_size;
    rx->mh.msg_namelen = sizeof(rx->name);
}
#endif

#endif
