/*
 * NAME
 *	txn - receiving one message into the spool
 * SYNOPSIS
 *	#include "storage/spool.h"
 *
 *	t = spool_txn_begin(w, &env);
 *	spool_txn_append(t, iov, n);		(any number of times)
 *	spool_txn_commit(t, iov, n, done, arg);	(or spool_txn_abort(t))
 * DESCRIPTION
 *	spool_txn_begin() takes the next message id and encodes the envelope
 *	into the START payload the transaction owns; nothing is written yet.
 *	The first append or the commit writes START in the same vectored
 *	write as the body, so a small message costs one write: START, DATA
 *	and COMMIT together.  COMMIT carries the body size and crc32c, which
 *	recovery checks against the DATA records.
 *
 *	A transaction whose records became doubtful (a failed sync or
 *	rotation sync of a segment holding them, or a failed append) has
 *	t->err set: appends and the commit return it, and the caller aborts.
 *
 *	Header edits (spool_txn_set_edits) are encoded into the txn at once
 *	and go out as an EDITS record between the last DATA record and
 *	COMMIT, in the commit's single write; message flags go into COMMIT.
 *	So a message is live with its edits or not at all.
 * DIAGNOSTICS
 *	0 or -errno (-ENOSPC: no space).  Committing, aborting or appending
 *	to a committed transaction, or orphaning an uncommitted one, panics.
 */
#include "storage/writer_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/log.h"

struct spool_txn *spool_txn_begin(struct spool_writer *w, const struct spool_env *env)
{
    uint64_t n = spool_env_len(env);
    if (n > SPOOL_REC_MAX) {
        log_msg(LOG_WARN, "spool: envelope of %" PRIu64 " octets refused", n);
        return NULL;
    }
    struct spool_txn *t = calloc(1, sizeof(*t) + (size_t)n);
    if (t == NULL)
        return NULL;
    spool_env_encode(env, t->start);
    t->start_len = (uint32_t)n;
    t->w = w;
    t->id = spool_writer_next_id(w);
    spool_tl_push(&w->active, t);
    return t;
}

uint64_t spool_txn_id(const struct spool_txn *t)
{
    return t->id;
}

static void txn_check_open(const struct spool_txn *t, const char *fn)
{
    if (t->committed) {
        char ids[17];
        spool_id_str(t->id, ids);
        log_panic("%s: message %s is already committed", fn, ids);
    }
}

int spool_txn_append(struct spool_txn *t, const struct iovec *iov, int iovcnt)
{
    txn_check_open(t, "spool_txn_append");
    if (t->err)
        return t->err;
    struct spool_writer *w = t->w;
    uint64_t size = t->body_size;
    uint32_t crc = t->body_crc;
    spool_wb_reset(w);
    int r = 0;
    if (!t->started)
        r = spool_wb_rec(w, SPOOL_REC_START, t->id, t->start, t->start_len, false);
    size_t before = w->niov;
    if (r == 0)
        r = spool_wb_data(w, t->id, iov, iovcnt, &size, &crc);
    if (r == 0 && w->niov == before)
        return 0; /* no body octets: START waits for real data */
    if (r == 0)
        r = spool_wb_flush(w, t);
    if (r < 0) {
        t->err = r;
        return r;
    }
    t->body_size = size;
    t->body_crc = crc;
    return 0;
}

int spool_txn_commit(struct spool_txn *t, const struct iovec *iov, int iovcnt, spool_done_fn *done,
                     void *arg)
{
    txn_check_open(t, "spool_txn_commit");
    struct spool_writer *w = t->w;
    int r = t->err;
    uint64_t size = t->body_size;
    uint32_t crc = t->body_crc;
    unsigned char c[SPOOL_COMMIT_LEN];
    spool_wb_reset(w);
    if (r == 0 && !t->started)
        r = spool_wb_rec(w, SPOOL_REC_START, t->id, t->start, t->start_len, false);
    if (r == 0)
        r = spool_wb_data(w, t->id, iov, iovcnt, &size, &crc);
    if (r == 0 && t->edits != NULL)
        r = spool_wb_rec(w, SPOOL_REC_EDITS, t->id, t->edits, t->edits_len, false);
    if (r == 0) {
        spool_commit_encode(c, size, crc);
        spool_commit_set_flags(c, t->mflags);
        r = spool_wb_rec(w, SPOOL_REC_COMMIT, t->id, c, sizeof(c), true);
    }
    if (r == 0)
        r = spool_wb_flush(w, t);
    if (r < 0) {
        if (!t->err)
            t->err = r;
        spool_txn_abort(t);
        return r;
    }
    t->body_size = size;
    t->body_crc = crc;
    t->committed = true;
    t->done = done;
    t->arg = arg;
    spool_tl_remove(&w->active, t);
    spool_tl_push(&w->pending, t);
    w->st.commits++;
    return 0;
}

void spool_txn_abort(struct spool_txn *t)
{
    txn_check_open(t, "spool_txn_abort");
    struct spool_writer *w = t->w;
    spool_tl_remove(&w->active, t);
    if (t->started) {
        /* not synced: without COMMIT the message is not live anyway; the
         * record only tells recovery it was given up on purpose */
        spool_wb_reset(w);
        int r = spool_wb_rec(w, SPOOL_REC_ABORT, t->id, NULL, 0, false);
        if (r == 0)
            r = spool_wb_flush(w, NULL);
        if (r < 0) {
            char ids[17];
            spool_id_str(t->id, ids);
            log_msg(LOG_DEBUG, "spool: ABORT of %s not written: %s", ids, strerror(-r));
        }
    }
    spool_txn_free(t);
}

void spool_txn_free(struct spool_txn *t)
{
    spool_wacct_unpin(t);
    if (t->ext != NULL && t->ext->rfd >= 0)
        close(t->ext->rfd);
    free(t->ext);
    free(t->edits);
    free(t);
}

int spool_txn_set_edits(struct spool_txn *t, const struct spool_edit *v, size_t n)
{
    txn_check_open(t, "spool_txn_set_edits");
    for (size_t i = 0; i < n; i++)
        if (!spool_edit_valid(&v[i]))
            return -EINVAL;
    unsigned char *p = NULL;
    uint64_t len = 0;
    if (n > 0) {
        len = spool_edits_len(v, n);
        if (len > SPOOL_REC_MAX)
            return -EINVAL;
        p = malloc((size_t)len);
        if (p == NULL)
            return -ENOMEM;
        spool_edits_encode(v, n, p);
    }
    free(t->edits);
    t->edits = p;
    t->edits_len = (uint32_t)len;
    return 0;
}

void spool_txn_set_flags(struct spool_txn *t, uint32_t flags)
{
    txn_check_open(t, "spool_txn_set_flags");
    t->mflags = flags;
}

uint64_t spool_txn_size(const struct spool_txn *t)
{
    return t->body_size;
}

void spool_txn_orphan(struct spool_txn *t)
{
    if (!t->committed) {
        char ids[17];
        spool_id_str(t->id, ids);
        log_panic("spool_txn_orphan: message %s is not committed", ids);
    }
    t->orphan = true;
}
