/*
 * NAME
 *	test_cfg_parse - the UCL/JSON subset of cfg_parse.c
 */
#include <criterion/criterion.h>

#include "core/cfg/cfg.h"
#include "core/cfg/cfg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

static struct cfg_node *parse(const char *text)
{
    err[0] = '\0';
    struct cfg_node *t = cfg_parse(text, strlen(text), "t.conf", err, sizeof(err));
    cr_assert_not_null(t, "parse failed: %s", err);
    cr_assert_eq(cfg_node_type(t), CFG_OBJECT);
    return t;
}

static void parse_fails(const char *text, size_t len, const char *want)
{
    err[0] = '\0';
    struct cfg_node *t = cfg_parse(text, len, "t.conf", err, sizeof(err));
    cr_assert_null(t, "parse of [%s] succeeded", text);
    cr_assert_str_eq(err, want, "[%s]: got \"%s\", want \"%s\"", text, err, want);
}

#define FAILS(text, want) parse_fails(text, strlen(text), want)

static const struct cfg_node *get(const struct cfg_node *n, const char *key)
{
    const struct cfg_node *v = cfg_node_get(n, key);
    cr_assert_not_null(v, "no key %s", key);
    return v;
}

static int64_t get_int(const struct cfg_node *n, const char *key)
{
    const struct cfg_node *v = get(n, key);
    cr_assert_eq(cfg_node_type(v), CFG_INT, "%s is not an integer", key);
    return cfg_node_int(v);
}

static const char *get_str(const struct cfg_node *n, const char *key)
{
    const struct cfg_node *v = get(n, key);
    cr_assert_eq(cfg_node_type(v), CFG_STRING, "%s is not a string", key);
    return cfg_node_str(v);
}

Test(cfg_parse, example_1)
{
    struct cfg_node *t = parse("listen = [\"127.0.0.1:2525\"];\n"
                               "spool_dir = \"./var/spool\";\n"
                               "workers = 2;\n"
                               "hostname = \"mx.example.test\";\n"
                               "mynetworks = [\"127.0.0.0/8\", \"::1/128\"];\n"
                               "relay_domains = [\"example.test\"];\n"
                               "max_message_size = 52428800;\n"
                               "max_recipients = 1000;\n");
    cr_assert_eq(cfg_node_count(t), 8);
    const struct cfg_node *l = get(t, "listen");
    cr_assert_eq(cfg_node_type(l), CFG_ARRAY);
    cr_assert_eq(cfg_node_count(l), 1);
    cr_assert_str_eq(cfg_node_str(cfg_node_at(l, 0)), "127.0.0.1:2525");
    cr_assert_null(cfg_node_key(cfg_node_at(l, 0)));
    cr_assert_eq(get_int(t, "workers"), 2);
    cr_assert_str_eq(get_str(t, "hostname"), "mx.example.test");
    cr_assert_eq(cfg_node_count(get(t, "mynetworks")), 2);
    cr_assert_str_eq(cfg_node_str(cfg_node_at(get(t, "mynetworks"), 1)), "::1/128");
    cr_assert_eq(get_int(t, "max_message_size"), 52428800);
    cr_assert_eq(cfg_node_line(get(t, "max_recipients")), 8);
    cr_assert_str_eq(cfg_node_key(cfg_node_at(t, 0)), "listen");
    cfg_node_free(t);
}

