/*
 * NAME
 *	engine - bindings from the configuration, chains, --bindings
 * SYNOPSIS
 *	#include "sinks/engine.h"
 *
 *	struct sink_engine *sink_engine_create(const struct cfg *cfg, char *err,
 *					       size_t errlen);
 *	struct sink_engine *sink_engine_load(const char *path, char *err,
 *					     size_t errlen);
 *	void sink_engine_print_bindings(const struct sink_engine *e, FILE *f);
 * DESCRIPTION
 *	sink_engine_create() reads every top-level `binding "NAME" { }`
 *	block in file order (binding.c), refuses a name used twice, loads
 *	the sink of each enabled binding and creates its instance
 *	(module.c).  A disabled binding is parsed and checked but its sink
 *	is neither loaded nor created, so an operator can switch off a
 *	binding whose module is broken or missing.
 *
 *	Then one chain per event: the enabled bindings of that event sorted
 *	by priority, equal priorities in configuration order.  The server's
 *	own handler runs after every binding with priority < 24575 and
 *	before every binding with priority >= 24575: a binding at the
 *	default priority runs after the server.  The queue manager's events
 *	(precategorize .. bounce) have no server link: the queue manager
 *	passes no handler and acts on the chain's verdict, so --bindings
 *	lists no server line there, nor at auth, whose chain decides alone
 *	(core/smtpd/smtp_auth.c).
 *
 *	Each chain is an immutable array behind an atomic pointer: live
 *	changes (live.c) build and publish a new one under the engine's
 *	mutex and retire the old one; dispatch loads it without a lock.
 *	sink_engine_bound() answers from a bit mask kept with the chains,
 *	snapshotted per worker turn (see sink_bound_snapshot below).
 *
 *	Freeing what a change retired (quiescent states, with holds).  A
 *	retired chain or binding may still be in use by: a dispatch on a
 *	worker that loaded the old chain during its current loop turn; a
 *	dispatch gone pending (it keeps its chain across turns: the chain's
 *	holds count it, sink_hold_pending .. sink_call_release); a pending
 *	ctx, on any thread (a late sink_complete() reads its binding; the
 *	binding's holds count the ctx until it is freed or recycled); an
 *	offloaded handler running on another thread (it holds its binding
 *	itself, offload.c).  Every sink_worker is registered here and, at
 *	each turn of its loop (sink_worker_expire: the smtpd workers'
 *	after_tasks hook, the queue manager's loop), reads the epoch
 *	(acquire) and publishes it in qs_seen (release): "I have read epoch
 *	E, and nothing I loaded before is still in use except what I hold".
 *	Every dispatch runs on a registered worker's own thread; the other
 *	threads that touch bindings (sinks' threads completing, thieves of
 *	offloaded handlers, the metrics and control threads) do so through a
 *	hold or under mu.  A worker waiting for work still turns every
 *	second (net/worker.c's tick, QMGR_TICK_MS).
 *
 *	Each chain store bumps the epoch (a release RMW after the release
 *	store of the chain) and tags the chain it replaced with the new
 *	value; a binding taken out of e->b is tagged with the epoch of the
 *	store that unlinked it.  The reclaimer (under mu: at the end of a
 *	live change, and from a worker's turn at most every 100 ms while
 *	anything waits) takes min, the smallest qs_seen, and:
 *	  1. an object tagged <= min is out of reach of every fresh load:
 *	     new holds can only come from a held chain.  So when its holds are
 *	     0 (acquire load, pairing with the release decrements) and, for a
 *	     binding, every chain that links it is quiet (nchains counts the
 *	     others), it is quiet for good; it gets quiet_at = the next epoch,
 *	     which is bumped (chains first: a binding goes quiet in the same
 *	     pass as its last chain, never before it);
 *	  2. an object with quiet_at <= min is freed: every worker has turned
 *	     since its last hold went, so the last holder's uses in the same
 *	     turn (a name in a result, a callback after the release) are over.
 *	     Chains first, so no chain outlives a binding it links.
 *	Why the orders suffice: a hold is taken on the owner during a turn in
 *	which the object was reachable; either that turn read an epoch below
 *	the object's tag (the reclaimer waits for the next turn's release
 *	store, which the increment precedes) or the object sits in a held
 *	chain (nchains > 0).  A release decrement happens-before the
 *	reclaimer's acquire load that sees 0; the bump after that load is a
 *	release read by the workers' acquire, so a worker cannot have
 *	published quiet_at before that hold was dropped.  A binding's
 *	destroy() runs under mu (never beside a create()), on the thread that
 *	made a live change or on a worker at the end of its turn.
 * DIAGNOSTICS
 *	sink_engine_create() returns NULL with one line in err, starting with
 *	`binding "NAME" (line N): `.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *const sink_event_names[SINK_EV_COUNT] = {
    [SINK_EV_CONNECT] = "connect",
    [SINK_EV_HELO] = "helo",
    [SINK_EV_MAIL] = "mail",
    [SINK_EV_RCPT] = "rcpt",
    [SINK_EV_DATA] = "data",
    [SINK_EV_EOD] = "eod",
    [SINK_EV_COMMAND] = "command",
    [SINK_EV_RESPONSE] = "response",
    [SINK_EV_DISCONNECT] = "disconnect",
    [SINK_EV_SUBMISSION] = "submission",
    [SINK_EV_PRECATEGORIZE] = "precategorize",
    [SINK_EV_CATEGORIZE] = "categorize",
    [SINK_EV_POSTCATEGORIZE] = "postcategorize",
    [SINK_EV_ROUTE] = "route",
    [SINK_EV_OUT_SESSION] = "out_session",
    [SINK_EV_OUT_MESSAGE] = "out_message",
    [SINK_EV_OUT_RCPT] = "out_rcpt",
    [SINK_EV_OUT_DATA] = "out_data",
    [SINK_EV_OUT_QUIT] = "out_quit",
    [SINK_EV_DELIVERED] = "delivered",
    [SINK_EV_DEFERRED] = "deferred",
    [SINK_EV_BOUNCE] = "bounce",
    [SINK_EV_AUTH] = "auth",
};

const char *sink_event_name(enum sink_event ev)
{
    return (unsigned)ev < SINK_EV_COUNT ? sink_event_names[ev] : "?";
}

int sink_event_parse(const char *name)
{
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        if (strcmp(sink_event_names[ev], name) == 0)
            return ev;
    return -1;
}

bool sink_event_notifies(enum sink_event ev)
{
    return ev == SINK_EV_DISCONNECT || ev == SINK_EV_OUT_QUIT || ev == SINK_EV_DELIVERED ||
           ev == SINK_EV_DEFERRED || ev == SINK_EV_BOUNCE;
}

bool sink_event_has_server(enum sink_event ev)
{
    /* the queue manager's events run without one: it acts on the verdict */
    return ev < SINK_EV_PRECATEGORIZE;
}

