/*
 * NAME
 *	smtp_auth - the AUTH command (RFC 4954): PLAIN and LOGIN
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 *
 *	{"AUTH", ..., smtp_auth_check, smtp_auth_proceed}	(smtp_cmd.c)
 * DESCRIPTION
 *	AUTH is offered (EHLO "AUTH PLAIN LOGIN") only under TLS and only
 *	when something can check credentials: the password file of the
 *	installed auth_service (core/smtpd/auth.h) or a sink bound to the `auth`
 *	event.  The check step refuses AUTH before EHLO, inside a
 *	transaction, a second time, without TLS (538 5.7.11), and from a
 *	client network that used up its failures (421 4.7.0, close).
 *
 *	The exchange: PLAIN (RFC 4616) takes its message as the initial
 *	response or after "334 "; LOGIN asks "334 VXNlcm5hbWU6" (Username:)
 *	and "334 UGFzc3dvcmQ6" (Password:), an initial response being the
 *	user name.  "=" is an empty initial response.  While the session
 *	waits for a response it is in SMTP_P_AUTH: smtp_auth_feed() reads
 *	one line of up to SMTP_AUTH_LINE_MAX octets into a buffer allocated
 *	for the exchange (the command line stays at 512).  "*" cancels
 *	(501 5.0.0); bad base64 is 501 5.5.2; a PLAIN message that is not
 *	[authzid] NUL authcid NUL passwd, or a user name that is empty, over
 *	255 octets, not UTF-8 or has control characters, is 501 5.7.0.  An
 *	authzid other than the authcid is refused (535): no proxy
 *	authorization.
 *
 *	Once decoded, the credentials are the `auth` event (sink_auth_user,
 *	sink_auth_password, sink_command_args = the mechanism).  CONSUMED
 *	authenticates; CONTINUE (and DISCARD, QUARANTINE) falls through to
 *	the password file; REJECT is 535 5.7.8, TEMPFAIL 454 4.7.0, DROP 421;
 *	a sink's own reply of the right class replaces those.
 *
 *	The file check runs the hash as a scheduler task (sched_spawn_shared:
 *	stealable by an idle worker) so that the tens of milliseconds of
 *	yescrypt do not stop this worker's other sessions; the session parks
 *	in SMTP_P_SINK meanwhile, exactly as for a pending sink (nothing
 *	read, no idle timer), and the task posts its answer back to the
 *	owning worker (sched_post).  Without a scheduler (tools, tests
 *	without a pool) the hash runs inline.  A session destroyed while its
 *	hash runs abandons the job: the job owns copies of what it needs and
 *	frees itself when it comes back.
 *
 *	Failures (535, from the file or a sink) count toward the client
 *	network's limit and the user name's budget, and their reply is held
 *	back: the session waits in SMTP_P_HOLD (nothing read, like a parked
 *	session) and the per-connection tick (about once a second) releases
 *	it once its time has come: delay_ms, doubled with each further
 *	failure of the session or of the user name, up to
 *	SMTP_AUTH_DELAY_MAX_MS.  Once the user name has used up its budget,
 *	its credentials get 454 4.7.0 without any check (no sink, no hash),
 *	unless this client network logged in as that user before (the
 *	service's known pairs).  Success: 235 2.7.0, s->auth_user is set for the
 *	rest of the session (sinks see it through sink_auth_user(), the
 *	Received: header names it, relay control lets it relay).
 *	Passwords are wiped from every buffer once checked.
 * DIAGNOSTICS
 *	Successes and failures are logged at info level (never a password).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/smtpd/auth.h"
#include "core/base/log.h"
#include "core/base/utf8.h"
#include "core/smtpd/smtp_int.h"
#include "sched/sched.h"

#define SMTP_AUTH_DEC_MAX (SMTP_AUTH_LINE_MAX / 4 * 3 + 1)
#define SMTP_AUTH_DELAY_MAX_MS 5000u /* the longest a failure's reply is held */

enum smtp_auth_step { SMTP_A_PLAIN, SMTP_A_LOGIN_USER, SMTP_A_LOGIN_PASS, SMTP_A_CHECK };

struct smtp_auth_job;

