/*
 * NAME
 *	recover_live - what recovery does with the live messages it found
 * SYNOPSIS
 *	#include "storage/scan_int.h"
 *
 *	scan_build_acct(sc, live, n);		(spool_open: accounting, reclaim)
 *	scan_report_live(sc, live, n, cb, arg);	(the callback, state folded)
 *	struct spool_msg *spool_msg_from_info(struct spool *sp,
 *		const struct spool_msginfo *m);	(inside that callback)
 * DESCRIPTION
 *	STATE records are sorted by (id, seq) and folded into each live
 *	message's spool_msginfo just before its callback (state.c).  The
 *	accounting of an open spool is rebuilt from the scan's lists: every
 *	segment read, each live message's records (the copy kept), STATE
 *	records of live messages, and a guard for every REMOVE or ABORT
 *	record of a committed message from each segment that holds a body
 *	record of any copy of it.  Segments with nothing needed are then
 *	unlinked at once (acct.c).
 *
 *	spool_msg_from_info() recognises the callback's own msginfo through a
 *	thread-local pointer, and takes the segment descriptors from the
 *	open spool's cache or, in a read-only scan, from descriptors the
 *	scan opens once per segment and shares.
 * DIAGNOSTICS
 *	spool_msg_from_info() outside a callback panics; NULL on out of
 *	memory or an unreadable segment.
 */
#include "storage/scan_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

struct scan_cur {
    const struct spool_msginfo *m;
    struct scan *sc;
    const struct spool_ient *e;
};
static _Thread_local const struct scan_cur *scan_cur;

/* ---- accounting ---- */

static void acct_add(struct scan *sc, const struct spool_ient *e, uint32_t seg, uint64_t bytes,
                     bool body)
{
    struct spool *sp = sc->sp;
    struct spool_sacct *s =
        spool_acct_seg(sp, spool_seg_key(sc->segs[seg].worker, sc->segs[seg].seq), false);
    if (s == NULL || spool_acct_add(sp, e->id, s, bytes, body, true) < 0) {
        if (s)
            s->flags |= SPOOL_SA_KEEP;
        log_msg(LOG_ERROR, "spool: %s: out of memory in the accounting: segment kept",
                sc->segs[seg].name);
    }
}

void scan_build_acct(struct scan *sc, struct spool_ient **live, size_t n)
{
    struct spool *sp = sc->sp;
    pthread_mutex_lock(&sp->amu);
    for (size_t i = 0; i < sc->nseg; i++) {
        if (sc->segstate[i] == SCAN_SEG_GONE)
            continue;
        struct spool_sacct *s =
            spool_acct_seg(sp, spool_seg_key(sc->segs[i].worker, sc->segs[i].seq), true);
        if (s == NULL)
            continue; /* not tracked: never reclaimed */
        s->size = sc->segsize[i];
        if (sc->segstate[i] == SCAN_SEG_UNREADABLE)
            s->flags |= SPOOL_SA_KEEP;
    }
    for (size_t i = 0; i < n; i++) {
        const struct spool_ient *e = live[i];
        const struct spool_icopy *c = &e->c;
        acct_add(sc, e, c->start_seg, SPOOL_REC_SIZE(c->start_len), true);
        for (uint32_t k = c->ext_head; k; k = sc->x[k - 1].next)
            acct_add(sc, e, sc->x[k - 1].seg, SPOOL_REC_SIZE(sc->x[k - 1].len), true);
        if (c->flags & SPOOL_IX_EDITS)
            acct_add(sc, e, c->edits_seg, SPOOL_REC_SIZE(c->edits_len), true);
        acct_add(sc, e, c->commit_seg, SPOOL_REC_SIZE(SPOOL_COMMIT_LEN), true);
    }
    for (size_t i = 0; i < sc->nst; i++) {
        const struct scan_state *t = &sc->st[i];
        if (!t->keep)
            continue;
        struct spool_sacct *s =
            spool_acct_seg(sp, spool_seg_key(sc->segs[t->seg].worker, sc->segs[t->seg].seq), false);
        if (s && spool_acct_add(sp, t->id, s, SPOOL_REC_SIZE(t->len), false, false) < 0)
            s->flags |= SPOOL_SA_KEEP;
    }
    for (size_t i = 0; i < sc->nrm; i++) {
        const struct scan_rm *m = &sc->rm[i];
        struct spool_sacct *rs =
            spool_acct_seg(sp, spool_seg_key(sc->segs[m->seg].worker, sc->segs[m->seg].seq), false);
        if (rs == NULL)
            continue;
        const struct spool_ient *e = spool_index_get(&sc->ix, m->id, false);
        if (e == NULL || !(e->flags & SPOOL_IX_COMMITTED)) {
            if (sc->unreadable) /* its message may be in the unreadable segment */
                rs->flags |= SPOOL_SA_KEEP;
            continue;
        }
        for (uint32_t k = e->seg_head; k; k = sc->x[k - 1].next) {
            const struct spool_seg *g = &sc->segs[sc->x[k - 1].seg];
            struct spool_sacct *s = spool_acct_seg(sp, spool_seg_key(g->worker, g->seq), false);
            if (s)
                spool_acct_guard(s, rs);
            else
                rs->flags |= SPOOL_SA_KEEP;
        }
    }
    for (size_t i = 0; i < sp->segs.cap; i++)
        if (sp->segs.k[i])
            spool_acct_cand(sp, sp->segs.v[i]);
    pthread_mutex_unlock(&sp->amu);
    spool_reclaim(sp);
}

