/*
 * NAME
 *	dns_result - MX ordering, literals, names, and the result of a lookup
 *	(see dns.h, dns_int.h)
 */
#include "core/client/dns_int.h"
#include "core/base/log.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Quadratic, for the short lists MX records make (at most DNS_MX_COLLECT
 * here): a stable insertion sort by preference, then a Fisher-Yates
 * shuffle of each run of equal preferences (RFC 5321 section 5.1). */
void dns_mx_order(struct dns_mx *v, size_t n, uint64_t (*rnd)(void *), void *rarg)
{
    if (n > 0 && v == NULL)
        log_panic("dns_mx_order: NULL vector with %zu entries", n);
    for (size_t i = 1; i < n; i++) {
        struct dns_mx t = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1].pref > t.pref; j--)
            v[j] = v[j - 1];
        v[j] = t;
    }
    if (rnd == NULL)
        return;
    for (size_t start = 0; start < n;) {
        size_t end = start + 1;
        while (end < n && v[end].pref == v[start].pref)
            end++;
        for (size_t i = end - 1; i > start; i--) {
            size_t j = start + (size_t)(rnd(rarg) % (uint64_t)(i - start + 1));
            if (j != i) {
                struct dns_mx t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
        }
        start = end;
    }
}

void dns_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

bool dns_literal(const char *name, uint16_t port, struct dns_addr *a)
{
    char buf[256];
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof(buf))
        return false;
    const char *s = name;
    bool v6only = false;
    if (name[0] == '[') {
        if (name[len - 1] != ']')
            return false;
        memcpy(buf, name + 1, len - 2);
        buf[len - 2] = '\0';
        s = buf;
        if (strncasecmp(s, "IPv6:", 5) == 0) {
            s += 5;
            v6only = true;
        }
    }
    memset(a, 0, sizeof(*a));
    if (strchr(s, ':') == NULL) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
        if (v6only || inet_pton(AF_INET, s, &sin->sin_addr) != 1)
            return false;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        a->len = sizeof(*sin);
    } else {
        /* getaddrinfo for the scope id ("fe80::1%eth0"); AI_NUMERICHOST
         * never asks the network. */
        struct addrinfo hints = {.ai_family = AF_INET6, .ai_flags = AI_NUMERICHOST};
        struct addrinfo *res = NULL;
        if (getaddrinfo(s, NULL, &hints, &res) != 0 || res == NULL)
            return false;
        if (res->ai_addrlen > sizeof(a->ss)) {
            freeaddrinfo(res);
            return false;
        }
        memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
        a->len = res->ai_addrlen;
        freeaddrinfo(res);
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
    }
    snprintf(a->host, sizeof(a->host), "%s", name);
    a->pref = 0;
    return true;
}

bool dns_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == ',' || c == '\\')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0; /* "a.test.." leaves an empty last label */
}

const char *dns_ares_text(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return "ok";
    case ARES_ENODATA:
        return "no data";
    case ARES_ENOTFOUND:
        return "NXDOMAIN";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "refused";
    case ARES_ETIMEOUT:
        return "timed out";
    case ARES_ECONNREFUSED:
        /* c-ares 1.18 moves on from a server that answers SERVFAIL or
         * REFUSED, and says this when none is left */
        return "server failure (SERVFAIL, REFUSED or unreachable)";
    case ARES_EFORMERR:
        return "FORMERR";
    case ARES_ENOTIMP:
        return "not implemented by the server";
    case ARES_EBADRESP:
        return "bad response";
    case ARES_EBADNAME:
        return "bad name";
    case ARES_ENOMEM:
        return "out of memory";
    case ARES_EDESTRUCTION:
        return "shutting down";
    case ARES_ECANCELLED:
        return "cancelled";
    default:
        return ares_strerror(status);
    }
}

/* EBADNAME: a name that cannot be put in a query will never resolve. */
bool dns_ares_nodata(int status)
{
    return status == ARES_ENODATA || status == ARES_ENOTFOUND || status == ARES_EBADNAME;
}

