/*
 * NAME
 *	smtp_addr - paths, ESMTP parameters, HELO names
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	const char *p = arg;
 *	struct smtp_path path;
 *	if (smtp_path_parse(&p, true, &path) == SMTP_ADDR_OK) ...
 * DESCRIPTION
 *	The grammar is RFC 5321 4.1.2 with RFC 6531 3.3 (UTF-8 in atext,
 *	qtext and domain labels; the line was already checked to be valid
 *	UTF-8, so any octet >= 0x80 here is part of a valid sequence):
 *
 *	Path        = "<" [ A-d-l ":" ] Mailbox ">"     (the route is dropped)
 *	Mailbox     = Local-part [ "@" ( Domain / address-literal ) ]
 *	Local-part  = Dot-string / Quoted-string
 *
 *	A mailbox without a domain is returned with has_domain false: the
 *	caller accepts it only as <postmaster> (RFC 5321 4.5.1).  Nothing
 *	here is lenient about shell metacharacters: ';' is not atext, so
 *	<;sleep 5;> is a syntax error; inside quotes it is data, and data is
 *	never handed to a shell.
 *
 *	Parameters (RFC 5321 4.1.2 esmtp-param) are checked strictly and
 *	turned into a normalized string for the spool: known keywords in a
 *	fixed order, upper-case, values checked (SIZE digits with an overflow
 *	check, BODY, RET, ENVID as xtext).
 * DIAGNOSTICS
 *	Parsers return SMTP_ADDR_* or a reply id; nothing is logged.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/smtpd/smtp_int.h"

static bool smtp_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5322 atext plus RFC 6531 UTF8-non-ascii. */
static bool smtp_is_atext(unsigned char c)
{
    return smtp_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL) || c >= 0x80;
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
 * or a U-label.  Advances *pp past the domain. */
static bool smtp_domain_scan(const char **pp, bool *non_ascii)
{
    const char *p = *pp;
    for (;;) {
        const char *label = p;
        bool utf8 = false;
        unsigned char c = (unsigned char)*p;
        if (!smtp_is_alnum(c) && c < 0x80)
            return false;
        while (smtp_is_alnum((unsigned char)*p) || *p == '-' || (unsigned char)*p >= 0x80) {
            if ((unsigned char)*p >= 0x80)
                utf8 = true;
            p++;
        }
        if (p[-1] == '-' || (!utf8 && p - label > 63))
            return false;
        if (utf8)
            *non_ascii = true;
        if (*p != '.')
            break;
        p++;
    }
    *pp = p;
    return true;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 ) "]"; general literals
 * (RFC 5321 4.1.3 Standardized-tag) name no transport we have. */
static bool smtp_literal_scan(const char **pp)
{
    const char *p = *pp + 1;
    const char *end = strchr(p, ']');
    char buf[64];
    unsigned char addr[16];
    if (end == NULL)
        return false;
    size_t n = (size_t)(end - p);
    if (n >= 5 && strncasecmp(p, "IPv6:", 5) == 0) {
        if (n - 5 >= sizeof(buf))
            return false;
        memcpy(buf, p + 5, n - 5);
        buf[n - 5] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return false;
    } else {
        if (n >= sizeof(buf))
            return false;
        memcpy(buf, p, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET, buf, addr) != 1) /* dotted quad only */
            return false;
    }
    *pp = end + 1;
    return true;
}

/* Local-part; advances *pp. */
static bool smtp_local_scan(const char **pp, bool *non_ascii)
{
    const char *p = *pp;
    if (*p == '"') {
        for (p++;; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '"')
                break;
            if (c == '\\') { /* quoted-pairSMTP = "\" %d32-126 */
                p++;
                if (*p < 32 || *p > 126)
                    return false;
            } else if (c >= 0x80) {
                *non_ascii = true;
            } else if (c < 32 || c > 126) {
                return false; /* qtextSMTP = %d32-33 / %d35-91 / %d93-126 */
            }
        }
        *pp = p + 1;
        return true;
    }
    for (;;) { /* Dot-string = Atom *("." Atom) */
        if (!smtp_is_atext((unsigned char)*p))
            return false;
        while (smtp_is_atext((unsigned char)*p)) {
            if ((unsigned char)*p >= 0x80)
                *non_ascii = true;
            p++;
        }
        if (*p != '.')
            break;
        p++;
    }
    *pp = p;
    return true;
}

enum smtp_addr_err smtp_path_parse(const char **pp, bool allow_null, struct smtp_path *out)
{
    const char *p = *pp;
    bool non_ascii = false, route_utf8 = false;

