/*
 * NAME
 *	sink_int - details shared by the files of the sinks module
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 * DESCRIPTION
 *	The engine (engine.c: chains, --bindings), a binding's configuration
 *	(binding.c) and its sink (module.c: builtin table, dlopen), rules
 *	(rule.c), property lists and bags (props.c), statistics (stats.c),
 *	the event context behind the sink.h accessors (ctx.c, and
 *	ctx_transport.c for the queue manager's events, with the syntax
 *	checks of addr.c), the dispatcher with its pending calls and
 *	deadlines (dispatch.c, pending.c), and what a sink tells the operator
 *	(observe.c: sink_log, its counters, calls in flight, the crash note).
 *
 *	Ownership: the engine owns its bindings; a binding owns its rule,
 *	properties, statistics, instance and module handle.  A sink_ctx is
 *	owned by its call while the call dispatches synchronously; once a
 *	handler returns SINK_PENDING it is shared by the engine and the sink
 *	(two references, see dispatch.c) and leaves the call.
 *
 *	Other modules include only sinks/sink.h and sinks/engine.h.  Unit
 *	tests use sink_engine_create_tree() to build an engine from a parsed
 *	tree without the rest of the configuration.
 */
#ifndef SLUICE_SINKS_SINK_INT_H
#define SLUICE_SINKS_SINK_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/base/clock.h"
#include "sched/sched.h"
#include "sinks/engine.h"
#include "sinks/sink.h"

#define SINK_DEADLINE_DEFAULT_MS 5000
#define SINK_DEADLINE_MAX_MS (3600 * 1000) /* an hour: beyond that it is a hang */

/* ---- properties and bags (props.c) ---- */

/* A binding's `properties { }`: keys and values owned, in file order. */
struct sink_props {
    size_t n, cap;
    char **key;
    char **val;
    /* The binding whose create() reads them (set by sink_binding_load for
     * sink_counter()), or NULL. */
    struct sink_binding *owner;
};

struct sink_props *sink_props_new(void);
void sink_props_free(struct sink_props *p);
int sink_props_add(struct sink_props *p, const char *key, const char *val); /* 0 or -ENOMEM */

/* A bag is the same list with set/remove; session and message bags are
 * touched only by their session's worker, the server bag only under the
 * engine's mutex. */
struct sink_bag {
    struct sink_props p;
};
const char *sink_bag_get(const struct sink_bag *b, const char *key);
int sink_bag_set(struct sink_bag *b, const char *key, const char *val); /* NULL val removes */

/* Keys of this prefix are the engine's (sink_prop_set refuses them). */
#define SINK_PROP_RESERVED "sink."

/* ---- signed fields and the edit journal (ctx_guard.c) ---- */
struct sink_ctx;
/* names: colon-separated field names the signature of the calling sink
 * covers; later edits of them in this message answer -EPERM.  0,
 * -ENOTSUP (no message bag: offloaded), -EINVAL, -ENOMEM. */
int sink_header_protect(struct sink_ctx *ctx, const char *names);
/* The accepted edits so far ("<op><name>:<value>\n" lines, op A/R/C), ""
 * if none, NULL without a message bag.  Valid until the next edit. */
const char *sink_header_journal(struct sink_ctx *ctx);
/* 0, or -EPERM with a log line when name is a protected field. */
int sink_edit_guard(const struct sink_ctx *ctx, const struct sink_event_data *d,
                    const char *name);
/* Records an edit the session accepted. */
void sink_edit_journal(const struct sink_event_data *d, enum sink_edit_op op, const char *name,
                       const char *value);

/* ---- rules (rule.c) ---- */

struct sink_rule;
/* NULL with a message in err ("condition 2: unknown key \"FOO\""). */
struct sink_rule *sink_rule_compile(const char *text, char *err, size_t errlen);
void sink_rule_free(struct sink_rule *r);
bool sink_rule_match(const struct sink_rule *r, enum sink_event ev,
                     const struct sink_event_data *d);
/* Case-insensitive glob: `*` any run, `?` one character. */
bool sink_glob_match(const char *pat, const char *s);

