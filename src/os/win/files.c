/*
 * files.c: file calls on Windows (fs.h).
 *
 * A file vigil_fs_open opens is a CreateFileW handle with
 * FILE_FLAG_OVERLAPPED behind a C runtime fd (_open_osfhandle; never
 * inherited, which is what O_CLOEXEC asks). When the open completes, on the
 * loop thread, the handle joins the loop's completion port, and from then
 * on each read or write of it at an offset is an overlapped ReadFile or
 * WriteFile whose packet completes the call (iocp.c): no thread waits for
 * it, and a rebuild, which keeps the port, finds its packet on the new
 * thread. Everything else runs on the loop's worker pool: opening, stat,
 * fsync and close, which have no overlapped form; reads and writes of an
 * fd the loop did not open (another loop's, the C runtime's) or at a
 * disk file's position (offset -1). So a read of a named pipe the loop
 * opened ("\\.\pipe\NAME") waits on the port, and cancel or a deadline
 * ends it (CancelIoEx); a pool job that waits in the system (an anonymous
 * pipe) cannot be interrupted: wine refuses CancelSynchronousIo.
 * Opening never waits for a peer: CreateFileW of a named pipe whose
 * instances are all taken fails at once (ERROR_PIPE_BUSY), where
 * WaitNamedPipe would wait, and a device opens without waiting for one.
 *
 * Paths are UTF-8. A path relative to a directory fd is joined to the
 * directory's own path. VIGIL_O_BENEATH refuses absolute paths and any ".."
 * that would climb above the directory (-EXDEV) before opening, and after
 * opening checks that the file's final path (symlinks and junctions
 * resolved) is still inside the directory.
 */
#include "core/fs.h"
#include "os/platform.h"

#include <windows.h>

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <wchar.h>

#define PATH_ROOM 32768 /* the longest path Windows takes, in UTF-16 units */

static HANDLE handle_of(int fd) {
    if (fd < 0)
        return INVALID_HANDLE_VALUE;
    return (HANDLE)_get_osfhandle(fd);
}

/* ------------------------------------------------------------ paths */

static bool is_sep(wchar_t c) { return c == L'/' || c == L'\\'; }

static bool absolute(const wchar_t *p) {
    return is_sep(p[0]) || (((p[0] | 0x20) >= L'a' && (p[0] | 0x20) <= L'z') && p[1] == L':');
}

/* Whether every ".." stays at or below the start: "a/../b" does, "../a" does not. */
static bool stays_below(const wchar_t *p) {
    long depth = 0;
    while (*p) {
        const wchar_t *e = p;
        while (*e && !is_sep(*e))
            e++;
        size_t n = (size_t)(e - p);
        if (n == 2 && p[0] == L'.' && p[1] == L'.') {
            if (--depth < 0)
                return false;
        } else if (n && !(n == 1 && p[0] == L'.')) {
            depth++;
        }
        p = *e ? e + 1 : e;
    }
    return true;
}

/* A handle's final path without the \\?\ prefix, which would stop Windows
 * from resolving "..": 0, or -errno. */
static int final_path(HANDLE h, wchar_t *out, DWORD room) {
    DWORD n = GetFinalPathNameByHandleW(h, out, room, FILE_NAME_NORMALIZED);
    if (!n || n >= room)
        return n ? -ENAMETOOLONG : vigil__win_errno(GetLastError());
    if (wcsncmp(out, L"\\\\?\\UNC\\", 8) == 0) {
        memmove(out + 2, out + 8, (n - 8 + 1) * sizeof(wchar_t)); /* \\server\share */
    } else if (wcsncmp(out, L"\\\\?\\", 4) == 0) {
        memmove(out, out + 4, (n - 4 + 1) * sizeof(wchar_t));
    }
    return 0;
}

/* The full path a call names, into out (PATH_ROOM units); *dir_out, when
 * asked for, gets the directory's own path (beneath's check). */
