/*
 * NAME
 *	test_damage - damage that is not a torn tail: a flipped bit, a zeroed
 *	block, a zeroed header, a bad length in a sealed segment costs the
 *	records it hit and nothing else; the file is kept aside, verify names
 *	the damage, salvage writes out what is left
 */
#include "storage/writer_int.h"
#include "test_util.h"

#define NMSG 400
#define SEG1 "seg-00-00000001.sg"

static char *tmp, *dir;
static uint64_t ids[NMSG];
/* every record of segment 1: offset, end, message id */
static struct {
    uint64_t off, end, id;
} recs[4 * NMSG];
static size_t nrecs;

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

TestSuite(damage, .init = setup, .fini = teardown);

/* NMSG messages of about 1 KiB over several 128 KiB segments of worker 0,
 * all synced; segment 1 is sealed. */
static void make_spool(void)
{
    dir = tu_join(tmp, "spool");
    struct spool *sp;
    struct spool_writer *w;
    cr_assert_eq(spool_open(dir, NULL, NULL, NULL, &sp), 0);
    spool_set_segment_size(sp, 128 * 1024);
    cr_assert_eq(spool_writer_create(sp, 0, &w), 0);
    struct spool_env env = tu_env(1700000000000);
    char body[1200];
    for (int i = 0; i < NMSG; i++) {
        int n = snprintf(body, sizeof(body), "Subject: %d\r\n\r\n", i);
        memset(body + n, 'a' + i % 26, 1000);
        memcpy(body + n + 1000, "\r\n", 2);
        struct tu_done d = {0};
        ids[i] = tu_put(w, &env, body, (size_t)n + 1002, &d);
        tu_sync(w);
        cr_assert_eq(d.res, 0);
    }
    spool_writer_destroy(w);
    spool_close(sp);

    /* where each record of segment 1 is */
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    struct spool_seg s = {0, 1, SEG1};
    struct spool_rd rd;
    struct spool_rec rec;
    const char *why;
    bool torn;
    cr_assert_eq(spool_rd_open(dirfd, &s, false, &rd, &why, &torn), 0);
    nrecs = 0;
    while (spool_rd_next(&rd, &rec, &why) > 0) {
        recs[nrecs].off = rec.off;
        recs[nrecs].end = rd.off;
        recs[nrecs].id = rec.id;
        nrecs++;
    }
    spool_rd_close(&rd);
    close(dirfd);
    cr_assert_gt(nrecs, 100);
    char *seg2 = tu_join(dir, "seg-00-00000002.sg");
    cr_assert_eq(access(seg2, F_OK), 0, "segment 1 is sealed");
    free(seg2);
}

static void damage(const char *name, off_t off, const void *p, size_t n)
{
    char *path = tu_join(dir, name);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, p, n, off), (ssize_t)n);
    close(fd);
    free(path);
}

static void flip(const char *name, off_t off, unsigned char bit)
{
    char *path = tu_join(dir, name);
    int fd = open(path, O_RDWR);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= bit;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
    free(path);
}

/* The ids whose records in segment 1 overlap [a, b). */
static bool hit(uint64_t id, uint64_t a, uint64_t b)
{
    for (size_t i = 0; i < nrecs; i++)
        if (recs[i].id == id && recs[i].off < b && recs[i].end > a)
            return true;
    return false;
}

/* Opens the spool (repair) and checks that exactly the messages hit by
 * [a, b) are gone; returns the report. */
static struct spool_scan_report open_and_expect(uint64_t a, uint64_t b, size_t *lost)
{
    struct spool_scan_report rep;
    struct spool *sp;
    cr_assert_eq(spool_open(dir, NULL, NULL, &rep, &sp), 0);
    spool_close(sp);
    struct tu_list l = tu_scan(dir, NULL);
    *lost = 0;
    for (int i = 0; i < NMSG; i++) {
        bool gone = hit(ids[i], a, b);
        *lost += gone;
        if (gone)
            cr_assert_null(tu_find(&l, ids[i]), "message %d was hit", i);
        else
            cr_assert_not_null(tu_find(&l, ids[i]), "message %d was not hit but is lost", i);
    }
    cr_assert_eq(l.n, NMSG - *lost);
    tu_list_free(&l);
    return rep;
}

