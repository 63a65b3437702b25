/*
 * NAME
 *	cfg_parse - the UCL/JSON subset sluice.conf is written in
 * SYNOPSIS
 *	#include "core/cfg/cfg.h"
 *
 *	struct cfg_node *cfg_parse(const char *text, size_t len,
 *				   const char *name, char *err, size_t errlen);
 *	void cfg_node_free(struct cfg_node *n);
 * DESCRIPTION
 *	cfg_parse() turns text into a tree of cfg_node.  The top level is an
 *	object whose braces are optional, so a JSON object parses too.  A
 *	member is `key = value`, `key: value` or `key value`, ended by `;`,
 *	`,` or a newline; `key "label" { ... }` is an object with a label.
 *	Repeated keys are kept, in file order.  Values are "strings" with
 *	JSON escapes, 'strings' (only \' is an escape), [arrays], {objects}
 *	and bare words: true/yes/on, false/no/off, null, numbers, otherwise
 *	a string.  A number may carry a size suffix (k m g = 1000^n, kb mb
 *	gb = 1024^n; the node holds bytes) or a time suffix (ms s min h d w;
 *	the node holds milliseconds as CFG_INT).  Comments are #, // and
 *	nesting C comments.
 *
 *	Every node records its span in the text (cfg_int.h: the entry from
 *	key through terminator, and the value alone), which is how cfg_edit.c
 *	finds a block without a lexer of its own.
 *
 *	The text is borrowed; the returned tree belongs to the caller and is
 *	released with cfg_node_free().  Every node owns its key, label, string
 *	and children; pointers from the accessors are valid until then.
 *	The accessors, cfg_node_free() and the number scanner are in
 *	cfg_node.c.
 * DIAGNOSTICS
 *	On error cfg_parse() returns NULL with one line in err,
 *	"NAME:LINE: what".  Refused: input over 4 MiB, NUL bytes, raw control
 *	characters inside strings, nesting deeper than 32.
 */
#include "core/cfg/cfg_int.h"

#include "core/base/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cfg_parser {
    const char *base, *p, *end; /* base: the start of the text, for spans */
    const char *name;           /* borrowed, for messages */
    unsigned line;
    bool noline; /* messages say "NAME: ", not "NAME:LINE: " */
    int depth;
    bool failed;
    char *err;
    size_t errlen;
};

/* A growing string; the parser owns it until it is handed to a node. */
struct cfg_buf {
    char *s;
    size_t n, cap;
};

