/*
 * NAME
 *	qmgr_conn - outbound SMTP connections on the queue manager's ring
 * DESCRIPTION
 *	A connection walks its destination's addresses in order (RFC 5321
 *	section 5: the next MX, or the next address of the same MX, when a
 *	connection cannot be made or the greeting is not 220), speaks SMTP
 *	through osmtp, and delivers one job at a time; when a job is done it
 *	takes the destination's next job (connection reuse) or waits idle for
 *	connection_cache_time.  Each connection has at most one recv, one
 *	send, and at connect a connect with its link timeout in flight; it is
 *	freed once none is.
 *
 *	The body is streamed from the spool message's pieces: in DATA mode
 *	dot-stuffed chunk by chunk (the only copy that transparency forces);
 *	in BDAT mode memory pieces go out as they are and file pieces are
 *	read in 64 KiB chunks.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "core/base/log.h"
#include "core/queue/qmgr_int.h"
#include "net/tls.h"

static void qconn_pump(struct qconn *c);
static void qconn_free(struct qconn *c);

static void qconn_on_rcpt(void *arg, size_t i, const struct osmtp_reply *r);
static void qconn_on_done(void *arg, const struct osmtp_reply *r);
static void qconn_on_fail(void *arg, const struct osmtp_reply *r);
static const struct osmtp_cb qconn_cb = {qconn_on_rcpt, qconn_on_done, qconn_on_fail};

static void qconn_addr_text(const struct dns_addr *a, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
    } else if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
    }
    snprintf(out, len, "%s[%s]:%u", a->host[0] ? a->host : ip, ip, port);
}

static enum osmtp_tls qconn_tls(const struct qmgr *q, enum route_tls t)
{
    switch (t) {
    case ROUTE_TLS_ENCRYPT:
        return OSMTP_TLS_ENCRYPT;
    case ROUTE_TLS_VERIFY:
        return OSMTP_TLS_VERIFY;
    case ROUTE_TLS_MAY:
        return q->tlsc ? OSMTP_TLS_MAY : OSMTP_TLS_NONE;
    default:
        return OSMTP_TLS_NONE;
    }
}

static enum tls_verify qconn_verify(enum route_tls t)
{
    return t == ROUTE_TLS_VERIFY ? TLS_VERIFY_VERIFY
           : t == ROUTE_TLS_ENCRYPT ? TLS_VERIFY_ENCRYPT
                                    : TLS_VERIFY_MAY;
}

/* Starts a connect to c->addrs[c->ai]. */
static int qconn_connect(struct qconn *c)
{
    struct qmgr *q = c->q;
    const struct dns_addr *a = &c->addrs[c->ai];
    qconn_addr_text(a, c->peer, sizeof(c->peer));
    snprintf(c->host, sizeof(c->host), "%s", a->host);
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->st = QC_CONNECTING;
    struct io_uring_sqe *sqe = qmgr_sqe(q);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&a->ss, a->len);
    io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_CONNECT));
    sqe->flags |= IOSQE_IO_LINK;
    static struct __kernel_timespec ts;
    ts.tv_sec = (long long)(q->cfg->connect_timeout_ms / 1000);
    ts.tv_nsec = (long long)(q->cfg->connect_timeout_ms % 1000) * 1000000;
    sqe = qmgr_sqe(q);
    io_uring_prep_link_timeout(sqe, &ts, 0);
    io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_LTIMEOUT));
    c->inflight += 2;
    /* the timespec is read at submission: submit now */
    io_uring_submit(&q->ring);
    return 0;
}

struct qconn *qmgr_conn_open(struct qmgr *q, struct qdest *d)
{
    struct qconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->q = q;
    c->d = d;
    c->fd = -1;
    c->pipe_r = c->pipe_w = -1;
    c->addrs = malloc(d->naddr * sizeof(*c->addrs));
    if (c->addrs == NULL) {
        free(c);
        return NULL;
    }
    memcpy(c->addrs, d->addrs, d->naddr * sizeof(*c->addrs));
    c->naddr = d->naddr;
    d->active++;
    q->nconns++;
    c->anext = q->conns;
    if (q->conns)
        q->conns->aprev = c;
    q->conns = c;
    atomic_fetch_add_explicit(&q->st_conns, 1, memory_order_relaxed);
    int rc;
    while ((rc = qconn_connect(c)) < 0 && ++c->ai < c->naddr)
        ;
    if (rc < 0) {
        /* no socket at all (descriptors exhausted): the job is deferred by
         * the caller's give, which sees the closing state */
        c->st = QC_CLOSING;
        snprintf(c->peer, sizeof(c->peer), "%s", d->key);
    }
    c->deadline = 0;
    return c;
}