Test(damage, a_flipped_bit_in_a_sealed_segment_costs_one_message)
{
    make_spool();
    char *seg = tu_join(dir, SEG1);
    char *kept = tu_join(dir, SEG1 ".damaged");
    off_t size = tu_fsize(seg);
    cr_assert_gt(size, 100000);
    flip(SEG1, 100000, 0x10);
    size_t lost;
    struct spool_scan_report rep = open_and_expect(100000, 100001, &lost);
    cr_assert_eq(lost, 1);
    cr_assert_eq(rep.damaged, 1);
    cr_assert_eq(rep.kept, 1);
    cr_assert_eq(rep.torn, 0);
    cr_assert_eq(tu_fsize(seg), size, "a damaged segment is never cut in the middle");
    cr_assert_eq(tu_fsize(kept), size, "the file as found is kept aside");
    char msg[1024];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), -EBADMSG, "verify still sees it");
    cr_assert(strstr(msg, SEG1 ": offset ") && strstr(msg, "damaged, "), "%s", msg);

    /* a second start: the same, and the copy kept is the first one */
    rep = open_and_expect(100000, 100001, &lost);
    cr_assert_eq(lost, 1);
    cr_assert_eq(rep.damaged, 1);
    cr_assert_eq(rep.kept, 0);

    /* salvage writes out what is left of the one message hit */
    char *out = tu_join(tmp, "salvage");
    cr_assert_eq(mkdir(out, 0700), 0);
    struct spool_salvage_report sr;
    cr_assert_eq(spool_salvage(dir, out, &sr), 0);
    cr_assert_eq(sr.damaged, 1);
    cr_assert_eq(sr.written + sr.no_envelope, 1);
    cr_assert_eq(spool_salvage(dir, out, &sr), -EEXIST, "nothing is overwritten");
    tu_rmrf(out);
    free(out);
    free(seg);
    free(kept);
}

Test(damage, a_flipped_bit_in_every_part_of_a_record)
{
    make_spool();
    char *seg = tu_join(dir, SEG1);
    size_t len;
    unsigned char *orig = tu_slurp(seg, &len);
    /* the 50th record: each header field and the payload */
    uint64_t at = recs[50].off;
    static const unsigned fields[] = {0, 2, 4, 5, 8, 15, 16, 20, 24, 60};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        tu_spit(seg, orig, len);
        char *kept = tu_join(dir, SEG1 ".damaged");
        unlink(kept);
        free(kept);
        flip(SEG1, (off_t)(at + fields[f]), 0x01);
        size_t lost;
        struct spool_scan_report rep = open_and_expect(at + fields[f], at + fields[f] + 1, &lost);
        cr_assert_eq(lost, 1, "field at %u", fields[f]);
        cr_assert_eq(rep.damaged, 1, "field at %u", fields[f]);
    }
    free(orig);
    free(seg);
}

Test(damage, a_zeroed_block_costs_the_messages_in_it)
{
    make_spool();
    static unsigned char zero[4096];
    damage(SEG1, 40960, zero, sizeof(zero));
    size_t lost;
    struct spool_scan_report rep = open_and_expect(40960, 40960 + 4096, &lost);
    cr_assert_leq(lost, 6, "%zu lost", lost);
    cr_assert_geq(lost, 3, "%zu lost", lost);
    cr_assert_eq(rep.damaged, 1);
}

Test(damage, a_zeroed_header_of_a_full_segment_loses_nothing)
{
    make_spool();
    char *seg = tu_join(dir, SEG1);
    off_t size = tu_fsize(seg);
    static unsigned char zero[SPOOL_SEG_HDR];
    damage(SEG1, 0, zero, sizeof(zero));
    size_t lost;
    struct spool_scan_report rep = open_and_expect(0, SPOOL_SEG_HDR, &lost);
    cr_assert_eq(lost, 0);
    cr_assert_eq(rep.damaged, 1);
    cr_assert_eq(tu_fsize(seg), size, "never removed");
    free(seg);
}

Test(damage, a_bad_length_in_the_first_record)
{
    make_spool();
    char *seg = tu_join(dir, SEG1);
    off_t size = tu_fsize(seg);
    flip(SEG1, SPOOL_SEG_HDR + 4 + 2, 0x20); /* 2 MiB more than it is */
    size_t lost;
    open_and_expect(SPOOL_SEG_HDR, SPOOL_SEG_HDR + 1, &lost);
    cr_assert_eq(lost, 1);
    cr_assert_eq(tu_fsize(seg), size);
    free(seg);
}