/* ---- statistics (stats.c) ---- */

#define SINK_HIST_BUCKETS 22 /* <1us, [1,2), [2,4), ... [2^19,2^20), >= 2^20 us */

/* Relaxed atomic counters, one set per binding on cache lines of its own:
 * every worker adds to them, nobody orders anything by them. */
struct sink_stats {
    _Alignas(SCHED_CACHELINE) _Atomic uint64_t calls;
    _Atomic uint64_t skipped; /* the rule did not match */
    _Atomic uint64_t verdicts[SINK_PENDING + 1];
    _Atomic uint64_t deadline_misses;
    _Atomic uint64_t late;      /* completions after the deadline (or abandon) */
    _Atomic uint64_t bad_reply; /* a reply of the wrong class for its verdict, dropped */
    _Atomic uint64_t hist[SINK_HIST_BUCKETS];
    _Atomic uint64_t latency_ns; /* the sum of what hist counts (metrics' _sum) */
    /* A gauge: calls inside handle() or pending (stats.c: sink_inflight) */
    _Atomic int64_t in_flight;
    /* services (service.c): started, ended (in flight = the difference),
     * cancelled by the call's end, DNS timeouts, DNS answers from cache */
    _Atomic uint64_t svc_started, svc_ended, svc_cancelled, dns_timeouts, dns_cached;
};

struct sink_stats *sink_stats_new(void);
void sink_stats_free(struct sink_stats *st);
void sink_stats_latency(struct sink_stats *st, uint64_t ns);
unsigned sink_stats_bucket(uint64_t ns);
/* The upper bound in microseconds of the bucket holding quantile q
 * (0 < q <= 1) of the histogram, UINT64_MAX for the open last bucket, 0 if
 * the histogram is empty. */
uint64_t sink_stats_quantile_us(const struct sink_stats *st, double q);
/* A call of b entered (+1) or left (-1) handle() or the pending set. */
void sink_inflight(struct sink_binding *b, int d);
/* delta +1: a service started; -1: one ended */
void sink_stats_svc(struct sink_stats *st, int delta);
void sink_stats_svc_cancelled(struct sink_stats *st);
void sink_stats_dns_timeout(struct sink_stats *st);
void sink_stats_dns_cached(struct sink_stats *st);

/* A counter of the sink's own (sink.h: sink_counter), owned by its binding
 * and freed with it; the list is appended by create() and read by the
 * metrics printer, both under the engine's mutex (or before sharing). */
struct sink_counter {
    _Atomic uint64_t value; /* relaxed: an independent counter */
    struct sink_counter *next;
    char *help;
    char name[];
};
void sink_counters_free(struct sink_binding *b);

/* The binding whose sink code runs on this thread, for a crash report
 * (observe.c; sink_crash_describe in engine.h): enter before calling into
 * the sink (what: "handle()", "a timer callback", ...), leave with what enter
 * returned. */
struct sink_crash_note {
    const struct sink_binding *b;
    enum sink_event ev;
    const char *what;
};
struct sink_crash_note sink_crash_enter(const struct sink_binding *b, enum sink_event ev,
                                        const char *what);
void sink_crash_leave(struct sink_crash_note prev);
/* ---- bindings (binding.c, module.c) ---- */

