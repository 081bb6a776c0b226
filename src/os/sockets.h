/*
 * sockets.h: the system's socket headers, for core files that need
 * sockaddr types or inet_ntop (udp.c, resolve.c): Winsock 2 on Windows, the
 * BSD headers elsewhere.
 */
#ifndef VIGIL_PLATFORM_SOCKETS_H
#define VIGIL_PLATFORM_SOCKETS_H

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

#endif
