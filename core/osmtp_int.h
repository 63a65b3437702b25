/*
 * NAME
 *	osmtp_int - details shared by core/osmtp*.c
 * SYNOPSIS
 *	#include "core/osmtp_int.h"
 * DESCRIPTION
 *	osmtp_reply.c reads replies (osmtp_rx_feed: one line per call, any
 *	split of the input) and holds the table of the replies the client
 *	makes up itself (osmtp_local).  osmtp.c is the session.
 */
#ifndef SLUICE_CORE_OSMTP_INT_H
#define SLUICE_CORE_OSMTP_INT_H

#include "core/osmtp.h"

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

#endif
