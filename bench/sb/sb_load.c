/*
 * NAME
 *	sb_load - the load generator: SMTP sessions on io_uring
 * SYNOPSIS
 *	#include "bench/sb/sb.h"
 *	int sb_load_run(const struct sb_load_opts *o, struct sb_load_result *r);
 * DESCRIPTION
 *	o->threads threads, each with its own ring and its share of the
 *	sessions, messages and offered rate.  A session is a state machine:
 *	connect, [TLS handshake], 220, EHLO, [STARTTLS, handshake, EHLO],
 *	[AUTH PLAIN], then messages: MAIL, RCPT x rcpts, DATA in one write
 *	with pipelining (RFC 2920; else one command per round trip), the
 *	message with its end-of-data dot in one write, the final reply; then
 *	the next message on the same connection (reuse) or QUIT and a new
 *	connection (with pipelining QUIT goes in the message's write).  Each session has at most one
 *operation in the ring at a time (connect, send or receive): SMTP is a dialogue.
 *
 *	Closed loop (rate 0): a session starts its next message as soon as
 *	the previous one is answered.  Open loop: message i of a thread is
 *	due at start + i / rate; an idle session takes the oldest due
 *	message, and its latency counts from when it was due, not from when a
 *	session got round to it (the correction for coordinated omission:
 *	a slow server cannot hide its queueing by slowing the generator).
 *	lat_service keeps the uncorrected time as well.
 *
 *	The end: the message count is used up, or the duration has passed
 *	(no new message starts after it; those in flight finish), and every
 *	session has said QUIT.  A refused command is counted and the session
 *	goes on (RSET after a refused transaction); a lost connection or a
 *	reply out of protocol closes the session, counts the message in
 *	flight as failed, and the session connects again.
 *
 *	Message bytes: a fixed header block, then body lines of 78 octets
 *	(never a leading dot), cut to the size drawn for the message, then
 *	CRLF.CRLF.  Plaintext sends point into one shared read-only body
 *	(no copy); TLS encrypts it into the session's buffer.
 * DIAGNOSTICS
 *	-1 with r->error: the ring could not be set up, no connection could
 *	ever be made, or nothing completed for o->timeout seconds.
 */

#include "bench/sb/sb.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum st {
    ST_IDLE, /* no connection, or connected and waiting for a due message */
    ST_CONNECT,
    ST_HANDSHAKE,
    ST_GREET,
    ST_EHLO,
    ST_STARTTLS,
    ST_AUTH,
    ST_TXN, /* MAIL, RCPTs, DATA replies */
    ST_DOT, /* the final reply to the message */
    ST_RSET,
    ST_QUIT,
    ST_DONE,
};

enum op { OP_NONE, OP_CONNECT, OP_SEND, OP_RECV };

#define IN_CAP 16384
#define RAW_CAP 17408

struct thr;

struct conn {
    struct thr *th;
    int fd;
    enum st st;
    enum op op;
    bool connected, reserved, first_msg, tls_on, idle_listed, quit_sent;
    unsigned txn_k; /* replies seen in this transaction */
    unsigned rcpt_ok;
    uint64_t size; /* the message's body bytes */
    double t_connect, t_mail, t_due;
    struct sb_tls *tls;
    /* replies, as plaintext */
    char in[IN_CAP];
    size_t inlen;
    char *raw; /* TLS: ciphertext received (RAW_CAP) */
    /* output: plaintext segments, or TLS ciphertext in tout */
    char cmd[2048];
    struct iovec iov[4];
    unsigned niov;
    struct msghdr mh;
    char *tout;
    size_t toutcap;
    struct conn *next_idle;
    char last[100]; /* the last reply line, for messages */
};

struct thr {
    const struct sb_load_opts *o;
    unsigned id, nconn;
    struct conn *c;
    struct io_uring ring;
    uint64_t budget; /* messages left to start (UINT64_MAX: duration) */
    double rate, t0, deadline;
    uint64_t issued; /* open loop: messages handed out */
    bool stopping;
    unsigned live;     /* sessions not ST_DONE */
    unsigned inflight; /* operations in the ring */
    unsigned setup_failed;
    struct conn *idle;
    double last_progress; /* last time anything completed */
    struct sb_load_result r;
    int failed;
    char err[200];
};

