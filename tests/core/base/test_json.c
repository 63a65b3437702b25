/*
 * NAME
 *	test_json - the one JSON writer: escapes, nesting, truncation, and a
 *	strict checker run over random input
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "core/base/utf8.h"

/* ---- a small strict JSON checker (RFC 8259, UTF-8 text) ---- */

static const char *jc_value(const char *p, const char *end, int depth);

static const char *jc_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

static const char *jc_string(const char *p, const char *end)
{
    if (p >= end || *p++ != '"')
        return NULL;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p >= end)
                return NULL;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p + i >= end || !strchr("0123456789abcdefABCDEF", p[i]) || p[i] == 0)
                        return NULL;
                p += 5;
            } else if (*p && strchr("\"\\/bfnrt", *p)) {
                p++;
            } else {
                return NULL;
            }
            continue;
        }
        size_t k = utf8_decode(p, (size_t)(end - p), NULL);
        if (k == 0)
            return NULL;
        p += k;
    }
    return p < end ? p + 1 : NULL;
}

static const char *jc_number(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    return p;
}

static const char *jc_list(const char *p, const char *end, int depth, char close, bool obj)
{
    p = jc_ws(p + 1, end);
    if (p < end && *p == close)
        return p + 1;
    for (;;) {
        if (obj) {
            p = jc_string(p, end);
            if (p == NULL)
                return NULL;
            p = jc_ws(p, end);
            if (p >= end || *p++ != ':')
                return NULL;
        }
        p = jc_value(p, end, depth + 1);
        if (p == NULL)
            return NULL;
        p = jc_ws(p, end);
        if (p < end && *p == close)
            return p + 1;
        if (p >= end || *p++ != ',')
            return NULL;
        p = jc_ws(p, end);
    }
}

static const char *jc_value(const char *p, const char *end, int depth)
{
    p = jc_ws(p, end);
    if (p >= end || depth > 100)
        return NULL;
    if (*p == '{')
        return jc_list(p, end, depth, '}', true);
    if (*p == '[')
        return jc_list(p, end, depth, ']', false);
    if (*p == '"')
        return jc_string(p, end);
    static const char *const lit[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++)
        if ((size_t)(end - p) >= strlen(lit[i]) && memcmp(p, lit[i], strlen(lit[i])) == 0)
            return p + strlen(lit[i]);
    return jc_number(p, end);
}

static bool json_ok(const char *s, size_t n)
{
    const char *end = s + n, *p = jc_value(s, end, 0);
    return p != NULL && jc_ws(p, end) == end;
}

/* ---- tests ---- */

static char buf[4096];

static const char *one_str(const char *s, size_t n)
{
    struct json_buf b;
    json_init(&b, buf, sizeof(buf), 0);
    cr_assert(json_strn(&b, s, n));
    cr_assert_eq(b.len, strlen(buf));
    return buf;
}

Test(json, checker_sanity)
{
    const char *good = "{\"a\": [1, -2, true, null, \"x\\u00e9\"]}";
    cr_assert(json_ok(good, strlen(good)));
    cr_assert(!json_ok("{\"a\":}", 6));
    cr_assert(!json_ok("[1,]", 4));
    cr_assert(!json_ok("\"\x01\"", 3));
    cr_assert(!json_ok("\"\xff\"", 3));
    cr_assert(!json_ok("\"abc", 4));
}

