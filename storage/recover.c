/*
 * NAME
 *	recover - scanning a spool: recovery and the read-only scan
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_scan(const char *dir, spool_scan_fn *cb, void *arg,
 *		struct spool_scan_report *rep);
 * DESCRIPTION
 *	Every scan reads all segments in (worker, sequence) order, each
 *	record by record.  A record that is truncated, has a bad magic, an
 *	absurd length or a crc mismatch is damage unless nothing valid
 *	follows it: the reader resynchronises on the next record that passes
 *	every check and reads on, so one flipped bit costs the records it
 *	hit, never the rest of the segment (logged at error level, counted
 *	in the report, and in repair mode the file as found is kept aside as
 *	NAME.damaged).  A bad record with no valid one after it is a torn
 *	tail: in the last segment of a worker (the one being written when
 *	the process died) a crash cut the last write short or unsynced pages
 *	came back as garbage, and repair mode cuts the file there; at the end
 *	of a sealed segment (synced whole before its successor was made) it
 *	is damage, kept aside before the cut.  Zeros from a record boundary
 *	to the end of the last segment of a worker are the writer's
 *	pre-zeroed space (writer.c): the end, neither torn nor damage, cut
 *	off in repair mode; at the end of a sealed segment (cut to its
 *	records at rotation) they are damage like any other bad end.  A segment whose header never
 *	reached the disk (shorter than a header, or all zeros with no valid
 *	record after it) is removed in repair mode; a damaged header with
 *	records after it is read by its name.
 *
 *	A message is live iff a copy of it has a START and a COMMIT record,
 *	the DATA records between them add up to COMMIT's size and crc, at
 *	most one well-formed EDITS record sits between its DATA and COMMIT
 *	records, and no ABORT or REMOVE record names it anywhere.  A
 *	message's records may span several segments of its worker
 *	(rotation), so the index is global.  Compaction may leave a second
 *	complete copy of a message (same id) in another segment when it
 *	crashed before the old segment went: copies never interleave in
 *	reading order, so a START after a complete copy begins another one,
 *	and the copy with the higher generation (COMMIT's top octet) wins.
 *	A START after an incomplete copy drops that copy.
 *
 *	STATE records may be in any segment of any worker, before or after
 *	their message in reading order: they are kept aside and folded once
 *	everything is read (recover_live.c), and ignored for ids that are
 *	not live.  Live messages are reported in the order of their START
 *	records; the envelope is read again from disk at that point.
 * DIAGNOSTICS
 *	0 or -errno.  Torn tails are logged as warnings when repaired.
 */
#include "storage/scan_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/log.h"

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *nv = realloc(*v, nc * size);
    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}

static int scan_loc_push(struct scan *sc, uint32_t seg, const struct spool_rec *r)
{
    if (grow((void **)&sc->locs, &sc->loccap, sc->nloc + 1, sizeof(*sc->locs)) < 0)
        return -ENOMEM;
    sc->locs[sc->nloc++] = (struct body_loc){seg, r->off + SPOOL_REC_HDR, r->len};
    return 0;
}

/* Appends a node; its index + 1, or 0 out of memory. */
static uint32_t scan_node(struct scan *sc, uint32_t seg, uint64_t off, uint32_t len)
{
    if (sc->nx >= UINT32_MAX - 1 ||
        grow((void **)&sc->x, &sc->xcap, sc->nx + 1, sizeof(*sc->x)) < 0)
        return 0;
    sc->x[sc->nx++] = (struct scan_xnode){off, seg, len, 0};
    return (uint32_t)sc->nx;
}

/* Remembers that seg holds body records of e (any copy). */
static int scan_body_seg(struct scan *sc, struct spool_ient *e, uint32_t seg)
{
    if (!sc->full || e->seg_last == seg + 1)
        return 0;
    uint32_t k = scan_node(sc, seg, 0, 0);
    if (k == 0)
        return -ENOMEM;
    sc->x[k - 1].next = e->seg_head;
    e->seg_head = k;
    e->seg_last = seg + 1;
    return 0;
}

/* An EDITS payload that decodes: 0 with the count (saturated), or -EBADMSG. */
static int scan_edits_check(const struct spool_rec *r, uint16_t *n)
{
    struct spool_editdec d;
    int rc = spool_edits_decode(r->payload, r->len, &d);
    if (rc == -ENOMEM)
        rc = 0; /* cannot check it now; reading the body will */
    *n = d.n > UINT16_MAX ? UINT16_MAX : (uint16_t)d.n;
    spool_editdec_fini(&d);
    return rc;
}

