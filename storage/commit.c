/*
 * NAME
 *	commit - group commit: one fdatasync for every commit of a loop turn
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	int fd = spool_writer_sync_fd(w);
 *	if (fd >= 0)
 *		... fdatasync(fd), through the ring ...
 *	spool_writer_sync_done(w, res);
 * DESCRIPTION
 *	spool_txn_commit() queues a transaction on the writer's pending list.
 *	spool_writer_sync_fd() turns the whole pending list into the batch in
 *	flight and returns the fd of the current segment: every record of
 *	every batch member is in that segment or in one that rotation already
 *	synced (writer.c).  spool_writer_sync_done() then calls each member's
 *	done callback, with 0 only if the sync succeeded and nothing else
 *	made the member's records doubtful.
 *
 *	A failed sync is never retried (after a failed fsync the kernel may
 *	have dropped the dirty pages and reports the error only once).
 *	Instead: the segment is poisoned, every member of the batch and every
 *	commit still pending is refused, transactions with records in that
 *	segment fail at their next call, an ABORT record for each refused
 *	message is appended to a fresh segment and synced synchronously
 *	(this path is rare), and only then do the done callbacks run.  So a
 *	message that got 451 is not live after a restart even if its COMMIT
 *	did reach the disk.
 *
 *	The done callbacks run after the writer's lists are consistent again,
 *	so a callback may begin, commit or orphan transactions and may call
 *	spool_writer_sync_fd().
 * DIAGNOSTICS
 *	spool_writer_sync_done() panics when no sync is in flight.  A failed
 *	sync is logged as an error; so is failing to record ABORTs.
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/log.h"

#define ABORT_ATTEMPTS 3

int spool_writer_sync_fd(struct spool_writer *w)
{
    if (w->flight_seg)
        return -1;
    spool_wstate_redo(w);
    if (w->pending.head == NULL && spool_wstate_pending(w) == 0)
        return -1;
    w->nstate_flight = w->nstate;
    w->nstate = 0;
    w->nrm_flight = w->nrm;
    w->ncp_flight = w->ncp;
    w->flight = w->pending;
    memset(&w->pending, 0, sizeof(w->pending));
    w->flight_seg = w->cur;
    w->flight_mark = w->cur->size;
    w->st.syncs++;
    return w->cur->fd;
}

size_t spool_writer_pending(const struct spool_writer *w)
{
    return w->pending.n + spool_wstate_pending(w);
}

bool spool_writer_busy(const struct spool_writer *w)
{
    return w->pending.head != NULL || w->flight_seg != NULL || spool_wstate_pending(w) > 0 ||
           w->redo;
}

/* Appends an ABORT for every member of failed and syncs it, in a segment
 * that is not poisoned, trying a fresh segment when that fails. */
static void batch_record_aborts(struct spool_writer *w, const struct spool_tlist *failed)
{
    int r = 0;
    for (int attempt = 0; attempt < ABORT_ATTEMPTS; attempt++) {
        spool_wb_reset(w);
        r = 0;
        for (struct spool_txn *t = failed->head; t && r == 0; t = t->next)
            r = spool_wb_rec(w, SPOOL_REC_ABORT, t->id, NULL, 0, false);
        if (r == 0)
            r = spool_wb_flush(w, NULL);
        if (r < 0)
            continue;
        struct spool_wseg *s = w->cur;
        w->st.syncs++;
        r = w->datasync(s->fd);
        if (r == 0) {
            s->synced = s->size;
            spool_wacct_aborts(w, failed);
            return;
        }
        w->st.sync_errors++;
        log_msg(LOG_ERROR, "spool: %s: fdatasync of ABORT records: %s", s->name, strerror(-r));
        spool_writer_poison(w, s, r);
    }
    log_msg(LOG_ERROR,
            "spool: worker %u: cannot record %zu refused messages as aborted (%s): they may "
            "be delivered after a restart although the client was told 451",
            w->worker, failed->n, strerror(-r));
}

/* Hands each member to the durable hook (spool_set_durable). */
static void batch_durable(struct spool_writer *w, const struct spool_tlist *ok)
{
    for (struct spool_txn *t = ok->head; t; t = t->next) {
        struct spool_msg *m = spool_msg_from_txn(t);
        if (m == NULL) {
            char ids[17];
            spool_id_str(t->id, ids);
            log_msg(LOG_ERROR,
                    "spool: %s: durable but not handed over (out of memory): "
                    "queued at the next start",
                    ids);
            continue;
        }
        w->durable(w->durable_arg, m);
    }
}

/* Calls done for each member (unless orphaned) and frees it. */
static void batch_complete(struct spool_tlist *l)
{
    struct spool_txn *t;
    while ((t = spool_tl_pop(l)) != NULL) {
        if (!t->orphan && t->done)
            t->done(t->arg, t->id, t->err);
        spool_txn_free(t);
    }
}

void spool_writer_sync_done(struct spool_writer *w, int res)
{
    struct spool_wseg *seg = w->flight_seg;
    if (seg == NULL)
        log_panic("spool_writer_sync_done: worker %u: no sync in flight", w->worker);
    if (res > 0)
        res = 0;
    struct spool_tlist batch = w->flight, ok = {0}, failed = {0};
    memset(&w->flight, 0, sizeof(w->flight));
    w->flight_seg = NULL;

    struct spool_txn *t;
    while ((t = spool_tl_pop(&batch)) != NULL) {
        if (res < 0 && !t->err)
            t->err = res;
        spool_tl_push(t->err ? &failed : &ok, t);
    }
    if (res == 0) {
        if (seg->poison != SPOOL_SEG_SYNC && w->flight_mark > seg->synced)
            seg->synced = w->flight_mark;
    } else {
        w->st.sync_errors++;
        log_msg(LOG_ERROR, "spool: %s: fdatasync: %s: %zu messages refused, segment abandoned",
                seg->name, strerror(-res), failed.n + w->pending.n);
        spool_writer_poison(w, seg, res);
        /* pending commits were written after the sync began, into a file
         * whose writeback failed: refuse them now as well */
        while ((t = spool_tl_pop(&w->pending)) != NULL)
            spool_tl_push(&failed, t);
    }
    if (seg != w->cur)
        spool_wseg_close(seg); /* retired by a rotation while the sync was in flight */
    spool_wacct_settle(w, &ok, res);
    if (failed.head)
        batch_record_aborts(w, &failed);
    spool_wstate_redo(w);
    /* relaxed: a hint; a candidate missed here is taken at the next sync */
    if (atomic_load_explicit(&w->sp->ncand_hint, memory_order_relaxed) > 0)
        spool_reclaim(w->sp);
    if (w->durable && ok.head)
        batch_durable(w, &ok);
    batch_complete(&failed);
    batch_complete(&ok);
}
