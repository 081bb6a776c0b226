/*
 * files.c: file calls on Linux (fs.h): the loop's file ring when the
 * loop runs on io_uring, its worker pool otherwise (epoll, or a kernel that
 * will not give one more ring), chosen at the first call.
 *
 * Opens never wait for a peer, on either engine: open(2) of a FIFO waits
 * for the other end, of some devices for a carrier, and nothing interrupts
 * that wait (pool workers block every signal). So every open adds
 * O_NONBLOCK, which makes those opens return at once (a FIFO for reading
 * opens, for writing without a reader fails -ENXIO), and the loop clears it
 * again when the caller did not ask for it. The ring did so by luck: the
 * kernel's first, inline attempt of an openat adds O_NONBLOCK itself and
 * clears it on success, but a path not in the dentry cache, or an open
 * with O_CREAT, O_TRUNC or O_TMPFILE, goes to an io-wq worker that opens
 * without it and waits like a pool thread did. Asked for explicitly, the
 * flag holds on both of the kernel's routes.
 */
#include "core/fs.h"
#include "os/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

/* ------------------------------------------------ the pool's side */

/* Waits until fd is ready for events (POLLIN/POLLOUT): 0, or -ECANCELED
 * when the job was cancelled (its worker's cancel_fd, pool.c). */
static int wait_fd(int fd, short events, int cancel_fd) {
    for (;;) {
        struct pollfd pf[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
        int n = poll(pf, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (pf[1].revents & POLLIN)
            return -ECANCELED;
        if (pf[0].revents)
            return 0; /* ready, or an error the call itself will report */
    }
}

/* Pipes, sockets and terminals can wait for ever: wait for them where a
 * cancel can interrupt, then move bytes without blocking. */
static int pool_rw(vigil__fsjob *j, int cancel_fd) {
    struct stat st;
    bool waitable = fstat(j->fd, &st) == 0 &&
                    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode));
    size_t len = j->len > VIGIL__FS_MAX_LEN ? VIGIL__FS_MAX_LEN : j->len;
    struct iovec iov = {j->buf, len};
    int nowait = waitable ? RWF_NOWAIT : 0;
    for (;;) {
        if (waitable) {
            int rc = wait_fd(j->fd, j->call == VIGIL__FS_READ ? POLLIN : POLLOUT, cancel_fd);
            if (rc < 0)
                return rc;
        }
        ssize_t n = j->call == VIGIL__FS_READ ? preadv2(j->fd, &iov, 1, j->offset, nowait)
                                              : pwritev2(j->fd, &iov, 1, j->offset, nowait);
        if (n >= 0)
            return (int)n;
        if (errno == EOPNOTSUPP && nowait) {
            nowait = 0; /* an old kernel: the wait above has to do */
            continue;
        }
        if (errno == EINTR || (waitable && errno == EAGAIN))
            continue;
        return -errno;
    }
}

/* An abandoned open's fd (pool.h): nobody will get it, its worker closes it. */
static void pool_drop(vigil__job *job, int res) {
    if (((vigil__fsjob *)job)->call == VIGIL__FS_OPEN && res >= 0)
        close(res);
}

static int pool_run(vigil__job *job, int cancel_fd) {
    vigil__fsjob *j = (vigil__fsjob *)job;
    long rc;
    switch (j->call) {
    case VIGIL__FS_OPEN:
        if (j->beneath)
            rc = syscall(SYS_openat2, j->fd, j->path, &j->how, sizeof(j->how));
        else
            rc = openat(j->fd, j->path, j->flags, j->mode);
        break;
    case VIGIL__FS_READ:
    case VIGIL__FS_WRITE:
        return pool_rw(j, cancel_fd);
    case VIGIL__FS_FSYNC:
        rc = (j->flags & VIGIL_FSYNC_DATA) ? fdatasync(j->fd) : fsync(j->fd);
        break;
    case VIGIL__FS_STAT:
        rc = statx(j->fd, j->path, j->flags, STATX_BASIC_STATS, &j->stx);
        break;
    case VIGIL__FS_CLOSE:
        rc = close(j->fd); /* never retried: on Linux the fd is gone even on EINTR */
        break;
    default:
        return -EINVAL;
    }
    return rc < 0 ? -errno : (int)rc;
}

