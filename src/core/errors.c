/*
 * errors.c: vigil_strerror and vigil_err_name.
 *
 * Every call returns a negative errno, some of which the kernel chose (a
 * refused connect, a bad fd given to a file call) and some vigil did (a call
 * from a thread that does not own the loop). A text here must therefore be
 * true for every way vigil can return that value: it says what the value
 * means and names vigil's own reasons as examples, never as the only one.
 */
#include "vigil.h"

#include <errno.h>
#include <string.h>

typedef struct err_text {
    int err;
    const char *name, *text;
} err_text;

#ifndef EDEADLK
#define EDEADLK 35
#endif

static const err_text texts[] = {
    {EINVAL, "EINVAL", "invalid argument"},
    {EBADF, "EBADF", "bad handle or descriptor (closed, finished, of another loop, or never valid)"},
    {EPERM, "EPERM", "not permitted (refused by the kernel or a security policy, or the calling "
                     "thread does not own the loop)"},
    {EACCES, "EACCES", "permission denied"},
    {EBUSY, "EBUSY", "busy (called from a callback or while the loop runs, an op that is under way, "
                     "or a fenced callback that still runs)"},
    {ECANCELED, "ECANCELED", "cancelled"},
    {ETIMEDOUT, "ETIMEDOUT", "timed out (a deadline passed, or the peer stopped answering)"},
    {ECONNRESET, "ECONNRESET", "connection reset by the peer"},
    {ECONNREFUSED, "ECONNREFUSED", "connection refused"},
    {ECONNABORTED, "ECONNABORTED", "connection aborted"},
    {EPIPE, "EPIPE", "the stream can no longer send"},
    {ENOMEM, "ENOMEM", "out of memory"},
    {EMFILE, "EMFILE", "too many open files in this process"},
    {ENFILE, "ENFILE", "too many open files in the system"},
    {ENOSYS, "ENOSYS", "not implemented by this kernel"},
    {ENOTSUP, "ENOTSUP", "not supported"},
#if EOPNOTSUPP != ENOTSUP
    {EOPNOTSUPP, "EOPNOTSUPP", "not supported on this socket"},
#endif
    {VIGIL_ESHUTDOWN, "ESHUTDOWN", "the loop is being destroyed"},
    {EALREADY, "EALREADY", "already under way"},
    {ENOTCONN, "ENOTCONN", "not connected"},
    {EADDRINUSE, "EADDRINUSE", "address already in use"},
    {EADDRNOTAVAIL, "EADDRNOTAVAIL", "address not available"},
    {ENETUNREACH, "ENETUNREACH", "network unreachable"},
    {EHOSTUNREACH, "EHOSTUNREACH", "host unreachable"},
    {ENOENT, "ENOENT", "no such file, directory or name"},
    {EEXIST, "EEXIST", "already exists"},
    {ENOTDIR, "ENOTDIR", "not a directory"},
    {EISDIR, "EISDIR", "is a directory"},
    {ENAMETOOLONG, "ENAMETOOLONG", "name too long"},
    {EAGAIN, "EAGAIN", "try again (a queue was full, or a name server did not answer)"},
    {EXDEV, "EXDEV", "the path leaves its directory, or crosses file systems"},
    {EOWNERDEAD, "EOWNERDEAD", "fenced: the loop went on without a stuck callback (a call from its "
                               "thread, or a stream reset because of it)"},
    {EDEADLK, "EDEADLK", "a callback the supervisor fenced did not return"},
    {EIO, "EIO", "input/output error"},
    {EINTR, "EINTR", "interrupted"},
    {EMSGSIZE, "EMSGSIZE", "message too long"},
    {ENOTSOCK, "ENOTSOCK", "not a socket"},
    {EPROTOTYPE, "EPROTOTYPE", "wrong type of socket"},
    {ENOBUFS, "ENOBUFS", "no buffer space"},
    {ENOSPC, "ENOSPC", "no space left on the device"},
    {EROFS, "EROFS", "read-only file system"},
    {ELOOP, "ELOOP", "too many symbolic links"},
    {ERANGE, "ERANGE", "out of range"},
    {EOVERFLOW, "EOVERFLOW", "value too large"},
    {ESPIPE, "ESPIPE", "not seekable"},
    {EINPROGRESS, "EINPROGRESS", "in progress"},
    {EPROTO, "EPROTO", "protocol error"},
};

static const err_text *find(int err) {
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (-texts[i].err == err)
            return &texts[i];
    return NULL;
}

const char *vigil_strerror(int err) {
    if (err == 0)
        return "success";
    const err_text *t = find(err);
    if (t)
        return t->text;
    return err < 0 ? strerror(-err) : "not an error code (vigil returns negative errno values)";
}

const char *vigil_err_name(int err) {
    if (err == 0)
        return "OK";
    const err_text *t = find(err);
    return t ? t->name : "EUNKNOWN";
}
