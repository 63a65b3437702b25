/*
 * NAME
 *	osmtp_txn - the outbound mail transaction: envelope, body, outcome
 * SYNOPSIS
 *	#include "core/client/osmtp_int.h"
 * DESCRIPTION
 *	osmtp_send() checks the message against the server's extensions
 *	(SIZE, 8BITMIME, SMTPUTF8) and its addresses against the command
 *	syntax (no CR, LF or other control, no '<' '>', at most 1000
 *	octets: a bad recipient is refused locally, 553 5.1.3, and the
 *	others go on), then issues [RSET] MAIL, RCPT... and DATA (or,
 *	with CHUNKING, "BDAT n LAST" once every RCPT reply is in and at
 *	least one was positive; its reply is the final one).
 *
 *	A transaction ends in on_done() only when no reply of it is still
 *	expected: after a refused MAIL or when no RCPT was accepted, the
 *	rest of a pipelined group (RCPT and DATA replies) is read and
 *	swallowed first; a DATA the server accepted anyway (354 with no
 *	recipient, RFC 2920 3.1) gets a lone "." whose reply is swallowed
 *	too.  So READY always means an empty queue, and any reply then is
 *	unexpected.  Every recipient gets exactly one on_rcpt() per
 *	transaction, before on_done().
 *
 *	A transaction that failed before its end of data, and a refused
 *	BDAT (which leaves the server's transaction open, RFC 3030 4.1),
 *	put an RSET before the next MAIL; a refused end of DATA does not
 *	(the transaction is over either way, RFC 5321 4.1.1.4).
 *
 *	Dot-stuffing (RFC 5321 4.5.2): a '.' at the start of the body or
 *	after a CRLF is doubled.  Only CRLF ends a line: the inbound side
 *	refuses bare CR and LF, so a spooled body has none, and a dot after
 *	one is content for a strict receiver.
 * DIAGNOSTICS
 *	osmtp_stuff outside a DATA body, a too small output buffer, and
 *	osmtp_body_end outside a body panic with the function's name.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/client/osmtp_int.h"

void osmtp_txn_free(struct osmtp *c)
{
    free(c->t.rcpt);
    free(c->t.done);
    memset(&c->t, 0, sizeof(c->t));
}

static void osmtp_rcpt_cb(struct osmtp *c, size_t i, const struct osmtp_reply *r)
{
    c->t.done[i] = true;
    c->in_rcpt_cb = true;
    c->cb.on_rcpt(c->arg, i, r);
    c->in_rcpt_cb = false;
}

/* Every recipient not yet answered gets r. */
static void osmtp_rcpt_all(struct osmtp *c, const struct osmtp_reply *r)
{
    for (size_t i = 0; i < c->t.n; i++)
        if (!c->t.done[i])
            osmtp_rcpt_cb(c, i, r);
}

/* The transaction is over: state READY (or FAILED, set by the caller). */
void osmtp_txn_end(struct osmtp *c, const struct osmtp_reply *r, bool rset)
{
    struct osmtp_reply fin = *r; /* r may live in c->t */
    osmtp_rcpt_all(c, &fin);
    osmtp_txn_free(c);
    c->need_rset = rset;
    if (c->st != OSMTP_FAILED)
        c->st = OSMTP_READY;
    c->cb.on_done(c->arg, &fin);
}

/* ---- the envelope ---- */

/* No octet that could end the command line or the path. */
static bool osmtp_addr_ok(const char *a)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)a; *p; p++, n++)
        if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
            return false;
    return n <= 1000;
}

/* Issues the transaction's next commands: all of them when pipelining,
 * else one whenever nothing is outstanding. */
static void osmtp_txn_issue(struct osmtp *c)
{
    struct osmtp_txn *t = &c->t;
    while (t->open && !t->aborted && (t->pipe || c->qlen == 0)) {
        switch (t->step) {
        case OSMTP_S_RSET:
            t->step = OSMTP_S_MAIL;
            if (c->need_rset)
                osmtp_cmd(c, OSMTP_K_RSET, 0, "RSET");
            c->need_rset = false;
            break;
        case OSMTP_S_MAIL: {
            t->step = OSMTP_S_RCPT;
            char size[32] = "";
            if (c->ext & OSMTP_EXT_SIZE) /* RFC 1870 */
                snprintf(size, sizeof(size), " SIZE=%llu", (unsigned long long)t->size);
            osmtp_cmd(c, OSMTP_K_MAIL, 0, "MAIL FROM:<%s>%s%s%s", t->sender, size,
                      t->b8 ? " BODY=8BITMIME" : "", t->utf8 ? " SMTPUTF8" : "");
            break;
        }
        case OSMTP_S_RCPT:
            while (t->next_rcpt < t->n && t->done[t->next_rcpt])
                t->next_rcpt++; /* refused locally */
            if (t->next_rcpt == t->n) {
                t->step = OSMTP_S_DATA;
                break;
            }
            osmtp_cmd(c, OSMTP_K_RCPT, t->next_rcpt, "RCPT TO:<%s>", t->rcpt[t->next_rcpt]);
            t->next_rcpt++;
            break;
        case OSMTP_S_DATA:
            if (c->mode == OSMTP_BODY_BDAT)
                return; /* issued once the RCPT replies are in */
            t->step = OSMTP_S_NONE;
            osmtp_cmd(c, OSMTP_K_DATA, 0, "DATA");
            break;
        case OSMTP_S_NONE:
            return;
        }
    }
}