/* A START for an id that already has one: a second copy (see DESCRIPTION). */
static int scan_second_start(struct scan *sc, struct spool_ient *e)
{
    bool complete = (e->c.flags & (SPOOL_IX_COMMIT | SPOOL_IX_BAD)) == SPOOL_IX_COMMIT;
    if (sc->only) {
        if (complete) {
            sc->skip_copy = true;
            return 1;
        }
        sc->nloc = 0;
        sc->edits.len = 0;
    } else if (complete) {
        if (e->dup == 0) {
            if (grow((void **)&sc->dups, &sc->dupcap, sc->ndup + 1, sizeof(*sc->dups)) < 0)
                return -ENOMEM;
            sc->dups[sc->ndup++] = e->c;
            e->dup = (uint32_t)sc->ndup;
        } else if (e->c.gen >= sc->dups[e->dup - 1].gen) {
            sc->dups[e->dup - 1] = e->c; /* a third copy: keep the best two */
        }
    }
    memset(&e->c, 0, sizeof(e->c));
    return 0;
}

static int scan_state_rec(struct scan *sc, uint32_t seg, const struct spool_rec *r)
{
    if (!sc->full)
        return 0;
    if (grow((void **)&sc->st, &sc->stcap, sc->nst + 1, sizeof(*sc->st)) < 0 ||
        grow((void **)&sc->pool, &sc->poolcap, sc->npool + r->len, 1) < 0)
        return -ENOMEM;
    uint64_t seq = spool_get64(r->payload);
    memcpy(sc->pool + sc->npool, r->payload, r->len);
    sc->st[sc->nst++] = (struct scan_state){r->id, seq, sc->npool, seg, r->len, false};
    sc->npool += r->len;
    if (seq > sc->max_seq)
        sc->max_seq = seq;
    return 0;
}

/* A copy whose records do not match: remembered, and said at the end of
 * the scan (scan_say_mismatches) only if the id was neither removed nor
 * aborted -- a removed message whose body segments were reclaimed before
 * the segment with its COMMIT is the normal case, not worth a word. */
static void scan_bad(struct scan *sc, struct spool_ient *e, uint32_t seg)
{
    (void)sc;
    e->flags |= SPOOL_IX_MISMATCH;
    e->c.commit_seg = seg;
}

static void scan_say_mismatches(struct scan *sc)
{
    if (sc->only)
        return;
    for (size_t i = 0; i < sc->ix.cap; i++) {
        struct spool_ient *e = &sc->ix.v[i];
        if (e->id == 0 || !(e->flags & SPOOL_IX_MISMATCH) ||
            (e->flags & (SPOOL_IX_ABORT | SPOOL_IX_REMOVE)) || spool_ient_live(e))
            continue;
        char ids[17];
        spool_id_str(e->id, ids);
        sc->rep.mismatched++;
        log_msg(LOG_WARN, "spool: %s: %s: its records do not match its COMMIT: not live",
                sc->segs[e->c.commit_seg].name, ids);
    }
}

