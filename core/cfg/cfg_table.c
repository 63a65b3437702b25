/*
 * NAME
 *	cfg_table - the settings of sluice.conf, as one table
 * SYNOPSIS
 *	#include "core/cfg/cfg.h"
 *
 *	struct cfg *cfg_load(const char *path, const char *const *overrides,
 *			     size_t noverrides, char *err, size_t errlen);
 *	void cfg_destroy(struct cfg *c);
 * DESCRIPTION
 *	cfg_keys[] below is the whole of what sluice.conf can set at the top
 *	level: name, type, default, bounds and the field of struct cfg it
 *	lands in.  Defaults are written as they would be in the file and go
 *	through the same conversion and checks as the file's values, so the
 *	table cannot hold a default its own bounds refuse.
 *
 *	For each key the value is taken from the last `-o key=value`
 *	override naming it, else from the file, else from the default.  A
 *	few defaults depend on the machine or on other keys and are filled in
 *	by cfg_finish(): workers 0 (the number of online CPUs), hostname
 *	(gethostname()) and conn_limit_exceptions (a copy of mynetworks).
 *
 *	Numbers: a SIZE takes k m g kb mb gb suffixes.  A DURATION_MS key
 *	takes ms s min h d w; a plain number there means seconds
 *	(idle_timeout = 300 is five minutes).  Bounds of a DURATION_MS are in
 *	milliseconds; bounds of a list are its number of entries; bounds of a
 *	STRING are its length.  A list key given one string is a list of one.
 *
 *	Top-level keys that are neither in the table nor in cfg_blocks[] are
 *	errors; cfg_blocks[] are blocks later modules read from c->tree
 *	themselves.  A named block (`binding "NAME" { }`) may also be written
 *	as JSON writes it, `"binding": {"NAME": {...}}`: cfg_load lifts that
 *	to the labelled form before anyone reads the tree.
 *
 *	path and overrides are borrowed.  The caller owns the returned cfg
 *	and releases it, strings, lists and tree included, with cfg_destroy().
 * DIAGNOSTICS
 *	cfg_load() returns NULL with one line in err: "FILE:LINE: KEY: what"
 *	for the file, "-o KEY: what" for an override.  A default the table
 *	itself cannot convert is a bug: log_panic().
 */
#include "core/cfg/cfg_int.h"

#include "core/base/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum cfg_ktype {
    CFG_T_STRING,      /* char * */
    CFG_T_UINT,        /* unsigned */
    CFG_T_SIZE,        /* uint64_t bytes */
    CFG_T_DURATION_MS, /* uint64_t milliseconds */
    CFG_T_BOOL,        /* bool */
    CFG_T_ADDR_LIST,   /* struct cfg_sockaddr * and size_t */
    CFG_T_CIDR_LIST,   /* struct cfg_cidr * and size_t */
    CFG_T_STR_LIST,    /* char ** and size_t */
    CFG_T_LEVEL,       /* char *: a spelling log_level_parse() accepts, lower case */
};

struct cfg_key {
    const char *name;
    enum cfg_ktype type;
    const char *def; /* as written in sluice.conf; NULL: see cfg_finish() */
    int64_t min, max;
    size_t off;  /* the field in struct cfg */
    size_t noff; /* lists: the size_t that counts the entries */
    /* Extra rule for a string, list entry or number: NULL, or the complaint. */
    const char *(*check)(const char *s, int64_t v);
};

static const char *cfg_check_host(const char *s, int64_t v)
{
    return cfg_domain_valid(s, false) ? NULL : "is not a valid host name";
}

static const char *cfg_check_domain(const char *s, int64_t v)
{
    return cfg_domain_valid(s, true) ? NULL : "is not a domain (example.test or .example.test)";
}

static const char *cfg_check_mailbox(const char *s, int64_t v)
{
    const char *at = strrchr(s, '@');
    return at != NULL && at != s && cfg_domain_valid(at + 1, false) && strpbrk(s, " <>\"") == NULL
               ? NULL
               : "is not an address (local@domain)";
}

static const char *cfg_check_pow2(const char *s, int64_t v)
{
    return v > 0 && (v & (v - 1)) == 0 ? NULL : "is not a power of two";
}

static const char *cfg_check_log_format(const char *s, int64_t v)
{
    enum log_format f;
    return log_format_parse(s, &f) == 0 ? NULL : "is neither \"text\" nor \"json\"";
}

