/*
 * NAME
 *	props - binding properties and property bags
 * SYNOPSIS
 *	#include "sinks/sink.h"
 *
 *	const char *sink_props_get(const struct sink_props *p, const char *key);
 *	long long sink_props_get_int(const struct sink_props *p, const char *key,
 *				     long long dflt);
 *	int sink_props_get_bool(const struct sink_props *p, const char *key, int dflt);
 *
 *	const char *sink_prop_get(struct sink_ctx *ctx, enum sink_scope scope,
 *				  const char *key);
 *	int sink_prop_set(struct sink_ctx *ctx, enum sink_scope scope,
 *			  const char *key, const char *value);
 * DESCRIPTION
 *	A binding's properties are a list of string pairs in file order,
 *	read-only once the engine exists (sink_props_*).
 *
 *	Bags hold string properties per message, per session and per server
 *	(sink_prop_*).  The message and session bags belong to the session
 *	(engine.h: sink_bag_create) and are only touched on its worker, so
 *	they need no lock.  The server bag is shared by every worker: it sits
 *	under the engine's mutex (why a mutex: sink_int.h), and a value read
 *	from it is copied into the ctx, so another worker's later set cannot
 *	pull it away while the sink reads it.
 *
 *	Lifetimes: sink_prop_get() of a message or session property is valid
 *	until handle() returns or the property is set again; of a server
 *	property, until handle() returns.  A NULL value in sink_prop_set()
 *	removes the key.
 * DIAGNOSTICS
 *	sink_prop_*: -ENOTSUP (NULL) when the event has no bag of that scope
 *	(e.g. a message bag at connect), -EINVAL for an empty key, -EPERM for
 *	a key starting "sink." (the engine's own: ctx_guard.c), -ENOMEM.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the list ---- */

struct sink_props *sink_props_new(void)
{
    return calloc(1, sizeof(struct sink_props));
}

static void sink_props_fini(struct sink_props *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->key[i]);
        free(p->val[i]);
    }
    free(p->key);
    free(p->val);
    memset(p, 0, sizeof(*p));
}

void sink_props_free(struct sink_props *p)
{
    if (p == NULL)
        return;
    sink_props_fini(p);
    free(p);
}

int sink_props_add(struct sink_props *p, const char *key, const char *val)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        char **k = realloc(p->key, cap * sizeof(*k));
        if (k == NULL)
            return -ENOMEM;
        p->key = k;
        char **v = realloc(p->val, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        p->val = v;
        p->cap = cap;
    }
    char *ks = strdup(key), *vs = strdup(val);
    if (ks == NULL || vs == NULL) {
        free(ks);
        free(vs);
        return -ENOMEM;
    }
    p->key[p->n] = ks;
    p->val[p->n++] = vs;
    return 0;
}

static ssize_t sink_props_find(const struct sink_props *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->key[i], key) == 0)
            return (ssize_t)i;
    return -1;
}

/* ---- sink.h: properties at create time ---- */

const char *sink_props_get(const struct sink_props *p, const char *key)
{
    if (p == NULL || key == NULL)
        return NULL;
    ssize_t i = sink_props_find(p, key);
    return i < 0 ? NULL : p->val[i];
}

long long sink_props_get_int(const struct sink_props *p, const char *key, long long dflt)
{
    const char *s = sink_props_get(p, key);
    if (s == NULL || *s == '\0')
        return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno != 0 || *end != '\0' ? dflt : v;
}

int sink_props_get_bool(const struct sink_props *p, const char *key, int dflt)
{
    const char *s = sink_props_get(p, key);
    if (s == NULL)
        return dflt;
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return dflt;
}

size_t sink_props_count(const struct sink_props *p)
{
    return p ? p->n : 0;
}

const char *sink_props_key(const struct sink_props *p, size_t i)
{
    return p && i < p->n ? p->key[i] : NULL;
}

const char *sink_props_value(const struct sink_props *p, size_t i)
{
    return p && i < p->n ? p->val[i] : NULL;
}

/* ---- bags ---- */

struct sink_bag *sink_bag_create(void)
{
    return calloc(1, sizeof(struct sink_bag));
}

void sink_bag_clear(struct sink_bag *b)
{
    if (b != NULL)
        sink_props_fini(&b->p);
}

void sink_bag_destroy(struct sink_bag *b)
{
    if (b == NULL)
        return;
    sink_props_fini(&b->p);
    free(b);
}

const char *sink_bag_get(const struct sink_bag *b, const char *key)
{
    return sink_props_get(&b->p, key);
}

int sink_bag_set(struct sink_bag *b, const char *key, const char *val)
{
    struct sink_props *p = &b->p;
    ssize_t i = sink_props_find(p, key);
    if (val == NULL) {
        if (i >= 0) {
            free(p->key[i]);
            free(p->val[i]);
            p->n--;
            memmove(&p->key[i], &p->key[i + 1], (p->n - (size_t)i) * sizeof(char *));
            memmove(&p->val[i], &p->val[i + 1], (p->n - (size_t)i) * sizeof(char *));
        }
        return 0;
    }
    if (i < 0)
        return sink_props_add(p, key, val);
    char *v = strdup(val);
    if (v == NULL)
        return -ENOMEM;
    free(p->val[i]);
    p->val[i] = v;
    return 0;
}

/* ---- sink.h: bags through the ctx ---- */

static struct sink_bag *sink_scope_bag(struct sink_ctx *ctx, enum sink_scope scope)
{
    switch (scope) {
    case SINK_SCOPE_MESSAGE:
        return ctx->d->message_bag;
    case SINK_SCOPE_SESSION:
        return ctx->d->session_bag;
    case SINK_SCOPE_SERVER:
        return &ctx->e->server_bag;
    }
    return NULL;
}

const char *sink_prop_get(struct sink_ctx *ctx, enum sink_scope scope, const char *key)
{
    struct sink_bag *b = sink_scope_bag(ctx, scope);
    if (b == NULL || key == NULL)
        return NULL;
    if (scope != SINK_SCOPE_SERVER)
        return sink_bag_get(b, key);

    struct sink_copy *c = NULL;
    pthread_mutex_lock(&ctx->e->server_mu);
    const char *v = sink_bag_get(b, key);
    if (v != NULL) {
        size_t len = strlen(v);
        c = malloc(sizeof(*c) + len + 1);
        if (c != NULL)
            memcpy(c->s, v, len + 1);
    }
    pthread_mutex_unlock(&ctx->e->server_mu);
    if (c == NULL)
        return NULL;
    c->next = ctx->copies;
    ctx->copies = c;
    return c->s;
}

int sink_prop_set(struct sink_ctx *ctx, enum sink_scope scope, const char *key, const char *value)
{
    struct sink_bag *b = sink_scope_bag(ctx, scope);
    if (b == NULL)
        return -ENOTSUP;
    if (key == NULL || *key == '\0')
        return -EINVAL;
    if (strncmp(key, SINK_PROP_RESERVED, strlen(SINK_PROP_RESERVED)) == 0)
        return -EPERM; /* the engine's own (ctx_guard.c) */
    if (scope != SINK_SCOPE_SERVER)
        return sink_bag_set(b, key, value);
    pthread_mutex_lock(&ctx->e->server_mu);
    int err = sink_bag_set(b, key, value);
    pthread_mutex_unlock(&ctx->e->server_mu);
    return err;
}

void sink_ctx_copies_free(struct sink_ctx *ctx)
{
    while (ctx->copies != NULL) {
        struct sink_copy *c = ctx->copies;
        ctx->copies = c->next;
        free(c);
    }
}
