/*
 * NAME
 *	builtin_dkim_sign - DKIM-sign messages at eod (RFC 6376, RFC 8463)
 * SYNOPSIS
 *	binding "sign" {
 *	    event = eod; sink = "builtin:dkim_sign"; priority = 32000;
 *	    rule = "MAIL FROM=*@example.org";
 *	    properties { domain = "example.org"; selector = "s1";
 *	                 key = "/etc/sluice/s1.pem"; }
 *	}
 *	properties { keytable = "/etc/sluice/dkim.keys"; }
 * DESCRIPTION
 *	Adds one DKIM-Signature field per key: RSA-SHA256 (rsa-sha256) or
 *	Ed25519-SHA256 (ed25519-sha256, RFC 8463), as the key file holds.
 *	Properties:
 *	  domain, selector, key   one signing domain; selector and key may be
 *	                          comma-separated lists of the same length,
 *	                          one signature each (e.g. "rsa1, ed1")
 *	  keytable                instead: a file of `domain selector keyfile`
 *	                          lines (auth_keys.c); the domain of the From
 *	                          field is looked up, then the MAIL FROM
 *	                          domain; a message with neither is not signed
 *	  canonicalization        "relaxed/relaxed" (default), "simple/simple",
 *	                          "relaxed/simple", "simple/relaxed"; a single
 *	                          word is header/simple (RFC 6376 3.5 c=)
 *	  headers                 the fields to sign, colon-separated (default
 *	                          RFC 6376 5.4.1's list; From is always added);
 *	                          only those present are listed in h=
 *	  oversign                fields listed once more than present, so that
 *	                          none can be added later (default
 *	                          "from:to:subject:date"; "" for none)
 *	  expire                  seconds: x= (default 0: none)
 *	  on_error                "continue" (default: the message goes on
 *	                          unsigned, logged) or "tempfail" (451 4.7.0)
 *	No l= ever.  The signed text is the message as it will be stored:
 *	the body through sink_body_next() (headers included, CRLF,
 *	dot-unstuffed; the session's Received field first), with the header
 *	edits of earlier bindings replayed from the engine's journal
 *	(ctx_guard.c).  The field is added with sink_header_add(), which
 *	stores it after the session's Received field: a verifier finds it
 *	anywhere in the header.  Afterwards the signed fields and
 *	DKIM-Signature are protected: a binding after this one that edits
 *	them is refused (ctx_guard.c).  Bind it last at eod.
 *
 *	Cost: one body pass (a streaming canonicalizer into SHA-256) and one
 *	private-key operation per key; keys are parsed once and shared by
 *	every worker (auth_keys.c).  An RSA key costs about a millisecond
 *	per message; `offload = true` moves that off the session's worker,
 *	but an offloaded handler sees no journal (earlier edits) and cannot
 *	protect the fields (logged once).
 * DIAGNOSTICS
 *	create() fails with one line: missing or conflicting properties, an
 *	unreadable key or keytable, a key that is neither RSA (>= 1024 bits)
 *	nor Ed25519, a signature that could not fit one 998-octet line.  Per
 *	message, a failure is logged ("dkim_sign BINDING: d=... s=...: why")
 *	and on_error applies.
 */
#include "sinks/auth.h"
#include "sinks/sink_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/base/log.h"

#define DKIM_DEFAULT_HEADERS                                                                       \
    "from:reply-to:subject:date:to:cc:resent-date:resent-from:resent-to:resent-cc:"                \
    "in-reply-to:references:list-id:list-help:list-unsubscribe:list-unsubscribe-post:"             \
    "list-subscribe:list-post:list-owner:list-archive:message-id:mime-version:"                    \
    "content-type:content-transfer-encoding"
#define DKIM_DEFAULT_OVERSIGN "from:to:subject:date"
#define DKIM_FIELD_MAX 998 /* "DKIM-Signature: " + value on one line */
#define DKIM_NAMES_MAX 64

