/*
 * NAME
 *	compact - copying live messages out of a sparse segment
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int64_t spool_writer_compact(struct spool_writer *w, uint64_t budget);
 * DESCRIPTION
 *	A segment stays while one live message has records in it.  When a
 *	sealed segment is less than half live, compaction copies what is
 *	still live in it into w's current segment and lets it go: the
 *	sparsest such segment (live octets over size) that nothing pins and
 *	no guard holds (its REMOVE records are not copied).
 *
 *	For each live message with records in it, every record of that
 *	message in the segment is copied verbatim: START, DATA, EDITS and
 *	COMMIT when its body lies wholly in the segment (a message whose body
 *	also has records elsewhere makes the segment stuck: it is not tried
 *	again), and its STATE records, whose seq keeps their order.  COMMIT's
 *	top octet counts the copies, so recovery after a crash between the
 *	copy and the unlink keeps the newer copy (recover.c).  Each message
 *	goes out as one append, so a copy is whole or torn, never mixed.
 *
 *	The copies join the writer's next group commit.  When it succeeded,
 *	the message's references move from the old segment to the copy
 *	(wstate.c), and the old segment goes at the next reclaim.
 *	spool_msg objects made before keep reading the old file through
 *	their shared descriptor.
 * DIAGNOSTICS
 *	The octets copied, 0 when nothing is worth compacting, or -errno.
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

#define COMPACT_TRIES 4

struct crec {
    uint32_t type, len;
    size_t off; /* payload in the group's buffer */
};

struct cgroup {
    uint64_t id;
    bool body, start, commit;
    uint64_t bytes;
    struct crec *r;
    size_t nr, rcap;
    unsigned char *buf;
    size_t len, cap;
};

struct cset {
    struct cgroup *g;
    size_t n, cap;
    struct spool_map ix; /* id -> group index + 1 */
};

static void cset_fini(struct cset *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->g[i].r);
        free(c->g[i].buf);
    }
    free(c->g);
    spool_map_fini(&c->ix);
}

static struct cgroup *cset_group(struct cset *c, uint64_t id, bool create)
{
    uintptr_t k = (uintptr_t)spool_map_get(&c->ix, id);
    if (k)
        return &c->g[k - 1];
    if (!create)
        return NULL;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct cgroup *ng = realloc(c->g, nc * sizeof(*ng));
        if (ng == NULL)
            return NULL;
        c->g = ng;
        c->cap = nc;
    }
    if (spool_map_put(&c->ix, id, (void *)(uintptr_t)(c->n + 1)) < 0)
        return NULL;
    struct cgroup *g = &c->g[c->n++];
    memset(g, 0, sizeof(*g));
    g->id = id;
    return g;
}

static int group_add(struct cgroup *g, const struct spool_rec *r)
{
    if (g->nr == g->rcap) {
        size_t nc = g->rcap ? g->rcap * 2 : 8;
        struct crec *nr = realloc(g->r, nc * sizeof(*nr));
        if (nr == NULL)
            return -ENOMEM;
        g->r = nr;
        g->rcap = nc;
    }
    if (g->len + r->len > g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 4096;
        while (nc < g->len + r->len)
            nc *= 2;
        unsigned char *nb = realloc(g->buf, nc);
        if (nb == NULL)
            return -ENOMEM;
        g->buf = nb;
        g->cap = nc;
    }
    memcpy(g->buf + g->len, r->payload, r->len);
    if (r->type == SPOOL_REC_COMMIT) {
        uint32_t fl = spool_commit_flags(g->buf + g->len);
        uint32_t gen = fl >> SPOOL_GEN_SHIFT;
        gen = gen < 255 ? gen + 1 : 255;
        spool_commit_set_flags(g->buf + g->len, (fl & SPOOL_MSG_MASK) | gen << SPOOL_GEN_SHIFT);
        g->commit = true;
    }
    if (r->type == SPOOL_REC_START)
        g->start = true;
    if (r->type != SPOOL_REC_STATE)
        g->body = true;
    g->r[g->nr++] = (struct crec){r->type, r->len, g->len};
    g->len += r->len;
    g->bytes += SPOOL_REC_SIZE(r->len);
    return 0;
}

/* The sparsest segment worth compacting, marked; NULL if none. */
static struct spool_sacct *compact_pick(struct spool *sp)
{
    struct spool_sacct *best = NULL;
    double best_ratio = 0.5;
    for (size_t i = 0; i < sp->segs.cap; i++) {
        struct spool_sacct *s = sp->segs.k[i] ? sp->segs.v[i] : NULL;
        if (s == NULL || s->nlive == 0 || s->pins || s->nguard || s->copying ||
            (s->flags & (SPOOL_SA_CURRENT | SPOOL_SA_DYING | SPOOL_SA_COMPACT | SPOOL_SA_STUCK |
                         SPOOL_SA_KEEP)) ||
            s->size <= SPOOL_SEG_HDR)
            continue;
        double ratio = (double)s->live_bytes / (double)s->size;
        if (ratio < best_ratio) {
            best = s;
            best_ratio = ratio;
        }
    }
    if (best)
        best->flags |= SPOOL_SA_COMPACT;
    return best;
}

