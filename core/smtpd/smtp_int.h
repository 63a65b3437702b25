/*
 * NAME
 *	smtp_int - details shared by the files of the inbound SMTP session
 * SYNOPSIS
 *	#include "core/smtpd/smtp_int.h"
 * DESCRIPTION
 *	The session is split the way Postfix splits smtpd:
 *	smtp_session.c	state, input queue, line assembly, output, timeouts
 *	smtp_cmd.c	the command table (a check and a proceed step per verb)
 *	smtp_addr.c	paths, ESMTP parameters, HELO names, UTF-8
 *	smtp_data.c	the DATA scanner, BDAT chunks, the spool transaction
 *	smtp_reply.c	the one reply table and the functions that emit it
 *	smtp_sinks.c	event sinks: running an event's chain, parking on a
 *			pending one, verdicts to replies, the response event
 *	smtp_sinkmsg.c	what eod and submission sinks see of the message:
 *			body access, holds, header edits, submission calls
 *
 *	Other modules include only core/smtpd/smtp.h.
 */
#ifndef SLUICE_CORE_SMTP_INT_H
#define SLUICE_CORE_SMTP_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/base/addr.h"
#include "core/smtpd/smtp.h"
#include "sinks/engine.h"

/* ---- limits ---- */

#define SMTP_LINE_MAX 512               /* command line incl. CRLF (RFC 5321 4.5.3.1.4) */
#define SMTP_AUTH_LINE_MAX 12288        /* AUTH responses incl. CRLF (RFC 4954 4) */
#define SMTP_HELO_MAX 255               /* stored HELO/EHLO argument */
#define SMTP_PATH_MAX ADDR_PATH_MAX     /* path incl. <> (RFC 5321 4.5.3.1.3) */
#define SMTP_DOMAIN_MAX ADDR_DOMAIN_MAX /* domain (4.5.3.1.2) */
#define SMTP_ENVID_MAX 100              /* ENVID (RFC 3461 4.4) */
#define SMTP_PARAMS_MAX 256             /* the normalized MAIL parameters */
#define SMTP_FLUSH_BYTES (256u * 1024)  /* body slices held before a spool append */
#define SMTP_FLUSH_SLICES 256u          /* ... or this many slices (one writev) */
#define SMTP_BACKLOG_MAX (1024u * 1024) /* unprocessed input: then 421 */
#define SMTP_OUT_HIWAT (64u * 1024)     /* pending output: stop reading commands */
#define SMTP_EDITS_MAX 256u             /* header edits per message */
#define SMTP_BODY_CHUNK (64u * 1024)    /* spooled body octets body_at() reads at once */

/* ---- the reply table (smtp_reply.c) ---- */

