/*
 * NAME
 *	sink.h - the sluice event-sink ABI (the one header a sink author includes)
 * SYNOPSIS
 *	#include <sluice/sink.h>      (in the tree: "sinks/sink.h")
 *
 *	static enum sink_verdict handle(void *inst, struct sink_ctx *ctx) { ... }
 *	static const struct sink_module mod = {
 *	    SINK_MODULE_HEAD, .name = "hello",
 *	    .events = SINK_EVMASK(SINK_EV_MAIL), .handle = handle,
 *	};
 *	SINK_MODULE(mod)
 *
 *	cc $(pkg-config --cflags sluice-sink) -shared -fPIC \
 *	    -fvisibility=hidden -o hello.so hello.c
 * DESCRIPTION
 *	A sink is bound to an event by a `binding` block in sluice.conf.  When
 *	the event fires, the bindings of that event run in priority order
 *	(lower first; equal priorities in configuration order); the server's
 *	own handler is a link of the same chain at priority 24575.  Each link
 *	answers with a verdict.  CONTINUE passes to the next link; CONSUMED
 *	stops the chain and the event succeeds (links after it, the server's
 *	own included, do not run); REJECT (5xx), TEMPFAIL (4xx), DROP (421 and
 *	close), DISCARD (accept, then throw the message away) and QUARANTINE
 *	(accept, keep it apart) stop the chain.  PENDING means the sink will
 *	answer later with sink_complete(), from any thread, exactly once; if
 *	the binding's deadline passes first, its on_deadline verdict applies
 *	and the late answer is ignored (the context is freed then).
 *
 *	Threads: handle() runs on the worker thread that owns the session.
 *	One instance serves every worker, so handle() must be reentrant.
 *	Context: ctx and everything read through it are valid until handle()
 *	returns; a PENDING sink may afterwards call only sink_set_reply(),
 *	sink_rcpt_set/add/remove() and sink_route_set() (recorded, see
 *	below), sink_complete() and the sink_msgref_*() functions of a
 *	message it held with sink_message_hold() (valid on any thread until
 *	released).  Copy anything else you need before returning PENDING.
 *
 *	Versioning: SINK_ABI_VERSION is SINK_ABI_MAJOR << 16 | SINK_ABI_MINOR
 *	and the descriptor carries its own size (SINK_MODULE_HEAD sets both).
 *	A minor release only adds: functions, and fields at the end of struct
 *	sink_module; so a module built against an older minor of the same
 *	major loads (the fields past its size read as NULL/0).  A newer minor
 *	or another major is refused at load with a message naming both
 *	versions.  Anything else (a field moved, a signature changed) bumps
 *	the major.  Build with -fvisibility=hidden: a module exports only
 *	sluice_sink_module, and sluiced exports only the sink_* functions.
 * DIAGNOSTICS
 *	Functions returning int answer 0 or a negative errno: -EINVAL (bad
 *	argument, e.g. CR/LF in a header value), -ENOTSUP (not available at
 *	this event), -ENOENT, -ENOMEM.
 */
#ifndef SLUICE_SINK_H
#define SLUICE_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SINK_ABI_MAJOR 2
#define SINK_ABI_MINOR 0
#define SINK_ABI_VERSION ((uint32_t)SINK_ABI_MAJOR << 16 | SINK_ABI_MINOR)
#define SINK_PRIORITY_DEFAULT 24575 /* also the server's own handler */
#define SINK_PRIORITY_MAX 32767

enum sink_event {
    /* inbound protocol */
    SINK_EV_CONNECT,
    SINK_EV_HELO,
    SINK_EV_MAIL,
    SINK_EV_RCPT,
    SINK_EV_DATA,       /* DATA or first BDAT, before 354 */
    SINK_EV_EOD,        /* end of data, before the final reply */
    SINK_EV_COMMAND,    /* any command line, known verb or not */
    SINK_EV_RESPONSE,   /* a reply about to be sent */
    SINK_EV_DISCONNECT,
    /* transport */
    SINK_EV_SUBMISSION, /* the message is durable in the spool */
    SINK_EV_PRECATEGORIZE,
    SINK_EV_CATEGORIZE,
    SINK_EV_POSTCATEGORIZE,
    SINK_EV_ROUTE,
    SINK_EV_OUT_SESSION,
    SINK_EV_OUT_MESSAGE,
    SINK_EV_OUT_RCPT,
    SINK_EV_OUT_DATA,
    SINK_EV_OUT_QUIT,
    SINK_EV_DELIVERED,
    SINK_EV_DEFERRED,
    SINK_EV_BOUNCE,
    SINK_EV_AUTH,
    SINK_EV_COUNT
};

