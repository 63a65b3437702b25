/*
 * NAME
 *	smtp_reply - the one table of SMTP replies
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	smtp_reply(s, SMTP_R_RCPT_OK);
 *	smtp_replyf(s, SMTP_R_QUEUED, "%s", idstr);
 *	smtp_reply_ehlo(s);
 * DESCRIPTION
 *	Every reply the server sends is a row of smtp_replies: the code, the
 *	RFC 3463 enhanced status code (RFC 2034; none on the greeting, 354
 *	and the EHLO lines), the text, and flags:
 *
 *	HOST	the text starts with the server's hostname (RFC 5321 4.2)
 *	PRE	a detail goes before the text instead of after it
 *	ERROR	a protocol error: counts toward cfg->max_errors
 *	CLOSE	the session ends once this reply is sent
 *
 *	When an error pushes the count over max_errors, 421 4.7.0 follows it
 *	and the session closes.  Once a session is closing nothing more is
 *	emitted, so a 421 is always the last line.
 *
 *	Event sinks: the SINK rows are the replies for a sink's verdict when
 *	the sink set none; SMTP_R_SINK_REPLY stands for the reply the
 *	deciding sink did set (s->sk->reply), sent as it is.  Every reply is
 *	built whole (all its lines) before it is queued, so that the response
 *	event sees it and may change it (smtp_sinks.c).
 * DIAGNOSTICS
 *	An unknown reply id panics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/smtpd/smtp_int.h"

enum {
    SMTP_RF_HOST = 1u << 0,
    SMTP_RF_PRE = 1u << 1,
    SMTP_RF_ERROR = 1u << 2,
    SMTP_RF_CLOSE = 1u << 3,
};

struct smtp_reply_def {
    const char *code;
    const char *esc; /* NULL: no enhanced status code */
    const char *text;
    unsigned flags;
};

#define E SMTP_RF_ERROR
#define C SMTP_RF_CLOSE
#define H SMTP_RF_HOST