enum smtp_reply_id {
    SMTP_R_NONE = 0, /* "no reply": a check step passed */
    SMTP_R_GREETING,
    SMTP_R_PER_IP,
    SMTP_R_FULL,
    SMTP_R_SHUTDOWN,
    SMTP_R_HELO,
    SMTP_R_EHLO, /* first line; the keywords follow (smtp_reply_ehlo) */
    SMTP_R_HELP,
    SMTP_R_OK,
    SMTP_R_MAIL_OK,
    SMTP_R_RCPT_OK,
    SMTP_R_QUEUED,
    SMTP_R_BDAT_OK,
    SMTP_R_VRFY,
    SMTP_R_DATA_GO,
    SMTP_R_BYE,
    SMTP_R_TIMEOUT,
    SMTP_R_SLOW,
    SMTP_R_TOO_MANY_ERRORS,
    SMTP_R_BACKLOG,
    SMTP_R_NOMEM_CLOSE,
    SMTP_R_SYNC,
    SMTP_R_LINE_TOO_LONG,
    SMTP_R_BARE_LF,
    SMTP_R_NUL,
    SMTP_R_BARE_CR,
    SMTP_R_BAD_UTF8,
    SMTP_R_UNKNOWN,
    SMTP_R_NO_ARGS,
    SMTP_R_HELO_SYNTAX,
    SMTP_R_HELO_BAD,
    SMTP_R_VRFY_SYNTAX,
    SMTP_R_NEED_HELO,
    SMTP_R_NESTED_MAIL,
    SMTP_R_NEED_MAIL,
    SMTP_R_NEED_RCPT,
    SMTP_R_DATA_AFTER_BDAT,
    SMTP_R_MAIL_SYNTAX,
    SMTP_R_RCPT_SYNTAX,
    SMTP_R_SENDER_BAD,
    SMTP_R_RCPT_BAD,
    SMTP_R_SENDER_LONG,
    SMTP_R_RCPT_LONG,
    SMTP_R_PARAM_SYNTAX,
    SMTP_R_PARAM_UNKNOWN,
    SMTP_R_SIZE_EXCEEDED,
    SMTP_R_NEED_UTF8,
    SMTP_R_RELAY_DENIED,
    SMTP_R_TOO_MANY_RCPTS,
    SMTP_R_BARE_DATA,
    SMTP_R_NUL_DATA,
    SMTP_R_DATA_LINE_LONG,
    SMTP_R_NO_STORAGE,
    SMTP_R_WRITE_ERROR,
    SMTP_R_NOMEM,
    SMTP_R_BDAT_SYNTAX,
    SMTP_R_SINK_REJECT,        /* a sink's REJECT without a reply of its own */
    SMTP_R_SINK_TEMPFAIL,      /* ... TEMPFAIL */
    SMTP_R_SINK_DROP,          /* ... DROP: close */
    SMTP_R_SINK_CONN_REJECT,   /* REJECT at connect: instead of 220, close */
    SMTP_R_SINK_CONN_TEMPFAIL, /* TEMPFAIL at connect: instead of 220, close */
    SMTP_R_TLS_GO,             /* 220 after STARTTLS */
    SMTP_R_TLS_ACTIVE,         /* a second STARTTLS */
    SMTP_R_TLS_IN_TXN,         /* STARTTLS inside a mail transaction */
    SMTP_R_AUTH_OK,            /* 235 2.7.0 */
    SMTP_R_AUTH_CHALLENGE,     /* 334 and the base64 challenge as the detail */
    SMTP_R_AUTH_FAILED,        /* 535 5.7.8 */
    SMTP_R_AUTH_NEED_TLS,      /* 538 5.7.11 */
    SMTP_R_AUTH_REQUIRED,      /* 530 5.7.0 (submission: MAIL before AUTH) */
    SMTP_R_AUTH_TWICE,         /* 503 5.5.1 already authenticated */
    SMTP_R_AUTH_NEED_EHLO,     /* 503 5.5.1 */
    SMTP_R_AUTH_IN_TXN,        /* 503 5.5.1 */
    SMTP_R_AUTH_DISABLED,      /* 503 5.5.1 not offered */
    SMTP_R_AUTH_SYNTAX,        /* 501 5.5.4 AUTH without a mechanism */
    SMTP_R_AUTH_MECH,          /* 504 5.5.4 unknown mechanism */
    SMTP_R_AUTH_ABORTED,       /* 501 5.0.0 the client sent "*" */
    SMTP_R_AUTH_BASE64,        /* 501 5.5.2 malformed base64 */
    SMTP_R_AUTH_MALFORMED,     /* 501 5.7.0 a malformed PLAIN message or user name */
    SMTP_R_AUTH_LINE_LONG,     /* 500 5.5.6 a response over 12288 octets */
    SMTP_R_AUTH_TEMPFAIL,      /* 454 4.7.0 */
    SMTP_R_AUTH_LIMIT,         /* 421 4.7.0 too many failures from the network, close */
    SMTP_R_AUTH_USER_LIMIT,    /* 454 4.7.0 too many failures for the user name */
    SMTP_R_SINK_REPLY,         /* the reply the deciding sink set (s->sk->reply) */
    SMTP_R_COUNT_
};

/* Emits reply id (the table's code, enhanced code and text).  A reply
 * flagged as an error counts toward max_errors (and may add the 421);
 * a closing reply ends the session.  Nothing is emitted once closing. */
