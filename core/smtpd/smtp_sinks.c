/*
 * NAME
 *	smtp_sinks - event sinks in the inbound session
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	smtp_event(s, SINK_EV_RCPT, smtp_rcpt_check, smtp_rcpt_cont);
 * DESCRIPTION
 *	Each protocol event of the session goes through smtp_event(): the
 *	command's own checks (relay control for RCPT, size for MAIL, ...) are
 *	the server's link of the event's chain, and what the command does
 *	after them - store the recipient and say 250, or refuse - is the
 *	continuation, which runs with the chain's outcome.  Without sinks
 *	bound to the event (sink_engine_bound), smtp_event() runs the check
 *	and the continuation directly: no engine call, no allocation, no
 *	copy, so a server without bindings behaves and costs as before.
 *
 *	With sinks, the session gets a struct smtp_sk at its first bound
 *	event (a sink_call, the session and message property bags, the event
 *	data) and the chain runs through sink_dispatch().  When a link goes
 *	pending the session parks in SMTP_P_SINK exactly as it parks on a
 *	group commit: input is queued, not read, no timer runs (the
 *	binding's deadline bounds the wait: sink_worker_expire applies its
 *	on_deadline verdict), and smtp_sink_done() - on the worker thread -
 *	runs the continuation, takes up the queued input and kicks the
 *	network layer to send.  The event data (s->sk->d) points into the
 *	session, which does not change while it waits.
 *
 *	Verdicts become replies in one place, smtp_sink_outcome(): the
 *	server's own refusal keeps its row of the reply table; a sink's reply
 *	(sink_set_reply, checked for its class by the engine) is sent as it
 *	is; otherwise REJECT is 550 5.7.1 (554 5.7.1 at connect), TEMPFAIL
 *	451 4.7.1 (421 4.7.1 at connect), DROP 421 4.7.0 and the session
 *	ends.  A refused connect always ends the session.  DISCARD and
 *	QUARANTINE are accepted; inside a transaction (mail, rcpt, data,
 *	eod) they mark the message (not stored but answered 250 / stored
 *	with the quarantine flag); elsewhere they count as CONTINUE.
 *	Every decision of a sink (not CONTINUE) is logged at info level.
 *
 *	The response event runs on its own sink_call (a reply can go out
 *	while the session's call waits, e.g. a synchronisation error), never
 *	for its own replies.  A response sink that goes pending holds the
 *	reply: everything the session writes meanwhile waits behind it (in
 *	order), the session reads no command, a close waits; when the sink
 *	answers (or its deadline's verdict applies) the reply goes out,
 *	changed or not, then the rest.  A client that leaves abandons it.
 *	A reply made while one is held is not shown to the sinks.  Only a
 *	single-line reply can be changed; multi-line replies (EHLO, HELP)
 *	are shown to the sinks as text.  The disconnect event is a
 *	notification when the session is destroyed: anything still pending
 *	is abandoned first, and a pending disconnect sink is abandoned too.
 * DIAGNOSTICS
 *	smtp_event() while the session waits for another event, and a done
 *	callback for a session that is not waiting, panic.  Out of memory
 *	for the sink state is logged and the event runs as if unbound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/smtpd/smtp_int.h"

const char *smtp_verdict_name(enum sink_verdict v)
{
    static const char *const names[] = {
        [SINK_CONTINUE] = "continue",     [SINK_CONSUMED] = "consumed", [SINK_REJECT] = "reject",
        [SINK_TEMPFAIL] = "tempfail",     [SINK_DROP] = "drop",         [SINK_DISCARD] = "discard",
        [SINK_QUARANTINE] = "quarantine", [SINK_PENDING] = "pending",
    };
    return (unsigned)v <= SINK_PENDING ? names[v] : "?";
}

void smtp_server_set_sinks(struct smtp_server *srv, struct sink_worker *sw)
{
    srv->sinks = sw;
    srv->engine = sw != NULL ? sink_worker_engine(sw) : NULL;
}

struct smtp_sk *smtp_sk_get(struct smtp_session *s)
{
    if (s->sk != NULL)
        return s->sk;
    struct smtp_sk *k = calloc(1, sizeof(*k));
    if (k != NULL) {
        k->call = sink_call_create(s->srv->sinks);
        k->sbag = sink_bag_create();
        k->mbag = sink_bag_create();
    }
    if (k == NULL || k->call == NULL || k->sbag == NULL || k->mbag == NULL) {
        if (k != NULL) {
            sink_call_destroy(k->call);
            sink_bag_destroy(k->sbag);
            sink_bag_destroy(k->mbag);
            free(k);
        }
        log_msg(LOG_WARN, "smtp %s: out of memory for event sinks: running without", s->client);
        return NULL;
    }
    s->sk = k;
    return k;
}

/* The event data for ev, from the session's state. */
static void smtp_sev_fill(struct smtp_session *s, struct sink_event_data *d, enum sink_event ev)
{
    struct smtp_sk *k = s->sk;
    memset(d, 0, sizeof(*d));
    d->client_addr = s->client;
    d->tls = s->tls;
    d->auth_user = s->auth_user;
    d->helo = s->hello != SMTP_HELLO_NONE ? s->helo : NULL;
    if (s->txn.active) {
        d->sender = s->txn.sender;
        d->mail_params = s->txn.params;
    }
    d->nrcpt = s->txn.nrcpt;
    d->rcpts = (const char *const *)s->txn.rcpts;
    switch (ev) {
    case SINK_EV_HELO:
        d->helo = s->cand_helo; /* the name being introduced */
        /* FALLTHROUGH */
    case SINK_EV_COMMAND:
    case SINK_EV_DATA:
        d->verb = s->cmd_verb;
        d->args = s->cmd_args;
        break;
    case SINK_EV_MAIL:
        d->verb = s->cmd_verb;
        d->args = s->cmd_args;
        d->sender = s->cand->path.addr;
        d->mail_params = s->cand->prm.norm;
        break;
    case SINK_EV_RCPT:
        d->verb = s->cmd_verb;
        d->args = s->cmd_args;
        d->rcpt = s->cand->path.addr;
        break;
    case SINK_EV_EOD:
        smtp_sinkmsg_eod(s, d);
        break;
    case SINK_EV_AUTH:
        smtp_auth_event_data(s, d);
        break;
    default:
        break;
    }
    if (ev == SINK_EV_COMMAND && strcmp(s->cmd_verb, "AUTH") == 0)
        d->args = smtp_auth_public_args(s->cmd_args); /* never the initial response */
    if (k->mbag == NULL) /* the last one left with its message (submission) */
        k->mbag = sink_bag_create();
    d->session_bag = k->sbag;
    d->message_bag = k->mbag;
}

