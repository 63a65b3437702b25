/*
 * NAME
 *	osmtp_reply - reading SMTP replies; the replies the client makes up
 * SYNOPSIS
 *	#include "core/client/osmtp_int.h"
 * DESCRIPTION
 *	RFC 5321 4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *	Reply-code [ SP textstring ] CRLF, Reply-code = %x32-35 %x30-35
 *	%x30-39.  Lenient where servers are sloppy: a bare LF ends a line, a
 *	last line may be "250" or "250 " with no text, a line may be longer
 *	than 512 octets (only OSMTP_LINE_KEEP octets of it are kept).  Strict
 *	where a lax reading would desynchronise the conversation: every line
 *	must start with the code of the first, and a reply longer than 64 KiB
 *	is an error (no server needs that; a stream that never ends a reply
 *	must not keep us reading).
 *
 *	A "c.sss.ddd " at the start of a line's text whose class c is the
 *	code's first digit is the enhanced status code (RFC 3463), whether or
 *	not the server announced ENHANCEDSTATUSCODES (RFC 2034; as Postfix's
 *	client does); it is taken from the first line and cut from the text
 *	of every line.
 *	Otherwise the code's class gives "2.0.0", "4.0.0" or "5.0.0".
 *
 *	Text: the lines' texts joined with "; " (empty ones skipped),
 *	control characters replaced by '?', cut at 511 octets.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/client/osmtp_int.h"

struct osmtp_local_def {
    int code;
    const char *esc;
    const char *text;
};

static const struct osmtp_local_def osmtp_locals[OSMTP_L_COUNT_] = {
    [OSMTP_L_PROTO] = {0, "4.5.0", "protocol error"},
    [OSMTP_L_LOST] = {0, "4.4.2", "connection lost"},
    [OSMTP_L_ENDED] = {0, "4.3.0", "session ended by the client"},
    [OSMTP_L_NOMEM] = {0, "4.3.0", "out of memory"},
    [OSMTP_L_TLS_ABSENT] = {454, "4.7.4", "TLS is required but the server does not offer STARTTLS"},
    [OSMTP_L_TLS_REFUSED] = {454, "4.7.4", "TLS is required but STARTTLS was refused"},
    [OSMTP_L_TLS_FAILED] = {454, "4.7.5", "TLS handshake failed"},
    [OSMTP_L_SIZE] = {552, "5.3.4", "message too big for the next hop"},
    [OSMTP_L_8BIT] = {550, "5.6.3", "the next hop lacks 8BITMIME for an 8-bit message"},
    [OSMTP_L_UTF8] = {553, "5.6.7", "the next hop lacks SMTPUTF8 for an internationalized message"},
    [OSMTP_L_BAD_SENDER] = {553, "5.1.7", "bad sender address"},
    [OSMTP_L_BAD_RCPT] = {553, "5.1.3", "bad recipient address"},
};

size_t osmtp_text_append(char *text, size_t tlen, const char *s, size_t n)
{
    const size_t cap = sizeof(((struct osmtp_reply *)0)->text) - 1;
    for (size_t i = 0; i < n && tlen < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        text[tlen++] = ch == '\t' ? ' ' : (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    text[tlen] = '\0';
    return tlen;
}

void osmtp_local(struct osmtp_reply *r, enum osmtp_local id, const char *fmt, ...)
{
    const struct osmtp_local_def *d = &osmtp_locals[id];
    r->code = d->code;
    snprintf(r->enhanced, sizeof(r->enhanced), "%s", d->esc);
    size_t tlen = osmtp_text_append(r->text, 0, d->text, strlen(d->text));
    char detail[sizeof(r->text)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (n > 0)
        osmtp_text_append(r->text, tlen, detail, strlen(detail));
}

void osmtp_rx_reset(struct osmtp_rx *rx)
{
    rx->line_len = 0;
    rx->reply_bytes = 0;
    rx->nlines = 0;
    rx->tlen = 0;
    rx->ltext = NULL;
    rx->ltext_len = 0;
    rx->lnum = 0;
}

static bool osmtp_isdigit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Length of "c.sss.ddd" at t (followed by a space or the end), or 0. */
static size_t osmtp_esc_len(const char *t, size_t n, char cls)
{
    if (n < 5 || t[0] != cls || t[1] != '.')
        return 0;
    size_t i = 2, d = 0;
    while (i < n && osmtp_isdigit(t[i]) && d < 3)
        i++, d++;
    if (d == 0 || i >= n || t[i] != '.')
        return 0;
    i++;
    d = 0;
    while (i < n && osmtp_isdigit(t[i]) && d < 3)
        i++, d++;
    if (d == 0 || (i < n && t[i] != ' '))
        return 0;
    return i;
}

