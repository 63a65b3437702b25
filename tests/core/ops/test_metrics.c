/*
 * NAME
 *	test_metrics - the exposition builder (core/ops/metrics.c) and the admin
 *	listener's HTTP handling (core/ops/admin.c) with a partial set of sources
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/ops/admin.h"
#include "core/ops/metrics.h"
#include "sched/sched.h"

static const char *text_of(struct metrics_buf *b)
{
    const char *t = metrics_buf_text(b, NULL);
    cr_assert_not_null(t);
    return t;
}

Test(metrics, help_type_and_samples)
{
    struct metrics_buf *b = metrics_buf_create();
    cr_assert_not_null(b);
    metrics_family(b, "sluice_x_total", METRICS_COUNTER, "Things counted.");
    metrics_u64(b, "sluice_x_total", NULL, 18446744073709551615ull);
    metrics_family(b, "sluice_g", METRICS_GAUGE, "A gauge.");
    metrics_u64(b, "sluice_g", (const char *const[]){"worker", "0", "kind", "a", NULL}, 7);
    size_t len = 0;
    const char *t = metrics_buf_text(b, &len);
    cr_assert_str_eq(t, "# HELP sluice_x_total Things counted.\n"
                        "# TYPE sluice_x_total counter\n"
                        "sluice_x_total 18446744073709551615\n"
                        "# HELP sluice_g A gauge.\n"
                        "# TYPE sluice_g gauge\n"
                        "sluice_g{worker=\"0\",kind=\"a\"} 7\n");
    cr_assert_eq(len, strlen(t));
    metrics_buf_destroy(b);
}

Test(metrics, escaping)
{
    struct metrics_buf *b = metrics_buf_create();
    /* HELP escapes backslash and line feed, not the double quote */
    metrics_family(b, "m", METRICS_GAUGE, "a \\ b\nc \"q\"");
    /* label values escape all three */
    metrics_u64(b, "m", (const char *const[]){"binding", "x\"y\\z\nw", NULL}, 1);
    cr_assert_str_eq(text_of(b), "# HELP m a \\\\ b\\nc \"q\"\n"
                                 "# TYPE m gauge\n"
                                 "m{binding=\"x\\\"y\\\\z\\nw\"} 1\n");
    metrics_buf_destroy(b);
}

Test(metrics, doubles)
{
    struct metrics_buf *b = metrics_buf_create();
    metrics_double(b, "a", NULL, 0.5);
    metrics_double(b, "b", NULL, INFINITY);
    metrics_double(b, "c", NULL, -INFINITY);
    metrics_double(b, "d", NULL, NAN);
    metrics_double(b, "e", NULL, 0.1);
    const char *t = text_of(b);
    cr_assert_str_eq(t, "a 0.5\nb +Inf\nc -Inf\nd NaN\ne 0.10000000000000001\n");
    cr_assert_float_eq(strtod("0.10000000000000001", NULL), 0.1, 0, "round trip exact");
    metrics_buf_destroy(b);
}

Test(metrics, histogram_cumulative)
{
    struct metrics_buf *b = metrics_buf_create();
    const double bounds[] = {0.001, 0.01, 0.1};
    const uint64_t counts[] = {2, 0, 3, 4}; /* per bucket; the last above 0.1 */
    metrics_family(b, "h_seconds", METRICS_HISTOGRAM, "H.");
    metrics_histogram(b, "h_seconds", (const char *const[]){"binding", "b1", NULL}, bounds, 3,
                      counts, 1.25);
    cr_assert_str_eq(text_of(b), "# HELP h_seconds H.\n"
                                 "# TYPE h_seconds histogram\n"
                                 "h_seconds_bucket{binding=\"b1\",le=\"0.001\"} 2\n"
                                 "h_seconds_bucket{binding=\"b1\",le=\"0.01\"} 2\n"
                                 "h_seconds_bucket{binding=\"b1\",le=\"0.1\"} 5\n"
                                 "h_seconds_bucket{binding=\"b1\",le=\"+Inf\"} 9\n"
                                 "h_seconds_sum{binding=\"b1\"} 1.25\n"
                                 "h_seconds_count{binding=\"b1\"} 9\n");
    metrics_buf_destroy(b);
}

