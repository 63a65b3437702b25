/*
 * NAME
 *	test_edits - header edit lists (EDITS record), message flags, and
 *	reading a message back while it is received (spool_txn_read, body refs)
 */
#include <pthread.h>

#include "storage/writer_int.h"
#include "test_util.h"

static char *tmp, *dir;

static void setup(void)
{
    tmp = tu_mkdtemp();
    dir = tu_join(tmp, "spool");
}

static void teardown(void)
{
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
}

TestSuite(edits, .init = setup, .fini = teardown);

/* ---- applying a list to a header section ---- */

struct sbuf {
    char p[8192];
    size_t n;
};

static int sbuf_out(void *arg, const void *p, size_t n)
{
    struct sbuf *b = arg;
    cr_assert_lt(b->n + n, sizeof(b->p));
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static const char *apply(const char *hdr, const struct spool_edit *v, size_t n)
{
    static struct sbuf b;
    b.n = 0;
    b.p[0] = '\0';
    cr_assert_eq(spool_edits_apply(hdr, strlen(hdr), v, n, sbuf_out, &b), 0);
    return b.p;
}

#define RCVD "Received: from a (b)\r\n\tby c; d\r\n"

Test(edits, add_goes_after_our_received)
{
    struct spool_edit e[] = {{SPOOL_EDIT_ADD, "X-Scanned", "yes"},
                             {SPOOL_EDIT_ADD, "X-Second", "2"}};
    cr_assert_str_eq(apply(RCVD "Subject: hi\r\n", e, 2),
                     RCVD "X-Scanned: yes\r\nX-Second: 2\r\nSubject: hi\r\n");
    /* no Received: first: at the top */
    cr_assert_str_eq(apply("Subject: hi\r\n", e, 1), "X-Scanned: yes\r\nSubject: hi\r\n");
    cr_assert_str_eq(apply("", e, 1), "X-Scanned: yes\r\n");
}

Test(edits, remove_takes_every_field_with_its_continuations)
{
    struct spool_edit e[] = {{SPOOL_EDIT_REMOVE, "x-spam", NULL}};
    cr_assert_str_eq(apply(RCVD "X-Spam: 1\r\n\tmore\r\n  and more\r\nSubject: s\r\n"
                                "X-SPAM : 2\r\nX-Spam-Score: 3\r\n",
                           e, 1),
                     RCVD "Subject: s\r\nX-Spam-Score: 3\r\n");
}

Test(edits, change_replaces_the_first_or_adds)
{
    struct spool_edit e[] = {{SPOOL_EDIT_CHANGE, "subject", "new"}};
    cr_assert_str_eq(apply(RCVD "Subject: old\r\n\tfolded\r\nSubject: second\r\n", e, 1),
                     RCVD "Subject: new\r\nSubject: second\r\n");
    cr_assert_str_eq(apply(RCVD "From: a\r\n", e, 1), RCVD "subject: new\r\nFrom: a\r\n");
}

Test(edits, edits_apply_in_order)
{
    struct spool_edit e[] = {
        {SPOOL_EDIT_ADD, "X-A", "1"},
        {SPOOL_EDIT_REMOVE, "X-A", NULL}, /* removes the one just added too */
        {SPOOL_EDIT_ADD, "X-B", "2"},     /* still right after Received: */
        {SPOOL_EDIT_REMOVE, "Received", NULL},
        {SPOOL_EDIT_ADD, "X-C", "3"}, /* after X-B: the insertion point moved up */
    };
    cr_assert_str_eq(apply(RCVD "X-A: old\r\nTo: t\r\n", e, 5), "X-B: 2\r\nX-C: 3\r\nTo: t\r\n");
}

Test(edits, validity)
{
    struct spool_edit ok = {SPOOL_EDIT_ADD, "X-Ok", "fine value"};
    cr_assert(spool_edit_valid(&ok));
    struct spool_edit bad[] = {
        {SPOOL_EDIT_ADD, "", "v"},         {SPOOL_EDIT_ADD, "X:Y", "v"},
        {SPOOL_EDIT_ADD, "X Y", "v"},      {SPOOL_EDIT_ADD, "X-Y", "a\r\nB: c"},
        {SPOOL_EDIT_ADD, "X-Y", "a\nb"},   {SPOOL_EDIT_ADD, "X-Y", NULL},
        {(enum spool_edit_op)9, "X", "v"}, {SPOOL_EDIT_CHANGE, "X\x7f", "v"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(spool_edit_valid(&bad[i]), "edit %zu", i);
    char big[1000];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct spool_edit longline = {SPOOL_EDIT_ADD, "X", big};
    cr_assert_not(spool_edit_valid(&longline), "over 998 octets");
    struct spool_edit rm = {SPOOL_EDIT_REMOVE, "X", NULL};
    cr_assert(spool_edit_valid(&rm));
}

Test(edits, codec_round_trip_and_garbage)
{
    struct spool_edit e[] = {{SPOOL_EDIT_ADD, "X-A", "1"},
                             {SPOOL_EDIT_REMOVE, "X-B", NULL},
                             {SPOOL_EDIT_CHANGE, "Subject", ""}};
    uint64_t n = spool_edits_len(e, 3);
    unsigned char *p = malloc(n);
    spool_edits_encode(e, 3, p);
    struct spool_editdec d;
    cr_assert_eq(spool_edits_decode(p, n, &d), 0);
    cr_assert_eq(d.n, 3);
    cr_assert_str_eq(d.v[0].name, "X-A");
    cr_assert_str_eq(d.v[0].value, "1");
    cr_assert_eq(d.v[1].op, SPOOL_EDIT_REMOVE);
    cr_assert_str_eq(d.v[2].value, "");
    spool_editdec_fini(&d);
    for (uint64_t cut = 0; cut < n; cut++)
        cr_assert_eq(spool_edits_decode(p, cut, &d), -EBADMSG, "cut at %llu",
                     (unsigned long long)cut);
    p[4] = 7; /* op */
    cr_assert_eq(spool_edits_decode(p, n, &d), -EBADMSG);
    free(p);
}

/* The filter finds the end of the header section across any split. */
Test(edits, filter_any_split)
{
    const char *msg = RCVD "Subject: s\r\nX-Drop: 1\r\n\r\nX-Drop: body, not header\r\n";
    const char *want = RCVD "X-New: v\r\nSubject: s\r\n\r\nX-Drop: body, not header\r\n";
    struct spool_edit e[] = {{SPOOL_EDIT_ADD, "X-New", "v"}, {SPOOL_EDIT_REMOVE, "X-Drop", NULL}};
    size_t len = strlen(msg);
    for (size_t piece = 1; piece <= len; piece++) {
        struct sbuf b = {.n = 0};
        struct spool_efilter f;
        spool_ef_init(&f, e, 2, sbuf_out, &b);
        for (size_t i = 0; i < len; i += piece)
            cr_assert_eq(spool_ef_feed(&f, msg + i, len - i < piece ? len - i : piece), 0);
        cr_assert_eq(spool_ef_finish(&f), 0);
        spool_ef_fini(&f);
        cr_assert_str_eq(b.p, want, "piece %zu", piece);
    }
    /* no empty line: all of it is header; an empty header section */
    struct sbuf b = {.n = 0};
    struct spool_efilter f;
    spool_ef_init(&f, e, 1, sbuf_out, &b);
    spool_ef_feed(&f, "A: b\r\n", 6);
    spool_ef_finish(&f);
    cr_assert_str_eq(b.p, "X-New: v\r\nA: b\r\n");
    b.n = 0;
    spool_ef_init(&f, e, 1, sbuf_out, &b);
    spool_ef_feed(&f, "\r\nbody\r\n", 8);
    spool_ef_finish(&f);
    cr_assert_str_eq(b.p, "X-New: v\r\n\r\nbody\r\n");
}

/* ---- through the spool ---- */

static struct spool *sp;
static struct spool_writer *w;

static void open_writer(void)
{
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 3, &w), 0);
}

static void close_writer(void)
{
    while (tu_sync(w) == 0)
        ;
    spool_writer_destroy(w);
    spool_close(sp);
}

static int msginfo_cb(void *arg, const struct spool_msginfo *m)
{
    *(struct spool_msginfo *)arg = *m;
    return 0;
}

Test(edits, stored_with_commit_applied_on_read_kept_by_recovery)
{
    open_writer();
    struct spool_env env = tu_env(1700000000123);
    struct tu_done d = {0};
    const char *body = RCVD "Subject: s\r\nX-Spam: yes\r\n\r\nHello\r\n";
    struct spool_txn *t = spool_txn_begin(w, &env);
    uint64_t id = spool_txn_id(t);
    struct spool_edit bad = {SPOOL_EDIT_ADD, "X Bad", "v"};
    cr_assert_eq(spool_txn_set_edits(t, &bad, 1), -EINVAL);
    struct spool_edit e[] = {{SPOOL_EDIT_ADD, "X-Scanned", "by test"},
                             {SPOOL_EDIT_REMOVE, "X-Spam", NULL}};
    cr_assert_eq(spool_txn_set_edits(t, e, 2), 0);
    spool_txn_set_flags(t, SPOOL_MSG_QUARANTINE);
    struct iovec iov = {(void *)body, strlen(body)};
    cr_assert_eq(spool_txn_commit(t, &iov, 1, tu_done_cb, &d), 0);
    tu_sync(w);
    cr_assert_eq(d.res, 0);
    close_writer();

    size_t n;
    int rc;
    char *got = tu_body(dir, id, &n, &rc);
    got[n] = '\0'; /* tu_body leaves room for it */
    cr_assert_str_eq(got, RCVD "X-Scanned: by test\r\nSubject: s\r\n\r\nHello\r\n");
    free(got);
    int fd = memfd_create("raw", 0);
    cr_assert_eq(spool_read_body_raw(dir, id, fd), 0);
    char raw[256] = {0};
    cr_assert_eq(pread(fd, raw, sizeof(raw) - 1, 0), (ssize_t)strlen(body));
    cr_assert_str_eq(raw, body);
    close(fd);

    struct spool_msginfo m = {0};
    struct spool_scan_report rep;
    cr_assert_eq(spool_scan(dir, msginfo_cb, &m, &rep), 0);
    cr_assert_eq(rep.live, 1);
    cr_assert_eq(m.flags, SPOOL_MSG_QUARANTINE);
    cr_assert_eq(m.nedits, 2);
    cr_assert_eq(m.size, strlen(body), "COMMIT's size counts the body only");

    /* recovery (repair mode) keeps the message with its edits */
    cr_assert_eq(spool_open(dir, NULL, NULL, &rep, &sp), 0);
    cr_assert_eq(rep.live, 1);
    cr_assert_eq(rep.torn, 0);
    spool_close(sp);
    got = tu_body(dir, id, &n, &rc);
    got[n] = '\0';
    cr_assert(strstr(got, "X-Scanned: by test\r\n") != NULL);
    free(got);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
}

/* A commit that fails leaves neither the edits nor the message. */
Test(edits, aborted_message_with_edits_is_not_live)
{
    open_writer();
    struct spool_env env = tu_env(1);
    struct spool_txn *t = spool_txn_begin(w, &env);
    struct spool_edit e = {SPOOL_EDIT_ADD, "X-A", "1"};
    cr_assert_eq(spool_txn_set_edits(t, &e, 1), 0);
    struct iovec iov = {"abc\r\n", 5};
    cr_assert_eq(spool_txn_append(t, &iov, 1), 0);
    spool_txn_abort(t);
    close_writer();
    struct spool_scan_report rep;
    struct tu_list l = tu_scan(dir, &rep);
    cr_assert_eq(l.n, 0);
    tu_list_free(&l);
}

/* ---- reading back what was appended ---- */

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + seed) % 26);
}

