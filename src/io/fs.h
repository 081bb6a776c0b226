/*
 * fs.h: file calls (fs.c) and their two engines: the loop's own file ring
 * on io_uring (fs_uring.c) and the loop's worker pool (pool.c) elsewhere.
 *
 * Why an engine of the loop's own and not the backend's ring: a rebuild
 * abandons the fenced backend, and a file request in a fenced
 * DEFER_TASKRUN ring may already have moved bytes into the user's buffer
 * while its completion waits for a thread that never comes back. The file
 * ring is created without SINGLE_ISSUER or DEFER_TASKRUN, so its workers
 * post completions themselves and whichever thread runs the loop after a
 * rebuild submits to it and reaps it; the pool is threads of the loop's
 * own. Either way a file call in flight at a fence completes on the new
 * thread, exactly once, and is never issued twice.
 */
#ifndef VIGIL_IO_FS_H
#define VIGIL_IO_FS_H

#include "io/engine.h"

#include <linux/openat2.h>
#include <sys/stat.h>

#ifndef STATX_BASIC_STATS
#include <linux/stat.h>
#endif

enum vigil__fs_call {
    VIGIL__FS_OPEN = 1,
    VIGIL__FS_READ,
    VIGIL__FS_WRITE,
    VIGIL__FS_FSYNC,
    VIGIL__FS_STAT,
    VIGIL__FS_CLOSE,
};

/* One file call: everything its engine needs, owned by its op. */
typedef struct vigil__fsjob {
    vigil__job job; /* first: the pool's part */
    uint8_t call;
    int fd;         /* the file, or the directory paths start from */
    int flags;      /* open: flags; fsync: VIGIL_FSYNC_*; stat: AT_* */
    uint32_t mode;
    bool beneath;   /* open with RESOLVE_BENEATH */
    void *buf;
    size_t len;
    int64_t offset;
    vigil_stat *st_out;
    struct statx stx;
    struct open_how how; /* open with beneath: for openat2 */
    char path[];
} vigil__fsjob;

/* fs_uring.c: the file ring (the rest of it is in engine.h) */
int vigil__fs_ring_new(vigil__fs_ring **out, int wake_fd);
int vigil__fs_ring_submit(vigil__fs_ring *r, vigil__fsjob *j, uint64_t tag);
int vigil__fs_ring_cancel(vigil__fs_ring *r, uint64_t tag);


#endif
