/*
 * NAME
 *	smtp_data - message content: the DATA scanner, BDAT chunks, the spool txn
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 * DESCRIPTION
 *	The DATA scanner is a byte state machine that survives any split of
 *	the input.  It ends the data only at <CRLF>.<CRLF> (the start of the
 *	data counts as just after a CRLF), so none of the SMTP smuggling
 *	variants (<LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF>, ...) ends a
 *	message early or starts a second one.  A CR or LF that is not part
 *	of a CRLF marks the message bare; it is read to its real end and then
 *	refused with 550 5.6.0 (Postfix smtpd_forbid_bare_newline), as is a
 *	NUL octet (a next hop that strips NULs could see "\r\n\0.\r\n" as the
 *	end, and a spool record header cannot hide in a body without one), and a
 *	line over cfg->max_line_length octets (550 5.5.2).  Dot-unstuffing
 *	cuts the content into slices around the stuffing dots: the body is
 *	never copied.
 *
 *	The stored body is a Received: header (RFC 5321 4.4, RFC 3848) made
 *	here, then the content.  Slices are held in txn.body and appended to
 *	the spool every SMTP_FLUSH_BYTES (one writev), so a session holds at
 *	most that much of the receive buffers whatever the message size.
 *	Past max_message_size the spool txn is aborted and the rest is only
 *	scanned: the reply is 552 5.3.4 after the end.
 *
 *	At the end the eod event runs (smtp_sinks.c; the sinks read the body
 *	through smtp_sinkmsg.c and may record header edits): a refusal aborts
 *	the txn (nothing stays live), DISCARD aborts it and answers 250 all
 *	the same, QUARANTINE stores it with the quarantine flag.  Then the
 *	txn is committed, with its edit list, and the session PARKS until the
 *	group commit calls smtp_msg_done: 250 only once the fdatasync that
 *	covers the message succeeded, 451/452 otherwise; after the 250 the
 *	submission event is fired (smtp_sinkmsg.c).  Input that arrives
 *	meanwhile waits in the session's queue.
 *
 *	BDAT (RFC 3030) takes exactly n octets, no unstuffing; the same CR/LF
 *	and line checks apply and the verdict comes with LAST.
 * DIAGNOSTICS
 *	Spool errors are logged (warn) and answered 452 4.3.1 (ENOSPC) or
 *	451 4.3.0: an append error after the end of the data (the client is
 *	still sending until then), a commit error at once.  A done callback
 *	for a session that is not parked panics.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/smtpd/auth.h"
#include "core/base/clock.h"
#include "core/base/log.h"
#include "core/smtpd/smtp_int.h"

/* ---- the scanner ---- */

void smtp_dscan_init(struct smtp_dscan *d)
{
    d->state = SMTP_DS_BOL;
    d->bare = d->longline = d->nul = false;
    d->linelen = 0;
}

/* A CRLF ended a line. */
static void smtp_dscan_eol(struct smtp_dscan *d, uint64_t maxline)
{
    if (d->linelen > maxline)
        d->longline = true;
    d->linelen = 0;
    d->state = SMTP_DS_BOL;
}

/* One content octet inside a line (any state but CR/DOT*).  A line over
 * the limit is flagged at once, so its message stops going to disk. */
static void smtp_dscan_text(struct smtp_dscan *d, char c, uint64_t maxline)
{
    if (c == '\r') {
        d->state = SMTP_DS_CR;
        return;
    }
    if (c == '\n')
        d->bare = true; /* a line end without CR is content, never a line end */
    else if (c == '\0')
        d->nul = true;
    if (++d->linelen > maxline)
        d->longline = true;
    d->state = SMTP_DS_TEXT;
}

