/*
 * NAME
 *	dsn - delivery status notifications (RFC 3464 bounces and delay warnings)
 * SYNOPSIS
 *	#include "core/queue/dsn.h"
 * DESCRIPTION
 *	The three parts are built first, each into a buffer of its own; then
 *	a boundary is picked that occurs in none of them (RFC 2046 5.1.1),
 *	and the message is assembled.
 *
 *	Everything we write is 7-bit with CRLF line ends and lines of at most
 *	998 octets (RFC 5322 2.1.1): text from outside (a remote reply, an
 *	address) has its control and 8-bit octets shown as \x{HEX} (the
 *	embedded-unicode form of RFC 6533 for an address; the replacement
 *	character for octets that are not UTF-8) and is folded at spaces, a
 *	word longer than a line being cut into pieces.  A recipient address
 *	with 8-bit octets gets the "utf-8" address type (RFC 6533 3) instead
 *	of "rfc822".
 *
 *	The original header section is copied as it is when it is 7-bit
 *	with short lines; otherwise that part is quoted-printable (RFC 6522
 *	keeps the text/rfc822-headers rules of RFC 3462: 7-bit suffices for
 *	normal headers, broken ones may be quoted-printable), so the report
 *	needs no 8BITMIME on the way back.  Line ends in it become CRLF.
 */
#include "core/queue/dsn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/base/utf8.h"

#define DSN_HEADERS_MAX (64 * 1024)
#define DSN_FOLD 76  /* fold a header or text line beyond this */
#define DSN_WORD 900 /* cut a word longer than this (lines stay <= 998) */

/* Message-ID and boundary uniqueness only: relaxed. */
static atomic_ulong dsn_seq;

struct dsn_buf {
    char *s;
    size_t n, cap;
    bool oom;
};

static void dsn_put(struct dsn_buf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap < b->n + len + 1)
            ncap *= 2;
        char *ns = realloc(b->s, ncap);
        if (ns == NULL) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
}

static void dsn_puts(struct dsn_buf *b, const char *s)
{
    dsn_put(b, s, strlen(s));
}

static void dsn_printf(struct dsn_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void dsn_printf(struct dsn_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        dsn_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    dsn_put(b, big, (size_t)n);
    free(big);
}

/* RFC 5322 3.3 date-time in UTC, locale-free. */
static void dsn_date(int64_t ms, char *out, size_t len)
{
    static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", wd[tm.tm_wday], tm.tm_mday,
             mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static bool dsn_is_7bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* s as printable ASCII: a tab becomes a space, other octets become \x{HEX} (code points of valid
 * UTF-8, FFFD for anything else); '\' itself too, so it reads back. */
static void dsn_put7(struct dsn_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            size_t j = i;
            while (j < len && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '\\')
                j++;
            dsn_put(b, s + i, j - i);
            i = j;
            continue;
        }
        if (c == '\t') { /* folding white space, not worth an escape */
            dsn_put(b, " ", 1);
            i++;
            continue;
        }
        uint32_t cp = c;
        size_t n = c >= 0x80 ? utf8_decode(p + i, len - i, &cp) : 1;
        if (n == 0) {
            cp = 0xfffd;
            n = 1;
        }
        dsn_printf(b, "\\x{%04X}", (unsigned)cp);
        i += n;
    }
}

/* Appends "prefix" then text (made 7-bit), folded at spaces so no line
 * passes DSN_FOLD unless one word does; a word over DSN_WORD is cut.
 * indent starts each continuation line (" " for a header field). */
static void dsn_fold(struct dsn_buf *b, const char *prefix, const char *text, const char *indent)
{
    struct dsn_buf t = {0};
    dsn_put7(&t, text ? text : "");
    if (t.oom) {
        b->oom = true;
        return;
    }
    dsn_puts(b, prefix);
    size_t col = strlen(prefix), ind = strlen(indent);
    const char *p = t.s ? t.s : "";
    bool first = true;
    while (*p) {
        size_t sp = 0;
        while (p[sp] == ' ' || p[sp] == '\t')
            sp++;
        size_t w = sp;
        while (p[w] && p[w] != ' ' && p[w] != '\t')
            w++;
        w -= sp;
        if (w == 0)
            break; /* trailing blanks */
        if (w > DSN_WORD)
            w = DSN_WORD;
        if (!first && col + sp + w > DSN_FOLD) {
            dsn_puts(b, "\r\n");
            dsn_puts(b, indent);
            col = ind;
        } else if (!first) {
            dsn_put(b, p, sp);
            col += sp;
        }
        dsn_put(b, p + sp, w);
        col += w;
        p += sp + w;
        first = false;
    }
    dsn_puts(b, "\r\n");
    free(t.s);
}