static int scan_record(struct scan *sc, uint32_t seg, const struct spool_rec *r)
{
    if (r->id > sc->rep.max_id)
        sc->rep.max_id = r->id;
    if (sc->only && r->id != sc->only)
        return 0;
    if (r->type == SPOOL_REC_STATE)
        return scan_state_rec(sc, seg, r);
    struct spool_ient *e = spool_index_get(&sc->ix, r->id, true);
    if (e == NULL)
        return -ENOMEM;
    struct spool_icopy *c = &e->c;
    uint64_t size;
    uint32_t crc;
    int rc;
    if (r->type == SPOOL_REC_DATA || r->type == SPOOL_REC_EDITS || r->type == SPOOL_REC_COMMIT)
        c->rbytes += SPOOL_REC_SIZE(r->len); /* START: below */
    if (sc->skip_copy && r->type != SPOOL_REC_ABORT && r->type != SPOOL_REC_REMOVE) {
        if (r->type == SPOOL_REC_COMMIT)
            sc->skip_copy = false;
        return 0;
    }
    switch (r->type) {
    case SPOOL_REC_START:
        if ((c->flags & SPOOL_IX_START) && (rc = scan_second_start(sc, e)) != 0)
            return rc < 0 ? rc : 0;
        c->flags |= SPOOL_IX_START;
        c->rbytes = SPOOL_REC_SIZE(r->len);
        c->start_seg = seg;
        c->start_off = r->off;
        c->start_len = r->len;
        return scan_body_seg(sc, e, seg);
    case SPOOL_REC_DATA:
        if ((c->flags & (SPOOL_IX_START | SPOOL_IX_COMMIT)) != SPOOL_IX_START) {
            c->flags |= SPOOL_IX_BAD;
            break;
        }
        c->size += r->len;
        c->crc = spool_crc32c_combine(c->crc, r->pcrc, r->len);
        if (sc->only)
            return scan_loc_push(sc, seg, r);
        if (sc->full) {
            uint32_t k = scan_node(sc, seg, r->off + SPOOL_REC_HDR, r->len);
            if (k == 0)
                return -ENOMEM;
            if (c->ext_tail)
                sc->x[c->ext_tail - 1].next = k;
            else
                c->ext_head = k;
            c->ext_tail = k;
        }
        return scan_body_seg(sc, e, seg);
    case SPOOL_REC_EDITS:
        if ((c->flags & (SPOOL_IX_START | SPOOL_IX_COMMIT | SPOOL_IX_EDITS)) != SPOOL_IX_START ||
            scan_edits_check(r, &c->nedits) < 0) {
            scan_bad(sc, e, seg);
            c->flags |= SPOOL_IX_BAD;
            break;
        }
        c->flags |= SPOOL_IX_EDITS;
        c->edits_seg = seg;
        c->edits_off = r->off + SPOOL_REC_HDR;
        c->edits_len = r->len;
        if (sc->only)
            sc->edits = (struct body_loc){seg, r->off + SPOOL_REC_HDR, r->len};
        return scan_body_seg(sc, e, seg);
    case SPOOL_REC_COMMIT:
        if ((c->flags & (SPOOL_IX_START | SPOOL_IX_COMMIT)) != SPOOL_IX_START ||
            !spool_commit_decode(r->payload, r->len, &size, &crc) || size != c->size ||
            crc != c->crc) {
            scan_bad(sc, e, seg);
            c->flags |= SPOOL_IX_BAD;
        }
        c->flags |= SPOOL_IX_COMMIT;
        e->flags |= SPOOL_IX_COMMITTED;
        uint32_t fl = spool_commit_flags(r->payload);
        c->mflags = (uint8_t)(fl & 0xff);
        c->gen = (uint8_t)(fl >> SPOOL_GEN_SHIFT);
        c->commit_seg = seg;
        return scan_body_seg(sc, e, seg);
    case SPOOL_REC_ABORT:
    case SPOOL_REC_REMOVE:
        e->flags |= r->type == SPOOL_REC_ABORT ? SPOOL_IX_ABORT : SPOOL_IX_REMOVE;
        if (sc->full) {
            if (grow((void **)&sc->rm, &sc->rmcap, sc->nrm + 1, sizeof(*sc->rm)) < 0)
                return -ENOMEM;
            sc->rm[sc->nrm++] = (struct scan_rm){r->id, seg};
        }
        break;
    }
    return 0;
}

/* Cuts the file at rd->off (repair mode). */
static int scan_cut(struct scan *sc, const struct spool_seg *s, struct spool_rd *rd)
{
    if (ftruncate(rd->fd, (off_t)rd->off) < 0 || fsync(rd->fd) < 0) {
        int r = -errno;
        log_msg(LOG_ERROR, "spool: %s: cannot cut the file at offset %" PRIu64 ": %s", s->name,
                rd->off, strerror(-r));
        return r;
    }
    return 0;
}

/* Repair mode: the segment as it is now, kept aside as NAME.damaged (a
 * name no listing takes for a segment) before anything of it is cut or
 * skipped; an existing copy is the older original and stays. */
