/*
 * NAME
 *	smtp_cmd - the SMTP command table
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	smtp_cmd_dispatch(s, line, len);
 * DESCRIPTION
 *	The protocol as a table of commands (after OpenSMTPD's smtp_session.c):
 *	each verb has a check step, which looks at the session state and the
 *	presence of arguments and returns the reply that refuses the command
 *	(or SMTP_R_NONE), and a proceed step, which parses the arguments,
 *	acts and replies.
 *
 *	The line handed in has passed the line checks (CRLF, no NUL, no bare
 *	CR, valid UTF-8) and has its CRLF removed.  EHLO, HELO and DATA must
 *	end a pipelined group (RFC 2920 3.1): with input queued behind them
 *	the answer is 554 5.5.0 and the session ends.  (NOOP, VRFY and QUIT
 *	are on the RFC's list too, but nothing goes wrong when a client does
 *	not wait for them, so they are let through.)  Verbs match without
 *	regard to case and must be followed by SP or the end of the line.
 *
 *	Relay control (RCPT): a client outside cfg->mynetworks may only name
 *	a domain in cfg->relay_domains, our hostname, a domain the transport
 *	table delivers locally (maildir), or <postmaster>; for
 *	such a client the source-routing tricks (% ! or @ in the local part,
 *	an address literal as the domain) are refused even for our domains.
 *
 *	Event sinks (smtp_sinks.c): every command line is first the command
 *	event, whose server link is the table lookup and the verb's check
 *	step: a sink before it may answer the line (an unknown verb too: a
 *	protocol extension) or refuse it, a sink after it sees only commands
 *	the server would carry out; the proceed step runs once the chain
 *	has ended.  Then EHLO/HELO, MAIL, RCPT, DATA and the first BDAT fire
 *	their own event once their arguments parsed.  The checks that follow
 *	parsing (SMTPUTF8 and SIZE for MAIL; SMTPUTF8, relay control and the
 *	recipient limit for RCPT) are the server's link of that event's
 *	chain, and the command's effect and 250 are its continuation, so a
 *	sink before the server's link that says CONSUMED accepts what the
 *	checks would refuse, and a sink after it sees only what they passed.
 *	max_recipients still bounds the stored list: it is memory.  While a
 *	sink decides, nothing is read; input that EHLO, HELO or DATA find
 *	queued once it has decided came without waiting for their reply
 *	(554 5.5.0, as when it comes with the command).
 * DIAGNOSTICS
 *	Every refusal is a row of the reply table.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/queue/route.h"
#include "core/smtpd/smtp_int.h"
#include "storage/spool.h"

enum smtp_args {
    SMTP_ARGS_NONE, /* arguments are a syntax error */
    SMTP_ARGS_ANY,  /* the check step decides */
};

/* RFC 2920 3.1: a command whose reply changes what the client may send
 * next must end its pipelined group; input queued behind it means the
 * client did not wait (and, behind DATA, content sent before the 354 is
 * how a message is smuggled). */
enum smtp_group { SMTP_GROUP_ANY, SMTP_GROUP_LAST };

struct smtp_cmd {
    const char *verb;
    enum smtp_args args;
    enum smtp_group group;
    enum smtp_reply_id (*check)(struct smtp_session *s, const char *arg);
    void (*proceed)(struct smtp_session *s, const char *arg);
};

void smtp_txn_unsibling(struct smtp_session *s)
{
    if (s->txn.sibling) {
        s->txn.sibling = false;
        s->srv->open_txns--;
    }
}

void smtp_txn_reset(struct smtp_session *s)
{
    struct smtp_txn *t = &s->txn;
    smtp_txn_unsibling(s);
    smtp_msg_drop(s);
    for (uint32_t i = 0; i < t->nrcpt; i++)
        free(t->rcpts[i]);
    t->nrcpt = 0;
    t->active = t->smtputf8 = t->bdat = t->discard = t->quarantine = false;
    t->sender[0] = t->params[0] = '\0';
    t->size = 0;
    t->fail = SMTP_R_NONE;
    smtp_dscan_init(&t->scan);
    s->data_timing = false;
    smtp_sinks_txn_reset(s);
}

