/*
 * NAME
 *	dispatch - running an event's chain, pending calls, completion
 * SYNOPSIS
 *	#include "sinks/engine.h"
 *
 *	bool sink_dispatch(struct sink_call *c, enum sink_event ev,
 *			   const struct sink_event_data *d, sink_server_fn *server,
 *			   void *sarg, sink_done_fn *done, void *darg,
 *			   struct sink_result *res);
 *	void sink_complete(struct sink_ctx *ctx, enum sink_verdict v);
 * DESCRIPTION
 *	sink_dispatch() walks the chain of ev: a binding whose rule does not
 *	match is skipped; otherwise its handle() gets the call's ctx.
 *	CONTINUE goes on to the next link (a reply it set is kept unless a
 *	later link sets one); any other verdict ends the chain with that
 *	verdict and the link's reply.  The server's handler runs at its
 *	place in the chain (engine.c); at the queue manager's events there
 *	is none (server is NULL).  At disconnect, out_quit, delivered,
 *	deferred and bounce every verdict counts as CONTINUE: they are
 *	notifications (sink_event_notifies).  A reply whose class does not fit
 *	the verdict (sink_reply_class_ok) is dropped and counted: the
 *	session then answers with its own reply for that verdict.
 *
 *	A binding with `offload = true` runs its handler as a scheduler task
 *	instead (offload.c): the link then waits exactly like a PENDING one.
 *
 *	A dispatch loads ev's chain once (an acquire load: live.c publishes
 *	a new chain on every change) and keeps it to its end, across pending
 *	links; a link disabled meanwhile is skipped (its flag is read before
 *	each call).  A removed binding's pending calls complete normally: the
 *	binding and its instance live until they are done (engine.c).
 *
 *	The synchronous path allocates nothing and takes no lock: the call
 *	owns one ctx and reuses it for every link.  When a handler returns
 *	SINK_PENDING that ctx leaves the call (the next link of any later
 *	dispatch gets a fresh one, or the completed one back).
 *
 *	The ctx of a pending call is a small state machine:
 *
 *	  PENDING --sink_complete() (any thread)--> COMPLETED
 *	  PENDING --deadline (owner, pending.c)---> EXPIRED
 *	  PENDING --sink_call_destroy() (owner)---> ABANDONED
 *
 *	Each arrow is a compare-and-swap from PENDING, acq_rel, so exactly
 *	one side wins.  The state is PENDING (relaxed stores: the ctx is not
 *	shared yet; the sink gets it through handle() and hands it to other
 *	threads with its own synchronisation) before handle() runs, so a
 *	completion may arrive before handle() returns.
 *
 *	Freeing: a pending ctx holds two references, the engine's and the
 *	sink's.  When sink_complete() wins, its task owns both: the task (on
 *	the owning worker, via sched_post) takes the verdict, resumes or ends
 *	the chain and frees or recycles the ctx.  When the deadline or the
 *	call's end wins, the engine settles the chain (or nothing, if
 *	abandoned) and drops its reference; the late sink_complete() drops
 *	the other.  The second to drop frees (acq_rel decrement).
 * DIAGNOSTICS
 *	Broken contracts panic: a second dispatch on a busy call, a server
 *	handler returning SINK_PENDING, sink_complete() on a ctx whose
 *	handler returned a synchronous verdict.  A sink returning a verdict
 *	out of range is logged and treated as TEMPFAIL.
 */
#include "sinks/sink_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/log.h"

/* The replies for a missed deadline: the sink's own, not the server's. */
static const struct {
    int code;
    const char *enhanced, *text;
} sink_deadline_reply[] = {
    [SINK_TEMPFAIL] = {451, "4.7.1", "Service temporarily unavailable (sink deadline)"},
    [SINK_REJECT] = {554, "5.7.1", "Service unavailable (sink deadline)"},
};

/* For net/worker.c, which the net/ rewrite will move to clock_mono_ms(). */
uint64_t sink_now_ms(void)
{
    return clock_mono_ms();
}

/* ---- contexts ---- */

static struct sink_ctx *sink_ctx_new(void)
{
    struct sink_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx != NULL) {
        ctx->slot = SIZE_MAX;
        ctx->task.fn = sink_complete_task;
    }
    return ctx;
}

void sink_ctx_free(struct sink_ctx *ctx)
{
    sink_ctx_copies_free(ctx);
    sink_offload_fini(ctx);
    sink_tedit_free(ctx);
    sink_ctx_release(ctx); /* engine.c: its binding, if it went pending */
    free(ctx);
}

