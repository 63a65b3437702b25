/*
 * NAME
 *	writer - a worker's appender: segments, vectored appends, rotation
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_writer_create(struct spool *sp, unsigned worker,
 *		struct spool_writer **out);
 *	void spool_writer_destroy(struct spool_writer *w);
 * DESCRIPTION
 *	A writer always starts a new segment, seg-<worker>-<seq>.sg with seq
 *	one past the largest the spool has seen for that worker; it never
 *	appends to a segment an earlier process wrote.  Creating a segment
 *	writes its header and fsyncs the spool directory before any record
 *	goes in (durability D1); the header itself becomes durable with the
 *	first fdatasync of the segment.
 *
 *	An append is one pwritev() of record headers, the caller's iovecs
 *	and padding (looping only over IOV_MAX and short writes).  If it
 *	fails, the file is cut back to where it was, so a torn record never
 *	sits in the middle of a segment; if even the cut fails the segment is
 *	poisoned (SPOOL_SEG_CUT) and the next append starts a new one.
 *
 *	Rotation: when an append would take the segment past the configured
 *	size (and it holds at least one record), the old one is fdatasync'd
 *	synchronously (once per segment: a few ms every 64 MiB), then a new
 *	segment is created (so a sealed segment never has an unsynced end:
 *	only the last segment of a worker can have a torn tail), and the old
 *	one is closed - unless the group-commit sync in flight
 *	uses its fd, in which case spool_writer_sync_done() closes it.  So
 *	every commit still waiting for a sync has its records either in the
 *	current segment, which the next group-commit sync covers, or in a
 *	segment that was already synced.  If that synchronous sync fails,
 *	the old segment is poisoned like a failed group-commit sync (see
 *	commit.c): every commit in it is refused and never acknowledged.
 *
 *	Pre-zeroing: an fdatasync of an append that grows the file must
 *	also commit the new size (and, on ext4, the block allocation) in the
 *	file system's journal: a second device flush per group commit.  So
 *	the writer writes zeros ahead of its records, SPOOL_PREZERO octets
 *	at a time (never past the segment size plus one append), when an
 *	append of at most SPOOL_PREZERO_APPEND_MAX octets needs them (larger
 *	ones, big messages, were measured slower with the zeros written
 *	first), and its appends overwrite them: only the first sync after each extension
 *	commits metadata.  fallocate(2) alone does not do it (unwritten
 *	extents are converted, in the journal, when written), measured in
 *	docs/spool-format.md.  A reader takes zeros from a record boundary
 *	to the end of the file as the end (segment.c); rotation and
 *	spool_writer_destroy() cut a segment to its records before its last
 *	sync, so only the segment being written (or one a crash left behind,
 *	cut by recovery) has a zero tail.  No pre-zeroing while the spool is
 *	full, and a pre-zeroing that fails for lack of space is undone and
 *	not tried again in that segment: the space it would take belongs to
 *	the reserve (reserve.c), and the append itself then meets ENOSPC or
 *	not, as without pre-zeroing.
 *
 *	Message ids are (seconds << 32) | (worker << 24) | counter; seconds
 *	start past the largest id the spool has seen, follow the clock when
 *	it is ahead, and advance by one when the counter wraps: ids grow per
 *	worker across restarts even if the clock steps back.
 *	A lack of space (ENOSPC) at segment creation or append marks the
 *	spool full (reserve.c); the reserve writer (the queue manager's)
 *	then gets part of the spool's reserve back and tries once more, the
 *	append from a copy of its iovecs, which writev_full() advances.
 * DIAGNOSTICS
 *	0 or -errno; -ENOSPC stands for every "no space" error (EDQUOT,
 *	EFBIG).  spool_writer_destroy() panics with a sync in flight or
 *	transactions still open.
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/clock.h"
#include "core/base/log.h"

static const unsigned char wb_zeros[8];

static int writev_full(int fd, struct iovec *iov, size_t niov, uint64_t off);

/* ---- transaction lists ---- */

void spool_tl_push(struct spool_tlist *l, struct spool_txn *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    l->n++;
}

void spool_tl_remove(struct spool_tlist *l, struct spool_txn *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->prev = t->next = NULL;
    l->n--;
}

struct spool_txn *spool_tl_pop(struct spool_tlist *l)
{
    struct spool_txn *t = l->head;
    if (t)
        spool_tl_remove(l, t);
    return t;
}

