/*
 * NAME
 *	ctx - what a sink sees of an event: the sink.h accessors
 * SYNOPSIS
 *	#include "sinks/sink.h"
 *
 *	const char *sink_sender(const struct sink_ctx *ctx);
 *	ssize_t sink_header_get(struct sink_ctx *ctx, const char *name,
 *				unsigned nth, char *buf, size_t buflen);
 *	int sink_header_add(struct sink_ctx *ctx, const char *name,
 *			    const char *value);
 *	int sink_set_reply(struct sink_ctx *ctx, int code, const char *enhanced,
 *			   const char *text);
 *	...
 * DESCRIPTION
 *	Each accessor reads the session's sink_event_data (engine.h) through
 *	the ctx; nothing is copied.  The body is read through the session's
 *	body_at() callback: sink_body_next() hands out its pieces as they
 *	are, sink_header_get() scans them up to the first empty line,
 *	unfolding continuation lines (RFC 5322 2.2.3: the CRLF goes, the
 *	white space stays) and dropping white space around the value.
 *
 *	Header edits are checked here (the name is RFC 5322 ftext: printable
 *	ASCII without ':'; the value has no CR, LF or other control
 *	character except TAB, and name ": " value fits a 998-octet line)
 *	and then handed to the session's edit() callback, which records them;
 *	an edit of a field a signer protected is refused first, and an
 *	accepted one is journaled (ctx_guard.c).
 *
 *	sink_set_reply() checks the reply by itself (code 200..599, enhanced
 *	code x.y.z whose class is the code's, text of printable characters
 *	and at most 511 octets); whether its class fits the verdict is
 *	checked when the verdict is known (dispatch.c).
 * DIAGNOSTICS
 *	-EINVAL, -ENOTSUP (no body at this event, no edits outside eod),
 *	-EPERM (the field is signed: ctx_guard.c),
 *	-ENOENT (no such header), or what the session's callbacks return.
 */
#include "sinks/sink_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SINK_LINE_MAX 998 /* RFC 5322 2.1.1 */

enum sink_event sink_event(const struct sink_ctx *ctx)
{
    return ctx->ev;
}
const char *sink_binding_name(const struct sink_ctx *ctx)
{
    return ctx->b->name;
}
const char *sink_client_addr(const struct sink_ctx *ctx)
{
    return ctx->d->client_addr;
}
const char *sink_helo(const struct sink_ctx *ctx)
{
    return ctx->d->helo;
}
const char *sink_tls(const struct sink_ctx *ctx)
{
    return ctx->d->tls;
}
const char *sink_auth_user(const struct sink_ctx *ctx)
{
    return ctx->d->auth_user;
}
const char *sink_auth_password(const struct sink_ctx *ctx)
{
    return ctx->ev == SINK_EV_AUTH ? ctx->d->auth_password : NULL;
}
const char *sink_command_verb(const struct sink_ctx *ctx)
{
    return ctx->d->verb;
}

const char *sink_command_args(const struct sink_ctx *ctx)
{
    return ctx->d->verb == NULL ? NULL : ctx->d->args ? ctx->d->args : "";
}

const char *sink_sender(const struct sink_ctx *ctx)
{
    return ctx->d->sender;
}
const char *sink_mail_params(const struct sink_ctx *ctx)
{
    return ctx->d->mail_params;
}
size_t sink_rcpt_count(const struct sink_ctx *ctx)
{
    return ctx->d->nrcpt;
}

const char *sink_rcpt(const struct sink_ctx *ctx, size_t i)
{
    return i < ctx->d->nrcpt ? ctx->d->rcpts[i] : NULL;
}

const char *sink_rcpt_current(const struct sink_ctx *ctx)
{
    return ctx->d->rcpt;
}
int sink_response_code(const struct sink_ctx *ctx)
{
    return ctx->d->reply_code;
}
const char *sink_response_text(const struct sink_ctx *ctx)
{
    return ctx->d->reply_text;
}
uint64_t sink_message_id(const struct sink_ctx *ctx)
{
    return ctx->d->msg_id;
}
uint64_t sink_body_size(const struct sink_ctx *ctx)
{
    return ctx->d->body_size;
}

/* ---- the reply ---- */

static bool sink_text_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == 0x7f)
            return false;
    return n <= max;
}

static bool sink_enhanced_ok(const char *s, int code)
{
    unsigned cls, subj, det;
    int end = 0;
    if (sscanf(s, "%1u.%3u.%3u%n", &cls, &subj, &det, &end) != 3 || s[end] != '\0')
        return false;
    if (!isdigit((unsigned char)s[0]))
        return false;
    unsigned want = code / 100 == 5 ? 5 : code / 100 == 4 ? 4 : 2;
    return cls == want;
}

