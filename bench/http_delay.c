/*
 * NAME
 *	http-delay - an HTTP policy service for benchmarks that answers after a fixed delay
 * SYNOPSIS
 *	http-delay PORT DELAY_US
 * DESCRIPTION
 *	Listens on 127.0.0.1:PORT and answers every request (a request line,
 *	headers, and a body of Content-Length octets) DELAY_US microseconds
 *	after it was read whole, with 200 and {"verdict":"continue"}.
 *	Keep-alive connections are served one request at a time; the delays
 *	of all connections run together (one thread, poll(2), at most 4,096
 *	connections).  Prints "http-delay: ready" once listening; runs until
 *	killed.  For bench/sinks.sh (the http_policy case).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CMAX 4096

struct conn {
    int fd;
    char buf[8192];
    size_t n;
    uint64_t due_us; /* 0: reading; else: answer then */
};

static struct conn c[CMAX];
static struct pollfd pfd[CMAX + 1];

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Whether c holds a whole request; its length in *len. */
static int whole(const struct conn *k, size_t *len)
{
    const char *end = memmem(k->buf, k->n, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t head = (size_t)(end - k->buf) + 4, body = 0;
    for (const char *p = k->buf; p < end; p = memchr(p, '\n', (size_t)(end - p)) + 1) {
        if (strncasecmp(p, "content-length:", 15) == 0)
            body = (size_t)strtoul(p + 15, NULL, 10);
        if (memchr(p, '\n', (size_t)(end - p)) == NULL)
            break;
    }
    if (k->n < head + body)
        return 0;
    *len = head + body;
    return 1;
}

static void drop(struct conn *k)
{
    close(k->fd);
    k->fd = -1;
    k->n = 0;
    k->due_us = 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: http-delay PORT DELAY_US\n");
        return 2;
    }
    uint64_t delay = (uint64_t)strtoull(argv[2], NULL, 10);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0) {
        perror("http-delay: listen");
        return 1;
    }
    for (int i = 0; i < CMAX; i++)
        c[i].fd = -1;
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: 22\r\n\r\n{\"verdict\":\"continue\"}";
    printf("http-delay: ready\n");
    fflush(stdout);
    for (;;) {
        uint64_t now = now_us(), next = UINT64_MAX;
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < CMAX; i++) {
            if (c[i].fd < 0)
                continue;
            if (c[i].due_us != 0) {
                if (c[i].due_us <= now) {
                    size_t len;
                    if (whole(&c[i], &len)) {
                        memmove(c[i].buf, c[i].buf + len, c[i].n - len);
                        c[i].n -= len;
                    }
                    c[i].due_us = 0;
                    if (write(c[i].fd, resp, sizeof(resp) - 1) < 0) {
                        drop(&c[i]);
                        continue;
                    }
                } else if (c[i].due_us < next) {
                    next = c[i].due_us;
                }
            }
            pfd[n] = (struct pollfd){.fd = c[i].fd, .events = c[i].due_us ? 0 : POLLIN};
            pfd[n++].revents = (short)i; /* the slot, restored below */
        }
        int slot[CMAX + 1];
        for (int k = 1; k < n; k++) {
            slot[k] = pfd[k].revents;
            pfd[k].revents = 0;
        }
        int wait = next == UINT64_MAX ? 100 : (int)((next - now + 999) / 1000);
        poll(pfd, (nfds_t)n, wait);
        if (pfd[0].revents & POLLIN) {
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                int i = 0;
                while (i < CMAX && c[i].fd >= 0)
                    i++;
                if (i == CMAX) {
                    close(fd);
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                c[i].fd = fd;
                c[i].n = 0;
                c[i].due_us = 0;
            }
        }
        for (int k = 1; k < n; k++) {
            struct conn *x = &c[slot[k]];
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) || x->fd < 0)
                continue;
            ssize_t got = read(x->fd, x->buf + x->n, sizeof(x->buf) - x->n);
            if (got <= 0) {
                if (got == 0 || errno != EAGAIN)
                    drop(x);
                continue;
            }
            x->n += (size_t)got;
            size_t len;
            if (whole(x, &len))
                x->due_us = now_us() + delay;
            else if (x->n == sizeof(x->buf))
                drop(x);
        }
    }
}
