/*
 * NAME
 *	engine - bindings from the configuration, chains, --bindings
 * SYNOPSIS
 *	#include "sinks/engine.h"
 *
 *	struct sink_engine *sink_engine_create(const struct cfg *cfg, char *err,
 *					       size_t errlen);
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
 *	lists no server line there.  Bindings of the reserved event (auth)
 *	load but never fire.
 *
 *	After creation the engine is read-only, except for the statistics
 *	(stats.c) and the server bag (props.c).
 * DIAGNOSTICS
 *	sink_engine_create() returns NULL with one line in err, starting with
 *	`binding "NAME" (line N): `.
 */
#include "sinks/sink_int.h"

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

bool sink_event_fires(enum sink_event ev)
{
    return ev <= SINK_EV_BOUNCE || ev == SINK_EV_AUTH; /* auth: core/smtp_auth.c */
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

static bool sink_chains_build(struct sink_engine *e)
{
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        struct sink_chain *c = &e->chain[ev];
        for (size_t i = 0; i < e->nb; i++)
            if (e->b[i]->enabled && e->b[i]->ev == (enum sink_event)ev)
                c->n++;
        if (c->n == 0)
            continue;
        if ((c->link = malloc(c->n * sizeof(*c->link))) == NULL)
            return false;
        unsigned k = 0;
        for (size_t i = 0; i < e->nb; i++)
            if (e->b[i]->enabled && e->b[i]->ev == (enum sink_event)ev)
                c->link[k++] = e->b[i];
        qsort(c->link, c->n, sizeof(*c->link), sink_link_cmp);
        while (c->server_at < c->n && c->link[c->server_at]->priority < SINK_PRIORITY_DEFAULT)
            c->server_at++;
    }
    return true;
}

static bool sink_engine_add(struct sink_engine *e, const struct cfg_node *n, char *err,
                            size_t errlen)
{
    struct sink_binding *b = calloc(1, sizeof(*b));
    struct sink_binding **v = realloc(e->b, (e->nb + 1) * sizeof(*v));
    if (b == NULL || v == NULL) {
        free(b);
        snprintf(err, errlen, "binding (line %u): out of memory", cfg_node_line(n));
        return false;
    }
    e->b = v;
    e->b[e->nb++] = b; /* owned by e from here, so a failure below frees it */
    b->order = (unsigned)e->nb;
    if (!sink_binding_parse(n, b, err, errlen))
        return false;
    for (size_t i = 0; i + 1 < e->nb; i++) {
        if (strcmp(e->b[i]->name, b->name) == 0) {
            snprintf(err, errlen,
                     "binding \"%s\" (line %u): duplicate binding name (first at line %u)", b->name,
                     b->line, e->b[i]->line);
            return false;
        }
    }
    if ((b->stats = sink_stats_new()) == NULL) {
        snprintf(err, errlen, "binding \"%s\" (line %u): out of memory", b->name, b->line);
        return false;
    }
    if (!b->enabled)
        return true;
    char lerr[512];
    if (!sink_binding_load(b, lerr, sizeof(lerr))) {
        snprintf(err, errlen, "binding \"%s\" (line %u): %s", b->name, b->line, lerr);
        return false;
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
    for (size_t i = 0; i < cfg_node_count(tree); i++) {
        const struct cfg_node *n = cfg_node_at(tree, i);
        const char *k = cfg_node_key(n);
        if (k == NULL || strcmp(k, "binding") != 0)
            continue;
        if (!sink_engine_add(e, n, err, errlen))
            goto fail;
    }
    if (!sink_chains_build(e)) {
        snprintf(err, errlen, "sinks: out of memory");
        goto fail;
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

void sink_engine_destroy(struct sink_engine *e)
{
    if (e == NULL)
        return;
    /* Later bindings first: the reverse of creation. */
    for (size_t i = e->nb; i-- > 0;) {
        sink_binding_fini(e->b[i]);
        free(e->b[i]);
    }
    free(e->b);
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        free(e->chain[ev].link);
    sink_bag_clear(&e->server_bag);
    pthread_mutex_destroy(&e->server_mu);
    free(e);
}

bool sink_engine_bound(const struct sink_engine *e, enum sink_event ev)
{
    return e != NULL && (unsigned)ev < SINK_EV_COUNT && e->chain[ev].n > 0;
}

/* ---- --bindings ---- */

static void sink_fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static void sink_print_link(const struct sink_binding *b, FILE *f)
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
    fprintf(f, "  deadline %s on_deadline %s%s  (line %u)", dl, od, b->offload ? "  offload" : "",
            b->line);
    for (size_t i = 0; i < sink_props_count(b->props); i++)
        fprintf(f, "%s%s=\"%s\"", i ? " " : "  properties ", sink_props_key(b->props, i),
                sink_props_value(b->props, i));
    fputc('\n', f);
}

void sink_engine_print_bindings(const struct sink_engine *e, FILE *f)
{
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        const struct sink_chain *c = &e->chain[ev];
        bool fires = sink_event_fires((enum sink_event)ev);
        bool server = fires && sink_event_has_server((enum sink_event)ev);
        unsigned ndisabled = 0;
        for (size_t i = 0; i < e->nb; i++)
            if (e->b[i]->ev == (enum sink_event)ev && !e->b[i]->enabled)
                ndisabled++;
        fprintf(f, "%s:%s%s\n", sink_event_name((enum sink_event)ev),
                fires ? "" : " (reserved: bindings load but never fire)",
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
            if (b->ev == (enum sink_event)ev && !b->enabled)
                fprintf(f, "      -  %-20s %s  (disabled, line %u)\n", b->name, b->sink, b->line);
        }
    }
}
