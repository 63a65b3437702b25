/*
 * NAME
 *	recover - scanning a spool: recovery, read-only scan, bodies, verify
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_scan(const char *dir, spool_scan_fn *cb, void *arg,
 *		struct spool_scan_report *rep);
 *	int spool_read_body(const char *dir, uint64_t id, int fd);
 *	int spool_verify(const char *dir, char *msg, size_t msglen);
 * DESCRIPTION
 *	Every function here reads all segments in (worker, sequence) order,
 *	each record by record.  The first record of a segment that is
 *	truncated, has a bad magic, an absurd length or a crc mismatch ends
 *	that segment: it is a torn tail (a crash cut the last write short, or
 *	pages that were never synced came back as garbage).  spool_recover()
 *	in repair mode, which spool_open() uses under the spool lock, cuts
 *	the file there and fsyncs it; the read-only functions just stop.
 *	A segment whose header never reached the disk (shorter than a header,
 *	or all zeros) is removed in repair mode.
 *
 *	A message is live iff it has a START and a COMMIT record, the DATA
 *	records between them add up to COMMIT's size and crc, at most one
 *	well-formed EDITS record sits between its DATA and COMMIT records,
 *	and no ABORT or REMOVE record names it anywhere.  spool_read_body()
 *	applies the EDITS list to the header as it copies (edits.c);
 *	spool_read_body_raw() copies what was received.  A message's records may span
 *	several segments of its worker (rotation), so the index is global.
 *	Live messages are reported in the order of their START records; the
 *	envelope is read again from disk at that point, so the index holds
 *	only a few dozen octets per message.
 * DIAGNOSTICS
 *	0 or -errno.  Torn tails are logged as warnings when repaired;
 *	spool_verify() reports the first bad record as -EBADMSG and text.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Where one DATA record's payload is (spool_read_body). */
struct body_loc {
    uint32_t seg;
    uint64_t off;
    uint32_t len;
};

struct scan {
    int dirfd;
    bool repair;
    struct spool_seg *segs;
    size_t nseg;
    struct spool_index ix;
    uint64_t only; /* spool_read_body: the one id of interest, else 0 */
    struct body_loc *locs;
    size_t nloc, loccap;
    struct body_loc edits; /* only: its EDITS payload (len 0: none) */
    struct spool_scan_report rep;
};

static int scan_loc_push(struct scan *sc, uint32_t seg, const struct spool_rec *r)
{
    if (sc->nloc == sc->loccap) {
        size_t nc = sc->loccap ? sc->loccap * 2 : 16;
        struct body_loc *nl = realloc(sc->locs, nc * sizeof(*nl));
        if (nl == NULL)
            return -ENOMEM;
        sc->locs = nl;
        sc->loccap = nc;
    }
    sc->locs[sc->nloc++] = (struct body_loc){seg, r->off + SPOOL_REC_HDR, r->len};
    return 0;
}

/* An EDITS payload that decodes: 0 with the count (saturated), or -EBADMSG. */
static int scan_edits_check(const struct spool_rec *r, uint16_t *n)
{
    struct spool_editdec d;
    int rc = spool_edits_decode(r->payload, r->len, &d);
    if (rc == -ENOMEM)
        rc = 0; /* cannot check it now; spool_read_body will */
    *n = d.n > UINT16_MAX ? UINT16_MAX : (uint16_t)d.n;
    spool_editdec_fini(&d);
    return rc;
}