struct smtp_auth {
    enum smtp_auth_step step;
    const char *mech; /* "PLAIN" or "LOGIN" */
    char *line;       /* the response being read: SMTP_AUTH_LINE_MAX + 2 */
    size_t len;
    bool over;        /* discarding a too long line up to its LF */
    char *buf;        /* decoded: SMTP_AUTH_DEC_MAX */
    const char *pass; /* in buf */
    char user[AUTH_USER_MAX + 1];
    struct smtp_auth_job *job; /* the hash task, while it runs */
};

/* The hash task: everything it reads is its own. */
struct smtp_auth_job {
    struct sched_task task;
    struct sched_pool *pool;
    unsigned owner;
    struct auth_table *table;
    struct smtp_session *s; /* owner thread only; NULL once abandoned */
    bool ok;
    char user[AUTH_USER_MAX + 1];
    char *pass;
};

bool smtp_auth_enabled(const struct smtp_session *s)
{
    const struct auth_service *svc = auth_service_get();
    return (svc != NULL && svc->store != NULL) || smtp_sink_bound(s, SINK_EV_AUTH);
}

/* ---- the exchange's state ---- */

static void smtp_auth_wipe(char *p, size_t n)
{
    if (p != NULL)
        explicit_bzero(p, n);
}

/* The exchange is over (whatever the outcome): buffers wiped and freed. */
static void smtp_auth_end(struct smtp_session *s)
{
    struct smtp_auth *a = s->auth;
    if (a == NULL)
        return;
    smtp_auth_wipe(a->line, SMTP_AUTH_LINE_MAX + 2);
    smtp_auth_wipe(a->buf, SMTP_AUTH_DEC_MAX);
    free(a->line);
    free(a->buf);
    free(a);
    s->auth = NULL;
    if (s->phase == SMTP_P_AUTH)
        s->phase = SMTP_P_CMD;
}

/* Ends the exchange with reply r. */
static void smtp_auth_fail(struct smtp_session *s, enum smtp_reply_id r)
{
    smtp_auth_end(s);
    smtp_reply(s, r);
}

/* Asks for the next response: "334 challenge", then SMTP_P_AUTH. */
static void smtp_auth_ask(struct smtp_session *s, const char *challenge)
{
    struct smtp_auth *a = s->auth;
    if (a->line == NULL && (a->line = malloc(SMTP_AUTH_LINE_MAX + 2)) == NULL) {
        smtp_auth_fail(s, SMTP_R_AUTH_TEMPFAIL);
        return;
    }
    a->len = 0;
    a->over = false;
    smtp_replyf(s, SMTP_R_AUTH_CHALLENGE, "%s", challenge);
    s->phase = SMTP_P_AUTH;
}

void smtp_auth_session_end(struct smtp_session *s)
{
    if (s->auth != NULL && s->auth->job != NULL) {
        s->auth->job->s = NULL; /* it frees itself when it comes back */
        s->auth->job = NULL;
    }
    smtp_auth_end(s);
    free(s->auth_user);
    s->auth_user = NULL;
}

/* ---- the outcome ---- */

static void smtp_auth_success(struct smtp_session *s)
{
    struct smtp_auth *a = s->auth;
    char *u = strdup(a->user);
    if (u == NULL) {
        smtp_auth_fail(s, SMTP_R_AUTH_TEMPFAIL);
        return;
    }
    s->auth_user = u;
    const struct auth_service *svc = auth_service_get();
    if (svc != NULL) /* the per-user budget exempts this network from now on */
        auth_limit_pair_add(svc->known, u, (const struct sockaddr *)&s->peer, smtp_now_ms());
    log_msg(LOG_INFO, "smtp %s: AUTH %s: user %s authenticated", s->client, a->mech, u);
    smtp_auth_end(s);
    smtp_reply(s, SMTP_R_AUTH_OK);
}

/* How long the reply of the n-th failure (n >= 1) is held. */
static uint64_t smtp_auth_delay(uint64_t base_ms, uint32_t n)
{
    uint64_t d = base_ms << (n > 4 ? 4 : n - 1); /* 16 * base is past the cap anyway */
    return d > SMTP_AUTH_DELAY_MAX_MS
               ? (base_ms > SMTP_AUTH_DELAY_MAX_MS ? base_ms : SMTP_AUTH_DELAY_MAX_MS)
               : d;
}

/* A failure (535, or reply r when a sink set its own): counted for the
 * network and the user name, then the reply is held (SMTP_P_HOLD). */
