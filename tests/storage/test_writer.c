/*
 * NAME
 *	test_writer - appending, group commit, rotation, ids
 * DESCRIPTION
 *	Each test has its own spool under a fresh /tmp directory.  The ring's
 *	fdatasync is played by tu_sync(): spool_writer_sync_fd, fdatasync,
 *	spool_writer_sync_done.
 */
#include <sys/wait.h>

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

TestSuite(writer, .init = setup, .fini = teardown);

Test(writer, envelope_and_exact_body)
{
    char line[1000];
    memset(line, 'x', 998);
    line[998] = '\r';
    line[999] = '\n';
    unsigned char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (unsigned char)i;
    const char *tail = "last line\r\n";

    struct spool_env env = tu_env(1700000000456);
    struct spool_txn *t = spool_txn_begin(w, &env);
    cr_assert_not_null(t);
    uint64_t id = spool_txn_id(t);
    struct iovec a[2] = {{"Subject: test\r\n\r\n", 17}, {line, 1000}};
    cr_assert_eq(spool_txn_append(t, a, 2), 0);
    struct iovec b[3] = {{bin, 100}, {NULL, 0}, {bin + 100, 156}};
    cr_assert_eq(spool_txn_append(t, b, 3), 0);
    struct iovec c = {(void *)tail, strlen(tail)};
    struct tu_done d = {0};
    cr_assert_eq(spool_txn_commit(t, &c, 1, tu_done_cb, &d), 0);
    cr_assert(spool_writer_busy(w));
    cr_assert_eq(d.calls, 0, "done before the sync");
    cr_assert_eq(tu_sync(w), 0);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.res, 0);
    cr_assert_eq(d.id, id);
    cr_assert_not(spool_writer_busy(w));

    size_t want_len = 17 + 1000 + 256 + strlen(tail);
    char *want = malloc(want_len);
    memcpy(want, "Subject: test\r\n\r\n", 17);
    memcpy(want + 17, line, 1000);
    memcpy(want + 1017, bin, 256);
    memcpy(want + 1273, tail, strlen(tail));

    struct spool_scan_report rep;
    struct tu_list l = tu_scan(dir, &rep);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(rep.live, 1);
    const struct tu_msg *m = &l.v[0];
    cr_assert_eq(m->id, id);
    cr_assert_eq(m->arrival_ms, 1700000000456);
    cr_assert_eq(m->size, want_len);
    cr_assert_str_eq(m->client, "192.0.2.1");
    cr_assert_str_eq(m->helo, "client.example");
    cr_assert_str_eq(m->sender, "sender@example.com");
    cr_assert_str_eq(m->params, "SIZE=1000 BODY=8BITMIME");
    cr_assert_eq(m->nrcpt, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(m->rcpts[i], tu_rcpts[i]);
    tu_list_free(&l);

    size_t len;
    int rc;
    char *body = tu_body(dir, id, &len, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(len, want_len);
    cr_assert_eq(memcmp(body, want, len), 0);
    free(body);
    cr_assert_eq(spool_read_body(dir, id + 1, 1), -ENOENT);

    /* and the same after a restart */
    reopen();
    body = tu_body(dir, id, &len, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(len, want_len);
    cr_assert_eq(memcmp(body, want, len), 0);
    free(body);
    free(want);
}

Test(writer, null_sender_and_empty_body)
{
    struct spool_env env = tu_env(1);
    env.sender = "";
    struct tu_done d = {0};
    uint64_t id = tu_put(w, &env, NULL, 0, &d);
    tu_sync(w);
    cr_assert_eq(d.res, 0);
    struct tu_list l = tu_scan(dir, NULL);
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, id);
    cr_assert_str_eq(l.v[0].sender, "");
    cr_assert_eq(l.v[0].size, 0);
    tu_list_free(&l);
}

Test(writer, small_message_is_one_write)
{
    struct spool_env env = tu_env(1);
    struct spool_txn *t = spool_txn_begin(w, &env);
    struct stat st0, st1;
    cr_assert_eq(fstat(w->cur->fd, &st0), 0);
    cr_assert_eq(st0.st_size, SPOOL_SEG_HDR, "nothing written at begin");
    struct spool_writer_stats s0, s1;
    spool_writer_stats(w, &s0);
    struct tu_done d = {0};
    struct iovec iov = {"body\r\n", 6};
    cr_assert_eq(spool_txn_commit(t, &iov, 1, tu_done_cb, &d), 0);
    spool_writer_stats(w, &s1);
    cr_assert_eq(fstat(w->cur->fd, &st1), 0);
    cr_assert_eq(w->cur->size - (uint64_t)st0.st_size, s1.bytes - s0.bytes);
    cr_assert_eq((uint64_t)st1.st_size, w->cur->zeroed, "the rest is pre-zeroed");
    cr_assert_eq(s1.commits, 1);
    tu_sync(w);
}

/* The file's size changes once per SPOOL_PREZERO, not per append; the
 * zeros go at destroy and at rotation, so a sealed segment ends with
 * its last record. */
Test(writer, prezeroed_segment_keeps_its_size_and_is_cut_when_sealed)
{
    struct spool_env env = tu_env(1);
    struct tu_done d[3] = {{0}};
    char body[4096];
    memset(body, 'p', sizeof(body));
    tu_put(w, &env, body, sizeof(body), &d[0]);
    tu_sync(w);
    struct stat st0, st1;
    cr_assert_eq(fstat(w->cur->fd, &st0), 0);
    cr_assert_geq((uint64_t)st0.st_size, w->cur->size + SPOOL_PREZERO / 2);
    tu_put(w, &env, body, sizeof(body), &d[1]);
    tu_put(w, &env, body, sizeof(body), &d[2]);
    tu_sync(w);
    cr_assert_eq(fstat(w->cur->fd, &st1), 0);
    cr_assert_eq(st1.st_size, st0.st_size, "appends land in pre-zeroed space");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(d[i].res, 0);
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_geq(st.prezeroed, SPOOL_PREZERO / 2);
    uint64_t end = w->cur->size;
    char *seg = tu_join(dir, w->cur->name);
    struct spool_scan_report rep;
    struct tu_list l = tu_scan(dir, &rep); /* read-only, zeros after the records */
    cr_assert_eq(l.n, 3);
    cr_assert_eq(rep.torn + rep.damaged, 0);
    tu_list_free(&l);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    rep = reopen();
    cr_assert_eq(tu_fsize(seg), (off_t)end, "destroy cut the zeros");
    cr_assert_eq(rep.live, 3);
    cr_assert_eq(rep.torn + rep.damaged, 0);
    free(seg);
}

/* A crash leaves the pre-zeroed tail: recovery reads it as the end of
 * the records, not as a torn tail, and gives the space back. */
Test(writer, crash_leaves_a_zero_tail_that_recovery_cuts)
{
    spool_writer_destroy(w);
    w = NULL;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct spool_writer *cw;
        if (spool_writer_create(sp, 1, &cw) != 0)
            _exit(1);
        struct spool_env env = tu_env(1);
        struct tu_done d = {0};
        tu_put(cw, &env, "durable\r\n", 9, &d);
        tu_sync(cw);
        struct stat st;
        if (fstat(cw->cur->fd, &st) != 0 || (uint64_t)st.st_size <= cw->cur->size)
            _exit(2);
        _exit(d.res == 0 ? 0 : 1); /* "kill -9" */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    char *seg = tu_join(dir, "seg-01-00000001.sg");
    cr_assert_gt(tu_fsize(seg), 4096);
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 1);
    cr_assert_eq(rep.torn, 0);
    cr_assert_eq(rep.damaged, 0);
    cr_assert_lt(tu_fsize(seg), 4096, "the zeros were cut off");
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    free(seg);
}

