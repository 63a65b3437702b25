/*
 * NAME
 *	state - the STATE record: the queue manager's delivery state
 * SYNOPSIS
 *	#include "storage/spool_int.h"
 *
 *	n = spool_state_len(&st); spool_state_encode(&st, seq, payload);
 *	spool_state_decode(payload, n, &dec, mem, rcpts, cap);
 *	spool_fold_begin(&f, nrcpt, rcpts);
 *	spool_fold_apply(&f, &dec); ... spool_fold_fini(&f);
 * DESCRIPTION
 *	Payload: u64 seq, u32 kind, u32 rcpt, i64 when_ms, u32 attempts,
 *	str reason, and for RCPTS u32 n and n strings (every str a u32
 *	length and its octets).  seq orders the records of one message:
 *	they may sit in any segment of any worker, and recovery reads
 *	segments per worker, not in time order, so it sorts a message's
 *	records by seq before folding them.  seq comes from one counter per
 *	spool, seeded at recovery past the largest seq found; compaction
 *	copies records verbatim (same seq), so a record and its copy fold
 *	the same way, once or twice.
 *
 *	Folding: DELIVERED and FAILED set a recipient's state (FAILED also
 *	the last error), DEFERRED sets attempts, next attempt and the last
 *	error, HOLD and RELEASE the held flag, WARNED the warned flag, and
 *	RCPTS replaces the recipient list, every state back to PENDING.
 * DIAGNOSTICS
 *	spool_state_decode() returns -EBADMSG for a payload that does not
 *	parse; the fold returns -ENOMEM.
 */
#include "storage/spool_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *st_str(const char *s)
{
    return s ? s : "";
}

uint64_t spool_state_len(const struct spool_state *st)
{
    uint64_t n = SPOOL_STATE_MIN + strlen(st_str(st->reason));
    if (st->kind == SPOOL_ST_RCPTS) {
        n += 4;
        for (uint32_t i = 0; i < st->nrcpt; i++)
            n += 4 + strlen(st_str(st->rcpts[i]));
    }
    return n;
}

static unsigned char *st_put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(st_str(s));
    spool_put32(p, (uint32_t)n);
    memcpy(p + 4, st_str(s), n);
    return p + 4 + n;
}

void spool_state_encode(const struct spool_state *st, uint64_t seq, unsigned char *p)
{
    spool_put64(p, seq);
    spool_put32(p + 8, (uint32_t)st->kind);
    spool_put32(p + 12, st->rcpt);
    spool_put64(p + 16, (uint64_t)st->when_ms);
    spool_put32(p + 24, st->attempts);
    p = st_put_str(p + 28, st->reason);
    if (st->kind == SPOOL_ST_RCPTS) {
        spool_put32(p, st->nrcpt);
        p += 4;
        for (uint32_t i = 0; i < st->nrcpt; i++)
            p = st_put_str(p, st->rcpts[i]);
    }
}

static bool st_get_str(const unsigned char **p, const unsigned char *end, char **out,
                       const char **s)
{
    if (end - *p < 4)
        return false;
    uint32_t n = spool_get32(*p);
    *p += 4;
    if ((uint64_t)(end - *p) < n || memchr(*p, '\0', n) != NULL)
        return false;
    memcpy(*out, *p, n);
    (*out)[n] = '\0';
    *s = *out;
    *p += n;
    *out += n + 1;
    return true;
}

uint32_t spool_state_nrcpt(const unsigned char *p, size_t len)
{
    if (len < SPOOL_STATE_MIN || spool_get32(p + 8) != SPOOL_ST_RCPTS)
        return 0;
    uint64_t rl = spool_get32(p + 28);
    if (rl > len - SPOOL_STATE_MIN || len - SPOOL_STATE_MIN - rl < 4)
        return 0;
    uint32_t n = spool_get32(p + SPOOL_STATE_MIN + rl);
    return n > len / 4 ? 0 : n;
}

