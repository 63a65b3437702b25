/*
 * NAME
 *	smtp_session - the inbound SMTP session: state, input, output, timers
 * SYNOPSIS
 *	#include "core/queue/route.h"
#include "core/smtpd/smtp.h"
 * DESCRIPTION
 *	Input.  Every piece received is appended to the session's input queue
 *	as a slice (a reference on the receive buffer, no copy) and the queue
 *	is then pumped: in the command phase bytes are copied into the line
 *	buffer up to each LF; in DATA and BDAT they go to smtp_data.c, which
 *	keeps the body as slices of the same buffers.  The pump stops when the
 *	queue is empty, when the session is parked on a group commit (the
 *	rest of the queue waits for smtp_msg_done), on an event sink that
 *	went pending (smtp_sinks.c) or on a failed AUTH's delay, or when more than
 *	SMTP_OUT_HIWAT of replies are pending (a client that pipelines but
 *	never reads; out_done resumes it).  Input held that way is the
 *	backlog; over SMTP_BACKLOG_MAX the session answers 421 and closes.
 *
 *	Command lines (RFC 5321 2.3.8, 4.5.3.1.4): at most SMTP_LINE_MAX
 *	octets with the CRLF.  A longer line is discarded up to its LF and
 *	answered 500 5.5.2, so memory stays bounded without any newline.
 *	A line must end in CRLF; a bare LF, a bare CR, a NUL or malformed
 *	UTF-8 gets a 5xx and is never truncated or reinterpreted.
 *
 *	Output is a double buffer: replies append to out[out_cur];
 *	smtp_session_out_take() hands that buffer to the sender and switches
 *	out_cur, smtp_session_out_done() empties the sent one.
 *
 *	Synchronisation (RFC 2920; Postfix smtpd_forbid_unauth_pipelining):
 *	a client that does not wait for replies where it must gets 554 5.5.0
 *	and the session ends: input before the greeting was taken for
 *	sending; a command line with more input queued behind it before an
 *	EHLO reply offered PIPELINING (this also catches a client that talks
 *	before the greeting, whose greeting was sent anyway); input behind
 *	EHLO, HELO or DATA (smtp_cmd.c).
 *
 *	Timers: smtp_session_tick() compares now_ms (CLOCK_MONOTONIC_COARSE
 *	milliseconds, the clock smtp_now_ms() of smtp_clock.c reads) with the
 *	time of the last input (idle timeout, RFC 5321 4.5.3.2), with the first
 *	octet of a command line not yet whole (the same bound: a line sent one
 *	octet at a time cannot hold the session past it, as every octet resets
 *	the idle time), with the session's start (max_session_time) and with the
 *	start of the message data (minimum data rate).  A parked session has no timer: the
 *	wait is ours (a sink's is bounded by its binding's deadline).  The
 *	tick also releases the reply of a failed AUTH held back in
 *	SMTP_P_HOLD (smtp_auth.c): the hold has the tick's granularity.
 *
 *	Event sinks: connect fires before the greeting (a refusal replaces
 *	the 220 and ends the session), disconnect when the session is
 *	destroyed; the rest are fired by the commands (smtp_cmd.c,
 *	smtp_data.c).
 * DIAGNOSTICS
 *	Calls out of order (input before start, out_done without out_take)
 *	panic with the function's name.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/clock.h"
#include "core/base/log.h"
#include "core/base/utf8.h"
#include "core/queue/route.h"
#include "core/smtpd/smtp_int.h"

/* ---- the server ---- */

unsigned smtp_server_open_txns(const struct smtp_server *srv)
{
    return srv->open_txns;
}

struct smtp_server *smtp_server_create(const struct cfg *cfg, struct spool_writer *spool,
                                       void (*kick)(void *cookie))
{
    struct smtp_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->cfg = cfg;
    srv->spool = spool;
    srv->kick = kick;
    /* domains delivered here (transport maildir) are ours for relay control;
     * a bad table was refused at start, so a NULL here is out of memory */
    char err[256];
    srv->routes = route_table_create(cfg, err, sizeof(err));
    return srv;
}

void smtp_server_destroy(struct smtp_server *srv)
{
    if (srv == NULL)
        return;
    smtp_sub_destroy_all(srv);
    route_table_destroy(srv->routes);
    free(srv);
}

