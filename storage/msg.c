/*
 * NAME
 *	msg - a stored message for delivery: envelope, state, body pieces
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	m = spool_msg_from_txn(t);		(writer's thread, after commit)
 *	m = spool_msg_from_info(sp, info);	(inside a scan callback: recover.c)
 *	n = spool_msg_pieces(m, &v); spool_msg_read(m, off, buf, len);
 *	spool_msg_free(m);
 * DESCRIPTION
 *	A spool_msg owns a copy of its envelope and state (one allocation,
 *	with the piece table and the handle list) and a reference on the
 *	shared descriptor of every segment its body is in (acct.c).  Without
 *	header edits the pieces are the DATA payloads where they lie in the
 *	segment files: nothing is read.  With edits the header section is
 *	read once (up to its empty line), the edits are applied to it
 *	(edits.c), and it becomes a memory piece, followed by the rest of the
 *	body as file extents - the same octets spool_read_body() writes.
 *
 *	From a txn the envelope is decoded from the START payload the txn
 *	still holds and the extents come from its append log: building costs
 *	a decode, one allocation and a mutex round trip for the descriptor
 *	of each segment, and no I/O unless there are edits.
 * DIAGNOSTICS
 *	The constructors return NULL on out of memory or an unreadable
 *	segment; spool_msg_read() returns 0, -ERANGE or -errno.
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

struct spool_msg {
    struct spool_msginfo info;
    uint64_t size;
    size_t np, nfh;
    struct spool_piece *p;
    uint64_t *poff; /* message offset of each piece */
    struct spool_fh **fh;
    char *hdr; /* the edited header section, or NULL */
};

/* ---- reading extents ---- */

static int ext_read(const struct spool_mext *v, size_t n, uint64_t off, char *buf, size_t len)
{
    uint64_t base = 0;
    for (size_t i = 0; i < n && len > 0; base += v[i].len, i++) {
        if (off >= base + v[i].len)
            continue;
        uint64_t in = off - base;
        size_t k = v[i].len - in < len ? (size_t)(v[i].len - in) : len;
        int r = spool_pread_all(v[i].fh->fd, buf, k, v[i].off + in);
        if (r < 0)
            return r;
        buf += k;
        off += k;
        len -= k;
    }
    return len == 0 ? 0 : -EIO;
}

/* Reads the header section (as the edit filter delimits it): *buf holds
 * at least *hlen octets, the section's length. */
static int msg_read_header(const struct spool_mext *v, size_t n, uint64_t total, char **buf,
                           size_t *hlen)
{
    size_t got = 0, cap = 0;
    char *b = NULL;
    for (;;) {
        if (got == total) {
            *hlen = got; /* no empty line: all of it is header */
            break;
        }
        size_t want = cap ? cap : 4096;
        if (got + want > total)
            want = (size_t)(total - got);
        if (got + want > cap) {
            size_t nc = cap ? cap * 2 : 4096;
            while (nc < got + want)
                nc *= 2;
            char *nb = realloc(b, nc);
            if (nb == NULL) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap = nc;
        }
        int r = ext_read(v, n, got, b + got, want);
        if (r < 0) {
            free(b);
            return r;
        }
        size_t from = got > 3 ? got - 3 : 0;
        got += want;
        if (got >= 2 && b[0] == '\r' && b[1] == '\n') {
            *hlen = 0;
            break;
        }
        const char *end = memmem(b + from, got - from, "\r\n\r\n", 4);
        if (end != NULL) {
            *hlen = (size_t)(end - b) + 2;
            break;
        }
    }
    *buf = b;
    return 0;
}

struct msg_out {
    char *p;
    size_t len, cap;
};