static void smtp_auth_failure(struct smtp_session *s, enum smtp_reply_id r)
{
    const struct auth_service *svc = auth_service_get();
    struct smtp_auth *a = s->auth;
    uint64_t now = smtp_now_ms();
    const struct sockaddr *peer = (const struct sockaddr *)&s->peer;
    bool blocked = svc != NULL && auth_limit_fail(svc->limit, peer, now);
    uint32_t ufail = svc != NULL ? auth_limit_user_fail(svc->users, a->user, now) : 0;
    if (svc != NULL && auth_limit_pair_seen(svc->known, a->user, peer, now))
        auth_limit_pair_fail(svc->limit, a->user, peer, now); /* its budget behind a block */
    if (s->auth_failures < UINT32_MAX)
        s->auth_failures++;
    log_msg(LOG_INFO, "smtp %s: AUTH %s: user %s: authentication failed%s", s->client, a->mech,
            a->user, blocked ? " (client network now blocked)" : "");
    uint32_t n = ufail > s->auth_failures ? ufail : s->auth_failures;
    uint64_t delay = svc != NULL && svc->delay_ms > 0 ? smtp_auth_delay(svc->delay_ms, n) : 0;
    smtp_auth_end(s);
    if (delay == 0 || s->closing || s->phase != SMTP_P_CMD) {
        smtp_reply(s, r);
        return;
    }
    s->held = r;
    s->held_until_ms = now + delay;
    s->phase = SMTP_P_HOLD;
}

void smtp_auth_hold_tick(struct smtp_session *s, uint64_t now_ms)
{
    if (s->phase != SMTP_P_HOLD)
        log_panic("smtp_auth_hold_tick: no reply is held");
    if (now_ms < s->held_until_ms)
        return;
    s->phase = SMTP_P_CMD;
    s->last_input_ms = now_ms; /* the wait was ours */
    smtp_reply(s, s->held);
    if (s->backlog_over && s->phase == SMTP_P_CMD)
        smtp_reply(s, SMTP_R_BACKLOG);
    smtp_session_pump(s); /* what the client pipelined behind the AUTH */
}

static void smtp_auth_result(struct smtp_session *s, bool ok)
{
    if (ok)
        smtp_auth_success(s);
    else
        smtp_auth_failure(s, SMTP_R_AUTH_FAILED);
}

/* ---- the password file, off the event loop ---- */

static void smtp_auth_job_free(struct smtp_auth_job *j)
{
    if (j->pass != NULL) {
        explicit_bzero(j->pass, strlen(j->pass));
        free(j->pass);
    }
    auth_table_unref(j->table);
    free(j);
}

/* Back on the owning worker. */
static void smtp_auth_job_done(struct sched_task *t)
{
    struct smtp_auth_job *j = (struct smtp_auth_job *)t; /* task is the first member */
    struct smtp_session *s = j->s;
    bool ok = j->ok;
    smtp_auth_job_free(j);
    if (s == NULL)
        return; /* the session went away meanwhile */
    if (s->phase != SMTP_P_SINK || s->auth == NULL)
        log_panic("smtp_auth_job_done: session is not waiting for its hash");
    s->auth->job = NULL;
    s->phase = SMTP_P_CMD;
    s->last_input_ms = smtp_now_ms(); /* the wait was ours */
    smtp_auth_result(s, ok);
    if (s->backlog_over && s->phase == SMTP_P_CMD)
        smtp_reply(s, SMTP_R_BACKLOG);
    smtp_session_pump(s);
    if (s->srv->kick)
        s->srv->kick(s->cookie);
}

/* On whichever worker ran it. */
static void smtp_auth_job_run(struct sched_task *t)
{
    struct smtp_auth_job *j = (struct smtp_auth_job *)t;
    j->ok = auth_table_verify(j->table, j->user, j->pass);
    explicit_bzero(j->pass, strlen(j->pass));
    j->task.fn = smtp_auth_job_done;
    /* the inbox orders it: ok is written before the post (release), read
     * after the owner drains it (acquire) */
    sched_post(j->pool, j->owner, &j->task);
}