/*
 * Every function of the sink ABI, referenced from here so that linking the
 * engine out of the static archive links all of them: shared-object sinks
 * resolve them against the executable at dlopen time, and a test program
 * that only calls the engine would otherwise lack the ones it never names.
 */
typedef void sink_any_fn(void);
/* clang-format off */
__attribute__((used)) sink_any_fn *const sink_abi_keep[] = {
    (sink_any_fn *)sink_props_get,      (sink_any_fn *)sink_props_get_int,
    (sink_any_fn *)sink_props_get_bool, (sink_any_fn *)sink_props_count,
    (sink_any_fn *)sink_props_key,      (sink_any_fn *)sink_props_value,
    (sink_any_fn *)sink_event,          (sink_any_fn *)sink_event_name,
    (sink_any_fn *)sink_binding_name,   (sink_any_fn *)sink_client_addr,
    (sink_any_fn *)sink_helo,           (sink_any_fn *)sink_tls,
    (sink_any_fn *)sink_auth_user,      (sink_any_fn *)sink_command_verb,
    (sink_any_fn *)sink_command_args,   (sink_any_fn *)sink_sender,
    (sink_any_fn *)sink_mail_params,    (sink_any_fn *)sink_rcpt_count,
    (sink_any_fn *)sink_rcpt,           (sink_any_fn *)sink_rcpt_current,
    (sink_any_fn *)sink_set_reply,      (sink_any_fn *)sink_response_code,
    (sink_any_fn *)sink_response_text,  (sink_any_fn *)sink_message_id,
    (sink_any_fn *)sink_body_size,      (sink_any_fn *)sink_body_begin,
    (sink_any_fn *)sink_body_next,      (sink_any_fn *)sink_header_get,
    (sink_any_fn *)sink_header_add,     (sink_any_fn *)sink_header_remove,
    (sink_any_fn *)sink_header_change,  (sink_any_fn *)sink_message_hold,
    (sink_any_fn *)sink_msgref_size,    (sink_any_fn *)sink_msgref_read,
    (sink_any_fn *)sink_msgref_release, (sink_any_fn *)sink_prop_get,
    (sink_any_fn *)sink_prop_set,       (sink_any_fn *)sink_complete,
    (sink_any_fn *)sink_rcpt_set,       (sink_any_fn *)sink_rcpt_add,
    (sink_any_fn *)sink_rcpt_remove,    (sink_any_fn *)sink_rcpt_index,
    (sink_any_fn *)sink_nexthop,        (sink_any_fn *)sink_route_set,
    (sink_any_fn *)sink_delivery_status,
};
/* clang-format on */

