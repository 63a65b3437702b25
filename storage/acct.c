/*
 * NAME
 *	acct - shared segment descriptors, space accounting and reclaim
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	h = spool_fh_get(sp, worker, seq, &err); ... spool_fh_release(h);
 *	spool_reclaim(sp);
 *	void spool_usage(struct spool *sp, struct spool_usage *u);
 * DESCRIPTION
 *	The spool keeps, under sp->amu, one entry per segment (struct
 *	spool_sacct) and one per live message (struct spool_live: the
 *	segments holding its records and how many octets in each).  Writers
 *	add a message when its COMMIT is durable, STATE records as they are
 *	appended, and take it out when its REMOVE is durable; recovery builds
 *	the same from what it read.  A removed message's body segments each
 *	put a guard on the segment holding the REMOVE (or ABORT) record: that
 *	record is needed for as long as any of them exists.
 *
 *	A segment may go when no writer appends to it, no live message has
 *	records in it, no guard is on it, and nothing pins it (a message being
 *	received that started there, a REMOVE not yet durable, a compaction
 *	reading it).  spool_reclaim() unlinks such segments, fsyncs the
 *	directory, and only then lifts the guards they held, so a REMOVE
 *	record never disappears before the body it cancels.
 *
 *	Segment descriptors for reading (spool_msg) are shared: the entry
 *	caches one spool_fh while anybody holds it; the last release closes
 *	the descriptor.  An unlinked segment's handle stays open for those
 *	still holding it.
 * DIAGNOSTICS
 *	Out of memory while placing a guard makes the guarded segment stay
 *	(SPOOL_SA_KEEP) rather than risk it; failed unlinks are logged and
 *	the segment is kept.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"

/* ---- descriptors ---- */