Test(cfg_parse, example_2_labelled_block)
{
    struct cfg_node *t = parse("binding \"no-spam\" {\n"
                               "  event = \"mail\";\n"
                               "  sink = \"builtin:access\";\n"
                               "  priority = 1000;\n"
                               "  rule = \"MAIL FROM=*@spam.example\";\n"
                               "  enabled = true;\n"
                               "  deadline = \"2s\";\n"
                               "  on_deadline = \"tempfail\";\n"
                               "  properties { action = \"reject\"; text = \"sender refused\"; }\n"
                               "}\n");
    cr_assert_eq(cfg_node_count(t), 1);
    const struct cfg_node *b = get(t, "binding");
    cr_assert_eq(cfg_node_type(b), CFG_OBJECT);
    cr_assert_str_eq(cfg_node_label(b), "no-spam");
    cr_assert_eq(cfg_node_line(b), 1);
    cr_assert_eq(cfg_node_count(b), 8);
    cr_assert_str_eq(get_str(b, "event"), "mail");
    cr_assert_str_eq(get_str(b, "sink"), "builtin:access");
    cr_assert_eq(get_int(b, "priority"), 1000);
    cr_assert_str_eq(get_str(b, "rule"), "MAIL FROM=*@spam.example");
    cr_assert_eq(cfg_node_type(get(b, "enabled")), CFG_BOOL);
    cr_assert(cfg_node_bool(get(b, "enabled")));
    cr_assert_str_eq(get_str(b, "deadline"), "2s"); /* quoted: stays a string */
    const struct cfg_node *p = get(b, "properties");
    cr_assert_eq(cfg_node_type(p), CFG_OBJECT);
    cr_assert_null(cfg_node_label(p));
    cr_assert_eq(cfg_node_line(p), 9);
    cr_assert_str_eq(get_str(p, "action"), "reject");
    cr_assert_str_eq(get_str(p, "text"), "sender refused");
    cfg_node_free(t);
}

Test(cfg_parse, repeated_blocks_in_order)
{
    struct cfg_node *t = parse("binding \"a\" { priority = 1 }\n"
                               "other = x\n"
                               "binding 'b' { priority = 2 } binding c { priority = 3 }\n"
                               "binding \"d\"\n{ }\n");
    cr_assert_eq(cfg_node_count(t), 5);
    const char *labels[] = {"a", NULL, "b", "c", "d"};
    for (size_t i = 0; i < 5; i++) {
        const struct cfg_node *n = cfg_node_at(t, i);
        if (labels[i] == NULL)
            continue;
        cr_assert_str_eq(cfg_node_key(n), "binding");
        cr_assert_str_eq(cfg_node_label(n), labels[i]);
    }
    cr_assert_eq(cfg_node_line(cfg_node_at(t, 4)), 4);
    cr_assert_eq(cfg_node_int(cfg_node_get(cfg_node_get(t, "binding"), "priority")), 1);
    cfg_node_free(t);
}

Test(cfg_parse, member_forms_and_separators)
{
    struct cfg_node *t = parse("a = 1;\n"
                               "b: 2,\n"
                               "c 3\n"
                               "d=4;e=5;;\n"
                               "\"quoted key\" = 6\n"
                               "'single' : 7,\n"
                               "f-g.h_i = 8;\n"
                               "  ; ,\n");
    const char *keys[] = {"a", "b", "c", "d", "e", "quoted key", "single", "f-g.h_i"};
    cr_assert_eq(cfg_node_count(t), 8);
    for (int i = 0; i < 8; i++) {
        cr_assert_str_eq(cfg_node_key(cfg_node_at(t, (size_t)i)), keys[i]);
        cr_assert_eq(cfg_node_int(cfg_node_at(t, (size_t)i)), i + 1);
    }
    cr_assert_eq(cfg_node_line(cfg_node_at(t, 4)), 4);
    cfg_node_free(t);
}