/* Run order: priority, then configuration order (a stable sort). */
static int sink_link_cmp(const void *a, const void *b)
{
    const struct sink_binding *x = *(struct sink_binding *const *)a;
    const struct sink_binding *y = *(struct sink_binding *const *)b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * What the session asks before each event (sink_engine_bound) must not
 * change under it in the middle of one command: it decides once where a
 * candidate lives and again whether the chain runs.  So a worker thread
 * answers from a snapshot of the bound mask taken at its loop's turn
 * (sink_worker_expire, sink_worker_next_deadline): a change shows there
 * at the worker's next turn.  Other threads read the mask itself.
 */
static _Thread_local const struct sink_engine *sink_tl_engine;
static _Thread_local uint32_t sink_tl_bound;

void sink_bound_snapshot(const struct sink_engine *e)
{
    sink_tl_engine = e;
    /* Relaxed: a hint, see struct sink_engine. */
    sink_tl_bound = e ? atomic_load_explicit(&e->bound, memory_order_relaxed) : 0;
}

void sink_bound_forget(const struct sink_engine *e)
{
    if (sink_tl_engine == e)
        sink_tl_engine = NULL;
}

static uint32_t sink_bound_mask(const struct sink_engine *e)
{
    if (sink_tl_engine == e)
        return sink_tl_bound;
    return atomic_load_explicit(&e->bound, memory_order_relaxed); /* a hint, as above */
}

/* The chain of an event without bindings: shared, never freed. */
static struct sink_chain sink_chain_empty;

const struct sink_chain *sink_engine_chain(const struct sink_engine *e, enum sink_event ev)
{
    /* Acquire: pairs with the release store in sink_chain_publish(), so
     * the links and the bindings they point at are seen fully built. */
    return atomic_load_explicit(&e->chain[ev], memory_order_acquire);
}

struct sink_chain *sink_chain_build(const struct sink_engine *e, enum sink_event ev)
{
    unsigned n = 0;
    for (size_t i = 0; i < e->nb; i++)
        if (sink_binding_enabled(e->b[i]) && (e->b[i]->events & SINK_EVMASK(ev)))
            n++;
    if (n == 0)
        return &sink_chain_empty;
    struct sink_chain *c = malloc(sizeof(*c) + n * sizeof(c->link[0]));
    if (c == NULL)
        return NULL;
    c->n = 0;
    c->server_at = 0;
    c->retired_at = c->quiet_at = 0;
    atomic_init(&c->holds, 0); /* not shared yet */
    for (size_t i = 0; i < e->nb; i++)
        if (sink_binding_enabled(e->b[i]) && (e->b[i]->events & SINK_EVMASK(ev)))
            c->link[c->n++] = e->b[i];
    qsort(c->link, c->n, sizeof(c->link[0]), sink_link_cmp);
    while (c->server_at < c->n && c->link[c->server_at]->priority < SINK_PRIORITY_DEFAULT)
        c->server_at++;
    return c;
}

void sink_chain_drop(struct sink_chain *c)
{
    if (c != &sink_chain_empty)
        free(c); /* NULL too */
}

void sink_chain_commit(struct sink_engine *e, enum sink_event ev, struct sink_chain *c)
{
    /* Relaxed: only the thread holding mu writes chain[]. */
    struct sink_chain *old = atomic_load_explicit(&e->chain[ev], memory_order_relaxed);
    for (unsigned i = 0; i < c->n; i++)
        c->link[i]->nchains++;
    /* Release: pairs with the acquire load in sink_engine_chain(); the
     * chain and every binding it links are complete before it is seen. */
    atomic_store_explicit(&e->chain[ev], c, memory_order_release);
    /* Release: pairs with the acquire load of a worker's turn
     * (sink_qs_turn): a worker that reads this epoch or a later one loads
     * c, not old, from then on.  See "Freeing what a change retired". */
    uint64_t t = atomic_fetch_add_explicit(&e->epoch, 1, memory_order_release) + 1;
    if (old != NULL && old != &sink_chain_empty) {
        old->retired_at = t;
        e->old_chain[e->nold_chain++] = old; /* room made by the caller */
        /* Relaxed: a hint (see struct sink_engine). */
        atomic_fetch_add_explicit(&e->nretired, 1, memory_order_relaxed);
    }
    uint32_t bit = 1u << ev;
    /* Relaxed: a hint (see struct sink_engine); writers hold mu. */
    if (c->n > 0)
        atomic_fetch_or_explicit(&e->bound, bit, memory_order_relaxed);
    else
        atomic_fetch_and_explicit(&e->bound, ~bit, memory_order_relaxed);
}

bool sink_chain_publish(struct sink_engine *e, enum sink_event ev)
{
    struct sink_chain **v = realloc(e->old_chain, (e->nold_chain + 1) * sizeof(*v));
    if (v == NULL)
        return false;
    e->old_chain = v;
    struct sink_chain *c = sink_chain_build(e, ev);
    if (c == NULL)
        return false;
    sink_chain_commit(e, ev, c);
    return true;
}

bool sink_chains_publish(struct sink_engine *e, uint64_t mask)
{
    struct sink_chain *c[SINK_EV_COUNT] = {0};
    size_t k = 0;
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        k += (mask & SINK_EVMASK(ev)) != 0;
    struct sink_chain **v = realloc(e->old_chain, (e->nold_chain + k) * sizeof(*v));
    if (v == NULL)
        return false;
    e->old_chain = v;
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        if (!(mask & SINK_EVMASK(ev)))
            continue;
        if ((c[ev] = sink_chain_build(e, (enum sink_event)ev)) == NULL) {
            for (int j = 0; j < ev; j++)
                sink_chain_drop(c[j]);
            return false;
        }
    }
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        if (mask & SINK_EVMASK(ev))
            sink_chain_commit(e, (enum sink_event)ev, c[ev]);
    return true;
}

