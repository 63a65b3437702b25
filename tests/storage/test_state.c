/*
 * NAME
 *	test_state - STATE records: written, synced, folded by recovery
 * DESCRIPTION
 *	Messages come in on worker 1; the queue manager's writer is worker
 *	9, or worker 0 (read before worker 1) where the reading order
 *	matters.  Every test reopens the spool (or scans it read-only) and
 *	checks the folded spool_msginfo.
 */
#include "storage/writer_int.h"
#include "test_qm.h"

static char *tmp, *dir;
static struct spool *sp;
static struct spool_writer *w, *q;

static void setup(void)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 1, &w), 0);
    cr_assert_eq(spool_writer_create(sp, 9, &q), 0);
}

static void close_all(void)
{
    if (w)
        spool_writer_destroy(w);
    if (q)
        spool_writer_destroy(q);
    if (sp)
        spool_close(sp);
    w = q = NULL;
    sp = NULL;
}

static void teardown(void)
{
    close_all();
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

TestSuite(state, .init = setup, .fini = teardown);

/* Reopens the spool (recovery) and collects the live messages. */
static struct tq_list reopen(struct spool_scan_report *rep)
{
    close_all();
    struct tq_list l = {0};
    cr_assert_eq(spool_open(dir, tq_collect, &l, rep, &sp), 0);
    return l;
}

static void st(struct spool_writer *x, uint64_t id, enum spool_state_kind k, uint32_t rcpt,
               int64_t when, uint32_t attempts, const char *reason)
{
    struct spool_state s = {k, rcpt, when, attempts, reason, 0, NULL};
    int r = spool_writer_state(x, id, &s);
    cr_assert_eq(r, 0, "spool_writer_state: %s", strerror(-r));
}

Test(state, round_trip_through_recovery)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t a = tu_put(w, &env, "a\r\n", 3, &d);
    uint64_t b = tu_put(w, &env, "b\r\n", 3, &d);
    uint64_t c = tu_put(w, &env, "c\r\n", 3, &d);
    tu_sync(w);
    st(q, a, SPOOL_ST_DELIVERED, 0, 100, 0, "250 ok");
    st(q, a, SPOOL_ST_FAILED, 1, 101, 0, "550 no such user");
    st(q, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 5000, 1, "451 first");
    st(q, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 9000, 2, "421 later");
    st(q, a, SPOOL_ST_HOLD, SPOOL_RCPT_ALL, 102, 0, NULL);
    st(q, a, SPOOL_ST_WARNED, SPOOL_RCPT_ALL, 103, 0, "");
    st(q, b, SPOOL_ST_HOLD, SPOOL_RCPT_ALL, 100, 0, NULL);
    st(q, b, SPOOL_ST_RELEASE, SPOOL_RCPT_ALL, 101, 0, NULL);
    st(q, b, SPOOL_ST_DELIVERED, 2, 102, 0, "250 ok");
    /* RCPTS: the old states go; only what follows counts */
    st(q, c, SPOOL_ST_DELIVERED, 0, 100, 0, "250 ok");
    const char *nr[] = {"x@example.org", "y@example.org"};
    struct spool_state rc = {SPOOL_ST_RCPTS, SPOOL_RCPT_ALL, 101, 0, NULL, 2, nr};
    cr_assert_eq(spool_writer_state(q, c, &rc), 0);
    st(q, c, SPOOL_ST_FAILED, 1, 102, 0, "550 gone");
    cr_assert_eq(tu_sync(q), 0, "a batch of STATE records only is synced");

    struct spool_scan_report rep;
    struct tq_list l = reopen(&rep);
    cr_assert_eq(l.n, 3);
    const struct tq_msg *ma = tq_find(&l, a), *mb = tq_find(&l, b), *mc = tq_find(&l, c);
    cr_assert(ma && mb && mc);
    cr_assert_eq(ma->nrcpt, 3);
    cr_assert_eq(ma->rstate[0], SPOOL_R_DELIVERED);
    cr_assert_eq(ma->rstate[1], SPOOL_R_FAILED);
    cr_assert_eq(ma->rstate[2], SPOOL_R_PENDING);
    cr_assert_eq(ma->attempts, 2);
    cr_assert_eq(ma->next_ms, 9000);
    cr_assert_str_eq(ma->last_error, "421 later");
    cr_assert_eq(ma->qflags, SPOOL_Q_HELD | SPOOL_Q_WARNED);
    cr_assert_eq(mb->qflags, 0, "released");
    cr_assert_eq(mb->rstate[2], SPOOL_R_DELIVERED);
    cr_assert_eq(mb->attempts, 0);
    cr_assert_str_eq(mb->last_error, "");
    cr_assert_eq(mc->nrcpt, 2);
    cr_assert_str_eq(mc->rcpts[0], "x@example.org");
    cr_assert_str_eq(mc->rcpts[1], "y@example.org");
    cr_assert_eq(mc->rstate[0], SPOOL_R_PENDING, "reset by RCPTS");
    cr_assert_eq(mc->rstate[1], SPOOL_R_FAILED);
    cr_assert_str_eq(mc->last_error, "550 gone");
    tq_free(&l);

    /* the read-only scan folds the same */
    cr_assert_eq(spool_scan(dir, tq_collect, &l, NULL), 0);
    cr_assert_eq(l.n, 3);
    cr_assert_eq(tq_find(&l, a)->rstate[1], SPOOL_R_FAILED);
    cr_assert_eq(tq_find(&l, c)->nrcpt, 2);
    tq_free(&l);
}