static void scan_keep_aside(struct scan *sc, const struct spool_seg *s, int fd, uint64_t size)
{
    char name[SPOOL_SEG_NAME_LEN + 16];
    snprintf(name, sizeof(name), "%s.damaged", s->name);
    if (!sc->repair)
        return;
    int out = openat(sc->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        if (errno != EEXIST)
            log_msg(LOG_ERROR, "spool: %s: cannot keep a copy as %s: %s", s->name, name,
                    strerror(errno));
        return;
    }
    loff_t in_off = 0;
    int r = 0;
    while ((uint64_t)in_off < size) {
        ssize_t k = copy_file_range(fd, &in_off, out, NULL, size - (uint64_t)in_off, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            r = k < 0 ? -errno : -EIO;
            break;
        }
    }
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    close(out);
    if (r == 0)
        r = spool_fsync_dir(sc->dirfd);
    if (r < 0) {
        log_msg(LOG_ERROR, "spool: %s: cannot keep a copy as %s: %s", s->name, name,
                strerror(-r));
        unlinkat(sc->dirfd, name, 0);
        return;
    }
    sc->rep.kept++;
    log_msg(LOG_ERROR, "spool: %s: the file as found is kept as %s", s->name, name);
}

/* A bad record at rd->off: resynchronise on the next valid record (a
 * damaged region: skipped, the segment kept whole), or the rest of the
 * file holds none (a torn tail: the last segment of a worker, being
 * written when the process died, is cut; a sealed segment, which was
 * synced whole before its successor was made, is damaged at its end and
 * is copied aside first).  1: go on reading, 0: end, -errno. */
static int scan_bad_record(struct scan *sc, uint32_t i, struct spool_rd *rd, const char *why)
{
    const struct spool_seg *s = &sc->segs[i];
    bool last = i + 1 == sc->nseg || sc->segs[i + 1].worker != s->worker;
    uint64_t bad = rd->off;
    int r = spool_rd_resync(rd, bad);
    if (r < 0)
        return r;
    if (r > 0) {
        sc->rep.damaged++;
        sc->rep.damaged_octets += rd->off - bad;
        sc->unreadable = true; /* what it held may have guarded others */
        log_msg(LOG_ERROR,
                "spool: %s: damaged record at offset %" PRIu64 " (%s): %" PRIu64
                " octets skipped, reading on at offset %" PRIu64,
                s->name, bad, why, rd->off - bad, rd->off);
        scan_keep_aside(sc, s, rd->fd, rd->size);
        return 1;
    }
    sc->rep.torn++;
    if (last) {
        if (sc->repair)
            log_msg(LOG_WARN,
                    "spool: %s: torn tail at offset %" PRIu64 " (%s): %" PRIu64
                    " octets dropped",
                    s->name, bad, why, rd->size - bad);
    } else {
        sc->rep.damaged++;
        sc->rep.damaged_octets += rd->size - bad;
        log_msg(LOG_ERROR,
                "spool: %s: damaged end of a sealed segment at offset %" PRIu64 " (%s): %" PRIu64
                " octets hold no valid record",
                s->name, bad, why, rd->size - bad);
        scan_keep_aside(sc, s, rd->fd, rd->size);
    }
    return sc->repair ? scan_cut(sc, s, rd) : 0;
}

/* A segment whose header is bad.  One never completely created (shorter
 * than a header, or a zero header and not one valid record after it) is
 * removed in repair mode; one whose header is damaged but whose records
 * can be found is read from them (its worker and sequence come from its
 * name); one with a valid header of a version this reader does not know
 * is skipped, never removed.  1: read the records from rd->off, 0: done. */
static int scan_bad_header(struct scan *sc, uint32_t i, struct spool_rd *rd, const char *why,
                           bool torn)
{
    const struct spool_seg *s = &sc->segs[i];
    int r = 0;
    if (rd->size > SPOOL_SEG_HDR && why != spool_why_version && why != spool_why_name)
        r = spool_rd_resync(rd, SPOOL_SEG_HDR);
    if (r < 0)
        return r;
    if (r > 0) {
        sc->rep.damaged++;
        sc->rep.damaged_octets += rd->off;
        log_msg(LOG_ERROR,
                "spool: %s: %s: damaged segment header, reading its records from offset %" PRIu64,
                s->name, why, rd->off);
        scan_keep_aside(sc, s, rd->fd, rd->size);
        return 1;
    }
    if (!torn) {
        log_msg(LOG_ERROR, "spool: %s: %s: segment skipped", s->name, why);
        sc->segstate[i] = SCAN_SEG_UNREADABLE;
        sc->segsize[i] = rd->size;
        sc->unreadable = true;
        return 0;
    }
    sc->rep.torn++;
    if (!sc->repair)
        return 0;
    log_msg(LOG_WARN, "spool: %s: %s: removing a segment whose creation never completed", s->name,
            why);
    if (unlinkat(sc->dirfd, s->name, 0) < 0 || spool_fsync_dir(sc->dirfd) < 0)
        return -errno;
    return 0;
}