size_t smtp_dscan_data(struct smtp_dscan *d, const char *p, size_t len, uint64_t maxline,
                       smtp_emit_fn *emit, void *arg, bool *done)
{
    size_t run = 0; /* start of the content run not yet emitted */
    *done = false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        switch (d->state) {
        case SMTP_DS_BOL:
            if (c == '.') {
                /* the dot is stuffing or the terminator: never content */
                if (i > run)
                    emit(arg, run, i - run);
                run = i + 1;
                d->state = SMTP_DS_DOT;
            } else {
                smtp_dscan_text(d, c, maxline);
            }
            break;
        case SMTP_DS_TEXT: {
            /* the hot case: skip to the line's CR with memchr (vectorised)
             * instead of a state step per octet; a LF before it is bare */
            const char *cr = memchr(p + i, '\r', len - i);
            size_t end = cr ? (size_t)(cr - p) : len;
            if (memchr(p + i, '\n', end - i) != NULL)
                d->bare = true;
            if (memchr(p + i, '\0', end - i) != NULL)
                d->nul = true;
            d->linelen += end - i;
            if (d->linelen > maxline)
                d->longline = true;
            if (cr == NULL) {
                i = len; /* the rest of the piece is content */
                goto out;
            }
            d->state = SMTP_DS_CR;
            i = end; /* the loop steps past the CR */
            break;
        }
        case SMTP_DS_CR:
            if (c == '\n') {
                smtp_dscan_eol(d, maxline);
            } else {
                d->bare = true; /* the CR before c */
                d->linelen++;
                smtp_dscan_text(d, c, maxline);
            }
            break;
        case SMTP_DS_DOT:
            if (c == '\r') {
                /* held back: part of the terminator unless no LF follows */
                if (i > run)
                    emit(arg, run, i - run);
                run = i + 1;
                d->state = SMTP_DS_DOT_CR;
            } else {
                smtp_dscan_text(d, c, maxline); /* a stuffed line: "..x" keeps ".x" */
            }
            break;
        case SMTP_DS_DOT_CR:
            if (c == '\n') {
                *done = true;
                return i + 1;
            }
            /* ".<CR>x": the CR was bare; the message will be refused, so
             * that the held CR is not stored does not matter */
            d->bare = true;
            d->linelen++;
            smtp_dscan_text(d, c, maxline);
            break;
        }
    }
out:
    if (len > run)
        emit(arg, run, len - run);
    return len;
}

void smtp_dscan_raw(struct smtp_dscan *d, const char *p, size_t len, uint64_t maxline)
{
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (d->state == SMTP_DS_CR) {
            if (c == '\n') {
                smtp_dscan_eol(d, maxline);
                continue;
            }
            d->bare = true;
            d->linelen++;
        }
        smtp_dscan_text(d, c, maxline);
    }
}

void smtp_dscan_raw_end(struct smtp_dscan *d)
{
    if (d->state == SMTP_DS_CR)
        d->bare = true;
}

/* ---- the spool transaction ---- */

static enum smtp_reply_id smtp_errno_reply(int err)
{
    return err == -ENOSPC ? SMTP_R_NO_STORAGE : SMTP_R_WRITE_ERROR;
}

void smtp_msg_drop(struct smtp_session *s)
{
    if (s->txn.st != NULL) {
        spool_txn_abort(s->txn.st);
        s->txn.st = NULL;
    }
    mchain_clear(&s->txn.body);
}

/* The message will be refused with r (the first reason wins). */
static void smtp_msg_fail(struct smtp_session *s, enum smtp_reply_id r)
{
    if (s->txn.fail == SMTP_R_NONE)
        s->txn.fail = r;
    smtp_msg_drop(s);
}

void smtp_msg_flush(struct smtp_session *s)
{
    struct iovec iov[SMTP_FLUSH_SLICES];
    struct mchain *b = &s->txn.body;
    if (s->txn.st == NULL || b->n == 0)
        return;
    for (uint32_t i = 0; i < b->n;) {
        uint32_t k = mchain_iov(b, i, iov, SMTP_FLUSH_SLICES);
        int rc = spool_txn_append(s->txn.st, iov, (int)k);
        if (rc < 0) {
            log_msg(LOG_WARN, "smtp: spool append: %s", strerror(-rc));
            smtp_msg_fail(s, smtp_errno_reply(rc));
            return;
        }
        i += k;
    }
    mchain_clear(b);
}

/* Content octets [off, off+n) of buffer m. */
static void smtp_msg_add(struct smtp_session *s, struct mbuf *m, uint32_t off, uint32_t n)
{
    s->txn.size += n;
    if (s->txn.size > s->cfg->max_message_size) {
        smtp_msg_fail(s, SMTP_R_SIZE_EXCEEDED); /* BDAT answers it at the chunk's end */
        return;
    }
    if (s->txn.st == NULL)
        return; /* already refused: scan only */
    if (mchain_push(&s->txn.body, m, off, n) < 0) {
        smtp_msg_fail(s, SMTP_R_NOMEM);
        return;
    }
    if (s->txn.body.bytes >= SMTP_FLUSH_BYTES || s->txn.body.n >= SMTP_FLUSH_SLICES)
        smtp_msg_flush(s);
}

