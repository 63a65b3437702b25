/*
 * NAME
 *	service - timers and descriptor watches on the session's worker
 * SYNOPSIS
 *	#include "sinks/sink.h"
 *
 *	int sink_timer_start(struct sink_ctx *ctx, uint64_t ms, sink_timer_fn *fn,
 *			     void *arg, sink_svc_id *id);
 *	int sink_fd_watch(struct sink_ctx *ctx, int fd, unsigned what,
 *			  sink_fd_fn *fn, void *arg, sink_svc_id *id);
 *	int sink_svc_cancel(struct sink_ctx *ctx, sink_svc_id id);
 * DESCRIPTION
 *	A service is a struct sink_svc on its ctx's list (owner thread only:
 *	no atomics).  A timer also sits in the worker's min-heap on due_ms,
 *	which sink_worker_expire() (every loop turn) fires and
 *	sink_worker_next_deadline() bounds the loop's wait by.  An fd watch
 *	holds a poll slot: a one-shot poll on the owner's ring (struct
 *	sink_io from the worker's composer), whose completion comes back
 *	through sink_worker_poll_done().  A slot is freed only when its
 *	completion arrives, so a token is never reused while the kernel may
 *	still answer it; a cancelled slot's completion is dropped.  DNS
 *	lookups are in svc_dns.c.
 *
 *	Ending: a service leaves its ctx's list before its callback runs.
 *	sink_svc_cancel_all() (the call ended: deadline, the session's end,
 *	a synchronous verdict returned with services started, or the sink's
 *	completion arrived with others still pending) runs every remaining
 *	callback with SINK_SVC_CANCELLED; sink_complete() is ignored inside
 *	those (sink_ctx_cancelling).  The ctx is freed only after that, so no
 *	callback ever sees a freed ctx.
 *
 *	Callbacks run with ctx marked as being handled on this thread
 *	(sink_ctx_enter), so edits take the same direct path as in handle().
 * DIAGNOSTICS
 *	-EPERM off the owning worker, or when the ctx is not in a pending
 *	call; -ENOTSUP for fd watches without an event loop (sink_io); -EINVAL;
 *	-ENOMEM.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

/* ---- who may start a service ---- */

static int sink_svc_check(struct sink_ctx *ctx, void *fn)
{
    if (ctx == NULL || fn == NULL)
        return -EINVAL;
    struct sink_worker *sw = ctx->sw;
    if (sw == NULL || !pthread_equal(sw->owner, pthread_self()))
        return -EPERM;
    /* Relaxed: the owner's own view; a sink that completed already (or
     * a call that ended) may start nothing more. */
    if (atomic_load_explicit(&ctx->state, memory_order_relaxed) != SINK_CTX_PENDING ||
        sink_ctx_cancelling(ctx) || ctx->offloaded)
        return -EPERM;
    return 0;
}

static struct sink_svc *sink_svc_new(struct sink_ctx *ctx, enum sink_svc_kind kind, void *fn,
                                     void *arg)
{
    struct sink_svc *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    struct sink_worker *sw = ctx->sw;
    s->id = ++sw->next_svc_id;
    s->kind = kind;
    s->ctx = ctx;
    s->fn = fn;
    s->arg = arg;
    s->slot = SIZE_MAX;
    s->fd = -1;
    s->token = UINT32_MAX;
    s->next = ctx->svcs;
    if (ctx->svcs != NULL)
        ctx->svcs->prev = s;
    ctx->svcs = s;
    ctx->used_svc = true;
    sw->svc_live++;
    sink_stats_svc(ctx->b->stats, 1);
    return s;
}

void sink_svc_unlink(struct sink_svc *s)
{
    struct sink_ctx *ctx = s->ctx;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        ctx->svcs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    ctx->sw->svc_live--;
    sink_stats_svc(ctx->b->stats, -1);
}

/* ---- the timer heap ---- */

static void sink_theap_set(struct sink_worker *sw, size_t i, struct sink_svc *s)
{
    sw->theap[i] = s;
    s->slot = i;
}

static void sink_theap_up(struct sink_worker *sw, size_t i)
{
    struct sink_svc *x = sw->theap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (sw->theap[p]->due_ms <= x->due_ms)
            break;
        sink_theap_set(sw, i, sw->theap[p]);
        i = p;
    }
    sink_theap_set(sw, i, x);
}

static void sink_theap_down(struct sink_worker *sw, size_t i)
{
    struct sink_svc *x = sw->theap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t best = x->due_ms;
        if (l < sw->tn && sw->theap[l]->due_ms < best)
            m = l, best = sw->theap[l]->due_ms;
        if (l + 1 < sw->tn && sw->theap[l + 1]->due_ms < best)
            m = l + 1;
        if (m == i)
            break;
        sink_theap_set(sw, i, sw->theap[m]);
        i = m;
    }
    sink_theap_set(sw, i, x);
}