static char *body; /* shared, read-only during the run */
static size_t body_cap;
static char header[512];
static size_t header_len;
static const char dot[] = "\r\n.\r\n";
static const char quit[] = "QUIT\r\n";
/* progress counters, read by the reporting thread (relaxed: a progress
 * line needs no ordering with anything) */
static atomic_uint_fast64_t sb_prog_sent, sb_prog_failed;
static atomic_uint sb_threads_done;

double sb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void body_build(uint64_t max)
{
    body_cap = (size_t)max + 80;
    body = malloc(body_cap);
    if (body == NULL)
        abort();
    static const char line[] =
        "Lorem ipsum dolor sit amet, sluice-bench body line, 78 octets with CRLF.....\r\n";
    _Static_assert(sizeof(line) - 1 == 78, "a body line is 78 octets");
    for (size_t i = 0; i < body_cap; i += 78)
        memcpy(body + i, line, body_cap - i < 78 ? body_cap - i : 78);
}

static uint64_t pick_size(const struct sb_load_opts *o, unsigned *seed)
{
    if (o->nsizes == 1)
        return o->sizes[0];
    double u = (double)rand_r(seed) / ((double)RAND_MAX + 1);
    for (unsigned i = 0; i < o->nsizes; i++)
        if (u < o->weights[i])
            return o->sizes[i];
    return o->sizes[o->nsizes - 1];
}

/* ---- ring plumbing ---- */

static struct io_uring_sqe *get_sqe(struct thr *t)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (sqe == NULL) {
        io_uring_submit(&t->ring);
        sqe = io_uring_get_sqe(&t->ring);
    }
    if (sqe == NULL)
        abort(); /* the ring has room for every session's one operation */
    return sqe;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->connected = false;
    c->tls_on = false;
    sb_tls_free(c->tls);
    c->tls = NULL;
    c->inlen = 0;
}

static void slot_next(struct conn *c);
static void conn_fail(struct conn *c, bool protocol);
enum take { TAKE_OK, TAKE_NOT_YET, TAKE_NO_MORE };
static enum take reserve(struct thr *t, double now, double *due);
static void take_message(struct conn *c);
static void conn_recv(struct conn *c);

/* Posts a send of what c->iov holds (plaintext), or of its encryption. */
static void conn_flush(struct conn *c)
{
    struct thr *t = c->th;
    if (c->tls_on) {
        for (unsigned i = 0; i < c->niov; i++)
            if (sb_tls_write(c->tls, c->iov[i].iov_base, c->iov[i].iov_len) < 0) {
                conn_fail(c, true);
                return;
            }
        size_t n = sb_tls_outlen(c->tls);
        if (n > c->toutcap) {
            free(c->tout);
            c->toutcap = n + 4096;
            c->tout = malloc(c->toutcap);
            if (c->tout == NULL)
                abort();
        }
        n = sb_tls_take(c->tls, c->tout, c->toutcap);
        c->iov[0] = (struct iovec){c->tout, n};
        c->niov = 1;
    }
    c->mh = (struct msghdr){.msg_iov = c->iov, .msg_iovlen = c->niov};
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_sendmsg(sqe, c->fd, &c->mh, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, c);
    c->op = OP_SEND;
    t->inflight++;
}

/* Handshake ciphertext to send, if any: posts the send and returns true. */
static bool conn_flush_tls_raw(struct conn *c)
{
    if (sb_tls_outlen(c->tls) == 0)
        return false;
    c->niov = 0;
    bool was = c->tls_on;
    c->tls_on = true; /* conn_flush: take the ciphertext (nothing new to encrypt) */
    conn_flush(c);
    c->tls_on = was;
    return true;
}

static void send_text(struct conn *c, size_t len)
{
    c->iov[0] = (struct iovec){c->cmd, len};
    c->niov = 1;
    conn_flush(c);
}

static void send_cmd(struct conn *c, enum st st, const char *fmt, const char *arg)
{
    int n = snprintf(c->cmd, sizeof(c->cmd), fmt, arg);
    c->st = st;
    send_text(c, (size_t)n);
}

