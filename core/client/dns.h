/*
 * NAME
 *	dns - next-hop resolution through c-ares, driven by the caller's event loop
 * SYNOPSIS
 *	#include "core/client/dns.h"
 * DESCRIPTION
 *	One dns per thread (c-ares channels are not shared).  The caller runs
 *	the sockets: dns tells it which descriptors to watch through the sock
 *	callback (read and/or write interest; both false: stop watching), the
 *	caller reports readiness with dns_process() and also calls it when
 *	dns_timeout_ms() has passed (fd -1).  The queue manager watches them
 *	with IORING_OP_POLL_ADD on its ring; the tests use poll(2).
 *
 *	dns_resolve_mx(): RFC 5321 section 5.1.  MX records of the domain,
 *	sorted by preference (lowest first, equal preferences in random order);
 *	each exchange resolved to its AAAA and A records (A first, then AAAA,
 *	unless the exchange only has one kind); when the domain has no MX
 *	records at all, the domain itself is the one exchange (implicit MX,
 *	preference 0).  A null MX (RFC 7505: one MX with exchange ".") or an
 *	NXDOMAIN is a permanent failure; a SERVFAIL, a timeout or refused
 *	query is temporary.  An exchange whose addresses cannot be found is
 *	skipped (its error remembered); when no exchange has an address the
 *	result is temporary unless every lookup said NXDOMAIN/no data
 *	(permanent).  An exchange that resolves to a loopback address is kept:
 *	the tests serve MX records that point at 127.0.0.1.
 *
 *	dns_resolve_host(): the A/AAAA records of one host (for smtp:host:port
 *	with a name); a literal IPv4/IPv6 address resolves at once (the
 *	callback runs inside the call).
 *
 *	Results are not cached here (the queue manager keeps them per
 *	destination for a while).
 *
 *	Names are asked for as written (fully qualified: no search list, no
 *	hosts file); a final dot is accepted.  dns_resolve_mx() also takes a
 *	domain literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"), answered at
 *	once like a literal host.
 *
 *	Limits: at most 10 exchanges per domain (the lowest preferences, of
 *	at most 64 MX records considered); at most 8 addresses per exchange
 *	(when it has both kinds, each keeps at least 4 of them).  Duplicate
 *	exchanges count once.  An MX set that mixes "." with real exchanges
 *	ignores the "." entries.
 *
 *	The callback runs from dns_process(), dns_destroy(), or inside the
 *	resolve call itself (literals; failures c-ares reports at once).  The
 *	result and its addrs are borrowed for the callback's duration.  The
 *	callback may start new lookups; it must not call dns_destroy().
 *	With DNS_OK, error may still say which exchanges were skipped ("" when
 *	none).  dns_destroy() also calls the sock callback (both false) for
 *	each descriptor c-ares closes.
 */
#ifndef SLUICE_CORE_DNS_H
#define SLUICE_CORE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct dns;

enum dns_status { DNS_OK = 0, DNS_TEMP = 1, DNS_PERM = 2 };

struct dns_addr {
    struct sockaddr_storage ss; /* port set */
    socklen_t len;
    char host[256];             /* the exchange (or host) it belongs to */
    uint16_t pref;              /* its MX preference (0 for hosts) */
};

struct dns_result {
    enum dns_status status;
    char error[256];            /* why, when status != DNS_OK ("example.org: no MX ...") */
    size_t naddr;
    const struct dns_addr *addrs; /* in the order to try them */
};

typedef void dns_done_fn(void *arg, const struct dns_result *r);
typedef void dns_sock_fn(void *arg, int fd, bool want_read, bool want_write);

/* servers: "127.0.0.1:5353" or "::1" (port 53) entries, NULL/0 for the
 * system's resolv.conf.  timeout_ms per try (0: c-ares' default), tries
 * (0: default).  NULL with err filled on failure. */
struct dns *dns_create(const char *const *servers, size_t nservers, unsigned timeout_ms,
                       unsigned tries, dns_sock_fn *sock_cb, void *sock_arg, char *err,
                       size_t errlen);
/* Pending lookups get their callbacks with DNS_TEMP "shutting down". */
void dns_destroy(struct dns *d);

/* rfd/wfd: a descriptor that is readable/writable, or -1. */
void dns_process(struct dns *d, int rfd, int wfd);
/* Milliseconds until dns_process(d, -1, -1) is due; max if nothing is
 * pending. */
uint64_t dns_timeout_ms(struct dns *d, uint64_t max);
/* Lookups in flight. */
size_t dns_pending(const struct dns *d);

/* 0 (the callback runs later, or already ran for a literal), or -errno:
 * -EINVAL for a malformed name or port 0, -ESHUTDOWN while destroying,
 * -ENOMEM. */
int dns_resolve_mx(struct dns *d, const char *domain, uint16_t port, dns_done_fn *cb, void *arg);
int dns_resolve_host(struct dns *d, const char *host, uint16_t port, dns_done_fn *cb, void *arg);

/* Sorting used by dns_resolve_mx (exposed for tests): orders v by pref,
 * shuffling equal preferences with rnd (a random source). */
struct dns_mx {
    char host[256];
    uint16_t pref;
};
void dns_mx_order(struct dns_mx *v, size_t n, uint64_t (*rnd)(void *), void *rarg);

#endif