/* X.Y.Z with class 2, 4 or 5 and 1-3 digits each (RFC 3463). */
static bool dsn_status_valid(const char *s)
{
    int dots = 0, digits = 0;
    if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    for (const char *p = s + 1; *p; p++) {
        if (*p == '.') {
            if (p != s + 1 && digits == 0)
                return false;
            dots++;
            digits = 0;
        } else if (*p < '0' || *p > '9' || ++digits > 3) {
            return false;
        }
    }
    return dots == 2 && digits > 0;
}

/* The status to report: a failure may carry a 4.X.X (a temporary error
 * that ran out of time), a delay only a 4.X.X. */
static const char *dsn_status(const char *s, bool delayed)
{
    if (dsn_status_valid(s) && (s[0] == '4' || (!delayed && s[0] == '5')))
        return s;
    return delayed ? "4.0.0" : "5.0.0";
}

static void dsn_text_part(struct dsn_buf *b, const struct dsn_info *i)
{
    char until[64];
    dsn_printf(b, "This is the mail system at host %s.\r\n\r\n", i->hostname);
    if (i->delayed) {
        dsn_date(i->retry_until_ms, until, sizeof(until));
        dsn_printf(b,
                   "Your message could not be delivered yet to the recipients below.\r\n"
                   "It is still being retried, until %s;\r\n"
                   "you need not send it again.\r\n\r\n",
                   until);
    } else {
        dsn_puts(b, "Your message could not be delivered to the recipients below.\r\n"
                    "This is a permanent error; it will not be retried.\r\n\r\n");
    }
    for (size_t k = 0; k < i->nrcpt; k++) {
        const struct dsn_rcpt *r = &i->rcpts[k];
        struct dsn_buf line = {0};
        dsn_puts(&line, "<");
        dsn_puts(&line, r->addr ? r->addr : "");
        dsn_puts(&line, ">: ");
        if (r->remote_mta != NULL) {
            dsn_puts(&line, "host ");
            dsn_puts(&line, r->remote_mta);
            dsn_puts(&line, " said: ");
        }
        if (r->diagnostic != NULL && r->diagnostic[0] != '\0') {
            dsn_puts(&line, r->diagnostic);
        } else {
            dsn_puts(&line, "status ");
            dsn_puts(&line, dsn_status(r->status, i->delayed));
        }
        if (line.oom) {
            b->oom = true;
            free(line.s);
            return;
        }
        dsn_fold(b, "", line.s, "    ");
        dsn_puts(b, "\r\n");
        free(line.s);
    }
    dsn_puts(b, "The headers of your message are attached.\r\n");
}

static void dsn_status_part(struct dsn_buf *b, const struct dsn_info *i)
{
    char date[64];
    dsn_fold(b, "Reporting-MTA: dns; ", i->hostname, " ");
    dsn_date(i->arrival_ms, date, sizeof(date));
    dsn_printf(b, "Arrival-Date: %s\r\n", date);
    dsn_printf(b, "X-Sluice-Queue-ID: %016llx\r\n", (unsigned long long)i->msg_id);
    for (size_t k = 0; k < i->nrcpt; k++) {
        const struct dsn_rcpt *r = &i->rcpts[k];
        const char *addr = r->addr ? r->addr : "";
        dsn_puts(b, "\r\n");
        dsn_fold(b, dsn_is_7bit(addr) ? "Final-Recipient: rfc822; " : "Final-Recipient: utf-8; ",
                 addr, " ");
        dsn_printf(b, "Action: %s\r\n", i->delayed ? "delayed" : "failed");
        dsn_printf(b, "Status: %s\r\n", dsn_status(r->status, i->delayed));
        if (r->remote_mta != NULL && r->remote_mta[0] != '\0')
            dsn_fold(b, "Remote-MTA: dns; ", r->remote_mta, " ");
        if (r->diagnostic != NULL && r->diagnostic[0] != '\0')
            dsn_fold(b, "Diagnostic-Code: smtp; ", r->diagnostic, " ");
        dsn_date(i->now_ms, date, sizeof(date));
        dsn_printf(b, "Last-Attempt-Date: %s\r\n", date);
        if (i->delayed) {
            dsn_date(i->retry_until_ms, date, sizeof(date));
            dsn_printf(b, "Will-Retry-Until: %s\r\n", date);
        }
    }
}

