/*
 * NAME
 *	engine - the daemon's side of event sinks: bindings, chains, dispatch
 * SYNOPSIS
 *	#include "sinks/engine.h"
 * DESCRIPTION
 *	sink_engine_create() reads every `binding "NAME" { ... }` block of the
 *	configuration tree, loads each sink (`builtin:NAME` or a path to a
 *	shared object exporting SINK_ENTRY_SYMBOL, refused unless its
 *	abi_version is SINK_ABI_VERSION), creates one instance per binding with
 *	its properties, and builds one chain per event, sorted by priority
 *	(equal priorities keep configuration order) with the server's own
 *	handler at SINK_PRIORITY_DEFAULT.  The engine is shared by every
 *	worker.  Live changes (enable, disable, setprop, add, remove, reload;
 *	live.c) publish new chains under the engine's mutex while dispatch
 *	reads them without a lock; statistics are lock-free (relaxed atomic
 *	counters and a latency histogram per binding); the server property
 *	bag has a mutex (a rare control path).
 *
 *	Each worker has a sink_worker: its pending calls (a handler returned
 *	SINK_PENDING) and their deadlines.  A completion made on another thread
 *	is posted to the owning worker through the scheduler
 *	(sched_post: the worker's inbox, and a wake of its ring); a call past
 *	its deadline is settled by sink_worker_expire() with the binding's
 *	on_deadline verdict, and the late completion is then ignored.
 *
 *	The session describes an event with a sink_event_data (borrowed; for a
 *	call that goes pending it must stay valid until done runs: the session
 *	parks meanwhile) and runs the chain with sink_dispatch().
 *
 *	Shutdown order: every sink_call of a worker, then the sink_workers
 *	(on their owner threads, still attached to the pool: completions
 *	already queued are run then), then the engine (each sink's destroy()
 *	waits for its own threads), and only then the sched pool, which a
 *	completing thread may still be touching inside sched_post().
 */
#ifndef SLUICE_SINKS_ENGINE_H
#define SLUICE_SINKS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/cfg/cfg.h"
#include "sinks/sink.h"

struct sched_pool;
struct sink_engine;
struct sink_worker;
struct sink_call;
struct sink_bag;

/* ---- engine (main thread) ---- */

/* NULL with one line in err: "binding \"x\" (sluice.conf:12): sink ./y.so: ..." */
struct sink_engine *sink_engine_create(const struct cfg *cfg, char *err, size_t errlen);
/* The bindings of a configuration file (path; NULL: none), read as sluiced
 * reads it (defaults and checks of every setting included), for a program
 * that wants an engine and nothing else of the configuration: sink-bench,
 * tools.  The engine keeps nothing of the file.  NULL with one line in err
 * (the configuration's message, or the engine's). */
struct sink_engine *sink_engine_load(const char *path, char *err, size_t errlen);
void sink_engine_destroy(struct sink_engine *e);
/* Adds m (borrowed, static) as builtin:NAME for every engine made after:
 * 0, -EEXIST, -ENOSPC, -EINVAL (tests, benchmarks, embedders). */
int sink_builtin_register(const struct sink_module *m);
/* Any enabled binding on ev (the session skips the engine entirely when
 * there is none: no cost without sinks). */
bool sink_engine_bound(const struct sink_engine *e, enum sink_event ev);
/* Whether the configuration has any binding block at all. */
bool sink_engine_has_bindings(const struct sink_engine *e);
/* `sluiced --bindings`: the resolved chain of every event, the server's own
 * handler included, one line per link. */
void sink_engine_print_bindings(const struct sink_engine *e, FILE *f);
/* Per-binding counters: calls, each verdict, deadline misses, latency
 * histogram (µs buckets); on SIGUSR2 and at exit. */