static void cfg_perr(struct cfg_parser *ps, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_perr(struct cfg_parser *ps, unsigned line, const char *fmt, ...)
{
    if (ps->failed)
        return; /* the first error is the one worth reporting */
    ps->failed = true;
    if (ps->err == NULL || ps->errlen == 0)
        return;
    int n = ps->name == NULL ? snprintf(ps->err, ps->errlen, "line %u: ", line)
            : ps->noline     ? snprintf(ps->err, ps->errlen, "%s: ", ps->name)
                             : snprintf(ps->err, ps->errlen, "%s:%u: ", ps->name, line);
    if (n < 0 || (size_t)n >= ps->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    /* one line, whatever a quoted key or a file name held (a key with
     * "\n" in it must not split the error a log or a terminal shows) */
    for (char *p = ps->err; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static bool cfg_buf_put(struct cfg_buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 32;
        while (ncap < b->n + n + 1)
            ncap *= 2;
        char *ns = realloc(b->s, ncap);
        if (ns == NULL)
            return false;
        b->s = ns;
        b->cap = ncap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return true;
}

/* ---- nodes ---- */

static struct cfg_node *cfg_node_new(struct cfg_parser *ps, enum cfg_type type, unsigned line)
{
    struct cfg_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        cfg_perr(ps, line, "out of memory");
        return NULL;
    }
    n->type = type;
    n->line = line;
    return n;
}

static bool cfg_node_add(struct cfg_parser *ps, struct cfg_node *parent, struct cfg_node *kid)
{
    if (parent->nkid == parent->capkid) {
        size_t ncap = parent->capkid ? parent->capkid * 2 : 8;
        struct cfg_node **nk = realloc(parent->kid, ncap * sizeof(*nk));
        if (nk == NULL) {
            cfg_perr(ps, kid->line, "out of memory");
            cfg_node_free(kid);
            return false;
        }
        parent->kid = nk;
        parent->capkid = ncap;
    }
    parent->kid[parent->nkid++] = kid;
    return true;
}

/* ---- lexing ---- */

static bool cfg_at_end(const struct cfg_parser *ps)
{
    return ps->p >= ps->end;
}

/* Where the parser is, as an offset into the text (for spans). */
static size_t cfg_off(const struct cfg_parser *ps)
{
    return (size_t)(ps->p - ps->base);
}

/* A `;` or `,` on the line of the entry that just ended (nl: none
 * between) belongs to it: the entry's span takes it, and the parser
 * steps over it. */
static void cfg_terminator(struct cfg_parser *ps, struct cfg_node *n, bool nl)
{
    if (!nl && !cfg_at_end(ps) && (*ps->p == ';' || *ps->p == ',')) {
        ps->p++;
        n->end = cfg_off(ps);
    }
}

static bool cfg_is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* Characters that end a bare word (besides whitespace and control chars). */
static bool cfg_is_stop(unsigned char c)
{
    return c == ';' || c == ',' || c == '{' || c == '}' || c == '[' || c == ']' || c == '"' ||
           c == '\'' || c == '#' || c == ' ' || cfg_is_ctl(c);
}

static bool cfg_is_keych(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.';
}

/* Skips blanks and comments; *nl is set when a line ended on the way. */
static bool cfg_skip(struct cfg_parser *ps, bool *nl)
{
    while (!cfg_at_end(ps)) {
        char c = *ps->p;
        if (c == '\n') {
            ps->line++;
            ps->p++;
            if (nl)
                *nl = true;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            ps->p++;
        } else if (c == '#' || (c == '/' && ps->p + 1 < ps->end && ps->p[1] == '/')) {
            while (!cfg_at_end(ps) && *ps->p != '\n')
                ps->p++;
        } else if (c == '/' && ps->p + 1 < ps->end && ps->p[1] == '*') {
            unsigned start = ps->line, level = 0;
            do {
                if (cfg_at_end(ps)) {
                    cfg_perr(ps, start, "unterminated comment");
                    return false;
                }
                if (ps->p + 1 < ps->end && ps->p[0] == '/' && ps->p[1] == '*') {
                    level++;
                    ps->p += 2;
                } else if (ps->p + 1 < ps->end && ps->p[0] == '*' && ps->p[1] == '/') {
                    level--;
                    ps->p += 2;
                } else {
                    if (*ps->p == '\n') {
                        ps->line++;
                        if (nl)
                            *nl = true;
                    }
                    ps->p++;
                }
            } while (level > 0);
        } else {
            break;
        }
    }
    return true;
}

static void cfg_unexpected(struct cfg_parser *ps, const char *what)
{
    unsigned char c = (unsigned char)*ps->p;
    if (cfg_at_end(ps))
        cfg_perr(ps, ps->line, "unexpected end of input, expected %s", what);
    else if (cfg_is_ctl(c) || c >= 0x80)
        cfg_perr(ps, ps->line, "unexpected character 0x%02x, expected %s", c, what);
    else
        cfg_perr(ps, ps->line, "unexpected '%c', expected %s", c, what);
}

static void cfg_put_utf8(struct cfg_buf *b, uint32_t cp, bool *ok)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (!cfg_buf_put(b, u, n))
        *ok = false;
}

static bool cfg_hex4(struct cfg_parser *ps, uint32_t *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++) {
        if (cfg_at_end(ps) || !isxdigit((unsigned char)*ps->p))
            return false;
        char c = (char)tolower((unsigned char)*ps->p++);
        *out = *out << 4 | (uint32_t)(isdigit((unsigned char)c) ? c - '0' : c - 'a' + 10);
    }
    return true;
}

/* \uXXXX, with a surrogate pair as one code point; at the 'u'. */
static bool cfg_unicode(struct cfg_parser *ps, struct cfg_buf *b, bool *ok)
{
    uint32_t cp, lo;
    ps->p++;
    if (!cfg_hex4(ps, &cp))
        return false;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return false;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return false;
        ps->p += 2;
        if (!cfg_hex4(ps, &lo) || lo < 0xdc00 || lo > 0xdfff)
            return false;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0) {
        cfg_perr(ps, ps->line, "NUL in string");
        return false;
    }
    cfg_put_utf8(b, cp, ok);
    return true;
}

