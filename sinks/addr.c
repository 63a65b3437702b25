/*
 * NAME
 *	addr - syntax checks for what transport sinks hand the queue manager
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 *
 *	bool sink_addr_ok(const char *addr);
 *	bool sink_nexthop_ok(const char *spec);
 * DESCRIPTION
 *	sink_addr_ok() accepts a mailbox as it travels in an envelope,
 *	without angle brackets: local@domain, at most 254 octets (RFC 5321
 *	4.5.3.1.3 less the brackets), the local part at most 64.  The local
 *	part is a dot-atom (RFC 5321 4.1.2: atext runs separated by single
 *	dots) or a quoted string without white space; the domain is labels
 *	of letters, digits and '-' separated by single dots, or an address
 *	literal [...].  Octets >= 0x80 pass in both parts (SMTPUTF8 mail).
 *	Never accepted: CR, LF, other controls, space, '<', '>'.
 *
 *	sink_nexthop_ok() accepts the transport-table syntax of core/queue/route.h
 *	(smtp:HOST[:PORT], mx, mx:PORT, maildir, discard, error:X.Y.Z [TEXT],
 *	and " tls=none|may|encrypt|verify" after smtp and mx).  It is a
 *	syntax check only, so builtin:route refuses a typo at start; the
 *	queue manager parses the value again when it applies it.
 */
#include "sinks/sink_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SINK_ADDR_MAX 254
#define SINK_LOCAL_MAX 64

static bool sink_atext(unsigned char c)
{
    if (c >= 0x80)
        return true;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool sink_local_ok(const char *s, size_t n)
{
    if (n == 0 || n > SINK_LOCAL_MAX)
        return false;
    if (s[0] == '"') { /* quoted string: qtext or quoted pairs, no white space */
        if (n < 2 || s[n - 1] != '"')
            return false;
        for (size_t i = 1; i + 1 < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '\\') {
                if (++i + 1 >= n)
                    return false;
                c = (unsigned char)s[i];
                if (c <= 0x20 || c == 0x7f)
                    return false;
                continue;
            }
            if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>')
                return false;
        }
        return true;
    }
    bool dot = true; /* no leading dot */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (dot)
                return false;
            dot = true;
        } else if (sink_atext((unsigned char)s[i])) {
            dot = false;
        } else {
            return false;
        }
    }
    return !dot; /* no trailing dot */
}

static bool sink_domain_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return false;
    if (s[0] == '[') { /* address literal: printable, no brackets or space inside */
        if (n < 3 || s[n - 1] != ']')
            return false;
        for (size_t i = 1; i + 1 < n; i++)
            if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '[' || s[i] == ']' ||
                s[i] == '\\')
                return false;
        return true;
    }
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (c >= 0x80 || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9')) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

bool sink_addr_ok(const char *addr)
{
    if (addr == NULL)
        return false;
    size_t n = strnlen(addr, SINK_ADDR_MAX + 1);
    if (n > SINK_ADDR_MAX)
        return false;
    const char *at = strrchr(addr, '@');
    if (at == NULL)
        return false;
    return sink_local_ok(addr, (size_t)(at - addr)) && sink_domain_ok(at + 1);
}

/* ---- next hops ---- */

static bool sink_port_ok(const char *s, const char *end)
{
    if (s == end || end - s > 5)
        return false;
    unsigned long v = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    return v >= 1 && v <= 65535;
}

/* HOST[:PORT] in [s, end): a name, an IPv4 address or [IPv6]. */
static bool sink_hostport_ok(const char *s, const char *end)
{
    const char *h = s, *he;
    if (s < end && *s == '[') {
        const char *rb = memchr(s, ']', (size_t)(end - s));
        if (rb == NULL || rb == s + 1)
            return false;
        for (const char *p = s + 1; p < rb; p++)
            if (!(*p == ':' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F')))
                return false;
        he = rb + 1;
        if (he == end)
            return true;
        return *he == ':' && sink_port_ok(he + 1, end);
    }
    const char *colon = memchr(s, ':', (size_t)(end - s));
    he = colon ? colon : end;
    if (he == h || he - h > 253)
        return false;
    for (const char *p = h; p < he; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            return false;
    return colon == NULL || sink_port_ok(colon + 1, end);
}

bool sink_nexthop_ok(const char *spec)
{
    if (spec == NULL || *spec == '\0' || strlen(spec) > 511)
        return false;
    for (const char *p = spec; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    if (strncasecmp(spec, "error:", 6) == 0) {
        const char *s = spec + 6; /* X.Y.Z, X 4 or 5, then an optional text */
        if ((s[0] != '4' && s[0] != '5') || s[1] != '.')
            return false;
        const char *p = s + 2;
        for (int part = 0; part < 2; part++) {
            size_t d = 0;
            while (p[d] >= '0' && p[d] <= '9')
                d++;
            if (d == 0 || d > 3)
                return false;
            p += d;
            if (part == 0 && *p++ != '.')
                return false;
        }
        return *p == '\0' || *p == ' ';
    }
    const char *sp = strchr(spec, ' ');
    const char *end = sp ? sp : spec + strlen(spec);
    bool tls_ok = false;
    if (strncasecmp(spec, "smtp:", 5) == 0) {
        if (!sink_hostport_ok(spec + 5, end))
            return false;
        tls_ok = true;
    } else if (end - spec >= 2 && strncasecmp(spec, "mx", 2) == 0 &&
               (spec + 2 == end || (spec[2] == ':' && sink_port_ok(spec + 3, end)))) {
        tls_ok = true;
    } else if (!((end - spec == 7 && strncasecmp(spec, "maildir", 7) == 0) ||
                 (end - spec == 7 && strncasecmp(spec, "discard", 7) == 0))) {
        return false;
    }
    if (sp == NULL)
        return true;
    static const char *const tls[] = {"none", "may", "encrypt", "verify"};
    if (!tls_ok || strncasecmp(sp + 1, "tls=", 4) != 0)
        return false;
    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++)
        if (strcasecmp(sp + 5, tls[i]) == 0)
            return true;
    return false;
}