#define SINK_EVMASK(ev) (UINT64_C(1) << (ev))

enum sink_verdict {
    SINK_CONTINUE,
    SINK_CONSUMED,
    SINK_REJECT,
    SINK_TEMPFAIL,
    SINK_DROP,
    SINK_DISCARD,
    SINK_QUARANTINE,
    SINK_PENDING,
};

enum sink_scope { SINK_SCOPE_MESSAGE, SINK_SCOPE_SESSION, SINK_SCOPE_SERVER };

struct sink_ctx;    /* one event, one binding */
struct sink_props;  /* the binding's `properties { }` */
struct sink_msgref; /* a held message body */

/* Fields are never moved or removed within a major version; new ones go
 * at the end (after `abandoned`, the last of 2.0). */
struct sink_module {
    uint32_t abi_version; /* SINK_ABI_VERSION: the sink.h the module was built with */
    uint32_t size;        /* sizeof(struct sink_module) of that sink.h */
    const char *name;
    uint64_t events;      /* SINK_EVMASK() of the events it can handle */
    /* One instance per binding.  props is borrowed for the call.  0, or a
     * negative errno with a message in err.  May be NULL. */
    int (*create)(const struct sink_props *props, void **instance, char *err, size_t errlen);
    /* May be NULL.  Must not return while a thread of the sink may still
     * call sink_complete(): complete or abandon held calls first. */
    void (*destroy)(void *instance);
    enum sink_verdict (*handle)(void *instance, struct sink_ctx *ctx);
    /* May be NULL.  A call that returned SINK_PENDING ended without the
     * sink's answer (deadline, client gone, binding removed): runs on the
     * owning worker after the call's services were cancelled.  When it
     * returns, ctx is gone: a sink that completes from threads of its own
     * makes sure here that none of them still uses ctx (or will call
     * sink_complete() on it).  Without it, a late sink_complete() stays
     * allowed and frees the ctx's last remains. */
    void (*abandoned)(void *instance, struct sink_ctx *ctx);
};

/* The first two fields of every descriptor:
 *	static const struct sink_module mod = { SINK_MODULE_HEAD, .name = ... }; */
#define SINK_MODULE_HEAD .abi_version = SINK_ABI_VERSION, .size = sizeof(struct sink_module)

/* A shared object exports this one symbol (C linkage, also from C++). */
#define SINK_ENTRY_SYMBOL "sluice_sink_module"
typedef const struct sink_module *sink_entry_fn(void);
#ifdef __cplusplus
#define SINK_EXTERN_C extern "C"
#else
#define SINK_EXTERN_C
#endif
#define SINK_MODULE(mod)                                                                           \
    SINK_EXTERN_C __attribute__((visibility("default"))) const struct sink_module *                \
    sluice_sink_module(void);                                                                      \
    SINK_EXTERN_C __attribute__((visibility("default"))) const struct sink_module *                \
    sluice_sink_module(void)                                                                       \
    {                                                                                              \
        return &(mod);                                                                             \
    }

/* ---- binding properties (create time) ---- */
const char *sink_props_get(const struct sink_props *p, const char *key); /* NULL if absent */
size_t sink_props_count(const struct sink_props *p);
const char *sink_props_key(const struct sink_props *p, size_t i);
const char *sink_props_value(const struct sink_props *p, size_t i);
/* Strict getters, for create(): *out is dflt when the key is absent, the
 * value when it is well formed; otherwise -EINVAL (-ERANGE: a number too
 * large) with one line in err naming the key and what was expected
 * ("property \"tries\": \"abc\" is not an integer"): return it from
 * create() and the binding is refused.  err may be NULL.
 *	_int	decimal, optional sign ("-3", "42")
 *	_bool	true/false, yes/no, on/off, 1/0 (any case)
 *	_ms	a duration: NUMBER[.FRACTION] with ms, s, min, h, d or w; a
 *		plain number is seconds ("5s", "200ms", "1.5", "2min")
 *	_size	octets: NUMBER with k, m, g (x1024, any case, optional b/B:
 *		"10M", "64kb", "512") */
int sink_props_int(const struct sink_props *p, const char *key, long long dflt, long long *out,
                   char *err, size_t errlen);
int sink_props_bool(const struct sink_props *p, const char *key, int dflt, int *out, char *err,
                    size_t errlen);
int sink_props_ms(const struct sink_props *p, const char *key, uint64_t dflt, uint64_t *out,
                  char *err, size_t errlen);
int sink_props_size(const struct sink_props *p, const char *key, uint64_t dflt, uint64_t *out,
                    char *err, size_t errlen);