void sink_engine_print_stats(const struct sink_engine *e, FILE *f);
/* The same counters as numbers, for the metrics endpoint (any thread; each
 * value is one the counter had, relaxed reads).  Bindings are numbered
 * 0 .. count-1 in configuration order; name and event are borrowed from
 * the engine: the binding is held (a live change may retire it, but it is
 * not freed) until sink_engine_binding_stats_release(out).  hist[k]
 * counts latencies in [2^(k-1), 2^k) us (k = 0: below 1 us; the last
 * bucket: 2^(SINK_STATS_BUCKETS-2) us and more); latency_ns is their sum. */
#define SINK_STATS_BUCKETS 22
struct sink_binding_stats {
    const void *held; /* the binding, NULL once released */
    const char *name;
    const char *event;
    bool enabled;
    uint64_t calls, skipped;
    uint64_t verdicts[SINK_PENDING + 1]; /* by enum sink_verdict */
    uint64_t deadline_misses, late, bad_reply;
    uint64_t hist[SINK_STATS_BUCKETS];
    uint64_t latency_ns;
    int64_t in_flight; /* a gauge: calls inside handle() or pending */
    /* services (sink.h): started, pending now, cancelled by the call's
     * end (deadline, session gone), DNS lookups that timed out, DNS
     * answers served from the worker's cache */
    uint64_t svc_started, svc_in_flight, svc_cancelled, dns_timeouts, dns_cached;
};
size_t sink_engine_binding_count(const struct sink_engine *e);
/* false: no binding i (any more: a live remove since the count). */
bool sink_engine_binding_stats(const struct sink_engine *e, size_t i,
                               struct sink_binding_stats *out);
void sink_engine_binding_stats_release(struct sink_binding_stats *out);
/* "continue", "consumed", "reject", ... (lower case) */
const char *sink_verdict_name(enum sink_verdict v);
/* The counters sinks published (sink.h: sink_counter), binding by binding
 * in configuration order: fn runs under the engine's mutex (it must not
 * call back into the engine); the strings are borrowed for the call. */
typedef void sink_counter_fn(void *arg, const char *binding, const char *name, const char *help,
                             uint64_t value);
void sink_engine_counters(const struct sink_engine *e, sink_counter_fn *fn, void *arg);
/* Async-signal-safe: which binding's sink code this thread is running
 * ("in binding \"x\" (sink ./x.so), handle() at event mail"), in buf
 * (NUL-terminated); its length, 0 when none (the crash is not in a sink). */
size_t sink_crash_describe(char *buf, size_t len);

/* ---- live changes (live.c; any thread, serialized by the engine) ----
 *
 * The smtpreg verbs on the running engine.  Each returns 0, or a negative
 * errno with one line in err and nothing changed: -ENOENT no such binding
 * (or property, deleting), -EEXIST the name is taken (add), -EINVAL bad
 * block text or key (the parser's message), -ENOEXEC the sink did not
 * load or its create() failed, -ENOMEM.  Dispatch takes no lock: it sees
 * a change at its next dispatch (a disabled link also at its next call);
 * sink_engine_bound() on a worker thread at the worker's next loop turn.
 * Replaced or removed bindings (and their instances) are freed once every
 * worker has turned and their pending calls are over (engine.c): those
 * complete normally. */
int sink_engine_set_enabled(struct sink_engine *e, const char *name, bool on, char *err,
                            size_t errlen);
/* A new instance with the property set (value NULL: removed, smtpreg's
 * delprop) replaces the binding's; it keeps its statistics. */
/* Makes binding name again from its own block (sluicectl bindings reload):
 * its sink is loaded and created anew; on error the old one stays. */
int sink_engine_rebind(struct sink_engine *e, const char *name, char *err, size_t errlen);
int sink_engine_setprop(struct sink_engine *e, const char *name, const char *key,
                        const char *value, char *err, size_t errlen);
/* block_text: one `binding "NAME" { event = ...; sink = ...; ... }` (borrowed). */
int sink_engine_add(struct sink_engine *e, const char *block_text, char *err, size_t errlen);
int sink_engine_remove(struct sink_engine *e, const char *name, char *err, size_t errlen);
/* Replaces every binding with those of cfg (SIGHUP), all or nothing;
 * bindings of the same name keep their statistics. */
