/*
 * files.h: static files for `vigil serve --mode http --root DIR`.
 *
 * A connection's requests come from http_conn one at a time. Each is
 * answered from the loop's open-file cache (file_cache.h) when it can be,
 * else after looking at the file through vigil's file calls (open beneath
 * DIR: VIGIL_O_BENEATH, so no "..", absolute path or symlink leads out; a
 * FIFO or device is refused without waiting), so a slow disk never stalls
 * the loop. Conditional requests (ETag, Last-Modified) and single byte
 * ranges are answered as RFC 9110 says (files.c).
 */
#ifndef VIGIL_CLI_FILES_H
#define VIGIL_CLI_FILES_H

#include "vigil.h"
#include "http_conn.h"
#include "file_cache.h"

#include <stddef.h>
#include <stdint.h>

typedef struct files_conn files_conn;

/* How a connection's owner hears that files is done with it. */
typedef struct files_hooks {
    void (*requests)(void *ud, uint64_t n);                  /* requests answered */
    void (*drop)(vigil_loop *loop, vigil_conn c, int abortive, void *ud); /* close it */
    void (*sent)(void *ud, uint64_t bytes);                  /* bytes queued to send */
} files_hooks;

/* Opens DIR for serving (O_PATH): 0 or -errno. Once, before any loop runs. */
int files_root(const char *dir);

/* hc: the connection's request side, told when an answer is out; cache:
 * its loop's. */
files_conn *files_conn_new(vigil_conn c, http_conn *hc, file_cache *cache, const files_hooks *hooks,
                           void *ud);
/* One request (http_conn's handler): HTTP_NEXT, HTTP_BUSY, HTTP_CLOSE or HTTP_GONE. */
int files_request(vigil_loop *loop, files_conn *fc, const http_request *req);
/* The connection is gone: fc is freed now, or when its file call in flight ends. */
void files_conn_gone(vigil_loop *loop, files_conn *fc);

#endif
