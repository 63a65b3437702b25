/*
 * NAME
 *	ctl_bindings - the bindings verbs of the control socket
 * SYNOPSIS
 *	#include "core/base/json.h"
#include "core/ops/ctl_int.h"
 * DESCRIPTION
 *	bindings list: the engine's chains and per-binding statistics, printed
 *	into memory streams.  enable, disable, add, remove and setprop (NAME
 *	KEY VALUE; NAME KEY alone deletes the property) change
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

#include "core/base/json.h"
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
        r = ctl_result_pair("chains", chains, "stats", stats);
    }
    free(chains);
    free(stats);
    return r;
}

/* After a change: write it back, and answer. */
static char *ctl_bindings_done(struct ctl_server *cs, const char *verb, const char *name)
{
    char err[512] = "";
    if (cs->h.conf_path != NULL &&
        sink_engine_save(cs->h.engine, cs->h.conf_path, err, sizeof(err)) < 0)
        return ctl_reply_error("%s %s: applied, but not written to %s: %s", verb, name,
                               cs->h.conf_path, err);
    return ctl_result_pair("binding", name, "saved",
                           cs->h.conf_path ? cs->h.conf_path
                                           : "no configuration file: until the daemon stops");
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
    /* without a value: the property is deleted (smtpreg's delprop) */
    const char *value = rq->nargs > 2 ? rq->args[2] : NULL;
    if (sink_engine_setprop(cs->h.engine, rq->args[0], rq->args[1], value, err, sizeof(err)) < 0)
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
    struct json_buf b, props; /* configuration text with JSON string literals */
    json_init_grow(&b);
    json_init_grow(&props);
    json_text(&b, "binding ", 8);
    json_str(&b, rq->args[0]);
    json_text(&b, " {\n", 3);
    for (size_t i = 1; i < rq->nargs; i++) {
        const char *w = rq->args[i], *eq = strchr(w, '=');
        bool prop = strncmp(w, "prop.", 5) == 0;
        if (eq == NULL || eq == w || (prop && eq == w + 5)) {
            snprintf(err, errlen, "'%s' is not KEY=VALUE", w);
            json_fini(&b);
            json_fini(&props);
            return NULL;
        }
        struct json_buf *to = prop ? &props : &b;
        const char *key = prop ? w + 5 : w;
        json_text(to, "    ", 4);
        json_strn(to, key, (size_t)(eq - key));
        json_text(to, " = ", 3);
        if (ctl_bare(eq + 1))
            json_text(to, eq + 1, strlen(eq + 1));
        else
            json_str(to, eq + 1);
        json_text(to, ";\n", 2);
    }
    if (props.len > 0 || props.full) {
        json_text(&b, "    properties {\n", 17);
        json_text(&b, props.p ? props.p : "", props.len);
        json_text(&b, "    }\n", 6);
        b.full |= props.full;
    }
    json_fini(&props);
    json_text(&b, "}\n", 2);
    char *r = json_take(&b);
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