/* A full spool's space is the reserve's: no pre-zeroing. */
Test(writer, no_prezeroing_while_the_spool_is_full)
{
    spool_full_set(sp);
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    tu_put(w, &env, "x\r\n", 3, &d);
    tu_sync(w);
    cr_assert_eq(d.res, 0);
    struct stat st;
    cr_assert_eq(fstat(w->cur->fd, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, w->cur->size);
}

Test(writer, uncommitted_message_is_not_live)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    uint64_t kept = tu_put(w, &env, "kept\r\n", 6, &d);
    tu_sync(w);
    struct spool_txn *t = spool_txn_begin(w, &env);
    struct iovec iov = {"half a message\r\n", 16};
    cr_assert_eq(spool_txn_append(t, &iov, 1), 0);

    struct spool_scan_report rep;
    struct tu_list l = tu_scan(dir, &rep); /* read-only, on the live spool */
    cr_assert_eq(l.n, 1);
    cr_assert_eq(l.v[0].id, kept);
    cr_assert_eq(rep.incomplete, 1);
    tu_list_free(&l);
    spool_txn_abort(t);
}

Test(writer, crash_before_commit_leaves_it_incomplete)
{
    spool_writer_destroy(w);
    w = NULL;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct spool_writer *cw;
        if (spool_writer_create(sp, 1, &cw) != 0)
            _exit(1);
        struct spool_env env = tu_env(1);
        struct tu_done d = {0};
        struct spool_txn *t = spool_txn_begin(cw, &env);
        struct iovec iov = {"durable\r\n", 9};
        spool_txn_commit(t, &iov, 1, tu_done_cb, &d);
        tu_sync(cw);
        t = spool_txn_begin(cw, &env);
        struct iovec iov2 = {"never committed\r\n", 17};
        spool_txn_append(t, &iov2, 1);
        _exit(d.res == 0 ? 0 : 1); /* "kill -9": no abort, no destroy */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 1);
    cr_assert_eq(rep.incomplete, 1);
    cr_assert_eq(rep.torn, 0);
}

