/* test_fs.c: file calls on every backend (the file ring on io_uring, the
 * worker pool on epoll, the completion port and the pool on Windows):
 * contents byte for byte, errors as negative errno,
 * paths kept beneath a directory, cancel and deadlines on a read that
 * waits, a loop that keeps serving while a read is stuck, destroy with a
 * call in flight, and a rebuild that carries a read in flight over; opens
 * that never wait for a FIFO's peer, and destroy that gives up on a pool
 * thread stuck in a call nothing interrupts. */
#include "util.h"
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef _WIN32
#include <netinet/in.h>
#include <sys/socket.h>
#endif
#ifdef _WIN32
#include <direct.h>
#include <io.h>
#include <windows.h>
#endif

/* The file system around the calls, as each OS has it. On Windows the
 * directory is under the temporary directory, "close-on-exec" is a handle
 * that is not inherited, a FIFO is a named pipe (\\.\pipe\NAME, opened
 * by path like any file) and a file's identity comes from its handle. */
#define DIR_ROOM 200 /* a test directory's path */

#ifdef _WIN32
static void make_dir(char *dir, size_t len) {
    static unsigned n;
    char tmp[MAX_PATH];
    VT_ASSERT(GetTempPathA(sizeof(tmp), tmp) > 0);
    int w = snprintf(dir, len, "%svigil-fs-%lu-%u", tmp, GetCurrentProcessId(), n++);
    VT_ASSERT(w > 0 && (size_t)w < len, "the temporary directory's path is too long: %s", tmp);
    VT_EQ(_mkdir(dir), 0);
}

static void rm_tree(const char *dir) {
    char pat[300], sub[300];
    WIN32_FIND_DATAA fd;
    snprintf(pat, sizeof(pat), "%s\\*", dir);
    HANDLE h = FindFirstFileA(pat, &fd);
    if (h != INVALID_HANDLE_VALUE) {
        do {
            if (!strcmp(fd.cFileName, ".") || !strcmp(fd.cFileName, ".."))
                continue;
            snprintf(sub, sizeof(sub), "%s\\%s", dir, fd.cFileName);
            if (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)
                rm_tree(sub);
            else
                DeleteFileA(sub);
        } while (FindNextFileA(h, &fd));
        FindClose(h);
    }
    RemoveDirectoryA(dir);
}
static void rm_dir(const char *dir) {
    rm_tree(dir);
    VT_EQ(GetFileAttributesA(dir), INVALID_FILE_ATTRIBUTES);
}

static bool fd_cloexec(int fd) {
    DWORD f = 0;
    return GetHandleInformation((HANDLE)_get_osfhandle(fd), &f) && !(f & HANDLE_FLAG_INHERIT);
}
static bool fd_closed(int fd) { return _get_osfhandle(fd) == -1; }
static int make_subdir(const char *path) { return _mkdir(path); }

/* The file index and volume serial, as vigil_stat has them. */
static void file_id(const char *path, uint64_t *ino, uint64_t *dev) {
    HANDLE h = CreateFileA(path, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_FLAG_BACKUP_SEMANTICS, NULL);
    BY_HANDLE_FILE_INFORMATION fi;
    VT_ASSERT(h != INVALID_HANDLE_VALUE && GetFileInformationByHandle(h, &fi));
    CloseHandle(h);
    *ino = ((uint64_t)fi.nFileIndexHigh << 32) | fi.nFileIndexLow;
    *dev = fi.dwVolumeSerialNumber;
}