/* Reads s and collects the records to copy: 0, 1 when s is stuck, -errno. */
static int compact_collect(struct spool_writer *w, struct spool_sacct *s, uint64_t budget,
                           struct cset *c)
{
    struct spool *sp = w->sp;
    struct spool_seg sg = {(unsigned)(s->key >> 32), s->key & 0xffffffffu, {0}};
    memcpy(sg.name, s->name, sizeof(sg.name));
    struct spool_rd rd;
    struct spool_rec rec;
    const char *why;
    bool torn;
    int r = spool_rd_open(sp->dirfd, &sg, false, &rd, &why, &torn);
    uint64_t total = 0;
    while (r == 0 && (r = spool_rd_next(&rd, &rec, &why)) > 0) {
        r = 0;
        if (rec.type == SPOOL_REC_ABORT || rec.type == SPOOL_REC_REMOVE)
            continue;
        pthread_mutex_lock(&sp->amu);
        unsigned where = spool_acct_where(sp, rec.id, s);
        pthread_mutex_unlock(&sp->amu);
        if (!(where & SPOOL_AW_HERE))
            continue;
        if ((where & SPOOL_AW_BODY_HERE) && (where & SPOOL_AW_BODY_ELSEWHERE)) {
            r = 1;
            break;
        }
        struct cgroup *g = cset_group(c, rec.id, false);
        if (g == NULL && total >= budget)
            continue; /* the next call takes it */
        if (g == NULL && (g = cset_group(c, rec.id, true)) == NULL) {
            r = -ENOMEM;
            break;
        }
        r = group_add(g, &rec);
        total += SPOOL_REC_SIZE(rec.len);
    }
    if (r == -EBADMSG) /* a torn tail (repaired at the next start): what came before counts */
        r = 0;
    spool_rd_close(&rd);
    return r;
}

static int cp_push(struct spool_writer *w, const struct spool_wcp *e)
{
    if (w->ncp == w->cpcap) {
        size_t nc = w->cpcap ? w->cpcap * 2 : 16;
        struct spool_wcp *nv = realloc(w->cp, nc * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        w->cp = nv;
        w->cpcap = nc;
    }
    w->cp[w->ncp++] = *e;
    return 0;
}

/* Appends each complete group as one append. */
static int64_t compact_write(struct spool_writer *w, struct spool_sacct *s, struct cset *c)
{
    struct spool *sp = w->sp;
    int64_t copied = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct cgroup *g = &c->g[i];
        if (g->body && !(g->start && g->commit))
            continue; /* cannot happen for a live message with its body here */
        if (w->ncp == w->cpcap) {
            struct spool_wcp none = {0};
            if (cp_push(w, &none) < 0)
                return copied ? copied : -ENOMEM;
            w->ncp--;
        }
        spool_wb_reset(w);
        int r = 0;
        for (size_t k = 0; r == 0 && k < g->nr; k++)
            r = spool_wb_rec(w, g->r[k].type, g->id, g->buf + g->r[k].off, g->r[k].len, false);
        if (r == 0)
            r = spool_wb_flush(w, NULL);
        if (r < 0)
            return copied ? copied : r;
        pthread_mutex_lock(&sp->amu);
        struct spool_sacct *t = spool_acct_seg(sp, spool_seg_key(w->worker, w->cur->seq), true);
        if (t && spool_acct_live(sp, g->id) &&
            spool_acct_add(sp, g->id, t, g->bytes, g->body, false) == 0) {
            cp_push(w, &(struct spool_wcp){g->id, s->key, w->cur->seq, false});
            s->copying++;
        }
        pthread_mutex_unlock(&sp->amu);
        copied += (int64_t)g->bytes;
    }
    return copied;
}

int64_t spool_writer_compact(struct spool_writer *w, uint64_t budget)
{
    struct spool *sp = w->sp;
    for (int attempt = 0; attempt < COMPACT_TRIES; attempt++) {
        pthread_mutex_lock(&sp->amu);
        struct spool_sacct *s = compact_pick(sp);
        pthread_mutex_unlock(&sp->amu);
        if (s == NULL)
            return 0;
        struct cset c;
        memset(&c, 0, sizeof(c));
        int r = compact_collect(w, s, budget, &c);
        int64_t copied = r == 0 ? compact_write(w, s, &c) : 0;
        cset_fini(&c);
        pthread_mutex_lock(&sp->amu);
        s->flags &= ~SPOOL_SA_COMPACT;
        if (r == 1) {
            s->flags |= SPOOL_SA_STUCK;
            log_msg(LOG_INFO, "spool: %s: holds a message spanning segments: not compacted",
                    s->name);
        }
        spool_acct_cand(sp, s);
        pthread_mutex_unlock(&sp->amu);
        if (r < 0)
            return r;
        if (copied != 0)
            return copied;
    }
    return 0;
}