/* ---- reporting ---- */

static int ient_cmp(const void *a, const void *b)
{
    const struct spool_ient *x = *(struct spool_ient *const *)a;
    const struct spool_ient *y = *(struct spool_ient *const *)b;
    if (x->c.start_seg != y->c.start_seg)
        return x->c.start_seg < y->c.start_seg ? -1 : 1;
    return x->c.start_off < y->c.start_off ? -1 : x->c.start_off > y->c.start_off;
}

/* Decoding room for the STATE records of one message, reused. */
struct st_scratch {
    struct spool_stdec *d;
    size_t dcap;
    char *mem;
    size_t memcap;
    const char **rc;
    size_t rccap;
};

static int scratch_fit(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    void *np = realloc(*p, need * size);
    if (np == NULL)
        return -ENOMEM;
    *p = np;
    *cap = need;
    return 0;
}

/* Folds the STATE records st[0, n) (one id, seq order) into f. */
static int fold_states(struct scan *sc, const struct scan_state *st, size_t n, struct st_scratch *x,
                       struct spool_fold *f)
{
    size_t mem = 0, rc = 0;
    for (size_t i = 0; i < n; i++) {
        mem += st[i].len + 1;
        rc += spool_state_nrcpt(sc->pool + st[i].poff, st[i].len) + 1;
    }
    if (scratch_fit((void **)&x->d, &x->dcap, n, sizeof(*x->d)) < 0 ||
        scratch_fit((void **)&x->mem, &x->memcap, mem, 1) < 0 ||
        scratch_fit((void **)&x->rc, &x->rccap, rc, sizeof(*x->rc)) < 0)
        return -ENOMEM;
    char *m = x->mem;
    const char **r = x->rc;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = sc->pool + st[i].poff;
        size_t nr = spool_state_nrcpt(p, st[i].len) + 1;
        if (spool_state_decode(p, st[i].len, &x->d[i], m, r, nr) < 0) {
            char ids[17];
            spool_id_str(st[i].id, ids);
            log_msg(LOG_WARN, "spool: %s: bad STATE record of %s: ignored",
                    sc->segs[st[i].seg].name, ids);
            continue;
        }
        int e = spool_fold_apply(f, &x->d[i]);
        if (e < 0)
            return e;
        m += st[i].len + 1;
        r += nr;
    }
    return 0;
}