int sink_set_reply(struct sink_ctx *ctx, int code, const char *enhanced, const char *text)
{
    if (code < 200 || code > 599)
        return -EINVAL;
    if (enhanced != NULL && *enhanced != '\0' && !sink_enhanced_ok(enhanced, code))
        return -EINVAL;
    if (text == NULL)
        text = "";
    if (!sink_text_ok(text, sizeof(ctx->text) - 1))
        return -EINVAL;
    snprintf(ctx->enhanced, sizeof(ctx->enhanced), "%s", enhanced ? enhanced : "");
    snprintf(ctx->text, sizeof(ctx->text), "%s", text);
    ctx->code = code;
    return 0;
}

bool sink_reply_class_ok(enum sink_event ev, enum sink_verdict v, int code)
{
    int cls = code / 100;
    if (ev == SINK_EV_RESPONSE && (v == SINK_CONTINUE || v == SINK_CONSUMED))
        return true; /* rewriting the reply about to go out: any code */
    switch (v) {
    case SINK_CONTINUE:
    case SINK_CONSUMED:
        return cls == 2 || cls == 3;
    case SINK_REJECT:
        return cls == 5;
    case SINK_TEMPFAIL:
        return cls == 4;
    case SINK_DROP:
        return cls == 4 || cls == 5;
    case SINK_DISCARD:
    case SINK_QUARANTINE:
        return cls == 2;
    case SINK_PENDING:
        break;
    }
    return false;
}

/* ---- the body ---- */

struct sink_body_pos {
    int (*body_at)(void *arg, uint64_t off, const char **p, size_t *len);
    void *arg;
    uint64_t off;
};
_Static_assert(sizeof(struct sink_body_pos) <= sizeof(struct sink_body_iter),
               "sink_body_iter too small");

int sink_body_begin(struct sink_ctx *ctx, struct sink_body_iter *it)
{
    if (ctx->d->body_at == NULL)
        return -ENOTSUP;
    struct sink_body_pos pos = {ctx->d->body_at, ctx->d->body_arg, 0};
    memset(it, 0, sizeof(*it));
    memcpy(it, &pos, sizeof(pos));
    return 0;
}

ssize_t sink_body_next(struct sink_body_iter *it, const char **p)
{
    struct sink_body_pos pos;
    memcpy(&pos, it, sizeof(pos));
    if (pos.body_at == NULL)
        return -EINVAL;
    size_t len = 0;
    int err = pos.body_at(pos.arg, pos.off, p, &len);
    if (err < 0)
        return err;
    if (len == 0)
        return 0;
    pos.off += len;
    memcpy(it, &pos, sizeof(pos));
    return (ssize_t)len;
}

/*
 * The header scanner: one byte at a time over the body's pieces, so a
 * field may span pieces.  BOL: start of a line; NAME: a field name up to
 * ':'; BODY: the field's value (kept if it is the one wanted); CR and NL:
 * after a line end, where white space means a continuation line.
 */
struct sink_hscan {
    const char *name;
    size_t namelen;
    unsigned nth; /* matches still to skip */
    char *buf;
    size_t buflen;
    size_t vlen; /* value octets seen, trailing white space included */
    size_t keep; /* value length without trailing white space */
    size_t npos; /* octets of the field name seen */
    enum { H_BOL, H_NAME, H_BODY, H_CR, H_NL } st;
    bool match; /* the current field is the one wanted */
    bool name_ok;
};

static void sink_hscan_value(struct sink_hscan *h, char c)
{
    bool ws = c == ' ' || c == '\t';
    if (ws && h->vlen == 0)
        return; /* white space after the colon */
    if (h->vlen + 1 < h->buflen)
        h->buf[h->vlen] = c;
    h->vlen++;
    if (!ws)
        h->keep = h->vlen;
}

