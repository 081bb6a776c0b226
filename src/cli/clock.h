/*
 * clock.h: the one clock of the vigil tool. Every time the CLI takes,
 * compares or waits on comes from now_ns(): the monotonic clock vigil's own
 * stamps use (vigil_now_ns: CLOCK_MONOTONIC on POSIX, QueryPerformanceCounter
 * on Windows), so the CLI's times compare with the library's (a loop's last
 * progress, a request's first byte) and a clock step never moves a deadline.
 *
 * Inline, and on POSIX clock_gettime itself: the load generator reads it
 * several times per request, and load.c also waits on condition variables
 * set to CLOCK_MONOTONIC with deadlines from it.
 */
#ifndef VIGIL_CLI_CLOCK_H
#define VIGIL_CLI_CLOCK_H

#include <stdint.h>

#ifdef _WIN32
#include "vigil.h"
#else
#include <time.h>
#endif

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

static inline uint64_t now_ns(void) {
#ifdef _WIN32
    return vigil_now_ns();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
#endif
}

#endif