static int resolve(int dir_fd, const char *path, bool beneath, wchar_t *out, wchar_t *dir_out) {
    wchar_t *rel = out + PATH_ROOM / 2; /* the second half holds the path as given */
    if (!MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, rel, PATH_ROOM / 2))
        return GetLastError() == ERROR_INSUFFICIENT_BUFFER ? -ENAMETOOLONG : -EINVAL;
    if (beneath && (absolute(rel) || !stays_below(rel)))
        return -EXDEV;
    if (dir_fd == VIGIL_FS_CWD || absolute(rel)) {
        memmove(out, rel, (wcslen(rel) + 1) * sizeof(wchar_t));
        return 0;
    }
    HANDLE d = handle_of(dir_fd);
    if (d == INVALID_HANDLE_VALUE)
        return -EBADF;
    wchar_t *dir = dir_out ? dir_out : out;
    int rc = final_path(d, dir, PATH_ROOM / 2);
    if (rc < 0)
        return rc;
    size_t dl = wcslen(dir), rl = wcslen(rel);
    if (dl + 1 + rl + 1 > PATH_ROOM / 2)
        return -ENAMETOOLONG;
    if (dir != out)
        memcpy(out, dir, dl * sizeof(wchar_t));
    memmove(out + dl + 1, rel, (rl + 1) * sizeof(wchar_t));
    out[dl] = L'\\';
    return 0;
}

/* ------------------------------------------------ the pool's side */

static int win_open(vigil__fsjob *j) {
    wchar_t *path = malloc(2 * PATH_ROOM * sizeof(wchar_t));
    if (!path)
        return -ENOMEM;
    wchar_t *dir = path + PATH_ROOM;
    int rc = resolve(j->fd, j->path, j->beneath, path, j->beneath ? dir : NULL);
    if (rc < 0) {
        free(path);
        return rc;
    }
    int acc = j->flags & O_ACCMODE;
    DWORD access = acc == O_WRONLY ? GENERIC_WRITE : acc == O_RDWR ? GENERIC_READ | GENERIC_WRITE : GENERIC_READ;
    if ((j->flags & O_APPEND) && (access & GENERIC_WRITE)) /* every write at the end, whatever its offset */
        access = (access & ~GENERIC_WRITE) | (FILE_GENERIC_WRITE & ~FILE_WRITE_DATA);
    DWORD how = OPEN_EXISTING;
    if (j->flags & O_CREAT)
        how = (j->flags & O_EXCL) ? CREATE_NEW : (j->flags & O_TRUNC) ? CREATE_ALWAYS : OPEN_ALWAYS;
    else if (j->flags & O_TRUNC)
        how = TRUNCATE_EXISTING;
    DWORD attrs = ((j->flags & O_CREAT) && !(j->mode & 0200)) ? FILE_ATTRIBUTE_READONLY : FILE_ATTRIBUTE_NORMAL;
    /* BACKUP_SEMANTICS: directories open too, as with open(2) */
    HANDLE h = CreateFileW(path, access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, how,
                           attrs | FILE_FLAG_OVERLAPPED | FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (h == INVALID_HANDLE_VALUE) { /* writing a directory: Windows says access denied */
        DWORD e = GetLastError(), a = e == ERROR_ACCESS_DENIED ? GetFileAttributesW(path) : 0;
        free(path);
        return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY) ? -EISDIR : vigil__win_errno(e);
    }
    BY_HANDLE_FILE_INFORMATION fi;
    bool is_dir = GetFileInformationByHandle(h, &fi) && (fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY);
    rc = 0;
    if ((j->flags & VIGIL_O_DIRECTORY) && !is_dir)
        rc = -ENOTDIR;
    else if (is_dir && acc != O_RDONLY)
        rc = -EISDIR;
    else if (j->beneath) { /* where it really is, links followed */
        wchar_t *got = path;
        size_t dl = wcslen(dir);
        rc = final_path(h, got, PATH_ROOM);
        if (rc == 0 && !(wcslen(got) > dl && _wcsnicmp(got, dir, dl) == 0 && got[dl] == L'\\'))
            rc = -EXDEV;
    }
    free(path);
    if (rc < 0) {
        CloseHandle(h);
        return rc;
    }
    int fd = _open_osfhandle((intptr_t)h, _O_BINARY | (acc == O_RDONLY ? _O_RDONLY : 0) |
                                              ((j->flags & O_APPEND) ? _O_APPEND : 0));
    if (fd < 0) {
        CloseHandle(h);
        return -EMFILE;
    }
    j->handle = is_dir ? 0 : (intptr_t)h; /* a directory is never read: it does not join the port */
    return fd;
}

