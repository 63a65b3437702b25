/*
 * NAME
 *	wstate - the queue manager's records and a writer's accounting
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int spool_writer_state(struct spool_writer *w, uint64_t id,
 *		const struct spool_state *st);
 *	int spool_writer_remove(struct spool_writer *w, uint64_t id);
 * DESCRIPTION
 *	STATE and REMOVE records go into the writer's current segment like
 *	any append and join its group commit: spool_writer_sync_fd() covers
 *	them even when no message was committed.  A STATE record counts at
 *	once as the message's record in that segment (so the segment stays
 *	while the message lives); a REMOVE pins its segment until the sync
 *	covering it succeeded, and then removes the message from the
 *	accounting, its body segments guarding the REMOVE (acct.c).  When
 *	the sync of a segment holding a REMOVE fails, the REMOVE is appended
 *	again to the next segment; STATE records lost that way are logged
 *	(the queue manager's memory still has them).
 *
 *	The writer's side of the accounting is here too: each new segment
 *	is registered as current; at rotation the old one is sealed and
 *	pinned by every txn with records in it that has not finished (so a
 *	long DATA stream never loses its first half); a message becomes live
 *	in the accounting when its COMMIT is durable, in sync_done, with one
 *	lock round trip per batch.
 * DIAGNOSTICS
 *	0 or -errno; -EINVAL for a state that cannot be stored (bad kind,
 *	CR or LF in a string, too long).
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

static uint64_t wkey(const struct spool_writer *w, uint64_t seq)
{
    return spool_seg_key(w->worker, seq);
}

/* Under amu.  The current segment's entry is cached: it is never
 * reclaimed while current. */
static struct spool_sacct *wseg(struct spool_writer *w, uint64_t seq)
{
    if (seq == w->cur->seq && w->cur->acct != NULL)
        return w->cur->acct;
    return spool_acct_seg(w->sp, wkey(w, seq), true);
}

static bool st_text_ok(const char *s)
{
    return s == NULL || s[strcspn(s, "\r\n")] == '\0';
}

static bool st_valid(const struct spool_state *st)
{
    if (st->kind < SPOOL_ST_DELIVERED || st->kind > SPOOL_ST_WARNED || !st_text_ok(st->reason))
        return false;
    if (st->kind == SPOOL_ST_RCPTS) {
        if (st->nrcpt > 0 && st->rcpts == NULL)
            return false;
        for (uint32_t i = 0; i < st->nrcpt; i++)
            if (st->rcpts[i] == NULL || !st_text_ok(st->rcpts[i]))
                return false;
    }
    return true;
}

int spool_writer_state(struct spool_writer *w, uint64_t id, const struct spool_state *st)
{
    if (id == 0 || !st_valid(st))
        return -EINVAL;
    uint64_t len = spool_state_len(st);
    if (len > SPOOL_REC_MAX)
        return -EINVAL;
    if (len > w->stcap) {
        unsigned char *nb = realloc(w->stbuf, (size_t)len);
        if (nb == NULL)
            return -ENOMEM;
        w->stbuf = nb;
        w->stcap = (size_t)len;
    }
    /* relaxed: a unique, increasing number is all that is needed */
    uint64_t seq = atomic_fetch_add_explicit(&w->sp->state_seq, 1, memory_order_relaxed);
    spool_state_encode(st, seq, w->stbuf);
    spool_wb_reset(w);
    int r = spool_wb_rec(w, SPOOL_REC_STATE, id, w->stbuf, (uint32_t)len, false);
    if (r == 0)
        r = spool_wb_flush(w, NULL);
    if (r < 0)
        return r;
    w->nstate++;
    pthread_mutex_lock(&w->sp->amu);
    struct spool_sacct *s = wseg(w, w->cur->seq);
    if (s)
        spool_acct_add(w->sp, id, s, SPOOL_REC_SIZE(len), false, false);
    pthread_mutex_unlock(&w->sp->amu);
    return 0;
}