Test(cfg_parse, json_file)
{
    struct cfg_node *t =
        parse("{\n"
              "  \"listen\": [\"127.0.0.1:2525\", \"[::1]:2525\"],\n"
              "  \"workers\": 2,\n"
              "  \"nested\": {\"a\": [1, 2.5, true, false, null, {\"b\": \"c\"}]},\n"
              "  \"empty\": {}, \"none\": []\n"
              "}\n");
    cr_assert_eq(cfg_node_count(t), 5);
    cr_assert_eq(cfg_node_count(get(t, "listen")), 2);
    cr_assert_eq(get_int(t, "workers"), 2);
    const struct cfg_node *a = get(get(t, "nested"), "a");
    cr_assert_eq(cfg_node_count(a), 6);
    cr_assert_eq(cfg_node_type(cfg_node_at(a, 1)), CFG_FLOAT);
    cr_assert_float_eq(cfg_node_float(cfg_node_at(a, 1)), 2.5, 1e-9);
    cr_assert_eq(cfg_node_type(cfg_node_at(a, 2)), CFG_BOOL);
    cr_assert_eq(cfg_node_type(cfg_node_at(a, 4)), CFG_NULL);
    cr_assert_str_eq(get_str(cfg_node_at(a, 5), "b"), "c");
    cr_assert_eq(cfg_node_line(cfg_node_at(a, 5)), 4);
    cr_assert_eq(cfg_node_count(get(t, "empty")), 0);
    cr_assert_eq(cfg_node_type(get(t, "none")), CFG_ARRAY);
    cfg_node_free(t);
}

Test(cfg_parse, comments)
{
    struct cfg_node *t = parse("# hash comment\n"
                               "a = 1; # after a value\n"
                               "// slashes\n"
                               "b = 2 // after\n"
                               "/* block\n   /* nested */ still comment */ c = 3\n"
                               "d = [1, /* in a list */ 2, # here too\n 3]\n"
                               "url = http://x.test/y\n");
    cr_assert_eq(cfg_node_count(t), 5);
    cr_assert_eq(get_int(t, "a"), 1);
    cr_assert_eq(get_int(t, "b"), 2);
    cr_assert_eq(get_int(t, "c"), 3);
    cr_assert_eq(cfg_node_line(get(t, "c")), 6);
    cr_assert_eq(cfg_node_count(get(t, "d")), 3);
    cr_assert_str_eq(get_str(t, "url"), "http://x.test/y");
    cfg_node_free(t);
}

Test(cfg_parse, numbers_and_suffixes)
{
    struct cfg_node *t = parse("k = 10k; m = 1m; g = 2g; kb = 1kb; mb = 64mb; gb = 1GB\n"
                               "ms = 100ms; s = 2s; min = 1min; h = 1h; d = 1d; w = 1w\n"
                               "fs = 1.5s; fkb = 0.5kb; neg = -5; pos = +3; hex = 0x1f\n"
                               "big = 9223372036854775807; small = -9223372036854775808\n");
    struct {
        const char *key;
        int64_t v;
        enum cfg_unit unit;
    } want[] = {
        {"k", 10000, CFG_UNIT_SIZE},         {"m", 1000000, CFG_UNIT_SIZE},
        {"g", 2000000000, CFG_UNIT_SIZE},    {"kb", 1024, CFG_UNIT_SIZE},
        {"mb", 64 << 20, CFG_UNIT_SIZE},     {"gb", 1 << 30, CFG_UNIT_SIZE},
        {"ms", 100, CFG_UNIT_TIME},          {"s", 2000, CFG_UNIT_TIME},
        {"min", 60000, CFG_UNIT_TIME},       {"h", 3600000, CFG_UNIT_TIME},
        {"d", 86400000, CFG_UNIT_TIME},      {"w", 604800000, CFG_UNIT_TIME},
        {"fs", 1500, CFG_UNIT_TIME},         {"fkb", 512, CFG_UNIT_SIZE},
        {"neg", -5, CFG_UNIT_NONE},          {"pos", 3, CFG_UNIT_NONE},
        {"hex", 31, CFG_UNIT_NONE},          {"big", INT64_MAX, CFG_UNIT_NONE},
        {"small", INT64_MIN, CFG_UNIT_NONE},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct cfg_node *n = get(t, want[i].key);
        cr_assert_eq(get_int(t, want[i].key), want[i].v, "%s", want[i].key);
        cr_assert_eq(n->unit, want[i].unit, "%s", want[i].key);
    }
    cfg_node_free(t);

    t = parse("f = 2.5; e = 1e3; nf = -0.25; fk = 1.5005k; notnum = 5x; dots = 1.2.3.4\n");
    cr_assert_eq(cfg_node_type(get(t, "f")), CFG_FLOAT);
    cr_assert_float_eq(cfg_node_float(get(t, "e")), 1000.0, 1e-9);
    cr_assert_float_eq(cfg_node_float(get(t, "nf")), -0.25, 1e-9);
    cr_assert_eq(cfg_node_type(get(t, "fk")), CFG_FLOAT); /* 1500.5: not whole */
    cr_assert_str_eq(get_str(t, "notnum"), "5x");
    cr_assert_str_eq(get_str(t, "dots"), "1.2.3.4");
    cr_assert_str_eq(cfg_node_str(get(t, "f")), "2.5"); /* the word as written */
    cfg_node_free(t);
}

