/*
 * NAME
 *	test_recover - recovery: torn tails (ACCEPTANCE D4), garbage,
 *	verify, the lock, REMOVE, torn segment headers
 */
#include <sys/wait.h>

#include "storage/writer_int.h"
#include "test_util.h"

#define NMSG 5
#define SEG0 "seg-00-00000001.sg"

static char *tmp, *dir;
static uint64_t ids[NMSG];
static uint64_t last_start; /* offset of the last message's first record */

static void setup(void)
{
    tmp = tu_mkdtemp();
}

static void teardown(void)
{
    tu_rmrf(tmp);
    free(dir);
    free(tmp);
    dir = NULL;
}

TestSuite(recover, .init = setup, .fini = teardown);

static void body_of(int i, char *buf, size_t *len)
{
    *len = (size_t)snprintf(buf, 400, "Subject: %d\r\n\r\n%0*d\r\n", i, 40 + 60 * i, i);
}

/* A spool of NMSG messages in one segment, all synced. */
static void make_spool(void)
{
    dir = tu_join(tmp, "spool");
    struct spool *sp;
    struct spool_writer *w;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 0, &w), 0);
    struct spool_env env = tu_env(1700000000000);
    char body[400];
    size_t len;
    for (int i = 0; i < NMSG; i++) {
        struct tu_done d = {0};
        if (i == NMSG - 1)
            last_start = w->cur->size;
        body_of(i, body, &len);
        /* the last message streams: START+DATA, DATA, then DATA+COMMIT */
        struct spool_txn *t = spool_txn_begin(w, &env);
        ids[i] = spool_txn_id(t);
        struct iovec a = {body, 10}, b = {body + 10, 7}, c = {body + 17, len - 17};
        cr_assert_eq(spool_txn_append(t, &a, 1), 0);
        cr_assert_eq(spool_txn_append(t, &b, 1), 0);
        cr_assert_eq(spool_txn_commit(t, &c, 1, tu_done_cb, &d), 0);
        tu_sync(w);
        cr_assert_eq(d.res, 0);
    }
    spool_writer_destroy(w);
    spool_close(sp);
}

/* Offsets of every record of a segment file held in memory, and the end. */
static size_t record_offsets(const char *path, uint64_t *offs, size_t max)
{
    char *d = strdup(path);
    *strrchr(d, '/') = '\0';
    int dirfd = open(d, O_RDONLY | O_DIRECTORY);
    struct spool_seg s;
    cr_assert(spool_seg_parse(strrchr(path, '/') + 1, &s.worker, &s.seq));
    snprintf(s.name, sizeof(s.name), "%s", strrchr(path, '/') + 1);
    struct spool_rd rd;
    struct spool_rec rec;
    const char *why;
    bool torn;
    cr_assert_eq(spool_rd_open(dirfd, &s, false, &rd, &why, &torn), 0);
    size_t n = 0;
    while (spool_rd_next(&rd, &rec, &why) > 0 && n < max)
        offs[n++] = rec.off;
    offs[n++] = rd.off;
    spool_rd_close(&rd);
    close(dirfd);
    free(d);
    return n;
}

static bool is_boundary(const uint64_t *offs, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (offs[i] == off)
            return true;
    return false;
}

static uint64_t boundary_at_or_below(const uint64_t *offs, size_t n, uint64_t off)
{
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++)
        if (offs[i] <= off && offs[i] > b)
            b = offs[i];
    return b;
}

/* The live ids of d must be exactly ids[0..n). */
static void expect_live(const char *d, int n, struct spool_scan_report *rep)
{
    struct tu_list l = tu_scan(d, rep);
    cr_assert_eq(l.n, (size_t)n, "%zu live, want %d", l.n, n);
    for (int i = 0; i < n; i++) {
        const struct tu_msg *m = tu_find(&l, ids[i]);
        cr_assert_not_null(m);
        char body[400];
        size_t len;
        body_of(i, body, &len);
        cr_assert_eq(m->size, len);
    }
    tu_list_free(&l);
}

