/*
 * NAME
 *	worker - the SMTP server's workers: everything a worker owns, composed
 * SYNOPSIS
 *	#include "core/smtpd/worker.h"
 *
 *	struct smtpd *d;
 *	smtpd_create(cfg, spool, pool, engine, &d, err, sizeof(err));
 *	smtpd_set_tls(d, tls);
 *	smtpd_run(d, err, sizeof(err));		// returns once stopped
 *	net_server_stop_drain(smtpd_net(d), ms);	// any thread
 *	smtpd_destroy(d);
 * DESCRIPTION
 *	The inbound SMTP service.  Each of its workers owns, on one thread:
 *	the io_uring ring, its listeners and connections (net/), the
 *	scheduler worker that ring loop drives (sched/), its spool writer and
 *	the group commit that makes that writer's records durable (one
 *	IORING_OP_FSYNC on the worker's ring per batch, at most one in
 *	flight, delayed while sibling sessions are inside a transaction up to
 *	commit_delay_us and no longer than a recent fdatasync took;
 *	storage/), its sink worker state (sinks/), and the smtp_server whose
 *	sessions its connections run (core/smtpd/smtp.h).  net/ knows none of
 *	these but the ring and the scheduler: this module plugs the rest in
 *	through net's protocol table and worker hooks (net/net.h).
 *
 *	smtpd_create() checks and binds everything that can fail at start-up
 *	(see net_server_create); the workers build the rest when they start,
 *	and a failure there is smtpd_run()'s error.  Stopping is net's
 *	(net_server_stop, net_server_stop_drain on smtpd_net()): sessions get
 *	421 at their next command boundary outside a transaction, in-flight
 *	group commits finish, a message whose 250 was not sent is not
 *	acknowledged, so nothing acknowledged is lost.
 *
 *	Ownership: cfg, spool, pool and engine (NULL: no sinks) are borrowed
 *	and must outlive the smtpd; pool must have one scheduler worker per
 *	net worker (cfg->workers).  Order of teardown: smtpd_destroy, then
 *	sink_engine_destroy (a sink's own threads may post to the pool until
 *	then), then sched_pool_destroy.
 * DIAGNOSTICS
 *	smtpd_create() and smtpd_run() return -errno with one line in err.
 *	A build with SLUICE_TEST_HOOKS (the sluiced-test daemon of the
 *	integration tests, never the production binary) reads
 *	SLUICE_FAULT_FSYNC_AFTER=K from the environment: every group commit
 *	after the first K completes as if fdatasync had failed with EIO;
 *	SLUICE_FAULT_PLAIN_FSYNC=1 makes the group commit call fdatasync(2)
 *	itself (a NOP on the ring completes it), so that an LD_PRELOAD shim
 *	sees every sync (tests/faults/powercut.c).
 */
#ifndef SLUICE_CORE_SMTPD_WORKER_H
#define SLUICE_CORE_SMTPD_WORKER_H

#include <stddef.h>
#include <stdint.h>

struct cfg;
struct spool;
struct sched_pool;
struct sink_engine;
struct tls_server;
struct net_server;
struct smtpd;

int smtpd_create(const struct cfg *cfg, struct spool *sp, struct sched_pool *pool,
                 struct sink_engine *engine, struct smtpd **out, char *err, size_t errlen);
/* The network side: listen addresses, stop. */
struct net_server *smtpd_net(const struct smtpd *d);
/* TLS for STARTTLS and listen_smtps (borrowed, must outlive the smtpd;
 * NULL: none, STARTTLS not offered).  Before smtpd_run. */
void smtpd_set_tls(struct smtpd *d, struct tls_server *ts);
/* Runs the workers until they stop: 0, or -errno with err filled. */
int smtpd_run(struct smtpd *d, char *err, size_t errlen);
void smtpd_destroy(struct smtpd *d);

struct smtpd_stats {
    uint64_t accepted;
    uint64_t sessions;
    uint64_t messages; /* acknowledged with 250 */
    uint64_t commits;  /* COMMIT records written */
    uint64_t syncs;    /* fdatasync batches */
    uint64_t sync_errors;
    uint64_t tasks;       /* scheduler tasks run (sink completions, offloaded work) */
    uint64_t rejected;    /* messages refused after the data (limits, bare CR/LF, sinks) */
    uint64_t tempfailed;  /* 4xx after the data (spool errors, sink tempfail) */
    uint64_t discarded;   /* accepted and thrown away by a DISCARD verdict */
    uint64_t quarantined; /* stored with the quarantine flag */
};
/* Sums of every worker's counters, final (after smtpd_run returned). */
void smtpd_stats(const struct smtpd *d, struct smtpd_stats *st);

/* ---- live counters, for the metrics endpoint and sluicectl status ----
 * Any thread, between smtpd_create and smtpd_destroy: each worker
 * publishes its counters at the end of every loop turn (relaxed stores; a
 * reader wants each value to be one it had, not a snapshot consistent
 * across counters).  The fsync histogram times each group commit's
 * fdatasync from its submission to its completion. */
#define SMTPD_FSYNC_BOUNDS 15
/* Upper bounds of the fsync latency buckets, nanoseconds, increasing. */
extern const uint64_t smtpd_fsync_bounds_ns[SMTPD_FSYNC_BOUNDS];
struct smtpd_live_stats {
    struct smtpd_stats st;   /* as smtpd_stats, published values */
    uint64_t open;           /* connections open now (sessions and lingering) */
    uint64_t refused_busy;   /* 421 at connect: max_connections reached */
    uint64_t refused_per_ip; /* 421 at connect: max_conn_per_ip reached */
    uint64_t timeouts;       /* sessions ended by idle_timeout or min_data_rate */
    uint64_t protocol_errors;
    uint64_t rcpt_rejected;
    uint64_t ended_quit, ended_dropped, ended_error, ended_shutdown; /* sessions ended so */
    uint64_t fsyncs;                                                 /* completed */
    uint64_t fsync_ns_sum;                                           /* their latency in all */
    uint64_t fsync_buckets[SMTPD_FSYNC_BOUNDS + 1]; /* per bucket (not cumulative); last: above */
};
void smtpd_live_stats(const struct smtpd *d, struct smtpd_live_stats *out);

#endif