struct sink_binding {
    char *name;
    unsigned line;
    enum sink_event ev; /* a bridge: its first event (statistics, JSON) */
    /* The chains the binding is a link of: SINK_EVMASK(ev), or for a
     * bridge (sink "milter:..."), which names no event, every event its
     * module handles (engine.c, docs/milter.md). */
    uint64_t events;
    bool bridge;
    char *sink; /* "builtin:access" or a path, as configured */
    int priority;
    unsigned order;         /* position in the configuration */
    struct sink_rule *rule; /* NULL: always */
    char *rule_text;
    /* Live switch (live.c): dispatch loads it relaxed before each call; it
     * orders nothing, the binding itself is published by its chain. */
    _Atomic bool enabled;
    uint64_t deadline_ms;
    enum sink_verdict on_deadline; /* CONTINUE, TEMPFAIL or REJECT */
    bool offload;                  /* handle() runs as a stealable scheduler task */
    struct sink_props *props;
    const struct sink_module *mod; /* &mod_copy once loaded */
    struct sink_module mod_copy;   /* the module's descriptor, zero past its size */
    void *inst;
    bool created;             /* create() succeeded: destroy() is owed */
    void *dl;                 /* dlopen handle; NULL for a builtin */
    bool dl_copy;             /* loaded from a private copy (module.c), open on dl_fd */
    int dl_fd;
    struct sink_counter *counters;
    struct sink_stats *stats; /* aligned: its own cache lines */
    bool stats_lent;          /* stats belong to the binding that replaced this one */
    _Atomic bool warned;      /* a bad reply was logged once */
    /* Removed live (sink_engine_remove): its pending calls end at their
     * worker's next turn.  Relaxed store before the engine's removed_gen
     * release; read after that counter's acquire (pending.c). */
    _Atomic bool removed;
    /* Reclamation (engine.c, "Freeing what a change retired"): the epoch
     * that retired it (0: current) and that let it go quiet (0: not yet),
     * the published chains linking it that are not quiet yet (current, or
     * retired and maybe held), and the reclaimer's list; all under e->mu. */
    uint64_t retired_at, quiet_at;
    unsigned nchains;
    struct sink_binding *reap_next;
    /* Pending ctxs of this binding and offloaded handlers running it: an
     * increment by the owner during its turn (relaxed, published by the
     * turn's release store), a release decrement from any thread, an
     * acquire load by the reclaimer.  On a cache line of its own: every
     * pending call writes it, every dispatch reads the fields above. */
    char hold_pad0[SCHED_CACHELINE];
    _Atomic uint32_t holds;
    char hold_pad1[SCHED_CACHELINE - sizeof(uint32_t)];
};

/* Reads one `binding "name" { }` block into b (zeroed by the caller);
 * false with err "binding \"x\" (line N): what". */
bool sink_binding_parse(const struct cfg_node *n, struct sink_binding *b, char *err, size_t errlen);
/* Loads the sink, checks ABI and events, creates the instance. */
bool sink_binding_load(struct sink_binding *b, char *err, size_t errlen);
/* dlclose()s what sink_binding_load opened (b->dl, b->dl_fd). */
void sink_module_close(struct sink_binding *b);
void sink_binding_fini(struct sink_binding *b);
/* The builtin sink called name, or NULL; sink_builtin_names() for messages. */
const struct sink_module *sink_builtin_find(const char *name);
const char *sink_builtin_names(void);

/* Builtins (builtin_*.c). */
extern const struct sink_module sink_builtin_access;
extern const struct sink_module sink_builtin_dkim_sign;
extern const struct sink_module sink_builtin_header;
extern const struct sink_module sink_builtin_delay;
extern const struct sink_module sink_builtin_command;
extern const struct sink_module sink_builtin_noop;
extern const struct sink_module sink_builtin_alias;
extern const struct sink_module sink_builtin_route;
/* The milter bridge (milter.c): a binding whose sink is "milter:ADDRESS";
 * _describe: the steps the milter negotiated last, for --bindings. */
extern const struct sink_module sink_builtin_milter;
void sink_milter_describe(const void *inst, char *buf, size_t len);

/* ---- syntax checks (addr.c) ---- */

/* A mailbox local@domain as it travels in an envelope (no <>). */
bool sink_addr_ok(const char *addr);
/* A next hop in transport-table syntax (core/queue/route.h). */
bool sink_nexthop_ok(const char *spec);

/* ---- the engine (engine.c) ---- */

/* One event's chain: immutable once published (a change publishes a new
 * one and retires this one).  A dispatch may use the one it loaded until
 * its worker's next turn; one that goes pending holds it (holds) until it
 * ends.  Freed by the reclaimer (engine.c) once both are over. */
struct sink_chain {
    unsigned n;
    unsigned server_at;          /* the server runs before link[server_at] */
    uint64_t retired_at;         /* epochs, as for a binding; under e->mu */
    uint64_t quiet_at;
    char hold_pad0[SCHED_CACHELINE];
    _Atomic uint32_t holds;      /* dispatches gone pending on it; as a binding's */
    char hold_pad1[SCHED_CACHELINE - sizeof(uint32_t)];
    struct sink_binding *link[]; /* enabled bindings, in run order */
};