struct reader {
    struct spool_bodyref *r;
    const char *want;
    size_t len;
    int bad;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    char *buf = malloc(rd->len);
    for (size_t off = 0; off < rd->len; off += 4093) {
        size_t k = rd->len - off < 9000 ? rd->len - off : 9000;
        if (spool_bodyref_read(rd->r, off, buf, k) != 0 || memcmp(buf, rd->want + off, k) != 0)
            rd->bad++;
    }
    free(buf);
    spool_bodyref_release(rd->r);
    return NULL;
}

Test(edits, read_back_across_appends_rotation_and_threads)
{
    open_writer();
    spool_set_segment_size(sp, 64 * 1024); /* rotations inside the message */
    w->data_max = 20000;                   /* several DATA records per append */
    enum { PIECE = 50000, PIECES = 5 };
    size_t total = PIECE * PIECES;
    char *want = malloc(total);
    fill(want, total, 3);
    struct spool_env env = tu_env(1);
    struct spool_txn *t = spool_txn_begin(w, &env);
    cr_assert_eq(spool_txn_size(t), 0);
    cr_assert_eq(spool_txn_read(t, 0, NULL, 0), 0);
    char one;
    cr_assert_eq(spool_txn_read(t, 0, &one, 1), -ERANGE);
    for (int i = 0; i < PIECES - 1; i++) {
        struct iovec iov[2] = {{want + i * PIECE, 1000}, {want + i * PIECE + 1000, PIECE - 1000}};
        cr_assert_eq(spool_txn_append(t, iov, 2), 0);
        cr_assert_eq(spool_txn_size(t), (uint64_t)(i + 1) * PIECE);
    }
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_gt(st.segments, 2, "the message spans segments");

    char *buf = malloc(total);
    uint64_t have = spool_txn_size(t);
    cr_assert_eq(spool_txn_read(t, 0, buf, (size_t)have), 0);
    cr_assert(memcmp(buf, want, (size_t)have) == 0);
    for (uint64_t off = 0; off + 777 <= have; off += 19997) { /* odd pieces, any extent */
        cr_assert_eq(spool_txn_read(t, off, buf, 777), 0);
        cr_assert(memcmp(buf, want + off, 777) == 0, "at %llu", (unsigned long long)off);
    }
    cr_assert_eq(spool_txn_read(t, have - 1, buf, 2), -ERANGE);

    /* a reference taken now reads on another thread, after the txn is gone */
    struct reader rd = {spool_txn_bodyref(t), want, (size_t)have, 0};
    cr_assert_not_null(rd.r);
    cr_assert_eq(spool_bodyref_size(rd.r), have);
    struct spool_bodyref *second = spool_bodyref_ref(rd.r);

    struct tu_done d = {0};
    struct iovec last = {want + (PIECES - 1) * PIECE, PIECE};
    cr_assert_eq(spool_txn_commit(t, &last, 1, tu_done_cb, &d), 0);
    cr_assert_eq(spool_txn_read(t, 0, buf, total), 0, "the commit's DATA counts too");
    cr_assert(memcmp(buf, want, total) == 0);
    struct spool_bodyref *all = spool_txn_bodyref(t);
    tu_sync(w); /* done runs; the txn is freed */
    cr_assert_eq(d.calls, 1);

    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reader_main, &rd), 0);
    memset(buf, 0, total);
    cr_assert_eq(spool_bodyref_read(all, 0, buf, total), 0);
    cr_assert(memcmp(buf, want, total) == 0);
    cr_assert_eq(spool_bodyref_read(second, have - 10, buf, 10), 0);
    cr_assert(memcmp(buf, want + have - 10, 10) == 0);
    spool_bodyref_release(second);
    spool_bodyref_release(all);
    pthread_join(th, NULL);
    cr_assert_eq(rd.bad, 0);
    close_writer();
    free(buf);
    free(want);
}