Test(metrics, histogram_unlabelled_and_growth)
{
    struct metrics_buf *b = metrics_buf_create();
    const double bounds[] = {1e-06, 2.5};
    const uint64_t counts[] = {0, 0, 0};
    metrics_histogram(b, "e", NULL, bounds, 2, counts, 0);
    cr_assert_str_eq(text_of(b), "e_bucket{le=\"1e-06\"} 0\n"
                                 "e_bucket{le=\"2.5\"} 0\n"
                                 "e_bucket{le=\"+Inf\"} 0\n"
                                 "e_sum 0\n"
                                 "e_count 0\n");
    /* well past the initial 4 KiB: the buffer grows and keeps everything */
    char v[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(v, sizeof(v), "%d", i);
        metrics_u64(b, "many", (const char *const[]){"i", v, NULL}, (uint64_t)i);
    }
    size_t len = 0;
    const char *t = metrics_buf_text(b, &len);
    cr_assert_gt(len, 4096);
    cr_assert_not_null(strstr(t, "many{i=\"0\"} 0\n"));
    cr_assert_not_null(strstr(t, "many{i=\"1999\"} 1999\n"));
    metrics_buf_destroy(b);
}

/* ---- the admin listener, with a scheduler as the only source ---- */

static struct admin_server *adm;
static struct sched_pool *pool;
static int adm_port;

static void adm_setup(void)
{
    pool = sched_pool_create(2, NULL);
    cr_assert_not_null(pool);
    struct admin_sources src = {.pool = pool};
    char err[256];
    cr_assert_eq(admin_start(&src, "127.0.0.1:0", &adm, err, sizeof(err)), 0, "%s", err);
    const char *a = admin_listen_addr(adm);
    cr_assert_eq(strncmp(a, "127.0.0.1:", 10), 0, "%s", a);
    adm_port = atoi(a + 10);
    cr_assert_gt(adm_port, 0);
}

static void adm_teardown(void)
{
    admin_stop(adm);
    sched_pool_destroy(pool);
}

/* Sends req (len bytes), reads until EOF; returns the malloc'd response. */
static char *adm_exchange(const char *req, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)adm_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may have answered and closed already */
        off += (size_t)n;
    }
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        cr_assert_lt(got, cap, "response too long");
    }
    buf[got] = '\0';
    close(fd);
    return buf;
}

static char *adm_get(const char *req)
{
    return adm_exchange(req, strlen(req));
}

