/*
 * NAME
 *	body - reading back the body octets of a message being received
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	spool_txn_read(t, off, buf, len);
 *	struct spool_bodyref *r = spool_txn_bodyref(t);
 *	spool_bodyref_read(r, off, buf, len);	(any thread)
 *	spool_bodyref_release(r);		(any thread)
 * DESCRIPTION
 *	A large message streams to the spool while it arrives, so an event
 *	sink at the end of the data finds most of it on disk.  Every
 *	successful append records where its DATA payloads went (segment
 *	sequence, file offset, length: writer.c), and these functions pread
 *	them back.  The writer's current segment is read through its own
 *	descriptor; a segment retired by a rotation is opened by name, and
 *	the txn caches that one descriptor.
 *
 *	A body reference copies the extents and opens every segment they
 *	touch read-only, so it works on any thread, after the txn is gone and
 *	even after a segment is unlinked.  pread() needs no lock; the
 *	reference count is the only shared state.
 * DIAGNOSTICS
 *	0 or -errno; -ERANGE for octets past what was appended; -EIO if a
 *	segment is shorter than its records say.
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* The extent holding body offset off (which is below the total). */
static size_t body_find(const struct spool_extent *v, size_t n, uint64_t off)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].boff <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static int body_open(const struct spool_writer *w, uint64_t seq)
{
    char name[SPOOL_SEG_NAME_LEN + 1];
    spool_seg_name(name, w->worker, seq);
    int fd = openat(w->sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

/* A descriptor for segment seq: the writer's current one, or the cache. */
static int txn_fd(const struct spool_txn *t, uint64_t seq)
{
    struct spool_extents *x = t->ext;
    if (seq == t->w->cur->seq)
        return t->w->cur->fd;
    if (x->rfd >= 0 && x->rseq == seq)
        return x->rfd;
    int fd = body_open(t->w, seq);
    if (fd < 0)
        return fd;
    if (x->rfd >= 0)
        close(x->rfd);
    x->rfd = fd;
    x->rseq = seq;
    return fd;
}

int spool_txn_read(const struct spool_txn *t, uint64_t off, void *buf, size_t len)
{
    if (off > t->body_size || len > t->body_size - off)
        return -ERANGE;
    if (len == 0)
        return 0;
    const struct spool_extents *x = t->ext;
    for (size_t i = body_find(x->v, x->n, off); len > 0; i++) {
        const struct spool_extent *e = &x->v[i];
        uint64_t in = off - e->boff;
        size_t k = e->len - in < len ? (size_t)(e->len - in) : len;
        int fd = txn_fd(t, e->seq);
        if (fd < 0)
            return fd;
        int r = spool_pread_all(fd, buf, k, e->off + in);
        if (r < 0)
            return r;
        buf = (char *)buf + k;
        off += k;
        len -= k;
    }
    return 0;
}

/* ---- references ---- */

struct spool_bodyref_ext {
    int fd;
    uint64_t off, len, boff;
};

struct spool_bodyref {
    _Atomic unsigned refs;
    uint64_t size;
    size_t n;
    struct spool_bodyref_ext v[];
};

struct spool_bodyref *spool_txn_bodyref(const struct spool_txn *t)
{
    size_t n = t->ext ? t->ext->n : 0;
    struct spool_bodyref *r = malloc(sizeof(*r) + n * sizeof(r->v[0]));
    if (r == NULL)
        return NULL;
    atomic_init(&r->refs, 1);
    r->size = t->body_size;
    r->n = n;
    for (size_t i = 0; i < n; i++) {
        const struct spool_extent *e = &t->ext->v[i];
        int fd = -1;
        if (i > 0 && e->seq == t->ext->v[i - 1].seq) {
            fd = r->v[i - 1].fd; /* shared: closed once, at the last extent using it */
        } else {
            fd = body_open(t->w, e->seq);
            if (fd < 0) {
                r->n = i;
                spool_bodyref_release(r);
                return NULL;
            }
        }
        r->v[i] = (struct spool_bodyref_ext){fd, e->off, e->len, e->boff};
    }
    return r;
}

struct spool_bodyref *spool_bodyref_ref(struct spool_bodyref *r)
{
    /* relaxed: the caller already holds a reference, so r cannot go away
     * meanwhile, and nothing is published through the count itself */
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void spool_bodyref_release(struct spool_bodyref *r)
{
    if (r == NULL)
        return;
    /* acq_rel: the release orders this holder's reads before the free;
     * the last holder's acquire pairs with every other holder's release */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < r->n; i++)
        if (i + 1 == r->n || r->v[i + 1].fd != r->v[i].fd)
            close(r->v[i].fd);
    free(r);
}

uint64_t spool_bodyref_size(const struct spool_bodyref *r)
{
    return r->size;
}

int spool_bodyref_read(const struct spool_bodyref *r, uint64_t off, void *buf, size_t len)
{
    if (off > r->size || len > r->size - off)
        return -ERANGE;
    if (len == 0)
        return 0;
    size_t lo = 0, hi = r->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->v[mid].boff <= off)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t i = lo; len > 0; i++) {
        const struct spool_bodyref_ext *e = &r->v[i];
        uint64_t in = off - e->boff;
        size_t k = e->len - in < len ? (size_t)(e->len - in) : len;
        int rc = spool_pread_all(e->fd, buf, k, e->off + in);
        if (rc < 0)
            return rc;
        buf = (char *)buf + k;
        off += k;
        len -= k;
    }
    return 0;
}
