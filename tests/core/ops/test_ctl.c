/* The control protocol (core/ops/ctl_proto.c): request parsing, formatting,
 * replies.  ctl_proto.c is compiled into this test directly (it is part
 * of sluice_ctl, which the unit tests do not link). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg/cfg.h"
#include "core/ops/ctl.h"
#include "core/ops/ctl_proto.c"

static int parse(const char *s, struct ctl_request *rq, char *err)
{
    return ctl_request_parse(s, strlen(s), rq, err, 256);
}

Test(ctl, parses_verb_and_args)
{
    struct ctl_request rq;
    char err[256];
    cr_assert_eq(parse("{\"verb\": \"queue show\", \"args\": [\"00000000000000ff\"]}\n", &rq, err),
                 0, "%s", err);
    cr_assert_str_eq(rq.verb, "queue show");
    cr_assert_eq(rq.nargs, 1);
    cr_assert_str_eq(rq.args[0], "00000000000000ff");
    ctl_request_fini(&rq);
}

Test(ctl, args_optional_and_empty)
{
    struct ctl_request rq;
    char err[256];
    cr_assert_eq(parse("{\"verb\":\"status\"}", &rq, err), 0, "%s", err);
    cr_assert_str_eq(rq.verb, "status");
    cr_assert_eq(rq.nargs, 0);
    ctl_request_fini(&rq);
    cr_assert_eq(parse("{\"verb\":\"status\",\"args\":[]}\r\n", &rq, err), 0, "%s", err);
    cr_assert_eq(rq.nargs, 0);
    ctl_request_fini(&rq);
}

Test(ctl, escapes_in_args)
{
    struct ctl_request rq;
    char err[256];
    cr_assert_eq(parse("{\"verb\":\"queue flush\",\"args\":[\"a\\\"b\\\\c\\u00e9\"]}", &rq, err), 0,
                 "%s", err);
    cr_assert_str_eq(rq.args[0], "a\"b\\c\xc3\xa9");
    ctl_request_fini(&rq);
}

static void refused(const char *s, const char *why)
{
    struct ctl_request rq;
    char err[256] = "";
    cr_assert_eq(parse(s, &rq, err), -EINVAL, "accepted: %s", s);
    cr_assert(strstr(err, why) != NULL, "for %s: got '%s', expected '%s'", s, err, why);
    cr_assert_null(rq.verb);
    cr_assert_eq(rq.nargs, 0);
}

Test(ctl, refuses_bad_requests)
{
    refused("", "empty request");
    refused("\n", "empty request");
    refused("[\"status\"]", "JSON object");
    refused("status", "JSON object");
    refused("{\"args\": []}", "no \"verb\"");
    refused("{\"verb\": 3}", "\"verb\" must be");
    refused("{\"verb\": \"\"}", "\"verb\" must be");
    refused("{\"verb\": [\"status\"]}", "\"verb\" must be");
    refused("{\"verb\": \"a\\u0001b\"}", "\"verb\" must be");
    refused("{\"verb\": \"status\", \"args\": \"x\"}", "array of strings");
    refused("{\"verb\": \"status\", \"args\": [1]}", "array of strings");
    refused("{\"verb\": \"status\", \"args\": [[\"x\"]]}", "array of strings");
    refused("{\"verb\": \"status\", \"args\": [null]}", "array of strings");
    refused("{\"verb\": \"status\", \"extra\": 1}", "unexpected member \"extra\"");
    refused("{\"verb\": \"status\", \"verb\": \"stop\"}", "unexpected member \"verb\"");
    refused("{\"verb\": \"status\"\n}", "one line");
    refused("{\"verb\": \"status\"", "request");
    refused("{\"verb\": \"x\", \"args\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
            "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
            "more than 16 args");
}

Test(ctl, refuses_oversize)
{
    size_t n = CTL_MAX_REQUEST + 100;
    char *s = malloc(n + 1);
    memset(s, ' ', n);
    memcpy(s, "{\"verb\": \"status\"", 17);
    s[n - 1] = '}';
    s[n] = '\0';
    refused(s, "longer than");
    free(s);
}

Test(ctl, format_round_trips)
{
    const char *args[] = {"--all", "we\"ird\\ \t\x01 arg", ""};
    char *line = ctl_request_format("queue delete", args, 3);
    cr_assert_not_null(line);
    cr_assert_eq(line[strlen(line) - 1], '\n');
    cr_assert_null(strchr(line, '\t'));
    cr_assert_eq(strchr(line, '\n'), line + strlen(line) - 1, "one line: %s", line);
    struct ctl_request rq;
    char err[256];
    cr_assert_eq(parse(line, &rq, err), 0, "%s: %s", line, err);
    cr_assert_str_eq(rq.verb, "queue delete");
    cr_assert_eq(rq.nargs, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(rq.args[i], args[i]);
    ctl_request_fini(&rq);
    free(line);
}

Test(ctl, replies_parse_as_json)
{
    char *ok = ctl_reply_ok("{\"flushed\":2}");
    cr_assert_str_eq(ok, "{\"ok\": true, \"result\": {\"flushed\":2}}\n");
    char err[256];
    struct cfg_node *n = cfg_parse(ok, strlen(ok), "reply", err, sizeof(err));
    cr_assert_not_null(n, "%s", err);
    cr_assert(cfg_node_bool(cfg_node_get(n, "ok")));
    cr_assert_eq(cfg_node_int(cfg_node_get(cfg_node_get(n, "result"), "flushed")), 2);
    cfg_node_free(n);
    free(ok);

    char *bad = ctl_reply_error("no such message: %s \"%d\"\n", "x", 7);
    n = cfg_parse(bad, strlen(bad), "reply", err, sizeof(err));
    cr_assert_not_null(n, "%s", err);
    cr_assert_eq(cfg_node_type(cfg_node_get(n, "ok")), CFG_BOOL);
    cr_assert_not(cfg_node_bool(cfg_node_get(n, "ok")));
    cr_assert_str_eq(cfg_node_str(cfg_node_get(n, "error")), "no such message: x \"7\"\n");
    cfg_node_free(n);
    free(bad);
}

Test(ctl, replies_escape_controls_and_bad_utf8)
{
    /* the JSON writer is core/base/json.c: a byte that is not UTF-8
     * becomes \ufffd, so a reply is valid JSON whatever it quotes */
    char *s = ctl_reply_error("%s", "a\r\nb\x7f\xff");
    cr_assert_str_eq(s, "{\"ok\": false, \"error\": \"a\\r\\nb\\u007f\\ufffd\"}\n");
    free(s);
    const char *args[] = {"x\x01", "\xc3\xa9"};
    s = ctl_request_format("queue show", args, 2);
    cr_assert_str_eq(s, "{\"verb\": \"queue show\", \"args\": [\"x\\u0001\", \"\xc3\xa9\"]}\n");
    free(s);
}
