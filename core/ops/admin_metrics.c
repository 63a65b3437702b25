/*
 * NAME
 *	admin_metrics - sluice's counters as a Prometheus exposition
 * SYNOPSIS
 *	#include "core/ops/admin.h"
 *
 *	char *admin_metrics_render(const struct admin_sources *src, size_t *len);
 * DESCRIPTION
 *	Reads each source through its own getter (smtpd_live_stats,
 *	qmgr_get_stats, spool_usage, sched_worker_stats,
 *	sink_engine_binding_stats) and writes one family per counter with
 *	core/ops/metrics.h.  Every getter is safe from any thread and returns
 *	values each counter had, not one consistent snapshot: a scrape may
 *	see a message accepted before the commit that stored it is counted.
 *	Names and meanings: docs/metrics.md.
 */
#include "core/ops/admin.h"

#include "core/ops/metrics.h"
#include "core/queue/qmgr.h"
#include "core/smtpd/worker.h"
#include "sched/sched.h"
#include "sinks/engine.h"
#include "storage/spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One unlabelled sample with its family. */
static void one(struct metrics_buf *b, const char *name, enum metrics_type t, const char *help,
                uint64_t v)
{
    metrics_family(b, name, t, help);
    metrics_u64(b, name, NULL, v);
}

static void render_smtpd(struct metrics_buf *b, const struct smtpd *d)
{
    struct smtpd_live_stats ls;
    smtpd_live_stats(d, &ls);
    one(b, "sluice_connections_open", METRICS_GAUGE, "SMTP connections open now.", ls.open);
    one(b, "sluice_connections_accepted_total", METRICS_COUNTER,
        "SMTP connections accepted since start.", ls.st.accepted);
    metrics_family(b, "sluice_connections_refused_total", METRICS_COUNTER,
                   "Connections answered 421 at connect, by reason.");
    metrics_u64(b, "sluice_connections_refused_total",
                (const char *const[]){"reason", "busy", NULL}, ls.refused_busy);
    metrics_u64(b, "sluice_connections_refused_total",
                (const char *const[]){"reason", "per_ip", NULL}, ls.refused_per_ip);
    one(b, "sluice_sessions_total", METRICS_COUNTER, "SMTP sessions started.", ls.st.sessions);
    one(b, "sluice_session_timeouts_total", METRICS_COUNTER,
        "SMTP sessions ended by idle_timeout or min_data_rate.", ls.timeouts);
    metrics_family(b, "sluice_sessions_ended_total", METRICS_COUNTER,
                   "SMTP sessions ended, by outcome (quit, dropped: the client went away "
                   "without QUIT, error: closed by us, shutdown, timeout).");
    static const char *const outcome[] = {"quit", "dropped", "error", "shutdown", "timeout"};
    const uint64_t ended[] = {ls.ended_quit, ls.ended_dropped, ls.ended_error, ls.ended_shutdown,
                              ls.timeouts};
    for (size_t i = 0; i < 5; i++)
        metrics_u64(b, "sluice_sessions_ended_total",
                    (const char *const[]){"outcome", outcome[i], NULL}, ended[i]);
    one(b, "sluice_protocol_errors_total", METRICS_COUNTER,
        "SMTP commands answered with a protocol error.", ls.protocol_errors);
    one(b, "sluice_recipients_rejected_total", METRICS_COUNTER, "RCPT commands refused.",
        ls.rcpt_rejected);
    one(b, "sluice_messages_accepted_total", METRICS_COUNTER,
        "Messages acknowledged with 250 after the data.", ls.st.messages);
    one(b, "sluice_messages_rejected_total", METRICS_COUNTER,
        "Messages refused with 5xx after the data.", ls.st.rejected);
    one(b, "sluice_messages_tempfailed_total", METRICS_COUNTER,
        "Messages answered 4xx after the data.", ls.st.tempfailed);
    one(b, "sluice_messages_discarded_total", METRICS_COUNTER,
        "Messages accepted and thrown away by a DISCARD verdict.", ls.st.discarded);
    one(b, "sluice_messages_quarantined_total", METRICS_COUNTER,
        "Messages stored with the quarantine flag.", ls.st.quarantined);
    one(b, "sluice_spool_commits_total", METRICS_COUNTER,
        "COMMIT records written by the receiving workers.", ls.st.commits);
    one(b, "sluice_fsync_errors_total", METRICS_COUNTER, "Group commits whose fdatasync failed.",
        ls.st.sync_errors);
    double bounds[SMTPD_FSYNC_BOUNDS];
    for (size_t i = 0; i < SMTPD_FSYNC_BOUNDS; i++)
        bounds[i] = (double)smtpd_fsync_bounds_ns[i] / 1e9;
    metrics_family(b, "sluice_fsync_duration_seconds", METRICS_HISTOGRAM,
                   "Group commit fdatasync latency, submission to completion.");
    metrics_histogram(b, "sluice_fsync_duration_seconds", NULL, bounds, SMTPD_FSYNC_BOUNDS,
                      ls.fsync_buckets, (double)ls.fsync_ns_sum / 1e9);
}