/* A session failed (lost connection, out-of-protocol reply): the message
 * in flight is lost, the session starts over. */
static void conn_fail(struct conn *c, bool protocol)
{
    struct thr *t = c->th;
    if (protocol)
        t->r.protocol_errors++;
    bool setup = c->st == ST_CONNECT || c->st == ST_HANDSHAKE || c->st == ST_GREET ||
                 c->st == ST_EHLO || c->st == ST_STARTTLS || c->st == ST_AUTH;
    double due;
    /* A session that fails before its first message costs a message too
     * (reuse reserves none until then): the run stays bounded by its count. */
    if (c->reserved || c->st == ST_TXN || c->st == ST_DOT || c->st == ST_RSET ||
        (setup && reserve(t, sb_now(), &due) == TAKE_OK)) {
        t->r.failed++;
        atomic_fetch_add_explicit(&sb_prog_failed, 1, memory_order_relaxed);
    }
    if (setup && ++t->setup_failed >= 3 && t->r.accepted == 0 && !t->failed) {
        snprintf(t->err, sizeof(t->err), "%s: sessions fail before any message: %s", t->o->target,
                 c->last[0] ? c->last : "connection lost");
        t->failed = 1;
    }
    c->reserved = false;
    conn_close(c);
    c->op = OP_NONE;
    c->st = ST_IDLE;
    slot_next(c);
}

/* ---- messages ---- */

static enum take reserve(struct thr *t, double now, double *due)
{
    if (t->stopping || t->budget == 0)
        return TAKE_NO_MORE;
    if (t->o->duration > 0 && now >= t->deadline) {
        t->stopping = true;
        return TAKE_NO_MORE;
    }
    if (t->rate > 0) {
        double at = t->t0 + (double)t->issued / t->rate;
        if (at > now)
            return TAKE_NOT_YET;
        *due = at;
        t->issued++;
    } else {
        *due = now;
    }
    if (t->budget != UINT64_MAX)
        t->budget--;
    return TAKE_OK;
}

static void start_message(struct conn *c)
{
    const struct sb_load_opts *o = c->th->o;
    static _Thread_local unsigned seed = 12345;
    c->size = pick_size(o, &seed);
    if (c->size > 0 && body[c->size - 1] == '\r')
        c->size++; /* never cut between CR and LF */
    c->t_mail = sb_now();
    c->txn_k = 0;
    c->rcpt_ok = 0;
    c->reserved = false;
    size_t n = (size_t)snprintf(c->cmd, sizeof(c->cmd), "MAIL FROM:<%s> SIZE=%llu\r\n", o->from,
                                (unsigned long long)(c->size + header_len));
    unsigned upto = o->pipelining ? o->rcpts : 0;
    for (unsigned i = 0; o->pipelining && i < upto && n < sizeof(c->cmd) - 128; i++)
        n += (size_t)snprintf(c->cmd + n, sizeof(c->cmd) - n, "RCPT TO:<rcpt%u@%s>\r\n", i,
                              o->rcpt_domain);
    if (o->pipelining)
        n += (size_t)snprintf(c->cmd + n, sizeof(c->cmd) - n, "DATA\r\n");
    c->st = ST_TXN;
    send_text(c, n);
}

static void send_message(struct conn *c)
{
    c->iov[0] = (struct iovec){header, header_len};
    c->iov[1] = (struct iovec){body, c->size};
    c->iov[2] = (struct iovec){(void *)dot, 5};
    c->niov = 3;
    /* no reuse: QUIT goes with the message (RFC 2920: content may open a
     * group, QUIT may close one), which saves a round trip per message */
    c->quit_sent = !c->th->o->reuse && c->th->o->pipelining;
    if (c->quit_sent)
        c->iov[c->niov++] = (struct iovec){(void *)quit, 6};
    c->st = ST_DOT;
    conn_flush(c);
}

static void go_idle(struct conn *c)
{
    c->st = ST_IDLE;
    c->first_msg = false; /* waiting for a due message is not the connection's latency */
    if (!c->idle_listed) {
        c->idle_listed = true;
        c->next_idle = c->th->idle;
        c->th->idle = c;
    }
}

