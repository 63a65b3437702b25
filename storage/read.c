/*
 * NAME
 *	read - a stored body to a descriptor, and checking every record
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_read_body(const char *dir, uint64_t id, int fd);
 *	int spool_read_body_raw(const char *dir, uint64_t id, int fd);
 *	int spool_verify(const char *dir, char *msg, size_t msglen);
 * DESCRIPTION
 *	spool_read_body() scans the spool for the one id (recover.c, the
 *	same liveness rules), then copies its DATA payloads through the edit
 *	filter (edits.c) to fd; spool_read_body_raw() copies what was
 *	received.  spool_verify() reads every record of every segment and
 *	names every damaged region, resynchronising as recovery does.
 * DIAGNOSTICS
 *	0 or -errno; -ENOENT for a message that is not live; spool_verify()
 *	returns -EBADMSG when anything is damaged, a line per problem in msg.
 */
#include "storage/scan_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    sc.dirfd = scan_open_dir(dir);
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

/* Appends one line to msg (what does not fit is cut; the count still holds). */
static void verify_line(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void verify_line(char *msg, size_t msglen, const char *fmt, ...)
{
    size_t n = strlen(msg);
    if (n + 1 >= msglen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, msglen - n, fmt, ap);
    va_end(ap);
}

/* Checks one segment, resynchronising past every damaged region as
 * recovery does; each problem is a line of msg.  Adds to *nrec, *nbad. */
static int verify_segment(int dirfd, const struct spool_seg *s, bool last, char *msg,
                          size_t msglen, uint64_t *nrec, uint64_t *nbad)
{
    struct spool_rd rd;
    struct spool_rec rec;
    const char *why;
    bool torn;
    int r = spool_rd_open(dirfd, s, false, &rd, &why, &torn);
    if (r == -ENOENT) {
        spool_rd_close(&rd);
        return 0;
    }
    if (r == -EBADMSG) {
        (*nbad)++;
        r = rd.size > SPOOL_SEG_HDR ? spool_rd_resync(&rd, SPOOL_SEG_HDR) : 0;
        verify_line(msg, msglen, "%s: offset 0: %s%s\n", s->name, why,
                    r > 0 ? " (records follow: recovery reads them)" : "");
        if (r <= 0) {
            spool_rd_close(&rd);
            return r;
        }
    }
    for (;;) {
        while ((r = spool_rd_next(&rd, &rec, &why)) > 0)
            (*nrec)++;
        if (r == 0 && rd.zero_tail > 0 && !last) {
            /* pre-zeroed space is the end of the last segment only */
            rd.size += rd.zero_tail;
            rd.zero_tail = 0;
            r = -EBADMSG;
            why = "zeros at the end of a sealed segment";
        }
        if (r != -EBADMSG)
            break;
        uint64_t bad = rd.off;
        (*nbad)++;
        r = spool_rd_resync(&rd, bad);
        if (r > 0) {
            verify_line(msg, msglen,
                        "%s: offset %" PRIu64 ": %s: damaged, %" PRIu64
                        " octets skipped to the next record at %" PRIu64 "\n",
                        s->name, bad, why, rd.off - bad, rd.off);
            continue;
        }
        if (r == 0)
            verify_line(msg, msglen, "%s: offset %" PRIu64 ": %s: %s, %" PRIu64 " octets\n",
                        s->name, bad, why,
                        last ? "torn tail (being written, or a crash)"
                             : "damaged end of a sealed segment",
                        rd.size - bad);
        break;
    }
    spool_rd_close(&rd);
    return r;
}

int spool_verify(const char *dir, char *msg, size_t msglen)
{
    if (msglen)
        msg[0] = '\0';
    int dirfd = scan_open_dir(dir);
    if (dirfd < 0)
        return dirfd;
    struct spool_seg *segs;
    size_t nseg;
    uint64_t nrec = 0, nbad = 0;
    int r = spool_seg_list(dirfd, &segs, &nseg);
    for (size_t i = 0; r == 0 && i < nseg; i++) {
        bool last = i + 1 == nseg || segs[i + 1].worker != segs[i].worker;
        r = verify_segment(dirfd, &segs[i], last, msg, msglen, &nrec, &nbad);
    }
    if (r == 0)
        verify_line(msg, msglen, "%zu segments, %" PRIu64 " records: %s", nseg, nrec,
                    nbad ? "damaged" : "ok");
    if (r == 0 && nbad)
        r = -EBADMSG;
    free(segs);
    close(dirfd);
    return r;
}