/* How many A and AAAA addresses of x go in the result: at most
 * DNS_MAX_ADDRS, each family keeping half of them when the other has
 * enough to fill its half. */
static void xchg_counts(const struct dns_xchg *x, unsigned *k4, unsigned *k6)
{
    unsigned half = DNS_MAX_ADDRS / 2;
    unsigned want6 = x->n6 < half ? x->n6 : half;
    *k4 = x->n4 < DNS_MAX_ADDRS - want6 ? x->n4 : DNS_MAX_ADDRS - want6;
    *k6 = x->n6 < DNS_MAX_ADDRS - *k4 ? x->n6 : DNS_MAX_ADDRS - *k4;
}

static void put_addr(struct dns_addr *a, const struct dns_xchg *x, int family, const void *ip,
                     uint16_t port)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip, sizeof(sin->sin_addr));
        a->len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip, sizeof(sin6->sin6_addr));
        a->len = sizeof(*sin6);
    }
    memcpy(a->host, x->host, sizeof(a->host));
    a->pref = x->pref;
}

static void xchg_why(const struct dns_xchg *x, char *buf, size_t len)
{
    dns_fmt(buf, len, "%s (A: %s, AAAA: %s)", x->host, dns_ares_text(x->st4),
            dns_ares_text(x->st6));
}

void dns_result_build(const struct dns_lookup *l, struct dns_result *r, struct dns_addr **buf)
{
    memset(r, 0, sizeof(*r));
    *buf = NULL;
    if (l->decided) {
        r->status = l->status;
        dns_fmt(r->error, sizeof(r->error), "%s", l->error);
        return;
    }
    size_t total = 0;
    unsigned skipped = 0, first_skipped = 0;
    bool all_nodata = true;
    for (unsigned i = 0; i < l->nx; i++) {
        const struct dns_xchg *x = &l->x[i];
        unsigned k4, k6;
        xchg_counts(x, &k4, &k6);
        total += k4 + k6;
        if (k4 + k6 == 0) {
            if (skipped++ == 0)
                first_skipped = i;
            if (!dns_ares_nodata(x->st4) || !dns_ares_nodata(x->st6))
                all_nodata = false;
        }
    }
    char why[200] = "";
    if (skipped > 0)
        xchg_why(&l->x[first_skipped], why, sizeof(why));
    if (total == 0) {
        r->status = l->nx > 0 && all_nodata ? DNS_PERM : DNS_TEMP;
        if (l->nx == 0)
            dns_fmt(r->error, sizeof(r->error), "%s: no exchange to resolve", l->name);
        else if (l->kind == DNS_KIND_HOST)
            dns_fmt(r->error, sizeof(r->error), "%s: no address: %s", l->name, why);
        else if (l->implicit)
            dns_fmt(r->error, sizeof(r->error), "%s: no MX records and no address: %s", l->name,
                    why);
        else
            dns_fmt(r->error, sizeof(r->error), "%s: no address for any MX host: %s%s", l->name,
                    why, skipped > 1 ? ", ..." : "");
        return;
    }
    struct dns_addr *v = malloc(total * sizeof(*v));
    if (v == NULL) {
        r->status = DNS_TEMP;
        dns_fmt(r->error, sizeof(r->error), "%s: out of memory", l->name);
        return;
    }
    size_t n = 0;
    for (unsigned i = 0; i < l->nx; i++) {
        const struct dns_xchg *x = &l->x[i];
        unsigned k4, k6;
        xchg_counts(x, &k4, &k6);
        for (unsigned j = 0; j < k4; j++)
            put_addr(&v[n++], x, AF_INET, &x->a4[j], l->port);
        for (unsigned j = 0; j < k6; j++)
            put_addr(&v[n++], x, AF_INET6, &x->a6[j], l->port);
    }
    r->status = DNS_OK;
    if (skipped > 0)
        dns_fmt(r->error, sizeof(r->error), "%s: skipped %u MX host%s without address: %s", l->name,
                skipped, skipped > 1 ? "s" : "", why);
    r->naddr = n;
    r->addrs = v;
    *buf = v;
}