/* A connected session wants its next message. */
static void take_message(struct conn *c)
{
    double due;
    switch (reserve(c->th, sb_now(), &due)) {
    case TAKE_OK:
        c->t_due = due;
        start_message(c);
        break;
    case TAKE_NOT_YET:
        go_idle(c);
        break;
    case TAKE_NO_MORE:
        send_cmd(c, ST_QUIT, "QUIT\r\n%s", "");
        break;
    }
}

static void conn_connect(struct conn *c)
{
    struct thr *t = c->th;
    c->fd = socket(t->o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        snprintf(t->err, sizeof(t->err), "socket: %s", strerror(errno));
        t->failed = 1;
        c->st = ST_DONE;
        t->live--;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->st = ST_CONNECT;
    c->t_connect = sb_now();
    c->first_msg = true;
    struct io_uring_sqe *sqe = get_sqe(t);
    io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)&t->o->addr, t->o->addrlen);
    io_uring_sqe_set_data(sqe, c);
    c->op = OP_CONNECT;
    t->inflight++;
}

static void slot_done(struct conn *c)
{
    if (c->st != ST_DONE) {
        c->st = ST_DONE;
        c->th->live--;
    }
}

/* A session without a connection: with reuse, connect while there is work
 * (messages are taken once connected); without, take a message first
 * (open loop: wait idle until one is due) and connect for it. */
static void slot_next(struct conn *c)
{
    struct thr *t = c->th;
    if (t->o->reuse) {
        if (t->stopping || t->budget == 0 || (t->o->duration > 0 && sb_now() >= t->deadline))
            slot_done(c);
        else
            conn_connect(c);
        return;
    }
    double due = 0;
    switch (reserve(t, sb_now(), &due)) {
    case TAKE_OK:
        c->reserved = true;
        c->t_due = due;
        conn_connect(c);
        break;
    case TAKE_NOT_YET:
        go_idle(c);
        break;
    case TAKE_NO_MORE:
        slot_done(c);
        break;
    }
}

/* The session is set up (EHLO, TLS, AUTH done). */
static void conn_ready(struct conn *c)
{
    if (c->reserved)
        start_message(c);
    else
        take_message(c);
}

static void message_done(struct conn *c, int code)
{
    struct thr *t = c->th;
    double now = sb_now();
    t->r.sent++;
    atomic_fetch_add_explicit(&sb_prog_sent, 1, memory_order_relaxed);
    if (code >= 200 && code < 300) {
        t->r.accepted++;
        t->r.bytes += c->size + header_len;
        sb_hist_add(&t->r.lat_mail, (uint64_t)((now - (t->rate > 0 ? c->t_due : c->t_mail)) * 1e6));
        if (t->rate > 0)
            sb_hist_add(&t->r.lat_service, (uint64_t)((now - c->t_mail) * 1e6));
        if (c->first_msg)
            sb_hist_add(&t->r.lat_connect, (uint64_t)((now - c->t_connect) * 1e6));
    } else {
        atomic_fetch_add_explicit(&sb_prog_failed, 1, memory_order_relaxed);
    }
    c->first_msg = false;
    if (t->o->reuse) {
        take_message(c);
    } else if (c->quit_sent) {
        c->st = ST_QUIT; /* its reply may be here already */
        conn_recv(c);
    } else {
        send_cmd(c, ST_QUIT, "QUIT\r\n%s", "");
    }
}

static void txn_failed(struct conn *c)
{
    c->th->r.failed++;
    atomic_fetch_add_explicit(&sb_prog_failed, 1, memory_order_relaxed);
    send_cmd(c, ST_RSET, "RSET\r\n%s", "");
}

static void send_auth(struct conn *c)
{
    const struct sb_load_opts *o = c->th->o;
    char plain[600];
    unsigned char b64[820];
    size_t ul = strlen(o->auth_user), pl = strlen(o->auth_pass);
    if (ul + pl + 2 > sizeof(plain)) {
        conn_fail(c, true);
        return;
    }
    plain[0] = 0;
    memcpy(plain + 1, o->auth_user, ul);
    plain[1 + ul] = 0;
    memcpy(plain + 2 + ul, o->auth_pass, pl);
    EVP_EncodeBlock(b64, (const unsigned char *)plain, (int)(ul + pl + 2));
    send_cmd(c, ST_AUTH, "AUTH PLAIN %s\r\n", (const char *)b64);
}