static void qconn_arm_recv(struct qconn *c)
{
    if (c->recv_armed || c->st == QC_CLOSING || c->fd < 0)
        return;
    struct io_uring_sqe *sqe = qmgr_sqe(c->q);
    io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof(c->rbuf), 0);
    io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_RECV));
    c->recv_armed = true;
    c->inflight++;
}

/* Sends what the TLS engine has for the wire.  false: nothing pending. */
static bool qconn_send_cipher(struct qconn *c)
{
    size_t n = tls_conn_out_pending(c->tls);
    if (n == 0)
        return false;
    if (n > c->cbuf_cap) {
        char *b = realloc(c->cbuf, n);
        if (b == NULL)
            return false;
        c->cbuf = b;
        c->cbuf_cap = n;
    }
    n = tls_conn_out_take(c->tls, c->cbuf, c->cbuf_cap);
    c->out = c->cbuf;
    c->outlen = n;
    c->outoff = 0;
    c->sent_osmtp = false;
    c->send_busy = true;
    struct io_uring_sqe *sqe = qmgr_sqe(c->q);
    io_uring_prep_send(sqe, c->fd, c->cbuf, n, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_SEND));
    c->inflight++;
    return true;
}

static void qconn_send(struct qconn *c, const char *p, size_t len, bool from_osmtp)
{
    if (c->tls_on) {
        /* the plaintext is in the engine at once; its ciphertext goes out */
        if (tls_conn_write(c->tls, p, len) < 0 || !qconn_send_cipher(c)) {
            log_msg(LOG_WARN, "qmgr: %s: TLS write: %s", c->peer, tls_conn_error(c->tls));
            if (c->fd >= 0)
                shutdown(c->fd, SHUT_RDWR);
            return;
        }
        c->sent_osmtp = from_osmtp;
        return;
    }
    c->out = p;
    c->outlen = len;
    c->outoff = 0;
    c->sent_osmtp = from_osmtp;
    c->send_busy = true;
    struct io_uring_sqe *sqe = qmgr_sqe(c->q);
    io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_SEND));
    c->inflight++;
}

void qmgr_conn_close(struct qconn *c)
{
    if (c->st == QC_CLOSING)
        return;
    if (c->st == QC_IDLE) {
        struct qconn **pp = &c->d->idle;
        while (*pp && *pp != c)
            pp = &(*pp)->inext;
        if (*pp)
            *pp = c->inext;
    }
    c->st = QC_CLOSING;
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR); /* in-flight ops complete */
    if (c->inflight == 0)
        qconn_free(c);
}

static void qconn_free(struct qconn *c)
{
    struct qmgr *q = c->q;
    if (c->job) {
        qmgr_job_tempfail_all(q, c->job, "4.4.2", "connection closed", c->peer);
        c->job = NULL;
    }
    if (c->call)
        sink_call_destroy(c->call);
    if (c->fd >= 0)
        close(c->fd);
    osmtp_destroy(c->c);
    if (c->tls)
        tls_conn_destroy(c->tls);
    free(c->cbuf);
    free(c->pbuf);
    if (c->pipe_r >= 0) {
        close(c->pipe_r);
        close(c->pipe_w);
    }
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        q->conns = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    c->d->active--;
    q->nconns--;
    qmgr_dest_wake(q, c->d);
    free(c->addrs);
    free(c->bbuf);
    free(c->rdbuf);
    free(c->om_rcpts);
    free(c->om_map);
    free(c);
}

/* ---- the job on this connection ---- */