int spool_state_decode(const unsigned char *p, size_t len, struct spool_stdec *d, char *mem,
                       const char **rcpts, size_t rcptcap)
{
    const unsigned char *end = p + len;
    memset(d, 0, sizeof(*d));
    if (len < SPOOL_STATE_MIN)
        return -EBADMSG;
    d->seq = spool_get64(p);
    uint32_t kind = spool_get32(p + 8);
    if (kind < SPOOL_ST_DELIVERED || kind > SPOOL_ST_WARNED)
        return -EBADMSG;
    d->st.kind = (enum spool_state_kind)kind;
    d->st.rcpt = spool_get32(p + 12);
    d->st.when_ms = (int64_t)spool_get64(p + 16);
    d->st.attempts = spool_get32(p + 24);
    p += 28;
    if (!st_get_str(&p, end, &mem, &d->st.reason))
        return -EBADMSG;
    if (kind == SPOOL_ST_RCPTS) {
        if (end - p < 4)
            return -EBADMSG;
        uint32_t n = spool_get32(p);
        p += 4;
        if (n > (uint64_t)(end - p) / 4 || (size_t)n + 1 > rcptcap)
            return -EBADMSG;
        for (uint32_t i = 0; i < n; i++)
            if (!st_get_str(&p, end, &mem, &rcpts[i]))
                return -EBADMSG;
        rcpts[n] = NULL;
        d->st.nrcpt = n;
        d->st.rcpts = rcpts;
    }
    return p == end ? 0 : -EBADMSG;
}

static int fold_size(struct spool_fold *f, uint32_t n)
{
    if (n > f->rcap) {
        uint8_t *nr = realloc(f->rstate, n);
        if (nr == NULL)
            return -ENOMEM;
        f->rstate = nr;
        f->rcap = n;
    }
    if (n)
        memset(f->rstate, SPOOL_R_PENDING, n);
    return 0;
}

int spool_fold_begin(struct spool_fold *f, uint32_t nrcpt, const char *const *rcpts)
{
    int r = fold_size(f, nrcpt);
    if (r < 0)
        return r;
    f->nrcpt = nrcpt;
    f->rcpts = rcpts;
    f->attempts = 0;
    f->next_ms = 0;
    f->last_error = "";
    f->qflags = 0;
    return 0;
}

static void fold_set(struct spool_fold *f, uint32_t rcpt, uint8_t v)
{
    if (rcpt == SPOOL_RCPT_ALL) {
        if (f->nrcpt)
            memset(f->rstate, v, f->nrcpt);
    } else if (rcpt < f->nrcpt) {
        f->rstate[rcpt] = v;
    }
}

int spool_fold_apply(struct spool_fold *f, const struct spool_stdec *d)
{
    const struct spool_state *st = &d->st;
    switch (st->kind) {
    case SPOOL_ST_DELIVERED:
        fold_set(f, st->rcpt, SPOOL_R_DELIVERED);
        break;
    case SPOOL_ST_FAILED:
        fold_set(f, st->rcpt, SPOOL_R_FAILED);
        f->last_error = st_str(st->reason);
        break;
    case SPOOL_ST_DEFERRED:
        f->attempts = st->attempts;
        f->next_ms = st->when_ms;
        f->last_error = st_str(st->reason);
        break;
    case SPOOL_ST_HOLD:
        f->qflags |= SPOOL_Q_HELD;
        break;
    case SPOOL_ST_RELEASE:
        f->qflags &= ~SPOOL_Q_HELD;
        break;
    case SPOOL_ST_RCPTS: {
        int r = fold_size(f, st->nrcpt);
        if (r < 0)
            return r;
        f->nrcpt = st->nrcpt;
        f->rcpts = st->rcpts;
        break;
    }
    case SPOOL_ST_WARNED:
        f->qflags |= SPOOL_Q_WARNED;
        break;
    }
    return 0;
}

void spool_fold_fini(struct spool_fold *f)
{
    free(f->rstate);
    memset(f, 0, sizeof(*f));
}
