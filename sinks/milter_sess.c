/*
 * NAME
 *	milter_sess - the milter session state machine (see milter_sess.h)
 * DESCRIPTION
 *	pump() appends packets for the current step until one needs a reply
 *	(waiting) or the step has nothing more to send (step_over: done).
 *	input() takes the replies from s->in: a reply to the packet that
 *	waits clears waiting; a final one ends the step.
 *
 *	Default macro lists are Postfix's (postconf(5) milter_*_macros),
 *	with {client_addr} and {client_name} added at connect.
 */
#include "sinks/milter_sess.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MILTER_HDR_MAX (1u << 20) /* header section copied for the milter */

static const char *const milter_default_macros[MILTER_M_COUNT] = {
    [MILTER_M_CONNECT] = "j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}",
    [MILTER_M_HELO] = "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
    [MILTER_M_ENVFROM] = ("i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} "
                          "{mail_mailer}"), /* one string: parenthesised for clang */
    [MILTER_M_ENVRCPT] = "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
    [MILTER_M_DATA] = "i",
    [MILTER_M_EOM] = "i",
    [MILTER_M_EOH] = "i",
};

const char *milter_step_name(enum milter_step st)
{
    static const char *const n[] = {"optneg", "connect", "helo", "mail", "rcpt",
                                    "data",   "eom",     "abort", "quit"};
    return (unsigned)st < sizeof(n) / sizeof(n[0]) ? n[st] : "?";
}

struct milter_sess *milter_sess_new(const struct milter_sess_cfg *cfg)
{
    struct milter_sess *s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->cfg = *cfg;
    return s;
}

static void milter_eom_free(struct milter_sess *s)
{
    free(s->hdr);
    free(s->field);
    free(s->chunk);
    s->hdr = NULL;
    s->field = NULL;
    s->chunk = NULL;
    s->nfield = s->ifield = 0;
}

void milter_sess_free(struct milter_sess *s)
{
    if (s == NULL)
        return;
    milter_buf_free(&s->out);
    milter_buf_free(&s->in);
    for (int i = 0; i < MILTER_M_COUNT; i++)
        free(s->symlist[i]);
    milter_eom_free(s);
    free(s);
}

static int milter_fail(struct milter_sess *s, const char *fmt, const char *a)
{
    snprintf(s->why, sizeof(s->why), fmt, a);
    s->failed = true;
    s->waiting = false;
    return MILTER_FAIL;
}

/* SMFIC_MACRO for cmd with the stage's list; nothing when no value. */
static int milter_macros(struct milter_sess *s, int cmd, enum milter_stage st)
{
    const char *list = s->symlist[st] ? s->symlist[st] : milter_default_macros[st];
    const char *names[32], *vals[32];
    char keys[32][64];
    size_t n = 0;
    if (s->cfg.macro == NULL)
        return 0;
    for (const char *p = list; *p != '\0' && n < 32;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, " ,");
        if (len == 0)
            break;
        if (len < sizeof(keys[0])) {
            memcpy(keys[n], p, len);
            keys[n][len] = '\0';
            char bare[64];
            const char *k = keys[n];
            if (len > 2 && k[0] == '{' && k[len - 1] == '}') {
                memcpy(bare, k + 1, len - 2);
                bare[len - 2] = '\0';
            } else {
                memcpy(bare, k, len + 1);
            }
            const char *v = s->cfg.macro(s->cfg.arg, bare);
            if (v != NULL) {
                names[n] = keys[n];
                vals[n] = v;
                n++;
            }
        }
        p += len;
    }
    if (n == 0)
        return 0;
    return milter_put_macros(&s->out, cmd, n, names, vals);
}

void milter_sess_start(struct milter_sess *s, enum milter_step step, const struct milter_step_in *in)
{
    s->step = step;
    if (in != NULL)
        s->sin = *in;
    else
        memset(&s->sin, 0, sizeof(s->sin));
    s->waiting = false;
    s->step_over = false;
    s->phase = 0;
    memset(&s->res, 0, sizeof(s->res));
    s->res.verdict = SINK_CONTINUE;
}

/* One command packet with its macros; waits for the reply unless nr. */
static int milter_send(struct milter_sess *s, uint32_t nr, int rc)
{
    if (rc < 0)
        return milter_fail(s, "%s", "out of memory");
    s->waiting = (s->proto & nr) == 0;
    return MILTER_WAIT;
}

/* ---- eom: the header section, then the body ---- */