void sink_ctx_unref(struct sink_ctx *ctx)
{
    /* acq_rel: the release half orders this side's last use of ctx before
     * the decrement; the acquire half lets the side that reaches zero see
     * the other side's last use before it frees. */
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        sink_ctx_free(ctx);
}

/* Drops the sink's reference, once: whichever of a late sink_complete()
 * and the engine (an abandoned call, below) comes first.  acq_rel: the
 * exchange orders the two sides like the reference count itself. */
static void sink_ctx_unref_sink(struct sink_ctx *ctx)
{
    if (atomic_exchange_explicit(&ctx->sink_ref, false, memory_order_acq_rel))
        sink_ctx_unref(ctx);
}

/* A pending call ended without the sink's answer (deadline, the session's
 * end), on the owner: its services are cancelled (their callbacks run),
 * the module's abandoned() hook runs, and the sink's reference goes too
 * when the sink cannot answer any more: it has the hook (and so stopped
 * its threads there), or it was waiting on services only (its callbacks
 * were told).  Otherwise (a thread of the sink may still answer) only
 * what the ctx holds besides itself is freed; the late sink_complete()
 * frees the rest.  Then the engine's reference goes. */
static void sink_ctx_orphan(struct sink_ctx *ctx)
{
    size_t nsvc = sink_svc_cancel_all(ctx);
    void (*hook)(void *, struct sink_ctx *) = ctx->b->mod->abandoned;
    if (hook != NULL && !ctx->offloaded) {
        struct sink_crash_note note = sink_crash_enter(ctx->b, ctx->ev, "abandoned()");
        hook(ctx->b->inst, ctx);
        sink_crash_leave(note);
    }
    if (!ctx->offloaded && (hook != NULL || nsvc > 0))
        sink_ctx_unref_sink(ctx);
    else if (!ctx->offloaded) {
        sink_ctx_copies_free(ctx);
        sink_tedit_free(ctx);
    }
    sink_ctx_unref(ctx);
}