static int msg_out(void *arg, const void *p, size_t n)
{
    struct msg_out *o = arg;
    if (o->len + n > o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 1024;
        while (nc < o->len + n)
            nc *= 2;
        char *np = realloc(o->p, nc);
        if (np == NULL)
            return -ENOMEM;
        o->p = np;
        o->cap = nc;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
    return 0;
}

/* The edited header section (malloc'd, *olen octets) and the raw length
 * it replaces. */
static int msg_edit_header(const struct spool_mext *v, size_t n, uint64_t total,
                           const unsigned char *edits, size_t elen, struct msg_out *o, size_t *hlen)
{
    struct spool_editdec ed;
    int r = spool_edits_decode(edits, elen, &ed);
    if (r < 0)
        return r;
    char *raw = NULL;
    r = msg_read_header(v, n, total, &raw, hlen);
    if (r == 0)
        r = spool_edits_apply(raw ? raw : "", *hlen, ed.v, ed.n, msg_out, o);
    free(raw);
    spool_editdec_fini(&ed);
    return r;
}

/* ---- building ---- */

static size_t str_size(const char *s)
{
    return strlen(s ? s : "") + 1;
}

static char *str_copy(char **mem, const char *s)
{
    size_t n = str_size(s);
    char *d = *mem;
    memcpy(d, s ? s : "", n);
    *mem += n;
    return d;
}

static size_t align_up(size_t n)
{
    return (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
}

struct spool_msg *spool_msg_build(const struct spool_msginfo *info, const struct spool_mext *v,
                                  size_t n, const unsigned char *edits, size_t edits_len)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].len;
    struct msg_out o = {0};
    size_t hlen = 0;
    bool edited = edits != NULL && edits_len > SPOOL_EDITS_MIN - 1 && spool_get32(edits) > 0;
    if (edited && msg_edit_header(v, n, total, edits, edits_len, &o, &hlen) < 0) {
        free(o.p);
        return NULL;
    }
    size_t strs = str_size(info->client) + str_size(info->helo) + str_size(info->sender) +
                  str_size(info->params) + str_size(info->last_error);
    for (uint32_t i = 0; i < info->nrcpt; i++)
        strs += str_size(info->rcpts[i]);
    size_t np = n + 1;
    size_t sz_m = align_up(sizeof(struct spool_msg));
    size_t sz_p = align_up(np * sizeof(struct spool_piece));
    size_t sz_o = align_up(np * sizeof(uint64_t));
    size_t sz_f = align_up(n * sizeof(struct spool_fh *));
    size_t sz_r = align_up(((size_t)info->nrcpt + 1) * sizeof(char *));
    size_t sz_s = align_up(info->nrcpt);
    char *blk = malloc(sz_m + sz_p + sz_o + sz_f + sz_r + sz_s + strs);
    if (blk == NULL) {
        free(o.p);
        return NULL;
    }
    struct spool_msg *m = (struct spool_msg *)blk;
    memset(m, 0, sizeof(*m));
    m->p = (struct spool_piece *)(blk + sz_m);
    m->poff = (uint64_t *)(blk + sz_m + sz_p);
    m->fh = (struct spool_fh **)(blk + sz_m + sz_p + sz_o);
    const char **rcpts = (const char **)(blk + sz_m + sz_p + sz_o + sz_f);
    uint8_t *rstate = (uint8_t *)(blk + sz_m + sz_p + sz_o + sz_f + sz_r);
    char *mem = blk + sz_m + sz_p + sz_o + sz_f + sz_r + sz_s;

    m->info = *info;
    m->info.client = str_copy(&mem, info->client);
    m->info.helo = str_copy(&mem, info->helo);
    m->info.sender = str_copy(&mem, info->sender);
    m->info.params = str_copy(&mem, info->params);
    m->info.last_error = str_copy(&mem, info->last_error);
    for (uint32_t i = 0; i < info->nrcpt; i++)
        rcpts[i] = str_copy(&mem, info->rcpts[i]);
    rcpts[info->nrcpt] = NULL;
    m->info.rcpts = rcpts;
    if (info->rstate)
        memcpy(rstate, info->rstate, info->nrcpt);
    else if (info->nrcpt)
        memset(rstate, SPOOL_R_PENDING, info->nrcpt);
    m->info.rstate = rstate;

    uint64_t at = 0; /* message offset */
    if (edited) {
        m->hdr = o.p;
        if (o.len > 0) {
            m->p[m->np] = (struct spool_piece){-1, 0, o.p, o.len};
            m->poff[m->np++] = 0;
            at = o.len;
        }
    }
    uint64_t skip = hlen, base = 0;
    for (size_t i = 0; i < n; base += v[i].len, i++) {
        if (m->nfh == 0 || m->fh[m->nfh - 1] != v[i].fh)
            m->fh[m->nfh++] = spool_fh_ref(v[i].fh);
        uint64_t in = skip > base ? skip - base : 0;
        if (in >= v[i].len)
            continue;
        m->p[m->np] = (struct spool_piece){v[i].fh->fd, v[i].off + in, NULL, v[i].len - in};
        m->poff[m->np++] = at;
        at += v[i].len - in;
    }
    m->size = at;
    return m;
}