/* ------------------------------------------------------ the engine */

void vigil__fs_os_prepare(vigil__fsjob *j) {
    j->job.run = pool_run;
    j->job.drop = pool_drop;
    /* a read or write moves bytes into or out of the caller's buffer: its
     * worker is never abandoned, the rest touch only the job */
    j->job.detachable = j->call != VIGIL__FS_READ && j->call != VIGIL__FS_WRITE;
    if (j->call == VIGIL__FS_OPEN) {
        j->flags |= O_CLOEXEC;
        j->keep_nonblock = (j->flags & O_NONBLOCK) != 0;
        if (!(j->flags & O_PATH)) /* O_PATH never waits, and openat2 refuses it with more flags */
            j->flags |= O_NONBLOCK; /* never wait for a FIFO's peer: see the top */
        if (!(j->flags & (O_CREAT | O_TMPFILE)))
            j->mode = 0; /* openat2 refuses a stray mode */
        j->how = (struct open_how){.flags = (uint64_t)(unsigned)j->flags, .mode = j->mode,
                                   .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    } else if (j->call == VIGIL__FS_STAT) {
        j->flags = j->path[0] ? 0 : AT_EMPTY_PATH;
    }
}

/* Where file calls go, chosen at the first one: 1 the file ring, 0 the pool. */
static int fs_engine(vigil_loop *loop) {
    if (loop->fs_ring)
        return 1;
    if (!loop->fs_chosen) {
        loop->fs_chosen = true;
        /* if the kernel will not give one more ring (memory, a limit), the pool serves */
        if ((loop->be->caps & VIGIL__CAP_FILE_RING) && vigil__fs_ring_new(&loop->fs_ring, loop->wake_fd) == 0)
            return 1;
    }
    int rc = vigil__pool_get(loop);
    return rc < 0 ? rc : 0;
}

int vigil__fs_os_submit(vigil_loop *loop, vigil__op *op, vigil__fsjob *j) {
    int on_ring = fs_engine(loop);
    if (on_ring < 0)
        return on_ring;
    return on_ring ? vigil__fs_ring_submit(loop->fs_ring, j, j->job.tag) : vigil__pool_submit(loop->pool, &j->job);
}

int vigil__fs_os_cancel(vigil_loop *loop, vigil__op *op, vigil__fsjob *j) {
    if (loop->fs_ring)
        return vigil__fs_ring_cancel(loop->fs_ring, j->job.tag); /* the tag it was issued with */
    vigil__pool_cancel(loop->pool, &j->job);
    return 0;
}

static int64_t ns_of(struct statx_timestamp t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

/* The open's O_NONBLOCK, added only so that it never waits, goes again:
 * fcntl does not wait, so this runs on the loop thread for both engines. */
static int clear_nonblock(int fd, int open_flags) {
    /* F_SETFL changes only the status flags (O_APPEND, O_DIRECT, O_NOATIME,
     * O_ASYNC, O_NONBLOCK): the open's own, less O_NONBLOCK, are the fd's.
     * One call per open, not a get and a set: opens are on the hot path of
     * a file server. */
    if (fcntl(fd, F_SETFL, open_flags & ~O_NONBLOCK) == 0)
        return fd;
    int err = -errno;
    close(fd); /* an fd the caller would not know how to use */
    return err;
}

int vigil__fs_os_done(vigil_loop *loop, vigil__fsjob *j, int res) {
    if (j->call == VIGIL__FS_OPEN && res >= 0 && !j->keep_nonblock && !(j->flags & O_PATH))
        res = clear_nonblock(res, j->flags);
    if (j->call == VIGIL__FS_OPEN && res >= 0 && loop->fs_ring)
        vigil__fs_ring_opened(loop->fs_ring, res);
    if (j->call == VIGIL__FS_OPEN)
        return res;
    if (j->call == VIGIL__FS_STAT && res == 0) {
        *j->st_out = (vigil_stat){
            .size = j->stx.stx_size, .blocks = j->stx.stx_blocks, .ino = j->stx.stx_ino,
            .dev = makedev(j->stx.stx_dev_major, j->stx.stx_dev_minor), .nlink = j->stx.stx_nlink,
            .mode = j->stx.stx_mode, .uid = j->stx.stx_uid, .gid = j->stx.stx_gid,
            .atime_ns = ns_of(j->stx.stx_atime), .mtime_ns = ns_of(j->stx.stx_mtime),
            .ctime_ns = ns_of(j->stx.stx_ctime)};
    }
    return res;
}

/* ------------------------------------------------ the file ring's pass */

void vigil__fs_os_poll(vigil_loop *loop, int max) {
    if (!loop->fs_ring)
        return;
    vigil__cqe c;
    vigil__fs_ring_flush(loop->fs_ring);
    for (int n = 0; n < max && vigil__fs_ring_take(loop->fs_ring, &c); n++)
        vigil__dispatch_engine(loop, &c);
}

bool vigil__fs_os_ready(vigil_loop *loop) { return vigil__fs_ring_ready(loop->fs_ring); }

bool vigil__fs_os_wait(vigil_loop *loop, int timeout_ms) {
    return loop->fs_ring && vigil__fs_ring_wait(loop->fs_ring, timeout_ms) == 0;
}

void vigil__fs_os_free(vigil_loop *loop) {
    vigil__fs_ring_free(loop->fs_ring);
    loop->fs_ring = NULL;
}

/* ------------------------------------------------ a file message's source */

/*
 * A file message is sent from a read-only mapping of its file. Mapping and
 * unmapping per message costs as much as the send itself (a 256 KiB body:
 * mmap, a fault per 16 pages, munmap and its TLB flush, 1.5x the CPU of a
 * response from a kept mapping), so each loop keeps the mappings of the
 * files it sent from, one per file (device and inode, from fstat; a kept
 * mapping holds the inode, so its number cannot name another file while
 * kept). A file that grew past its mapping is mapped again. A mapping no
 * message uses goes FILE_MAP_LINGER_NS later (when the loop next runs), or
 * when more than FILE_MAPS_IDLE_MAX are idle: a deleted file's disk space
 * is freed that much later. Only the kernel reads a mapping (sends, mincore,
 * MADV_POPULATE_READ), so a file cut short is an -EFAULT, never a SIGBUS.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels say -EINVAL */
#endif
#define RESIDENT_PAGES_MAX 512 /* pages one look covers: the send window (send_file.c) */
#define FILE_MAPS_IDLE_MAX 64
#define FILE_MAP_LINGER_NS 1000000000ull
#define FILE_MAPS_SWEEP_NS 250000000ull

struct vigil__file_map {
    vigil__file_map *next; /* the loop's list, most recently used first */
    dev_t dev;
    ino_t ino;
    uint8_t *base;
    size_t len;            /* [0, len) of the file */
    uint32_t refs;         /* messages sending from it */
    bool dropped;          /* out of the list (mapped again larger): unmapped at its last release */
    uint64_t idle_ns;      /* when refs last went to 0 */
};

typedef struct vigil__file_maps {
    vigil__file_map *head;
    uint64_t next_sweep_ns;
} vigil__file_maps;

static size_t page_size(void) {
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

static void map_free(vigil__file_map *m) {
    munmap(m->base, m->len);
    free(m);
}

/* Unlinks *at (refs 0) and unmaps it. */
static void map_drop(vigil__file_map **at) {
    vigil__file_map *m = *at;
    *at = m->next;
    map_free(m);
}

/* The loop's mapping of the file fd names, holding [0, need), found or
 * made; NULL with *err. */
static vigil__file_map *map_get(vigil_loop *loop, int fd, const struct stat *st, uint64_t need, int *err) {
    vigil__file_maps *t = loop->file_maps;
    if (!t && !(t = loop->file_maps = calloc(1, sizeof(*t)))) {
        *err = -ENOMEM;
        return NULL;
    }
    for (vigil__file_map **at = &t->head; *at; at = &(*at)->next) {
        vigil__file_map *m = *at;
        if (m->dev != st->st_dev || m->ino != st->st_ino)
            continue;
        *at = m->next; /* to the front, or out: the file grew past it */
        if (m->len >= need) {
            m->next = t->head;
            t->head = m;
            return m;
        }
        if (m->refs)
            m->dropped = true;
        else
            map_free(m);
        break;
    }
    vigil__file_map *m = calloc(1, sizeof(*m));
    void *base = m ? mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (base == MAP_FAILED) {
        *err = !m ? -ENOMEM : errno == EINVAL || errno == ENODEV ? -ENODEV : -errno;
        free(m);
        return NULL;
    }
    *m = (vigil__file_map){.next = t->head, .dev = st->st_dev, .ino = st->st_ino, .base = base,
                           .len = (size_t)st->st_size};
    t->head = m;
    uint32_t idle = 0; /* the bound: the least recently used idle ones go */
    for (vigil__file_map **at = &t->head; *at;) {
        if (!(*at)->refs && ++idle > FILE_MAPS_IDLE_MAX)
            map_drop(at);
        else
            at = &(*at)->next;
    }
    return m;
}

int vigil__file_src_open(vigil_loop *loop, vigil__file_src *s, int fd, int64_t offset, size_t len) {
    *s = (vigil__file_src){.fd = fd};
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fstat(fd, &st) < 0)
        return -errno;
    if (fl & O_PATH)
        return -EBADF;
    if (!S_ISREG(st.st_mode))
        return -ENODEV;
    if ((fl & O_ACCMODE) == O_WRONLY)
        return -EACCES; /* checked here: a kept mapping would not ask */
    if ((uint64_t)offset > (uint64_t)st.st_size || len > (uint64_t)st.st_size - (uint64_t)offset)
        return -ENODATA;
    if (len == 0)
        return 0;
    int err = 0;
    vigil__file_map *m = map_get(loop, fd, &st, (uint64_t)offset + len, &err);
    if (!m)
        return err;
    m->refs++;
    s->map = m;
    s->data = m->base + offset;
    return 0;
}

void vigil__file_src_close(vigil_loop *loop, vigil__file_src *s) {
    vigil__file_map *m = s->map;
    s->map = NULL;
    if (!m || --m->refs)
        return;
    if (m->dropped)
        map_free(m);
    else
        m->idle_ns = vigil__clock_ns();
}

void vigil__file_maps_sweep(vigil_loop *loop, uint64_t now_ns) {
    vigil__file_maps *t = loop->file_maps;
    if (!t || now_ns < t->next_sweep_ns)
        return;
    t->next_sweep_ns = now_ns + FILE_MAPS_SWEEP_NS;
    for (vigil__file_map **at = &t->head; *at;) {
        if (!(*at)->refs && now_ns - (*at)->idle_ns >= FILE_MAP_LINGER_NS)
            map_drop(at);
        else
            at = &(*at)->next;
    }
}

void vigil__file_maps_free(vigil_loop *loop) {
    vigil__file_maps *t = loop->file_maps;
    if (!t)
        return;
    while (t->head)
        map_drop(&t->head);
    free(t);
    loop->file_maps = NULL;
}

size_t vigil__file_resident(const uint8_t *p, size_t n) {
    size_t page = page_size();
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    size_t pages = ((uintptr_t)p + n - a + page - 1) / page;
    unsigned char vec[RESIDENT_PAGES_MAX];
    if (pages > RESIDENT_PAGES_MAX)
        pages = RESIDENT_PAGES_MAX;
    if (mincore((void *)a, pages * page, vec) < 0)
        return 0;
    size_t in = 0;
    while (in < pages && (vec[in] & 1))
        in++;
    size_t bytes = in * page - ((uintptr_t)p - a);
    return in == 0 ? 0 : bytes < n ? bytes : n;
}

int vigil__file_populate(const uint8_t *p, size_t n) {
    size_t page = page_size();
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    if (madvise((void *)a, (uintptr_t)p + n - a, MADV_POPULATE_READ) == 0)
        return 0;
    if (errno == EINVAL) { /* before Linux 5.14: read-ahead, and the send may still wait a little */
        madvise((void *)a, (uintptr_t)p + n - a, MADV_WILLNEED);
        return 0;
    }
    return -errno;
}
