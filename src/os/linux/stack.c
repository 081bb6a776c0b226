/*
 * stack_linux.c: describes a thread of this process without stopping or
 * signalling it (see stack.h). The kernel tells where a blocked thread waits
 * (/proc/self/task/TID/syscall); its stack is then read with process_vm_readv,
 * which fails cleanly (EFAULT, ESRCH) where a plain load would crash when the
 * thread exits meanwhile, and scanned for words that look like return
 * addresses. dladdr names them.
 */
#include "os/stack.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* System calls a stalled thread is likely to wait in; fd: the first argument
 * is a descriptor worth showing. Numbers differ per architecture, and some
 * calls (poll, select, open, pause) do not exist on newer ones: hence #ifdef. */
static const struct vigil__sc {
    long nr;
    const char *name;
    bool fd;
} syscalls[] = {
#ifdef SYS_read
    {SYS_read, "read", true},
#endif
#ifdef SYS_write
    {SYS_write, "write", true},
#endif
#ifdef SYS_readv
    {SYS_readv, "readv", true},
#endif
#ifdef SYS_writev
    {SYS_writev, "writev", true},
#endif
#ifdef SYS_pread64
    {SYS_pread64, "pread64", true},
#endif
#ifdef SYS_pwrite64
    {SYS_pwrite64, "pwrite64", true},
#endif
#ifdef SYS_recvfrom
    {SYS_recvfrom, "recvfrom", true},
#endif
#ifdef SYS_recvmsg
    {SYS_recvmsg, "recvmsg", true},
#endif
#ifdef SYS_recvmmsg
    {SYS_recvmmsg, "recvmmsg", true},
#endif
#ifdef SYS_sendto
    {SYS_sendto, "sendto", true},
#endif
#ifdef SYS_sendmsg
    {SYS_sendmsg, "sendmsg", true},
#endif
#ifdef SYS_sendmmsg
    {SYS_sendmmsg, "sendmmsg", true},
#endif
#ifdef SYS_accept
    {SYS_accept, "accept", true},
#endif
#ifdef SYS_accept4
    {SYS_accept4, "accept4", true},
#endif
#ifdef SYS_connect
    {SYS_connect, "connect", true},
#endif
#ifdef SYS_poll
    {SYS_poll, "poll", false},
#endif
#ifdef SYS_ppoll
    {SYS_ppoll, "ppoll", false},
#endif
#ifdef SYS_select
    {SYS_select, "select", false},
#endif
#ifdef SYS_pselect6
    {SYS_pselect6, "pselect6", false},
#endif
#ifdef SYS_epoll_wait
    {SYS_epoll_wait, "epoll_wait", true},
#endif
#ifdef SYS_epoll_pwait
    {SYS_epoll_pwait, "epoll_pwait", true},
#endif
#ifdef SYS_epoll_pwait2
    {SYS_epoll_pwait2, "epoll_pwait2", true},
#endif
#ifdef SYS_io_uring_enter
    {SYS_io_uring_enter, "io_uring_enter", true},
#endif
#ifdef SYS_io_getevents
    {SYS_io_getevents, "io_getevents", false},
#endif
#ifdef SYS_nanosleep
    {SYS_nanosleep, "nanosleep", false},
#endif
#ifdef SYS_clock_nanosleep
    {SYS_clock_nanosleep, "clock_nanosleep", false},
#endif
#ifdef SYS_futex
    {SYS_futex, "futex", false},
#endif
#ifdef SYS_wait4
    {SYS_wait4, "wait4", false},
#endif
#ifdef SYS_waitid
    {SYS_waitid, "waitid", false},
#endif
#ifdef SYS_open
    {SYS_open, "open", false},
#endif
#ifdef SYS_openat
    {SYS_openat, "openat", false},
#endif
#ifdef SYS_openat2
    {SYS_openat2, "openat2", false},
#endif
#ifdef SYS_close
    {SYS_close, "close", true},
#endif
#ifdef SYS_fsync
    {SYS_fsync, "fsync", true},
#endif
#ifdef SYS_fdatasync
    {SYS_fdatasync, "fdatasync", true},
#endif
#ifdef SYS_flock
    {SYS_flock, "flock", true},
#endif
#ifdef SYS_fcntl
    {SYS_fcntl, "fcntl", true},
#endif
#ifdef SYS_ioctl
    {SYS_ioctl, "ioctl", true},
#endif
#ifdef SYS_sendfile
    {SYS_sendfile, "sendfile", true},
#endif
#ifdef SYS_splice
    {SYS_splice, "splice", true},
#endif
#ifdef SYS_rt_sigtimedwait
    {SYS_rt_sigtimedwait, "rt_sigtimedwait", false},
#endif
#ifdef SYS_rt_sigsuspend
    {SYS_rt_sigsuspend, "rt_sigsuspend", false},
#endif
#ifdef SYS_pause
    {SYS_pause, "pause", false},
#endif
#ifdef SYS_msgrcv
    {SYS_msgrcv, "msgrcv", false},
#endif
#ifdef SYS_msgsnd
    {SYS_msgsnd, "msgsnd", false},
#endif
#ifdef SYS_semop
    {SYS_semop, "semop", false},
#endif
#ifdef SYS_semtimedop
    {SYS_semtimedop, "semtimedop", false},
#endif
#ifdef SYS_mq_timedreceive
    {SYS_mq_timedreceive, "mq_timedreceive", false},
#endif
#ifdef SYS_sched_yield
    {SYS_sched_yield, "sched_yield", false},
#endif
};