static const struct smtp_reply_def smtp_replies[SMTP_R_COUNT_] = {
    [SMTP_R_GREETING] = {"220", NULL, "ESMTP sluice", H},
    [SMTP_R_PER_IP] = {"421", "4.7.0", "Error: too many connections from your address", H | C},
    [SMTP_R_FULL] = {"421", "4.3.2", "Error: server busy, try again later", H | C},
    [SMTP_R_SHUTDOWN] = {"421", "4.3.2", "Error: service shutting down", H | C},
    [SMTP_R_HELO] = {"250", NULL, "", H},
    [SMTP_R_EHLO] = {"250", NULL, "", H},
    [SMTP_R_HELP] = {"214", "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321", 0},
    [SMTP_R_OK] = {"250", "2.0.0", "Ok", 0},
    [SMTP_R_MAIL_OK] = {"250", "2.1.0", "Ok", 0},
    [SMTP_R_RCPT_OK] = {"250", "2.1.5", "Ok", 0},
    [SMTP_R_QUEUED] = {"250", "2.0.0", "Ok: queued as", 0},
    [SMTP_R_BDAT_OK] = {"250", "2.0.0", "octets received", SMTP_RF_PRE},
    [SMTP_R_VRFY] = {"252", "2.0.0", "Cannot VRFY user, but will accept message", 0},
    [SMTP_R_DATA_GO] = {"354", NULL, "End data with <CR><LF>.<CR><LF>", 0},
    [SMTP_R_BYE] = {"221", "2.0.0", "Bye", C},
    [SMTP_R_TIMEOUT] = {"421", "4.4.2", "Error: timeout exceeded", H | C},
    [SMTP_R_SLOW] = {"421", "4.4.2", "Error: minimum data rate not met", H | C},
    [SMTP_R_TOO_MANY_ERRORS] = {"421", "4.7.0", "Too many errors", H | C},
    [SMTP_R_BACKLOG] = {"421", "4.7.0", "Error: too much pipelined input", H | C},
    [SMTP_R_NOMEM_CLOSE] = {"421", "4.3.0", "Error: out of memory", H | C},
    [SMTP_R_SYNC] = {"554", "5.5.0", "Error: SMTP protocol synchronization", E | C},
    [SMTP_R_LINE_TOO_LONG] = {"500", "5.5.2", "Line too long", E},
    [SMTP_R_BARE_LF] = {"500", "5.5.2", "Error: bare <LF> received", E},
    [SMTP_R_NUL] = {"500", "5.5.2", "Error: NUL character in command", E},
    [SMTP_R_BARE_CR] = {"501", "5.5.2", "Syntax error: bare <CR> in command", E},
    [SMTP_R_BAD_UTF8] = {"501", "5.5.2", "Malformed UTF-8", E},
    [SMTP_R_UNKNOWN] = {"500", "5.5.2", "Error: command not recognized", E},
    [SMTP_R_NO_ARGS] = {"501", "5.5.4", "Syntax error: no arguments allowed", E},
    [SMTP_R_HELO_SYNTAX] = {"501", "5.5.4", "Syntax: EHLO hostname", E},
    [SMTP_R_HELO_BAD] = {"501", "5.5.4", "Invalid hostname", E},
    [SMTP_R_VRFY_SYNTAX] = {"501", "5.5.4", "Syntax: VRFY address", E},
    [SMTP_R_NEED_HELO] = {"503", "5.5.1", "Error: send HELO/EHLO first", E},
    [SMTP_R_NESTED_MAIL] = {"503", "5.5.1", "Error: nested MAIL command", E},
    [SMTP_R_NEED_MAIL] = {"503", "5.5.1", "Error: need MAIL command", E},
    [SMTP_R_NEED_RCPT] = {"554", "5.5.1", "No valid recipients", E},
    [SMTP_R_DATA_AFTER_BDAT] = {"503", "5.5.1", "Error: DATA after BDAT", E},
    [SMTP_R_MAIL_SYNTAX] = {"501", "5.5.4", "Syntax: MAIL FROM:<address>", E},
    [SMTP_R_RCPT_SYNTAX] = {"501", "5.5.4", "Syntax: RCPT TO:<address>", E},
    [SMTP_R_SENDER_BAD] = {"501", "5.1.7", "Bad sender address syntax", E},
    [SMTP_R_RCPT_BAD] = {"501", "5.1.3", "Bad recipient address syntax", E},
    [SMTP_R_SENDER_LONG] = {"501", "5.1.7", "Path too long", E},
    [SMTP_R_RCPT_LONG] = {"501", "5.1.3", "Path too long", E},
    [SMTP_R_PARAM_SYNTAX] = {"501", "5.5.4", "Bad parameter syntax", E},
    [SMTP_R_PARAM_UNKNOWN] = {"555", "5.5.4", "unsupported parameter", E},
    [SMTP_R_SIZE_EXCEEDED] = {"552", "5.3.4", "Message size exceeds fixed maximum message size", 0},
    [SMTP_R_NEED_UTF8] = {"553", "5.6.7", "Non-ASCII address requires SMTPUTF8", 0},
    [SMTP_R_RELAY_DENIED] = {"554", "5.7.1", "Relay access denied", 0},
    [SMTP_R_TOO_MANY_RCPTS] = {"452", "4.5.3", "Too many recipients", 0},
    [SMTP_R_BARE_DATA] = {"550", "5.6.0", "Message contains bare CR or LF", 0},
    [SMTP_R_NUL_DATA] = {"550", "5.6.0", "Message contains NUL characters", 0},
    [SMTP_R_DATA_LINE_LONG] = {"550", "5.5.2", "Message line too long", 0},
    [SMTP_R_NO_STORAGE] = {"452", "4.3.1", "Insufficient system storage", 0},
    [SMTP_R_WRITE_ERROR] = {"451", "4.3.0", "Error: queue file write error", 0},
    [SMTP_R_NOMEM] = {"451", "4.3.0", "Error: out of memory", 0},
    [SMTP_R_BDAT_SYNTAX] = {"501", "5.5.4", "Syntax: BDAT count [LAST]", E | C},
    [SMTP_R_SINK_REJECT] = {"550", "5.7.1", "Rejected by policy", 0},
    [SMTP_R_SINK_TEMPFAIL] = {"451", "4.7.1", "Try again later", 0},
    [SMTP_R_SINK_DROP] = {"421", "4.7.0", "Closing connection", H | C},
    [SMTP_R_SINK_CONN_REJECT] = {"554", "5.7.1", "Rejected by policy", H | C},
    [SMTP_R_SINK_CONN_TEMPFAIL] = {"421", "4.7.1", "Try again later", H | C},
    [SMTP_R_TLS_GO] = {"220", "2.0.0", "Ready to start TLS", 0},
    [SMTP_R_TLS_ACTIVE] = {"554", "5.5.1", "Error: TLS already active", E},
    [SMTP_R_TLS_IN_TXN] = {"503", "5.5.1", "Error: MAIL transaction in progress", E},
    [SMTP_R_AUTH_OK] = {"235", "2.7.0", "Authentication successful", 0},
    [SMTP_R_AUTH_CHALLENGE] = {"334", NULL, "", 0},
    [SMTP_R_AUTH_FAILED] = {"535", "5.7.8", "Error: authentication failed", E},
    [SMTP_R_AUTH_NEED_TLS] = {"538", "5.7.11",
                              "Encryption required for requested authentication mechanism", E},
    [SMTP_R_AUTH_REQUIRED] = {"530", "5.7.0", "Authentication required", E},
    [SMTP_R_AUTH_TWICE] = {"503", "5.5.1", "Error: already authenticated", E},
    [SMTP_R_AUTH_NEED_EHLO] = {"503", "5.5.1", "Error: send EHLO first", E},
    [SMTP_R_AUTH_IN_TXN] = {"503", "5.5.1", "Error: MAIL transaction in progress", E},
    [SMTP_R_AUTH_DISABLED] = {"503", "5.5.1", "Error: authentication not enabled", E},
    [SMTP_R_AUTH_SYNTAX] = {"501", "5.5.4", "Syntax: AUTH mechanism", E},
    [SMTP_R_AUTH_MECH] = {"504", "5.5.4", "Unrecognized authentication type", E},
    [SMTP_R_AUTH_ABORTED] = {"501", "5.0.0", "Authentication aborted", E},
    [SMTP_R_AUTH_BASE64] = {"501", "5.5.2", "Error: invalid base64 data", E},
    [SMTP_R_AUTH_MALFORMED] = {"501", "5.7.0", "Error: malformed authentication data", E},
    [SMTP_R_AUTH_LINE_LONG] = {"500", "5.5.6", "Authentication exchange line is too long", E},
    [SMTP_R_AUTH_TEMPFAIL] = {"454", "4.7.0", "Temporary authentication failure", 0},
    [SMTP_R_AUTH_LIMIT] = {"421", "4.7.0", "Error: too many authentication failures", H | C},
    [SMTP_R_AUTH_USER_LIMIT] =
        {"454", "4.7.0", "Error: too many authentication failures for this user, try again later",
         0},
    /* SMTP_R_SINK_REPLY has no row: its code and text are the sink's */
};

