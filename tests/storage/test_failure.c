/*
 * NAME
 *	test_failure - failed syncs and writes (ACCEPTANCE D5, D6)
 * DESCRIPTION
 *	A failed group-commit sync, a failed sync at rotation, a failed sync
 *	of the ABORT records themselves, and a write that fails part way (the
 *	file size limit stands in for a full disk).  Each test has its own
 *	spool under a fresh /tmp directory.
 */
#include <signal.h>
#include <sys/resource.h>

#include "storage/writer_int.h"
#include "test_util.h"

static char *tmp, *dir;
static struct spool *sp;
static struct spool_writer *w;

static void setup(void)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 3, &w), 0);
}

static void teardown(void)
{
    if (w)
        spool_writer_destroy(w);
    if (sp)
        spool_close(sp);
    w = NULL;
    sp = NULL;
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

/* Closes and reopens the spool (recovery in repair mode). */
static struct spool_scan_report reopen(void)
{
    struct spool_scan_report rep;
    if (w)
        spool_writer_destroy(w);
    spool_close(sp);
    w = NULL;
    cr_assert_eq(spool_open(dir, NULL, NULL, &rep, &sp), 0);
    return rep;
}

TestSuite(failure, .init = setup, .fini = teardown);

static struct tu_done seen[8];
static void record_done(void *arg, uint64_t id, int res)
{
    tu_done_cb(&seen[(intptr_t)arg], id, res);
}

Test(failure, failed_sync_refuses_and_is_never_live)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    memset(seen, 0, sizeof(seen));
    struct spool_txn *t = spool_txn_begin(w, &env);
    uint64_t bad = spool_txn_id(t);
    struct iovec iov = {"refused\r\n", 9};
    cr_assert_eq(spool_txn_commit(t, &iov, 1, record_done, (void *)0), 0);
    /* a message in progress in the same segment must fail too */
    struct spool_txn *inprog = spool_txn_begin(w, &env);
    cr_assert_eq(spool_txn_append(inprog, &iov, 1), 0);

    int fd = spool_writer_sync_fd(w);
    cr_assert_geq(fd, 0);
    cr_assert_eq(spool_writer_sync_fd(w), -1, "one sync at a time");
    /* committed while the sync is in flight: the next batch */
    t = spool_txn_begin(w, &env);
    uint64_t later = spool_txn_id(t);
    cr_assert_eq(spool_txn_commit(t, &iov, 1, record_done, (void *)1), 0);
    fdatasync(fd); /* the data is even on disk: the refusal must still stick */
    spool_writer_sync_done(w, -EIO);
    cr_assert_eq(seen[0].calls, 1);
    cr_assert_eq(seen[0].res, -EIO);
    cr_assert_eq(seen[0].id, bad);
    cr_assert_eq(seen[1].calls, 1, "pending commits in the poisoned segment are refused");
    cr_assert_eq(seen[1].res, -EIO);
    cr_assert_eq(seen[1].id, later);
    cr_assert_not(spool_writer_busy(w));
    cr_assert_eq(spool_txn_append(inprog, &iov, 1), -EIO);
    cr_assert_eq(spool_txn_commit(inprog, &iov, 1, tu_done_cb, &d), -EIO);

    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_eq(st.sync_errors, 1);
    cr_assert_eq(st.segments, 2, "a fresh segment holds the ABORT records");

    /* later messages go to the fresh segment and are fine */
    uint64_t good = tu_put(w, &env, "fine\r\n", 6, &d);
    tu_sync(w);
    cr_assert_eq(d.res, 0);

    reopen();
    struct tu_list l = tu_scan(dir, NULL);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, good);
    tu_list_free(&l);
    cr_assert_eq(spool_read_body(dir, bad, 1), -ENOENT);
}