/* 1: the value is complete, -1: the header ended, 0: go on. */
static int sink_hscan_byte(struct sink_hscan *h, char c)
{
    for (;;) {
        switch (h->st) {
        case H_BOL:
            if (c == '\r' || c == '\n')
                return -1; /* the empty line */
            h->match = false;
            h->st = c == ' ' || c == '\t' ? H_BODY : H_NAME; /* stray continuation: skip */
            h->npos = 0;
            h->name_ok = true;
            if (h->st == H_BODY)
                return 0;
            continue;
        case H_NAME:
            if (c == ':') {
                h->match = h->name_ok && h->npos == h->namelen && h->nth-- == 0;
                h->st = H_BODY;
            } else if (c == '\n') {
                h->st = H_BOL; /* not a field: ignore the line */
            } else {
                if (h->npos >= h->namelen ||
                    tolower((unsigned char)c) != tolower((unsigned char)h->name[h->npos]))
                    h->name_ok = false;
                h->npos++;
            }
            return 0;
        case H_BODY:
            if (c == '\r')
                h->st = H_CR;
            else if (c == '\n')
                h->st = H_NL;
            else if (h->match)
                sink_hscan_value(h, c);
            return 0;
        case H_CR:
            if (c == '\n') {
                h->st = H_NL;
                return 0;
            }
            if (h->match)
                sink_hscan_value(h, '\r'); /* a bare CR is content */
            h->st = H_BODY;
            continue;
        case H_NL:
            if (c == ' ' || c == '\t') { /* continuation: unfold, keep the WSP */
                h->st = H_BODY;
                continue;
            }
            if (h->match)
                return 1;
            h->st = H_BOL;
            continue;
        }
    }
}

ssize_t sink_header_get(struct sink_ctx *ctx, const char *name, unsigned nth, char *buf,
                        size_t buflen)
{
    const struct sink_event_data *d = ctx->d;
    if (d->body_at == NULL)
        return -ENOTSUP;
    if (name == NULL || *name == '\0')
        return -EINVAL;
    struct sink_hscan h = {.name = name,
                           .namelen = strlen(name),
                           .nth = nth,
                           .buf = buf,
                           .buflen = buflen,
                           .st = H_BOL};
    uint64_t off = 0;
    int r = 0;
    for (;;) {
        const char *p;
        size_t len = 0;
        int err = d->body_at(d->body_arg, off, &p, &len);
        if (err < 0)
            return err;
        if (len == 0)
            break;
        for (size_t i = 0; i < len && r == 0; i++)
            r = sink_hscan_byte(&h, p[i]);
        if (r != 0)
            break;
        off += len;
    }
    /* A header that is all there is (no body, no empty line) ends at EOF. */
    if (r == 1 || (r == 0 && h.match && h.st != H_NAME && h.st != H_BOL)) {
        if (buflen > 0)
            buf[h.keep < buflen ? h.keep : buflen - 1] = '\0';
        return (ssize_t)h.keep;
    }
    return -ENOENT;
}

/* ---- header edits ---- */

static bool sink_field_name_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
            return false;
    return true;
}

static bool sink_field_value_ok(const char *s)
{
    if (s == NULL)
        return false;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return false;
    return true;
}

static int sink_edit(struct sink_ctx *ctx, enum sink_edit_op op, const char *name,
                     const char *value)
{
    const struct sink_event_data *d = ctx->d;
    if (d->edit == NULL)
        return -ENOTSUP;
    if (!sink_field_name_ok(name))
        return -EINVAL;
    if (op != SINK_EDIT_REMOVE &&
        (!sink_field_value_ok(value) || strlen(name) + 2 + strlen(value) > SINK_LINE_MAX))
        return -EINVAL;
    if (sink_edit_guard(ctx, d, name) < 0)
        return -EPERM;
    int rc = d->edit(d->body_arg, op, name, op == SINK_EDIT_REMOVE ? NULL : value);
    if (rc == 0)
        sink_edit_journal(d, op, name, op == SINK_EDIT_REMOVE ? NULL : value);
    return rc;
}

int sink_header_add(struct sink_ctx *ctx, const char *name, const char *value)
{
    return sink_edit(ctx, SINK_EDIT_ADD, name, value);
}

int sink_header_remove(struct sink_ctx *ctx, const char *name)
{
    return sink_edit(ctx, SINK_EDIT_REMOVE, name, NULL);
}

int sink_header_change(struct sink_ctx *ctx, const char *name, const char *value)
{
    return sink_edit(ctx, SINK_EDIT_CHANGE, name, value);
}

/* ---- held messages ---- */

struct sink_msgref *sink_message_hold(struct sink_ctx *ctx)
{
    const struct sink_event_data *d = ctx->d;
    return d->body_hold ? d->body_hold(d->body_arg) : NULL;
}

uint64_t sink_msgref_size(const struct sink_msgref *m)
{
    return m->ops->size(m);
}

ssize_t sink_msgref_read(struct sink_msgref *m, uint64_t off, void *buf, size_t len)
{
    return m->ops->read(m, off, buf, len);
}

void sink_msgref_release(struct sink_msgref *m)
{
    if (m != NULL)
        m->ops->release(m);
}
