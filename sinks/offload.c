/*
 * NAME
 *	offload - running a binding's handler as a stealable scheduler task
 * SYNOPSIS
 *	binding "scan" { event = "eod"; sink = "./scan.so"; offload = true; }
 * DESCRIPTION
 *	By default a handler runs on the worker that owns the session, inline
 *	in the chain.  A binding with `offload = true` instead has its handler
 *	spawned as a task on the work-stealing scheduler (sched_spawn_shared:
 *	onto the worker's deque, where an idle worker steals it), and
 *	the chain waits for the answer exactly as for a PENDING handler: the
 *	session is parked, the deadline runs, and the verdict comes back to
 *	the owner through sink_complete() (its inbox).  That is for sinks that
 *	burn CPU (content scanning, signatures): the worker keeps serving its
 *	sockets while another core runs the handler.
 *
 *	The handler must not read the session's memory from another thread
 *	while the owner goes on (a deadline, a disconnect), so it gets its own
 *	copy of the event: the strings and recipients copied into one block,
 *	the body through a held reference (d->body_hold: any thread), header
 *	edits recorded in the ctx and replayed on the owner when the answer
 *	arrives in time (dropped when the deadline settled the chain first).
 *	Session and message property bags are not available to an offloaded
 *	handler (sink_prop_* answer -ENOTSUP); the server bag is.  Recipient
 *	and route edits (categorize, route) are recorded too and applied on
 *	the owner with the answer (ctx_transport.c); the copy's recipient
 *	list does not show them.
 *
 *	Ownership: everything here belongs to the ctx and is freed with it
 *	(sink_offload_fini), on whichever side drops the last reference.
 *	The task holds the binding (engine.c) until handle() has returned,
 *	and owns the ctx only until handle() returns: once a handler
 *	answered PENDING its completion may already have arrived and the
 *	owner recycled or freed the ctx, so the task reads nothing of it
 *	after (issue 10; tests/sinks/test_offload.c, pending_answer_...).
 * DIAGNOSTICS
 *	Out of memory while copying: the link runs inline instead.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SINK_OFFLOAD_WINDOW (64u * 1024)

struct sink_edit_rec {
    struct sink_edit_rec *next;
    enum sink_edit_op op;
    char *name;
    char *value;
};

static void sink_offload_task(struct sched_task *t)
{
    struct sink_ctx *ctx = (struct sink_ctx *)((char *)t - offsetof(struct sink_ctx, run_task));
    /* held for this task by sink_offload_start: the ctx's own hold may go
     * with the ctx while handle() is still running here */
    struct sink_binding *b = ctx->b;
    struct sink_crash_note note = sink_crash_enter(b, ctx->ev, "handle()");
    enum sink_verdict v = b->mod->handle(b->inst, ctx);
    sink_crash_leave(note);
    if (v != SINK_PENDING) {
        /* A synchronous verdict: nobody else completes this ctx, so it
         * is still ours (the owner may have dropped its reference:
         * deadline). */
        if (ctx->copies != NULL)
            sink_ctx_copies_free(ctx);
        sink_complete(ctx, v); /* the ctx is not ours after this */
    }
    /* PENDING: not a byte of ctx from here: its sink_complete() may have
     * come (from the sink's thread, or from handle() itself) before
     * handle() returned, and the owner may have run the completion and
     * recycled or freed the ctx already.  Its server-bag copies go with it
     * there (sink_complete_task, sink_ctx_free). */
    sink_binding_release(b); /* engine.c: the binding and its module may go now */
}

static int sink_offload_body_at(void *arg, uint64_t off, const char **p, size_t *len)
{
    struct sink_ctx *ctx = arg;
    uint64_t size = ctx->ref->ops->size(ctx->ref);
    *len = 0;
    if (off >= size)
        return 0;
    if (ctx->rbuf == NULL && (ctx->rbuf = malloc(SINK_OFFLOAD_WINDOW)) == NULL)
        return -ENOMEM;
    size_t want = size - off < SINK_OFFLOAD_WINDOW ? (size_t)(size - off) : SINK_OFFLOAD_WINDOW;
    ssize_t r = ctx->ref->ops->read(ctx->ref, off, ctx->rbuf, want);
    if (r < 0)
        return (int)r;
    *p = ctx->rbuf;
    *len = (size_t)r;
    return 0;
}

static int sink_offload_edit(void *arg, enum sink_edit_op op, const char *name, const char *value)
{
    struct sink_ctx *ctx = arg;
    struct sink_edit_rec *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    e->op = op;
    e->name = strdup(name);
    e->value = value ? strdup(value) : NULL;
    if (e->name == NULL || (value != NULL && e->value == NULL)) {
        free(e->name);
        free(e->value);
        free(e);
        return -ENOMEM;
    }
    struct sink_edit_rec **pp = &ctx->edits; /* keep their order */
    while (*pp)
        pp = &(*pp)->next;
    *pp = e;
    return 0;
}