static const struct vigil__sc *syscall_find(long nr) {
    for (size_t i = 0; i < COUNT(syscalls); i++)
        if (syscalls[i].nr == nr)
            return &syscalls[i];
    return NULL;
}

const char *vigil__syscall_name(long nr) {
    const struct vigil__sc *sc = syscall_find(nr);
    return sc ? sc->name : NULL;
}

/* Reads a small /proc file whole, as a string; bytes read or -errno. */
static int read_text(const char *path, char *buf, size_t len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    int rc = n < 0 ? -errno : (int)n;
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return rc;
}

/* Copies len bytes at addr of this process into buf without touching addr
 * ourselves: bytes copied (fewer where a mapping ends) or -errno. */
static ssize_t read_mem(pid_t pid, uintptr_t addr, void *buf, size_t len) {
    struct iovec local = {buf, len}, remote = {(void *)addr, len};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return n < 0 ? -errno : n;
}

/* The mappings the scan needs, from /proc/self/maps: the executable ones
 * (sorted, as the kernel lists them) and the one holding the stack pointer. */
#define MAX_CODE 512
typedef struct span {
    uintptr_t lo, hi;
} span;
typedef struct maps {
    span code[MAX_CODE];
    int ncode;
    span stack;
} maps;

/* One line's start: "lo-hi perms ...". */
static void maps_line(maps *m, const char *line, uintptr_t sp) {
    char *end;
    uintptr_t lo = strtoul(line, &end, 16);
    if (*end != '-')
        return;
    uintptr_t hi = strtoul(end + 1, &end, 16);
    if (*end != ' ' || strlen(end) < 5)
        return;
    if (end[3] == 'x' && m->ncode < MAX_CODE)
        m->code[m->ncode++] = (span){lo, hi};
    if (lo <= sp && sp < hi)
        m->stack = (span){lo, hi};
}

/* Only each line's first 63 bytes matter (paths may be long), so lines are
 * cut there rather than buffered whole. */
static int maps_read(maps *m, uintptr_t sp) {
    m->ncode = 0;
    m->stack = (span){0, 0};
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[4096], line[64];
    size_t used = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                line[used] = 0;
                maps_line(m, line, sp);
                used = 0;
            } else if (used + 1 < sizeof(line)) {
                line[used++] = buf[i];
            }
        }
    }
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* The executable mapping holding addr, or NULL. */
static const span *code_at(const maps *m, uintptr_t addr) {
    int lo = 0, hi = m->ncode;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (addr < m->code[mid].lo)
            hi = mid;
        else if (addr >= m->code[mid].hi)
            lo = mid + 1;
        else
            return &m->code[mid];
    }
    return NULL;
}

#if defined(__x86_64__)
/* Length of an indirect near call "FF /2 ModRM [SIB] [disp]" counting the FF,
 * or 0 when the ModRM's reg field is not 2 (not a call). */
static int ff2_len(uint8_t modrm, uint8_t sib) {
    if (((modrm >> 3) & 7) != 2)
        return 0;
    int mod = modrm >> 6, rm = modrm & 7;
    if (mod == 3)
        return 2; /* call reg */
    int len = 2 + (rm == 4); /* rm 100: a SIB byte follows */
    if (mod == 1)
        return len + 1;
    if (mod == 2 || rm == 5 || (rm == 4 && (sib & 7) == 5))
        return len + 4; /* disp32, RIP-relative, or SIB without a base */
    return len;
}

