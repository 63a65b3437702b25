/*
 * NAME
 *	smtp_int - details shared by the files of the inbound SMTP session
 * SYNOPSIS
 *	#include "core/smtp_int.h"
 * DESCRIPTION
 *	The session is split the way Postfix splits smtpd:
 *	smtp_session.c	state, input queue, line assembly, output, timeouts
 *	smtp_cmd.c	the command table (a check and a proceed step per verb)
 *	smtp_addr.c	paths, ESMTP parameters, HELO names, UTF-8
 *	smtp_data.c	the DATA scanner, BDAT chunks, the spool transaction
 *	smtp_reply.c	the one reply table and the functions that emit it
 *
 *	Other modules include only core/smtp.h.
 */
#ifndef SLUICE_CORE_SMTP_INT_H
#define SLUICE_CORE_SMTP_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/smtp.h"

/* ---- limits ---- */

#define SMTP_LINE_MAX 512               /* command line incl. CRLF (RFC 5321 4.5.3.1.4) */
#define SMTP_AUTH_LINE_MAX 12288        /* AUTH responses (RFC 4954), for later */
#define SMTP_HELO_MAX 255               /* stored HELO/EHLO argument */
#define SMTP_PATH_MAX 256               /* path incl. <> (RFC 5321 4.5.3.1.3) */
#define SMTP_LOCAL_MAX 64               /* local part (4.5.3.1.1) */
#define SMTP_DOMAIN_MAX 255             /* domain (4.5.3.1.2) */
#define SMTP_ENVID_MAX 100              /* ENVID (RFC 3461 4.4) */
#define SMTP_PARAMS_MAX 256             /* the normalized MAIL parameters */
#define SMTP_FLUSH_BYTES (256u * 1024)  /* body slices held before a spool append */
#define SMTP_FLUSH_SLICES 256u          /* ... or this many slices (one writev) */
#define SMTP_BACKLOG_MAX (1024u * 1024) /* unprocessed input: then 421 */
#define SMTP_OUT_HIWAT (64u * 1024)     /* pending output: stop reading commands */

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
    SMTP_R_DATA_LINE_LONG,
    SMTP_R_NO_STORAGE,
    SMTP_R_WRITE_ERROR,
    SMTP_R_NOMEM,
    SMTP_R_BDAT_SYNTAX,
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

/* ---- paths and parameters (smtp_addr.c) ---- */

struct smtp_path {
    char addr[SMTP_PATH_MAX + 1]; /* mailbox, no <> or source route; "" = <> */
    size_t len;
    size_t local_len; /* octets of the local part (quotes included) */
    bool has_domain;  /* false for <> and <postmaster> */
    bool literal;     /* the domain is an address literal [..] */
    bool non_ascii;   /* UTF-8 somewhere (needs SMTPUTF8) */
};

enum smtp_addr_err { SMTP_ADDR_OK, SMTP_ADDR_SYNTAX, SMTP_ADDR_TOO_LONG };

/* Parses the path starting at *pp ("<...>"), leaving *pp after the '>'.
 * allow_null: "<>" is accepted (the reverse-path). */
enum smtp_addr_err smtp_path_parse(const char **pp, bool allow_null, struct smtp_path *out);

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
/* Well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF, truncation). */
bool smtp_utf8_valid(const char *p, size_t len);
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

struct smtp_server {
    const struct cfg *cfg;
    struct spool_writer *spool;
    void (*kick)(void *cookie);
    struct smtp_stats stats;
    unsigned open_txns; /* sessions between MAIL and their commit (group-commit siblings) */
};

enum smtp_phase {
    SMTP_P_NEW,    /* created, not started */
    SMTP_P_CMD,    /* reading command lines */
    SMTP_P_DATA,   /* after 354: scanning for <CRLF>.<CRLF> */
    SMTP_P_BDAT,   /* reading the octets of a BDAT chunk */
    SMTP_P_PARKED, /* waiting for the group commit of our message */
};

enum smtp_hello { SMTP_HELLO_NONE, SMTP_HELLO_HELO, SMTP_HELLO_EHLO };

/* The mail transaction: from MAIL to the end of the message. */
struct smtp_txn {
    bool active;   /* MAIL accepted */
    bool sibling;  /* counted in srv->open_txns: MAIL accepted, not yet committed */
    bool smtputf8; /* MAIL ... SMTPUTF8 */
    bool bdat;     /* a BDAT chunk was given */
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

struct smtp_session {
    struct smtp_server *srv;
    const struct cfg *cfg;
    void *cookie;
    struct sockaddr_storage peer;
    char client[64];     /* "192.0.2.1", "2001:db8::1" */
    char client_lit[72]; /* "[192.0.2.1]", "[IPv6:2001:db8::1]" */
    bool trusted;        /* the client is in mynetworks */

    enum smtp_phase phase;
    bool greeted;      /* the first reply was taken for sending */
    bool closing;      /* close after the pending output */
    bool eof;          /* the client is gone */
    bool shutdown;     /* 421 at the next command boundary */
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

    struct smtp_obuf out[2];
    unsigned out_cur; /* the buffer replies go to */
    bool out_taken;   /* the other one is being sent */
    bool out_failed;  /* out of memory for output: close */

    uint64_t last_input_ms;
    bool data_timing; /* DATA or BDAT in progress: the rate is checked */
    uint64_t data_start_ms, data_bytes;
};

uint64_t smtp_now_ms(void);

/* smtp_session.c */
void smtp_out_append(struct smtp_session *s, const char *p, size_t n);
/* Ends the session after the pending output; aborts an open message. */
void smtp_close(struct smtp_session *s);
/* Processes queued input until it runs out or the session must wait. */
void smtp_session_pump(struct smtp_session *s);
/* Drops n octets from the front of the input queue. */
void smtp_inq_consume(struct smtp_session *s, size_t n);

/* smtp_cmd.c */
void smtp_cmd_dispatch(struct smtp_session *s, char *line, size_t len);
/* Forgets the transaction (aborting an uncommitted spool txn). */
void smtp_txn_reset(struct smtp_session *s);
/* The transaction's commit is queued (or it ended): no longer a sibling the
 * group commit should wait for. */
void smtp_txn_unsibling(struct smtp_session *s);

/* smtp_data.c */
/* DATA accepted: begins the spool txn and adds the Received: header. */
enum smtp_reply_id smtp_msg_begin(struct smtp_session *s);
void smtp_data_feed(struct smtp_session *s);
void smtp_bdat_start(struct smtp_session *s, uint64_t n, bool last);
void smtp_bdat_feed(struct smtp_session *s);
/* Appends the held body slices to the spool (buffer pressure or size). */
void smtp_msg_flush(struct smtp_session *s);
/* Gives up the message being received (no reply). */
void smtp_msg_drop(struct smtp_session *s);

#endif