/* A quoted string at the opening quote; the result is the caller's. */
static char *cfg_quoted(struct cfg_parser *ps)
{
    char q = *ps->p++;
    unsigned start = ps->line;
    struct cfg_buf b = {0};
    bool ok = cfg_buf_put(&b, "", 0);
    for (;;) {
        if (cfg_at_end(ps) || *ps->p == '\n') {
            cfg_perr(ps, start, "unterminated string");
            goto fail;
        }
        unsigned char c = (unsigned char)*ps->p;
        if (c == (unsigned char)q) {
            ps->p++;
            break;
        }
        if (cfg_is_ctl(c)) {
            cfg_perr(ps, ps->line, "control character 0x%02x in string", c);
            goto fail;
        }
        if (c != '\\' || ps->p + 1 >= ps->end) {
            ok = ok && cfg_buf_put(&b, ps->p++, 1);
            continue;
        }
        char e = ps->p[1];
        if (q == '\'') { /* only \' is special between single quotes */
            ok = ok && (e == '\'' ? cfg_buf_put(&b, "'", 1) : cfg_buf_put(&b, ps->p, 2));
            ps->p += 2;
            continue;
        }
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *m = e ? strchr(from, e) : NULL;
        ps->p++;
        if (m != NULL) {
            ok = ok && cfg_buf_put(&b, &to[m - from], 1);
            ps->p++;
        } else if (e == 'u') {
            if (!cfg_unicode(ps, &b, &ok)) {
                cfg_perr(ps, ps->line, "bad \\u escape in string");
                goto fail;
            }
        } else {
            if (cfg_is_ctl((unsigned char)e) || (unsigned char)e >= 0x80)
                cfg_perr(ps, ps->line, "bad escape in string");
            else
                cfg_perr(ps, ps->line, "bad escape \\%c in string", e);
            goto fail;
        }
    }
    if (ok)
        return b.s;
    cfg_perr(ps, start, "out of memory");
fail:
    free(b.s);
    return NULL;
}

static char *cfg_strndup(struct cfg_parser *ps, const char *s, size_t n)
{
    char *r = strndup(s, n);
    if (r == NULL)
        cfg_perr(ps, ps->line, "out of memory");
    return r;
}

/* ---- values ---- */

static struct cfg_node *cfg_value(struct cfg_parser *ps);
static bool cfg_members(struct cfg_parser *ps, struct cfg_node *obj, char closer, unsigned open);

static struct cfg_node *cfg_bare(struct cfg_parser *ps)
{
    const char *s = ps->p;
    while (!cfg_at_end(ps) && !cfg_is_stop((unsigned char)*ps->p))
        ps->p++;
    size_t len = (size_t)(ps->p - s);
    struct cfg_node *n = cfg_node_new(ps, CFG_STRING, ps->line);
    if (n == NULL || (n->text = cfg_strndup(ps, s, len)) == NULL)
        goto fail;
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(n->text, yes[i]) == 0 || strcasecmp(n->text, no[i]) == 0) {
            n->type = CFG_BOOL;
            n->v.b = strcasecmp(n->text, yes[i]) == 0;
            return n;
        }
    }
    if (strcasecmp(n->text, "null") == 0) {
        n->type = CFG_NULL;
        return n;
    }
    struct cfg_num num;
    int r = cfg_num_scan(s, len, &num);
    if (r == -ERANGE) {
        cfg_perr(ps, ps->line, "number out of range: %s", n->text);
        goto fail;
    }
    if (r == 0) {
        n->type = num.type;
        n->unit = num.unit;
        if (num.type == CFG_INT)
            n->v.i = num.i;
        else
            n->v.f = num.f;
    }
    return n;
fail:
    cfg_node_free(n);
    return NULL;
}

static bool cfg_enter(struct cfg_parser *ps)
{
    if (++ps->depth > CFG_MAX_DEPTH) {
        cfg_perr(ps, ps->line, "nesting deeper than %d", CFG_MAX_DEPTH);
        return false;
    }
    return true;
}