static enum sink_verdict smtp_reply_verdict(enum smtp_reply_id r)
{
    return smtp_reply_code(r)[0] == '4' ? SINK_TEMPFAIL : SINK_REJECT;
}

/* The server's own link: the command's checks. */
static enum sink_verdict smtp_sink_server(void *arg, struct sink_result *res)
{
    struct smtp_session *s = arg;
    struct smtp_sk *k = s->sk;
    enum smtp_reply_id r = k->check(s);
    k->srv_reply = r;
    if (r == SMTP_R_NONE)
        return SINK_CONTINUE;
    smtp_reply_fill(s, r, &res->code, res->enhanced, sizeof(res->enhanced), res->text,
                    sizeof(res->text));
    return smtp_reply_verdict(r);
}

static void smtp_sink_log(struct smtp_session *s, enum sink_event ev, const struct sink_result *res,
                          const struct smtp_outcome *o)
{
    char rep[640];
    const struct smtp_sreply *r = &s->sk->reply;
    if (o->reply == SMTP_R_SINK_REPLY)
        snprintf(rep, sizeof(rep), "%d%s%s %s", r->code, r->enhanced[0] ? " " : "", r->enhanced,
                 r->text);
    else if (o->reply != SMTP_R_NONE)
        smtp_reply_describe(o->reply, rep, sizeof(rep));
    else
        snprintf(rep, sizeof(rep), "the server's reply");
    log_msg(LOG_INFO, "smtp %s: %s: binding \"%s\": %s: %s", s->client, sink_event_name(ev),
            res->binding, smtp_verdict_name(res->verdict), rep);
}