static void qconn_next_job(struct qconn *c)
{
    struct qmgr *q = c->q;
    struct qdest *d = c->d;
    c->txn_on = false;
    c->msg_step = 0;
    c->data_seen = false;
    c->body_on = false;
    if (d->head) {
        struct qjob *j = d->head;
        d->head = j->next;
        if (d->head == NULL)
            d->tail = NULL;
        d->njobs--;
        j->next = NULL;
        c->job = j;
        atomic_fetch_add_explicit(&q->st_reused, 1, memory_order_relaxed);
        return;
    }
    c->st = QC_IDLE;
    c->idle_since = clock_mono_ms();
    c->deadline = q->cfg->connection_cache_ms ? c->idle_since + q->cfg->connection_cache_ms : 0;
    if (q->conn_starved)
        c->deadline = c->idle_since; /* another destination waits for the slot: the tick
                                      * of this loop turn retires it */
    c->inext = d->idle;
    d->idle = c;
    if (q->cfg->connection_cache_ms == 0)
        osmtp_quit(c->c);
}

void qmgr_conn_give(struct qconn *c, struct qjob *j)
{
    if (c->st == QC_CLOSING) {
        /* the socket could not even be created */
        qmgr_dest_conn_failed(c->q, c->d, "cannot create a socket");
        c->job = j;
        if (c->inflight == 0)
            qconn_free(c);
        return;
    }
    c->job = j;
    c->txn_on = false;
    c->msg_step = 0;
    c->data_seen = false;
    if (c->st == QC_IDLE) {
        c->st = QC_OPEN;
        c->deadline = clock_mono_ms() + c->q->cfg->command_timeout_ms;
        atomic_fetch_add_explicit(&c->q->st_reused, 1, memory_order_relaxed);
        qconn_pump(c);
    }
}

/* Applies an outbound sink's verdict on recipient k (out_rcpt) or on the
 * whole job (k == SIZE_MAX).  true: the recipient or the job goes on. */
static bool qconn_verdict(struct qconn *c, const struct sink_result *r, size_t k)
{
    int code;
    const char *st;
    const char *dflt;
    switch (r->verdict) {
    case SINK_REJECT:
        code = 550, st = "5.7.1", dflt = "refused by a sink";
        break;
    case SINK_TEMPFAIL:
    case SINK_DROP:
        code = 451, st = "4.7.1", dflt = "deferred by a sink";
        break;
    case SINK_DISCARD:
        code = 250, st = "2.0.0", dflt = "discarded by a sink";
        break;
    default:
        return true;
    }
    if (r->code)
        code = r->code;
    if (r->enhanced[0])
        st = r->enhanced;
    const char *text = r->text[0] ? r->text : dflt;
    struct qjob *j = c->job;
    if (k != SIZE_MAX) {
        qmgr_rcpt_result(c->q, j, k, code, st, text, NULL);
        return false;
    }
    for (size_t i = 0; i < j->n; i++)
        if (j->m->rtry[j->ri[i]] == 0)
            qmgr_rcpt_result(c->q, j, i, code, st, text, NULL);
    return false;
}

/* The connection is READY with a job: run out_message and out_rcpt, then
 * start the transaction.  false: waiting for a sink. */
static bool qconn_start_txn(struct qconn *c)
{
    struct qjob *j = c->job;
    struct sink_result r;
    if (c->msg_step == 0) {
        if (qmgr_sinks_bound(c->q, SINK_EV_OUT_MESSAGE)) {
            if (!qmgr_sinks_out(c, SINK_EV_OUT_MESSAGE, SIZE_MAX, &r))
                return false;
            if (!qconn_verdict(c, &r, SIZE_MAX)) {
                qmgr_job_done(c->q, j);
                c->job = NULL;
                qconn_next_job(c);
                return true;
            }
        }
        c->msg_step = 1;
    }
    for (; (size_t)c->msg_step <= j->n; c->msg_step++) {
        size_t k = (size_t)c->msg_step - 1;
        j->sent[k] = 1;
        if (!qmgr_sinks_bound(c->q, SINK_EV_OUT_RCPT))
            continue;
        if (!qmgr_sinks_out(c, SINK_EV_OUT_RCPT, k, &r))
            return false; /* resumes at the same k with c->sres */
        if (!qconn_verdict(c, &r, k))
            j->sent[k] = 0;
    }
    free(c->om_rcpts);
    free(c->om_map);
    c->om_rcpts = calloc(j->n, sizeof(*c->om_rcpts));
    c->om_map = calloc(j->n, sizeof(*c->om_map));
    c->om_n = 0;
    if (c->om_rcpts == NULL || c->om_map == NULL) {
        qmgr_job_tempfail_all(c->q, j, "4.3.0", "out of memory", NULL);
        c->job = NULL;
        qconn_next_job(c);
        return true;
    }
    for (size_t k = 0; k < j->n; k++) {
        if (j->sent[k] && j->m->rtry[j->ri[k]] == 0) {
            c->om_rcpts[c->om_n] = j->addrs[k];
            c->om_map[c->om_n++] = k;
        }
    }
    if (c->om_n == 0) {
        qmgr_job_done(c->q, j);
        c->job = NULL;
        qconn_next_job(c);
        return true;
    }
    struct qmsg *m = j->m;
    c->om.sender = m->sender;
    c->om.nrcpt = c->om_n;
    c->om.rcpts = c->om_rcpts;
    c->om.size = spool_msg_size(m->sm);
    c->om.body_8bit = m->body_8bit;
    c->om.smtputf8 = m->smtputf8;
    c->om.envid = NULL;
    c->txn_on = true;
    c->piece = 0;
    c->poff = 0;
    c->body_on = false;
    osmtp_send(c->c, &c->om); /* refusals come back through the callbacks */
    return true;
}