void sink_binding_free(struct sink_binding *b)
{
    if (b != NULL) {
        sink_binding_fini(b);
        free(b);
    }
}

struct sink_binding *sink_binding_make(struct sink_engine *e, const struct cfg_node *n,
                                       const struct sink_binding *replacing, int *rc, char *err,
                                       size_t errlen)
{
    struct sink_binding *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        snprintf(err, errlen, "binding (line %u): out of memory", cfg_node_line(n));
        *rc = -ENOMEM;
        return NULL;
    }
    b->order = ++e->next_order;
    *rc = -EINVAL;
    if (!sink_binding_parse(n, b, err, errlen))
        goto fail;
    for (size_t i = 0; i < e->nb; i++) {
        if (e->b[i] != replacing && strcmp(e->b[i]->name, b->name) == 0) {
            snprintf(err, errlen,
                     "binding \"%s\" (line %u): duplicate binding name (first at line %u)", b->name,
                     b->line, e->b[i]->line);
            *rc = -EEXIST;
            goto fail;
        }
    }
    if ((b->stats = sink_stats_new()) == NULL) {
        snprintf(err, errlen, "binding \"%s\" (line %u): out of memory", b->name, b->line);
        *rc = -ENOMEM;
        goto fail;
    }
    if (sink_binding_enabled(b)) {
        char lerr[512];
        if (!sink_binding_load(b, lerr, sizeof(lerr))) {
            snprintf(err, errlen, "binding \"%s\" (line %u): %s", b->name, b->line, lerr);
            *rc = -ENOEXEC;
            goto fail;
        }
    }
    *rc = 0;
    return b;