Test(json, escapes)
{
    cr_assert_str_eq(one_str("a\"b\\c/", 6), "\"a\\\"b\\\\c/\"");
    cr_assert_str_eq(one_str("\b\f\n\r\t", 5), "\"\\b\\f\\n\\r\\t\"");
    cr_assert_str_eq(one_str("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\\u007f\"");
    cr_assert_str_eq(one_str("a\0b", 3), "\"a\\u0000b\"", "NUL in a counted string");
    cr_assert_str_eq(one_str("", 0), "\"\"");
    struct json_buf b;
    json_init(&b, buf, sizeof(buf), 0);
    json_str(&b, NULL);
    cr_assert_str_eq(buf, "\"\"");
}

Test(json, utf8_kept_and_every_bad_octet_replaced)
{
    cr_assert_str_eq(one_str("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9),
                     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    static const struct {
        const char *in, *out;
    } bad[] = {
        {"\x80", "\"\\ufffd\""},                                  /* lone continuation */
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
        {"\xc1\xbf", "\"\\ufffd\\ufffd\""},                       /* overlong */
        {"\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""},            /* overlong, 3 */
        {"\xf0\x80\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* overlong, 4 */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},            /* surrogate */
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* > U+10FFFF */
        {"\xf5\x80", "\"\\ufffd\\ufffd\""},
        {"\xfe\xff", "\"\\ufffd\\ufffd\""},
        {"x\xe2\x82", "\"x\\ufffd\\ufffd\""},    /* cut at the end */
        {"\xe2\x28\xa1", "\"\\ufffd(\\ufffd\""}, /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_str_eq(one_str(bad[i].in, strlen(bad[i].in)), bad[i].out, "%zu", i);
}

Test(json, nesting_commas_and_numbers)
{
    struct json_buf b;
    json_init(&b, buf, sizeof(buf), 0);
    json_obj(&b);
    json_key(&b, "a");
    json_arr(&b);
    json_int(&b, INT64_MIN);
    json_uint(&b, UINT64_MAX);
    json_bool(&b, true);
    json_bool(&b, false);
    json_null(&b);
    json_obj(&b);
    json_end(&b);
    json_arr(&b);
    json_end(&b);
    json_end(&b);
    json_key(&b, "b");
    json_verbatim(&b, "{\"x\":1}", 7);
    json_end(&b);
    cr_assert_str_eq(buf, "{\"a\":[-9223372036854775808,18446744073709551615,true,false,null,{},"
                          "[]],\"b\":{\"x\":1}}");
    cr_assert(json_ok(buf, b.len));

    json_init(&b, buf, sizeof(buf), 0);
    json_spaced(&b);
    json_arr(&b);
    json_break(&b, "\n  ");
    json_obj(&b);
    json_key(&b, "k");
    json_str(&b, "v");
    json_break(&b, "\n   ");
    json_key(&b, "n");
    json_uint(&b, 1);
    json_end(&b);
    json_break(&b, "\n  ");
    json_uint(&b, 2);
    json_text(&b, "\n", 1);
    json_end(&b);
    cr_assert_str_eq(buf, "[\n  {\"k\": \"v\",\n   \"n\": 1},\n  2\n]");
    cr_assert(json_ok(buf, b.len));
}

Test(json, fixed_buffer_truncates_and_stays_valid)
{
    char small[32];
    struct json_buf b;
    json_init(&b, small, sizeof(small), 1);
    json_obj(&b);
    json_key(&b, "k");
    cr_assert(!json_str(&b, "a value much longer than the buffer is"));
    cr_assert(b.full);
    cr_assert(!json_key(&b, "x"), "a full buffer takes nothing more");
    json_end(&b);
    cr_assert_str_eq(small, "{}", "the value that did not fit took its key back");
    /* json_mark/json_rewind: a member whole or not at all */
    json_init(&b, small, sizeof(small), 1);
    json_obj(&b);
    json_key(&b, "a");
    json_uint(&b, 1);
    struct json_mark m;
    json_mark(&b, &m);
    json_key(&b, "list");
    json_arr(&b);
    json_str(&b, "fits");
    if (!json_str(&b, "does not fit at all, not here"))
        json_rewind(&b, &m);
    json_end(&b);
    cr_assert_str_eq(small, "{\"a\":1}");
    /* cut: at a character boundary, closed */
    json_init(&b, small, sizeof(small), 0);
    json_arr(&b);
    cr_assert(!json_str_cut(&b,
                            "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
                            "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac",
                            30));
    json_end(&b);
    cr_assert(json_ok(small, b.len), "%s", small);
    cr_assert(utf8_valid(small, b.len));
    cr_assert_eq(small[b.len - 2], '"');
    cr_assert_eq(small[b.len - 1], ']');
    cr_assert_lt(b.len, sizeof(small));
}

Test(json, growing_buffer)
{
    struct json_buf b;
    json_init_grow(&b);
    char *empty = json_take(&b);
    cr_assert_str_eq(empty, "");
    free(empty);
    json_arr(&b);
    for (int i = 0; i < 5000; i++)
        json_str(&b, "0123456789");
    json_end(&b);
    cr_assert(!b.full);
    cr_assert(json_ok(b.p, b.len));
    char *t = json_take(&b);
    cr_assert_eq(strlen(t), 2 + 5000 * 13 - 1); /* 12 a string, and its comma */
    free(t);
    cr_assert_null(b.p);
    /* drain keeps the nesting */
    json_arr(&b);
    json_uint(&b, 1);
    json_drain(&b);
    json_uint(&b, 2);
    json_end(&b);
    cr_assert_str_eq(b.p, ",2]");
    json_fini(&b);
}

/* Random octets (every kind of control, NUL and bad UTF-8 turns up)
 * through random structures into buffers of random sizes: always JSON. */
Test(json, random_input_is_always_valid_json)
{
    static char out[1024];
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t cap = 2 + (size_t)(rand_r(&seed) % sizeof(out) - 1);
        if (cap < 8)
            cap = 8;
        struct json_buf b;
        json_init(&b, out, cap, 0);
        json_obj(&b);
        int items = rand_r(&seed) % 12;
        for (int i = 0; i < items; i++) {
            char s[96];
            size_t n = (size_t)(rand_r(&seed) % sizeof(s));
            for (size_t k = 0; k < n; k++)
                s[k] = (char)(rand_r(&seed) % 4 == 0 ? 0x80 + rand_r(&seed) % 0x80
                                                     : rand_r(&seed) % 256);
            if (!json_key(&b, "k"))
                break;
            switch (rand_r(&seed) % 4) {
            case 0:
                json_strn(&b, s, n);
                break;
            case 1:
                json_str_cut(&b, s, n);
                break;
            case 2:
                if (json_arr(&b)) {
                    json_strn(&b, s, n / 2);
                    json_int(&b, (int64_t)rand_r(&seed) - RAND_MAX / 2);
                    json_end(&b);
                }
                break;
            default:
                json_uint(&b, (uint64_t)rand_r(&seed));
            }
        }
        json_end(&b);
        cr_assert_lt(b.len, cap);
        cr_assert_eq(out[b.len], '\0');
        if (!json_ok(out, b.len))
            cr_assert_fail("round %d: invalid JSON: %s", round, out);
    }
}
