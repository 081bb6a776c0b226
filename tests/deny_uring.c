/*
 * deny_uring: runs a command with io_uring denied, as on a host whose seccomp
 * policy forbids it (EPERM: Docker's default profile, io_uring_disabled=2) or
 * whose kernel lacks it (ENOSYS).
 *
 *   deny_uring eperm|enosys COMMAND [ARGS...]
 *
 * Sets no_new_privs (so no root is needed), installs a seccomp filter that
 * makes io_uring_setup, io_uring_enter and io_uring_register fail with the
 * chosen errno and allows every other system call, then execs COMMAND. The
 * filter is inherited by every child and survives exec. It checks the
 * architecture: system calls made through another ABI (i386 int 0x80 on
 * x86-64, arm32 compat on aarch64) kill the process, so io_uring cannot be
 * reached by the back door; x32 system calls on x86-64 all fail with the
 * chosen errno. Hand-written BPF: no libseccomp.
 *
 * Exit status: COMMAND's; 2 on bad usage; 1 if the filter cannot be
 * installed; 127 if COMMAND cannot be executed.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <asm/unistd.h>

#if defined(__x86_64__)
#if defined(__ILP32__)
#error "deny_uring: build it for x86-64, not x32"
#endif
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "deny_uring: add this architecture's AUDIT_ARCH_* value"
#endif

#if !defined(__NR_io_uring_setup) || !defined(__NR_io_uring_enter) || \
    !defined(__NR_io_uring_register)
#error "deny_uring: <asm/unistd.h> has no io_uring system call numbers (kernel headers < 5.1)"
#endif

#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS SECCOMP_RET_KILL /* kernels before 4.14 */
#endif

static void usage(void) {
    fprintf(stderr, "usage: deny_uring eperm|enosys COMMAND [ARGS...]\n"
                    "Runs COMMAND with io_uring_setup/enter/register failing with EPERM or ENOSYS.\n");
}

static int install_filter(int err) {
    const unsigned deny = SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA);
    struct sock_filter f[] = {
        /* 0: the architecture: anything but the native ABI dies */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        /* 3: the system call number */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __X32_SYSCALL_BIT
        /* x32 shares AUDIT_ARCH_X86_64 and flags its numbers with this bit:
         * deny every x32 call (no program under test uses that ABI) */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, __X32_SYSCALL_BIT, 3, 0),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, deny),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        fprintf(stderr, "deny_uring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
        return -1;
    }
#ifdef SYS_seccomp
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0)
        return 0;
    if (errno != ENOSYS) {
        fprintf(stderr, "deny_uring: seccomp(SECCOMP_SET_MODE_FILTER): %s\n", strerror(errno));
        return -1;
    }
#endif
    /* kernels before 3.17 have no seccomp() system call */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
        fprintf(stderr, "deny_uring: prctl(PR_SET_SECCOMP): %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        usage();
        return 2;
    }
    int err;
    if (!strcasecmp(argv[1], "eperm"))
        err = EPERM;
    else if (!strcasecmp(argv[1], "enosys"))
        err = ENOSYS;
    else {
        fprintf(stderr, "deny_uring: unknown errno '%s' (eperm or enosys)\n", argv[1]);
        usage();
        return 2;
    }
    char **cmd = argv + 2;
    if (!strcmp(cmd[0], "--")) {
        cmd++;
        if (!cmd[0]) {
            usage();
            return 2;
        }
    }
    if (install_filter(err) < 0)
        return 1;
    execvp(cmd[0], cmd);
    fprintf(stderr, "deny_uring: cannot execute '%s': %s\n", cmd[0], strerror(errno));
    return 127;
}