struct dkim_sign {
    /* single-domain form */
    char *domain;
    struct auth_key *keys;
    size_t nkeys;
    char **sels; /* owned selectors */
    /* keytable form */
    struct auth_keytable *kt;
    enum auth_canon hc, bc;
    char *names[DKIM_NAMES_MAX]; /* lower case */
    bool over[DKIM_NAMES_MAX];
    size_t nnames;
    long expire;
    bool tempfail;
    _Atomic int warned_offload;
};

static void dkim_destroy(void *instance)
{
    struct dkim_sign *s = instance;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nkeys; i++) {
        auth_keyfile_free(s->keys[i].kf);
        free(s->sels[i]);
    }
    free(s->keys);
    free(s->sels);
    free(s->domain);
    auth_keytable_free(s->kt);
    for (size_t i = 0; i < s->nnames; i++)
        free(s->names[i]);
    free(s);
}

/* Splits a comma list in place; returns the count (at most max). */
static size_t dkim_split(char *s, char **out, size_t max, const char *seps)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, seps, &save); t != NULL; t = strtok_r(NULL, seps, &save)) {
        if (n == max)
            return max + 1;
        out[n++] = t;
    }
    return n;
}

static int dkim_canon_parse(struct dkim_sign *s, const char *v)
{
    char h[16] = "", b[16] = "simple";
    const char *slash = strchr(v, '/');
    size_t hl = slash ? (size_t)(slash - v) : strlen(v);
    if (hl >= sizeof(h) || (slash && strlen(slash + 1) >= sizeof(b)))
        return -EINVAL;
    memcpy(h, v, hl);
    h[hl] = '\0';
    if (slash)
        strcpy(b, slash + 1);
    const char *w[2] = {h, b};
    enum auth_canon *c[2] = {&s->hc, &s->bc};
    for (int i = 0; i < 2; i++) {
        if (strcasecmp(w[i], "simple") == 0)
            *c[i] = AUTH_SIMPLE;
        else if (strcasecmp(w[i], "relaxed") == 0)
            *c[i] = AUTH_RELAXED;
        else
            return -EINVAL;
    }
    return 0;
}

static int dkim_add_name(struct dkim_sign *s, const char *n, size_t len, bool over)
{
    for (size_t i = 0; i < s->nnames; i++) {
        if (strlen(s->names[i]) == len && strncasecmp(s->names[i], n, len) == 0) {
            s->over[i] |= over;
            return 0;
        }
    }
    if (s->nnames == DKIM_NAMES_MAX)
        return -E2BIG;
    char *c = strndup(n, len);
    if (c == NULL)
        return -ENOMEM;
    for (char *p = c; *p; p++) {
        if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == ';') {
            free(c);
            return -EINVAL;
        }
        *p = (char)tolower((unsigned char)*p);
    }
    s->over[s->nnames] = over;
    s->names[s->nnames++] = c;
    return 0;
}

static int dkim_names(struct dkim_sign *s, const char *list, bool over)
{
    for (const char *p = list; *p != '\0';) {
        while (*p == ':' || *p == ' ' || *p == '\t')
            p++;
        size_t l = strcspn(p, ": \t");
        if (l > 0) {
            int rc = dkim_add_name(s, p, l, over);
            if (rc < 0)
                return rc;
        }
        p += l;
    }
    return 0;
}

/* The shortest DKIM-Signature field a key can make (h=from:from, the
 * other tags at their longest): a key whose signature cannot fit even so
 * is refused at create; the fields listed are checked per message. */
static size_t dkim_min_len(const struct dkim_sign *s, size_t dl, size_t sl, size_t sigbytes)
{
    return strlen("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=; s=; "
                  "t=99999999999; h=from:from; bh=; b=") +
           (s->expire ? 17 : 0) + dl + sl + 44 + (sigbytes + 2) / 3 * 4;
}

