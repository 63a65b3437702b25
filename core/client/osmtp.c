/*
 * NAME
 *	osmtp - the outbound SMTP client session: commands, replies, failure
 * SYNOPSIS
 *	#include "core/client/osmtp.h"
 * DESCRIPTION
 *	Every command sent is remembered in a queue of expected replies
 *	(kind, recipient index); each reply read pops the head and is handled
 *	by its kind, so pipelined and lock-step conversations run the same
 *	code: with PIPELINING the transaction's commands are issued at once,
 *	without it the next one is issued when the queue is empty again
 *	(osmtp_txn.c).  A reply of the wrong class for its command (a 354 to
 *	MAIL, a 250 to DATA) is a protocol error, not a failure the caller
 *	could mistake for a success.
 *
 *	STARTTLS (RFC 3207): octets that arrive after the 220 in the same
 *	input were sent before the handshake in plaintext; they would be
 *	read as if they came over TLS (a response injection), so the session
 *	fails instead.
 *
 *	Callbacks: state is consistent before each one.  on_done() and
 *	on_fail() may call osmtp_send() and osmtp_quit(); on_rcpt() must
 *	not call into the osmtp; no callback may destroy it.
 * DIAGNOSTICS
 *	Calls out of order (osmtp_out_done without take, osmtp_tls_done
 *	without a handshake) panic with the function's name.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/client/osmtp_int.h"

static const char *const osmtp_kind_names[] = {
    [OSMTP_K_EHLO] = "EHLO", [OSMTP_K_HELO] = "HELO",       [OSMTP_K_STARTTLS] = "STARTTLS",
    [OSMTP_K_RSET] = "RSET", [OSMTP_K_MAIL] = "MAIL",       [OSMTP_K_RCPT] = "RCPT",
    [OSMTP_K_DATA] = "DATA", [OSMTP_K_DOT] = "end of data", [OSMTP_K_DOT_SWALLOW] = "end of data",
    [OSMTP_K_BDAT] = "BDAT", [OSMTP_K_QUIT] = "QUIT",
};

static const char *const osmtp_state_names[] = {
    [OSMTP_GREETING] = "greeting", [OSMTP_HELLO] = "hello",
    [OSMTP_STARTTLS] = "starttls", [OSMTP_TLS_HANDSHAKE] = "tls handshake",
    [OSMTP_READY] = "ready",       [OSMTP_ENVELOPE] = "envelope",
    [OSMTP_BODY] = "body",         [OSMTP_FINAL] = "end of data",
    [OSMTP_QUIT] = "quit",         [OSMTP_CLOSED] = "closed",
    [OSMTP_FAILED] = "failed",
};

const char *osmtp_state_name(enum osmtp_state s)
{
    if ((unsigned)s >= sizeof(osmtp_state_names) / sizeof(osmtp_state_names[0]))
        return "?";
    return osmtp_state_names[s];
}

/* ---- output ---- */

