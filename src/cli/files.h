/*
 * files.h: static files for `vigil serve --mode http --root DIR`.
 *
 * Each connection answers its requests in order, one at a time: a request
 * opens its file beneath DIR (VIGIL_O_BENEATH: no "..", absolute path or
 * symlink leads out), stats it, reads it in chunks and sends them, all
 * through vigil's file calls, so a slow disk never stalls the loop. Bytes of
 * pipelined requests that arrive meanwhile wait in the connection's inbox.
 */
#ifndef VIGIL_CLI_FILES_H
#define VIGIL_CLI_FILES_H

#include "vigil.h"

#include <stddef.h>
#include <stdint.h>

typedef struct files_conn files_conn;

/* How a connection's owner hears that files is done with it. */
typedef struct files_hooks {
    void (*requests)(void *ud, uint64_t n);                  /* requests answered */
    void (*drop)(void *ud, vigil_loop *loop, vigil_conn c, int abortive); /* close it */
} files_hooks;

/* Opens DIR for serving (O_PATH): 0 or -errno. Once, before any loop runs. */
int files_root(const char *dir);

files_conn *files_conn_new(vigil_conn c, const files_hooks *hooks, void *ud);
/* Bytes received on the connection. */
void files_data(vigil_loop *loop, files_conn *fc, const uint8_t *data, size_t len);
/* The send queue drained below the low-water mark: go on with a large file. */
void files_drained(vigil_loop *loop, files_conn *fc);
/* The connection is gone: fc is freed now, or when its file call in flight ends. */
void files_conn_gone(files_conn *fc);

#endif