static void render_qmgr(struct metrics_buf *b, const struct qmgr *q)
{
    struct qmgr_stats qs;
    qmgr_get_stats(q, &qs);
    one(b, "sluice_queue_messages", METRICS_GAUGE, "Messages in the delivery queue.", qs.queued);
    metrics_family(b, "sluice_queue_messages_in_state", METRICS_GAUGE,
                   "Messages in the queue in a given state (a subset of sluice_queue_messages).");
    metrics_u64(b, "sluice_queue_messages_in_state", (const char *const[]){"state", "active", NULL},
                qs.active);
    metrics_u64(b, "sluice_queue_messages_in_state",
                (const char *const[]){"state", "deferred", NULL}, qs.deferred);
    metrics_u64(b, "sluice_queue_messages_in_state", (const char *const[]){"state", "held", NULL},
                qs.held);
    one(b, "sluice_recipients_delivered_total", METRICS_COUNTER, "Recipients delivered.",
        qs.delivered);
    one(b, "sluice_recipients_failed_total", METRICS_COUNTER, "Recipients failed for good.",
        qs.failed);
    one(b, "sluice_recipients_deferred_total", METRICS_COUNTER,
        "Recipient delivery attempts deferred for a retry.", qs.deferrals);
    one(b, "sluice_bounces_total", METRICS_COUNTER, "Delivery status notifications sent.",
        qs.bounces);
    one(b, "sluice_outbound_connections_total", METRICS_COUNTER,
        "Outbound SMTP connections opened.", qs.connections);
    one(b, "sluice_outbound_reused_total", METRICS_COUNTER,
        "Messages sent over a reused outbound connection.", qs.reused);
}

static void render_spool(struct metrics_buf *b, struct spool *sp)
{
    struct spool_usage u;
    spool_usage(sp, &u);
    one(b, "sluice_spool_bytes", METRICS_GAUGE, "Size of the spool's segment files.", u.bytes);
    one(b, "sluice_spool_segments", METRICS_GAUGE, "Segment files in the spool.", u.segments);
    one(b, "sluice_spool_live_bytes", METRICS_GAUGE,
        "Octets of the spool that belong to messages not yet removed.", u.live_bytes);
    one(b, "sluice_spool_live_messages", METRICS_GAUGE, "Messages in the spool not yet removed.",
        u.live_messages);
    one(b, "sluice_spool_segments_reclaimed_total", METRICS_COUNTER,
        "Segment files unlinked since start.", u.unlinked);
    one(b, "sluice_spool_full", METRICS_GAUGE,
        "1 while the spool's file system is full (MAIL gets 452 4.3.1).", spool_full(sp));
    one(b, "sluice_spool_full_episodes_total", METRICS_COUNTER,
        "Times the spool's file system became full since start.", spool_full_episodes(sp));
}

