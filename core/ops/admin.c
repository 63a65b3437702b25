/*
 * NAME
 *	admin - the admin HTTP listener: GET /metrics
 * DESCRIPTION
 *	See admin.h.  One thread, one connection at a time: accept (blocking),
 *	read the request head until the blank line under a size bound and one
 *	deadline (poll before each read), answer, then close HTTP/1.0 style:
 *	shut our side down and drain what the client still sends for a short
 *	while before close(2), so that unread request bytes do not turn the
 *	close into a reset that could destroy the response in flight (the
 *	"lingering close" of Apache and nginx).
 *
 *	admin_stop() shuts the listening socket down, which makes the blocked
 *	accept(2) return (EINVAL on Linux); the thread sees the stop flag and
 *	exits.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_LINGER_MS 1000     /* drain after our response before close */
#define ADMIN_LINGER_BYTES 65536 /* at most this much of it */

struct admin_server {
    struct admin_sources src;
    int fd;
    pthread_t thread;
    atomic_bool stop; /* release in admin_stop pairs with acquire in the accept loop */
    char addr[64];
};

/* Waits for fd to be ready for ev until deadline: 1 ready, 0 timed out,
 * -1 error. */
static int admin_wait(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            return 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static void admin_send_all(int fd, const char *p, size_t n, uint64_t deadline)
{
    while (n > 0) {
        if (admin_wait(fd, POLLOUT, deadline) <= 0)
            return;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void admin_respond(int fd, int code, const char *reason, const char *ctype,
                          const char *extra, const char *body, size_t blen, bool head_only,
                          uint64_t deadline)
{
    char h[512];
    int n = snprintf(h, sizeof(h),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason, ctype, blen, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof(h))
        log_panic("admin_respond: header too long");
    admin_send_all(fd, h, (size_t)n, deadline);
    if (!head_only)
        admin_send_all(fd, body, blen, deadline);
}

static void admin_error(int fd, int code, const char *reason, const char *extra, uint64_t deadline)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %s\n", code, reason);
    admin_respond(fd, code, reason, "text/plain; charset=utf-8", extra, body, (size_t)n, false,
                  deadline);
}

/* Reads the request head into buf (NUL-terminated, CRLF or LF line ends).
 * Returns its length, or an HTTP status to answer with: -400, -408, -431;
 * -1: the client went away (no answer). */
static int admin_read_head(int fd, char *buf, size_t cap, uint64_t deadline)
{
    size_t len = 0;
    for (;;) {
        int r = admin_wait(fd, POLLIN, deadline);
        if (r == 0)
            return len == 0 ? -1 : -408;
        if (r < 0)
            return -1;
        ssize_t n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return len == 0 ? -1 : -400; /* EOF inside the head */
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return (int)len;
        if (memchr(buf, '\0', len) != NULL)
            return -400;
        if (len >= cap - 1)
            return -431;
    }
}

static void admin_serve(struct admin_server *a, int fd)
{
    uint64_t deadline = clock_mono_ms() + ADMIN_TIMEOUT_MS;
    char *head = malloc(ADMIN_MAX_REQUEST + 1);
    if (head == NULL)
        return;
    int n = admin_read_head(fd, head, ADMIN_MAX_REQUEST + 1, deadline);
    int status = 0;
    bool head_only = false;
    uint64_t out_deadline = clock_mono_ms() + ADMIN_TIMEOUT_MS;
    if (n == -1) {
        free(head);
        return;
    }
    if (n == -408) {
        admin_error(fd, 408, "Request Timeout", NULL, out_deadline);
    } else if (n == -431) {
        admin_error(fd, 431, "Request Header Fields Too Large", NULL, out_deadline);
    } else if (n < 0) {
        admin_error(fd, 400, "Bad Request", NULL, out_deadline);
    } else if ((status = admin_request_status(head, &head_only)) == 400) {
        admin_error(fd, 400, "Bad Request", NULL, out_deadline);
    } else if (status == 405) {
        admin_error(fd, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", out_deadline);
    } else if (status == 404) {
        admin_error(fd, 404, "Not Found", NULL, out_deadline);
    } else {
        size_t blen = 0;
        char *body = admin_metrics_render(&a->src, &blen);
        if (body == NULL)
            admin_error(fd, 500, "Internal Server Error", NULL, out_deadline);
        else
            admin_respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, body,
                          blen, head_only, out_deadline);
        free(body);
    }
    free(head);
}

/* Our side is done: FIN, then discard what the client still sends (a
 * bounded amount, a bounded time) so close(2) does not reset the
 * connection under the response. */
static void admin_linger_close(int fd)
{
    shutdown(fd, SHUT_WR);
    uint64_t deadline = clock_mono_ms() + ADMIN_LINGER_MS;
    size_t left = ADMIN_LINGER_BYTES;
    char sink[4096];
    while (left > 0 && admin_wait(fd, POLLIN, deadline) > 0) {
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        left -= (size_t)n < left ? (size_t)n : left;
    }
    close(fd);
}

static void *admin_main(void *arg)
{
    struct admin_server *a = arg;
    log_set_thread_tag("admin");
    for (;;) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
        /* acquire: pairs with the release store in admin_stop */
        if (atomic_load_explicit(&a->stop, memory_order_acquire)) {
            if (fd >= 0)
                close(fd);
            break;
        }
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                log_msg(LOG_WARN, "admin %s: accept: %s", a->addr, strerror(errno));
                /* EMFILE and friends: not a hot loop */
                struct timespec ts = {0, 100 * 1000000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        admin_serve(a, fd);
        admin_linger_close(fd);
    }
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
    a->fd = socket(ca.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, rc = 0;
    if (a->fd < 0 || setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(a->fd, (struct sockaddr *)&ca.ss, ca.len) < 0 || listen(a->fd, 16) < 0) {
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
    /* release: pairs with the acquire after accept in admin_main */
    atomic_store_explicit(&a->stop, true, memory_order_release);
    shutdown(a->fd, SHUT_RDWR); /* the blocked accept returns */
    pthread_join(a->thread, NULL);
    close(a->fd);
    free(a);
}