/* A FIFO at a path vigil_fs_open can open, and its writer's fd. */
static void make_fifo(char *path, size_t len, const char *dir, int *writer) {
    static unsigned n;
    (void)dir;
    snprintf(path, len, "\\\\.\\pipe\\vigil-fs-%lu-%u", GetCurrentProcessId(), n++);
    HANDLE h = CreateNamedPipeA(path, PIPE_ACCESS_OUTBOUND, PIPE_TYPE_BYTE | PIPE_WAIT, 1, 4096, 4096, 0, NULL);
    VT_ASSERT(h != INVALID_HANDLE_VALUE, "CreateNamedPipe: %lu", GetLastError());
    *writer = _open_osfhandle((intptr_t)h, _O_BINARY);
    VT_ASSERT(*writer >= 0);
}
/* A pool of the system's own: an anonymous pipe, which the loop did not open. */
static int plain_pipe(int p[2]) { return _pipe(p, 4096, _O_BINARY); }
#else
static void make_dir(char *dir, size_t len) {
    snprintf(dir, len, "/tmp/vigil-fs-XXXXXX");
    VT_ASSERT(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void rm_dir(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    VT_EQ(system(cmd), 0);
}

static bool fd_cloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }
static bool fd_closed(int fd) { return fcntl(fd, F_GETFD) == -1; }
static int make_subdir(const char *path) { return mkdir(path, 0700); }

static void file_id(const char *path, uint64_t *ino, uint64_t *dev) {
    struct stat ref;
    VT_EQ(stat(path, &ref), 0);
    *ino = (uint64_t)ref.st_ino;
    *dev = (uint64_t)ref.st_dev;
}

static void make_fifo(char *path, size_t len, const char *dir, int *writer) {
    snprintf(path, len, "%s/fifo", dir);
    VT_EQ(mkfifo(path, 0600), 0);
    *writer = open(path, O_RDWR); /* so that opening it for reading does not wait */
    VT_ASSERT(*writer >= 0);
}
static int plain_pipe(int p[2]) { return pipe(p); }
#endif

/* One call's outcome. */
typedef struct result {
    _Atomic int done;
    _Atomic int status;
    _Atomic int calls;
    pthread_t thread;
} result;

static void on_fs(vigil_loop *loop, vigil_op op, int status, void *ud) {
    result *r = ud;
    r->thread = pthread_self();
    atomic_store(&r->status, status);
    atomic_fetch_add(&r->calls, 1);
    atomic_store(&r->done, 1);
}

/* Runs one call to its end, within ms, and returns its status. */
#define CALL_WITHIN(loop, r, ms, expr)                                                      \
    ({                                                                                      \
        memset(&(r), 0, sizeof(r));                                                         \
        VT_OK(expr);                                                                        \
        VT_ASSERT(vt_run_until(loop, (const volatile int *)&(r).done, (ms)), "no callback: " #expr); \
        VT_EQ(atomic_load(&(r).calls), 1);                                                  \
        atomic_load(&(r).status);                                                           \
    })
#define CALL(loop, r, expr) CALL_WITHIN(loop, r, 10000, expr)

static bool on_uring(void) {
#ifdef _WIN32
    return false;
#else
    vt_backend_id b = vt_backend();
    return (b == VT_BACKEND_DEFAULT && vt_have_uring()) || b == VT_BACKEND_URING ||
           b == VT_BACKEND_URING_COMPAT;
#endif
}

/* A pipe for reads that wait: p[0] reads, p[1] writes. On Windows the read
 * end is a named pipe the loop opened, so its reads wait on the loop's
 * port, where cancel reaches them (an anonymous pipe's read would block a
 * pool thread that nothing interrupts). */
static void waiting_pipe(vigil_loop *loop, int p[2]) {
#ifdef _WIN32
    char path[160];
    result r;
    make_fifo(path, sizeof(path), NULL, &p[1]);
    p[0] = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(p[0] >= 0, "open %s: %d", path, p[0]);
#else
    (void)loop;
    VT_EQ(pipe(p), 0);
#endif
}

VT_TEST(fs, write_stat_read_close, 20) {
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/a", dir);
    result r;
    int fd = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_CREAT | O_RDWR | O_EXCL, 0640,
                                         on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open: %d", fd);
    VT_ASSERT(fd_cloexec(fd), "the fd must be close-on-exec");
    uint8_t out[100000], in[100000];
    vt_fill(out, sizeof(out), 7, 0);
    /* two writes at offsets, the second first */
    VT_EQ(CALL(loop, r, vigil_fs_write(loop, fd, out + 50000, 50000, 50000, on_fs, &r, NULL)), 50000);
    VT_EQ(CALL(loop, r, vigil_fs_write(loop, fd, out, 50000, 0, on_fs, &r, NULL)), 50000);
    VT_EQ(CALL(loop, r, vigil_fs_fsync(loop, fd, 0, on_fs, &r, NULL)), 0);
    VT_EQ(CALL(loop, r, vigil_fs_fsync(loop, fd, VIGIL_FSYNC_DATA, on_fs, &r, NULL)), 0);
    vigil_stat st;
    VT_EQ(CALL(loop, r, vigil_fs_stat(loop, VIGIL_FS_CWD, path, &st, on_fs, &r, NULL)), 0);
    VT_EQ(st.size, sizeof(out));
#ifdef _WIN32 /* no owner, group and others: writable or read-only */
    VT_ASSERT(S_ISREG(st.mode) && (st.mode & 0777) == 0666, "mode %o", st.mode);
#else
    VT_ASSERT(S_ISREG(st.mode) && (st.mode & 0777) == 0640, "mode %o", st.mode);
#endif
    VT_EQ(st.nlink, 1);
    VT_ASSERT(st.mtime_ns > 0, "mtime");
    uint64_t ino, dev;
    file_id(path, &ino, &dev);
    VT_EQ(st.ino, ino);
    VT_EQ(st.dev, dev);
    /* fstat: the fd itself */
    vigil_stat st2;
    VT_EQ(CALL(loop, r, vigil_fs_stat(loop, fd, "", &st2, on_fs, &r, NULL)), 0);
    VT_EQ(st2.ino, st.ino);
    /* read back, then a read at the end */
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, fd, in, sizeof(in), 0, on_fs, &r, NULL)), (int)sizeof(in));
    VT_EQ(memcmp(in, out, sizeof(in)), 0);
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, fd, in, 10, sizeof(out), on_fs, &r, NULL)), 0);
    /* offset -1: the file position, which the offset reads did not move */
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, fd, in, 10, -1, on_fs, &r, NULL)), 10);
    VT_EQ(memcmp(in, out, 10), 0);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);
    VT_ASSERT(fd_closed(fd));
    VT_OK(vigil_loop_destroy(loop));
    rm_dir(dir);
}

