/*
 * file_cache.h: the open-file cache of `vigil serve --root`, one per loop
 * (so no lock: only its loop's thread touches it).
 *
 * An entry holds what answering a request for a file takes without a file
 * call: its identity and size (from stat), its validators (ETag and
 * Last-Modified), the fixed part of its response head, and its bytes:
 * - up to FILE_SMALL bytes, copied into memory, sent with the head in one
 *   send;
 * - larger, its open fd, which each response sends from
 *   (vigil_conn_send_file: no copy through the server's memory; a file cut
 *   short meanwhile ends the response with a reset, never a crash).
 *
 * How stale an answer can be: an entry is used without looking at the file
 * for at most FILE_CACHE_VALID_MS after it was last checked (open by path
 * and stat: the same device, inode, size, mtime and ctime, else it is
 * replaced). So a file changed, replaced or deleted is answered as it was
 * for at most that long. An entry made from a file modified less than 2 s
 * before is never trusted: each use opens, stats and reads the file
 * again until it is older, since a write within the same clock tick as the
 * read would not change its mtime.
 *
 * Bounds: FILE_CACHE_ENTRIES entries, FILE_CACHE_FDS of them large (an fd
 * each) and FILE_CACHE_BYTES of small bodies, least recently used
 * out first. An entry leaves the table when evicted or replaced and is
 * freed when its last user, a response still being sent from it, lets go.
 */
#ifndef VIGIL_CLI_FILE_CACHE_H
#define VIGIL_CLI_FILE_CACHE_H

#include "vigil.h"

#include <stddef.h>
#include <stdint.h>

#define FILE_SMALL (32u << 10)
#define FILE_CACHE_ENTRIES 1024
#define FILE_CACHE_BYTES (64u << 20)
#define FILE_CACHE_FDS 128
#define FILE_CACHE_VALID_MS 1000

typedef struct file_entry file_entry;
struct file_entry {
    file_entry *hash_next, *lru_prev, *lru_next;
    uint32_t refs;       /* the table's (while in it) + each response using it */
    uint8_t in_table;
    int fd;              /* a large body's file, sent from per request; else -1 */
    uint8_t *body;       /* a small body's size bytes (malloc'd), or NULL */
    vigil_stat st;       /* what the file was when last checked */
    uint64_t checked_ns; /* then (clock.h's now_ns); 0: never trusted, made from a file this second's */
    const char *type;    /* Content-Type */
    char etag[48];       /* "\"mtime.ns-size\"" in hex, nginx's with nanoseconds */
    char last_modified[30];
    /* A 200's fields after Date: Content-Length, Content-Type,
     * Last-Modified, ETag, Accept-Ranges, each ending in "\r\n" */
    char fields[256];
    uint16_t fields_len;
    uint32_t hash;
    char path[];         /* relative to the served directory */
};

typedef struct file_cache file_cache;

file_cache *file_cache_new(void);
/* Drops the table's hold on every entry; entries still in use are freed by
 * their last user. loop: for closing fds (NULL: closed here). */
void file_cache_free(file_cache *fc, vigil_loop *loop);

/* The entry for path, moved to the front of the LRU, or NULL. No hold taken. */
file_entry *file_cache_find(file_cache *fc, const char *path);
/* A new entry for path with st, holding one reference (the caller's), and
 * its head fields and validators made; the body is the caller's to fill.
 * NULL when out of memory. */
file_entry *file_entry_new(const char *path, const vigil_stat *st, const char *content_type);
/* Puts e in the table (taking a reference of its own), replacing the entry
 * of the same path, and evicts what the bounds say. */
void file_cache_put(file_cache *fc, vigil_loop *loop, file_entry *e);
/* Takes e out of the table (a file gone or changed). */
void file_cache_drop(file_cache *fc, vigil_loop *loop, file_entry *e);
/* Does e still describe the file st describes? */
int file_entry_same(const file_entry *e, const vigil_stat *st);

static inline void file_entry_hold(file_entry *e) { e->refs++; }
/* Lets go of e; the last one frees it (unmaps, frees, closes its fd). */
void file_entry_release(file_entry *e, vigil_loop *loop);

#endif
