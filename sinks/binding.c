/*
 * NAME
 *	binding - one `binding "NAME" { ... }` block of sluice.conf
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 *
 *	bool sink_binding_parse(const struct cfg_node *n, struct sink_binding *b,
 *				char *err, size_t errlen);
 * DESCRIPTION
 *	Reads the keys of a binding block into b:
 *
 *	event		one of the sink_event_name() names (required)
 *	sink		"builtin:NAME" or a path to a shared object (required);
 *			or "milter:inet:HOST:PORT" / "milter:unix:/path", a
 *			bridge to a milter: then no event (it is linked into
 *			every chain the bridge serves, see docs/milter.md)
 *	priority	0..32767, default 24575 (SINK_PRIORITY_DEFAULT)
 *	rule		see rule.c; absent: every event
 *	enabled		boolean, default true
 *	deadline	duration, default 5s, 1ms..1h; a plain number is seconds
 *	on_deadline	"tempfail" (default), "continue" or "reject"
 *	properties	{ key = value; ... } strings, numbers or booleans, all
 *			handed to the sink as strings
 *
 *	Durations are read from the value as written (cfg_node_str() gives
 *	a bare word as written), so "2s", 2s, 1500ms, 1.5 and "1.5" all mean
 *	what they say and a plain number is seconds, as everywhere in
 *	sluice.conf.  A number property is passed as its decimal value with
 *	sizes and durations scaled (64kb -> "65536", 2s -> "2000"); a
 *	fraction as written; a boolean as "true" or "false".
 * DIAGNOSTICS
 *	false with one line in err naming the binding and the line of the
 *	offending key: "binding \"x\" (line 12): unknown key \"prio\"".
 */
#include "sinks/sink_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool sink_bfail(const struct sink_binding *b, unsigned line, char *err, size_t errlen,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static bool sink_bfail(const struct sink_binding *b, unsigned line, char *err, size_t errlen,
                       const char *fmt, ...)
{
    int n = snprintf(err, errlen, "binding \"%s\" (line %u): ", b->name ? b->name : "?", line);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* A duration as written: NUMBER[.FRACTION][ms|s|min|h|d|w], plain = seconds. */
static int sink_duration_ms(const struct cfg_node *n, uint64_t *ms)
{
    const char *s = cfg_node_str(n);
    if (s == NULL) {
        if (cfg_node_type(n) != CFG_INT && cfg_node_type(n) != CFG_FLOAT)
            return -EINVAL;
        double v = cfg_node_float(n) * 1000.0; /* no text: a plain number, seconds */
        if (!(v >= 0 && v < 1e15))
            return -ERANGE;
        *ms = (uint64_t)(v + 0.5);
        return 0;
    }
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    double v = strtod(s, &end);
    if (errno != 0 || end == s)
        return -EINVAL;
    static const struct {
        const char *sfx;
        double mult;
    } units[] = {{"", 1000},
                 {"ms", 1},
                 {"s", 1000},
                 {"min", 60 * 1000},
                 {"h", 3600 * 1000.0},
                 {"d", 86400 * 1000.0},
                 {"w", 7 * 86400 * 1000.0}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(end, units[i].sfx) == 0) {
            double r = v * units[i].mult;
            if (!(r >= 0 && r < 1e15))
                return -ERANGE;
            *ms = (uint64_t)(r + 0.5);
            return 0;
        }
    }
    return -EINVAL;
}

static bool sink_parse_properties(const struct cfg_node *n, struct sink_binding *b, char *err,
                                  size_t errlen)
{
    if (cfg_node_type(n) != CFG_OBJECT)
        return sink_bfail(b, cfg_node_line(n), err, errlen,
                          "properties must be a block: properties { key = value; }");
    for (size_t i = 0; i < cfg_node_count(n); i++) {
        const struct cfg_node *kv = cfg_node_at(n, i);
        const char *k = cfg_node_key(kv);
        char num[32];
        const char *v;
        switch (cfg_node_type(kv)) {
        case CFG_STRING:
            v = cfg_node_str(kv);
            break;
        case CFG_INT:
            snprintf(num, sizeof(num), "%" PRId64, cfg_node_int(kv));
            v = num;
            break;
        case CFG_FLOAT:
            v = cfg_node_str(kv) ? cfg_node_str(kv) : "0";
            break;
        case CFG_BOOL:
            v = cfg_node_bool(kv) ? "true" : "false";
            break;
        case CFG_NULL:
            v = "";
            break;
        default:
            return sink_bfail(b, cfg_node_line(kv), err, errlen,
                              "property \"%s\" must be a string, number or boolean", k);
        }
        if (sink_props_get(b->props, k) != NULL)
            return sink_bfail(b, cfg_node_line(kv), err, errlen, "property \"%s\" given twice", k);
        if (sink_props_add(b->props, k, v) < 0)
            return sink_bfail(b, cfg_node_line(kv), err, errlen, "out of memory");
    }
    return true;
}