static void after_ehlo(struct conn *c)
{
    const struct sb_load_opts *o = c->th->o;
    if (o->tls == SB_TLS_STARTTLS && !c->tls_on)
        send_cmd(c, ST_STARTTLS, "STARTTLS\r\n%s", "");
    else if (o->auth_user != NULL)
        send_auth(c);
    else
        conn_ready(c);
}

/* One complete reply with its code; the state machine's step. */
static void on_reply(struct conn *c, int code)
{
    struct thr *t = c->th;
    const struct sb_load_opts *o = t->o;
    t->r.replies[code > 0 && code < SB_CODES ? code : 0]++;
    if (code == 421 && c->st != ST_QUIT) {
        conn_fail(c, false);
        return;
    }
    switch (c->st) {
    case ST_GREET:
        if (code != 220) {
            conn_fail(c, true);
            return;
        }
        send_cmd(c, ST_EHLO, "EHLO %s\r\n", o->helo);
        return;
    case ST_EHLO:
        if (code != 250) {
            conn_fail(c, true);
            return;
        }
        after_ehlo(c);
        return;
    case ST_STARTTLS:
        if (code != 220 || (c->tls = sb_tls_new()) == NULL) {
            conn_fail(c, true);
            return;
        }
        c->st = ST_HANDSHAKE;
        if (sb_tls_handshake(c->tls) < 0 || !conn_flush_tls_raw(c))
            conn_fail(c, true);
        return;
    case ST_AUTH:
        if (code != 235) {
            conn_fail(c, true);
            return;
        }
        conn_ready(c);
        return;
    case ST_TXN: {
        unsigned k = c->txn_k++;
        if (k == 0 && code / 100 != 2) { /* MAIL refused */
            if (!o->pipelining) {
                txn_failed(c);
                return;
            }
        } else if (k >= 1 && k <= o->rcpts && code / 100 == 2) {
            c->rcpt_ok++;
        }
        if (!o->pipelining) {
            if (k < o->rcpts) {
                int n =
                    snprintf(c->cmd, sizeof(c->cmd), "RCPT TO:<rcpt%u@%s>\r\n", k, o->rcpt_domain);
                send_text(c, (size_t)n);
                return;
            }
            if (k == o->rcpts) {
                if (c->rcpt_ok == 0) {
                    txn_failed(c);
                    return;
                }
                int n = snprintf(c->cmd, sizeof(c->cmd), "DATA\r\n");
                send_text(c, (size_t)n);
                return;
            }
        } else if (k < o->rcpts + 1) {
            conn_recv(c); /* more replies to this group */
            return;
        }
        /* the reply to DATA */
        if (code == 354) {
            send_message(c);
        } else if (code / 100 == 3) {
            conn_fail(c, true);
        } else {
            txn_failed(c);
        }
        return;
    }
    case ST_DOT:
        message_done(c, code);
        return;
    case ST_RSET:
        if (code != 250) {
            conn_fail(c, true);
            return;
        }
        if (o->reuse) {
            take_message(c);
        } else {
            c->first_msg = false;
            send_cmd(c, ST_QUIT, "QUIT\r\n%s", "");
        }
        return;
    case ST_QUIT:
        conn_close(c);
        c->st = ST_IDLE;
        slot_next(c);
        return;
    default:
        conn_fail(c, true);
        return;
    }
}

/* Complete replies in c->in: the code of the first, its bytes consumed;
 * 0 when none is complete yet, -1 when it is not SMTP. */
static int parse_reply(struct conn *c)
{
    size_t pos = 0;
    for (;;) {
        char *lf = memchr(c->in + pos, '\n', c->inlen - pos);
        if (lf == NULL)
            return c->inlen == IN_CAP ? -1 : 0;
        size_t len = (size_t)(lf - (c->in + pos)) + 1;
        const char *l = c->in + pos;
        if (len < 4 || l[0] < '1' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
            l[2] > '9')
            return -1;
        int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        if (code >= 400) { /* kept for the error message of a failing run */
            size_t k = len - 1 < sizeof(c->last) - 1 ? len - 1 : sizeof(c->last) - 1;
            memcpy(c->last, l, k);
            c->last[k] = 0;
            if (k > 0 && c->last[k - 1] == '\r')
                c->last[k - 1] = 0;
        }
        pos += len;
        if (l[3] != '-') {
            memmove(c->in, c->in + pos, c->inlen - pos);
            c->inlen -= pos;
            return code;
        }
    }
}