Test(cfg_parse, bare_words)
{
    struct cfg_node *t = parse("t1 = true; t2 = yes; t3 = on; t4 = TRUE\n"
                               "f1 = false; f2 = no; f3 = off\n"
                               "n = null\n"
                               "path = /var/spool/sluice; addr = 127.0.0.1:2525\n"
                               "v6 = ::1; net = 10.0.0.0/8; dom = .example.test; eq = a=b\n");
    const char *yes[] = {"t1", "t2", "t3", "t4"}, *no[] = {"f1", "f2", "f3"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(cfg_node_type(get(t, yes[i])), CFG_BOOL);
        cr_assert(cfg_node_bool(get(t, yes[i])));
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cfg_node_type(get(t, no[i])), CFG_BOOL);
        cr_assert_not(cfg_node_bool(get(t, no[i])));
    }
    cr_assert_eq(cfg_node_type(get(t, "n")), CFG_NULL);
    cr_assert_str_eq(get_str(t, "path"), "/var/spool/sluice");
    cr_assert_str_eq(get_str(t, "addr"), "127.0.0.1:2525");
    cr_assert_str_eq(get_str(t, "v6"), "::1");
    cr_assert_str_eq(get_str(t, "net"), "10.0.0.0/8");
    cr_assert_str_eq(get_str(t, "dom"), ".example.test");
    cr_assert_str_eq(get_str(t, "eq"), "a=b");
    cfg_node_free(t);
}

Test(cfg_parse, strings_and_escapes)
{
    struct cfg_node *t = parse("a = \"q\\\" b\\\\ n\\n t\\t s\\/\";\n"
                               "u = \"\\u00e9\\u20ac\";\n"
                               "pair = \"\\ud83d\\ude00\";\n"
                               "sq = 'it\\'s \\n raw \"x\"';\n"
                               "empty = \"\";\n"
                               "utf8 = \"caf\xc3\xa9\";\n");
    cr_assert_str_eq(get_str(t, "a"), "q\" b\\ n\n t\t s/");
    cr_assert_str_eq(get_str(t, "u"), "\xc3\xa9\xe2\x82\xac");
    cr_assert_str_eq(get_str(t, "pair"), "\xf0\x9f\x98\x80");
    cr_assert_str_eq(get_str(t, "sq"), "it's \\n raw \"x\"");
    cr_assert_str_eq(get_str(t, "empty"), "");
    cr_assert_str_eq(get_str(t, "utf8"), "caf\xc3\xa9");
    cfg_node_free(t);
}

Test(cfg_parse, arrays)
{
    struct cfg_node *t = parse("a = [1, 2, 3,];\n"
                               "b = [\n  \"x\"\n  \"y\",\n]\n"
                               "c = [[1, [2]], {k = v}, []]\n"
                               "d = []\n");
    cr_assert_eq(cfg_node_count(get(t, "a")), 3);
    const struct cfg_node *b = get(t, "b");
    cr_assert_eq(cfg_node_count(b), 2);
    cr_assert_eq(cfg_node_line(cfg_node_at(b, 1)), 4);
    const struct cfg_node *c = get(t, "c");
    cr_assert_eq(cfg_node_count(c), 3);
    cr_assert_eq(cfg_node_count(cfg_node_at(c, 0)), 2);
    cr_assert_str_eq(get_str(cfg_node_at(c, 1), "k"), "v");
    cr_assert_eq(cfg_node_count(get(t, "d")), 0);
    cfg_node_free(t);
}