/* A read or write on a worker: through an OVERLAPPED whatever the handle
 * (a handle opened for overlapped I/O takes nothing else) with an event
 * whose low bit is set, so no packet goes to a port the handle may be
 * bound to, and waited for here. Offset -1: the file position, read and
 * moved here (overlapped handles keep none of their own). */
static int win_rw(vigil__fsjob *j) {
    HANDLE h = handle_of(j->fd);
    if (h == INVALID_HANDLE_VALUE)
        return -EBADF;
    bool disk = GetFileType(h) == FILE_TYPE_DISK, write = j->call == VIGIL__FS_WRITE;
    BY_HANDLE_FILE_INFORMATION fi;
    if (disk && GetFileInformationByHandle(h, &fi) && (fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY))
        return -EISDIR;
    int64_t off = j->offset;
    LARGE_INTEGER zero = {.QuadPart = 0}, cur = {.QuadPart = 0};
    if (off < 0 && disk && SetFilePointerEx(h, zero, &cur, FILE_CURRENT))
        off = cur.QuadPart;
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ev)
        return vigil__win_errno(GetLastError());
    OVERLAPPED ov = {.Offset = (DWORD)(off < 0 ? 0 : off), .OffsetHigh = (DWORD)((uint64_t)(off < 0 ? 0 : off) >> 32),
                     .hEvent = (HANDLE)((uintptr_t)ev | 1)};
    DWORD len = j->len > VIGIL__FS_MAX_LEN ? VIGIL__FS_MAX_LEN : (DWORD)j->len, n = 0;
    BOOL ok = write ? WriteFile(h, j->buf, len, NULL, &ov) : ReadFile(h, j->buf, len, NULL, &ov);
    DWORD e = ok ? 0 : GetLastError();
    if (ok || e == ERROR_IO_PENDING) {
        ok = GetOverlappedResult(h, &ov, &n, TRUE);
        e = ok ? 0 : GetLastError();
    }
    CloseHandle(ev);
    if (!ok) /* a read at the end, or of a pipe whose writer is gone: 0 bytes, as read(2) */
        return !write && (e == ERROR_HANDLE_EOF || e == ERROR_BROKEN_PIPE) ? 0 : vigil__win_errno(e);
    if (j->offset < 0 && disk) {
        LARGE_INTEGER to = {.QuadPart = off + n};
        SetFilePointerEx(h, to, NULL, FILE_BEGIN);
    }
    return (int)n;
}

static int64_t ns_of(FILETIME t) { /* 100 ns ticks since 1601 */
    int64_t ticks = (int64_t)(((uint64_t)t.dwHighDateTime << 32) | t.dwLowDateTime);
    return (ticks - 116444736000000000ll) * 100;
}

static int win_stat(vigil__fsjob *j) {
    HANDLE h = INVALID_HANDLE_VALUE;
    bool own = j->path[0] != 0;
    if (own) {
        wchar_t *path = malloc(PATH_ROOM * sizeof(wchar_t));
        if (!path)
            return -ENOMEM;
        int rc = resolve(j->fd, j->path, false, path, NULL);
        if (rc == 0) {
            h = CreateFileW(path, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                            FILE_FLAG_BACKUP_SEMANTICS, NULL);
            rc = h == INVALID_HANDLE_VALUE ? vigil__win_errno(GetLastError()) : 0;
        }
        free(path);
        if (rc < 0)
            return rc;
    } else if ((h = handle_of(j->fd)) == INVALID_HANDLE_VALUE) {
        return -EBADF;
    }
    DWORD type = GetFileType(h);
    BY_HANDLE_FILE_INFORMATION fi;
    memset(&fi, 0, sizeof(fi));
    int rc = 0;
    if (type == FILE_TYPE_DISK && !GetFileInformationByHandle(h, &fi))
        rc = vigil__win_errno(GetLastError());
    if (own)
        CloseHandle(h);
    if (rc < 0)
        return rc;
    uint32_t perm = (fi.dwFileAttributes & FILE_ATTRIBUTE_READONLY) ? 0444 : 0666;
    uint32_t kind = type == FILE_TYPE_PIPE ? S_IFIFO : type == FILE_TYPE_CHAR ? S_IFCHR
                    : (fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) ? S_IFDIR : S_IFREG;
    uint64_t size = ((uint64_t)fi.nFileSizeHigh << 32) | fi.nFileSizeLow;
    j->st = (vigil_stat){.size = size, .blocks = (size + 511) / 512,
                         .ino = ((uint64_t)fi.nFileIndexHigh << 32) | fi.nFileIndexLow,
                         .dev = fi.dwVolumeSerialNumber, .nlink = fi.nNumberOfLinks,
                         .mode = kind | perm | (kind == S_IFDIR ? 0111 : 0),
                         .atime_ns = ns_of(fi.ftLastAccessTime), .mtime_ns = ns_of(fi.ftLastWriteTime),
                         .ctime_ns = ns_of(fi.ftCreationTime)};
    return 0;
}