/* The chain's result as the session acts on it (see DESCRIPTION). */
static void smtp_sink_outcome(struct smtp_session *s, enum sink_event ev,
                              const struct sink_result *res, struct smtp_outcome *o)
{
    struct smtp_sk *k = s->sk;
    if (k->srv_reply != SMTP_R_NONE) { /* the server's link refused: nothing ran after it */
        o->verdict = smtp_reply_verdict(k->srv_reply);
        o->reply = k->srv_reply;
        return;
    }
    o->verdict = res->verdict;
    o->reply = SMTP_R_NONE;
    if ((unsigned)o->verdict > SINK_QUARANTINE) /* the engine never says so */
        o->verdict = SINK_TEMPFAIL;
    bool ok = smtp_outcome_ok(o);
    if (res->code != 0) {
        struct smtp_sreply *r = &k->reply;
        r->code = res->code;
        snprintf(r->enhanced, sizeof(r->enhanced), "%s", res->enhanced);
        snprintf(r->text, sizeof(r->text), "%s", res->text);
        r->close = o->verdict == SINK_DROP || (ev == SINK_EV_CONNECT && !ok);
        if (ev == SINK_EV_CONNECT && !ok && r->code / 100 == 4)
            r->code = 421; /* the only 4xx a greeting can be (RFC 5321 3.1) */
        o->reply = SMTP_R_SINK_REPLY;
    } else if (o->verdict == SINK_REJECT) {
        o->reply = ev == SINK_EV_CONNECT ? SMTP_R_SINK_CONN_REJECT : SMTP_R_SINK_REJECT;
    } else if (o->verdict == SINK_TEMPFAIL) {
        o->reply = ev == SINK_EV_CONNECT ? SMTP_R_SINK_CONN_TEMPFAIL : SMTP_R_SINK_TEMPFAIL;
    } else if (o->verdict == SINK_DROP) {
        o->reply = SMTP_R_SINK_DROP;
    }
    if (!ok)
        s->srv->stats.sink_refused++;
    if (res->binding != NULL && o->verdict != SINK_CONTINUE)
        smtp_sink_log(s, ev, res, o);
}

struct smtp_cand *smtp_cand_slot(struct smtp_session *s, enum sink_event ev,
                                 struct smtp_cand *local)
{
    struct smtp_sk *k;
    if (smtp_sink_bound(s, ev) && (k = smtp_sk_get(s)) != NULL)
        return &k->cand; /* as smtp_event() decides: the chain may go pending */
    return local;
}

enum smtp_reply_id smtp_outcome_accept(const struct smtp_session *s, const struct smtp_outcome *o,
                                       enum smtp_reply_id dflt, int want)
{
    if (o->reply != SMTP_R_SINK_REPLY)
        return dflt;
    int code = s->sk->reply.code;
    return (want < 10 ? code / 100 == want : code == want) ? SMTP_R_SINK_REPLY : dflt;
}

/* A chain that went pending has ended (worker thread). */
static void smtp_sink_done(void *arg, const struct sink_result *res)
{
    struct smtp_session *s = arg;
    struct smtp_sk *k = s->sk;
    if (s->phase != SMTP_P_SINK)
        log_panic("smtp_sink_done: session is not waiting for a sink");
    s->phase = SMTP_P_CMD;
    s->last_input_ms = smtp_now_ms(); /* the wait was ours, not the client's */
    if (k->resibling) { /* about to commit again, soon: a sibling once more */
        k->resibling = false;
        if (s->txn.active && !s->txn.sibling && !s->closing) {
            s->txn.sibling = true;
            s->srv->open_txns++;
        }
    }
    if (!s->closing) {
        struct smtp_outcome o;
        smtp_sink_outcome(s, k->ev, res, &o);
        k->cont(s, &o);
    }
    if (s->backlog_over && s->phase == SMTP_P_CMD)
        smtp_reply(s, SMTP_R_BACKLOG);
    smtp_session_pump(s);
    if (s->srv->kick)
        s->srv->kick(s->cookie);
}