static void osmtp_txn_abort(struct osmtp *c, const struct osmtp_reply *r)
{
    c->t.aborted = true;
    c->t.fin = *r;
    osmtp_rcpt_all(c, r);
}

static void osmtp_rcpt_reply(struct osmtp *c, size_t i, const struct osmtp_reply *r)
{
    struct osmtp_txn *t = &c->t;
    t->rcpt_replies++;
    if (!t->done[i]) {
        if (r->code / 100 == 2)
            t->nacc++;
        osmtp_rcpt_cb(c, i, r);
    }
    if (t->rcpt_replies < t->nsend || t->aborted)
        return;
    if (t->nacc == 0) {
        struct osmtp_reply nv = *r;
        size_t tl = osmtp_text_append(nv.text, 0, "no valid recipients: ", 21);
        osmtp_text_append(nv.text, tl, r->text, strlen(r->text));
        osmtp_txn_abort(c, &nv);
    } else if (c->mode == OSMTP_BODY_BDAT) {
        t->step = OSMTP_S_NONE;
        osmtp_out_append(c, "BDAT ", 5); /* its reply is expected from osmtp_body_end() */
        char num[32];
        int nl = snprintf(num, sizeof(num), "%llu LAST\r\n", (unsigned long long)t->size);
        osmtp_out_append(c, num, (size_t)nl);
        c->st = OSMTP_BODY;
    }
}

static void osmtp_data_reply(struct osmtp *c, const struct osmtp_reply *r)
{
    if (c->t.aborted) {
        if (r->code / 100 == 3) /* accepted without a recipient: end the empty message */
            osmtp_cmd(c, OSMTP_K_DOT_SWALLOW, 0, ".");
    } else if (r->code / 100 == 3) {
        c->bol = true;
        c->cr = false;
        c->st = OSMTP_BODY;
    } else {
        osmtp_txn_abort(c, r);
    }
}

static bool osmtp_addr_check(struct osmtp *c, const struct osmtp_msg *m, int *err)
{
    struct osmtp_reply r;
    if (!osmtp_addr_ok(m->sender)) {
        osmtp_local(&r, OSMTP_L_BAD_SENDER, "%s", "");
        osmtp_rcpt_all(c, &r);
        osmtp_txn_end(c, &r, c->need_rset);
        *err = -EINVAL;
        return false;
    }
    for (size_t i = 0; i < m->nrcpt; i++)
        if (!osmtp_addr_ok(m->rcpts[i])) {
            osmtp_local(&r, OSMTP_L_BAD_RCPT, "%s", "");
            osmtp_rcpt_cb(c, i, &r);
        } else {
            c->t.nsend++;
        }
    if (c->t.nsend == 0) {
        osmtp_local(&r, OSMTP_L_BAD_RCPT, ": %s", "no valid recipients");
        osmtp_txn_end(c, &r, c->need_rset);
        *err = -EINVAL;
        return false;
    }
    return true;
}

