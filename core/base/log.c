/*
 * NAME
 *	log - diagnostics: text or JSON lines to stderr, a file or syslog (see log.h)
 * DESCRIPTION
 *	A line is built in the caller's stack buffer with the JSON writer
 *	(json.h, fixed storage: no allocation), which keeps room for the
 *	line's end, so a cut line still closes its string and its object.
 *	The text format uses the same buffer for its plain appends.
 *	The settings other threads read (level, format, output) are atomics:
 *	relaxed is enough for the level and the format (any value is valid at
 *	any time); the output is stored with release after the file
 *	descriptor it names is in place, and loaded with acquire.
 */
/* <syslog.h> defines LOG_DEBUG and LOG_INFO, which enum log_level also
 * names: take its constants first, then drop the macros. */
#include <syslog.h>
static const int log_sys_prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
#undef LOG_DEBUG
#undef LOG_INFO

#include "core/base/log.h"

#include "core/base/clock.h"
#include "core/base/json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_min = LOG_INFO;
static atomic_int log_fmt = LOG_FMT_TEXT;
static atomic_int log_out = LOG_OUT_STDERR;
/* The file's descriptor: allocated once, then only dup2()ed over. */
static atomic_int log_file_fd = -1;
static pthread_mutex_t log_cfg_lock = PTHREAD_MUTEX_INITIALIZER; /* log_path, configuring */
static char log_path[PATH_MAX];
static bool log_sys_opened; /* under log_cfg_lock */
static _Thread_local char log_tag[16] = "main";

static const char *const log_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level lv)
{
    atomic_store_explicit(&log_min, lv, memory_order_relaxed); /* any level is valid */
}

/* The one table of level spellings: sluice's four and syslog's eight
 * (notice reads as info; crit, alert and emerg as error).  LOG_LEVEL_NAMES
 * in log.h lists them for messages. */
int log_level_parse(const char *s, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level lv;
    } spellings[] = {
        {"debug", LOG_DEBUG},  {"info", LOG_INFO},   {"notice", LOG_INFO}, {"warn", LOG_WARN},
        {"warning", LOG_WARN}, {"err", LOG_ERROR},   {"error", LOG_ERROR}, {"crit", LOG_ERROR},
        {"alert", LOG_ERROR},  {"emerg", LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        if (strcasecmp(s, spellings[i].name) == 0) {
            *out = spellings[i].lv;
            return 0;
        }
    }
    return -EINVAL;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcasecmp(s, "text") == 0)
        *out = LOG_FMT_TEXT;
    else if (strcasecmp(s, "json") == 0)
        *out = LOG_FMT_JSON;
    else
        return -EINVAL;
    return 0;
}

void log_set_thread_tag(const char *tag)
{
    snprintf(log_tag, sizeof(log_tag), "%s", tag);
}

/* Opens path and puts it on log_file_fd.  Under log_cfg_lock. */
static int log_open_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "log_file %s: %s", path, strerror(e));
        return -e;
    }
    int cur = atomic_load_explicit(&log_file_fd, memory_order_relaxed); /* only we store it */
    if (cur < 0) {
        atomic_store_explicit(&log_file_fd, fd, memory_order_relaxed); /* published by log_out */
        return 0;
    }
    /* atomic replacement: a concurrent write goes to the old or the new file */
    if (dup2(fd, cur) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "log_file %s: dup2: %s", path, strerror(e));
        return -e;
    }
    close(fd);
    return 0;
}

int log_configure(enum log_format fmt, enum log_output out, const char *path, char *err,
                  size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&log_cfg_lock);
    if (out == LOG_OUT_FILE) {
        if (path == NULL || *path == '\0' || strlen(path) >= sizeof(log_path)) {
            snprintf(err, errlen, "log_file: no path, or a path too long");
            rc = -EINVAL;
            goto out;
        }
        rc = log_open_file(path, err, errlen);
        if (rc < 0)
            goto out;
        snprintf(log_path, sizeof(log_path), "%s", path);
    } else if (out == LOG_OUT_SYSLOG && !log_sys_opened) {
        openlog("sluiced", LOG_PID | LOG_NDELAY, LOG_MAIL);
        log_sys_opened = true;
    }
    atomic_store_explicit(&log_fmt, fmt, memory_order_relaxed); /* any format is valid */
    /* release: log_file_fd and the syslog connection are set up before */
    atomic_store_explicit(&log_out, out, memory_order_release);
out:
    pthread_mutex_unlock(&log_cfg_lock);
    return rc;
}

int log_reopen(char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&log_cfg_lock);
    if (atomic_load_explicit(&log_out, memory_order_relaxed) == LOG_OUT_FILE)
        rc = log_open_file(log_path, err, errlen);
    pthread_mutex_unlock(&log_cfg_lock);
    return rc;
}

/* ---- formatting ---- */

/* Text: control characters escaped; quoted (with \" and \\) if asked.
 * b keeps back 2 octets: a closing quote when the value is cut, and the
 * line's '\n'. */
static void log_text_str(struct json_buf *b, const char *s, bool quote)
{
    if (quote && !json_text(b, "\"", 1))
        return;
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        char esc[8];
        size_t ulen = 1;
        unsigned char c = *u;
        esc[0] = (char)c;
        if (c == '\n' || c == '\t' || c == '\r') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
            ulen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            ulen = 4;
        } else if (quote && (c == '"' || c == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)c;
            ulen = 2;
        }
        if (!json_text(b, esc, ulen))
            break;
    }
    if (quote && !json_text(b, "\"", 1)) { /* cut: the reserve has room */
        b->p[b->len++] = '"';
        b->p[b->len] = '\0';
    }
}

