#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"

static char line[LOG_LINE_MAX + 8];

static const char *fmt_json(const char *msg, const char *const *kv, size_t n)
{
    log_format_line(line, LOG_FMT_JSON, "T", LOG_INFO, "w0", msg, kv, n);
    return line;
}

Test(log, json_plain_message)
{
    cr_assert_str_eq(fmt_json("hello", NULL, 0),
                     "{\"ts\":\"T\",\"level\":\"info\",\"thread\":\"w0\",\"msg\":\"hello\"}\n");
}

Test(log, json_fields_in_order)
{
    const char *kv[] = {"id", "00ab", "client", "192.0.2.1", "skipped", NULL};
    cr_assert_str_eq(fmt_json("accepted", kv, 3),
                     "{\"ts\":\"T\",\"level\":\"info\",\"thread\":\"w0\",\"msg\":\"accepted\","
                     "\"id\":\"00ab\",\"client\":\"192.0.2.1\"}\n");
}

Test(log, json_escapes_quotes_controls)
{
    fmt_json("a\"b\\c\n\t\r\x01\x1f\x7f", NULL, 0);
    cr_assert(strstr(line, "\"msg\":\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f\\u007f\"}") != NULL, "%s",
              line);
}

Test(log, json_utf8_kept_invalid_replaced)
{
    /* valid: é (2), € (3), 😀 (4) */
    fmt_json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", NULL, 0);
    cr_assert(strstr(line, "\"msg\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"") != NULL, "%s", line);
    /* invalid: lone continuation, overlong '/', surrogate, > U+10FFFF, cut sequence */
    fmt_json("x\x80y\xc0\xafz\xed\xa0\x80w\xf4\x90\x80\x80v\xe2\x82", NULL, 0);
    cr_assert(strstr(line, "\"msg\":\"x\\ufffdy\\ufffd\\ufffdz\\ufffd\\ufffd\\ufffdw\\ufffd\\ufffd"
                           "\\ufffd\\ufffdv\\ufffd\\ufffd\"") != NULL,
              "%s", line);
}

/* Counts quotes outside escapes and checks the object closes the line. */
static void check_json_shape(const char *s, size_t n)
{
    cr_assert(n <= LOG_LINE_MAX, "length %zu", n);
    cr_assert_eq(s[0], '{');
    cr_assert_eq(s[n - 1], '\n');
    cr_assert_eq(s[n - 2], '}');
    bool in = false;
    for (size_t i = 0; i + 1 < n; i++) {
        if (in && s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == '"')
            in = !in;
        cr_assert((unsigned char)s[i] >= 0x20, "control byte at %zu", i);
    }
    cr_assert(!in, "unterminated string");
}

Test(log, json_long_lines_are_cut_and_stay_valid)
{
    static char big[3 * LOG_LINE_MAX];
    for (size_t fill = 0; fill < 2; fill++) {
        memset(big, fill ? '\n' : 'a', sizeof(big) - 1); /* '\n' expands to two bytes */
        big[sizeof(big) - 1] = '\0';
        size_t n = log_format_line(line, LOG_FMT_JSON, "T", LOG_WARN, "w1", big, NULL, 0);
        check_json_shape(line, n);
        const char *kv[] = {"k", big, "k2", "v2"};
        n = log_format_line(line, LOG_FMT_JSON, "T", LOG_WARN, "w1", "m", kv, 2);
        check_json_shape(line, n);
    }
    /* a cut never splits an escape or a UTF-8 sequence */
    for (size_t i = 0; i + 3 < sizeof(big); i += 3)
        memcpy(big + i, "\xe2\x82\xac", 3);
    big[(sizeof(big) - 1) / 3 * 3] = '\0';
    size_t n = log_format_line(line, LOG_FMT_JSON, "T", LOG_WARN, "w1", big, NULL, 0);
    check_json_shape(line, n);
    cr_assert(memcmp(line + n - 6, "\xe2\x82\xac\"}\n", 6) == 0);
}

Test(log, text_format_and_quoting)
{
    const char *kv[] = {"id", "00ab", "sender", "a b@x", "empty", "", "nl", "x\ny"};
    size_t n = log_format_line(line, LOG_FMT_TEXT, "T", LOG_ERROR, "main", "accepted", kv, 4);
    cr_assert_str_eq(line, "T sluiced[main] error: accepted id=00ab sender=\"a b@x\" empty=\"\" "
                           "nl=x\\ny\n");
    cr_assert_eq(n, strlen(line));
    /* a forged line cannot start */
    log_format_line(line, LOG_FMT_TEXT, NULL, LOG_INFO, "w0", "x\nT sluiced[main] error: fake",
                    NULL, 0);
    cr_assert_eq(strchr(line, '\n'), line + strlen(line) - 1);
}

Test(log, parse)
{
    enum log_format f;
    enum log_level l;
    cr_assert_eq(log_format_parse("json", &f), 0);
    cr_assert_eq(f, LOG_FMT_JSON);
    cr_assert_eq(log_format_parse("TEXT", &f), 0);
    cr_assert_eq(f, LOG_FMT_TEXT);
    cr_assert_eq(log_format_parse("xml", &f), -EINVAL);
    cr_assert_eq(log_level_parse("warn", &l), 0);
    cr_assert_eq(l, LOG_WARN);
    /* syslog's names */
    static const struct {
        const char *s;
        enum log_level l;
    } syn[] = {{"DEBUG", LOG_DEBUG}, {"notice", LOG_INFO}, {"Warning", LOG_WARN},
               {"err", LOG_ERROR},   {"crit", LOG_ERROR},  {"alert", LOG_ERROR},
               {"emerg", LOG_ERROR}};
    for (size_t i = 0; i < sizeof(syn) / sizeof(syn[0]); i++) {
        cr_assert_eq(log_level_parse(syn[i].s, &l), 0, "%s", syn[i].s);
        cr_assert_eq(l, syn[i].l, "%s", syn[i].s);
    }
    cr_assert_eq(log_level_parse("warnings", &l), -EINVAL);
    cr_assert_eq(log_level_parse("", &l), -EINVAL);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

struct writer_arg {
    int id;
};

static void *writer(void *arg)
{
    struct writer_arg *a = arg;
    char tag[8];
    snprintf(tag, sizeof(tag), "t%d", a->id);
    log_set_thread_tag(tag);
    for (int i = 0; i < 500; i++)
        log_kv(LOG_INFO, "line", "n", "12345678901234567890", NULL);
    return NULL;
}

Test(log, file_reopen_and_threads)
{
    char dir[] = "/tmp/test_log_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], moved[256], err[256];
    snprintf(path, sizeof(path), "%s/sluice.log", dir);
    snprintf(moved, sizeof(moved), "%s/sluice.log.1", dir);
    cr_assert_eq(log_configure(LOG_FMT_JSON, LOG_OUT_FILE, path, err, sizeof(err)), 0, "%s", err);
    log_msg(LOG_INFO, "first %d", 1);
    log_msg(LOG_DEBUG, "not shown");
    cr_assert_eq(rename(path, moved), 0);
    log_msg(LOG_INFO, "second");
    cr_assert_eq(log_reopen(err, sizeof(err)), 0, "%s", err);
    pthread_t t[4];
    struct writer_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i].id = i;
        pthread_create(&t[i], NULL, writer, &a[i]);
    }
    log_msg(LOG_WARN, "third");
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    const char *old = slurp(moved);
    cr_assert(strstr(old, "\"msg\":\"first 1\"") && strstr(old, "\"msg\":\"second\""), "%s", old);
    cr_assert(strstr(old, "not shown") == NULL);
    char *now = slurp(path);
    cr_assert(strstr(now, "\"level\":\"warn\",\"thread\":\"main\",\"msg\":\"third\"") != NULL);
    size_t lines = 0;
    for (char *p = now, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        check_json_shape(p, (size_t)(nl - p) + 1); /* every line whole: one write each */
        lines++;
    }
    cr_assert_eq(lines, 4 * 500 + 1);
    /* a file that cannot be opened: error, the old one stays */
    cr_assert_lt(
        log_configure(LOG_FMT_JSON, LOG_OUT_FILE, "/nonexistent/dir/x.log", err, sizeof(err)), 0);
    cr_assert(strstr(err, "/nonexistent/dir/x.log") != NULL, "%s", err);
    log_configure(LOG_FMT_TEXT, LOG_OUT_STDERR, NULL, err, sizeof(err));
    unlink(path);
    unlink(moved);
    rmdir(dir);
}
