/*
 * NAME
 *	milter_proto - milter packets out, replies in (see milter_proto.h)
 * DESCRIPTION
 *	Reply data, as libmilter 8.17 sends it (smfi.c, mfdef.h):
 *
 *	a c d r t s p f 4	nothing
 *	y			"CODE [X.Y.Z] text" NUL
 *	h			name NUL value NUL
 *	i m			index (4) name NUL value NUL
 *	+ -			recipient NUL
 *	2			recipient NUL [args NUL]
 *	e			sender NUL [args NUL]
 *	q			reason NUL
 *	b			octets (no NUL)
 *	l			stage (4) macro-list NUL
 *	O			version (4) actions (4) protocol (4)
 *				[stage (4) macro-list NUL]...
 *
 *	A string that lacks its NUL, or an integer cut short, is -EPROTO.
 */
#include "sinks/milter_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void milter_buf_free(struct milter_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void milter_buf_compact(struct milter_buf *b)
{
    if (b->off == 0)
        return;
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

static int milter_buf_room(struct milter_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    /* no compaction here: a packet being built keeps its offset */
    size_t nc = b->cap ? b->cap : 256;
    while (nc - b->len < n) {
        if (nc > SIZE_MAX / 2)
            return -ENOMEM;
        nc *= 2;
    }
    unsigned char *np = realloc(b->p, nc);
    if (np == NULL)
        return -ENOMEM;
    b->p = np;
    b->cap = nc;
    return 0;
}

int milter_buf_append(struct milter_buf *b, const void *p, size_t n)
{
    int rc = milter_buf_room(b, n);
    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static void milter_be32(unsigned char *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

static uint32_t milter_get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return ntohl(v);
}

/* Starts a packet: reserves the length, writes cmd; returns where it began. */
static int milter_begin(struct milter_buf *b, int cmd, size_t *at)
{
    unsigned char h[5] = {0, 0, 0, 0, (unsigned char)cmd};
    *at = b->len;
    return milter_buf_append(b, h, 5);
}

static void milter_end(struct milter_buf *b, size_t at)
{
    milter_be32(b->p + at, (uint32_t)(b->len - at - 4));
}

int milter_put(struct milter_buf *b, int cmd, ...)
{
    size_t at;
    int rc = milter_begin(b, cmd, &at);
    va_list ap;
    va_start(ap, cmd);
    for (const void *p; rc == 0 && (p = va_arg(ap, const void *)) != NULL;) {
        size_t n = va_arg(ap, size_t);
        rc = milter_buf_append(b, p, n == (size_t)-1 ? strlen(p) + 1 : n);
    }
    va_end(ap);
    if (rc < 0) {
        b->len = at; /* nothing of a half-built packet */
        return rc;
    }
    milter_end(b, at);
    return 0;
}

int milter_put_optneg(struct milter_buf *b, uint32_t version, uint32_t actions, uint32_t proto)
{
    unsigned char v[12];
    milter_be32(v, version);
    milter_be32(v + 4, actions);
    milter_be32(v + 8, proto);
    return milter_put(b, MILTER_C_OPTNEG, v, sizeof(v), (void *)NULL);
}

int milter_put_connect(struct milter_buf *b, const char *host, char family, uint16_t port,
                       const char *addr)
{
    unsigned char f = (unsigned char)family;
    uint16_t pn = htons(port);
    if (family == 'U') /* unknown: no port, no address */
        return milter_put(b, MILTER_C_CONNECT, host, (size_t)-1, &f, (size_t)1, (void *)NULL);
    return milter_put(b, MILTER_C_CONNECT, host, (size_t)-1, &f, (size_t)1, &pn, (size_t)2, addr,
                      (size_t)-1, (void *)NULL);
}

int milter_put_envelope(struct milter_buf *b, int cmd, const char *addr, const char *params)
{
    size_t at;
    int rc = milter_begin(b, cmd, &at);
    if (rc == 0)
        rc = milter_buf_append(b, "<", 1);
    if (rc == 0)
        rc = milter_buf_append(b, addr, strlen(addr));
    if (rc == 0)
        rc = milter_buf_append(b, ">", 2); /* with the NUL */
    for (const char *s = params ? params : ""; rc == 0 && *s != '\0';) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 0)
            break;
        rc = milter_buf_append(b, s, n);
        if (rc == 0)
            rc = milter_buf_append(b, "", 1);
        s += n;
    }
    if (rc < 0) {
        b->len = at;
        return rc;
    }
    milter_end(b, at);
    return 0;
}

int milter_put_macros(struct milter_buf *b, int cmd, size_t n, const char *const *names,
                      const char *const *values)
{
    size_t at;
    unsigned char c = (unsigned char)cmd;
    int rc = milter_begin(b, MILTER_C_MACRO, &at);
    if (rc == 0)
        rc = milter_buf_append(b, &c, 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = milter_buf_append(b, names[i], strlen(names[i]) + 1);
        if (rc == 0)
            rc = milter_buf_append(b, values[i], strlen(values[i]) + 1);
    }
    if (rc < 0) {
        b->len = at;
        return rc;
    }
    milter_end(b, at);
    return 0;
}