Test(writer, abort_is_not_live)
{
    struct spool_env env = tu_env(1);
    struct spool_txn *t = spool_txn_begin(w, &env);
    struct iovec iov = {"abandoned\r\n", 11};
    cr_assert_eq(spool_txn_append(t, &iov, 1), 0);
    spool_txn_abort(t);
    t = spool_txn_begin(w, &env); /* nothing written: abort writes nothing */
    spool_txn_abort(t);
    cr_assert_not(spool_writer_busy(w));
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 0);
    cr_assert_eq(rep.incomplete, 0);
}

Test(writer, orphan_gets_no_callback_but_stays_committed)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0}, d2 = {0};
    struct spool_txn *t = spool_txn_begin(w, &env);
    uint64_t id = spool_txn_id(t);
    struct iovec iov = {"orphan\r\n", 8};
    cr_assert_eq(spool_txn_commit(t, &iov, 1, tu_done_cb, &d), 0);
    tu_put(w, &env, "other\r\n", 7, &d2);
    spool_txn_orphan(t);
    tu_sync(w);
    cr_assert_eq(d.calls, 0);
    cr_assert_eq(d2.calls, 1);
    reopen();
    struct tu_list l = tu_scan(dir, NULL);
    cr_assert_eq(l.n, 2);
    cr_assert_not_null(tu_find(&l, id));
    tu_list_free(&l);
}

Test(writer, group_commit_of_1000_costs_one_sync)
{
    struct spool_env env = tu_env(1);
    static struct tu_done d[1000];
    for (int i = 0; i < 1000; i++)
        tu_put(w, &env, "x\r\n", 3, &d[i]);
    cr_assert_eq(tu_sync(w), 0);
    cr_assert_eq(tu_sync(w), 1, "nothing left");
    for (int i = 0; i < 1000; i++)
        cr_assert(d[i].calls == 1 && d[i].res == 0);
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_eq(st.commits, 1000);
    cr_assert_eq(st.syncs, 1);
    cr_assert_eq(st.segments, 1);
}