fail:
    sink_binding_free(b);
    return NULL;
}

bool sink_bindings_read(struct sink_engine *e, const struct cfg_node *tree, char *err,
                        size_t errlen)
{
    for (size_t i = 0; i < cfg_node_count(tree); i++) {
        const struct cfg_node *n = cfg_node_at(tree, i);
        const char *k = cfg_node_key(n);
        if (k == NULL || strcmp(k, "binding") != 0)
            continue;
        int rc;
        struct sink_binding *b = sink_binding_make(e, n, NULL, &rc, err, errlen);
        struct sink_binding **v = b ? realloc(e->b, (e->nb + 1) * sizeof(*v)) : NULL;
        if (v == NULL) {
            if (b != NULL)
                snprintf(err, errlen, "binding \"%s\" (line %u): out of memory", b->name, b->line);
            sink_binding_free(b);
            return false;
        }
        e->b = v;
        e->b[e->nb++] = b;
    }
    return true;
}

struct sink_engine *sink_engine_create_tree(const struct cfg_node *tree, char *err, size_t errlen)
{
    struct sink_engine *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(err, errlen, "sinks: out of memory");
        return NULL;
    }
    pthread_mutex_init(&e->server_mu, NULL);
    pthread_mutex_init(&e->mu, NULL);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) /* relaxed: not shared yet */
        atomic_store_explicit(&e->chain[ev], &sink_chain_empty, memory_order_relaxed);
    if (!sink_bindings_read(e, tree, err, errlen))
        goto fail;
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        if (!sink_chain_publish(e, (enum sink_event)ev)) {
            snprintf(err, errlen, "sinks: out of memory");
            goto fail;
        }
    }
    return e;
fail:
    sink_engine_destroy(e);
    return NULL;
}

struct sink_engine *sink_engine_create(const struct cfg *cfg, char *err, size_t errlen)
{
    return sink_engine_create_tree(cfg ? cfg->tree : NULL, err, errlen);
}

struct sink_engine *sink_engine_load(const char *path, char *err, size_t errlen)
{
    struct cfg *cfg = cfg_load(path, NULL, 0, err, errlen);
    if (cfg == NULL)
        return NULL;
    struct sink_engine *e = sink_engine_create(cfg, err, errlen);
    cfg_destroy(cfg); /* the engine keeps nothing of the tree (binding.c copies) */
    return e;
}

void sink_engine_destroy(struct sink_engine *e)
{
    if (e == NULL)
        return;
    /* Later bindings first: the reverse of creation; the retired ones
     * (replaced or removed while running) after the current ones. */
    for (size_t i = e->nb; i-- > 0;)
        sink_binding_free(e->b[i]);
    free(e->b);
    for (size_t i = e->nold_b; i-- > 0;)
        sink_binding_free(e->old_b[i]);
    free(e->old_b);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        struct sink_chain *c = atomic_load_explicit(&e->chain[ev], memory_order_relaxed);
        if (c != &sink_chain_empty)
            free(c);
    }
    for (size_t i = 0; i < e->nold_chain; i++)
        free(e->old_chain[i]);
    free(e->old_chain);
    for (size_t i = 0; i < e->ndirty; i++)
        free(e->dirty[i]);
    free(e->dirty);
    sink_bag_clear(&e->server_bag);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->server_mu);
    free(e);
}

bool sink_engine_bound(const struct sink_engine *e, enum sink_event ev)
{
    if (e == NULL || (unsigned)ev >= SINK_EV_COUNT)
        return false;
    return (sink_bound_mask(e) >> ev) & 1u;
}

/* ---- freeing what a change retired ---- */

/* How often (at most) a worker's turn tries the reclaimer while anything
 * waits: a pass walks the retired lists under the engine's mutex. */
#define SINK_RECLAIM_EVERY_MS 100

