/*
 * NAME
 *	test_reclaim - segments going away: reclaim, guards, compaction
 * DESCRIPTION
 *	Messages arrive on worker 1, the queue manager removes them on
 *	worker 9, compaction runs on worker 5.  Small segment sizes make
 *	the rotations happen where each test wants them.  Crashes are child
 *	processes that _exit() between a sync and its sync_done.
 */
#include <sys/wait.h>

#include "storage/writer_int.h"
#include "test_qm.h"

static char *tmp, *dir;
static struct spool *sp;
static struct spool_writer *w, *q, *c;

static void setup(void)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
}

static void close_all(void)
{
    struct spool_writer **v[] = {&w, &q, &c};
    for (int i = 0; i < 3; i++)
        if (*v[i])
            spool_writer_destroy(*v[i]);
    w = q = c = NULL;
    if (sp)
        spool_close(sp);
    sp = NULL;
}

static void teardown(void)
{
    close_all();
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

TestSuite(reclaim, .init = setup, .fini = teardown);

static void open_all(uint64_t segsize)
{
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    spool_set_segment_size(sp, segsize);
    cr_assert_eq(spool_writer_create(sp, 1, &w), 0);
    cr_assert_eq(spool_writer_create(sp, 9, &q), 0);
}

static uint64_t put(size_t len, char fill)
{
    static char body[20000];
    memset(body, fill, len);
    memcpy(body, "Subject: x\r\n\r\n", 14);
    struct spool_env env = tu_env(1);
    static struct tu_done d; /* done runs at the sync, after put returned */
    return tu_put(w, &env, body, len, &d);
}

static struct tq_list reopen(struct spool_scan_report *rep)
{
    close_all();
    struct tq_list l = {0};
    cr_assert_eq(spool_open(dir, tq_collect, &l, rep, &sp), 0);
    return l;
}

static void remove_sync(uint64_t id)
{
    cr_assert_eq(spool_writer_remove(q, id), 0);
    cr_assert_eq(tu_sync(q), 0);
}

Test(reclaim, segment_goes_when_removed_and_remove_guards_stay)
{
    open_all(4096);
    uint64_t a = put(300, 'a'), b = put(300, 'b');
    uint64_t cc = put(5000, 'c'); /* one append: rotates first; 1-1 holds a and b */
    tu_sync(w);
    cr_assert(tq_exists(dir, 1, 2));
    remove_sync(a);
    cr_assert(tq_exists(dir, 1, 1), "b still lives there");
    /* the queue manager's segment rotates: 9-1 holds only a's REMOVE */
    static char reason[5000];
    memset(reason, 'r', sizeof(reason) - 1);
    struct spool_state s = {SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 1, 1, reason, 0, NULL};
    cr_assert_eq(spool_writer_state(q, cc, &s), 0);
    tu_sync(q);
    cr_assert_eq(q->cur->seq, 2);
    cr_assert(tq_exists(dir, 9, 1), "a's REMOVE is needed while 1-1 exists");
    struct spool_usage u;
    spool_usage(sp, &u);
    cr_assert_eq(u.live_messages, 2);
    cr_assert_eq(u.unlinked, 0);
    cr_assert_eq(u.segments, 4);

    remove_sync(b);
    cr_assert_not(tq_exists(dir, 1, 1), "nothing live in 1-1");
    cr_assert_not(tq_exists(dir, 9, 1), "its REMOVE guarded 1-1 only");
    cr_assert(tq_exists(dir, 1, 2) && tq_exists(dir, 9, 2));
    spool_usage(sp, &u);
    cr_assert_eq(u.unlinked, 2);
    cr_assert_eq(u.live_messages, 1);
    cr_assert_eq(u.segments, tq_nsegs(dir));
    cr_assert_eq(u.segments, 3, "1-2, 9-2 (c's STATE), 9-3 (the REMOVE overflowed 9-2)");
    cr_assert_gt(u.live_bytes, 5000 + 5000, "c's records and its big STATE record");
    cr_assert_lt(u.live_bytes, u.bytes);

    struct spool_scan_report rep;
    struct tq_list l = reopen(&rep);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, cc);
    cr_assert_eq(l.v[0].attempts, 1);
    cr_assert_eq(rep.segments, 2, "9-3 held only a REMOVE nobody needs: gone at close");
    tq_free(&l);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
}

