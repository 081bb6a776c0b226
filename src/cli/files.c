/*
 * files.c: static files for `vigil serve --mode http --root DIR` (files.h).
 *
 * A request is answered from the loop's open-file cache (file_cache.h) when
 * it holds the file and checked it less than FILE_CACHE_VALID_MS ago: no
 * file call, the response head made from the entry's fixed fields and the
 * current Date, and a small body sent with it in one send. Otherwise the
 * file is looked at first, each step a vigil file call whose callback starts
 * the next: open beneath DIR -> stat -> (the entry still matches: use it;
 * else a new entry, its small body read into memory, or for a large body
 * the fd kept) -> answer.
 *
 * The answer honours If-None-Match / If-Modified-Since (304) and a single
 * byte Range (206, or 416), If-Range included; several ranges get the whole
 * file, as the RFC allows.
 *
 * A large body is one file message behind its head (vigil_conn_send_file:
 * TransmitFile on Windows, sent from a mapping on Linux with cold pages
 * read in on the loop's pool), holding the entry, and so its fd, until its
 * callback. The response is then out as far as files.c is concerned: the
 * send queue's watermark holds the next request back until it drains.
 */
#include "files.h"
#include "file_cache.h"
#include "http.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _WIN32
#include <io.h>
#include <windows.h>
#endif

#define FILE_DEADLINE_MS 10000
#define FILE_MESSAGE_MAX (1u << 30) /* bytes of a body per file message (one is at most 2 GiB) */

static int root_fd = -1;

struct files_conn {
    vigil_conn c;
    http_conn *hc;
    const files_hooks *hooks;
    void *ud;
    file_cache *cache;
    int busy;          /* a response is being produced: a call may be in flight */
    int gone;          /* the connection was dropped: free when the call in flight ends */
    int in_request;    /* inside files_request: an answer given at once is returned, not told */
    int outcome;       /* that answer: HTTP_NEXT, HTTP_CLOSE or HTTP_GONE */
    http_request req;
    char path[512];    /* the request's file, relative to DIR */
    int fd;            /* opened to look at the file; closed by finish unless an entry took it */
    vigil_stat st;
    file_entry *fill;  /* a new entry whose small body is being read (held) */
    uint64_t got;      /* ... bytes of it so far */
};

#ifdef _WIN32
/* The C runtime cannot open a directory: the handle of one, behind an fd
 * (paths relative to it are joined to its own path, src/os/win/files.c). */