static int scan_record(struct scan *sc, uint32_t seg, const struct spool_rec *r)
{
    if (r->id > sc->rep.max_id)
        sc->rep.max_id = r->id;
    if (sc->only && r->id != sc->only)
        return 0;
    struct spool_ient *e = spool_index_get(&sc->ix, r->id, true);
    if (e == NULL)
        return -ENOMEM;
    uint64_t size;
    uint32_t crc;
    switch (r->type) {
    case SPOOL_REC_START:
        if (e->flags & SPOOL_IX_START) {
            e->flags |= SPOOL_IX_BAD;
            break;
        }
        e->flags |= SPOOL_IX_START;
        e->start_seg = seg;
        e->start_off = r->off;
        e->start_len = r->len;
        break;
    case SPOOL_REC_DATA:
        if ((e->flags & (SPOOL_IX_START | SPOOL_IX_COMMIT)) != SPOOL_IX_START) {
            e->flags |= SPOOL_IX_BAD;
            break;
        }
        e->size += r->len;
        e->crc = spool_crc32c_combine(e->crc, r->pcrc, r->len);
        if (sc->only)
            return scan_loc_push(sc, seg, r);
        break;
    case SPOOL_REC_EDITS:
        if ((e->flags & (SPOOL_IX_START | SPOOL_IX_COMMIT | SPOOL_IX_EDITS)) != SPOOL_IX_START ||
            scan_edits_check(r, &e->nedits) < 0) {
            char ids[17];
            spool_id_str(r->id, ids);
            log_msg(LOG_WARN, "spool: %s: bad or misplaced EDITS record of %s: not live",
                    sc->segs[seg].name, ids);
            e->flags |= SPOOL_IX_BAD;
            break;
        }
        e->flags |= SPOOL_IX_EDITS;
        if (sc->only)
            sc->edits = (struct body_loc){seg, r->off + SPOOL_REC_HDR, r->len};
        break;
    case SPOOL_REC_COMMIT:
        if ((e->flags & (SPOOL_IX_START | SPOOL_IX_COMMIT)) != SPOOL_IX_START ||
            !spool_commit_decode(r->payload, r->len, &size, &crc) || size != e->size ||
            crc != e->crc) {
            char ids[17];
            spool_id_str(r->id, ids);
            log_msg(LOG_WARN, "spool: %s: COMMIT of %s does not match its records: not live",
                    sc->segs[seg].name, ids);
            e->flags |= SPOOL_IX_BAD;
        }
        e->flags |= SPOOL_IX_COMMIT;
        e->mflags = (uint8_t)spool_commit_flags(r->payload);
        break;
    case SPOOL_REC_ABORT:
        e->flags |= SPOOL_IX_ABORT;
        break;
    case SPOOL_REC_REMOVE:
        e->flags |= SPOOL_IX_REMOVE;
        break;
    }
    return 0;
}

/* Cuts a torn tail off (repair mode). */
static int scan_cut(struct scan *sc, const struct spool_seg *s, struct spool_rd *rd,
                    const char *why)
{
    log_msg(LOG_WARN, "spool: %s: torn tail at offset %" PRIu64 " (%s): %" PRIu64 " octets dropped",
            s->name, rd->off, why, rd->size - rd->off);
    if (ftruncate(rd->fd, (off_t)rd->off) < 0 || fsync(rd->fd) < 0) {
        int r = -errno;
        log_msg(LOG_ERROR, "spool: %s: cannot cut the torn tail: %s", s->name, strerror(-r));
        return r;
    }
    return 0;
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
    if (r == -EBADMSG) {
        spool_rd_close(&rd);
        if (!torn) {
            log_msg(LOG_ERROR, "spool: %s: %s: segment skipped", s->name, why);
            return 0;
        }
        sc->rep.torn++;
        if (!sc->repair)
            return 0;
        log_msg(LOG_WARN, "spool: %s: %s: removing a segment whose creation never completed",
                s->name, why);
        if (unlinkat(sc->dirfd, s->name, 0) < 0 || spool_fsync_dir(sc->dirfd) < 0)
            return -errno;
        return 0;
    }
    if (r < 0) {
        spool_rd_close(&rd);
        return r;
    }
    sc->rep.segments++;
    while ((r = spool_rd_next(&rd, &rec, &why)) > 0) {
        sc->rep.records++;
        r = scan_record(sc, i, &rec);
        if (r < 0)
            break;
    }
    if (r == -EBADMSG) {
        sc->rep.torn++;
        r = sc->repair ? scan_cut(sc, s, &rd, why) : 0;
    }
    spool_rd_close(&rd);
    return r;
}

static int scan_all(struct scan *sc)
{
    int r = spool_seg_list(sc->dirfd, &sc->segs, &sc->nseg);
    for (size_t i = 0; r == 0 && i < sc->nseg; i++)
        r = scan_segment(sc, (uint32_t)i);
    return r;
}

static void scan_fini(struct scan *sc)
{
    free(sc->segs);
    free(sc->locs);
    spool_index_fini(&sc->ix);
}

