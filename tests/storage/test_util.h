/*
 * NAME
 *	test_util - helpers shared by the storage tests
 * DESCRIPTION
 *	Temporary directories (mkdtemp under /tmp, removed by the test), a
 *	synchronous stand-in for the ring's fdatasync, message helpers and a
 *	scan collector.  Header-only: each test file is its own executable.
 */
#ifndef SLUICE_TESTS_STORAGE_TEST_UTIL_H
#define SLUICE_TESTS_STORAGE_TEST_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/spool.h"

static inline int tu_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tu_rmrf(const char *path)
{
    nftw(path, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *tu_mkdtemp(void)
{
    char *p = strdup("/tmp/sluice-storage-XXXXXX");
    cr_assert_not_null(p);
    cr_assert_not_null(mkdtemp(p), "mkdtemp: %s", strerror(errno));
    return p;
}

static inline char *tu_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

struct tu_done {
    int calls;
    int res;
    uint64_t id;
};

static inline void tu_done_cb(void *arg, uint64_t id, int res)
{
    struct tu_done *d = arg;
    d->calls++;
    d->res = res;
    d->id = id;
}

/* What the worker loop does with its ring, synchronously.  1 if nothing
 * was queued. */
static inline int tu_sync(struct spool_writer *w)
{
    int fd = spool_writer_sync_fd(w);
    if (fd < 0)
        return 1;
    int r = fdatasync(fd) < 0 ? -errno : 0;
    spool_writer_sync_done(w, r);
    return 0;
}

static const char *const tu_rcpts[] = {"alice@example.org", "bob@example.net", "carol@example.com"};

static inline struct spool_env tu_env(int64_t arrival_ms)
{
    struct spool_env e = {
        .arrival_ms = arrival_ms,
        .client = "192.0.2.1",
        .helo = "client.example",
        .sender = "sender@example.com",
        .params = "SIZE=1000 BODY=8BITMIME",
        .nrcpt = 3,
        .rcpts = tu_rcpts,
    };
    return e;
}

/* Begins and commits a message with one body slice; returns its id. */
static inline uint64_t tu_put(struct spool_writer *w, const struct spool_env *env, const void *body,
                              size_t len, struct tu_done *d)
{
    struct spool_txn *t = spool_txn_begin(w, env);
    cr_assert_not_null(t);
    uint64_t id = spool_txn_id(t);
    struct iovec iov = {(void *)body, len};
    int r = spool_txn_commit(t, &iov, len ? 1 : 0, tu_done_cb, d);
    cr_assert_eq(r, 0, "commit: %s", strerror(-r));
    return id;
}

struct tu_msg {
    uint64_t id;
    int64_t arrival_ms;
    uint64_t size;
    char *client, *helo, *sender, *params;
    uint32_t nrcpt;
    char **rcpts;
};

struct tu_list {
    struct tu_msg *v;
    size_t n;
};

static inline int tu_collect(void *arg, const struct spool_msginfo *m)
{
    struct tu_list *l = arg;
    l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    cr_assert_not_null(l->v);
    struct tu_msg *x = &l->v[l->n++];
    x->id = m->id;
    x->arrival_ms = m->arrival_ms;
    x->size = m->size;
    x->client = strdup(m->client);
    x->helo = strdup(m->helo);
    x->sender = strdup(m->sender);
    x->params = strdup(m->params);
    x->nrcpt = m->nrcpt;
    x->rcpts = calloc(m->nrcpt + 1, sizeof(char *));
    for (uint32_t i = 0; i < m->nrcpt; i++)
        x->rcpts[i] = strdup(m->rcpts[i]);
    return 0;
}

static inline void tu_list_free(struct tu_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct tu_msg *x = &l->v[i];
        free(x->client);
        free(x->helo);
        free(x->sender);
        free(x->params);
        for (uint32_t j = 0; j < x->nrcpt; j++)
            free(x->rcpts[j]);
        free(x->rcpts);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static inline const struct tu_msg *tu_find(const struct tu_list *l, uint64_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].id == id)
            return &l->v[i];
    return NULL;
}

/* Scans dir and returns the live messages. */
static inline struct tu_list tu_scan(const char *dir, struct spool_scan_report *rep)
{
    struct tu_list l = {0};
    struct spool_scan_report lrep;
    int r = spool_scan(dir, tu_collect, &l, rep ? rep : &lrep);
    cr_assert_eq(r, 0, "spool_scan: %s", strerror(-r));
    return l;
}

/* The stored body of id (malloc'd), or NULL with *rc set. */
static inline char *tu_body(const char *dir, uint64_t id, size_t *len, int *rc)
{
    int fd = memfd_create("body", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    *rc = spool_read_body(dir, id, fd);
    if (*rc < 0) {
        close(fd);
        return NULL;
    }
    off_t n = lseek(fd, 0, SEEK_END);
    char *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(pread(fd, b, (size_t)n, 0), n);
    close(fd);
    *len = (size_t)n;
    return b;
}

/* Reads a whole file (malloc'd). */
static inline unsigned char *tu_slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    off_t n = lseek(fd, 0, SEEK_END);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(pread(fd, b, (size_t)n, 0), n);
    close(fd);
    *len = (size_t)n;
    return b;
}

static inline void tu_spit(const char *path, const void *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, p, len), (ssize_t)len);
    close(fd);
}

static inline off_t tu_fsize(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
    return st.st_size;
}

#endif