static int dkim_single(struct dkim_sign *s, const struct sink_props *p, char *err, size_t errlen)
{
    const char *dom = sink_props_get(p, "domain");
    const char *sel = sink_props_get(p, "selector");
    const char *key = sink_props_get(p, "key");
    if (dom == NULL || sel == NULL || key == NULL || !*dom) {
        snprintf(err, errlen, "properties domain, selector and key (or keytable) are required");
        return -EINVAL;
    }
    char sb[512], kb[2048], *sv[8], *kv[8];
    snprintf(sb, sizeof(sb), "%s", sel);
    snprintf(kb, sizeof(kb), "%s", key);
    size_t ns = dkim_split(sb, sv, 8, ", \t"), nk = dkim_split(kb, kv, 8, ", \t");
    if (ns == 0 || ns != nk || ns > 8) {
        snprintf(err, errlen, "selector and key must list the same number of entries (1..8)");
        return -EINVAL;
    }
    if ((s->domain = strdup(dom)) == NULL || (s->keys = calloc(ns, sizeof(*s->keys))) == NULL ||
        (s->sels = calloc(ns, sizeof(*s->sels))) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < ns; i++) {
        struct auth_keyfile *kf = auth_keyfile_load(kv[i], err, errlen);
        if (kf == NULL)
            return -EINVAL;
        s->keys[i].kf = kf;
        if ((s->sels[i] = strdup(sv[i])) == NULL) {
            auth_keyfile_free(kf);
            return -ENOMEM;
        }
        s->keys[i].selector = s->sels[i];
        s->nkeys++;
        enum auth_alg alg;
        EVP_PKEY *pk = auth_keyfile_pkey(kf, &alg);
        size_t w = dkim_min_len(s, strlen(dom), strlen(sv[i]), (size_t)EVP_PKEY_get_size(pk));
        if (w > DKIM_FIELD_MAX) {
            snprintf(err, errlen, "key %s: its signature cannot fit one %d-octet header line",
                     kv[i], DKIM_FIELD_MAX);
            return -EINVAL;
        }
    }
    return 0;
}

static int dkim_create(const struct sink_props *p, void **instance, char *err, size_t errlen)
{
    struct dkim_sign *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    int rc = 0;
    const char *v;
    s->hc = s->bc = AUTH_RELAXED;
    if ((v = sink_props_get(p, "canonicalization")) != NULL && dkim_canon_parse(s, v) < 0) {
        snprintf(err, errlen,
                 "canonicalization \"%s\": want simple or relaxed, optionally "
                 "header/body",
                 v);
        rc = -EINVAL;
        goto out;
    }
    const char *hdrs = sink_props_get(p, "headers");
    const char *over = sink_props_get(p, "oversign");
    if ((rc = dkim_names(s, "from", false)) < 0 ||
        (rc = dkim_names(s, hdrs ? hdrs : DKIM_DEFAULT_HEADERS, false)) < 0 ||
        (rc = dkim_names(s, over ? over : DKIM_DEFAULT_OVERSIGN, true)) < 0) {
        snprintf(err, errlen, "headers/oversign: %s",
                 rc == -E2BIG ? "too many names" : "not a list of field names");
        goto out;
    }
    for (size_t i = 0; i < s->nnames; i++) {
        if (strcmp(s->names[i], "dkim-signature") == 0 || strcmp(s->names[i], "received") == 0) {
            snprintf(err, errlen, "headers: %s cannot be signed here", s->names[i]);
            rc = -EINVAL;
            goto out;
        }
    }
    s->expire = (long)sink_props_get_int(p, "expire", 0);
    if (s->expire < 0) {
        snprintf(err, errlen, "expire must be >= 0 seconds");
        rc = -EINVAL;
        goto out;
    }
    v = sink_props_get(p, "on_error");
    if (v != NULL && strcmp(v, "tempfail") != 0 && strcmp(v, "continue") != 0) {
        snprintf(err, errlen, "on_error \"%s\": want continue or tempfail", v);
        rc = -EINVAL;
        goto out;
    }
    s->tempfail = v != NULL && strcmp(v, "tempfail") == 0;
    const char *kt = sink_props_get(p, "keytable");
    if (kt != NULL) {
        if (sink_props_get(p, "key") || sink_props_get(p, "domain")) {
            snprintf(err, errlen, "keytable and domain/key are alternatives: give one");
            rc = -EINVAL;
            goto out;
        }
        s->kt = auth_keytable_load(kt, err, errlen);
        rc = s->kt ? 0 : -EINVAL;
    } else {
        rc = dkim_single(s, p, err, errlen);
    }
out:
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        dkim_destroy(s);
        return rc;
    }
    *instance = s;
    return 0;
}