Test(recover, torn_tail_at_every_offset_of_the_last_message)
{
    make_spool();
    char *seg = tu_join(dir, SEG0);
    size_t full_len;
    unsigned char *full = tu_slurp(seg, &full_len);
    uint64_t offs[64];
    size_t noff = record_offsets(seg, offs, 63);
    cr_assert_eq(offs[noff - 1], full_len);
    cr_assert(is_boundary(offs, noff, last_start));
    uint64_t start_end = 0; /* end of the last message's START record */
    for (size_t i = 0; i + 1 < noff; i++)
        if (offs[i] == last_start)
            start_end = offs[i + 1];

    char *copy = tu_join(tmp, "copy");
    char *cseg = tu_join(copy, SEG0);
    for (uint64_t off = last_start; off < full_len; off++) {
        cr_assert_eq(mkdir(copy, 0700), 0);
        tu_spit(cseg, full, off);
        bool boundary = is_boundary(offs, noff, off);

        /* read-only: the earlier messages, never the last, never a part */
        struct spool_scan_report rep;
        expect_live(copy, NMSG - 1, &rep);
        cr_assert_eq(rep.torn, boundary ? 0 : 1, "offset %llu", (unsigned long long)off);
        cr_assert_eq(rep.incomplete, off >= start_end ? 1 : 0);
        cr_assert_eq(tu_fsize(cseg), (off_t)off, "a scan never repairs");
        char msg[256];
        cr_assert_eq(spool_verify(copy, msg, sizeof(msg)), boundary ? 0 : -EBADMSG);

        /* repair */
        struct spool *sp;
        cr_assert_eq(spool_open(copy, NULL, NULL, &rep, &sp), 0);
        cr_assert_eq(rep.live, NMSG - 1);
        cr_assert_eq(rep.torn, boundary ? 0 : 1);
        spool_close(sp);
        cr_assert_eq(tu_fsize(cseg), (off_t)boundary_at_or_below(offs, noff, off));
        cr_assert_eq(spool_verify(copy, msg, sizeof(msg)), 0, "%s", msg);
        expect_live(copy, NMSG - 1, &rep);
        cr_assert_eq(rep.torn, 0);
        cr_assert_eq(spool_read_body(copy, ids[NMSG - 1], 1), -ENOENT);
        tu_rmrf(copy);
    }
    free(full);
    free(seg);
    free(cseg);
    free(copy);
}

Test(recover, garbage_after_the_last_record)
{
    make_spool();
    char *seg = tu_join(dir, SEG0);
    size_t full_len;
    unsigned char *full = tu_slurp(seg, &full_len);
    uint64_t offs[64];
    size_t noff = record_offsets(seg, offs, 63);
    uint64_t last_rec = offs[noff - 2];

    char *copy = tu_join(tmp, "copy");
    char *cseg = tu_join(copy, SEG0);
    unsigned char *buf = malloc(full_len + 8192);
    srand(1);
    for (int variant = 0; variant < 40; variant++) {
        size_t extra;
        memcpy(buf, full, full_len);
        unsigned char *g = buf + full_len;
        if (variant < 32) { /* random octets, 1 to 32 + a bit */
            extra = (size_t)variant * 7 + 1;
            for (size_t i = 0; i < extra; i++)
                g[i] = (unsigned char)rand();
        } else if (variant == 32) { /* pages that came back as zeros, or pre-zeroed space */
            extra = 4096;
            memset(g, 0, extra);
        } else if (variant == 33) { /* the last record again, one octet flipped */
            extra = full_len - last_rec;
            memcpy(g, full + last_rec, extra);
            g[extra - 9] ^= 0x40;
        } else if (variant == 34) { /* a plausible header with an absurd length */
            extra = full_len - last_rec;
            memcpy(g, full + last_rec, extra);
            spool_put32(g + 4, 1u << 30);
        } else if (variant == 35) { /* a header whose payload is missing */
            extra = 24;
            memcpy(g, full + offs[0], extra);
        } else { /* a record copy with another id, crc not updated */
            extra = full_len - last_rec;
            memcpy(g, full + last_rec, extra);
            spool_put64(g + 8, ids[0] + 100 + (uint64_t)variant);
        }
        cr_assert_eq(mkdir(copy, 0700), 0);
        tu_spit(cseg, buf, full_len + extra);
        struct spool_scan_report rep;
        expect_live(copy, NMSG, &rep);
        char msg[256];
        if (variant == 32) {
            /* zeros to the end: the writer's pre-zeroed space, the end */
            cr_assert_eq(rep.torn, 0);
            cr_assert_eq(spool_verify(copy, msg, sizeof(msg)), 0, "%s", msg);
        } else {
            cr_assert_eq(rep.torn, 1, "variant %d", variant);
            cr_assert_eq(spool_verify(copy, msg, sizeof(msg)), -EBADMSG, "variant %d", variant);
            char want[64];
            snprintf(want, sizeof(want), SEG0 ": offset %zu: ", full_len);
            cr_assert(strncmp(msg, want, strlen(want)) == 0, "%s", msg);
        }
        struct spool *sp;
        cr_assert_eq(spool_open(copy, NULL, NULL, &rep, &sp), 0);
        cr_assert_eq(rep.live, NMSG);
        spool_close(sp);
        cr_assert_eq(tu_fsize(cseg), (off_t)full_len);
        tu_rmrf(copy);
    }
    free(buf);
    free(full);
    free(seg);
    free(cseg);
    free(copy);
}

Test(recover, verify_names_every_bad_record)
{
    make_spool();
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    cr_assert(strstr(msg, "1 segments") != NULL, "%s", msg);
    char *seg = tu_join(dir, SEG0);
    uint64_t offs[64];
    size_t noff = record_offsets(seg, offs, 63);
    cr_assert_geq(noff, 10);
    /* a bit flip inside the payload of a record in the middle */
    uint64_t at = offs[7];
    int fd = open(seg, O_RDWR);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, (off_t)at + 24 + 3), 1);
    c ^= 1;
    cr_assert_eq(pwrite(fd, &c, 1, (off_t)at + 24 + 3), 1);
    close(fd);
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), -EBADMSG);
    char want[128];
    snprintf(want, sizeof(want), SEG0 ": offset %llu: crc mismatch: damaged, 32 octets skipped",
             (unsigned long long)at);
    cr_assert(strncmp(msg, want, strlen(want)) == 0, "%s", msg);
    cr_assert(strstr(msg, "\n1 segments, 24 records: damaged") != NULL, "%s", msg);

    /* a damaged segment header */
    fd = open(seg, O_RDWR);
    cr_assert_eq(pwrite(fd, "X", 1, 0), 1);
    close(fd);
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), -EBADMSG);
    cr_assert(strncmp(msg, SEG0 ": offset 0: bad segment magic (records follow", 60) == 0, "%s",
              msg);
    free(seg);
}