/* Produces the next body chunk; false when the body is complete. */
static bool qconn_body_chunk(struct qconn *c)
{
    const struct spool_piece *pv;
    size_t np = spool_msg_pieces(c->job->m->sm, &pv);
    bool data = osmtp_body_mode(c->c) == OSMTP_BODY_DATA;
    while (c->piece < np && c->poff >= pv[c->piece].len) {
        c->piece++;
        c->poff = 0;
    }
    if (c->piece >= np)
        return false;
    const struct spool_piece *p = &pv[c->piece];
    size_t n = p->len - c->poff;
    if (n > QMGR_BODY_CHUNK)
        n = QMGR_BODY_CHUNK;
    if (!data && p->fd >= 0 && !c->tls_on && c->fd >= 0) {
        /* BDAT needs no stuffing: the spool's octets go from the page
         * cache to the socket through a pipe, never through user space */
        if (c->pipe_r < 0) {
            int pp[2];
            if (pipe2(pp, O_CLOEXEC) == 0) {
                c->pipe_r = pp[0];
                c->pipe_w = pp[1];
            }
        }
        if (c->pipe_r >= 0) {
            struct io_uring_sqe *sqe = qmgr_sqe(c->q);
            io_uring_prep_splice(sqe, p->fd, (int64_t)(p->off + c->poff), c->pipe_w, -1,
                                 (unsigned)n, SPLICE_F_MOVE);
            io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_SPLICE_IN));
            c->inflight++;
            c->send_busy = true;
            c->sent_osmtp = false;
            return true;
        }
    }
    const char *src;
    if (p->fd < 0) {
        src = p->mem + c->poff;
    } else {
        if (c->rdbuf == NULL && (c->rdbuf = malloc(QMGR_BODY_CHUNK)) == NULL)
            return false;
        ssize_t r = pread(p->fd, c->rdbuf, n, (off_t)(p->off + c->poff));
        if (r <= 0) {
            log_msg(LOG_ERROR, "qmgr: message %016llx: reading the spool: %s",
                    (unsigned long long)c->job->m->id, r < 0 ? strerror(errno) : "short file");
            return false;
        }
        n = (size_t)r;
        src = c->rdbuf;
    }
    c->poff += n;
    if (!data) {
        qconn_send(c, src, n, false);
        return true;
    }
    if (c->bbuf == NULL && (c->bbuf = malloc(2 * QMGR_BODY_CHUNK + 8)) == NULL)
        return false;
    size_t out = osmtp_stuff(c->c, src, n, c->bbuf, 2 * QMGR_BODY_CHUNK + 8);
    qconn_send(c, c->bbuf, out, false);
    return true;
}