/* DISCARD and QUARANTINE inside a transaction mark its message. */
static void smtp_txn_mark(struct smtp_session *s, const struct smtp_outcome *o)
{
    if (o->verdict == SINK_DISCARD)
        s->txn.discard = true;
    else if (o->verdict == SINK_QUARANTINE)
        s->txn.quarantine = true;
}

/* ---- EHLO / HELO ---- */

static enum smtp_reply_id smtp_check_helo(struct smtp_session *s, const char *arg)
{
    return *arg == '\0' ? SMTP_R_HELO_SYNTAX : SMTP_R_NONE;
}

static void smtp_hello_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    if (s->inq_bytes > 0) { /* sent while a sink decided: it did not wait */
        smtp_reply(s, SMTP_R_SYNC);
        return;
    }
    if (!smtp_outcome_ok(o)) {
        smtp_reply(s, o->reply);
        return;
    }
    size_t len = strlen(s->cand_helo);
    smtp_txn_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
    memmove(s->helo, s->cand_helo, len + 1);
    s->hello = s->cand_hello;
    if (s->hello == SMTP_HELLO_EHLO)
        smtp_reply_ehlo(s); /* its keywords are ours: a sink's 250 does not replace them */
    else
        smtp_reply(s, smtp_outcome_accept(s, o, SMTP_R_HELO, 2));
}

static void smtp_hello(struct smtp_session *s, const char *arg, enum smtp_hello how)
{
    if (!smtp_helo_valid(arg, strlen(arg))) {
        smtp_reply(s, SMTP_R_HELO_BAD);
        return;
    }
    s->cand_helo = arg;
    s->cand_hello = how;
    smtp_event(s, SINK_EV_HELO, NULL, smtp_hello_cont);
}

static void smtp_proceed_ehlo(struct smtp_session *s, const char *arg)
{
    smtp_hello(s, arg, SMTP_HELLO_EHLO);
}

static void smtp_proceed_helo(struct smtp_session *s, const char *arg)
{
    smtp_hello(s, arg, SMTP_HELLO_HELO);
}

/* ---- MAIL ---- */

static enum smtp_reply_id smtp_check_mail(struct smtp_session *s, const char *arg)
{
    if (s->hello == SMTP_HELLO_NONE)
        return SMTP_R_NEED_HELO;
    if (s->listener == SMTP_L_SUBMISSION && s->auth_user == NULL)
        return SMTP_R_AUTH_REQUIRED; /* RFC 6409 4.3: submission requires AUTH */
    if (s->txn.active)
        return SMTP_R_NESTED_MAIL;
    if (strncasecmp(arg, "FROM:", 5) != 0)
        return SMTP_R_MAIL_SYNTAX;
    /* a full spool (docs/spool-format.md, Full disk): no new mail, so the
     * space deliveries free goes to their records; 452 as Postfix does */
    if (s->srv->spool == NULL || spool_writer_full(s->srv->spool))
        return SMTP_R_NO_STORAGE;
    return SMTP_R_NONE;
}

/* After a path: the end, or spaces and parameters. */
static bool smtp_after_path(const char **pp)
{
    if (**pp == '\0')
        return true;
    if (**pp != ' ')
        return false;
    while (**pp == ' ')
        (*pp)++;
    return true;
}

/* The server's link of the mail event. */
static enum smtp_reply_id smtp_mail_check(struct smtp_session *s)
{
    const struct smtp_mail_params *prm = &s->cand->prm;
    if (s->cand->path.non_ascii && !prm->smtputf8)
        return SMTP_R_NEED_UTF8;
    if (prm->has_size && prm->size > s->cfg->max_message_size)
        return SMTP_R_SIZE_EXCEEDED;
    return SMTP_R_NONE;
}