static enum osmtp_rx_ev osmtp_rx_error(struct osmtp_rx *rx, const char *what, const char *line,
                                       size_t n)
{
    osmtp_local(&rx->r, OSMTP_L_PROTO, ": %s", what);
    if (line != NULL) {
        size_t tlen = strlen(rx->r.text);
        tlen = osmtp_text_append(rx->r.text, tlen, ": ", 2);
        osmtp_text_append(rx->r.text, tlen, line, n < 80 ? n : 80);
    }
    osmtp_rx_reset(rx);
    return OSMTP_RX_ERROR;
}

enum osmtp_rx_ev osmtp_rx_feed(struct osmtp_rx *rx, const char *p, size_t len, size_t *used,
                               bool esc)
{
    const char *lf = memchr(p, '\n', len);
    size_t n = lf != NULL ? (size_t)(lf - p) + 1 : len;
    *used = n;
    rx->reply_bytes += n;
    if (rx->reply_bytes > OSMTP_REPLY_MAX)
        return osmtp_rx_error(rx, "reply longer than 65536 octets", NULL, 0);
    size_t body = lf != NULL ? n - 1 : n;
    size_t room = sizeof(rx->line) - 1 - rx->line_len;
    size_t keep = body < room ? body : room; /* the rest of a long line is dropped */
    memcpy(rx->line + rx->line_len, p, keep);
    rx->line_len += keep;
    if (lf == NULL)
        return OSMTP_RX_MORE;

    char *l = rx->line;
    size_t ll = rx->line_len;
    rx->line_len = 0;
    if (ll > 0 && l[ll - 1] == '\r')
        ll--;
    if (ll < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || !osmtp_isdigit(l[2]) ||
        (ll > 3 && l[3] != ' ' && l[3] != '-'))
        return osmtp_rx_error(rx, "not an SMTP reply", l, ll);
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    bool last = ll == 3 || l[3] == ' ';
    if (rx->nlines == 0) {
        rx->r.code = code;
        rx->r.enhanced[0] = '\0';
        rx->r.text[0] = '\0';
        rx->tlen = 0;
    } else if (code != rx->r.code) {
        return osmtp_rx_error(rx, "reply lines with different codes", l, ll);
    }
    const char *t = ll > 4 ? l + 4 : l + ll;
    size_t tn = ll > 4 ? ll - 4 : 0;
    rx->ltext = t;
    rx->ltext_len = tn;
    rx->lnum = rx->nlines;
    /* Like Postfix's client, a status code of the reply's class at the
     * start of the text is taken whether or not ENHANCEDSTATUSCODES was
     * announced: servers that send one without announcing it are common,
     * and the class check keeps plain text ("250 2 messages") out. */
    (void)esc;
    size_t el = osmtp_esc_len(t, tn, l[0]);
    if (el > 0) {
        if (rx->nlines == 0 && el < sizeof(rx->r.enhanced)) {
            memcpy(rx->r.enhanced, t, el);
            rx->r.enhanced[el] = '\0';
        }
        t += el;
        tn -= el;
        while (tn > 0 && *t == ' ')
            t++, tn--;
    }
    if (tn > 0) {
        if (rx->tlen > 0)
            rx->tlen = osmtp_text_append(rx->r.text, rx->tlen, "; ", 2);
        rx->tlen = osmtp_text_append(rx->r.text, rx->tlen, t, tn);
    }
    rx->nlines++;
    if (!last)
        return OSMTP_RX_LINE;
    if (rx->r.enhanced[0] == '\0' && (l[0] == '2' || l[0] == '4' || l[0] == '5'))
        snprintf(rx->r.enhanced, sizeof(rx->r.enhanced), "%c.0.0", l[0]);
    rx->nlines = 0;
    rx->reply_bytes = 0;
    return OSMTP_RX_REPLY;
}
