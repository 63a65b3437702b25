/*
 * NAME
 *	route - the transport table: where mail for a domain goes
 * SYNOPSIS
 *	#include "core/queue/route.h"
 * DESCRIPTION
 *	route_table_create() reads relayhost, transport {} and retry {} from
 *	the parsed configuration tree once; the table is then read-only and
 *	may be shared by any number of threads.  Lookups are a linear scan:
 *	transport tables are short, and the queue manager looks a domain up
 *	once per message and destination, not per octet.
 *
 *	Durations in retry {} are written NUMBER[.FRACTION][UNIT] with the
 *	units ms, s, m or min (minutes: "5m" as in the MTA tradition, not the
 *	mega of a size), h, d, w; a plain number is seconds.  The unit is read
 *	from the value as written (cfg_node_str), so a bare 5m and a quoted
 *	"5m" mean the same.
 * DIAGNOSTICS
 *	route_table_create() returns NULL with one line in err:
 *	"line 7: transport \"x\": what is wrong" (struct cfg does not carry
 *	the file name; the caller prefixes it).
 */
#include "core/queue/route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ROUTE_MIN_DEFAULT (5 * 60 * 1000ull)
#define ROUTE_MAX_DEFAULT (4 * 3600 * 1000ull)
#define ROUTE_AGE_DEFAULT (5 * 86400 * 1000ull)
#define ROUTE_DURATION_MAX (366 * 86400 * 1000ull) /* a year: beyond that it is a typo */
#define ROUTE_ERROR_TEXT "mail for this domain is not accepted"

struct route_entry {
    char *key; /* owned, lower case; ".suffix" keeps its dot */
    size_t klen;
    bool suffix;
    struct route r;
};

struct route_table {
    struct route_entry *v; /* owned */
    size_t n;
    bool have_relay;
    struct route relay;
    struct route_retry retry;
};

static int route_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int route_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* ---- one value ---- */

/* A host name: labels of letters, digits, '-' and '_', 1-63 octets each,
 * 253 in all (RFC 1035 2.3.4; '_' because test setups use it). */
static bool route_hostname_valid(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum(c) || c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 || len > 1; /* a trailing dot is allowed, "." alone is not */
}

/* "25" -> 25; digits only, 1..65535. */
static int route_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* HOST[:PORT] with HOST a name, an IPv4 address or [IPv6]. */
static int route_hostport(const char *s, size_t len, struct route *out, char *err, size_t errlen)
{
    const char *host = s, *port = NULL;
    size_t hlen = len, plen = 0;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return route_fail(err, errlen, "\"%.*s\": no ']' after the IPv6 address", (int)len, s);
        host = s + 1;
        hlen = (size_t)(close - host);
        const char *rest = close + 1;
        size_t rlen = len - (size_t)(rest - s);
        if (rlen > 0) {
            if (rest[0] != ':')
                return route_fail(err, errlen, "\"%.*s\": junk after ']'", (int)len, s);
            port = rest + 1;
            plen = rlen - 1;
        }
        char buf[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(buf))
            return route_fail(err, errlen, "\"%.*s\": not an IPv6 address", (int)len, s);
        memcpy(buf, host, hlen);
        buf[hlen] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return route_fail(err, errlen, "\"%s\": not an IPv6 address", buf);
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon != NULL) {
            if (memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
                return route_fail(err, errlen, "\"%.*s\": an IPv6 address goes in brackets",
                                  (int)len, s);
            hlen = (size_t)(colon - s);
            port = colon + 1;
            plen = len - hlen - 1;
        }
        if (!route_hostname_valid(host, hlen))
            return route_fail(err, errlen, "\"%.*s\": not a host name or address", (int)hlen, host);
    }
    out->port = 25;
    if (port != NULL && route_port(port, plen, &out->port) < 0)
        return route_fail(err, errlen, "\"%.*s\": not a port (1-65535)", (int)plen, port);
    if (hlen >= sizeof(out->host))
        return route_fail(err, errlen, "host name too long");
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    return 0;
}