static void smtp_mail_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    if (!smtp_outcome_ok(o)) {
        smtp_reply(s, o->reply);
        return;
    }
    struct smtp_txn *t = &s->txn;
    memcpy(t->sender, s->cand->path.addr, s->cand->path.len + 1);
    memcpy(t->params, s->cand->prm.norm, sizeof(t->params));
    t->smtputf8 = s->cand->prm.smtputf8;
    t->active = true;
    t->sibling = true;
    s->srv->open_txns++;
    smtp_txn_mark(s, o);
    smtp_reply(s, smtp_outcome_accept(s, o, SMTP_R_MAIL_OK, 2));
}

static void smtp_proceed_mail(struct smtp_session *s, const char *arg)
{
    const char *p = arg + 5;
    struct smtp_cand local;
    struct smtp_cand *c = smtp_cand_slot(s, SINK_EV_MAIL, &local);
    while (*p == ' ') /* "MAIL FROM: <a@b>" is common enough to tolerate */
        p++;
    enum addr_err e = addr_path_parse(&p, true, &c->path);
    enum smtp_reply_id r = SMTP_R_NONE;
    if (e == ADDR_TOO_LONG)
        r = SMTP_R_SENDER_LONG;
    else if (e != ADDR_OK || (c->path.len > 0 && !c->path.has_domain) || !smtp_after_path(&p))
        r = SMTP_R_SENDER_BAD;
    else
        r = smtp_mail_params_parse(p, s->hello == SMTP_HELLO_EHLO, &c->prm);
    if (r != SMTP_R_NONE) {
        smtp_reply(s, r);
        return;
    }
    smtp_sinks_txn_reset(s); /* a new MAIL: a new message property bag */
    s->cand = c;
    smtp_event(s, SINK_EV_MAIL, smtp_mail_check, smtp_mail_cont);
    if (s->cand == &local)
        s->cand = NULL; /* the event is over: it ran without sinks */
}

/* ---- RCPT ---- */

static enum smtp_reply_id smtp_check_rcpt(struct smtp_session *s, const char *arg)
{
    if (!s->txn.active)
        return SMTP_R_NEED_MAIL;
    if (strncasecmp(arg, "TO:", 3) != 0)
        return SMTP_R_RCPT_SYNTAX;
    return SMTP_R_NONE;
}

/* May this client send to this recipient?  (see DESCRIPTION) */
static bool smtp_rcpt_allowed(const struct smtp_session *s, const struct addr_path *path)
{
    if (s->trusted || s->auth_user != NULL || !path->has_domain)
        return true; /* mynetworks, authenticated (RFC 4954 1), or <postmaster> */
    if (path->literal)
        return false;
    for (size_t i = 0; i < path->local_len; i++)
        if (path->addr[i] == '%' || path->addr[i] == '!' || path->addr[i] == '@')
            return false;
    const char *domain = path->addr + path->local_len + 1;
    const struct cfg *c = s->cfg;
    return cfg_domain_match(c->relay_domains, c->nrelay_domains, domain) ||
           strcasecmp(domain, c->hostname) == 0 ||
           (s->srv->routes != NULL && route_is_local(s->srv->routes, domain));
}

static enum smtp_reply_id smtp_rcpt_store(struct smtp_session *s, const struct addr_path *path)
{
    struct smtp_txn *t = &s->txn;
    if (t->nrcpt >= s->cfg->max_recipients)
        return SMTP_R_TOO_MANY_RCPTS;
    if (t->nrcpt == t->rcap) {
        uint32_t ncap = t->rcap ? t->rcap * 2 : 8;
        char **nv = realloc(t->rcpts, ncap * sizeof(*nv));
        if (nv == NULL)
            return SMTP_R_NOMEM;
        t->rcpts = nv;
        t->rcap = ncap;
    }
    /* <postmaster> without a domain (RFC 5321 4.5.1) goes to the
     * configured address (local by default), never to a DNS lookup of "" */
    char *copy = path->has_domain ? malloc(path->len + 1) : strdup(s->cfg->postmaster);
    if (copy == NULL)
        return SMTP_R_NOMEM;
    if (path->has_domain)
        memcpy(copy, path->addr, path->len + 1);
    t->rcpts[t->nrcpt++] = copy;
    return SMTP_R_NONE;
}

