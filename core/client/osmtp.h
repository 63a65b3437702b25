/*
 * NAME
 *	osmtp - the outbound SMTP client protocol (RFC 5321 client side), free of I/O
 * SYNOPSIS
 *	#include "core/client/osmtp.h"
 * DESCRIPTION
 *	One osmtp is one connection to a next hop, from the greeting to QUIT.
 *	It is fed the bytes the server sends (osmtp_input) and produces the
 *	bytes to send (osmtp_out_take/osmtp_out_done); the caller owns the
 *	socket.  It never touches a message body: when the server is ready for
 *	the body (osmtp_state() == OSMTP_BODY) the caller sends the message
 *	itself, either dot-stuffed (osmtp_body_mode() == OSMTP_BODY_DATA, with
 *	osmtp_stuff() over each piece and then osmtp_body_end(), which queues
 *	the final "." line) or raw (OSMTP_BODY_BDAT: the "BDAT n LAST" command
 *	is already queued; the caller sends exactly n octets after it and then
 *	calls osmtp_body_end()).
 *
 *	Greeting: 220 expected (anything else: the session fails with that
 *	reply).  EHLO, and HELO when EHLO is refused with 5xx (502/500/550...).
 *	Extensions remembered: PIPELINING, SIZE n, 8BITMIME, SMTPUTF8,
 *	CHUNKING, STARTTLS, ENHANCEDSTATUSCODES.
 *
 *	STARTTLS: when the options ask for it (tls != OSMTP_TLS_NONE) and the
 *	server offers it, "STARTTLS" is sent after EHLO; on 220 the state is
 *	OSMTP_TLS_HANDSHAKE: the caller does the handshake and calls
 *	osmtp_tls_done(), which sends EHLO again (RFC 3207: every earlier
 *	extension is forgotten).  When tls is OSMTP_TLS_ENCRYPT (or VERIFY) and
 *	the server does not offer STARTTLS or refuses it, the session fails
 *	with a temporary error "TLS is required but ...".
 *
 *	A transaction: osmtp_send() on a session in OSMTP_READY.  With
 *	PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920);
 *	without it, one command per reply.  With CHUNKING, MAIL and RCPTs,
 *	then "BDAT n LAST" once at least one RCPT was accepted.  The message's
 *	needs are checked first against the server: SIZE larger than the
 *	server's limit: every recipient fails 552 5.3.4; 8-bit body without
 *	8BITMIME, or SMTPUTF8 needed but not offered: every recipient fails
 *	550 5.6.3 / 553 5.6.7 ("the next hop lacks ...") — permanent failures
 *	the caller bounces; no command is sent then and the session stays
 *	READY.  Every reply is interpreted per recipient: on_rcpt() for each
 *	RCPT reply (2xx accepted, else the failure), then on_done() once with
 *	the reply to the end of data (or to MAIL, or the failure that ended the
 *	transaction: when MAIL fails every recipient gets that reply; when no
 *	RCPT was accepted the DATA is not sent (with pipelining the server's
 *	554 to DATA is swallowed) and on_done() reports "no valid recipients"
 *	with the last RCPT reply).  After on_done() the session is READY again
 *	(a new osmtp_send() may follow; an RSET is sent first when the
 *	transaction failed before the body), or FAILED.
 *
 *	Errors: a 421 reply at any point, a reply line that is not a reply,
 *	or a reply longer than 64 KiB fails the session: on_fail() once with
 *	the reply (code 421 or 0 for a protocol error) and the state becomes
 *	OSMTP_FAILED; a transaction in progress gets on_done() with that reply
 *	first (its recipients not yet answered are then temporary failures).
 *	osmtp_eof() (connection lost) does the same with code 0 and
 *	"connection lost (in state ...)" text.
 *
 *	Ownership: an osmtp copies what it needs from the options and the
 *	message; the message's strings must stay valid until on_done().
 *	Callbacks run inside osmtp_input()/osmtp_send()/osmtp_eof().
 */
#ifndef SLUICE_CORE_OSMTP_H
#define SLUICE_CORE_OSMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct osmtp;

enum osmtp_tls { OSMTP_TLS_NONE, OSMTP_TLS_MAY, OSMTP_TLS_ENCRYPT, OSMTP_TLS_VERIFY };

