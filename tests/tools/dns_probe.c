/*
 * NAME
 *	dns-probe - one lookup through core/client/dns.h, driven by poll(2)
 * SYNOPSIS
 *	dns-probe [-t TIMEOUT_MS] [-n TRIES] [-w WALL_MS] SERVER mx DOMAIN [PORT]
 *	dns-probe [-t TIMEOUT_MS] [-n TRIES] [-w WALL_MS] SERVER host NAME [PORT]
 * DESCRIPTION
 *	SERVER is "127.0.0.1:5353" (several separated by commas) or "-" for
 *	the system's resolv.conf.  -t and -n go to dns_create() (defaults
 *	500 ms and 2 tries); -w bounds the whole run (default 10000 ms).
 *	PORT defaults to 25.  Prints
 *		status ok|temp|perm ERROR
 *		HOST PREF ADDRESS:PORT		(one line per address, in order)
 *	where an IPv6 address is written [ADDR]:PORT.  Exit 0 once a result
 *	was printed, 3 when the wall time ran out ("status timeout"), 2 on
 *	a usage or set-up error.  The integration tests run it against a
 *	dnsmasq (tests/integration/test_dns.py).
 */
#include "core/client/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MAX_FDS 32

struct probe {
    struct pollfd fds[PROBE_MAX_FDS];
    nfds_t nfds;
    bool done;
};

static void probe_sock(void *arg, int fd, bool want_read, bool want_write)
{
    struct probe *p = arg;
    nfds_t i = 0;
    while (i < p->nfds && p->fds[i].fd != fd)
        i++;
    if (!want_read && !want_write) {
        if (i < p->nfds)
            p->fds[i] = p->fds[--p->nfds];
        return;
    }
    if (i == p->nfds) {
        if (p->nfds == PROBE_MAX_FDS) {
            fprintf(stderr, "dns-probe: more than %d sockets\n", PROBE_MAX_FDS);
            exit(2);
        }
        p->nfds++;
    }
    p->fds[i].fd = fd;
    p->fds[i].events = (short)((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0));
    p->fds[i].revents = 0;
}

static void probe_done(void *arg, const struct dns_result *r)
{
    static const char *const names[] = {"ok", "temp", "perm"};
    struct probe *p = arg;
    if (p->done) /* the wall time ran out: dns_destroy's "shutting down" */
        return;
    printf("status %s %s\n", names[r->status], r->error);
    for (size_t i = 0; i < r->naddr; i++) {
        const struct dns_addr *a = &r->addrs[i];
        char ip[INET6_ADDRSTRLEN];
        unsigned port;
        if (a->ss.ss_family == AF_INET) {
            const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
            inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
            port = ntohs(s->sin_port);
            printf("%s %u %s:%u\n", a->host, a->pref, ip, port);
        } else {
            const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
            inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
            port = ntohs(s->sin6_port);
            printf("%s %u [%s]:%u\n", a->host, a->pref, ip, port);
        }
    }
    fflush(stdout);
    p->done = true;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int usage(void)
{
    fprintf(stderr, "usage: dns-probe [-t TIMEOUT_MS] [-n TRIES] [-w WALL_MS] "
                    "SERVER mx|host NAME [PORT]\n");
    return 2;
}

int main(int argc, char **argv)
{
    unsigned timeout_ms = 500, tries = 2;
    unsigned long wall_ms = 10000;
    int c;
    while ((c = getopt(argc, argv, "t:n:w:")) != -1) {
        switch (c) {
        case 't':
            timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'n':
            tries = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            wall_ms = strtoul(optarg, NULL, 10);
            break;
        default:
            return usage();
        }
    }
    if (argc - optind < 3 || argc - optind > 4)
        return usage();
    const char *server = argv[optind], *kind = argv[optind + 1], *name = argv[optind + 2];
    unsigned long port = argc - optind == 4 ? strtoul(argv[optind + 3], NULL, 10) : 25;
    if (port == 0 || port > 65535)
        return usage();

    /* "a,b" into the servers array */
    char buf[1024];
    const char *servers[8];
    size_t nservers = 0;
    if (strcmp(server, "-") != 0) {
        snprintf(buf, sizeof(buf), "%s", server);
        for (char *save = NULL, *s = strtok_r(buf, ",", &save); s && nservers < 8;
             s = strtok_r(NULL, ",", &save))
            servers[nservers++] = s;
    }

    struct probe p = {.nfds = 0};
    char err[256];
    struct dns *d = dns_create(nservers ? servers : NULL, nservers, timeout_ms, tries, probe_sock,
                               &p, err, sizeof(err));
    if (d == NULL) {
        fprintf(stderr, "dns-probe: %s\n", err);
        return 2;
    }
    int rc;
    if (strcmp(kind, "mx") == 0)
        rc = dns_resolve_mx(d, name, (uint16_t)port, probe_done, &p);
    else if (strcmp(kind, "host") == 0)
        rc = dns_resolve_host(d, name, (uint16_t)port, probe_done, &p);
    else
        return usage();
    if (rc < 0) {
        fprintf(stderr, "dns-probe: %s: %s\n", name, strerror(-rc));
        dns_destroy(d);
        return 2;
    }

    uint64_t deadline = now_ms() + wall_ms;
    while (!p.done) {
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        uint64_t wait = dns_timeout_ms(d, deadline - now);
        struct pollfd fds[PROBE_MAX_FDS];
        nfds_t n = p.nfds;
        memcpy(fds, p.fds, n * sizeof(fds[0])); /* the sock callback edits p.fds */
        int k = poll(fds, n, (int)(wait > 60000 ? 60000 : wait));
        if (k < 0 && errno != EINTR) {
            perror("dns-probe: poll");
            return 2;
        }
        if (k <= 0) {
            dns_process(d, -1, -1);
            continue;
        }
        for (nfds_t i = 0; i < n && !p.done; i++) {
            short ev = fds[i].revents;
            if (ev == 0)
                continue;
            int rfd = ev & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd : -1;
            int wfd = ev & (POLLOUT | POLLERR) ? fds[i].fd : -1;
            dns_process(d, rfd, wfd);
        }
    }
    if (!p.done) {
        printf("status timeout %s: no answer within %lu ms\n", name, wall_ms);
        p.done = true;
        dns_destroy(d);
        return 3;
    }
    dns_destroy(d);
    return 0;
}
