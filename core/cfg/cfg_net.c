/*
 * NAME
 *	cfg_net - addresses, networks and domains in sluice.conf
 * SYNOPSIS
 *	#include "core/cfg/cfg.h"
 *
 *	int cfg_parse_hostport(const char *s, struct cfg_sockaddr *out);
 *	int cfg_parse_cidr(const char *s, struct cfg_cidr *out);
 *	bool cfg_cidr_match(const struct cfg_cidr *v, size_t n,
 *			    const struct sockaddr *sa);
 *	bool cfg_domain_match(char *const *v, size_t n, const char *domain);
 * DESCRIPTION
 *	cfg_parse_hostport() reads "a.b.c.d:port" or "[v6]:port" (numeric
 *	addresses only: sluice resolves no names at start-up).  Port 0 is
 *	allowed; the network layer then binds a free port.  out->text is the
 *	canonical form ("[::1]:2525").
 *
 *	cfg_parse_cidr() reads "addr/prefix", "[v6addr]/prefix" (the Postfix
 *	spelling) or a bare address, which is a host network.  Host bits set
 *	below the prefix are refused: "10.1.2.3/8" is more likely a typo than
 *	a network.
 *
 *	cfg_cidr_match() says whether the client address sa falls in one of
 *	the n networks; an IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a
 *	dual-stack socket reports) also matches the IPv4 networks.
 *
 *	cfg_domain_match() compares case-insensitively: "example.test" is that
 *	domain only, ".example.test" any domain below it but not itself.
 *
 *	All pointer arguments are borrowed; out is the caller's storage and
 *	is written only on success.
 * DIAGNOSTICS
 *	The parsers return 0 or -EINVAL.
 */
#include "core/cfg/cfg_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "0".."65535", digits only. */
static bool cfg_port(const char *s, uint16_t *out)
{
    unsigned v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

int cfg_parse_hostport(const char *s, struct cfg_sockaddr *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *h = s;
    size_t hlen;
    bool v6 = s != NULL && s[0] == '[';
    uint16_t port;
    struct cfg_sockaddr r;

    if (s == NULL)
        return -EINVAL;
    if (v6) {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(host) || !cfg_port(colon + 1, &port))
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    memset(&r, 0, sizeof(r));
    char abuf[INET6_ADDRSTRLEN];
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&r.ss;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -EINVAL;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        r.len = sizeof(*a);
        inet_ntop(AF_INET6, &a->sin6_addr, abuf, sizeof(abuf));
        snprintf(r.text, sizeof(r.text), "[%s]:%u", abuf, (unsigned)port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&r.ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -EINVAL;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        r.len = sizeof(*a);
        inet_ntop(AF_INET, &a->sin_addr, abuf, sizeof(abuf));
        snprintf(r.text, sizeof(r.text), "%s:%u", abuf, (unsigned)port);
    }
    *out = r;
    return 0;
}

/* true if the bits of a below the prefix are all zero. */
static bool cfg_host_bits_clear(const uint8_t *a, unsigned bytes, unsigned prefix)
{
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
        uint8_t mask = keep == 0 ? 0 : (uint8_t)(0xff << (8 - keep));
        if (a[i] & (uint8_t)~mask)
            return false;
    }
    return true;
}

int cfg_parse_cidr(const char *s, struct cfg_cidr *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    struct cfg_cidr r;
    const char *slash, *a = s;
    size_t alen;

    if (s == NULL)
        return -EINVAL;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen >= 2 && s[0] == '[' && s[alen - 1] == ']') { /* [::1]/128 */
        a++;
        alen -= 2;
    }
    if (alen == 0 || alen >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, a, alen);
    addr[alen] = '\0';

    memset(&r, 0, sizeof(r));
    unsigned bits;
    if (inet_pton(AF_INET, addr, r.addr) == 1 && a == s) {
        r.family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, addr, r.addr) == 1) {
        r.family = AF_INET6;
        bits = 128;
    } else {
        return -EINVAL;
    }
    unsigned prefix = bits;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t n = strlen(p);
        if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
            return -EINVAL;
        prefix = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)p[i]))
                return -EINVAL;
            prefix = prefix * 10 + (unsigned)(p[i] - '0');
        }
        if (prefix > bits)
            return -EINVAL;
    }
    if (!cfg_host_bits_clear(r.addr, bits / 8, prefix))
        return -EINVAL;
    r.prefix = (uint8_t)prefix;
    *out = r;
    return 0;
}

static bool cfg_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool cfg_cidr_match(const struct cfg_cidr *v, size_t n, const struct sockaddr *sa)
{
    const uint8_t *a4 = NULL, *a6 = NULL;
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        a4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        a6 = in6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6))
            a4 = in6->s6_addr + 12;
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].family == AF_INET && a4 && cfg_prefix_eq(v[i].addr, a4, v[i].prefix))
            return true;
        if (v[i].family == AF_INET6 && a6 && cfg_prefix_eq(v[i].addr, a6, v[i].prefix))
            return true;
    }
    return false;
}

bool cfg_domain_valid(const char *s, bool lead_dot)
{
    if (s == NULL)
        return false;
    if (lead_dot && s[0] == '.')
        s++;
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' || c == '\0') {
            /* labels: 1..63 characters, no hyphen at either end */
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum(c) || c == '-') {
            if (label == 0 && c == '-')
                return false;
            label++;
        } else {
            return false;
        }
    }
    return true;
}

bool cfg_domain_match(char *const *v, size_t n, const char *domain)
{
    if (domain == NULL)
        return false;
    size_t dlen = strlen(domain);
    if (dlen > 0 && domain[dlen - 1] == '.') /* the root: "example.test." */
        dlen--;
    if (dlen == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *p = v[i];
        size_t plen = strlen(p);
        if (p[0] == '.') {
            if (dlen > plen && strncasecmp(domain + dlen - plen, p, plen) == 0)
                return true;
        } else if (plen == dlen && strncasecmp(domain, p, plen) == 0) {
            return true;
        }
    }
    return false;
}
