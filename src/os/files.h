/*
 * files.h: what a file call holds that only its OS reads (os/linux/files.c
 * and the file ring, fs_uring.c; os/win/files.c): VIGIL__FSJOB_OS, the
 * fields it adds to vigil__fsjob (core/fs.h) under their own names, so the
 * core's job is the same on every OS and needs no #ifdef.
 */
#ifndef VIGIL_OS_FILES_H
#define VIGIL_OS_FILES_H

#include "vigil.h"

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

#endif