/* The next NUL-terminated string at *p (within end), or NULL. */
static const char *milter_str(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *z = memchr(*p, '\0', (size_t)(end - *p));
    if (*p >= end || z == NULL)
        return NULL;
    const char *s = (const char *)*p;
    *p = z + 1;
    return s;
}

ssize_t milter_parse(const unsigned char *buf, size_t n, struct milter_reply *r)
{
    if (n < 4)
        return 0;
    uint32_t len = milter_get32(buf);
    if (len < 1 || len > MILTER_MAX_PACKET)
        return -EPROTO;
    if (n - 4 < len)
        return 0;
    memset(r, 0, sizeof(*r));
    const unsigned char *p = buf + 5, *end = buf + 4 + len;
    r->cmd = buf[4];
    switch (r->cmd) {
    case MILTER_R_ACCEPT:
    case MILTER_R_CONTINUE:
    case MILTER_R_DISCARD:
    case MILTER_R_REJECT:
    case MILTER_R_TEMPFAIL:
    case MILTER_R_SKIP:
    case MILTER_R_PROGRESS:
    case MILTER_R_CONN_FAIL:
    case MILTER_R_SHUTDOWN:
        break; /* any data is ignored, as libmilter's MTA side does */
    case MILTER_R_REPLYCODE:
    case MILTER_R_ADDRCPT:
    case MILTER_R_DELRCPT:
    case MILTER_R_QUARANTINE:
        if ((r->s1 = milter_str(&p, end)) == NULL)
            return -EPROTO;
        break;
    case MILTER_R_ADDRCPT_PAR:
    case MILTER_R_CHGFROM:
        if ((r->s1 = milter_str(&p, end)) == NULL)
            return -EPROTO;
        if (p < end && (r->s2 = milter_str(&p, end)) == NULL)
            return -EPROTO;
        break;
    case MILTER_R_INSHEADER:
    case MILTER_R_CHGHEADER:
        if (end - p < 4)
            return -EPROTO;
        r->index = milter_get32(p);
        p += 4;
        /* FALLTHROUGH */
    case MILTER_R_ADDHEADER:
        if ((r->s1 = milter_str(&p, end)) == NULL || (r->s2 = milter_str(&p, end)) == NULL)
            return -EPROTO;
        break;
    case MILTER_R_REPLBODY:
        r->data = p;
        r->len = (size_t)(end - p);
        break;
    case MILTER_R_SETSYMLIST:
        if (end - p < 4)
            return -EPROTO;
        r->index = milter_get32(p);
        p += 4;
        if ((r->s1 = milter_str(&p, end)) == NULL)
            return -EPROTO;
        break;
    case MILTER_R_OPTNEG:
        if (end - p < 12)
            return -EPROTO;
        r->version = milter_get32(p);
        r->actions = milter_get32(p + 4);
        r->proto = milter_get32(p + 8);
        r->macros = p + 12;
        r->macros_len = (size_t)(end - p - 12);
        break;
    default:
        return -EPROTO;
    }
    return (ssize_t)(4 + len);
}

int milter_optneg_symlists(const struct milter_reply *r,
                           void (*fn)(void *arg, uint32_t stage, const char *list), void *arg)
{
    const unsigned char *p = r->macros, *end = r->macros + r->macros_len;
    while (p < end) {
        if (end - p < 4)
            return -EPROTO;
        uint32_t st = milter_get32(p);
        p += 4;
        const char *list = milter_str(&p, end);
        if (list == NULL)
            return -EPROTO;
        fn(arg, st, list);
    }
    return 0;
}

const char *milter_reply_name(int cmd)
{
    switch (cmd) {
    case MILTER_R_ADDRCPT: return "addrcpt";
    case MILTER_R_DELRCPT: return "delrcpt";
    case MILTER_R_ADDRCPT_PAR: return "addrcpt_par";
    case MILTER_R_SHUTDOWN: return "shutdown";
    case MILTER_R_ACCEPT: return "accept";
    case MILTER_R_REPLBODY: return "replbody";
    case MILTER_R_CONTINUE: return "continue";
    case MILTER_R_DISCARD: return "discard";
    case MILTER_R_CHGFROM: return "chgfrom";
    case MILTER_R_CONN_FAIL: return "conn_fail";
    case MILTER_R_ADDHEADER: return "addheader";
    case MILTER_R_INSHEADER: return "insheader";
    case MILTER_R_SETSYMLIST: return "setsymlist";
    case MILTER_R_CHGHEADER: return "chgheader";
    case MILTER_R_PROGRESS: return "progress";
    case MILTER_R_QUARANTINE: return "quarantine";
    case MILTER_R_REJECT: return "reject";
    case MILTER_R_SKIP: return "skip";
    case MILTER_R_TEMPFAIL: return "tempfail";
    case MILTER_R_REPLYCODE: return "replycode";
    case MILTER_R_OPTNEG: return "optneg";
    default: return "?";
    }
}