struct sink_engine {
    /* Every current binding, configuration order.  Written only under mu
     * (live.c); read under mu, or by the thread that owns the engine
     * before any other thread exists or any live change is made. */
    struct sink_binding **b;
    size_t nb;
    unsigned next_order;
    /* The chains: release store (sink_chain_publish, under mu) / acquire
     * load (sink_engine_chain, any thread, no lock). */
    _Atomic(struct sink_chain *) chain[SINK_EV_COUNT];
    /* Bit ev: chain[ev] has a link.  Relaxed: a hint for the session
     * (sink_engine_bound); the chain itself is the truth. */
    _Atomic uint32_t bound;
    /* Serializes live changes, the retired lists and the printers. */
    pthread_mutex_t mu;
    /* Replaced chains and replaced or removed bindings: a dispatch or a
     * pending call may still use them; freed by the reclaimer once no
     * worker can (engine.c, "Freeing what a change retired"), or with
     * the engine. */
    struct sink_chain **old_chain;
    size_t nold_chain;
    struct sink_binding **old_b;
    size_t nold_b;
    /* Bumped (release) when a binding is removed live: each worker then
     * ends the pending calls of removed bindings (pending.c). */
    _Atomic uint32_t removed_gen;
    /* The epoch: bumped under mu with a release RMW after each chain
     * store and when the reclaimer needs one more grace period; each
     * worker reads it (acquire) at its turn and publishes what it read
     * (sink_worker.qs_seen).  nretired: how many objects wait, a relaxed
     * hint that tells workers whether to try the reclaimer at all. */
    _Atomic uint64_t epoch;
    _Atomic size_t nretired;
    /* The registered sink workers (sink_worker_create .. _destroy),
     * linked through qs_next; under mu. */
    struct sink_worker *workers;
    /* Names changed since the last sink_engine_save(). */
    char **dirty;
    size_t ndirty;
    /* The server bag: any worker may read or set it at any time.  A mutex,
     * because it is a rare control path (sinks sharing a counter or a
     * flag), values are strings that must be copied under the lock, and
     * a lock-free map would cost more code than it could ever save. */
    pthread_mutex_t server_mu;
    struct sink_bag server_bag;
};

struct sink_engine *sink_engine_create_tree(const struct cfg_node *tree, char *err, size_t errlen);
/* ev's current chain (never NULL); acquire: pairs with sink_chain_publish. */
const struct sink_chain *sink_engine_chain(const struct sink_engine *e, enum sink_event ev);
/* Under e->mu (or before sharing): builds ev's chain from e->b and
 * publishes it, retiring the old one.  false: out of memory, nothing
 * changed.  In two steps: _build (NULL: out of memory; _drop frees an
 * unpublished one) and _commit (cannot fail: the caller has made room
 * for one more chain in e->old_chain). */
bool sink_chain_publish(struct sink_engine *e, enum sink_event ev);
/* The chains of every event in mask (a binding's events), all or none. */
bool sink_chains_publish(struct sink_engine *e, uint64_t mask);
struct sink_chain *sink_chain_build(const struct sink_engine *e, enum sink_event ev);
void sink_chain_drop(struct sink_chain *c);
void sink_chain_commit(struct sink_engine *e, enum sink_event ev, struct sink_chain *c);
/* A binding from block n, not yet in e->b: parsed, its name checked
 * against e->b (except replacing, the binding it is to replace), loaded
 * and created if enabled.  NULL with one line in err and *rc: -EINVAL
 * (the block), -EEXIST (the name), -ENOEXEC (load or create), -ENOMEM. */
struct sink_binding *sink_binding_make(struct sink_engine *e, const struct cfg_node *n,
                                       const struct sink_binding *replacing, int *rc, char *err,
                                       size_t errlen);
void sink_binding_free(struct sink_binding *b);
/* Appends a binding to e->b for every binding block of tree (engine.c). */
bool sink_bindings_read(struct sink_engine *e, const struct cfg_node *tree, char *err,
                        size_t errlen);