/* RFC 5322 date-time in UTC. */
static void smtp_rfc5322_date(int64_t ms, char *out, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "\r\n\t(Authenticated sender: USER)" for an authenticated session, else
 * "".  The name is shown as printable ASCII: anything that could end the
 * comment or the line (parentheses, backslash, controls, non-ASCII)
 * becomes '?'. */
static void smtp_received_auth(const struct smtp_session *s, char *out, size_t len)
{
    out[0] = '\0';
    if (s->auth_user == NULL)
        return;
    int n = snprintf(out, len, "\r\n\t(Authenticated sender: ");
    size_t o = n > 0 ? (size_t)n : 0;
    for (const char *u = s->auth_user; *u != '\0' && o + 2 < len; u++) {
        unsigned char c = (unsigned char)*u;
        out[o++] = c <= 0x20 || c >= 0x7f || c == '(' || c == ')' || c == '\\' ? '?' : (char)c;
    }
    out[o++] = ')';
    out[o] = '\0';
}

/* The Received: header (RFC 5321 4.4; "with" per RFC 3848).  Only checked
 * text goes in: the HELO name, the client address, our hostname, and
 * the recipient when there is exactly one. */
static int smtp_msg_received(struct smtp_session *s, uint64_t id, int64_t arrival_ms)
{
    char date[64], idstr[17], with[16], tls[160], authl[48 + AUTH_USER_MAX];
    /* RFC 3848: ESMTPS once TLS is active; Postfix's "(using ...)" line */
    snprintf(with, sizeof(with), "%s%s%s",
             s->hello == SMTP_HELLO_EHLO ? (s->txn.smtputf8 ? "UTF8SMTP" : "ESMTP") : "SMTP",
             s->tls != NULL && s->hello == SMTP_HELLO_EHLO ? "S" : "",
             s->auth_user != NULL && s->hello == SMTP_HELLO_EHLO ? "A" : "");
    smtp_received_auth(s, authl, sizeof(authl)); /* Postfix's "(Authenticated sender: ...)" */
    snprintf(tls, sizeof(tls), "%s%.120s%s", s->tls ? "\r\n\t(using " : "", s->tls ? s->tls : "",
             s->tls ? ")" : "");
    size_t cap = 160 + sizeof(tls) + sizeof(authl) + SMTP_HELO_MAX + sizeof(s->client_lit) + SMTP_DOMAIN_MAX +
                 SMTP_PATH_MAX;
    struct mbuf *m = mbuf_heap(cap);
    if (m == NULL)
        return -ENOMEM;
    smtp_rfc5322_date(arrival_ms, date, sizeof(date));
    spool_id_str(id, idstr);
    int n;
    if (s->txn.nrcpt == 1)
        n = snprintf(m->data, cap,
                     "Received: from %s (%s)%s%s\r\n\tby %.255s (sluice) with %s id %s\r\n"
                     "\tfor <%s>; %s\r\n",
                     s->helo, s->client_lit, tls, authl, s->cfg->hostname, with, idstr, s->txn.rcpts[0],
                     date);
    else
        n = snprintf(m->data, cap,
                     "Received: from %s (%s)%s%s\r\n\tby %.255s (sluice) with %s id %s;\r\n\t%s\r\n",
                     s->helo, s->client_lit, tls, authl, s->cfg->hostname, with, idstr, date);
    if (n < 0 || (size_t)n >= cap) {
        mbuf_unref(m);
        return -EINVAL;
    }
    int rc = mchain_push(&s->txn.body, m, 0, (uint32_t)n);
    mbuf_unref(m); /* the chain holds it now */
    return rc;
}

enum smtp_reply_id smtp_msg_begin(struct smtp_session *s)
{
    int64_t arrival_ms = clock_wall_ms();
    struct spool_env env = {
        .arrival_ms = arrival_ms,
        .client = s->client,
        .helo = s->helo,
        .sender = s->txn.sender,
        .params = s->txn.params,
        .nrcpt = s->txn.nrcpt,
        .rcpts = (const char *const *)s->txn.rcpts,
    };
    s->txn.st = spool_txn_begin(s->srv->spool, &env);
    if (s->txn.st == NULL)
        return SMTP_R_NOMEM;
    smtp_dscan_init(&s->txn.scan);
    s->txn.size = 0;
    s->txn.fail = SMTP_R_NONE;
    if (smtp_msg_received(s, spool_txn_id(s->txn.st), arrival_ms) < 0) {
        smtp_msg_drop(s);
        return SMTP_R_NOMEM;
    }
    s->data_timing = true;
    s->data_start_ms = smtp_now_ms();
    s->data_bytes = 0;
    return SMTP_R_NONE;
}

static void smtp_msg_done(void *arg, uint64_t id, int res)
{
    struct smtp_session *s = arg;
    char idstr[17];
    if (s->phase != SMTP_P_PARKED || s->committed == NULL)
        log_panic("smtp_msg_done: session is not waiting for a commit");
    s->committed = NULL;
    s->phase = SMTP_P_CMD;
    s->last_input_ms = smtp_now_ms(); /* the wait was ours, not the client's */
    struct smtp_sk *k = s->sk;
    if (res == 0) {
        s->srv->stats.messages++;
        spool_id_str(id, idstr);
        if (k != NULL && k->queued_quarantine)
            s->srv->stats.quarantined++;
        char nr[16], sz[24], ms[24];
        snprintf(nr, sizeof(nr), "%u", (unsigned)s->logged.nrcpt);
        snprintf(sz, sizeof(sz), "%llu", (unsigned long long)s->logged.size);
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(s->last_input_ms - s->logged.data_ms));
        log_kv(LOG_INFO, "accepted", "id", idstr, "client", s->client, "sender", s->logged.sender,
               "rcpts", nr, "size", sz, "data_ms", ms, NULL);
        if (k != NULL && k->queued_set) { /* an eod sink's own 250 */
            k->reply = k->queued;
            smtp_reply(s, SMTP_R_SINK_REPLY);
        } else {
            smtp_replyf(s, SMTP_R_QUEUED, "%s", idstr);
        }
    } else {
        s->srv->stats.tempfailed++;
        smtp_reply(s, smtp_errno_reply(res));
    }
    if (k != NULL)
        k->queued_set = k->queued_quarantine = false;
    smtp_sub_commit_done(s, id, res); /* after the 250 is queued: fire and forget */
    if (s->backlog_over)
        smtp_reply(s, SMTP_R_BACKLOG);
    smtp_session_pump(s);
    if (s->srv->kick)
        s->srv->kick(s->cookie);
}

