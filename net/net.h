/*
 * NAME
 *	net - the io_uring network layer: workers, listeners, connections
 * SYNOPSIS
 *	#include "net/net.h"
 * DESCRIPTION
 *	net_server_create() binds every listen address (one SO_REUSEPORT
 *	socket per address per worker) and checks that io_uring is usable, so
 *	that start-up errors are reported before anything runs.
 *	net_server_run() starts the workers and returns when they have stopped.
 *	Each worker owns one ring (SINGLE_ISSUER | DEFER_TASKRUN), a provided
 *	buffer ring feeding multishot recv, multishot accept on its listeners,
 *	its spool writer, its sessions, and a one-second tick timer; see
 *	docs/network.md.
 *
 *	net_server_stop() may be called from any thread (it writes to each
 *	worker's eventfd): listeners close, sessions get 421 at their next
 *	command boundary outside a transaction (smtp_session_shutdown), in-flight
 *	group commits finish, and the workers exit
 *	once their connections are gone or after a bound (5 s).
 *	net_server_stop_drain() is the same with the bound given (the
 *	configuration's drain_timeout; 0: connections not at a command
 *	boundary are closed at the next one-second tick).  At the bound the
 *	connections left are closed; a message whose 250 was not sent is not
 *	acknowledged, so nothing acknowledged is lost.  Calling it again may
 *	shorten the bound, never lengthen it.
 * DIAGNOSTICS
 *	net_server_create() returns -errno with one line in err naming the
 *	address or the facility ("listen 127.0.0.1:25: Address already in use").
 */
#ifndef SLUICE_NET_NET_H
#define SLUICE_NET_NET_H

#include <stddef.h>
#include <stdint.h>

#include "core/cfg/cfg.h"
#include "core/smtpd/smtp.h"
#include "storage/spool.h"

struct net_server;

struct net_stats {
    uint64_t accepted;
    uint64_t sessions;
    uint64_t messages; /* acknowledged with 250 */
    uint64_t commits;  /* COMMIT records written */
    uint64_t syncs;    /* fdatasync batches */
    uint64_t sync_errors;
    uint64_t tasks;  /* scheduler tasks run (sink completions, offloaded work) */
    uint64_t rejected;    /* messages refused after the data (limits, bare CR/LF, sinks) */
    uint64_t tempfailed;  /* 4xx after the data (spool errors, sink tempfail) */
    uint64_t discarded;   /* accepted and thrown away by a DISCARD verdict */
    uint64_t quarantined; /* stored with the quarantine flag */
    uint64_t steals;
};

struct sink_engine;
struct sched_pool;

/* cfg, sp, pool and engine (NULL: no sinks) are borrowed and must outlive
 * the server.  pool must have one scheduler worker per net worker
 * (cfg->workers); each net worker attaches itself to its own and drives it
 * from its ring loop.  Order of teardown: net_server_destroy, then
 * sink_engine_destroy (a sink's own threads may post to the pool until
 * then), then sched_pool_destroy. */
int net_server_create(const struct cfg *cfg, struct spool *sp, struct sched_pool *pool,
                      struct sink_engine *engine, struct net_server **out, char *err,
                      size_t errlen);
/* The address each listen entry is bound to ("127.0.0.1:41234" after port 0). */
size_t net_server_listen_count(const struct net_server *srv);
const char *net_server_listen_addr(const struct net_server *srv, size_t i);
enum smtp_listener net_server_listen_kind(const struct net_server *srv, size_t i);
/* TLS for STARTTLS and the listen_smtps listeners (borrowed, must outlive
 * the server; NULL: none, STARTTLS not offered).  Before net_server_run. */
struct tls_server;
void net_server_set_tls(struct net_server *srv, struct tls_server *ts);
/* Runs the workers until they stop.  0, or -errno with err filled when a
 * worker could not start (its ring or buffer ring setup failed). */
int net_server_run(struct net_server *srv, char *err, size_t errlen);
void net_server_stop(struct net_server *srv);
void net_server_stop_drain(struct net_server *srv, uint64_t grace_ms);
/* Sums of every worker's counters (meaningful after run returned). */
void net_server_stats(const struct net_server *srv, struct net_stats *st);
void net_server_destroy(struct net_server *srv);

/* ---- live counters, for the metrics endpoint (core/ops/admin.c) ----
 * Any thread, between net_server_create and net_server_destroy: each
 * worker publishes its counters at the end of every loop turn (relaxed
 * stores; a reader wants each value to be one it had, not a snapshot
 * consistent across counters).  The fsync histogram times each group
 * commit's fdatasync from its submission to its completion. */
#define NET_FSYNC_BOUNDS 15
/* Upper bounds of the fsync latency buckets, nanoseconds, increasing. */
extern const uint64_t net_fsync_bounds_ns[NET_FSYNC_BOUNDS];
struct net_live_stats {
    struct net_stats st;     /* as net_server_stats, published values */
    uint64_t open;           /* connections open now (sessions and lingering) */
    uint64_t refused_busy;   /* 421 at connect: max_connections reached */
    uint64_t refused_per_ip; /* 421 at connect: max_conn_per_ip reached */
    uint64_t timeouts;       /* sessions ended by idle_timeout or min_data_rate */
    uint64_t protocol_errors;
    uint64_t rcpt_rejected;
    uint64_t ended_quit, ended_dropped, ended_error, ended_shutdown; /* sessions ended so */
    uint64_t fsyncs;                              /* completed */
    uint64_t fsync_ns_sum;                        /* their latency in all */
    uint64_t fsync_buckets[NET_FSYNC_BOUNDS + 1]; /* per bucket (not cumulative); last: above */
};
void net_server_live_stats(const struct net_server *srv, struct net_live_stats *out);

/* Checks that this kernel lets us set up the rings sluice needs.  0, or
 * -errno with an explanation in err. */
int net_probe_uring(char *err, size_t errlen);

#endif