static int ient_cmp(const void *a, const void *b)
{
    const struct spool_ient *x = *(struct spool_ient *const *)a;
    const struct spool_ient *y = *(struct spool_ient *const *)b;
    if (x->start_seg != y->start_seg)
        return x->start_seg < y->start_seg ? -1 : 1;
    return x->start_off < y->start_off ? -1 : x->start_off > y->start_off;
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

/* Reads each live message's START record again and calls cb. */
static int scan_report_live(struct scan *sc, struct spool_ient **live, size_t n, spool_scan_fn *cb,
                            void *arg)
{
    struct spool_envdec dec = {0};
    unsigned char *buf = NULL;
    size_t bufcap = 0;
    int fd = -1, r = 0;
    uint32_t fdseg = UINT32_MAX;
    for (size_t i = 0; r == 0 && i < n; i++) {
        const struct spool_ient *e = live[i];
        if (e->start_seg != fdseg) {
            if (fd >= 0)
                close(fd);
            fdseg = e->start_seg;
            fd = openat(sc->dirfd, sc->segs[fdseg].name, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                r = -errno;
                break;
            }
        }
        if (bufcap < e->start_len) {
            unsigned char *nb = realloc(buf, e->start_len);
            if (nb == NULL) {
                r = -ENOMEM;
                break;
            }
            buf = nb;
            bufcap = e->start_len;
        }
        r = spool_pread_all(fd, buf, e->start_len, e->start_off + SPOOL_REC_HDR);
        if (r < 0)
            break;
        struct spool_msginfo m;
        memset(&m, 0, sizeof(m));
        r = spool_env_decode(buf, e->start_len, &m, &dec);
        if (r < 0)
            break;
        m.id = e->id;
        m.size = e->size;
        m.flags = e->mflags;
        m.nedits = e->nedits;
        r = cb(arg, &m);
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    spool_envdec_fini(&dec);
    return r;
}

int spool_recover(int dirfd, bool repair, spool_scan_fn *cb, void *arg,
                  struct spool_scan_report *rep, uint64_t next_seq[SPOOL_WORKERS])
{
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    sc.dirfd = dirfd;
    sc.repair = repair;
    spool_index_init(&sc.ix);
    int r = scan_all(&sc);
    struct spool_ient **live = NULL;
    size_t nlive = 0;
    if (r == 0 && sc.ix.n > 0) {
        live = malloc(sc.ix.n * sizeof(*live));
        if (live == NULL)
            r = -ENOMEM;
    }
    for (size_t i = 0; r == 0 && i < sc.ix.cap; i++) {
        struct spool_ient *e = &sc.ix.v[i];
        if (e->id == 0)
            continue;
        if (spool_ient_live(e))
            live[nlive++] = e;
        else if ((e->flags & SPOOL_IX_START) && !(e->flags & (SPOOL_IX_ABORT | SPOOL_IX_REMOVE)))
            sc.rep.incomplete++;
    }
    sc.rep.live = nlive;
    if (r == 0 && next_seq) {
        for (unsigned w = 0; w < SPOOL_WORKERS; w++)
            next_seq[w] = 1;
        for (size_t i = 0; i < sc.nseg; i++)
            if (sc.segs[i].seq + 1 > next_seq[sc.segs[i].worker])
                next_seq[sc.segs[i].worker] = sc.segs[i].seq + 1;
    }
    if (r == 0 && cb && nlive > 0) {
        qsort(live, nlive, sizeof(*live), ient_cmp);
        r = scan_report_live(&sc, live, nlive, cb, arg);
    }
    if (rep)
        *rep = sc.rep;
    free(live);
    scan_fini(&sc);
    return r;
}

static int open_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int spool_scan(const char *dir, spool_scan_fn *cb, void *arg, struct spool_scan_report *rep)
{
    if (rep)
        memset(rep, 0, sizeof(*rep));
    int dirfd = open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    int r = spool_recover(dirfd, false, cb, arg, rep, NULL);
    close(dirfd);
    return r;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_out(void *arg, const void *p, size_t n)
{
    return write_all(*(int *)arg, p, n);
}

/* The decoded EDITS list of the message sc->only, if any. */
static int body_edits(struct scan *sc, struct spool_editdec *d)
{
    memset(d, 0, sizeof(*d));
    if (sc->edits.len == 0)
        return 0;
    unsigned char *p = malloc(sc->edits.len);
    if (p == NULL)
        return -ENOMEM;
    int fd = openat(sc->dirfd, sc->segs[sc->edits.seg].name, O_RDONLY | O_CLOEXEC);
    int r = fd < 0 ? -errno : spool_pread_all(fd, p, sc->edits.len, sc->edits.off);
    if (fd >= 0)
        close(fd);
    if (r == 0)
        r = spool_edits_decode(p, sc->edits.len, d);
    free(p);
    return r;
}

/* Copies the DATA payloads of sc->locs to fd, through the edits unless raw. */
static int body_copy(struct scan *sc, int out, bool raw)
{
    enum { CHUNK = 1 << 16 };
    struct spool_editdec ed;
    struct spool_efilter ef;
    int r = raw ? 0 : body_edits(sc, &ed);
    if (r < 0)
        return r;
    if (raw)
        memset(&ed, 0, sizeof(ed));
    spool_ef_init(&ef, ed.v, ed.n, write_out, &out);
    if (ed.n == 0)
        ef.passing = true; /* nothing to apply: no need to look for the header's end */
    unsigned char *buf = malloc(CHUNK);
    if (buf == NULL) {
        spool_editdec_fini(&ed);
        return -ENOMEM;
    }
    int fd = -1;
    uint32_t fdseg = UINT32_MAX;
    for (size_t i = 0; r == 0 && i < sc->nloc; i++) {
        const struct body_loc *l = &sc->locs[i];
        if (l->seg != fdseg) {
            if (fd >= 0)
                close(fd);
            fdseg = l->seg;
            fd = openat(sc->dirfd, sc->segs[fdseg].name, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                r = -errno;
                break;
            }
        }
        for (uint32_t done = 0; r == 0 && done < l->len;) {
            size_t n = l->len - done < CHUNK ? l->len - done : CHUNK;
            r = spool_pread_all(fd, buf, n, l->off + done);
            if (r == 0)
                r = spool_ef_feed(&ef, buf, n);
            done += (uint32_t)n;
        }
    }
    if (r == 0)
        r = spool_ef_finish(&ef);
    if (fd >= 0)
        close(fd);
    spool_ef_fini(&ef);
    spool_editdec_fini(&ed);
    free(buf);
    return r;
}

static int read_body(const char *dir, uint64_t id, int fd, bool raw)
{
    if (id == 0)
        return -ENOENT;
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    spool_index_init(&sc.ix);
    sc.only = id;
    sc.dirfd = open_dir(dir);
    if (sc.dirfd < 0)
        return sc.dirfd;
    int r = scan_all(&sc);
    if (r == 0) {
        const struct spool_ient *e = spool_index_get(&sc.ix, id, false);
        r = e && spool_ient_live(e) ? body_copy(&sc, fd, raw) : -ENOENT;
    }
    close(sc.dirfd);
    scan_fini(&sc);
    return r;
}

int spool_read_body(const char *dir, uint64_t id, int fd)
{
    return read_body(dir, id, fd, false);
}

int spool_read_body_raw(const char *dir, uint64_t id, int fd)
{
    return read_body(dir, id, fd, true);
}

int spool_verify(const char *dir, char *msg, size_t msglen)
{
    if (msglen)
        msg[0] = '\0';
    int dirfd = open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    struct spool_seg *segs;
    size_t nseg;
    uint64_t nrec = 0;
    int r = spool_seg_list(dirfd, &segs, &nseg);
    for (size_t i = 0; r == 0 && i < nseg; i++) {
        struct spool_rd rd;
        struct spool_rec rec;
        const char *why;
        bool torn;
        r = spool_rd_open(dirfd, &segs[i], false, &rd, &why, &torn);
        if (r == -ENOENT) {
            spool_rd_close(&rd);
            r = 0;
            continue;
        }
        if (r == -EBADMSG)
            snprintf(msg, msglen, "%s: offset 0: %s", segs[i].name, why);
        while (r == 0 && (r = spool_rd_next(&rd, &rec, &why)) > 0) {
            nrec++;
            r = 0;
        }
        if (r == -EBADMSG && rd.off > 0)
            snprintf(msg, msglen, "%s: offset %" PRIu64 ": %s", segs[i].name, rd.off, why);
        spool_rd_close(&rd);
    }
    if (r == 0)
        snprintf(msg, msglen, "%zu segments, %" PRIu64 " records: ok", nseg, nrec);
    free(segs);
    close(dirfd);
    return r;
}