void smtp_reply(struct smtp_session *s, enum smtp_reply_id id);
/* Same with a detail appended to the text (or put before it, for
 * replies whose table text says so). */
void smtp_replyf(struct smtp_session *s, enum smtp_reply_id id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void smtp_reply_ehlo(struct smtp_session *s);
void smtp_reply_help(struct smtp_session *s);
/* The three-digit code of a reply ("250"), for tests and logs. */
const char *smtp_reply_code(enum smtp_reply_id id);
/* "550 5.7.1 Rejected by policy" (no hostname), for logs. */
void smtp_reply_describe(enum smtp_reply_id id, char *out, size_t len);
/* A row as a sink_result sees it: code, enhanced code, text (hostname
 * included where the reply has it). */
void smtp_reply_fill(struct smtp_session *s, enum smtp_reply_id id, int *code, char *esc,
                     size_t esclen, char *text, size_t textlen);

/* ---- paths and parameters (smtp_addr.c) ---- */

struct smtp_mail_params {
    bool has_size;
    uint64_t size;
    bool smtputf8;
    char norm[SMTP_PARAMS_MAX + 1]; /* "SIZE=1 BODY=8BITMIME SMTPUTF8 ..." */
};
/* p: the text after the path (after its separating spaces).  esmtp: the
 * client said EHLO.  Returns SMTP_R_NONE or the reply to send. */
enum smtp_reply_id smtp_mail_params_parse(const char *p, bool esmtp, struct smtp_mail_params *out);
enum smtp_reply_id smtp_rcpt_params_parse(const char *p, bool esmtp);

/* The HELO/EHLO argument: a domain or an address literal, printable ASCII. */
bool smtp_helo_valid(const char *p, size_t len);
/* RFC 3461 xtext. */
bool smtp_xtext_valid(const char *p, size_t len);

/* ---- the data scanner (smtp_data.c) ---- */

enum smtp_dscan_state {
    SMTP_DS_BOL,    /* after CRLF (the start of the data counts) */
    SMTP_DS_TEXT,   /* inside a line */
    SMTP_DS_CR,     /* a CR inside a line */
    SMTP_DS_DOT,    /* CRLF "." */
    SMTP_DS_DOT_CR, /* CRLF "." CR */
};

struct smtp_dscan {
    enum smtp_dscan_state state;
    bool bare;        /* a CR or LF that is not part of a CRLF */
    bool longline;    /* a line over the limit */
    bool nul;         /* a NUL octet: a next hop could take it for an end */
    uint64_t linelen; /* octets of the current line, without CRLF */
};

/* Bytes [off, off+n) of the scanned piece are message content. */
typedef void smtp_emit_fn(void *arg, size_t off, size_t n);

void smtp_dscan_init(struct smtp_dscan *d);
/* DATA: scans p[0..len), emitting the content runs (the stuffing dots and
 * the final ".CRLF" are left out).  Returns the octets consumed; *done is
 * set when <CRLF>.<CRLF> ended the data (the rest is not consumed). */
size_t smtp_dscan_data(struct smtp_dscan *d, const char *p, size_t len, uint64_t maxline,
                       smtp_emit_fn *emit, void *arg, bool *done);
/* BDAT: every octet is content; only CR/LF pairing and lengths are checked. */
void smtp_dscan_raw(struct smtp_dscan *d, const char *p, size_t len, uint64_t maxline);
/* BDAT LAST: a CR at the very end is bare. */
void smtp_dscan_raw_end(struct smtp_dscan *d);

/* ---- the session ---- */

struct smtp_subjob;
struct smtp_cmd;

struct route_table;
struct smtp_server {
    const struct cfg *cfg;
    struct spool_writer *spool;
    void (*kick)(void *cookie);
    struct sink_worker *sinks;   /* NULL: no sinks */
    struct sink_engine *engine;  /* sinks' engine, for sink_engine_bound() */
    bool tls_available;          /* STARTTLS may be offered (net has a TLS context) */
    struct smtp_subjob *subjobs; /* submission calls still running */
    struct smtp_stats stats;
    unsigned open_txns;         /* sessions between MAIL and their commit (group-commit siblings) */
    struct route_table *routes; /* for route_is_local() (may be NULL) */
};

enum smtp_phase {
    SMTP_P_NEW,    /* created, not started */
    SMTP_P_CMD,    /* reading command lines */
    SMTP_P_DATA,   /* after 354: scanning for <CRLF>.<CRLF> */
    SMTP_P_BDAT,   /* reading the octets of a BDAT chunk */
    SMTP_P_PARKED, /* waiting for the group commit of our message */
    SMTP_P_SINK,   /* waiting for an event's chain that went pending, or an AUTH hash */
    SMTP_P_AUTH,   /* reading an AUTH response line (smtp_auth.c) */
    SMTP_P_TLS,    /* STARTTLS accepted: waiting for the handshake (nothing is read) */
    SMTP_P_HOLD,   /* a failed AUTH's reply held back (smtp_auth.c): nothing is read */
};

enum smtp_hello { SMTP_HELLO_NONE, SMTP_HELLO_HELO, SMTP_HELLO_EHLO };

/* The mail transaction: from MAIL to the end of the message. */
struct smtp_txn {
    bool active;     /* MAIL accepted */
    bool sibling;    /* counted in srv->open_txns: MAIL accepted, not yet committed */
    bool smtputf8;   /* MAIL ... SMTPUTF8 */
    bool bdat;       /* a BDAT chunk was given */
    bool discard;    /* a sink said DISCARD: 250 at the end, nothing stored */
    bool quarantine; /* a sink said QUARANTINE: stored with the quarantine flag */
    char sender[SMTP_PATH_MAX + 1];
    char params[SMTP_PARAMS_MAX + 1];
    char **rcpts; /* each malloc'd; at most cfg->max_recipients */
    uint32_t nrcpt, rcap;
    /* the message being received */
    struct spool_txn *st;    /* begun, not committed (NULL once refused) */
    struct mchain body;      /* slices not yet appended to the spool */
    uint64_t size;           /* content octets so far */
    enum smtp_reply_id fail; /* set when the message will be refused */
    struct smtp_dscan scan;
};

/* The BDAT chunk being read. */
struct smtp_chunk {
    uint64_t n, left;
    bool last;
    enum smtp_reply_id skip; /* not SMTP_R_NONE: discard, then send this */
};

struct smtp_obuf {
    char *p;
    size_t len, cap;
};

/* ---- event sinks (smtp_sinks.c, smtp_sinkmsg.c) ---- */

/* How an event ended for the session: the verdict (never PENDING), and
 * the reply for it: SMTP_R_NONE (accepted, the command's own reply), a
 * row of the table (the server's own refusal, or the default for the
 * verdict), or SMTP_R_SINK_REPLY (the deciding sink's, in s->sk->reply). */
struct smtp_outcome {
    enum sink_verdict verdict;
    enum smtp_reply_id reply;
};

/* The server's own link of an event's chain: a refusal or SMTP_R_NONE. */
typedef enum smtp_reply_id smtp_check_fn(struct smtp_session *s);
/* What the session does once the event's chain has ended. */
typedef void smtp_cont_fn(struct smtp_session *s, const struct smtp_outcome *o);

/* A reply a sink set (code, enhanced code, text), used verbatim. */
struct smtp_sreply {
    int code;
    char enhanced[16];
    char text[512];
    bool close; /* the session ends after it (DROP, a refused connect) */
};

struct smtp_edit {
    enum spool_edit_op op;
    char *name, *value;
};

/* A path (and for MAIL its parameters) being proposed. */
struct smtp_cand {
    struct addr_path path;
    struct smtp_mail_params prm;
};

/* Everything sinks need of a session: allocated at its first bound event. */
struct smtp_sk {
    struct sink_call *call;  /* the session's events, one at a time */
    struct sink_call *rcall; /* response events (they fire inside others) */
    struct sink_bag *sbag;   /* session properties */
    struct sink_bag *mbag;   /* message properties: MAIL to the end of the message */
    struct sink_event_data d, rd;
    enum sink_event ev; /* the event of call */
    smtp_check_fn *check;
    smtp_cont_fn *cont;
    enum smtp_reply_id srv_reply; /* what check answered in the chain */
    struct smtp_sreply reply;     /* the deciding sink's reply */
    struct smtp_sreply queued;    /* an eod sink's 2xx, sent once the commit is durable */
    bool queued_set;
    bool queued_quarantine; /* the commit waited for carries the quarantine flag */
    bool in_response;       /* no response event for the replies of a response event */
    /* A response sink went pending: its reply is held (resp_text), and
     * every later output waits behind it in resp_hold; the session reads
     * no command meanwhile; a close waits for the held reply (resp_close). */
    bool resp_wait, resp_close, resp_multi;
    int resp_code;
    char *resp_text;
    size_t resp_len, resp_cap;
    struct smtp_obuf resp_hold;
    bool resibling;         /* waiting on a sink took it out of srv->open_txns */
    /* the message at eod */
    struct smtp_edit *edits;
    uint32_t nedits, editcap;
    char *scratch;               /* spooled octets read back (SMTP_BODY_CHUNK) */
    uint32_t cur_i;              /* body_at's place in txn.body: slice, */
    uint64_t cur_base, cur_disk; /* its offset, and the spooled size then */
    struct smtp_subjob *sub;     /* the submission call prepared at commit */
    struct smtp_cand cand;       /* s->cand while a bound mail or rcpt event runs */
};

struct smtp_session {
    struct smtp_server *srv;
    const struct cfg *cfg;
    void *cookie;
    struct sockaddr_storage peer;
    char client[64];             /* "192.0.2.1", "2001:db8::1" */
    char client_lit[72];         /* "[192.0.2.1]", "[IPv6:2001:db8::1]" */
    bool trusted;                /* the client is in mynetworks */
    enum smtp_listener listener; /* where the client connected */
    char *tls;                   /* NULL: plaintext; else "TLSv1.3 with cipher ..." (owned) */
    bool tls_wanted;             /* STARTTLS accepted, the handshake has not completed */
    char *auth_user;             /* NULL, or the AUTH identity (owned) */
    struct smtp_auth *auth;      /* an AUTH exchange in progress (smtp_auth.c), else NULL */
    unsigned auth_failures;      /* failed AUTHs in this session (the delay grows with them) */
    enum smtp_reply_id held;     /* SMTP_P_HOLD: the reply, sent once ... */
    uint64_t held_until_ms;      /* ... the tick sees this time */

    enum smtp_phase phase;
    bool greeted;      /* the first reply was taken for sending */
    bool closing;      /* close after the pending output */
    bool eof;          /* the client is gone */
    bool shutdown;     /* 421 at the next command boundary */
    bool quit_seen;    /* QUIT answered (how the session ended, for stats) */
    bool timed_out;    /* ended by idle_timeout or min_data_rate */
    bool dropped;      /* the client closed before we meant to */
    bool backlog_over; /* too much input while parked: 421 after the reply */
    bool pumping;      /* smtp_session_pump is on the stack */
    unsigned errors;
    enum smtp_hello hello;
    char helo[SMTP_HELO_MAX + 1];

    /* Input not processed yet: slices [inq_head, inq.n) of inq; the
     * queue owns one reference per unconsumed slice. */
    struct mchain inq;
    uint32_t inq_head;
    size_t inq_bytes;
    char line[SMTP_LINE_MAX];
    size_t linelen;
    bool line_over; /* discarding a too long line up to its LF */

    struct smtp_txn txn;
    struct smtp_chunk chunk;
    struct spool_txn *committed; /* waiting for its done callback */

    /* The command being handled: verb (upper-cased) and arguments, both in
     * line (stable while the session waits: nothing is read meanwhile). */
    const char *cmd_verb, *cmd_args;
    bool cmd_behind;            /* input was queued behind its line (RFC 2920) */
    const struct smtp_cmd *cmd; /* its row of the command table, once found */
    /* What MAIL, RCPT, EHLO/HELO propose while their event runs: cand is
     * on the stack of the command without sinks, in s->sk with them (it
     * must outlive a pending chain); NULL otherwise. */
    struct smtp_cand *cand;
    const char *cand_helo;
    enum smtp_hello cand_hello;
    struct smtp_sk *sk; /* NULL until an event has sinks bound */

    struct smtp_obuf out[2];
    unsigned out_cur; /* the buffer replies go to */
    bool out_taken;   /* the other one is being sent */
    bool out_failed;  /* out of memory for output: close */

    uint64_t last_input_ms;
    uint64_t line_start_ms;    /* the first octet of the command line not yet whole */
    uint64_t session_start_ms; /* for max_session_time */
    bool data_timing;          /* DATA or BDAT in progress: the rate is checked */
    uint64_t data_start_ms, data_bytes;
    /* The envelope of the message waiting for its commit, for the
     * "accepted" log line (the txn is reset when the commit starts). */
    struct {
        char sender[SMTP_PATH_MAX + 1];
        uint32_t nrcpt;
        uint64_t size;
        uint64_t data_ms; /* when its DATA or first BDAT began */
    } logged;
};

uint64_t smtp_now_ms(void);

/* smtp_session.c */
void smtp_out_append(struct smtp_session *s, const char *p, size_t n);
/* Ends the session after the pending output; aborts an open message. */
void smtp_close(struct smtp_session *s);
/* Processes queued input until it runs out or the session must wait. */
void smtp_session_pump(struct smtp_session *s);
/* STARTTLS accepted (after its 220 was queued): input queued behind it
 * is discarded, the session returns to just after the greeting and waits
 * in SMTP_P_TLS for smtp_session_tls_started(). */
void smtp_session_tls_begin(struct smtp_session *s);
/* Drops n octets from the front of the input queue. */
void smtp_inq_consume(struct smtp_session *s, size_t n);

/* smtp_cmd.c */
void smtp_cmd_dispatch(struct smtp_session *s, char *line, size_t len);
/* Forgets the transaction (aborting an uncommitted spool txn). */
void smtp_txn_reset(struct smtp_session *s);
/* The transaction's commit is queued (or it ended): no longer a sibling the
 * group commit should wait for. */
void smtp_txn_unsibling(struct smtp_session *s);

/* smtp_auth.c */
/* The AUTH verb's check and proceed steps (the command table's row). */
enum smtp_reply_id smtp_auth_check(struct smtp_session *s, const char *arg);
void smtp_auth_proceed(struct smtp_session *s, const char *arg);
/* Whether AUTH is offered at all (a password file or an auth sink). */
bool smtp_auth_enabled(const struct smtp_session *s);
/* SMTP_P_AUTH: takes input up to one response line. */
void smtp_auth_feed(struct smtp_session *s);
/* SMTP_P_HOLD: sends the held reply once now_ms reaches its time and
 * takes up the input again (the tick calls it). */
void smtp_auth_hold_tick(struct smtp_session *s, uint64_t now_ms);
/* The session ends: an AUTH hash still running is abandoned. */
void smtp_auth_session_end(struct smtp_session *s);
/* AUTH's arguments as command sinks see them: the mechanism only. */
const char *smtp_auth_public_args(const char *args);
/* The auth event's verb, mechanism, user and password. */
void smtp_auth_event_data(const struct smtp_session *s, struct sink_event_data *d);

/* smtp_data.c */
/* DATA accepted: begins the spool txn and adds the Received: header. */
enum smtp_reply_id smtp_msg_begin(struct smtp_session *s);
void smtp_data_feed(struct smtp_session *s);
/* BDAT n [LAST]: reads the chunk; refuse (not SMTP_R_NONE): read and drop
 * it, then answer refuse. */
void smtp_bdat_start(struct smtp_session *s, uint64_t n, bool last, enum smtp_reply_id refuse);
void smtp_bdat_feed(struct smtp_session *s);
/* Appends the held body slices to the spool (buffer pressure or size). */
void smtp_msg_flush(struct smtp_session *s);
/* Gives up the message being received (no reply). */
void smtp_msg_drop(struct smtp_session *s);

/* smtp_sinks.c */
/* Whether ev has sinks bound (no sinks: false at the cost of a load). */
static inline bool smtp_sink_bound(const struct smtp_session *s, enum sink_event ev)
{
    return s->srv->engine != NULL && sink_engine_bound(s->srv->engine, ev);
}
/* The session's sink state, made at its first bound event; NULL when out
 * of memory (logged; the session then runs as without sinks). */
struct smtp_sk *smtp_sk_get(struct smtp_session *s);
/* Where MAIL or RCPT (ev) parse their candidate: local (the caller's
 * stack) when ev runs without sinks, else the sink state. */
struct smtp_cand *smtp_cand_slot(struct smtp_session *s, enum sink_event ev,
                                 struct smtp_cand *local);
/* Runs event ev: its chain when sinks are bound, with check as the
 * server's link; otherwise just check.  cont(s, outcome) runs now, or -
 * when the chain went pending - once it ends (the session waits in
 * SMTP_P_SINK meanwhile and takes up its input afterwards). */
void smtp_event(struct smtp_session *s, enum sink_event ev, smtp_check_fn *check,
                smtp_cont_fn *cont);
static inline bool smtp_outcome_ok(const struct smtp_outcome *o)
{
    return o->verdict == SINK_CONTINUE || o->verdict == SINK_CONSUMED ||
           o->verdict == SINK_DISCARD || o->verdict == SINK_QUARANTINE;
}
/* The reply for an accepted outcome: the sink's own if it set one of
 * class cls (2 or 3), else dflt. */
enum smtp_reply_id smtp_outcome_accept(const struct smtp_session *s, const struct smtp_outcome *o,
                                       enum smtp_reply_id dflt, int cls);
/* A reply is about to be queued: the response event (smtp_reply.c calls
 * it).  text is the whole reply without the final CRLF; *code, text and
 * *close may be changed (single-line replies only).  Returns the new
 * length of text.  *held: a sink went pending; the reply is kept and
 * goes out, changed or not, when it answers (the caller queues nothing). */
size_t smtp_sink_response(struct smtp_session *s, int *code, char *text, size_t len, size_t cap,
                          bool multi, bool *close, bool *held);
/* Whether a held reply waits for a response sink (see struct smtp_sk). */
static inline bool smtp_resp_waiting(const struct smtp_session *s);
/* The client went away while a response sink held a reply: abandoned. */
void smtp_sink_resp_abandon(struct smtp_session *s);
/* The session ends: the disconnect event, abandoning anything pending. */
void smtp_sinks_session_end(struct smtp_session *s);

/* smtp_sinkmsg.c */
/* The transaction is reset: message properties and edits go. */
void smtp_sinks_txn_reset(struct smtp_session *s);
/* Fills the eod part of d (body access and header edits). */
void smtp_sinkmsg_eod(struct smtp_session *s, struct sink_event_data *d);
/* Hands the edits recorded at eod to st: 0 or -errno. */
int smtp_sinkmsg_edits(struct smtp_session *s, struct spool_txn *st);
/* The message st has been committed: prepares its submission event (if
 * bound), taking the envelope, the message bag and a body reference. */
void smtp_sub_prepare(struct smtp_session *s, struct spool_txn *st);
/* Its commit is durable (res 0: fire the event) or failed (drop it). */
void smtp_sub_commit_done(struct smtp_session *s, uint64_t id, int res);
/* Abandons every submission call still running (server destroy). */
void smtp_sub_destroy_all(struct smtp_server *srv);
void smtp_sub_free(struct smtp_subjob *j);
const char *smtp_verdict_name(enum sink_verdict v);

static inline bool smtp_resp_waiting(const struct smtp_session *s)
{
    return s->sk != NULL && s->sk->resp_wait;
}

#endif
