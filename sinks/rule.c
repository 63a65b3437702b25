/*
 * NAME
 *	rule - the `rule` of a binding: which events its sink sees
 * SYNOPSIS
 *	#include "sinks/sink_int.h"
 *
 *	struct sink_rule *r = sink_rule_compile("MAIL FROM=*@example.com;"
 *	    "RCPT TO=*@a.example,*@b.example", err, sizeof(err));
 *	if (sink_rule_match(r, SINK_EV_RCPT, d)) ...
 * DESCRIPTION
 *	A rule is conditions separated by `;`, every one of which must hold.
 *	A condition is KEY=PATTERN[,PATTERN...]: it holds when any pattern
 *	matches.  Patterns are globs, case-insensitive, `*` matching any run
 *	of characters (none included, so `*example.com` matches example.com)
 *	and `?` one character.  Spaces around keys, `=`, `,` and `;` are
 *	ignored; a trailing `;` is allowed.
 *
 *	Keys (any case, spaces between words collapsed):
 *	MAIL FROM	the sender; `<>` matches the null sender
 *	RCPT TO		at rcpt the candidate recipient; at the events of one
 *			recipient (route, out_rcpt, delivered, deferred,
 *			bounce) that recipient; at other events any
 *			recipient accepted so far
 *	HELO, EHLO	the HELO/EHLO name (the same key)
 *	CLIENT		the client's address as text ("192.0.2.1", "2001:db8::1")
 *	VERB		the command verb (the command event, and every event
 *			that answers a command)
 *
 *	A condition whose data does not exist yet (RCPT TO at mail, MAIL FROM
 *	at helo) is false, so the binding is skipped.
 *
 *	The glob is the classic backtracking-on-the-last-star loop: linear
 *	in practice, O(len(pattern) * len(subject)) at worst, no recursion.
 * DIAGNOSTICS
 *	sink_rule_compile() returns NULL with one line in err, naming the
 *	condition: "condition 2 (\"RCPT\"): no '='".
 */
#include "sinks/sink_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum sink_rule_key {
    SINK_RK_MAIL_FROM,
    SINK_RK_RCPT_TO,
    SINK_RK_HELO,
    SINK_RK_CLIENT,
    SINK_RK_VERB
};

static const struct {
    const char *name;
    enum sink_rule_key key;
} sink_rule_keys[] = {
    {"MAIL FROM", SINK_RK_MAIL_FROM}, {"RCPT TO", SINK_RK_RCPT_TO}, {"HELO", SINK_RK_HELO},
    {"EHLO", SINK_RK_HELO},           {"CLIENT", SINK_RK_CLIENT},   {"VERB", SINK_RK_VERB},
};

struct sink_cond {
    enum sink_rule_key key;
    size_t npat;
    char **pat;
};

struct sink_rule {
    size_t n;
    struct sink_cond *c;
};

bool sink_glob_match(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s != '\0') {
        if (*pat == '*') {
            star = ++pat;
            resume = s;
        } else if (*pat == '?' ||
                   (*pat != '\0' && tolower((unsigned char)*pat) == tolower((unsigned char)*s))) {
            pat++;
            s++;
        } else if (star != NULL) {
            pat = star; /* let the last star swallow one more character */
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

void sink_rule_free(struct sink_rule *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->c[i].npat; j++)
            free(r->c[i].pat[j]);
        free(r->c[i].pat);
    }
    free(r->c);
    free(r);
}

/* s[0..len) without the spaces around it, as a new string. */
static char *sink_trim_dup(const char *s, size_t len)
{
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    return strndup(s, len);
}

/* Upper-cases a key and collapses runs of spaces. */
static int sink_rule_key_parse(const char *raw)
{
    char k[32];
    size_t n = 0;
    for (const char *p = raw; *p != '\0'; p++) {
        if (isspace((unsigned char)*p)) {
            if (n > 0 && k[n - 1] != ' ' && n < sizeof(k) - 1)
                k[n++] = ' ';
            continue;
        }
        if (n == sizeof(k) - 1)
            return -1;
        k[n++] = (char)toupper((unsigned char)*p);
    }
    k[n] = '\0';
    for (size_t i = 0; i < sizeof(sink_rule_keys) / sizeof(sink_rule_keys[0]); i++)
        if (strcmp(k, sink_rule_keys[i].name) == 0)
            return (int)sink_rule_keys[i].key;
    return -1;
}

