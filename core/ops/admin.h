/*
 * NAME
 *	admin - the admin HTTP listener: GET /metrics (Prometheus text format)
 * SYNOPSIS
 *	#include "core/ops/admin.h"
 *
 *	struct admin_sources src = {.smtpd = d, .qmgr = qm, .spool = sp,
 *	                            .pool = pool, .engine = engine};
 *	struct admin_server *a;
 *	if (admin_start(&src, cfg->admin_listen, &a, err, sizeof(err)) < 0) ...
 *	...
 *	admin_stop(a);
 * DESCRIPTION
 *	admin_start() binds the address ("127.0.0.1:9025", "[::1]:9025"; port
 *	0 picks a free one, see admin_listen_addr) and starts one thread of
 *	its own that serves up to ADMIN_MAX_CONNS connections at once from a
 *	poll(2) loop, none waiting for another, and answers one request on
 *	each, HTTP/1.0 style: the response carries Content-Length and
 *	Connection: close, and the connection is closed after it (what follows
 *	the request head, a body or a pipelined request, is never parsed).
 *
 *	  GET or HEAD /metrics (any query string)  200, text/plain; version=0.0.4
 *	  another path                             404
 *	  another method                           405 (Allow: GET, HEAD)
 *	  a malformed request line or header       400
 *	  Content-Length with Transfer-Encoding,   400 (RFC 9112 6.3)
 *	  differing or invalid Content-Length, or
 *	  a final transfer coding other than chunked
 *	  a request head over ADMIN_MAX_REQUEST    431
 *	  no complete head within ADMIN_TIMEOUT_MS 408 (nothing at all: closed)
 *
 *	The request head (request line and headers; a body is never read) is
 *	bounded in size and time per connection.  With every slot taken, a
 *	new connection replaces the oldest one still waiting for its head
 *	(closed without an answer), so idle connections cannot lock a scrape
 *	out.  The listener is meant for loopback or a management network: it
 *	has no authentication.
 *
 *	admin_metrics_render() builds the exposition from the sources; any
 *	NULL source is left out (unit tests render a partial set).  The
 *	metric names are listed in docs/metrics.md.
 *
 *	Ownership: every source is borrowed and must outlive the server
 *	(stop it before smtpd_destroy, qmgr_destroy, spool_close,
 *	sink_engine_destroy and sched_pool_destroy).
 * DIAGNOSTICS
 *	admin_start() returns -errno with one line in err ("admin_listen
 *	127.0.0.1:9025: Address already in use").
 */
#ifndef SLUICE_CORE_ADMIN_H
#define SLUICE_CORE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#define ADMIN_MAX_REQUEST 8192 /* octets of request line and headers */
#define ADMIN_TIMEOUT_MS 5000  /* to receive them, and to send the response */
#define ADMIN_MAX_CONNS 64     /* connections served at once */

struct smtpd;
struct qmgr;
struct spool;
struct sched_pool;
struct sink_engine;

struct admin_sources {
    struct smtpd *smtpd;        /* connections, sessions, messages, fsync */
    struct qmgr *qmgr;          /* queue sizes and delivery outcomes */
    struct spool *spool;        /* spool bytes and segments */
    struct sched_pool *pool;    /* per-worker tasks and steals */
    struct sink_engine *engine; /* per-binding calls, verdicts, latency */
};

struct admin_server;

/* src is copied; the sources it points to are borrowed (see above).
 * listen is borrowed for the call only. */
int admin_start(const struct admin_sources *src, const char *listen, struct admin_server **out,
                char *err, size_t errlen);
/* The bound address, "127.0.0.1:41234" (valid until admin_stop). */
const char *admin_listen_addr(const struct admin_server *a);
/* Stops the thread (it closes every connection it holds, answered or
 * not), closes the listener, frees a.  NULL is a no-op. */
void admin_stop(struct admin_server *a);

/* The status a request head gets (200, 400, 404 or 405; in
 * core/ops/admin_http.c): head is what was read up to and including the
 * blank line, NUL-terminated (it is cut into lines in place).
 * *head_only: a HEAD request.  Apart from the socket so that it can be
 * tested and fuzzed on a buffer. */
int admin_request_status(char *head, bool *head_only);

/* The exposition text, malloc'd (the caller frees it), *len its length;
 * NULL on out of memory. */
char *admin_metrics_render(const struct admin_sources *src, size_t *len);

#endif
