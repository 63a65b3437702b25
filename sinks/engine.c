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
    if (old != NULL && old != &sink_chain_empty)
        e->old_chain[e->nold_chain++] = old; /* room made by the caller */
    /* Release: pairs with the acquire load in sink_engine_chain(); the
     * chain and every binding it links are complete before it is seen. */
    atomic_store_explicit(&e->chain[ev], c, memory_order_release);
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
