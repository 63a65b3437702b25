/*
 * NAME
 *	pending - a worker's pending sink calls and their deadlines
 * SYNOPSIS
 *	#include "sinks/engine.h"
 *
 *	struct sink_worker *sink_worker_create(struct sink_engine *e,
 *					       struct sched_pool *pool, unsigned index);
 *	uint64_t sink_worker_next_deadline(const struct sink_worker *sw,
 *					   uint64_t now_ms);
 *	void sink_worker_expire(struct sink_worker *sw, uint64_t now_ms);
 *	void sink_worker_destroy(struct sink_worker *sw);
 * DESCRIPTION
 *	A worker keeps every ctx whose handler returned SINK_PENDING in a
 *	binary min-heap on its deadline (each ctx knows its slot, so the
 *	completion task removes it in O(log n)).  Everything here runs on
 *	the worker's owner thread.
 *
 *	sink_worker_expire() pops every ctx whose deadline is <= now and
 *	tries to move it PENDING -> EXPIRED; when that wins, dispatch.c
 *	settles the chain with the binding's on_deadline.  When it loses,
 *	the sink has completed and its task is on the way: it finds the ctx
 *	already out of the heap.
 *
 *	pool NULL (tests, tools without a scheduler): completions are queued
 *	on the worker's own inbox and run by sink_worker_expire(); nothing
 *	wakes the worker, so its owner polls (sink_worker_next_deadline()
 *	says 0 while completions wait).
 *
 *	sink_worker_destroy() requires every call of the worker destroyed
 *	(which abandons their pending ctxs); completions whose tasks are
 *	still queued are run first, on the owner thread, when the calling
 *	thread is attached to the worker (or pool is NULL).
 * DIAGNOSTICS
 *	sink_worker_destroy() with calls left panics.  Completions that
 *	cannot be run are logged and leaked.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "core/base/log.h"

struct sink_worker *sink_worker_create(struct sink_engine *e, struct sched_pool *pool,
                                       unsigned index)
{
    if (e == NULL)
        log_panic("sink_worker_create: no engine");
    if (pool != NULL && index >= sched_pool_size(pool))
        log_panic("sink_worker_create: worker %u of %u", index, sched_pool_size(pool));
    struct sink_worker *sw = calloc(1, sizeof(*sw));
    if (sw == NULL)
        return NULL;
    sw->e = e;
    sw->pool = pool;
    sw->index = index;
    sched_inbox_init(&sw->inbox);
    sw->owner = pthread_self();
    sw->free_poll = UINT32_MAX;
    sink_bound_snapshot(e); /* created on its owner thread */
    sink_qs_register(sw);   /* engine.c: retired chains wait for its turns */
    return sw;
}

struct sink_engine *sink_worker_engine(const struct sink_worker *sw)
{
    return sw->e;
}

/* Runs the completions queued on the worker's own inbox (pool NULL). */
static void sink_worker_drain(struct sink_worker *sw)
{
    struct sched_task *t = sched_inbox_drain_owner(&sw->inbox);
    while (t != NULL) {
        struct sched_task *next = t->next; /* t may be freed by its fn */
        t->fn(t);
        t = next;
    }
}

void sink_worker_destroy(struct sink_worker *sw)
{
    if (sw == NULL)
        return;
    if (sw->ncalls != 0)
        log_panic("sink_worker_destroy: %zu calls still exist", sw->ncalls);
    /* What is left completed and awaits its task; one that posts between
     * its CAS and sched_post is a few instructions away, hence the yield. */
    struct sched_worker *w = sw->pool ? sched_pool_worker(sw->pool, sw->index) : NULL;
    while (sw->n > 0) {
        if (sw->pool == NULL)
            sink_worker_drain(sw);
        else if (sched_worker_current() == w)
            sched_worker_run_budget(w, 64);
        else {
            log_msg(LOG_WARN, "sinks: worker %u destroyed with %zu completions queued", sw->index,
                    sw->n);
            break;
        }
        if (sw->n > 0)
            sched_yield();
    }
    sink_qs_unregister(sw); /* engine.c: it uses nothing of the engine any more */
    sink_bound_forget(sw->e);
    sink_svc_worker_fini(sw);
    free(sw->heap);
    free(sw);
}

/* ---- the heap ---- */

static void sink_heap_set(struct sink_worker *sw, size_t i, struct sink_ctx *ctx)
{
    sw->heap[i] = ctx;
    ctx->slot = i;
}

static void sink_heap_up(struct sink_worker *sw, size_t i)
{
    struct sink_ctx *x = sw->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (sw->heap[p]->deadline_ms <= x->deadline_ms)
            break;
        sink_heap_set(sw, i, sw->heap[p]);
        i = p;
    }
    sink_heap_set(sw, i, x);
}

static void sink_heap_down(struct sink_worker *sw, size_t i)
{
    struct sink_ctx *x = sw->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = x->deadline_ms;
        if (l < sw->n && sw->heap[l]->deadline_ms < best)
            m = l, best = sw->heap[l]->deadline_ms;
        if (l + 1 < sw->n && sw->heap[l + 1]->deadline_ms < best)
            m = l + 1;
        if (m == i)
            break;
        sink_heap_set(sw, i, sw->heap[m]);
        i = m;
    }
    sink_heap_set(sw, i, x);
}