static void render_sched(struct metrics_buf *b, struct sched_pool *pool)
{
    unsigned n = sched_pool_size(pool);
    struct sched_worker_stats *st = calloc(n ? n : 1, sizeof(*st));
    char(*ids)[12] = calloc(n ? n : 1, sizeof(*ids));
    if (st == NULL || ids == NULL)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        sched_worker_stats(sched_pool_worker(pool, i), &st[i]);
        snprintf(ids[i], sizeof(ids[i]), "%u", i);
    }
    metrics_family(b, "sluice_scheduler_tasks_total", METRICS_COUNTER,
                   "Scheduler tasks run, per worker.");
    for (unsigned i = 0; i < n; i++)
        metrics_u64(b, "sluice_scheduler_tasks_total",
                    (const char *const[]){"worker", ids[i], NULL}, st[i].ran);
    metrics_family(b, "sluice_scheduler_steals_total", METRICS_COUNTER,
                   "Tasks a worker took from other workers' deques.");
    for (unsigned i = 0; i < n; i++)
        metrics_u64(b, "sluice_scheduler_steals_total",
                    (const char *const[]){"worker", ids[i], NULL}, st[i].stolen);
    metrics_family(b, "sluice_scheduler_parks_total", METRICS_COUNTER,
                   "Times a worker went to sleep for want of tasks.");
    for (unsigned i = 0; i < n; i++)
        metrics_u64(b, "sluice_scheduler_parks_total",
                    (const char *const[]){"worker", ids[i], NULL}, st[i].parked);
out:
    free(st);
    free(ids);
}

/* One counter family over every binding, labelled binding and event. */
static void render_binding_counter(struct metrics_buf *b, const struct sink_binding_stats *bs,
                                   size_t n, const char *name, const char *help, size_t off)
{
    metrics_family(b, name, METRICS_COUNTER, help);
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&bs[i] + off, sizeof(v));
        metrics_u64(b, name,
                    (const char *const[]){"binding", bs[i].name, "event", bs[i].event, NULL}, v);
    }
}

/* One sample of sluice_sink_counter_total (under the engine's mutex). */
static void render_sink_counter(void *arg, const char *binding, const char *name, const char *help,
                                uint64_t value)
{
    struct metrics_buf *b = arg;
    if (help != NULL && *help != '\0') {
        char line[512];
        snprintf(line, sizeof(line), "sink counter %s/%s: %s", binding, name, help);
        metrics_comment(b, line);
    }
    metrics_u64(b, "sluice_sink_counter_total",
                (const char *const[]){"binding", binding, "name", name, NULL}, value);
}