/* ---- the original header section ---- */

/* Reads the header section of m (at most DSN_HEADERS_MAX, cut after a
 * line).  *out malloc'd (may be NULL with *len 0). */
static int dsn_read_headers(const struct spool_msg *m, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    uint64_t size = spool_msg_size(m);
    size_t want = size < DSN_HEADERS_MAX ? (size_t)size : DSN_HEADERS_MAX;
    if (want == 0)
        return 0;
    char *h = malloc(want);
    if (h == NULL)
        return -ENOMEM;
    int r = spool_msg_read(m, 0, h, want);
    if (r < 0) {
        free(h);
        return r;
    }
    size_t n = want, start = 0;
    while (start < want) {
        const char *nl = memchr(h + start, '\n', want - start);
        if (nl == NULL)
            break;
        size_t e = (size_t)(nl - h);
        if (e == start || (e == start + 1 && h[start] == '\r')) {
            n = start; /* the empty line that ends the section */
            goto done;
        }
        start = e + 1;
    }
    if (want < size)                  /* cut after the last whole line */
        n = start > 0 ? start : want; /* one enormous line: quoted-printable breaks it */
done:
    *out = h;
    *len = n;
    return 0;
}

/* True when the section can go as it is: 7-bit, no NUL or bare CR, no
 * line over 998 octets. */
static bool dsn_headers_plain(const char *h, size_t n)
{
    size_t col = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)h[k];
        if (c == '\n') {
            col = 0;
            continue;
        }
        if (c == '\r' && k + 1 < n && h[k + 1] == '\n')
            continue;
        if (c == 0 || c == '\r' || c >= 0x80 || ++col > 998)
            return false;
    }
    return true;
}

/* Each line with CRLF, quoted-printable (RFC 2045 6.7) when qp. */
static void dsn_headers_put(struct dsn_buf *b, const char *h, size_t n, bool qp)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    while (k < n) {
        size_t e = k;
        while (e < n && h[e] != '\n')
            e++;
        size_t le = e > k && h[e - 1] == '\r' ? e - 1 : e;
        if (!qp) {
            dsn_put(b, h + k, le - k);
        } else {
            size_t col = 0;
            for (size_t j = k; j < le; j++) {
                unsigned char c = (unsigned char)h[j];
                char enc[3];
                size_t w;
                bool last = j + 1 == le;
                if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
                    enc[0] = (char)c;
                    w = 1;
                } else {
                    enc[0] = '=';
                    enc[1] = hex[c >> 4];
                    enc[2] = hex[c & 15];
                    w = 3;
                }
                if (col + w > 75) { /* soft line break: lines stay <= 76 */
                    dsn_puts(b, "=\r\n");
                    col = 0;
                }
                dsn_put(b, enc, w);
                col += w;
            }
        }
        dsn_puts(b, "\r\n");
        k = e < n ? e + 1 : e;
    }
}

/* ---- assembly ---- */

static bool dsn_contains(const struct dsn_buf *b, const char *s)
{
    return b->s != NULL && strstr(b->s, s) != NULL;
}

