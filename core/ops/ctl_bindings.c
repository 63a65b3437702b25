/*
 * NAME
 *	ctl_bindings - the bindings verbs of the control socket
 * SYNOPSIS
 *	#include "core/ops/ctl_int.h"
 * DESCRIPTION
 *	bindings list: the engine's chains and per-binding statistics, printed
 *	into memory streams.  enable, disable, add, remove and setprop change
 *	the running engine (sinks/engine.h, live changes) and then write the
 *	bindings back to the configuration file the daemon was started with
 *	(sink_engine_save), so a restart keeps them.  Without a file the
 *	change lasts until the daemon stops; the answer says so.
 *
 *	`bindings add` takes either one argument holding a whole
 *	`binding "NAME" { ... }` block, or NAME then KEY=VALUE words: event,
 *	sink, priority, rule, enabled, offload, deadline, on_deadline as
 *	written in the block, and prop.KEY=VALUE for the properties.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/ctl_int.h"
#include "sinks/engine.h"

/* The engine prints to a FILE: capture it. */
static char *ctl_capture(const struct sink_engine *e,
                         void (*print)(const struct sink_engine *, FILE *))
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    if (f == NULL)
        return NULL;
    if (e != NULL)
        print(e, f);
    if (fclose(f) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

char *ctl_bindings_list(struct ctl_server *cs, const struct ctl_request *rq, enum ctl_after *after)
{
    char *chains = ctl_capture(cs->h.engine, sink_engine_print_bindings);
    char *stats = ctl_capture(cs->h.engine, sink_engine_print_stats);
    char *r = NULL;
    if (chains != NULL && stats != NULL) {
        struct ctl_jbuf b = {0};
        ctl_jbuf_put(&b, "{\"chains\": ", 11);
        ctl_jbuf_str(&b, chains);
        ctl_jbuf_put(&b, ", \"stats\": ", 11);
        ctl_jbuf_str(&b, stats);
        ctl_jbuf_put(&b, "}", 1);
        char *res = ctl_jbuf_take(&b);
        r = res ? ctl_reply_ok(res) : NULL;
        free(res);
    }
    free(chains);
    free(stats);
    return r;
}

/* After a change: write it back, and answer. */
static char *ctl_bindings_done(struct ctl_server *cs, const char *verb, const char *name)
{
    char err[512] = "";
    struct ctl_jbuf b = {0};
    ctl_jbuf_put(&b, "{\"binding\": ", 12);
    ctl_jbuf_str(&b, name);
    if (cs->h.conf_path == NULL) {
        ctl_jbuf_fmt(&b, ", \"saved\": \"no configuration file: until the daemon stops\"}");
    } else if (sink_engine_save(cs->h.engine, cs->h.conf_path, err, sizeof(err)) < 0) {
        free(ctl_jbuf_take(&b));
        return ctl_reply_error("%s %s: applied, but not written to %s: %s", verb, name,
                               cs->h.conf_path, err);
    } else {
        ctl_jbuf_put(&b, ", \"saved\": ", 11);
        ctl_jbuf_str(&b, cs->h.conf_path);
        ctl_jbuf_put(&b, "}", 1);
    }
    char *res = ctl_jbuf_take(&b);
    char *r = res ? ctl_reply_ok(res) : NULL;
    free(res);
    return r;
}

#define CTL_NEED_ENGINE(cs, rq)                                                                    \
    do {                                                                                           \
        if ((cs)->h.engine == NULL)                                                                \
            return ctl_reply_error("%s: no sink engine in this daemon", (rq)->verb);               \
    } while (0)

char *ctl_bindings_enable(struct ctl_server *cs, const struct ctl_request *rq,
                          enum ctl_after *after)
{
    CTL_NEED_ENGINE(cs, rq);
    char err[512] = "";
    bool on = strcmp(rq->verb, "bindings enable") == 0;
    if (sink_engine_set_enabled(cs->h.engine, rq->args[0], on, err, sizeof(err)) < 0)
        return ctl_reply_error("%s: %s", rq->verb, err);
    return ctl_bindings_done(cs, rq->verb, rq->args[0]);
}

char *ctl_bindings_remove(struct ctl_server *cs, const struct ctl_request *rq,
                          enum ctl_after *after)
{
    CTL_NEED_ENGINE(cs, rq);
    char err[512] = "";
    if (sink_engine_remove(cs->h.engine, rq->args[0], err, sizeof(err)) < 0)
        return ctl_reply_error("%s: %s", rq->verb, err);
    return ctl_bindings_done(cs, rq->verb, rq->args[0]);
}

char *ctl_bindings_setprop(struct ctl_server *cs, const struct ctl_request *rq,
                           enum ctl_after *after)
{
    CTL_NEED_ENGINE(cs, rq);
    char err[512] = "";
    if (sink_engine_setprop(cs->h.engine, rq->args[0], rq->args[1], rq->args[2], err, sizeof(err)) <
        0)
        return ctl_reply_error("%s: %s", rq->verb, err);
    return ctl_bindings_done(cs, rq->verb, rq->args[0]);
}

/* A value the block parser reads as a number, duration or boolean stays a
 * bare word; anything else is a quoted string. */
static bool ctl_bare(const char *v)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        return true;
    size_t i = 0;
    while (v[i] >= '0' && v[i] <= '9')
        i++;
    if (i == 0)
        return false;
    if (v[i] == '.')
        for (i++; v[i] >= '0' && v[i] <= '9'; i++)
            ;
    while (v[i] >= 'a' && v[i] <= 'z')
        i++;
    return v[i] == '\0';
}

