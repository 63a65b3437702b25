/*
 * NAME
 *	live - binding changes while the daemon runs, and writing them back
 * SYNOPSIS
 *	#include "sinks/engine.h"
 *
 *	int sink_engine_set_enabled(struct sink_engine *e, const char *name,
 *				    bool on, char *err, size_t errlen);
 *	int sink_engine_setprop(struct sink_engine *e, const char *name,
 *				const char *key, const char *value, char *err,
 *				size_t errlen);
 *	int sink_engine_rebind(struct sink_engine *e, const char *name,
 *			       char *err, size_t errlen);
 *	int sink_engine_add(struct sink_engine *e, const char *block_text,
 *			    char *err, size_t errlen);
 *	int sink_engine_remove(struct sink_engine *e, const char *name,
 *			       char *err, size_t errlen);
 *	int sink_engine_reload(struct sink_engine *e, const struct cfg *cfg,
 *			       char *err, size_t errlen);
 *	int sink_engine_save(struct sink_engine *e, const char *conf_path,
 *			     char *err, size_t errlen);
 * DESCRIPTION
 *	The smtpreg verbs (enable, disable, setprop, delprop, add, remove),
 *	applied to the running engine.  Changes are serialized by e->mu; the
 *	dispatch path takes no lock.  It loads an event's chain once per
 *	dispatch (acquire), and every change publishes a new chain (release)
 *	built from e->b, retiring the old one.  A binding that is replaced
 *	(setprop: a new instance from create() with the new properties) or
 *	removed is retired too, with its instance: a dispatch that loaded the
 *	old chain, or a pending call of that binding, may still use them.
 *	They are freed (the instance's destroy() called, the module closed)
 *	once every worker has passed a turn of its loop and no pending call
 *	or offloaded handler holds them (engine.c, "Freeing what a change
 *	retired"); each verb runs the reclaimer when it is done, and the
 *	workers' turns run it too.  A replacement keeps the binding's
 *	statistics.
 *
 *	enable/disable flips the binding's atomic flag (dispatch checks it
 *	before each call, so a dispatch already under way obeys too) and
 *	republishes the chain, which holds only enabled bindings.  A binding
 *	disabled in the configuration was never loaded: enabling it loads
 *	its sink and creates its instance first.  setprop with value NULL
 *	removes the property (smtpreg's delprop).  rebind (sluicectl bindings
 *	reload NAME) makes the binding again from its own block: the sink is
 *	loaded and created anew (a Lua sink re-reads its file); if that
 *	fails, the old binding stays and err says why.
 *
 *	Every change marks the binding's name; sink_engine_save() rewrites
 *	the marked blocks of the configuration file (core/cfg/cfg_edit.c: the
 *	rest of the file is kept byte for byte) in a canonical form (comments
 *	inside a rewritten block are not kept), or removes them, then forgets
 *	the marks.  sink_engine_reload() replaces every binding with those of
 *	a new configuration, all or nothing, and forgets the marks too.
 * DIAGNOSTICS
 *	0 or a negative errno with one line in err; on error nothing changed.
 *	-ENOENT no such binding (or property, for a delete), -EEXIST a name
 *	already bound (add), -EINVAL bad block text or key (the parser's
 *	message), -ENOEXEC the sink failed to load or its create() failed,
 *	-ENOMEM; sink_engine_save(): the file's errors.
 */
#include "sinks/sink_int.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "core/cfg/cfg_edit.h"

/* ---- the canonical text of a binding ---- */

static void sink_put_key(FILE *f, const char *k)
{
    bool bare = isalpha((unsigned char)*k) || *k == '_';
    for (const char *p = k; *p && bare; p++)
        bare = isalnum((unsigned char)*p) || *p == '_' || *p == '-';
    if (bare)
        fputs(k, f);
    else
        json_fput_str(f, k);
}

/*
 * b as a `binding "NAME" { }` block, with property pkey set to pval (or
 * removed: pval NULL) when pkey is not NULL.  Allocated; NULL when out of
 * memory.
 */