static struct cfg_node *cfg_array(struct cfg_parser *ps)
{
    unsigned open = ps->line;
    struct cfg_node *a = cfg_node_new(ps, CFG_ARRAY, open);
    ps->p++;
    if (a == NULL || !cfg_enter(ps))
        goto fail;
    for (;;) {
        if (!cfg_skip(ps, NULL))
            goto fail;
        if (cfg_at_end(ps)) {
            cfg_perr(ps, open, "unterminated array");
            goto fail;
        }
        if (*ps->p == ']') {
            ps->p++;
            break;
        }
        struct cfg_node *item = cfg_value(ps);
        if (item == NULL || !cfg_node_add(ps, a, item))
            goto fail;
        bool nl = false;
        if (!cfg_skip(ps, &nl))
            goto fail;
        if (!nl && !cfg_at_end(ps) && *ps->p == ',') {
            ps->p++;
            item->end = cfg_off(ps);
        } else if (!cfg_at_end(ps) && *ps->p == ',') {
            ps->p++;
        } else if (!nl && !cfg_at_end(ps) && *ps->p != ']') {
            cfg_unexpected(ps, "',' or ']'");
            goto fail;
        }
    }
    ps->depth--;
    return a;
fail:
    cfg_node_free(a);
    return NULL;
}

static struct cfg_node *cfg_object(struct cfg_parser *ps)
{
    unsigned open = ps->line;
    struct cfg_node *o = cfg_node_new(ps, CFG_OBJECT, open);
    ps->p++;
    if (o == NULL || !cfg_enter(ps) || !cfg_members(ps, o, '}', open)) {
        cfg_node_free(o);
        return NULL;
    }
    ps->depth--;
    return o;
}

/* A value at the current (non-blank) character, without its span. */
static struct cfg_node *cfg_value_at(struct cfg_parser *ps)
{
    if (cfg_at_end(ps)) {
        cfg_unexpected(ps, "a value");
        return NULL;
    }
    unsigned char c = (unsigned char)*ps->p;
    if (c == '[')
        return cfg_array(ps);
    if (c == '{')
        return cfg_object(ps);
    if (c == '"' || c == '\'') {
        unsigned line = ps->line;
        char *s = cfg_quoted(ps);
        struct cfg_node *n = s ? cfg_node_new(ps, CFG_STRING, line) : NULL;
        if (n == NULL)
            free(s);
        else
            n->text = s;
        return n;
    }
    if (cfg_is_stop(c) || c == '=') {
        cfg_unexpected(ps, "a value");
        return NULL;
    }
    return cfg_bare(ps);
}

/* A value with its span: the value alone (vstart, vend), which is the
 * whole entry of an array item until a terminator extends it. */
static struct cfg_node *cfg_value(struct cfg_parser *ps)
{
    size_t start = cfg_off(ps);
    struct cfg_node *n = cfg_value_at(ps);
    if (n != NULL) {
        n->start = n->vstart = start;
        n->end = n->vend = cfg_off(ps);
    }
    return n;
}

/* A key at the current (non-blank) character; the result is the caller's. */
static char *cfg_key(struct cfg_parser *ps)
{
    if (*ps->p == '"' || *ps->p == '\'') {
        char *k = cfg_quoted(ps);
        if (k != NULL && *k == '\0') {
            cfg_perr(ps, ps->line, "empty key");
            free(k);
            return NULL;
        }
        return k;
    }
    const char *s = ps->p;
    while (!cfg_at_end(ps) && cfg_is_keych((unsigned char)*ps->p))
        ps->p++;
    if (ps->p == s) {
        cfg_unexpected(ps, "a key");
        return NULL;
    }
    unsigned char c = cfg_at_end(ps) ? ' ' : (unsigned char)*ps->p;
    if (!cfg_is_stop(c) && c != '=' && c != ':' && c != '\t' && c != '/') {
        cfg_perr(ps, ps->line, "bad character '%c' in key", c);
        return NULL;
    }
    return cfg_strndup(ps, s, (size_t)(ps->p - s));
}

/*
 * One member: key [= | :] value, or key "label" { ... }.  Sets *block when
 * the value was an object (no separator needed after one) and *nl when a
 * line ended after the value.
 */