/* The server's link of the rcpt event: relay control and the limit. */
static enum smtp_reply_id smtp_rcpt_check(struct smtp_session *s)
{
    if (s->cand->path.non_ascii && !s->txn.smtputf8)
        return SMTP_R_NEED_UTF8;
    if (!smtp_rcpt_allowed(s, &s->cand->path))
        return SMTP_R_RELAY_DENIED;
    if (s->txn.nrcpt >= s->cfg->max_recipients)
        return SMTP_R_TOO_MANY_RCPTS;
    return SMTP_R_NONE;
}

static void smtp_rcpt_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    enum smtp_reply_id r = o->reply;
    if (smtp_outcome_ok(o))
        r = smtp_rcpt_store(s, &s->cand->path); /* the limit holds whatever a sink said */
    if (!smtp_outcome_ok(o) || r != SMTP_R_NONE) {
        s->srv->stats.rcpt_rejected++;
        smtp_reply(s, r);
        return;
    }
    smtp_txn_mark(s, o);
    smtp_reply(s, smtp_outcome_accept(s, o, SMTP_R_RCPT_OK, 2));
}

static void smtp_proceed_rcpt(struct smtp_session *s, const char *arg)
{
    const char *p = arg + 3;
    enum smtp_reply_id r = SMTP_R_NONE;
    struct smtp_cand local;
    struct smtp_cand *c = smtp_cand_slot(s, SINK_EV_RCPT, &local);
    while (*p == ' ')
        p++;
    enum addr_err e = addr_path_parse(&p, false, &c->path);
    if (e == ADDR_TOO_LONG)
        r = SMTP_R_RCPT_LONG;
    else if (e != ADDR_OK || !smtp_after_path(&p))
        r = SMTP_R_RCPT_BAD;
    else if (!c->path.has_domain && strcasecmp(c->path.addr, "postmaster") != 0)
        r = SMTP_R_RCPT_BAD; /* RFC 5321 4.5.1: only Postmaster may omit it */
    if (r == SMTP_R_NONE)
        r = smtp_rcpt_params_parse(p, s->hello == SMTP_HELLO_EHLO);
    if (r != SMTP_R_NONE) {
        s->srv->stats.rcpt_rejected++;
        smtp_reply(s, r);
        return;
    }
    s->cand = c;
    smtp_event(s, SINK_EV_RCPT, smtp_rcpt_check, smtp_rcpt_cont);
    if (s->cand == &local)
        s->cand = NULL; /* the event is over: it ran without sinks */
}

/* ---- DATA / BDAT ---- */

static enum smtp_reply_id smtp_check_data(struct smtp_session *s, const char *arg)
{
    if (!s->txn.active)
        return SMTP_R_NEED_MAIL;
    if (s->txn.bdat)
        return SMTP_R_DATA_AFTER_BDAT;
    if (s->txn.nrcpt == 0)
        return SMTP_R_NEED_RCPT;
    return SMTP_R_NONE;
}

static void smtp_data_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    if (s->inq_bytes > 0) { /* sent while a sink decided: content before 354 */
        smtp_reply(s, SMTP_R_SYNC);
        return;
    }
    if (!smtp_outcome_ok(o)) {
        smtp_txn_reset(s);
        smtp_reply(s, o->reply);
        return;
    }
    smtp_txn_mark(s, o);
    enum smtp_reply_id r = smtp_msg_begin(s);
    if (r != SMTP_R_NONE) {
        smtp_reply(s, r);
        return;
    }
    smtp_reply(s, smtp_outcome_accept(s, o, SMTP_R_DATA_GO, 354));
    s->phase = SMTP_P_DATA;
}

static void smtp_proceed_data(struct smtp_session *s, const char *arg)
{
    smtp_event(s, SINK_EV_DATA, NULL, smtp_data_cont);
}