/* The calling thread answers sink_engine_bound(e, ...) from the mask as it
 * is now, until the next snapshot (a worker's loop turn); _forget: it
 * reads the mask again (its worker is going away). */
void sink_bound_snapshot(const struct sink_engine *e);
void sink_bound_forget(const struct sink_engine *e);
static inline bool sink_binding_enabled(const struct sink_binding *b)
{
    /* Relaxed: see struct sink_binding. */
    return atomic_load_explicit(&b->enabled, memory_order_relaxed);
}
int sink_event_parse(const char *name); /* the event, or -1 */
/* The server (or queue manager) answers nobody: every verdict counts as
 * CONTINUE and every binding runs (disconnect, out_quit, outcomes). */
bool sink_event_notifies(enum sink_event ev);
/* The session has a handler of its own in the chain (inbound events). */
bool sink_event_has_server(enum sink_event ev);

/* ---- one event in one binding (ctx.c, dispatch.c) ---- */

enum sink_ctx_state {
    SINK_CTX_PENDING,   /* handle() running or answer outstanding */
    SINK_CTX_COMPLETED, /* sink_complete() won: its task owns the ctx */
    SINK_CTX_EXPIRED,   /* the deadline won: the late answer frees it */
    SINK_CTX_ABANDONED, /* the call went away: the late answer frees it */
};

/* Copies of server-bag values handed to a sink, freed with the ctx. */
struct sink_copy {
    struct sink_copy *next;
    char s[];
};

struct sink_ctx {
    struct sched_task task;   /* the completion, run on the owning worker */
    _Atomic int state;        /* enum sink_ctx_state */
    _Atomic int refs;         /* engine + sink while pending */
    _Atomic bool sink_ref;    /* the sink's reference not yet dropped */
    enum sink_verdict answer; /* written before the COMPLETED CAS */
    /* fixed for one handle() call (owner thread) */
    struct sink_engine *e;
    struct sink_binding *b;
    enum sink_event ev;
    const struct sink_event_data *d;
    struct sink_call *call; /* NULL once abandoned */
    struct sink_worker *sw;
    unsigned step;  /* the chain position of this link */
    uint64_t t0_ns; /* when handle() was called */
    uint64_t deadline_ms;
    size_t slot; /* index in sw's pending heap, SIZE_MAX if none */
    /* the binding this ctx holds since it went pending (engine.c), or
     * NULL; released when the ctx is freed or recycled */
    struct sink_binding *held;
    /* offload (offload.c): the handler's task and its own copy of the
     * event, which it may read on any thread while the session moves on */
    struct sched_task run_task;
    bool offloaded;
    struct sink_event_data dv;
    void *dv_mem;                /* the copied strings and recipient array */
    struct sink_msgref *ref;     /* the body, held; NULL if none */
    char *rbuf;                  /* body_at's window over ref */
    struct sink_edit_rec *edits; /* recorded edits, applied on the owner */
    struct sink_copy *copies;
    /* transport edits made outside handle() (ctx_transport.c): applied
     * on the owner when the answer arrives */
    struct sink_tedit *tedits;
    /* services (service.c): pending ones, owner thread only */
    struct sink_svc *svcs;
    bool used_svc; /* a service was started for this call */
    /* the reply set by sink_set_reply() */
    int code;
    char enhanced[16];
    char text[512];
};

void sink_ctx_copies_free(struct sink_ctx *ctx);

/* ctx_transport.c: handle() with ctx marked as being handled on this
 * thread (transport edits then go straight to the queue manager). */
enum sink_verdict sink_ctx_handle(struct sink_ctx *ctx);
/* Applies the recorded transport edits through d (the queue manager's,
 * still parked) on the owner, then forgets them; _free only forgets. */
struct sink_tedit;
void sink_tedit_apply(struct sink_ctx *ctx, const struct sink_event_data *d);
void sink_tedit_free(struct sink_ctx *ctx);
/* Whether code suits verdict v at event ev (response: anything goes). */
bool sink_reply_class_ok(enum sink_event ev, enum sink_verdict v, int code);