/* Commits the message (its edits and flags with it) and parks. */
static void smtp_msg_commit(struct smtp_session *s, const struct smtp_outcome *o, bool quarantine)
{
    struct smtp_txn *t = &s->txn;
    struct smtp_sk *k = s->sk;
    int rc = smtp_sinkmsg_edits(s, t->st);
    if (rc < 0) {
        log_msg(LOG_WARN, "smtp: header edits: %s", strerror(-rc));
        s->srv->stats.tempfailed++;
        smtp_txn_reset(s);
        smtp_reply(s, SMTP_R_NOMEM);
        return;
    }
    if (quarantine)
        spool_txn_set_flags(t->st, SPOOL_MSG_QUARANTINE);
    if (k != NULL) {
        k->queued_set = smtp_outcome_accept(s, o, SMTP_R_NONE, 2) == SMTP_R_SINK_REPLY;
        if (k->queued_set)
            k->queued = k->reply;
        k->queued_quarantine = quarantine;
    }
    struct iovec iov[SMTP_FLUSH_SLICES];
    uint32_t n = mchain_iov(&t->body, 0, iov, SMTP_FLUSH_SLICES); /* n < FLUSH_SLICES */
    struct spool_txn *st = t->st;
    t->st = NULL;
    snprintf(s->logged.sender, sizeof(s->logged.sender), "%s", t->sender);
    s->logged.nrcpt = t->nrcpt;
    s->logged.size = t->size;
    s->logged.data_ms = s->data_start_ms;
    smtp_txn_unsibling(s);
    rc = spool_txn_commit(st, iov, (int)n, smtp_msg_done, s);
    mchain_clear(&t->body); /* written (or failed) by now */
    if (rc == 0)
        smtp_sub_prepare(s, st); /* before the reset: it takes the envelope */
    smtp_txn_reset(s);
    if (rc < 0) { /* the spool aborted the txn already */
        log_msg(LOG_WARN, "smtp: spool commit: %s", strerror(-rc));
        s->srv->stats.tempfailed++;
        if (k != NULL)
            k->queued_set = k->queued_quarantine = false;
        smtp_reply(s, smtp_errno_reply(rc));
        return;
    }
    s->committed = st;
    s->phase = SMTP_P_PARKED;
}

