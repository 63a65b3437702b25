/*
 * NAME
 *	dns-delay - a DNS server for benchmarks that answers after a fixed delay
 * SYNOPSIS
 *	dns-delay PORT DELAY_US [LISTED_SUFFIX]
 * DESCRIPTION
 *	Listens on 127.0.0.1:PORT (UDP) and answers every query DELAY_US
 *	microseconds after it arrived, in arrival order: a name ending in
 *	LISTED_SUFFIX (default ".listed.bench") gets one A record 127.0.0.2,
 *	any other NXDOMAIN with an SOA whose TTL and minimum are 0, so that
 *	no resolver caches either answer: every lookup is a packet.  One
 *	thread, poll(2); answers at most 65,536 queries waiting at once (more
 *	are dropped, as a loaded server would).  Prints "dns-delay: ready"
 *	once listening; runs until killed.  For bench/sinks.sh (the dnsbl case).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QMAX 65536

struct pend {
    uint64_t due_us;
    struct sockaddr_in from;
    size_t len;
    unsigned char pkt[512];
};

static struct pend q[QMAX];
static size_t qhead, qn;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The answer to the query in p (len octets) into p; its length, or 0. */
static size_t answer(unsigned char *p, size_t len, const char *suffix)
{
    if (len < 12 + 5)
        return 0;
    size_t i = 12;
    char name[300];
    size_t n = 0;
    while (i < len && p[i] != 0) {
        size_t l = p[i++];
        if (l > 63 || i + l > len || n + l + 2 > sizeof(name))
            return 0;
        if (n)
            name[n++] = '.';
        memcpy(name + n, p + i, l);
        n += l;
        i += l;
    }
    name[n] = '\0';
    if (i + 5 > len)
        return 0;
    i += 5; /* the root label, QTYPE, QCLASS */
    unsigned qtype = (unsigned)(p[i - 4] << 8 | p[i - 3]);
    size_t sl = strlen(suffix);
    int listed = n >= sl && strcasecmp(name + n - sl, suffix) == 0 && qtype == 1;
    p[2] = (unsigned char)(0x84 | (p[2] & 0x01)); /* QR, AA, RD as asked */
    p[3] = listed ? 0x80 : 0x83;                  /* RA; NOERROR or NXDOMAIN */
    p[4] = 0, p[5] = 1;                           /* one question */
    memset(p + 6, 0, 6);
    len = i; /* drop what followed the question (an EDNS OPT) */
    static const unsigned char a_rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 2};
    static const unsigned char soa_rr[] = {0xc0, 0x0c, 0, 6, 0, 1, 0, 0, 0, 0, 0, 22, 0, 0,
                                           0,    0,    0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0,    0,    0, 0, 0, 0};
    if (listed) {
        p[7] = 1;
        memcpy(p + len, a_rr, sizeof(a_rr));
        return len + sizeof(a_rr);
    }
    p[9] = 1;
    memcpy(p + len, soa_rr, sizeof(soa_rr));
    return len + sizeof(soa_rr);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dns-delay PORT DELAY_US [LISTED_SUFFIX]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    uint64_t delay = (uint64_t)strtoull(argv[2], NULL, 10);
    const char *suffix = argc > 3 ? argv[3] : ".listed.bench";
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("dns-delay: bind");
        return 1;
    }
    printf("dns-delay: ready\n");
    fflush(stdout);
    for (;;) {
        int wait = -1;
        if (qn > 0) {
            uint64_t now = now_us(), due = q[qhead].due_us;
            wait = due <= now ? 0 : (int)((due - now + 999) / 1000);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, wait);
        for (;;) { /* take what arrived */
            struct pend *e = &q[(qhead + qn) % QMAX];
            socklen_t sl = sizeof(e->from);
            ssize_t got = recvfrom(fd, e->pkt, sizeof(e->pkt) - 64, 0,
                                   (struct sockaddr *)&e->from, &sl);
            if (got <= 0)
                break;
            if (qn == QMAX)
                continue; /* dropped */
            e->len = (size_t)got;
            e->due_us = now_us() + delay;
            qn++;
        }
        uint64_t now = now_us();
        while (qn > 0 && q[qhead].due_us <= now) { /* answer what is due */
            struct pend *e = &q[qhead];
            size_t n = answer(e->pkt, e->len, suffix);
            if (n > 0)
                sendto(fd, e->pkt, n, 0, (struct sockaddr *)&e->from, sizeof(e->from));
            qhead = (qhead + 1) % QMAX;
            qn--;
        }
    }
}
