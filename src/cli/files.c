/*
 * files.c: static files for `vigil serve --mode http --root DIR` (files.h).
 *
 * A request goes open -> stat -> read ... -> close, each a vigil file call
 * whose callback starts the next. The response head goes out with the first
 * chunk of the body, in one send; a file larger than one chunk is read again
 * only once the send queue has drained below the low-water mark, so a slow
 * client holds one chunk per connection, not the whole file. Between two
 * chunks no file call is in flight: a connection that goes then is freed at
 * once (nothing else would ever come back for it).
 */
#include "files.h"
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _WIN32
#include <io.h>
#include <windows.h>
#endif

#define CHUNK (256u << 10)    /* file bytes read per call */
#define HEAD_ROOM 512         /* the response head goes in front of the first chunk */
#define FILE_DEADLINE_MS 10000

static int root_fd = -1;

struct files_conn {
    vigil_conn c;
    http_conn *hc;
    const files_hooks *hooks;
    void *ud;
    int busy;          /* a response is being produced: a file call may be in flight */
    int gone;          /* the connection was dropped: free when the call in flight ends */
    int wait_drain;    /* a large file waits for the send queue to drain (no call in flight) */
    int in_request;    /* inside files_request: an answer given at once is returned, not told */
    int outcome;       /* that answer: HTTP_NEXT, HTTP_CLOSE or HTTP_GONE */
    http_request req;
    char path[512];    /* the request's file, relative to DIR */
    int fd;
    uint64_t size, off;
    vigil_stat st;
    uint8_t *buf;      /* HEAD_ROOM + CHUNK */
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

files_conn *files_conn_new(vigil_conn c, http_conn *hc, const files_hooks *hooks, void *ud) {
    files_conn *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return NULL;
    fc->c = c;
    fc->hc = hc;
    fc->hooks = hooks;
    fc->ud = ud;
    fc->fd = -1;
    return fc;
}

static void conn_free(files_conn *fc) {
    free(fc->buf);
    free(fc);
}

static void finish(vigil_loop *loop, files_conn *fc, int ok);

void files_conn_gone(vigil_loop *loop, files_conn *fc) {
    fc->gone = 1;
    if (fc->in_request)
        return; /* files_request frees it on the way out */
    if (fc->busy && fc->wait_drain) { /* between two chunks: no call will come back */
        fc->wait_drain = 0;
        finish(loop, fc, 0);
    } else if (!fc->busy) {
        conn_free(fc);
    }
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

/* Sends; 0, or -1 when the connection had to go. */
static int put(vigil_loop *loop, files_conn *fc, const void *data, size_t len) {
    int rc = vigil_conn_send(loop, fc->c, data, len, 0, NULL, NULL, NULL);
    if (rc >= 0) {
        fc->hooks->sent(fc->ud, len);
        http_conn_sent(fc->hc, rc); /* over the mark: no next request until it drains */
        return 0;
    }
    if (rc != -EOWNERDEAD) /* fenced: the loop went on elsewhere, touch nothing */
        fc->hooks->drop(loop, fc->c, 1, fc->ud);
    return -1;
}

static void file_closed(vigil_loop *loop, vigil_op op, int status, void *ud) {}

/* The response is out (queued), or the connection went: the next request,
 * the end, or freeing. */
static void finish(vigil_loop *loop, files_conn *fc, int ok) {
    if (fc->fd >= 0) {
        vigil_fs_close(loop, fc->fd, file_closed, NULL, NULL);
        fc->fd = -1;
    }
    free(fc->buf);
    fc->buf = NULL;
    fc->busy = 0;
    fc->wait_drain = 0;
    if (fc->gone || !ok) { /* (!ok: put() dropped it, so it is gone too) */
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

static void on_read(vigil_loop *loop, vigil_op op, int status, void *ud);

static void read_next(vigil_loop *loop, files_conn *fc) {
    uint64_t want = fc->size - fc->off < CHUNK ? fc->size - fc->off : CHUNK;
    vigil_op op;
    int rc = vigil_fs_read(loop, fc->fd, fc->buf + HEAD_ROOM, (size_t)want, (int64_t)fc->off, on_read,
                           fc, &op);
    if (rc == 0)
        vigil_op_set_deadline(loop, op, FILE_DEADLINE_MS);
    if (rc < 0) {
        if (fc->off == 0)
            answer_status(loop, fc, status_of(rc));
        else { /* mid-body: the response cannot be mended */
            fc->hooks->drop(loop, fc->c, 1, fc->ud);
            finish(loop, fc, 0);
        }
    }
}

static void on_read(vigil_loop *loop, vigil_op op, int status, void *ud) {
    files_conn *fc = ud;
    if (fc->gone || status == -EOWNERDEAD) {
        finish(loop, fc, 0);
        return;
    }
    if (status <= 0) { /* an error, or the file shrank under us */
        if (fc->off == 0) {
            answer_status(loop, fc, status < 0 ? status_of(status) : 500);
        } else {
            fc->hooks->drop(loop, fc->c, 1, fc->ud);
            finish(loop, fc, 0);
        }
        return;
    }
    uint8_t *from = fc->buf + HEAD_ROOM;
    size_t len = (size_t)status;
    if (fc->off == 0) { /* the head, right in front of the first bytes */
        char head[HEAD_ROOM];
        int h = http_response_head(head, sizeof(head), (size_t)fc->size, content_type(fc->path),
                                   &fc->req);
        if (h < 0) {
            answer_status(loop, fc, 500);
            return;
        }
        from -= h;
        memcpy(from, head, (size_t)h);
        len += (size_t)h;
    }
    fc->off += (uint64_t)status;
    if (put(loop, fc, from, len) < 0) {
        finish(loop, fc, 0);
        return;
    }
    if (fc->off >= fc->size) {
        finish(loop, fc, 1);
        return;
    }
    if (vigil_conn_send_queued(loop, fc->c) > (int64_t)CHUNK)
        fc->wait_drain = 1; /* files_drained goes on */
    else
        read_next(loop, fc);
}

void files_drained(vigil_loop *loop, files_conn *fc) {
    if (fc->wait_drain && !fc->gone) {
        fc->wait_drain = 0;
        read_next(loop, fc);
    }
}

static void on_stat(vigil_loop *loop, vigil_op op, int status, void *ud) {
    files_conn *fc = ud;
    if (fc->gone || status == -EOWNERDEAD) {
        finish(loop, fc, 0);
        return;
    }
    if (status < 0 || !S_ISREG(fc->st.mode)) {
        answer_status(loop, fc, status < 0 ? status_of(status) : 404); /* a directory, a device */
        return;
    }
    fc->size = fc->st.size;
    fc->off = 0;
    if (fc->req.head || fc->size == 0) {
        char head[HEAD_ROOM];
        int h = http_response_head(head, sizeof(head), (size_t)fc->size, content_type(fc->path),
                                   &fc->req);
        finish(loop, fc, h > 0 && put(loop, fc, head, (size_t)h) == 0);
        return;
    }
    size_t cap = HEAD_ROOM + (fc->size < CHUNK ? (size_t)fc->size : CHUNK);
    if (!(fc->buf = malloc(cap))) {
        answer_status(loop, fc, 500);
        return;
    }
    read_next(loop, fc);
}

static void on_open(vigil_loop *loop, vigil_op op, int status, void *ud) {
    files_conn *fc = ud;
    if (status >= 0)
        fc->fd = status; /* closed by finish, whatever comes next */
    if (fc->gone || status == -EOWNERDEAD) {
        finish(loop, fc, 0);
        return;
    }
    if (status < 0) {
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

/* One request, parsed: answered at once (an error) or through file calls. */
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
        return HTTP_BUSY; /* a file call is in flight: http_conn_done follows */
    if (fc->gone) {
        conn_free(fc);
        return HTTP_GONE;
    }
    return fc->outcome;
}