/* Waits for the next reply: from what is buffered, or from the socket. */
static void conn_recv(struct conn *c)
{
    int code = parse_reply(c);
    if (code < 0) {
        conn_fail(c, true);
        return;
    }
    if (code > 0) {
        on_reply(c, code);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(c->th);
    if (c->tls != NULL)
        io_uring_prep_recv(sqe, c->fd, c->raw, RAW_CAP, 0);
    else
        io_uring_prep_recv(sqe, c->fd, c->in + c->inlen, IN_CAP - c->inlen, 0);
    io_uring_sqe_set_data(sqe, c);
    c->op = OP_RECV;
    c->th->inflight++;
}

static void tls_drain(struct conn *c)
{
    long n;
    while (c->inlen < IN_CAP && (n = sb_tls_read(c->tls, c->in + c->inlen, IN_CAP - c->inlen)) > 0)
        c->inlen += (size_t)n;
}

static void handshake_step(struct conn *c)
{
    int hs = sb_tls_handshake(c->tls);
    if (hs < 0) {
        conn_fail(c, true);
        return;
    }
    if (conn_flush_tls_raw(c))
        return; /* on_sent comes back here */
    if (hs == 0) {
        conn_recv(c);
        return;
    }
    c->tls_on = true;
    tls_drain(c); /* records that came with the handshake's last flight */
    if (c->th->o->tls == SB_TLS_IMPLICIT && c->st == ST_HANDSHAKE && !c->connected) {
        c->connected = true;
        c->st = ST_GREET;
        conn_recv(c);
    } else {
        send_cmd(c, ST_EHLO, "EHLO %s\r\n", c->th->o->helo);
    }
}

static void on_recv(struct conn *c, int res)
{
    if (res <= 0) {
        conn_fail(c, c->st != ST_QUIT);
        return;
    }
    if (c->tls == NULL) {
        c->inlen += (size_t)res;
        conn_recv(c);
        return;
    }
    if (sb_tls_feed(c->tls, c->raw, (size_t)res) < 0) {
        conn_fail(c, true);
        return;
    }
    if (c->st == ST_HANDSHAKE) {
        handshake_step(c);
        return;
    }
    tls_drain(c);
    conn_recv(c);
}

static void on_sent(struct conn *c, int res)
{
    if (res < 0) {
        conn_fail(c, c->st != ST_QUIT);
        return;
    }
    size_t n = (size_t)res;
    while (c->niov > 0 && n >= c->iov[0].iov_len) { /* short send: the rest */
        n -= c->iov[0].iov_len;
        memmove(c->iov, c->iov + 1, --c->niov * sizeof(c->iov[0]));
    }
    if (c->niov > 0) {
        c->iov[0].iov_base = (char *)c->iov[0].iov_base + n;
        c->iov[0].iov_len -= n;
        c->mh = (struct msghdr){.msg_iov = c->iov, .msg_iovlen = c->niov};
        struct io_uring_sqe *sqe = get_sqe(c->th);
        io_uring_prep_sendmsg(sqe, c->fd, &c->mh, MSG_NOSIGNAL);
        io_uring_sqe_set_data(sqe, c);
        c->op = OP_SEND;
        c->th->inflight++;
        return;
    }
    if (c->st == ST_HANDSHAKE)
        handshake_step(c);
    else
        conn_recv(c);
}

static void on_connect(struct conn *c, int res)
{
    struct thr *t = c->th;
    if (res < 0) {
        t->r.conn_failed++;
        snprintf(c->last, sizeof(c->last), "connect: %s", strerror(-res));
        conn_fail(c, false);
        return;
    }
    t->r.connections++;
    if (t->o->tls == SB_TLS_IMPLICIT) {
        if ((c->tls = sb_tls_new()) == NULL) {
            conn_fail(c, true);
            return;
        }
        c->st = ST_HANDSHAKE;
        handshake_step(c);
        return;
    }
    c->connected = true;
    c->st = ST_GREET;
    conn_recv(c);
}

static void on_cqe(struct conn *c, int res)
{
    enum op op = c->op;
    c->op = OP_NONE;
    c->th->inflight--;
    switch (op) {
    case OP_CONNECT:
        on_connect(c, res);
        break;
    case OP_SEND:
        on_sent(c, res);
        break;
    case OP_RECV:
        on_recv(c, res);
        break;
    default:
        break;
    }
}

/* Open loop: due messages to idle sessions; at the end, idle sessions QUIT. */
static void kick_idle(struct thr *t)
{
    while (t->idle != NULL) {
        struct conn *c = t->idle;
        double due;
        enum take k = reserve(t, sb_now(), &due);
        if (k == TAKE_NOT_YET)
            return;
        t->idle = c->next_idle;
        c->idle_listed = false;
        if (k == TAKE_NO_MORE) {
            if (c->fd >= 0)
                send_cmd(c, ST_QUIT, "QUIT\r\n%s", "");
            else
                slot_done(c);
        } else if (c->fd >= 0) {
            c->t_due = due;
            start_message(c);
        } else { /* no reuse: connect for it */
            c->reserved = true;
            c->t_due = due;
            conn_connect(c);
        }
    }
}

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    const struct sb_load_opts *o = t->o;
    unsigned depth = 64;
    while (depth < 2 * t->nconn + 8)
        depth *= 2;
    int rc = io_uring_queue_init(depth, &t->ring, 0);
    if (rc < 0) {
        snprintf(t->err, sizeof(t->err), "io_uring_queue_init: %s", strerror(-rc));
        t->failed = 1;
        atomic_fetch_add(&sb_threads_done, 1);
        return NULL;
    }
    t->t0 = sb_now();
    t->deadline = t->t0 + o->duration;
    t->last_progress = t->t0;
    t->live = t->nconn;
    for (unsigned i = 0; i < t->nconn; i++) {
        struct conn *c = &t->c[i];
        c->th = t;
        c->fd = -1;
        c->st = ST_IDLE;
        if (o->tls != SB_TLS_NONE && (c->raw = malloc(RAW_CAP)) == NULL)
            abort();
    }
    for (unsigned i = 0; i < t->nconn && !t->failed; i++)
        slot_next(&t->c[i]);
    while (t->live > 0 && !t->failed) {
        double now = sb_now();
        double wait = 0.25;
        if (t->rate > 0 && t->idle != NULL && !t->stopping) {
            double at = t->t0 + (double)t->issued / t->rate - now;
            wait = at < wait ? at : wait;
        }
        if (o->duration > 0 && !t->stopping && t->deadline - now < wait)
            wait = t->deadline - now;
        if (wait < 0)
            wait = 0;
        struct __kernel_timespec ts = {(long long)wait,
                                       (long long)((wait - (long long)wait) * 1e9)};
        struct io_uring_cqe *cqe = NULL;
        rc = io_uring_submit_and_wait_timeout(&t->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR) {
            snprintf(t->err, sizeof(t->err), "io_uring_submit_and_wait: %s", strerror(-rc));
            t->failed = 1;
            break;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe)
        {
            on_cqe(io_uring_cqe_get_data(cqe), cqe->res);
            n++;
        }
        io_uring_cq_advance(&t->ring, n);
        now = sb_now();
        if (n > 0)
            t->last_progress = now;
        if (o->duration > 0 && now >= t->deadline)
            t->stopping = true;
        if (t->idle != NULL)
            kick_idle(t);
        if (t->inflight > 0 && now - t->last_progress > o->timeout) {
            snprintf(t->err, sizeof(t->err),
                     "nothing happened for %.0f s (%u sessions still open): the server stalls",
                     o->timeout, t->live);
            t->failed = 1;
        }
    }
    for (unsigned i = 0; i < t->nconn; i++) {
        conn_close(&t->c[i]);
        free(t->c[i].raw);
        free(t->c[i].tout);
    }
    io_uring_queue_exit(&t->ring);
    atomic_fetch_add(&sb_threads_done, 1);
    return NULL;
}