/* Moves the connection on as far as it can without waiting. */
static void qconn_pump(struct qconn *c)
{
    struct qmgr *q = c->q;
    for (;;) {
        if (c->st == QC_CLOSING || c->sink_wait || c->c == NULL || c->reconnect)
            return;
        enum osmtp_state s = osmtp_state(c->c);
        if (s == OSMTP_TLS_HANDSHAKE) {
            if (c->send_busy)
                return;
            if (c->tls == NULL) {
                c->tls = q->tlsc ? tls_conn_connect(q->tlsc, c->host, qconn_verify(c->d->rt.tls))
                                 : NULL;
                if (c->tls == NULL) {
                    osmtp_tls_done(c->c, false, "no TLS client context");
                    continue;
                }
            }
            enum tls_status ts = tls_conn_handshake(c->tls);
            if (qconn_send_cipher(c))
                return; /* the handshake goes on when this is sent */
            if (ts == TLS_OK) {
                c->tls_on = true;
                log_msg(LOG_DEBUG, "qmgr: %s: %s", c->peer, tls_conn_desc(c->tls));
                osmtp_tls_done(c->c, true, NULL);
            } else if (ts == TLS_FAILED && c->d->rt.tls == ROUTE_TLS_MAY && !c->plain_retry) {
                /* opportunistic: a broken TLS stack at the next hop must not
                 * hold the mail; the same address again, in plaintext (as
                 * Postfix does) */
                log_msg(LOG_INFO, "qmgr: %s: TLS handshake failed (%s); trying again without TLS",
                        c->peer, tls_conn_error(c->tls));
                c->plain_retry = true;
                int fd = c->fd;
                c->fd = -1;
                if (fd >= 0) {
                    shutdown(fd, SHUT_RDWR);
                    close(fd); /* the recv in flight completes: then the reconnect */
                }
                c->reconnect = true;
                return;
            } else if (ts == TLS_FAILED) {
                char why[300];
                snprintf(why, sizeof(why), "TLS handshake: %.250s", tls_conn_error(c->tls));
                osmtp_tls_done(c->c, false, why);
            } else {
                return; /* wants the peer's next flight */
            }
            continue;
        }
        if (s == OSMTP_READY && !c->session_seen) {
            c->greeted = true;
            qmgr_dest_conn_ok(q, c->d);
            struct sink_result r;
            if (qmgr_sinks_bound(q, SINK_EV_OUT_SESSION)) {
                if (!qmgr_sinks_out(c, SINK_EV_OUT_SESSION, SIZE_MAX, &r))
                    return;
                if (r.verdict == SINK_REJECT || r.verdict == SINK_TEMPFAIL ||
                    r.verdict == SINK_DROP) {
                    c->session_seen = true;
                    if (c->job) {
                        qconn_verdict(c, &r, SIZE_MAX);
                        qmgr_job_done(q, c->job);
                        c->job = NULL;
                    }
                    c->st = QC_OPEN;
                    osmtp_quit(c->c);
                    continue;
                }
            }
            c->session_seen = true;
        }
        if (s == OSMTP_READY && c->job && !c->txn_on && c->st == QC_OPEN) {
            if (!qconn_start_txn(c))
                return;
            continue;
        }
        if (s == OSMTP_READY && c->job == NULL && c->st == QC_OPEN)
            qconn_next_job(c);
        if (c->send_busy)
            return;
        const char *p;
        size_t len;
        if (osmtp_out_take(c->c, &p, &len)) {
            qconn_send(c, p, len, true);
            c->deadline = clock_mono_ms() + q->cfg->command_timeout_ms;
            return;
        }
        s = osmtp_state(c->c);
        if (s == OSMTP_BODY) {
            if (!c->data_seen) {
                struct sink_result r;
                if (qmgr_sinks_bound(q, SINK_EV_OUT_DATA)) {
                    if (!qmgr_sinks_out(c, SINK_EV_OUT_DATA, SIZE_MAX, &r))
                        return;
                    if (r.verdict == SINK_REJECT || r.verdict == SINK_TEMPFAIL ||
                        r.verdict == SINK_DROP || r.verdict == SINK_DISCARD) {
                        /* the only way to take back a DATA: drop the connection */
                        c->data_seen = true;
                        qconn_verdict(c, &r, SIZE_MAX);
                        qmgr_job_done(q, c->job);
                        c->job = NULL;
                        qmgr_conn_close(c);
                        return;
                    }
                }
                c->data_seen = true;
                c->body_on = true;
            }
            if (c->body_on) {
                if (qconn_body_chunk(c))
                    return;
                c->body_on = false;
                osmtp_body_end(c->c);
                continue;
            }
        }
        if (s == OSMTP_CLOSED || s == OSMTP_FAILED) {
            qmgr_conn_close(c);
            return;
        }
        return;
    }
}

/* Resumes after a pending outbound sink. */
void qmgr_conn_sink_done(struct qconn *c)
{
    c->sink_wait = false;
    /* the pending event's result replays through the same calls: the sink
     * layer hands c->sres back as a finished result */
    qconn_pump(c);
}

