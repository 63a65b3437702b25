/*
 * NAME
 *	test_osmtp_harness - a scripted fake server for core/osmtp
 * DESCRIPTION
 *	o_init() makes a client; o_in() feeds server bytes; o_out() returns
 *	what the client sent since the last call (every take is sent at
 *	once); o->log records the callbacks as text, one per line:
 *	"rcpt I CODE ESC TEXT", "done CODE ESC TEXT", "fail CODE ESC TEXT".
 */
#ifndef TEST_OSMTP_HARNESS_H
#define TEST_OSMTP_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/client/osmtp.h"

struct o {
    struct osmtp *c;
    char log[16384];
    size_t loglen;
    char out[1 << 17];
    size_t outlen;
    unsigned takes;               /* out_take calls that returned bytes (since o_out) */
    const struct osmtp_msg *next; /* sent from on_done when set */
    int next_rc;
};

static void o_log(struct o *o, const char *kind, long i, const struct osmtp_reply *r)
{
    int n = i >= 0 ? snprintf(o->log + o->loglen, sizeof(o->log) - o->loglen, "%s %ld %d %s %s\n",
                              kind, i, r->code, r->enhanced, r->text)
                   : snprintf(o->log + o->loglen, sizeof(o->log) - o->loglen, "%s %d %s %s\n", kind,
                              r->code, r->enhanced, r->text);
    cr_assert(n > 0 && (size_t)n < sizeof(o->log) - o->loglen, "log overflow");
    o->loglen += (size_t)n;
}

static void o_on_rcpt(void *arg, size_t i, const struct osmtp_reply *r)
{
    o_log(arg, "rcpt", (long)i, r);
}

static void o_on_done(void *arg, const struct osmtp_reply *r)
{
    struct o *o = arg;
    o_log(o, "done", -1, r);
    if (o->next != NULL) {
        const struct osmtp_msg *m = o->next;
        o->next = NULL;
        o->next_rc = osmtp_send(o->c, m);
    }
}

static void o_on_fail(void *arg, const struct osmtp_reply *r)
{
    o_log(arg, "fail", -1, r);
}

static const struct osmtp_cb o_cb = {o_on_rcpt, o_on_done, o_on_fail};

static void o_init_opts(struct o *o, enum osmtp_tls tls, bool chunking, bool pipelining)
{
    memset(o, 0, sizeof(*o));
    struct osmtp_opts opts = {.helo_name = "client.test",
                              .tls = tls,
                              .use_chunking = chunking,
                              .use_pipelining = pipelining};
    o->c = osmtp_create(&opts, &o_cb, o);
    cr_assert(o->c != NULL);
}

static void o_init(struct o *o)
{
    o_init_opts(o, OSMTP_TLS_NONE, true, true);
}

static void o_fini(struct o *o)
{
    osmtp_destroy(o->c);
}

static void o_inn(struct o *o, const char *p, size_t n)
{
    osmtp_input(o->c, p, n);
}
static void o_in(struct o *o, const char *s)
{
    o_inn(o, s, strlen(s));
}

/* Everything the client queued since the last call, as one string. */
static const char *o_out(struct o *o)
{
    static char buf[1 << 17];
    size_t n = 0;
    const char *p;
    size_t len;
    o->takes = 0;
    for (int k = 0; k < 4 && osmtp_out_take(o->c, &p, &len); k++) {
        cr_assert(n + len < sizeof(buf));
        memcpy(buf + n, p, len);
        n += len;
        o->takes++;
        osmtp_out_done(o->c);
    }
    buf[n] = '\0';
    return buf;
}

/* Takes the log so far (and clears it). */
static const char *o_log_take(struct o *o)
{
    static char buf[sizeof(((struct o *)0)->log)];
    memcpy(buf, o->log, o->loglen + 1);
    o->loglen = 0;
    o->log[0] = '\0';
    return buf;
}

#define O_EHLO_ALL                                                                                 \
    "250-mx.example.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"             \
    "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"

/* Greeting and EHLO with the given EHLO reply: READY. */
static void o_ready(struct o *o, const char *ehlo_reply)
{
    cr_assert_str_eq(o_out(o), "");
    o_in(o, "220 mx.example.test ESMTP test\r\n");
    cr_assert_str_eq(o_out(o), "EHLO client.test\r\n");
    cr_assert_eq(osmtp_state(o->c), OSMTP_HELLO);
    o_in(o, ehlo_reply);
    cr_assert_eq(osmtp_state(o->c), OSMTP_READY, "state %s", osmtp_state_name(osmtp_state(o->c)));
    cr_assert_str_eq(o_log_take(o), "");
}

/* Sends a DATA body through osmtp_stuff and ends it; returns the output. */
static const char *o_body(struct o *o, const char *body)
{
    static char buf[1 << 16];
    size_t n = strlen(body);
    cr_assert(2 * n + 2 < sizeof(buf));
    cr_assert_eq(osmtp_state(o->c), OSMTP_BODY);
    cr_assert_eq(osmtp_body_mode(o->c), OSMTP_BODY_DATA);
    size_t w = osmtp_stuff(o->c, body, n, buf, sizeof(buf));
    buf[w] = '\0';
    osmtp_body_end(o->c);
    cr_assert_eq(osmtp_state(o->c), OSMTP_FINAL);
    const char *tail = o_out(o);
    cr_assert(w + strlen(tail) < sizeof(buf));
    memcpy(buf + w, tail, strlen(tail) + 1);
    return buf;
}

#define O_RCPTS(...)                                                                               \
    (const char *const[])                                                                          \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }
#define O_NR(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define O_MSG(from, sz, ...)                                                                       \
    ((struct osmtp_msg){.sender = (from),                                                          \
                        .nrcpt = O_NR(__VA_ARGS__),                                                \
                        .rcpts = O_RCPTS(__VA_ARGS__),                                             \
                        .size = (sz)})

#endif
