/*
 * NAME
 *	builtin_alias - aliases and lists: rewrite and expand recipients
 * SYNOPSIS
 *	binding "aliases" {
 *	    event = "categorize"; sink = "builtin:alias";
 *	    properties {
 *	        "sales@example.test" = "a@example.test, b@example.test";
 *	        file = "/etc/sluice/aliases";
 *	    }
 *	}
 * DESCRIPTION
 *	Each property whose key is an address maps it (any case) to a
 *	comma-separated list of addresses.  `file` names an aliases file read
 *	once at create: one alias a line, `addr: a, b`, blank lines and lines
 *	starting with '#' ignored.  An address defined twice (in the
 *	properties, the file, or both) is an error.
 *
 *	At categorize every recipient is expanded: an address with an alias
 *	becomes its list, and each member is expanded again, down to a depth
 *	of 10; a member already on the way down (a loop, or an alias that
 *	names itself, `a: a, b`) is kept as it is, not expanded again.
 *	Duplicates (any case) are removed, the first occurrence kept.  The
 *	message's list is then edited in place: recipient i becomes the
 *	first address of its expansion (unchanged if that is itself), the
 *	rest are added at the end, and a recipient whose expansion was all
 *	duplicates is removed.  Verdict CONTINUE; TEMPFAIL (451 4.3.0) when
 *	an edit fails (out of memory): the message is deferred and tried
 *	again.
 *
 *	Lookups are a binary search over the sorted table; a message costs
 *	one search per address visited, at most SINK_ALIAS_VISITS visits.
 * DIAGNOSTICS
 *	create() fails, naming the alias (and the file's line), on a key that
 *	is not an address, an empty list, a member that is not an address,
 *	an unreadable file, or a duplicate.
 */
#include "sinks/sink_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/cfg/cfg.h"

#define SINK_ALIAS_DEPTH 10
#define SINK_ALIAS_VISITS 10000 /* per message: a wide, deep table cannot blow up */

struct alias_ent {
    char *key;
    char **to;
    size_t nto;
};

struct alias_inst {
    struct alias_ent *e;
    size_t n, cap;
};

static void alias_destroy(void *instance)
{
    struct alias_inst *a = instance;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++) {
        for (size_t j = 0; j < a->e[i].nto; j++)
            free(a->e[i].to[j]);
        free(a->e[i].to);
        free(a->e[i].key);
    }
    free(a->e);
    free(a);
}

static char *alias_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* key -> "a, b": validated and appended.  where: "" or "file F line N: ". */
static int alias_add(struct alias_inst *a, const char *key, const char *list, const char *where,
                     char *err, size_t errlen)
{
    if (!sink_addr_ok(key)) {
        snprintf(err, errlen, "%salias \"%s\": not an address (local@domain)", where, key);
        return -EINVAL;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        struct alias_ent *e = realloc(a->e, cap * sizeof(*e));
        if (e == NULL)
            return -ENOMEM;
        a->e = e;
        a->cap = cap;
    }
    struct alias_ent *e = &a->e[a->n];
    memset(e, 0, sizeof(*e));
    char *copy = strdup(list);
    if (copy == NULL || (e->key = strdup(key)) == NULL) {
        free(copy);
        return -ENOMEM;
    }
    a->n++; /* owned by a from here: alias_destroy frees a half-made entry */
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *m = alias_trim(tok);
        if (!sink_addr_ok(m)) {
            snprintf(err, errlen, "%salias \"%s\": member \"%s\" is not an address", where, key, m);
            rc = -EINVAL;
            break;
        }
        char **to = realloc(e->to, (e->nto + 1) * sizeof(*to));
        if (to == NULL || (to[e->nto] = strdup(m)) == NULL) {
            if (to != NULL)
                e->to = to;
            rc = -ENOMEM;
            break;
        }
        e->to = to;
        e->nto++;
    }
    if (rc == 0 && e->nto == 0) {
        snprintf(err, errlen, "%salias \"%s\": empty list", where, key);
        rc = -EINVAL;
    }
    free(copy);
    return rc;
}

static int alias_read_file(struct alias_inst *a, const char *path, char *err, size_t errlen)
{
    char why[512];
    int fd = cfg_file_open(path, why, sizeof(why)); /* a FIFO would block */
    if (fd < 0) {
        snprintf(err, errlen, "file %s", why);
        return fd;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "file %s: %s", path, strerror(e));
        return -e;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = alias_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char where[512];
        snprintf(where, sizeof(where), "file %s line %u: ", path, lineno);
        char *colon = strchr(s, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "%sexpected \"address: member, member\"", where);
            rc = -EINVAL;
            break;
        }
        *colon = '\0';
        rc = alias_add(a, alias_trim(s), colon + 1, where, err, errlen);
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "file %s: read error", path);
        rc = -EIO;
    }
    free(line);
    fclose(f);
    return rc;
}

