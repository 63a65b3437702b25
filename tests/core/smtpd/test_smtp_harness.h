/*
 * NAME
 *	test_smtp_harness - a session over a real spool, driven byte by byte
 * SYNOPSIS
 *	#include "test_smtp_harness.h"
 *
 *	struct h h;
 *	h_init(&h, "192.0.2.10", (const char *[]){"max_errors=3"}, 1);
 *	h_send(&h, "EHLO client.example\r\n");
 *	h_expect(&h, "250 CHUNKING");
 *	h_fini(&h);
 * DESCRIPTION
 *	The spool lives in a mkdtemp() directory; the group commit is driven
 *	by hand (h_sync: spool_writer_sync_fd, fdatasync, sync_done), as the
 *	worker loop does it.  Output is collected through out_take/out_done
 *	after every call and popped one reply at a time.
 *
 *	Event sinks: h_init_conf() takes configuration text with binding
 *	blocks, written to a temporary file and loaded with cfg_load() as the
 *	daemon does; the engine gets a one-worker sched_pool attached to the
 *	test thread and a sink_worker, and the server is given it.  h_poll()
 *	is the worker loop's turn: run the completions (sched_worker_run_budget),
 *	expire deadlines (sink_worker_expire), drive the group commit, collect
 *	output; h_wait() polls until a whole reply is there.
 */
#ifndef SLUICE_TEST_SMTP_HARNESS_H
#define SLUICE_TEST_SMTP_HARNESS_H

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/smtpd/smtp_int.h"
#include "sched/sched.h"
#include "sinks/engine.h"

struct h {
    char dir[64];
    struct spool *sp;
    struct spool_writer *w;
    struct cfg *cfg;
    struct smtp_server *srv;
    struct smtp_session *s;
    char *out; /* collected, not yet popped */
    size_t outlen, outcap, outpos;
    char reply[1 << 16]; /* the last reply popped (all its lines) */
    int kicks;
    bool manual; /* h_send does not drain output */
    /* event sinks (h_init_conf) */
    struct sink_engine *engine;
    struct sched_pool *pool;
    struct sched_worker *sched;
    struct sink_worker *sinks;
};

static inline void h_kick(void *cookie)
{
    ((struct h *)cookie)->kicks++;
}

static inline void h_collect(struct h *h)
{
    const char *p;
    size_t n;
    if (h->s == NULL)
        return;
    while (smtp_session_out_take(h->s, &p, &n)) {
        if (h->outlen + n + 1 > h->outcap) {
            h->outcap = (h->outlen + n + 1) * 2;
            h->out = realloc(h->out, h->outcap);
            cr_assert_not_null(h->out);
        }
        memcpy(h->out + h->outlen, p, n);
        h->outlen += n;
        h->out[h->outlen] = '\0';
        smtp_session_out_done(h->s);
    }
}

static inline struct smtp_session *h_session(struct h *h, const char *ip)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(40000);
        cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(40000);
        cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1);
        len = sizeof(*a);
    }
    struct smtp_session *s = smtp_session_create(h->srv, h, (struct sockaddr *)&ss, len);
    cr_assert_not_null(s);
    return s;
}

/* The server with conf (configuration text, or NULL) and overrides; no
 * session yet. */
static inline void h_init_server(struct h *h, const char *conf, const char *const *ov, size_t nov)
{
    char err[512];
    const char *all[32];
    char path[64] = "";
    size_t n = 0;
    memset(h, 0, sizeof(*h));
    all[n++] = "hostname=mx.example.test";
    all[n++] = "relay_domains=[\"example.test\", \".sub.example.test\"]";
    for (size_t i = 0; i < nov && n < 32; i++)
        all[n++] = ov[i];
    if (conf != NULL) {
        strcpy(path, "/tmp/smtp-test-conf-XXXXXX");
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, conf, strlen(conf)), (ssize_t)strlen(conf));
        close(fd);
    }
    h->cfg = cfg_load(conf ? path : NULL, all, n, err, sizeof(err));
    if (conf != NULL)
        unlink(path);
    cr_assert_not_null(h->cfg, "cfg: %s", err);
    strcpy(h->dir, "/tmp/smtp-test-XXXXXX");
    cr_assert_not_null(mkdtemp(h->dir));
    cr_assert_eq(spool_open(h->dir, NULL, NULL, NULL, &h->sp), 0);
    cr_assert_eq(spool_writer_create(h->sp, 0, &h->w), 0);
    h->srv = smtp_server_create(h->cfg, h->w, h_kick);
    cr_assert_not_null(h->srv);
    if (conf != NULL) {
        h->engine = sink_engine_create(h->cfg, err, sizeof(err));
        cr_assert_not_null(h->engine, "engine: %s", err);
        h->pool = sched_pool_create(1, NULL);
        cr_assert_not_null(h->pool);
        h->sched = sched_pool_worker(h->pool, 0);
        sched_worker_attach(h->sched);
        h->sinks = sink_worker_create(h->engine, h->pool, 0);
        cr_assert_not_null(h->sinks);
        smtp_server_set_sinks(h->srv, h->sinks);
    }
    smtp_set_test_clock(1000000);
}