Test(reclaim, a_remove_stays_while_a_copy_of_the_body_remains)
{
    open_all(4096);
    uint64_t a = put(300, 'a');
    put(300, 'b');
    put(5000, 'c');
    tu_sync(w);
    /* a message whose body sits in a sealed segment with a live one: the
     * REMOVE must outlive any rotation of the queue manager's segment */
    remove_sync(a);
    for (int i = 0; i < 3; i++) {
        static char reason[5000];
        memset(reason, 'r', sizeof(reason) - 1);
        struct spool_state s = {SPOOL_ST_WARNED, SPOOL_RCPT_ALL, 1, 0, reason, 0, NULL};
        cr_assert_eq(spool_writer_state(q, 0x99, &s), 0);
        tu_sync(q);
    }
    cr_assert_geq(q->cur->seq, 3);
    cr_assert(tq_exists(dir, 9, 1));
    cr_assert_not(tq_exists(dir, 9, 2), "only an unknown id's STATE: nothing needed");
    struct tq_list l = reopen(NULL);
    cr_assert_eq(l.n, 2);
    cr_assert_null(tq_find(&l, a));
    cr_assert(tq_exists(dir, 9, 1), "still needed after recovery");
    tq_free(&l);
}

Test(reclaim, recovery_unlinks_what_holds_nothing)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        open_all(4096);
        uint64_t a = put(300, 'a');
        put(5000, 'c');
        tu_sync(w);
        spool_writer_remove(q, a);
        int fd = spool_writer_sync_fd(q);
        _exit(fd >= 0 && fdatasync(fd) == 0 ? 0 : 1); /* crash before sync_done */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert(tq_exists(dir, 1, 1) && tq_exists(dir, 9, 1));
    struct spool_scan_report rep;
    struct tq_list l = reopen(&rep);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(rep.live, 1);
    cr_assert_not(tq_exists(dir, 1, 1), "a removed: 1-1 goes at start");
    cr_assert_not(tq_exists(dir, 9, 1), "and then the REMOVE that guarded it");
    cr_assert(tq_exists(dir, 1, 2));
    struct spool_usage u;
    spool_usage(sp, &u);
    cr_assert_eq(u.unlinked, 2);
    cr_assert_eq(u.live_messages, 1);
    tq_free(&l);
    l = reopen(&rep);
    cr_assert_eq(l.n, 1);
    tq_free(&l);
}

static uint64_t ids[10], big;
static char *bodies[10];
static size_t blens[10];

/* 1-1 holds ten messages of which 3 and 7 stay live (3 with a STATE
 * record in 1-1 itself, 7 with one in 9-1), 1-2 a big one. */
static void build_sparse(void)
{
    open_all(8192);
    for (int i = 0; i < 10; i++)
        ids[i] = put(500, (char)('0' + i));
    struct spool_state s = {SPOOL_ST_DEFERRED, SPOOL_RCPT_ALL, 4444, 4, "451 busy", 0, NULL};
    cr_assert_eq(spool_writer_state(w, ids[3], &s), 0);
    big = put(9000, 'B');
    tu_sync(w);
    cr_assert_eq(w->cur->seq, 2);
    struct spool_state d = {SPOOL_ST_DELIVERED, 0, 5, 0, "250 ok", 0, NULL};
    cr_assert_eq(spool_writer_state(q, ids[7], &d), 0);
    for (int i = 0; i < 10; i++) {
        int rc;
        bodies[i] = tu_body(dir, ids[i], &blens[i], &rc);
        cr_assert_eq(rc, 0);
        if (i != 3 && i != 7)
            cr_assert_eq(spool_writer_remove(q, ids[i]), 0);
    }
    tu_sync(q);
    cr_assert(tq_exists(dir, 1, 1));
}