Test(cfg_parse, empty_and_nesting_limit)
{
    struct cfg_node *t = parse("");
    cr_assert_eq(cfg_node_count(t), 0);
    cr_assert_null(cfg_node_get(t, "x"));
    cfg_node_free(t);
    t = parse("  # only a comment\n\n");
    cfg_node_free(t);

    char deep[200];
    strcpy(deep, "a = ");
    for (int i = 0; i < 32; i++)
        strcat(deep, "[");
    for (int i = 0; i < 32; i++)
        strcat(deep, "]");
    t = parse(deep);
    cfg_node_free(t);
    strcpy(deep, "a = ");
    for (int i = 0; i < 33; i++)
        strcat(deep, "[");
    for (int i = 0; i < 33; i++)
        strcat(deep, "]");
    FAILS(deep, "t.conf:1: nesting deeper than 32");
}

Test(cfg_parse, accessors_on_null_and_mismatch)
{
    cr_assert_eq(cfg_node_type(NULL), CFG_NULL);
    cr_assert_eq(cfg_node_count(NULL), 0);
    cr_assert_null(cfg_node_get(NULL, "x"));
    struct cfg_node *t = parse("s = abc; i = 7; f = 7.9");
    cr_assert_eq(cfg_node_int(get(t, "s")), 0);
    cr_assert_not(cfg_node_bool(get(t, "i")));
    cr_assert_eq(cfg_node_int(get(t, "f")), 7);
    cr_assert_float_eq(cfg_node_float(get(t, "i")), 7.0, 1e-9);
    cr_assert_eq(cfg_node_count(get(t, "s")), 0);
    cr_assert_null(cfg_node_str(t));
    cfg_node_free(t);
    cfg_node_free(NULL);
}

Test(cfg_parse, errors)
{
    FAILS("a = 1;\nb = \"abc\nc = 2\n", "t.conf:2: unterminated string");
    FAILS("a = 'abc", "t.conf:1: unterminated string");
    FAILS("a = \"x\ty\"", "t.conf:1: control character 0x09 in string");
    FAILS("a = \"x\x01y\"", "t.conf:1: control character 0x01 in string");
    FAILS("a = \"\\q\"", "t.conf:1: bad escape \\q in string");
    FAILS("a = \"\\u0000\"", "t.conf:1: NUL in string");
    FAILS("a = \"\\ud800\"", "t.conf:1: bad \\u escape in string");
    FAILS("a = \"\\u12\"", "t.conf:1: bad \\u escape in string");
    FAILS("a = 1\n/* open\n /* nested */\n", "t.conf:2: unterminated comment");
    FAILS("b {\n a = 1\n", "t.conf:1: unterminated object");
    FAILS("a = [1,\n 2\n", "t.conf:1: unterminated array");
    FAILS("a = [1 2]", "t.conf:1: unexpected '2', expected ',' or ']'");
    FAILS("a = ;", "t.conf:1: a: missing value");
    FAILS("a =", "t.conf:1: a: missing value");
    FAILS("a = 1 b = 2", "t.conf:1: unexpected 'b', expected ';' or a newline after the value");
    FAILS("a = 1\n}\n", "t.conf:2: unexpected '}', expected a key");
    FAILS("a$b = 1", "t.conf:1: bad character '$' in key");
    FAILS("= 1", "t.conf:1: unexpected '=', expected a key");
    FAILS("\"\" = 1", "t.conf:1: empty key");
    FAILS("a = 99999999999999999999", "t.conf:1: number out of range: 99999999999999999999");
    FAILS("a = 1e400", "t.conf:1: number out of range: 1e400");
    FAILS("{ a = 1 } b = 2", "t.conf:1: unexpected 'b', expected the end after the closing '}'");
    FAILS("a = \x01", "t.conf:1: unexpected character 0x01, expected a value");
    FAILS("a = x\x01",
          "t.conf:1: unexpected character 0x01, expected ';' or a newline after the value");
    FAILS("a = [,]", "t.conf:1: unexpected ',', expected a value");
    parse_fails("a = 1;\nb = 2;\nc = \"x\0y\";\n", 22, "t.conf:3: NUL byte in input");

    size_t big = CFG_MAX_INPUT + 1;
    char *text = malloc(big);
    cr_assert_not_null(text);
    memset(text, ' ', big);
    parse_fails(text, big, "t.conf:1: input larger than 4194304 bytes");
    struct cfg_node *t = cfg_parse(text, big - 1, "t.conf", err, sizeof(err)); /* at the cap */
    cr_assert_not_null(t);
    cfg_node_free(t);
    free(text);
}