/* One log line for a message refused after its data (the reply it got);
 * o: the eod chain's outcome, NULL when the server refused before it. */
static void smtp_log_refused(struct smtp_session *s, const struct smtp_outcome *o,
                             enum smtp_reply_id r, bool temp)
{
    char reply[600], nr[16], sz[24];
    if (r == SMTP_R_SINK_REPLY && s->sk != NULL)
        snprintf(reply, sizeof(reply), "%d %s %s", s->sk->reply.code, s->sk->reply.enhanced,
                 s->sk->reply.text);
    else
        smtp_reply_describe(r, reply, sizeof(reply));
    snprintf(nr, sizeof(nr), "%u", (unsigned)s->txn.nrcpt);
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)s->txn.size);
    log_kv(LOG_INFO, temp ? "tempfailed" : "rejected", "client", s->client, "sender",
           s->txn.sender, "rcpts", nr, "size", sz, "verdict",
           o != NULL && s->sk != NULL ? sink_verdict_name(o->verdict) : NULL, "reply", reply,
           NULL);
}

/* After the eod event: refuse, discard, or commit. */
static void smtp_eod_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    struct smtp_txn *t = &s->txn;
    if (!smtp_outcome_ok(o) || t->st == NULL || t->fail != SMTP_R_NONE) {
        enum smtp_reply_id r = o->reply;
        if (smtp_outcome_ok(o)) /* the spool failed while a sink decided */
            r = t->fail != SMTP_R_NONE ? t->fail : SMTP_R_WRITE_ERROR;
        bool temp = o->verdict == SINK_TEMPFAIL || r == SMTP_R_NO_STORAGE ||
                    r == SMTP_R_WRITE_ERROR || r == SMTP_R_NOMEM;
        if (temp)
            s->srv->stats.tempfailed++;
        else
            s->srv->stats.rejected++;
        smtp_log_refused(s, o, r, temp);
        smtp_txn_reset(s); /* aborts the spool txn: nothing is stored */
        smtp_reply(s, r);
        return;
    }
    if (o->verdict == SINK_DISCARD || t->discard) {
        char idstr[17];
        spool_id_str(spool_txn_id(t->st), idstr);
        enum smtp_reply_id r = smtp_outcome_accept(s, o, SMTP_R_QUEUED, 2);
        s->srv->stats.discarded++;
        smtp_txn_reset(s); /* aborted: the client is told 250 all the same */
        if (r == SMTP_R_QUEUED)
            smtp_replyf(s, SMTP_R_QUEUED, "%s", idstr);
        else
            smtp_reply(s, r);
        return;
    }
    smtp_msg_commit(s, o, o->verdict == SINK_QUARANTINE || t->quarantine);
}

/* The server's link of the eod event: the spool still has the message
 * (an append may have failed while a sink before it decided). */
static enum smtp_reply_id smtp_eod_check(struct smtp_session *s)
{
    if (s->txn.fail != SMTP_R_NONE)
        return s->txn.fail;
    return s->txn.st == NULL ? SMTP_R_WRITE_ERROR : SMTP_R_NONE;
}

/* The end of the data (the dot, or BDAT LAST): refuse, or on to eod. */
static void smtp_msg_end(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    enum smtp_reply_id r = SMTP_R_NONE;
    s->phase = SMTP_P_CMD;
    s->data_timing = false;
    if (t->scan.bare)
        r = SMTP_R_BARE_DATA;
    else if (t->scan.nul)
        r = SMTP_R_NUL_DATA;
    else if (t->scan.longline)
        r = SMTP_R_DATA_LINE_LONG;
    else if (t->fail != SMTP_R_NONE)
        r = t->fail;
    else if (t->st == NULL)
        r = SMTP_R_WRITE_ERROR;
    if (r != SMTP_R_NONE) {
        bool temp = r == SMTP_R_NO_STORAGE || r == SMTP_R_WRITE_ERROR || r == SMTP_R_NOMEM;
        if (temp)
            s->srv->stats.tempfailed++;
        else
            s->srv->stats.rejected++;
        smtp_log_refused(s, NULL, r, temp);
        smtp_txn_reset(s);
        smtp_reply(s, r);
        return;
    }
    smtp_event(s, SINK_EV_EOD, smtp_eod_check, smtp_eod_cont);
}

