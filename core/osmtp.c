/*
 * NAME
 *	osmtp - the outbound SMTP client session: commands, replies, transactions
 * SYNOPSIS
 *	#include "core/osmtp.h"
 * DESCRIPTION
 *	Every command sent is remembered in a queue of expected replies
 *	(kind, recipient index); each reply read pops the head and is handled
 *	by its kind, so pipelined and lock-step conversations run the same
 *	code: with PIPELINING the transaction's commands are issued at once,
 *	without it the next one is issued when the queue is empty again.
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
 *	CHUNKING: MAIL and RCPTs (pipelined when offered), then "BDAT n LAST"
 *	once every RCPT reply is in and at least one was positive; its reply
 *	is the final one.  A refused BDAT leaves the server's transaction
 *	open (RFC 3030 4.1), so an RSET goes before the next MAIL, as after
 *	any transaction that failed before its end of data.
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
 *	Calls out of order (osmtp_stuff outside the body, osmtp_body_end
 *	twice, osmtp_out_done without take) panic with the function's name.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/osmtp_int.h"

enum osmtp_kind {
    OSMTP_K_EHLO,
    OSMTP_K_HELO,
    OSMTP_K_STARTTLS,
    OSMTP_K_RSET,
    OSMTP_K_MAIL,
    OSMTP_K_RCPT,
    OSMTP_K_DATA,
    OSMTP_K_DOT,         /* the end of data */
    OSMTP_K_DOT_SWALLOW, /* the "." after an unwanted 354 */
    OSMTP_K_BDAT,
    OSMTP_K_QUIT,
};

static const char *const osmtp_kind_names[] = {
    "EHLO", "HELO",        "STARTTLS",    "RSET", "MAIL", "RCPT",
    "DATA", "end of data", "end of data", "BDAT", "QUIT",
};

struct osmtp_pend {
    enum osmtp_kind kind;
    size_t idx; /* RCPT: the recipient */
};

struct osmtp_obuf {
    char *p;
    size_t len;
    size_t cap;
};

/* What to issue next in a transaction. */
enum osmtp_step { OSMTP_S_RSET, OSMTP_S_MAIL, OSMTP_S_RCPT, OSMTP_S_DATA, OSMTP_S_NONE };

struct osmtp_txn {
    bool open;
    bool pipe;    /* issue everything at once */
    bool aborted; /* failed before the body: fin is the outcome */
    enum osmtp_step step;
    const char *sender;
    const char **rcpt; /* copy of the message's array (the strings are borrowed) */
    bool *done;        /* recipient answered (on_rcpt called) */
    size_t n;
    size_t nsend;        /* recipients with an RCPT command */
    size_t next_rcpt;    /* next index to consider for RCPT */
    size_t rcpt_replies; /* RCPT replies read */
    size_t nacc;
    uint64_t size;
    bool b8;
    bool utf8;
    struct osmtp_reply fin;
};

struct osmtp {
    enum osmtp_state st;
    struct osmtp_cb cb;
    void *arg;
    char helo[256];
    enum osmtp_tls tls;
    bool chunking;
    bool pipelining;
    bool tls_active;
    bool need_rset;
    bool in_rcpt_cb;
    bool oom;
    unsigned ext;
    uint64_t max_size;
    unsigned ext_new; /* being read from an EHLO reply */
    uint64_t size_new;
    enum osmtp_body mode;
    bool bol; /* stuffing: at the start of a line */
    bool cr;  /* stuffing: the last octet was CR */
    struct osmtp_pend *q;
    size_t qhead, qlen, qcap;
    struct osmtp_obuf out[2];
    unsigned out_cur;
    bool out_taken;
    struct osmtp_txn t;
    struct osmtp_rx rx;
    char banner[512];
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

static void osmtp_out_append(struct osmtp *c, const char *p, size_t n)
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

/* Remembers that a reply of this kind is expected next after the others. */
static void osmtp_expect(struct osmtp *c, enum osmtp_kind kind, size_t idx)
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

static void osmtp_cmd(struct osmtp *c, enum osmtp_kind kind, size_t idx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Queues a command line and the reply it expects. */
static void osmtp_cmd(struct osmtp *c, enum osmtp_kind kind, size_t idx, const char *fmt, ...)
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

static void osmtp_txn_free(struct osmtp *c)
{
    free(c->t.rcpt);
    free(c->t.done);
    memset(&c->t, 0, sizeof(c->t));
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
static void osmtp_txn_end(struct osmtp *c, const struct osmtp_reply *r, bool rset)
{
    struct osmtp_reply fin = *r; /* r may live in c->t */
    osmtp_rcpt_all(c, &fin);
    osmtp_txn_free(c);
    c->need_rset = rset;
    if (c->st != OSMTP_FAILED)
        c->st = OSMTP_READY;
    c->cb.on_done(c->arg, &fin);
}

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

static void osmtp_fail_local(struct osmtp *c, enum osmtp_local id, bool quit, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void osmtp_fail_local(struct osmtp *c, enum osmtp_local id, bool quit, const char *fmt, ...)
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
static void osmtp_check_oom(struct osmtp *c)
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

/* ---- transactions ---- */

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
            osmtp_fail_local(c, OSMTP_L_TLS_REFUSED, true, ": %d %s", r->code, r->text);
        break;
    case OSMTP_K_RSET:
        if (!ok)
            osmtp_fail_local(c, OSMTP_L_PROTO, true, ": RSET refused: %d %s", r->code, r->text);
        break;
    case OSMTP_K_MAIL:
        if (!ok && !c->t.aborted)
            osmtp_txn_abort(c, r);
        break;
    case OSMTP_K_RCPT:
        osmtp_rcpt_reply(c, e.idx, r);
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
    case OSMTP_K_DOT_SWALLOW:
    case OSMTP_K_QUIT:
        break;
    }
    if (c->t.open && c->st == OSMTP_ENVELOPE) {
        osmtp_txn_issue(c);
        if (c->t.aborted && c->qlen == 0) /* nothing more to swallow */
            osmtp_txn_end(c, &c->t.fin, true);
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
