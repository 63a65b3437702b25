/*
 * NAME
 *	conn - one client connection on a worker's ring
 * DESCRIPTION
 *	Life of a connection: accepted (a slot, the protocol's object from
 *	proto->open, its start, a multishot recv armed) -> OPEN (received
 *	bytes go to the protocol; its output goes out with one send at a time,
 *	batched per loop turn) -> LINGER once the protocol is closing and its
 *	last output is sent (our FIN is out; the peer's remaining bytes are
 *	read and dropped until its FIN or NET_LINGER_MS, so a final reply is
 *	not destroyed by a reset) -> CLOSING (shutdown(2) ends the multishot
 *	recv) -> the slot is freed once no operation is outstanding.
 *
 *	Received buffers: the CQE hands us buffer `bid` with one reference;
 *	the protocol takes references on what it keeps, and our reference is
 *	dropped right after, which returns the buffer to the ring unless the
 *	protocol holds slices of it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base/clock.h"
#include "core/base/log.h"
#include "net/net_int.h"


struct io_uring_sqe *net_sqe(struct net_worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    if (sqe == NULL) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    if (sqe == NULL)
        log_panic("net_sqe: submission queue full after submit");
    return sqe;
}

void net_conn_mark(struct net_worker *w, struct net_conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = w->dirty;
        w->dirty = c;
    }
}

void net_conn_kick(void *conn)
{
    struct net_conn *c = conn;
    net_conn_mark(c->w, c);
}

void net_conn_arm_recv(struct net_worker *w, struct net_conn *c)
{
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = NET_BGID;
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_RECV, c->gen, c->idx));
    c->recv_armed = true;
    c->recv_want = false;
}

void net_conn_submit_send(struct net_worker *w, struct net_conn *c)
{
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_send(sqe, c->fd, c->send_p, c->send_left, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_SEND, c->gen, c->idx));
    c->sending = true;
}

void net_conn_drop_proto(struct net_conn *c)
{
    if (c->pc) {
        c->w->proto->destroy(c->pc);
        c->pc = NULL;
    }
}

/* Ends the connection: no more output; the slot is freed once the recv and
 * any send have completed (see net_conn_flush). */
void net_conn_close_now(struct net_worker *w, struct net_conn *c)
{
    net_conn_drop_proto(c);
    if (c->state != NET_CONN_CLOSING) {
        c->state = NET_CONN_CLOSING;
        if (c->recv_armed)
            shutdown(c->fd, SHUT_RDWR); /* completes the multishot recv */
    }
    net_conn_mark(w, c);
}

static void net_conn_free(struct net_worker *w, struct net_conn *c)
{
    net_conn_drop_proto(c);
    /* closed by the ring, in the next submission: no syscall of its own */
    struct io_uring_sqe *sqe = net_sqe(w);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, net_ud(NET_OP_CLOSE, 0, 0));
    if (c->counted_ip)
        net_iplimit_release((const struct sockaddr *)&c->peer);
    c->counted_ip = false;
    net_tls_free(c);
    c->state = NET_CONN_FREE;
    c->fd = -1;
    c->gen = (c->gen + 1) & 0xffffff;
    c->next_free = w->free_head;
    w->free_head = c->idx;
    w->active--;
}