const struct smtp_stats *smtp_server_stats(const struct smtp_server *srv)
{
    return &srv->stats;
}

/* ---- the input queue ---- */

static void smtp_inq_clear(struct smtp_session *s)
{
    for (uint32_t i = s->inq_head; i < s->inq.n; i++)
        mbuf_unref(s->inq.v[i].buf);
    s->inq.n = 0;
    s->inq.bytes = 0;
    s->inq_head = 0;
    s->inq_bytes = 0;
}

void smtp_inq_consume(struct smtp_session *s, size_t n)
{
    while (n > 0) {
        struct mslice *sl = &s->inq.v[s->inq_head];
        uint32_t k = n < sl->len ? (uint32_t)n : sl->len;
        sl->off += k; /* off + len is unchanged: mchain_push still merges */
        sl->len -= k;
        n -= k;
        s->inq_bytes -= k;
        s->inq.bytes -= k;
        if (sl->len == 0) {
            mbuf_unref(sl->buf);
            s->inq_head++;
        }
    }
    if (s->inq_head == s->inq.n) {
        s->inq.n = 0;
        s->inq_head = 0;
    } else if (s->inq_head >= 64 && s->inq_head * 2 >= s->inq.n) {
        memmove(s->inq.v, s->inq.v + s->inq_head, (s->inq.n - s->inq_head) * sizeof(*s->inq.v));
        s->inq.n -= s->inq_head;
        s->inq_head = 0;
    }
}

/* ---- output ---- */