void smtp_event(struct smtp_session *s, enum sink_event ev, smtp_check_fn *check,
                smtp_cont_fn *cont)
{
    struct smtp_outcome o;
    if (smtp_sink_bound(s, ev) && smtp_sk_get(s) != NULL) {
        struct smtp_sk *k = s->sk;
        struct sink_result res;
        if (s->phase == SMTP_P_SINK)
            log_panic("smtp_event: %s while waiting for %s", sink_event_name(ev),
                      sink_event_name(k->ev));
        k->ev = ev;
        k->check = check;
        k->cont = cont;
        k->srv_reply = SMTP_R_NONE;
        smtp_sev_fill(s, &k->d, ev);
        if (!sink_dispatch(k->call, ev, &k->d, check ? smtp_sink_server : NULL, s, smtp_sink_done,
                           s, &res)) {
            s->phase = SMTP_P_SINK;
            /* a session waiting on a sink will not commit within a group-
             * commit delay: the fdatasync must not wait for it */
            if (s->txn.sibling) {
                smtp_txn_unsibling(s);
                k->resibling = true;
            }
            return;
        }
        smtp_sink_outcome(s, ev, &res, &o);
        cont(s, &o);
        return;
    }
    enum smtp_reply_id r = check ? check(s) : SMTP_R_NONE;
    o.verdict = r == SMTP_R_NONE ? SINK_CONTINUE : smtp_reply_verdict(r);
    o.reply = r;
    cont(s, &o);
}

/* ---- the response event ---- */

/* res applied to the reply in text (len octets, cap room): the new length;
 * *code and *close updated. */
static size_t smtp_resp_apply(struct smtp_session *s, const struct sink_result *res, int *code,
                              char *text, size_t len, size_t cap, bool multi, bool *close)
{
    enum smtp_reply_id row = SMTP_R_NONE;
    if (res->code == 0) {
        if (res->verdict == SINK_REJECT)
            row = SMTP_R_SINK_REJECT;
        else if (res->verdict == SINK_TEMPFAIL)
            row = SMTP_R_SINK_TEMPFAIL;
        else if (res->verdict == SINK_DROP)
            row = SMTP_R_SINK_DROP;
        else
            return len; /* unchanged */
    }
    if (multi) {
        log_msg(LOG_DEBUG, "smtp %s: response sink \"%s\": a multi-line reply is not changed",
                s->client, res->binding ? res->binding : "?");
        return len;
    }
    char esc[16], txt[512];
    int ncode = res->code;
    if (row != SMTP_R_NONE)
        smtp_reply_fill(s, row, &ncode, esc, sizeof(esc), txt, sizeof(txt));
    else {
        snprintf(esc, sizeof(esc), "%s", res->enhanced);
        snprintf(txt, sizeof(txt), "%s", res->text);
    }
    int n = snprintf(text, cap, "%03d%s%s%s%s", ncode % 1000, esc[0] ? " " : "", esc,
                     txt[0] ? " " : "", txt);
    len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    if (len > SMTP_LINE_MAX - 2)
        len = SMTP_LINE_MAX - 2;
    *code = ncode;
    if (res->verdict == SINK_DROP)
        *close = true;
    if (res->binding != NULL)
        log_msg(LOG_INFO, "smtp %s: response: binding \"%s\": %s: %.*s", s->client, res->binding,
                smtp_verdict_name(res->verdict), (int)len, text);
    return len;
}

/* The held reply goes out (changed by res, or as it was when res is
 * NULL), then what waited behind it; a close that waited happens now. */
static void smtp_resp_release(struct smtp_session *s, const struct sink_result *res)
{
    struct smtp_sk *k = s->sk;
    bool close = k->resp_close;
    k->resp_wait = false; /* output goes to the session's buffer again */
    k->resp_close = false;
    size_t len = k->resp_len;
    if (res != NULL)
        len = smtp_resp_apply(s, res, &k->resp_code, k->resp_text, len, k->resp_cap - 2,
                              k->resp_multi, &close);
    if (!s->eof) {
        smtp_out_append(s, k->resp_text, len);
        smtp_out_append(s, "\r\n", 2);
        if (k->resp_hold.len > 0)
            smtp_out_append(s, k->resp_hold.p, k->resp_hold.len);
    }
    k->resp_hold.len = 0;
    if (close)
        smtp_close(s);
}