static const char *cfg_check_hostport_or_empty(const char *s, int64_t v)
{
    struct cfg_sockaddr a;
    return s[0] == '\0' || cfg_parse_hostport(s, &a) == 0
               ? NULL
               : "is not \"\" or an address (127.0.0.1:9025)";
}

#define CFG_F(f) offsetof(struct cfg, f), 0
#define CFG_L(f) offsetof(struct cfg, f), offsetof(struct cfg, n##f)
#define CFG_SEC 1000LL
#define CFG_DAY (86400 * CFG_SEC)

/* clang-format off */
static const struct cfg_key cfg_keys[] = {
    {"listen", CFG_T_ADDR_LIST, "[\"127.0.0.1:2525\"]", 1, 64, CFG_L(listen), NULL},
    {"listen_smtps", CFG_T_ADDR_LIST, "[]", 0, 16, CFG_L(listen_smtps), NULL},
    {"spool_dir", CFG_T_STRING, "\"./var/spool\"", 1, PATH_MAX - 1, CFG_F(spool_dir), NULL},
    {"workers", CFG_T_UINT, "0", 0, 64, CFG_F(workers), NULL},
    {"hostname", CFG_T_STRING, NULL, 1, 253, CFG_F(hostname), cfg_check_host},
    {"postmaster", CFG_T_STRING, "\"postmaster@localhost\"", 3, 320, CFG_F(postmaster), cfg_check_mailbox},
    {"mynetworks", CFG_T_CIDR_LIST, "[\"127.0.0.0/8\", \"::1/128\"]", 0, 4096, CFG_L(mynetworks), NULL},
    {"relay_domains", CFG_T_STR_LIST, "[]", 0, 100000, CFG_L(relay_domains), cfg_check_domain},
    {"max_message_size", CFG_T_SIZE, "52428800", 1024, 1LL << 40, CFG_F(max_message_size), NULL},
    {"max_recipients", CFG_T_UINT, "1000", 100, 100000, CFG_F(max_recipients), NULL},
    {"max_errors", CFG_T_UINT, "10", 1, 1000000, CFG_F(max_errors), NULL},
    {"max_line_length", CFG_T_UINT, "998", 78, 65536, CFG_F(max_line_length), NULL},
    {"max_connections", CFG_T_UINT, "4096", 1, 1000000, CFG_F(max_connections), NULL},
    {"max_conn_per_ip", CFG_T_UINT, "50", 0, 1000000, CFG_F(max_conn_per_ip), NULL},
    {"conn_limit_exceptions", CFG_T_CIDR_LIST, NULL, 0, 4096, CFG_L(conn_limit_exceptions), NULL},
    {"idle_timeout", CFG_T_DURATION_MS, "300s", 100, CFG_DAY, CFG_F(idle_timeout_ms), NULL},
    {"max_session_time", CFG_T_DURATION_MS, "3600s", 0, 7 * CFG_DAY, CFG_F(max_session_ms), NULL},
    {"min_data_rate", CFG_T_SIZE, "128", 0, 1LL << 30, CFG_F(min_data_rate), NULL},
    {"data_rate_grace", CFG_T_DURATION_MS, "30s", 0, CFG_DAY, CFG_F(data_rate_grace_ms), NULL},
    {"buffer_count", CFG_T_UINT, "512", 64, 32768, CFG_F(buffer_count), cfg_check_pow2},
    {"buffer_size", CFG_T_UINT, "16384", 1024, 1 << 20, CFG_F(buffer_size), NULL},
    {"commit_delay_us", CFG_T_UINT, "1000", 0, 100000, CFG_F(commit_delay_us), NULL},
    {"segment_size", CFG_T_SIZE, "64mb", 64 * 1024, 1LL << 40, CFG_F(segment_size), NULL},
    {"log_level", CFG_T_LEVEL, "info", 0, 0, CFG_F(log_level), NULL},
    {"relayhost", CFG_T_STRING, "\"\"", 0, 300, CFG_F(relayhost), NULL},
    {"maildir_root", CFG_T_STRING, "\"./var/mail\"", 1, PATH_MAX - 1, CFG_F(maildir_root), NULL},
    {"dns_servers", CFG_T_STR_LIST, "[]", 0, 8, CFG_L(dns_servers), NULL},
    {"delivery_concurrency", CFG_T_UINT, "20", 1, 10000, CFG_F(delivery_concurrency), NULL},
    {"delivery_connections", CFG_T_UINT, "200", 1, 100000, CFG_F(delivery_connections), NULL},
    {"connect_timeout", CFG_T_DURATION_MS, "30s", 100, CFG_DAY, CFG_F(connect_timeout_ms), NULL},
    {"command_timeout", CFG_T_DURATION_MS, "300s", 100, CFG_DAY, CFG_F(command_timeout_ms), NULL},
    {"connection_cache_time", CFG_T_DURATION_MS, "2s", 0, CFG_DAY, CFG_F(connection_cache_ms), NULL},
    {"destination_failure_limit", CFG_T_UINT, "3", 1, 1000, CFG_F(destination_failure_limit), NULL},
    {"listen_submission", CFG_T_ADDR_LIST, "[]", 0, 64, CFG_L(listen_submission), NULL},
    {"auth_users", CFG_T_STRING, NULL, 1, PATH_MAX - 1, CFG_F(auth_users), NULL}, /* NULL: none */
    {"auth_max_failures", CFG_T_UINT, "5", 0, 1000000, CFG_F(auth_max_failures), NULL},
    {"auth_failure_window", CFG_T_DURATION_MS, "60s", 1000, CFG_DAY, CFG_F(auth_failure_window_ms), NULL},
    {"auth_user_max_failures", CFG_T_UINT, "10", 0, 1000000, CFG_F(auth_user_max_failures), NULL},
    {"auth_failure_delay", CFG_T_DURATION_MS, "1s", 0, 5000, CFG_F(auth_failure_delay_ms), NULL},
    {"log_format", CFG_T_STRING, "\"text\"", 1, 8, CFG_F(log_format), cfg_check_log_format},
    {"log_file", CFG_T_STRING, "\"\"", 0, PATH_MAX - 1, CFG_F(log_file), NULL},
    {"log_syslog", CFG_T_BOOL, "false", 0, 0, CFG_F(log_syslog), NULL},
    {"user", CFG_T_STRING, NULL, 1, 64, CFG_F(user), NULL}, /* NULL: none */
    {"drain_timeout", CFG_T_DURATION_MS, "30s", 0, CFG_DAY, CFG_F(drain_timeout_ms), NULL},
    {"control_socket", CFG_T_STRING, "\"./var/sluice.sock\"", 0, 107, CFG_F(control_socket), NULL},
    {"admin_listen", CFG_T_STRING, "\"127.0.0.1:9025\"", 0, 64, CFG_F(admin_listen), cfg_check_hostport_or_empty},
};
/* clang-format on */