Test(cfg_parse, noline_names_for_overrides)
{
    struct cfg_node *t = cfg_parse_noline("listen=\"x", 9, "-o listen", err, sizeof(err));
    cr_assert_null(t);
    cr_assert_str_eq(err, "-o listen: unterminated string");
}

Test(cfg_parse, num_scan)
{
    struct cfg_num n;
    cr_assert_eq(cfg_num_scan("64mb", 4, &n), 0);
    cr_assert_eq(n.i, 64 << 20);
    cr_assert_eq(cfg_num_scan("300s", 4, &n), 0);
    cr_assert_eq(n.i, 300000);
    cr_assert_eq(n.unit, CFG_UNIT_TIME);
    cr_assert_eq(cfg_num_scan("10M", 3, &n), 0); /* m is mega; minutes are min */
    cr_assert_eq(n.i, 10000000);
    cr_assert_eq(cfg_num_scan("abc", 3, &n), -EINVAL);
    cr_assert_eq(cfg_num_scan("1.", 2, &n), -EINVAL);
    cr_assert_eq(cfg_num_scan("-", 1, &n), -EINVAL);
    cr_assert_eq(cfg_num_scan("10x", 3, &n), -EINVAL);
    cr_assert_eq(cfg_num_scan("0x", 2, &n), -EINVAL);
    cr_assert_eq(cfg_num_scan("10000000000g", 12, &n), -ERANGE);
    cr_assert_eq(cfg_num_scan("1e300s", 6, &n), -ERANGE);
}

/* The text of a node's entry, and of its value alone. */
static void span_is(const char *text, const struct cfg_node *n, const char *entry,
                    const char *value)
{
    cr_assert_leq(n->start, n->vstart);
    cr_assert_leq(n->vend, n->end);
    cr_assert_eq(n->end - n->start, strlen(entry), "entry [%.*s], want [%s]",
                 (int)(n->end - n->start), text + n->start, entry);
    cr_assert_eq(memcmp(text + n->start, entry, strlen(entry)), 0, "entry [%.*s], want [%s]",
                 (int)(n->end - n->start), text + n->start, entry);
    cr_assert_eq(n->vend - n->vstart, strlen(value), "value [%.*s], want [%s]",
                 (int)(n->vend - n->vstart), text + n->vstart, value);
    cr_assert_eq(memcmp(text + n->vstart, value, strlen(value)), 0);
}

