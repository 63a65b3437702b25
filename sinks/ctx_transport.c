/*
 * NAME
 *	ctx_transport - the sink.h accessors of the queue manager's events
 * SYNOPSIS
 *	#include "sinks/sink.h"
 *
 *	int sink_rcpt_set(struct sink_ctx *ctx, size_t i, const char *addr);
 *	int sink_rcpt_add(struct sink_ctx *ctx, const char *addr);
 *	int sink_rcpt_remove(struct sink_ctx *ctx, size_t i);
 *	size_t sink_rcpt_index(const struct sink_ctx *ctx);
 *	const char *sink_nexthop(const struct sink_ctx *ctx);
 *	int sink_route_set(struct sink_ctx *ctx, const char *nexthop);
 *	const char *sink_delivery_status(const struct sink_ctx *ctx);
 * DESCRIPTION
 *	Readers answer from the queue manager's sink_event_data where the
 *	event has the datum, and SIZE_MAX / NULL elsewhere.
 *
 *	Edits (recipients at categorize, the next hop at route) are checked
 *	here (the address with sink_addr_ok, the next hop with
 *	sink_nexthop_ok) and then take one of two paths:
 *
 *	- inside handle(), on the thread running it: straight to the queue
 *	  manager's rcpt_edit / route_set callback, which updates d->rcpts
 *	  and d->nrcpt at once, so sink_rcpt() and sink_rcpt_count() show
 *	  the edit.  "Inside handle()" is a thread-local pointer to the ctx
 *	  being handled (sink_ctx_handle): no atomics, and a call from any
 *	  other thread, or after handle() returned, cannot pass for one.
 *	- anywhere else (a PENDING sink's own thread before sink_complete(),
 *	  an offloaded handler): recorded in the ctx and applied on the
 *	  owner by sink_tedit_apply() when the answer arrives, before the
 *	  verdict is taken.  The record does not touch d, which the queue
 *	  manager may already have dropped when a deadline won; the index of
 *	  a recorded edit is checked only when it is applied, and an edit
 *	  that fails then is logged.  The recording is published to the
 *	  owner by sink_complete()'s release CAS, like the reply.  One thread
 *	  at a time may record on one ctx.
 * DIAGNOSTICS
 *	-ENOTSUP at an event without the operation (or no callback from the
 *	queue manager), -EINVAL for a malformed address or next hop, -ENOENT
 *	for a recipient index out of range, -ENOMEM, or what the queue
 *	manager's callback returns.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

#define SINK_TOP_SET 0 /* d->rcpt_edit op codes (engine.h) */
#define SINK_TOP_ADD 1
#define SINK_TOP_REMOVE 2
#define SINK_TOP_ROUTE 3 /* ours: d->route_set */

#define SINK_EVM_INDEX                                                                             \
    (SINK_EVMASK(SINK_EV_ROUTE) | SINK_EVMASK(SINK_EV_OUT_RCPT) | SINK_EVMASK(SINK_EV_DELIVERED) | \
     SINK_EVMASK(SINK_EV_DEFERRED) | SINK_EVMASK(SINK_EV_BOUNCE))
#define SINK_EVM_OUTCOME                                                                           \
    (SINK_EVMASK(SINK_EV_DELIVERED) | SINK_EVMASK(SINK_EV_DEFERRED) | SINK_EVMASK(SINK_EV_BOUNCE))
#define SINK_EVM_NEXTHOP                                                                           \
    (SINK_EVMASK(SINK_EV_ROUTE) | SINK_EVMASK(SINK_EV_OUT_SESSION) |                               \
     SINK_EVMASK(SINK_EV_OUT_MESSAGE) | SINK_EVMASK(SINK_EV_OUT_RCPT) |                            \
     SINK_EVMASK(SINK_EV_OUT_DATA) | SINK_EVMASK(SINK_EV_OUT_QUIT) | SINK_EVM_OUTCOME)

struct sink_tedit {
    struct sink_tedit *next;
    int op;
    size_t i;
    char addr[]; /* "" for a removal */
};

/* The ctx whose handle() runs on this thread, or NULL.  Thread-local: each
 * thread reads only its own, so it needs no synchronisation. */
static _Thread_local struct sink_ctx *sink_handling;

enum sink_verdict sink_ctx_handle(struct sink_ctx *ctx)
{
    struct sink_ctx *outer = sink_handling; /* a handler that dispatches (tests) */
    sink_handling = ctx;
    struct sink_binding *b = ctx->b;
    sink_inflight(b, 1); /* the pending set counts it from here if it goes pending */
    struct sink_crash_note note = sink_crash_enter(b, ctx->ev, "handle()");
    enum sink_verdict v = b->mod->handle(b->inst, ctx);
    sink_crash_leave(note);
    sink_inflight(b, -1);
    sink_handling = outer;
    return v;
}