/* ---- per message ---- */

struct dkim_msg {
    struct auth_buf hb; /* the header section as received */
    size_t hlen;        /* its length up to the last field's CRLF */
    struct auth_bodyc bodyc;
    struct auth_hdrs h;
    unsigned char bh[32];
};

/* Reads the message: header section kept, body hashed. */
static int dkim_read(struct sink_ctx *ctx, struct dkim_msg *m, enum auth_canon bc)
{
    struct sink_body_iter it;
    int rc = sink_body_begin(ctx, &it);
    if (rc < 0 || (rc = auth_bodyc_init(&m->bodyc, bc)) < 0)
        return rc;
    bool in_hdr = true;
    size_t scanned = 0;
    const char *p;
    ssize_t n;
    while ((n = sink_body_next(&it, &p)) > 0) {
        if (!in_hdr) {
            auth_bodyc_feed(&m->bodyc, p, (size_t)n);
            continue;
        }
        if (auth_buf_put(&m->hb, p, (size_t)n) < 0)
            return -ENOMEM;
        if (m->hb.len >= 2 && m->hb.p[0] == '\r' && m->hb.p[1] == '\n') {
            in_hdr = false; /* no header fields at all */
            m->hlen = 0;
            auth_bodyc_feed(&m->bodyc, m->hb.p + 2, m->hb.len - 2);
            continue;
        }
        size_t from = scanned > 3 ? scanned - 3 : 0;
        const char *e = memmem(m->hb.p + from, m->hb.len - from, "\r\n\r\n", 4);
        scanned = m->hb.len;
        if (e != NULL) {
            in_hdr = false;
            m->hlen = (size_t)(e - m->hb.p) + 2;
            auth_bodyc_feed(&m->bodyc, e + 4, m->hb.len - (m->hlen + 2));
        }
    }
    if (n < 0)
        return (int)n;
    if (in_hdr)
        m->hlen = m->hb.len; /* all header, no body */
    if ((rc = auth_bodyc_final(&m->bodyc, m->bh)) < 0)
        return rc;
    if ((rc = auth_hdrs_parse(&m->h, m->hb.p ? m->hb.p : "", m->hlen)) < 0)
        return rc;
    const char *j = sink_header_journal(ctx);
    return j ? auth_hdrs_journal(&m->h, j) : 0;
}

/* The domain of the (first) From field, lower case, into buf. */
static bool dkim_from_domain(const struct auth_hdrs *h, char *buf, size_t len)
{
    for (size_t i = 0; i < h->n; i++) {
        if (!auth_field_is(&h->v[i], "from", 4))
            continue;
        const char *v;
        size_t vl;
        auth_field_value(&h->v[i], &v, &vl);
        const char *lt = memchr(v, '<', vl);
        const char *start = lt ? lt + 1 : v;
        const char *end = lt ? memchr(start, '>', vl - (size_t)(start - v)) : v + vl;
        if (end == NULL)
            end = v + vl;
        const char *at = NULL;
        for (const char *q = start; q < end; q++)
            if (*q == '@')
                at = q;
        if (at == NULL)
            return false;
        size_t o = 0;
        for (const char *q = at + 1; q < end && o + 1 < len; q++) {
            if (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n' || *q == ',' || *q == ';' ||
                *q == '(' || *q == ')' || *q == '"')
                break;
            buf[o++] = (char)tolower((unsigned char)*q);
        }
        buf[o] = '\0';
        return o > 0;
    }
    return false;
}