/* 100 MiB written and read back through the loop, four calls in flight each
 * way, every byte checked against the pattern. */
#define BIG (100u << 20)
#define CHUNK (1u << 20)
#define DEPTH 4

typedef struct big {
    vigil_loop *loop;
    int fd;
    bool reading;
    uint8_t *mem;           /* the whole file's worth, one CHUNK slot per call */
    uint64_t next, done;    /* offsets issued, bytes finished */
    int err;
    size_t bad_at;
} big;

static void big_issue(big *b);

typedef struct big_call {
    big *b;
    uint64_t off;
} big_call;
static big_call calls[BIG / CHUNK];

static void big_done(vigil_loop *loop, vigil_op op, int status, void *ud) {
    big_call *c = ud;
    big *b = c->b;
    if (status != (int)CHUNK) { /* short counts do not happen on a local file this size */
        b->err = status < 0 ? status : -EIO;
        return;
    }
    if (b->reading) {
        size_t bad = vt_check(b->mem + c->off, CHUNK, 42, c->off);
        if (bad != CHUNK && b->bad_at == SIZE_MAX)
            b->bad_at = c->off + bad;
    }
    b->done += CHUNK;
    big_issue(b);
}

static void big_issue(big *b) {
    if (b->next >= BIG)
        return;
    big_call *c = &calls[b->next / CHUNK];
    *c = (big_call){b, b->next};
    int rc = b->reading ? vigil_fs_read(b->loop, b->fd, b->mem + c->off, CHUNK, (int64_t)c->off,
                                        big_done, c, NULL)
                        : vigil_fs_write(b->loop, b->fd, b->mem + c->off, CHUNK, (int64_t)c->off,
                                         big_done, c, NULL);
    if (rc < 0)
        b->err = rc;
    b->next += CHUNK;
}

static void big_run(big *b) {
    b->next = b->done = 0;
    for (int i = 0; i < DEPTH; i++)
        big_issue(b);
    uint64_t until = vigil_now_ns() + 50000000000ull;
    while (b->done < BIG && !b->err && vigil_now_ns() < until)
        VT_ASSERT(vigil_loop_run(b->loop, VIGIL_RUN_ONCE, 100) >= 0);
    VT_EQ(b->err, 0);
    VT_EQ(b->done, BIG);
}

VT_TEST(fs, hundred_mib_round_trip_byte_for_byte, 90) {
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/big", dir);
    result r;
    int fd = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_CREAT | O_RDWR | O_TRUNC, 0600,
                                         on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open: %d", fd);
    big b = {.loop = loop, .fd = fd, .bad_at = SIZE_MAX};
    b.mem = malloc(BIG);
    VT_ASSERT(b.mem != NULL);
    vt_fill(b.mem, BIG, 42, 0);
    big_run(&b);
    VT_EQ(CALL(loop, r, vigil_fs_fsync(loop, fd, 0, on_fs, &r, NULL)), 0);
    /* the file as the kernel has it, read back through a second descriptor */
    memset(b.mem, 0, BIG);
    int fd2 = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(fd2 >= 0, "open: %d", fd2);
    b.fd = fd2;
    b.reading = true;
    big_run(&b);
    VT_ASSERT(b.bad_at == SIZE_MAX, "first wrong byte at offset %zu", b.bad_at);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd2, on_fs, &r, NULL)), 0);
    free(b.mem);
    VT_OK(vigil_loop_destroy(loop));
    rm_dir(dir);
}