enum osmtp_state {
    OSMTP_GREETING,      /* waiting for 220 */
    OSMTP_HELLO,         /* EHLO/HELO sent */
    OSMTP_STARTTLS,      /* STARTTLS sent */
    OSMTP_TLS_HANDSHAKE, /* the caller handshakes, then osmtp_tls_done() */
    OSMTP_READY,         /* between transactions */
    OSMTP_ENVELOPE,      /* MAIL/RCPT (and DATA) sent, replies coming */
    OSMTP_BODY,          /* the caller sends the body now */
    OSMTP_FINAL,         /* waiting for the reply to the end of data */
    OSMTP_QUIT,          /* QUIT sent */
    OSMTP_CLOSED,        /* QUIT answered (or the server closed after QUIT) */
    OSMTP_FAILED,
};

enum osmtp_body { OSMTP_BODY_DATA, OSMTP_BODY_BDAT };

/* Extensions the server announced (after the last EHLO). */
#define OSMTP_EXT_PIPELINING 0x01u
#define OSMTP_EXT_SIZE 0x02u
#define OSMTP_EXT_8BITMIME 0x04u
#define OSMTP_EXT_SMTPUTF8 0x08u
#define OSMTP_EXT_CHUNKING 0x10u
#define OSMTP_EXT_STARTTLS 0x20u
#define OSMTP_EXT_ENHANCED 0x40u

/* A reply as received: code, enhanced status ("5.1.1", "" when absent:
 * then a default derived from the code is filled in, "4.0.0"/"5.0.0"/
 * "2.0.0"), and the text of all lines joined with "; " (no CR/LF, at most
 * 511 octets: longer text is cut). */
struct osmtp_reply {
    int code;
    char enhanced[16];
    char text[512];
};

struct osmtp_cb {
    void (*on_rcpt)(void *arg, size_t i, const struct osmtp_reply *r);
    void (*on_done)(void *arg, const struct osmtp_reply *r);
    void (*on_fail)(void *arg, const struct osmtp_reply *r);
};

struct osmtp_opts {
    const char *helo_name;    /* our host name for EHLO */
    enum osmtp_tls tls;       /* NONE: never STARTTLS */
    bool use_chunking;        /* BDAT when offered (default true) */
    bool use_pipelining;      /* default true */
};

struct osmtp_msg {
    const char *sender;       /* "" for the null sender */
    size_t nrcpt;
    const char *const *rcpts;
    uint64_t size;            /* octets the caller will send (before stuffing) */
    bool body_8bit;           /* BODY=8BITMIME needed */
    bool smtputf8;            /* SMTPUTF8 needed */
    const char *envid;        /* DSN ENVID or NULL (sent only if offered; not yet) */
};

struct osmtp *osmtp_create(const struct osmtp_opts *o, const struct osmtp_cb *cb, void *arg);
void osmtp_destroy(struct osmtp *c);

enum osmtp_state osmtp_state(const struct osmtp *c);
const char *osmtp_state_name(enum osmtp_state s);
unsigned osmtp_ext(const struct osmtp *c);      /* OSMTP_EXT_* */
uint64_t osmtp_max_size(const struct osmtp *c); /* SIZE n, 0 if none */
const char *osmtp_banner(const struct osmtp *c); /* the 220 greeting text */

/* Server bytes.  Any length, any split. */
void osmtp_input(struct osmtp *c, const char *p, size_t len);
/* The connection is gone. */
void osmtp_eof(struct osmtp *c);

/* Output, as in smtp.h: take freezes the pending bytes for one send; later
 * commands go to a second buffer; done releases the frozen ones. */
bool osmtp_out_take(struct osmtp *c, const char **p, size_t *len);
void osmtp_out_done(struct osmtp *c);

/* Starts a transaction (state READY).  0, or -EBUSY (not READY), or
 * -EMSGSIZE/-EPROTONOSUPPORT when refused by the server's extensions (the
 * callbacks have then reported the failure). */
int osmtp_send(struct osmtp *c, const struct osmtp_msg *m);
enum osmtp_body osmtp_body_mode(const struct osmtp *c);
/* DATA mode: dot-stuffs in[0..len) into out (capacity cap >= 2*len+2
 * suffices) and returns the octets written; line ends of the message are
 * CRLF.  The stuffing state continues across calls. */
size_t osmtp_stuff(struct osmtp *c, const char *in, size_t len, char *out, size_t cap);
/* The whole body was handed to the socket (DATA: ".\r\n" is queued, and a
 * CRLF before it when the body did not end with one). */
void osmtp_body_end(struct osmtp *c);

/* The TLS handshake finished (EHLO follows) or failed (the session fails
 * with reason). */
void osmtp_tls_done(struct osmtp *c, bool ok, const char *reason);
/* Sends QUIT (from READY; in other states the session is just failed). */
void osmtp_quit(struct osmtp *c);

#endif