/* "X.Y.Z" with X 4 or 5, Y and Z 1-3 digits (RFC 3463). */
static bool route_status_valid(const char *s, size_t len)
{
    if (len < 5 || (s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < len && isdigit((unsigned char)s[i]) && d < 4) {
            i++;
            d++;
        }
        if (d == 0 || d > 3)
            return false;
        if (part == 0) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
    }
    return i == len;
}

static int route_error(const char *s, size_t len, const char *text, struct route *out, char *err,
                       size_t errlen)
{
    if (!route_status_valid(s, len))
        return route_fail(err, errlen, "\"error:%.*s\": expected error:4.X.X or error:5.X.X",
                          (int)len, s);
    memcpy(out->error_status, s, len);
    out->error_status[len] = '\0';
    out->error_code = s[0] == '5' ? 550 : 450;
    size_t tlen = strlen(text);
    while (tlen > 0 && isspace((unsigned char)text[tlen - 1]))
        tlen--;
    if (tlen == 0) {
        snprintf(out->error_text, sizeof(out->error_text), "%s", ROUTE_ERROR_TEXT);
        return 0;
    }
    if (tlen >= sizeof(out->error_text))
        return route_fail(err, errlen, "error text longer than %zu octets",
                          sizeof(out->error_text) - 1);
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f)
            return route_fail(err, errlen, "error text: only printable ASCII goes in a reply");
    memcpy(out->error_text, text, tlen);
    out->error_text[tlen] = '\0';
    return 0;
}

static const char *const route_tls_names[] = {"none", "may", "encrypt", "verify"};

/* The words after the kind: only tls=... for now. */
static int route_options(const char *p, struct route *out, char *err, size_t errlen)
{
    bool seen = false;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            return 0;
        size_t n = 0;
        while (p[n] != '\0' && !isspace((unsigned char)p[n]))
            n++;
        if (n > 4 && strncasecmp(p, "tls=", 4) == 0) {
            if (out->kind != ROUTE_SMTP && out->kind != ROUTE_MX)
                return route_fail(err, errlen, "tls= is only for smtp and mx");
            if (seen)
                return route_fail(err, errlen, "tls= given twice");
            size_t i;
            for (i = 0; i < 4; i++)
                if (strlen(route_tls_names[i]) == n - 4 &&
                    strncasecmp(p + 4, route_tls_names[i], n - 4) == 0)
                    break;
            if (i == 4)
                return route_fail(err, errlen, "\"%.*s\": expected tls=none|may|encrypt|verify",
                                  (int)n, p);
            out->tls = (enum route_tls)i;
            seen = true;
        } else {
            return route_fail(err, errlen, "\"%.*s\": unknown option", (int)n, p);
        }
        p += n;
    }
}

int route_parse(const char *spec, struct route *out, char *err, size_t errlen)
{
    if (spec == NULL || out == NULL)
        return route_fail(err, errlen, "no value");
    memset(out, 0, sizeof(*out));
    out->tls = ROUTE_TLS_MAY;
    while (isspace((unsigned char)*spec))
        spec++;
    size_t n = 0; /* the first word */
    while (spec[n] != '\0' && !isspace((unsigned char)spec[n]))
        n++;
    const char *rest = spec + n;
    int r;
    if (n > 5 && strncasecmp(spec, "smtp:", 5) == 0) {
        out->kind = ROUTE_SMTP;
        r = route_hostport(spec + 5, n - 5, out, err, errlen);
    } else if (n == 2 && strncasecmp(spec, "mx", 2) == 0) {
        out->kind = ROUTE_MX;
        out->port = 25;
        r = 0;
    } else if (n > 3 && strncasecmp(spec, "mx:", 3) == 0) {
        out->kind = ROUTE_MX;
        r = route_port(spec + 3, n - 3, &out->port);
        if (r < 0)
            route_fail(err, errlen, "\"%.*s\": not a port (1-65535)", (int)(n - 3), spec + 3);
    } else if (n == 7 && strncasecmp(spec, "maildir", 7) == 0) {
        out->kind = ROUTE_MAILDIR;
        r = 0;
    } else if (n == 7 && strncasecmp(spec, "discard", 7) == 0) {
        out->kind = ROUTE_DISCARD;
        r = 0;
    } else if (n == 4 && strncasecmp(spec, "hold", 4) == 0) {
        out->kind = ROUTE_HOLD;
        r = 0;
    } else if (n >= 6 && strncasecmp(spec, "error:", 6) == 0) {
        out->kind = ROUTE_ERROR;
        while (isspace((unsigned char)*rest))
            rest++;
        return route_error(spec + 6, n - 6, rest, out, err, errlen);
    } else if (n == 0) {
        return route_fail(err, errlen, "empty value");
    } else {
        return route_fail(err, errlen,
                          "\"%.*s\": expected smtp:HOST[:PORT], mx, mx:PORT, maildir, discard, "
                          "hold or error:X.Y.Z TEXT",
                          (int)n, spec);
    }
    if (r < 0)
        return r;
    return route_options(rest, out, err, errlen);
}