static void smtp_auth_file_check(struct smtp_session *s)
{
    const struct auth_service *svc = auth_service_get();
    struct smtp_auth *a = s->auth;
    if (svc == NULL || svc->store == NULL) {
        smtp_auth_failure(s, SMTP_R_AUTH_FAILED); /* only sinks could have said yes */
        return;
    }
    struct auth_table *t = auth_store_get(svc->store);
    struct sched_worker *w = svc->pool != NULL ? sched_worker_current() : NULL;
    if (w == NULL) { /* no scheduler: inline */
        bool ok = auth_table_verify(t, a->user, a->pass);
        auth_table_unref(t);
        smtp_auth_result(s, ok);
        return;
    }
    struct smtp_auth_job *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->pass = strdup(a->pass)) == NULL) {
        free(j);
        auth_table_unref(t);
        smtp_auth_fail(s, SMTP_R_AUTH_TEMPFAIL);
        return;
    }
    j->pool = svc->pool;
    j->owner = sched_worker_index(w);
    j->table = t;
    j->s = s;
    memcpy(j->user, a->user, sizeof(j->user));
    j->task.fn = smtp_auth_job_run;
    smtp_auth_wipe(a->buf, SMTP_AUTH_DEC_MAX); /* the job has its copy */
    a->pass = NULL;
    a->job = j;
    s->phase = SMTP_P_SINK;
    /* the push publishes the job to the worker that runs it */
    if (sched_spawn_shared(svc->pool, &j->task) < 0) {
        a->job = NULL;
        s->phase = SMTP_P_CMD;
        j->s = NULL;
        bool ok = auth_table_verify(t, j->user, j->pass);
        smtp_auth_job_free(j);
        smtp_auth_result(s, ok);
    }
}

/* ---- the auth event ---- */

static void smtp_auth_event_cont(struct smtp_session *s, const struct smtp_outcome *o)
{
    switch (o->verdict) {
    case SINK_CONSUMED:
        smtp_auth_success(s);
        return;
    case SINK_REJECT:
        smtp_auth_failure(s, o->reply == SMTP_R_SINK_REPLY ? o->reply : SMTP_R_AUTH_FAILED);
        return;
    case SINK_TEMPFAIL:
        smtp_auth_fail(s, o->reply == SMTP_R_SINK_REPLY ? o->reply : SMTP_R_AUTH_TEMPFAIL);
        return;
    case SINK_DROP:
        smtp_auth_fail(s, o->reply);
        return;
    default: /* CONTINUE, DISCARD, QUARANTINE: the password file decides */
        smtp_auth_file_check(s);
        return;
    }
}

/* A user name we keep: 1..255 octets of UTF-8 without control characters. */
static bool smtp_auth_user_ok(const char *u, size_t n)
{
    if (n == 0 || n > AUTH_USER_MAX || !utf8_valid(u, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] < 0x20 || u[i] == 0x7f)
            return false;
    return true;
}

/* Whether the user name has used up its failures and this client
 * network is not one it logged in from: then nothing is checked. */
static bool smtp_auth_user_locked(const struct smtp_session *s)
{
    const struct auth_service *svc = auth_service_get();
    const char *u = s->auth->user;
    uint64_t now = smtp_now_ms();
    return svc != NULL && auth_limit_user_blocked(svc->users, u, now) &&
           !auth_limit_pair_seen(svc->known, u, (const struct sockaddr *)&s->peer, now);
}

/* Whether this client network has used up its failures and the user is
 * not one that logged in from it (with failures left of that pair's own
 * budget): then 421 and close, nothing checked.  A known pair goes on, so
 * an honest user behind a NAT shared with a guesser is not locked out. */
static bool smtp_auth_net_locked(const struct smtp_session *s)
{
    const struct auth_service *svc = auth_service_get();
    const struct sockaddr *peer = (const struct sockaddr *)&s->peer;
    const char *u = s->auth->user;
    uint64_t now = smtp_now_ms();
    if (svc == NULL || !auth_limit_blocked(svc->limit, peer, now))
        return false;
    return !auth_limit_pair_seen(svc->known, u, peer, now) ||
           auth_limit_pair_blocked(svc->limit, u, peer, now);
}

/* Decoded credentials: the network's and the user's budgets, the auth
 * event, then the file. */
