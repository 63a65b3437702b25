/*
 * NAME
 *	admin - the admin HTTP listener: GET /metrics
 * SYNOPSIS
 *	#include "core/ops/admin.h"
 * DESCRIPTION
 *	See admin.h.  One thread runs a poll(2) loop over the listening
 *	socket, an eventfd that admin_stop() writes, and up to
 *	ADMIN_MAX_CONNS non-blocking connections, so that no connection can
 *	hold up another: a scrape is answered while idle or slow clients sit
 *	in their own slots.  Each connection moves through three states, each
 *	with its own deadline:
 *
 *	  HEAD    read the request head until the blank line, under
 *	          ADMIN_MAX_REQUEST octets and ADMIN_TIMEOUT_MS from accept;
 *	          nothing received by then: closed; part of a head: 408
 *	  SEND    write the response (ADMIN_TIMEOUT_MS), then FIN
 *	  LINGER  discard what the client still sends (ADMIN_LINGER_MS,
 *	          ADMIN_LINGER_BYTES) before close(2), so that unread request
 *	          bytes do not turn the close into a reset that could destroy
 *	          the response in flight (the "lingering close" of Apache and
 *	          nginx)
 *
 *	One request per connection: whatever follows the head (a body, a
 *	pipelined request) is never parsed; it is drained in LINGER.
 *
 *	When every slot is taken, a new connection takes the slot of the
 *	oldest connection still in HEAD, which is closed without an answer:
 *	idle connections cannot lock a scrape out, and a scraper sends its
 *	head at once, so it is the newest, not the oldest.  When no slot is
 *	in HEAD (all are answering), new connections wait in the listen
 *	backlog until one frees, within ADMIN_TIMEOUT_MS + ADMIN_LINGER_MS.
 * DIAGNOSTICS
 *	accept(2) failures other than a connection aborted early are logged
 *	(LOG_WARN) and pause accepting for 100 ms; a connection that cannot
 *	get memory is closed.  Per-request failures are HTTP statuses, not
 *	log lines.  poll(2) failing other than by EINTR is a panic.
 */
#include "core/ops/admin.h"

#include "core/base/clock.h"
#include "core/cfg/cfg.h"
#include "core/base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_LINGER_MS 1000      /* drain after our response before close */
#define ADMIN_LINGER_BYTES 65536  /* at most this much of it */
#define ADMIN_ACCEPT_PAUSE_MS 100 /* after EMFILE and friends: not a hot loop */
#define ADMIN_ACCEPT_BURST 16     /* accepts per loop turn */

enum admin_state { ADMIN_FREE, ADMIN_HEAD, ADMIN_SEND, ADMIN_LINGER };

struct admin_conn {
    enum admin_state st;
    int fd;
    uint64_t since;    /* accept time: who is the oldest */
    uint64_t deadline; /* of the current state */
    char *buf;         /* HEAD: the head so far; SEND: the response (owned, malloc'd) */
    size_t len;        /* octets in buf */
    size_t off;        /* SEND: octets sent; LINGER: octets discarded */
};

struct admin_server {
    struct admin_sources src;
    int fd;   /* listening, non-blocking */
    int wake; /* eventfd: admin_stop wakes the loop */
    pthread_t thread;
    atomic_bool stop; /* release in admin_stop pairs with acquire in admin_main */
    uint64_t accept_pause_until;
    struct admin_conn conn[ADMIN_MAX_CONNS]; /* owned by the thread */
    char addr[64];
};

static void admin_conn_close(struct admin_conn *c)
{
    close(c->fd);
    free(c->buf);
    *c = (struct admin_conn){.st = ADMIN_FREE, .fd = -1};
}

/* Our side is done: FIN, then LINGER. */
static void admin_conn_linger(struct admin_conn *c)
{
    free(c->buf);
    c->buf = NULL;
    c->len = c->off = 0;
    shutdown(c->fd, SHUT_WR);
    c->st = ADMIN_LINGER;
    c->deadline = clock_mono_ms() + ADMIN_LINGER_MS;
}

/* SEND: as much as the socket takes now. */
static void admin_conn_send(struct admin_conn *c)
{
    while (c->off < c->len) {
        ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        if (w <= 0) {
            admin_conn_close(c);
            return;
        }
        c->off += (size_t)w;
    }
    admin_conn_linger(c);
}