/* True if the bytes before ra end a call: E8 rel32, or FF /2 of 2..7 bytes
 * (a REX prefix before the FF changes nothing here). */
static bool after_call(pid_t pid, const span *code, uintptr_t ra) {
    uint8_t b[8];
    size_t n = ra - code->lo < sizeof(b) ? ra - code->lo : sizeof(b);
    if (n < 2 || read_mem(pid, ra - n, b + sizeof(b) - n, n) != (ssize_t)n)
        return false;
    if (n >= 5 && b[3] == 0xE8)
        return true;
    for (size_t l = 2; l <= 7 && l <= n; l++)
        if (b[8 - l] == 0xFF && ff2_len(b[9 - l], l >= 3 ? b[10 - l] : 0) == (int)l)
            return true;
    return false;
}
#else
/* Elsewhere any address in an executable mapping counts. */
static bool after_call(pid_t pid, const span *code, uintptr_t ra) {
    (void)pid, (void)code, (void)ra;
    return true;
}
#endif

/* At most this many frames of the system's libraries (libc, the
 * sanitizers' runtimes, the unwinder) are kept from a scan: the words near
 * a blocked thread's stack pointer hold many stale ones (under ASan, its
 * interceptors' unwinding), which must not fill the list before the frames
 * of the program that called into them. */
#define SYSTEM_FRAMES_KEPT 12

/* Scans [sp, limit) for return addresses, a chunk at a time, into out.
 * Only the first chunk must be readable: past it the stack simply ends. */
static int scan(pid_t pid, const maps *m, uintptr_t sp, uintptr_t limit,
                struct vigil__thread_look *out) {
    uintptr_t words[512];
    int system_kept = 0;
    for (uintptr_t at = sp; at < limit && out->nframes < VIGIL__LOOK_FRAMES;) {
        size_t want = limit - at < sizeof(words) ? limit - at : sizeof(words);
        ssize_t got = read_mem(pid, at, words, want);
        if (got <= 0)
            return at == sp && got < 0 ? (int)got : 0;
        for (size_t i = 0; i < (size_t)got / sizeof(words[0]); i++) {
            const span *code = code_at(m, words[i]);
            if (code && after_call(pid, code, words[i])) {
                if (vigil__frame_is_system((void *)words[i]) && system_kept++ >= SYSTEM_FRAMES_KEPT)
                    continue;
                out->frames[out->nframes++] = (void *)words[i];
                if (out->nframes == VIGIL__LOOK_FRAMES)
                    break;
            }
        }
        if ((size_t)got < want)
            break;
        at += (size_t)got;
    }
    return 0;
}

/* "nr a1 a2 a3 a4 a5 a6 sp pc" or "-1 sp pc": fills nr, v (args, sp, pc in
 * the last two places of the count found) and returns how many followed nr. */
static int parse_syscall_line(const char *line, long *nr, unsigned long v[8]) {
    char *end;
    *nr = strtol(line, &end, 10);
    if (end == line)
        return 0;
    int k = 0;
    while (k < 8) {
        const char *p = end;
        unsigned long x = strtoul(p, &end, 16);
        if (end == p)
            break;
        v[k++] = x;
    }
    return k;
}

static void describe(struct vigil__thread_look *out, unsigned long arg0) {
    const struct vigil__sc *sc = syscall_find(out->nr);
    if (!sc)
        snprintf(out->syscall, sizeof(out->syscall), "syscall %ld", out->nr);
    else if (sc->fd)
        snprintf(out->syscall, sizeof(out->syscall), "%s(fd %d)", sc->name, (int)arg0);
    else
        snprintf(out->syscall, sizeof(out->syscall), "%s", sc->name);
}

/* The kernel's view of the thread: 1 if it is blocked (sp, pc set), 0 if it
 * runs, or -errno. */
static int read_state(int tid, struct vigil__thread_look *out, uintptr_t *sp, uintptr_t *pc) {
    memset(out, 0, sizeof(*out));
    out->nr = -1;
    snprintf(out->syscall, sizeof(out->syscall), "?");
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
    int rc = read_text(path, line, sizeof(line));
    if (rc < 0)
        return rc;
    if (!strncmp(line, "running", 7)) {
        snprintf(out->syscall, sizeof(out->syscall), "running");
        return 0;
    }
    long nr;
    unsigned long v[8];
    int k = parse_syscall_line(line, &nr, v);
    if (k != (nr == -1 ? 2 : 8))
        return -EIO;
    /* "-1 sp pc": blocked, but not in a system call (a fault, a stop) */
    if (nr != -1) {
        out->in_syscall = true;
        out->nr = nr;
        describe(out, v[0]);
    }
    *sp = v[k - 2];
    *pc = v[k - 1];
    return 1;
}