void route_format(const struct route *r, char *out, size_t len)
{
    if (len == 0)
        return;
    char tls[16] = "";
    if ((r->kind == ROUTE_SMTP || r->kind == ROUTE_MX) && r->tls != ROUTE_TLS_MAY &&
        (unsigned)r->tls < 4)
        snprintf(tls, sizeof(tls), " tls=%s", route_tls_names[r->tls]);
    switch (r->kind) {
    case ROUTE_SMTP:
        if (strchr(r->host, ':') != NULL)
            snprintf(out, len, "smtp:[%s]:%u%s", r->host, r->port, tls);
        else
            snprintf(out, len, "smtp:%s:%u%s", r->host, r->port, tls);
        break;
    case ROUTE_MX:
        if (r->port == 25)
            snprintf(out, len, "mx%s", tls);
        else
            snprintf(out, len, "mx:%u%s", r->port, tls);
        break;
    case ROUTE_MAILDIR:
        snprintf(out, len, "maildir");
        break;
    case ROUTE_DISCARD:
        snprintf(out, len, "discard");
        break;
    case ROUTE_HOLD:
        snprintf(out, len, "hold");
        break;
    case ROUTE_ERROR:
        snprintf(out, len, "error:%s %s", r->error_status, r->error_text);
        break;
    default:
        snprintf(out, len, "?");
        break;
    }
}

uint64_t route_backoff_ms(const struct route_retry *r, uint32_t attempts)
{
    uint64_t d = r->min_ms;
    if (attempts > 1) {
        uint32_t shift = attempts - 1;
        /* min << shift overflows once shift reaches the leading zeros of min */
        if (d != 0 && (shift >= 64 || d > (UINT64_MAX >> shift)))
            d = UINT64_MAX;
        else
            d <<= shift;
    }
    return r->max_ms != 0 && d > r->max_ms ? r->max_ms : d;
}

/* ---- the table ---- */

/* A duration as written: NUMBER[.FRACTION][ms|s|m|min|h|d|w], plain = s. */
static int route_duration(const struct cfg_node *n, uint64_t *out)
{
    const char *s = cfg_node_str(n);
    enum cfg_type t = cfg_node_type(n);
    if (s == NULL) {
        if (t != CFG_INT)
            return -EINVAL;
        int64_t v = cfg_node_int(n); /* no text: a plain number, seconds */
        if (v < 0 || (uint64_t)v > ROUTE_DURATION_MAX / 1000)
            return -ERANGE;
        *out = (uint64_t)v * 1000;
        return 0;
    }
    if (t != CFG_STRING && t != CFG_INT && t != CFG_FLOAT)
        return -EINVAL;
    uint64_t whole = 0, frac = 0, fdiv = 1;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > ROUTE_DURATION_MAX)
            return -ERANGE;
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        for (; isdigit((unsigned char)*p); p++)
            if (fdiv < 1000000) { /* more digits than a microsecond are noise */
                frac = frac * 10 + (uint64_t)(*p - '0');
                fdiv *= 10;
            }
    }
    static const struct {
        const char *sfx;
        uint64_t mult;
    } units[] = {
        {"", 1000},         {"ms", 1},          {"s", 1000},          {"m", 60 * 1000},
        {"min", 60 * 1000}, {"h", 3600 * 1000}, {"d", 86400 * 1000u}, {"w", 7 * 86400 * 1000ull}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(p, units[i].sfx) == 0) {
            if (whole > ROUTE_DURATION_MAX / units[i].mult)
                return -ERANGE;
            uint64_t v = whole * units[i].mult + (frac * units[i].mult + fdiv / 2) / fdiv;
            if (v > ROUTE_DURATION_MAX)
                return -ERANGE;
            *out = v;
            return 0;
        }
    }
    return -EINVAL;
}