static void check_sparse_result(const struct tq_list *l)
{
    cr_assert_eq(l->n, 3);
    const struct tq_msg *m3 = tq_find(l, ids[3]), *m7 = tq_find(l, ids[7]);
    cr_assert(m3 && m7 && tq_find(l, big));
    cr_assert_eq(m3->attempts, 4, "the STATE record came along");
    cr_assert_str_eq(m3->last_error, "451 busy");
    cr_assert_eq(m7->rstate[0], SPOOL_R_DELIVERED);
    for (int i = 3; i <= 7; i += 4) {
        size_t n;
        int rc;
        char *b = tu_body(dir, ids[i], &n, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_eq(n, blens[i]);
        cr_assert_eq(memcmp(b, bodies[i], n), 0);
        free(b);
    }
    for (int i = 0; i < 10; i++)
        free(bodies[i]);
}

static struct spool_msg *kept;
static void keep_hook(void *arg, struct spool_msg *m)
{
    (void)arg;
    if (spool_msg_info(m)->id == ids[3])
        kept = m;
    else
        spool_msg_free(m);
}

Test(reclaim, compaction_moves_messages_and_the_sparse_segment_goes)
{
    build_sparse();
    /* a spool_msg of message 3 made before (as the queue manager holds it) */
    close_all();
    struct tq_list l = {.want_msg = true};
    cr_assert_eq(spool_open(dir, tq_collect, &l, NULL, &sp), 0);
    spool_set_segment_size(sp, 8192);
    spool_set_durable(sp, keep_hook, NULL);
    cr_assert_eq(spool_writer_create(sp, 5, &c), 0);
    cr_assert(tq_exists(dir, 1, 1));
    struct spool_usage u0, u1;
    spool_usage(sp, &u0);
    int64_t n = spool_writer_compact(c, 1 << 20);
    cr_assert_gt(n, 1000, "copied %lld", (long long)n);
    cr_assert(tq_exists(dir, 1, 1), "not before the copies are durable");
    cr_assert(spool_writer_busy(c));
    cr_assert_eq(tu_sync(c), 0);
    cr_assert_not(tq_exists(dir, 1, 1), "the sparse segment is gone");
    spool_usage(sp, &u1);
    cr_assert_eq(u1.live_messages, 3);
    cr_assert_eq(u1.unlinked, u0.unlinked + 1);
    cr_assert_eq(u1.live_bytes, u0.live_bytes, "the same records, elsewhere");
    /* 9-1 is sparse too now (only 7's STATE record and REMOVEs nobody needs) */
    int rounds = 0;
    while (spool_writer_compact(c, 1 << 20) > 0 && rounds < 10) {
        tu_sync(c);
        rounds++;
    }
    cr_assert_eq(rounds, 1);
    cr_assert_not(tq_exists(dir, 9, 1));
    cr_assert_eq(spool_writer_compact(c, 1 << 20), 0, "nothing sparse left");
    const struct tq_msg *m3 = tq_find(&l, ids[3]);
    size_t len;
    char *b = tq_read(m3->msg, &len);
    cr_assert_eq(len, blens[3], "the old file, through the shared descriptor");
    cr_assert_eq(memcmp(b, bodies[3], len), 0);
    free(b);
    tq_free(&l);

    struct spool_scan_report rep;
    l = reopen(&rep);
    cr_assert_eq(rep.live, 3);
    check_sparse_result(&l);
    tq_free(&l);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
}

Test(reclaim, a_copy_left_by_a_crash_recovers_once)
{
    build_sparse();
    close_all();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (spool_open(dir, NULL, NULL, NULL, &sp) != 0 || spool_writer_create(sp, 5, &c) != 0 ||
            spool_writer_compact(c, 1 << 20) <= 0)
            _exit(1);
        int fd = spool_writer_sync_fd(c);
        _exit(fd >= 0 && fdatasync(fd) == 0 ? 0 : 2); /* the copies are durable: crash */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %d", WEXITSTATUS(status));
    cr_assert(tq_exists(dir, 1, 1) && tq_exists(dir, 5, 1), "both copies on disk");
    struct spool_scan_report rep;
    struct tq_list l = {0};
    cr_assert_eq(spool_scan(dir, tq_collect, &l, &rep), 0);
    cr_assert_eq(rep.live, 3, "each message once");
    cr_assert_eq(l.n, 3);
    tq_free(&l);
    l = reopen(&rep);
    cr_assert_eq(rep.live, 3);
    cr_assert_not(tq_exists(dir, 1, 1), "the copy wins: the old segment goes at start");
    check_sparse_result(&l);
    tq_free(&l);
    l = reopen(&rep);
    cr_assert_eq(l.n, 3);
    tq_free(&l);
}

Test(reclaim, a_remove_whose_sync_failed_is_written_again)
{
    open_all(1 << 20);
    uint64_t a = put(300, 'a'), b = put(300, 'b');
    tu_sync(w);
    cr_assert_eq(spool_writer_remove(q, a), 0);
    cr_assert_geq(spool_writer_sync_fd(q), 0);
    spool_writer_sync_done(q, -EIO);
    cr_assert(spool_writer_busy(q), "the REMOVE went to a fresh segment and waits for a sync");
    cr_assert_eq(q->cur->seq, 2);
    struct spool_usage u;
    spool_usage(sp, &u);
    cr_assert_eq(u.live_messages, 2, "not removed before it is durable");
    cr_assert_eq(tu_sync(q), 0);
    cr_assert_not(spool_writer_busy(q));
    spool_usage(sp, &u);
    cr_assert_eq(u.live_messages, 1);
    struct tq_list l = reopen(NULL);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, b);
    tq_free(&l);
}