static void smtp_auth_creds(struct smtp_session *s)
{
    if (smtp_auth_net_locked(s)) {
        log_msg(LOG_INFO,
                "smtp %s: AUTH %s: user %s: refused, too many failures from the client network",
                s->client, s->auth->mech, s->auth->user);
        smtp_auth_fail(s, SMTP_R_AUTH_LIMIT);
        return;
    }
    if (smtp_auth_user_locked(s)) {
        log_msg(LOG_INFO, "smtp %s: AUTH %s: user %s: refused, too many failures for the user",
                s->client, s->auth->mech, s->auth->user);
        smtp_auth_fail(s, SMTP_R_AUTH_USER_LIMIT);
        return;
    }
    s->auth->step = SMTP_A_CHECK;
    smtp_event(s, SINK_EV_AUTH, NULL, smtp_auth_event_cont);
}

/* Decodes a response ("=" is empty) into a->buf; -1 after replying. */
static ssize_t smtp_auth_decode(struct smtp_session *s, const char *p, size_t len)
{
    struct smtp_auth *a = s->auth;
    if (a->buf == NULL && (a->buf = malloc(SMTP_AUTH_DEC_MAX)) == NULL) {
        smtp_auth_fail(s, SMTP_R_AUTH_TEMPFAIL);
        return -1;
    }
    if (len == 1 && p[0] == '=') {
        a->buf[0] = '\0';
        return 0;
    }
    ssize_t n = auth_b64_decode(p, len, a->buf, SMTP_AUTH_DEC_MAX);
    if (n < 0)
        smtp_auth_fail(s, SMTP_R_AUTH_BASE64);
    return n;
}

static void smtp_auth_plain(struct smtp_session *s, const char *p, size_t len)
{
    struct smtp_auth *a = s->auth;
    ssize_t n = smtp_auth_decode(s, p, len);
    if (n < 0)
        return;
    const char *authz, *authc, *pass;
    if (auth_plain_split(a->buf, (size_t)n, &authz, &authc, &pass) < 0 ||
        !smtp_auth_user_ok(authc, strlen(authc))) {
        smtp_auth_fail(s, SMTP_R_AUTH_MALFORMED);
        return;
    }
    memcpy(a->user, authc, strlen(authc) + 1);
    a->pass = pass;
    if (authz[0] != '\0' && strcmp(authz, authc) != 0) { /* no proxy authorization */
        smtp_auth_failure(s, SMTP_R_AUTH_FAILED);
        return;
    }
    smtp_auth_creds(s);
}

static void smtp_auth_login_user(struct smtp_session *s, const char *p, size_t len)
{
    struct smtp_auth *a = s->auth;
    ssize_t n = smtp_auth_decode(s, p, len);
    if (n < 0)
        return;
    if ((size_t)n != strlen(a->buf) || !smtp_auth_user_ok(a->buf, (size_t)n)) {
        smtp_auth_fail(s, SMTP_R_AUTH_MALFORMED);
        return;
    }
    memcpy(a->user, a->buf, (size_t)n + 1);
    a->step = SMTP_A_LOGIN_PASS;
    smtp_auth_ask(s, "UGFzc3dvcmQ6"); /* "Password:" */
}

static void smtp_auth_login_pass(struct smtp_session *s, const char *p, size_t len)
{
    struct smtp_auth *a = s->auth;
    ssize_t n = smtp_auth_decode(s, p, len);
    if (n < 0)
        return;
    if ((size_t)n != strlen(a->buf)) {
        smtp_auth_fail(s, SMTP_R_AUTH_MALFORMED); /* a NUL in the password */
        return;
    }
    a->pass = a->buf;
    smtp_auth_creds(s);
}

/* One response line (no CRLF). */
static void smtp_auth_response(struct smtp_session *s, const char *p, size_t len)
{
    if (len == 1 && p[0] == '*') {
        smtp_auth_fail(s, SMTP_R_AUTH_ABORTED);
        return;
    }
    switch (s->auth->step) {
    case SMTP_A_PLAIN:
        smtp_auth_plain(s, p, len);
        break;
    case SMTP_A_LOGIN_USER:
        smtp_auth_login_user(s, p, len);
        break;
    case SMTP_A_LOGIN_PASS:
        smtp_auth_login_pass(s, p, len);
        break;
    case SMTP_A_CHECK:
        log_panic("smtp_auth_response: a response while checking");
    }
}