#undef E
#undef C
#undef H

static const struct smtp_reply_def *smtp_reply_def(enum smtp_reply_id id)
{
    if (id <= SMTP_R_NONE || id >= SMTP_R_COUNT_ || smtp_replies[id].code == NULL)
        log_panic("smtp_reply: unknown reply id %d", (int)id);
    return &smtp_replies[id];
}

const char *smtp_reply_code(enum smtp_reply_id id)
{
    return smtp_reply_def(id)->code;
}

/* A reply line being built; it never exceeds the command line limit. */
struct smtp_rline {
    char p[SMTP_LINE_MAX];
    size_t n;
};

static void smtp_rline_put(struct smtp_rline *l, const char *p, size_t n)
{
    size_t room = sizeof(l->p) - 2 - l->n; /* CRLF always fits */
    if (n > room)
        n = room;
    memcpy(l->p + l->n, p, n);
    l->n += n;
}

static void smtp_rline_str(struct smtp_rline *l, const char *p)
{
    smtp_rline_put(l, p, strlen(p));
}

/* A whole reply (every line, CRLF-terminated) before it is queued. */
struct smtp_rbuf {
    char p[8 * SMTP_LINE_MAX];
    size_t n;
    int code;
    bool multi;
};

/* Not an initializer: that would clear the whole buffer for every reply. */
static void smtp_rbuf_init(struct smtp_rbuf *rb)
{
    rb->n = 0;
    rb->code = 0;
    rb->multi = false;
}