/* ---- building an append ---- */

void spool_wb_reset(struct spool_writer *w)
{
    w->niov = 0;
    w->nhdr = 0;
    w->wlen = 0;
    w->ndpos = 0;
}

static int wb_dpos(struct spool_writer *w, uint64_t rel, uint32_t len)
{
    if (w->ndpos == w->dposcap) {
        size_t nc = w->dposcap ? w->dposcap * 2 : 8;
        struct spool_dpos *nd = realloc(w->dpos, nc * sizeof(*nd));
        if (nd == NULL)
            return -ENOMEM;
        w->dpos = nd;
        w->dposcap = nc;
    }
    w->dpos[w->ndpos++] = (struct spool_dpos){rel, len};
    return 0;
}

static int wb_reserve(struct spool_writer *w, size_t niov, size_t nhdr)
{
    if (w->niov + niov > w->iovcap) {
        size_t nc = w->iovcap ? w->iovcap * 2 : 64;
        while (nc < w->niov + niov)
            nc *= 2;
        struct iovec *ni = realloc(w->iov, nc * sizeof(*ni));
        if (ni == NULL)
            return -ENOMEM;
        w->iov = ni;
        int32_t *ns = realloc(w->slot, nc * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        w->slot = ns;
        w->iovcap = nc;
    }
    if (w->nhdr + nhdr > w->hdrcap) {
        size_t nc = w->hdrcap ? w->hdrcap * 2 : 16;
        while (nc < w->nhdr + nhdr)
            nc *= 2;
        struct spool_whdr *nh = realloc(w->hdr, nc * sizeof(*nh));
        if (nh == NULL)
            return -ENOMEM;
        w->hdr = nh;
        w->hdrcap = nc;
    }
    return 0;
}

/* Appends an iovec; slot >= 0 names a header (its address is fixed at
 * flush time, since w->hdr may still move). */
static void wb_iov(struct spool_writer *w, const void *p, size_t len, int32_t slot)
{
    w->iov[w->niov].iov_base = (void *)p;
    w->iov[w->niov].iov_len = len;
    w->slot[w->niov] = slot;
    w->niov++;
}

static void wb_pad(struct spool_writer *w, uint32_t len)
{
    size_t pad = (size_t)(spool_pad8(len) - len);
    if (pad)
        wb_iov(w, wb_zeros, pad, -1);
    w->wlen += SPOOL_REC_HDR + spool_pad8(len);
}

int spool_wb_rec(struct spool_writer *w, uint32_t type, uint64_t id, const void *p, uint32_t len,
                 bool copy)
{
    if (wb_reserve(w, 3, 1) < 0)
        return -ENOMEM;
    size_t k = w->nhdr++;
    uint32_t pcrc = spool_crc32c(0, p, len);
    spool_rec_hdr_encode(w->hdr[k].b, type, len, id, pcrc);
    if (copy) {
        if (len)
            memcpy(w->hdr[k].b + SPOOL_REC_HDR, p, len);
        wb_iov(w, NULL, SPOOL_REC_HDR + len, (int32_t)k);
    } else {
        wb_iov(w, NULL, SPOOL_REC_HDR, (int32_t)k);
        if (len)
            wb_iov(w, p, len, -1);
    }
    wb_pad(w, len);
    return 0;
}

int spool_wb_data(struct spool_writer *w, uint64_t id, const struct iovec *iov, int iovcnt,
                  uint64_t *size, uint32_t *crc)
{
    int i = 0;
    size_t ioff = 0;
    while (i < iovcnt) {
        if (wb_reserve(w, 1, 1) < 0)
            return -ENOMEM;
        size_t k = w->nhdr++, hi = w->niov;
        wb_iov(w, NULL, SPOOL_REC_HDR, (int32_t)k);
        uint32_t rlen = 0, pcrc = 0;
        while (i < iovcnt && rlen < w->data_max) {
            size_t avail = iov[i].iov_len - ioff;
            if (avail == 0) {
                i++;
                ioff = 0;
                continue;
            }
            size_t take = avail < w->data_max - rlen ? avail : w->data_max - rlen;
            const char *p = (const char *)iov[i].iov_base + ioff;
            if (wb_reserve(w, 2, 0) < 0)
                return -ENOMEM;
            wb_iov(w, p, take, -1);
            pcrc = spool_crc32c(pcrc, p, take);
            rlen += (uint32_t)take;
            ioff += take;
        }
        if (rlen == 0) { /* only empty iovecs were left */
            w->niov = hi;
            w->nhdr = k;
            break;
        }
        if (wb_reserve(w, 1, 0) < 0 || wb_dpos(w, w->wlen + SPOOL_REC_HDR, rlen) < 0)
            return -ENOMEM;
        spool_rec_hdr_encode(w->hdr[k].b, SPOOL_REC_DATA, rlen, id, pcrc);
        wb_pad(w, rlen);
        *crc = spool_crc32c_combine(*crc, pcrc, rlen);
        *size += rlen;
    }
    return 0;
}

/* ---- segments ---- */

static int no_space(int r)
{
    return r == -EDQUOT || r == -EFBIG ? -ENOSPC : r;
}

static int pwrite_full(int fd, const void *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return no_space(-errno);
        if (k == 0)
            return -EIO;
        p = (const char *)p + k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

void spool_wseg_close(struct spool_wseg *s)
{
    if (s == NULL)
        return;
    if (close(s->fd) < 0)
        log_msg(LOG_WARN, "spool: %s: close: %s", s->name, strerror(errno));
    free(s);
}

/* A write of w failed with r: a lack of space marks the spool full, and
 * the reserve writer gets part of the reserve back.  True: try again. */
static bool writer_no_space(struct spool_writer *w, int r)
{
    if (r != -ENOSPC)
        return false;
    spool_full_set(w->sp);
    return w->reserve && spool_reserve_release(w->sp);
}

static int seg_create_once(struct spool_writer *w, struct spool_wseg **out)
{
    struct spool_wseg *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    int dirfd = w->sp->dirfd, r;
    for (;;) {
        s->seq = w->next_seq++;
        spool_seg_name(s->name, w->worker, s->seq);
        /* read as well: spool_txn_read() reads a message being received */
        s->fd = openat(dirfd, s->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (s->fd >= 0)
            break;
        r = no_space(-errno);
        if (r != -EEXIST || s->seq > UINT32_MAX) {
            log_msg(LOG_WARN, "spool: %s: create: %s", s->name, strerror(-r));
            free(s);
            return r;
        }
    }
    unsigned char h[SPOOL_SEG_HDR];
    spool_seg_hdr_encode(h, w->worker, s->seq, clock_wall_ms());
    r = pwrite_full(s->fd, h, sizeof(h), 0);
    if (r == 0)
        r = spool_fsync_dir(dirfd);
    if (r < 0) {
        log_msg(LOG_WARN, "spool: %s: cannot start segment: %s", s->name, strerror(-r));
        unlinkat(dirfd, s->name, 0);
        close(s->fd);
        free(s);
        return r;
    }
    s->size = SPOOL_SEG_HDR;
    s->zeroed = SPOOL_SEG_HDR;
    w->st.segments++;
    spool_wacct_segment(w, s);
    *out = s;
    return 0;
}

static int seg_create(struct spool_writer *w, struct spool_wseg **out)
{
    int r = seg_create_once(w, out);
    if (r < 0 && writer_no_space(w, r))
        r = seg_create_once(w, out);
    return r;
}

/* Pre-zeroes s so that an append of len octets at s->size lands in
 * zeroed space (see DESCRIPTION).  Failing is harmless: the append
 * extends the file as it would have without. */
static void seg_prezero(struct spool_writer *w, struct spool_wseg *s, uint64_t len, uint64_t max)
{
    static const unsigned char zeros[SPOOL_PREZERO_IOV];
    if (s->no_prezero || s->poison || s->size + len <= s->zeroed || spool_full(w->sp) ||
        len > SPOOL_PREZERO_APPEND_MAX)
        return;
    uint64_t end = (s->size + len + SPOOL_PREZERO - 1) / SPOOL_PREZERO * SPOOL_PREZERO;
    if (end < s->size + len + SPOOL_PREZERO / 2)
        end += SPOOL_PREZERO; /* keep half a chunk ahead of this append at least */
    if (end > max)
        end = max > s->size + len ? max : s->size + len;
    uint64_t from = s->zeroed > s->size ? s->zeroed : s->size;
    struct iovec iov[SPOOL_PREZERO / SPOOL_PREZERO_IOV + 2];
    size_t n = 0;
    for (uint64_t o = from; o < end && n < sizeof(iov) / sizeof(iov[0]); n++) {
        uint64_t k = end - o < sizeof(zeros) ? end - o : sizeof(zeros);
        iov[n] = (struct iovec){(void *)zeros, (size_t)k};
        o += k;
    }
    int r = writev_full(s->fd, iov, n, from);
    if (r == 0) {
        s->zeroed = end;
        w->st.prezeroed += end - from;
        return;
    }
    /* what was written of the zeros goes: the space is the reserve's */
    if (ftruncate(s->fd, (off_t)(s->zeroed > s->size ? s->zeroed : s->size)) < 0)
        log_msg(LOG_WARN, "spool: %s: cannot cut back a failed pre-zeroing: %s", s->name,
                strerror(errno));
    if (r != -ENOSPC)
        log_msg(LOG_WARN, "spool: %s: pre-zeroing: %s", s->name, strerror(-r));
    s->no_prezero = true;
}

/* Cuts s's pre-zeroed tail off (before its last sync).  0 or -errno. */
static int seg_cut_zeros(struct spool_wseg *s)
{
    if (s->zeroed <= s->size)
        return 0;
    if (ftruncate(s->fd, (off_t)s->size) < 0) {
        int r = -errno;
        log_msg(LOG_WARN, "spool: %s: cannot cut the pre-zeroed tail: %s", s->name, strerror(-r));
        return r;
    }
    s->zeroed = s->size;
    return 1;
}

/* Marks everything that depends on seg's data as failed with err. */
void spool_writer_poison(struct spool_writer *w, struct spool_wseg *seg, int err)
{
    seg->poison = SPOOL_SEG_SYNC;
    spool_wstate_poison(w, seg->seq);
    for (struct spool_txn *t = w->pending.head; t; t = t->next)
        if (!t->err)
            t->err = err;
    if (w->flight_seg == seg)
        for (struct spool_txn *t = w->flight.head; t; t = t->next)
            if (!t->err)
                t->err = err;
    for (struct spool_txn *t = w->active.head; t; t = t->next)
        if (t->started && !t->err && t->first_seq <= seg->seq && seg->seq <= t->last_seq)
            t->err = err;
}

/* Starts a new segment and retires cur (see DESCRIPTION). */
static int writer_rotate(struct spool_writer *w)
{
    struct spool_wseg *old = w->cur, *nw;
    /* the old segment is synced whole before its successor exists: a
     * power loss in between must not leave a sealed segment with an
     * unsynced (torn) end, which recovery would take for media damage */
    bool cut = old->poison != SPOOL_SEG_SYNC && seg_cut_zeros(old) > 0;
    if (old->poison != SPOOL_SEG_SYNC && (old->synced < old->size || cut)) {
        w->st.syncs++;
        int s = w->datasync(old->fd);
        if (s == 0) {
            old->synced = old->size;
        } else {
            w->st.sync_errors++;
            log_msg(LOG_ERROR, "spool: %s: fdatasync at rotation: %s: its commits are refused",
                    old->name, strerror(-s));
            spool_writer_poison(w, old, s);
        }
    }
    int r = seg_create(w, &nw);
    if (r < 0)
        return old->poison ? r : 0; /* a healthy segment may grow past its size */
    spool_wacct_rotate(w, old);
    if (w->rfh != NULL) {
        spool_fh_release(w->rfh);
        w->rfh = NULL;
    }
    w->cur = nw;
    if (w->flight_seg != old)
        spool_wseg_close(old);
    return 0;
}

static int writev_full(int fd, struct iovec *iov, size_t niov, uint64_t off)
{
    size_t i = 0;
    while (i < niov) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        int cnt = niov - i > IOV_MAX ? IOV_MAX : (int)(niov - i);
        ssize_t k = pwritev(fd, iov + i, cnt, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return no_space(-errno);
        if (k == 0)
            return -EIO;
        off += (uint64_t)k;
        size_t left = (size_t)k;
        while (left > 0 && i < niov) {
            if (left >= iov[i].iov_len) {
                left -= iov[i].iov_len;
                i++;
            } else {
                iov[i].iov_base = (char *)iov[i].iov_base + left;
                iov[i].iov_len -= left;
                left = 0;
            }
        }
    }
    return 0;
}

/* Room in t's extents for the DATA payloads of the append being built, so
 * that nothing can fail once they are on disk. */
static int wb_ext_reserve(struct spool_writer *w, struct spool_txn *t)
{
    if (t == NULL || w->ndpos == 0)
        return 0;
    size_t have = t->ext ? t->ext->cap : 0, need = (t->ext ? t->ext->n : 0) + w->ndpos;
    if (need <= have)
        return 0;
    size_t nc = have ? have * 2 : 4;
    while (nc < need)
        nc *= 2;
    struct spool_extents *ne = realloc(t->ext, sizeof(*ne) + nc * sizeof(ne->v[0]));
    if (ne == NULL)
        return -ENOMEM;
    if (t->ext == NULL) {
        ne->n = 0;
        ne->rfd = -1;
        ne->rseq = 0;
    }
    ne->cap = nc;
    t->ext = ne;
    return 0;
}

static void wb_ext_record(struct spool_writer *w, struct spool_txn *t, uint64_t seq, uint64_t base)
{
    for (size_t i = 0; t && i < w->ndpos; i++) {
        struct spool_extents *x = t->ext;
        uint64_t boff = x->n ? x->v[x->n - 1].boff + x->v[x->n - 1].len : 0;
        x->v[x->n++] = (struct spool_extent){seq, base + w->dpos[i].rel, w->dpos[i].len, boff};
    }
}

/* After a failed append: the file is cut back to where it was.  False if
 * even that failed (the segment is abandoned). */
static bool wb_cut(struct spool_writer *w, struct spool_wseg *s, int r)
{
    log_msg(LOG_WARN, "spool: %s: append of %" PRIu64 " octets at %" PRIu64 ": %s", s->name,
            w->wlen, s->size, strerror(-r));
    if (ftruncate(s->fd, (off_t)s->size) < 0) {
        log_msg(LOG_ERROR, "spool: %s: cannot cut a failed append back: %s; segment abandoned",
                s->name, strerror(errno));
        s->poison = SPOOL_SEG_CUT;
        return false;
    }
    s->zeroed = s->size; /* the pre-zeroed space went with it */
    return true;
}

/* The reserve writer keeps the iovecs of an append, which writev_full
 * advances, so that the append can be retried whole. */
static int wb_keep(struct spool_writer *w)
{
    if (w->niov > w->keepcap) {
        struct iovec *k = realloc(w->iov_keep, w->iovcap * sizeof(*k));
        if (k == NULL)
            return -ENOMEM;
        w->iov_keep = k;
        w->keepcap = w->iovcap;
    }
    memcpy(w->iov_keep, w->iov, w->niov * sizeof(*w->iov));
    return 0;
}

int spool_wb_flush(struct spool_writer *w, struct spool_txn *t)
{
    if (wb_ext_reserve(w, t) < 0)
        return -ENOMEM;
    struct spool_wseg *s = w->cur;
    /* relaxed: a tuning knob (spool_set_segment_size) */
    uint64_t max = atomic_load_explicit(&w->sp->seg_size, memory_order_relaxed);
    if (s->poison || (s->size > SPOOL_SEG_HDR && s->size + w->wlen > max)) {
        int r = writer_rotate(w);
        if (r < 0)
            return r;
        s = w->cur;
    }
    if (t && t->err)
        return t->err;
    seg_prezero(w, s, w->wlen, max);
    for (size_t i = 0; i < w->niov; i++)
        if (w->slot[i] >= 0)
            w->iov[i].iov_base = w->hdr[w->slot[i]].b;
    if (w->reserve && wb_keep(w) < 0)
        return -ENOMEM;
    int r = writev_full(s->fd, w->iov, w->niov, s->size);
    if (r < 0 && wb_cut(w, s, r) && writer_no_space(w, r)) {
        memcpy(w->iov, w->iov_keep, w->niov * sizeof(*w->iov));
        r = writev_full(s->fd, w->iov, w->niov, s->size);
        if (r < 0)
            wb_cut(w, s, r);
    }
    if (r < 0)
        return r;
    wb_ext_record(w, t, s->seq, s->size);
    s->size += w->wlen;
    w->st.bytes += w->wlen;
    if (t) {
        if (!t->started)
            t->first_seq = s->seq;
        t->last_seq = s->seq;
        t->started = true;
    }
    return 0;
}

/* ---- the writer ---- */

static int writer_fdatasync(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

uint64_t spool_writer_next_id(struct spool_writer *w)
{
    uint32_t now = (uint32_t)time(NULL);
    if (now > w->id_sec) {
        w->id_sec = now;
        w->id_ctr = 0;
    } else if (w->id_ctr > 0xffffffu) {
        w->id_sec++;
        w->id_ctr = 0;
    }
    uint64_t id = (uint64_t)w->id_sec << 32 | (uint64_t)w->worker << 24 | w->id_ctr++;
    w->max_id = id;
    return id;
}

int spool_writer_create(struct spool *sp, unsigned worker, struct spool_writer **out)
{
    *out = NULL;
    if (worker >= SPOOL_WORKERS)
        return -EINVAL;
    struct spool_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&sp->mu);
    if (sp->busy[worker]) {
        pthread_mutex_unlock(&sp->mu);
        free(w);
        return -EBUSY;
    }
    sp->busy[worker] = true;
    sp->nwriters++;
    w->next_seq = sp->next_seq[worker] ? sp->next_seq[worker] : 1;
    w->max_id = sp->max_id;
    w->durable = sp->durable;
    w->durable_arg = sp->durable_arg;
    w->reserve = sp->reserve_worker == (int)worker;
    pthread_mutex_unlock(&sp->mu);

    w->sp = sp;
    w->worker = worker;
    w->data_max = SPOOL_REC_MAX;
    w->datasync = writer_fdatasync;
    uint32_t now = (uint32_t)time(NULL), past = (uint32_t)(w->max_id >> 32) + 1;
    w->id_sec = now > past ? now : past;
    int r = seg_create(w, &w->cur);
    if (r < 0) {
        pthread_mutex_lock(&sp->mu);
        sp->busy[worker] = false;
        sp->nwriters--;
        if (w->next_seq > sp->next_seq[worker])
            sp->next_seq[worker] = w->next_seq;
        pthread_mutex_unlock(&sp->mu);
        free(w);
        return r;
    }
    *out = w;
    return 0;
}

void spool_writer_destroy(struct spool_writer *w)
{
    if (w->flight_seg)
        log_panic("spool_writer_destroy: worker %u: a sync is in flight", w->worker);
    if (w->active.head)
        log_panic("spool_writer_destroy: worker %u: %zu transactions still open", w->worker,
                  w->active.n);
    for (int i = 0; i < 8 && spool_writer_busy(w); i++) {
        int fd = spool_writer_sync_fd(w);
        if (fd < 0)
            break;
        spool_writer_sync_done(w, w->datasync(fd));
    }
    if (spool_writer_busy(w))
        log_msg(LOG_ERROR, "spool: worker %u: records left unsynced at close", w->worker);
    struct spool_wseg *s = w->cur;
    if (s->size == SPOOL_SEG_HDR && !s->poison) {
        /* nothing in it: leave no empty segment behind */
        if (unlinkat(w->sp->dirfd, s->name, 0) == 0)
            spool_fsync_dir(w->sp->dirfd);
    } else if (s->poison != SPOOL_SEG_SYNC &&
               (seg_cut_zeros(s) > 0 || s->synced < s->size)) {
        /* only ABORT and REMOVE records can be unsynced here: nothing
         * waits for them; the sync also makes the cut durable */
        int r = w->datasync(s->fd);
        if (r < 0)
            log_msg(LOG_WARN, "spool: %s: fdatasync at close: %s", s->name, strerror(-r));
    }
    spool_wacct_close(w);
    spool_fh_release(w->rfh);
    spool_wseg_close(s);
    struct spool *sp = w->sp;
    spool_reclaim(sp);
    pthread_mutex_lock(&sp->mu);
    sp->busy[w->worker] = false;
    sp->nwriters--;
    if (w->next_seq > sp->next_seq[w->worker])
        sp->next_seq[w->worker] = w->next_seq;
    if (w->max_id > sp->max_id)
        sp->max_id = w->max_id;
    pthread_mutex_unlock(&sp->mu);
    free(w->iov);
    free(w->iov_keep);
    free(w->slot);
    free(w->hdr);
    free(w->dpos);
    free(w->rm);
    free(w->cp);
    free(w->stbuf);
    spool_envdec_fini(&w->envdec);
    free(w);
}

void spool_writer_stats(const struct spool_writer *w, struct spool_writer_stats *st)
{
    *st = w->st;
}