/* HEAD -> SEND with the response in one buffer; body is borrowed. */
static void admin_conn_respond(struct admin_conn *c, int code, const char *reason,
                               const char *ctype, const char *extra, const char *body, size_t blen,
                               bool head_only)
{
    char h[512];
    int n = snprintf(h, sizeof(h),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason, ctype, blen, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(h))
        log_panic("admin_conn_respond: header too long");
    if (head_only)
        blen = 0;
    char *out = malloc((size_t)n + blen);
    if (out == NULL) {
        admin_conn_close(c);
        return;
    }
    memcpy(out, h, (size_t)n);
    if (blen > 0)
        memcpy(out + n, body, blen);
    free(c->buf);
    c->buf = out;
    c->len = (size_t)n + blen;
    c->off = 0;
    c->st = ADMIN_SEND;
    c->deadline = clock_mono_ms() + ADMIN_TIMEOUT_MS;
    admin_conn_send(c);
}

static void admin_conn_error(struct admin_conn *c, int code, const char *reason, const char *extra)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s\n", code, reason);
    admin_conn_respond(c, code, reason, "text/plain; charset=utf-8", extra, body, (size_t)n, false);
}

/* A complete head is in c->buf: answer it. */
static void admin_conn_answer(struct admin_server *a, struct admin_conn *c)
{
    bool head_only = false;
    int status = admin_request_status(c->buf, &head_only);
    if (status == 400) {
        admin_conn_error(c, 400, "Bad Request", NULL);
    } else if (status == 405) {
        admin_conn_error(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
    } else if (status == 404) {
        admin_conn_error(c, 404, "Not Found", NULL);
    } else {
        size_t blen = 0;
        char *body = admin_metrics_render(&a->src, &blen);
        if (body == NULL)
            admin_conn_error(c, 500, "Internal Server Error", NULL);
        else
            admin_conn_respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, body,
                               blen, head_only);
        free(body);
    }
}

/* HEAD: one recv (fair to the other connections), then judge what is
 * there.  CRLF or LF line ends; a NUL is a 400, a full buffer a 431. */
static void admin_conn_read_head(struct admin_server *a, struct admin_conn *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, ADMIN_MAX_REQUEST - c->len, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        if (c->len == 0 || n < 0)
            admin_conn_close(c); /* gone before a request, or reset */
        else
            admin_conn_error(c, 400, "Bad Request", NULL); /* EOF inside the head */
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n"))
        admin_conn_answer(a, c);
    else if (memchr(c->buf, '\0', c->len) != NULL)
        admin_conn_error(c, 400, "Bad Request", NULL);
    else if (c->len >= ADMIN_MAX_REQUEST)
        admin_conn_error(c, 431, "Request Header Fields Too Large", NULL);
}

/* LINGER: discard what arrives; EOF, an error or the byte bound ends it. */
static void admin_conn_drain(struct admin_conn *c)
{
    char sink[4096];
    ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0 || (c->off += (size_t)n) >= ADMIN_LINGER_BYTES)
        admin_conn_close(c);
}

static void admin_conn_expire(struct admin_conn *c)
{
    if (c->st == ADMIN_HEAD && c->len > 0)
        admin_conn_error(c, 408, "Request Timeout", NULL);
    else
        admin_conn_close(c); /* idle, a client that does not read, or lingering done */
}

/* A free slot, or the one of the oldest connection still in HEAD
 * (closed here); NULL when every slot is answering. */
static struct admin_conn *admin_slot(struct admin_server *a)
{
    struct admin_conn *oldest = NULL;
    for (int i = 0; i < ADMIN_MAX_CONNS; i++) {
        struct admin_conn *c = &a->conn[i];
        if (c->st == ADMIN_FREE)
            return c;
        if (c->st == ADMIN_HEAD && (oldest == NULL || c->since < oldest->since))
            oldest = c;
    }
    if (oldest != NULL)
        admin_conn_close(oldest);
    return oldest;
}

static bool admin_can_accept(const struct admin_server *a)
{
    for (int i = 0; i < ADMIN_MAX_CONNS; i++)
        if (a->conn[i].st == ADMIN_FREE || a->conn[i].st == ADMIN_HEAD)
            return true;
    return false;
}

static void admin_accept(struct admin_server *a)
{
    for (int k = 0; k < ADMIN_ACCEPT_BURST && admin_can_accept(a); k++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            log_msg(LOG_WARN, "admin %s: accept: %s", a->addr, strerror(errno));
            a->accept_pause_until = clock_mono_ms() + ADMIN_ACCEPT_PAUSE_MS;
            return;
        }
        char *buf = malloc(ADMIN_MAX_REQUEST + 1);
        if (buf == NULL) {
            close(fd);
            return;
        }
        struct admin_conn *c = admin_slot(a);
        uint64_t now = clock_mono_ms();
        *c = (struct admin_conn){.st = ADMIN_HEAD,
                                 .fd = fd,
                                 .since = now,
                                 .deadline = now + ADMIN_TIMEOUT_MS,
                                 .buf = buf};
        buf[0] = '\0';
    }
}