/* 0 when every key of p is one of keys (NULL-ended), else -EINVAL with
 * "unknown property \"tries\" (known: a, b)" in err: a typo refused. */
int sink_props_only(const struct sink_props *p, const char *const *keys, char *err, size_t errlen);
/* Lenient (ABI 1): the default for an absent or malformed value.  Prefer
 * the strict getters above, which tell the operator. */
long long sink_props_get_int(const struct sink_props *p, const char *key, long long dflt);
int sink_props_get_bool(const struct sink_props *p, const char *key, int dflt);

/* ---- logging ----
 * One line through the daemon's log (its log_format, log_file or syslog,
 * and log_level), prefixed with the binding's name: `sink "NAME": ...`.
 * ctx may be NULL (create(), a thread of the sink): `sink: ...`.  Any
 * thread; the line is cut at 4 KiB. */
enum sink_log_level { SINK_LOG_DEBUG, SINK_LOG_INFO, SINK_LOG_WARN, SINK_LOG_ERROR };
void sink_log(const struct sink_ctx *ctx, enum sink_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- counters of the sink's own, in /metrics ----
 * At create(): a counter of this binding called name ([a-z0-9_], 1..48
 * characters; help: one line, may be NULL), shown as
 *	sluice_sink_counter_total{binding="NAME",name="name"} N
 * The same name again (a second call, or the new instance after a live
 * setprop) gives the same counter: it keeps counting.  NULL on a bad name
 * or out of memory (sink_counter_add(NULL, n) does nothing).  The counter
 * lives as long as the binding; add from any thread (relaxed, lock-free). */
struct sink_counter;
struct sink_counter *sink_counter(const struct sink_props *p, const char *name, const char *help);
void sink_counter_add(struct sink_counter *c, uint64_t n);

/* ---- the event ---- */
enum sink_event sink_event(const struct sink_ctx *ctx);
const char *sink_event_name(enum sink_event ev); /* "mail", "out_rcpt", ... */
const char *sink_binding_name(const struct sink_ctx *ctx);

/* ---- session ---- */
const char *sink_client_addr(const struct sink_ctx *ctx); /* "192.0.2.1" */
const char *sink_helo(const struct sink_ctx *ctx);        /* NULL before HELO/EHLO */
const char *sink_tls(const struct sink_ctx *ctx);         /* "TLSv1.3 ..." or NULL */
const char *sink_auth_user(const struct sink_ctx *ctx);   /* NULL if not authenticated */
/* auth event: sink_auth_user() is the user being authenticated (the
 * authcid), sink_auth_password() the password, sink_command_args() the
 * mechanism ("PLAIN", "LOGIN").  NULL at every other event.  Do not log
 * it; copy it before returning PENDING (and wipe the copy). */
const char *sink_auth_password(const struct sink_ctx *ctx);

/* ---- the command (connect: NULL; command, helo, mail, rcpt, data) ---- */
const char *sink_command_verb(const struct sink_ctx *ctx); /* upper-cased */
const char *sink_command_args(const struct sink_ctx *ctx); /* after the verb, "" if none */

/* ---- envelope ---- */
const char *sink_sender(const struct sink_ctx *ctx);      /* "" null sender, NULL before MAIL */
const char *sink_mail_params(const struct sink_ctx *ctx); /* "SIZE=100 BODY=8BITMIME" */
size_t sink_rcpt_count(const struct sink_ctx *ctx);       /* accepted recipients */
const char *sink_rcpt(const struct sink_ctx *ctx, size_t i);
const char *sink_rcpt_current(const struct sink_ctx *ctx); /* rcpt event: the candidate */

/* ---- the reply (every event that answers a command) ---- */
/* Sets the reply this binding's verdict sends: code 200..599 matching the
 * verdict class, enhanced "x.y.z" or NULL, text without CR/LF. */
int sink_set_reply(struct sink_ctx *ctx, int code, const char *enhanced, const char *text);
/* response event: the reply about to be sent (change it with sink_set_reply) */
int sink_response_code(const struct sink_ctx *ctx);
const char *sink_response_text(const struct sink_ctx *ctx);

/* ---- the message (eod, submission) ---- */
uint64_t sink_message_id(const struct sink_ctx *ctx); /* 0 before the spool has it */
uint64_t sink_body_size(const struct sink_ctx *ctx);
/* Reading without copying: each call yields the next piece of the body
 * (headers included, CRLF line ends, dot-unstuffed) in *p; returns its
 * length, 0 at the end, or a negative errno. */
struct sink_body_iter {
    uint64_t opaque[8];
};
int sink_body_begin(struct sink_ctx *ctx, struct sink_body_iter *it);
ssize_t sink_body_next(struct sink_body_iter *it, const char **p);
/* The value of the nth (0-based) header field called name (any case),
 * unfolded, copied into buf (NUL-terminated, truncated to buflen - 1).
 * Returns the value's full length, or -ENOENT. */
ssize_t sink_header_get(struct sink_ctx *ctx, const char *name, unsigned nth, char *buf,
                        size_t buflen);
/* Header edits are recorded as an edit list and applied when the message
 * is written or sent, never by rewriting what was received (eod). */
int sink_header_add(struct sink_ctx *ctx, const char *name, const char *value);
int sink_header_remove(struct sink_ctx *ctx, const char *name); /* every field of that name */
int sink_header_change(struct sink_ctx *ctx, const char *name, const char *value); /* the first */

/* Keeps the body readable on any thread after handle() returns. */
struct sink_msgref *sink_message_hold(struct sink_ctx *ctx);
uint64_t sink_msgref_size(const struct sink_msgref *m);
ssize_t sink_msgref_read(struct sink_msgref *m, uint64_t off, void *buf, size_t len);
void sink_msgref_release(struct sink_msgref *m);

/* ---- transport (queue manager events) ----
 * precategorize, categorize, postcategorize: once per message after it is
 * durable, before routing; categorize may rewrite or expand the recipients
 * (aliases, lists): the new list is stored before any delivery.
 * route: once per recipient; the sink may choose its next hop.
 * out_session (connected, after the greeting), out_message (before MAIL),
 * out_rcpt (per recipient, before its RCPT: REJECT fails it, TEMPFAIL
 * defers it), out_data (before the body), out_quit: the outbound protocol.
 * delivered, deferred, bounce: the outcome per recipient (verdicts are
 * ignored there: they are notifications). */
/* categorize: replace recipient i / add one / remove recipient i.
 * -ENOTSUP at other events, -EINVAL for a malformed address (not
 * local@domain, CR/LF/space/<>, over 254 octets), -ENOENT for i out of
 * range.  Inside handle() an edit is made at once (sink_rcpt() shows it);
 * a PENDING sink may also edit from its own thread until it calls
 * sink_complete() (one thread at a time): such edits are recorded and
 * applied when the answer arrives in time (dropped if the deadline won),
 * and their index is checked only then. */
int sink_rcpt_set(struct sink_ctx *ctx, size_t i, const char *addr);
int sink_rcpt_add(struct sink_ctx *ctx, const char *addr);
int sink_rcpt_remove(struct sink_ctx *ctx, size_t i);
/* route, out_rcpt, delivered, deferred, bounce: the recipient's index
 * (sink_rcpt(ctx, i) is its address); SIZE_MAX at other events. */
size_t sink_rcpt_index(const struct sink_ctx *ctx);
/* route: the transport table's choice; out_*: the host connected to;
 * outcomes: the host that answered (NULL for local delivery). */
const char *sink_nexthop(const struct sink_ctx *ctx);
/* route: the next hop for this recipient, in transport-table syntax
 * ("smtp:host:port", "mx", "maildir", "discard", "error:5.7.1 text").
 * -ENOTSUP at other events, -EINVAL for a malformed value; made at once
 * or recorded exactly like the recipient edits above. */
int sink_route_set(struct sink_ctx *ctx, const char *nexthop);
/* delivered, deferred, bounce: the enhanced status ("2.0.0", "4.4.1"),
 * and the reply through sink_response_code()/sink_response_text() (which
 * at out_* give the next hop's last reply); NULL at other events. */
const char *sink_delivery_status(const struct sink_ctx *ctx);

/* ---- property bags: per message, per session, per server ---- */
const char *sink_prop_get(struct sink_ctx *ctx, enum sink_scope scope, const char *key);
int sink_prop_set(struct sink_ctx *ctx, enum sink_scope scope, const char *key, const char *value);

/* ---- services on the session's worker ----
 * A sink that waits for something (a timer, a socket of its own, a DNS
 * answer) asks the worker that owns the session to wait for it, instead
 * of running a thread.  Start a service from handle() and return
 * SINK_PENDING, or from another service's callback.  Every callback runs
 * on that worker, one at a time, with ctx as valid as inside handle()
 * (every accessor and edit allowed), and ends the call with
 * sink_complete() or leaves it pending with another service started.
 *
 * Each service belongs to its ctx.  When the call ends first (the
 * deadline passed, the client went away, the binding was removed, or the
 * sink completed with services still pending), every pending service is
 * cancelled and its callback runs once with status SINK_SVC_CANCELLED
 * (there: free what arg holds; sink_complete() is ignored) before ctx
 * goes.  No callback ever sees a freed ctx.  sink_svc_cancel() cancels
 * one service at the sink's request: its callback does not run.
 *
 * The functions below answer 0 with *id set (id may be NULL), or
 * -EINVAL (bad argument), -EPERM (not on the owning worker, or the ctx
 * is not pending-capable: the call already answered), -ENOMEM. */
typedef uint64_t sink_svc_id; /* 0 is never an id */
#define SINK_SVC_CANCELLED (-125) /* -ECANCELED */

/* A one-shot timer: fn(ctx, arg, 0) after ms milliseconds (0: at the
 * worker's next turn), or SINK_SVC_CANCELLED. */
typedef void sink_timer_fn(struct sink_ctx *ctx, void *arg, int status);
int sink_timer_start(struct sink_ctx *ctx, uint64_t ms, sink_timer_fn *fn, void *arg,
                     sink_svc_id *id);

/* One-shot readiness of a descriptor the sink owns (non-blocking; the
 * sink closes it, after cancelling the watch).  fn(ctx, arg, fd, status):
 * status > 0 is a mask of SINK_FD_READ, SINK_FD_WRITE, SINK_FD_ERROR
 * (error or hang-up); SINK_SVC_CANCELLED.  Watch again to wait again. */
#define SINK_FD_READ 1u
#define SINK_FD_WRITE 2u
#define SINK_FD_ERROR 4u
typedef void sink_fd_fn(struct sink_ctx *ctx, void *arg, int fd, int status);
int sink_fd_watch(struct sink_ctx *ctx, int fd, unsigned what, sink_fd_fn *fn, void *arg,
                  sink_svc_id *id);

/* DNS through the daemon's resolver (its `dns_servers`), with a cache per
 * worker that honours TTLs.  name: a domain name, no final dot needed. */
enum sink_dns_type {
    SINK_DNS_A = 1,
    SINK_DNS_PTR = 12,
    SINK_DNS_MX = 15,
    SINK_DNS_TXT = 16,
    SINK_DNS_AAAA = 28,
    SINK_DNS_TLSA = 52,
};
enum sink_dns_status {
    SINK_DNS_OK,       /* n >= 1 records */
    SINK_DNS_NXDOMAIN, /* the name does not exist */
    SINK_DNS_NODATA,   /* it exists, without records of that type */
    SINK_DNS_TEMPFAIL, /* SERVFAIL, REFUSED, no answer in time, malformed answer */
    SINK_DNS_CANCELLED,
};
struct sink_dns_rr {
    uint16_t type;
    uint32_t ttl;  /* seconds left (a cached answer: what remains) */
    uint16_t pref; /* MX: the preference; TLSA: usage << 8 | selector; else 0 */
    uint8_t mtype; /* TLSA: the matching type; else 0 */
    /* A, AAAA: the address as text ("192.0.2.1", "2001:db8::1");
     * MX, PTR: the host name, no final dot; TXT: the record's strings
     * joined with nothing between them; TLSA: the data in lower-case hex */
    const char *text;
    /* the data itself: A 4 octets, AAAA 16, TXT the joined strings, TLSA
     * the association data; MX and PTR: the name, as text */
    const unsigned char *data;
    size_t len;
};
struct sink_dns_answer {
    enum sink_dns_status status;
    const char *name;               /* as asked */
    enum sink_dns_type type;
    size_t n;
    const struct sink_dns_rr *rr;   /* n records, in the order the server gave them */
    const char *error;              /* why, when not OK ("SERVFAIL", "timeout") */
};
/* fn(ctx, arg, answer): the answer and everything in it are borrowed for
 * the callback; cancelled: answer->status is SINK_DNS_CANCELLED. */
typedef void sink_dns_fn(struct sink_ctx *ctx, void *arg, const struct sink_dns_answer *answer);
int sink_dns_lookup(struct sink_ctx *ctx, const char *name, enum sink_dns_type type,
                    sink_dns_fn *fn, void *arg, sink_svc_id *id);

/* 0, or -ENOENT: no such pending service of this ctx (already ran). */
int sink_svc_cancel(struct sink_ctx *ctx, sink_svc_id id);

/* The binding's deadline (ms) and how much of it is left for this call. */
uint64_t sink_deadline_ms(const struct sink_ctx *ctx);
uint64_t sink_time_left_ms(const struct sink_ctx *ctx);

/* ---- asynchronous completion ---- */
/* For a handler that returned SINK_PENDING: any thread, exactly once. */
void sink_complete(struct sink_ctx *ctx, enum sink_verdict v);

#ifdef __cplusplus
}
#endif
#endif
