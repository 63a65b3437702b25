/*
 * NAME
 *	test_msg - spool_msg: pieces, the durable hook, shared descriptors
 * DESCRIPTION
 *	A message's pieces (and spool_msg_read) must give exactly what
 *	spool_read_body() writes, with and without header edits, for bodies
 *	spanning segments, made from the txn (durable hook), from recovery
 *	(spool_open's callback) and from a read-only scan; the hook sees each
 *	durable message once (orphans too) and none of a failed sync; a
 *	message stays readable after its segment was unlinked; 1000 held
 *	messages share a handful of descriptors.
 */
#include "storage/writer_int.h"
#include "test_qm.h"

static char *tmp, *dir;
static struct spool *sp;
static struct spool_writer *w;

#define MAXHELD 1100
static struct spool_msg *held[MAXHELD];
static size_t nheld;

static void hook(void *arg, struct spool_msg *m)
{
    (void)arg;
    cr_assert_lt(nheld, MAXHELD);
    held[nheld++] = m;
}

static void drop_held(void)
{
    for (size_t i = 0; i < nheld; i++)
        spool_msg_free(held[i]);
    nheld = 0;
}

static void setup(void)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    spool_set_durable(sp, hook, NULL);
    cr_assert_eq(spool_writer_create(sp, 2, &w), 0);
}

static struct spool_writer *qw;

static void close_all(void)
{
    if (qw)
        spool_writer_destroy(qw);
    qw = NULL;
    if (w)
        spool_writer_destroy(w);
    if (sp)
        spool_close(sp);
    w = NULL;
    sp = NULL;
}