static void smtp_rbuf_add(struct smtp_rbuf *rb, const struct smtp_rline *l)
{
    if (rb->n > 0)
        rb->multi = true;
    if (rb->n + l->n + 2 <= sizeof(rb->p)) { /* 8 lines: EHLO has 7 */
        memcpy(rb->p + rb->n, l->p, l->n);
        memcpy(rb->p + rb->n + l->n, "\r\n", 2);
        rb->n += l->n + 2;
    }
}

/* One line "CODE<sep>[ESC ][HOST ]TEXT[ DETAIL]" (or DETAIL before TEXT). */
static void smtp_reply_line(struct smtp_session *s, struct smtp_rbuf *rb,
                            const struct smtp_reply_def *d, char sep, const char *text,
                            const char *detail)
{
    struct smtp_rline l = {.n = 0};
    bool pre = detail != NULL && (d->flags & SMTP_RF_PRE);
    const char *parts[2] = {pre ? detail : text, pre ? text : detail};
    bool first = true;

    smtp_rline_str(&l, d->code);
    smtp_rline_put(&l, &sep, 1);
    if (d->esc) {
        smtp_rline_str(&l, d->esc);
        first = false;
    }
    if (d->flags & SMTP_RF_HOST) {
        const char *h = s->cfg->hostname;
        if (!first)
            smtp_rline_put(&l, " ", 1);
        smtp_rline_put(&l, h, strnlen(h, SMTP_DOMAIN_MAX));
        first = false;
    }
    for (int i = 0; i < 2; i++) {
        if (parts[i] == NULL || parts[i][0] == '\0')
            continue;
        if (!first)
            smtp_rline_put(&l, " ", 1);
        smtp_rline_str(&l, parts[i]);
        first = false;
    }
    if (rb->n == 0)
        rb->code = (d->code[0] - '0') * 100 + (d->code[1] - '0') * 10 + (d->code[2] - '0');
    smtp_rbuf_add(rb, &l);
}

/* Queues the reply, after the response event if sinks are bound to it;
 * *close is set when a response sink dropped the session. */
static void smtp_reply_emit(struct smtp_session *s, struct smtp_rbuf *rb, bool *close)
{
    *close = false;
    if (rb->n < 2)
        return;
    if (smtp_sink_bound(s, SINK_EV_RESPONSE)) {
        bool held = false;
        size_t n = smtp_sink_response(s, &rb->code, rb->p, rb->n - 2, sizeof(rb->p) - 2, rb->multi,
                                      close, &held);
        if (held)
            return; /* it goes out when the sink answers (smtp_sinks.c) */
        memcpy(rb->p + n, "\r\n", 2);
        rb->n = n + 2;
    }
    smtp_out_append(s, rb->p, rb->n);
}

/* Error counting and closing, after the reply went out. */
static void smtp_reply_after(struct smtp_session *s, const struct smtp_reply_def *d, bool close)
{
    if (d->flags & SMTP_RF_ERROR) {
        s->errors++;
        s->srv->stats.protocol_errors++;
        if (!(d->flags & SMTP_RF_CLOSE) && !close && s->errors > s->cfg->max_errors) {
            struct smtp_rbuf rb;
            smtp_rbuf_init(&rb);
            smtp_reply_line(s, &rb, &smtp_replies[SMTP_R_TOO_MANY_ERRORS], ' ',
                            smtp_replies[SMTP_R_TOO_MANY_ERRORS].text, NULL);
            smtp_reply_emit(s, &rb, &close);
            smtp_close(s);
            return;
        }
    }
    if ((d->flags & SMTP_RF_CLOSE) || close)
        smtp_close(s);
}

/* SMTP_R_SINK_REPLY: "CODE [ENHANCED ]TEXT" as the sink set it. */
static void smtp_reply_sink(struct smtp_session *s)
{
    const struct smtp_sreply *r = &s->sk->reply;
    struct smtp_rline l = {.n = 0};
    struct smtp_rbuf rb;
    smtp_rbuf_init(&rb);
    rb.code = r->code;
    char code[8];
    bool close;
    snprintf(code, sizeof(code), "%03d", r->code % 1000);
    smtp_rline_str(&l, code);
    if (r->enhanced[0] != '\0') {
        smtp_rline_put(&l, " ", 1);
        smtp_rline_str(&l, r->enhanced);
    }
    if (r->text[0] != '\0') {
        smtp_rline_put(&l, " ", 1);
        smtp_rline_put(&l, r->text, strcspn(r->text, "\r\n")); /* checked by the engine too */
    }
    smtp_rbuf_add(&rb, &l);
    smtp_reply_emit(s, &rb, &close);
    if (r->close || close)
        smtp_close(s);
}