void sink_qs_register(struct sink_worker *sw)
{
    struct sink_engine *e = sw->e;
    pthread_mutex_lock(&e->mu);
    /* Relaxed both: the epoch changes only under mu, held here, and the
     * reclaimer reads qs_seen under mu too.  The worker has used nothing
     * of the engine yet, so it is quiescent at the current epoch. */
    atomic_store_explicit(&sw->qs_seen, atomic_load_explicit(&e->epoch, memory_order_relaxed),
                          memory_order_relaxed);
    sw->qs_next = e->workers;
    e->workers = sw;
    pthread_mutex_unlock(&e->mu);
}

void sink_qs_unregister(struct sink_worker *sw)
{
    struct sink_engine *e = sw->e;
    pthread_mutex_lock(&e->mu);
    for (struct sink_worker **pp = &e->workers; *pp != NULL; pp = &(*pp)->qs_next) {
        if (*pp == sw) {
            *pp = sw->qs_next;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
}

void sink_binding_hold(struct sink_binding *b)
{
    /* Relaxed: taken by a registered worker during its turn, on a binding
     * it reached through a chain it loaded this turn or holds; its next
     * turn's release store publishes it before the reclaimer could
     * decide anything on the binding (see the DESCRIPTION). */
    atomic_fetch_add_explicit(&b->holds, 1, memory_order_relaxed);
}

void sink_binding_release(struct sink_binding *b)
{
    /* Release: this thread's uses of b come before; pairs with the
     * reclaimer's acquire load of holds. */
    atomic_fetch_sub_explicit(&b->holds, 1, memory_order_release);
}

void sink_hold_pending(struct sink_call *c, struct sink_ctx *ctx)
{
    if (!c->chain_held) {
        /* A chain with a link is never the shared empty one; holds is the
         * only field anyone writes after publication. */
        struct sink_chain *ch = (struct sink_chain *)c->chain;
        /* Relaxed: as in sink_binding_hold. */
        atomic_fetch_add_explicit(&ch->holds, 1, memory_order_relaxed);
        c->chain_held = true;
    }
    if (ctx->held != ctx->b) {
        if (ctx->held != NULL) /* a spare ctx that went pending before (offload fallback) */
            sink_binding_release(ctx->held);
        sink_binding_hold(ctx->b);
        ctx->held = ctx->b;
    }
}

void sink_ctx_release(struct sink_ctx *ctx)
{
    if (ctx->held != NULL) {
        sink_binding_release(ctx->held);
        ctx->held = NULL;
    }
}

void sink_call_release(struct sink_call *c)
{
    if (c->chain_held) {
        struct sink_chain *ch = (struct sink_chain *)c->chain;
        /* Release: as in sink_binding_release. */
        atomic_fetch_sub_explicit(&ch->holds, 1, memory_order_release);
        c->chain_held = false;
    }
}

void sink_binding_retire(struct sink_engine *e, struct sink_binding *b)
{
    /* Relaxed: under mu, the only writer; the epoch of the chain store
     * that unlinked b (it is in no chain published after it). */
    b->retired_at = atomic_load_explicit(&e->epoch, memory_order_relaxed);
    e->old_b[e->nold_b++] = b; /* room made by the caller */
    atomic_fetch_add_explicit(&e->nretired, 1, memory_order_relaxed); /* a hint */
}

/* b is about to be freed: if its statistics are its own and another
 * binding still shares them (an older version of it, replaced earlier and
 * still held), that one owns them from now on. */
static void sink_stats_handover(struct sink_engine *e, struct sink_binding *b)
{
    if (b->stats_lent || b->stats == NULL)
        return;
    for (size_t i = 0; i < e->nold_b + e->nb; i++) {
        struct sink_binding *o = i < e->nold_b ? e->old_b[i] : e->b[i - e->nold_b];
        if (o->stats == b->stats) {
            o->stats_lent = false;
            b->stats_lent = true;
            return;
        }
    }
}

/* One pass over the retired lists, under mu.  Frees the chains whose time
 * has come and returns the bindings to free (linked by reap_next); *bump:
 * it started one more grace period. */
static struct sink_binding *sink_reclaim_pass(struct sink_engine *e, bool *bump)
{
    /* Relaxed: the epoch changes only under mu. */
    uint64_t now = atomic_load_explicit(&e->epoch, memory_order_relaxed);
    uint64_t min = now; /* the oldest epoch a worker may still be in */
    for (const struct sink_worker *sw = e->workers; sw != NULL; sw = sw->qs_next) {
        /* Acquire: pairs with the release store of the worker's turn. */
        uint64_t seen = atomic_load_explicit(&sw->qs_seen, memory_order_acquire);
        if (seen < min)
            min = seen;
    }
    uint64_t next = now + 1;
    *bump = false;
    size_t k = 0;
    for (size_t i = 0; i < e->nold_chain; i++) {
        struct sink_chain *c = e->old_chain[i];
        if (c->quiet_at != 0 && c->quiet_at <= min) {
            free(c);
            continue;
        }
        /* Acquire: pairs with the release decrements; see the DESCRIPTION. */
        if (c->quiet_at == 0 && c->retired_at <= min &&
            atomic_load_explicit(&c->holds, memory_order_acquire) == 0) {
            c->quiet_at = next;
            *bump = true;
            for (unsigned j = 0; j < c->n; j++) /* nobody can reach them through c now */
                c->link[j]->nchains--;
        }
        e->old_chain[k++] = c;
    }
    e->nold_chain = k;
    struct sink_binding *reap = NULL;
    k = 0;
    for (size_t i = 0; i < e->nold_b; i++) {
        struct sink_binding *b = e->old_b[i];
        if (b->quiet_at != 0 && b->quiet_at <= min) {
            b->reap_next = reap;
            reap = b;
            continue;
        }
        if (b->quiet_at == 0 && b->retired_at <= min && b->nchains == 0 &&
            atomic_load_explicit(&b->holds, memory_order_acquire) == 0) { /* as above */
            b->quiet_at = next;
            *bump = true;
        }
        e->old_b[k++] = b;
    }
    e->nold_b = k;
    for (struct sink_binding *b = reap; b != NULL; b = b->reap_next)
        sink_stats_handover(e, b);
    if (*bump) /* Release: as in sink_chain_commit; see the DESCRIPTION. */
        atomic_fetch_add_explicit(&e->epoch, 1, memory_order_release);
    atomic_store_explicit(&e->nretired, e->nold_chain + e->nold_b, memory_order_relaxed);
    return reap;
}

/* Under mu: the sinks' destroy() never runs beside a create() or another
 * destroy(), as before bindings could be freed while running. */
static void sink_reap(struct sink_binding *reap)
{
    while (reap != NULL) {
        struct sink_binding *next = reap->reap_next;
        sink_binding_free(reap);
        reap = next;
    }
}

/* Under mu. */
static void sink_reclaim_locked(struct sink_engine *e)
{
    bool bump;
    sink_reap(sink_reclaim_pass(e, &bump));
    if (bump && e->workers == NULL) /* nobody to wait for: the second pass frees */
        sink_reap(sink_reclaim_pass(e, &bump));
}

void sink_reclaim(struct sink_engine *e)
{
    pthread_mutex_lock(&e->mu);
    sink_reclaim_locked(e);
    pthread_mutex_unlock(&e->mu);
}

void sink_qs_turn(struct sink_worker *sw, uint64_t now_ms)
{
    struct sink_engine *e = sw->e;
    /* Acquire: pairs with the release bumps (sink_chain_commit, the
     * reclaimer): every chain loaded from here on is one published at or
     * after this epoch. */
    uint64_t ep = atomic_load_explicit(&e->epoch, memory_order_acquire);
    /* Relaxed load: the owner's own store.  Release store: every use this
     * thread made of chains and bindings it does not hold comes before
     * it; pairs with the reclaimer's acquire load.  Stored only when the
     * epoch moved: what was retired at or before the old value cannot be
     * reached from here on anyway. */
    if (atomic_load_explicit(&sw->qs_seen, memory_order_relaxed) != ep)
        atomic_store_explicit(&sw->qs_seen, ep, memory_order_release);
    /* Relaxed: a hint; a missed object waits for the next try. */
    if (atomic_load_explicit(&e->nretired, memory_order_relaxed) == 0 ||
        now_ms - sw->qs_try_ms < SINK_RECLAIM_EVERY_MS)
        return;
    sw->qs_try_ms = now_ms;
    if (pthread_mutex_trylock(&e->mu) != 0)
        return; /* a live change or a printer: the next try */
    sink_reclaim_locked(e);
    pthread_mutex_unlock(&e->mu);
}

/* ---- --bindings ---- */

static void sink_fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static void sink_print_full(const struct sink_binding *b, FILE *f)
{
    char dl[32];
    sink_fmt_ms(dl, sizeof(dl), b->deadline_ms);
    const char *od = b->on_deadline == SINK_CONTINUE ? "continue"
                     : b->on_deadline == SINK_REJECT ? "reject"
                                                     : "tempfail";
    fprintf(f, "  %5d  %-20s %s", b->priority, b->name, b->sink);
    if (b->mod != NULL && b->mod->name != NULL && strncmp(b->sink, "builtin:", 8) != 0)
        fprintf(f, " (module \"%s\")", b->mod->name);
    if (b->rule_text != NULL)
        fprintf(f, "  rule \"%s\"", b->rule_text);
    if (b->line != 0)
        fprintf(f, "  deadline %s on_deadline %s%s  (line %u)", dl, od,
                b->offload ? "  offload" : "", b->line);
    else
        fprintf(f, "  deadline %s on_deadline %s%s  (added live)", dl, od,
                b->offload ? "  offload" : "");
    for (size_t i = 0; i < sink_props_count(b->props); i++)
        fprintf(f, "%s%s=\"%s\"", i ? " " : "  properties ", sink_props_key(b->props, i),
                sink_props_value(b->props, i));
    fputc('\n', f);
}

static void sink_print_link(const struct sink_binding *b, FILE *f)
{
    if (b->bridge) /* printed once, after the chains */
        fprintf(f, "  %5d  %-20s %s  (a bridge: see below)\n", b->priority, b->name, b->sink);
    else
        sink_print_full(b, f);
}

/* Bindings on several events (milter:): once each, with the steps. */
static void sink_print_bridges(const struct sink_engine *e, FILE *f)
{
    bool any = false;
    for (size_t i = 0; i < e->nb; i++) {
        const struct sink_binding *b = e->b[i];
        if (!b->bridge)
            continue;
        if (!any)
            fprintf(f, "bridges:\n");
        any = true;
        if (!sink_binding_enabled(b)) {
            fprintf(f, "      -  %-20s %s  (disabled)\n", b->name, b->sink);
            continue;
        }
        sink_print_full(b, f);
        char steps[256] = "";
        if (b->created && b->mod == &sink_builtin_milter)
            sink_milter_describe(b->inst, steps, sizeof(steps));
        fprintf(f, "         steps: %s\n", steps);
    }
}

void sink_engine_print_bindings(const struct sink_engine *e, FILE *f)
{
    /* The mutex is not part of the engine's value: a printer only waits
     * for a live change to finish. */
    pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu;
    pthread_mutex_lock(mu);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        const struct sink_chain *c = sink_engine_chain(e, (enum sink_event)ev);
        bool server = sink_event_has_server((enum sink_event)ev);
        unsigned ndisabled = 0;
        for (size_t i = 0; i < e->nb; i++)
            if ((e->b[i]->events & SINK_EVMASK(ev)) && !sink_binding_enabled(e->b[i]))
                ndisabled++;
        fprintf(f, "%s:%s\n", sink_event_name((enum sink_event)ev),
                c->n == 0 && ndisabled == 0 ? " no bindings" : "");
        if (c->n == 0 && ndisabled == 0)
            continue;
        for (unsigned i = 0; i <= c->n; i++) {
            if (i == c->server_at && server)
                fprintf(f, "  %5d  %-20s (the server's own handler)\n", SINK_PRIORITY_DEFAULT,
                        "server");
            if (i < c->n)
                sink_print_link(c->link[i], f);
        }
        for (size_t i = 0; i < e->nb; i++) {
            const struct sink_binding *b = e->b[i];
            if (!(b->events & SINK_EVMASK(ev)) || sink_binding_enabled(b))
                continue;
            if (b->line != 0)
                fprintf(f, "      -  %-20s %s  (disabled, line %u)\n", b->name, b->sink, b->line);
            else
                fprintf(f, "      -  %-20s %s  (disabled, added live)\n", b->name, b->sink);
        }
    }
    sink_print_bridges(e, f);
    pthread_mutex_unlock(mu);
}