static void teardown(void)
{
    drop_held();
    close_all();
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

TestSuite(msg, .init = setup, .fini = teardown);

static const struct spool_msg *held_msg(uint64_t id)
{
    for (size_t i = 0; i < nheld; i++)
        if (spool_msg_info(held[i])->id == id)
            return held[i];
    return NULL;
}

/* Pieces and spool_msg_read both equal spool_read_body's output. */
static void check_msg(const struct spool_msg *m, const char *what)
{
    uint64_t id = spool_msg_info(m)->id;
    size_t want_len = 0, a_len = 0, b_len = 0;
    int rc;
    char *want = tu_body(dir, id, &want_len, &rc);
    cr_assert_eq(rc, 0, "%s: read_body: %s", what, strerror(-rc));
    char *a = tq_pieces(m, &a_len), *b = tq_read(m, &b_len);
    cr_assert_eq(a_len, want_len, "%s: pieces %zu octets, body %zu", what, a_len, want_len);
    cr_assert_eq(memcmp(a, want, want_len), 0, "%s: pieces differ", what);
    cr_assert_eq(b_len, want_len);
    cr_assert_eq(memcmp(b, want, want_len), 0, "%s: spool_msg_read differs", what);
    free(want);
    free(a);
    free(b);
}

static const char hdr[] = "Received: from x by y; Sun, 1 Jan 2023 00:00:00 +0000\r\n"
                          "Subject: hello\r\nX-Old: 1\r\n\r\n";

/* Commits a message: header, then body_len octets streamed in chunks of
 * `chunk`, with edits if any; returns its id. */
static uint64_t put(size_t body_len, size_t chunk, bool edits, bool orphan)
{
    struct spool_env env = tu_env(1);
    struct spool_txn *t = spool_txn_begin(w, &env);
    cr_assert_not_null(t);
    uint64_t id = spool_txn_id(t);
    struct iovec h = {(void *)hdr, sizeof(hdr) - 1};
    cr_assert_eq(spool_txn_append(t, &h, 1), 0);
    static char body[200000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    for (size_t at = 0; at < body_len; at += chunk) {
        struct iovec v = {body + at, body_len - at < chunk ? body_len - at : chunk};
        cr_assert_eq(spool_txn_append(t, &v, 1), 0);
    }
    if (edits) {
        struct spool_edit e[] = {{SPOOL_EDIT_ADD, "X-Added", "yes"},
                                 {SPOOL_EDIT_REMOVE, "X-Old", NULL},
                                 {SPOOL_EDIT_CHANGE, "Subject", "changed"}};
        cr_assert_eq(spool_txn_set_edits(t, e, 3), 0);
    }
    static struct tu_done d;
    struct iovec last = {"\r\n", 2};
    cr_assert_eq(spool_txn_commit(t, &last, 1, tu_done_cb, &d), 0);
    if (orphan)
        spool_txn_orphan(t);
    return id;
}

Test(msg, pieces_equal_read_body)
{
    spool_set_segment_size(sp, 16384); /* the long ones span segments */
    uint64_t ids[6];
    ids[0] = put(0, 1, false, false);
    ids[1] = put(100, 30, false, false);
    ids[2] = put(100, 30, true, false);
    ids[3] = put(60000, 7000, false, false);
    ids[4] = put(60000, 7000, true, false);
    struct spool_env env = tu_env(1);
    struct tu_done d;
    ids[5] = tu_put(w, &env, "", 0, &d); /* empty, no header */
    cr_assert_eq(tu_sync(w), 0);         /* d still in scope */
    cr_assert_eq(nheld, 6);
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_gt(st.segments, 3, "the body spans segments");
    for (int i = 0; i < 6; i++) {
        const struct spool_msg *m = held_msg(ids[i]);
        cr_assert_not_null(m);
        check_msg(m, "from txn");
        const struct spool_msginfo *in = spool_msg_info(m);
        cr_assert_eq(in->nrcpt, 3);
        cr_assert_str_eq(in->rcpts[2], "carol@example.com");
        cr_assert_str_eq(in->sender, "sender@example.com");
        cr_assert_eq(in->rstate[0], SPOOL_R_PENDING);
    }
    const struct spool_piece *v;
    size_t n = spool_msg_pieces(held_msg(ids[1]), &v);
    for (size_t i = 0; i < n; i++)
        cr_assert_geq(v[i].fd, 0, "no edits: file extents only");
    n = spool_msg_pieces(held_msg(ids[2]), &v);
    cr_assert(n >= 2 && v[0].fd < 0, "edits: the header from memory");
    char *a;
    size_t alen;
    a = tq_pieces(held_msg(ids[2]), &alen);
    cr_assert(memmem(a, alen, "X-Added: yes\r\n", 14) && !memmem(a, alen, "X-Old", 5));
    free(a);

    /* from recovery and from a read-only scan */
    drop_held();
    close_all();
    struct tq_list l = {.want_msg = true};
    cr_assert_eq(spool_open(dir, tq_collect, &l, NULL, &sp), 0);
    cr_assert_eq(l.n, 6);
    for (size_t i = 0; i < l.n; i++)
        check_msg(l.v[i].msg, "from recovery");
    tq_free(&l);
    l = (struct tq_list){.want_msg = true};
    cr_assert_eq(spool_scan(dir, tq_collect, &l, NULL), 0);
    cr_assert_eq(l.n, 6);
    for (size_t i = 0; i < l.n; i++)
        check_msg(l.v[i].msg, "from a scan");
    spool_close(sp); /* the messages outlive the spool */
    sp = NULL;
    for (size_t i = 0; i < l.n; i++)
        check_msg(l.v[i].msg, "after close");
    tq_free(&l);
}

static int fail_next;
static int flaky_sync(int fd)
{
    if (fail_next) {
        fail_next = 0;
        return -EIO;
    }
    return fdatasync(fd) < 0 ? -errno : 0;
}

Test(msg, hook_once_per_durable_message_orphans_too_not_failed)
{
    uint64_t a = put(10, 10, false, false);
    uint64_t b = put(10, 10, false, true); /* orphaned */
    cr_assert_eq(nheld, 0, "not before the sync");
    cr_assert_eq(tu_sync(w), 0);
    cr_assert_eq(nheld, 2);
    cr_assert_not_null(held_msg(a));
    cr_assert_not_null(held_msg(b));
    cr_assert_eq(tu_sync(w), 1);
    cr_assert_eq(nheld, 2, "exactly once");

    uint64_t c = put(10, 10, false, false);
    int fd = spool_writer_sync_fd(w);
    cr_assert_geq(fd, 0);
    spool_writer_sync_done(w, -EIO);
    cr_assert_eq(nheld, 2, "a failed sync hands nothing over");
    cr_assert_null(held_msg(c));
    uint64_t e = put(10, 10, false, false);
    w->datasync = flaky_sync;
    fail_next = 1;
    fd = spool_writer_sync_fd(w);
    spool_writer_sync_done(w, w->datasync(fd));
    cr_assert_null(held_msg(e));
    uint64_t f = put(10, 10, false, false);
    tu_sync(w);
    cr_assert_not_null(held_msg(f));
    cr_assert_eq(nheld, 3);

    /* a writer created before spool_set_durable(NULL) keeps its hook; a new one has none */
    spool_set_durable(sp, NULL, NULL);
    struct spool_writer *w2;
    cr_assert_eq(spool_writer_create(sp, 3, &w2), 0);
    struct tu_done d;
    struct spool_env env = tu_env(1);
    tu_put(w2, &env, "x", 1, &d);
    tu_sync(w2);
    cr_assert_eq(nheld, 3);
    spool_writer_destroy(w2);
}

Test(msg, readable_after_the_segment_is_unlinked)
{
    spool_set_segment_size(sp, 4096);
    uint64_t a = put(1000, 1000, true, false);
    cr_assert_eq(tu_sync(w), 0);
    const struct spool_msg *m = held_msg(a);
    cr_assert_not_null(m);
    size_t len0;
    char *before = tq_read(m, &len0);
    static char big[5000];
    struct spool_env env = tu_env(1);
    static struct tu_done d;
    tu_put(w, &env, big, sizeof(big), &d); /* one append: rotates first, seg 1 is sealed */
    tu_sync(w);
    cr_assert(tq_exists(dir, 2, 1));
    cr_assert_eq(spool_writer_create(sp, 9, &qw), 0);
    cr_assert_eq(spool_writer_remove(qw, a), 0);
    cr_assert_eq(tu_sync(qw), 0);
    cr_assert_not(tq_exists(dir, 2, 1), "segment 1 had only a, now removed");
    size_t len1;
    char *after = tq_read(m, &len1);
    cr_assert_eq(len0, len1);
    cr_assert_eq(memcmp(before, after, len0), 0);
    free(before);
    free(after);
    struct spool_usage u;
    spool_usage(sp, &u);
    cr_assert_eq(u.unlinked, 1);
    spool_writer_destroy(qw);
    qw = NULL;
}

Test(msg, descriptors_are_shared)
{
    int fds0 = tq_nfds();
    for (int i = 0; i < 1000; i++) {
        put(50, 50, i % 2 == 0, false);
        if (i % 50 == 49)
            tu_sync(w);
    }
    tu_sync(w);
    cr_assert_eq(nheld, 1000);
    int fds1 = tq_nfds();
    cr_assert_leq(fds1 - fds0, 4, "1000 held messages use %d descriptors", fds1 - fds0);
    check_msg(held[0], "first");
    check_msg(held[999], "last");
    drop_held();
    close_all();
    int fds2 = tq_nfds();
    struct tq_list l = {.want_msg = true};
    cr_assert_eq(spool_open(dir, tq_collect, &l, NULL, &sp), 0);
    cr_assert_eq(l.n, 1000);
    int fds3 = tq_nfds();
    cr_assert_leq(fds3 - fds2, 6, "1000 recovered messages use %d descriptors", fds3 - fds2);
    tq_free(&l);
    cr_assert_leq(tq_nfds(), fds2 + 2, "released with the last message");
}