VT_TEST(fs, errors_are_negative_errno, 20) {
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    result r;
    uint8_t buf[16];
    vigil_stat st;
    /* refused at the call */
    VT_EQ(vigil_fs_open(loop, VIGIL_FS_CWD, NULL, O_RDONLY, 0, on_fs, &r, NULL), -EINVAL);
    VT_EQ(vigil_fs_open(loop, VIGIL_FS_CWD, dir, O_RDONLY, 0, NULL, NULL, NULL), -EINVAL);
    VT_EQ(vigil_fs_read(loop, -1, buf, sizeof(buf), 0, on_fs, &r, NULL), -EBADF);
    VT_EQ(vigil_fs_read(loop, 0, NULL, 10, 0, on_fs, &r, NULL), -EINVAL);
    VT_EQ(vigil_fs_read(loop, 0, buf, sizeof(buf), -2, on_fs, &r, NULL), -EINVAL);
    VT_EQ(vigil_fs_write(loop, -5, buf, sizeof(buf), 0, on_fs, &r, NULL), -EBADF);
    VT_EQ(vigil_fs_fsync(loop, 0, 99, on_fs, &r, NULL), -EINVAL);
    VT_EQ(vigil_fs_stat(loop, VIGIL_FS_CWD, dir, NULL, on_fs, &r, NULL), -EINVAL);
    VT_EQ(vigil_fs_close(loop, -1, on_fs, &r, NULL), -EBADF);
    VT_EQ(vigil_op_cancel(loop, (vigil_op){12345}), -EBADF);
    /* reported by the kernel, through the callback */
    snprintf(path, sizeof(path), "%s/missing", dir);
    VT_EQ(CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL)), -ENOENT);
    VT_EQ(CALL(loop, r, vigil_fs_stat(loop, VIGIL_FS_CWD, path, &st, on_fs, &r, NULL)), -ENOENT);
    int bad = 1000 + (int)(getpid() % 1000); /* an fd number nobody holds */
    while (!fd_closed(bad))
        bad++;
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, bad, buf, sizeof(buf), 0, on_fs, &r, NULL)), -EBADF);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, bad, on_fs, &r, NULL)), -EBADF);
    int dfd = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, dir, O_RDONLY | VIGIL_O_DIRECTORY, 0, on_fs, &r, NULL));
    VT_ASSERT(dfd >= 0, "open dir: %d", dfd);
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, dfd, buf, sizeof(buf), 0, on_fs, &r, NULL)), -EISDIR);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, dfd, on_fs, &r, NULL)), 0);
    /* VIGIL_O_DIRECTORY, vigil's own bit, means O_DIRECTORY on every OS */
    snprintf(path, sizeof(path), "%s/plain", dir);
    int pf = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_CREAT | O_WRONLY, 0600, on_fs, &r, NULL));
    VT_ASSERT(pf >= 0, "create: %d", pf);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, pf, on_fs, &r, NULL)), 0);
    VT_EQ(CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY | VIGIL_O_DIRECTORY, 0, on_fs, &r,
                                      NULL)), -ENOTDIR);
    VT_EQ(unlink(path), 0);
    VT_OK(vigil_loop_destroy(loop));
    rm_dir(dir);
}

/* VIGIL_O_BENEATH keeps every path inside the directory: the way a static
 * file server must open what a client names. */
VT_TEST(fs, beneath_keeps_paths_inside_the_directory, 20) {
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/sub", dir);
    VT_EQ(make_subdir(path), 0);
    snprintf(path, sizeof(path), "%s/sub/in.txt", dir);
    FILE *f = fopen(path, "w");
    VT_ASSERT(f != NULL);
    fputs("inside", f);
    fclose(f);
#ifdef _WIN32 /* no symlink without privileges: an absolute path of Windows' own instead */
    const char *out_of_it = "C:\\windows\\win.ini";
#else
    snprintf(path, sizeof(path), "%s/sub/out", dir);
    VT_EQ(symlink("/etc/hostname", path), 0);
    const char *out_of_it = "out";
#endif
    snprintf(path, sizeof(path), "%s/sub", dir);
    result r;
    int root = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY | VIGIL_O_DIRECTORY, 0, on_fs, &r, NULL));
    VT_ASSERT(root >= 0, "open root: %d", root);
    int fd = CALL(loop, r, vigil_fs_open(loop, root, "in.txt", O_RDONLY | VIGIL_O_BENEATH, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open in.txt beneath: %d", fd);
    char buf[16] = {0};
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, fd, buf, sizeof(buf), 0, on_fs, &r, NULL)), 6);
    VT_EQ(strcmp(buf, "inside"), 0);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);
    const char *escapes[] = {"../sub/in.txt", "/etc/hostname", out_of_it, "./../../etc/passwd"};
    for (int i = 0; i < 4; i++) {
        int rc = CALL(loop, r, vigil_fs_open(loop, root, escapes[i], O_RDONLY | VIGIL_O_BENEATH, 0, on_fs,
                                             &r, NULL));
        VT_ASSERT(rc == -EXDEV, "%s opened beneath: %d", escapes[i], rc);
    }
    /* without the flag the same names resolve as usual */
    fd = CALL(loop, r, vigil_fs_open(loop, root, "../sub/in.txt", O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "plain open: %d", fd);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, root, on_fs, &r, NULL)), 0);
    VT_OK(vigil_loop_destroy(loop));
    rm_dir(dir);
}

/* A read at the file position with a deadline (vigil_op_set_deadline). */
static int read_within(vigil_loop *loop, int fd, char *buf, size_t len, uint32_t ms, result *r) {
    vigil_op op;
    int rc = vigil_fs_read(loop, fd, buf, len, -1, on_fs, r, &op);
    return rc < 0 ? rc : vigil_op_set_deadline(loop, op, ms);
}