static void smtp_sink_resp_done(void *arg, const struct sink_result *res)
{
    struct smtp_session *s = arg;
    if (!smtp_resp_waiting(s))
        log_panic("smtp_sink_resp_done: session %s holds no reply", s->client);
    smtp_resp_release(s, res);
    smtp_session_pump(s);
    if (s->srv->kick)
        s->srv->kick(s->cookie);
}

void smtp_sink_resp_abandon(struct smtp_session *s)
{
    struct smtp_sk *k = s->sk;
    sink_call_destroy(k->rcall); /* abandons the pending link: done never runs */
    k->rcall = NULL;
    k->resp_wait = false;
    k->resp_close = false;
    k->resp_hold.len = 0;
}

size_t smtp_sink_response(struct smtp_session *s, int *code, char *text, size_t len, size_t cap,
                          bool multi, bool *close, bool *held)
{
    struct smtp_sk *k = smtp_sk_get(s);
    if (k == NULL || k->in_response)
        return len;
    if (k->resp_wait) { /* behind a held reply: it keeps its place, unchanged */
        log_msg(LOG_DEBUG, "smtp %s: a reply while a response sink holds another: not shown to "
                           "the response sinks",
                s->client);
        return len;
    }
    if (k->rcall == NULL && (k->rcall = sink_call_create(s->srv->sinks)) == NULL)
        return len;
    struct sink_result res;
    text[len] = '\0';
    smtp_sev_fill(s, &k->rd, SINK_EV_RESPONSE);
    k->rd.reply_code = *code;
    k->rd.reply_text = text;
    k->in_response = true;
    bool fin =
        sink_dispatch(k->rcall, SINK_EV_RESPONSE, &k->rd, NULL, NULL, smtp_sink_resp_done, s, &res);
    k->in_response = false;
    if (!fin) {
        /* A sink went pending: keep the reply (rd.reply_text points at the
         * copy, which the sinks read until they answer) and hold output. */
        if (k->resp_cap < cap + 2) {
            char *p = realloc(k->resp_text, cap + 2);
            if (p == NULL) {
                smtp_sink_resp_abandon(s);
                log_msg(LOG_ERROR, "smtp %s: out of memory holding a reply: sent unchanged",
                        s->client);
                return len;
            }
            k->resp_text = p;
            k->resp_cap = cap + 2;
        }
        memcpy(k->resp_text, text, len + 1);
        k->resp_len = len;
        k->resp_code = *code;
        k->resp_multi = multi;
        k->rd.reply_text = k->resp_text;
        k->resp_wait = true;
        k->resp_close = *close;
        *close = false;
        *held = true;
        return len;
    }
    return smtp_resp_apply(s, &res, code, text, len, cap, multi, close);
}

/* ---- the end of the session ---- */

static void smtp_sink_noop_done(void *arg, const struct sink_result *res)
{
    /* never runs: the call is destroyed right after the dispatch */
}

void smtp_sinks_session_end(struct smtp_session *s)
{
    struct smtp_sk *k = s->sk;
    if (s->phase != SMTP_P_NEW && smtp_sink_bound(s, SINK_EV_DISCONNECT) &&
        (k = smtp_sk_get(s)) != NULL) {
        if (s->phase == SMTP_P_SINK) { /* abandon what it waits for: it is leaving */
            sink_call_destroy(k->call);
            k->call = sink_call_create(s->srv->sinks);
            s->phase = SMTP_P_CMD;
        }
        if (k->call != NULL) {
            struct sink_result res;
            smtp_sev_fill(s, &k->d, SINK_EV_DISCONNECT);
            /* the verdict is ignored; a pending one is abandoned just below */
            sink_dispatch(k->call, SINK_EV_DISCONNECT, &k->d, NULL, NULL, smtp_sink_noop_done, NULL,
                          &res);
        }
    }
    if (k == NULL)
        return;
    sink_call_destroy(k->call);
    sink_call_destroy(k->rcall);
    free(k->resp_text);
    free(k->resp_hold.p);
    smtp_sinks_txn_reset(s);
    sink_bag_destroy(k->sbag);
    sink_bag_destroy(k->mbag);
    smtp_sub_free(k->sub);
    free(k->edits);
    free(k->scratch);
    free(k);
    s->sk = NULL;
}
