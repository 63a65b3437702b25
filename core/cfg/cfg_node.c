/*
 * NAME
 *	cfg_node - the parsed tree: accessors, release, numbers
 * SYNOPSIS
 *	#include "core/cfg/cfg.h"
 *
 *	enum cfg_type cfg_node_type(const struct cfg_node *n);
 *	int64_t cfg_node_int(const struct cfg_node *n);
 *	const struct cfg_node *cfg_node_get(const struct cfg_node *n,
 *					    const char *key);
 *	...
 *	void cfg_node_free(struct cfg_node *n);
 * DESCRIPTION
 *	The read side of the tree cfg_parse() builds, cfg_node_lift() (which
 *	turns JSON's `"binding": {"NAME": {...}}` into `binding "NAME" {...}`)
 *	and cfg_num_scan(), which decides what a word means as a number
 *	(cfg_parse.c uses it on bare words, cfg_table.c on quoted strings such
 *	as "64mb" in JSON).
 *
 *	Accessors take a borrowed node and accept NULL, which reads as an
 *	empty node (type CFG_NULL, no children), so lookups chain:
 *	cfg_node_get(cfg_node_get(tree, "tls"), "cert").  A scalar accessor
 *	applied to another type returns 0, false or NULL; cfg_node_int() of
 *	a CFG_FLOAT truncates it.  Returned pointers live as long as the tree.
 *
 *	Numbers: k m g multiply by 1000^n, kb mb gb by 1024^n (the node holds
 *	bytes); ms s min h d w make milliseconds (always CFG_INT).
 * DIAGNOSTICS
 *	cfg_node_at() with an index out of range is a broken contract and
 *	panics.
 */
#include "core/cfg/cfg_int.h"

#include "core/base/log.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void cfg_node_free(struct cfg_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkid; i++)
        cfg_node_free(n->kid[i]);
    free(n->kid);
    free(n->key);
    free(n->label);
    free(n->text);
    free(n);
}

/* ---- lifting `key { NAME { } }` to `key "NAME" { }` ---- */

/* A block of unlabelled blocks under key, itself unlabelled. */
static bool cfg_liftable(const struct cfg_node *n, const char *key)
{
    if (n->type != CFG_OBJECT || n->label != NULL || n->key == NULL || strcmp(n->key, key) != 0)
        return false;
    for (size_t i = 0; i < n->nkid; i++)
        if (n->kid[i]->type != CFG_OBJECT || n->kid[i]->label != NULL)
            return false;
    return true;
}

int cfg_node_lift(struct cfg_node *root, const char *key)
{
    if (root == NULL || root->type != CFG_OBJECT)
        return 0;
    size_t total = 0, nnew = 0, nshell = 0; /* nodes after, lifted ones, blocks lifted from */
    for (size_t i = 0; i < root->nkid; i++) {
        bool lift = cfg_liftable(root->kid[i], key);
        total += lift ? root->kid[i]->nkid : 1;
        nnew += lift ? root->kid[i]->nkid : 0;
        nshell += lift;
    }
    if (nshell == 0)
        return 0;
    /* Everything that can fail first, so a failure leaves the tree as it was. */
    struct cfg_node **nk = calloc(total ? total : 1, sizeof(*nk));
    char **keys = calloc(nnew ? nnew : 1, sizeof(*keys));
    bool ok = nk != NULL && keys != NULL;
    for (size_t j = 0; ok && j < nnew; j++)
        ok = (keys[j] = strdup(key)) != NULL;
    if (!ok) {
        for (size_t j = 0; keys != NULL && j < nnew; j++)
            free(keys[j]);
        free(keys);
        free(nk);
        return -ENOMEM;
    }
    size_t o = 0, kk = 0;
    for (size_t i = 0; i < root->nkid; i++) {
        struct cfg_node *n = root->kid[i];
        if (!cfg_liftable(n, key)) {
            nk[o++] = n;
            continue;
        }
        for (size_t j = 0; j < n->nkid; j++) {
            struct cfg_node *g = n->kid[j];
            g->label = g->key; /* NAME, as the parser read it */
            g->key = keys[kk++];
            g->lifted = true;
            nk[o++] = g;
        }
        n->nkid = 0; /* the children moved; the shell goes */
        cfg_node_free(n);
    }
    free(keys);
    free(root->kid);
    root->kid = nk;
    root->nkid = root->capkid = total;
    return 0;
}

/* ---- numbers ---- */

static const struct cfg_suffix {
    const char *name;
    int64_t mult; /* bytes, or milliseconds */
    enum cfg_unit unit;
} cfg_suffixes[] = {
    {"k", 1000, CFG_UNIT_SIZE},
    {"m", 1000 * 1000, CFG_UNIT_SIZE},
    {"g", 1000 * 1000 * 1000, CFG_UNIT_SIZE},
    {"kb", 1024, CFG_UNIT_SIZE},
    {"mb", 1024 * 1024, CFG_UNIT_SIZE},
    {"gb", 1024 * 1024 * 1024, CFG_UNIT_SIZE},
    {"ms", 1, CFG_UNIT_TIME},
    {"s", 1000, CFG_UNIT_TIME},
    {"min", 60 * 1000, CFG_UNIT_TIME},
    {"h", 3600 * 1000, CFG_UNIT_TIME},
    {"d", 86400 * 1000, CFG_UNIT_TIME},
    {"w", 7 * 86400 * 1000LL, CFG_UNIT_TIME},
};