/* ---- osmtp callbacks ---- */

static void qconn_on_rcpt(void *arg, size_t i, const struct osmtp_reply *r)
{
    struct qconn *c = arg;
    if (c->job == NULL || i >= c->om_n)
        return;
    size_t k = c->om_map[i];
    if (r->code >= 200 && r->code < 300)
        c->job->sent[k] = 2; /* accepted: the final reply decides */
    else
        qmgr_rcpt_result(c->q, c->job, k, r->code ? r->code : 451, r->enhanced, r->text,
                         c->peer);
}

static void qconn_on_done(void *arg, const struct osmtp_reply *r)
{
    struct qconn *c = arg;
    struct qjob *j = c->job;
    if (j == NULL)
        return;
    int code = r->code ? r->code : 451;
    const char *st = r->enhanced[0] ? r->enhanced : (code < 500 ? "4.4.2" : "5.0.0");
    for (size_t i = 0; i < c->om_n; i++) {
        size_t k = c->om_map[i];
        if (j->m->rtry[j->ri[k]] != 0)
            continue;
        qmgr_rcpt_result(c->q, j, k, code, st, r->text, c->peer);
    }
    c->job = NULL;
    c->txn_on = false;
    c->msgs++;
    qmgr_job_done(c->q, j);
    if (osmtp_state(c->c) == OSMTP_READY && c->st == QC_OPEN)
        qconn_next_job(c);
}

static void qconn_on_fail(void *arg, const struct osmtp_reply *r)
{
    struct qconn *c = arg;
    struct qmgr *q = c->q;
    char why[700];
    if (c->timed_out)
        snprintf(why, sizeof(why), "timeout talking to %.300s (%.300s)", c->peer, r->text);
    else if (r->code)
        snprintf(why, sizeof(why), "%.300s said: %d %.300s", c->peer, r->code, r->text);
    else
        snprintf(why, sizeof(why), "%.300s: %.300s", c->peer, r->text);
    if (!c->greeted) {
        log_msg(LOG_INFO, "qmgr: %s: %s", c->d->key, why);
        /* next address (RFC 5321 5.1) with the same job */
        if (c->ai + 1 < c->naddr && c->st != QC_CLOSING) {
            c->ai++;
            int fd = c->fd;
            c->fd = -1;
            if (fd >= 0) {
                shutdown(fd, SHUT_RDWR);
                close(fd); /* the recv in flight completes with an error */
            }
            c->reconnect = true;
            return;
        }
        qmgr_dest_conn_failed(q, c->d, why);
        if (c->job) {
            qmgr_job_tempfail_all(q, c->job, "4.4.1", why, c->peer);
            c->job = NULL;
        }
    } else if (c->job) {
        qmgr_job_tempfail_all(q, c->job, "4.4.2", why, c->peer);
        c->job = NULL;
    }
    qmgr_conn_close(c);
}

/* ---- completions ---- */

/* Still talking: not closing, and not waiting to move to the next address
 * (a recv, send or splice completing then has nothing more to do). */
static bool qconn_talking(const struct qconn *c)
{
    return c->st != QC_CLOSING && c->c != NULL && !c->reconnect;
}

/* The peer is gone or an I/O failed: osmtp learns of it (its callbacks may
 * choose the next address), and unless they did the connection closes. */
static void qconn_lost(struct qconn *c)
{
    osmtp_eof(c->c);
    if (c->st != QC_CLOSING && !c->reconnect)
        qmgr_conn_close(c);
}

/* A connect failed (res < 0): the next address that takes a connect, or the
 * destination failed and the job's recipients wait for the retry. */
static void qconn_connect_failed(struct qmgr *q, struct qconn *c, int res)
{
    char why[400];
    snprintf(why, sizeof(why), "connect to %s: %s", c->peer,
             res == -ECANCELED ? "timed out" : strerror(-res));
    log_msg(LOG_INFO, "qmgr: %s", why);
    close(c->fd);
    c->fd = -1;
    while (c->ai + 1 < c->naddr) {
        c->ai++;
        if (qconn_connect(c) == 0)
            return;
    }
    qmgr_dest_conn_failed(q, c->d, why);
    if (c->job) {
        qmgr_job_tempfail_all(q, c->job, "4.4.1", why, c->peer);
        c->job = NULL;
    }
    qmgr_conn_close(c);
}

