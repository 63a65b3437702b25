/*
 * NAME
 *	tls - TLS engines over memory BIOs (OpenSSL 3), server and client
 * SYNOPSIS
 *	#include "net/tls.h"
 *
 *	struct tls_server *ts = tls_server_create(&opts, err, sizeof(err));
 *	struct tls_conn *t = tls_conn_accept(ts);
 *	tls_conn_feed(t, received, n);		// ciphertext from the peer
 *	tls_conn_handshake(t);			// TLS_OK once done
 *	tls_conn_read(t, buf, cap);		// plaintext
 *	tls_conn_write(t, reply, len);		// plaintext
 *	n = tls_conn_out_take(t, buf, cap);	// ciphertext to send
 * DESCRIPTION
 *	A tls_conn never touches a socket: the caller feeds it what it
 *	received and sends what it drains, so it runs under the io_uring
 *	workers, under any other I/O loop (the outbound client), and in
 *	unit tests with two engines wired back to back.  Reads and writes are
 *	plaintext; the engine's own records (handshake, session tickets,
 *	alerts, close_notify) appear in its output like any other.
 *
 *	tls_server holds the server SSL_CTX built from plain settings (struct
 *	tls_opts: cert, key, min_protocol, ciphers, ciphersuites; the
 *	configuration's `tls { }` block fills them through tls_cfg_opts(),
 *	core/cfg/cfg.h).  tls_server_reload()
 *	builds a new context from the same files and swaps it in for new
 *	connections; a connection keeps the context it started with (each
 *	SSL holds a reference on its SSL_CTX).  Any thread may reload while
 *	workers accept.
 *
 *	tls_client holds a client SSL_CTX (the system trust store, or
 *	ca_file).  tls_conn_connect() starts a client engine with SNI and a
 *	policy: TLS_VERIFY_MAY and TLS_VERIFY_ENCRYPT do not check the peer
 *	(the caller decides what a failed handshake means); TLS_VERIFY_VERIFY
 *	checks the chain and the host name (SSL_set1_host), and a failure
 *	ends the handshake with the reason in tls_conn_error().
 *
 *	Ownership: a tls_conn borrows nothing after it is created (its SSL
 *	holds the context); tls_conn_error() and tls_conn_desc() point into
 *	the conn and are valid until it is destroyed.  A tls_conn is used by
 *	one thread at a time.
 * DIAGNOSTICS
 *	Constructors return NULL and one line in err naming the file and the
 *	reason ("tls: key ./var/tls/key.pem: No such file or directory",
 *	"tls: key ./k.pem does not match the certificate ./c.pem").
 */
#ifndef SLUICE_NET_TLS_H
#define SLUICE_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum tls_verify {
    TLS_VERIFY_NONE,    /* no TLS (never passed to tls_conn_connect) */
    TLS_VERIFY_MAY,     /* opportunistic: encrypt if offered, no check */
    TLS_VERIFY_ENCRYPT, /* TLS required, the peer not checked */
    TLS_VERIFY_VERIFY,  /* TLS required, chain and host name checked */
};

/* Plain settings; the strings are borrowed for the constructor's call. */
struct tls_opts {
    const char *cert, *key;   /* server: PEM chain and key (required) */
    const char *ca_file;      /* client: trust anchors; NULL = the system store */
    const char *min_protocol; /* "TLSv1.2" (default) or "TLSv1.3" */
    const char *ciphers;      /* TLS 1.2 cipher list; NULL = OpenSSL's default */
    const char *ciphersuites; /* TLS 1.3 suites; NULL = OpenSSL's default */
};

struct tls_server;
struct tls_server *tls_server_create(const struct tls_opts *o, char *err, size_t errlen);
/* Re-reads cert and key (same paths as at create): 0, or -errno with err
 * filled and the old context still in use. */
int tls_server_reload(struct tls_server *ts, char *err, size_t errlen);
void tls_server_destroy(struct tls_server *ts);

struct tls_client;
struct tls_client *tls_client_create(const struct tls_opts *o, char *err, size_t errlen);
void tls_client_destroy(struct tls_client *tc);

enum tls_status {
    TLS_OK = 0,      /* done */
    TLS_WANT = 1,    /* more input needed (drain the output first) */
    TLS_FAILED = -1, /* see tls_conn_error(); drain the output (an alert) */
};

struct tls_conn;
/* NULL when out of memory. */
struct tls_conn *tls_conn_accept(struct tls_server *ts);
/* host: SNI and, with TLS_VERIFY_VERIFY, the name checked (copied). */
struct tls_conn *tls_conn_connect(struct tls_client *tc, const char *host, enum tls_verify policy);
void tls_conn_destroy(struct tls_conn *t);

/* Ciphertext received: 0 or -ENOMEM. */
int tls_conn_feed(struct tls_conn *t, const void *p, size_t n);
enum tls_status tls_conn_handshake(struct tls_conn *t);
/* Plaintext: > 0 octets, 0 nothing yet, -EPIPE the peer closed (close_notify),
 * -EPROTO a failure (tls_conn_error). */
ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t cap);
/* Plaintext to send: all of it is taken (the output grows): 0 or -EPROTO. */
int tls_conn_write(struct tls_conn *t, const void *p, size_t n);
/* Queues close_notify. */
void tls_conn_shutdown(struct tls_conn *t);
/* Ciphertext waiting to be sent, and taking up to cap octets of it. */
size_t tls_conn_out_pending(const struct tls_conn *t);
size_t tls_conn_out_take(struct tls_conn *t, void *buf, size_t cap);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" once ready. */
const char *tls_conn_desc(const struct tls_conn *t);
const char *tls_conn_protocol(const struct tls_conn *t); /* "TLSv1.3" */
/* The reason of the last failure ("" if none). */
const char *tls_conn_error(const struct tls_conn *t);
/* Client: the peer's chain and name were verified. */
bool tls_conn_verified(const struct tls_conn *t);

#endif