/* A session from ip (127.0.0.1 is in mynetworks), started, with bindings. */
static inline void h_init_conf(struct h *h, const char *ip, const char *conf, const char *const *ov,
                               size_t nov, enum smtp_start how)
{
    h_init_server(h, conf, ov, nov);
    h->s = h_session(h, ip ? ip : "127.0.0.1");
    smtp_session_start(h->s, how);
    h_collect(h);
}

/* A session from ip (127.0.0.1 is in mynetworks), greeted, with overrides. */
static inline void h_init_how(struct h *h, const char *ip, const char *const *ov, size_t nov,
                              enum smtp_start how)
{
    h_init_conf(h, ip, NULL, ov, nov, how);
}

static inline void h_init(struct h *h, const char *ip, const char *const *ov, size_t nov)
{
    h_init_how(h, ip, ov, nov, SMTP_START_OK);
}

/* Drives the group commit like the worker loop: one fdatasync per batch. */
static inline void h_sync_res(struct h *h, int forced)
{
    int fd;
    while ((fd = spool_writer_sync_fd(h->w)) >= 0) {
        int res = fdatasync(fd) == 0 ? 0 : -errno;
        spool_writer_sync_done(h->w, forced ? forced : res);
    }
    h_collect(h);
}

static inline void h_sync(struct h *h)
{
    h_sync_res(h, 0);
}

/* One turn of the worker loop: sink completions, deadlines, the group
 * commit, output. */
static inline void h_poll(struct h *h)
{
    if (h->sinks != NULL) {
        sched_worker_run_budget(h->sched, 64);
        sink_worker_expire(h->sinks, sink_now_ms());
    }
    h_sync(h);
}

/* A whole reply is waiting to be popped. */
static inline bool h_ready(const struct h *h)
{
    size_t pos = h->outpos;
    for (;;) {
        const char *eol = h->outlen > pos ? memmem(h->out + pos, h->outlen - pos, "\r\n", 2) : NULL;
        if (eol == NULL)
            return false;
        size_t len = (size_t)(eol - (h->out + pos));
        if (len < 4 || h->out[pos + 3] != '-')
            return true;
        pos += len + 2;
    }
}

/* Polls until a reply is there or timeout_ms passed; whether it is. */
static inline bool h_wait(struct h *h, unsigned timeout_ms)
{
    uint64_t until = sink_now_ms() + timeout_ms;
    for (;;) {
        h_poll(h);
        if (h_ready(h))
            return true;
        if (sink_now_ms() >= until)
            return false;
        usleep(500);
    }
}

static inline void h_feed(struct h *h, const char *p, size_t n)
{
    struct mbuf *m = mbuf_heap(n ? n : 1);
    cr_assert_not_null(m);
    memcpy(m->data, p, n);
    smtp_session_input(h->s, m, 0, (uint32_t)n);
    mbuf_unref(m);
    if (!h->manual)
        h_collect(h);
}

/* Feeds n bytes in pieces of `piece` octets (1: byte by byte). */
static inline void h_feed_split(struct h *h, const char *p, size_t n, size_t piece)
{
    for (size_t i = 0; i < n; i += piece)
        h_feed(h, p + i, n - i < piece ? n - i : piece);
}

static inline void h_send(struct h *h, const char *str)
{
    h_feed(h, str, strlen(str));
}