int vigil__thread_syscall(int tid, char *buf, size_t len) {
    struct vigil__thread_look lk;
    uintptr_t sp, pc;
    int rc = read_state(tid, &lk, &sp, &pc);
    snprintf(buf, len, "%s", lk.syscall);
    return rc < 0 ? rc : 0;
}

int vigil__thread_look(int tid, uintptr_t stack_limit, struct vigil__thread_look *out) {
    uintptr_t sp = 0, pc = 0;
    int rc = read_state(tid, out, &sp, &pc);
    if (rc <= 0)
        return rc;
    out->frames[out->nframes++] = (void *)pc;
    maps m;
    rc = maps_read(&m, sp);
    if (rc < 0)
        return rc;
    uintptr_t limit = stack_limit ? stack_limit : sp + 64 * 1024;
    if (limit > m.stack.hi)
        limit = m.stack.hi; /* 0 when sp is in no mapping: nothing to scan */
    limit &= ~(uintptr_t)(sizeof(uintptr_t) - 1);
    return limit > sp ? scan(getpid(), &m, sp, limit, out) : 0;
}

/* The module's file: glibc gives argv[0] (maybe relative) for the executable,
 * whose link map has an empty name; /proc/self/exe has its full path. */
static const char *module_path(const Dl_info *info, const struct link_map *lm, char *buf,
                               size_t len) {
    if (lm && lm->l_name && lm->l_name[0])
        return lm->l_name;
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return info->dli_fname ? info->dli_fname : "?";
    buf[n] = 0;
    return buf;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

void vigil__frame_name(const void *addr, char *out, size_t len) {
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm) {
        snprintf(out, len, "%p (?)", addr);
        return;
    }
    char buf[PATH_MAX];
    const char *path = module_path(&info, lm, buf, sizeof(buf));
    /* dladdr gives the nearest symbol below the address even when the
     * address is past its end (in a static function, which has no dynamic
     * symbol): only a symbol that covers the address names it. */
    const ElfW(Sym) *sym = NULL;
    Dl_info info2;
    bool covers = info.dli_sname && info.dli_saddr &&
                  dladdr1(addr, &info2, (void **)&sym, RTLD_DL_SYMENT) && sym &&
                  (sym->st_size == 0 || (uintptr_t)addr < (uintptr_t)info.dli_saddr + sym->st_size);
    if (covers) {
        snprintf(out, len, "%s+0x%lx (%s)", info.dli_sname,
                 (unsigned long)((uintptr_t)addr - (uintptr_t)info.dli_saddr), base_name(path));
        return;
    }
    /* l_addr is the load bias: the address minus it is what the module's
     * symbol table and addr2line use (the address itself for ET_EXEC). */
    unsigned long off = (unsigned long)((uintptr_t)addr - (uintptr_t)lm->l_addr);
    snprintf(out, len, "%s+0x%lx (addr2line -f -e %s 0x%lx)", base_name(path), off, path, off);
}

/* Modules by file name prefix, and sanitizer interceptors linked into the
 * executable itself (clang links the runtimes statically) by symbol. */
static const char *const system_modules[] = {
    "libc.", "libc-", "ld-linux", "ld64.so", "ld-musl", "linux-vdso", "linux-gate", "libgcc_s",
    "libpthread", "libasan", "libtsan", "libubsan", "liblsan", "libhwasan",
};
static const char *const system_symbols[] = {
    "__interceptor_", "___interceptor_", "__asan_", "__tsan_", "__ubsan_", "__lsan_", "__sanitizer",
};

static bool has_prefix(const char *s, const char *const *list, size_t n) {
    for (size_t i = 0; s && i < n; i++)
        if (!strncmp(s, list[i], strlen(list[i])))
            return true;
    return false;
}

bool vigil__frame_is_system(const void *addr) {
    Dl_info info;
    if (!dladdr(addr, &info))
        return false;
    if (info.dli_fname && has_prefix(base_name(info.dli_fname), system_modules, COUNT(system_modules)))
        return true;
    return has_prefix(info.dli_sname, system_symbols, COUNT(system_symbols));
}

int vigil__first_own_frame(void *const *frames, int n) {
    for (int i = 0; i < n; i++)
        if (!vigil__frame_is_system(frames[i]))
            return i;
    return -1;
}