/* ---- workers, calls, pending calls (dispatch.c, pending.c) ---- */

/* ---- services (service.c, svc_dns.c) ---- */

/* One pending service of a ctx: a timer, an fd watch or a DNS lookup. */
enum sink_svc_kind { SINK_SVC_TIMER, SINK_SVC_FD, SINK_SVC_DNS };
struct sink_svc {
    sink_svc_id id;
    enum sink_svc_kind kind;
    struct sink_ctx *ctx;
    struct sink_svc *prev, *next; /* the ctx's list */
    void *fn;                     /* sink_timer_fn, sink_fd_fn or sink_dns_fn */
    void *arg;
    uint64_t due_ms; /* timer */
    size_t slot;     /* timer: index in the worker's timer heap */
    int fd;          /* fd watch */
    uint32_t token;  /* fd watch: its poll slot */
    struct sink_dnsq *q; /* DNS: the query it waits on */
    struct sink_svc *qnext; /* DNS: the query's other waiters */
};

/* A poll on the worker's ring: one slot each, kept until its completion
 * arrives (so a token is never reused while the kernel may answer it). */
typedef void sink_poll_fn(struct sink_worker *sw, void *arg, int res);
struct sink_poll {
    sink_poll_fn *fn; /* NULL: free */
    void *arg;
    bool cancelled;
    uint32_t next_free;
};

/* The owner's event loop, as the worker's composer provides it
 * (engine.h: sink_worker_set_io). */
struct sink_dns;
void sink_svc_worker_fini(struct sink_worker *sw);
/* Every pending service of ctx cancelled: each callback runs once with
 * SINK_SVC_CANCELLED (owner thread).  Returns how many there were. */
size_t sink_svc_cancel_all(struct sink_ctx *ctx);
/* Timers due by now_ms fired; the earliest timer or DNS retry (ms). */
void sink_svc_expire(struct sink_worker *sw, uint64_t now_ms);
uint64_t sink_svc_next_ms(const struct sink_worker *sw);
/* Polls for the worker's own use (the resolver's sockets). */
int sink_poll_start(struct sink_worker *sw, int fd, unsigned what, sink_poll_fn *fn, void *arg,
                    uint32_t *token);
void sink_poll_cancel(struct sink_worker *sw, uint32_t token);
/* Runs a service's callback with ctx as inside handle(). */
void sink_ctx_enter(struct sink_ctx *ctx, struct sink_ctx **saved);
void sink_ctx_leave(struct sink_ctx *saved);
bool sink_ctx_cancelling(const struct sink_ctx *ctx);
/* svc_dns.c */
int sink_dns_init(struct sink_worker *sw);
void sink_dns_fini(struct sink_worker *sw);
void sink_dns_expire(struct sink_worker *sw, uint64_t now_ms);
uint64_t sink_dns_next_ms(const struct sink_worker *sw, uint64_t now_ms);
void sink_dns_detach(struct sink_svc *svc); /* a waiter leaves its query */
/* answers a lookup from the cache or starts/join a query; 0 or -errno */
int sink_dns_start(struct sink_worker *sw, struct sink_svc *svc, const char *name, int type);
void sink_svc_dns_done(struct sink_svc *svc, const struct sink_dns_answer *a);
void sink_svc_unlink(struct sink_svc *svc);

struct sink_worker {
    struct sink_engine *e;
    struct sched_pool *pool; /* NULL: completions queue on inbox */
    unsigned index;
    /* Quiescent state (engine.c): the epoch this worker read at its last
     * turn, a release store by the owner, acquire loads by the reclaimer;
     * its link among the engine's workers (under e->mu); when the owner
     * last tried the reclaimer (owner only). */
    _Atomic uint64_t qs_seen;
    struct sink_worker *qs_next;
    uint64_t qs_try_ms;
    struct sched_inbox inbox; /* completions when pool is NULL */
    struct sink_ctx **heap;   /* pending calls, min-heap on deadline_ms */
    size_t n, cap;
    size_t ncalls;
    pthread_t owner; /* the thread that created it: services only there */
    /* services */
    struct sink_io io; /* io.poll NULL: no fd watches (nor DNS) */
    uint64_t next_svc_id;
    struct sink_svc **theap; /* timers, min-heap on due_ms */
    size_t tn, tcap;
    struct sink_poll *polls;
    uint32_t npolls, free_poll; /* free_poll: UINT32_MAX none */
    struct sink_dns *dns;       /* NULL until the first lookup */
    char **dns_servers;
    size_t ndns_servers;
    size_t svc_live;            /* services pending on this worker */
    uint32_t removed_seen;      /* the engine's removed_gen at the last scan */
};

