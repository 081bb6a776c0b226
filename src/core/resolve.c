/*
 * resolve.c: name lookups without blocking the loop (vigil.h, "names").
 *
 * A lookup is getaddrinfo on the loop's worker pool, so it sees what the
 * system resolver sees: /etc/hosts, DNS per /etc/resolv.conf, nsswitch.
 * getaddrinfo cannot be interrupted, so a lookup that is cancelled or runs
 * past its deadline is answered at once (-ECANCELED, -ETIMEDOUT) while its
 * op stays in flight until the worker returns; the late result is dropped.
 * Destroy waits for that worker only so long (engine.c), then abandons it.
 *
 * Connect by name is a DIAL op that never enters the kernel: it owns one
 * stage at a time, the lookup and then a connect to each address in turn,
 * each with what is left of the deadline, and ends with the connect
 * callback. Stages find their dial through its handle, never a pointer.
 */
#include "core/engine.h"
#include "os/platform.h"
#include "os/sockets.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESOLVE_MAX_ADDRS 16

typedef struct vigil__resjob {
    vigil__job job; /* first: the pool's part */
    int family;
    int n;
    char addrs[RESOLVE_MAX_ADDRS][46]; /* numeric, as vigil_conn_connect takes them */
    char name[];
} vigil__resjob;

static int eai_errno(int eai, int sys_errno) {
    switch (eai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT; /* no such name, or no address of that family */
    case EAI_AGAIN: return -EAGAIN; /* the name server could not answer now */
    case EAI_MEMORY: return -ENOMEM;
    case EAI_FAMILY: return -EAFNOSUPPORT;
#ifdef EAI_SYSTEM
    case EAI_SYSTEM: return sys_errno ? -sys_errno : -EIO;
#endif
    default: return -EIO; /* EAI_FAIL: the name server failed for good */
    }
}

static int resolve_run(vigil__job *job, int cancel_fd) {
    vigil__resjob *j = (vigil__resjob *)job;
    struct addrinfo hints = {.ai_family = j->family, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int eai = getaddrinfo(j->name, NULL, &hints, &res);
    if (eai)
        return eai_errno(eai, errno);
    j->n = 0;
    for (struct addrinfo *a = res; a && j->n < RESOLVE_MAX_ADDRS; a = a->ai_next) {
        const void *src = a->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                                                   : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            !inet_ntop(a->ai_family, src, j->addrs[j->n], sizeof(j->addrs[0])))
            continue;
        bool dup = false;
        for (int i = 0; i < j->n && !dup; i++)
            dup = !strcmp(j->addrs[i], j->addrs[j->n]);
        j->n += !dup;
    }
    freeaddrinfo(res);
    return j->n ? j->n : -ENOENT;
}

/* ------------------------------------------------------- lookups */

/* The final callback: status and, when it is > 0, the addresses. */
static void resolve_final(vigil_loop *loop, vigil__op *op, int status) {
    if (op->heap >= 0)
        vigil__heap_remove(loop, op);
    op->flags |= VIGIL__OPF_USER_DONE | VIGIL__OPF_STOPPED;
    loop->engine_live--;
    vigil__resjob *j = op->u.resolve.job;
    char addrs[RESOLVE_MAX_ADDRS][46];
    const char *list[RESOLVE_MAX_ADDRS + 1] = {0};
    for (int i = 0; status > 0 && j && i < j->n; i++) { /* no job: abandoned at destroy */
        memcpy(addrs[i], j->addrs[i], sizeof(addrs[i]));
        list[i] = addrs[i];
    }
    vigil_resolve_cb cb = (vigil_resolve_cb)op->cb;
    void *ud = op->ud;
    vigil_op h = vigil__op_handle(loop, op);
    vigil__op_release(loop, op); /* frees the job, unless its worker still runs */
    VIGIL__CALLBACK(loop, cb, (loop, h, status, status > 0 ? list : NULL, ud));
}

static void resolve_complete(vigil_loop *loop, vigil__op *op, const vigil__cqe *c) {
    if (op->flags & (VIGIL__OPF_USER_DONE | VIGIL__OPF_STOPPED)) { /* answered already */
        vigil__op_release(loop, op);
        return;
    }
    resolve_final(loop, op, c->res);
}

static void resolve_finish(vigil_loop *loop, vigil__op *op, int status) {
    if (op->flags & VIGIL__OPF_USER_DONE) {
        vigil__op_release(loop, op);
        return;
    }
    resolve_final(loop, op, status);
}