/* true/false, as a boolean or a string; false when it is neither. */
static bool sink_parse_bool(const struct cfg_node *kv, bool *out)
{
    const char *s = cfg_node_type(kv) == CFG_STRING ? cfg_node_str(kv) : NULL;
    if (cfg_node_type(kv) == CFG_BOOL)
        *out = cfg_node_bool(kv);
    else if (s != NULL && (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0))
        *out = strcasecmp(s, "true") == 0;
    else
        return false;
    return true;
}

static bool sink_parse_key(const struct cfg_node *kv, struct sink_binding *b, char *err,
                           size_t errlen)
{
    const char *k = cfg_node_key(kv);
    unsigned line = cfg_node_line(kv);
    const char *s = cfg_node_type(kv) == CFG_STRING ? cfg_node_str(kv) : NULL;

    if (strcmp(k, "event") == 0) {
        int ev = s ? sink_event_parse(s) : -1;
        if (ev < 0)
            return sink_bfail(b, line, err, errlen,
                              "unknown event \"%s\" (connect, helo, mail, rcpt, data, eod, "
                              "command, response, disconnect, submission, ...)",
                              cfg_node_str(kv) ? cfg_node_str(kv) : "?");
        b->ev = (enum sink_event)ev;
    } else if (strcmp(k, "sink") == 0) {
        if (s == NULL || *s == '\0')
            return sink_bfail(b, line, err, errlen,
                              "sink must be \"builtin:NAME\" or the path of a shared object");
        if ((b->sink = strdup(s)) == NULL)
            return sink_bfail(b, line, err, errlen, "out of memory");
    } else if (strcmp(k, "priority") == 0) {
        char *end = NULL;
        long long v = -1;
        const char *t = cfg_node_str(kv);
        if (cfg_node_type(kv) == CFG_INT)
            v = cfg_node_int(kv);
        else if (s != NULL && *s != '\0')
            v = strtoll(s, &end, 10);
        if (v < 0 || v > SINK_PRIORITY_MAX || (end != NULL && *end != '\0'))
            return sink_bfail(b, line, err, errlen, "bad priority %s (0-%d)", t ? t : "?",
                              SINK_PRIORITY_MAX);
        b->priority = (int)v;
    } else if (strcmp(k, "rule") == 0) {
        char rerr[256];
        if (s == NULL)
            return sink_bfail(b, line, err, errlen, "rule must be a string");
        if ((b->rule = sink_rule_compile(s, rerr, sizeof(rerr))) == NULL)
            return sink_bfail(b, line, err, errlen, "rule \"%s\": %s", s, rerr);
        if ((b->rule_text = strdup(s)) == NULL)
            return sink_bfail(b, line, err, errlen, "out of memory");
    } else if (strcmp(k, "enabled") == 0) {
        bool on;
        if (!sink_parse_bool(kv, &on))
            return sink_bfail(b, line, err, errlen, "enabled must be true or false");
        atomic_store_explicit(&b->enabled, on, memory_order_relaxed); /* not shared yet */
    } else if (strcmp(k, "offload") == 0) {
        if (!sink_parse_bool(kv, &b->offload))
            return sink_bfail(b, line, err, errlen, "offload must be true or false");
    } else if (strcmp(k, "deadline") == 0) {
        uint64_t ms = 0;
        int rc = sink_duration_ms(kv, &ms);
        if (rc < 0 || ms < 1 || ms > SINK_DEADLINE_MAX_MS)
            return sink_bfail(b, line, err, errlen,
                              "bad deadline %s (a duration from 1ms to 1h, e.g. \"2s\")",
                              cfg_node_str(kv) ? cfg_node_str(kv) : "?");
        b->deadline_ms = ms;
    } else if (strcmp(k, "on_deadline") == 0) {
        if (s != NULL && strcasecmp(s, "tempfail") == 0)
            b->on_deadline = SINK_TEMPFAIL;
        else if (s != NULL && strcasecmp(s, "continue") == 0)
            b->on_deadline = SINK_CONTINUE;
        else if (s != NULL && strcasecmp(s, "reject") == 0)
            b->on_deadline = SINK_REJECT;
        else
            return sink_bfail(b, line, err, errlen,
                              "on_deadline must be \"tempfail\", \"continue\" or \"reject\"");
    } else if (strcmp(k, "properties") == 0) {
        return sink_parse_properties(kv, b, err, errlen);
    } else {
        return sink_bfail(b, line, err, errlen,
                          "unknown key \"%s\" (event, sink, priority, rule, enabled, offload, "
                          "deadline, on_deadline, properties)",
                          k);
    }
    return true;
}