void smtp_out_append(struct smtp_session *s, const char *p, size_t n)
{
    struct smtp_obuf *o = &s->out[s->out_cur];
    if (__builtin_expect(smtp_resp_waiting(s), 0))
        o = &s->sk->resp_hold; /* behind a reply a response sink holds */
    if (s->out_failed)
        return;
    if (o->len + n > o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 512;
        while (ncap < o->len + n)
            ncap *= 2;
        char *np = realloc(o->p, ncap);
        if (np == NULL) {
            s->out_failed = true; /* cannot even say 421: just close */
            smtp_close(s);
            return;
        }
        o->p = np;
        o->cap = ncap;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

bool smtp_session_out_take(struct smtp_session *s, const char **p, size_t *len)
{
    struct smtp_obuf *o = &s->out[s->out_cur];
    if (s->out_taken || o->len == 0)
        return false;
    *p = o->p;
    *len = o->len;
    s->out_taken = true;
    s->out_cur ^= 1;
    s->greeted = true;
    return true;
}

void smtp_session_out_done(struct smtp_session *s)
{
    if (!s->out_taken)
        log_panic("smtp_session_out_done: no output was taken");
    struct smtp_obuf *o = &s->out[s->out_cur ^ 1];
    o->len = 0;
    if (o->cap > 2 * SMTP_OUT_HIWAT) { /* a burst: give the memory back */
        free(o->p);
        o->p = NULL;
        o->cap = 0;
    }
    s->out_taken = false;
    smtp_session_pump(s); /* it may have stopped at the output high-water mark */
}

bool smtp_session_closing(const struct smtp_session *s)
{
    return s->closing;
}

size_t smtp_session_backlog(const struct smtp_session *s)
{
    return s->inq_bytes;
}

/* ---- command lines ---- */

static void smtp_line_done(struct smtp_session *s, char *line, size_t len)
{
    if (len == 0 || line[len - 1] != '\r') {
        smtp_reply(s, SMTP_R_BARE_LF);
        return;
    }
    len--;
    if (memchr(line, '\0', len) != NULL)
        smtp_reply(s, SMTP_R_NUL);
    else if (memchr(line, '\r', len) != NULL)
        smtp_reply(s, SMTP_R_BARE_CR);
    else if (!utf8_valid(line, len))
        smtp_reply(s, SMTP_R_BAD_UTF8);
    else
        smtp_cmd_dispatch(s, line, len);
}

/* Takes bytes of the head slice up to and including one LF. */
static void smtp_line_feed(struct smtp_session *s)
{
    const struct mslice *sl = &s->inq.v[s->inq_head];
    const char *p = sl->buf->data + sl->off;
    const char *lf = memchr(p, '\n', sl->len);
    size_t n = lf ? (size_t)(lf - p) : sl->len;
    if (s->linelen == 0 && !s->line_over)
        s->line_start_ms = s->last_input_ms; /* a line begins: its deadline runs */
    if (!s->line_over) {
        if (s->linelen + n > SMTP_LINE_MAX - 1) {
            s->line_over = true; /* drop it all up to the LF */
        } else {
            memcpy(s->line + s->linelen, p, n);
            s->linelen += n;
        }
    }
    /* consumed before dispatch: DATA looks at what follows its line */
    smtp_inq_consume(s, lf ? n + 1 : n);
    if (lf == NULL)
        return;
    size_t len = s->linelen;
    bool over = s->line_over;
    s->linelen = 0;
    s->line_over = false;
    if (s->inq_bytes > 0 && s->hello != SMTP_HELLO_EHLO)
        smtp_reply(s, SMTP_R_SYNC); /* pipelining, never offered (RFC 2920 3.1) */
    else if (over)
        smtp_reply(s, SMTP_R_LINE_TOO_LONG);
    else
        smtp_line_done(s, s->line, len);
}

void smtp_session_pump(struct smtp_session *s)
{
    if (s->pumping)
        return; /* the outer loop goes on */
    s->pumping = true;
    while (!s->closing && s->phase != SMTP_P_PARKED && s->phase != SMTP_P_SINK &&
           s->phase != SMTP_P_NEW && s->phase != SMTP_P_TLS && s->phase != SMTP_P_HOLD &&
           !smtp_resp_waiting(s)) {
        /* a transaction under way (MAIL accepted) may finish: the drain's
         * bound (net) closes the connection if it does not */
        if (s->phase == SMTP_P_CMD && s->shutdown && !s->txn.active) {
            smtp_reply(s, SMTP_R_SHUTDOWN);
            break;
        }
        if (s->inq_head == s->inq.n || s->out[s->out_cur].len >= SMTP_OUT_HIWAT)
            break;
        switch (s->phase) {
        case SMTP_P_CMD:
            smtp_line_feed(s);
            break;
        case SMTP_P_DATA:
            smtp_data_feed(s);
            break;
        case SMTP_P_BDAT:
            smtp_bdat_feed(s);
            break;
        case SMTP_P_AUTH:
            smtp_auth_feed(s); /* an AUTH response line (smtp_auth.c) */
            break;
        default:
            break;
        }
    }
    if (s->closing)
        smtp_inq_clear(s);
    s->pumping = false;
}

void smtp_close(struct smtp_session *s)
{
    if (s->closing)
        return;
    if (smtp_resp_waiting(s)) {
        if (!s->eof) { /* after the held reply (and what waits behind it) */
            s->sk->resp_close = true;
            return;
        }
        smtp_sink_resp_abandon(s); /* the client is gone: nobody to answer */
    }
    s->closing = true;
    smtp_txn_reset(s); /* a committed txn (parked) stays: destroy orphans it */
    smtp_inq_clear(s);
}

/* ---- the session ---- */

/* The peer as text and as an address literal; a v4-mapped v6 peer (a
 * dual-stack listener) is treated as the v4 address it is. */
static void smtp_session_peer(struct smtp_session *s, const struct sockaddr *peer,
                              socklen_t peerlen)
{
    if (peerlen > sizeof(s->peer))
        peerlen = sizeof(s->peer);
    memcpy(&s->peer, peer, peerlen);
    if (peer->sa_family == AF_INET6 && peerlen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = a6->sin6_port};
            memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
            memset(&s->peer, 0, sizeof(s->peer));
            memcpy(&s->peer, &a4, sizeof(a4));
        }
    }
    const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
    if (sa->sa_family == AF_INET && inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                                              s->client, sizeof(s->client)) != NULL) {
        snprintf(s->client_lit, sizeof(s->client_lit), "[%s]", s->client);
    } else if (sa->sa_family == AF_INET6 &&
               inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->client,
                         sizeof(s->client)) != NULL) {
        snprintf(s->client_lit, sizeof(s->client_lit), "[IPv6:%s]", s->client);
    } else {
        strcpy(s->client, "unknown");
        strcpy(s->client_lit, "unknown");
    }
}