void net_conn_accepted(struct net_worker *w, int fd, size_t listener)
{
    const struct net_settings *set = &w->srv->set;
    if (w->stopping || w->free_head == UINT32_MAX) {
        /* no slot: the protocol's refusal as it stands, best effort (a
         * fresh socket's send buffer takes it), then the close */
        if (set->overload_reply != NULL && !w->srv->listen_tls[listener] &&
            send(fd, set->overload_reply, set->overload_reply_len, MSG_DONTWAIT | MSG_NOSIGNAL) <
                0)
            log_msg(LOG_DEBUG, "overload reply: %s", strerror(errno));
        w->refused_busy++;
        close(fd);
        return;
    }
    struct net_conn *c = &w->conns[w->free_head];
    w->free_head = c->next_free;
    w->active++;
    w->accepted++;
    c->w = w;
    c->state = NET_CONN_OPEN;
    c->fd = fd;
    c->recv_armed = c->recv_want = c->sending = c->dirty = c->counted_ip = false;
    c->recv_paused = c->recv_cancelling = false;
    c->send_p = NULL;
    c->send_left = 0;
    c->implicit_tls = w->srv->listen_tls[listener];
    c->peerlen = sizeof(c->peer);
    if (getpeername(fd, (struct sockaddr *)&c->peer, &c->peerlen) < 0) {
        memset(&c->peer, 0, sizeof(c->peer));
        c->peerlen = sizeof(struct sockaddr_in);
        c->peer.ss_family = AF_INET;
    }
    /* TCP_NODELAY: inherited from the listening socket (server.c) */

    enum net_admit admit = NET_ADMIT_OK;
    const struct sockaddr *peer = (const struct sockaddr *)&c->peer;
    if (w->active > set->max_connections) {
        admit = NET_ADMIT_BUSY;
        w->refused_busy++;
    } else if (set->max_conn_per_ip > 0 &&
               (set->per_ip_exempt == NULL || !set->per_ip_exempt(set->per_ip_exempt_arg, peer))) {
        if (net_iplimit_acquire(peer, set->max_conn_per_ip))
            c->counted_ip = true;
        else {
            admit = NET_ADMIT_PER_IP;
            w->refused_per_ip++;
        }
    }
    c->pc = w->proto->open(w->ws, c, peer, c->peerlen, w->srv->listen_kind[listener]);
    if (c->pc == NULL) {
        log_msg(LOG_WARN, "out of memory for a connection's protocol; connection closed");
        c->state = NET_CONN_CLOSING;
        net_conn_free(w, c);
        return;
    }
    if (c->implicit_tls) { /* RFC 8314: the handshake first, then the greeting */
        c->start_admit = admit;
        if (!net_tls_begin(w, c)) {
            c->state = NET_CONN_CLOSING;
            net_conn_free(w, c);
            return;
        }
    } else {
        w->proto->start(c->pc, admit);
    }
    net_conn_arm_recv(w, c);
    net_conn_mark(w, c);
}

void net_conn_recv_cqe(struct net_worker *w, struct net_conn *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (res > 0) {
        struct mbuf *b = &w->bufs.bufs[cqe->flags >> IORING_CQE_BUFFER_SHIFT];
        w->bufs.free--;
        b->refs = 1; /* ours, dropped below */
        if (c->state == NET_CONN_OPEN) {
            if (c->tls != NULL) {
                net_tls_input(w, c, b->data, (size_t)res);
            } else {
                w->proto->input(c->pc, b, 0, (uint32_t)res);
                if (w->proto->starttls_wanted(c->pc) && !net_tls_begin(w, c))
                    w->proto->eof(c->pc);
            }
        }
        mbuf_unref(b);
        if (!c->recv_armed && c->state != NET_CONN_CLOSING)
            c->recv_want = true;
    } else if (res == -ECANCELED && c->recv_cancelling) {
        /* flow control ended the recv; re-armed once the backlog drains */
        c->recv_cancelling = false;
        c->recv_want = true;
    } else if (res == -ENOBUFS) {
        c->recv_want = true;
        net_conn_release_buffers(w);
    } else if (res == 0 || c->state != NET_CONN_OPEN) {
        /* the client's FIN, or our shutdown ending the recv */
        if (c->state == NET_CONN_OPEN)
            w->proto->eof(c->pc);
        net_conn_close_now(w, c);
    } else {
        log_msg(LOG_DEBUG, "recv: %s", strerror(-res));
        if (c->pc)
            w->proto->eof(c->pc);
        net_conn_close_now(w, c);
    }
    net_conn_mark(w, c);
}