int osmtp_send(struct osmtp *c, const struct osmtp_msg *m)
{
    if (c->in_rcpt_cb)
        log_panic("osmtp_send: called from on_rcpt");
    if (m == NULL || m->sender == NULL || m->nrcpt == 0 || m->rcpts == NULL)
        log_panic("osmtp_send: a message needs a sender and recipients");
    if (c->st != OSMTP_READY)
        return -EBUSY;
    struct osmtp_txn *t = &c->t;
    t->rcpt = malloc(m->nrcpt * sizeof(*t->rcpt));
    t->done = calloc(m->nrcpt, sizeof(*t->done));
    if (t->rcpt == NULL || t->done == NULL) {
        osmtp_txn_free(c);
        return -ENOMEM;
    }
    memcpy(t->rcpt, m->rcpts, m->nrcpt * sizeof(*t->rcpt));
    t->open = true;
    t->n = m->nrcpt;
    t->sender = m->sender;
    t->size = m->size;
    t->b8 = m->body_8bit;
    t->utf8 = m->smtputf8;

    struct osmtp_reply r;
    int err = 0;
    if ((c->ext & OSMTP_EXT_SIZE) && c->max_size > 0 && m->size > c->max_size) {
        osmtp_local(&r, OSMTP_L_SIZE, " (%llu octets, the limit is %llu)",
                    (unsigned long long)m->size, (unsigned long long)c->max_size);
        err = -EMSGSIZE;
    } else if (m->body_8bit && !(c->ext & OSMTP_EXT_8BITMIME)) {
        osmtp_local(&r, OSMTP_L_8BIT, "%s", "");
        err = -EPROTONOSUPPORT;
    } else if (m->smtputf8 && !(c->ext & OSMTP_EXT_SMTPUTF8)) {
        osmtp_local(&r, OSMTP_L_UTF8, "%s", "");
        err = -EPROTONOSUPPORT;
    }
    if (err != 0) {
        osmtp_txn_end(c, &r, c->need_rset);
        return err;
    }
    if (!osmtp_addr_check(c, m, &err))
        return err;

    c->mode = (c->chunking && (c->ext & OSMTP_EXT_CHUNKING)) ? OSMTP_BODY_BDAT : OSMTP_BODY_DATA;
    t->pipe = c->pipelining && (c->ext & OSMTP_EXT_PIPELINING);
    t->step = OSMTP_S_RSET;
    c->st = OSMTP_ENVELOPE;
    osmtp_txn_issue(c);
    osmtp_check_oom(c);
    return 0;
}

void osmtp_txn_reply(struct osmtp *c, const struct osmtp_pend *e, const struct osmtp_reply *r,
                     bool ok)
{
    switch (e->kind) {
    case OSMTP_K_RSET: /* the server lost track of the conversation */
        if (!ok)
            osmtp_fail_local(c, OSMTP_L_PROTO, true, ": RSET refused: %d %s", r->code, r->text);
        break;
    case OSMTP_K_MAIL:
        if (!ok && !c->t.aborted)
            osmtp_txn_abort(c, r);
        break;
    case OSMTP_K_RCPT:
        osmtp_rcpt_reply(c, e->idx, r);
        break;
    case OSMTP_K_DATA:
        osmtp_data_reply(c, r);
        break;
    case OSMTP_K_DOT:
        osmtp_txn_end(c, r, false);
        break;
    case OSMTP_K_BDAT:
        osmtp_txn_end(c, r, !ok);
        break;
    default: /* OSMTP_K_DOT_SWALLOW */
        break;
    }
    if (c->t.open && c->st == OSMTP_ENVELOPE) {
        osmtp_txn_issue(c);
        if (c->t.aborted && c->qlen == 0) /* nothing more to swallow */
            osmtp_txn_end(c, &c->t.fin, true);
    }
}

/* ---- body ---- */

size_t osmtp_stuff(struct osmtp *c, const char *in, size_t len, char *out, size_t cap)
{
    if (c->st != OSMTP_BODY || c->mode != OSMTP_BODY_DATA)
        log_panic("osmtp_stuff: not sending a DATA body (state %s)", osmtp_state_name(c->st));
    size_t i = 0, o = 0;
    while (i < len) {
        if (c->bol && in[i] == '.') { /* RFC 5321 4.5.2 */
            if (o == cap)
                log_panic("osmtp_stuff: output buffer too small");
            out[o++] = '.';
        }
        c->bol = false;
        const char *lf = memchr(in + i, '\n', len - i);
        size_t end = lf != NULL ? (size_t)(lf - in) + 1 : len;
        size_t n = end - i;
        if (cap - o < n)
            log_panic("osmtp_stuff: output buffer too small");
        memcpy(out + o, in + i, n);
        o += n;
        if (lf != NULL) {
            c->bol = n >= 2 ? in[end - 2] == '\r' : c->cr; /* only CRLF ends a line */
            c->cr = false;
        } else {
            c->cr = in[end - 1] == '\r';
        }
        i = end;
    }
    return o;
}

void osmtp_body_end(struct osmtp *c)
{
    if (c->st != OSMTP_BODY)
        log_panic("osmtp_body_end: not sending a body (state %s)", osmtp_state_name(c->st));
    if (c->mode == OSMTP_BODY_BDAT) {
        osmtp_expect(c, OSMTP_K_BDAT, 0);
    } else {
        if (c->cr)
            osmtp_out_append(c, "\n", 1);
        else if (!c->bol)
            osmtp_out_append(c, "\r\n", 2);
        osmtp_cmd(c, OSMTP_K_DOT, 0, ".");
    }
    c->st = OSMTP_FINAL;
    osmtp_check_oom(c);
}