/* QOP_CONNECT: connected, osmtp takes over and waits for the greeting. */
static void qconn_connect_done(struct qmgr *q, struct qconn *c, int res)
{
    if (c->st == QC_CLOSING)
        return;
    if (res < 0) {
        qconn_connect_failed(q, c, res);
        return;
    }
    c->st = QC_OPEN;
    struct osmtp_opts o = {.helo_name = q->cfg->hostname,
                           .tls = c->plain_retry ? OSMTP_TLS_NONE : qconn_tls(q, c->d->rt.tls),
                           .use_chunking = true,
                           .use_pipelining = true};
    c->c = osmtp_create(&o, &qconn_cb, c);
    if (c->c == NULL) {
        qmgr_conn_close(c);
        return;
    }
    c->deadline = clock_mono_ms() + q->cfg->command_timeout_ms;
    qconn_arm_recv(c);
}

/* After input was handed to osmtp: the command timer restarts (an idle
 * connection keeps its cache timer), the next recv, and the output. */
static void qconn_after_input(struct qmgr *q, struct qconn *c)
{
    if (!qconn_talking(c))
        return;
    if (c->st != QC_IDLE)
        c->deadline = clock_mono_ms() + q->cfg->command_timeout_ms;
    qconn_arm_recv(c);
    qconn_pump(c);
}

/* res octets of ciphertext: through the TLS engine, whose plaintext (once
 * the handshake is done) goes to osmtp. */
static void qconn_recv_tls(struct qmgr *q, struct qconn *c, size_t n)
{
    if (tls_conn_feed(c->tls, c->rbuf, n) < 0) {
        qconn_lost(c);
        return;
    }
    if (c->tls_on) {
        if (c->pbuf == NULL && (c->pbuf = malloc(QMGR_RBUF)) == NULL)
            return;
        ssize_t got;
        while (qconn_talking(c) && (got = tls_conn_read(c->tls, c->pbuf, QMGR_RBUF)) > 0)
            osmtp_input(c->c, c->pbuf, (size_t)got);
    }
    qconn_after_input(q, c);
}

/* QOP_RECV: input, or the end of the connection. */
static void qconn_recv_done(struct qmgr *q, struct qconn *c, int res)
{
    c->recv_armed = false;
    if (!qconn_talking(c))
        return;
    if (res > 0 && c->tls != NULL) {
        qconn_recv_tls(q, c, (size_t)res);
    } else if (res > 0) {
        osmtp_input(c->c, c->rbuf, (size_t)res);
        qconn_after_input(q, c);
    } else if (c->st == QC_IDLE && c->greeted) {
        qmgr_conn_close(c); /* the server closed an idle connection */
    } else {
        osmtp_eof(c->c);
        if (c->st != QC_CLOSING)
            qconn_pump(c);
        if (c->st != QC_CLOSING && !c->reconnect)
            qmgr_conn_close(c);
    }
}

/* QOP_SPLICE_IN / QOP_SPLICE_OUT: a BDAT body moving spool -> pipe ->
 * socket; the pipe is emptied before the next piece goes in. */
static void qconn_splice_done(struct qmgr *q, struct qconn *c, enum qmgr_op op, int res)
{
    if (!qconn_talking(c)) {
        c->send_busy = false;
        return;
    }
    if (res <= 0) {
        log_msg(LOG_WARN, "qmgr: %s: splicing the body: %s", c->peer,
                res == 0 ? "nothing moved" : strerror(-res));
        c->send_busy = false;
        qconn_lost(c);
        return;
    }
    if (op == QOP_SPLICE_IN) {
        c->poff += (uint64_t)res;
        c->pipe_fill = (size_t)res;
    } else {
        c->pipe_fill -= (size_t)res;
        /* relaxed: a statistics counter, read for reports only */
        atomic_fetch_add_explicit(&q->st_spliced, (uint64_t)res, memory_order_relaxed);
    }
    if (c->pipe_fill > 0) {
        struct io_uring_sqe *sqe = qmgr_sqe(q);
        io_uring_prep_splice(sqe, c->pipe_r, -1, c->fd, -1, (unsigned)c->pipe_fill, SPLICE_F_MOVE);
        io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_SPLICE_OUT));
        c->inflight++;
        return;
    }
    c->send_busy = false;
    qconn_pump(c);
}

