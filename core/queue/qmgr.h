/*
 * NAME
 *	qmgr - the queue manager: what is in the spool leaves it
 * SYNOPSIS
 *	#include "core/queue/qmgr.h"
 * DESCRIPTION
 *	One queue-manager thread owns every queued message.  It learns of new
 *	mail from the spool's durable hook (spool_set_durable: a task posted
 *	to its scheduler worker) and of old mail from recovery
 *	(qmgr_recovered, the spool_open callback, before it starts).  Each
 *	message runs the transport sinks (precategorize, categorize,
 *	postcategorize), then every pending recipient is routed (the
 *	transport table, then route sinks) and grouped into jobs, one per
 *	destination (a fixed next hop, a domain's MX set, local delivery).
 *
 *	Destinations have a concurrency limit and reuse connections: an idle
 *	connection takes the destination's next job, or closes after
 *	connection_cache_time.  Outbound SMTP runs on the queue manager's own
 *	io_uring ring (connect, send, recv; c-ares sockets polled on it) with
 *	the osmtp protocol machine; local delivery runs on a thread of its own
 *	(maildir_deliver blocks on fsync).
 *
 *	Outcomes are STATE records in the queue manager's spool writer
 *	(delivered or failed per recipient, deferred until T for the
 *	message), synced in groups; a message with every recipient done gets
 *	a REMOVE record.  Temporary failures retry with exponential backoff
 *	(retry { min; max; max_age; }); past max_age the message bounces.  A
 *	destination whose connections fail destination_failure_limit times in
 *	a row is backed off as a whole.  Permanent failures produce an RFC
 *	3464 bounce to the sender (never to the null sender), injected into
 *	the spool like any message.
 *
 *	Threads: qmgr_create/qmgr_recovered/qmgr_start/qmgr_stop/qmgr_destroy
 *	on the main thread; qmgr_durable on any writer's thread.
 */
#ifndef SLUICE_CORE_QMGR_H
#define SLUICE_CORE_QMGR_H

#include <stddef.h>
#include <stdint.h>

#include "core/cfg/cfg.h"
#include "storage/spool.h"

struct qmgr;
struct sched_pool;
struct sink_engine;

/* cfg, engine (may be NULL) and pool are borrowed; the queue manager runs
 * as scheduler worker `sched_index` of pool.  NULL with err on a bad
 * transport table or DNS setup. */
struct qmgr *qmgr_create(const struct cfg *cfg, struct sink_engine *engine,
                         struct sched_pool *pool, unsigned sched_index, char *err,
                         size_t errlen);
/* spool_open()'s callback (arg: the qmgr). */
int qmgr_recovered(void *arg, const struct spool_msginfo *m);
/* The spool's durable hook (arg: the qmgr); set with spool_set_durable. */
void qmgr_durable(void *arg, struct spool_msg *m);
/* Starts the thread (its own spool writer on sp as worker `writer_id`). */
int qmgr_start(struct qmgr *q, struct spool *sp, unsigned writer_id, char *err, size_t errlen);
/* Stops delivering (connections are closed, in-flight results that are
 * lost are retried at the next start) and joins the thread. */
void qmgr_stop(struct qmgr *q);
void qmgr_destroy(struct qmgr *q);

struct qmgr_stats {
    uint64_t queued;      /* messages in the queue now */
    uint64_t active;      /* with a delivery in progress */
    uint64_t deferred;    /* waiting for a retry */
    uint64_t held;
    uint64_t delivered;   /* recipients delivered since start */
    uint64_t failed;      /* recipients failed for good */
    uint64_t deferrals;   /* recipient deferrals */
    uint64_t bounces;     /* DSNs sent */
    uint64_t connections; /* outbound connections opened */
    uint64_t reused;      /* messages sent over a reused connection */
    uint64_t spliced;     /* body octets spliced from the spool to sockets (BDAT) */
};
void qmgr_get_stats(const struct qmgr *q, struct qmgr_stats *st);

/* ---- operator control (sluicectl), any thread but the queue manager's ----
 * Runs verb on the queue manager's thread (a task posted to its worker)
 * and waits for the answer: *out is a malloc'd JSON text the caller frees
 * (also on errors: {"error": "..."}).  Verbs and arg:
 *   "list"    ""              [{"id","state","sender","size","arrival","attempts",
 *                               "next_attempt","last_error","rcpts":[{"addr","state",
 *                               "diag"}]}, ...]   state: active|deferred|held|quarantine
 *   "show"    ID              one message as in list, plus "headers": the header
 *                             section as a string, "params", "client", "helo"
 *   "flush"   "" | ID | DOMAIN  deferred messages (all, one, or those with a pending
 *                             recipient in DOMAIN) are tried now: {"flushed": n}
 *   "delete"  ID | "--all"    removed without a bounce: {"deleted": n}
 *   "hold"    ID              kept, not attempted, across restarts (HOLD record)
 *   "release" ID              undo hold: tried now
 *   "bounce"  ID              every pending recipient fails now (5.0.0 "bounced by
 *                             the operator"): a DSN goes to the sender: {"bounced": n}
 * Returns 0, -ENOENT (no such message; ID is 16 hex digits), -EINVAL (bad
 * verb or argument), -EBUSY (the message is in a delivery right now: hold,
 * delete and bounce wait for no one), -ESHUTDOWN (not running), -ENOMEM.
 * A listing holds the queue manager for about a microsecond per message. */
int qmgr_control(struct qmgr *q, const char *verb, const char *arg, char **out);

#endif