Test(writer, rotation_keeps_everything)
{
    spool_set_segment_size(sp, 4096);
    struct spool_env env = tu_env(1);
    enum { N = 300 };
    static uint64_t ids[N];
    static struct tu_done d[N];
    char body[200];
    for (int i = 0; i < N; i++) {
        int n = snprintf(body, sizeof(body), "message %d\r\n%0*d\r\n", i, i % 150, 0);
        ids[i] = tu_put(w, &env, body, (size_t)n, &d[i]);
        if (i % 7 == 0)
            tu_sync(w);
    }
    tu_sync(w);
    for (int i = 0; i < N; i++)
        cr_assert_eq(d[i].res, 0);
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_gt(st.segments, 5);
    /* sealed segments end with their last record: no zeros */
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct spool_seg *segs;
    size_t nseg;
    cr_assert_eq(spool_seg_list(dirfd, &segs, &nseg), 0);
    for (size_t i = 0; i + 1 < nseg; i++) {
        struct stat fst;
        cr_assert_eq(fstatat(dirfd, segs[i].name, &fst, 0), 0);
        cr_assert_leq(fst.st_size, 4096 + 512, "%s", segs[i].name);
        unsigned char last8[8], z[8] = {0};
        int fd = openat(dirfd, segs[i].name, O_RDONLY);
        cr_assert_eq(pread(fd, last8, 8, fst.st_size - 8), 8);
        cr_assert_neq(memcmp(last8, z, 8), 0, "%s ends with zeros", segs[i].name);
        close(fd);
    }
    free(segs);
    close(dirfd);

    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, N);
    cr_assert_eq(rep.torn, 0);
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    for (int i = 0; i < N; i += 37) {
        size_t len;
        int rc;
        char *b = tu_body(dir, ids[i], &len, &rc);
        int n = snprintf(body, sizeof(body), "message %d\r\n%0*d\r\n", i, i % 150, 0);
        cr_assert_eq(len, (size_t)n);
        cr_assert_eq(memcmp(b, body, len), 0);
        free(b);
    }
}

Test(writer, rotation_while_a_sync_is_in_flight)
{
    spool_set_segment_size(sp, 2048);
    struct spool_env env = tu_env(1);
    char body[1024];
    memset(body, 'b', sizeof(body));
    struct tu_done d[6] = {{0}};
    /* a message streamed across the rotation as well */
    struct spool_txn *big = spool_txn_begin(w, &env);
    uint64_t big_id = spool_txn_id(big);
    struct iovec iov = {body, sizeof(body)};
    cr_assert_eq(spool_txn_append(big, &iov, 1), 0);

    tu_put(w, &env, body, 500, &d[0]);
    int fd = spool_writer_sync_fd(w);
    cr_assert_geq(fd, 0);
    for (int i = 1; i < 6; i++)
        tu_put(w, &env, body, sizeof(body), &d[i]);
    cr_assert_eq(spool_txn_append(big, &iov, 1), 0);
    struct spool_writer_stats st;
    spool_writer_stats(w, &st);
    cr_assert_gt(st.segments, 1, "rotated");
    cr_assert_neq(fcntl(fd, F_GETFD), -1, "the fd of the sync in flight stays open");
    cr_assert_eq(fdatasync(fd), 0);
    spool_writer_sync_done(w, 0);
    cr_assert_eq(d[0].res, 0);
    cr_assert_eq(d[0].calls, 1);
    cr_assert_eq(d[1].calls, 0);
    tu_sync(w);
    for (int i = 1; i < 6; i++)
        cr_assert(d[i].calls == 1 && d[i].res == 0);
    struct tu_done bd = {0};
    cr_assert_eq(spool_txn_commit(big, &iov, 1, tu_done_cb, &bd), 0);
    tu_sync(w);
    cr_assert_eq(bd.res, 0);

    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 7);
    size_t len;
    int rc;
    char *b = tu_body(dir, big_id, &len, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(len, 3 * sizeof(body));
    free(b);
}