static void admin_conn_event(struct admin_server *a, struct admin_conn *c)
{
    switch (c->st) {
    case ADMIN_HEAD:
        admin_conn_read_head(a, c);
        break;
    case ADMIN_SEND:
        admin_conn_send(c);
        break;
    case ADMIN_LINGER:
        admin_conn_drain(c);
        break;
    case ADMIN_FREE:
        log_panic("admin_conn_event: a free slot was polled");
    }
}

static void *admin_main(void *arg)
{
    struct admin_server *a = arg;
    log_set_thread_tag("admin");
    struct pollfd p[ADMIN_MAX_CONNS + 2];
    struct admin_conn *polled[ADMIN_MAX_CONNS];
    for (;;) {
        uint64_t now = clock_mono_ms();
        uint64_t next = UINT64_MAX;
        int np = 2, nc = 0;
        for (int i = 0; i < ADMIN_MAX_CONNS; i++) {
            struct admin_conn *c = &a->conn[i];
            if (c->st != ADMIN_FREE && c->deadline <= now)
                admin_conn_expire(c); /* a 408 moves on to SEND with a new deadline */
            if (c->st == ADMIN_FREE)
                continue;
            if (c->deadline < next)
                next = c->deadline;
            polled[nc++] = c;
            p[np++] =
                (struct pollfd){.fd = c->fd, .events = c->st == ADMIN_SEND ? POLLOUT : POLLIN};
        }
        p[0] = (struct pollfd){.fd = a->wake, .events = POLLIN};
        p[1] = (struct pollfd){.fd = -1}; /* ignored by poll */
        if (now < a->accept_pause_until) {
            if (a->accept_pause_until < next)
                next = a->accept_pause_until;
        } else if (admin_can_accept(a)) {
            p[1].fd = a->fd;
            p[1].events = POLLIN;
        }
        int timeout = next == UINT64_MAX ? -1 : (int)(next - now);
        int rc = poll(p, (nfds_t)np, timeout);
        if (rc < 0 && errno != EINTR)
            log_panic("admin_main: poll: %s", strerror(errno));
        /* acquire: pairs with the release store in admin_stop */
        if (atomic_load_explicit(&a->stop, memory_order_acquire))
            break;
        if (rc <= 0)
            continue;
        for (int i = 0; i < nc; i++)
            if (p[i + 2].revents != 0 && polled[i]->st != ADMIN_FREE)
                admin_conn_event(a, polled[i]);
        if (p[1].revents != 0)
            admin_accept(a);
    }
    for (int i = 0; i < ADMIN_MAX_CONNS; i++)
        if (a->conn[i].st != ADMIN_FREE)
            admin_conn_close(&a->conn[i]);
    return NULL;
}

int admin_start(const struct admin_sources *src, const char *where, struct admin_server **out,
                char *err, size_t errlen)
{
    *out = NULL;
    struct cfg_sockaddr ca;
    if (where == NULL || cfg_parse_hostport(where, &ca) < 0) {
        snprintf(err, errlen, "admin_listen %s: not an address", where ? where : "(null)");
        return -EINVAL;
    }
    struct admin_server *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "admin_listen: out of memory");
        return -ENOMEM;
    }
    a->src = *src;
    atomic_init(&a->stop, false);
    a->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->wake < 0) {
        int rc = -errno;
        snprintf(err, errlen, "admin_listen %s: eventfd: %s", where, strerror(errno));
        free(a);
        return rc;
    }
    a->fd = socket(ca.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, rc = 0;
    if (a->fd < 0 || setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(a->fd, (struct sockaddr *)&ca.ss, ca.len) < 0 || listen(a->fd, 128) < 0) {
        rc = -errno;
        snprintf(err, errlen, "admin_listen %s: %s", where, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getsockname(a->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
            port = ntohs(s6->sin6_port);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
            port = ntohs(s4->sin_port);
        }
    }
    snprintf(a->addr, sizeof(a->addr), ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
    rc = -pthread_create(&a->thread, NULL, admin_main, a);
    if (rc < 0) {
        snprintf(err, errlen, "admin_listen %s: thread: %s", where, strerror(-rc));
        goto fail;
    }
    *out = a;
    return 0;
fail:
    if (a->fd >= 0)
        close(a->fd);
    close(a->wake);
    free(a);
    return rc;
}

const char *admin_listen_addr(const struct admin_server *a)
{
    return a->addr;
}

void admin_stop(struct admin_server *a)
{
    if (a == NULL)
        return;
    /* release: pairs with the acquire after poll in admin_main */
    atomic_store_explicit(&a->stop, true, memory_order_release);
    uint64_t one = 1;
    if (write(a->wake, &one, sizeof(one)) != (ssize_t)sizeof(one))
        log_panic("admin_stop: eventfd write: %s", strerror(errno));
    pthread_join(a->thread, NULL);
    close(a->fd);
    close(a->wake);
    free(a);
}