struct smtp_session *smtp_session_create(struct smtp_server *srv, void *cookie,
                                         const struct sockaddr *peer, socklen_t peerlen)
{
    struct smtp_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->srv = srv;
    s->cfg = srv->cfg;
    s->cookie = cookie;
    smtp_session_peer(s, peer, peerlen);
    s->trusted =
        cfg_cidr_match(s->cfg->mynetworks, s->cfg->nmynetworks, (const struct sockaddr *)&s->peer);
    s->phase = SMTP_P_NEW;
    mchain_init(&s->inq);
    mchain_init(&s->txn.body);
    smtp_dscan_init(&s->txn.scan);
    srv->stats.sessions++;
    return s;
}

void smtp_session_destroy(struct smtp_session *s)
{
    if (s == NULL)
        return;
    struct smtp_stats *st = &s->srv->stats;
    if (s->quit_seen)
        st->ended_quit++;
    else if (s->timed_out)
        ; /* counted in timeouts */
    else if (s->dropped || !s->closing)
        st->ended_dropped++;
    else if (s->shutdown)
        st->ended_shutdown++;
    else
        st->ended_error++;
    smtp_sinks_session_end(s); /* first: disconnect sinks see the session as it was */
    smtp_auth_session_end(s);  /* an AUTH hash still running is abandoned */
    if (s->committed != NULL) {
        spool_txn_orphan(s->committed); /* stays in the spool; no 250 was seen */
        s->committed = NULL;
    }
    smtp_txn_reset(s);
    free(s->txn.rcpts);
    mchain_fini(&s->txn.body);
    smtp_inq_clear(s);
    mchain_fini(&s->inq);
    free(s->tls);
    free(s->out[0].p);
    free(s->out[1].p);
    free(s);
}

/* After the connect event: the greeting, or its refusal and the end. */
static void smtp_connect_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    if (smtp_outcome_ok(o)) {
        smtp_reply(s, smtp_outcome_accept(s, o, SMTP_R_GREETING, 220));
        return;
    }
    smtp_reply(s, o->reply);
    smtp_close(s); /* whatever the reply: a refused connection ends here */
}

void smtp_session_start(struct smtp_session *s, enum smtp_start how)
{
    static const enum smtp_reply_id replies[] = {
        [SMTP_START_OK] = SMTP_R_GREETING,
        [SMTP_START_PER_IP] = SMTP_R_PER_IP,
        [SMTP_START_FULL] = SMTP_R_FULL,
        [SMTP_START_SHUTDOWN] = SMTP_R_SHUTDOWN,
    };
    if (s->phase != SMTP_P_NEW)
        log_panic("smtp_session_start: session already started");
    if ((unsigned)how >= sizeof(replies) / sizeof(replies[0]))
        log_panic("smtp_session_start: bad start %d", (int)how);
    s->phase = SMTP_P_CMD;
    s->last_input_ms = smtp_now_ms();
    s->session_start_ms = s->last_input_ms;
    if (how == SMTP_START_OK)
        smtp_event(s, SINK_EV_CONNECT, NULL, smtp_connect_cont);
    else
        smtp_reply(s, replies[how]);
}

void smtp_session_input(struct smtp_session *s, struct mbuf *b, uint32_t off, uint32_t len)
{
    if (s->phase == SMTP_P_NEW)
        log_panic("smtp_session_input: session not started");
    if (s->closing || s->backlog_over || len == 0 || s->phase == SMTP_P_TLS)
        return; /* during STARTTLS: never plaintext (net sends only decrypted input) */
    s->last_input_ms = smtp_now_ms();
    if (!s->greeted) { /* talking before the greeting was even sent */
        smtp_reply(s, SMTP_R_SYNC);
        return;
    }
    if (mchain_push(&s->inq, b, off, len) < 0) {
        smtp_reply(s, SMTP_R_NOMEM_CLOSE);
        return;
    }
    s->inq_bytes += len;
    smtp_session_pump(s);
    if (s->inq_bytes > SMTP_BACKLOG_MAX) {
        if (s->phase == SMTP_P_PARKED || s->phase == SMTP_P_SINK ||
            s->phase == SMTP_P_HOLD) { /* its reply, then 421 */
            s->backlog_over = true;
            smtp_inq_clear(s);
        } else {
            smtp_reply(s, SMTP_R_BACKLOG);
        }
    }
}

void smtp_session_eof(struct smtp_session *s)
{
    if (!s->closing)
        s->dropped = true; /* the client went first */
    s->eof = true;
    smtp_close(s);
}

