/*
 * NAME
 *	conn_tls - the TLS side of a connection (STARTTLS and implicit TLS)
 * DESCRIPTION
 *	A TLS connection has a tls_conn (net/tls.h) between the socket and
 *	the protocol.  Received ciphertext is fed to it and the ring buffer
 *	goes straight back; the plaintext it yields is read into a heap mbuf
 *	(NET_TLS_READ octets) that the protocol slices like a ring buffer, so
 *	its zero-copy body handling holds within the decrypted buffer, but
 *	each octet is copied once more than in plaintext (see docs/tls.md).
 *	On the way out, the protocol's output is taken only
 *	when the previous ciphertext has been sent, written through SSL, and
 *	the ciphertext is copied into c->tx for the send: the one-send-at-
 *	a-time back-pressure of plaintext connections is kept.
 *
 *	STARTTLS: once the protocol accepted it (proto->starttls_wanted) the
 *	engine is created; the protocol's pending output (SMTP's 220) still
 *	goes out in plaintext, and every octet received afterwards is
 *	ciphertext.  Input the peer pipelined behind the request was already
 *	dropped by the protocol.  Implicit TLS (a listener with implicit_tls,
 *	RFC 8314): the engine exists from the accept and the protocol starts
 *	(its greeting) when the handshake is done.
 *
 *	A handshake has NET_TLS_HANDSHAKE_MS (or idle_timeout, if shorter);
 *	a failed one sends OpenSSL's alert and closes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/clock.h"
#include "core/base/log.h"
#include "net/net_int.h"

bool net_tls_begin(struct net_worker *w, struct net_conn *c)
{
    if (w->srv->tls == NULL)
        return false;
    c->tls = tls_conn_accept(w->srv->tls);
    if (c->tls == NULL) {
        log_msg(LOG_WARN, "out of memory for a TLS connection; connection closed");
        return false;
    }
    uint64_t bound = w->srv->set.idle_timeout_ms;
    if (bound == 0 || bound > NET_TLS_HANDSHAKE_MS)
        bound = NET_TLS_HANDSHAKE_MS;
    c->tls_deadline_ms = clock_coarse_ms() + bound;
    c->tls_up = c->tls_bye = false;
    return true;
}

void net_tls_free(struct net_conn *c)
{
    tls_conn_destroy(c->tls);
    c->tls = NULL;
    free(c->tx);
    c->tx = NULL;
    c->tx_len = c->tx_cap = 0;
    c->tls_up = c->tls_bye = c->send_tx = false;
}

static struct mbuf *net_tls_rxbuf(struct net_worker *w)
{
    struct mbuf *m = w->tls_spare;
    if (m != NULL) {
        w->tls_spare = NULL;
        return m;
    }
    return mbuf_heap(NET_TLS_READ);
}

/* The handshake finished: the protocol learns it (and, for implicit TLS,
 * starts with its greeting). */
static void net_tls_up(struct net_worker *w, struct net_conn *c)
{
    c->tls_up = true;
    log_msg(LOG_DEBUG, "TLS: %s", tls_conn_desc(c->tls));
    w->proto->tls_started(c->pc, tls_conn_desc(c->tls));
    if (c->implicit_tls)
        w->proto->start(c->pc, c->start_admit);
}

void net_tls_input(struct net_worker *w, struct net_conn *c, const char *p, size_t n)
{
    net_conn_mark(w, c);
    const struct net_proto *pr = w->proto;
    if (pr->closing(c->pc))
        return; /* a failed handshake or the end: nothing more is read */
    if (tls_conn_feed(c->tls, p, n) < 0) {
        pr->eof(c->pc);
        return;
    }
    if (!c->tls_up) {
        enum tls_status st = tls_conn_handshake(c->tls);
        if (st == TLS_WANT)
            return;
        if (st == TLS_FAILED) {
            log_msg(LOG_INFO, "TLS handshake failed: %s", tls_conn_error(c->tls));
            pr->eof(c->pc); /* the alert goes out, then the close */
            return;
        }
        net_tls_up(w, c);
    }
    /* every plaintext octet now: the ciphertext is already ours, the
     * protocol's backlog bound applies to what it holds */
    for (;;) {
        if (c->state != NET_CONN_OPEN || pr->closing(c->pc))
            return;
        struct mbuf *m = net_tls_rxbuf(w);
        if (m == NULL) {
            pr->eof(c->pc);
            return;
        }
        size_t got = 0;
        ssize_t r = 0;
        while (got < NET_TLS_READ) {
            r = tls_conn_read(c->tls, m->data + got, NET_TLS_READ - got);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got > 0)
            pr->input(c->pc, m, 0, (uint32_t)got);
        if (m->refs == 1 && w->tls_spare == NULL)
            w->tls_spare = m; /* the protocol kept nothing of it */
        else
            mbuf_unref(m);
        if (r < 0) {
            if (r == -EPROTO)
                log_msg(LOG_DEBUG, "TLS: %s", tls_conn_error(c->tls));
            pr->eof(c->pc);
            return;
        }
        if (got < NET_TLS_READ)
            return;
    }
}

/* Starts a send of pending ciphertext: true if one was started. */
static bool net_tls_send_tx(struct net_worker *w, struct net_conn *c)
{
    if (tls_conn_out_pending(c->tls) == 0)
        return false;
    if (c->tx == NULL) {
        c->tx = malloc(NET_TLS_TX);
        if (c->tx == NULL) {
            net_conn_close_now(w, c);
            return true;
        }
        c->tx_cap = NET_TLS_TX;
    }
    c->tx_len = tls_conn_out_take(c->tls, c->tx, c->tx_cap);
    if (c->tx_len == 0)
        return false;
    c->send_p = c->tx;
    c->send_left = c->tx_len;
    c->send_tx = true;
    net_conn_submit_send(w, c);
    return true;
}

/* No send in flight.  True when there is nothing to send (the caller may
 * then move a closing connection to LINGER). */
bool net_tls_flush(struct net_worker *w, struct net_conn *c)
{
    const struct net_proto *pr = w->proto;
    const char *p;
    size_t len;
    if (!c->tls_up) {
        /* the answer to STARTTLS is plaintext, and it goes before any record */
        if (pr->out_take(c->pc, &p, &len)) {
            c->send_p = p;
            c->send_left = len;
            c->send_tx = false;
            net_conn_submit_send(w, c);
            return false;
        }
        return !net_tls_send_tx(w, c);
    }
    if (pr->out_take(c->pc, &p, &len)) {
        int rc = tls_conn_write(c->tls, p, len);
        pr->out_done(c->pc); /* copied into the engine */
        if (rc < 0) {
            log_msg(LOG_DEBUG, "TLS write: %s", tls_conn_error(c->tls));
            pr->eof(c->pc);
        }
    } else if (pr->closing(c->pc) && !c->tls_bye) {
        tls_conn_shutdown(c->tls);
        c->tls_bye = true;
    }
    return !net_tls_send_tx(w, c);
}
