/*
 * NAME
 *	route - the transport table: where mail for a domain goes
 * SYNOPSIS
 *	#include "core/queue/route.h"
 * DESCRIPTION
 *	Read from the configuration:
 *
 *	    relayhost = "127.0.0.1:2526";        # default next hop, "" = mx
 *	    transport {
 *	      "localhost" = "maildir";
 *	      ".example.test" = "smtp:127.0.0.1:2526";
 *	      "example.org" = "mx tls=verify";
 *	      "bad.test" = "error:5.1.2 no mail for this domain";
 *	    }
 *	    retry { min = "5m"; max = "4h"; max_age = "5d"; delay_warning = "4h"; }
 *
 *	A key is a domain (exact, any case) or ".suffix" (every domain below
 *	it, not the suffix itself).  Exact keys win over suffixes; the longest
 *	suffix wins.  A domain no key matches goes to relayhost when one is
 *	set, otherwise by MX.  Values:
 *	  smtp:HOST[:PORT]   a fixed next hop (HOST a name, an IPv4 address
 *	                     or [IPv6]; port 25 by default); no MX lookup
 *	  mx                 MX lookup of the recipient's domain, port 25
 *	  mx:PORT            the same on another port (tests)
 *	  maildir            local delivery under maildir_root
 *	  discard            accepted and dropped (logged)
 *	  hold               kept in the queue, not attempted (until the
 *	                     configuration changes; the maximum age still counts)
 *	  error:X.Y.Z TEXT   refused: X 5 bounces, X 4 defers; text optional
 *	followed by an optional " tls=none|may|encrypt|verify" (default may;
 *	only for smtp and mx).  relayhost takes HOST[:PORT] or a full value.
 *	Domains routed to maildir are local: the SMTP session accepts mail for
 *	them from any client.
 */
#ifndef SLUICE_CORE_ROUTE_H
#define SLUICE_CORE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cfg/cfg.h"

enum route_kind { ROUTE_SMTP, ROUTE_MX, ROUTE_MAILDIR, ROUTE_DISCARD, ROUTE_ERROR, ROUTE_HOLD };
enum route_tls { ROUTE_TLS_NONE, ROUTE_TLS_MAY, ROUTE_TLS_ENCRYPT, ROUTE_TLS_VERIFY };

struct route {
    enum route_kind kind;
    char host[256];      /* SMTP: the host (no brackets); MX: "" (the caller's domain) */
    uint16_t port;       /* SMTP and MX */
    enum route_tls tls;
    int error_code;      /* ERROR: 550 or 450 */
    char error_status[16]; /* ERROR: "5.1.2" */
    char error_text[256];  /* ERROR: the text, or "mail for this domain is not accepted" */
};

struct route_retry {
    uint64_t min_ms;       /* first retry after this, doubling each time; default 5m */
    uint64_t max_ms;       /* never longer between attempts; default 4h */
    uint64_t max_age_ms;   /* then the message bounces; default 5d */
    uint64_t delay_warning_ms; /* a delay DSN after this (0 = never, the default) */
};

struct route_table;

/* Reads relayhost, transport {} and retry {} from cfg->tree.  NULL with
 * one line in err ("sluice.conf:7: transport \"x\": ...") on a bad entry. */
struct route_table *route_table_create(const struct cfg *cfg, char *err, size_t errlen);
void route_table_destroy(struct route_table *t);
/* The route of a domain (an address's part after the last '@'). */
void route_lookup(const struct route_table *t, const char *domain, struct route *out);
/* Whether mail for domain is delivered locally (routed to maildir). */
bool route_is_local(const struct route_table *t, const char *domain);
const struct route_retry *route_retry(const struct route_table *t);
/* One value ("smtp:h:p tls=verify", ...).  0 or -EINVAL with err. */
int route_parse(const char *spec, struct route *out, char *err, size_t errlen);
/* The value back as text ("smtp:127.0.0.1:2526"), for logs and sinks. */
void route_format(const struct route *r, char *out, size_t len);
/* Delay before attempt number attempts+1 (attempts >= 1): min * 2^(attempts-1), capped. */
uint64_t route_backoff_ms(const struct route_retry *r, uint32_t attempts);

#endif