/* ---- DATA ---- */

struct smtp_emit_ctx {
    struct smtp_session *s;
    struct mbuf *m;
    uint32_t base;
};

static void smtp_data_emit(void *arg, size_t off, size_t n)
{
    struct smtp_emit_ctx *e = arg;
    smtp_msg_add(e->s, e->m, e->base + (uint32_t)off, (uint32_t)n);
}

void smtp_data_feed(struct smtp_session *s)
{
    struct mslice sl = s->inq.v[s->inq_head];
    struct smtp_emit_ctx e = {s, sl.buf, sl.off};
    bool done;
    size_t used = smtp_dscan_data(&s->txn.scan, sl.buf->data + sl.off, sl.len,
                                  s->cfg->max_line_length, smtp_data_emit, &e, &done);
    s->data_bytes += used;
    /* a bare or long line means refusal: stop writing it to disk */
    if ((s->txn.scan.bare || s->txn.scan.nul || s->txn.scan.longline) && s->txn.st != NULL)
        smtp_msg_drop(s);
    smtp_inq_consume(s, used);
    if (done)
        smtp_msg_end(s);
}

/* ---- BDAT ---- */

void smtp_bdat_start(struct smtp_session *s, uint64_t n, bool last, enum smtp_reply_id refuse)
{
    struct smtp_chunk *c = &s->chunk;
    c->n = c->left = n;
    c->last = last;
    c->skip = refuse;
    if (refuse != SMTP_R_NONE) {
        /* a data sink refused it: read the octets, then say so */
    } else if (!s->txn.active) {
        c->skip = SMTP_R_NEED_MAIL;
    } else if (s->txn.nrcpt == 0) {
        c->skip = SMTP_R_NEED_RCPT;
    } else if (!s->txn.bdat) {
        s->txn.bdat = true;
        c->skip = smtp_msg_begin(s);
        if (c->skip != SMTP_R_NONE)
            smtp_txn_reset(s);
    }
    s->phase = SMTP_P_BDAT;
    if (n == 0)
        smtp_bdat_feed(s);
}

/* One slice's worth of the chunk (or its end when nothing is left). */
void smtp_bdat_feed(struct smtp_session *s)
{
    struct smtp_chunk *c = &s->chunk;
    if (c->left > 0) {
        struct mslice sl = s->inq.v[s->inq_head];
        uint32_t take = c->left < sl.len ? (uint32_t)c->left : sl.len;
        if (c->skip == SMTP_R_NONE) {
            smtp_dscan_raw(&s->txn.scan, sl.buf->data + sl.off, take, s->cfg->max_line_length);
            if ((s->txn.scan.bare || s->txn.scan.nul || s->txn.scan.longline) && s->txn.st != NULL)
                smtp_msg_drop(s);
            smtp_msg_add(s, sl.buf, sl.off, take);
        }
        c->left -= take;
        s->data_bytes += take;
        smtp_inq_consume(s, take);
        if (c->left > 0)
            return;
    }
    s->phase = SMTP_P_CMD;
    if (c->skip != SMTP_R_NONE) {
        smtp_reply(s, c->skip);
        return;
    }
    enum smtp_reply_id f = s->txn.fail;
    if (f != SMTP_R_NONE && !c->last) {
        /* RFC 3030 2: a failed chunk fails the transaction now */
        if (f == SMTP_R_SIZE_EXCEEDED)
            s->srv->stats.rejected++;
        else
            s->srv->stats.tempfailed++;
        smtp_log_refused(s, NULL, f, f != SMTP_R_SIZE_EXCEEDED);
        smtp_txn_reset(s);
        smtp_reply(s, f);
        return;
    }
    if (!c->last) {
        smtp_replyf(s, SMTP_R_BDAT_OK, "%llu", (unsigned long long)c->n);
        return;
    }
    smtp_dscan_raw_end(&s->txn.scan);
    smtp_msg_end(s);
}
