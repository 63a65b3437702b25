/*
 * NAME
 *	test_spoolmsg - real spool messages for the delivery tests
 * DESCRIPTION
 *	tsm_open() makes a spool in a fresh temporary directory with a
 *	durable hook; tsm_message() receives a message through the public
 *	spool API (txn, appends split where asked, header edits, commit, a
 *	synchronous fdatasync) and returns the spool_msg the hook was handed,
 *	which the caller frees with spool_msg_free() before tsm_close().
 *	Header-only: each test file is its own executable.
 */
#ifndef SLUICE_TESTS_CORE_TEST_SPOOLMSG_H
#define SLUICE_TESTS_CORE_TEST_SPOOLMSG_H

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/spool.h"

struct tsm {
    char dir[64];
    struct spool *sp;
    struct spool_writer *w;
    struct spool_msg *got; /* from the durable hook */
    int calls;
};

static inline int tsm_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tsm_rmrf(const char *path)
{
    nftw(path, tsm_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void tsm_durable(void *arg, struct spool_msg *m)
{
    struct tsm *s = arg;
    s->got = m;
    s->calls++;
}

static inline void tsm_done(void *arg, uint64_t id, int res)
{
    (void)id;
    cr_assert_eq(res, 0, "commit: %s", strerror(-res));
    (*(int *)arg)++;
}

static inline void tsm_open(struct tsm *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/sluice-spoolmsg-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
    int r = spool_open(s->dir, NULL, NULL, NULL, &s->sp);
    cr_assert_eq(r, 0, "spool_open: %s", strerror(-r));
    spool_set_durable(s->sp, tsm_durable, s);
    r = spool_writer_create(s->sp, 0, &s->w);
    cr_assert_eq(r, 0, "spool_writer_create: %s", strerror(-r));
}

static inline void tsm_close(struct tsm *s)
{
    spool_writer_destroy(s->w);
    spool_close(s->sp);
    tsm_rmrf(s->dir);
}

/* body[0..len) appended as DATA records split at each of cuts[] (offsets,
 * ascending), the rest with the commit. */
static inline struct spool_msg *tsm_message(struct tsm *s, const char *sender, const char *rcpt,
                                            const char *body, size_t len, const size_t *cuts,
                                            size_t ncuts, const struct spool_edit *edits,
                                            size_t nedits)
{
    const char *rcpts[1] = {rcpt};
    struct spool_env env = {.arrival_ms = 1700000000123,
                            .client = "127.0.0.1",
                            .helo = "client.test",
                            .sender = sender,
                            .params = "",
                            .nrcpt = 1,
                            .rcpts = rcpts};
    struct spool_txn *t = spool_txn_begin(s->w, &env);
    cr_assert_not_null(t);
    size_t off = 0;
    for (size_t i = 0; i < ncuts; i++) {
        cr_assert_leq(cuts[i], len);
        cr_assert_geq(cuts[i], off);
        struct iovec iov = {.iov_base = (void *)(body + off), .iov_len = cuts[i] - off};
        int r = spool_txn_append(t, &iov, 1);
        cr_assert_eq(r, 0, "append: %s", strerror(-r));
        off = cuts[i];
    }
    if (nedits > 0)
        cr_assert_eq(spool_txn_set_edits(t, edits, nedits), 0);
    struct iovec last = {.iov_base = (void *)(body + off), .iov_len = len - off};
    int done = 0;
    s->got = NULL;
    int r = spool_txn_commit(t, &last, 1, tsm_done, &done);
    cr_assert_eq(r, 0, "commit: %s", strerror(-r));
    int fd = spool_writer_sync_fd(s->w);
    cr_assert_geq(fd, 0);
    spool_writer_sync_done(s->w, fdatasync(fd) < 0 ? -errno : 0);
    cr_assert_eq(done, 1);
    cr_assert_not_null(s->got, "the durable hook handed over no spool_msg");
    return s->got;
}

#endif
