/*
 * NAME
 *	addr - the one RFC 5321 mailbox and path parser (see addr.h)
 * DESCRIPTION
 *	Scanners over NUL-terminated text, each advancing a cursor: a
 *	domain, an address literal, a local part, a mailbox.  The path and
 *	the bare mailbox differ only in what surrounds the mailbox.  Where
 *	the two parsers this replaces differed (core/smtpd and sinks/), the
 *	stricter rule is kept: domain labels start and end with a letter or
 *	digit, an address literal is a real IPv4 or IPv6 address, non-ASCII
 *	must be valid UTF-8; what only the sink edits refuse (white space in
 *	a quoted local part) stays in sinks/addr.c.
 * DIAGNOSTICS
 *	None logged: see addr.h.
 */
#include "core/base/addr.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "core/base/utf8.h"

static bool addr_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5322 atext plus RFC 6531 UTF8-non-ascii. */
static bool addr_is_atext(unsigned char c)
{
    return addr_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL) || c >= 0x80;
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
 * or a U-label.  Advances *pp past the domain. */
static bool addr_domain_scan(const char **pp, bool *non_ascii)
{
    const char *p = *pp;
    for (;;) {
        const char *label = p;
        bool utf8 = false;
        unsigned char c = (unsigned char)*p;
        if (!addr_is_alnum(c) && c < 0x80)
            return false;
        while (addr_is_alnum((unsigned char)*p) || *p == '-' || (unsigned char)*p >= 0x80) {
            if ((unsigned char)*p >= 0x80)
                utf8 = true;
            p++;
        }
        if (p[-1] == '-' || (!utf8 && p - label > 63))
            return false;
        if (utf8)
            *non_ascii = true;
        if (*p != '.')
            break;
        p++;
    }
    *pp = p;
    return true;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 ) "]"; general literals
 * (RFC 5321 4.1.3 Standardized-tag) name no transport we have. */
static bool addr_literal_scan(const char **pp)
{
    const char *p = *pp + 1;
    const char *end = strchr(p, ']');
    char buf[64];
    unsigned char addr[16];
    if (end == NULL)
        return false;
    size_t n = (size_t)(end - p);
    if (n >= 5 && strncasecmp(p, "IPv6:", 5) == 0) {
        if (n - 5 >= sizeof(buf))
            return false;
        memcpy(buf, p + 5, n - 5);
        buf[n - 5] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return false;
    } else {
        if (n >= sizeof(buf))
            return false;
        memcpy(buf, p, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET, buf, addr) != 1) /* dotted quad only */
            return false;
    }
    *pp = end + 1;
    return true;
}

/* Local-part; advances *pp. */
static bool addr_local_scan(const char **pp, bool *non_ascii)
{
    const char *p = *pp;
    if (*p == '"') {
        for (p++;; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '"')
                break;
            if (c == '\\') { /* quoted-pairSMTP = "\" %d32-126 */
                p++;
                if (*p < 32 || *p > 126)
                    return false;
            } else if (c >= 0x80) {
                *non_ascii = true;
            } else if (c < 32 || c > 126) {
                return false; /* qtextSMTP = %d32-33 / %d35-91 / %d93-126 */
            }
        }
        *pp = p + 1;
        return true;
    }
    for (;;) { /* Dot-string = Atom *("." Atom) */
        if (!addr_is_atext((unsigned char)*p))
            return false;
        while (addr_is_atext((unsigned char)*p)) {
            if ((unsigned char)*p >= 0x80)
                *non_ascii = true;
            p++;
        }
        if (*p != '.')
            break;
        p++;
    }
    *pp = p;
    return true;
}

/* Mailbox at *pp, up to the first octet that cannot continue it; into
 * out (addr not filled in: the caller copies [start, *pp)). */
static enum addr_err addr_mailbox_scan(const char **pp, struct addr_path *out)
{
    const char *p = *pp, *mb = p;
    bool non_ascii = false;
    if (!addr_local_scan(&p, &non_ascii))
        return ADDR_SYNTAX;
    size_t local_len = (size_t)(p - mb);
    size_t domain_len = 0;
    if (*p == '@') {
        const char *d = ++p;
        if (*p == '[') {
            if (!addr_literal_scan(&p))
                return ADDR_SYNTAX;
            out->literal = true;
        } else if (!addr_domain_scan(&p, &non_ascii)) {
            return ADDR_SYNTAX;
        }
        domain_len = (size_t)(p - d);
        out->has_domain = true;
    }
    size_t len = (size_t)(p - mb);
    if (local_len > ADDR_LOCAL_MAX || domain_len > ADDR_DOMAIN_MAX || len + 2 > ADDR_PATH_MAX)
        return ADDR_TOO_LONG;
    out->len = len;
    out->local_len = local_len;
    out->non_ascii = non_ascii;
    *pp = p;
    return ADDR_OK;
}

enum addr_err addr_path_parse(const char **pp, bool allow_null, struct addr_path *out)
{
    const char *p = *pp;
    bool route_utf8 = false;

    memset(out, 0, sizeof(*out));
    if (*p++ != '<')
        return ADDR_SYNTAX;
    if (*p == '>') {
        if (!allow_null)
            return ADDR_SYNTAX;
        *pp = p + 1;
        return ADDR_OK;
    }
    if (*p == '@') { /* A-d-l = At-domain *( "," At-domain ) ":" */
        for (;;) {
            p++;
            if (!addr_domain_scan(&p, &route_utf8))
                return ADDR_SYNTAX;
            if (*p == ',' && p[1] == '@') {
                p++;
                continue;
            }
            if (*p++ != ':')
                return ADDR_SYNTAX;
            break;
        }
    }
    const char *mb = p;
    struct addr_path tmp = {0};
    const char *end = p;
    enum addr_err e = addr_mailbox_scan(&end, &tmp);
    if (e == ADDR_OK && *end != '>')
        e = ADDR_SYNTAX;
    if (e != ADDR_OK)
        return e;
    *out = tmp;
    memcpy(out->addr, mb, tmp.len);
    out->addr[tmp.len] = '\0';
    *pp = end + 1;
    return ADDR_OK;
}

bool addr_mailbox_ok(const char *mailbox)
{
    if (mailbox == NULL)
        return false;
    size_t n = strnlen(mailbox, ADDR_PATH_MAX);
    if (n > ADDR_PATH_MAX - 2 || !utf8_valid(mailbox, n))
        return false;
    struct addr_path a = {0};
    const char *p = mailbox;
    return addr_mailbox_scan(&p, &a) == ADDR_OK && *p == '\0' && a.has_domain;
}