int sink_pending_add(struct sink_worker *sw, struct sink_ctx *ctx)
{
    if (sw->n == sw->cap) {
        size_t cap = sw->cap ? sw->cap * 2 : 64;
        struct sink_ctx **h = realloc(sw->heap, cap * sizeof(*h));
        if (h == NULL)
            return -ENOMEM;
        sw->heap = h;
        sw->cap = cap;
    }
    sw->heap[sw->n] = ctx;
    sink_heap_up(sw, sw->n++);
    sink_inflight(ctx->b, 1);
    return 0;
}

void sink_pending_remove(struct sink_worker *sw, struct sink_ctx *ctx)
{
    size_t i = ctx->slot;
    if (i == SIZE_MAX)
        return;
    ctx->slot = SIZE_MAX;
    sink_inflight(ctx->b, -1);
    struct sink_ctx *last = sw->heap[--sw->n];
    if (i == sw->n)
        return;
    sink_heap_set(sw, i, last);
    sink_heap_up(sw, i);
    sink_heap_down(sw, last->slot);
}

uint64_t sink_worker_next_deadline(const struct sink_worker *sw, uint64_t now_ms)
{
    sink_bound_snapshot(sw->e); /* before the worker waits: see engine.c */
    if (sw->pool == NULL && !sched_inbox_empty(&sw->inbox))
        return 0;
    uint64_t d = sink_svc_next_ms(sw);
    if (sw->n > 0 && sw->heap[0]->deadline_ms < d)
        d = sw->heap[0]->deadline_ms;
    if (d == UINT64_MAX)
        return UINT64_MAX;
    return d <= now_ms ? 0 : d - now_ms;
}

void sink_binding_removed(struct sink_engine *e, struct sink_binding *b)
{
    atomic_store_explicit(&b->removed, true, memory_order_relaxed);
    /* release: publishes the flag above to the worker that sees the new
     * count (its acquire load below) */
    atomic_fetch_add_explicit(&e->removed_gen, 1, memory_order_release);
}

/* A binding was removed since the last look: its pending calls on this
 * worker that wait on services end now (the services cancelled, their
 * callbacks told; the chain goes on as at the deadline) instead of
 * waiting for a sink that is gone.  A call waiting on a thread of the
 * sink completes normally (the instance lives on until it may go). */
static bool sink_ctx_gone(const struct sink_ctx *ctx)
{
    return ctx->svcs != NULL && atomic_load_explicit(&ctx->b->removed, memory_order_relaxed);
}

static void sink_worker_removed(struct sink_worker *sw)
{
    uint32_t g = atomic_load_explicit(&sw->e->removed_gen, memory_order_acquire);
    if (g == sw->removed_seen)
        return;
    sw->removed_seen = g;
    size_t n = 0;
    for (size_t i = 0; i < sw->n; i++)
        if (sink_ctx_gone(sw->heap[i]))
            n++;
    if (n == 0)
        return;
    struct sink_ctx **v = malloc(n * sizeof(*v));
    if (v == NULL)
        return; /* their deadlines end them */
    size_t k = 0;
    for (size_t i = 0; i < sw->n && k < n; i++)
        if (sink_ctx_gone(sw->heap[i]))
            v[k++] = sw->heap[i];
    for (size_t i = 0; i < k; i++) {
        struct sink_ctx *ctx = v[i];
        sink_pending_remove(sw, ctx);
        int want = SINK_CTX_PENDING;
        /* acq_rel: as in sink_worker_expire below */
        if (atomic_compare_exchange_strong_explicit(&ctx->state, &want, SINK_CTX_EXPIRED,
                                                    memory_order_acq_rel, memory_order_acquire))
            sink_removed(ctx);
    }
    free(v);
}

void sink_worker_expire(struct sink_worker *sw, uint64_t now_ms)
{
    sink_bound_snapshot(sw->e); /* a turn of the worker's loop: see engine.c */
    sink_qs_turn(sw, now_ms);   /* and a quiescent state: engine.c */
    sink_worker_removed(sw);
    if (sw->pool == NULL)
        sink_worker_drain(sw);
    sink_svc_expire(sw, now_ms); /* timers first: one due with the deadline still runs */
    while (sw->n > 0 && sw->heap[0]->deadline_ms <= now_ms) {
        struct sink_ctx *ctx = sw->heap[0];
        sink_pending_remove(sw, ctx);
        int want = SINK_CTX_PENDING;
        /* acq_rel: pairs with the sink's CAS in sink_complete(); whichever
         * wins owns the verdict.  The loser only drops its reference.
         * Acquire on failure: nothing to read, the task brings the answer. */
        if (atomic_compare_exchange_strong_explicit(&ctx->state, &want, SINK_CTX_EXPIRED,
                                                    memory_order_acq_rel, memory_order_acquire))
            sink_expired(ctx);
    }
}