#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

/* Blocks other modules read from c->tree themselves.  A named one is
 * written `KEY "NAME" { }`; JSON writes it `"KEY": {"NAME": {...}}`, which
 * cfg_load lifts to the same labelled block (cfg_node_lift), as libucl
 * reads it. */
static const struct cfg_block {
    const char *name;
    bool named;
} cfg_blocks[] = {
    {"binding", true},    /* sinks/binding.c */
    {"transport", false}, /* core/queue/route.c */
    {"retry", false},     /* core/queue/route.c */
    {"tls", false},       /* net/tls.c */
};

#define CFG_NBLOCKS (sizeof(cfg_blocks) / sizeof(cfg_blocks[0]))

/* Where a value came from, for messages. */
struct cfg_src {
    const char *name; /* file name; NULL: a -o override */
    char *err;
    size_t errlen;
};

static bool cfg_fail(const struct cfg_src *src, const struct cfg_key *k, const struct cfg_node *n,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static bool cfg_fail(const struct cfg_src *src, const struct cfg_key *k, const struct cfg_node *n,
                     const char *fmt, ...)
{
    if (src->name != NULL && strcmp(src->name, "(defaults)") == 0) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        log_panic("cfg_load: default of %s: %s", k->name, what);
    }
    if (src->err == NULL || src->errlen == 0)
        return false;
    int m = src->name ? snprintf(src->err, src->errlen, "%s:%u: %s: ", src->name, cfg_node_line(n),
                                 k->name)
                      : snprintf(src->err, src->errlen, "-o %s: ", k->name);
    if (m >= 0 && (size_t)m < src->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(src->err + m, src->errlen - (size_t)m, fmt, ap);
        va_end(ap);
    }
    return false;
}