/* h= and the protected list, from the fields present. */
static int dkim_hlist(const struct dkim_sign *s, const struct auth_hdrs *h, struct auth_buf *hl)
{
    for (size_t i = 0; i < s->nnames; i++) {
        size_t nl = strlen(s->names[i]), count = 0;
        for (size_t k = 0; k < h->n; k++)
            count += auth_field_is(&h->v[k], s->names[i], nl);
        if (s->over[i])
            count++;
        for (size_t k = 0; k < count; k++)
            if ((hl->len && auth_buf_put(hl, ":", 1) < 0) || auth_buf_puts(hl, s->names[i]) < 0)
                return -ENOMEM;
    }
    return 0;
}

/* The canonical header fields h= names (bottom-up per name), then the
 * signature field itself without its CRLF. */
static int dkim_hdata(enum auth_canon hc, const struct auth_hdrs *h, const char *hlist,
                      const char *sigfield, struct auth_buf *out)
{
    unsigned char *used = calloc(h->n ? h->n : 1, 1); /* not on the stack: n is the sender's */
    if (used == NULL)
        return -ENOMEM;
    for (const char *p = hlist; *p;) {
        size_t l = strcspn(p, ":");
        for (size_t k = h->n; k-- > 0;) {
            if (used[k] || !auth_field_is(&h->v[k], p, l))
                continue;
            used[k] = 1;
            if (auth_hdr_canon(out, hc, h->v[k].p, h->v[k].len, true) < 0) {
                free(used);
                return -ENOMEM;
            }
            break;
        }
        p += l + (p[l] == ':');
    }
    free(used);
    return auth_hdr_canon(out, hc, sigfield, strlen(sigfield), false);
}

static int dkim_sign_one(const struct dkim_sign *s, const struct dkim_msg *m, const char *d,
                         const struct auth_key *k, const char *hlist, char *value, size_t vlen,
                         const char **why)
{
    enum auth_alg alg;
    EVP_PKEY *pk = auth_keyfile_pkey(k->kf, &alg);
    if (pk == NULL) {
        *why = "key unusable (logged)";
        return -EINVAL;
    }
    char bh[48], xs[32] = "";
    auth_b64_enc(m->bh, 32, bh);
    time_t now = time(NULL);
    if (s->expire > 0)
        snprintf(xs, sizeof(xs), " x=%lld;", (long long)now + s->expire);
    int w = snprintf(value, vlen, "v=1; a=%s; c=%s/%s; d=%s; s=%s; t=%lld;%s h=%s; bh=%s; b=",
                     alg == AUTH_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256",
                     s->hc == AUTH_RELAXED ? "relaxed" : "simple",
                     s->bc == AUTH_RELAXED ? "relaxed" : "simple", d, k->selector, (long long)now,
                     xs, hlist, bh);
    size_t siglen = (size_t)EVP_PKEY_get_size(pk);
    if (w < 0 || (size_t)w + (siglen + 2) / 3 * 4 + 17 > DKIM_FIELD_MAX) {
        *why = "the signature does not fit one 998-octet line (too many header fields)";
        return -E2BIG;
    }
    char field[DKIM_FIELD_MAX + 32];
    snprintf(field, sizeof(field), "DKIM-Signature: %s", value);
    struct auth_buf data = {0};
    int rc = dkim_hdata(s->hc, &m->h, hlist, field, &data);
    unsigned char sig[1024], hash[32];
    EVP_MD_CTX *md = rc == 0 ? EVP_MD_CTX_new() : NULL;
    if (md == NULL) {
        auth_buf_free(&data);
        *why = "out of memory";
        return -ENOMEM;
    }
    int ok;
    if (alg == AUTH_RSA_SHA256) {
        ok = siglen <= sizeof(sig) && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)data.p, data.len) == 1;
    } else {
        /* RFC 8463 3: Ed25519 (pure) over the SHA-256 of the header data */
        unsigned int hn = 0;
        ok = EVP_Digest(data.p, data.len, hash, &hn, EVP_sha256(), NULL) == 1 &&
             EVP_DigestSignInit(md, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestSign(md, sig, &siglen, hash, 32) == 1;
    }
    EVP_MD_CTX_free(md);
    auth_buf_free(&data);
    if (!ok) {
        *why = "the signing operation failed";
        return -EINVAL;
    }
    size_t used = strlen(value);
    if (used + (siglen + 2) / 3 * 4 + 1 > vlen) {
        *why = "signature too long";
        return -E2BIG;
    }
    auth_b64_enc(sig, siglen, value + used);
    return 0;
}