#define OPEN_FLAGS (O_RDONLY | VIGIL_O_BENEATH)
int files_root(const char *dir) {
    HANDLE h = CreateFileA(dir, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (h == INVALID_HANDLE_VALUE)
        return GetLastError() == ERROR_FILE_NOT_FOUND || GetLastError() == ERROR_PATH_NOT_FOUND ? -ENOENT : -EACCES;
    BY_HANDLE_FILE_INFORMATION fi;
    if (!GetFileInformationByHandle(h, &fi) || !(fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
        CloseHandle(h);
        return -ENOTDIR;
    }
    int fd = _open_osfhandle((intptr_t)h, _O_RDONLY);
    if (fd < 0) {
        CloseHandle(h);
        return -EMFILE;
    }
    root_fd = fd;
    return 0;
}
#else
#define OPEN_FLAGS (O_RDONLY | O_NOCTTY | VIGIL_O_BENEATH)
int files_root(const char *dir) {
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    root_fd = fd;
    return 0;
}
#endif


files_conn *files_conn_new(vigil_conn c, http_conn *hc, file_cache *cache, const files_hooks *hooks,
                           void *ud) {
    files_conn *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return NULL;
    fc->c = c;
    fc->hc = hc;
    fc->cache = cache;
    fc->hooks = hooks;
    fc->ud = ud;
    fc->fd = -1;
    return fc;
}

static void conn_free(files_conn *fc) { free(fc); }

static void finish(vigil_loop *loop, files_conn *fc, int ok);

void files_conn_gone(vigil_loop *loop, files_conn *fc) {
    fc->gone = 1;
    if (fc->in_request)
        return; /* files_request frees it on the way out */
    if (!fc->busy)
        conn_free(fc);
}

static const char *content_type(const char *path) {
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html"}, {".htm", "text/html"}, {".txt", "text/plain"},
        {".css", "text/css"}, {".js", "text/javascript"}, {".json", "application/json"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"}, {".gif", "image/gif"}, {".ico", "image/x-icon"},
        {".wasm", "application/wasm"}, {".pdf", "application/pdf"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* A send's result: 0, or -1 when the connection had to go. Over the
 * high-water mark (1) no next request is taken until it drains. */
static int sent(vigil_loop *loop, files_conn *fc, int rc, size_t len) {
    if (rc >= 0) {
        fc->hooks->sent(fc->ud, len);
        http_conn_sent(fc->hc, rc);
        return 0;
    }
    if (rc != -EOWNERDEAD) /* fenced: the loop went on elsewhere, touch nothing */
        fc->hooks->drop(loop, fc->c, 1, fc->ud);
    return -1;
}

static int put(vigil_loop *loop, files_conn *fc, const void *data, size_t len) {
    return sent(loop, fc, vigil_conn_send(loop, fc->c, data, len, 0, NULL, NULL, NULL), len);
}

static void closed_quietly(vigil_loop *loop, vigil_op op, int status, void *ud) {}

/* The response is out (queued), or the connection went: the next request,
 * the end, or freeing. */
static void finish(vigil_loop *loop, files_conn *fc, int ok) {
    if (fc->fd >= 0) {
        vigil_fs_close(loop, fc->fd, closed_quietly, NULL, NULL);
        fc->fd = -1;
    }
    if (fc->fill) {
        file_entry_release(fc->fill, loop);
        fc->fill = NULL;
    }
    fc->busy = 0;
    if (fc->gone || !ok) { /* (!ok: the connection was dropped, so it is gone too) */
        fc->outcome = HTTP_GONE;
        if (!fc->in_request && fc->gone)
            conn_free(fc);
        return;
    }
    fc->hooks->requests(fc->ud, 1);
    if (fc->in_request) {
        fc->outcome = fc->req.keep_alive ? HTTP_NEXT : HTTP_CLOSE;
        return;
    }
    if (!fc->req.keep_alive)
        fc->hooks->drop(loop, fc->c, 0, fc->ud);
    else
        http_conn_done(loop, fc->hc);
}

static void answer_status(vigil_loop *loop, files_conn *fc, int status) {
    char out[512];
    int n = http_status_response(out, sizeof(out), status, &fc->req);
    finish(loop, fc, n > 0 && put(loop, fc, out, (size_t)n) == 0);
}

static int status_of(int err) {
    switch (err) {
    case -ENOENT: case -ENOTDIR: case -EXDEV: case -ELOOP: case -ENAMETOOLONG: case -EISDIR:
    case -EACCES: case -EPERM:
    case -ENXIO: case -ENODEV: case -EOPNOTSUPP:
        /* missing, outside the directory, unreadable, or not a file (a
         * socket, a FIFO, a device): no difference shown, as nginx does */
        return 404;
    case -ETIMEDOUT: case -EAGAIN:
        return 503;
    default:
        return 500;
    }
}

/* ------------------------------------------------------------ answering from an entry */

static size_t append(char *buf, size_t at, const char *s, size_t n) {
    memcpy(buf + at, s, n);
    return at + n;
}

/* The head of a 200 from e's fixed fields: a few copies, no formatting. */
static size_t head_200(char *buf, const file_entry *e, const http_request *req) {
    static const char start[] = "HTTP/1.1 200 OK\r\nServer: vigil\r\nDate: ";
    const char *conn = http_connection_field(req);
    size_t n = append(buf, 0, start, sizeof(start) - 1);
    n = append(buf, n, http_date_now(), 29);
    n = append(buf, n, "\r\n", 2);
    n = append(buf, n, e->fields, e->fields_len);
    n = append(buf, n, conn, strlen(conn));
    return append(buf, n, "\r\n", 2);
}

/* 206, 304 and 416: rarer, formatted. */
static int head_other(char *buf, size_t cap, int status, const file_entry *e, uint64_t first,
                      uint64_t last, const http_request *req) {
    const char *conn = http_connection_field(req);
    unsigned long long size = (unsigned long long)e->st.size;
    if (status == 304) /* the validators, no length: the client has the body */
        return snprintf(buf, cap,
                        "HTTP/1.1 304 Not Modified\r\nServer: vigil\r\nDate: %s\r\nLast-Modified: %s\r\n"
                        "ETag: %s\r\n%s\r\n",
                        http_date_now(), e->last_modified, e->etag, conn);
    if (status == 416)
        return snprintf(buf, cap,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nServer: vigil\r\nDate: %s\r\n"
                        "Content-Range: bytes */%llu\r\nContent-Length: 0\r\n%s\r\n",
                        http_date_now(), size, conn);
    return snprintf(buf, cap,
                    "HTTP/1.1 206 Partial Content\r\nServer: vigil\r\nDate: %s\r\n"
                    "Content-Range: bytes %llu-%llu/%llu\r\nContent-Length: %llu\r\n"
                    "Content-Type: %s\r\nLast-Modified: %s\r\nETag: %s\r\n%s\r\n",
                    http_date_now(), (unsigned long long)first, (unsigned long long)last, size,
                    (unsigned long long)(last - first + 1), e->type, e->last_modified, e->etag, conn);
}

/* RFC 9110 13.2.2: If-None-Match first (If-Modified-Since is then not
 * looked at); 304 for GET and HEAD when the client's copy is current. */
static int not_modified(const http_conditions *cd, const file_entry *e) {
    if (cd->if_none_match[0])
        return http_etag_listed(cd->if_none_match, e->etag);
    if (cd->if_modified_since[0]) {
        int64_t t = http_date_parse(cd->if_modified_since);
        return t >= 0 && e->st.mtime_ns / 1000000000 <= t;
    }
    return 0;
}

/* If-Range: the range only if the client's validator is still ours (an
 * ETag compared strongly, or exactly our Last-Modified). */
static int range_applies(const http_conditions *cd, const file_entry *e) {
    if (!cd->if_range[0])
        return 1;
    if (cd->if_range[0] == '"')
        return !strcmp(cd->if_range, e->etag);
    int64_t t = http_date_parse(cd->if_range);
    return t >= 0 && t == e->st.mtime_ns / 1000000000;
}

static void body_sent(vigil_loop *loop, vigil_conn c, int status, void *ud) {
    file_entry_release(ud, loop); /* a failure broke the stream: the receive says so */
}

/* The large body [first, first + len) of e behind its head, as file
 * messages; 0 or -1 (the connection had to go). */
static int send_large(vigil_loop *loop, files_conn *fc, file_entry *e, uint64_t first, uint64_t len) {
    for (uint64_t at = first, end = first + len; at < end;) {
        size_t n = end - at < FILE_MESSAGE_MAX ? (size_t)(end - at) : FILE_MESSAGE_MAX;
        file_entry_hold(e); /* its fd stays open until the message's callback */
        int rc = vigil_conn_send_file(loop, fc->c, e->fd, (int64_t)at, n, 0, body_sent, e, NULL);
        if (rc < 0)
            file_entry_release(e, loop);
        if (sent(loop, fc, rc, n) < 0)
            return -1;
        at += n;
    }
    return 0;
}

static void answer(vigil_loop *loop, files_conn *fc, file_entry *e) {
    const http_request *req = &fc->req;
    uint64_t size = e->st.size, first = 0, last = size ? size - 1 : 0;
    int status = 200;
    if (not_modified(&req->cond, e))
        status = 304;
    else if (req->cond.range[0] && req->method == HTTP_GET && range_applies(&req->cond, e)) {
        int r = http_range(req->cond.range, size, &first, &last);
        status = r > 0 ? 206 : r < 0 ? 416 : 200;
    }
    char head[768];
    int h = status == 200 ? (int)head_200(head, e, req)
                          : head_other(head, sizeof(head), status, e, first, last, req);
    if (h < 0 || (size_t)h >= sizeof(head)) {
        answer_status(loop, fc, 500);
        return;
    }
    uint64_t len = (status == 200 || status == 206) && !req->head && size ? last - first + 1 : 0;
    if (len == 0) {
        finish(loop, fc, put(loop, fc, head, (size_t)h) == 0);
        return;
    }
    if (e->body) { /* small: head and body in one send */
        vigil_iov iov[2] = {{head, (size_t)h}, {e->body + first, (size_t)len}};
        int rc = vigil_conn_sendv(loop, fc->c, iov, 2, 0, NULL, NULL, NULL);
        finish(loop, fc, sent(loop, fc, rc, (size_t)h + (size_t)len) == 0);
        return;
    }
    finish(loop, fc, put(loop, fc, head, (size_t)h) == 0 && send_large(loop, fc, e, first, len) == 0);
}

/* ------------------------------------------------------------ looking at the file */

/* May an entry made from st be used without looking again for a while?
 * Not while the file is this second's: a write in the same clock tick as
 * our look leaves its mtime as it was. */
static uint64_t checked_stamp(const vigil_stat *st) {
    int64_t now_s = (int64_t)time(NULL), mtime_s = st->mtime_ns / 1000000000;
    return now_s - mtime_s >= 2 ? now_ns() : 0;
}

/* The new entry is complete: into the cache, and answered from. */
static void install(vigil_loop *loop, files_conn *fc, file_entry *e) {
    e->checked_ns = checked_stamp(&e->st);
    file_cache_put(fc->cache, loop, e);
    answer(loop, fc, e);
    file_entry_release(e, loop); /* the cache and the answer hold it as they need */
}

static void fill_next(vigil_loop *loop, files_conn *fc);

static void on_fill(vigil_loop *loop, vigil_op op, int status, void *ud) {
    files_conn *fc = ud;
    if (fc->gone || status == -EOWNERDEAD) {
        finish(loop, fc, 0);
        return;
    }
    if (status <= 0) { /* an error, or the file shrank under us */
        answer_status(loop, fc, status < 0 ? status_of(status) : 503);
        return;
    }
    fc->got += (uint64_t)status;
    if (fc->got < fc->fill->st.size) {
        fill_next(loop, fc);
        return;
    }
    file_entry *e = fc->fill;
    fc->fill = NULL;
    install(loop, fc, e);
}

static void fill_next(vigil_loop *loop, files_conn *fc) {
    vigil_op op;
    int rc = vigil_fs_read(loop, fc->fd, fc->fill->body + fc->got, (size_t)(fc->fill->st.size - fc->got),
                           (int64_t)fc->got, on_fill, fc, &op);
    if (rc == 0)
        vigil_op_set_deadline(loop, op, FILE_DEADLINE_MS);
    else
        answer_status(loop, fc, status_of(rc));
}

/* A large body is sent from the file: the entry keeps its fd. */
static void keep_large(vigil_loop *loop, files_conn *fc, file_entry *e) {
    e->fd = fc->fd;
    fc->fd = -1;
}

/* The request's file is not what the cache says any more. */
static void forget(vigil_loop *loop, files_conn *fc) {
    file_entry *e = file_cache_find(fc->cache, fc->path);
    if (e)
        file_cache_drop(fc->cache, loop, e);
}

static void on_stat(vigil_loop *loop, vigil_op op, int status, void *ud) {
    files_conn *fc = ud;
    if (fc->gone || status == -EOWNERDEAD) {
        finish(loop, fc, 0);
        return;
    }
    if (status < 0 || !S_ISREG(fc->st.mode)) { /* a directory, a device: gone from the cache too */
        forget(loop, fc);
        answer_status(loop, fc, status < 0 ? status_of(status) : 404);
        return;
    }
    /* Unchanged: the entry goes on. Not an entry made while the file was
     * this second's (checked_ns 0): a write in the same clock tick as its
     * read would leave stat as it was, so its bytes are read again. */
    file_entry *e = file_cache_find(fc->cache, fc->path);
    if (e && e->checked_ns && file_entry_same(e, &fc->st)) {
        e->checked_ns = checked_stamp(&e->st);
        answer(loop, fc, e);
        return;
    }
    if (!(e = file_entry_new(fc->path, &fc->st, content_type(fc->path)))) {
        answer_status(loop, fc, 500);
        return;
    }
    if (e->st.size > FILE_SMALL || (uint64_t)(size_t)e->st.size != e->st.size) {
        keep_large(loop, fc, e);
        install(loop, fc, e);
        return;
    }
    if (e->st.size == 0) {
        install(loop, fc, e);
        return;
    }
    if (!(e->body = malloc((size_t)e->st.size))) {
        file_entry_release(e, loop);
        answer_status(loop, fc, 500);
        return;
    }
    fc->fill = e;
    fc->got = 0;
    fill_next(loop, fc);
}

static void on_open(vigil_loop *loop, vigil_op op, int status, void *ud) {
    files_conn *fc = ud;
    if (status >= 0)
        fc->fd = status; /* closed by finish unless an entry keeps it */
    if (fc->gone || status == -EOWNERDEAD) {
        finish(loop, fc, 0);
        return;
    }
    if (status < 0) { /* gone, or no longer ours to serve: out of the cache */
        forget(loop, fc);
        answer_status(loop, fc, status_of(status));
        return;
    }
    vigil_op stat_op;
    int rc = vigil_fs_stat(loop, fc->fd, "", &fc->st, on_stat, fc, &stat_op);
    if (rc == 0)
        vigil_op_set_deadline(loop, stat_op, FILE_DEADLINE_MS);
    if (rc < 0)
        answer_status(loop, fc, status_of(rc));
}

/* One request, parsed: answered at once (from the cache, or an error) or
 * after file calls. */
static void start(vigil_loop *loop, files_conn *fc) {
    if (fc->req.target_long) {
        answer_status(loop, fc, 414);
        return;
    }
    if (fc->req.method == HTTP_OTHER) {
        answer_status(loop, fc, 405);
        return;
    }
    int rc = http_target_path(fc->req.target, fc->path, sizeof(fc->path));
    if (rc < 0) { /* too long for a path, or a bad escape */
        answer_status(loop, fc, rc == -ENAMETOOLONG ? 414 : 400);
        return;
    }
    file_entry *e = file_cache_find(fc->cache, fc->path);
    if (e && e->checked_ns && now_ns() - e->checked_ns < FILE_CACHE_VALID_MS * NS_PER_MS) {
        answer(loop, fc, e);
        return;
    }
    vigil_op op;
    rc = vigil_fs_open(loop, root_fd, fc->path, OPEN_FLAGS, 0, on_open, fc, &op);
    if (rc == 0)
        vigil_op_set_deadline(loop, op, FILE_DEADLINE_MS);
    if (rc < 0)
        answer_status(loop, fc, status_of(rc));
}

int files_request(vigil_loop *loop, files_conn *fc, const http_request *req) {
    fc->req = *req;
    fc->busy = 1;
    fc->in_request = 1;
    start(loop, fc);
    fc->in_request = 0;
    if (fc->busy)
        return HTTP_BUSY; /* a call is in flight: http_conn_done follows */
    if (fc->gone) {
        conn_free(fc);
        return HTTP_GONE;
    }
    return fc->outcome;
}
