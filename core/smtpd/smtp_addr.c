/*
 * NAME
 *	smtp_addr - ESMTP parameters and HELO names (paths: core/base/addr.h)
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	enum smtp_reply_id smtp_mail_params_parse(const char *p, bool esmtp,
 *						  struct smtp_mail_params *out);
 *	enum smtp_reply_id smtp_rcpt_params_parse(const char *p, bool esmtp);
 *	bool smtp_helo_valid(const char *p, size_t len);
 * DESCRIPTION
 *	Parameters (RFC 5321 4.1.2 esmtp-param) are checked strictly and
 *	turned into a normalized string for the spool: known keywords in a
 *	fixed order, upper-case, values checked (SIZE digits with an overflow
 *	check, BODY, RET, ENVID as xtext).
 * DIAGNOSTICS
 *	Parsers return a reply id; nothing is logged.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/smtpd/smtp_int.h"

static bool smtp_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
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