/* "BDAT" SP chunk-size [ SP end-marker ], chunk-size = 1*DIGIT */
static bool smtp_bdat_args(const char *arg, uint64_t *n, bool *last)
{
    uint64_t v = 0;
    const char *p = arg;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *last = false;
    if (*p == ' ') {
        while (*p == ' ')
            p++;
        if (strcasecmp(p, "LAST") != 0)
            return false;
        *last = true;
    } else if (*p != '\0') {
        return false;
    }
    *n = v;
    return true;
}

/* A BDAT we cannot parse has an unknown number of octets behind it: we
 * cannot find the next command, so the reply also ends the session. */
static enum smtp_reply_id smtp_check_bdat(struct smtp_session *s, const char *arg)
{
    uint64_t n;
    bool last;
    return smtp_bdat_args(arg, &n, &last) ? SMTP_R_NONE : SMTP_R_BDAT_SYNTAX;
}

/* After the data event of the first chunk: its octets follow in any case. */
static void smtp_bdat_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    uint64_t n = s->chunk.n;
    bool last = s->chunk.last;
    if (o->verdict == SINK_DROP) {
        smtp_reply(s, o->reply); /* and close: the octets need not be read */
        return;
    }
    if (!smtp_outcome_ok(o)) {
        smtp_txn_reset(s);
        smtp_bdat_start(s, n, last, o->reply); /* read and dropped, then refused */
        return;
    }
    smtp_txn_mark(s, o);
    smtp_bdat_start(s, n, last, SMTP_R_NONE);
}

static void smtp_proceed_bdat(struct smtp_session *s, const char *arg)
{
    uint64_t n = 0;
    bool last = false;
    smtp_bdat_args(arg, &n, &last);
    if (s->txn.active && s->txn.nrcpt > 0 && !s->txn.bdat && smtp_sink_bound(s, SINK_EV_DATA)) {
        s->chunk.n = n;
        s->chunk.last = last;
        smtp_event(s, SINK_EV_DATA, NULL, smtp_bdat_cont);
        return;
    }
    smtp_bdat_start(s, n, last, SMTP_R_NONE); /* sequence errors come after the octets */
}

/* ---- the rest ---- */

static enum smtp_reply_id smtp_check_none(struct smtp_session *s, const char *arg)
{
    return SMTP_R_NONE;
}

static enum smtp_reply_id smtp_check_vrfy(struct smtp_session *s, const char *arg)
{
    return *arg == '\0' ? SMTP_R_VRFY_SYNTAX : SMTP_R_NONE;
}

static void smtp_proceed_rset(struct smtp_session *s, const char *arg)
{
    smtp_txn_reset(s);
    smtp_reply(s, SMTP_R_OK);
}

static void smtp_proceed_noop(struct smtp_session *s, const char *arg)
{
    smtp_reply(s, SMTP_R_OK);
}

static void smtp_proceed_vrfy(struct smtp_session *s, const char *arg)
{
    smtp_reply(s, SMTP_R_VRFY); /* RFC 5321 3.5.3: 252, never a user list */
}

static void smtp_proceed_quit(struct smtp_session *s, const char *arg)
{
    s->quit_seen = true;
    smtp_reply(s, SMTP_R_BYE);
}

static void smtp_proceed_help(struct smtp_session *s, const char *arg)
{
    smtp_reply_help(s);
}

/* ---- STARTTLS (RFC 3207) ---- */

static enum smtp_reply_id smtp_check_starttls(struct smtp_session *s, const char *arg)
{
    if (s->tls != NULL)
        return SMTP_R_TLS_ACTIVE;
    if (!s->srv->tls_available || s->listener == SMTP_L_SMTPS)
        return SMTP_R_UNKNOWN; /* not offered: as if we did not know it */
    if (s->txn.active)
        return SMTP_R_TLS_IN_TXN;
    return SMTP_R_NONE;
}

/* The 220 goes out in plaintext; whatever the client sent behind the
 * STARTTLS line is dropped unread (CVE-2011-0411), and the session
 * forgets everything it was told (RFC 3207 4.2). */