int sink_engine_reload(struct sink_engine *e, const struct cfg *cfg, char *err, size_t errlen);
/* Writes the bindings changed since creation, reload or the last save back
 * to conf_path (re-read now): each changed block is rewritten in a
 * canonical form, a removed one deleted, a new one appended; every other
 * byte of the file is kept; the file is replaced atomically
 * (core/cfg/cfg_edit.h).  0 when nothing changed.  On error the changes stay
 * live and marked, so a later save may still write them. */
int sink_engine_save(struct sink_engine *e, const char *conf_path, char *err, size_t errlen);

/* ---- per worker (its owner thread only, except where said) ---- */

/* pool: the scheduler whose worker `index` is this worker (completions
 * from other threads are posted there). */
struct sink_worker *sink_worker_create(struct sink_engine *e, struct sched_pool *pool,
                                       unsigned index);
void sink_worker_destroy(struct sink_worker *sw);
/* The engine sw was created for (borrowed): for sink_engine_bound(). */
struct sink_engine *sink_worker_engine(const struct sink_worker *sw);
/* The owner's event loop, for the sink services (sink.h): a one-shot
 * poll of fd for SINK_FD_READ/SINK_FD_WRITE whose completion the owner
 * hands back with sink_worker_poll_done(sw, token, res) (res: the
 * revents mask, or -errno; -ECANCELED after a cancel), and its cancel.
 * Without it (tests, tools) sink_fd_watch() and sink_dns_lookup() answer
 * -ENOTSUP; timers need nothing (next_deadline/expire drive them).
 * dns_servers ("127.0.0.1:5353"; n 0: /etc/resolv.conf) are copied. */
struct sink_io {
    int (*poll)(void *arg, int fd, unsigned what, uint32_t token);
    void (*poll_cancel)(void *arg, uint32_t token);
    void *arg;
};
int sink_worker_set_io(struct sink_worker *sw, const struct sink_io *io,
                       const char *const *dns_servers, size_t ndns_servers);
void sink_worker_poll_done(struct sink_worker *sw, uint32_t token, int res);
/* Services pending on this worker (timers, watches, lookups). */
size_t sink_worker_services(const struct sink_worker *sw);
/* Milliseconds from now_ms to the earliest pending deadline; UINT64_MAX if
 * nothing is pending.  The worker waits no longer than that. */
uint64_t sink_worker_next_deadline(const struct sink_worker *sw, uint64_t now_ms);
/* Settles every pending call whose deadline is <= now_ms. */
void sink_worker_expire(struct sink_worker *sw, uint64_t now_ms);
/* clock_mono_ms() (core/base/clock.h), the clock deadlines use; kept for
 * net/worker.c until the net/ rewrite calls clock_mono_ms() itself. */
uint64_t sink_now_ms(void);

/* ---- property bags (session and message scope belong to the session) ---- */
struct sink_bag *sink_bag_create(void);
void sink_bag_clear(struct sink_bag *b);
void sink_bag_destroy(struct sink_bag *b);

/* ---- one event ---- */

/* A held message: the session implements it (core/), the engine only calls
 * through ops.  sink_msgref_*() in sink.h dispatch to these. */
struct sink_msgref_ops {
    uint64_t (*size)(const struct sink_msgref *m);
    ssize_t (*read)(struct sink_msgref *m, uint64_t off, void *buf, size_t len);
    void (*release)(struct sink_msgref *m);
};
struct sink_msgref {
    const struct sink_msgref_ops *ops;
};

enum sink_edit_op { SINK_EDIT_ADD, SINK_EDIT_REMOVE, SINK_EDIT_CHANGE };

