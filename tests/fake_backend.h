/*
 * fake_backend.h: a scripted backend for the suites (tests/test_fake.c).
 *
 * It implements the seam of src/core/backend.h and touches no kernel object
 * for the requests it gets: each is recorded (its tag, what it asks for, its
 * fd, a send's bytes) and nothing completes until the test script says so.
 * The script queues completions in any order it likes (reordered,
 * duplicated, late, stale: whatever tag it names) and wait() hands them to
 * the core, in queue order, at most fake_set_batch() per wait, through
 * loop->batch as io_uring's wait does (so a fence in a callback leaves the
 * rest of the batch to the rebuild, and harvest() what is still queued).
 *
 * What it does by itself, as a kernel would: the loop's wake read completes
 * when the loop's wake fd was signalled; a no-op completes with 0; a close
 * closes the fd and completes with 0; a cancel of a request still waiting
 * completes it with -ECANCELED (fake_set_auto_cancel(false): the script
 * answers cancels itself). Receive buffers come from a free list built, as
 * epoll.c builds its own, from the buffers the loop has in the kernel's hands.
 *
 * Every function below may be called from any thread (one lock guards the
 * fake), also while the loop runs on a thread of vigil's after a rebuild:
 * functions that take a loop act on its current state (a rebuild makes a new
 * one) and wake a waiting loop. Linux only (poll, eventfd).
 */
#ifndef VIGIL_TEST_FAKE_BACKEND_H
#define VIGIL_TEST_FAKE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

extern const vigil__backend fake_backend;

/* Loops created from now on (in this process) run on the fake. */
void fake_use(void);

/* What a request asked for. */
enum fake_what {
    FAKE_ACCEPT = 1,
    FAKE_RECV,
    FAKE_RECV_DGRAM,
    FAKE_WAKE,
    FAKE_SEND,
    FAKE_CONNECT,
    FAKE_CLOSE,
    FAKE_CANCEL,
    FAKE_POLL,
    FAKE_RESUME_CONNECT,
};

#define FAKE_DATA_MAX 256
typedef struct fake_req {
    uint64_t tag;    /* the op's tag (slot | generation << 32 | epoch << 56) */
    int what;        /* enum fake_what */
    int fd;          /* -1 for cancels */
    uint32_t seq;    /* its place among this state's requests, from 0 */
    bool done;       /* a final completion (no MORE) was queued for it */
    uint64_t target; /* a cancel: the tag it cancels */
    uint32_t len;    /* a send: the bytes it asks to send, all slices together */
    int slices;
    uint8_t data[FAKE_DATA_MAX]; /* ... the first FAKE_DATA_MAX of them */
} fake_req;

/* The tag's parts. */
static inline uint32_t fake_tag_slot(uint64_t tag) { return (uint32_t)tag; }
static inline uint32_t fake_tag_gen(uint64_t tag) { return (uint32_t)(tag >> 32) & 0xFFFFFFu; }
static inline uint8_t fake_tag_epoch(uint64_t tag) { return (uint8_t)(tag >> 56); }

/* The loop's current state's requests, oldest first: copies up to max of
 * them into out, returns how many there are. */
int fake_requests(vigil_loop *loop, fake_req *out, int max);
/* The newest request of kind what on fd (fd < 0: any fd) that is still
 * waiting for its final completion; false if none. */
bool fake_live(vigil_loop *loop, int what, int fd, fake_req *out);
/* How many requests of kind what the current state got. */
int fake_count(vigil_loop *loop, int what);

/* Queues a completion {tag, res, flags} (VIGIL__CQE_*), as is: any tag. */
int fake_complete(vigil_loop *loop, uint64_t tag, int32_t res, uint32_t flags);
/* Queues n bytes received for tag: takes a free buffer, copies them in, and
 * queues {tag, n, BUF | id << 16 | (more ? MORE : 0)}. n may be 0 (an end of
 * stream that used a buffer, as io_uring may post it). Returns the buffer
 * id, -ENOBUFS (no free buffer) or -EMSGSIZE. */
int fake_recv_bytes(vigil_loop *loop, uint64_t tag, const void *p, size_t n, bool more);
/* Queues the last queued completion again; one with a buffer gets another
 * free buffer holding the same bytes (a buffer is never named twice).
 * Returns 0, -ENOENT (nothing queued yet) or -ENOBUFS. */
int fake_duplicate_last(vigil_loop *loop);
/* A tag that names tag's slot at a generation that is gone (one back). */
uint64_t fake_stale_tag(uint64_t tag);

/* Completions handed over per wait (1..256; default 256). */
void fake_set_batch(uint32_t n);
/* Cancels complete by themselves with -ECANCELED (default), or only as the
 * script says (the loop's wake read is always cancelled at once). */
void fake_set_auto_cancel(bool on);

/* Completions queued and not handed over yet, in the current state. */
uint32_t fake_queued(vigil_loop *loop);
/* Receive buffers on the current state's free list. */
uint32_t fake_free_bufs(vigil_loop *loop);
/* States the loop has had: 1 after create, 2 after its first rebuild... */
int fake_states(vigil_loop *loop);
/* Completions harvest() handed to rebuilds, in this process. */
uint64_t fake_harvested(void);

#endif