/* A read from a pipe waits until someone writes: cancel and a deadline end
 * it, and the bytes stay in the pipe for the next read. */
VT_TEST(fs, waiting_read_is_cancelled_or_times_out, 20) {
    vigil_loop *loop = vt_loop(NULL);
    int p[2];
    waiting_pipe(loop, p);
    char buf[64];
    result r = {0};
    vigil_op op;
    VT_OK(vigil_fs_read(loop, p[0], buf, sizeof(buf), -1, on_fs, &r, &op));
    vt_run_until(loop, &(int){0}, 100);
    VT_EQ(atomic_load(&r.done), 0);
    VT_OK(vigil_op_cancel(loop, op));
    VT_EQ(vigil_op_cancel(loop, op), -EBADF); /* once */
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&r.done, 5000));
    VT_EQ(atomic_load(&r.status), -ECANCELED);
    VT_EQ(vigil_op_cancel(loop, op), -EBADF); /* finished */

    uint64_t t0 = vigil_now_ns();
    VT_EQ(CALL(loop, r, read_within(loop, p[0], buf, sizeof(buf), 150, &r)), -ETIMEDOUT);
    uint64_t took_ms = (vigil_now_ns() - t0) / 1000000;
    VT_ASSERT(took_ms >= 140, "timed out after %llu ms", (unsigned long long)took_ms);
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    VT_EQ(ls.deadlines_expired, 1);

    /* nothing was taken from the pipe: the next read gets every byte */
    VT_EQ(write(p[1], "abc", 3), 3);
    VT_EQ(CALL(loop, r, read_within(loop, p[0], buf, sizeof(buf), 1000, &r)), 3);
    VT_EQ(memcmp(buf, "abc", 3), 0);
    close(p[0]);
    close(p[1]);
    VT_OK(vigil_loop_destroy(loop));
}

/* While a file read is stuck (a FIFO nobody writes to), the loop goes on
 * serving a TCP client: 500 round trips, then the read gets its bytes. */
typedef struct echo {
    int port;
    _Atomic int rounds, done;
} echo;

static void echo_recv(vigil_loop *loop, vigil_conn c, int status, const vigil_buf *b, void *ud) {
    if (status > 0)
        vigil_conn_send(loop, c, b->data, b->len, 0, NULL, NULL, NULL);
    else
        vigil_conn_close(loop, c, 0, NULL, NULL);
}

static void echo_accept(vigil_loop *loop, vigil_listener l, int status, vigil_conn c, void *ud) {
    if (status == 0)
        vigil_conn_recv_start(loop, c, 0, echo_recv, NULL, NULL);
}

static void *echo_client(void *arg) {
    echo *e = arg;
    int fd = vt_sock_connect(e->port);
    char out[32], in[32];
    for (int i = 0; i < 500; i++) {
        snprintf(out, sizeof(out), "round %d", i);
        size_t n = strlen(out);
        if (vt_sock_write_all(fd, out, n) < 0 || vt_sock_read_n(fd, in, n, 5000) != n || memcmp(in, out, n))
            break;
        atomic_fetch_add(&e->rounds, 1);
    }
    close(fd);
    atomic_store(&e->done, 1);
    return NULL;
}

VT_TEST(fs, loop_keeps_serving_while_a_read_is_stuck, 30) {
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    int writer;
    make_fifo(path, sizeof(path), dir, &writer);
    result r;
    int fd = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open fifo: %d", fd);
    char buf[64] = {0};
    result rd = {0};
    VT_OK(vigil_fs_read(loop, fd, buf, sizeof(buf), -1, on_fs, &rd, NULL));

    echo e = {0};
    vt_listen(loop, echo_accept, NULL, &e.port);
    pthread_t t;
    VT_EQ(pthread_create(&t, NULL, echo_client, &e), 0);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&e.done, 20000));
    pthread_join(t, NULL);
    VT_EQ(atomic_load(&e.rounds), 500);
    VT_EQ(atomic_load(&rd.done), 0); /* still waiting, all along */

    VT_EQ(write(writer, "late bytes", 10), 10);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&rd.done, 5000));
    VT_EQ(atomic_load(&rd.status), 10);
    VT_EQ(memcmp(buf, "late bytes", 10), 0);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);
    close(writer);
    VT_OK(vigil_loop_destroy(loop));
    rm_dir(dir);
}

