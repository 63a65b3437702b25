/*
 * NAME
 *	dns_int - details shared by dns.c (c-ares driving) and dns_result.c
 *	(ordering, literals, assembling a dns_result)
 * DESCRIPTION
 *	A lookup owns everything it needs until its callback has run: the
 *	exchanges, their addresses and the query contexts c-ares calls back
 *	with (embedded, so no query outlives its lookup: the lookup is freed
 *	only when its count of queries in flight drops to zero).
 */
#ifndef SLUICE_CORE_DNS_INT_H
#define SLUICE_CORE_DNS_INT_H

#include "core/client/dns.h"

#include <netinet/in.h>

#define DNS_MAX_EXCHANGES 10 /* exchanges resolved per domain (lowest preferences) */
#define DNS_MAX_ADDRS 8      /* addresses kept per exchange */
#define DNS_MX_COLLECT 64    /* MX records considered before ordering */

struct dns_lookup;

/* What c-ares hands back to us: one per A or AAAA query. */
struct dns_query_ctx {
    struct dns_lookup *l;
    unsigned xi; /* exchange index */
    int family;  /* AF_INET or AF_INET6 */
};

struct dns_xchg {
    char host[256];
    uint16_t pref;
    struct dns_query_ctx q4, q6;
    int st4, st6; /* c-ares status of the A / AAAA query (-1: not asked) */
    unsigned n4, n6;
    struct in_addr a4[DNS_MAX_ADDRS];
    struct in6_addr a6[DNS_MAX_ADDRS];
};

enum dns_kind { DNS_KIND_MX, DNS_KIND_HOST };

struct dns_lookup {
    struct dns *d;
    struct dns_lookup *prev, *next; /* d's list of lookups in flight */
    enum dns_kind kind;
    char name[256]; /* the domain or host asked for, without a trailing dot */
    uint16_t port;
    dns_done_fn *cb;
    void *arg;
    unsigned inflight; /* c-ares queries not yet called back (+1 while issuing) */
    bool decided;      /* status/error below are final (NXDOMAIN, null MX, MX failure) */
    bool implicit;     /* no MX records: the domain is its own exchange */
    enum dns_status status;
    char error[256];
    unsigned nx;
    struct dns_xchg x[DNS_MAX_EXCHANGES];
};

/* dns.c: what the c-ares callbacks do with an answer (status: the query's
 * c-ares status), apart from the channel so that tests and fuzzers can
 * feed raw DNS responses.  dns_addr_reply parses an A (family AF_INET) or
 * AAAA answer into x and returns the c-ares status; dns_mx_reply parses an
 * MX answer into l's exchanges, or decides l (NXDOMAIN, null MX, ...).
 * l->d may be NULL: then equal preferences are not shuffled. */
int dns_addr_reply(struct dns_xchg *x, int family, const unsigned char *abuf, int alen);
void dns_mx_reply(struct dns_lookup *l, int status, const unsigned char *abuf, int alen);

/* dns_result.c */
/* snprintf for messages that may be cut at len (names are long). */
void dns_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A literal address ("192.0.2.1", "2001:db8::1", bracketed, or "[IPv6:...]")
 * into *a (port set); false when name is not one. */
bool dns_literal(const char *name, uint16_t port, struct dns_addr *a);
/* true when name may be asked for (non-empty, at most 253 characters plus
 * an optional final dot, printable ASCII, no spaces). */
bool dns_name_ok(const char *name);
/* Short text for a c-ares status ("NXDOMAIN", "timed out", ...). */
const char *dns_ares_text(int status);
/* The status says the name or the record type does not exist. */
bool dns_ares_nodata(int status);
/* Fills r (addrs malloc'd into *buf, freed by the caller after the user
 * callback) from a finished lookup; r->status DNS_TEMP "out of memory"
 * when the array cannot be had. */
void dns_result_build(const struct dns_lookup *l, struct dns_result *r, struct dns_addr **buf);

#endif
