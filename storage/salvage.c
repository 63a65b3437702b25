/*
 * NAME
 *	salvage - what damage left of messages that are no longer whole
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_salvage(const char *dir, const char *outdir,
 *		struct spool_salvage_report *rep);
 * DESCRIPTION
 *	Scans the spool read-only (recover.c, reading on past damaged
 *	regions) and, for every message that has a readable START record
 *	but is not live and was neither aborted nor removed, writes what is
 *	left of it into outdir (which must exist): ID.env, its envelope and
 *	why it is not live as "key value" lines, and ID.eml, the DATA
 *	records that could still be read, in order, as received.  Those are
 *	messages whose records damage hit (their COMMIT no longer matches),
 *	and messages never committed (a client that went away during DATA,
 *	or a damaged COMMIT): the operator decides, from the reason and the
 *	octets found against the octets committed, which to send again.
 *	A message whose START record was hit has no envelope left and is
 *	only counted.
 * DIAGNOSTICS
 *	0 or -errno (-EEXIST when a file to write exists already).
 */
#include "storage/scan_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int salvage_open(int outfd, uint64_t id, const char *ext, FILE **f)
{
    char name[32];
    spool_id_str(id, name);
    strcat(name, ext);
    int fd = openat(outfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    *f = fdopen(fd, "w");
    if (*f == NULL) {
        int r = -errno;
        close(fd);
        return r;
    }
    return 0;
}

static int salvage_close(FILE *f)
{
    int r = fflush(f) != 0 || fsync(fileno(f)) < 0 ? -errno : 0;
    if (fclose(f) != 0 && r == 0)
        r = -errno;
    return r;
}

/* Reads the payload at (seg, off, len) of the scan into buf (len octets). */
static int salvage_pread(struct scan *sc, uint32_t seg, uint64_t off, uint32_t len,
                         unsigned char *buf)
{
    int fd = openat(sc->dirfd, sc->segs[seg].name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = spool_pread_all(fd, buf, len, off);
    close(fd);
    return r;
}

/* The DATA payloads of e's copy to ID.eml; *got their octets. */
static int salvage_body(struct scan *sc, int outfd, const struct spool_ient *e, uint64_t *got)
{
    FILE *f;
    int r = salvage_open(outfd, e->id, ".eml", &f);
    if (r < 0)
        return r;
    *got = 0;
    for (uint32_t k = e->c.ext_head; r == 0 && k != 0; k = sc->x[k - 1].next) {
        const struct scan_xnode *n = &sc->x[k - 1];
        unsigned char *buf = malloc(n->len ? n->len : 1);
        if (buf == NULL) {
            r = -ENOMEM;
            break;
        }
        r = salvage_pread(sc, n->seg, n->off, n->len, buf);
        if (r == 0 && fwrite(buf, 1, n->len, f) != n->len)
            r = -EIO;
        free(buf);
        *got += n->len;
    }
    int c = salvage_close(f);
    return r < 0 ? r : c;
}

static int salvage_one(struct scan *sc, int outfd, const struct spool_ient *e)
{
    const struct spool_icopy *c = &e->c;
    unsigned char *p = malloc(c->start_len);
    if (p == NULL)
        return -ENOMEM;
    struct spool_msginfo m;
    struct spool_envdec d;
    memset(&m, 0, sizeof(m));
    memset(&d, 0, sizeof(d));
    int r = salvage_pread(sc, c->start_seg, c->start_off + SPOOL_REC_HDR, c->start_len, p);
    if (r == 0)
        r = spool_env_decode(p, c->start_len, &m, &d);
    free(p);
    uint64_t got = 0;
    if (r == 0)
        r = salvage_body(sc, outfd, e, &got);
    FILE *f = NULL;
    if (r == 0)
        r = salvage_open(outfd, e->id, ".env", &f);
    if (r == 0) {
        char ids[17];
        spool_id_str(e->id, ids);
        fprintf(f, "id %s\nreason %s\narrival_ms %" PRId64 "\nclient %s\nhelo %s\nsender <%s>\n",
                ids,
                (c->flags & SPOOL_IX_BAD) ? "its records do not match its COMMIT (damaged)"
                                          : "never committed (a transfer cut off, or its COMMIT "
                                            "damaged)",
                m.arrival_ms, m.client, m.helo, m.sender);
        for (uint32_t i = 0; i < m.nrcpt; i++)
            fprintf(f, "rcpt <%s>\n", m.rcpts[i]);
        fprintf(f, "body_octets_found %" PRIu64 "\n", got);
        r = salvage_close(f);
    }
    spool_envdec_fini(&d);
    return r;
}

int spool_salvage(const char *dir, const char *outdir, struct spool_salvage_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    int outfd = open(outdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (outfd < 0)
        return -errno;
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    spool_index_init(&sc.ix);
    sc.full = true;
    sc.dirfd = scan_open_dir(dir);
    int r = sc.dirfd < 0 ? sc.dirfd : scan_all(&sc);
    for (size_t i = 0; r == 0 && i < sc.ix.cap; i++) {
        const struct spool_ient *e = &sc.ix.v[i];
        if (e->id == 0 || spool_ient_live(e) || (e->flags & (SPOOL_IX_ABORT | SPOOL_IX_REMOVE)))
            continue;
        if (!(e->c.flags & SPOOL_IX_START)) {
            if (e->flags & SPOOL_IX_COMMITTED)
                rep->no_envelope++;
            continue;
        }
        r = salvage_one(&sc, outfd, e);
        if (r == 0)
            rep->written++;
    }
    rep->damaged = sc.rep.damaged;
    if (r == 0 && fsync(outfd) < 0)
        r = -errno;
    if (sc.dirfd >= 0)
        close(sc.dirfd);
    close(outfd);
    scan_fini(&sc);
    return r;
}