/* Zeros ended segment i (the writer's pre-zeroed tail, segment.c).  In
 * the last segment of a worker that is the end of what was written; a
 * sealed segment was cut to its records before it was synced at
 * rotation, so zeros at its end replaced records: damage.  True for
 * damage (rd's size is given its zeros back for scan_bad_record). */
static bool scan_zero_tail(struct scan *sc, uint32_t i, struct spool_rd *rd)
{
    const struct spool_seg *s = &sc->segs[i];
    if (i + 1 == sc->nseg || sc->segs[i + 1].worker != s->worker)
        return false;
    rd->size += rd->zero_tail;
    rd->zero_tail = 0;
    return true;
}

static int scan_segment(struct scan *sc, uint32_t i)
{
    const struct spool_seg *s = &sc->segs[i];
    struct spool_rd rd;
    struct spool_rec rec;
    const char *why;
    bool torn;
    int r = spool_rd_open(sc->dirfd, s, sc->repair, &rd, &why, &torn);
    if (r == -ENOENT) /* removed since the listing */
        return 0;
    if (r == -EBADMSG && (r = scan_bad_header(sc, i, &rd, why, torn)) <= 0) {
        spool_rd_close(&rd);
        return r;
    }
    if (r < 0) {
        spool_rd_close(&rd);
        return r;
    }
    sc->rep.segments++;
    sc->segstate[i] = SCAN_SEG_READ;
    for (;;) {
        while ((r = spool_rd_next(&rd, &rec, &why)) > 0) {
            sc->rep.records++;
            r = scan_record(sc, i, &rec);
            if (r < 0)
                break;
        }
        if (r == 0 && rd.zero_tail > 0 && scan_zero_tail(sc, i, &rd)) {
            r = -EBADMSG;
            why = "zeros at the end of a sealed segment";
        }
        if (r != -EBADMSG || (r = scan_bad_record(sc, i, &rd, why)) <= 0)
            break;
    }
    if (r == 0 && rd.zero_tail > 0 && sc->repair)
        r = scan_cut(sc, s, &rd); /* give the pre-zeroed space back */
    sc->segsize[i] = rd.off; /* the end, or where a torn tail was cut */
    spool_rd_close(&rd);
    return r;
}

/* Settles every id with two complete copies on one (see DESCRIPTION). */
static void scan_settle_dups(struct scan *sc)
{
    if (sc->ndup == 0)
        return;
    for (size_t i = 0; i < sc->ix.cap; i++) {
        struct spool_ient *e = &sc->ix.v[i];
        if (e->id == 0 || e->dup == 0)
            continue;
        const struct spool_icopy *d = &sc->dups[e->dup - 1];
        bool ok = (e->c.flags & (SPOOL_IX_START | SPOOL_IX_COMMIT | SPOOL_IX_BAD)) ==
                  (SPOOL_IX_START | SPOOL_IX_COMMIT);
        if (!ok || d->gen > e->c.gen)
            e->c = *d;
    }
}

int scan_all(struct scan *sc)
{
    int r = spool_seg_list(sc->dirfd, &sc->segs, &sc->nseg);
    if (r < 0)
        return r;
    size_t n = sc->nseg ? sc->nseg : 1;
    sc->segsize = calloc(n, sizeof(*sc->segsize));
    sc->segstate = calloc(n, sizeof(*sc->segstate));
    sc->fh = calloc(n, sizeof(*sc->fh));
    if (sc->segsize == NULL || sc->segstate == NULL || sc->fh == NULL)
        return -ENOMEM;
    for (size_t i = 0; r == 0 && i < sc->nseg; i++)
        r = scan_segment(sc, (uint32_t)i);
    if (r == 0) {
        scan_settle_dups(sc);
        scan_say_mismatches(sc);
    }
    return r;
}

void scan_fini(struct scan *sc)
{
    scan_fh_fini(sc);
    free(sc->segs);
    free(sc->segsize);
    free(sc->segstate);
    free(sc->fh);
    free(sc->locs);
    free(sc->x);
    free(sc->st);
    free(sc->pool);
    free(sc->rm);
    free(sc->dups);
    spool_index_fini(&sc->ix);
}

int spool_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EIO; /* shorter than its records say */
        got += (size_t)k;
    }
    return 0;
}

static int st_cmp(const void *a, const void *b)
{
    const struct scan_state *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->seg < y->seg ? -1 : x->seg > y->seg;
}