void smtp_reply(struct smtp_session *s, enum smtp_reply_id id)
{
    if (s->closing)
        return;
    if (id == SMTP_R_SINK_REPLY && s->sk != NULL) {
        smtp_reply_sink(s);
        return;
    }
    const struct smtp_reply_def *d = smtp_reply_def(id);
    struct smtp_rbuf rb;
    smtp_rbuf_init(&rb);
    bool close;
    smtp_reply_line(s, &rb, d, ' ', d->text, NULL);
    smtp_reply_emit(s, &rb, &close);
    smtp_reply_after(s, d, close);
}

void smtp_replyf(struct smtp_session *s, enum smtp_reply_id id, const char *fmt, ...)
{
    const struct smtp_reply_def *d = smtp_reply_def(id);
    char detail[SMTP_LINE_MAX];
    va_list ap;
    if (s->closing)
        return;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    struct smtp_rbuf rb;
    smtp_rbuf_init(&rb);
    bool close;
    smtp_reply_line(s, &rb, d, ' ', d->text, detail);
    smtp_reply_emit(s, &rb, &close);
    smtp_reply_after(s, d, close);
}

/* RFC 5321 4.1.1.1 with the keywords of the extensions we implement. */
void smtp_reply_ehlo(struct smtp_session *s)
{
    const struct smtp_reply_def *d = smtp_reply_def(SMTP_R_EHLO);
    char size[40];
    if (s->closing)
        return;
    snprintf(size, sizeof(size), "SIZE %llu", (unsigned long long)s->cfg->max_message_size);
    const char *kw[8] = {"PIPELINING",          size,      "8BITMIME", "SMTPUTF8",
                         "ENHANCEDSTATUSCODES", "CHUNKING"};
    size_t nkw = 6;
    if (s->srv->tls_available && s->tls == NULL && s->listener != SMTP_L_SMTPS)
        kw[nkw++] = "STARTTLS"; /* RFC 3207: not once TLS is active */
    if (s->tls != NULL && smtp_auth_enabled(s))
        kw[nkw++] = "AUTH PLAIN LOGIN"; /* RFC 4954; only under TLS (smtp_auth.c) */
    struct smtp_rbuf rb;
    smtp_rbuf_init(&rb);
    bool close;
    smtp_reply_line(s, &rb, d, '-', d->text, NULL);
    struct smtp_reply_def plain = {d->code, NULL, "", 0};
    for (size_t i = 0; i < nkw; i++)
        smtp_reply_line(s, &rb, &plain, i + 1 < nkw ? '-' : ' ', kw[i], NULL);
    smtp_reply_emit(s, &rb, &close);
    smtp_reply_after(s, d, close);
}

void smtp_reply_help(struct smtp_session *s)
{
    const struct smtp_reply_def *d = smtp_reply_def(SMTP_R_HELP);
    if (s->closing)
        return;
    struct smtp_rbuf rb;
    smtp_rbuf_init(&rb);
    bool close;
    smtp_reply_line(s, &rb, d, '-',
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT HELP", NULL);
    smtp_reply_line(s, &rb, d, ' ', d->text, NULL);
    smtp_reply_emit(s, &rb, &close);
    smtp_reply_after(s, d, close);
}

void smtp_reply_describe(enum smtp_reply_id id, char *out, size_t len)
{
    const struct smtp_reply_def *d = smtp_reply_def(id);
    snprintf(out, len, "%s%s%s %s", d->code, d->esc ? " " : "", d->esc ? d->esc : "", d->text);
}

void smtp_reply_fill(struct smtp_session *s, enum smtp_reply_id id, int *code, char *esc,
                     size_t esclen, char *text, size_t textlen)
{
    const struct smtp_reply_def *d = smtp_reply_def(id);
    *code = atoi(d->code);
    snprintf(esc, esclen, "%s", d->esc ? d->esc : "");
    if (d->flags & SMTP_RF_HOST)
        snprintf(text, textlen, "%s %s", s->cfg->hostname, d->text);
    else
        snprintf(text, textlen, "%s", d->text);
}
