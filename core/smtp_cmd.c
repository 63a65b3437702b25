/*
 * NAME
 *	smtp_cmd - the SMTP command table
 * SYNOPSIS
 *	#include "core/smtp_int.h"
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
 *	a domain in cfg->relay_domains or our hostname, or <postmaster>; for
 *	such a client the source-routing tricks (% ! or @ in the local part,
 *	an address literal as the domain) are refused even for our domains.
 * DIAGNOSTICS
 *	Every refusal is a row of the reply table.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/smtp_int.h"

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
    t->active = t->smtputf8 = t->bdat = false;
    t->sender[0] = t->params[0] = '\0';
    t->size = 0;
    t->fail = SMTP_R_NONE;
    smtp_dscan_init(&t->scan);
    s->data_timing = false;
}

/* ---- EHLO / HELO ---- */

static enum smtp_reply_id smtp_check_helo(struct smtp_session *s, const char *arg)
{
    return *arg == '\0' ? SMTP_R_HELO_SYNTAX : SMTP_R_NONE;
}

static bool smtp_hello(struct smtp_session *s, const char *arg, enum smtp_hello how)
{
    size_t len = strlen(arg);
    if (!smtp_helo_valid(arg, len)) {
        smtp_reply(s, SMTP_R_HELO_BAD);
        return false;
    }
    smtp_txn_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
    memcpy(s->helo, arg, len + 1);
    s->hello = how;
    return true;
}

static void smtp_proceed_ehlo(struct smtp_session *s, const char *arg)
{
    if (smtp_hello(s, arg, SMTP_HELLO_EHLO))
        smtp_reply_ehlo(s);
}

static void smtp_proceed_helo(struct smtp_session *s, const char *arg)
{
    if (smtp_hello(s, arg, SMTP_HELLO_HELO))
        smtp_reply(s, SMTP_R_HELO);
}

/* ---- MAIL ---- */