/* Sorts the STATE records by (id, seq) and marks one of each set of
 * copies (same id and seq: compaction copied it) to be accounted: the
 * one next to the message's kept START, else the last. */
static void scan_sort_states(struct scan *sc)
{
    if (sc->nst > 1)
        qsort(sc->st, sc->nst, sizeof(*sc->st), st_cmp);
    for (size_t i = 0; i < sc->nst;) {
        size_t j = i + 1, pick = i;
        while (j < sc->nst && sc->st[j].id == sc->st[i].id && sc->st[j].seq == sc->st[i].seq)
            j++;
        pick = j - 1;
        if (j - i > 1) {
            const struct spool_ient *e = spool_index_get(&sc->ix, sc->st[i].id, false);
            for (size_t k = i; e && k < j; k++)
                if (sc->st[k].seg == e->c.start_seg)
                    pick = k;
        }
        for (size_t k = i; k < j; k++)
            sc->st[k].keep = k == pick;
        i = j;
    }
}

static int recover_run(struct scan *sc, spool_scan_fn *cb, void *arg, struct spool_scan_report *rep,
                       uint64_t next_seq[SPOOL_WORKERS])
{
    spool_index_init(&sc->ix);
    sc->full = cb != NULL || sc->sp != NULL;
    int r = scan_all(sc);
    struct spool_ient **live = NULL;
    size_t nlive = 0;
    if (r == 0 && sc->ix.n > 0) {
        live = malloc(sc->ix.n * sizeof(*live));
        if (live == NULL)
            r = -ENOMEM;
    }
    for (size_t i = 0; r == 0 && i < sc->ix.cap; i++) {
        struct spool_ient *e = &sc->ix.v[i];
        if (e->id == 0)
            continue;
        if (spool_ient_live(e)) {
            live[nlive++] = e;
            sc->rep.live_bytes += e->c.rbytes;
        } else if ((e->c.flags & SPOOL_IX_START) &&
                   !(e->flags & (SPOOL_IX_ABORT | SPOOL_IX_REMOVE)))
            sc->rep.incomplete++;
    }
    sc->rep.live = nlive;
    if (r == 0 && next_seq) {
        for (unsigned w = 0; w < SPOOL_WORKERS; w++)
            next_seq[w] = 1;
        for (size_t i = 0; i < sc->nseg; i++)
            if (sc->segs[i].seq + 1 > next_seq[sc->segs[i].worker])
                next_seq[sc->segs[i].worker] = sc->segs[i].seq + 1;
    }
    if (r == 0)
        scan_sort_states(sc);
    for (size_t i = 0; r == 0 && i < sc->nst; i++) {
        const struct spool_ient *e = spool_index_get(&sc->ix, sc->st[i].id, false);
        if (e && spool_ient_live(e) && sc->st[i].keep)
            sc->rep.live_bytes += SPOOL_REC_SIZE(sc->st[i].len);
    }
    if (r == 0 && sc->sp) {
        scan_build_acct(sc, live, nlive);
        /* relaxed: no writer exists yet */
        atomic_store_explicit(&sc->sp->state_seq, sc->max_seq + 1, memory_order_relaxed);
    }
    if (r == 0 && cb && nlive > 0)
        r = scan_report_live(sc, live, nlive, cb, arg);
    if (rep)
        *rep = sc->rep;
    free(live);
    scan_fini(sc);
    return r;
}

int spool_recover(int dirfd, bool repair, spool_scan_fn *cb, void *arg,
                  struct spool_scan_report *rep, uint64_t next_seq[SPOOL_WORKERS])
{
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    sc.dirfd = dirfd;
    sc.repair = repair;
    return recover_run(&sc, cb, arg, rep, next_seq);
}

int spool_recover_open(struct spool *sp, spool_scan_fn *cb, void *arg,
                       struct spool_scan_report *rep)
{
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    sc.dirfd = sp->dirfd;
    sc.repair = true;
    sc.sp = sp;
    return recover_run(&sc, cb, arg, rep, sp->next_seq);
}

int scan_open_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int spool_scan(const char *dir, spool_scan_fn *cb, void *arg, struct spool_scan_report *rep)
{
    if (rep)
        memset(rep, 0, sizeof(*rep));
    int dirfd = scan_open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    int r = spool_recover(dirfd, false, cb, arg, rep, NULL);
    close(dirfd);
    return r;
}