void sink_ctx_enter(struct sink_ctx *ctx, struct sink_ctx **saved)
{
    *saved = sink_handling;
    sink_handling = ctx;
}

void sink_ctx_leave(struct sink_ctx *saved)
{
    sink_handling = saved;
}

static bool sink_at(const struct sink_ctx *ctx, uint64_t mask)
{
    return (unsigned)ctx->ev < SINK_EV_COUNT && (mask & SINK_EVMASK(ctx->ev)) != 0;
}

/* ---- readers ---- */

size_t sink_rcpt_index(const struct sink_ctx *ctx)
{
    return sink_at(ctx, SINK_EVM_INDEX) ? ctx->d->rcpt_index : SIZE_MAX;
}

const char *sink_nexthop(const struct sink_ctx *ctx)
{
    return sink_at(ctx, SINK_EVM_NEXTHOP) ? ctx->d->nexthop : NULL;
}

const char *sink_delivery_status(const struct sink_ctx *ctx)
{
    return sink_at(ctx, SINK_EVM_OUTCOME) ? ctx->d->status : NULL;
}

/* ---- edits ---- */

static int sink_tedit_record(struct sink_ctx *ctx, int op, size_t i, const char *addr)
{
    size_t n = addr ? strlen(addr) : 0;
    struct sink_tedit *t = malloc(sizeof(*t) + n + 1);
    if (t == NULL)
        return -ENOMEM;
    t->next = NULL;
    t->op = op;
    t->i = i;
    memcpy(t->addr, addr ? addr : "", n + 1);
    struct sink_tedit **pp = &ctx->tedits; /* keep their order */
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = t;
    return 0;
}

/* One edit through the queue manager's callbacks (the owner's thread). */
static int sink_tedit_do(const struct sink_event_data *d, int op, size_t i, const char *addr)
{
    if (op == SINK_TOP_ROUTE)
        return d->route_set ? d->route_set(d->transport_arg, addr) : -ENOTSUP;
    if (d->rcpt_edit == NULL)
        return -ENOTSUP;
    if (op != SINK_TOP_ADD && i >= d->nrcpt)
        return -ENOENT;
    return d->rcpt_edit(d->transport_arg, op, i, op == SINK_TOP_REMOVE ? NULL : addr);
}

static int sink_tedit(struct sink_ctx *ctx, enum sink_event ev, int op, size_t i, const char *addr)
{
    if (ctx->ev != ev)
        return -ENOTSUP;
    if (op == SINK_TOP_ROUTE ? !sink_nexthop_ok(addr)
                             : op != SINK_TOP_REMOVE && !sink_addr_ok(addr))
        return -EINVAL;
    if (sink_handling == ctx)
        return sink_tedit_do(ctx->d, op, i, addr);
    return sink_tedit_record(ctx, op, i, addr);
}

int sink_rcpt_set(struct sink_ctx *ctx, size_t i, const char *addr)
{
    return sink_tedit(ctx, SINK_EV_CATEGORIZE, SINK_TOP_SET, i, addr);
}

int sink_rcpt_add(struct sink_ctx *ctx, const char *addr)
{
    return sink_tedit(ctx, SINK_EV_CATEGORIZE, SINK_TOP_ADD, 0, addr);
}

int sink_rcpt_remove(struct sink_ctx *ctx, size_t i)
{
    return sink_tedit(ctx, SINK_EV_CATEGORIZE, SINK_TOP_REMOVE, i, NULL);
}

int sink_route_set(struct sink_ctx *ctx, const char *nexthop)
{
    return sink_tedit(ctx, SINK_EV_ROUTE, SINK_TOP_ROUTE, 0, nexthop);
}

void sink_tedit_apply(struct sink_ctx *ctx, const struct sink_event_data *d)
{
    for (struct sink_tedit *t = ctx->tedits; t != NULL; t = t->next) {
        int rc = sink_tedit_do(d, t->op, t->i, t->addr);
        if (rc < 0)
            log_msg(LOG_WARN, "sinks: binding \"%s\": %s %s%s failed after handle(): %s",
                    ctx->b->name, sink_event_name(ctx->ev),
                    t->op == SINK_TOP_ROUTE ? "route "
                    : t->op == SINK_TOP_ADD ? "add "
                    : t->op == SINK_TOP_SET ? "set "
                                            : "remove",
                    t->addr, strerror(-rc));
    }
    sink_tedit_free(ctx);
}

void sink_tedit_free(struct sink_ctx *ctx)
{
    struct sink_tedit *t = ctx->tedits;
    while (t != NULL) {
        struct sink_tedit *n = t->next;
        free(t);
        t = n;
    }
    ctx->tedits = NULL;
}