/* Destroy ends a waiting read with -ECANCELED, exactly once. */
VT_TEST(fs, destroy_ends_a_waiting_read, 20) {
    vigil_loop *loop = vt_loop(NULL);
    int p[2];
    waiting_pipe(loop, p);
    char buf[8];
    result r = {0};
    VT_OK(vigil_fs_read(loop, p[0], buf, sizeof(buf), -1, on_fs, &r, NULL));
    vt_run_until(loop, &(int){0}, 50);
    VT_OK(vigil_loop_destroy(loop));
    VT_EQ(atomic_load(&r.calls), 1);
    VT_EQ(atomic_load(&r.status), -ECANCELED);
    close(p[0]);
    close(p[1]);
}

/* The pool takes pool_threads calls at a time and pool_queue more; past
 * that a call is refused with -EAGAIN, and the queued ones still run. */
VT_TEST(fs, pool_queue_is_bounded, 20) {
    if (on_uring())
        VT_SKIP("io_uring: file calls go to the file ring, not the pool");
    vigil_loop_options o = {.pool_threads = 1, .pool_queue = 2};
    vigil_loop *loop = vt_loop(&o);
    int p[2];
    VT_EQ(plain_pipe(p), 0); /* on Windows too: not the loop's, so on the pool */
    char buf[4][4];
    result r[4];
    memset(r, 0, sizeof(r));
    VT_OK(vigil_fs_read(loop, p[0], buf[0], 1, -1, on_fs, &r[0], NULL)); /* runs, waits */
    usleep(50000);
    VT_OK(vigil_fs_read(loop, p[0], buf[1], 1, -1, on_fs, &r[1], NULL)); /* queued */
    VT_OK(vigil_fs_read(loop, p[0], buf[2], 1, -1, on_fs, &r[2], NULL)); /* queued */
    VT_EQ(vigil_fs_read(loop, p[0], buf[3], 1, -1, on_fs, &r[3], NULL), -EAGAIN);
    VT_EQ(write(p[1], "xyz", 3), 3);
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&r[2].done, 5000));
    for (int i = 0; i < 3; i++)
        VT_EQ(atomic_load(&r[i].status), 1);
    VT_EQ(buf[0][0], 'x');
    VT_EQ(buf[1][0], 'y');
    VT_EQ(buf[2][0], 'z');
    VT_EQ(atomic_load(&r[3].calls), 0);
    vigil_loop_options bad = {.pool_threads = 65};
    vigil_loop *l2;
    VT_EQ(vigil_loop_create(&l2, &bad), -EINVAL);
    close(p[0]);
    close(p[1]);
    VT_OK(vigil_loop_destroy(loop));
}

/* A rebuild while a file read waits: the read stays where it is (the file
 * ring or the pool belong to the loop) and completes on the new thread,
 * once, with its bytes. */
typedef struct fenced {
    _Atomic int fenced;
} fenced;

VT_TEST(fs, rebuild_carries_a_read_in_flight, 30) {
    vigil_supervisor *sv;
    vigil_loop *loop = vt_fenceable_loop(&sv);
    int p[2];
    waiting_pipe(loop, p);
    char buf[64] = {0};
    result r = {0};
    VT_OK(vigil_fs_read(loop, p[0], buf, sizeof(buf), -1, on_fs, &r, NULL));
    fenced f = {0};
    VT_OK(vigil_timer_start(loop, 20, 0, vt_fence_timer, &f.fenced, NULL));
    int rc = vt_run_until_fenced(loop, 10000);
    VT_EQ(rc, -EOWNERDEAD);
    VT_EQ(atomic_load(&f.fenced), 1);
    VT_EQ(atomic_load(&r.done), 0);

    VT_EQ(write(p[1], "carried over", 12), 12);
    uint64_t t0 = vigil_now_ns();
    while (!atomic_load(&r.done) && vigil_now_ns() - t0 < 5000000000ull)
        usleep(1000);
    VT_EQ(atomic_load(&r.done), 1);
    VT_EQ(atomic_load(&r.status), 12);
    VT_EQ(memcmp(buf, "carried over", 12), 0);
    VT_ASSERT(!pthread_equal(r.thread, pthread_self()), "the callback ran on the fenced thread");
    VT_OK(vigil_loop_join(loop, 10000)); /* no work left: the rebuilt loop ends */
    vigil_loop_stats ls;
    VT_OK(vigil_loop_get_stats(loop, &ls));
    VT_EQ(ls.rebuilds, 1);
    VT_EQ(atomic_load(&r.calls), 1);
    VT_OK(vigil_supervisor_remove(sv, loop));
    VT_OK(vigil_supervisor_stop(sv));
    VT_OK(vigil_loop_destroy(loop));
    close(p[0]);
    close(p[1]);
}

#ifndef _WIN32
/* An open that does not wait for anything returns well within this: it
 * fails the old pool, whose open(2) of a FIFO waited for a writer. */
#define PROMPT_MS 2000

static bool fd_nonblock(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }
#endif

/* A FIFO nobody has open: for reading it opens at once, as an fd that
 * blocks like the caller asked (no O_NONBLOCK left behind); for writing it
 * fails -ENXIO at once; O_NONBLOCK asked for stays. The same on every
 * backend (the pool used to wait in open(2) for a writer, for ever, and so
 * did the file ring for O_CREAT, which the kernel sends to io-wq). */
