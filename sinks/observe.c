/*
 * NAME
 *	observe - what a sink tells the operator: its log lines, its own
 *	counters, the calls in flight, and which binding was running when
 *	the process crashed
 * SYNOPSIS
 *	#include "sinks/sink.h"
 *
 *	void sink_log(const struct sink_ctx *ctx, enum sink_log_level level,
 *		      const char *fmt, ...);
 *	struct sink_counter *sink_counter(const struct sink_props *p,
 *					  const char *name, const char *help);
 *	void sink_counter_add(struct sink_counter *c, uint64_t n);
 *
 *	#include "sinks/engine.h"
 *
 *	size_t sink_crash_describe(char *buf, size_t len);
 *	void sink_engine_counters(const struct sink_engine *e,
 *				  sink_counter_fn *fn, void *arg);
 * DESCRIPTION
 *	sink_log() goes through core/base/log (log_format, log_file or
 *	syslog, log_level) as `sink "NAME": message`, with a "binding" field
 *	in JSON.
 *
 *	Counters: a list per binding, appended by create() (sink_counter()
 *	finds the binding through props->owner, set by sink_binding_load) and
 *	read by sink_engine_counters() for /metrics, both under the engine's
 *	mutex or before the engine is shared, so the list needs no atomics;
 *	the values are relaxed atomic adds (independent counters, nothing
 *	published through them).  A counter belongs to its binding and is
 *	freed with it, after destroy(): a new instance (setprop, reload)
 *	starts its counters at 0, which Prometheus reads as a counter reset.
 *
 *	Calls in flight: a gauge per binding in its statistics, +1 when a
 *	call enters handle() or the pending set, -1 when it leaves (relaxed:
 *	a reading, not a synchronisation).  The statistics follow the binding
 *	across setprop and reload, so does the gauge.
 *
 *	The crash note: each thread keeps in a thread-local the binding and
 *	event whose sink code it is running (handle(), create(), destroy(),
 *	abandoned(), a service's callback; set and restored around the call:
 *	sink_crash_enter/_leave).  A fatal
 *	signal handler (core/cmd/sluiced.c) reads it with
 *	sink_crash_describe(), which is async-signal-safe: no locks, no
 *	allocation, no stdio, only loads of this thread's note and copies of
 *	strings that live while the call runs (the binding's name and sink).
 * DIAGNOSTICS
 *	sink_counter(): NULL for a name outside [a-z0-9_]{1,48}, props not
 *	handed to a create(), or out of memory (one warning logged).
 */
#include "sinks/sink_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"

/* ---- sink_log ---- */

void sink_log(const struct sink_ctx *ctx, enum sink_log_level level, const char *fmt, ...)
{
    static const enum log_level lv[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
    enum log_level l = (unsigned)level <= SINK_LOG_ERROR ? lv[level] : LOG_ERROR;
    char msg[LOG_LINE_MAX];
    va_list ap;
    msg[0] = '\0';
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    if (ctx == NULL) {
        log_fields(l, (const char *const[]){NULL}, "sink: %s", msg);
        return;
    }
    const char *name = ctx->b->name;
    log_fields(l, (const char *const[]){"binding", name, NULL}, "sink \"%s\": %s", name, msg);
}

/* ---- counters ---- */

static bool sink_counter_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return false;
    return n >= 1 && n <= 48;
}