Test(failure, failed_append_is_cut_back)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t first = tu_put(w, &env, "first\r\n", 7, &d);
    tu_sync(w);
    struct stat st;
    off_t before = (off_t)w->cur->size; /* the file goes on: pre-zeroed space */

    /* the file size limit makes the write fail part way: EFBIG */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl0, rl;
    getrlimit(RLIMIT_FSIZE, &rl0);
    rl = rl0;
    rl.rlim_cur = (rlim_t)before + 100;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    static char big[10000];
    memset(big, 'z', sizeof(big));
    struct spool_txn *t = spool_txn_begin(w, &env);
    struct iovec iov = {big, sizeof(big)};
    cr_assert_eq(spool_txn_append(t, &iov, 1), -ENOSPC);
    cr_assert_eq(fstat(w->cur->fd, &st), 0);
    cr_assert_eq(st.st_size, before, "cut back to the record boundary");
    spool_txn_abort(t);
    t = spool_txn_begin(w, &env);
    cr_assert_eq(spool_txn_commit(t, &iov, 1, tu_done_cb, &d), -ENOSPC);
    cr_assert_not(spool_writer_busy(w));
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl0), 0);

    /* space again: business as usual, in the same segment */
    uint64_t second = tu_put(w, &env, big, sizeof(big), &d);
    tu_sync(w);
    cr_assert_eq(d.res, 0);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 2);
    cr_assert_eq(rep.torn, 0);
    cr_assert_eq(spool_read_body(dir, first, open("/dev/null", O_WRONLY)), 0);
    cr_assert_eq(spool_read_body(dir, second, open("/dev/null", O_WRONLY)), 0);
}

static int fail_left;
static int flaky_sync(int fd)
{
    if (fail_left > 0) {
        fail_left--;
        return -EIO;
    }
    return fdatasync(fd) < 0 ? -errno : 0;
}

Test(failure, failed_rotation_sync_refuses_what_it_covered)
{
    spool_set_segment_size(sp, 2048);
    static char body[1000];
    memset(body, 'r', sizeof(body));
    struct spool_env env = tu_env(1);
    struct tu_done da = {0}, dc = {0};
    uint64_t a = tu_put(w, &env, body, 300, &da); /* pending in segment 1 */
    struct spool_txn *b = spool_txn_begin(w, &env);
    struct iovec iov = {body, 300};
    cr_assert_eq(spool_txn_append(b, &iov, 1), 0); /* in progress in segment 1 */
    w->datasync = flaky_sync;
    fail_left = 1;
    uint64_t c = tu_put(w, &env, body, 1000, &dc); /* rotates: the old segment's sync fails */
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_eq(st.segments, 2);
    cr_assert_eq(st.sync_errors, 1);
    cr_assert_eq(da.calls, 0, "done runs from sync_done only");
    tu_sync(w);
    cr_assert(da.calls == 1 && da.res == -EIO);
    cr_assert(dc.calls == 1 && dc.res == 0);
    cr_assert_eq(spool_txn_append(b, &iov, 1), -EIO);
    spool_txn_abort(b);

    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 1);
    cr_assert_eq(rep.incomplete, 0);
    struct tu_list l = tu_scan(dir, NULL);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, c);
    tu_list_free(&l);
    cr_assert_eq(spool_read_body(dir, a, 1), -ENOENT);
}

Test(failure, abort_records_retry_in_a_fresh_segment)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t a = tu_put(w, &env, "doomed\r\n", 8, &d);
    int fd = spool_writer_sync_fd(w);
    cr_assert_geq(fd, 0);
    w->datasync = flaky_sync;
    fail_left = 1; /* the ABORT's own sync fails once as well */
    spool_writer_sync_done(w, -EIO);
    cr_assert(d.calls == 1 && d.res == -EIO);
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_eq(st.segments, 3);
    cr_assert_eq(st.sync_errors, 2);
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 0);
    cr_assert_eq(rep.incomplete, 0);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    cr_assert_eq(spool_read_body(dir, a, 1), -ENOENT);
}