void net_conn_send_cqe(struct net_worker *w, struct net_conn *c, int res)
{
    c->sending = false;
    if (res < 0) {
        if (res != -EPIPE && res != -ECONNRESET)
            log_msg(LOG_DEBUG, "send: %s", strerror(-res));
        if (c->pc)
            w->proto->eof(c->pc);
        net_conn_close_now(w, c);
        return;
    }
    if ((size_t)res < c->send_left && c->state == NET_CONN_OPEN) {
        c->send_p += res;
        c->send_left -= (size_t)res;
        net_conn_submit_send(w, c);
        return;
    }
    c->send_p = NULL;
    c->send_left = 0;
    if (c->send_tx) {
        c->send_tx = false;
        c->tx_len = 0;
    } else if (c->pc) {
        w->proto->out_done(c->pc);
    }
    net_conn_mark(w, c);
}

/* End of a loop turn for a connection that had something happen. */
void net_conn_flush(struct net_worker *w, struct net_conn *c)
{
    switch (c->state) {
    case NET_CONN_OPEN:
        if (c->tls == NULL && w->proto->starttls_wanted(c->pc) && !net_tls_begin(w, c))
            w->proto->eof(c->pc); /* STARTTLS reached outside input (a pipelined pump) */
        if (!c->sending) {
            const char *p;
            size_t len;
            bool idle = true;
            if (c->tls != NULL) {
                idle = net_tls_flush(w, c);
            } else if (w->proto->out_take(c->pc, &p, &len)) {
                c->send_p = p;
                c->send_left = len;
                net_conn_submit_send(w, c);
                idle = false;
            }
            if (idle && c->state == NET_CONN_OPEN && w->proto->closing(c->pc)) {
                net_conn_drop_proto(c);
                c->state = NET_CONN_LINGER;
                c->linger_until_ms = clock_coarse_ms() + NET_LINGER_MS;
                shutdown(c->fd, SHUT_WR);
            }
        }
        break;
    case NET_CONN_LINGER:
        break;
    case NET_CONN_CLOSING:
        if (!c->recv_armed && !c->sending)
            net_conn_free(w, c);
        return;
    case NET_CONN_FREE:
        return;
    }
    if (c->state == NET_CONN_OPEN) {
        size_t backlog = w->proto->backlog(c->pc);
        if (!c->recv_paused && c->recv_armed && backlog > NET_BACKLOG_PAUSE) {
            struct io_uring_sqe *sqe = net_sqe(w);
            io_uring_prep_cancel64(sqe, net_ud(NET_OP_RECV, c->gen, c->idx), 0);
            io_uring_sqe_set_data64(sqe, net_ud(NET_OP_CANCEL, 0, 0));
            c->recv_paused = c->recv_cancelling = true;
        } else if (c->recv_paused && backlog < NET_BACKLOG_RESUME) {
            c->recv_paused = false;
        }
        if (c->recv_paused)
            return;
    }
    if (c->recv_want && !c->recv_armed && w->bufs.free > w->bufs.count / 16)
        net_conn_arm_recv(w, c);
}

void net_conn_tick(struct net_worker *w, struct net_conn *c, uint64_t now_ms)
{
    switch (c->state) {
    case NET_CONN_OPEN:
        if (c->tls != NULL && !c->tls_up && (now_ms >= c->tls_deadline_ms || w->stopping)) {
            log_msg(LOG_INFO, "TLS handshake timed out");
            net_conn_close_now(w, c);
            break;
        }
        w->proto->tick(c->pc, now_ms);
        if (w->stopping)
            w->proto->shutdown(c->pc);
        net_conn_mark(w, c);
        break;
    case NET_CONN_LINGER:
        if (now_ms >= c->linger_until_ms || w->stopping)
            net_conn_close_now(w, c);
        break;
    case NET_CONN_CLOSING:
        net_conn_mark(w, c);
        break;
    case NET_CONN_FREE:
        break;
    }
}

/* The ring ran dry: the protocols let go of the buffers they hold (the
 * SMTP session moves body slices to the spool or copies them out), so the
 * buffers go back and no connection starves. */
void net_conn_release_buffers(struct net_worker *w)
{
    for (uint32_t i = 0; i < w->nconns_cap; i++) {
        struct net_conn *c = &w->conns[i];
        if (c->state == NET_CONN_OPEN) {
            w->proto->release_buffers(c->pc);
            net_conn_mark(w, c);
        }
    }
}