/* QOP_SEND: the rest of a short send, or the buffer is done with. */
static void qconn_send_done(struct qmgr *q, struct qconn *c, int res)
{
    if (!qconn_talking(c)) {
        c->send_busy = false;
        return;
    }
    if (res < 0) {
        c->send_busy = false;
        osmtp_eof(c->c);
        if (c->st != QC_CLOSING)
            qmgr_conn_close(c);
        return;
    }
    c->outoff += (size_t)res;
    if (c->outoff < c->outlen) {
        struct io_uring_sqe *sqe = qmgr_sqe(q);
        io_uring_prep_send(sqe, c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, qmgr_ud(c, QOP_SEND));
        c->inflight++;
        return;
    }
    c->send_busy = false;
    if (c->sent_osmtp)
        osmtp_out_done(c->c);
    qconn_pump(c);
}

/* The previous address failed after connecting and no op is in flight any
 * more: the session state goes and the next address is tried with the
 * same job. */
static void qconn_reconnect(struct qmgr *q, struct qconn *c)
{
    c->reconnect = false;
    c->send_busy = false;
    c->session_seen = false;
    c->txn_on = false;
    c->msg_step = 0;
    osmtp_destroy(c->c);
    c->c = NULL;
    if (c->tls) {
        tls_conn_destroy(c->tls);
        c->tls = NULL;
    }
    c->tls_on = false;
    if (qconn_connect(c) < 0) {
        qmgr_dest_conn_failed(q, c->d, "cannot create a socket");
        qmgr_conn_close(c);
    }
}

void qmgr_conn_cqe(struct qmgr *q, struct qconn *c, enum qmgr_op op, int res)
{
    /* this op stays counted until the end: nothing below can free c (a
     * close from inside osmtp's callbacks only marks it closing) */
    switch (op) {
    case QOP_CONNECT:
        qconn_connect_done(q, c, res);
        break;
    case QOP_RECV:
        qconn_recv_done(q, c, res);
        break;
    case QOP_SPLICE_IN:
    case QOP_SPLICE_OUT:
        qconn_splice_done(q, c, op, res);
        break;
    case QOP_SEND:
        qconn_send_done(q, c, res);
        break;
    case QOP_LTIMEOUT: /* the connect completes with -ECANCELED */
    default:
        break;
    }
    c->inflight--;
    if (c->reconnect && c->inflight == 0 && c->st != QC_CLOSING)
        qconn_reconnect(q, c);
    if (c->st == QC_CLOSING && c->inflight == 0)
        qconn_free(c);
}

/* An idle connection says goodbye (QUIT, then close). */
static void qconn_retire(struct qconn *c, uint64_t now)
{
    struct qconn **pp = &c->d->idle;
    while (*pp && *pp != c)
        pp = &(*pp)->inext;
    if (*pp)
        *pp = c->inext;
    c->st = QC_OPEN;
    c->deadline = now + 5000;
    osmtp_quit(c->c);
    qconn_pump(c);
}

/* delivery_connections is reached and a destination waits: an idle
 * connection of another destination gives its slot up.  true: one did. */
bool qmgr_conn_retire_idle(struct qmgr *q, const struct qdest *except)
{
    for (struct qconn *c = q->conns; c; c = c->anext) {
        if (c->st == QC_IDLE && c->d != except) {
            qconn_retire(c, clock_mono_ms());
            return true;
        }
    }
    return false;
}

void qmgr_conn_tick(struct qmgr *q, uint64_t now)
{
    struct qconn *next;
    for (struct qconn *c = q->conns; c; c = next) {
        next = c->anext;
        if (c->st == QC_CLOSING || c->deadline == 0 || now < c->deadline)
            continue;
        if (c->st == QC_IDLE) {
            qconn_retire(c, now); /* cached long enough */
            continue;
        }
        c->timed_out = true;
        c->deadline = 0;
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR); /* the recv completes: eof */
    }
}

void qmgr_conn_destroy_all(struct qmgr *q)
{
    /* at stop: results not yet in are lost; the messages are retried at
     * the next start (their state records say what is done) */
    while (q->conns) {
        struct qconn *c = q->conns;
        if (c->job) {
            qmgr_job_free(c->job);
            c->job = NULL;
        }
        c->st = QC_CLOSING;
        c->inflight = 0;
        qconn_free(c);
    }
}