struct spool_fh *spool_fh_open(int dirfd, const char *name, int *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    struct spool_fh *h = malloc(sizeof(*h));
    if (h == NULL) {
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    atomic_init(&h->refs, 1);
    h->fd = fd;
    h->sp = NULL;
    h->owner = NULL;
    return h;
}

struct spool_fh *spool_fh_get(struct spool *sp, unsigned worker, uint64_t seq, int *err)
{
    uint64_t key = spool_seg_key(worker, seq);
    pthread_mutex_lock(&sp->amu);
    struct spool_sacct *s = spool_acct_seg(sp, key, false);
    struct spool_fh *h = s ? s->fh : NULL;
    if (h != NULL) {
        /* relaxed: under amu, as every release that could reach zero */
        atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    } else {
        char name[SPOOL_SEG_NAME_LEN + 1];
        spool_seg_name(name, worker, seq);
        h = spool_fh_open(sp->dirfd, name, err);
        if (h != NULL && s != NULL) {
            h->sp = sp;
            h->owner = s;
            s->fh = h;
        }
    }
    pthread_mutex_unlock(&sp->amu);
    return h;
}

struct spool_fh *spool_fh_ref(struct spool_fh *h)
{
    /* relaxed, and no lock: the caller holds a reference, so the count
     * cannot reach zero meanwhile (the last release, under amu, is the
     * only one that detaches and closes) */
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void spool_fh_release(struct spool_fh *h)
{
    if (h == NULL)
        return;
    struct spool *sp = h->sp;
    if (sp)
        pthread_mutex_lock(&sp->amu);
    /* acq_rel: orders this holder's preads before the close by the last one */
    bool last = atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1;
    if (last && h->owner)
        h->owner->fh = NULL;
    if (sp)
        pthread_mutex_unlock(&sp->amu);
    if (last) {
        close(h->fd);
        free(h);
    }
}

/* ---- accounting (under amu) ---- */

struct spool_sacct *spool_acct_seg(struct spool *sp, uint64_t key, bool create)
{
    struct spool_sacct *s = spool_map_get(&sp->segs, key);
    if (s || !create)
        return s;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->key = key;
    s->size = SPOOL_SEG_HDR;
    spool_seg_name(s->name, (unsigned)(key >> 32), key & 0xffffffffu);
    if (spool_map_put(&sp->segs, key, s) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static bool acct_free_to_go(const struct spool_sacct *s)
{
    return s->nlive == 0 && s->nguard == 0 && s->pins == 0 &&
           (s->flags & (SPOOL_SA_CURRENT | SPOOL_SA_DYING | SPOOL_SA_COMPACT | SPOOL_SA_KEEP)) == 0;
}

void spool_acct_cand(struct spool *sp, struct spool_sacct *s)
{
    if ((s->flags & SPOOL_SA_CAND) || !acct_free_to_go(s))
        return;
    if (sp->ncand == sp->candcap) {
        size_t nc = sp->candcap ? sp->candcap * 2 : 16;
        struct spool_sacct **nv = realloc(sp->cand, nc * sizeof(*nv));
        if (nv == NULL)
            return; /* looked at again when something else changes */
        sp->cand = nv;
        sp->candcap = nc;
    }
    sp->cand[sp->ncand++] = s;
    s->flags |= SPOOL_SA_CAND;
    /* relaxed: a hint; spool_reclaim reads the list under amu */
    atomic_store_explicit(&sp->ncand_hint, sp->ncand, memory_order_relaxed);
}

void spool_acct_unpin(struct spool *sp, uint64_t key, uint32_t n)
{
    struct spool_sacct *s = spool_acct_seg(sp, key, false);
    if (s == NULL)
        return;
    s->pins = s->pins > n ? s->pins - n : 0;
    spool_acct_cand(sp, s);
}

/* Live entries come from slabs (one malloc per 256 messages, not one each). */
#define LIVE_SLAB 256

static struct spool_live *live_alloc(struct spool *sp)
{
    if (sp->live_free == NULL) {
        if (sp->nslab == sp->slabcap) {
            size_t nc = sp->slabcap ? sp->slabcap * 2 : 16;
            void **ns = realloc(sp->slabs, nc * sizeof(*ns));
            if (ns == NULL)
                return NULL;
            sp->slabs = ns;
            sp->slabcap = nc;
        }
        struct spool_live *v = malloc(LIVE_SLAB * sizeof(*v));
        if (v == NULL)
            return NULL;
        sp->slabs[sp->nslab++] = v;
        for (size_t i = 0; i < LIVE_SLAB; i++) {
            v[i].v = (struct spool_lref *)sp->live_free;
            sp->live_free = &v[i];
        }
    }
    struct spool_live *l = sp->live_free;
    sp->live_free = (struct spool_live *)l->v;
    return l;
}

static void live_free(struct spool *sp, struct spool_live *l)
{
    if (l->v != l->in)
        free(l->v);
    l->v = (struct spool_lref *)sp->live_free;
    sp->live_free = l;
}

int spool_acct_add(struct spool *sp, uint64_t id, struct spool_sacct *seg, uint64_t bytes,
                   bool body, bool create)
{
    struct spool_live *l;
    if (create) {
        void **slot = spool_map_slot(&sp->live, id);
        if (slot == NULL)
            return -ENOMEM;
        if (*slot == NULL) {
            l = live_alloc(sp);
            if (l == NULL) {
                spool_map_del(&sp->live, id);
                return -ENOMEM;
            }
            l->id = id;
            l->n = 0;
            l->cap = 2;
            l->v = l->in;
            *slot = l;
        }
        l = *slot;
    } else if ((l = spool_map_get(&sp->live, id)) == NULL) {
        return 0;
    }
    uint32_t i;
    for (i = 0; i < l->n && l->v[i].seg != seg; i++)
        ;
    if (i == l->n) {
        if (l->n == l->cap) {
            uint32_t nc = l->cap * 2;
            struct spool_lref *nv = malloc(nc * sizeof(*nv));
            if (nv == NULL)
                return -ENOMEM;
            memcpy(nv, l->v, l->n * sizeof(*nv));
            if (l->v != l->in)
                free(l->v);
            l->v = nv;
            l->cap = nc;
        }
        l->v[l->n++] = (struct spool_lref){seg, 0, false};
        seg->nlive++;
    }
    l->v[i].bytes += bytes;
    l->v[i].body = l->v[i].body || body;
    seg->live_bytes += bytes;
    sp->live_bytes += bytes;
    return 0;
}

bool spool_acct_live(struct spool *sp, uint64_t id)
{
    return spool_map_get(&sp->live, id) != NULL;
}

unsigned spool_acct_where(struct spool *sp, uint64_t id, const struct spool_sacct *seg)
{
    const struct spool_live *l = spool_map_get(&sp->live, id);
    unsigned w = 0;
    for (uint32_t i = 0; l && i < l->n; i++) {
        if (l->v[i].seg == seg)
            w |= SPOOL_AW_HERE | (l->v[i].body ? SPOOL_AW_BODY_HERE : 0);
        else if (l->v[i].body)
            w |= SPOOL_AW_BODY_ELSEWHERE;
    }
    return w;
}

static void acct_unref(struct spool *sp, struct spool_lref *r)
{
    r->seg->nlive--;
    r->seg->live_bytes -= r->bytes;
    sp->live_bytes -= r->bytes;
    spool_acct_cand(sp, r->seg);
}

void spool_acct_drop(struct spool *sp, uint64_t id, struct spool_sacct *seg)
{
    struct spool_live *l = spool_map_get(&sp->live, id);
    if (l == NULL)
        return;
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->v[i].seg != seg)
            continue;
        struct spool_lref r = l->v[i];
        l->v[i] = l->v[--l->n];
        acct_unref(sp, &r);
        return;
    }
}

int spool_acct_guard(struct spool_sacct *s, struct spool_sacct *rm)
{
    if (s == rm)
        return 0; /* they go together */
    for (uint32_t i = s->ng; i-- > 0;) {
        if (s->guards[i].seg == rm) {
            s->guards[i].n++;
            rm->nguard++;
            return 0;
        }
    }
    if (s->ng == s->gcap) {
        uint32_t nc = s->gcap ? s->gcap * 2 : 4;
        struct spool_guard *ng = realloc(s->guards, nc * sizeof(*ng));
        if (ng == NULL) {
            rm->flags |= SPOOL_SA_KEEP; /* cannot track it: keep the record for good */
            return -ENOMEM;
        }
        s->guards = ng;
        s->gcap = nc;
    }
    s->guards[s->ng++] = (struct spool_guard){rm, 1};
    rm->nguard++;
    return 0;
}

void spool_acct_remove(struct spool *sp, uint64_t id, struct spool_sacct *rm)
{
    struct spool_live *l = spool_map_del(&sp->live, id);
    if (l == NULL)
        return;
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->v[i].body) {
            if (rm)
                spool_acct_guard(l->v[i].seg, rm);
            else
                l->v[i].seg->flags |= SPOOL_SA_KEEP; /* the REMOVE's place is unknown */
        }
        acct_unref(sp, &l->v[i]);
    }
    live_free(sp, l);
}