struct sink_event_data {
    const char *client_addr;
    const char *helo;
    const char *tls;
    const char *auth_user;      /* auth event: the user being authenticated */
    const char *auth_password;  /* auth event only (NULL elsewhere) */
    const char *verb;           /* command-type events: upper-cased verb */
    const char *args;
    const char *sender;         /* NULL before MAIL */
    const char *mail_params;
    size_t nrcpt;
    const char *const *rcpts;   /* accepted so far */
    const char *rcpt;           /* rcpt: the candidate */
    int reply_code;             /* response: the reply about to go out */
    const char *reply_text;     /* its whole text, possibly multi-line, no final CRLF */
    uint64_t msg_id;
    uint64_t body_size;
    /* eod/submission body access, implemented by the session: a pointer to
     * contiguous body bytes at off (*len > 0), valid until the next call
     * or the end of handle(); 0, or -errno; *len == 0 at the end. */
    int (*body_at)(void *arg, uint64_t off, const char **p, size_t *len);
    struct sink_msgref *(*body_hold)(void *arg);
    /* header edits (eod): recorded by the session, applied when written */
    int (*edit)(void *arg, enum sink_edit_op op, const char *name, const char *value);
    void *body_arg;
    /* transport events (queue manager; it passes server = NULL: it has no
     * link of its own and acts on the chain's verdict).  rcpts/nrcpt: the
     * message's recipients; reply_code/reply_text: at out_* the next
     * hop's last reply (out_session: its greeting), at the outcomes the
     * reply that decided (0/NULL when there is none, e.g. maildir). */
    size_t rcpt_index;          /* route, out_rcpt, outcomes */
    const char *nexthop;        /* see sink_nexthop() */
    const char *status;         /* outcomes: enhanced status */
    /* categorize: op 0 set recipient i to addr, 1 add addr, 2 remove i
     * (addr NULL).  Called on the dispatching thread only: inside a
     * handle() that called sink_rcpt_*(), or, for edits a sink made
     * outside handle() (a PENDING sink's thread, an offloaded handler),
     * just before the chain goes on or done runs.  The engine has
     * checked the address (sink_addr_ok) and, for ops 0 and 2, that
     * i < nrcpt.  Contract: the callback updates rcpts and nrcpt of this
     * event data before it returns, so that sink_rcpt() and
     * sink_rcpt_count() show the edit to the rest of the chain; the old
     * strings may be freed then (sinks copy what they keep).  0 or
     * -errno (returned to the sink, or logged for a recorded edit). */
    int (*rcpt_edit)(void *arg, int op, size_t i, const char *addr);
    /* route: the next hop for recipient rcpt_index, already checked by
     * sink_nexthop_ok (syntax only: the queue manager parses it with
     * route_parse and answers -EINVAL if it refuses it).  Same threads
     * and times as rcpt_edit; the last call wins. */
    int (*route_set)(void *arg, const char *nexthop);
    void *transport_arg;
    struct sink_bag *session_bag;
    struct sink_bag *message_bag;
};

/* The chain's outcome.  code 0: no link set a reply (the session answers
 * with its own reply for the verdict). */
struct sink_result {
    enum sink_verdict verdict;
    int code;
    char enhanced[16];
    char text[512];
    const char *binding; /* the deciding binding's name, "server" or NULL */
};

/* The server's own handler as a link: checks the command (it may set
 * res->code/text, e.g. a 554 relay refusal) and returns its verdict. */
typedef enum sink_verdict sink_server_fn(void *arg, struct sink_result *res);
/* A chain that went pending is finished: runs on the worker's thread. */
typedef void sink_done_fn(void *arg, const struct sink_result *res);

/* One dispatch at a time per call object (one per session). */
struct sink_call *sink_call_create(struct sink_worker *sw);
/* The session is going away: a pending dispatch is abandoned (done will
 * not run; a late sink_complete is absorbed). */
void sink_call_destroy(struct sink_call *c);

/* Runs ev's chain: sinks below the default priority, server(sarg) (may be
 * NULL: an event the server has no handler for), the rest.  Returns true
 * with *res filled when it finished synchronously; false when a link went
 * pending: done(darg, res) runs later on this worker (res valid during the
 * call).  d is borrowed until then. */
bool sink_dispatch(struct sink_call *c, enum sink_event ev, const struct sink_event_data *d,
                   sink_server_fn *server, void *sarg, sink_done_fn *done, void *darg,
                   struct sink_result *res);

#endif