Test(cfg_parse, spans)
{
    const char *text = "# head\n"
                       "a = 1;  // one\n"
                       "b: \"x\\\"y\" , c 'z'\n"
                       "list = [1, 2 ,\n 3]\n"
                       "binding \"n\" { e = \"}\"; /* { */ } ; d = on\n"
                       "t { u = 1 }\n"
                       "  ;\n";
    struct cfg_node *t = parse(text);
    cr_assert_eq(t->nkid, 7);
    cr_assert(!t->braced);
    cr_assert_eq(t->start, 0);
    cr_assert_eq(t->end, strlen(text));
    span_is(text, t->kid[0], "a = 1;", "1");
    span_is(text, t->kid[1], "b: \"x\\\"y\" ,", "\"x\\\"y\"");
    span_is(text, t->kid[2], "c 'z'", "'z'");
    span_is(text, t->kid[3], "list = [1, 2 ,\n 3]", "[1, 2 ,\n 3]");
    span_is(text, t->kid[3]->kid[0], "1,", "1");
    span_is(text, t->kid[3]->kid[1], "2 ,", "2");
    span_is(text, t->kid[3]->kid[2], "3", "3");
    span_is(text, t->kid[4], "binding \"n\" { e = \"}\"; /* { */ } ;", "{ e = \"}\"; /* { */ }");
    span_is(text, t->kid[4]->kid[0], "e = \"}\";", "\"}\"");
    span_is(text, t->kid[5], "d = on", "on");
    span_is(text, t->kid[6], "t { u = 1 }", "{ u = 1 }"); /* the `;` is on another line */
    cfg_node_free(t);

    const char *json = "  {\"a\": {\"b\": [1]}, \"c\": \"\\u00e9\\t\"}  \n";
    t = parse(json);
    cr_assert(t->braced);
    span_is(json, t, "{\"a\": {\"b\": [1]}, \"c\": \"\\u00e9\\t\"}",
            "{\"a\": {\"b\": [1]}, \"c\": \"\\u00e9\\t\"}");
    span_is(json, t->kid[0], "\"a\": {\"b\": [1]},", "{\"b\": [1]}");
    span_is(json, t->kid[0]->kid[0], "\"b\": [1]", "[1]");
    span_is(json, t->kid[1], "\"c\": \"\\u00e9\\t\"", "\"\\u00e9\\t\"");
    cr_assert_str_eq(t->kid[1]->text, "\xc3\xa9\t");
    cfg_node_free(t);
}

Test(cfg_parse, lift_named_blocks)
{
    const char *json = "{\"binding\": {\"tag\": {\"event\": \"mail\"}, \"two\": {}},\n"
                       " \"max_errors\": 3, \"binding\": {},\n"
                       " \"transport\": {\"x\": {}}}";
    struct cfg_node *t = parse(json);
    cr_assert_eq(cfg_node_lift(t, "binding"), 0);
    cr_assert_eq(t->nkid, 4, "two lifted, the empty one gone");
    cr_assert_str_eq(cfg_node_key(t->kid[0]), "binding");
    cr_assert_str_eq(cfg_node_label(t->kid[0]), "tag");
    cr_assert_str_eq(cfg_node_str(cfg_node_get(t->kid[0], "event")), "mail");
    cr_assert(t->kid[0]->lifted);
    span_is(json, t->kid[0], "\"tag\": {\"event\": \"mail\"},", "{\"event\": \"mail\"}");
    cr_assert_str_eq(cfg_node_label(t->kid[1]), "two");
    cr_assert_eq(cfg_node_line(t->kid[1]), 1);
    cr_assert_str_eq(cfg_node_key(t->kid[2]), "max_errors");
    cr_assert_str_eq(cfg_node_key(t->kid[3]), "transport");
    cr_assert_null(cfg_node_label(t->kid[3]), "only the key asked for");
    cfg_node_free(t);

    /* not a block of blocks: left for the reader to refuse */
    t = parse("binding { event = mail; x { } }\nbinding \"a\" { y { } }\n");
    cr_assert_eq(cfg_node_lift(t, "binding"), 0);
    cr_assert_eq(t->nkid, 2);
    cr_assert_null(cfg_node_label(t->kid[0]));
    cr_assert_str_eq(cfg_node_label(t->kid[1]), "a");
    cr_assert(!t->kid[1]->lifted);
    cfg_node_free(t);
}

Test(cfg_parse, lines_names_nothing)
{
    char e[128];
    cr_assert_null(cfg_parse_lines("a = 1\nb = {\n", 12, e, sizeof(e)));
    cr_assert_str_eq(e, "line 2: unterminated object");
}
