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
 *	without angle brackets: addr_mailbox_ok() (core/base/addr.h, the
 *	RFC 5321 grammar the SMTP server uses too, with SMTPUTF8), and in
 *	addition no white space or control character anywhere, not even in
 *	a quoted local part: what a sink hands over goes into logs and
 *	protocol lines.
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

#include "core/base/addr.h"

bool sink_addr_ok(const char *addr)
{
    if (addr == NULL)
        return false;
    for (const char *p = addr; *p; p++) /* no white space, even quoted */
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return false;
    return addr_mailbox_ok(addr);
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