Test(admin, metrics_200, .init = adm_setup, .fini = adm_teardown)
{
    char *r = adm_get("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", r);
    cr_assert_not_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
    cr_assert_not_null(strstr(r, "Connection: close\r\n"));
    const char *body = strstr(r, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    const char *cl = strstr(r, "Content-Length: ");
    cr_assert_not_null(cl);
    cr_assert_eq((size_t)atol(cl + 16), strlen(body), "Content-Length matches the body");
    cr_assert_not_null(strstr(body, "# TYPE sluice_scheduler_tasks_total counter\n"));
    cr_assert_not_null(strstr(body, "sluice_scheduler_tasks_total{worker=\"0\"} "));
    cr_assert_not_null(strstr(body, "sluice_scheduler_steals_total{worker=\"1\"} "));
    cr_assert_null(strstr(body, "sluice_connections_open"), "no net source: left out");
    free(r);
    /* a query string is ignored; HTTP/1.0 and a bare LF line end are accepted */
    r = adm_get("GET /metrics?x=1 HTTP/1.0\n\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", r);
    free(r);
    /* HEAD: the headers only */
    r = adm_get("HEAD /metrics HTTP/1.1\r\n\r\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", r);
    cr_assert_null(strstr(r, "sluice_"), "no body for HEAD");
    free(r);
}

Test(admin, errors, .init = adm_setup, .fini = adm_teardown)
{
    char *r = adm_get("GET / HTTP/1.1\r\n\r\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 404 ", 13), 0, "%s", r);
    free(r);
    r = adm_get("GET /metricsx HTTP/1.1\r\n\r\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 404 ", 13), 0, "%s", r);
    free(r);
    r = adm_get("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 405 ", 13), 0, "%s", r);
    cr_assert_not_null(strstr(r, "Allow: GET, HEAD\r\n"));
    free(r);
    const char *bad[] = {
        "hello\r\n\r\n",
        "GET /metrics\r\n\r\n",
        "GET /metrics HTTP/2.0\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = adm_get(bad[i]);
        cr_assert_eq(strncmp(r, "HTTP/1.1 400 ", 13), 0, "%zu: %s", i, r);
        free(r);
    }
    /* a NUL inside the head */
    static const char nul[] = "GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n";
    r = adm_exchange(nul, sizeof(nul) - 1);
    cr_assert_eq(strncmp(r, "HTTP/1.1 400 ", 13), 0, "%s", r);
    free(r);
    /* a request line longer than the bound, never ended: 431 and closed */
    size_t n = ADMIN_MAX_REQUEST * 4;
    char *huge = malloc(n + 1);
    memcpy(huge, "GET /", 5);
    memset(huge + 5, 'a', n - 5);
    huge[n] = '\0';
    r = adm_exchange(huge, n);
    cr_assert_eq(strncmp(r, "HTTP/1.1 431 ", 13), 0, "%.40s", r);
    free(r);
    free(huge);
    /* still serving */
    r = adm_get("GET /metrics HTTP/1.1\r\n\r\n");
    cr_assert_eq(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", r);
    free(r);
}

static int adm_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)adm_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static double adm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Idle connections, and connections that sent part of a head, do not
 * hold up a scrape: fewer than the slots, and more (the oldest waiting
 * ones give way).  admin_stop then closes whatever is still open. */
Test(admin, idle_connections_do_not_block, .init = adm_setup, .fini = adm_teardown)
{
    static const int counts[] = {10, ADMIN_MAX_CONNS + 36};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        int n = counts[k];
        int *fds = malloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) {
            fds[i] = adm_connect();
            if (i % 2 == 1) /* half of them: a head begun, never ended */
                cr_assert_eq(send(fds[i], "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL), 23);
        }
        double t0 = adm_now();
        char *r = adm_get("GET /metrics HTTP/1.1\r\n\r\n");
        double took = adm_now() - t0;
        cr_assert_eq(strncmp(r, "HTTP/1.1 200 OK\r\n", 17), 0, "%d idle: %.60s", n, r);
        cr_assert_lt(took, 1.0, "%d idle connections: the scrape took %.3f s", n, took);
        free(r);
        for (int i = 0; i < n; i++)
            close(fds[i]);
        free(fds);
    }
    /* left open for admin_stop, which must not wait for their deadline */
    int left[8];
    for (int i = 0; i < 8; i++)
        left[i] = adm_connect();
    double t0 = adm_now();
    admin_stop(adm);
    adm = NULL;
    cr_assert_lt(adm_now() - t0, 1.0, "admin_stop waited for idle connections");
    for (int i = 0; i < 8; i++)
        close(left[i]);
}

Test(admin, bad_address)
{
    struct admin_sources src = {0};
    struct admin_server *a = NULL;
    char err[256];
    cr_assert_lt(admin_start(&src, "nonsense", &a, err, sizeof(err)), 0);
    cr_assert_null(a);
    cr_assert_not_null(strstr(err, "admin_listen"), "%s", err);
    /* the same port twice: the second bind fails with the reason */
    struct admin_server *a1 = NULL;
    cr_assert_eq(admin_start(&src, "127.0.0.1:0", &a1, err, sizeof(err)), 0, "%s", err);
    char again[64];
    snprintf(again, sizeof(again), "%s", admin_listen_addr(a1));
    cr_assert_lt(admin_start(&src, again, &a, err, sizeof(err)), 0);
    cr_assert_not_null(strstr(err, "in use"), "%s", err);
    admin_stop(a1);
}