/* Cancel and deadline: answered now, from the later list; the worker's
 * result, when it comes, only frees the op. */
static int resolve_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    vigil__pool_cancel(loop->pool, &op->u.resolve.job->job);
    vigil__later(loop, op, (op->flags & VIGIL__OPF_TIMED_OUT) ? -ETIMEDOUT : -ECANCELED);
    return 0;
}

static int resolve_start(vigil_loop *loop, const char *name, int family, uint32_t deadline_ms,
                         vigil_resolve_cb cb, void *ud, vigil_op *out) {
    if (!name || !cb || (family != 0 && family != 4 && family != 6))
        return -EINVAL;
    size_t len = strlen(name);
    if (len == 0 || len > 253)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    int rc = vigil__pool_get(loop);
    if (rc < 0)
        return rc;
    vigil__resjob *j = calloc(1, sizeof(*j) + len + 1);
    vigil__op *op = j ? vigil__op_new(loop, VIGIL__OP_RESOLVE) : NULL;
    if (!op) {
        free(j);
        return -ENOMEM;
    }
    memcpy(j->name, name, len + 1);
    j->family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
    j->job.run = resolve_run;
    j->job.detachable = true; /* writes only its own block: destroy may leave it to its worker */
    j->job.tag = vigil__op_tag(loop, op);
    op->cb = (void *)cb;
    op->ud = ud;
    op->u.resolve.job = j;
    op->flags |= VIGIL__OPF_ENGINE;
    if ((rc = vigil__pool_submit(loop->pool, &j->job)) < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return rc;
    }
    vigil__engine_started(loop, op, deadline_ms, out);
    return 0;
}

int vigil_resolve_start(vigil_loop *loop, const char *name, int family, vigil_resolve_cb cb, void *ud,
                        vigil_op *op) {
    VIGIL__API(loop, 0);
    return resolve_start(loop, name, family, 0, cb, ud, op);
}

/* -------------------------------------------------- connect by name */

typedef struct vigil__dial {
    uint16_t port;
    uint64_t deadline_ns;  /* 0: none */
    vigil_op stage;        /* the lookup or the connect under way */
    int n, next, last_err;
    char addrs[RESOLVE_MAX_ADDRS][46];
} vigil__dial;

static void *handle_ud(vigil_loop *loop, vigil__op *op) {
    return (void *)(uintptr_t)vigil__op_handle(loop, op).id;
}

static vigil__op *dial_of(vigil_loop *loop, void *ud) {
    vigil__op *op = vigil__op_from_handle(loop, (vigil_op){(uint64_t)(uintptr_t)ud});
    return op && op->kind == VIGIL__OP_DIAL ? op : NULL;
}

static void dial_final(vigil_loop *loop, vigil__op *op, vigil_conn c, int status) {
    op->flags |= VIGIL__OPF_USER_DONE;
    vigil_connect_cb cb = (vigil_connect_cb)op->cb;
    void *ud = op->ud;
    vigil__op_release(loop, op);
    VIGIL__CALLBACK(loop, cb, (loop, c, status, ud));
}

/* What is left of the deadline in ms (at least 1), 0 for none, -1 if it passed. */
static int64_t left_ms(const vigil__dial *d) {
    if (!d->deadline_ns)
        return 0;
    uint64_t now = vigil__clock_ns();
    if (now >= d->deadline_ns)
        return -1;
    return (int64_t)((d->deadline_ns - now + 999999) / 1000000);
}

static void dial_connected(vigil_loop *loop, vigil_conn c, int status, void *ud);

static void dial_next(vigil_loop *loop, vigil__op *op) {
    vigil__dial *d = op->u.dial.d;
    while (d->next < d->n) {
        int64_t left = left_ms(d);
        if ((op->flags & VIGIL__OPF_STOPPED) || left < 0)
            break;
        vigil_conn c;
        int rc = vigil_conn_connect(loop, d->addrs[d->next++], d->port, (uint32_t)left, dial_connected,
                                    handle_ud(loop, op), &c, &d->stage);
        if (rc == 0)
            return; /* its callback goes on */
        d->last_err = rc;
    }
    int status = (op->flags & VIGIL__OPF_STOPPED) ? -ECANCELED : left_ms(d) < 0 ? -ETIMEDOUT : d->last_err;
    dial_final(loop, op, (vigil_conn){0}, status ? status : -ECONNREFUSED);
}

