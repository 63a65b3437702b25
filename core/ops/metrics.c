/*
 * NAME
 *	metrics - a Prometheus text exposition (format 0.0.4) builder
 * DESCRIPTION
 *	See metrics.h.  The buffer doubles as it grows; one exposition of
 *	sluice is a few kilobytes (more with many bindings or workers).
 */
#include "core/ops/metrics.h"

#include "core/base/log.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_buf {
    char *p;
    size_t len, cap;
    bool failed;
};

struct metrics_buf *metrics_buf_create(void)
{
    struct metrics_buf *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->cap = 4096;
    b->p = malloc(b->cap);
    if (b->p == NULL) {
        free(b);
        return NULL;
    }
    b->p[0] = '\0';
    return b;
}

void metrics_buf_destroy(struct metrics_buf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    free(b);
}

const char *metrics_buf_text(const struct metrics_buf *b, size_t *len)
{
    if (b->failed)
        return NULL;
    if (len != NULL)
        *len = b->len;
    return b->p;
}

/* Room for n more octets and the NUL. */
static bool metrics_reserve(struct metrics_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap;
    while (b->len + n + 1 > cap)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void metrics_put(struct metrics_buf *b, const char *s, size_t n)
{
    if (!metrics_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void metrics_puts(struct metrics_buf *b, const char *s)
{
    metrics_put(b, s, strlen(s));
}

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        log_panic("metrics_printf: '%s' does not fit", fmt);
    metrics_put(b, tmp, (size_t)n);
}

/* Label values escape \, " and LF; HELP text escapes \ and LF only. */
static void metrics_escaped(struct metrics_buf *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            metrics_put(b, "\\\\", 2);
        else if (*p == '\n')
            metrics_put(b, "\\n", 2);
        else if (*p == '"' && quote)
            metrics_put(b, "\\\"", 2);
        else
            metrics_put(b, p, 1);
    }
}

static void metrics_check_name(const char *fn, const char *name)
{
    if (name == NULL || name[0] == '\0')
        log_panic("%s: a metric needs a name", fn);
}

void metrics_family(struct metrics_buf *b, const char *name, enum metrics_type type,
                    const char *help)
{
    static const char *const tname[] = {"counter", "gauge", "histogram"};
    metrics_check_name("metrics_family", name);
    if ((unsigned)type > METRICS_HISTOGRAM)
        log_panic("metrics_family: bad type %d for %s", (int)type, name);
    metrics_puts(b, "# HELP ");
    metrics_puts(b, name);
    metrics_puts(b, " ");
    metrics_escaped(b, help ? help : "", false);
    metrics_puts(b, "\n# TYPE ");
    metrics_puts(b, name);
    metrics_puts(b, " ");
    metrics_puts(b, tname[type]);
    metrics_puts(b, "\n");
}

void metrics_comment(struct metrics_buf *b, const char *text)
{
    metrics_puts(b, "# ");
    metrics_escaped(b, text ? text : "", false); /* a line feed cannot end the comment */
    metrics_puts(b, "\n");
}

/* name{l1="v1",...,extra_name="extra_value"} with a trailing space. */
static void metrics_head(struct metrics_buf *b, const char *name, const char *suffix,
                         const char *const *labels, const char *extra_name, const char *extra_value)
{
    metrics_puts(b, name);
    if (suffix)
        metrics_puts(b, suffix);
    bool any = false;
    for (size_t i = 0; labels != NULL && labels[i] != NULL; i += 2) {
        if (labels[i + 1] == NULL)
            log_panic("metrics: label %s of %s has no value", labels[i], name);
        metrics_puts(b, any ? "," : "{");
        metrics_puts(b, labels[i]);
        metrics_puts(b, "=\"");
        metrics_escaped(b, labels[i + 1], true);
        metrics_puts(b, "\"");
        any = true;
    }
    if (extra_name) {
        metrics_puts(b, any ? "," : "{");
        metrics_puts(b, extra_name);
        metrics_puts(b, "=\"");
        metrics_escaped(b, extra_value, true);
        metrics_puts(b, "\"");
        any = true;
    }
    metrics_puts(b, any ? "} " : " ");
}

static void metrics_fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else
        snprintf(buf, len, "%.17g", v);
}

void metrics_u64(struct metrics_buf *b, const char *name, const char *const *labels, uint64_t v)
{
    metrics_check_name("metrics_u64", name);
    metrics_head(b, name, NULL, labels, NULL, NULL);
    metrics_printf(b, "%" PRIu64 "\n", v);
}

void metrics_double(struct metrics_buf *b, const char *name, const char *const *labels, double v)
{
    char num[64];
    metrics_check_name("metrics_double", name);
    metrics_fmt_double(num, sizeof(num), v);
    metrics_head(b, name, NULL, labels, NULL, NULL);
    metrics_puts(b, num);
    metrics_puts(b, "\n");
}

void metrics_histogram(struct metrics_buf *b, const char *name, const char *const *labels,
                       const double *bounds, size_t nbounds, const uint64_t *counts, double sum)
{
    metrics_check_name("metrics_histogram", name);
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i < nbounds; i++) {
        if (i > 0 && !(bounds[i] > bounds[i - 1]))
            log_panic("metrics_histogram: %s: bounds not increasing at %zu", name, i);
        cum += counts[i];
        /* %.9g: short, exact enough for bucket bounds, and the same text
         * on every scrape (Prometheus keys series by it) */
        snprintf(le, sizeof(le), "%.9g", bounds[i]);
        metrics_head(b, name, "_bucket", labels, "le", le);
        metrics_printf(b, "%" PRIu64 "\n", cum);
    }
    cum += counts[nbounds];
    metrics_head(b, name, "_bucket", labels, "le", "+Inf");
    metrics_printf(b, "%" PRIu64 "\n", cum);
    char num[64];
    metrics_fmt_double(num, sizeof(num), sum);
    metrics_head(b, name, "_sum", labels, NULL, NULL);
    metrics_puts(b, num);
    metrics_puts(b, "\n");
    metrics_head(b, name, "_count", labels, NULL, NULL);
    metrics_printf(b, "%" PRIu64 "\n", cum);
}
