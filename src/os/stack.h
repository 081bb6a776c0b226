/*
 * stack.h: what a thread of this process is doing, read without stopping or
 * signalling it (Linux). A signal would make the system call the thread waits
 * in return early with EINTR, even with SA_RESTART for some calls (signal(7)),
 * so observing a stalled program would change it. Instead the kernel's view of
 * a blocked thread (/proc/self/task/TID/syscall: its call, stack pointer and
 * program counter) is read, and its stack is scanned for return addresses.
 */
#ifndef VIGIL_STACK_H
#define VIGIL_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIGIL__LOOK_FRAMES 48

/* A struct tag, not a typedef: a typedef named like the function below
 * would clash with it (C has one name space for both). */
struct vigil__thread_look {
    bool in_syscall;  /* blocked in a system call (from /proc/self/task/TID/syscall) */
    long nr;          /* its number, or -1 ("running", or not in a syscall) */
    char syscall[96]; /* "read(fd 5)", "clock_nanosleep", "poll", "running", "?" */
    int nframes;      /* code addresses found on its stack, innermost first */
    void *frames[VIGIL__LOOK_FRAMES];
};

/* Reads what thread tid of this process is doing, without stopping or
 * signalling it: the system call it waits in from /proc/self/task/TID/syscall
 * ("nr a1..a6 sp pc", "running", or "-1 sp pc": blocked outside a system call,
 * shown as "?"). If it is not running, frames[0] = pc, then the return
 * addresses found by scanning its stack upward from sp: words that point into
 * an executable mapping of this process right after a call instruction (on
 * x86_64: E8 rel32, or FF /2 with its ModRM, SIB and displacement; elsewhere
 * any address in an executable mapping). Such a scan also finds stale return
 * addresses left in a frame's unused slots: a frame list, not a call chain.
 * The scan stops at stack_limit (exclusive, an address in that thread's stack
 * above sp; 0 = at most 64 KiB above sp; at or below sp = no scan), at the end
 * of the stack's mapping, or when frames is full. The other thread's memory is
 * read with process_vm_readv, so a thread that exits or runs on meanwhile gives
 * an error or a wrong frame, never a crash. Returns 0 or -errno; on an error
 * after the syscall file was read (the stack unreadable: -EFAULT, or -EPERM
 * where seccomp denies process_vm_readv), out still holds the call and pc. */
int vigil__thread_look(int tid, uintptr_t stack_limit, struct vigil__thread_look *out);

/* Names a code address for a person: "symbol+0x1f (module)" when dladdr finds a
 * symbol, else "module+0x1234 (addr2line -f -e /full/path/module 0x1234)". The
 * offset is relative to the module's load base (right for PIE executables and
 * shared objects); for a non-PIE (ET_EXEC) executable it is the address itself.
 * An address in no module: "0x7f... (?)". */
void vigil__frame_name(const void *addr, char *out, size_t len);

/* True for addresses in the C library, the dynamic loader, the vDSO, libgcc_s,
 * libpthread, or a sanitizer runtime (libasan, libtsan, libubsan, liblsan, or
 * their interceptors linked into the executable). */
bool vigil__frame_is_system(const void *addr);

/* Index of the innermost frame that is not system, or -1. */
int vigil__first_own_frame(void *const *frames, int n);

/* A system call's name by number for this architecture (from <sys/syscall.h>),
 * NULL if it is not in the table. */
const char *vigil__syscall_name(long nr);

#endif