/* ---- reclaim ---- */

static void acct_seg_free(struct spool *sp, struct spool_sacct *s)
{
    spool_map_del(&sp->segs, s->key);
    if (s->fh)
        s->fh->owner = NULL;
    free(s->guards);
    free(s);
}

void spool_reclaim(struct spool *sp)
{
    struct spool_sacct **v = NULL;
    bool *gone = NULL;
    size_t cap = 0;
    for (int round = 0; round < 64; round++) {
        size_t n = 0;
        pthread_mutex_lock(&sp->amu);
        if (sp->ncand > cap) {
            struct spool_sacct **nv = realloc(v, sp->ncand * sizeof(*nv));
            bool *ng = nv ? realloc(gone, sp->ncand * sizeof(*ng)) : NULL;
            if (nv)
                v = nv;
            if (ng) {
                gone = ng;
                cap = sp->ncand;
            }
        }
        size_t keep = 0;
        for (size_t i = 0; i < sp->ncand; i++) {
            struct spool_sacct *s = sp->cand[i];
            if (n == cap) { /* no room to collect it: look again next round */
                sp->cand[keep++] = s;
                continue;
            }
            s->flags &= ~SPOOL_SA_CAND;
            if (!acct_free_to_go(s))
                continue;
            s->flags |= SPOOL_SA_DYING;
            v[n++] = s;
        }
        sp->ncand = keep;
        for (size_t i = 0; i < keep; i++)
            sp->cand[i]->flags |= SPOOL_SA_CAND;
        /* relaxed: a hint (see spool_acct_cand) */
        atomic_store_explicit(&sp->ncand_hint, keep, memory_order_relaxed);
        pthread_mutex_unlock(&sp->amu);
        if (n == 0)
            break;
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            gone[i] = unlinkat(sp->dirfd, v[i]->name, 0) == 0 || errno == ENOENT;
            if (!gone[i])
                log_msg(LOG_WARN, "spool: %s: unlink: %s: segment kept", v[i]->name,
                        strerror(errno));
            any = any || gone[i];
        }
        int r = any ? spool_fsync_dir(sp->dirfd) : 0;
        if (r < 0)
            log_msg(LOG_ERROR, "spool: fsync of the spool directory: %s: REMOVE records kept",
                    strerror(-r));
        pthread_mutex_lock(&sp->amu);
        for (size_t i = 0; i < n; i++) {
            struct spool_sacct *s = v[i];
            if (!gone[i]) {
                s->flags = (s->flags & ~SPOOL_SA_DYING) | SPOOL_SA_KEEP;
                continue;
            }
            for (uint32_t g = 0; r == 0 && g < s->ng; g++) {
                s->guards[g].seg->nguard -= s->guards[g].n;
                spool_acct_cand(sp, s->guards[g].seg);
            }
            if (r < 0) /* the guarded records may still be needed after a crash */
                for (uint32_t g = 0; g < s->ng; g++)
                    s->guards[g].seg->flags |= SPOOL_SA_KEEP;
            acct_seg_free(sp, s);
            sp->unlinked++;
        }
        pthread_mutex_unlock(&sp->amu);
    }
    free(v);
    free(gone);
}