Test(recover, lock_is_exclusive)
{
    dir = tu_join(tmp, "spool");
    struct spool *sp, *sp2;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp2), -EBUSY);
    cr_assert_null(sp2);
    pid_t pid = fork();
    if (pid == 0) {
        struct spool *c;
        _exit(spool_open(dir, NULL, NULL, NULL, &c) == -EBUSY ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process gets -EBUSY");
    struct spool_scan_report rep;
    cr_assert_eq(spool_scan(dir, NULL, NULL, &rep), 0, "scans take no lock");
    spool_close(sp);
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    spool_close(sp);
}

Test(recover, open_creates_the_directory_path)
{
    dir = tu_join(tmp, "a/b/spool");
    struct spool *sp;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_str_eq(spool_dir(sp), dir);
    struct stat st;
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0700);
    spool_close(sp);
    char *missing = tu_join(tmp, "nope");
    cr_assert_eq(spool_scan(missing, NULL, NULL, NULL), -ENOENT, "a scan creates nothing");
    free(missing);
}

Test(recover, remove_and_abort_records_are_honoured)
{
    make_spool();
    struct spool *sp;
    struct spool_writer *w, *w2;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    cr_assert_eq(spool_writer_create(sp, 0, &w), 0);
    cr_assert_eq(spool_writer_create(sp, 9, &w2), 0);
    cr_assert_eq(w->cur->seq, 2, "a new writer starts a new segment");
    cr_assert_eq(spool_writer_remove(w, ids[1]), 0);
    cr_assert_eq(spool_writer_remove(w2, ids[3]), 0); /* from another worker's segment */
    spool_writer_destroy(w);
    spool_writer_destroy(w2);
    spool_close(sp);
    struct tu_list l = tu_scan(dir, NULL);
    cr_assert_eq(l.n, NMSG - 2);
    cr_assert_null(tu_find(&l, ids[1]));
    cr_assert_null(tu_find(&l, ids[3]));
    cr_assert_not_null(tu_find(&l, ids[4]));
    tu_list_free(&l);
    cr_assert_eq(spool_read_body(dir, ids[1], 1), -ENOENT);
}

Test(recover, torn_segment_headers)
{
    make_spool();
    char *short_seg = tu_join(dir, "seg-05-00000001.sg");
    char *zero_seg = tu_join(dir, "seg-06-00000001.sg");
    char *bad_seg = tu_join(dir, "seg-07-00000001.sg");
    unsigned char z[64] = {0};
    tu_spit(short_seg, "SLUICE", 6);
    tu_spit(zero_seg, z, 64);
    memset(z, 'q', sizeof(z));
    tu_spit(bad_seg, z, 64);
    struct spool_scan_report rep;
    expect_live(dir, NMSG, &rep);
    cr_assert_eq(rep.torn, 2);
    cr_assert_eq(access(short_seg, F_OK), 0, "a scan removes nothing");
    struct spool *sp;
    cr_assert_eq(spool_open(dir, NULL, NULL, &rep, &sp), 0);
    cr_assert_eq(rep.live, NMSG);
    spool_close(sp);
    cr_assert_neq(access(short_seg, F_OK), 0);
    cr_assert_neq(access(zero_seg, F_OK), 0);
    cr_assert_eq(access(bad_seg, F_OK), 0, "a foreign file is left alone");
    char msg[256];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), -EBADMSG);
    cr_assert_str_eq(msg, "seg-07-00000001.sg: offset 0: bad segment magic\n"
                          "2 segments, 25 records: damaged");
    free(short_seg);
    free(zero_seg);
    free(bad_seg);
}

static int stop_cb(void *arg, const struct spool_msginfo *m)
{
    (void)m;
    (*(int *)arg)++;
    return 7;
}

Test(recover, callback_stops_the_scan)
{
    make_spool();
    int calls = 0;
    cr_assert_eq(spool_scan(dir, stop_cb, &calls, NULL), 7);
    cr_assert_eq(calls, 1);
    struct spool *sp;
    calls = 0;
    cr_assert_eq(spool_open(dir, stop_cb, &calls, NULL, &sp), 7);
    cr_assert_null(sp);
    struct tu_list l = {0};
    cr_assert_eq(spool_open(dir, tu_collect, &l, NULL, &sp), 0, "lock released");
    cr_assert_eq(l.n, NMSG);
    for (int i = 0; i < NMSG; i++)
        cr_assert_eq(l.v[i].id, ids[i], "reported in spool order");
    tu_list_free(&l);
    spool_close(sp);
}