void smtp_auth_feed(struct smtp_session *s)
{
    struct smtp_auth *a = s->auth;
    const struct mslice *sl = &s->inq.v[s->inq_head];
    const char *p = sl->buf->data + sl->off;
    const char *lf = memchr(p, '\n', sl->len);
    size_t n = lf ? (size_t)(lf - p) : sl->len;
    if (a == NULL)
        log_panic("smtp_auth_feed: no exchange");
    if (!a->over) {
        if (a->len + n > SMTP_AUTH_LINE_MAX + 1) { /* the CR may come on top */
            a->over = true;
        } else {
            memcpy(a->line + a->len, p, n);
            a->len += n;
        }
    }
    smtp_inq_consume(s, lf ? n + 1 : n);
    if (lf == NULL)
        return;
    s->phase = SMTP_P_CMD; /* until the next 334 */
    size_t len = a->len;
    if (a->over) {
        smtp_auth_fail(s, SMTP_R_AUTH_LINE_LONG);
    } else if (len == 0 || a->line[len - 1] != '\r') {
        smtp_auth_fail(s, SMTP_R_BARE_LF);
    } else if (len - 1 > SMTP_AUTH_LINE_MAX) {
        smtp_auth_fail(s, SMTP_R_AUTH_LINE_LONG);
    } else {
        a->line[len - 1] = '\0';
        smtp_auth_response(s, a->line, len - 1);
    }
}

/* ---- the command ---- */

enum smtp_reply_id smtp_auth_check(struct smtp_session *s, const char *arg)
{
    if (!smtp_auth_enabled(s))
        return SMTP_R_AUTH_DISABLED;
    if (s->hello != SMTP_HELLO_EHLO)
        return SMTP_R_AUTH_NEED_EHLO;
    if (s->auth_user != NULL)
        return SMTP_R_AUTH_TWICE;
    if (s->txn.active)
        return SMTP_R_AUTH_IN_TXN;
    if (s->tls == NULL)
        return SMTP_R_AUTH_NEED_TLS;
    /* a blocked network is answered once the user name is known
     * (smtp_auth_net_locked): a user who logged in from it may go on */
    if (*arg == '\0')
        return SMTP_R_AUTH_SYNTAX;
    return SMTP_R_NONE;
}

void smtp_auth_proceed(struct smtp_session *s, const char *arg)
{
    size_t mlen = strcspn(arg, " ");
    const char *ir = arg + mlen;
    while (*ir == ' ')
        ir++;
    const char *mech = NULL;
    if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0)
        mech = "PLAIN";
    else if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0)
        mech = "LOGIN";
    if (mech == NULL) {
        smtp_reply(s, SMTP_R_AUTH_MECH);
        return;
    }
    if (s->auth != NULL)
        log_panic("smtp_auth_proceed: an exchange is already running");
    if ((s->auth = calloc(1, sizeof(*s->auth))) == NULL) {
        smtp_reply(s, SMTP_R_AUTH_TEMPFAIL);
        return;
    }
    s->auth->mech = mech;
    bool plain = mech[0] == 'P';
    s->auth->step = plain ? SMTP_A_PLAIN : SMTP_A_LOGIN_USER;
    if (*ir == '\0')
        smtp_auth_ask(s, plain ? "" : "VXNlcm5hbWU6"); /* "Username:" */
    else if (plain)
        smtp_auth_plain(s, ir, strlen(ir));
    else
        smtp_auth_login_user(s, ir, strlen(ir));
}

/* What sinks of the command event see of AUTH's arguments: the
 * mechanism, never an initial response (it holds the password). */
const char *smtp_auth_public_args(const char *args)
{
    size_t mlen = strcspn(args, " ");
    if (args[mlen] == '\0')
        return args;
    if (mlen == 5 && strncasecmp(args, "PLAIN", 5) == 0)
        return "PLAIN";
    if (mlen == 5 && strncasecmp(args, "LOGIN", 5) == 0)
        return "LOGIN";
    return "";
}

/* The auth event's data (smtp_sinks.c fills the rest). */
void smtp_auth_event_data(const struct smtp_session *s, struct sink_event_data *d)
{
    d->verb = "AUTH";
    d->args = s->auth != NULL ? s->auth->mech : "";
    d->auth_user = s->auth != NULL ? s->auth->user : NULL;
    d->auth_password = s->auth != NULL ? s->auth->pass : NULL;
}