/* Churn: messages arrive, three in four are removed in arrival order's
 * shuffle, and compaction runs as the queue manager runs it while
 * spool_compact_behind() says the spool is over its bound.  Afterwards the
 * spool holds at most twice its live octets plus the slack (four
 * segments), and recovery after it is quiet and finds every live message. */
Test(reclaim, space_under_churn_stays_within_twice_the_live_data)
{
    enum { N = 1200, SEG = 16384 };
    static uint64_t v[N];
    open_all(SEG);
    cr_assert_eq(spool_writer_create(sp, 5, &c), 0);
    srand(7);
    size_t live = 0;
    for (int i = 0; i < N; i++) {
        v[i] = put(600 + (size_t)(rand() % 800), (char)('a' + i % 26));
        tu_sync(w);
        /* remove an earlier message three times in four */
        if (i >= 8 && rand() % 4 != 0) {
            int k;
            do
                k = rand() % i;
            while (v[k] == 0);
            remove_sync(v[k]);
            v[k] = 0;
        }
    }
    for (int i = 0; i < N; i++)
        live += v[i] != 0;
    struct spool_usage u0, u1;
    spool_usage(sp, &u0);
    cr_assert(spool_compact_behind(sp), "%llu octets for %llu live",
              (unsigned long long)u0.bytes, (unsigned long long)u0.live_bytes);
    int rounds = 0;
    while (spool_compact_behind(sp) && rounds < 10000) {
        int64_t n = spool_writer_compact(c, 32u << 20);
        cr_assert_geq(n, 0);
        tu_sync(c);
        if (n == 0)
            break;
        rounds++;
    }
    spool_usage(sp, &u1);
    cr_assert_leq(u1.bytes, 2 * u1.live_bytes + 4 * u1.segment_size,
                  "%llu octets for %llu live after %d rounds (before: %llu)",
                  (unsigned long long)u1.bytes, (unsigned long long)u1.live_bytes, rounds,
                  (unsigned long long)u0.bytes);
    cr_assert_eq(u1.live_messages, live);
    struct spool_scan_report rep;
    struct tq_list l = reopen(&rep);
    cr_assert_eq(rep.live, live);
    cr_assert_eq(rep.mismatched, 0);
    cr_assert_eq(rep.torn, 0);
    tq_free(&l);
}