static int pool_run(vigil__job *job, int cancel_fd) {
    vigil__fsjob *j = (vigil__fsjob *)job;
    (void)cancel_fd; /* -1 on Windows: a running job is not interrupted */
    switch (j->call) {
    case VIGIL__FS_OPEN:
        return win_open(j);
    case VIGIL__FS_READ:
    case VIGIL__FS_WRITE:
        return win_rw(j);
    case VIGIL__FS_FSYNC: { /* no data-only form: both flush everything */
        HANDLE h = handle_of(j->fd);
        if (h == INVALID_HANDLE_VALUE)
            return -EBADF;
        return FlushFileBuffers(h) ? 0 : vigil__win_errno(GetLastError());
    }
    case VIGIL__FS_STAT:
        return win_stat(j);
    case VIGIL__FS_CLOSE:
        if (handle_of(j->fd) == INVALID_HANDLE_VALUE)
            return -EBADF;
        return _close(j->fd) == 0 ? 0 : -EIO;
    default:
        return -EINVAL;
    }
}

/* ------------------------------------------------------ the engine */

/* An abandoned open's fd (pool.h): nobody will get it, its worker closes it. */
static void pool_drop(vigil__job *job, int res) {
    if (((vigil__fsjob *)job)->call == VIGIL__FS_OPEN && res >= 0)
        _close(res);
}

void vigil__fs_os_prepare(vigil__fsjob *j) {
    j->job.run = pool_run;
    j->job.drop = pool_drop;
    /* a read or write on the pool fills or sends the caller's buffer: its
     * worker is never abandoned, the rest touch only the job */
    j->job.detachable = j->call != VIGIL__FS_READ && j->call != VIGIL__FS_WRITE;
}

/* port_files[fd]: the handle, with the low bit (handles are multiples of
 * 4) set when it has no position (a pipe, a device): offset -1 means
 * nothing to it, so such reads and writes go to the port too. */
#define NO_POSITION 1

/* The handle of fd if the loop opened it and bound it to its port, for a
 * read or write at offset: the same handle still behind the same fd (one
 * closed without vigil_fs_close and reused is not taken for it). */
static intptr_t port_file(vigil_loop *loop, int fd, int64_t offset) {
    if (fd < 0 || (uint32_t)fd >= loop->port_files_cap || !loop->port_files[fd])
        return 0;
    intptr_t h = loop->port_files[fd] & ~(intptr_t)NO_POSITION;
    if (offset < 0 && !(loop->port_files[fd] & NO_POSITION))
        return 0; /* the file position: on the pool, which reads and moves it */
    return (intptr_t)handle_of(fd) == h ? h : 0;
}

int vigil__fs_os_submit(vigil_loop *loop, vigil__op *op, vigil__fsjob *j) {
    intptr_t h = j->call == VIGIL__FS_READ || j->call == VIGIL__FS_WRITE ? port_file(loop, j->fd, j->offset) : 0;
    if (h && (loop->be->caps & VIGIL__CAP_FILE_IO)) {
        uint32_t len = j->len > VIGIL__FS_MAX_LEN ? VIGIL__FS_MAX_LEN : (uint32_t)j->len;
        int rc = loop->be->file_rw(loop, op, h, j->buf, len, j->offset < 0 ? 0 : j->offset,
                                   j->call == VIGIL__FS_WRITE);
        if (rc == 0)
            j->on_port = true;
        return rc;
    }
    if (j->call == VIGIL__FS_CLOSE && (uint32_t)j->fd < loop->port_files_cap)
        loop->port_files[j->fd] = 0; /* the fd and its handle go: a new one may take either */
    int rc = vigil__pool_get(loop);
    return rc < 0 ? rc : vigil__pool_submit(loop->pool, &j->job);
}