/* Relaxed counters: see stats.c. */
static void sink_count(_Atomic uint64_t *v)
{
    atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

/* ---- calls ---- */

struct sink_call *sink_call_create(struct sink_worker *sw)
{
    struct sink_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if ((c->ctx = sink_ctx_new()) == NULL) {
        free(c);
        return NULL;
    }
    c->sw = sw;
    sw->ncalls++;
    return c;
}

void sink_call_destroy(struct sink_call *c)
{
    if (c == NULL)
        return;
    struct sink_ctx *ctx = c->pending;
    if (ctx != NULL) {
        ctx->call = NULL; /* owner-only field: a completion task will see it */
        int want = SINK_CTX_PENDING;
        /* acq_rel: pairs with sink_complete()'s CAS; see the top. */
        if (atomic_compare_exchange_strong_explicit(&ctx->state, &want, SINK_CTX_ABANDONED,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            sink_pending_remove(c->sw, ctx);
            sink_ctx_orphan(ctx);
        }
        /* else COMPLETED: the queued task frees it without calling done */
    }
    sink_call_release(c); /* engine.c: the chain, if the dispatch went pending */
    c->sw->ncalls--;
    if (c->ctx != NULL)
        sink_ctx_free(c->ctx);
    free(c);
}

/* ---- the chain ---- */

static void sink_reply_copy(struct sink_result *res, const struct sink_ctx *ctx)
{
    res->code = ctx->code;
    memcpy(res->enhanced, ctx->enhanced, sizeof(res->enhanced));
    memcpy(res->text, ctx->text, sizeof(res->text));
}

static void sink_reply_none(struct sink_result *res)
{
    res->code = 0;
    res->enhanced[0] = '\0';
    res->text[0] = '\0';
}

/* Applies link verdict v (not PENDING) to res; true when the chain ends. */
static bool sink_link_verdict(struct sink_call *c, struct sink_ctx *ctx, enum sink_verdict v,
                              struct sink_result *res)
{
    struct sink_binding *b = ctx->b;
    if ((unsigned)v > SINK_QUARANTINE) {
        log_msg(LOG_WARN, "sinks: binding \"%s\": verdict %d out of range, taken as TEMPFAIL",
                b->name, (int)v);
        v = SINK_TEMPFAIL;
        ctx->code = 0;
    }
    sink_count(&b->stats->verdicts[v]);
    if (sink_event_notifies(c->ev))
        return false; /* a notification: nobody to answer */
    if (ctx->code != 0 && !sink_reply_class_ok(c->ev, v, ctx->code)) {
        sink_count(&b->stats->bad_reply);
        bool no = false;
        /* Relaxed: only decides who logs; nothing is published with it. */
        if (atomic_compare_exchange_strong_explicit(&b->warned, &no, true, memory_order_relaxed,
                                                    memory_order_relaxed))
            log_msg(LOG_WARN, "sinks: binding \"%s\": reply %d does not fit its verdict; dropped",
                    b->name, ctx->code);
        ctx->code = 0;
    }
    if (v == SINK_CONTINUE) {
        if (ctx->code != 0)
            sink_reply_copy(res, ctx);
        return false;
    }
    res->verdict = v;
    res->binding = b->name;
    if (ctx->code != 0)
        sink_reply_copy(res, ctx);
    else
        sink_reply_none(res);
    return true;
}

/* The server's own handler as a link; true when it ends the chain. */
static bool sink_server_link(struct sink_call *c, struct sink_result *res)
{
    int carried = res->code;
    res->code = 0;
    enum sink_verdict v = c->server(c->sarg, res);
    if (v == SINK_PENDING || (unsigned)v > SINK_PENDING)
        log_panic("sink_dispatch: the server's %s handler returned verdict %d",
                  sink_event_name(c->ev), (int)v);
    if (v == SINK_CONTINUE || sink_event_notifies(c->ev)) {
        if (res->code == 0)
            res->code = carried;
        return false;
    }
    res->verdict = v;
    res->binding = "server";
    if (res->code == 0)
        sink_reply_none(res);
    return true;
}

/* A link went pending: its ctx leaves the call for the worker's heap. */
static void sink_go_pending(struct sink_call *c, struct sink_ctx *ctx, struct sink_result *res)
{
    c->ctx = NULL;
    c->pending = ctx;
    ctx->deadline_ms = ctx->t0_ns / 1000000u + ctx->b->deadline_ms;
    sink_count(&ctx->b->stats->verdicts[SINK_PENDING]);
    sink_hold_pending(c, ctx); /* engine.c: the chain and the binding stay */
    if (res != &c->res)
        c->res = *res;
    if (sink_pending_add(c->sw, ctx) < 0)
        log_msg(LOG_ERROR, "sinks: binding \"%s\": out of memory: no deadline for this call",
                ctx->b->name);
}

/* Runs the chain from step; true when it ended (res filled). */
static bool sink_run(struct sink_call *c, unsigned step, struct sink_result *res)
{
    const struct sink_chain *ch = c->chain; /* the one this dispatch started with */
    for (;; step++) {
        if (step == ch->server_at && c->server != NULL && sink_server_link(c, res))
            return true;
        if (step >= ch->n)
            break;
        struct sink_binding *b = ch->link[step];
        if (!sink_binding_enabled(b))
            continue; /* disabled after this chain was built (live.c) */
        if (b->rule != NULL && !sink_rule_match(b->rule, c->ev, c->d)) {
            sink_count(&b->stats->skipped);
            continue;
        }
        struct sink_ctx *ctx = c->ctx;
        if (ctx == NULL && (ctx = c->ctx = sink_ctx_new()) == NULL) {
            log_msg(LOG_ERROR, "sinks: binding \"%s\": out of memory", b->name);
            res->verdict = SINK_TEMPFAIL;
            res->binding = b->name;
            sink_reply_none(res);
            return true;
        }
        ctx->e = c->sw->e;
        ctx->b = b;
        ctx->ev = c->ev;
        ctx->d = c->d;
        ctx->call = c;
        ctx->sw = c->sw;
        ctx->step = step;
        ctx->code = 0;
        if (ctx->tedits != NULL) /* left by a sink that broke the contract */
            sink_tedit_free(ctx);
        /* Relaxed: not shared yet (see the top). */
        atomic_store_explicit(&ctx->state, SINK_CTX_PENDING, memory_order_relaxed);
        atomic_store_explicit(&ctx->refs, 2, memory_order_relaxed);
        atomic_store_explicit(&ctx->sink_ref, true, memory_order_relaxed);
        sink_count(&b->stats->calls);
        ctx->t0_ns = clock_mono_ns();
        if (b->offload && c->sw->pool != NULL) {
            /* offload.c: handle() as a stealable task; the chain waits as
             * for a pending link (its heap entry first: the answer may
             * arrive before sink_offload_start returns) */
            sink_go_pending(c, ctx, res);
            if (sink_offload_start(ctx, c->d))
                return false;
            sink_pending_remove(c->sw, ctx); /* out of memory: run it inline */
            c->pending = NULL;
            c->ctx = ctx;
        }
        enum sink_verdict v = sink_ctx_handle(ctx);
        if (ctx->copies != NULL)
            sink_ctx_copies_free(ctx);
        if (v == SINK_PENDING) {
            sink_go_pending(c, ctx, res);
            return false;
        }
        if (ctx->svcs != NULL) /* services started, then a verdict: they end with the call */
            sink_svc_cancel_all(ctx);
        sink_stats_latency(b->stats, clock_mono_ns() - ctx->t0_ns);
        /* Relaxed: a check of our own store above; a sink that completed
         * a synchronous answer broke the contract. */
        if (atomic_load_explicit(&ctx->state, memory_order_relaxed) != SINK_CTX_PENDING)
            log_panic("sink_complete: binding \"%s\" returned verdict %d, not SINK_PENDING",
                      b->name, (int)v);
        if (ctx->tedits != NULL) /* recorded by a thread of the sink before handle() returned */
            sink_tedit_apply(ctx, c->d);
        if (sink_link_verdict(c, ctx, v, res))
            return true;
    }
    res->verdict = SINK_CONTINUE;
    res->binding = NULL;
    if (res->code == 0)
        sink_reply_none(res);
    return true;
}

bool sink_dispatch(struct sink_call *c, enum sink_event ev, const struct sink_event_data *d,
                   sink_server_fn *server, void *sarg, sink_done_fn *done, void *darg,
                   struct sink_result *res)
{
    if (c->busy)
        log_panic("sink_dispatch: the call is still dispatching %s", sink_event_name(c->ev));
    if ((unsigned)ev >= SINK_EV_COUNT)
        log_panic("sink_dispatch: event %d out of range", (int)ev);
    c->busy = true;
    c->chain = sink_engine_chain(c->sw->e, ev);
    c->ev = ev;
    c->d = d;
    c->server = server;
    c->sarg = sarg;
    c->done = done;
    c->darg = darg;
    res->verdict = SINK_CONTINUE;
    res->binding = NULL;
    sink_reply_none(res);
    bool finished = sink_run(c, 0, res);
    if (finished) {
        c->busy = false;
        sink_call_release(c); /* engine.c: held if a link went pending and came back */
    }
    return finished;
}

/* The chain of c ended after going pending: tell the session. */
static void sink_finish(struct sink_call *c)
{
    /* A copy: done may destroy the call (and its res) or dispatch again. */
    struct sink_result res = c->res;
    c->busy = false;
    sink_call_release(c); /* engine.c: res.binding stays valid this turn */
    c->done(c->darg, &res);
}

/* ---- completion ---- */

void sink_complete(struct sink_ctx *ctx, enum sink_verdict v)
{
    if (sink_ctx_cancelling(ctx))
        return; /* a cancelled service's callback: the call has ended */
    bool bad = v == SINK_PENDING || (unsigned)v > SINK_PENDING;
    if (bad) {
        log_msg(LOG_WARN,
                "sinks: binding \"%s\": sink_complete() with verdict %d, taken as "
                "TEMPFAIL",
                ctx->b->name, (int)v);
        v = SINK_TEMPFAIL;
    }
    int want = SINK_CTX_PENDING;
    /* acq_rel on success: the release half publishes the reply
     * (sink_set_reply) before the ctx is handed over; the task reads it and
     * the answer (written below, after the CAS)
     * after the inbox hand-off, which itself is release (post) / acquire
     * (drain).  Pairs with the engine's CAS in expire / call_destroy:
     * exactly one wins.  Acquire on failure: pairs with the winner's
     * release, so our unref below comes after its use of the ctx. */
    if (atomic_compare_exchange_strong_explicit(&ctx->state, &want, SINK_CTX_COMPLETED,
                                                memory_order_acq_rel, memory_order_acquire)) {
        /* the answer only once the CAS is won: a second sink_complete()
         * must not overwrite the first's before the task reads it (the
         * post below publishes it: release, drained with acquire) */
        if (bad)
            ctx->code = 0;
        ctx->answer = v;
        struct sink_worker *sw = ctx->sw;
        if (sw->pool != NULL)
            sched_post(sw->pool, sw->index, &ctx->task); /* ctx is the task's now */
        else
            sched_inbox_post(&sw->inbox, &ctx->task);
        return;
    }
    if (want == SINK_CTX_COMPLETED) {
        /* The first answer stands; this one is dropped.  (A second call
         * after the first answer was taken is a use of a freed ctx: the
         * contract says exactly once.) */
        sink_count(&ctx->b->stats->late);
        log_msg(LOG_ERROR, "sinks: binding \"%s\" completed a call twice; the second answer is "
                           "ignored",
                ctx->b->name);
        return;
    }
    sink_count(&ctx->b->stats->late); /* after the deadline or the session */
    sink_ctx_unref_sink(ctx);
}

/* The completion, on the owning worker. */
void sink_complete_task(struct sched_task *t)
{
    struct sink_ctx *ctx = (struct sink_ctx *)((char *)t - offsetof(struct sink_ctx, task));
    sink_pending_remove(ctx->sw, ctx);
    struct sink_binding *b = ctx->b;
    struct sink_call *c = ctx->call;
    sink_stats_latency(b->stats, clock_mono_ns() - ctx->t0_ns);
    if (ctx->svcs != NULL) /* answered with services still pending: they end */
        sink_svc_cancel_all(ctx);
    if (c == NULL) { /* the session went away meanwhile */
        sink_count(&b->stats->verdicts[ctx->answer]);
        sink_ctx_free(ctx);
        return;
    }
    c->pending = NULL;
    if (ctx->offloaded)
        sink_offload_finish(ctx, c->d); /* its edits, through the session */
    if (ctx->tedits != NULL)
        sink_tedit_apply(ctx, c->d); /* transport edits made after handle() */
    unsigned step = ctx->step;
    bool finished = sink_link_verdict(c, ctx, ctx->answer, &c->res);
    if (c->ctx == NULL) { /* recycle: the call needs a ctx for its next link */
        sink_ctx_copies_free(ctx);
        sink_ctx_release(ctx); /* engine.c */
        ctx->slot = SIZE_MAX;
        c->ctx = ctx;
    } else {
        sink_ctx_free(ctx);
    }
    if (finished || sink_run(c, step + 1, &c->res))
        sink_finish(c);
}

/* The deadline won (pending.c), or the binding was removed meanwhile
 * (removed): apply on_deadline. */
static void sink_expired_why(struct sink_ctx *ctx, bool removed)
{
    struct sink_binding *b = ctx->b;
    struct sink_call *c = ctx->call;
    unsigned step = ctx->step;
    /* Relaxed: a counter (stats.c); its value only paces the log. */
    uint64_t n = removed ? 1
                         : atomic_fetch_add_explicit(&b->stats->deadline_misses, 1,
                                                     memory_order_relaxed) +
                               1;
    sink_stats_latency(b->stats, clock_mono_ns() - ctx->t0_ns);
    c->pending = NULL;
    sink_ctx_orphan(ctx);   /* the sink's late completion frees it, or has */
    const char *then = b->on_deadline == SINK_CONTINUE ? "continuing"
                       : b->on_deadline == SINK_REJECT ? "rejecting"
                                                       : "tempfailing";
    if (removed)
        log_msg(LOG_INFO, "sinks: binding \"%s\" was removed while a call at %s waited; %s",
                b->name, sink_event_name(c->ev), then);
    else if ((n & (n - 1)) == 0) /* the 1st, 2nd, 4th, ... miss: a hung sink cannot flood the log */
        log_msg(LOG_WARN, "sinks: binding \"%s\" missed its deadline at %s (%llu so far); %s",
                b->name, sink_event_name(c->ev), (unsigned long long)n, then);
    struct sink_result *res = &c->res;
    if (b->on_deadline == SINK_CONTINUE) {
        if (sink_run(c, step + 1, res))
            sink_finish(c);
        return;
    }
    res->verdict = b->on_deadline;
    res->binding = b->name;
    res->code = sink_deadline_reply[b->on_deadline].code;
    snprintf(res->enhanced, sizeof(res->enhanced), "%s",
             sink_deadline_reply[b->on_deadline].enhanced);
    snprintf(res->text, sizeof(res->text), "%s", sink_deadline_reply[b->on_deadline].text);
    sink_finish(c);
}

void sink_expired(struct sink_ctx *ctx)
{
    sink_expired_why(ctx, false);
}

void sink_removed(struct sink_ctx *ctx)
{
    sink_expired_why(ctx, true);
}