/* The stages' callbacks are vigil's code called as user code: each moves
 * the thread back to LIBRARY first (a fenced thread touches nothing), so
 * the supervisor never fences it while it changes the tables. */
static void dial_connected(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    VIGIL__API_OR(loop, 0, );
    vigil__op *op = dial_of(loop, ud);
    if (!op) { /* cannot happen: a dial ends only after its stage */
        if (status == 0)
            vigil_conn_abort(loop, c, NULL, NULL);
        return;
    }
    if (status == 0) {
        dial_final(loop, op, c, 0);
        return;
    }
    op->u.dial.d->last_err = status;
    if (left_ms(op->u.dial.d) < 0) {
        dial_final(loop, op, (vigil_conn){0}, -ETIMEDOUT);
        return;
    }
    dial_next(loop, op); /* the next address */
}

static void dial_resolved(vigil_loop *loop, vigil_op r, int status, const char *const *addrs, void *ud) {
    VIGIL__API_OR(loop, 0, );
    vigil__op *op = dial_of(loop, ud);
    if (!op)
        return;
    vigil__dial *d = op->u.dial.d;
    if (status < 0) {
        dial_final(loop, op, (vigil_conn){0}, (op->flags & VIGIL__OPF_STOPPED) ? -ECANCELED : status);
        return;
    }
    for (int i = 0; i < status && i < RESOLVE_MAX_ADDRS; i++)
        snprintf(d->addrs[i], sizeof(d->addrs[i]), "%s", addrs[i]);
    d->n = status;
    dial_next(loop, op);
}

static int dial_cancel(vigil_loop *loop, vigil__op *op) {
    op->flags |= VIGIL__OPF_STOPPED;
    int rc = vigil_op_cancel(loop, op->u.dial.d->stage); /* its callback ends the dial */
    return rc == -EBADF ? 0 : rc;
}

int vigil_conn_connect_name(vigil_loop *loop, const char *name, uint16_t port, uint32_t deadline_ms,
                            vigil_connect_cb cb, void *ud, vigil_op *out) {
    VIGIL__API(loop, 0);
    if (!name || !cb || port == 0)
        return -EINVAL;
    if (loop->destroying)
        return -VIGIL_ESHUTDOWN;
    vigil__dial *d = calloc(1, sizeof(*d));
    vigil__op *op = d ? vigil__op_new(loop, VIGIL__OP_DIAL) : NULL;
    if (!op) {
        free(d);
        return -ENOMEM;
    }
    d->port = port;
    d->deadline_ns = deadline_ms ? vigil__clock_ns() + (uint64_t)deadline_ms * 1000000ull : 0;
    op->cb = (void *)cb;
    op->ud = ud;
    op->u.dial.d = d;
    int rc = resolve_start(loop, name, 0, deadline_ms, dial_resolved, handle_ud(loop, op), &d->stage);
    if (rc < 0) {
        op->flags |= VIGIL__OPF_USER_DONE;
        vigil__op_release(loop, op);
        return rc;
    }
    if (out)
        *out = vigil__op_handle(loop, op);
    return 0;
}

/* ------------------------------------------------------ op classes */

static void resolve_deadline(vigil_loop *loop, vigil__op *op, uint64_t due, uint64_t now) {
    op->flags |= VIGIL__OPF_TIMED_OUT;
    vigil__stat_add(&loop->sv.stats.deadlines_expired, 1);
    resolve_cancel(loop, op);
}

_Static_assert(offsetof(vigil__resjob, job) == 0, "the engine frees a job by its pool part");

/* a lookup on the loop's pool (OPF_ENGINE: a rebuild leaves it there) */
const vigil__op_class vigil__resolve_class = {
    .name = "resolve",
    .complete = resolve_complete,
    .finish = resolve_finish,
    .cancel = resolve_cancel,
    .deadline = resolve_deadline,
    .release = vigil__engine_release,
    .job = vigil__engine_job,
};

static void dial_release(vigil_loop *loop, vigil__op *op) { free(op->u.dial.d); }

/* connect by name: a lookup, then connects, each an op of its own; the dial
 * itself is never in the kernel */
const vigil__op_class vigil__dial_class = {
    .name = "dial",
    .cancel = dial_cancel,
    .release = dial_release,
};