void spool_usage(struct spool *sp, struct spool_usage *u)
{
    memset(u, 0, sizeof(*u));
    pthread_mutex_lock(&sp->amu);
    for (size_t i = 0; i < sp->segs.cap; i++) {
        struct spool_sacct *s = sp->segs.k[i] ? sp->segs.v[i] : NULL;
        if (s == NULL)
            continue;
        uint64_t size = s->size;
        struct stat st;
        if ((s->flags & SPOOL_SA_CURRENT) && fstatat(sp->dirfd, s->name, &st, 0) == 0)
            size = (uint64_t)st.st_size;
        u->segments++;
        u->bytes += size;
    }
    u->live_bytes = sp->live_bytes;
    u->live_messages = sp->live.n;
    u->unlinked = sp->unlinked;
    pthread_mutex_unlock(&sp->amu);
    /* relaxed: a setting, read for a report */
    u->segment_size = atomic_load_explicit(&sp->seg_size, memory_order_relaxed);
}

bool spool_compact_behind(struct spool *sp)
{
    struct spool_usage u;
    spool_usage(sp, &u);
    return u.bytes > 2 * u.live_bytes + 4 * u.segment_size;
}

void spool_set_durable(struct spool *sp, spool_durable_fn *fn, void *arg)
{
    pthread_mutex_lock(&sp->mu);
    sp->durable = fn;
    sp->durable_arg = arg;
    pthread_mutex_unlock(&sp->mu);
}

void spool_acct_fini(struct spool *sp)
{
    for (size_t i = 0; i < sp->segs.cap; i++) {
        struct spool_sacct *s = sp->segs.k[i] ? sp->segs.v[i] : NULL;
        if (s == NULL)
            continue;
        if (s->fh) { /* a spool_msg outlives the spool: its handle goes alone */
            s->fh->owner = NULL;
            s->fh->sp = NULL;
        }
        free(s->guards);
        free(s);
    }
    for (size_t i = 0; i < sp->live.cap; i++) {
        struct spool_live *l = sp->live.k[i] ? sp->live.v[i] : NULL;
        if (l && l->v != l->in)
            free(l->v);
    }
    for (size_t i = 0; i < sp->nslab; i++)
        free(sp->slabs[i]);
    free(sp->slabs);
    sp->slabs = NULL;
    sp->nslab = sp->slabcap = 0;
    sp->live_free = NULL;
    spool_map_fini(&sp->segs);
    spool_map_fini(&sp->live);
    free(sp->cand);
    sp->cand = NULL;
    sp->ncand = sp->candcap = 0;
}