Test(damage, a_damaged_end_of_a_sealed_segment_is_kept_aside_then_cut)
{
    make_spool();
    char *seg = tu_join(dir, SEG1);
    char *kept = tu_join(dir, SEG1 ".damaged");
    off_t size = tu_fsize(seg);
    uint64_t last = recs[nrecs - 1].off;
    flip(SEG1, (off_t)last + 30, 0x04);
    size_t lost;
    struct spool_scan_report rep = open_and_expect(last, (uint64_t)size, &lost);
    cr_assert_eq(lost, 1);
    cr_assert_eq(rep.damaged, 1);
    cr_assert_eq(tu_fsize(kept), size);
    cr_assert_eq(tu_fsize(seg), (off_t)last);
    char msg[1024];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), 0, "%s", msg);
    free(seg);
    free(kept);
}

/* A sealed segment was cut to its records before its last sync: zeros at
 * its end (not the writer's pre-zeroed space, which only the segment
 * being written has) replaced records and are damage. */
Test(damage, zeros_at_the_end_of_a_sealed_segment_are_damage)
{
    make_spool();
    char *seg = tu_join(dir, SEG1);
    char *kept = tu_join(dir, SEG1 ".damaged");
    off_t size = tu_fsize(seg);
    uint64_t last = recs[nrecs - 1].off;
    static unsigned char zero[4096];
    damage(SEG1, (off_t)last, zero, (size_t)(size - (off_t)last));
    char msg[1024];
    cr_assert_eq(spool_verify(dir, msg, sizeof(msg)), -EBADMSG);
    cr_assert(strstr(msg, "damaged end of a sealed segment") != NULL, "%s", msg);
    size_t lost;
    struct spool_scan_report rep = open_and_expect(last, (uint64_t)size, &lost);
    cr_assert_eq(lost, 1);
    cr_assert_eq(rep.damaged, 1);
    cr_assert_eq(tu_fsize(kept), size);
    cr_assert_eq(tu_fsize(seg), (off_t)last);
    free(seg);
    free(kept);
}

/* A removed message whose body segment was reclaimed before the segment
 * with its COMMIT is normal: recovery says nothing about it.  The same
 * without the REMOVE is a message that does not match: counted and said. */
Test(damage, a_removed_message_without_its_body_is_not_reported)
{
    for (int removed = 0; removed < 2; removed++) {
        char *d = tu_join(tmp, removed ? "s-removed" : "s-kept");
        struct spool *sp;
        struct spool_writer *w;
        cr_assert_eq(spool_open(d, NULL, NULL, NULL, &sp), 0);
        spool_set_segment_size(sp, 64 * 1024);
        cr_assert_eq(spool_writer_create(sp, 0, &w), 0);
        struct spool_env env = tu_env(1700000000000);
        static char big[48 * 1024];
        memset(big, 'x', sizeof(big));
        struct spool_txn *t = spool_txn_begin(w, &env);
        uint64_t id = spool_txn_id(t);
        struct iovec a = {big, sizeof(big)};
        cr_assert_eq(spool_txn_append(t, &a, 1), 0);
        cr_assert_eq(spool_txn_append(t, &a, 1), 0); /* past the segment size: rotates */
        struct tu_done dn = {0};
        cr_assert_eq(spool_txn_commit(t, &a, 1, tu_done_cb, &dn), 0);
        tu_sync(w);
        cr_assert_eq(dn.res, 0);
        if (removed) {
            cr_assert_eq(spool_writer_remove(w, id), 0);
            tu_sync(w);
        }
        spool_writer_destroy(w);
        spool_close(sp);
        char *seg1 = tu_join(d, SEG1);
        /* the body's first segment goes, as a reclaim does (for the removed
         * message the spool may have done it already) */
        cr_assert(unlink(seg1) == 0 || (removed && errno == ENOENT), "%s", strerror(errno));
        struct spool_scan_report rep;
        cr_assert_eq(spool_open(d, NULL, NULL, &rep, &sp), 0);
        spool_close(sp);
        cr_assert_eq(rep.live, 0);
        cr_assert_eq(rep.mismatched, removed ? 0 : 1);
        free(seg1);
        free(d);
    }
}