/* One block: the pointer array for the recipients, then every string. */
static size_t sink_sz(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *sink_put(char **at, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*at, s, n);
    const char *r = *at;
    *at += n;
    return r;
}

bool sink_offload_start(struct sink_ctx *ctx, const struct sink_event_data *d)
{
    const char *const str[] = {d->client_addr, d->helo,       d->tls,         d->auth_user,
                               d->auth_password, d->verb,     d->args,        d->sender,
                               d->mail_params,  d->rcpt,      d->reply_text,  d->nexthop,
                               d->status};
    size_t need = d->nrcpt * sizeof(char *);
    for (size_t i = 0; i < sizeof(str) / sizeof(str[0]); i++)
        need += sink_sz(str[i]);
    for (size_t i = 0; i < d->nrcpt; i++)
        need += sink_sz(d->rcpts[i]);
    char *mem = malloc(need ? need : 1);
    if (mem == NULL)
        return false;
    struct sink_event_data *v = &ctx->dv;
    *v = *d;
    const char **rc = (const char **)(void *)mem;
    char *at = mem + d->nrcpt * sizeof(char *);
    v->client_addr = sink_put(&at, d->client_addr);
    v->helo = sink_put(&at, d->helo);
    v->tls = sink_put(&at, d->tls);
    v->auth_user = sink_put(&at, d->auth_user);
    v->auth_password = sink_put(&at, d->auth_password);
    v->verb = sink_put(&at, d->verb);
    v->args = sink_put(&at, d->args);
    v->sender = sink_put(&at, d->sender);
    v->mail_params = sink_put(&at, d->mail_params);
    v->rcpt = sink_put(&at, d->rcpt);
    v->reply_text = sink_put(&at, d->reply_text);
    v->nexthop = sink_put(&at, d->nexthop);
    v->status = sink_put(&at, d->status);
    for (size_t i = 0; i < d->nrcpt; i++)
        rc[i] = sink_put(&at, d->rcpts[i]);
    v->rcpts = d->nrcpt ? rc : NULL;
    ctx->dv_mem = mem;
    ctx->ref = d->body_hold != NULL ? d->body_hold(d->body_arg) : NULL;
    v->body_at = ctx->ref != NULL ? sink_offload_body_at : NULL;
    v->body_hold = NULL; /* a handler that wants to keep the body past its answer: run inline */
    v->edit = d->edit != NULL ? sink_offload_edit : NULL;
    v->body_arg = ctx;
    v->session_bag = v->message_bag = NULL;
    /* transport edits from this thread are recorded (ctx_transport.c) and
     * applied on the owner: the queue manager's callbacks are its own */
    v->rcpt_edit = NULL;
    v->route_set = NULL;
    v->transport_arg = NULL;
    ctx->edits = NULL;
    ctx->offloaded = true;
    ctx->d = v;
    ctx->run_task.fn = sink_offload_task;
    /* The task holds the binding until handle() has returned: a removed
     * binding's module must not be closed under a running handler, and
     * the thief may be no sink worker at all (engine.c). */
    sink_binding_hold(ctx->b);
    /* onto the deque, stealable at once; the push publishes the ctx to
     * whichever worker runs the task (release push, acquire steal/pop) */
    if (sched_spawn_shared(ctx->sw->pool, &ctx->run_task) < 0) {
        sink_offload_task(&ctx->run_task); /* no room to queue: run it here */
    }
    return true;
}

void sink_offload_finish(struct sink_ctx *ctx, const struct sink_event_data *d)
{
    for (struct sink_edit_rec *e = ctx->edits; e != NULL; e = e->next)
        if (d->edit != NULL && sink_edit_guard(ctx, d, e->name) == 0 &&
            d->edit(d->body_arg, e->op, e->name, e->value) == 0)
            sink_edit_journal(d, e->op, e->name, e->value);
    sink_offload_fini(ctx);
}

void sink_offload_fini(struct sink_ctx *ctx)
{
    if (!ctx->offloaded)
        return;
    struct sink_edit_rec *e = ctx->edits;
    while (e != NULL) {
        struct sink_edit_rec *n = e->next;
        free(e->name);
        free(e->value);
        free(e);
        e = n;
    }
    ctx->edits = NULL;
    if (ctx->ref != NULL)
        ctx->ref->ops->release(ctx->ref);
    ctx->ref = NULL;
    free(ctx->rbuf);
    ctx->rbuf = NULL;
    if (ctx->dv.auth_password != NULL) /* the copy in dv_mem: wipe it */
        explicit_bzero((char *)ctx->dv.auth_password, strlen(ctx->dv.auth_password));
    free(ctx->dv_mem);
    ctx->dv_mem = NULL;
    ctx->offloaded = false;
}