int sb_load_run(const struct sb_load_opts *o, struct sb_load_result *r)
{
    memset(r, 0, sizeof(*r));
    sb_hist_init(&r->lat_mail);
    sb_hist_init(&r->lat_connect);
    sb_hist_init(&r->lat_service);
    if (o->tls != SB_TLS_NONE && sb_tls_global_init(r->error, sizeof(r->error)) < 0)
        return -1;
    uint64_t max = 0;
    for (unsigned i = 0; i < o->nsizes; i++)
        max = o->sizes[i] > max ? o->sizes[i] : max;
    free(body);
    body_build(max);
    header_len = (size_t)snprintf(header, sizeof(header),
                                  "From: <%s>\r\nTo: <rcpt0@%s>\r\nSubject: sluice-bench\r\n"
                                  "Message-ID: <bench@sluice-bench>\r\n\r\n",
                                  o->from, o->rcpt_domain);
    atomic_store(&sb_prog_sent, 0);
    atomic_store(&sb_prog_failed, 0);
    atomic_store(&sb_threads_done, 0);
    unsigned nt = o->threads ? o->threads : 1;
    if (nt > o->sessions)
        nt = o->sessions;
    struct thr *th = calloc(nt, sizeof(*th));
    pthread_t *tid = calloc(nt, sizeof(*tid));
    if (th == NULL || tid == NULL)
        abort();
    unsigned started = 0;
    double t0 = sb_now();
    for (unsigned i = 0; i < nt; i++) {
        struct thr *t = &th[i];
        t->o = o;
        t->id = i;
        t->nconn = o->sessions / nt + (i < o->sessions % nt);
        t->c = calloc(t->nconn, sizeof(*t->c));
        if (t->c == NULL)
            abort();
        t->budget = o->messages ? o->messages / nt + (i < o->messages % nt) : UINT64_MAX;
        t->rate = o->rate / nt;
        sb_hist_init(&t->r.lat_mail);
        sb_hist_init(&t->r.lat_connect);
        sb_hist_init(&t->r.lat_service);
        if (pthread_create(&tid[i], NULL, thr_main, t) != 0)
            break;
        started++;
    }
    /* progress: this thread samples the counters until the load threads end */
    double last_t = t0;
    uint64_t last_n = 0;
    while (atomic_load(&sb_threads_done) < started) {
        usleep(100000);
        double now = sb_now();
        if (!o->progress || now - last_t < 1)
            continue;
        uint64_t n = atomic_load_explicit(&sb_prog_sent, memory_order_relaxed);
        uint64_t bad = atomic_load_explicit(&sb_prog_failed, memory_order_relaxed);
        fprintf(stderr, "\rsluice-bench: %6.1f s  %10llu msgs  %9.0f msg/s  %llu failed   ",
                now - t0, (unsigned long long)n, (double)(n - last_n) / (now - last_t),
                (unsigned long long)bad);
        last_t = now;
        last_n = n;
    }
    if (o->progress && last_n > 0)
        fputc('\n', stderr);
    int failed = started < nt;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        struct thr *t = &th[i];
        if (t->failed && !failed) {
            failed = 1;
            snprintf(r->error, sizeof(r->error), "%s", t->err);
        }
        r->sent += t->r.sent;
        r->accepted += t->r.accepted;
        r->failed += t->r.failed;
        r->bytes += t->r.bytes;
        r->connections += t->r.connections;
        r->conn_failed += t->r.conn_failed;
        r->protocol_errors += t->r.protocol_errors;
        for (unsigned k = 0; k < SB_CODES; k++)
            r->replies[k] += t->r.replies[k];
        sb_hist_merge(&r->lat_mail, &t->r.lat_mail);
        sb_hist_merge(&r->lat_connect, &t->r.lat_connect);
        sb_hist_merge(&r->lat_service, &t->r.lat_service);
        free(t->c);
    }
    r->seconds = sb_now() - t0;
    if (started < nt && r->error[0] == 0)
        snprintf(r->error, sizeof(r->error), "pthread_create failed");
    free(th);
    free(tid);
    return failed ? -1 : 0;
}