/* NAME KEY=VALUE... as a block; NULL with err on a word without '=' or
 * on out of memory. */
static char *ctl_binding_block(const struct ctl_request *rq, char *err, size_t errlen)
{
    struct ctl_jbuf b = {0}, props = {0};
    ctl_jbuf_put(&b, "binding ", 8);
    ctl_jbuf_str(&b, rq->args[0]);
    ctl_jbuf_put(&b, " {\n", 3);
    for (size_t i = 1; i < rq->nargs; i++) {
        const char *w = rq->args[i], *eq = strchr(w, '=');
        bool prop = strncmp(w, "prop.", 5) == 0;
        if (eq == NULL || eq == w || (prop && eq == w + 5)) {
            snprintf(err, errlen, "'%s' is not KEY=VALUE", w);
            free(ctl_jbuf_take(&b));
            free(ctl_jbuf_take(&props));
            return NULL;
        }
        struct ctl_jbuf *to = prop ? &props : &b;
        const char *key = prop ? w + 5 : w;
        ctl_jbuf_put(to, "    ", 4);
        ctl_jbuf_str(to, strndupa(key, (size_t)(eq - key)));
        ctl_jbuf_put(to, " = ", 3);
        if (ctl_bare(eq + 1))
            ctl_jbuf_put(to, eq + 1, strlen(eq + 1));
        else
            ctl_jbuf_str(to, eq + 1);
        ctl_jbuf_put(to, ";\n", 2);
    }
    char *p = ctl_jbuf_take(&props);
    if (p != NULL) {
        ctl_jbuf_put(&b, "    properties {\n", 17);
        ctl_jbuf_put(&b, p, strlen(p));
        ctl_jbuf_put(&b, "    }\n", 6);
        free(p);
    }
    ctl_jbuf_put(&b, "}\n", 2);
    char *r = ctl_jbuf_take(&b);
    if (r == NULL)
        snprintf(err, errlen, "out of memory");
    return r;
}

/* The label of `binding "NAME" {`, for the answer (a copy; "?" if none). */
static char *ctl_block_name(const char *block)
{
    const char *q = strchr(block, '"'), *e = q ? strchr(q + 1, '"') : NULL;
    return e ? strndup(q + 1, (size_t)(e - q - 1)) : strdup("?");
}

char *ctl_bindings_add(struct ctl_server *cs, const struct ctl_request *rq, enum ctl_after *after)
{
    CTL_NEED_ENGINE(cs, rq);
    char err[512] = "";
    char *block = rq->nargs == 1 && strchr(rq->args[0], '{') != NULL
                      ? strdup(rq->args[0])
                      : ctl_binding_block(rq, err, sizeof(err));
    if (block == NULL)
        return ctl_reply_error("%s: %s", rq->verb, err[0] ? err : "out of memory");
    char *name = ctl_block_name(block);
    char *r;
    if (sink_engine_add(cs->h.engine, block, err, sizeof(err)) < 0)
        r = ctl_reply_error("%s: %s", rq->verb, err);
    else
        r = ctl_bindings_done(cs, rq->verb, name ? name : "?");
    free(name);
    free(block);
    return r;
}