void smtp_session_tick(struct smtp_session *s, uint64_t now_ms)
{
    const struct cfg *c = s->cfg;
    if (!s->closing && s->phase == SMTP_P_HOLD) {
        smtp_auth_hold_tick(s, now_ms); /* the hold is ours: no idle timer */
        return;
    }
    if (s->closing || s->phase == SMTP_P_NEW || s->phase == SMTP_P_PARKED ||
        s->phase == SMTP_P_SINK || s->phase == SMTP_P_TLS || smtp_resp_waiting(s))
        return; /* a handshake is timed by net; a sink by its deadline */
    bool partial_line = s->phase == SMTP_P_CMD && (s->linelen > 0 || s->line_over);
    if ((c->idle_timeout_ms > 0 && now_ms > s->last_input_ms &&
         now_ms - s->last_input_ms > c->idle_timeout_ms) ||
        (c->idle_timeout_ms > 0 && partial_line && now_ms > s->line_start_ms &&
         now_ms - s->line_start_ms > c->idle_timeout_ms) ||
        (c->max_session_ms > 0 && now_ms > s->session_start_ms &&
         now_ms - s->session_start_ms > c->max_session_ms)) {
        s->srv->stats.timeouts++;
        s->timed_out = true;
        smtp_reply(s, SMTP_R_TIMEOUT);
        return;
    }
    if (s->data_timing && c->min_data_rate > 0 && now_ms > s->data_start_ms &&
        now_ms - s->data_start_ms > c->data_rate_grace_ms) {
        uint64_t elapsed = now_ms - s->data_start_ms;
        if (s->data_bytes * 1000 / elapsed < c->min_data_rate) {
            s->srv->stats.timeouts++;
            s->timed_out = true;
            smtp_reply(s, SMTP_R_SLOW);
        }
    }
}

void smtp_session_shutdown(struct smtp_session *s)
{
    if (s->closing || s->phase == SMTP_P_NEW)
        return;
    s->shutdown = true;
    smtp_session_pump(s); /* answers now if at a command boundary */
}

void smtp_session_release_buffers(struct smtp_session *s)
{
    smtp_msg_flush(s);
    if (s->inq_bytes == 0)
        return;
    /* copy the queued input out of the ring's buffers */
    struct mbuf *m = mbuf_heap(s->inq_bytes);
    if (m == NULL)
        return;
    size_t n = 0;
    for (uint32_t i = s->inq_head; i < s->inq.n; i++) {
        const struct mslice *sl = &s->inq.v[i];
        memcpy(m->data + n, sl->buf->data + sl->off, sl->len);
        n += sl->len;
    }
    smtp_inq_clear(s);
    if (mchain_push(&s->inq, m, 0, (uint32_t)n) == 0)
        s->inq_bytes = n;
    else
        smtp_reply(s, SMTP_R_NOMEM_CLOSE); /* the input is lost: end here */
    mbuf_unref(m);
}

/* ---- TLS ---- */

void smtp_session_set_listener(struct smtp_session *s, enum smtp_listener kind)
{
    s->listener = kind;
}

void smtp_server_set_spool(struct smtp_server *srv, struct spool_writer *spool)
{
    srv->spool = spool;
}

void smtp_server_set_tls(struct smtp_server *srv, bool available)
{
    srv->tls_available = available;
}

bool smtp_session_starttls_wanted(const struct smtp_session *s)
{
    return s->tls_wanted;
}

void smtp_session_tls_begin(struct smtp_session *s)
{
    if (s->closing)
        return;
    smtp_inq_clear(s); /* plaintext behind STARTTLS: never interpreted */
    smtp_txn_reset(s);
    s->hello = SMTP_HELLO_NONE;
    s->helo[0] = '\0';
    s->linelen = 0;
    s->line_over = false;
    s->tls_wanted = true;
    s->phase = SMTP_P_TLS;
}

void smtp_session_tls_started(struct smtp_session *s, const char *desc)
{
    free(s->tls);
    s->tls = strdup(desc);
    if (s->tls == NULL) {
        smtp_reply(s, SMTP_R_NOMEM_CLOSE);
        return;
    }
    if (s->tls_wanted) {
        s->tls_wanted = false;
        s->phase = SMTP_P_CMD;
        s->last_input_ms = smtp_now_ms();
        smtp_session_pump(s);
    }
}
