/*
 * NAME
 *	tls-load - a bounded SMTP load generator: plaintext, STARTTLS, implicit TLS
 * SYNOPSIS
 *	tls-load MODE HOST PORT MESSAGES SESSIONS
 *	MODE: plain | tls | tls-new
 * DESCRIPTION
 *	SESSIONS threads (one connection each at a time) send MESSAGES 4 KiB
 *	messages in all, MAIL+RCPT+DATA pipelined in one write, the body
 *	and the dot in another, every reply read.
 *	plain	one plaintext connection per thread, reused for its messages
 *	tls	one connection per thread, STARTTLS once, reused
 *	tls-new	a new implicit-TLS connection (PORT is listen_smtps) per
 *		message: handshake, 220, EHLO, the message, QUIT
 *	Prints one line: "MODE messages=N seconds=S rate=R" (messages/s).
 *	TLS: OpenSSL defaults (TLS 1.3, no verification: a benchmark), no
 *	session resumption, so tls-new pays a full handshake every time.
 * DIAGNOSTICS
 *	Exit 1 with the first failure on stderr (a refused reply, a timeout
 *	of 30 s on any read).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_PLAIN, M_TLS, M_TLS_NEW };

static enum mode mode;
static struct sockaddr_in addr;
static SSL_CTX *ctx;
static atomic_int next_msg; /* messages handed out so far */
static int total;
static char body[4096 + 64];
static size_t body_len;
static atomic_int failed;

struct io {
    int fd;
    SSL *ssl;
    char buf[8192];
    size_t len;
};

static int io_write(struct io *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            size_t done = 0;
            w = SSL_write_ex(c->ssl, p, n, &done) == 1 ? (ssize_t)done : -1;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
        }
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One reply (its last line's code), or -1. */
static int io_reply(struct io *c)
{
    for (int guard = 0; guard < 10000; guard++) {
        char *lf = memchr(c->buf, '\n', c->len);
        if (lf != NULL) {
            size_t n = (size_t)(lf - c->buf) + 1;
            int code = n >= 4 ? atoi(c->buf) : -1;
            bool more = n >= 4 && c->buf[3] == '-';
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            if (!more)
                return code;
            continue;
        }
        if (c->len == sizeof(c->buf))
            return -1;
        ssize_t r;
        if (c->ssl) {
            size_t got = 0;
            r = SSL_read_ex(c->ssl, c->buf + c->len, sizeof(c->buf) - c->len, &got) == 1
                    ? (ssize_t)got
                    : -1;
        } else {
            r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        }
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
    return -1;
}

static int expect(struct io *c, int code, const char *what)
{
    int got = io_reply(c);
    if (got != code) {
        fprintf(stderr, "tls-load: %s: expected %d, got %d\n", what, code, got);
        atomic_store(&failed, 1);
        return -1;
    }
    return 0;
}

static int io_connect(struct io *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("tls-load: connect");
        close(c->fd);
        atomic_store(&failed, 1);
        return -1;
    }
    return 0;
}

static int io_tls(struct io *c)
{
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        fprintf(stderr, "tls-load: handshake failed\n");
        ERR_print_errors_fp(stderr);
        atomic_store(&failed, 1);
        return -1;
    }
    return 0;
}

static void io_close(struct io *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    close(c->fd);
}

/* Connects and gets to the point where MAIL may be sent. */
static int session_open(struct io *c)
{
    if (io_connect(c) < 0)
        return -1;
    if (mode == M_TLS_NEW && io_tls(c) < 0)
        return -1;
    if (expect(c, 220, "greeting") < 0)
        return -1;
    if (io_write(c, "EHLO bench.test\r\n", 17) < 0 || expect(c, 250, "EHLO") < 0)
        return -1;
    if (mode == M_TLS) {
        if (io_write(c, "STARTTLS\r\n", 10) < 0 || expect(c, 220, "STARTTLS") < 0 ||
            io_tls(c) < 0)
            return -1;
        if (io_write(c, "EHLO bench.test\r\n", 17) < 0 || expect(c, 250, "EHLO after TLS") < 0)
            return -1;
    }
    return 0;
}

static int send_message(struct io *c, int i)
{
    char env[256];
    int n = snprintf(env, sizeof(env),
                     "MAIL FROM:<bench%d@bench.test>\r\nRCPT TO:<sink@example.test>\r\nDATA\r\n", i);
    if (io_write(c, env, (size_t)n) < 0 || expect(c, 250, "MAIL") < 0 ||
        expect(c, 250, "RCPT") < 0 || expect(c, 354, "DATA") < 0)
        return -1;
    if (io_write(c, body, body_len) < 0 || expect(c, 250, "end of data") < 0)
        return -1;
    return 0;
}

static void *worker(void *arg)
{
    (void)arg;
    struct io c;
    bool open = false;
    for (;;) {
        int i = atomic_fetch_add(&next_msg, 1);
        if (i >= total || atomic_load(&failed))
            break;
        if (!open) {
            if (session_open(&c) < 0)
                return NULL;
            open = true;
        }
        if (send_message(&c, i) < 0)
            return NULL;
        if (mode == M_TLS_NEW) {
            io_write(&c, "QUIT\r\n", 6);
            io_reply(&c);
            io_close(&c);
            open = false;
        }
    }
    if (open) {
        io_write(&c, "QUIT\r\n", 6);
        io_reply(&c);
        io_close(&c);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: tls-load plain|tls|tls-new HOST PORT MESSAGES SESSIONS\n");
        return 2;
    }
    mode = strcmp(argv[1], "plain") == 0 ? M_PLAIN : strcmp(argv[1], "tls") == 0 ? M_TLS
           : strcmp(argv[1], "tls-new") == 0                                  ? M_TLS_NEW
                                                                               : -1;
    total = atoi(argv[4]);
    int sessions = atoi(argv[5]);
    if ((int)mode < 0 || total <= 0 || sessions <= 0 || sessions > 1024) {
        fprintf(stderr, "tls-load: bad arguments\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "tls-load: HOST must be an IPv4 address\n");
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* a 4 KiB message: headers and 76-octet lines */
    body_len = (size_t)snprintf(body, sizeof(body),
                                "From: bench@bench.test\r\nTo: sink@example.test\r\n"
                                "Subject: tls bench\r\n\r\n");
    while (body_len + 78 <= 4096) {
        memset(body + body_len, 'x', 76);
        memcpy(body + body_len + 76, "\r\n", 2);
        body_len += 78;
    }
    memcpy(body + body_len, ".\r\n", 3);
    body_len += 3;

    pthread_t *th = calloc((size_t)sessions, sizeof(*th));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < sessions; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < sessions; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    free(th);
    SSL_CTX_free(ctx);
    if (atomic_load(&failed))
        return 1;
    printf("%s messages=%d seconds=%.3f rate=%.0f\n", argv[1], total, secs, total / secs);
    return 0;
}