/* One KEY=PAT,PAT condition from text[0..len) into c; false with err. */
static bool sink_cond_parse(const char *text, size_t len, unsigned no, struct sink_cond *c,
                            char *err, size_t errlen)
{
    const char *eq = memchr(text, '=', len);
    char *key = sink_trim_dup(text, eq ? (size_t)(eq - text) : len);
    if (key == NULL)
        goto nomem;
    if (eq == NULL) {
        snprintf(err, errlen, "condition %u (\"%s\"): no '='", no, key);
        goto fail;
    }
    int k = sink_rule_key_parse(key);
    if (k < 0) {
        snprintf(err, errlen,
                 "condition %u: unknown key \"%s\" (MAIL FROM, RCPT TO, HELO, EHLO, CLIENT, VERB)",
                 no, key);
        goto fail;
    }
    c->key = (enum sink_rule_key)k;
    const char *p = eq + 1, *end = text + len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        char *pat = sink_trim_dup(p, (size_t)(stop - p));
        if (pat == NULL)
            goto nomem;
        if (*pat == '\0') {
            free(pat);
            snprintf(err, errlen, "condition %u (\"%s\"): empty pattern", no, key);
            goto fail;
        }
        char **v = realloc(c->pat, (c->npat + 1) * sizeof(*v));
        if (v == NULL) {
            free(pat);
            goto nomem;
        }
        c->pat = v;
        c->pat[c->npat++] = pat;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    free(key);
    return true;
nomem:
    snprintf(err, errlen, "condition %u: out of memory", no);
fail:
    free(key);
    return false;
}

struct sink_rule *sink_rule_compile(const char *text, char *err, size_t errlen)
{
    struct sink_rule *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const char *p = text;
    for (unsigned no = 1;; no++) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        size_t i = 0;
        while (i < len && isspace((unsigned char)p[i]))
            i++;
        if (i == len) {
            /* an empty condition: allowed only as what follows a last ';' */
            if (semi == NULL && r->n > 0)
                break;
            if (r->n == 0 && semi == NULL)
                snprintf(err, errlen, "empty rule");
            else
                snprintf(err, errlen, "condition %u is empty", no);
            goto fail;
        }
        struct sink_cond *v = realloc(r->c, (r->n + 1) * sizeof(*v));
        if (v == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        r->c = v;
        memset(&r->c[r->n], 0, sizeof(r->c[0]));
        r->n++;
        if (!sink_cond_parse(p, len, no, &r->c[r->n - 1], err, errlen))
            goto fail;
        if (semi == NULL)
            break;
        p = semi + 1;
    }
    return r;
fail:
    sink_rule_free(r);
    return NULL;
}

static bool sink_cond_any(const struct sink_cond *c, const char *s)
{
    if (s == NULL)
        return false;
    for (size_t i = 0; i < c->npat; i++) {
        if (c->key == SINK_RK_MAIL_FROM && strcmp(c->pat[i], "<>") == 0) {
            if (*s == '\0')
                return true;
        } else if (sink_glob_match(c->pat[i], s)) {
            return true;
        }
    }
    return false;
}

static bool sink_rule_per_rcpt(enum sink_event ev)
{
    return ev == SINK_EV_ROUTE || ev == SINK_EV_OUT_RCPT || ev == SINK_EV_DELIVERED ||
           ev == SINK_EV_DEFERRED || ev == SINK_EV_BOUNCE;
}

static bool sink_cond_match(const struct sink_cond *c, enum sink_event ev,
                            const struct sink_event_data *d)
{
    switch (c->key) {
    case SINK_RK_MAIL_FROM:
        return sink_cond_any(c, d->sender);
    case SINK_RK_RCPT_TO:
        if (ev == SINK_EV_RCPT)
            return sink_cond_any(c, d->rcpt);
        if (sink_rule_per_rcpt(ev)) /* one recipient's event: that recipient */
            return d->rcpt_index < d->nrcpt && sink_cond_any(c, d->rcpts[d->rcpt_index]);
        for (size_t i = 0; i < d->nrcpt; i++)
            if (sink_cond_any(c, d->rcpts[i]))
                return true;
        return false;
    case SINK_RK_HELO:
        return sink_cond_any(c, d->helo);
    case SINK_RK_CLIENT:
        return sink_cond_any(c, d->client_addr);
    case SINK_RK_VERB:
        return sink_cond_any(c, d->verb);
    }
    return false;
}

bool sink_rule_match(const struct sink_rule *r, enum sink_event ev, const struct sink_event_data *d)
{
    for (size_t i = 0; i < r->n; i++)
        if (!sink_cond_match(&r->c[i], ev, d))
            return false;
    return true;
}