static enum smtp_reply_id smtp_check_mail(struct smtp_session *s, const char *arg)
{
    if (s->hello == SMTP_HELLO_NONE)
        return SMTP_R_NEED_HELO;
    if (s->txn.active)
        return SMTP_R_NESTED_MAIL;
    if (strncasecmp(arg, "FROM:", 5) != 0)
        return SMTP_R_MAIL_SYNTAX;
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

static void smtp_proceed_mail(struct smtp_session *s, const char *arg)
{
    const char *p = arg + 5;
    struct smtp_path path;
    struct smtp_mail_params prm;
    while (*p == ' ') /* "MAIL FROM: <a@b>" is common enough to tolerate */
        p++;
    enum smtp_addr_err e = smtp_path_parse(&p, true, &path);
    if (e == SMTP_ADDR_TOO_LONG) {
        smtp_reply(s, SMTP_R_SENDER_LONG);
        return;
    }
    if (e != SMTP_ADDR_OK || (path.len > 0 && !path.has_domain) || !smtp_after_path(&p)) {
        smtp_reply(s, SMTP_R_SENDER_BAD);
        return;
    }
    enum smtp_reply_id r = smtp_mail_params_parse(p, s->hello == SMTP_HELLO_EHLO, &prm);
    if (r == SMTP_R_NONE && path.non_ascii && !prm.smtputf8)
        r = SMTP_R_NEED_UTF8;
    if (r == SMTP_R_NONE && prm.has_size && prm.size > s->cfg->max_message_size)
        r = SMTP_R_SIZE_EXCEEDED;
    if (r != SMTP_R_NONE) {
        smtp_reply(s, r);
        return;
    }
    struct smtp_txn *t = &s->txn;
    memcpy(t->sender, path.addr, path.len + 1);
    memcpy(t->params, prm.norm, sizeof(t->params));
    t->smtputf8 = prm.smtputf8;
    t->active = true;
    t->sibling = true;
    s->srv->open_txns++;
    smtp_reply(s, SMTP_R_MAIL_OK);
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
static bool smtp_rcpt_allowed(const struct smtp_session *s, const struct smtp_path *path)
{
    if (s->trusted || !path->has_domain)
        return true; /* mynetworks, or <postmaster> */
    if (path->literal)
        return false;
    for (size_t i = 0; i < path->local_len; i++)
        if (path->addr[i] == '%' || path->addr[i] == '!' || path->addr[i] == '@')
            return false;
    const char *domain = path->addr + path->local_len + 1;
    const struct cfg *c = s->cfg;
    return cfg_domain_match(c->relay_domains, c->nrelay_domains, domain) ||
           strcasecmp(domain, c->hostname) == 0;
}

static enum smtp_reply_id smtp_rcpt_store(struct smtp_session *s, const struct smtp_path *path)
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
    char *copy = malloc(path->len + 1);
    if (copy == NULL)
        return SMTP_R_NOMEM;
    memcpy(copy, path->addr, path->len + 1);
    t->rcpts[t->nrcpt++] = copy;
    return SMTP_R_NONE;
}

static void smtp_proceed_rcpt(struct smtp_session *s, const char *arg)
{
    const char *p = arg + 3;
    struct smtp_path path;
    enum smtp_reply_id r = SMTP_R_NONE;
    while (*p == ' ')
        p++;
    enum smtp_addr_err e = smtp_path_parse(&p, false, &path);
    if (e == SMTP_ADDR_TOO_LONG)
        r = SMTP_R_RCPT_LONG;
    else if (e != SMTP_ADDR_OK || !smtp_after_path(&p))
        r = SMTP_R_RCPT_BAD;
    else if (!path.has_domain && strcasecmp(path.addr, "postmaster") != 0)
        r = SMTP_R_RCPT_BAD; /* RFC 5321 4.5.1: only Postmaster may omit it */
    if (r == SMTP_R_NONE)
        r = smtp_rcpt_params_parse(p, s->hello == SMTP_HELLO_EHLO);
    if (r == SMTP_R_NONE && path.non_ascii && !s->txn.smtputf8)
        r = SMTP_R_NEED_UTF8;
    if (r == SMTP_R_NONE && !smtp_rcpt_allowed(s, &path))
        r = SMTP_R_RELAY_DENIED;
    if (r == SMTP_R_NONE)
        r = smtp_rcpt_store(s, &path);
    if (r != SMTP_R_NONE) {
        s->srv->stats.rcpt_rejected++;
        smtp_reply(s, r);
        return;
    }
    smtp_reply(s, SMTP_R_RCPT_OK);
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

static void smtp_proceed_data(struct smtp_session *s, const char *arg)
{
    enum smtp_reply_id r = smtp_msg_begin(s);
    if (r != SMTP_R_NONE) {
        smtp_reply(s, r);
        return;
    }
    smtp_reply(s, SMTP_R_DATA_GO);
    s->phase = SMTP_P_DATA;
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

static void smtp_proceed_bdat(struct smtp_session *s, const char *arg)
{
    uint64_t n = 0;
    bool last = false;
    smtp_bdat_args(arg, &n, &last);
    smtp_bdat_start(s, n, last); /* sequence errors are answered after the octets */
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
    smtp_reply(s, SMTP_R_BYE);
}

static void smtp_proceed_help(struct smtp_session *s, const char *arg)
{
    smtp_reply_help(s);
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
};

void smtp_cmd_dispatch(struct smtp_session *s, char *line, size_t len)
{
    while (len > 0 && line[len - 1] == ' ')
        len--;
    line[len] = '\0';
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    const char *arg = line + vlen;
    while (*arg == ' ')
        arg++;

    for (size_t i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
        const struct smtp_cmd *c = &smtp_cmds[i];
        if (vlen != strlen(c->verb) || strncasecmp(line, c->verb, vlen) != 0)
            continue;
        enum smtp_reply_id r = SMTP_R_NONE;
        if (c->group == SMTP_GROUP_LAST && s->inq_bytes > 0)
            r = SMTP_R_SYNC; /* the line is consumed: what is left came after it */
        else if (c->args == SMTP_ARGS_NONE && *arg != '\0')
            r = SMTP_R_NO_ARGS;
        else
            r = c->check(s, arg);
        if (r != SMTP_R_NONE)
            smtp_reply(s, r);
        else
            c->proceed(s, arg);
        return;
    }
    smtp_reply(s, SMTP_R_UNKNOWN);
}