bool sink_binding_parse(const struct cfg_node *n, struct sink_binding *b, char *err, size_t errlen)
{
    static const char *const keys[] = {"event",    "sink",        "priority",
                                       "rule",     "enabled",     "offload",
                                       "deadline", "on_deadline", "properties"};
    b->line = cfg_node_line(n);
    b->priority = SINK_PRIORITY_DEFAULT;
    atomic_store_explicit(&b->enabled, true, memory_order_relaxed); /* not shared yet */
    b->deadline_ms = SINK_DEADLINE_DEFAULT_MS;
    b->on_deadline = SINK_TEMPFAIL;
    b->ev = SINK_EV_COUNT;
    const char *label = cfg_node_label(n);
    if (label == NULL || *label == '\0') {
        snprintf(err, errlen, "binding (line %u): a binding needs a name: binding \"NAME\" { }",
                 b->line);
        return false;
    }
    if ((b->name = strdup(label)) == NULL || (b->props = sink_props_new()) == NULL)
        return sink_bfail(b, b->line, err, errlen, "out of memory");
    if (cfg_node_type(n) != CFG_OBJECT)
        return sink_bfail(b, b->line, err, errlen, "a binding is a block: binding \"%s\" { }",
                          label);

    unsigned seen = 0;
    for (size_t i = 0; i < cfg_node_count(n); i++) {
        const struct cfg_node *kv = cfg_node_at(n, i);
        for (unsigned j = 0; j < sizeof(keys) / sizeof(keys[0]); j++) {
            if (strcmp(cfg_node_key(kv), keys[j]) != 0)
                continue;
            if (seen & (1u << j))
                return sink_bfail(b, cfg_node_line(kv), err, errlen, "\"%s\" given twice", keys[j]);
            seen |= 1u << j;
        }
        if (!sink_parse_key(kv, b, err, errlen))
            return false;
    }
    if (b->sink == NULL)
        return sink_bfail(b, b->line, err, errlen,
                          "no sink (sink = \"builtin:NAME\" or a shared object's path)");
    if (strncmp(b->sink, "milter:", 7) == 0) {
        /* a bridge: it follows the whole transaction (docs/milter.md) */
        if (b->ev != SINK_EV_COUNT)
            return sink_bfail(b, b->line, err, errlen,
                              "a milter binding names no event: it takes every step the "
                              "milter negotiates");
        if (b->offload)
            return sink_bfail(b, b->line, err, errlen, "a milter binding cannot be offloaded");
        b->bridge = true;
        b->events = sink_builtin_milter.events;
        b->ev = SINK_EV_CONNECT;
        return true;
    }
    if (b->ev == SINK_EV_COUNT)
        return sink_bfail(b, b->line, err, errlen, "no event (e.g. event = \"mail\";)");
    b->events = SINK_EVMASK(b->ev);
    return true;
}

void sink_binding_fini(struct sink_binding *b)
{
    if (b->created && b->mod->destroy != NULL) {
        struct sink_crash_note note = sink_crash_enter(b, b->ev, "destroy()");
        b->mod->destroy(b->inst);
        sink_crash_leave(note);
    }
    b->created = false;
    sink_counters_free(b); /* after destroy(): its threads are done adding */
    sink_module_close(b);
    free(b->name);
    free(b->sink);
    free(b->rule_text);
    sink_rule_free(b->rule);
    sink_props_free(b->props);
    if (!b->stats_lent)
        sink_stats_free(b->stats);
    memset(b, 0, sizeof(*b));
}
