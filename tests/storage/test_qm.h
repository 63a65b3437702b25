/*
 * NAME
 *	test_qm - helpers for the queue manager's side of the spool tests
 * DESCRIPTION
 *	A collector that keeps each live message's folded delivery state
 *	(and optionally a spool_msg made inside the callback), segment file
 *	checks, open descriptor counts, and a spool_msg's whole content.
 */
#ifndef SLUICE_TESTS_STORAGE_TEST_QM_H
#define SLUICE_TESTS_STORAGE_TEST_QM_H

#include <dirent.h>

#include "test_util.h"

struct tq_msg {
    uint64_t id;
    uint64_t size;
    uint32_t flags, nrcpt, attempts, qflags;
    char **rcpts;
    uint8_t *rstate;
    int64_t next_ms;
    char *last_error;
    struct spool_msg *msg;
};

struct tq_list {
    struct tq_msg *v;
    size_t n;
    bool want_msg;
    struct spool *sp; /* for spool_msg_from_info, may be NULL */
};

static inline int tq_collect(void *arg, const struct spool_msginfo *m)
{
    struct tq_list *l = arg;
    l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    cr_assert_not_null(l->v);
    struct tq_msg *x = &l->v[l->n++];
    memset(x, 0, sizeof(*x));
    x->id = m->id;
    x->size = m->size;
    x->flags = m->flags;
    x->nrcpt = m->nrcpt;
    x->attempts = m->attempts;
    x->qflags = m->qflags;
    x->next_ms = m->next_ms;
    x->last_error = strdup(m->last_error ? m->last_error : "(null)");
    x->rcpts = calloc(m->nrcpt + 1, sizeof(char *));
    x->rstate = calloc(m->nrcpt + 1, 1);
    for (uint32_t i = 0; i < m->nrcpt; i++) {
        x->rcpts[i] = strdup(m->rcpts[i]);
        x->rstate[i] = m->rstate ? m->rstate[i] : 0xff;
    }
    if (l->want_msg) {
        x->msg = spool_msg_from_info(l->sp, m);
        cr_assert_not_null(x->msg);
    }
    return 0;
}

static inline void tq_free(struct tq_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct tq_msg *x = &l->v[i];
        for (uint32_t j = 0; j < x->nrcpt; j++)
            free(x->rcpts[j]);
        free(x->rcpts);
        free(x->rstate);
        free(x->last_error);
        spool_msg_free(x->msg);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static inline const struct tq_msg *tq_find(const struct tq_list *l, uint64_t id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].id == id)
            return &l->v[i];
    return NULL;
}

static inline bool tq_exists(const char *dir, unsigned worker, uint64_t seq)
{
    char name[64];
    snprintf(name, sizeof(name), "%s/seg-%02x-%08x.sg", dir, worker, (unsigned)seq);
    return access(name, F_OK) == 0;
}

static inline uint64_t tq_nsegs(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, "seg-", 4) == 0;
    closedir(d);
    return n;
}

static inline int tq_nfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* The message as sent, through its pieces (mem or pread): malloc'd. */
static inline char *tq_pieces(const struct spool_msg *m, size_t *len)
{
    const struct spool_piece *v;
    size_t n = spool_msg_pieces(m, &v);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].len;
    char *b = malloc(total + 1);
    cr_assert_not_null(b);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].fd < 0)
            memcpy(b + at, v[i].mem, v[i].len);
        else
            cr_assert_eq(pread(v[i].fd, b + at, v[i].len, (off_t)v[i].off), (ssize_t)v[i].len);
        at += v[i].len;
    }
    cr_assert_eq(total, spool_msg_size(m));
    *len = total;
    return b;
}

/* The message as sent through spool_msg_read, in odd-sized chunks. */
static inline char *tq_read(const struct spool_msg *m, size_t *len)
{
    size_t total = (size_t)spool_msg_size(m);
    char *b = malloc(total + 1);
    cr_assert_not_null(b);
    for (size_t at = 0; at < total;) {
        size_t k = total - at < 7 ? total - at : 7;
        int r = spool_msg_read(m, at, b + at, k);
        cr_assert_eq(r, 0, "spool_msg_read: %s", strerror(-r));
        at += k;
    }
    cr_assert_eq(spool_msg_read(m, total, b, 1), -ERANGE);
    *len = total;
    return b;
}

#endif