static void render_sinks(struct metrics_buf *b, const struct sink_engine *e)
{
    size_t n = sink_engine_binding_count(e);
    if (n == 0)
        return;
    struct sink_binding_stats *bs = calloc(n, sizeof(*bs));
    if (bs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (!sink_engine_binding_stats(e, i, &bs[i])) {
            n = i; /* removed live since the count */
            break;
        }
    if (n == 0) {
        free(bs);
        return;
    }
    /* from here to the release below, bs[i].name stays the binding's */
    metrics_family(b, "sluice_binding_enabled", METRICS_GAUGE,
                   "1 if the binding is enabled, 0 if disabled.");
    for (size_t i = 0; i < n; i++)
        metrics_u64(b, "sluice_binding_enabled",
                    (const char *const[]){"binding", bs[i].name, "event", bs[i].event, NULL},
                    bs[i].enabled ? 1 : 0);
    render_binding_counter(b, bs, n, "sluice_binding_calls_total",
                           "Calls of the binding's handler.",
                           offsetof(struct sink_binding_stats, calls));
    render_binding_counter(b, bs, n, "sluice_binding_skipped_total",
                           "Events the binding's rule did not match.",
                           offsetof(struct sink_binding_stats, skipped));
    render_binding_counter(b, bs, n, "sluice_binding_deadline_misses_total",
                           "Pending calls settled by the deadline.",
                           offsetof(struct sink_binding_stats, deadline_misses));
    render_binding_counter(b, bs, n, "sluice_binding_late_completions_total",
                           "Completions that came after the deadline or the session's end.",
                           offsetof(struct sink_binding_stats, late));
    render_binding_counter(b, bs, n, "sluice_binding_services_total",
                           "Services (timers, descriptor watches, DNS lookups) started by the "
                           "binding's calls.",
                           offsetof(struct sink_binding_stats, svc_started));
    metrics_family(b, "sluice_binding_services_in_flight", METRICS_GAUGE,
                   "Services of the binding pending now.");
    for (size_t i = 0; i < n; i++)
        metrics_u64(b, "sluice_binding_services_in_flight",
                    (const char *const[]){"binding", bs[i].name, "event", bs[i].event, NULL},
                    bs[i].svc_in_flight);
    render_binding_counter(b, bs, n, "sluice_binding_services_cancelled_total",
                           "Services cancelled because their call ended first (deadline, "
                           "session gone).",
                           offsetof(struct sink_binding_stats, svc_cancelled));
    render_binding_counter(b, bs, n, "sluice_binding_dns_timeouts_total",
                           "DNS lookups of the binding that got no answer in time.",
                           offsetof(struct sink_binding_stats, dns_timeouts));
    render_binding_counter(b, bs, n, "sluice_binding_dns_cached_total",
                           "DNS lookups of the binding answered from the worker's cache.",
                           offsetof(struct sink_binding_stats, dns_cached));
    metrics_family(b, "sluice_binding_verdicts_total", METRICS_COUNTER,
                   "Verdicts by binding (pending counts the handler's answer; the final "
                   "verdict of a pending call is counted again when it arrives).");
    for (size_t i = 0; i < n; i++)
        for (unsigned v = 0; v <= SINK_PENDING; v++)
            metrics_u64(b, "sluice_binding_verdicts_total",
                        (const char *const[]){"binding", bs[i].name, "event", bs[i].event,
                                              "verdict", sink_verdict_name((enum sink_verdict)v),
                                              NULL},
                        bs[i].verdicts[v]);
    /* bucket k holds [2^(k-1), 2^k) us: its upper bound 2^k us is the le */
    double bounds[SINK_STATS_BUCKETS - 1];
    for (unsigned k = 0; k < SINK_STATS_BUCKETS - 1; k++)
        bounds[k] = (double)(UINT64_C(1) << k) / 1e6;
    metrics_family(b, "sluice_binding_latency_seconds", METRICS_HISTOGRAM,
                   "Time from a binding's call to its verdict, pending time included.");
    for (size_t i = 0; i < n; i++)
        metrics_histogram(b, "sluice_binding_latency_seconds",
                          (const char *const[]){"binding", bs[i].name, "event", bs[i].event, NULL},
                          bounds, SINK_STATS_BUCKETS - 1, bs[i].hist,
                          (double)bs[i].latency_ns / 1e9);
    metrics_family(b, "sluice_binding_calls_in_flight", METRICS_GAUGE,
                   "Calls of the binding inside its handler or pending (answer outstanding).");
    for (size_t i = 0; i < n; i++)
        metrics_u64(b, "sluice_binding_calls_in_flight",
                    (const char *const[]){"binding", bs[i].name, "event", bs[i].event, NULL},
                    bs[i].in_flight > 0 ? (uint64_t)bs[i].in_flight : 0);
    for (size_t i = 0; i < n; i++)
        sink_engine_binding_stats_release(&bs[i]);
    free(bs);
    metrics_family(b, "sluice_sink_counter_total", METRICS_COUNTER,
                   "Counters a sink publishes itself (sink_counter() in sink.h); name is the "
                   "sink's, its help text is the comment line before the sample.");
    sink_engine_counters(e, render_sink_counter, b);
}

char *admin_metrics_render(const struct admin_sources *src, size_t *len)
{
    struct metrics_buf *b = metrics_buf_create();
    if (b == NULL)
        return NULL;
    if (src->smtpd)
        render_smtpd(b, src->smtpd);
    if (src->qmgr)
        render_qmgr(b, src->qmgr);
    if (src->spool)
        render_spool(b, src->spool);
    if (src->pool)
        render_sched(b, src->pool);
    if (src->engine)
        render_sinks(b, src->engine);
    size_t n = 0;
    const char *text = metrics_buf_text(b, &n);
    char *out = text ? malloc(n + 1) : NULL;
    if (out != NULL) {
        memcpy(out, text, n + 1);
        if (len)
            *len = n;
    }
    metrics_buf_destroy(b);
    return out;
}