static char *sink_binding_text(const struct sink_binding *b, const char *pkey, const char *pval)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    fputs("binding ", f);
    json_fput_str(f, b->name);
    fputs(" {\n    event = ", f);
    json_fput_str(f, sink_event_name(b->ev));
    fputs(";\n    sink = ", f);
    json_fput_str(f, b->sink);
    fprintf(f, ";\n    priority = %d;\n", b->priority);
    if (b->rule_text != NULL) {
        fputs("    rule = ", f);
        json_fput_str(f, b->rule_text);
        fputs(";\n", f);
    }
    fprintf(f, "    enabled = %s;\n", sink_binding_enabled(b) ? "true" : "false");
    if (b->offload)
        fputs("    offload = true;\n", f);
    if (b->deadline_ms % 1000 == 0)
        fprintf(f, "    deadline = \"%llus\";\n", (unsigned long long)(b->deadline_ms / 1000));
    else
        fprintf(f, "    deadline = \"%llums\";\n", (unsigned long long)b->deadline_ms);
    fprintf(f, "    on_deadline = \"%s\";\n",
            b->on_deadline == SINK_CONTINUE ? "continue"
            : b->on_deadline == SINK_REJECT ? "reject"
                                            : "tempfail");
    size_t np = sink_props_count(b->props);
    bool add = pkey != NULL && pval != NULL && sink_props_get(b->props, pkey) == NULL;
    if (np > 0 || add) {
        fputs("    properties {\n", f);
        for (size_t i = 0; i < np; i++) {
            const char *k = sink_props_key(b->props, i), *v = sink_props_value(b->props, i);
            if (pkey != NULL && strcmp(k, pkey) == 0) {
                if (pval == NULL)
                    continue;
                v = pval;
            }
            fputs("        ", f);
            sink_put_key(f, k);
            fputs(" = ", f);
            json_fput_str(f, v);
            fputs(";\n", f);
        }
        if (add) {
            fputs("        ", f);
            sink_put_key(f, pkey);
            fputs(" = ", f);
            json_fput_str(f, pval);
            fputs(";\n", f);
        }
        fputs("    }\n", f);
    }
    fputs("}\n", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- bookkeeping under e->mu ---- */

static int sink_find(const struct sink_engine *e, const char *name)
{
    for (size_t i = 0; i < e->nb; i++)
        if (strcmp(e->b[i]->name, name) == 0)
            return (int)i;
    return -1;
}

static int sink_nomem(char *err, size_t errlen)
{
    snprintf(err, errlen, "sinks: out of memory");
    return -ENOMEM;
}

static int sink_unknown(const char *name, char *err, size_t errlen)
{
    snprintf(err, errlen, "no binding \"%s\"", name);
    return -ENOENT;
}

/* Room for one more retired binding and one more name to save, so that
 * nothing can fail once a change has begun to show. */
static bool sink_room(struct sink_engine *e)
{
    struct sink_binding **v = realloc(e->old_b, (e->nold_b + 1) * sizeof(*v));
    if (v == NULL)
        return false;
    e->old_b = v;
    char **d = realloc(e->dirty, (e->ndirty + 1) * sizeof(*d));
    if (d == NULL)
        return false;
    e->dirty = d;
    return true;
}

/* name needs saving (room made by sink_room; a failed strdup only costs
 * the write-back, said in the log by the caller's error). */
static bool sink_mark(struct sink_engine *e, const char *name)
{
    for (size_t i = 0; i < e->ndirty; i++)
        if (strcmp(e->dirty[i], name) == 0)
            return true;
    char *s = strdup(name);
    if (s == NULL)
        return false;
    e->dirty[e->ndirty++] = s;
    return true;
}

static void sink_retire(struct sink_engine *e, struct sink_binding *b)
{
    sink_binding_retire(e, b); /* room made by sink_room */
}

static void sink_lock(struct sink_engine *e)
{
    pthread_mutex_lock(&e->mu);
}

/* The end of a verb: frees what earlier changes retired and no thread
 * can use any more (what this one retired waits for the workers). */
static void sink_unlock(struct sink_engine *e)
{
    pthread_mutex_unlock(&e->mu);
    sink_reclaim(e);
}

/* ---- the verbs ---- */

/* Forgets what a failed load left in b (a disabled binding stays unloaded). */
static void sink_unload(struct sink_binding *b)
{
    sink_counters_free(b);
    sink_module_close(b);
    b->mod = NULL;
    b->inst = NULL;
    b->created = false;
}

int sink_engine_set_enabled(struct sink_engine *e, const char *name, bool on, char *err,
                            size_t errlen)
{
    sink_lock(e);
    int rc = 0, i = sink_find(e, name);
    if (i < 0) {
        rc = sink_unknown(name, err, errlen);
        goto out;
    }
    struct sink_binding *b = e->b[i];
    if (sink_binding_enabled(b) == on)
        goto out; /* already so */
    if (!sink_room(e)) {
        rc = sink_nomem(err, errlen);
        goto out;
    }
    if (on && !b->created) {
        /* Never loaded (disabled in the configuration): in no chain and
         * in no call, so it can be loaded in place. */
        char lerr[512];
        if (!sink_binding_load(b, lerr, sizeof(lerr))) {
            sink_unload(b);
            snprintf(err, errlen, "binding \"%s\": %s", name, lerr);
            rc = -ENOEXEC;
            goto out;
        }
    }
    /* Relaxed: the chain published below orders it for dispatches that
     * find b there; one still on an old chain may see either value. */
    atomic_store_explicit(&b->enabled, on, memory_order_relaxed);
    if (!sink_chains_publish(e, b->events)) {
        atomic_store_explicit(&b->enabled, !on, memory_order_relaxed);
        rc = sink_nomem(err, errlen);
        goto out;
    }
    if (!sink_mark(e, name))
        rc = sink_nomem(err, errlen);
out:
    sink_unlock(e);
    return rc;
}

/* A new binding from text (one binding block), for add and setprop. */
static struct sink_binding *sink_from_text(struct sink_engine *e, const char *text,
                                           const struct sink_binding *replacing, int *rc, char *err,
                                           size_t errlen)
{
    char perr[512];
    struct cfg_node *tree = cfg_parse(text, strlen(text), "binding", perr, sizeof(perr));
    if (tree == NULL) {
        snprintf(err, errlen, "%s", perr);
        *rc = -EINVAL;
        return NULL;
    }
    struct sink_binding *b = NULL;
    const struct cfg_node *n = cfg_node_count(tree) == 1 ? cfg_node_at(tree, 0) : NULL;
    if (n == NULL || cfg_node_key(n) == NULL || strcmp(cfg_node_key(n), "binding") != 0) {
        snprintf(err, errlen, "expected one block: binding \"NAME\" { event = ...; sink = ...; }");
        *rc = -EINVAL;
    } else {
        b = sink_binding_make(e, n, replacing, rc, err, errlen);
    }
    cfg_node_free(tree);
    return b;
}

/* "binding \"x\" (line N): what" -> "binding \"x\": what" */
static void sink_err_unline(char *err)
{
    char *p = strstr(err, "\" (line ");
    char *q = p ? strstr(p, "): ") : NULL;
    if (q != NULL)
        memmove(p + 1, q + 1, strlen(q + 1) + 1);
}

/* e->b[i] replaced by a binding made from text (under mu, room
 * reserved); on error the old one stays.  mark: to be saved. */
static int sink_replace(struct sink_engine *e, int i, const char *text, bool mark, char *err,
                        size_t errlen)
{
    int rc = 0;
    struct sink_binding *old = e->b[i];
    struct sink_binding *b = sink_from_text(e, text, old, &rc, err, errlen);
    if (b == NULL) {
        sink_err_unline(err); /* the line of a generated block means nothing */
        return rc;
    }
    /* The same binding to the operator: its place, line and counters. */
    b->order = old->order;
    b->line = old->line;
    sink_stats_free(b->stats);
    b->stats = old->stats;
    old->stats_lent = true;
    e->b[i] = b;
    if (!sink_chains_publish(e, b->events)) {
        e->b[i] = old;
        old->stats_lent = false;
        b->stats_lent = true;
        sink_binding_free(b);
        return sink_nomem(err, errlen);
    }
    sink_retire(e, old);
    if (mark && !sink_mark(e, old->name))
        rc = sink_nomem(err, errlen);
    return rc;
}

int sink_engine_setprop(struct sink_engine *e, const char *name, const char *key, const char *value,
                        char *err, size_t errlen)
{
    sink_lock(e);
    int rc = 0, i = sink_find(e, name);
    char *text = NULL;
    if (i < 0) {
        rc = sink_unknown(name, err, errlen);
        goto out;
    }
    struct sink_binding *old = e->b[i];
    if (key == NULL || *key == '\0') {
        snprintf(err, errlen, "binding \"%s\": empty property name", name);
        rc = -EINVAL;
        goto out;
    }
    if (value == NULL && sink_props_get(old->props, key) == NULL) {
        snprintf(err, errlen, "binding \"%s\": no property \"%s\"", name, key);
        rc = -ENOENT;
        goto out;
    }
    if (!sink_room(e) || (text = sink_binding_text(old, key, value)) == NULL) {
        rc = sink_nomem(err, errlen);
        goto out;
    }
    rc = sink_replace(e, i, text, true, err, errlen);
out:
    sink_unlock(e);
    free(text);
    return rc;
}

int sink_engine_rebind(struct sink_engine *e, const char *name, char *err, size_t errlen)
{
    sink_lock(e);
    int rc = 0, i = sink_find(e, name);
    char *text = NULL;
    if (i < 0) {
        rc = sink_unknown(name, err, errlen);
        goto out;
    }
    if (!sink_room(e) || (text = sink_binding_text(e->b[i], NULL, NULL)) == NULL) {
        rc = sink_nomem(err, errlen);
        goto out;
    }
    rc = sink_replace(e, i, text, false, err, errlen); /* the file is unchanged */
out:
    sink_unlock(e);
    free(text);
    return rc;
}

int sink_engine_add(struct sink_engine *e, const char *block_text, char *err, size_t errlen)
{
    sink_lock(e);
    int rc = 0;
    struct sink_binding **v = realloc(e->b, (e->nb + 1) * sizeof(*v));
    if (v == NULL || !sink_room(e)) {
        if (v != NULL)
            e->b = v;
        rc = sink_nomem(err, errlen);
        goto out;
    }
    e->b = v;
    struct sink_binding *b = sink_from_text(e, block_text, NULL, &rc, err, errlen);
    if (b == NULL)
        goto out;
    b->line = 0; /* not from the file: --bindings says "added live" */
    e->b[e->nb++] = b;
    if (!sink_chains_publish(e, b->events)) {
        e->nb--;
        sink_binding_free(b);
        rc = sink_nomem(err, errlen);
        goto out;
    }
    if (!sink_mark(e, b->name))
        rc = sink_nomem(err, errlen);
out:
    sink_unlock(e);
    return rc;
}

int sink_engine_remove(struct sink_engine *e, const char *name, char *err, size_t errlen)
{
    sink_lock(e);
    int rc = 0, i = sink_find(e, name);
    if (i < 0) {
        rc = sink_unknown(name, err, errlen);
        goto out;
    }
    if (!sink_room(e)) {
        rc = sink_nomem(err, errlen);
        goto out;
    }
    struct sink_binding *b = e->b[i];
    memmove(&e->b[i], &e->b[i + 1], (e->nb - (size_t)i - 1) * sizeof(e->b[0]));
    e->nb--;
    if (!sink_chains_publish(e, b->events)) {
        memmove(&e->b[i + 1], &e->b[i], (e->nb - (size_t)i) * sizeof(e->b[0]));
        e->b[i] = b;
        e->nb++;
        rc = sink_nomem(err, errlen);
        goto out;
    }
    sink_retire(e, b); /* its pending calls still point at it */
    sink_binding_removed(e, b); /* ... until their workers end them */
    if (!sink_mark(e, name))
        rc = sink_nomem(err, errlen);
out:
    sink_unlock(e);
    return rc;
}

/* ---- reload ---- */

int sink_engine_reload(struct sink_engine *e, const struct cfg *cfg, char *err, size_t errlen)
{
    sink_lock(e);
    struct sink_binding **oldv = e->b;
    size_t oldn = e->nb;
    e->b = NULL;
    e->nb = 0;
    int rc = -EINVAL;
    /* Every retirement this can cost, reserved before anything shows. */
    struct sink_binding **ob = realloc(e->old_b, (e->nold_b + oldn + 1) * sizeof(*ob));
    if (ob != NULL)
        e->old_b = ob;
    struct sink_chain **oc =
        ob ? realloc(e->old_chain, (e->nold_chain + SINK_EV_COUNT) * sizeof(*oc)) : NULL;
    if (oc != NULL)
        e->old_chain = oc;
    struct sink_chain *chains[SINK_EV_COUNT] = {0};
    if (oc == NULL) {
        rc = sink_nomem(err, errlen);
        goto fail;
    }
    if (!sink_bindings_read(e, cfg ? cfg->tree : NULL, err, errlen))
        goto fail;
    for (int ev = 0; ev < SINK_EV_COUNT; ev++) {
        if ((chains[ev] = sink_chain_build(e, (enum sink_event)ev)) == NULL) {
            rc = sink_nomem(err, errlen);
            goto fail;
        }
    }
    /* From here nothing fails. */
    for (size_t i = 0; i < e->nb; i++) {
        for (size_t j = 0; j < oldn; j++) {
            if (strcmp(e->b[i]->name, oldv[j]->name) == 0 && !oldv[j]->stats_lent) {
                sink_stats_free(e->b[i]->stats);
                e->b[i]->stats = oldv[j]->stats;
                oldv[j]->stats_lent = true;
                break;
            }
        }
    }
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        sink_chain_commit(e, (enum sink_event)ev, chains[ev]);
    for (size_t j = 0; j < oldn; j++)
        sink_binding_retire(e, oldv[j]); /* room reserved above */
    free(oldv);
    for (size_t i = 0; i < e->ndirty; i++)
        free(e->dirty[i]);
    e->ndirty = 0; /* the file is the truth now */
    sink_unlock(e);
    return 0;
fail:
    for (int ev = 0; ev < SINK_EV_COUNT; ev++)
        sink_chain_drop(chains[ev]);
    for (size_t i = e->nb; i-- > 0;)
        sink_binding_free(e->b[i]);
    free(e->b);
    e->b = oldv;
    e->nb = oldn;
    sink_unlock(e);
    return rc;
}

/* ---- persistence ---- */

int sink_engine_save(struct sink_engine *e, const char *conf_path, char *err, size_t errlen)
{
    sink_lock(e);
    char *text = NULL, *block = NULL;
    size_t len;
    int rc = 0;
    if (e->ndirty == 0)
        goto out;
    if ((rc = cfg_edit_read(conf_path, &text, &len, err, errlen)) < 0)
        goto out;
    for (size_t k = 0; k < e->ndirty; k++) {
        int i = sink_find(e, e->dirty[k]);
        block = NULL;
        if (i >= 0 && (block = sink_binding_text(e->b[i], NULL, NULL)) == NULL) {
            rc = sink_nomem(err, errlen);
            goto out;
        }
        char *out;
        size_t outlen;
        char perr[512];
        rc = cfg_edit_text(text, len, "binding", e->dirty[k], block, &out, &outlen, perr,
                           sizeof(perr));
        free(block);
        block = NULL;
        if (rc == -ENOENT && i < 0) { /* added and removed since: nothing to do */
            rc = 0;
            continue;
        }
        if (rc < 0) {
            snprintf(err, errlen, "%s: %s", conf_path, perr);
            goto out;
        }
        free(text);
        text = out;
        len = outlen;
    }
    char perr[512];
    struct cfg_node *tree = cfg_parse(text, len, conf_path, perr, sizeof(perr));
    if (tree == NULL) {
        snprintf(err, errlen, "%s: the edited file would not parse: %s", conf_path, perr);
        rc = -EINVAL;
        goto out;
    }
    cfg_node_free(tree);
    if ((rc = cfg_edit_write(conf_path, text, len, err, errlen)) < 0)
        goto out;
    for (size_t i = 0; i < e->ndirty; i++)
        free(e->dirty[i]);
    e->ndirty = 0;
out:
    sink_unlock(e);
    free(text);
    free(block);
    return rc;
}
