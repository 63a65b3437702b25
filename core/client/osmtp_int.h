/*
 * NAME
 *	osmtp_int - details shared by core/osmtp*.c
 * SYNOPSIS
 *	#include "core/client/osmtp_int.h"
 * DESCRIPTION
 *	osmtp.c is the session (output, greeting, EHLO/HELO, STARTTLS,
 *	reply dispatch, failure, QUIT); osmtp_txn.c the mail transaction
 *	(MAIL/RCPT/DATA/BDAT, the body); osmtp_reply.c reads replies
 *	(osmtp_rx_feed: one line per call, any split of the input) and holds
 *	the table of the replies the client makes up itself (osmtp_local).
 */
#ifndef SLUICE_CORE_OSMTP_INT_H
#define SLUICE_CORE_OSMTP_INT_H

#include "core/client/osmtp.h"

#define OSMTP_REPLY_MAX 65536 /* octets of one reply, all lines */
#define OSMTP_LINE_KEEP 1024  /* octets of a line kept (the rest is read and dropped) */

/* The reply being read. */
struct osmtp_rx {
    char line[OSMTP_LINE_KEEP];
    size_t line_len;
    size_t reply_bytes; /* octets of the reply so far, all lines, line ends included */
    unsigned nlines;    /* lines of the reply complete so far */
    size_t tlen;        /* strlen(r.text) */
    struct osmtp_reply r;
    /* the line just parsed: its text after "NNN-"/"NNN " (for EHLO keywords) */
    const char *ltext;
    size_t ltext_len;
    unsigned lnum; /* its index in the reply (0: the first line) */
};

enum osmtp_rx_ev {
    OSMTP_RX_MORE,  /* every octet used, no line complete */
    OSMTP_RX_LINE,  /* a "NNN-" line complete (ltext) */
    OSMTP_RX_REPLY, /* the last line complete (ltext): r holds the reply */
    OSMTP_RX_ERROR, /* not a reply, or too long: r holds a protocol error */
};

void osmtp_rx_reset(struct osmtp_rx *rx);
/* Reads p[0..len) up to and including the first LF; *used says how far.
 * esc: parse RFC 2034 enhanced status codes from the text. */
enum osmtp_rx_ev osmtp_rx_feed(struct osmtp_rx *rx, const char *p, size_t len, size_t *used,
                               bool esc);

/* Replies the client makes up. */
enum osmtp_local {
    OSMTP_L_PROTO,       /* 0 4.5.0 protocol error */
    OSMTP_L_LOST,        /* 0 4.4.2 connection lost */
    OSMTP_L_ENDED,       /* 0 4.3.0 session ended by the client */
    OSMTP_L_NOMEM,       /* 0 4.3.0 out of memory */
    OSMTP_L_TLS_ABSENT,  /* 454 4.7.4 */
    OSMTP_L_TLS_REFUSED, /* 454 4.7.4 */
    OSMTP_L_TLS_FAILED,  /* 454 4.7.5 */
    OSMTP_L_SIZE,        /* 552 5.3.4 */
    OSMTP_L_8BIT,        /* 550 5.6.3 */
    OSMTP_L_UTF8,        /* 553 5.6.7 */
    OSMTP_L_BAD_SENDER,  /* 553 5.1.7 */
    OSMTP_L_BAD_RCPT,    /* 553 5.1.3 */
    OSMTP_L_COUNT_,
};

/* r = the table's reply, its text followed by the formatted detail. */
void osmtp_local(struct osmtp_reply *r, enum osmtp_local id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends s[0..n) to text (cut at the capacity), control characters as '?'. */
size_t osmtp_text_append(char *text, size_t tlen, const char *s, size_t n);

/* The reply a command waits for. */
enum osmtp_kind {
    OSMTP_K_EHLO,
    OSMTP_K_HELO,
    OSMTP_K_STARTTLS,
    OSMTP_K_RSET,
    OSMTP_K_MAIL,
    OSMTP_K_RCPT,
    OSMTP_K_DATA,
    OSMTP_K_DOT,         /* the end of data */
    OSMTP_K_DOT_SWALLOW, /* the "." after an unwanted 354 */
    OSMTP_K_BDAT,
    OSMTP_K_QUIT,
};

struct osmtp_pend {
    enum osmtp_kind kind;
    size_t idx; /* RCPT: the recipient */
};

struct osmtp_obuf {
    char *p;
    size_t len;
    size_t cap;
};

/* What to issue next in a transaction. */
enum osmtp_step { OSMTP_S_RSET, OSMTP_S_MAIL, OSMTP_S_RCPT, OSMTP_S_DATA, OSMTP_S_NONE };

struct osmtp_txn {
    bool open;
    bool pipe;    /* issue everything at once */
    bool aborted; /* failed before the body: fin is the outcome */
    enum osmtp_step step;
    const char *sender;
    const char **rcpt; /* copy of the message's array (the strings are borrowed) */
    bool *done;        /* recipient answered (on_rcpt called) */
    size_t n;
    size_t nsend;        /* recipients with an RCPT command */
    size_t next_rcpt;    /* next index to consider for RCPT */
    size_t rcpt_replies; /* RCPT replies read */
    size_t nacc;
    uint64_t size;
    bool b8;
    bool utf8;
    struct osmtp_reply fin;
};

struct osmtp {
    enum osmtp_state st;
    struct osmtp_cb cb;
    void *arg;
    char helo[256];
    enum osmtp_tls tls;
    bool chunking;
    bool pipelining;
    bool tls_active;
    bool need_rset;
    bool in_rcpt_cb;
    bool oom;
    unsigned ext;
    uint64_t max_size;
    unsigned ext_new; /* being read from an EHLO reply */
    uint64_t size_new;
    enum osmtp_body mode;
    bool bol; /* stuffing: at the start of a line */
    bool cr;  /* stuffing: the last octet was CR */
    struct osmtp_pend *q;
    size_t qhead, qlen, qcap;
    struct osmtp_obuf out[2];
    unsigned out_cur;
    bool out_taken;
    struct osmtp_txn t;
    struct osmtp_rx rx;
    char banner[512];
};

/* osmtp.c */
void osmtp_out_append(struct osmtp *c, const char *p, size_t n);
/* Remembers that a reply of this kind is expected after the others. */
void osmtp_expect(struct osmtp *c, enum osmtp_kind kind, size_t idx);
/* Queues a command line (CRLF added) and expects its reply. */
void osmtp_cmd(struct osmtp *c, enum osmtp_kind kind, size_t idx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void osmtp_fail_local(struct osmtp *c, enum osmtp_local id, bool quit, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void osmtp_check_oom(struct osmtp *c);

/* osmtp_txn.c */
void osmtp_txn_free(struct osmtp *c);
/* The transaction is over: every recipient not yet answered gets r, then
 * on_done(r); state READY unless FAILED.  rset: say RSET before the next. */
void osmtp_txn_end(struct osmtp *c, const struct osmtp_reply *r, bool rset);
/* A reply to RSET, MAIL, RCPT, DATA, the end of data or BDAT (ok: its class is
 * the positive one), then the next commands. */
void osmtp_txn_reply(struct osmtp *c, const struct osmtp_pend *e, const struct osmtp_reply *r,
                     bool ok);

#endif