int vigil__fs_os_cancel(vigil_loop *loop, vigil__op *op, vigil__fsjob *j) {
    if (j->on_port)
        return loop->be->cancel(loop, op); /* CancelIoEx: the packet still comes */
    vigil__pool_cancel(loop->pool, &j->job);
    return 0;
}

/* A file just opened joins the port, if it can (another loop's port would
 * refuse it: its calls then go to the pool). */
static void bind_file(vigil_loop *loop, int fd, intptr_t h) {
    if (!h || !(loop->be->caps & VIGIL__CAP_FILE_IO))
        return;
    if ((uint32_t)fd >= loop->port_files_cap) {
        uint32_t cap = loop->port_files_cap ? loop->port_files_cap : 64;
        while (cap <= (uint32_t)fd)
            cap *= 2;
        intptr_t *p = realloc(loop->port_files, cap * sizeof(*p));
        if (!p)
            return;
        memset(p + loop->port_files_cap, 0, (cap - loop->port_files_cap) * sizeof(*p));
        loop->port_files = p;
        loop->port_files_cap = cap;
    }
    if (loop->be->file_bind(loop, h) == 0)
        loop->port_files[fd] = h | (GetFileType((HANDLE)h) == FILE_TYPE_DISK ? 0 : NO_POSITION);
}

int vigil__fs_os_done(vigil_loop *loop, vigil__fsjob *j, int res) {
    if (j->call == VIGIL__FS_OPEN && res >= 0 && !loop->destroying)
        bind_file(loop, res, j->handle);
    else if (j->call == VIGIL__FS_STAT && res == 0)
        *j->st_out = j->st;
    return res;
}

/* ------------------------------------- the engine's pass and its end */

/* Overlapped reads and writes complete through the port: the backend's
 * wait hands them over, there is nothing to take here. */
void vigil__fs_os_poll(vigil_loop *loop, int max) { (void)loop, (void)max; }
bool vigil__fs_os_ready(vigil_loop *loop) { (void)loop; return false; }

bool vigil__fs_os_wait(vigil_loop *loop, int timeout_ms) {
    if (!loop->be || !(loop->be->caps & VIGIL__CAP_FILE_IO))
        return false;
    loop->be->wait(loop, (int64_t)timeout_ms * 1000000); /* overlapped reads and writes complete through the port */
    return true;
}

void vigil__fs_os_free(vigil_loop *loop) {
    free(loop->port_files);
    loop->port_files = NULL;
    loop->port_files_cap = 0;
}

/* ------------------------------------------------ a file message's source */

/* TransmitFile reads the file itself (iocp.c): the handle is all it needs.
 * Nothing is mapped, so the mapping calls are never asked. */
int vigil__file_src_open(vigil_loop *loop, vigil__file_src *s, int fd, int64_t offset, size_t len) {
    (void)loop;
    *s = (vigil__file_src){.fd = fd};
    HANDLE h = handle_of(fd);
    if (h == INVALID_HANDLE_VALUE)
        return -EBADF;
    LARGE_INTEGER size;
    if (GetFileType(h) != FILE_TYPE_DISK || !GetFileSizeEx(h, &size))
        return -ENODEV; /* a pipe, a device; a directory has no size */
    if ((uint64_t)offset > (uint64_t)size.QuadPart || len > (uint64_t)size.QuadPart - (uint64_t)offset)
        return -ENODATA;
    s->handle = (intptr_t)h;
    return 0;
}

void vigil__file_src_close(vigil_loop *loop, vigil__file_src *s) { (void)loop, (void)s; }
void vigil__file_maps_sweep(vigil_loop *loop, uint64_t now_ns) { (void)loop, (void)now_ns; }
void vigil__file_maps_free(vigil_loop *loop) { (void)loop; }
size_t vigil__file_resident(const uint8_t *p, size_t n) { (void)p; return n; }
int vigil__file_populate(const uint8_t *p, size_t n) { (void)p, (void)n; return 0; }