static bool log_text_needs_quote(const char *s)
{
    if (*s == '\0')
        return true;
    for (; *s; s++)
        if (*s == ' ' || *s == '"' || *s == '=' || *s == '\\')
            return true;
    return false;
}

static void log_format_json(struct json_buf *b, const char *ts, const char *level,
                            const char *thread, const char *msg, const char *const *kv,
                            size_t npairs)
{
    json_obj(b);
    if (ts) {
        json_key(b, "ts");
        json_str(b, ts);
    }
    json_key(b, "level");
    json_str(b, level);
    json_key(b, "thread");
    json_str(b, thread);
    json_key(b, "msg");
    json_str_cut(b, msg, strlen(msg));
    for (size_t i = 0; i < npairs && !b->full; i++) {
        if (kv[2 * i] == NULL || kv[2 * i + 1] == NULL)
            continue;
        json_key(b, kv[2 * i]); /* a value that does not fit takes its key back */
        json_str_cut(b, kv[2 * i + 1], strlen(kv[2 * i + 1]));
    }
    json_end(b);
}

size_t log_format_line(char *out, enum log_format fmt, const char *ts, enum log_level lv,
                       const char *thread, const char *msg, const char *const *kv, size_t npairs)
{
    struct json_buf b; /* no allocation: out is LOG_LINE_MAX octets */
    const char *level = log_names[lv <= LOG_ERROR ? lv : LOG_ERROR];
    if (fmt == LOG_FMT_JSON) {
        json_init(&b, out, LOG_LINE_MAX, 1); /* kept back: '\n' */
        log_format_json(&b, ts, level, thread, msg, kv, npairs);
    } else {
        json_init(&b, out, LOG_LINE_MAX, 2); /* kept back: a closing quote, '\n' */
        if (ts) {
            json_text(&b, ts, strlen(ts));
            json_text(&b, " ", 1);
        }
        json_text(&b, "sluiced[", 8);
        log_text_str(&b, thread, false);
        json_text(&b, "] ", 2);
        json_text(&b, level, strlen(level));
        json_text(&b, ": ", 2);
        log_text_str(&b, msg, false);
        for (size_t i = 0; i < npairs && !b.full; i++) {
            if (kv[2 * i] == NULL || kv[2 * i + 1] == NULL)
                continue;
            json_text(&b, " ", 1);
            log_text_str(&b, kv[2 * i], false);
            json_text(&b, "=", 1);
            log_text_str(&b, kv[2 * i + 1], log_text_needs_quote(kv[2 * i + 1]));
        }
    }
    out[b.len++] = '\n';
    out[b.len] = '\0';
    return b.len;
}

static void log_emit(enum log_level lv, const char *msg, const char *const *kv, size_t npairs)
{
    char line[LOG_LINE_MAX];
    enum log_format fmt = atomic_load_explicit(&log_fmt, memory_order_relaxed);
    /* acquire: pairs with the release store in log_configure */
    enum log_output out = atomic_load_explicit(&log_out, memory_order_acquire);
    if (out == LOG_OUT_SYSLOG) {
        size_t n = log_format_line(line, fmt, NULL, lv, log_tag, msg, kv, npairs);
        syslog(log_sys_prio[lv <= LOG_ERROR ? lv : LOG_ERROR], "%.*s", (int)(n - 1), line);
        return;
    }
    char ts[64];
    int64_t now = clock_wall_ms();
    time_t sec = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000));
    size_t n = log_format_line(line, fmt, ts, lv, log_tag, msg, kv, npairs);
    int fd = STDERR_FILENO;
    if (out == LOG_OUT_FILE)
        fd = atomic_load_explicit(&log_file_fd, memory_order_relaxed); /* ordered by log_out */
    ssize_t w = write(fd, line, n);
    (void)w;
}

int log_crash_fd(void)
{
    /* lock-free atomic loads: safe in a signal handler */
    if (atomic_load_explicit(&log_out, memory_order_acquire) != LOG_OUT_FILE)
        return -1;
    return atomic_load_explicit(&log_file_fd, memory_order_relaxed); /* ordered by log_out */
}

static void log_vmsg(enum log_level lv, const char *fmt, va_list ap)
{
    char msg[LOG_LINE_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    log_emit(lv, msg, NULL, 0);
}

void log_msg(enum log_level lv, const char *fmt, ...)
{
    if ((int)lv < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lv, fmt, ap);
    va_end(ap);
}

#define LOG_KV_MAX 24

void log_kv(enum log_level lv, const char *msg, ...)
{
    if ((int)lv < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    const char *kv[2 * LOG_KV_MAX];
    size_t n = 0;
    va_list ap;
    va_start(ap, msg);
    const char *k;
    while (n < LOG_KV_MAX && (k = va_arg(ap, const char *)) != NULL) {
        kv[2 * n] = k;
        kv[2 * n + 1] = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    log_emit(lv, msg, kv, n);
}

void log_fields(enum log_level lv, const char *const *kv, const char *fmt, ...)
{
    if ((int)lv < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = 0;
    if (atomic_load_explicit(&log_fmt, memory_order_relaxed) == LOG_FMT_JSON)
        while (n < LOG_KV_MAX && kv[2 * n] != NULL)
            n++;
    log_emit(lv, msg, kv, n);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(LOG_ERROR, fmt, ap);
    va_end(ap);
    abort();
}