static void smtp_proceed_starttls(struct smtp_session *s, const char *arg)
{
    smtp_reply(s, SMTP_R_TLS_GO);
    smtp_session_tls_begin(s);
}

static const struct smtp_cmd smtp_cmds[] = {
    {"EHLO", SMTP_ARGS_ANY, SMTP_GROUP_LAST, smtp_check_helo, smtp_proceed_ehlo},
    {"HELO", SMTP_ARGS_ANY, SMTP_GROUP_LAST, smtp_check_helo, smtp_proceed_helo},
    {"MAIL", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_check_mail, smtp_proceed_mail},
    {"RCPT", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_check_rcpt, smtp_proceed_rcpt},
    {"DATA", SMTP_ARGS_NONE, SMTP_GROUP_LAST, smtp_check_data, smtp_proceed_data},
    {"BDAT", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_check_bdat, smtp_proceed_bdat},
    {"RSET", SMTP_ARGS_NONE, SMTP_GROUP_ANY, smtp_check_none, smtp_proceed_rset},
    {"NOOP", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_check_none, smtp_proceed_noop},
    {"VRFY", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_check_vrfy, smtp_proceed_vrfy},
    {"QUIT", SMTP_ARGS_NONE, SMTP_GROUP_ANY, smtp_check_none, smtp_proceed_quit},
    {"HELP", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_check_none, smtp_proceed_help},
    {"AUTH", SMTP_ARGS_ANY, SMTP_GROUP_ANY, smtp_auth_check, smtp_auth_proceed},
    {"STARTTLS", SMTP_ARGS_NONE, SMTP_GROUP_ANY, smtp_check_starttls, smtp_proceed_starttls},
};

/* The server's link of the command event: the verb must be one of ours,
 * and its check step (sequence, arguments, RFC 2920) must pass. */
static enum smtp_reply_id smtp_cmd_check(struct smtp_session *s)
{
    const char *arg = s->cmd_args;
    for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
        const struct smtp_cmd *c = &smtp_cmds[i];
        if (strcmp(s->cmd_verb, c->verb) != 0)
            continue;
        s->cmd = c;
        if (c->group == SMTP_GROUP_LAST && s->cmd_behind)
            return SMTP_R_SYNC;
        if (c->args == SMTP_ARGS_NONE && *arg != '\0')
            return SMTP_R_NO_ARGS;
        return c->check(s, arg);
    }
    return SMTP_R_UNKNOWN;
}

/* After the command event: a sink answered, refused, or let it through. */
static void smtp_cmd_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    enum smtp_reply_id r = SMTP_R_NONE;
    if (o->verdict == SINK_CONSUMED) {
        r = smtp_outcome_accept(s, o, SMTP_R_OK, 2); /* a sink answered it */
    } else if (!smtp_outcome_ok(o)) {
        r = o->reply;
    } else if (o->verdict != SINK_CONTINUE || s->cmd == NULL) {
        r = smtp_cmd_check(s); /* DISCARD, QUARANTINE: the chain ended before the server */
    }
    if (r != SMTP_R_NONE)
        smtp_reply(s, r);
    else /* CONTINUE to the end: the server's link ran and found the command */
        s->cmd->proceed(s, s->cmd_args);
}

void smtp_cmd_dispatch(struct smtp_session *s, char *line, size_t len)
{
    while (len > 0 && line[len - 1] == ' ')
        len--;
    line[len] = '\0';
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ') {
        line[vlen] = (char)toupper((unsigned char)line[vlen]); /* verbs match in any case */
        vlen++;
    }
    const char *arg = line + vlen;
    while (*arg == ' ')
        arg++;
    line[vlen] = '\0'; /* the verb: arg is past it */
    s->cmd_verb = line;
    s->cmd_args = arg;
    s->cmd_behind = s->inq_bytes > 0; /* the line is consumed: this came after it */
    s->cmd = NULL;
    smtp_event(s, SINK_EV_COMMAND, smtp_cmd_check, smtp_cmd_cont);
}