struct spool_msg *spool_msg_from_txn(struct spool_txn *t)
{
    struct spool_writer *w = t->w;
    if (!t->committed)
        log_panic("spool_msg_from_txn: the txn is not committed");
    struct spool_msginfo info;
    memset(&info, 0, sizeof(info));
    if (spool_env_decode(t->start, t->start_len, &info, &w->envdec) < 0)
        return NULL;
    info.id = t->id;
    info.size = t->body_size;
    info.flags = t->mflags & SPOOL_MSG_MASK;
    info.nedits = t->edits ? spool_get32(t->edits) : 0;
    info.last_error = "";
    size_t n = t->ext ? t->ext->n : 0, nown = 0;
    struct spool_mext one[4], *v = one;
    struct spool_fh *own1[4], **own = own1;
    if (n > 4) {
        v = malloc(n * sizeof(*v));
        own = malloc(n * sizeof(*own));
        if (v == NULL || own == NULL) {
            free(v);
            free(own);
            return NULL;
        }
    }
    struct spool_msg *m = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct spool_extent *e = &t->ext->v[i];
        struct spool_fh *h;
        if (w->rfh != NULL && w->rfh_seq == e->seq) {
            h = w->rfh;
        } else if (i > 0 && t->ext->v[i - 1].seq == e->seq) {
            h = v[i - 1].fh;
        } else {
            int err;
            h = spool_fh_get(w->sp, w->worker, e->seq, &err);
            if (h == NULL)
                goto out;
            if (e->seq == w->cur->seq) {
                /* the writer keeps its current segment's: no open per message */
                spool_fh_release(w->rfh);
                w->rfh = h;
                w->rfh_seq = e->seq;
            } else {
                own[nown++] = h;
            }
        }
        v[i] = (struct spool_mext){h, e->off, e->len};
    }
    m = spool_msg_build(&info, v, n, t->edits, t->edits_len);
out:
    for (size_t k = 0; k < nown; k++)
        spool_fh_release(own[k]);
    if (v != one) {
        free(v);
        free(own);
    }
    return m;
}

void spool_msg_free(struct spool_msg *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfh; i++)
        spool_fh_release(m->fh[i]);
    free(m->hdr);
    free(m);
}

const struct spool_msginfo *spool_msg_info(const struct spool_msg *m)
{
    return &m->info;
}

uint64_t spool_msg_size(const struct spool_msg *m)
{
    return m->size;
}

size_t spool_msg_pieces(const struct spool_msg *m, const struct spool_piece **v)
{
    *v = m->p;
    return m->np;
}

int spool_msg_read(const struct spool_msg *m, uint64_t off, void *buf, size_t len)
{
    if (off > m->size || len > m->size - off)
        return -ERANGE;
    if (len == 0)
        return 0;
    size_t lo = 0, hi = m->np;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->poff[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t i = lo; len > 0; i++) {
        const struct spool_piece *p = &m->p[i];
        uint64_t in = off - m->poff[i];
        size_t k = p->len - in < len ? (size_t)(p->len - in) : len;
        if (p->fd < 0) {
            memcpy(buf, p->mem + in, k);
        } else {
            int r = spool_pread_all(p->fd, buf, k, p->off + in);
            if (r < 0)
                return r;
        }
        buf = (char *)buf + k;
        off += k;
        len -= k;
    }
    return 0;
}