    out->addr[0] = '\0';
    out->len = out->local_len = 0;
    out->has_domain = out->literal = out->non_ascii = false;
    if (*p++ != '<')
        return SMTP_ADDR_SYNTAX;
    if (*p == '>') {
        if (!allow_null)
            return SMTP_ADDR_SYNTAX;
        *pp = p + 1;
        return SMTP_ADDR_OK;
    }
    if (*p == '@') { /* A-d-l = At-domain *( "," At-domain ) ":" */
        for (;;) {
            p++;
            if (!smtp_domain_scan(&p, &route_utf8))
                return SMTP_ADDR_SYNTAX;
            if (*p == ',' && p[1] == '@') {
                p++;
                continue;
            }
            if (*p++ != ':')
                return SMTP_ADDR_SYNTAX;
            break;
        }
    }
    const char *mb = p;
    if (!smtp_local_scan(&p, &non_ascii))
        return SMTP_ADDR_SYNTAX;
    size_t local_len = (size_t)(p - mb);
    size_t domain_len = 0;
    if (*p == '@') {
        const char *d = ++p;
        if (*p == '[') {
            if (!smtp_literal_scan(&p))
                return SMTP_ADDR_SYNTAX;
            out->literal = true;
        } else if (!smtp_domain_scan(&p, &non_ascii)) {
            return SMTP_ADDR_SYNTAX;
        }
        domain_len = (size_t)(p - d);
        out->has_domain = true;
    }
    if (*p != '>')
        return SMTP_ADDR_SYNTAX;
    size_t len = (size_t)(p - mb);
    if (local_len > SMTP_LOCAL_MAX || domain_len > SMTP_DOMAIN_MAX || len + 2 > SMTP_PATH_MAX)
        return SMTP_ADDR_TOO_LONG;
    memcpy(out->addr, mb, len);
    out->addr[len] = '\0';
    out->len = len;
    out->local_len = local_len;
    out->non_ascii = non_ascii;
    *pp = p + 1;
    return SMTP_ADDR_OK;
}

/* ---- ESMTP parameters ---- */

/* One "keyword[=value]" token. */
struct smtp_param {
    const char *kw, *val; /* val NULL when there is no '=' */
    size_t kwlen, vlen;
};

/* Splits the next token off *pp; false at the end. */
static bool smtp_param_next(const char **pp, struct smtp_param *prm)
{
    const char *p = *pp;
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return false;
    prm->kw = p;
    while (*p != '\0' && *p != ' ' && *p != '=')
        p++;
    prm->kwlen = (size_t)(p - prm->kw);
    prm->val = NULL;
    prm->vlen = 0;
    if (*p == '=') {
        prm->val = ++p;
        while (*p != '\0' && *p != ' ')
            p++;
        prm->vlen = (size_t)(p - prm->val);
    }
    *pp = p;
    return true;
}

static bool smtp_param_is(const struct smtp_param *prm, const char *kw)
{
    return prm->kwlen == strlen(kw) && strncasecmp(prm->kw, kw, prm->kwlen) == 0;
}

static bool smtp_value_is(const struct smtp_param *prm, const char *v)
{
    return prm->val != NULL && prm->vlen == strlen(v) && strncasecmp(prm->val, v, prm->vlen) == 0;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"); esmtp-value =
 * 1*(%d33-60 / %d62-126) (RFC 6531 adds UTF-8, which no value we know
 * allows, so it is refused with the rest). */
static bool smtp_param_wellformed(const struct smtp_param *prm)
{
    if (prm->kwlen == 0 || !smtp_is_alnum((unsigned char)prm->kw[0]))
        return false;
    for (size_t i = 1; i < prm->kwlen; i++)
        if (!smtp_is_alnum((unsigned char)prm->kw[i]) && prm->kw[i] != '-')
            return false;
    if (prm->val == NULL)
        return true;
    if (prm->vlen == 0)
        return false;
    for (size_t i = 0; i < prm->vlen; i++) {
        unsigned char c = (unsigned char)prm->val[i];
        if (c < 33 || c > 126 || c == '=')
            return false;
    }
    return true;
}

/* RFC 1870 size-value = 1*20DIGIT, refused when it does not fit 64 bits. */
static bool smtp_size_parse(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool smtp_xtext_valid(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '+') { /* hexchar = "+" 2(%x30-39 / %x41-46) */
            for (int k = 1; k <= 2; k++) {
                char h = i + (size_t)k < len ? p[i + (size_t)k] : '\0';
                if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F')))
                    return false;
            }
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return false;
        }
    }
    return true;
}

enum smtp_reply_id smtp_mail_params_parse(const char *p, bool esmtp, struct smtp_mail_params *out)
{
    struct smtp_param prm;
    const char *body = NULL, *ret = NULL;
    const char *envid = NULL;
    size_t envid_len = 0;