static struct cfg_node *cfg_member(struct cfg_parser *ps, bool *block, bool *nl)
{
    unsigned line = ps->line;
    size_t start = cfg_off(ps);
    char *key = cfg_key(ps);
    struct cfg_node *v = NULL;
    if (key == NULL || !cfg_skip(ps, NULL))
        goto fail;
    bool explicit = !cfg_at_end(ps) && (*ps->p == '=' || *ps->p == ':');
    if (explicit) {
        ps->p++;
        if (!cfg_skip(ps, NULL))
            goto fail;
    }
    if (cfg_at_end(ps) || *ps->p == ';' || *ps->p == ',' || *ps->p == '}') {
        cfg_perr(ps, line, "%s: missing value", key);
        goto fail;
    }
    if ((v = cfg_value(ps)) == NULL || !cfg_skip(ps, nl))
        goto fail;
    if (!explicit && v->text != NULL && !cfg_at_end(ps) && *ps->p == '{') {
        /* `key "label" { ... }` */
        char *label = v->text;
        v->text = NULL;
        cfg_node_free(v);
        if ((v = cfg_value(ps)) == NULL) { /* the object: the value is its braces */
            free(label);
            goto fail;
        }
        v->label = label;
        *nl = false;
        if (!cfg_skip(ps, nl))
            goto fail;
    }
    *block = v->type == CFG_OBJECT;
    v->key = key;
    v->line = line;
    v->start = start; /* the entry: key .. value, until a terminator extends it */
    return v;
fail:
    free(key);
    cfg_node_free(v);
    return NULL;
}

/* Members up to closer ('}', or '\0' for the end of the text). */
static bool cfg_members(struct cfg_parser *ps, struct cfg_node *obj, char closer, unsigned open)
{
    for (;;) {
        if (!cfg_skip(ps, NULL))
            return false;
        if (cfg_at_end(ps)) {
            if (closer == '\0')
                return true;
            cfg_perr(ps, open, "unterminated object");
            return false;
        }
        char c = *ps->p;
        if (c == closer) {
            ps->p++;
            return true;
        }
        if (c == ';' || c == ',') { /* empty and trailing separators */
            ps->p++;
            continue;
        }
        bool block = false, nl = false;
        struct cfg_node *m = cfg_member(ps, &block, &nl);
        if (m == NULL || !cfg_node_add(ps, obj, m))
            return false;
        const char *before = ps->p;
        cfg_terminator(ps, m, nl);
        if (ps->p != before || cfg_at_end(ps) || block || nl)
            continue;
        c = *ps->p;
        if (c != closer || closer == '\0') {
            cfg_unexpected(ps, "';' or a newline after the value");
            return false;
        }
    }
}

static struct cfg_node *cfg_parse_with(struct cfg_parser *ps, const char *text, size_t len)
{
    if (len > CFG_MAX_INPUT) {
        cfg_perr(ps, 1, "input larger than %u bytes", CFG_MAX_INPUT);
        return NULL;
    }
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL) {
        unsigned line = 1;
        for (const char *q = text; q < nul; q++)
            line += *q == '\n';
        cfg_perr(ps, line, "NUL byte in input");
        return NULL;
    }
    ps->base = ps->p = text;
    ps->end = text + len;
    ps->line = 1;
    struct cfg_node *root = cfg_node_new(ps, CFG_OBJECT, 1);
    if (root == NULL || !cfg_skip(ps, NULL))
        goto fail;
    root->end = root->vend = len;
    if (!cfg_at_end(ps) && *ps->p == '{') { /* a JSON object: braces around it all */
        unsigned open = ps->line;
        root->braced = true;
        root->start = root->vstart = cfg_off(ps);
        ps->p++;
        if (!cfg_members(ps, root, '}', open))
            goto fail;
        root->end = root->vend = cfg_off(ps);
        while (cfg_skip(ps, NULL) && !cfg_at_end(ps) && *ps->p == ';')
            ps->p++;
        if (!cfg_at_end(ps)) {
            if (!ps->failed)
                cfg_unexpected(ps, "the end after the closing '}'");
            goto fail;
        }
    } else if (!cfg_members(ps, root, '\0', 1)) {
        goto fail;
    }
    return root;
fail:
    cfg_node_free(root);
    return NULL;
}

struct cfg_node *cfg_parse(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    struct cfg_parser ps = {.name = name ? name : "-", .err = err, .errlen = errlen};
    if (text == NULL && len != 0)
        log_panic("cfg_parse: text is NULL");
    return cfg_parse_with(&ps, text ? text : "", len);
}

struct cfg_node *cfg_parse_noline(const char *text, size_t len, const char *name, char *err,
                                  size_t errlen)
{
    struct cfg_parser ps = {.name = name, .noline = true, .err = err, .errlen = errlen};
    return cfg_parse_with(&ps, text, len);
}

struct cfg_node *cfg_parse_lines(const char *text, size_t len, char *err, size_t errlen)
{
    struct cfg_parser ps = {.name = NULL, .err = err, .errlen = errlen};
    return cfg_parse_with(&ps, text, len);
}
