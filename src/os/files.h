/*
 * files.h: what a file call holds that only its OS reads (os/linux/files.c
 * and the file ring, fs_uring.c; os/win/files.c): VIGIL__FSJOB_OS, the
 * fields it adds to vigil__fsjob (core/fs.h) under their own names, so the
 * core's job is the same on every OS and needs no #ifdef.
 */
#ifndef VIGIL_OS_FILES_H
#define VIGIL_OS_FILES_H

#include "vigil.h"

#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#define VIGIL__FSJOB_OS                                                                    \
    vigil_stat st;   /* stat: filled by the pool */                                        \
    intptr_t handle; /* open: the new file's handle (it joins the port) */
#else
#include <linux/openat2.h>
#include <sys/stat.h>

#ifndef STATX_BASIC_STATS
#include <linux/stat.h>
#endif

#define VIGIL__FSJOB_OS                                                                    \
    struct statx stx;                                                                      \
    struct open_how how; /* open with beneath: for openat2 */
#endif

/* Where a file message's bytes come from (core/send_file.c,
 * vigil_conn_send_file), in the OS's terms. */
typedef struct vigil__file_map vigil__file_map; /* Linux: one file mapped, shared (os/linux/files.c) */
typedef struct vigil__file_src {
    int fd;
    intptr_t handle;      /* Windows: fd's handle, which TransmitFile reads */
    vigil__file_map *map; /* Linux: the file's mapping, held until close */
    const uint8_t *data;  /* Linux: the message's first byte in it */
} vigil__file_src;
/* Takes hold of len bytes of fd from offset, on the loop thread, without
 * reading them: 0, or -EBADF, -ENODEV (not a regular file), -EACCES (not
 * open for reading), -ENODATA (the file is shorter than offset + len). */
int vigil__file_src_open(vigil_loop *loop, vigil__file_src *s, int fd, int64_t offset, size_t len);
void vigil__file_src_close(vigil_loop *loop, vigil__file_src *s);
/* Before a wait: lets go of mappings no message used for a while. */
void vigil__file_maps_sweep(vigil_loop *loop, uint64_t now_ns);
void vigil__file_maps_free(vigil_loop *loop); /* destroy, every message gone */
/* Of the n bytes at p in a mapping, how many from p on are in memory now
 * (whole pages; no wait). */
size_t vigil__file_resident(const uint8_t *p, size_t n);
/* On a pool thread: reads the pages of [p, p + n) into memory. -EFAULT: the
 * file ends before p + n; -EIO and others as the kernel says. */
int vigil__file_populate(const uint8_t *p, size_t n);

#endif