int dsn_build(const struct dsn_info *i, const struct spool_msg *m, char **out, size_t *len)
{
    struct dsn_buf text = {0}, st = {0}, hd = {0}, msg = {0};
    char *orig = NULL;
    size_t olen = 0;
    int r = 0;
    *out = NULL;
    *len = 0;
    if (m != NULL && (r = dsn_read_headers(m, &orig, &olen)) < 0)
        return r;
    bool qp = m != NULL && !dsn_headers_plain(orig, olen);
    if (m != NULL)
        dsn_headers_put(&hd, orig, olen, qp);
    free(orig);
    dsn_text_part(&text, i);
    dsn_status_part(&st, i);

    /* A boundary none of the parts contains.  "=_" cannot occur in
     * quoted-printable; the random part makes it unlikely elsewhere, and
     * the check makes it certain. */
    char boundary[80];
    unsigned long q = atomic_fetch_add_explicit(&dsn_seq, 1, memory_order_relaxed);
    for (int tries = 0;; tries++) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
            rnd = (uint64_t)i->now_ms * 0x9e3779b97f4a7c15ull + (uint64_t)tries;
        snprintf(boundary, sizeof(boundary), "=_sluice_%016llx_%lu_%016llx",
                 (unsigned long long)i->msg_id, q, (unsigned long long)rnd);
        if (!dsn_contains(&text, boundary) && !dsn_contains(&st, boundary) &&
            !dsn_contains(&hd, boundary))
            break;
        if (tries == 16) { /* not reachable short of a broken getrandom and a hostile input */
            r = -EIO;
            goto out;
        }
    }

    char date[64];
    dsn_date(i->now_ms, date, sizeof(date));
    dsn_puts(&msg, "From: Mail Delivery System <MAILER-DAEMON@");
    dsn_put7(&msg, i->hostname);
    dsn_puts(&msg, ">\r\n");
    struct dsn_buf to = {0};
    dsn_printf(&to, "<%s>", i->sender ? i->sender : "");
    if (to.oom) {
        r = -ENOMEM;
        goto out;
    }
    /* an SMTPUTF8 sender stays as it is (RFC 6532): folding only */
    if (dsn_is_7bit(to.s)) {
        dsn_fold(&msg, "To: ", to.s, " ");
    } else {
        dsn_puts(&msg, "To: ");
        dsn_puts(&msg, to.s);
        dsn_puts(&msg, "\r\n");
    }
    free(to.s);
    dsn_printf(&msg, "Subject: %s\r\n",
               i->delayed ? "Delayed Mail (still being retried)"
                          : "Undelivered Mail Returned to Sender");
    dsn_printf(&msg, "Date: %s\r\n", date);
    dsn_printf(&msg, "Message-ID: <%lld.%016llx.%lu@", (long long)i->now_ms,
               (unsigned long long)i->msg_id, q);
    dsn_put7(&msg, i->hostname);
    dsn_puts(&msg, ">\r\n");
    dsn_puts(&msg, "Auto-Submitted: auto-replied\r\n"
                   "MIME-Version: 1.0\r\n");
    dsn_printf(&msg,
               "Content-Type: multipart/report; report-type=delivery-status;\r\n"
               " boundary=\"%s\"\r\n\r\n",
               boundary);
    dsn_puts(&msg, "This is a MIME-encapsulated message.\r\n\r\n");
    dsn_printf(&msg,
               "--%s\r\nContent-Description: Notification\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
               boundary);
    dsn_put(&msg, text.s ? text.s : "", text.n);
    dsn_printf(&msg,
               "\r\n--%s\r\nContent-Description: Delivery report\r\n"
               "Content-Type: message/delivery-status\r\n\r\n",
               boundary);
    dsn_put(&msg, st.s ? st.s : "", st.n);
    if (m != NULL) {
        dsn_printf(&msg,
                   "\r\n--%s\r\nContent-Description: %s\r\n"
                   "Content-Type: text/rfc822-headers\r\n%s\r\n",
                   boundary, i->delayed ? "Delayed Message Headers" : "Undelivered Message Headers",
                   qp ? "Content-Transfer-Encoding: quoted-printable\r\n" : "");
        dsn_put(&msg, hd.s ? hd.s : "", hd.n);
    }
    dsn_printf(&msg, "\r\n--%s--\r\n", boundary);
    if (text.oom || st.oom || hd.oom || msg.oom) {
        r = -ENOMEM;
        goto out;
    }
    *out = msg.s;
    *len = msg.n;
    msg.s = NULL;
out:
    free(text.s);
    free(st.s);
    free(hd.s);
    free(msg.s);
    return r;
}
