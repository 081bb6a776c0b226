/*
 * fs.h: file calls (fs.c, on every OS) and the OS's side of them: on Linux
 * (os/linux/files.c) the loop's own file ring on io_uring (fs_uring.c) or
 * the loop's worker pool (pool.c); on Windows (os/win/files.c) overlapped
 * reads and writes on the loop's completion port, the rest on the pool.
 *
 * Why an engine of the loop's own and not the backend's ring: a rebuild
 * abandons the fenced backend, and a file request in a fenced
 * DEFER_TASKRUN ring may already have moved bytes into the user's buffer
 * while its completion waits for a thread that never comes back. The file
 * ring is created without SINGLE_ISSUER or DEFER_TASKRUN, so its workers
 * post completions themselves and whichever thread runs the loop after a
 * rebuild submits to it and reaps it; the pool is threads of the loop's
 * own. Either way a file call in flight at a fence completes on the new
 * thread, exactly once, and is never issued twice. On Windows a rebuild
 * keeps the port, so an overlapped read in flight completes there too.
 */
#ifndef VIGIL_IO_FS_H
#define VIGIL_IO_FS_H

#include "core/engine.h"
#include "os/files.h"

#define VIGIL__FS_MAX_LEN 0x7ffff000u /* what one read or write moves at most, as Linux */

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
    bool beneath;   /* open: the path may not leave fd's directory */
    bool on_port;   /* Windows: an overlapped request on the loop's port, not a pool job */
    bool keep_nonblock; /* open: the caller asked for O_NONBLOCK (Linux adds it to every open) */
    int fd;         /* the file, or the directory paths start from */
    int flags;      /* open: flags; fsync: VIGIL_FSYNC_*; stat: AT_* on Linux */
    uint32_t mode;
    void *buf;
    size_t len;
    int64_t offset;
    vigil_stat *st_out;
    VIGIL__FSJOB_OS      /* the OS's own fields (os/files.h) */
    char path[];
} vigil__fsjob;

/* The OS's side (os/linux/files.c, os/win/files.c), called by fs.c on the
 * loop thread; engine.h has its part of each pass and of destroy. */
void vigil__fs_os_prepare(vigil__fsjob *j);   /* the job's fields in the OS's terms; sets job.run */
/* hands the job to the engine: 0 (it completes through vigil__fs_complete) or -errno */
int vigil__fs_os_submit(vigil_loop *loop, vigil__op *op, vigil__fsjob *j);
int vigil__fs_os_cancel(vigil_loop *loop, vigil__op *op, vigil__fsjob *j); /* asks it to stop */
/* its result, on the loop thread, before the callback (stat's output, an fd's bookkeeping) */
int vigil__fs_os_done(vigil_loop *loop, vigil__fsjob *j, int res);

/* fs_uring.c (Linux; os/linux/files.c calls it): the file ring (the rest
 * of it is in engine.h) */
int vigil__fs_ring_new(vigil__fs_ring **out, int wake_fd);
int vigil__fs_ring_submit(vigil__fs_ring *r, vigil__fsjob *j, uint64_t tag);
/* An open on the ring returned fd: its close may run inline (not a socket). */
void vigil__fs_ring_opened(vigil__fs_ring *r, int fd);
int vigil__fs_ring_cancel(vigil__fs_ring *r, uint64_t tag);

#endif