static struct route_table *route_table_fail(struct route_table *t, char *err, size_t errlen,
                                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static struct route_table *route_table_fail(struct route_table *t, char *err, size_t errlen,
                                            const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    route_table_destroy(t);
    return NULL;
}

static int route_read_retry(struct route_table *t, const struct cfg_node *blk, char *err,
                            size_t errlen)
{
    if (cfg_node_type(blk) != CFG_OBJECT)
        return route_fail(err, errlen, "line %u: retry: expected a block: retry { min = \"5m\"; }",
                          cfg_node_line(blk));
    static const char *const keys[] = {"min", "max", "max_age", "delay_warning"};
    uint64_t *fields[] = {&t->retry.min_ms, &t->retry.max_ms, &t->retry.max_age_ms,
                          &t->retry.delay_warning_ms};
    bool seen[4] = {false, false, false, false};
    for (size_t i = 0; i < cfg_node_count(blk); i++) {
        const struct cfg_node *kv = cfg_node_at(blk, i);
        const char *k = cfg_node_key(kv);
        size_t j;
        for (j = 0; j < 4; j++)
            if (strcmp(k, keys[j]) == 0)
                break;
        if (j == 4)
            return route_fail(err, errlen,
                              "line %u: retry: unknown key \"%s\" (min, max, max_age, "
                              "delay_warning)",
                              cfg_node_line(kv), k);
        if (seen[j])
            return route_fail(err, errlen, "line %u: retry: %s given twice", cfg_node_line(kv), k);
        seen[j] = true;
        int r = route_duration(kv, fields[j]);
        if (r == -ERANGE)
            return route_fail(err, errlen, "line %u: retry: %s: more than a year",
                              cfg_node_line(kv), k);
        if (r < 0) {
            const char *s = cfg_node_str(kv);
            return route_fail(err, errlen,
                              "line %u: retry: %s: expected a duration (\"30s\", \"5m\", "
                              "\"4h\", \"5d\"), got %s%s%s",
                              cfg_node_line(kv), k, s ? "\"" : "", s ? s : "a non-string",
                              s ? "\"" : "");
        }
    }
    if (t->retry.min_ms == 0)
        return route_fail(err, errlen, "line %u: retry: min must be above 0", cfg_node_line(blk));
    if (t->retry.max_ms < t->retry.min_ms)
        return route_fail(err, errlen, "line %u: retry: max is below min", cfg_node_line(blk));
    return 0;
}

static bool route_key_valid(const char *k)
{
    const char *name = k[0] == '.' ? k + 1 : k;
    size_t len = strlen(name);
    return len > 0 && name[len - 1] != '.' && name[0] != '.' && route_hostname_valid(name, len);
}

static int route_read_transport(struct route_table *t, const struct cfg_node *blk, char *err,
                                size_t errlen)
{
    if (cfg_node_type(blk) != CFG_OBJECT)
        return route_fail(err, errlen,
                          "line %u: transport: expected a block: transport { \"domain\" = "
                          "\"value\"; }",
                          cfg_node_line(blk));
    size_t n = cfg_node_count(blk);
    t->v = calloc(n ? n : 1, sizeof(*t->v));
    if (t->v == NULL)
        return route_fail(err, errlen, "transport: out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct cfg_node *kv = cfg_node_at(blk, i);
        const char *k = cfg_node_key(kv);
        unsigned line = cfg_node_line(kv);
        if (!route_key_valid(k))
            return route_fail(err, errlen, "line %u: transport \"%s\": not a domain or .domain",
                              line, k);
        if (cfg_node_type(kv) != CFG_STRING)
            return route_fail(err, errlen, "line %u: transport \"%s\": expected a string value",
                              line, k);
        for (size_t j = 0; j < t->n; j++)
            if (strcasecmp(t->v[j].key, k) == 0)
                return route_fail(err, errlen, "line %u: transport \"%s\": given twice", line, k);
        struct route_entry *e = &t->v[t->n];
        char why[320];
        if (route_parse(cfg_node_str(kv), &e->r, why, sizeof(why)) < 0)
            return route_fail(err, errlen, "line %u: transport \"%s\": %s", line, k, why);
        e->key = strdup(k);
        if (e->key == NULL)
            return route_fail(err, errlen, "transport: out of memory");
        for (char *c = e->key; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        e->klen = strlen(e->key);
        e->suffix = e->key[0] == '.';
        t->n++;
    }
    return 0;
}

static int route_read_relay(struct route_table *t, const struct cfg_node *n, char *err,
                            size_t errlen)
{
    if (cfg_node_type(n) != CFG_STRING)
        return route_fail(err, errlen, "line %u: relayhost: expected a string \"HOST[:PORT]\"",
                          cfg_node_line(n));
    const char *s = cfg_node_str(n);
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return 0; /* "" = by MX */
    /* HOST[:PORT] unless it starts like a full value */
    static const char *const kinds[] = {"smtp:", "mx:", "error:"};
    static const char *const words[] = {"mx", "maildir", "discard", "hold"};
    size_t w = strcspn(s, " \t");
    bool full = false;
    for (size_t i = 0; i < 4; i++)
        if ((i < 3 && strncasecmp(s, kinds[i], strlen(kinds[i])) == 0) ||
            (w == strlen(words[i]) && strncasecmp(s, words[i], w) == 0))
            full = true;
    char buf[600];
    if (!full) {
        if (snprintf(buf, sizeof(buf), "smtp:%s", s) >= (int)sizeof(buf))
            return route_fail(err, errlen, "line %u: relayhost: too long", cfg_node_line(n));
        s = buf;
    }
    char why[320];
    if (route_parse(s, &t->relay, why, sizeof(why)) < 0)
        return route_fail(err, errlen, "line %u: relayhost: %s", cfg_node_line(n), why);
    t->have_relay = true;
    return 0;
}

/* A built-in entry: domain = "maildir". */
static int route_add_default(struct route_table *t, const char *domain)
{
    struct route_entry *v = realloc(t->v, (t->n + 1) * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    t->v = v;
    struct route_entry *e = &t->v[t->n];
    memset(e, 0, sizeof(*e));
    e->key = strdup(domain);
    if (e->key == NULL)
        return -ENOMEM;
    e->klen = strlen(e->key);
    e->suffix = false;
    e->r.kind = ROUTE_MAILDIR;
    t->n++;
    return 0;
}

struct route_table *route_table_create(const struct cfg *cfg, char *err, size_t errlen)
{
    struct route_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return route_table_fail(t, err, errlen, "route table: out of memory");
    t->retry = (struct route_retry){.min_ms = ROUTE_MIN_DEFAULT,
                                    .max_ms = ROUTE_MAX_DEFAULT,
                                    .max_age_ms = ROUTE_AGE_DEFAULT,
                                    .delay_warning_ms = 0};
    const struct cfg_node *tree = cfg != NULL ? cfg->tree : NULL;
    const struct cfg_node *blk[3] = {NULL, NULL, NULL};
    static const char *const names[] = {"relayhost", "transport", "retry"};
    for (size_t i = 0; i < cfg_node_count(tree); i++) {
        const struct cfg_node *n = cfg_node_at(tree, i);
        const char *k = cfg_node_key(n);
        for (size_t j = 0; k != NULL && j < 3; j++) {
            if (strcmp(k, names[j]) != 0)
                continue;
            if (blk[j] != NULL)
                return route_table_fail(t, err, errlen, "line %u: %s given twice", cfg_node_line(n),
                                        k);
            blk[j] = n;
        }
    }
    if ((blk[0] && route_read_relay(t, blk[0], err, errlen) < 0) ||
        (blk[1] && route_read_transport(t, blk[1], err, errlen) < 0) ||
        (blk[2] && route_read_retry(t, blk[2], err, errlen) < 0)) {
        route_table_destroy(t);
        return NULL;
    }
    /* relayhost given with -o lives in struct cfg only (the tree is the file) */
    if (cfg != NULL && cfg->relayhost != NULL && cfg->relayhost[0] != '\0') {
        struct cfg_node *n = NULL;
        char text[400], perr[128];
        int len = snprintf(text, sizeof(text), "relayhost = \"%s\";", cfg->relayhost);
        if (len > 0 && len < (int)sizeof(text))
            n = cfg_parse(text, (size_t)len, "-o", perr, sizeof(perr));
        const struct cfg_node *v = n ? cfg_node_get(n, "relayhost") : NULL;
        int rc = v ? route_read_relay(t, v, err, errlen) : route_fail(err, errlen, "relayhost: "
                                                                                   "cannot parse");
        cfg_node_free(n);
        if (rc < 0) {
            route_table_destroy(t);
            return NULL;
        }
    }
    /* mail for localhost and for the server's own hostname is delivered
     * here unless the table says otherwise: the hostname routed by MX
     * would be accepted from anyone and relayed, or bounced to a forged
     * sender (backscatter) */
    const char *own[2] = {"localhost", cfg != NULL ? cfg->hostname : NULL};
    for (int k = 0; k < 2; k++) {
        bool have = own[k] == NULL || (k == 1 && strcasecmp(own[1], "localhost") == 0);
        for (size_t i = 0; !have && i < t->n; i++)
            if (!t->v[i].suffix && strcasecmp(t->v[i].key, own[k]) == 0)
                have = true;
        if (!have && route_add_default(t, own[k]) < 0)
            return route_table_fail(t, err, errlen, "route table: out of memory");
    }
    return t;
}

void route_table_destroy(struct route_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].key);
    free(t->v);
    free(t);
}

/* The entry for domain: exact beats suffix, the longest suffix wins. */
static const struct route_entry *route_find(const struct route_table *t, const char *domain)
{
    size_t dlen = strlen(domain);
    if (dlen > 0 && domain[dlen - 1] == '.')
        dlen--; /* "example.test." is "example.test" */
    const struct route_entry *best = NULL;
    for (size_t i = 0; i < t->n; i++) {
        const struct route_entry *e = &t->v[i];
        if (!e->suffix) {
            if (e->klen == dlen && strncasecmp(e->key, domain, dlen) == 0)
                return e;
        } else if (dlen > e->klen && strncasecmp(domain + dlen - e->klen, e->key, e->klen) == 0 &&
                   (best == NULL || e->klen > best->klen)) {
            best = e;
        }
    }
    return best;
}

void route_lookup(const struct route_table *t, const char *domain, struct route *out)
{
    const struct route_entry *e = route_find(t, domain);
    if (e != NULL) {
        *out = e->r;
    } else if (t->have_relay) {
        *out = t->relay;
    } else {
        memset(out, 0, sizeof(*out));
        out->kind = ROUTE_MX;
        out->port = 25;
        out->tls = ROUTE_TLS_MAY;
    }
}

bool route_is_local(const struct route_table *t, const char *domain)
{
    struct route r;
    route_lookup(t, domain, &r);
    return r.kind == ROUTE_MAILDIR;
}

const struct route_retry *route_retry(const struct route_table *t)
{
    return &t->retry;
}