static int milter_eom_load(struct milter_sess *s)
{
    size_t cap = 8192, len = 0;
    char *h = malloc(cap + 1);
    if (h == NULL)
        return -ENOMEM;
    uint64_t end = 0;
    bool found = false;
    for (;;) {
        /* the empty line: CRLF CRLF, or a CRLF at the very start (no headers) */
        if (len >= 2 && h[0] == '\r' && h[1] == '\n') {
            end = 0;
            found = true;
        }
        for (size_t i = 0; !found && i + 3 < len; i++)
            if (memcmp(h + i, "\r\n\r\n", 4) == 0) {
                end = i + 2;
                found = true;
            }
        if (found || len >= MILTER_HDR_MAX)
            break;
        if (len == cap) {
            size_t nc = cap * 2 > MILTER_HDR_MAX ? MILTER_HDR_MAX : cap * 2;
            char *nh = realloc(h, nc + 1);
            if (nh == NULL) {
                free(h);
                return -ENOMEM;
            }
            h = nh;
            cap = nc;
        }
        ssize_t r = s->cfg.read(s->cfg.arg, len, h + len, cap - len);
        if (r < 0) {
            free(h);
            return (int)r;
        }
        if (r == 0) {
            end = len; /* no empty line: all of it is header (or nothing) */
            break;
        }
        len += (size_t)r;
    }
    if (!found && len >= MILTER_HDR_MAX)
        end = len;
    h[end] = '\0';
    s->hdr = h;
    /* fields: name ":" value, continuation lines joined with "\n" */
    size_t n = 0, capf = 16;
    s->field = malloc(capf * sizeof(*s->field));
    if (s->field == NULL)
        return -ENOMEM;
    char *p = h, *stop = h + end;
    s->body_off = found ? end + 2 : end;
    while (p < stop) {
        char *colon = p;
        while (colon < stop && *colon != ':' && *colon != '\r' && *colon != '\n')
            colon++;
        if (colon >= stop || *colon != ':' || colon == p || *p == ' ' || *p == '\t') {
            s->body_off = (uint64_t)(p - h); /* not a header: the body starts here */
            break;
        }
        char *ne = colon;
        while (ne > p && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        *ne = '\0';
        char *v = colon + 1;
        if (!(s->proto & MILTER_P_HDR_LEADSPC) && *v == ' ')
            v++;
        /* the field ends at a CRLF not followed by WSP */
        char *w = v, *q = v;
        while (q < stop) {
            if (q[0] == '\r' && q + 1 < stop && q[1] == '\n') {
                if (q + 2 < stop && (q[2] == ' ' || q[2] == '\t')) {
                    *w++ = '\n';
                    q += 2;
                    continue;
                }
                q += 2;
                break;
            }
            *w++ = *q++;
        }
        *w = '\0';
        if (n == capf) {
            capf *= 2;
            void *nf = realloc(s->field, capf * sizeof(*s->field));
            if (nf == NULL)
                return -ENOMEM;
            s->field = nf;
        }
        s->field[n].name = p;
        s->field[n].value = v;
        n++;
        p = q;
    }
    s->nfield = n;
    s->ifield = s->cfg.skip_first_header && n > 0 ? 1 : 0;
    return 0;
}

static size_t milter_field_count(const struct milter_sess *s, const char *name)
{
    size_t c = 0;
    for (size_t i = s->cfg.skip_first_header ? 1 : 0; i < s->nfield; i++)
        if (strcasecmp(s->field[i].name, name) == 0)
            c++;
    return c;
}

static int milter_eom_pump(struct milter_sess *s)
{
    int rc;
    if (s->hdr == NULL && s->phase == 0) {
        if ((rc = milter_eom_load(s)) < 0)
            return milter_fail(s, "reading the message: %s", strerror(-rc));
    }
    while (s->phase == 0) {
        if ((s->proto & MILTER_P_NOHDRS) || s->ifield >= s->nfield) {
            s->phase = 1;
            break;
        }
        struct milter_field *f = &s->field[s->ifield++];
        rc = milter_macros(s, MILTER_C_HEADER, MILTER_M_EOH);
        if (rc == 0)
            rc = milter_put(&s->out, MILTER_C_HEADER, f->name, (size_t)-1, f->value, (size_t)-1,
                            (void *)NULL);
        milter_send(s, MILTER_P_NR_HDR, rc);
        if (s->failed || s->waiting)
            return s->failed ? MILTER_FAIL : MILTER_WAIT;
    }
    if (s->phase == 1) {
        s->phase = 2;
        if (!(s->proto & MILTER_P_NOEOH)) {
            rc = milter_macros(s, MILTER_C_EOH, MILTER_M_EOH);
            if (rc == 0)
                rc = milter_put(&s->out, MILTER_C_EOH, (void *)NULL);
            milter_send(s, MILTER_P_NR_EOH, rc);
            if (s->failed || s->waiting)
                return s->failed ? MILTER_FAIL : MILTER_WAIT;
        }
    }
    while (s->phase == 2) {
        if (s->proto & MILTER_P_NOBODY) {
            s->phase = 3;
            break;
        }
        if (s->chunk == NULL && (s->chunk = malloc(MILTER_CHUNK)) == NULL)
            return milter_fail(s, "%s", "out of memory");
        size_t got = 0;
        while (got < MILTER_CHUNK) {
            ssize_t r = s->cfg.read(s->cfg.arg, s->body_off + got, s->chunk + got,
                                    MILTER_CHUNK - got);
            if (r < 0)
                return milter_fail(s, "reading the message: %s", strerror((int)-r));
            if (r == 0)
                break;
            got += (size_t)r;
        }
        if (got == 0) {
            s->phase = 3;
            break;
        }
        s->body_off += got;
        rc = milter_put(&s->out, MILTER_C_BODY, s->chunk, got, (void *)NULL);
        milter_send(s, MILTER_P_NR_BODY, rc);
        if (s->failed || s->waiting)
            return s->failed ? MILTER_FAIL : MILTER_WAIT;
    }
    if (s->phase == 3) {
        s->phase = 4;
        rc = milter_macros(s, MILTER_C_EOB, MILTER_M_EOM);
        if (rc == 0)
            rc = milter_put(&s->out, MILTER_C_EOB, (void *)NULL);
        milter_send(s, 0, rc);
        return s->failed ? MILTER_FAIL : MILTER_WAIT;
    }
    return MILTER_WAIT; /* phase 4: the final reply is awaited */
}

/* ---- steps ---- */

int milter_sess_pump(struct milter_sess *s)
{
    int rc = 0;
    if (s->failed)
        return MILTER_FAIL;
    if (s->waiting)
        return MILTER_WAIT;
    if (s->step_over)
        return MILTER_DONE;
    /* first call of a step: what it sends */
    s->step_over = true; /* unless a reply is awaited below */
    switch (s->step) {
    case MILTER_S_OPTNEG:
        rc = milter_put_optneg(&s->out, MILTER_VERSION, s->cfg.actions, s->cfg.proto);
        s->waiting = true;
        break;
    case MILTER_S_CONNECT:
        if (s->conn_done || (s->proto & MILTER_P_NOCONNECT))
            return MILTER_DONE;
        rc = milter_macros(s, MILTER_C_CONNECT, MILTER_M_CONNECT);
        if (rc == 0)
            rc = milter_put_connect(&s->out, s->sin.host ? s->sin.host : "unknown",
                                    s->sin.family ? s->sin.family : 'U', s->sin.port,
                                    s->sin.addr ? s->sin.addr : "");
        milter_send(s, MILTER_P_NR_CONN, rc);
        break;
    case MILTER_S_HELO:
        if (s->conn_done || (s->proto & MILTER_P_NOHELO))
            return MILTER_DONE;
        rc = milter_macros(s, MILTER_C_HELO, MILTER_M_HELO);
        if (rc == 0)
            rc = milter_put(&s->out, MILTER_C_HELO, s->sin.helo ? s->sin.helo : "",
                            (size_t)-1, (void *)NULL);
        milter_send(s, MILTER_P_NR_HELO, rc);
        break;
    case MILTER_S_MAIL:
        if (s->conn_done)
            return MILTER_DONE;
        if (s->in_txn) /* the milter still holds the last message: forget it */
            rc = milter_put(&s->out, MILTER_C_ABORT, (void *)NULL);
        s->in_txn = true;
        s->msg_done = s->discard = s->quarantine = false;
        if (s->proto & MILTER_P_NOMAIL)
            return rc < 0 ? milter_fail(s, "%s", "out of memory") : MILTER_DONE;
        if (rc == 0)
            rc = milter_macros(s, MILTER_C_MAIL, MILTER_M_ENVFROM);
        if (rc == 0)
            rc = milter_put_envelope(&s->out, MILTER_C_MAIL, s->sin.addr ? s->sin.addr : "",
                                     s->sin.params);
        milter_send(s, MILTER_P_NR_MAIL, rc);
        break;
    case MILTER_S_RCPT:
        if (s->conn_done || s->msg_done || (s->proto & MILTER_P_NORCPT))
            return MILTER_DONE;
        rc = milter_macros(s, MILTER_C_RCPT, MILTER_M_ENVRCPT);
        if (rc == 0)
            rc = milter_put_envelope(&s->out, MILTER_C_RCPT, s->sin.addr ? s->sin.addr : "",
                                     s->sin.params);
        milter_send(s, MILTER_P_NR_RCPT, rc);
        break;
    case MILTER_S_DATA:
        if (s->conn_done || s->msg_done || (s->proto & MILTER_P_NODATA) || s->version < 4)
            return MILTER_DONE;
        rc = milter_macros(s, MILTER_C_DATA, MILTER_M_DATA);
        if (rc == 0)
            rc = milter_put(&s->out, MILTER_C_DATA, (void *)NULL);
        milter_send(s, MILTER_P_NR_DATA, rc);
        break;
    case MILTER_S_EOM:
        if (s->conn_done || s->msg_done) {
            if (s->discard)
                s->res.verdict = SINK_DISCARD;
            return MILTER_DONE;
        }
        s->step_over = false;
        return milter_eom_pump(s);
    case MILTER_S_ABORT:
        if (s->in_txn && !s->conn_done)
            rc = milter_put(&s->out, MILTER_C_ABORT, (void *)NULL);
        s->in_txn = false;
        break;
    case MILTER_S_QUIT:
        rc = milter_put(&s->out, MILTER_C_QUIT, (void *)NULL);
        break;
    }
    if (rc < 0)
        return milter_fail(s, "%s", "out of memory");
    if (s->failed)
        return MILTER_FAIL;
    if (s->waiting) {
        s->step_over = false;
        return MILTER_WAIT;
    }
    return MILTER_DONE;
}

static void milter_symlist(void *arg, uint32_t stage, const char *list)
{
    struct milter_sess *s = arg;
    if (stage < MILTER_M_COUNT) {
        free(s->symlist[stage]);
        s->symlist[stage] = strdup(list);
    }
}

static int milter_optneg_reply(struct milter_sess *s, const struct milter_reply *r)
{
    if (r->cmd != MILTER_R_OPTNEG)
        return milter_fail(s, "negotiation: the milter answered \"%s\"", milter_reply_name(r->cmd));
    if (r->version < 2 || r->version > MILTER_VERSION) {
        char v[16];
        snprintf(v, sizeof(v), "%u", (unsigned)r->version);
        return milter_fail(s, "negotiation: protocol version %s (2..6 spoken)", v);
    }
    if (r->actions & ~s->cfg.actions) {
        char v[16];
        snprintf(v, sizeof(v), "0x%x", (unsigned)(r->actions & ~s->cfg.actions));
        return milter_fail(s, "negotiation: the milter wants actions %s this binding does not offer",
                           v);
    }
    /* steps the milter does not want, and no-reply flags: only those we offered */
    s->version = r->version;
    s->actions = r->actions;
    s->proto = r->proto & s->cfg.proto;
    if (milter_optneg_symlists(r, milter_symlist, s) < 0)
        return milter_fail(s, "%s", "negotiation: malformed symbol lists");
    s->negotiated = true;
    s->waiting = false;
    s->step_over = true;
    return MILTER_DONE;
}

/* "550 5.7.1 text" (libmilter checks it when the milter sets it; a
 * multi-line reply keeps its first line). */
static int milter_replycode(struct milter_sess *s, const char *t)
{
    if (!(t[0] == '4' || t[0] == '5') || !isdigit((unsigned char)t[1]) ||
        !isdigit((unsigned char)t[2]) || (t[3] != ' ' && t[3] != '-' && t[3] != '\0'))
        return milter_fail(s, "bad replycode \"%.64s\"", t);
    s->res.code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
    s->res.verdict = t[0] == '4' ? SINK_TEMPFAIL : SINK_REJECT;
    const char *p = t[3] ? t + 4 : t + 3;
    size_t el = strcspn(p, " \r\n");
    if (el > 4 && el < sizeof(s->res.enhanced) && p[0] == t[0] && p[1] == '.') {
        memcpy(s->res.enhanced, p, el);
        s->res.enhanced[el] = '\0';
        p += el;
        while (*p == ' ')
            p++;
    }
    size_t tl = strcspn(p, "\r\n");
    if (tl >= sizeof(s->res.text))
        tl = sizeof(s->res.text) - 1;
    memcpy(s->res.text, p, tl);
    s->res.text[tl] = '\0';
    return MILTER_DONE;
}

/* An edit at eom, in sluice's terms. */
static int milter_edit(struct milter_sess *s, const struct milter_reply *r)
{
    enum milter_edit_op op = MILTER_E_UNSUPPORTED;
    const char *name = r->s1 ? r->s1 : "", *value = r->s2 ? r->s2 : "";
    char why[160];
    uint32_t need = 0;
    switch (r->cmd) {
    case MILTER_R_ADDHEADER:
        need = MILTER_F_ADDHDRS;
        op = MILTER_E_ADD;
        break;
    case MILTER_R_INSHEADER:
        need = MILTER_F_ADDHDRS;
        op = MILTER_E_ADD; /* placed after the Received: line, as every added field */
        break;
    case MILTER_R_CHGHEADER: {
        need = MILTER_F_CHGHDRS;
        size_t have = milter_field_count(s, name);
        uint32_t idx = r->index ? r->index : 1;
        if (idx > have)
            op = *value ? MILTER_E_ADD : MILTER_E_UNSUPPORTED; /* deleting none: nothing */
        else if (*value == '\0')
            op = have == 1 ? MILTER_E_REMOVE : MILTER_E_UNSUPPORTED;
        else
            op = idx == 1 ? MILTER_E_CHANGE : MILTER_E_UNSUPPORTED;
        if (op == MILTER_E_UNSUPPORTED && idx <= have) {
            snprintf(why, sizeof(why), "changing field %u of %zu called %.40s is not supported",
                     (unsigned)idx, have, name);
            value = why;
        } else if (op == MILTER_E_UNSUPPORTED) {
            return MILTER_WAIT; /* delete a field that is not there: nothing to do */
        }
        break;
    }
    case MILTER_R_QUARANTINE:
        if (!(s->actions & MILTER_F_QUARANTINE))
            return milter_fail(s, "%s", "quarantine without negotiating it");
        s->quarantine = true;
        return MILTER_WAIT;
    default:
        need = r->cmd == MILTER_R_ADDRCPT       ? MILTER_F_ADDRCPT
               : r->cmd == MILTER_R_DELRCPT     ? MILTER_F_DELRCPT
               : r->cmd == MILTER_R_ADDRCPT_PAR ? MILTER_F_ADDRCPT_PAR
               : r->cmd == MILTER_R_CHGFROM     ? MILTER_F_CHGFROM
                                                : MILTER_F_CHGBODY;
        snprintf(why, sizeof(why), "%s is not supported", milter_reply_name(r->cmd));
        value = why;
        break;
    }
    if (!(s->actions & need))
        return milter_fail(s, "action \"%s\" was not negotiated", milter_reply_name(r->cmd));
    if (s->cfg.edit != NULL)
        s->cfg.edit(s->cfg.arg, op, name, value);
    return MILTER_WAIT;
}

static bool milter_is_edit(int cmd)
{
    return cmd == MILTER_R_ADDHEADER || cmd == MILTER_R_INSHEADER || cmd == MILTER_R_CHGHEADER ||
           cmd == MILTER_R_ADDRCPT || cmd == MILTER_R_DELRCPT || cmd == MILTER_R_ADDRCPT_PAR ||
           cmd == MILTER_R_CHGFROM || cmd == MILTER_R_REPLBODY || cmd == MILTER_R_QUARANTINE;
}

/* One reply to the packet that waits. */
static int milter_reply(struct milter_sess *s, const struct milter_reply *r)
{
    if (!s->waiting)
        return milter_fail(s, "a reply (%s) nobody asked for", milter_reply_name(r->cmd));
    if (s->step == MILTER_S_OPTNEG)
        return milter_optneg_reply(s, r);
    bool eom = s->step == MILTER_S_EOM;
    bool final_eom = eom && s->phase == 4;
    if (milter_is_edit(r->cmd)) {
        if (!final_eom)
            return milter_fail(s, "action \"%s\" before end of message", milter_reply_name(r->cmd));
        return milter_edit(s, r);
    }
    int done = MILTER_DONE;
    switch (r->cmd) {
    case MILTER_R_PROGRESS:
        s->progress++;
        return MILTER_WAIT;
    case MILTER_R_CONTINUE:
        if (eom && !final_eom) { /* a header, eoh or body chunk: on to the next */
            s->waiting = false;
            return MILTER_WAIT;
        }
        break;
    case MILTER_R_SKIP:
        if (eom && s->phase == 2) { /* no more body */
            s->phase = 3;
            s->waiting = false;
            return MILTER_WAIT;
        }
        if (eom && !final_eom) {
            s->waiting = false;
            return MILTER_WAIT;
        }
        break;
    case MILTER_R_ACCEPT:
        if (s->step == MILTER_S_CONNECT || s->step == MILTER_S_HELO)
            s->conn_done = true;
        else
            s->msg_done = true;
        break;
    case MILTER_R_REJECT:
    case MILTER_R_TEMPFAIL:
        s->res.verdict = r->cmd == MILTER_R_REJECT ? SINK_REJECT : SINK_TEMPFAIL;
        if (s->step == MILTER_S_CONNECT)
            s->conn_done = true;
        else if (s->step != MILTER_S_RCPT && s->step != MILTER_S_HELO)
            s->msg_done = true;
        break;
    case MILTER_R_REPLYCODE:
        if ((done = milter_replycode(s, r->s1)) == MILTER_FAIL)
            return done;
        if (s->step == MILTER_S_CONNECT)
            s->conn_done = true;
        else if (s->step != MILTER_S_RCPT && s->step != MILTER_S_HELO)
            s->msg_done = true;
        break;
    case MILTER_R_DISCARD:
        if (s->step == MILTER_S_CONNECT || s->step == MILTER_S_HELO)
            return milter_fail(s, "%s", "discard before MAIL");
        s->discard = true;
        s->msg_done = true;
        if (final_eom || eom)
            s->res.verdict = SINK_DISCARD;
        break;
    case MILTER_R_SHUTDOWN:
    case MILTER_R_CONN_FAIL:
        s->res.verdict = SINK_TEMPFAIL;
        s->conn_done = true;
        snprintf(s->why, sizeof(s->why), "the milter answered %s", milter_reply_name(r->cmd));
        break;
    case MILTER_R_SETSYMLIST: /* an optneg option: ignore it elsewhere */
        return MILTER_WAIT;
    default:
        return milter_fail(s, "reply \"%s\" does not fit here", milter_reply_name(r->cmd));
    }
    if (eom) {
        if (final_eom) /* the milter is done with the message; cut short, it is not */
            s->in_txn = false;
        if (final_eom && s->res.verdict == SINK_CONTINUE && s->quarantine)
            s->res.verdict = SINK_QUARANTINE;
        if (s->discard)
            s->res.verdict = SINK_DISCARD;
        milter_eom_free(s);
    }
    s->waiting = false;
    s->step_over = true;
    return done;
}

int milter_sess_input(struct milter_sess *s)
{
    for (;;) {
        if (s->failed)
            return MILTER_FAIL;
        struct milter_reply r;
        ssize_t used = milter_parse(s->in.p + s->in.off, milter_buf_left(&s->in), &r);
        if (used < 0)
            return milter_fail(s, "%s", "malformed reply packet");
        if (used == 0)
            break;
        int st = milter_reply(s, &r);
        s->in.off += (size_t)used;
        if (st != MILTER_WAIT)
            return st;
        if (!s->waiting) /* the packet it answered is done: pump the next */
            break;
    }
    milter_buf_compact(&s->in);
    return MILTER_WAIT;
}

void milter_sess_steps(const struct milter_sess *s, char *buf, size_t len)
{
    static const struct {
        uint32_t no;
        const char *name;
    } st[] = {{MILTER_P_NOCONNECT, "connect"}, {MILTER_P_NOHELO, "helo"},
              {MILTER_P_NOMAIL, "mail"},       {MILTER_P_NORCPT, "rcpt"},
              {MILTER_P_NODATA, "data"},       {MILTER_P_NOHDRS, "header"},
              {MILTER_P_NOEOH, "eoh"},         {MILTER_P_NOBODY, "body"}};
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        if (s->proto & st[i].no)
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? " " : "", st[i].name);
        if (w < 0 || (size_t)w >= len - n)
            return;
        n += (size_t)w;
    }
    snprintf(buf + n, len - n, "%seom", n ? " " : "");
}