Test(state, state_only_batch_is_synced)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t a = tu_put(w, &env, "a\r\n", 3, &d);
    tu_sync(w);
    cr_assert_not(spool_writer_busy(q));
    cr_assert_eq(spool_writer_sync_fd(q), -1, "nothing to sync");
    st(q, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 5000, 1, "451 x");
    cr_assert(spool_writer_busy(q));
    cr_assert_eq(spool_writer_pending(q), 1);
    int fd = spool_writer_sync_fd(q);
    cr_assert_geq(fd, 0, "a STATE record alone needs a sync");
    cr_assert_eq(spool_writer_sync_fd(q), -1, "one in flight");
    st(q, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 6000, 2, "451 y"); /* next batch */
    cr_assert_eq(fdatasync(fd), 0);
    spool_writer_sync_done(q, 0);
    cr_assert(spool_writer_busy(q));
    cr_assert_eq(tu_sync(q), 0);
    cr_assert_not(spool_writer_busy(q));
    cr_assert_eq(spool_writer_remove(q, a), 0);
    cr_assert_geq(spool_writer_sync_fd(q), 0, "a REMOVE alone needs a sync");
    spool_writer_sync_done(q, 0);
    cr_assert_not(spool_writer_busy(q));
    struct spool_writer_stats s;
    spool_writer_stats(q, &s);
    cr_assert_eq(s.syncs, 3);
    cr_assert_eq(s.commits, 0);
    struct tq_list l = reopen(NULL);
    cr_assert_eq(l.n, 0);
    tq_free(&l);
}

Test(state, order_follows_seq_not_reading_order)
{
    struct spool_writer *q0;
    cr_assert_eq(spool_writer_create(sp, 0, &q0), 0);
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t a = tu_put(w, &env, "a\r\n", 3, &d);
    tu_sync(w);
    /* worker 9 first in time, worker 0 later: worker 0's segment is read first */
    st(q, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 5000, 1, "old");
    st(q, a, SPOOL_ST_HOLD, SPOOL_RCPT_ALL, 1, 0, NULL);
    st(q0, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 7000, 2, "new");
    st(q0, a, SPOOL_ST_RELEASE, SPOOL_RCPT_ALL, 2, 0, NULL);
    tu_sync(q);
    tu_sync(q0);
    spool_writer_destroy(q0);
    struct tq_list l = reopen(NULL);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].attempts, 2);
    cr_assert_eq(l.v[0].next_ms, 7000);
    cr_assert_str_eq(l.v[0].last_error, "new");
    cr_assert_eq(l.v[0].qflags, 0);
    tq_free(&l);
    /* and the order continues after a restart */
    cr_assert_eq(spool_writer_create(sp, 9, &q), 0);
    st(q, a, SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 8000, 3, "after restart");
    tu_sync(q);
    l = reopen(NULL);
    cr_assert_eq(l.v[0].attempts, 3);
    cr_assert_str_eq(l.v[0].last_error, "after restart");
    tq_free(&l);
}

Test(state, unknown_and_removed_ids_are_ignored)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t a = tu_put(w, &env, "a\r\n", 3, &d);
    uint64_t b = tu_put(w, &env, "b\r\n", 3, &d);
    tu_sync(w);
    st(q, 0x1234, SPOOL_ST_DELIVERED, 0, 1, 0, "nobody");
    st(q, a, SPOOL_ST_DELIVERED, 0, 1, 0, "250");
    cr_assert_eq(spool_writer_remove(q, a), 0);
    st(q, a, SPOOL_ST_DELIVERED, 1, 2, 0, "after the remove");
    tu_sync(q);
    struct spool_scan_report rep;
    struct tq_list l = reopen(&rep);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, b);
    cr_assert_eq(l.v[0].rstate[0], SPOOL_R_PENDING);
    cr_assert_eq(rep.live, 1);
    tq_free(&l);
}

Test(state, bad_states_are_refused)
{
    struct spool_state s = {SPOOL_ST_DELIVERED, 0, 0, 0, "two\r\nlines", 0, NULL};
    cr_assert_eq(spool_writer_state(q, 1, &s), -EINVAL);
    s.reason = NULL;
    s.kind = (enum spool_state_kind)99;
    cr_assert_eq(spool_writer_state(q, 1, &s), -EINVAL);
    cr_assert_not(spool_writer_busy(q));
}

Test(state, segments_are_version_3)
{
    char *p = tu_join(dir, "seg-09-00000001.sg");
    size_t n;
    unsigned char *h = tu_slurp(p, &n);
    cr_assert_geq(n, 40);
    cr_assert_eq(h[8], 3);
    cr_assert_eq(h[9] | h[10] | h[11], 0);
    free(h);
    free(p);
}