static int alias_cmp(const void *x, const void *y)
{
    return strcasecmp(((const struct alias_ent *)x)->key, ((const struct alias_ent *)y)->key);
}

static int alias_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    struct alias_inst *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sink_props_count(p); i++) {
        const char *k = sink_props_key(p, i);
        if (strcmp(k, "file") == 0)
            rc = alias_read_file(a, sink_props_value(p, i), err, errlen);
        else
            rc = alias_add(a, k, sink_props_value(p, i), "", err, errlen);
    }
    if (rc == 0 && a->n > 0) {
        qsort(a->e, a->n, sizeof(*a->e), alias_cmp);
        for (size_t i = 1; i < a->n; i++) {
            if (strcasecmp(a->e[i - 1].key, a->e[i].key) == 0) {
                snprintf(err, errlen, "alias \"%s\" defined twice", a->e[i].key);
                rc = -EINVAL;
                break;
            }
        }
    }
    if (rc != 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        alias_destroy(a);
        return rc;
    }
    *instance = a;
    return 0;
}

static const struct alias_ent *alias_find(const struct alias_inst *a, const char *addr)
{
    struct alias_ent k = {.key = (char *)addr};
    return a->n ? bsearch(&k, a->e, a->n, sizeof(*a->e), alias_cmp) : NULL;
}

/* One message's expansion: the output list (borrowed strings: the table's
 * or the copies of the original recipients). */
struct alias_run {
    const struct alias_inst *a;
    const char **out;
    size_t n, cap;
    unsigned visits;
    const char *path[SINK_ALIAS_DEPTH];
    int rc;
};

static void alias_emit(struct alias_run *r, const char *addr)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->out[i], addr) == 0)
            return; /* a duplicate: the first one stays */
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        const char **o = realloc(r->out, cap * sizeof(*o));
        if (o == NULL) {
            r->rc = -ENOMEM;
            return;
        }
        r->out = o;
        r->cap = cap;
    }
    r->out[r->n++] = addr;
}

static void alias_expand(struct alias_run *r, const char *addr, unsigned depth)
{
    const struct alias_ent *e = NULL;
    bool on_path = false;
    for (unsigned i = 0; i < depth; i++)
        if (strcasecmp(r->path[i], addr) == 0)
            on_path = true;
    if (!on_path && depth < SINK_ALIAS_DEPTH && r->visits < SINK_ALIAS_VISITS) {
        r->visits++;
        e = alias_find(r->a, addr);
    }
    if (e == NULL) {
        alias_emit(r, addr);
        return;
    }
    r->path[depth] = e->key;
    for (size_t i = 0; i < e->nto && r->rc == 0; i++)
        alias_expand(r, e->to[i], depth + 1);
}

static enum sink_verdict alias_fail(struct sink_ctx *ctx, int rc)
{
    sink_set_reply(ctx, 451, "4.3.0", "alias expansion failed");
    (void)rc;
    return SINK_TEMPFAIL;
}

static enum sink_verdict alias_handle(void *instance, struct sink_ctx *ctx)
{
    const struct alias_inst *a = instance;
    size_t n = sink_rcpt_count(ctx);
    if (a->n == 0 || n == 0)
        return SINK_CONTINUE;
    /* The originals, copied: an edit may replace the strings they are. */
    char **orig = calloc(n, sizeof(*orig));
    size_t *start = calloc(n + 1, sizeof(*start));
    struct alias_run r = {.a = a};
    int rc = orig && start ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((orig[i] = strdup(sink_rcpt(ctx, i))) == NULL)
            rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        start[i] = r.n;
        alias_expand(&r, orig[i], 0);
        rc = r.rc;
    }
    if (rc == 0) {
        start[n] = r.n;
        /* replacements first (indices unchanged), then additions at the
         * end, then removals from the highest index down */
        for (size_t i = 0; rc == 0 && i < n; i++)
            if (start[i] < start[i + 1] && strcmp(r.out[start[i]], orig[i]) != 0)
                rc = sink_rcpt_set(ctx, i, r.out[start[i]]);
        for (size_t i = 0; rc == 0 && i < n; i++)
            for (size_t j = start[i] + 1; rc == 0 && j < start[i + 1]; j++)
                rc = sink_rcpt_add(ctx, r.out[j]);
        for (size_t i = n; rc == 0 && i-- > 0;)
            if (start[i] == start[i + 1])
                rc = sink_rcpt_remove(ctx, i);
    }
    for (size_t i = 0; orig && i < n; i++)
        free(orig[i]);
    free(orig);
    free(start);
    free(r.out);
    return rc == 0 ? SINK_CONTINUE : alias_fail(ctx, rc);
}

const struct sink_module sink_builtin_alias = {
    SINK_MODULE_HEAD,
    .name = "alias",
    .events = SINK_EVMASK(SINK_EV_CATEGORIZE),
    .create = alias_create,
    .destroy = alias_destroy,
    .handle = alias_handle,
};