static enum sink_verdict dkim_fail(struct sink_ctx *ctx, const struct dkim_sign *s, const char *d,
                                   const char *sel, const char *why)
{
    log_msg(LOG_WARN, "dkim_sign %s: d=%s s=%s: %s: %s", sink_binding_name(ctx), d ? d : "-",
            sel ? sel : "-", why, s->tempfail ? "message refused (451)" : "message not signed");
    if (!s->tempfail)
        return SINK_CONTINUE;
    sink_set_reply(ctx, 451, "4.7.0", "Temporary failure signing the message");
    return SINK_TEMPFAIL;
}

static enum sink_verdict dkim_handle(void *instance, struct sink_ctx *ctx)
{
    struct dkim_sign *s = instance;
    struct dkim_msg m = {0};
    enum sink_verdict v = SINK_CONTINUE;
    int rc = dkim_read(ctx, &m, s->bc);
    if (rc < 0) {
        v = dkim_fail(ctx, s, s->domain, NULL, strerror(-rc));
        goto out;
    }
    const char *d = s->domain;
    const struct auth_key *keys = s->keys;
    size_t nkeys = s->nkeys;
    if (s->kt != NULL) {
        char dom[256];
        keys = NULL;
        if (dkim_from_domain(&m.h, dom, sizeof(dom)))
            keys = auth_keytable_find(s->kt, dom, &nkeys, &d);
        const char *snd = sink_sender(ctx);
        const char *at = snd ? strrchr(snd, '@') : NULL;
        if (keys == NULL && at != NULL)
            keys = auth_keytable_find(s->kt, at + 1, &nkeys, &d);
        if (keys == NULL)
            goto out; /* no key for this sender: not ours to sign */
    }
    struct auth_buf hl = {0};
    if (dkim_hlist(s, &m.h, &hl) < 0) {
        v = dkim_fail(ctx, s, d, NULL, "out of memory");
        goto out;
    }
    char value[DKIM_FIELD_MAX + 1];
    size_t added = 0;
    for (size_t i = 0; i < nkeys; i++) {
        const char *why = NULL;
        if (dkim_sign_one(s, &m, d, &keys[i], hl.p, value, sizeof(value), &why) < 0 ||
            (rc = sink_header_add(ctx, "DKIM-Signature", value)) < 0) {
            v = dkim_fail(ctx, s, d, keys[i].selector,
                          why            ? why
                          : rc == -EPERM ? "DKIM-Signature is protected by an earlier "
                                           "signer"
                                         : strerror(-rc));
            if (v != SINK_CONTINUE)
                break;
            continue;
        }
        added++;
    }
    if (added > 0 && v == SINK_CONTINUE) {
        if (auth_buf_puts(&hl, ":dkim-signature") < 0 ||
            (rc = sink_header_protect(ctx, hl.p)) == -ENOMEM) {
            log_msg(LOG_WARN, "dkim_sign %s: out of memory protecting the signed fields",
                    sink_binding_name(ctx));
        } else if (rc == -ENOTSUP) {
            int was = 0;
            if (atomic_compare_exchange_strong(&s->warned_offload, &was, 1))
                log_msg(LOG_WARN,
                        "dkim_sign %s: offloaded: earlier header edits are not seen and later "
                        "ones are not guarded (bind it inline for that)",
                        sink_binding_name(ctx));
        }
    }
    auth_buf_free(&hl);
out:
    auth_bodyc_fini(&m.bodyc);
    auth_hdrs_free(&m.h);
    auth_buf_free(&m.hb);
    return v;
}

const struct sink_module sink_builtin_dkim_sign = {
    SINK_MODULE_HEAD,
    .name = "dkim_sign",
    .events = SINK_EVMASK(SINK_EV_EOD),
    .create = dkim_create,
    .destroy = dkim_destroy,
    .handle = dkim_handle,
};