struct sink_call {
    struct sink_worker *sw;
    const struct sink_chain *chain; /* loaded once per dispatch */
    struct sink_ctx *ctx;           /* spare for the next link, or NULL */
    struct sink_ctx *pending;       /* the outstanding link, or NULL */
    bool busy;                      /* a dispatch is under way */
    bool chain_held;                /* chain's holds counts this dispatch (engine.c) */
    enum sink_event ev;
    const struct sink_event_data *d;
    sink_server_fn *server;
    void *sarg;
    sink_done_fn *done;
    void *darg;
    int carried;            /* reply code of a CONTINUE link, kept across the server */
    struct sink_result res; /* the outcome once a link went pending */
};

/* Pending set of the owner (pending.c). */
int sink_pending_add(struct sink_worker *sw, struct sink_ctx *ctx); /* 0 or -ENOMEM */
void sink_pending_remove(struct sink_worker *sw, struct sink_ctx *ctx);
/* Drops one reference; the last frees the ctx. */
void sink_ctx_unref(struct sink_ctx *ctx);
void sink_ctx_free(struct sink_ctx *ctx);
/* Reclamation (engine.c): the hooks the workers and dispatch call.
 * _register/_unregister on the worker's creation and destruction, _turn
 * at every turn of its loop (sink_worker_expire), with nothing of the
 * engine in use but what pending calls hold.  sink_hold_pending when a
 * link goes pending (the dispatch holds its chain, the ctx its binding);
 * sink_ctx_release when a ctx is freed or recycled; sink_call_release
 * when a dispatch ends (finished, or its call destroyed).  A binding held
 * by itself (sink_binding_hold/_release): an offloaded handler running.
 * sink_reclaim frees what no thread can use any more (takes e->mu). */
void sink_qs_register(struct sink_worker *sw);
void sink_qs_unregister(struct sink_worker *sw);
void sink_qs_turn(struct sink_worker *sw, uint64_t now_ms);
void sink_hold_pending(struct sink_call *c, struct sink_ctx *ctx);
void sink_ctx_release(struct sink_ctx *ctx);
void sink_call_release(struct sink_call *c);
void sink_binding_hold(struct sink_binding *b);
void sink_binding_release(struct sink_binding *b);
void sink_reclaim(struct sink_engine *e);
/* Under e->mu: b leaves e->b for the retired list (room made by the caller). */
void sink_binding_retire(struct sink_engine *e, struct sink_binding *b);
/* dispatch.c: the completion task and the deadline path. */
void sink_complete_task(struct sched_task *t);
void sink_expired(struct sink_ctx *ctx);
/* The binding was removed while ctx was pending (on the owner). */
void sink_removed(struct sink_ctx *ctx);
/* live.c: b leaves the engine (removed): its pending calls end. */
void sink_binding_removed(struct sink_engine *e, struct sink_binding *b);
/* offload.c: an offloaded link (binding `offload = true`) */
struct sink_edit_rec;
/* Copies the event into ctx and spawns handle() as a stealable task.
 * false (nothing spawned) when out of memory. */
bool sink_offload_start(struct sink_ctx *ctx, const struct sink_event_data *d);
/* On the owner, when the answer arrives: replays the recorded edits
 * through d (the session's, still alive), then forgets the copy. */
void sink_offload_finish(struct sink_ctx *ctx, const struct sink_event_data *d);
/* Frees what the copy holds (the ctx stays). */
void sink_offload_fini(struct sink_ctx *ctx);

#endif