    memset(out, 0, sizeof(*out));
    while (smtp_param_next(&p, &prm)) {
        if (!esmtp)
            return SMTP_R_PARAM_UNKNOWN; /* HELO: no service extensions */
        if (!smtp_param_wellformed(&prm))
            return SMTP_R_PARAM_SYNTAX;
        if (smtp_param_is(&prm, "SIZE")) {
            if (out->has_size || prm.val == NULL || !smtp_size_parse(prm.val, prm.vlen, &out->size))
                return SMTP_R_PARAM_SYNTAX;
            out->has_size = true;
        } else if (smtp_param_is(&prm, "BODY")) {
            if (body != NULL)
                return SMTP_R_PARAM_SYNTAX;
            if (smtp_value_is(&prm, "7BIT"))
                body = "7BIT";
            else if (smtp_value_is(&prm, "8BITMIME"))
                body = "8BITMIME";
            else
                return SMTP_R_PARAM_SYNTAX;
        } else if (smtp_param_is(&prm, "SMTPUTF8")) {
            if (out->smtputf8 || prm.val != NULL)
                return SMTP_R_PARAM_SYNTAX;
            out->smtputf8 = true;
        } else if (smtp_param_is(&prm, "RET")) {
            if (ret != NULL)
                return SMTP_R_PARAM_SYNTAX;
            if (smtp_value_is(&prm, "FULL"))
                ret = "FULL";
            else if (smtp_value_is(&prm, "HDRS"))
                ret = "HDRS";
            else
                return SMTP_R_PARAM_SYNTAX;
        } else if (smtp_param_is(&prm, "ENVID")) {
            if (envid != NULL || prm.val == NULL || prm.vlen > SMTP_ENVID_MAX ||
                !smtp_xtext_valid(prm.val, prm.vlen))
                return SMTP_R_PARAM_SYNTAX;
            envid = prm.val;
            envid_len = prm.vlen;
        } else {
            return SMTP_R_PARAM_UNKNOWN;
        }
    }

    /* The normalized form: fixed order, checked values only. */
    size_t n = 0, cap = sizeof(out->norm);
#define NORM(...) n += (size_t)snprintf(out->norm + n, cap - n, __VA_ARGS__)
    if (out->has_size)
        NORM("%sSIZE=%llu", n ? " " : "", (unsigned long long)out->size);
    if (body)
        NORM("%sBODY=%s", n ? " " : "", body);
    if (out->smtputf8)
        NORM("%sSMTPUTF8", n ? " " : "");
    if (ret)
        NORM("%sRET=%s", n ? " " : "", ret);
    if (envid)
        NORM("%sENVID=%.*s", n ? " " : "", (int)envid_len, envid);
#undef NORM
    return SMTP_R_NONE;
}

/* RFC 3461 NOTIFY and ORCPT are checked and dropped: DSN is not offered. */
enum smtp_reply_id smtp_rcpt_params_parse(const char *p, bool esmtp)
{
    struct smtp_param prm;
    bool notify = false, orcpt = false;
    while (smtp_param_next(&p, &prm)) {
        if (!esmtp)
            return SMTP_R_PARAM_UNKNOWN;
        if (!smtp_param_wellformed(&prm))
            return SMTP_R_PARAM_SYNTAX;
        if (smtp_param_is(&prm, "NOTIFY")) {
            if (notify || prm.val == NULL)
                return SMTP_R_PARAM_SYNTAX;
            notify = true;
            if (smtp_value_is(&prm, "NEVER"))
                continue;
            const char *v = prm.val, *end = prm.val + prm.vlen;
            while (v < end) {
                const char *c = memchr(v, ',', (size_t)(end - v));
                size_t k = (size_t)((c ? c : end) - v);
                if (!((k == 7 && strncasecmp(v, "SUCCESS", 7) == 0) ||
                      (k == 7 && strncasecmp(v, "FAILURE", 7) == 0) ||
                      (k == 5 && strncasecmp(v, "DELAY", 5) == 0)))
                    return SMTP_R_PARAM_SYNTAX;
                v += k + (c ? 1 : 0);
                if (c && v == end)
                    return SMTP_R_PARAM_SYNTAX;
            }
        } else if (smtp_param_is(&prm, "ORCPT")) {
            /* addr-type ";" xtext, at most 500 octets (RFC 3461 4.2) */
            const char *semi = prm.val ? memchr(prm.val, ';', prm.vlen) : NULL;
            if (orcpt || semi == NULL || semi == prm.val || prm.vlen > 500)
                return SMTP_R_PARAM_SYNTAX;
            for (const char *t = prm.val; t < semi; t++)
                if (!smtp_is_alnum((unsigned char)*t) && *t != '-')
                    return SMTP_R_PARAM_SYNTAX;
            size_t rest = prm.vlen - (size_t)(semi + 1 - prm.val);
            if (rest == 0 || !smtp_xtext_valid(semi + 1, rest))
                return SMTP_R_PARAM_SYNTAX;
            orcpt = true;
        } else {
            return SMTP_R_PARAM_UNKNOWN;
        }
    }
    return SMTP_R_NONE;
}

/* ---- HELO names ---- */

bool smtp_helo_valid(const char *p, size_t len)
{
    if (len == 0 || len > SMTP_HELO_MAX)
        return false;
    if (p[0] == '[') { /* an address literal, loosely: what v4, v6 and tags use */
        if (len < 3 || p[len - 1] != ']')
            return false;
        for (size_t i = 1; i + 1 < len; i++) {
            unsigned char c = (unsigned char)p[i];
            if (!smtp_is_alnum(c) && c != '.' && c != ':' && c != '-')
                return false; /* nothing that could end a Received: clause */
        }
        return true;
    }
    /* a host name; '_' is tolerated as in most MTAs (Windows hosts) */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!smtp_is_alnum(c) && c != '-' && c != '.' && c != '_')
            return false;
    }
    return true;
}