void osmtp_out_append(struct osmtp *c, const char *p, size_t n)
{
    struct osmtp_obuf *o = &c->out[c->out_cur];
    if (c->oom)
        return;
    if (o->len + n > o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 512;
        while (ncap < o->len + n)
            ncap *= 2;
        char *np = realloc(o->p, ncap);
        if (np == NULL) {
            c->oom = true; /* the session fails at the end of the call */
            return;
        }
        o->p = np;
        o->cap = ncap;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

void osmtp_expect(struct osmtp *c, enum osmtp_kind kind, size_t idx)
{
    if (c->qhead + c->qlen == c->qcap) {
        if (c->qhead > 0) {
            memmove(c->q, c->q + c->qhead, c->qlen * sizeof(*c->q));
            c->qhead = 0;
        } else {
            size_t ncap = c->qcap ? c->qcap * 2 : 16;
            struct osmtp_pend *nq = realloc(c->q, ncap * sizeof(*nq));
            if (nq == NULL) {
                c->oom = true;
                return;
            }
            c->q = nq;
            c->qcap = ncap;
        }
    }
    c->q[c->qhead + c->qlen++] = (struct osmtp_pend){kind, idx};
}

void osmtp_cmd(struct osmtp *c, enum osmtp_kind kind, size_t idx, const char *fmt, ...)
{
    char line[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2)
        log_panic("osmtp_cmd: command too long"); /* addresses are checked before */
    memcpy(line + n, "\r\n", 2);
    osmtp_out_append(c, line, (size_t)n + 2);
    osmtp_expect(c, kind, idx);
}

bool osmtp_out_take(struct osmtp *c, const char **p, size_t *len)
{
    struct osmtp_obuf *o = &c->out[c->out_cur];
    if (c->out_taken || o->len == 0)
        return false;
    *p = o->p;
    *len = o->len;
    c->out_taken = true;
    c->out_cur ^= 1;
    return true;
}

void osmtp_out_done(struct osmtp *c)
{
    if (!c->out_taken)
        log_panic("osmtp_out_done: no output was taken");
    struct osmtp_obuf *o = &c->out[c->out_cur ^ 1];
    o->len = 0;
    if (o->cap > 65536) { /* a burst of RCPTs: give the memory back */
        free(o->p);
        o->p = NULL;
        o->cap = 0;
    }
    c->out_taken = false;
}

/* ---- life ---- */

struct osmtp *osmtp_create(const struct osmtp_opts *o, const struct osmtp_cb *cb, void *arg)
{
    if (o == NULL || cb == NULL || cb->on_rcpt == NULL || cb->on_done == NULL ||
        cb->on_fail == NULL)
        log_panic("osmtp_create: options and every callback are required");
    size_t hl = o->helo_name != NULL ? strlen(o->helo_name) : 0;
    if (hl == 0 || hl >= sizeof(((struct osmtp *)0)->helo) ||
        strcspn(o->helo_name, " \t\r\n") != hl)
        log_panic("osmtp_create: bad helo_name");
    struct osmtp *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->st = OSMTP_GREETING;
    c->cb = *cb;
    c->arg = arg;
    memcpy(c->helo, o->helo_name, hl + 1);
    c->tls = o->tls;
    c->chunking = o->use_chunking;
    c->pipelining = o->use_pipelining;
    c->mode = OSMTP_BODY_DATA;
    osmtp_rx_reset(&c->rx);
    return c;
}

void osmtp_destroy(struct osmtp *c)
{
    if (c == NULL)
        return;
    osmtp_txn_free(c);
    free(c->q);
    free(c->out[0].p);
    free(c->out[1].p);
    free(c);
}

enum osmtp_state osmtp_state(const struct osmtp *c)
{
    return c->st;
}
unsigned osmtp_ext(const struct osmtp *c)
{
    return c->ext;
}
uint64_t osmtp_max_size(const struct osmtp *c)
{
    return c->max_size;
}
const char *osmtp_banner(const struct osmtp *c)
{
    return c->banner;
}
enum osmtp_body osmtp_body_mode(const struct osmtp *c)
{
    return c->mode;
}

/* ---- ending ---- */

/* The session is over.  quit: the conversation is still in step, say QUIT
 * (sent if the caller flushes before closing). */
static void osmtp_fail(struct osmtp *c, const struct osmtp_reply *r, bool quit)
{
    if (c->st == OSMTP_FAILED || c->st == OSMTP_CLOSED)
        return;
    struct osmtp_reply copy = *r;
    if (quit)
        osmtp_out_append(c, "QUIT\r\n", 6);
    c->st = OSMTP_FAILED;
    c->qhead = c->qlen = 0;
    if (c->t.open)
        osmtp_txn_end(c, &copy, false);
    c->cb.on_fail(c->arg, &copy);
}

void osmtp_fail_local(struct osmtp *c, enum osmtp_local id, bool quit, const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    struct osmtp_reply r;
    osmtp_local(&r, id, "%s", detail);
    osmtp_fail(c, &r, quit);
}

/* At the end of every entry point: memory ran out somewhere inside. */
void osmtp_check_oom(struct osmtp *c)
{
    if (c->oom && c->st != OSMTP_FAILED) {
        struct osmtp_reply r;
        osmtp_local(&r, OSMTP_L_NOMEM, "%s", "");
        osmtp_fail(c, &r, false);
    }
}

/* ---- greeting and hello ---- */

static void osmtp_ehlo(struct osmtp *c)
{
    c->ext_new = 0;
    c->size_new = 0;
    osmtp_cmd(c, OSMTP_K_EHLO, 0, "EHLO %s", c->helo);
    c->st = OSMTP_HELLO;
}

/* One keyword line of an EHLO reply (RFC 5321 4.1.1.1: case-insensitive). */
static void osmtp_ehlo_line(struct osmtp *c, const char *t, size_t n)
{
    static const struct {
        const char *kw;
        unsigned bit;
    } kws[] = {
        {"PIPELINING", OSMTP_EXT_PIPELINING},
        {"SIZE", OSMTP_EXT_SIZE},
        {"8BITMIME", OSMTP_EXT_8BITMIME},
        {"SMTPUTF8", OSMTP_EXT_SMTPUTF8},
        {"CHUNKING", OSMTP_EXT_CHUNKING},
        {"STARTTLS", OSMTP_EXT_STARTTLS},
        {"ENHANCEDSTATUSCODES", OSMTP_EXT_ENHANCED},
    };
    for (size_t k = 0; k < sizeof(kws) / sizeof(kws[0]); k++) {
        size_t kl = strlen(kws[k].kw);
        if (n < kl || strncasecmp(t, kws[k].kw, kl) != 0 || (n > kl && t[kl] != ' '))
            continue;
        c->ext_new |= kws[k].bit;
        if (kws[k].bit == OSMTP_EXT_SIZE) { /* "SIZE" or "SIZE n"; 0 or none: no limit */
            uint64_t v = 0;
            for (size_t i = kl + 1; i < n && t[i] >= '0' && t[i] <= '9'; i++) {
                unsigned d = (unsigned)(t[i] - '0');
                v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
            }
            c->size_new = v;
        }
        return;
    }
}

/* EHLO or HELO accepted. */
static void osmtp_hello_done(struct osmtp *c)
{
    if (c->tls != OSMTP_TLS_NONE && !c->tls_active && (c->ext & OSMTP_EXT_STARTTLS)) {
        osmtp_cmd(c, OSMTP_K_STARTTLS, 0, "STARTTLS");
        c->st = OSMTP_STARTTLS;
    } else if (c->tls >= OSMTP_TLS_ENCRYPT && !c->tls_active) {
        osmtp_fail_local(c, OSMTP_L_TLS_ABSENT, true, "%s", "");
    } else {
        c->st = OSMTP_READY;
    }
}

static void osmtp_greeting(struct osmtp *c, const struct osmtp_reply *r)
{
    if (r->code == 220) {
        snprintf(c->banner, sizeof(c->banner), "%s", r->text);
        osmtp_ehlo(c);
    } else if (r->code / 100 == 4 || r->code / 100 == 5) {
        osmtp_fail(c, r, r->code != 421); /* RFC 5321 3.1: QUIT after a 554 */
    } else {
        osmtp_fail_local(c, OSMTP_L_PROTO, false, ": unexpected greeting: %d %s", r->code, r->text);
    }
}

/* ---- replies ---- */

static int osmtp_kind_class(enum osmtp_kind k)
{
    return k == OSMTP_K_DATA ? 3 : 2;
}

static void osmtp_reply(struct osmtp *c, const struct osmtp_reply *r)
{
    switch (c->st) {
    case OSMTP_GREETING:
        osmtp_greeting(c, r);
        return;
    case OSMTP_QUIT: /* 221, or anything: we are leaving */
        c->st = OSMTP_CLOSED;
        c->qhead = c->qlen = 0;
        return;
    case OSMTP_CLOSED:
    case OSMTP_FAILED:
        return;
    default:
        break;
    }
    if (r->code == 421) {
        osmtp_fail(c, r, false);
        return;
    }
    if (c->qlen == 0) {
        osmtp_fail_local(c, OSMTP_L_PROTO, false, ": unexpected reply (in state %s): %d %s",
                         osmtp_state_name(c->st), r->code, r->text);
        return;
    }
    struct osmtp_pend e = c->q[c->qhead];
    c->qhead++;
    if (--c->qlen == 0)
        c->qhead = 0;
    int cls = r->code / 100;
    bool ok = cls == osmtp_kind_class(e.kind);
    if (!ok && cls != 4 && cls != 5) {
        osmtp_fail_local(c, OSMTP_L_PROTO, false, ": unexpected reply to %s: %d %s",
                         osmtp_kind_names[e.kind], r->code, r->text);
        return;
    }
    switch (e.kind) {
    case OSMTP_K_EHLO:
        if (ok) {
            c->ext = c->ext_new;
            c->max_size = c->size_new;
            osmtp_hello_done(c);
        } else if (cls == 5) { /* RFC 5321 4.1.4: an old server; say HELO */
            osmtp_cmd(c, OSMTP_K_HELO, 0, "HELO %s", c->helo);
        } else {
            osmtp_fail(c, r, true);
        }
        break;
    case OSMTP_K_HELO:
        if (ok) {
            c->ext = 0;
            c->max_size = 0;
            osmtp_hello_done(c);
        } else {
            osmtp_fail(c, r, true);
        }
        break;
    case OSMTP_K_STARTTLS:
        if (ok && r->code == 220)
            c->st = OSMTP_TLS_HANDSHAKE;
        else if (c->tls == OSMTP_TLS_MAY)
            c->st = OSMTP_READY; /* RFC 3207 4: go on in plaintext */
        else
            osmtp_fail_local(c, OSMTP_L_TLS_REFUSED, true, ": %d %s %s", r->code, r->enhanced, r->text);
        break;
    case OSMTP_K_RSET:
    case OSMTP_K_MAIL:
    case OSMTP_K_RCPT:
    case OSMTP_K_DATA:
    case OSMTP_K_DOT:
    case OSMTP_K_DOT_SWALLOW:
    case OSMTP_K_BDAT:
        osmtp_txn_reply(c, &e, r, ok);
        break;
    case OSMTP_K_QUIT:
        break;
    }
}

void osmtp_input(struct osmtp *c, const char *p, size_t len)
{
    if (c->in_rcpt_cb)
        log_panic("osmtp_input: called from on_rcpt");
    while (len > 0 && c->st != OSMTP_FAILED && c->st != OSMTP_CLOSED) {
        if (c->st == OSMTP_TLS_HANDSHAKE) {
            osmtp_fail_local(c, OSMTP_L_PROTO, false, ": %s", "plaintext after the STARTTLS reply");
            break;
        }
        size_t used;
        enum osmtp_rx_ev ev = osmtp_rx_feed(&c->rx, p, len, &used, c->ext & OSMTP_EXT_ENHANCED);
        p += used;
        len -= used;
        if (ev == OSMTP_RX_ERROR) {
            osmtp_fail(c, &c->rx.r, false);
            break;
        }
        if (ev == OSMTP_RX_MORE)
            continue;
        /* an EHLO keyword: any line but the first (the server's name) */
        if (c->qlen > 0 && c->q[c->qhead].kind == OSMTP_K_EHLO && c->rx.lnum > 0)
            osmtp_ehlo_line(c, c->rx.ltext, c->rx.ltext_len);
        if (ev == OSMTP_RX_REPLY)
            osmtp_reply(c, &c->rx.r);
    }
    osmtp_check_oom(c);
}

void osmtp_eof(struct osmtp *c)
{
    if (c->st == OSMTP_QUIT) {
        c->st = OSMTP_CLOSED;
        c->qhead = c->qlen = 0;
        return;
    }
    osmtp_fail_local(c, OSMTP_L_LOST, false, " (in state %s)", osmtp_state_name(c->st));
}

/* ---- TLS and QUIT ---- */

void osmtp_tls_done(struct osmtp *c, bool ok, const char *reason)
{
    if (c->st != OSMTP_TLS_HANDSHAKE)
        log_panic("osmtp_tls_done: no handshake (state %s)", osmtp_state_name(c->st));
    if (!ok) {
        osmtp_fail_local(c, OSMTP_L_TLS_FAILED, false, ": %s", reason ? reason : "?");
        return;
    }
    c->tls_active = true;
    c->ext = 0; /* RFC 3207 4.2: forget what was said in plaintext */
    c->max_size = 0;
    osmtp_rx_reset(&c->rx);
    osmtp_ehlo(c);
    osmtp_check_oom(c);
}

void osmtp_quit(struct osmtp *c)
{
    if (c->in_rcpt_cb)
        log_panic("osmtp_quit: called from on_rcpt");
    switch (c->st) {
    case OSMTP_READY:
        osmtp_cmd(c, OSMTP_K_QUIT, 0, "QUIT");
        c->st = OSMTP_QUIT;
        break;
    case OSMTP_QUIT:
    case OSMTP_CLOSED:
    case OSMTP_FAILED:
        break;
    default:
        osmtp_fail_local(c, OSMTP_L_ENDED, false, " (in state %s)", osmtp_state_name(c->st));
        break;
    }
    osmtp_check_oom(c);
}