static int rm_push(struct spool_writer *w, uint64_t id, uint64_t seq)
{
    if (w->nrm == w->rmcap) {
        size_t nc = w->rmcap ? w->rmcap * 2 : 16;
        struct spool_wrm *nv = realloc(w->rm, nc * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        w->rm = nv;
        w->rmcap = nc;
    }
    w->rm[w->nrm++] = (struct spool_wrm){id, seq, false};
    return 0;
}

int spool_writer_remove(struct spool_writer *w, uint64_t id)
{
    if (id == 0)
        return -EINVAL;
    if (w->nrm == w->rmcap && rm_push(w, 0, 0) == 0)
        w->nrm--; /* room first: nothing may fail once the record is out */
    if (w->nrm == w->rmcap)
        return -ENOMEM;
    spool_wb_reset(w);
    int r = spool_wb_rec(w, SPOOL_REC_REMOVE, id, NULL, 0, false);
    if (r == 0)
        r = spool_wb_flush(w, NULL);
    if (r < 0)
        return r;
    rm_push(w, id, w->cur->seq);
    pthread_mutex_lock(&w->sp->amu);
    struct spool_sacct *s = wseg(w, w->cur->seq);
    if (s)
        s->pins++;
    pthread_mutex_unlock(&w->sp->amu);
    return 0;
}

void spool_wstate_poison(struct spool_writer *w, uint64_t seq)
{
    for (size_t i = 0; i < w->nrm; i++) {
        if (w->rm[i].seq == seq && !w->rm[i].redo) {
            w->rm[i].redo = true;
            w->redo = true;
        }
    }
    for (size_t i = 0; i < w->ncp; i++)
        if (w->cp[i].to_seq == seq)
            w->cp[i].lost = true;
    if (w->nstate + w->nstate_flight > 0)
        log_msg(LOG_WARN,
                "spool: worker %u: up to %zu STATE records may be lost with segment %" PRIu64,
                w->worker, w->nstate + w->nstate_flight, seq);
}

void spool_wstate_redo(struct spool_writer *w)
{
    if (!w->redo || w->flight_seg != NULL)
        return;
    spool_wb_reset(w);
    int r = 0;
    size_t n = 0;
    for (size_t i = 0; r == 0 && i < w->nrm; i++)
        if (w->rm[i].redo &&
            (r = spool_wb_rec(w, SPOOL_REC_REMOVE, w->rm[i].id, NULL, 0, false)) == 0)
            n++;
    if (r == 0 && n > 0)
        r = spool_wb_flush(w, NULL);
    if (r < 0) {
        log_msg(LOG_ERROR, "spool: worker %u: cannot append %zu REMOVE records again: %s",
                w->worker, n, strerror(-r));
        return; /* tried again at the next sync */
    }
    pthread_mutex_lock(&w->sp->amu);
    for (size_t i = 0; i < w->nrm; i++) {
        if (!w->rm[i].redo)
            continue;
        spool_acct_unpin(w->sp, wkey(w, w->rm[i].seq), 1);
        w->rm[i].seq = w->cur->seq;
        w->rm[i].redo = false;
        struct spool_sacct *s = wseg(w, w->cur->seq);
        if (s)
            s->pins++;
    }
    pthread_mutex_unlock(&w->sp->amu);
    w->redo = false;
}

/* ---- accounting ---- */

void spool_wacct_segment(struct spool_writer *w, struct spool_wseg *s)
{
    pthread_mutex_lock(&w->sp->amu);
    struct spool_sacct *a = spool_acct_seg(w->sp, wkey(w, s->seq), true);
    if (a) {
        a->flags |= SPOOL_SA_CURRENT;
        a->size = s->size;
    }
    s->acct = a;
    pthread_mutex_unlock(&w->sp->amu);
}

static void pin_txn(struct spool_sacct *a, struct spool_txn *t, uint64_t seq)
{
    if (!t->started || t->last_seq != seq)
        return;
    if (t->pin_lo == 0)
        t->pin_lo = seq;
    t->pin_hi = seq;
    a->pins++;
}

void spool_wacct_rotate(struct spool_writer *w, struct spool_wseg *old)
{
    pthread_mutex_lock(&w->sp->amu);
    struct spool_sacct *a = wseg(w, old->seq);
    if (a) {
        a->flags &= ~SPOOL_SA_CURRENT;
        a->size = old->size;
        for (struct spool_txn *t = w->active.head; t; t = t->next)
            pin_txn(a, t, old->seq);
        for (struct spool_txn *t = w->pending.head; t; t = t->next)
            pin_txn(a, t, old->seq);
        for (struct spool_txn *t = w->flight.head; t; t = t->next)
            pin_txn(a, t, old->seq);
        spool_acct_cand(w->sp, a);
    } else { /* not tracked: never reclaimed */
    }
    pthread_mutex_unlock(&w->sp->amu);
}

void spool_wacct_close(struct spool_writer *w)
{
    pthread_mutex_lock(&w->sp->amu);
    struct spool_sacct *a = wseg(w, w->cur->seq);
    if (a) {
        a->flags &= ~SPOOL_SA_CURRENT;
        a->size = w->cur->size;
        spool_acct_cand(w->sp, a);
    }
    pthread_mutex_unlock(&w->sp->amu);
}

void spool_wacct_unpin(struct spool_txn *t)
{
    if (t->pin_lo == 0)
        return;
    struct spool_writer *w = t->w;
    pthread_mutex_lock(&w->sp->amu);
    for (uint64_t s = t->pin_lo; s <= t->pin_hi; s++)
        spool_acct_unpin(w->sp, wkey(w, s), 1);
    pthread_mutex_unlock(&w->sp->amu);
    t->pin_lo = t->pin_hi = 0;
}

/* One durable message: its records, segment by segment. */
static void acct_txn(struct spool_writer *w, const struct spool_txn *t)
{
    struct spool *sp = w->sp;
    uint64_t seq = t->first_seq;
    struct spool_sacct *a = wseg(w, seq);
    uint64_t bytes = SPOOL_REC_SIZE(t->start_len);
    size_t n = t->ext ? t->ext->n : 0;
    int r = 0;
    for (size_t i = 0; i <= n; i++) {
        uint64_t s = i < n ? t->ext->v[i].seq : t->last_seq;
        if (s != seq) {
            if (a && (r = spool_acct_add(sp, t->id, a, bytes, true, true)) < 0)
                break;
            seq = s;
            a = wseg(w, seq);
            bytes = 0;
        }
        if (i < n)
            bytes += SPOOL_REC_SIZE(t->ext->v[i].len);
    }
    bytes += (t->edits ? SPOOL_REC_SIZE(t->edits_len) : 0) + SPOOL_REC_SIZE(SPOOL_COMMIT_LEN);
    if (r == 0 && a)
        r = spool_acct_add(sp, t->id, a, bytes, true, true);
    if (r < 0 || a == NULL) {
        /* unaccounted, its segments must not go: keep them */
        for (uint64_t s = t->first_seq; s <= t->last_seq; s++) {
            struct spool_sacct *k = spool_acct_seg(sp, wkey(w, s), false);
            if (k)
                k->flags |= SPOOL_SA_KEEP;
        }
        log_msg(LOG_ERROR, "spool: worker %u: out of memory in the accounting: segments kept",
                w->worker);
    }
}

void spool_wacct_settle(struct spool_writer *w, struct spool_tlist *ok, int res)
{
    if (ok->head == NULL && w->nrm_flight == 0 && w->ncp_flight == 0) {
        w->nstate_flight = 0;
        return;
    }
    struct spool *sp = w->sp;
    pthread_mutex_lock(&sp->amu);
    for (struct spool_txn *t = ok->head; t; t = t->next)
        acct_txn(w, t);
    size_t keep = 0;
    for (size_t i = 0; i < w->nrm; i++) {
        struct spool_wrm *e = &w->rm[i];
        if (i >= w->nrm_flight || e->redo) {
            w->rm[keep++] = *e;
            continue;
        }
        struct spool_sacct *a = spool_acct_seg(sp, wkey(w, e->seq), false);
        spool_acct_remove(sp, e->id, a);
        if (a) {
            a->pins = a->pins ? a->pins - 1 : 0;
            spool_acct_cand(sp, a);
        }
    }
    w->nrm = keep;
    w->nrm_flight = 0;
    keep = 0;
    for (size_t i = 0; i < w->ncp; i++) {
        struct spool_wcp *e = &w->cp[i];
        if (i >= w->ncp_flight && !e->lost) {
            w->cp[keep++] = *e;
            continue;
        }
        /* durable: the old copy is no longer needed; lost: the new one is not to be trusted */
        struct spool_sacct *a =
            spool_acct_seg(sp, e->lost ? wkey(w, e->to_seq) : e->from_key, false);
        if (a)
            spool_acct_drop(sp, e->id, a);
        struct spool_sacct *from = spool_acct_seg(sp, e->from_key, false);
        if (from && from->copying) {
            from->copying--;
            spool_acct_cand(sp, from);
        }
    }
    w->ncp = keep;
    w->ncp_flight = 0;
    pthread_mutex_unlock(&sp->amu);
    if (res < 0 && w->nstate_flight > 0)
        log_msg(LOG_WARN, "spool: worker %u: %zu STATE records may be lost", w->worker,
                w->nstate_flight);
    w->nstate_flight = 0;
}

void spool_wacct_aborts(struct spool_writer *w, const struct spool_tlist *failed)
{
    pthread_mutex_lock(&w->sp->amu);
    struct spool_sacct *a = wseg(w, w->cur->seq);
    for (const struct spool_txn *t = failed->head; a && t; t = t->next)
        if (t->started)
            for (uint64_t s = t->first_seq; s <= t->last_seq; s++) {
                struct spool_sacct *g = wseg(w, s);
                if (g)
                    spool_acct_guard(g, a);
            }
    pthread_mutex_unlock(&w->sp->amu);
}