/* Reads each live message's START record again and calls cb. */
int scan_report_live(struct scan *sc, struct spool_ient **live, size_t n, spool_scan_fn *cb,
                     void *arg)
{
    struct spool_envdec dec = {0};
    struct spool_fold fold = {0};
    struct st_scratch x = {0};
    unsigned char *buf = NULL;
    size_t bufcap = 0, si = 0;
    int r = 0;
    qsort(live, n, sizeof(*live), ient_cmp); /* the STATE records are sorted (recover.c) */
    for (size_t i = 0; r == 0 && i < n; i++) {
        const struct spool_ient *e = live[i];
        const struct spool_icopy *c = &e->c;
        int err = 0;
        struct spool_fh *h = NULL;
        if (sc->fh[c->start_seg] == NULL) {
            const struct spool_seg *s = &sc->segs[c->start_seg];
            sc->fh[c->start_seg] = sc->sp ? spool_fh_get(sc->sp, s->worker, s->seq, &err)
                                          : spool_fh_open(sc->dirfd, s->name, &err);
        }
        h = sc->fh[c->start_seg];
        if (h == NULL) {
            r = err;
            break;
        }
        if (scratch_fit((void **)&buf, &bufcap, c->start_len, 1) < 0) {
            r = -ENOMEM;
            break;
        }
        r = spool_pread_all(h->fd, buf, c->start_len, c->start_off + SPOOL_REC_HDR);
        if (r < 0)
            break;
        struct spool_msginfo m;
        memset(&m, 0, sizeof(m));
        r = spool_env_decode(buf, c->start_len, &m, &dec);
        if (r == 0)
            r = spool_fold_begin(&fold, m.nrcpt, m.rcpts);
        /* the sorted STATE records of this id (ids are unique: binary search) */
        size_t lo = 0, hi = sc->nst;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (sc->st[mid].id < e->id)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (si = lo; si < sc->nst && sc->st[si].id == e->id; si++)
            ;
        if (r == 0 && si > lo)
            r = fold_states(sc, sc->st + lo, si - lo, &x, &fold);
        if (r < 0)
            break;
        m.id = e->id;
        m.size = c->size;
        m.flags = c->mflags;
        m.nedits = c->nedits;
        m.nrcpt = fold.nrcpt;
        m.rcpts = fold.rcpts;
        m.rstate = fold.rstate;
        m.attempts = fold.attempts;
        m.next_ms = fold.next_ms;
        m.last_error = fold.last_error;
        m.qflags = fold.qflags;
        struct scan_cur cur = {&m, sc, e};
        scan_cur = &cur;
        r = cb(arg, &m);
        scan_cur = NULL;
    }
    free(buf);
    free(x.d);
    free(x.mem);
    free(x.rc);
    spool_fold_fini(&fold);
    spool_envdec_fini(&dec);
    return r;
}

void scan_fh_fini(struct scan *sc)
{
    for (size_t i = 0; sc->fh && i < sc->nseg; i++) {
        spool_fh_release(sc->fh[i]);
        sc->fh[i] = NULL;
    }
}

/* ---- spool_msg from a callback ---- */

static struct spool_fh *scan_fh(struct scan *sc, uint32_t seg, int *err)
{
    if (sc->fh[seg] == NULL) {
        const struct spool_seg *s = &sc->segs[seg];
        sc->fh[seg] = sc->sp ? spool_fh_get(sc->sp, s->worker, s->seq, err)
                             : spool_fh_open(sc->dirfd, s->name, err);
    }
    return sc->fh[seg];
}

struct spool_msg *spool_msg_from_info(struct spool *sp, const struct spool_msginfo *m)
{
    const struct scan_cur *cur = scan_cur;
    if (cur == NULL || cur->m != m)
        log_panic("spool_msg_from_info: not the msginfo of a running scan callback");
    struct scan *sc = cur->sc;
    if (sp != NULL && sc->sp != NULL && sp != sc->sp)
        log_panic("spool_msg_from_info: another spool's message");
    const struct spool_icopy *c = &cur->e->c;
    size_t n = 0;
    for (uint32_t k = c->ext_head; k; k = sc->x[k - 1].next)
        n++;
    struct spool_mext one[4], *v = n <= 4 ? one : malloc(n * sizeof(*v));
    unsigned char *edits = NULL;
    struct spool_msg *msg = NULL;
    int err = 0;
    if (v == NULL)
        return NULL;
    size_t i = 0;
    for (uint32_t k = c->ext_head; k; k = sc->x[k - 1].next, i++) {
        const struct scan_xnode *x = &sc->x[k - 1];
        struct spool_fh *h = scan_fh(sc, x->seg, &err);
        if (h == NULL)
            goto out;
        v[i] = (struct spool_mext){h, x->off, x->len};
    }
    if (c->flags & SPOOL_IX_EDITS) {
        struct spool_fh *h = scan_fh(sc, c->edits_seg, &err);
        edits = malloc(c->edits_len ? c->edits_len : 1);
        if (h == NULL || edits == NULL ||
            spool_pread_all(h->fd, edits, c->edits_len, c->edits_off) < 0)
            goto out;
    }
    msg = spool_msg_build(m, v, n, edits, edits ? c->edits_len : 0);
out:
    free(edits);
    if (v != one)
        free(v);
    return msg;
}