Test(writer, ids_unique_and_increasing_across_restarts)
{
    struct spool_env env = tu_env(1);
    uint64_t last = 0;
    static struct tu_done d[20];
    for (int run = 0; run < 3; run++) {
        for (int i = 0; i < 20; i++) {
            struct spool_txn *t = spool_txn_begin(w, &env);
            uint64_t id = spool_txn_id(t);
            cr_assert_gt(id, last);
            cr_assert_eq((id >> 24) & 0xff, 3, "worker in the id");
            last = id;
            struct iovec iov = {"x", 1};
            cr_assert_eq(spool_txn_commit(t, &iov, 1, tu_done_cb, &d[i]), 0);
        }
        tu_sync(w);
        struct spool_scan_report rep = reopen();
        cr_assert_eq(rep.max_id, last);
        cr_assert_eq(spool_writer_create(sp, 3, &w), 0);
    }
}

Test(writer, id_counter_wrap_advances_seconds)
{
    w->id_ctr = 0xffffff;
    w->id_sec = (uint32_t)time(NULL) + 100; /* ahead of the clock */
    uint64_t a = spool_writer_next_id(w), b = spool_writer_next_id(w);
    cr_assert_eq(a & 0xffffff, 0xffffff);
    cr_assert_eq(b & 0xffffff, 0);
    cr_assert_eq(b >> 32, (a >> 32) + 1);
    cr_assert_gt(b, a);
}

Test(writer, one_writer_per_worker)
{
    struct spool_writer *w2;
    cr_assert_eq(spool_writer_create(sp, 3, &w2), -EBUSY);
    cr_assert_eq(spool_writer_create(sp, 256, &w2), -EINVAL);
    cr_assert_eq(spool_writer_create(sp, 4, &w2), 0);
    spool_writer_destroy(w2);
}

Test(writer, destroy_syncs_what_is_pending)
{
    struct spool_env env = tu_env(1);
    struct tu_done d = {0};
    tu_put(w, &env, "pending\r\n", 9, &d);
    spool_writer_destroy(w);
    w = NULL;
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.res, 0);
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.live, 1);
}

Test(writer, empty_segment_removed_at_destroy)
{
    spool_writer_destroy(w);
    w = NULL;
    struct spool_scan_report rep = reopen();
    cr_assert_eq(rep.segments, 0);
}

Test(writer, large_append_split_and_many_iovecs)
{
    w->data_max = 1000; /* stands in for the 64 MiB record limit */
    enum { NIOV = 3000 };
    static struct iovec iov[NIOV];
    static unsigned char data[NIOV * 3];
    size_t total = 0;
    for (int i = 0; i < NIOV; i++) {
        size_t n = (size_t)(i % 3) + 1;
        for (size_t k = 0; k < n; k++)
            data[total + k] = (unsigned char)(total + k);
        iov[i].iov_base = data + total;
        iov[i].iov_len = n;
        total += n;
    }
    struct spool_env env = tu_env(1);
    struct spool_txn *t = spool_txn_begin(w, &env);
    uint64_t id = spool_txn_id(t);
    cr_assert_eq(spool_txn_append(t, iov, NIOV), 0);
    struct tu_done d = {0};
    cr_assert_eq(spool_txn_commit(t, iov, NIOV, tu_done_cb, &d), 0);
    tu_sync(w);
    cr_assert_eq(d.res, 0);
    struct spool_scan_report rep;
    struct tu_list l = tu_scan(dir, &rep);
    cr_assert_eq(l.n, 1);
    /* START + 2 * 6 DATA + COMMIT */
    cr_assert_eq(rep.records, 1 + 2 * ((total + 999) / 1000) + 1);
    tu_list_free(&l);
    size_t len;
    int rc;
    char *b = tu_body(dir, id, &len, &rc);
    cr_assert_eq(len, 2 * total);
    cr_assert_eq(memcmp(b, data, total), 0);
    cr_assert_eq(memcmp(b + total, data, total), 0);
    free(b);
}
