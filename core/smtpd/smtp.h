/*
 * NAME
 *	smtp - the inbound SMTP session (RFC 5321 + ESMTP), free of I/O
 * SYNOPSIS
 *	#include "core/smtpd/smtp.h"
 * DESCRIPTION
 *	A session is fed the bytes a connection receives and produces the bytes
 *	to send back; it never touches a socket, so it runs the same under the
 *	io_uring worker and in unit tests.  Message bodies are kept as slices
 *	over the receive buffers (dot-unstuffing cuts slices, it never copies)
 *	and appended to the spool with vectored writes; the final reply to a
 *	message waits for the spool's group commit (spool_writer_sync_done()
 *	runs the session's callback, which queues 250 or 451/452 and then
 *	processes any input the client pipelined meanwhile).
 *
 *	Every reply the server can send comes from the table in smtp_reply.c.
 *
 *	Ownership: a session borrows its smtp_server (which must outlive it) and
 *	takes references on the mbufs it keeps.  Everything runs on the thread
 *	that owns the session's worker.
 *
 *	Output: the session owns two output buffers.  smtp_session_out_take()
 *	freezes the pending bytes for one send and directs later replies to the
 *	other buffer; the frozen bytes stay valid until smtp_session_out_done().
 */
#ifndef SLUICE_CORE_SMTP_H
#define SLUICE_CORE_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/cfg/cfg.h"
#include "core/base/mbuf.h"
#include "storage/spool.h"

struct smtp_server;
struct smtp_session;

/* Counters of one worker's sessions (owner thread only). */
struct smtp_stats {
    uint64_t sessions;
    uint64_t messages;       /* acknowledged with 250 */
    uint64_t rejected;       /* messages refused after DATA/BDAT */
    uint64_t tempfailed;     /* 4xx after DATA (spool errors) */
    uint64_t rcpt_rejected;
    uint64_t protocol_errors;
    uint64_t timeouts;
    uint64_t sink_refused; /* commands and messages refused by a sink's verdict */
    uint64_t discarded;    /* messages a sink discarded (250, not stored) */
    uint64_t quarantined;  /* messages stored with the quarantine flag */
    /* how sessions ended (timeouts above is the fifth way) */
    uint64_t ended_quit;     /* the client said QUIT */
    uint64_t ended_dropped;  /* the client went away without QUIT */
    uint64_t ended_error;    /* we closed it: too many errors, a pipelining violation,
                              * a sink's DROP, a refused connection */
    uint64_t ended_shutdown; /* 421 because the server was stopping */
};

/* kick(cookie) is called when a session gains output or wants to close
 * outside a call into it (after a group commit completes).  cfg and spool
 * are borrowed and must outlive the server.  spool may be NULL (the spool
 * was full when the worker started: MAIL gets 452 4.3.1) until
 * smtp_server_set_spool() names it, on the server's thread. */
struct smtp_server *smtp_server_create(const struct cfg *cfg, struct spool_writer *spool,
                                       void (*kick)(void *cookie));
void smtp_server_destroy(struct smtp_server *srv);
/* Event sinks for this worker's sessions (borrowed; NULL: none).  Set
 * before the first session is created.  With sinks, destroy every session
 * and then the server before the sink_worker (the server abandons the
 * submission calls still running).  docs/smtp.md says which event fires
 * where and how verdicts become replies. */
struct sink_worker;
void smtp_server_set_sinks(struct smtp_server *srv, struct sink_worker *sw);
const struct smtp_stats *smtp_server_stats(const struct smtp_server *srv);
/* Sessions of this server between an accepted MAIL and the commit of that
 * message: the siblings a short group-commit delay can wait for. */
unsigned smtp_server_open_txns(const struct smtp_server *srv);

struct smtp_session *smtp_session_create(struct smtp_server *srv, void *cookie,
                                         const struct sockaddr *peer, socklen_t peerlen);
/* Releases every buffer; a commit still in flight is orphaned (the message
 * stays in the spool; the client never saw its 250). */
void smtp_session_destroy(struct smtp_session *s);

enum smtp_start {
    SMTP_START_OK,          /* 220 greeting */
    SMTP_START_PER_IP,      /* 421 4.7.0 too many connections from you, close */
    SMTP_START_FULL,        /* 421 4.3.2 server busy, close */
    SMTP_START_SHUTDOWN,    /* 421 4.3.2 shutting down, close */
};
void smtp_session_start(struct smtp_session *s, enum smtp_start how);

/* Bytes [off, off+len) of b were received.  The session takes references
 * on b for whatever it keeps. */
void smtp_session_input(struct smtp_session *s, struct mbuf *b, uint32_t off, uint32_t len);
/* The client closed its side or the connection failed. */
void smtp_session_eof(struct smtp_session *s);
/* Called about once a second: idle timeout and minimum data rate. */
void smtp_session_tick(struct smtp_session *s, uint64_t now_ms);
/* The server is stopping: 421 at the next command boundary outside a
 * transaction (one begun with MAIL may finish first), then close. */
void smtp_session_shutdown(struct smtp_session *s);

/* Output. */
bool smtp_session_out_take(struct smtp_session *s, const char **p, size_t *len);
void smtp_session_out_done(struct smtp_session *s);
/* True once the session wants the connection closed after its pending
 * output has been sent (QUIT, 421, a fatal error). */
bool smtp_session_closing(const struct smtp_session *s);
/* Bytes of received input the session holds unprocessed (pipelined while a
 * commit was pending); the caller may stop reading above a bound. */
size_t smtp_session_backlog(const struct smtp_session *s);

/* The worker's receive buffers are running out: move body slices the
 * session holds to the spool now (and copy any queued input out of the
 * ring's buffers), so that every buffer it references goes back. */
void smtp_session_release_buffers(struct smtp_session *s);

/* The kind of listener a session came in on (set before smtp_session_start).
 * PLAIN: port 25 style, STARTTLS offered when TLS is configured; SMTPS:
 * implicit TLS (RFC 8314), the session starts once the handshake is done;
 * SUBMISSION: port 587 style (AUTH required, see core/smtpd/auth.h). */
enum smtp_listener { SMTP_L_PLAIN, SMTP_L_SMTPS, SMTP_L_SUBMISSION };
void smtp_session_set_listener(struct smtp_session *s, enum smtp_listener kind);

/* TLS (net/tls.h does the crypto; the session only sees plaintext).
 * smtp_server_set_tls: whether this worker's connections can start TLS
 * (STARTTLS is offered in EHLO only then).
 * smtp_session_starttls_wanted: the session accepted STARTTLS: its
 * pending output (the 220) goes out in plaintext, every later octet from
 * the client is TLS; input queued behind the STARTTLS line was discarded.
 * smtp_session_tls_started: the handshake is done; desc ("TLSv1.3 with
 * cipher TLS_AES_256_GCM_SHA384 (256/256 bits)") is copied.  After
 * STARTTLS the session is back to just after the greeting (EHLO again). */
void smtp_server_set_tls(struct smtp_server *srv, bool available);
void smtp_server_set_spool(struct smtp_server *srv, struct spool_writer *spool);
bool smtp_session_starttls_wanted(const struct smtp_session *s);
void smtp_session_tls_started(struct smtp_session *s, const char *desc);

#ifdef SLUICE_TEST_HOOKS
/* Unit tests only (smtp_clock.c): the sessions' clock reads now_ms instead
 * of the monotonic coarse clock (0: the real clock again). */
void smtp_set_test_clock(uint64_t now_ms);
#endif

#endif
