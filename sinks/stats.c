/*
 * NAME
 *	stats - per-binding counters and latency histograms
 * SYNOPSIS
 *	#include "sinks/engine.h"
 *
 *	void sink_engine_print_stats(const struct sink_engine *e, FILE *f);
 * DESCRIPTION
 *	Every binding has a struct sink_stats on cache lines of its own:
 *	calls (handle() invocations), skipped (the rule did not match), one
 *	counter per verdict (PENDING counts the handler's answer, the final
 *	verdict of a pending call is counted again when it arrives), deadline
 *	misses, late completions (after the deadline or after the session
 *	went away), replies dropped for the wrong class, and a latency
 *	histogram in microseconds from the call to the verdict, pending time
 *	included: bucket 0 is < 1 us, bucket k (1..20) is [2^(k-1), 2^k) us,
 *	bucket 21 is >= 2^20 us (about a second).
 *
 *	All are relaxed atomic adds, no locks: each counter is independent,
 *	nothing is published through them, and a reader (SIGUSR2, exit) only
 *	wants each value to be a value it had, not a snapshot consistent
 *	across counters.
 *
 *	The printout is one line per binding; p50 and p99 are the upper
 *	bounds of the buckets that hold those quantiles.
 */
#include "sinks/sink_int.h"

#include "core/base/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct sink_stats *sink_stats_new(void)
{
    size_t sz =
        (sizeof(struct sink_stats) + SCHED_CACHELINE - 1) / SCHED_CACHELINE * SCHED_CACHELINE;
    struct sink_stats *st = aligned_alloc(SCHED_CACHELINE, sz);
    if (st != NULL)
        memset(st, 0, sz); /* all-zero bits is a zero atomic on every target we build for */
    return st;
}

void sink_stats_free(struct sink_stats *st)
{
    free(st);
}

unsigned sink_stats_bucket(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us == 0)
        return 0;
    unsigned b = 64 - (unsigned)__builtin_clzll(us); /* [2^(b-1), 2^b) */
    return b < SINK_HIST_BUCKETS - 1 ? b : SINK_HIST_BUCKETS - 1;
}

void sink_stats_latency(struct sink_stats *st, uint64_t ns)
{
    /* Relaxed: an independent counter (see above). */
    atomic_fetch_add_explicit(&st->hist[sink_stats_bucket(ns)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->latency_ns, ns, memory_order_relaxed);
}

/* Relaxed: independent counters (see above). */
void sink_stats_svc(struct sink_stats *st, int delta)
{
    atomic_fetch_add_explicit(delta > 0 ? &st->svc_started : &st->svc_ended, 1,
                              memory_order_relaxed);
}

void sink_stats_svc_cancelled(struct sink_stats *st)
{
    atomic_fetch_add_explicit(&st->svc_cancelled, 1, memory_order_relaxed);
}

void sink_stats_dns_timeout(struct sink_stats *st)
{
    atomic_fetch_add_explicit(&st->dns_timeouts, 1, memory_order_relaxed);
}

void sink_stats_dns_cached(struct sink_stats *st)
{
    atomic_fetch_add_explicit(&st->dns_cached, 1, memory_order_relaxed);
}

uint64_t sink_stats_quantile_us(const struct sink_stats *st, double q)
{
    uint64_t h[SINK_HIST_BUCKETS], total = 0;
    for (unsigned i = 0; i < SINK_HIST_BUCKETS; i++) {
        /* Relaxed: a reading, not a synchronisation. */
        h[i] = atomic_load_explicit(&st->hist[i], memory_order_relaxed);
        total += h[i];
    }
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if ((double)want < q * (double)total)
        want++;
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < SINK_HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen >= want)
            return i == SINK_HIST_BUCKETS - 1 ? UINT64_MAX : UINT64_C(1) << i;
    }
    return UINT64_MAX;
}

static void sink_stats_fmt_us(char *buf, size_t len, uint64_t ub)
{
    if (ub == 0)
        snprintf(buf, len, "-");
    else if (ub == UINT64_MAX)
        snprintf(buf, len, ">=%.2fs", (double)(UINT64_C(1) << (SINK_HIST_BUCKETS - 2)) / 1e6);
    else if (ub < 10000)
        snprintf(buf, len, "<%" PRIu64 "us", ub);
    else if (ub < 10000000)
        snprintf(buf, len, "<%.1fms", (double)ub / 1e3);
    else
        snprintf(buf, len, "<%.2fs", (double)ub / 1e6);
}

static uint64_t ld(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed); /* a reading (see above) */
}

bool sink_engine_has_bindings(const struct sink_engine *e)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu; /* see sink_engine_print_bindings */
    pthread_mutex_lock(mu);
    bool any = e->nb > 0;
    pthread_mutex_unlock(mu);
    return any;
}

_Static_assert(SINK_STATS_BUCKETS == SINK_HIST_BUCKETS, "engine.h and sink_int.h agree");

size_t sink_engine_binding_count(const struct sink_engine *e)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu; /* see sink_engine_print_bindings */
    pthread_mutex_lock(mu);
    size_t n = e->nb;
    pthread_mutex_unlock(mu);
    return n;
}

