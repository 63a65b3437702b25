/*
 * NAME
 *	ctl_proto - the control protocol's requests and replies (no I/O)
 * SYNOPSIS
 *	#include "core/ops/ctl.h"
 *
 *	int ctl_request_parse(const char *text, size_t len, struct ctl_request *req,
 *			      char *err, size_t errlen);
 *	char *ctl_request_format(const char *verb, const char *const *args, size_t nargs);
 *	char *ctl_reply_ok(const char *result);
 *	char *ctl_reply_error(const char *fmt, ...);
 *	char *ctl_result_pair(const char *k1, const char *v1, const char *k2,
 *			      const char *v2);
 * DESCRIPTION
 *	A request is one JSON object on one line: "verb" (a non-empty string
 *	of printable ASCII) and "args" (optional; an array of at most
 *	CTL_MAX_ARGS strings).  Any other member, a second "verb", or any other
 *	type is refused.  The JSON is read with cfg_parse(), which accepts a
 *	superset (UCL); what it yields is checked here member by member.
 *	Requests and replies are written with core/base/json.h (spaced).
 * DIAGNOSTICS
 *	ctl_request_parse() returns -EINVAL with one line in err.
 */
#include "core/ops/ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "core/base/utf8.h"
#include "core/cfg/cfg.h"

void ctl_request_fini(struct ctl_request *req)
{
    free(req->verb);
    for (size_t i = 0; i < req->nargs; i++)
        free(req->args[i]);
    memset(req, 0, sizeof(*req));
}

static int ctl_bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ctl_bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static bool ctl_verb_ok(const char *v)
{
    if (*v == '\0' || strlen(v) > 64)
        return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

int ctl_request_parse(const char *text, size_t len, struct ctl_request *req, char *err,
                      size_t errlen)
{
    memset(req, 0, sizeof(*req));
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len == 0)
        return ctl_bad(err, errlen, "empty request");
    if (len > CTL_MAX_REQUEST)
        return ctl_bad(err, errlen, "request longer than %d bytes", CTL_MAX_REQUEST);
    if (memchr(text, '\n', len) != NULL)
        return ctl_bad(err, errlen, "a request is one line");
    if (text[0] != '{')
        return ctl_bad(err, errlen, "a request is a JSON object");
    char perr[256];
    struct cfg_node *root = cfg_parse(text, len, "request", perr, sizeof(perr));
    if (root == NULL)
        return ctl_bad(err, errlen, "%s", perr);
    int rc = 0;
    const struct cfg_node *verb = NULL, *args = NULL;
    for (size_t i = 0; i < cfg_node_count(root) && rc == 0; i++) {
        const struct cfg_node *n = cfg_node_at(root, i);
        const char *k = cfg_node_key(n);
        if (k != NULL && strcmp(k, "verb") == 0 && verb == NULL)
            verb = n;
        else if (k != NULL && strcmp(k, "args") == 0 && args == NULL)
            args = n;
        else
            rc = ctl_bad(err, errlen, "unexpected member \"%s\"", k ? k : "");
    }
    if (rc == 0 && verb == NULL)
        rc = ctl_bad(err, errlen, "no \"verb\"");
    if (rc == 0 && (cfg_node_type(verb) != CFG_STRING || !ctl_verb_ok(cfg_node_str(verb))))
        rc = ctl_bad(err, errlen, "\"verb\" must be a non-empty string of printable ASCII");
    if (rc == 0 && args != NULL && cfg_node_type(args) != CFG_ARRAY)
        rc = ctl_bad(err, errlen, "\"args\" must be an array of strings");
    if (rc == 0 && args != NULL && cfg_node_count(args) > CTL_MAX_ARGS)
        rc = ctl_bad(err, errlen, "more than %d args", CTL_MAX_ARGS);
    for (size_t i = 0; rc == 0 && args != NULL && i < cfg_node_count(args); i++) {
        const struct cfg_node *a = cfg_node_at(args, i);
        if (cfg_node_type(a) != CFG_STRING)
            rc = ctl_bad(err, errlen, "\"args\" must be an array of strings");
        else if (!utf8_valid(cfg_node_str(a), strlen(cfg_node_str(a))))
            rc = ctl_bad(err, errlen, "arg %zu is not UTF-8 (RFC 8259 8.1)", i + 1);
    }
    if (rc == 0) {
        req->verb = strdup(cfg_node_str(verb));
        bool oom = req->verb == NULL;
        for (size_t i = 0; args != NULL && i < cfg_node_count(args); i++) {
            req->args[i] = strdup(cfg_node_str(cfg_node_at(args, i)));
            req->nargs = i + 1;
            oom |= req->args[i] == NULL;
        }
        if (oom) {
            ctl_request_fini(req);
            rc = ctl_bad(err, errlen, "out of memory");
        }
    }
    cfg_node_free(root);
    return rc;
}

char *ctl_request_format(const char *verb, const char *const *args, size_t nargs)
{
    struct json_buf b;
    json_init_grow(&b);
    json_spaced(&b);
    json_obj(&b);
    json_key(&b, "verb");
    json_str(&b, verb);
    json_key(&b, "args");
    json_arr(&b);
    for (size_t i = 0; i < nargs; i++)
        json_str(&b, args[i]);
    json_end(&b);
    json_end(&b);
    json_text(&b, "\n", 1);
    return json_take(&b);
}

/* {"ok": OK, "KEY": VALUE}\n; value is JSON text when verbatim, else a
 * string to quote. */
static char *ctl_reply(bool ok, const char *key, const char *value, bool verbatim)
{
    struct json_buf b;
    json_init_grow(&b);
    json_spaced(&b);
    json_obj(&b);
    json_key(&b, "ok");
    json_bool(&b, ok);
    json_key(&b, key);
    if (verbatim)
        json_verbatim(&b, value, strlen(value));
    else
        json_str(&b, value);
    json_end(&b);
    json_text(&b, "\n", 1);
    return json_take(&b);
}

char *ctl_reply_ok(const char *result)
{
    return ctl_reply(true, "result", result, true);
}

char *ctl_reply_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *r = ctl_reply(false, "error", msg, false);
    free(msg);
    return r;
}

char *ctl_result_pair(const char *k1, const char *v1, const char *k2, const char *v2)
{
    struct json_buf b;
    json_init_grow(&b);
    json_spaced(&b);
    json_obj(&b);
    json_key(&b, k1);
    json_str(&b, v1);
    json_key(&b, k2);
    json_str(&b, v2);
    json_end(&b);
    char *res = json_take(&b);
    char *r = res ? ctl_reply_ok(res) : NULL;
    free(res);
    return r;
}