static int sink_theap_add(struct sink_worker *sw, struct sink_svc *s)
{
    if (sw->tn == sw->tcap) {
        size_t cap = sw->tcap ? sw->tcap * 2 : 64;
        struct sink_svc **h = realloc(sw->theap, cap * sizeof(*h));
        if (h == NULL)
            return -ENOMEM;
        sw->theap = h;
        sw->tcap = cap;
    }
    sw->theap[sw->tn] = s;
    sink_theap_up(sw, sw->tn++);
    return 0;
}

static void sink_theap_remove(struct sink_worker *sw, struct sink_svc *s)
{
    size_t i = s->slot;
    if (i == SIZE_MAX)
        return;
    s->slot = SIZE_MAX;
    struct sink_svc *last = sw->theap[--sw->tn];
    if (i == sw->tn)
        return;
    sink_theap_set(sw, i, last);
    sink_theap_up(sw, i);
    sink_theap_down(sw, last->slot);
}

/* ---- polls ---- */

int sink_poll_start(struct sink_worker *sw, int fd, unsigned what, sink_poll_fn *fn, void *arg,
                    uint32_t *token)
{
    if (sw->io.poll == NULL)
        return -ENOTSUP;
    if (sw->free_poll == UINT32_MAX) {
        uint32_t n = sw->npolls ? sw->npolls * 2 : 64;
        struct sink_poll *p = realloc(sw->polls, n * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        for (uint32_t i = sw->npolls; i < n; i++) {
            p[i].fn = NULL;
            p[i].next_free = i + 1 < n ? i + 1 : UINT32_MAX;
        }
        sw->polls = p;
        sw->free_poll = sw->npolls;
        sw->npolls = n;
    }
    uint32_t t = sw->free_poll;
    struct sink_poll *p = &sw->polls[t];
    int rc = sw->io.poll(sw->io.arg, fd, what, t);
    if (rc < 0)
        return rc;
    sw->free_poll = p->next_free;
    p->fn = fn;
    p->arg = arg;
    p->cancelled = false;
    *token = t;
    return 0;
}

void sink_poll_cancel(struct sink_worker *sw, uint32_t token)
{
    if (token >= sw->npolls || sw->polls[token].fn == NULL || sw->polls[token].cancelled)
        return;
    sw->polls[token].cancelled = true;
    sw->io.poll_cancel(sw->io.arg, token); /* its completion frees the slot */
}

void sink_worker_poll_done(struct sink_worker *sw, uint32_t token, int res)
{
    if (token >= sw->npolls || sw->polls[token].fn == NULL) {
        log_msg(LOG_WARN, "sinks: worker %u: completion of unknown poll %u", sw->index,
                (unsigned)token);
        return;
    }
    struct sink_poll p = sw->polls[token];
    sw->polls[token].fn = NULL;
    sw->polls[token].next_free = sw->free_poll;
    sw->free_poll = token;
    if (!p.cancelled)
        p.fn(sw, p.arg, res);
}

/* ---- running callbacks ---- */

/* Thread-local: the ctx whose services are being cancelled on this
 * thread (sink_complete() is ignored for it meanwhile). */
static _Thread_local const struct sink_ctx *sink_cancelling_ctx;


/* A service ended (it ran or was cancelled): off every list, then its
 * callback, then freed. */
static void sink_svc_fire(struct sink_svc *s, int status, int fd, const struct sink_dns_answer *a)
{
    struct sink_ctx *ctx = s->ctx;
    sink_svc_unlink(s);
    struct sink_dns_answer cancelled = {.status = SINK_DNS_CANCELLED, .error = "cancelled"};
    /* Relaxed: the owner's own view.  The sink answered (from another
     * callback) while this one was on its way: it runs as cancelled, its
     * completion task cancels the rest. */
    bool ended = atomic_load_explicit(&ctx->state, memory_order_relaxed) != SINK_CTX_PENDING &&
                 !sink_ctx_cancelling(ctx);
    const struct sink_ctx *outer = sink_cancelling_ctx;
    if (ended) {
        status = SINK_SVC_CANCELLED;
        if (a != NULL)
            a = &cancelled;
        sink_cancelling_ctx = ctx;
    }
    struct sink_ctx *saved;
    sink_ctx_enter(ctx, &saved);
    static const char *const what[] = {[SINK_SVC_TIMER] = "a timer callback",
                                       [SINK_SVC_FD] = "an fd watch callback",
                                       [SINK_SVC_DNS] = "a DNS callback"};
    struct sink_crash_note note = sink_crash_enter(ctx->b, ctx->ev, what[s->kind]);
    switch (s->kind) {
    case SINK_SVC_TIMER:
        ((sink_timer_fn *)s->fn)(ctx, s->arg, status);
        break;
    case SINK_SVC_FD:
        ((sink_fd_fn *)s->fn)(ctx, s->arg, fd, status);
        break;
    case SINK_SVC_DNS:
        ((sink_dns_fn *)s->fn)(ctx, s->arg, a);
        break;
    }
    sink_crash_leave(note);
    sink_ctx_leave(saved);
    sink_cancelling_ctx = outer;
    free(s);
}

void sink_svc_dns_done(struct sink_svc *s, const struct sink_dns_answer *a)
{
    s->q = NULL;
    sink_svc_fire(s, 0, -1, a);
}

static void sink_svc_fd_ready(struct sink_worker *sw, void *arg, int res)
{
    (void)sw;
    struct sink_svc *s = arg;
    int st = 0;
    if (res < 0)
        st = SINK_FD_ERROR;
    else {
        if (res & POLLIN)
            st |= SINK_FD_READ;
        if (res & POLLOUT)
            st |= SINK_FD_WRITE;
        if (res & (POLLERR | POLLHUP | POLLNVAL))
            st |= SINK_FD_ERROR;
        if (st == 0)
            st = SINK_FD_ERROR;
    }
    s->token = UINT32_MAX;
    sink_svc_fire(s, st, s->fd, NULL);
}


bool sink_ctx_cancelling(const struct sink_ctx *ctx)
{
    return ctx != NULL && sink_cancelling_ctx == ctx;
}

size_t sink_svc_cancel_all(struct sink_ctx *ctx)
{
    size_t n = 0;
    const struct sink_ctx *outer = sink_cancelling_ctx;
    sink_cancelling_ctx = ctx;
    while (ctx->svcs != NULL) {
        struct sink_svc *s = ctx->svcs;
        struct sink_worker *sw = ctx->sw;
        struct sink_dns_answer a = {.status = SINK_DNS_CANCELLED, .error = "cancelled"};
        switch (s->kind) {
        case SINK_SVC_TIMER:
            sink_theap_remove(sw, s);
            break;
        case SINK_SVC_FD:
            sink_poll_cancel(sw, s->token);
            break;
        case SINK_SVC_DNS:
            sink_dns_detach(s);
            break;
        }
        sink_stats_svc_cancelled(ctx->b->stats);
        sink_svc_fire(s, SINK_SVC_CANCELLED, s->fd, &a);
        n++;
    }
    sink_cancelling_ctx = outer;
    return n;
}

/* ---- the API ---- */

int sink_timer_start(struct sink_ctx *ctx, uint64_t ms, sink_timer_fn *fn, void *arg,
                     sink_svc_id *id)
{
    int rc = sink_svc_check(ctx, (void *)fn);
    if (rc < 0)
        return rc;
    if (ms > SINK_DEADLINE_MAX_MS)
        return -EINVAL;
    struct sink_svc *s = sink_svc_new(ctx, SINK_SVC_TIMER, (void *)fn, arg);
    if (s == NULL)
        return -ENOMEM;
    s->due_ms = clock_mono_ms() + ms;
    if (sink_theap_add(ctx->sw, s) < 0) {
        sink_svc_unlink(s);
        free(s);
        return -ENOMEM;
    }
    if (id != NULL)
        *id = s->id;
    return 0;
}

int sink_fd_watch(struct sink_ctx *ctx, int fd, unsigned what, sink_fd_fn *fn, void *arg,
                  sink_svc_id *id)
{
    int rc = sink_svc_check(ctx, (void *)fn);
    if (rc < 0)
        return rc;
    if (fd < 0 || what == 0 || (what & ~(SINK_FD_READ | SINK_FD_WRITE)) != 0)
        return -EINVAL;
    struct sink_svc *s = sink_svc_new(ctx, SINK_SVC_FD, (void *)fn, arg);
    if (s == NULL)
        return -ENOMEM;
    s->fd = fd;
    rc = sink_poll_start(ctx->sw, fd, what, sink_svc_fd_ready, s, &s->token);
    if (rc < 0) {
        sink_svc_unlink(s);
        free(s);
        return rc;
    }
    if (id != NULL)
        *id = s->id;
    return 0;
}

int sink_dns_lookup(struct sink_ctx *ctx, const char *name, enum sink_dns_type type,
                    sink_dns_fn *fn, void *arg, sink_svc_id *id)
{
    int rc = sink_svc_check(ctx, (void *)fn);
    if (rc < 0)
        return rc;
    if (name == NULL || name[0] == '\0' || strlen(name) > 254)
        return -EINVAL;
    switch (type) {
    case SINK_DNS_A:
    case SINK_DNS_AAAA:
    case SINK_DNS_MX:
    case SINK_DNS_TXT:
    case SINK_DNS_PTR:
    case SINK_DNS_TLSA:
        break;
    default:
        return -EINVAL;
    }
    if (ctx->sw->io.poll == NULL)
        return -ENOTSUP;
    struct sink_svc *s = sink_svc_new(ctx, SINK_SVC_DNS, (void *)fn, arg);
    if (s == NULL)
        return -ENOMEM;
    sink_svc_id sid = s->id;
    /* A cached answer runs the callback inside this call, after which s
     * is gone: the id was taken first. */
    rc = sink_dns_start(ctx->sw, s, name, (int)type);
    if (rc < 0) {
        sink_svc_unlink(s);
        free(s);
        return rc;
    }
    if (id != NULL)
        *id = sid;
    return 0;
}

int sink_svc_cancel(struct sink_ctx *ctx, sink_svc_id id)
{
    if (ctx == NULL || ctx->sw == NULL || !pthread_equal(ctx->sw->owner, pthread_self()))
        return -EPERM;
    for (struct sink_svc *s = ctx->svcs; s != NULL; s = s->next) {
        if (s->id != id)
            continue;
        switch (s->kind) {
        case SINK_SVC_TIMER:
            sink_theap_remove(ctx->sw, s);
            break;
        case SINK_SVC_FD:
            sink_poll_cancel(ctx->sw, s->token);
            break;
        case SINK_SVC_DNS:
            sink_dns_detach(s);
            break;
        }
        sink_svc_unlink(s);
        free(s);
        return 0;
    }
    return -ENOENT;
}

uint64_t sink_deadline_ms(const struct sink_ctx *ctx)
{
    return ctx->b->deadline_ms;
}

uint64_t sink_time_left_ms(const struct sink_ctx *ctx)
{
    uint64_t end = ctx->t0_ns / 1000000u + ctx->b->deadline_ms;
    uint64_t now = clock_mono_ms();
    return now >= end ? 0 : end - now;
}

/* ---- the worker's side ---- */

int sink_worker_set_io(struct sink_worker *sw, const struct sink_io *io,
                       const char *const *dns_servers, size_t ndns_servers)
{
    if (io == NULL || io->poll == NULL || io->poll_cancel == NULL)
        return -EINVAL;
    char **v = NULL;
    if (ndns_servers > 0) {
        if ((v = calloc(ndns_servers, sizeof(*v))) == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < ndns_servers; i++) {
            if ((v[i] = strdup(dns_servers[i])) == NULL) {
                while (i > 0)
                    free(v[--i]);
                free(v);
                return -ENOMEM;
            }
        }
    }
    sw->io = *io;
    sw->dns_servers = v;
    sw->ndns_servers = ndns_servers;
    return 0;
}

size_t sink_worker_services(const struct sink_worker *sw)
{
    return sw->svc_live;
}

void sink_svc_expire(struct sink_worker *sw, uint64_t now_ms)
{
    /* A callback may start new timers: only those due now run now; a
     * 0 ms timer started by a callback waits for the next turn. */
    size_t budget = sw->tn;
    while (sw->tn > 0 && sw->theap[0]->due_ms <= now_ms && budget-- > 0) {
        struct sink_svc *s = sw->theap[0];
        sink_theap_remove(sw, s);
        sink_svc_fire(s, 0, -1, NULL);
    }
    if (sw->dns != NULL)
        sink_dns_expire(sw, now_ms);
}

uint64_t sink_svc_next_ms(const struct sink_worker *sw)
{
    uint64_t d = sw->tn > 0 ? sw->theap[0]->due_ms : UINT64_MAX;
    if (sw->dns != NULL) {
        uint64_t x = sink_dns_next_ms(sw, clock_mono_ms());
        if (x < d)
            d = x;
    }
    return d;
}

void sink_svc_worker_fini(struct sink_worker *sw)
{
    sink_dns_fini(sw); /* its polls are cancelled; their slots go below */
    if (sw->tn > 0 || sw->svc_live > 0)
        log_msg(LOG_WARN, "sinks: worker %u ends with %zu services pending", sw->index,
                sw->svc_live);
    free(sw->theap);
    free(sw->polls);
    for (size_t i = 0; i < sw->ndns_servers; i++)
        free(sw->dns_servers[i]);
    free(sw->dns_servers);
}