VT_TEST(fs, fifo_open_never_waits_for_a_peer, 20) {
#ifdef _WIN32
    /* A named pipe whose one instance is taken: CreateFileW fails at once
     * (it never waits for a free instance as WaitNamedPipe would). */
    vigil_loop *loop = vt_loop(NULL);
    char path[160];
    int writer;
    result r;
    make_fifo(path, sizeof(path), NULL, &writer);
    int fd = CALL_WITHIN(loop, r, 2000, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open %s: %d", path, fd);
    int busy = CALL_WITHIN(loop, r, 2000, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(busy < 0, "a second open of a one-instance pipe: %d", busy);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);
    _close(writer);
    VT_OK(vigil_loop_destroy(loop));
#else
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64], file[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/fifo", dir);
    VT_EQ(mkfifo(path, 0600), 0);
    result r;
    int fd = CALL_WITHIN(loop, r, PROMPT_MS, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open fifo for reading: %d", fd);
    VT_ASSERT(!fd_nonblock(fd), "O_NONBLOCK was not asked for");
    VT_ASSERT(fd_cloexec(fd));
    vigil_stat st;
    VT_EQ(CALL(loop, r, vigil_fs_stat(loop, fd, "", &st, on_fs, &r, NULL)), 0);
    VT_ASSERT(S_ISFIFO(st.mode), "mode %o", st.mode);
    VT_EQ(CALL(loop, r, vigil_fs_close(loop, fd, on_fs, &r, NULL)), 0);

    VT_EQ(CALL_WITHIN(loop, r, PROMPT_MS, vigil_fs_open(loop, VIGIL_FS_CWD, path, O_WRONLY, 0, on_fs, &r, NULL)),
          -ENXIO);
    /* beneath goes through openat2 on both engines */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    VT_ASSERT(dfd >= 0);
    fd = CALL_WITHIN(loop, r, PROMPT_MS,
                     vigil_fs_open(loop, dfd, "fifo", O_RDONLY | VIGIL_O_BENEATH, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open fifo beneath: %d", fd);
    VT_ASSERT(!fd_nonblock(fd));
    close(fd);
    fd = CALL_WITHIN(loop, r, PROMPT_MS,
                     vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY | O_NONBLOCK, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open fifo O_NONBLOCK: %d", fd);
    VT_ASSERT(fd_nonblock(fd), "O_NONBLOCK was asked for");
    close(fd);
    /* O_CREAT of an existing FIFO: the ring sends it straight to io-wq */
    fd = CALL_WITHIN(loop, r, PROMPT_MS,
                     vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY | O_CREAT, 0600, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0, "open fifo O_CREAT: %d", fd);
    close(fd);

    /* regular files: as asked, either way */
    snprintf(file, sizeof(file), "%s/plain", dir);
    fd = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, file, O_CREAT | O_RDWR, 0600, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0 && !fd_nonblock(fd), "regular file: %d", fd);
    close(fd);
    fd = CALL(loop, r, vigil_fs_open(loop, VIGIL_FS_CWD, file, O_RDWR | O_NONBLOCK, 0, on_fs, &r, NULL));
    VT_ASSERT(fd >= 0 && fd_nonblock(fd), "regular file, O_NONBLOCK: %d", fd);
    close(fd);
    close(dfd);
    VT_OK(vigil_loop_destroy(loop));
    rm_dir(dir);
#endif
}

/* What `vigil serve --mode http` met: FIFOs under its root, opened as many
 * at once as the pool has threads (4), then a regular file. Nothing waits:
 * every open completes promptly, the regular one too, and destroy is quick. */
VT_TEST(fs, fifo_opens_leave_the_pool_free, 20) {
    VT_SKIP_ON_WINDOWS("no FIFOs in the file system");
#ifndef _WIN32
    vigil_loop *loop = vt_loop(NULL);
    char dir[DIR_ROOM], path[DIR_ROOM + 64];
    make_dir(dir, sizeof(dir));
    enum { FIFOS = 4 };
    result rf[FIFOS + 1], rr;
    memset(rf, 0, sizeof(rf));
    memset(&rr, 0, sizeof(rr));
    for (int i = 0; i < FIFOS; i++) {
        snprintf(path, sizeof(path), "%s/fifo%d", dir, i);
        VT_EQ(mkfifo(path, 0600), 0);
        VT_OK(vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &rf[i], NULL));
    }
    snprintf(path, sizeof(path), "%s/no-reader", dir); /* the others have readers by now, or soon */
    VT_EQ(mkfifo(path, 0600), 0);
    VT_OK(vigil_fs_open(loop, VIGIL_FS_CWD, path, O_WRONLY, 0, on_fs, &rf[FIFOS], NULL));
    snprintf(path, sizeof(path), "%s/index.html", dir);
    int w = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    VT_ASSERT(w >= 0);
    VT_EQ(write(w, "hello", 5), 5);
    close(w);
    uint64_t t0 = vigil_now_ns();
    VT_OK(vigil_fs_open(loop, VIGIL_FS_CWD, path, O_RDONLY, 0, on_fs, &rr, NULL));
    VT_ASSERT(vt_run_until(loop, (const volatile int *)&rr.done, PROMPT_MS), "the regular file's open waited");
    for (int i = 0; i <= FIFOS; i++)
        VT_ASSERT(vt_run_until(loop, (const volatile int *)&rf[i].done, PROMPT_MS), "fifo open %d waited", i);
    VT_LOG("all opens in %llu ms", (unsigned long long)((vigil_now_ns() - t0) / 1000000));
    int fd = atomic_load(&rr.status);
    VT_ASSERT(fd >= 0, "regular open: %d", fd);
    char buf[8];
    result r;
    VT_EQ(CALL(loop, r, vigil_fs_read(loop, fd, buf, sizeof(buf), 0, on_fs, &r, NULL)), 5);
    close(fd);
    for (int i = 0; i < FIFOS; i++) {
        VT_EQ(atomic_load(&rf[i].calls), 1);
        VT_ASSERT(atomic_load(&rf[i].status) >= 0, "fifo %d: %d", i, atomic_load(&rf[i].status));
        close(atomic_load(&rf[i].status));
    }
    VT_EQ(atomic_load(&rf[FIFOS].status), -ENXIO);
    t0 = vigil_now_ns();
    VT_OK(vigil_loop_destroy(loop));
    VT_ASSERT(vigil_now_ns() - t0 < 1000000000ull, "destroy waited");
    rm_dir(dir);
#endif
}

/* A pool thread stuck in a call that nothing interrupts: close(2) of a TCP
 * socket with SO_LINGER whose bytes the peer never reads waits the whole
 * linger time (pool threads block every signal). Destroy gives up on it
 * after its bound (2 s) instead of waiting 20 s: the close ends once with
 * -ECANCELED, the fd is gone, and the thread finishes on its own later.
 * On io_uring the close is done at once and lingers in the kernel's own
 * worker; the loop thread must not be the one that lingers. */
VT_TEST(fs, destroy_gives_up_on_a_stuck_pool_call, 15) {
    VT_SKIP_ON_WINDOWS("lingering close of a CRT fd: no socket behind one");
#ifndef _WIN32
    vigil_loop *loop = vt_loop(NULL);
    int port;
    int lfd = vt_sock_listen(&port);
    int cfd = vt_sock_connect(port);
    int sfd = vt_sock_accept(lfd, 5000);
    VT_ASSERT(sfd >= 0);
    int small = 4096;
    setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    VT_EQ(fcntl(cfd, F_SETFL, O_NONBLOCK), 0);
    static char junk[65536];
    size_t queued = 0;
    for (int idle = 0; idle < 20;) { /* until the peer's window is shut and our queue full */
        ssize_t n = send(cfd, junk, sizeof(junk), MSG_NOSIGNAL);
        if (n > 0) {
            queued += (size_t)n;
            idle = 0;
        } else {
            idle++;
            usleep(5000);
        }
    }
    VT_LOG("%zu bytes queued", queued);
    struct linger lg = {.l_onoff = 1, .l_linger = 20};
    VT_EQ(setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    VT_EQ(fcntl(cfd, F_SETFL, 0), 0); /* a blocking close is what lingers */
    result r = {0};
    uint64_t t0 = vigil_now_ns();
    VT_OK(vigil_fs_close(loop, cfd, on_fs, &r, NULL));
    vt_run_until(loop, (const volatile int *)&r.done, 300);
    VT_ASSERT(vigil_now_ns() - t0 < 2000000000ull, "the loop thread itself waited in the close");
    /* the file ring's close returns once the fd is gone, and the last fput
     * lingers on an io-wq worker; the pool's waits in close(2) */
    bool ring = on_uring();
    VT_EQ(atomic_load(&r.done), ring);
    t0 = vigil_now_ns();
    VT_OK(vigil_loop_destroy(loop));
    uint64_t took_ms = (vigil_now_ns() - t0) / 1000000;
    VT_LOG("destroy took %llu ms", (unsigned long long)took_ms);
    VT_ASSERT(took_ms < 5000, "destroy waited %llu ms for a stuck pool thread", (unsigned long long)took_ms);
    VT_EQ(atomic_load(&r.calls), 1);
    VT_EQ(atomic_load(&r.status), ring ? 0 : -ECANCELED);
    VT_ASSERT(fd_closed(cfd), "the fd must be gone (close(2) had begun)");
    close(sfd);
    close(lfd);
#endif
}