/* Pops the next complete reply into h->reply; false if there is none. */
static inline bool h_pop(struct h *h)
{
    size_t pos = h->outpos, k = 0;
    for (;;) {
        char *eol = h->outlen > pos ? memmem(h->out + pos, h->outlen - pos, "\r\n", 2) : NULL;
        if (eol == NULL)
            return false;
        size_t len = (size_t)(eol - (h->out + pos));
        cr_assert_geq(len, 3, "short reply line");
        cr_assert_lt(k + len + 2, sizeof(h->reply));
        bool more = len > 3 && h->out[pos + 3] == '-';
        memcpy(h->reply + k, h->out + pos, len);
        k += len;
        h->reply[k++] = more ? '\n' : '\0';
        pos += len + 2;
        if (!more)
            break;
    }
    h->outpos = pos;
    return true;
}

/* The last line of the reply just popped. */
static inline const char *h_last(struct h *h)
{
    const char *nl = strrchr(h->reply, '\n');
    return nl ? nl + 1 : h->reply;
}

/* The next reply's last line starts with want (e.g. "250 2.1.0"). */
#define h_expect(h, want)                                                                          \
    do {                                                                                           \
        cr_assert(h_pop(h), "no reply; wanted %s", (want));                                        \
        cr_assert(strncmp(h_last(h), (want), strlen(want)) == 0, "got \"%s\", wanted \"%s\"",      \
                  h_last(h), (want));                                                              \
    } while (0)

#define h_expect_none(h)                                                                           \
    do {                                                                                           \
        cr_assert(!h_pop(h), "unexpected reply \"%s\"", (h)->reply);                               \
    } while (0)

/* EHLO + MAIL + RCPT, each answered. */
static inline void h_envelope(struct h *h, const char *from, const char *to)
{
    char line[600];
    h_send(h, "EHLO client.example\r\n");
    h_expect(h, "250 CHUNKING");
    snprintf(line, sizeof(line), "MAIL FROM:<%s>\r\n", from);
    h_send(h, line);
    h_expect(h, "250 2.1.0");
    snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", to);
    h_send(h, line);
    h_expect(h, "250 2.1.5");
}

struct h_live {
    uint64_t n;
    uint64_t ids[64];
};

static inline int h_live_cb(void *arg, const struct spool_msginfo *m)
{
    struct h_live *l = arg;
    if (l->n < 64)
        l->ids[l->n] = m->id;
    l->n++;
    return 0;
}

static inline uint64_t h_live_count(struct h *h, struct h_live *l)
{
    struct h_live tmp;
    if (l == NULL)
        l = &tmp;
    memset(l, 0, sizeof(*l));
    cr_assert_eq(spool_scan(h->dir, h_live_cb, l, NULL), 0);
    return l->n;
}

/* The stored body of message id; malloc'd, NUL-terminated. */
static inline char *h_body(struct h *h, uint64_t id, size_t *len)
{
    int fd = memfd_create("body", 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(spool_read_body(h->dir, id, fd), 0);
    off_t n = lseek(fd, 0, SEEK_END);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(pread(fd, b, (size_t)n, 0), n);
    b[n] = '\0';
    close(fd);
    if (len)
        *len = (size_t)n;
    return b;
}

/* The id in the "250 2.0.0 Ok: queued as ID" just popped. */
static inline uint64_t h_queued_id(struct h *h)
{
    const char *p = strstr(h_last(h), "queued as ");
    uint64_t id;
    cr_assert_not_null(p, "not a queued reply: %s", h->reply);
    cr_assert(spool_id_parse(p + 10, &id), "bad id in %s", h->reply);
    return id;
}

/* The body after the Received: header we add (checked for its shape). */
static inline const char *h_after_received(const char *body)
{
    cr_assert(strncmp(body, "Received: from ", 15) == 0, "no Received: %s", body);
    const char *p = body;
    for (;;) { /* the header's folded lines */
        const char *eol = strstr(p, "\r\n");
        cr_assert_not_null(eol);
        p = eol + 2;
        if (*p != '\t')
            return p;
    }
}

static inline int h_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static inline void h_fini(struct h *h)
{
    if (h->s)
        smtp_session_destroy(h->s);
    h->s = NULL;
    smtp_server_destroy(h->srv);
    if (h->sinks != NULL) { /* the daemon's order: calls, sink worker, engine, pool */
        sink_worker_destroy(h->sinks);
        sink_engine_destroy(h->engine);
        sched_worker_detach(h->sched);
        sched_pool_destroy(h->pool);
    }
    h_sync(h);
    spool_writer_destroy(h->w);
    spool_close(h->sp);
    cfg_destroy(h->cfg);
    free(h->out);
    nftw(h->dir, h_rm, 16, FTW_DEPTH | FTW_PHYS);
    smtp_set_test_clock(0);
}

#endif