struct sink_counter *sink_counter(const struct sink_props *p, const char *name, const char *help)
{
    struct sink_binding *b = p ? p->owner : NULL;
    if (b == NULL || name == NULL || !sink_counter_name_ok(name)) {
        log_msg(LOG_WARN, "sinks: binding \"%s\": sink_counter(\"%s\") refused: %s",
                b ? b->name : "?", name ? name : "(null)",
                b == NULL ? "call it in create() with its props"
                          : "a name is 1 to 48 of a-z, 0-9 and _");
        return NULL;
    }
    for (struct sink_counter *c = b->counters; c != NULL; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    size_t n = strlen(name);
    struct sink_counter *c = calloc(1, sizeof(*c) + n + 1);
    if (c == NULL || (help != NULL && (c->help = strdup(help)) == NULL)) {
        free(c);
        log_msg(LOG_WARN, "sinks: binding \"%s\": sink_counter(\"%s\"): out of memory", b->name,
                name);
        return NULL;
    }
    for (char *h = c->help; h != NULL && *h != '\0'; h++)
        if (*h == '\n' || *h == '\r')
            *h = ' '; /* one line in the exposition */
    memcpy(c->name, name, n + 1);
    struct sink_counter **pp = &b->counters; /* keep their order */
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = c;
    return c;
}

void sink_counter_add(struct sink_counter *c, uint64_t n)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed); /* see above */
}

void sink_counters_free(struct sink_binding *b)
{
    while (b->counters != NULL) {
        struct sink_counter *c = b->counters;
        b->counters = c->next;
        free(c->help);
        free(c);
    }
}

void sink_engine_counters(const struct sink_engine *e, sink_counter_fn *fn, void *arg)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&e->mu; /* see sink_engine_print_bindings */
    pthread_mutex_lock(mu);
    for (size_t i = 0; i < e->nb; i++)
        for (const struct sink_counter *c = e->b[i]->counters; c != NULL; c = c->next)
            fn(arg, e->b[i]->name, c->name, c->help,
               atomic_load_explicit(&c->value, memory_order_relaxed));
    pthread_mutex_unlock(mu);
}

/* ---- calls in flight ---- */

void sink_inflight(struct sink_binding *b, int d)
{
    atomic_fetch_add_explicit(&b->stats->in_flight, d, memory_order_relaxed); /* see above */
}

/* ---- the crash note ---- */

/* This thread's note.  volatile: a signal handler on this thread reads it
 * between any two instructions, so every store must be made in order. */
static _Thread_local volatile struct sink_crash_note sink_crash_now;

struct sink_crash_note sink_crash_enter(const struct sink_binding *b, enum sink_event ev,
                                        const char *what)
{
    struct sink_crash_note prev = {sink_crash_now.b, sink_crash_now.ev, sink_crash_now.what};
    sink_crash_now.b = NULL; /* never a half-written note */
    sink_crash_now.ev = ev;
    sink_crash_now.what = what;
    sink_crash_now.b = b;
    return prev;
}

void sink_crash_leave(struct sink_crash_note prev)
{
    sink_crash_now.b = NULL;
    sink_crash_now.ev = prev.ev;
    sink_crash_now.what = prev.what;
    sink_crash_now.b = prev.b;
}

static size_t sink_put_str(char *buf, size_t len, size_t at, const char *s)
{
    while (s != NULL && *s != '\0' && at + 1 < len) {
        unsigned char ch = (unsigned char)*s++;
        buf[at++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch; /* one line, whatever the name */
    }
    if (at < len)
        buf[at] = '\0';
    return at;
}

size_t sink_crash_describe(char *buf, size_t len)
{
    if (len == 0)
        return 0;
    buf[0] = '\0';
    const struct sink_binding *b = sink_crash_now.b;
    if (b == NULL)
        return 0;
    enum sink_event ev = sink_crash_now.ev;
    const char *what = sink_crash_now.what;
    size_t at = sink_put_str(buf, len, 0, "in binding \"");
    at = sink_put_str(buf, len, at, b->name);
    at = sink_put_str(buf, len, at, "\" (sink ");
    at = sink_put_str(buf, len, at, b->sink);
    at = sink_put_str(buf, len, at, "), ");
    at = sink_put_str(buf, len, at, what ? what : "handle()");
    at = sink_put_str(buf, len, at, " at event ");
    at = sink_put_str(buf, len, at, (unsigned)ev < SINK_EV_COUNT ? sink_event_name(ev) : "-");
    return at;
}