static const struct cfg_key *cfg_key_find(const char *name)
{
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

static bool cfg_reserved(const char *name)
{
    for (size_t i = 0; i < CFG_NBLOCKS; i++)
        if (strcmp(cfg_blocks[i].name, name) == 0)
            return true;
    return false;
}

/* `"binding": {"NAME": {...}}` to `binding "NAME" {...}`, for each named block. */
static bool cfg_lift_blocks(struct cfg_node *tree, char *err, size_t errlen)
{
    for (size_t i = 0; i < CFG_NBLOCKS; i++) {
        if (cfg_blocks[i].named && cfg_node_lift(tree, cfg_blocks[i].name) < 0) {
            snprintf(err, errlen, "cfg_load: out of memory");
            return false;
        }
    }
    return true;
}

static const char *cfg_type_name(const struct cfg_node *n)
{
    static const char *const names[] = {"null",     "a boolean", "an integer", "a number",
                                        "a string", "a list",    "a block"};
    return names[cfg_node_type(n)];
}

/* "300s", "1500ms": a duration in milliseconds as it would be written. */
static const char *cfg_fmt_value(const struct cfg_key *k, int64_t v, char *buf, size_t len)
{
    if (k->type == CFG_T_DURATION_MS && v % 1000 == 0 && v != 0)
        snprintf(buf, len, "%" PRId64 "s", v / 1000);
    else
        snprintf(buf, len, "%" PRId64 "%s", v, k->type == CFG_T_DURATION_MS ? "ms" : "");
    return buf;
}

/* ---- conversions: one per kind of value, each with its message ---- */

static bool cfg_to_int(const struct cfg_src *src, const struct cfg_key *k, const struct cfg_node *n,
                       int64_t *out)
{
    const char *what = k->type == CFG_T_DURATION_MS ? "a duration"
                       : k->type == CFG_T_SIZE      ? "a size"
                                                    : "an integer";
    struct cfg_num num;
    if (n->type == CFG_INT || n->type == CFG_FLOAT) {
        num = (struct cfg_num){.type = n->type, .unit = n->unit, .i = n->v.i, .f = n->v.f};
    } else if (n->type == CFG_STRING) { /* "64mb" from JSON */
        int r = cfg_num_scan(n->text, strlen(n->text), &num);
        if (r == -ERANGE)
            return cfg_fail(src, k, n, "%s is out of range", n->text);
        if (r < 0)
            return cfg_fail(src, k, n, "expected %s, got \"%s\"", what, n->text);
    } else {
        return cfg_fail(src, k, n, "expected %s, got %s", what, cfg_type_name(n));
    }
    int64_t v;
    if (k->type == CFG_T_DURATION_MS) {
        if (num.unit == CFG_UNIT_SIZE)
            return cfg_fail(src, k, n, "expected a duration, got a size");
        if (num.unit == CFG_UNIT_TIME) {
            v = num.i;
        } else if (num.type == CFG_INT) { /* plain seconds */
            if (__builtin_mul_overflow(num.i, CFG_SEC, &v))
                return cfg_fail(src, k, n, "%" PRId64 "s is out of range", num.i);
        } else {
            if (!cfg_fits_int(num.f * CFG_SEC))
                return cfg_fail(src, k, n, "%gs is out of range", num.f);
            v = cfg_round(num.f * CFG_SEC);
        }
    } else {
        if (num.unit == CFG_UNIT_TIME)
            return cfg_fail(src, k, n, "expected %s, got a duration", what);
        if (num.type == CFG_FLOAT) {
            if (!cfg_is_whole(num.f))
                return cfg_fail(src, k, n, "expected %s, got %g", what, num.f);
            v = (int64_t)num.f;
        } else {
            v = num.i;
        }
    }
    char a[32], b[32];
    if (v < k->min)
        return cfg_fail(src, k, n, "%s is below the minimum %s", cfg_fmt_value(k, v, a, 32),
                        cfg_fmt_value(k, k->min, b, 32));
    if (v > k->max)
        return cfg_fail(src, k, n, "%s is above the maximum %s", cfg_fmt_value(k, v, a, 32),
                        cfg_fmt_value(k, k->max, b, 32));
    const char *bad = k->check ? k->check(NULL, v) : NULL;
    if (bad != NULL)
        return cfg_fail(src, k, n, "%s %s", cfg_fmt_value(k, v, a, 32), bad);
    *out = v;
    return true;
}

/* A string value: a quoted string or a bare word as written. */
static const char *cfg_text(const struct cfg_node *n)
{
    return n->type == CFG_ARRAY || n->type == CFG_OBJECT || n->type == CFG_NULL ? NULL : n->text;
}

static bool cfg_to_str(const struct cfg_src *src, const struct cfg_key *k, const struct cfg_node *n,
                       bool item, const char **out)
{
    const char *s = cfg_text(n);
    if (s == NULL)
        return cfg_fail(src, k, n, "expected a string, got %s", cfg_type_name(n));
    if (*s == '\0' && (k->min > 0 || item))
        return cfg_fail(src, k, n, "must not be empty");
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return cfg_fail(src, k, n, "contains a control character");
    if (!item && (int64_t)strlen(s) > k->max)
        return cfg_fail(src, k, n, "is longer than %" PRId64 " characters", k->max);
    const char *bad = k->check ? k->check(s, 0) : NULL;
    if (bad != NULL)
        return cfg_fail(src, k, n, "\"%s\" %s", s, bad);
    *out = s;
    return true;
}

static bool cfg_to_bool(const struct cfg_src *src, const struct cfg_key *k,
                        const struct cfg_node *n, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    if (n->type == CFG_BOOL) {
        *out = n->v.b;
        return true;
    }
    for (int i = 0; n->type == CFG_STRING && i < 3; i++) {
        if (strcasecmp(n->text, yes[i]) == 0 || strcasecmp(n->text, no[i]) == 0) {
            *out = strcasecmp(n->text, yes[i]) == 0;
            return true;
        }
    }
    return cfg_fail(src, k, n, "expected true or false");
}

static bool cfg_to_level(const struct cfg_src *src, const struct cfg_key *k,
                         const struct cfg_node *n, char **out)
{
    enum log_level lv;
    const char *s = cfg_text(n);
    if (s == NULL || log_level_parse(s, &lv) < 0)
        return cfg_fail(src, k, n, "expected one of " LOG_LEVEL_NAMES);
    /* The spelling as written, in lower case: log_level_parse() is the one
     * table of names, and the reader of c->log_level asks it again. */
    if ((*out = strdup(s)) == NULL)
        return cfg_fail(src, k, n, "out of memory");
    for (char *p = *out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return true;
}

static size_t cfg_item_size(enum cfg_ktype t)
{
    return t == CFG_T_ADDR_LIST   ? sizeof(struct cfg_sockaddr)
           : t == CFG_T_CIDR_LIST ? sizeof(struct cfg_cidr)
                                  : sizeof(char *);
}

/* A list key; a single scalar is a list of one. */
static bool cfg_to_list(const struct cfg_src *src, const struct cfg_key *k,
                        const struct cfg_node *n, void **out, size_t *nout)
{
    bool one = n->type != CFG_ARRAY;
    size_t cnt = one ? 1 : n->nkid;
    if ((int64_t)cnt < k->min)
        return cfg_fail(src, k, n, "needs at least %" PRId64 " entr%s", k->min,
                        k->min == 1 ? "y" : "ies");
    if ((int64_t)cnt > k->max)
        return cfg_fail(src, k, n, "has more than %" PRId64 " entries", k->max);
    size_t isz = cfg_item_size(k->type);
    char *v = calloc(cnt ? cnt : 1, isz);
    if (v == NULL)
        return cfg_fail(src, k, n, "out of memory");
    *out = v;
    for (*nout = 0; *nout < cnt; (*nout)++) {
        const struct cfg_node *it = one ? n : n->kid[*nout];
        const char *s = NULL;
        if (k->type == CFG_T_STR_LIST) {
            if (!cfg_to_str(src, k, it, true, &s))
                return false;
            if ((((char **)v)[*nout] = strdup(s)) == NULL)
                return cfg_fail(src, k, it, "out of memory");
            continue;
        }
        s = cfg_text(it);
        if (s == NULL)
            return cfg_fail(src, k, it, "expected a string, got %s", cfg_type_name(it));
        if (k->type == CFG_T_ADDR_LIST &&
            cfg_parse_hostport(s, (struct cfg_sockaddr *)v + *nout) < 0)
            return cfg_fail(src, k, it, "\"%s\" is not an address:port (127.0.0.1:25, [::1]:25)",
                            s);
        if (k->type == CFG_T_CIDR_LIST && cfg_parse_cidr(s, (struct cfg_cidr *)v + *nout) < 0)
            return cfg_fail(src, k, it, "\"%s\" is not a network (10.0.0.0/8, ::1/128)", s);
    }
    return true;
}

/* Converts n and stores it into c's field for k. */
static bool cfg_store(struct cfg *c, const struct cfg_src *src, const struct cfg_key *k,
                      const struct cfg_node *n)
{
    char *field = (char *)c + k->off;
    int64_t v;
    const char *s;
    switch (k->type) {
    case CFG_T_STRING:
        if (!cfg_to_str(src, k, n, false, &s))
            return false;
        if ((*(char **)field = strdup(s)) == NULL)
            return cfg_fail(src, k, n, "out of memory");
        return true;
    case CFG_T_UINT:
        if (!cfg_to_int(src, k, n, &v))
            return false;
        *(unsigned *)field = (unsigned)v;
        return true;
    case CFG_T_SIZE:
    case CFG_T_DURATION_MS:
        if (!cfg_to_int(src, k, n, &v))
            return false;
        *(uint64_t *)field = (uint64_t)v;
        return true;
    case CFG_T_BOOL:
        return cfg_to_bool(src, k, n, (bool *)field);
    case CFG_T_LEVEL:
        return cfg_to_level(src, k, n, (char **)field);
    case CFG_T_ADDR_LIST:
    case CFG_T_CIDR_LIST:
    case CFG_T_STR_LIST:
        return cfg_to_list(src, k, n, (void **)field, (size_t *)((char *)c + k->noff));
    }
    log_panic("cfg_store: %s: bad type %d", k->name, (int)k->type);
}

static bool cfg_store_default(struct cfg *c, const struct cfg_key *k)
{
    char text[256], err[256];
    int len = snprintf(text, sizeof(text), "%s = %s;", k->name, k->def);
    struct cfg_node *t = cfg_parse(text, (size_t)len, "(defaults)", err, sizeof(err));
    if (t == NULL || t->nkid != 1)
        log_panic("cfg_load: default of %s: %s", k->name, t ? "not one value" : err);
    struct cfg_src src = {.name = "(defaults)"};
    bool ok = cfg_store(c, &src, k, t->kid[0]);
    cfg_node_free(t);
    return ok;
}

/* The defaults that depend on the machine or on other keys. */
static bool cfg_finish(struct cfg *c, char *err, size_t errlen)
{
    if (c->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
    }
    if (c->hostname == NULL) {
        char h[256] = "";
        if (gethostname(h, sizeof(h) - 1) < 0 || !cfg_domain_valid(h, false))
            snprintf(h, sizeof(h), "localhost");
        c->hostname = strdup(h);
    }
    /* Absent from file and -o: the same networks as mynetworks.  An
     * explicit [] is an allocated empty list and stays empty. */
    if (c->conn_limit_exceptions == NULL) {
        size_t sz = c->nmynetworks * sizeof(*c->mynetworks);
        if ((c->conn_limit_exceptions = malloc(sz ? sz : 1)) != NULL) {
            memcpy(c->conn_limit_exceptions, c->mynetworks, sz);
            c->nconn_limit_exceptions = c->nmynetworks;
        }
    }
    if (c->hostname == NULL || c->conn_limit_exceptions == NULL) {
        snprintf(err, errlen, "cfg_load: out of memory");
        return false;
    }
    return true;
}

/* ---- the file and the overrides ---- */

static struct cfg_node *cfg_read(const char *path, char *err, size_t errlen)
{
    int fd = cfg_file_open(path, err, errlen); /* a regular file, never a FIFO */
    if (fd < 0)
        return NULL;
    /* One byte beyond the limit is enough to know the file is too big. */
    size_t len = 0, cap = 0, lim = (size_t)CFG_MAX_INPUT + 1;
    char *buf = NULL;
    struct cfg_node *t = NULL;
    for (;;) {
        if (len == lim) {
            snprintf(err, errlen, "%s: larger than %u bytes", path, CFG_MAX_INPUT);
            goto out;
        }
        if (len == cap) {
            size_t ncap = cap ? (cap * 2 < lim ? cap * 2 : lim) : 64 * 1024;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    t = cfg_parse(buf, len, path, err, errlen);
out:
    free(buf);
    close(fd);
    return t;
}

/* Parses "key=value" as `key = value`; *k is the table entry it sets. */
static struct cfg_node *cfg_override(const char *o, const struct cfg_key **k, char *err,
                                     size_t errlen)
{
    const char *eq = strchr(o, '=');
    const char *s = o, *e = eq ? eq : o;
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    if (eq == NULL || e == s) {
        snprintf(err, errlen, "-o %s: expected key=value", o);
        return NULL;
    }
    char name[128];
    snprintf(name, sizeof(name), "-o %.*s", (int)(e - s < 100 ? e - s : 100), s);
    if ((*k = cfg_key_find(name + 3)) == NULL) {
        snprintf(err, errlen, "%s: %s", name,
                 cfg_reserved(name + 3) ? "cannot be set with -o" : "unknown setting");
        return NULL;
    }
    struct cfg_node *t = cfg_parse_noline(o, strlen(o), name, err, errlen);
    if (t != NULL && (t->nkid != 1 || strcmp(t->kid[0]->key, (*k)->name) != 0)) {
        snprintf(err, errlen, "%s: expected key=value with one value", name);
        cfg_node_free(t);
        t = NULL;
    }
    return t;
}

/* Unknown and repeated keys of the file; file[i] is cfg_keys[i]'s node. */
static bool cfg_scan_file(const struct cfg_node *tree, const char *path,
                          const struct cfg_node **file, char *err, size_t errlen)
{
    for (size_t i = 0; i < tree->nkid; i++) {
        const struct cfg_node *n = tree->kid[i];
        const struct cfg_key *k = cfg_key_find(n->key);
        if (k == NULL && cfg_reserved(n->key))
            continue;
        if (k == NULL) {
            snprintf(err, errlen, "%s:%u: %s: unknown setting", path, n->line, n->key);
            return false;
        }
        size_t idx = (size_t)(k - cfg_keys);
        if (file[idx] != NULL) {
            snprintf(err, errlen, "%s:%u: %s: already set at line %u", path, n->line, n->key,
                     file[idx]->line);
            return false;
        }
        file[idx] = n;
    }
    return true;
}

struct cfg *cfg_load(const char *path, const char *const *overrides, size_t noverrides, char *err,
                     size_t errlen)
{
    char scratch[1];
    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    if (noverrides > 0 && overrides == NULL)
        log_panic("cfg_load: %zu overrides but no array", noverrides);
    struct cfg *c = calloc(1, sizeof(*c));
    struct cfg_node **ov = calloc(noverrides ? noverrides : 1, sizeof(*ov));
    const struct cfg_node *file[CFG_NKEYS] = {0}, *over[CFG_NKEYS] = {0};
    bool ok = false;
    if (c == NULL || ov == NULL) {
        snprintf(err, errlen, "cfg_load: out of memory");
        goto out;
    }
    c->tree = path ? cfg_read(path, err, errlen) : cfg_parse("", 0, "(none)", err, errlen);
    if (c->tree == NULL || !cfg_lift_blocks(c->tree, err, errlen) ||
        !cfg_scan_file(c->tree, path, file, err, errlen))
        goto out;
    for (size_t i = 0; i < noverrides; i++) {
        const struct cfg_key *k;
        if ((ov[i] = cfg_override(overrides[i], &k, err, errlen)) == NULL)
            goto out;
        over[k - cfg_keys] = ov[i]->kid[0]; /* the last -o of a key wins */
    }
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        struct cfg_src src = {.err = err, .errlen = errlen};
        bool done = true;
        if (over[i] != NULL) {
            done = cfg_store(c, &src, k, over[i]);
        } else if (file[i] != NULL) {
            src.name = path;
            done = cfg_store(c, &src, k, file[i]);
        } else if (k->def != NULL) {
            done = cfg_store_default(c, k);
        }
        if (!done)
            goto out;
    }
    ok = cfg_finish(c, err, errlen);
out:
    for (size_t i = 0; ov && i < noverrides; i++)
        cfg_node_free(ov[i]);
    free(ov);
    if (!ok) {
        cfg_destroy(c);
        return NULL;
    }
    return c;
}

void cfg_destroy(struct cfg *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CFG_NKEYS; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        void **field = (void **)((char *)c + k->off);
        if (k->type == CFG_T_STR_LIST) {
            char **v = *field;
            for (size_t j = 0; v && j < *(size_t *)((char *)c + k->noff); j++)
                free(v[j]);
        }
        if (k->type == CFG_T_STRING || k->type == CFG_T_LEVEL || k->type >= CFG_T_ADDR_LIST)
            free(*field);
    }
    cfg_node_free(c->tree);
    free(c);
}
