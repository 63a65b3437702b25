/*
 * NAME
 *	test_smtp_ts - builtin:ts, the scriptable sink of the session tests
 * SYNOPSIS
 *	#include "test_smtp_ts.h"
 *
 *	TestSuite(x, .init = ts_setup);
 *	start(&h, NULL, B("name", "event = \"mail\"; sink = \"builtin:ts\"; ..."));
 * DESCRIPTION
 *	builtin:ts is driven by its properties (tag, verdict, code,
 *	enhanced, text) or by a hook function a test installs in ts_hooks[]
 *	(hook = N); every call logs "tag:event" (ts_logged()).  ts_setup()
 *	registers it (sink_builtin_register) before an engine is made.
 */
#ifndef SLUICE_TEST_SMTP_TS_H
#define SLUICE_TEST_SMTP_TS_H

#include <pthread.h>
#include <stdarg.h>

#include "core/base/log.h"
#include "sinks/sink_int.h" /* sink_builtin_register */
#include "test_smtp_harness.h"

/* ---- builtin:ts ---- */

struct ts_inst {
    char tag[32];
    enum sink_verdict verdict;
    int code;
    char enhanced[16];
    char text[128];
    int hook;
};

typedef enum sink_verdict ts_hook_fn(struct sink_ctx *ctx, const struct ts_inst *t);
__attribute__((unused)) static ts_hook_fn *ts_hooks[8];
static char ts_log[8192];
static pthread_mutex_t ts_mu = PTHREAD_MUTEX_INITIALIZER;

static void ts_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void ts_logf(const char *fmt, ...)
{
    pthread_mutex_lock(&ts_mu);
    size_t n = strlen(ts_log);
    if (n > 0 && n + 1 < sizeof(ts_log))
        ts_log[n++] = ',';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ts_log + n, sizeof(ts_log) - n, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&ts_mu);
}

static inline int ts_verdict(const char *s)
{
    static const char *const n[] = {"continue", "consumed", "reject",     "tempfail",
                                    "drop",     "discard",  "quarantine", "pending"};
    for (int i = 0; i < 8; i++)
        if (strcmp(s, n[i]) == 0)
            return i;
    return -1;
}

static inline int ts_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    struct ts_inst *t = calloc(1, sizeof(*t));
    const char *v = sink_props_get(p, "verdict");
    snprintf(t->tag, sizeof(t->tag), "%s", sink_props_get(p, "tag") ?: "ts");
    t->verdict = v ? (enum sink_verdict)ts_verdict(v) : SINK_CONTINUE;
    t->code = (int)sink_props_get_int(p, "code", 0);
    snprintf(t->enhanced, sizeof(t->enhanced), "%s", sink_props_get(p, "enhanced") ?: "");
    snprintf(t->text, sizeof(t->text), "%s", sink_props_get(p, "text") ?: "");
    t->hook = (int)sink_props_get_int(p, "hook", 0);
    *inst = t;
    return 0;
}

static inline void ts_destroy(void *inst)
{
    free(inst);
}

static inline enum sink_verdict ts_handle(void *inst, struct sink_ctx *ctx)
{
    struct ts_inst *t = inst;
    ts_logf("%s:%s", t->tag, sink_event_name(sink_event(ctx)));
    if (t->hook > 0 && t->hook < 8 && ts_hooks[t->hook] != NULL)
        return ts_hooks[t->hook](ctx, t);
    if (t->code != 0)
        cr_assert_eq(sink_set_reply(ctx, t->code, t->enhanced[0] ? t->enhanced : NULL, t->text), 0);
    return t->verdict;
}

__attribute__((unused)) static const struct sink_module ts_module = {
    SINK_MODULE_HEAD,
    .name = "ts",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1,
    .create = ts_create,
    .destroy = ts_destroy,
    .handle = ts_handle,
};

static inline void ts_setup(void)
{
    int rc = sink_builtin_register(&ts_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    ts_log[0] = '\0';
    memset(ts_hooks, 0, sizeof(ts_hooks));
    log_set_level(LOG_WARN); /* every decision is logged at info */
}

static inline const char *ts_logged(void)
{
    return ts_log;
}

#define B(name, body) "binding \"" name "\" { " body " }\n"

static inline void start(struct h *h, const char *ip, const char *conf)
{
    h_init_conf(h, ip, conf, NULL, 0, SMTP_START_OK);
}

/* EHLO + MAIL + RCPT for a session that has sinks. */
static inline void envelope(struct h *h)
{
    h_expect(h, "220 ");
    h_envelope(h, "sender@example.org", "rcpt@example.test");
}

static inline void message(struct h *h, const char *body)
{
    h_send(h, "DATA\r\n");
    h_expect(h, "354 ");
    h_send(h, body);
    h_send(h, ".\r\n");
}

/* ---- without bindings ---- */

#endif
