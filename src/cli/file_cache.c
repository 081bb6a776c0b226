/*
 * file_cache.c: the open-file cache of `vigil serve --root` (file_cache.h).
 *
 * A chained hash table of paths and one LRU list through the same entries.
 * Small: at most FILE_CACHE_ENTRIES entries a loop, so a fixed number of
 * buckets keeps chains short and nothing ever rehashes under load.
 */
#include "file_cache.h"
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif

#define BUCKETS 2048 /* a power of two, twice FILE_CACHE_ENTRIES */
_Static_assert(FILE_SMALL <= FILE_CACHE_BYTES, "a small body always fits the cache");

struct file_cache {
    file_entry *bucket[BUCKETS];
    file_entry lru;   /* sentinel: lru.lru_next is the most recently used */
    size_t n, bytes;  /* entries, and bytes of small bodies, in the table */
    size_t fds;       /* entries of large files, each holding its fd */
};

static uint32_t hash_of(const char *s) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

file_cache *file_cache_new(void) {
    file_cache *fc = calloc(1, sizeof(*fc));
    if (fc)
        fc->lru.lru_next = fc->lru.lru_prev = &fc->lru;
    return fc;
}

static size_t body_bytes(const file_entry *e) { return e->body ? (size_t)e->st.size : 0; }

void file_entry_release(file_entry *e, vigil_loop *loop) {
    if (--e->refs)
        return;
    free(e->body);
    if (e->fd >= 0) {
        if (!loop || vigil_fs_close(loop, e->fd, NULL, NULL, NULL) < 0)
            close(e->fd);
    }
    free(e);
}

static void unlink_entry(file_cache *fc, vigil_loop *loop, file_entry *e) {
    file_entry **p = &fc->bucket[e->hash & (BUCKETS - 1)];
    while (*p != e)
        p = &(*p)->hash_next;
    *p = e->hash_next;
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
    e->in_table = 0;
    fc->n--;
    fc->bytes -= body_bytes(e);
    fc->fds -= e->fd >= 0;
    file_entry_release(e, loop);
}

void file_cache_free(file_cache *fc, vigil_loop *loop) {
    if (!fc)
        return;
    while (fc->lru.lru_next != &fc->lru)
        unlink_entry(fc, loop, fc->lru.lru_next);
    free(fc);
}

file_entry *file_cache_find(file_cache *fc, const char *path) {
    uint32_t h = hash_of(path);
    for (file_entry *e = fc->bucket[h & (BUCKETS - 1)]; e; e = e->hash_next) {
        if (e->hash != h || strcmp(e->path, path))
            continue;
        if (fc->lru.lru_next != e) { /* to the front */
            e->lru_prev->lru_next = e->lru_next;
            e->lru_next->lru_prev = e->lru_prev;
            e->lru_next = fc->lru.lru_next;
            e->lru_prev = &fc->lru;
            fc->lru.lru_next->lru_prev = e;
            fc->lru.lru_next = e;
        }
        return e;
    }
    return NULL;
}

/* The ETag nginx makes (mtime seconds and size in hex), with the
 * nanoseconds too: two versions written within one second differ. */
static void make_validators(file_entry *e) {
    int64_t mt = e->st.mtime_ns;
    int64_t secs = mt >= 0 ? mt / 1000000000 : 0;
    snprintf(e->etag, sizeof(e->etag), "\"%llx.%llx-%llx\"", (unsigned long long)secs,
             (unsigned long long)(mt >= 0 ? mt % 1000000000 : 0), (unsigned long long)e->st.size);
    http_date(e->last_modified, secs);
}

file_entry *file_entry_new(const char *path, const vigil_stat *st, const char *content_type) {
    size_t pl = strlen(path);
    file_entry *e = calloc(1, sizeof(*e) + pl + 1);
    if (!e)
        return NULL;
    memcpy(e->path, path, pl + 1);
    e->hash = hash_of(path);
    e->refs = 1;
    e->fd = -1;
    e->st = *st;
    make_validators(e);
    e->type = content_type;
    int n = snprintf(e->fields, sizeof(e->fields),
                     "Content-Length: %llu\r\nContent-Type: %s\r\nLast-Modified: %s\r\nETag: %s\r\n"
                     "Accept-Ranges: bytes\r\n",
                     (unsigned long long)st->size, content_type, e->last_modified, e->etag);
    if (n < 0 || (size_t)n >= sizeof(e->fields)) {
        free(e);
        return NULL;
    }
    e->fields_len = (uint16_t)n;
    return e;
}

int file_entry_same(const file_entry *e, const vigil_stat *st) {
    return e->st.dev == st->dev && e->st.ino == st->ino && e->st.size == st->size &&
           e->st.mtime_ns == st->mtime_ns && e->st.ctime_ns == st->ctime_ns;
}

void file_cache_drop(file_cache *fc, vigil_loop *loop, file_entry *e) {
    if (e->in_table)
        unlink_entry(fc, loop, e);
}

void file_cache_put(file_cache *fc, vigil_loop *loop, file_entry *e) {
    file_entry *old = file_cache_find(fc, e->path);
    if (old == e)
        return;
    if (old)
        unlink_entry(fc, loop, old);
    size_t b = body_bytes(e);
    while (fc->n && (fc->n >= FILE_CACHE_ENTRIES || fc->bytes + b > FILE_CACHE_BYTES ||
                     (e->fd >= 0 && fc->fds >= FILE_CACHE_FDS)))
        unlink_entry(fc, loop, fc->lru.lru_prev); /* the least recently used */
    file_entry **head = &fc->bucket[e->hash & (BUCKETS - 1)];
    e->hash_next = *head;
    *head = e;
    e->lru_next = fc->lru.lru_next;
    e->lru_prev = &fc->lru;
    fc->lru.lru_next->lru_prev = e;
    fc->lru.lru_next = e;
    e->in_table = 1;
    e->refs++;
    fc->n++;
    fc->bytes += b;
    fc->fds += e->fd >= 0;
}