const char *sink_verdict_name(enum sink_verdict v)
{
    static const char *const names[] = {"continue", "consumed", "reject",     "tempfail",
                                        "drop",     "discard",  "quarantine", "pending"};
    _Static_assert(sizeof(names) / sizeof(names[0]) == SINK_PENDING + 1, "one name per verdict");
    return (unsigned)v <= SINK_PENDING ? names[v] : "?";
}

bool sink_engine_binding_stats(const struct sink_engine *e, size_t i,
                               struct sink_binding_stats *out)
{
    /* Under the engine's mutex: a live change may reallocate e->b.  The
     * binding itself (name included) is held until the caller releases
     * it: a live change may retire it meanwhile and the reclaimer would
     * free it (engine.c).  The hold is taken under mu on a current
     * binding, so the reclaimer (under mu too) sees it once it is retired. */
    pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu;
    pthread_mutex_lock(mu);
    struct sink_binding *b = i < e->nb ? e->b[i] : NULL;
    if (b != NULL)
        sink_binding_hold(b);
    pthread_mutex_unlock(mu);
    if (b == NULL)
        return false; /* removed since sink_engine_binding_count() */
    const struct sink_stats *st = b->stats;
    memset(out, 0, sizeof(*out));
    out->held = b;
    out->name = b->name;
    out->event = sink_event_name(b->ev);
    out->enabled = sink_binding_enabled(b);
    out->calls = ld(&st->calls);
    out->skipped = ld(&st->skipped);
    for (unsigned v = 0; v <= SINK_PENDING; v++)
        out->verdicts[v] = ld(&st->verdicts[v]);
    out->deadline_misses = ld(&st->deadline_misses);
    out->late = ld(&st->late);
    out->bad_reply = ld(&st->bad_reply);
    for (unsigned k = 0; k < SINK_HIST_BUCKETS; k++)
        out->hist[k] = ld(&st->hist[k]);
    out->latency_ns = ld(&st->latency_ns);
    out->in_flight = atomic_load_explicit(&st->in_flight, memory_order_relaxed); /* a reading */
    /* ended is read first: a service that ends between the two reads
     * cannot make the difference negative */
    uint64_t ended = ld(&st->svc_ended);
    out->svc_started = ld(&st->svc_started);
    out->svc_in_flight = out->svc_started >= ended ? out->svc_started - ended : 0;
    out->svc_cancelled = ld(&st->svc_cancelled);
    out->dns_timeouts = ld(&st->dns_timeouts);
    out->dns_cached = ld(&st->dns_cached);
    return true;
}

void sink_engine_print_stats(const struct sink_engine *e, FILE *f)
{
    fprintf(f, "%-20s %-10s %9s %8s %9s %8s %7s %8s %6s %7s %7s %8s %6s %6s %9s %9s\n", "binding",
            "event", "calls", "skipped", "continue", "consumed", "reject", "tempfail", "drop",
            "discard", "quarant", "pending", "missed", "late", "p50", "p99");
    pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu; /* see sink_engine_print_bindings */
    pthread_mutex_lock(mu);
    for (size_t i = 0; i < e->nb; i++) {
        const struct sink_binding *b = e->b[i];
        const struct sink_stats *st = b->stats;
        char p50[16], p99[16];
        sink_stats_fmt_us(p50, sizeof(p50), sink_stats_quantile_us(st, 0.5));
        sink_stats_fmt_us(p99, sizeof(p99), sink_stats_quantile_us(st, 0.99));
        fprintf(f,
                "%-20s %-10s %9" PRIu64 " %8" PRIu64 " %9" PRIu64 " %8" PRIu64 " %7" PRIu64
                " %8" PRIu64 " %6" PRIu64 " %7" PRIu64 " %7" PRIu64 " %8" PRIu64 " %6" PRIu64
                " %6" PRIu64 " %9s %9s%s\n",
                b->name, sink_event_name(b->ev), ld(&st->calls), ld(&st->skipped),
                ld(&st->verdicts[SINK_CONTINUE]), ld(&st->verdicts[SINK_CONSUMED]),
                ld(&st->verdicts[SINK_REJECT]), ld(&st->verdicts[SINK_TEMPFAIL]),
                ld(&st->verdicts[SINK_DROP]), ld(&st->verdicts[SINK_DISCARD]),
                ld(&st->verdicts[SINK_QUARANTINE]), ld(&st->verdicts[SINK_PENDING]),
                ld(&st->deadline_misses), ld(&st->late), p50, p99,
                sink_binding_enabled(b) ? "" : "  (disabled)");
        uint64_t bad = ld(&st->bad_reply);
        if (bad != 0)
            fprintf(f, "%-20s   %" PRIu64 " replies of the wrong class dropped\n", "", bad);
    }
    pthread_mutex_unlock(mu);
}

void sink_engine_binding_stats_release(struct sink_binding_stats *out)
{
    if (out->held != NULL)
        sink_binding_release((struct sink_binding *)out->held);
    out->held = NULL;
    out->name = NULL;
}
