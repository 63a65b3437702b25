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
 *	int sink_props_int(const struct sink_props *p, const char *key,
 *			   long long dflt, long long *out, char *err, size_t errlen);
 *	int sink_props_bool(..., int dflt, int *out, char *err, size_t errlen);
 *	int sink_props_ms(..., uint64_t dflt, uint64_t *out, char *err, size_t errlen);
 *	int sink_props_size(..., uint64_t dflt, uint64_t *out, char *err, size_t errlen);
 *
 *	const char *sink_prop_get(struct sink_ctx *ctx, enum sink_scope scope,
 *				  const char *key);
 *	int sink_prop_set(struct sink_ctx *ctx, enum sink_scope scope,
 *			  const char *key, const char *value);
 * DESCRIPTION
 *	A binding's properties are a list of string pairs in file order,
 *	read-only once the engine exists (sink_props_*).  The strict getters
 *	(sink_props_int, _bool, _ms, _size) answer the default for an absent
 *	key, the value for a well-formed one, and -EINVAL or -ERANGE with
 *	`property "KEY": "VALUE" is not WHAT` in err otherwise, which
 *	create() returns so that the binding is refused (at start, and for a
 *	live setprop or add, which then change nothing).  The lenient
 *	sink_props_get_int/_bool of ABI 1 stay: the default for a malformed
 *	value.
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

int sink_props_only(const struct sink_props *p, const char *const *keys, char *err, size_t errlen)
{
    for (size_t i = 0; i < sink_props_count(p); i++) {
        const char *k = sink_props_key(p, i);
        size_t j = 0;
        while (keys[j] != NULL && strcmp(keys[j], k) != 0)
            j++;
        if (keys[j] != NULL)
            continue;
        int n = snprintf(err, errlen, "unknown property \"%s\" (known:", k);
        for (j = 0; keys[j] != NULL && n >= 0 && (size_t)n < errlen; j++) {
            int w = snprintf(err + n, errlen - (size_t)n, "%s %s", j ? "," : "", keys[j]);
            n = w < 0 ? w : n + w;
        }
        if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, "%s)", keys[0] ? "" : " none");
        return -EINVAL;
    }
    return 0;
}

/* ---- sink.h: strict getters ---- */

static int sink_props_bad(const char *key, const char *v, const char *want, int rc, char *err,
                          size_t errlen)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "property \"%s\": \"%s\" is not %s", key, v, want);
    return rc;
}

/* NUMBER[.FRACTION] then a unit from units (mult per unit); "" is the
 * unit of a plain number.  0, -EINVAL or -ERANGE (beyond max). */
struct sink_unit {
    const char *sfx;
    double mult;
};
static int sink_props_scaled(const char *s, const struct sink_unit *units, size_t nunits,
                             bool fraction, double max, uint64_t *out)
{
    if (!(*s >= '0' && *s <= '9'))
        return -EINVAL;
    const char *q = s;
    while (*q >= '0' && *q <= '9')
        q++;
    if (*q == '.') {
        if (!fraction || !(q[1] >= '0' && q[1] <= '9'))
            return -EINVAL;
        for (q++; *q >= '0' && *q <= '9'; q++)
            ;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end != q)
        return errno == ERANGE ? -ERANGE : -EINVAL;
    for (size_t i = 0; i < nunits; i++) {
        if (strcasecmp(end, units[i].sfx) != 0)
            continue;
        double r = v * units[i].mult + 0.5;
        if (!(r < max))
            return -ERANGE;
        *out = (uint64_t)r;
        return 0;
    }
    return -EINVAL;
}

int sink_props_int(const struct sink_props *p, const char *key, long long dflt, long long *out,
                   char *err, size_t errlen)
{
    const char *s = sink_props_get(p, key);
    *out = dflt;
    if (s == NULL)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    bool digits = false;
    for (const char *q = s; q < end; q++)
        digits |= *q >= '0' && *q <= '9';
    if (!digits || *end != '\0' || *s == ' ' || (*s >= '\t' && *s <= '\r'))
        return sink_props_bad(key, s, "an integer", -EINVAL, err, errlen);
    if (errno == ERANGE)
        return sink_props_bad(key, s, "an integer in range", -ERANGE, err, errlen);
    *out = v;
    return 0;
}

int sink_props_bool(const struct sink_props *p, const char *key, int dflt, int *out, char *err,
                    size_t errlen)
{
    const char *s = sink_props_get(p, key);
    *out = dflt;
    if (s == NULL)
        return 0;
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return sink_props_bad(key, s, "a boolean (true/false, yes/no, on/off, 1/0)", -EINVAL, err,
                          errlen);
}

int sink_props_ms(const struct sink_props *p, const char *key, uint64_t dflt, uint64_t *out,
                  char *err, size_t errlen)
{
    /* A plain number is milliseconds: what sluice.conf makes of a bare
     * duration (`t = 2s;` reaches the sink as "2000", binding.c). */
    static const struct sink_unit units[] = {
        {"", 1},        {"ms", 1},        {"s", 1000},       {"sec", 1000},
        {"min", 60000}, {"h", 3600000.0}, {"d", 86400000.0}, {"w", 604800000.0},
    };
    const char *s = sink_props_get(p, key);
    *out = dflt;
    if (s == NULL)
        return 0;
    uint64_t v;
    int rc = sink_props_scaled(s, units, sizeof(units) / sizeof(units[0]), true, 1e15, &v);
    if (rc < 0)
        return sink_props_bad(key, s,
                              rc == -ERANGE ? "a duration in range"
                                            : "a duration (e.g. \"5s\", \"200ms\", \"2min\"; a "
                                              "plain number is milliseconds)",
                              rc, err, errlen);
    *out = v;
    return 0;
}

int sink_props_size(const struct sink_props *p, const char *key, uint64_t dflt, uint64_t *out,
                    char *err, size_t errlen)
{
    static const struct sink_unit units[] = {
        {"", 1},          {"b", 1},          {"k", 1024.0},       {"kb", 1024.0},
        {"m", 1048576.0}, {"mb", 1048576.0}, {"g", 1073741824.0}, {"gb", 1073741824.0},
    };
    const char *s = sink_props_get(p, key);
    *out = dflt;
    if (s == NULL)
        return 0;
    uint64_t v;
    int rc = sink_props_scaled(s, units, sizeof(units) / sizeof(units[0]), true, 1.8e19, &v);
    if (rc < 0)
        return sink_props_bad(key, s,
                              rc == -ERANGE ? "a size in range"
                                            : "a size (e.g. \"10M\", \"64k\", \"512\": octets, "
                                              "k/m/g x1024)",
                              rc, err, errlen);
    *out = v;
    return 0;
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