static int cfg_num_hex(const char *s, size_t len, bool neg, struct cfg_num *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return -EINVAL;
        if (v > (UINT64_MAX >> 4))
            return -ERANGE;
        v = v << 4 |
            (uint64_t)(isdigit((unsigned char)s[i]) ? s[i] - '0'
                                                    : (tolower((unsigned char)s[i]) - 'a' + 10));
    }
    if (v > (uint64_t)INT64_MAX)
        return -ERANGE;
    out->type = CFG_INT;
    out->unit = CFG_UNIT_NONE;
    out->i = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

int cfg_num_scan(const char *s, size_t len, struct cfg_num *out)
{
    size_t i = 0;
    bool neg = false, isfloat = false;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i >= len || !isdigit((unsigned char)s[i]))
        return -EINVAL;
    if (s[i] == '0' && i + 1 < len && (s[i + 1] == 'x' || s[i + 1] == 'X'))
        return cfg_num_hex(s + i + 2, len - i - 2, neg, out);
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    if (i < len && s[i] == '.') {
        if (++i >= len || !isdigit((unsigned char)s[i]))
            return -EINVAL;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        isfloat = true;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < len && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < len && isdigit((unsigned char)s[j])) {
            while (j < len && isdigit((unsigned char)s[j]))
                j++;
            i = j;
            isfloat = true;
        }
    }
    const struct cfg_suffix *sfx = NULL;
    if (i < len) {
        for (size_t k = 0; k < sizeof(cfg_suffixes) / sizeof(cfg_suffixes[0]); k++) {
            size_t sl = strlen(cfg_suffixes[k].name);
            if (sl == len - i && strncasecmp(s + i, cfg_suffixes[k].name, sl) == 0)
                sfx = &cfg_suffixes[k];
        }
        if (sfx == NULL)
            return -EINVAL;
    }
    char buf[64];
    if (i >= sizeof(buf))
        return -ERANGE;
    memcpy(buf, s, i);
    buf[i] = '\0';
    out->unit = sfx ? sfx->unit : CFG_UNIT_NONE;
    int64_t mult = sfx ? sfx->mult : 1;
    errno = 0;
    if (!isfloat) {
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE || __builtin_mul_overflow((int64_t)v, mult, &out->i))
            return -ERANGE;
        out->type = CFG_INT;
        return 0;
    }
    double f = strtod(buf, NULL) * (double)mult;
    if (!(f >= -DBL_MAX && f <= DBL_MAX)) /* overflowed to an infinity */
        return -ERANGE;
    /* Milliseconds are whole; a size that came out whole is an integer too. */
    if (out->unit != CFG_UNIT_NONE && cfg_fits_int(f) &&
        (out->unit == CFG_UNIT_TIME || cfg_is_whole(f))) {
        out->type = CFG_INT;
        out->i = cfg_round(f);
        return 0;
    }
    if (out->unit == CFG_UNIT_TIME)
        return -ERANGE;
    out->type = CFG_FLOAT;
    out->f = f;
    return 0;
}

/* ---- accessors (a NULL node reads as an empty one) ---- */

enum cfg_type cfg_node_type(const struct cfg_node *n)
{
    return n ? n->type : CFG_NULL;
}
unsigned cfg_node_line(const struct cfg_node *n)
{
    return n ? n->line : 0;
}
const char *cfg_node_key(const struct cfg_node *n)
{
    return n ? n->key : NULL;
}
const char *cfg_node_label(const struct cfg_node *n)
{
    return n ? n->label : NULL;
}

bool cfg_node_bool(const struct cfg_node *n)
{
    return n && n->type == CFG_BOOL && n->v.b;
}

int64_t cfg_node_int(const struct cfg_node *n)
{
    if (n == NULL)
        return 0;
    if (n->type == CFG_INT)
        return n->v.i;
    if (n->type == CFG_FLOAT && cfg_fits_int(n->v.f))
        return (int64_t)n->v.f;
    return 0;
}

double cfg_node_float(const struct cfg_node *n)
{
    if (n == NULL)
        return 0;
    return n->type == CFG_FLOAT ? n->v.f : n->type == CFG_INT ? (double)n->v.i : 0;
}

/* A STRING's value; for a bare word of another type, the word as written. */
const char *cfg_node_str(const struct cfg_node *n)
{
    return n && n->type != CFG_ARRAY && n->type != CFG_OBJECT ? n->text : NULL;
}

size_t cfg_node_count(const struct cfg_node *n)
{
    return n && (n->type == CFG_ARRAY || n->type == CFG_OBJECT) ? n->nkid : 0;
}

const struct cfg_node *cfg_node_at(const struct cfg_node *n, size_t i)
{
    if (i >= cfg_node_count(n))
        log_panic("cfg_node_at: index %zu out of range (%zu)", i, cfg_node_count(n));
    return n->kid[i];
}

const struct cfg_node *cfg_node_get(const struct cfg_node *n, const char *key)
{
    if (n == NULL || n->type != CFG_OBJECT)
        return NULL;
    for (size_t i = 0; i < n->nkid; i++)
        if (strcmp(n->kid[i]->key, key) == 0)
            return n->kid[i];
    return NULL;
}
