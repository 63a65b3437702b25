/*
 * NAME
 *	test_smtp_sinkmsg - the message as eod and submission sinks see it:
 *	verdicts at eod, body access across the spool boundary, holds read
 *	on another thread, header edits, submission
 */
#include "test_smtp_ts.h"

TestSuite(smtp_sinkmsg, .init = ts_setup);

/* ---- eod ---- */

Test(smtp_sinkmsg, eod_verdicts)
{
    static const struct {
        const char *props, *want;
        uint64_t live;
    } t[] = {
        {"verdict = \"reject\";", "550 5.7.1 Rejected by policy", 0},
        {"verdict = \"tempfail\";", "451 4.7.1 Try again later", 0},
        {"verdict = \"discard\";", "250 2.0.0 Ok: queued as", 0},
        {"verdict = \"quarantine\";", "250 2.0.0 Ok: queued as", 1},
        {"verdict = \"consumed\"; code = 250; enhanced = \"2.6.0\"; text = \"taken\";",
         "250 2.6.0 taken", 1},
        {"verdict = \"reject\"; code = 554; enhanced = \"5.7.1\"; text = \"spam\";",
         "554 5.7.1 spam", 0},
        {"verdict = \"drop\";", "421 4.7.0 mx.example.test Closing connection", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char conf[512];
        snprintf(conf, sizeof(conf),
                 B("e", "event = \"eod\"; sink = \"builtin:ts\"; properties { %s }"), t[i].props);
        struct h h;
        start(&h, NULL, conf);
        envelope(&h);
        message(&h, "Subject: t\r\n\r\nbody\r\n");
        h_sync(&h);
        h_expect(&h, t[i].want);
        struct h_live l;
        cr_assert_eq(h_live_count(&h, &l), t[i].live, "case %zu", i);
        if (strstr(t[i].props, "quarantine") != NULL) {
            cr_assert_eq(h.srv->stats.quarantined, 1);
        }
        if (strstr(t[i].props, "discard") != NULL)
            cr_assert_eq(h.srv->stats.discarded, 1);
        h_fini(&h);
    }
}

static int flags_cb(void *arg, const struct spool_msginfo *m)
{
    *(uint32_t *)arg = m->flags;
    return 0;
}

Test(smtp_sinkmsg, discard_and_quarantine_marked_earlier)
{
    struct h h;
    start(&h, NULL,
          B("q", "event = \"mail\"; sink = \"builtin:ts\"; rule = \"MAIL FROM=q@*\"; "
                 "properties { verdict = \"quarantine\"; }")
              B("d", "event = \"rcpt\"; sink = \"builtin:ts\"; rule = \"RCPT TO=drop@*\"; "
                     "properties { verdict = \"discard\"; }"));
    h_expect(&h, "220 ");
    h_envelope(&h, "q@example.org", "rcpt@example.test");
    message(&h, "Subject: q\r\n\r\nx\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    uint32_t flags = 0;
    cr_assert_eq(spool_scan(h.dir, flags_cb, &flags, NULL), 0);
    cr_assert_eq(flags, SPOOL_MSG_QUARANTINE);
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<drop@example.test>\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5"); /* accepted as far as the client can tell */
    message(&h, "Subject: d\r\n\r\nx\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert_eq(h_live_count(&h, NULL), 1, "the discarded one was not stored");
    h_fini(&h);
}

/* ---- header edits ---- */

static enum sink_verdict hook_edit(struct sink_ctx *ctx, const struct ts_inst *t)
{
    cr_assert_eq(sink_header_remove(ctx, "X-Spam"), 0);
    cr_assert_eq(sink_header_change(ctx, "Subject", "changed"), 0);
    cr_assert_eq(sink_header_add(ctx, "Bad Name", "x"), -EINVAL);
    cr_assert_eq(sink_header_add(ctx, "X-Ok", "a\r\nX-Injected: 1"), -EINVAL);
    char buf[64];
    cr_assert_eq(sink_header_get(ctx, "subject", 0, buf, sizeof(buf)), 4);
    cr_assert_str_eq(buf, "orig", "edits apply to what is stored, not to what sinks read");
    return SINK_CONTINUE;
}

Test(smtp_sinkmsg, header_edits_stored_and_applied)
{
    struct h h;
    ts_hooks[1] = hook_edit;
    start(&h, NULL,
          B("scanned", "event = \"eod\"; sink = \"builtin:header\"; priority = 100; "
                       "properties { name = \"X-Scanned\"; value = \"yes\"; }")
              B("edit", "event = \"eod\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    envelope(&h);
    const char *in = "Subject: orig\r\nX-Spam: yes\r\n\tfolded\r\nFrom: a@example.org\r\n\r\n"
                     "X-Spam: in the body stays\r\n";
    message(&h, in);
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    uint64_t id = h_queued_id(&h);
    char *b = h_body(&h, id, NULL);
    const char *after = h_after_received(b);
    cr_assert_str_eq(after, "X-Scanned: yes\r\nSubject: changed\r\nFrom: a@example.org\r\n\r\n"
                            "X-Spam: in the body stays\r\n");
    free(b);
    /* the raw body is what was received */
    int fd = memfd_create("raw", 0);
    cr_assert_eq(spool_read_body_raw(h.dir, id, fd), 0);
    char raw[1024] = {0};
    cr_assert_gt(pread(fd, raw, sizeof(raw) - 1, 0), 0);
    close(fd);
    cr_assert_str_eq(h_after_received(raw), in);
    h_fini(&h);
}

/* SMTP_EDITS_MAX (256) header edits per message: the 257th is refused
 * with -ENOMEM (docs/limits.md), the message keeps the first 256. */
static int edits_257th;

static enum sink_verdict hook_many_edits(struct sink_ctx *ctx, const struct ts_inst *t)
{
    (void)t;
    for (int i = 0; i < 256; i++)
        cr_assert_eq(sink_header_add(ctx, "X-Edit", "n"), 0, "edit %d", i);
    edits_257th = sink_header_add(ctx, "X-Edit", "over");
    return SINK_CONTINUE;
}

Test(smtp_sinkmsg, header_edits_bounded)
{
    struct h h;
    ts_hooks[1] = hook_many_edits;
    start(&h, NULL, B("edit", "event = \"eod\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    envelope(&h);
    message(&h, "Subject: many\r\n\r\nbody\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert_eq(edits_257th, -ENOMEM);
    char *b = h_body(&h, h_queued_id(&h), NULL);
    size_t n = 0;
    for (const char *p = b; (p = strstr(p, "X-Edit: ")) != NULL; p++)
        n++;
    cr_assert_eq(n, 256);
    cr_assert_null(strstr(b, "X-Edit: over"));
    free(b);
    h_fini(&h);
}

/* ---- body access ---- */

static char *big_body(size_t want, size_t *len)
{
    char *b = malloc(want + 200);
    size_t n = (size_t)sprintf(b, "Subject: big one\r\nFrom: a@example.org\r\n\r\n");
    for (unsigned i = 0; n < want; i++)
        n += (size_t)sprintf(
            b + n, "line %07u ....................................................\r\n", i);
    *len = n;
    return b;
}

static char *body_seen;
static size_t body_seen_len;

static enum sink_verdict hook_body(struct sink_ctx *ctx, const struct ts_inst *t)
{
    struct sink_body_iter it;
    const char *p;
    ssize_t n;
    uint64_t size = sink_body_size(ctx);
    body_seen = malloc(size + 1);
    body_seen_len = 0;
    cr_assert_eq(sink_body_begin(ctx, &it), 0);
    while ((n = sink_body_next(&it, &p)) > 0) {
        cr_assert_leq(body_seen_len + (size_t)n, size);
        memcpy(body_seen + body_seen_len, p, (size_t)n);
        body_seen_len += (size_t)n;
    }
    cr_assert_eq(n, 0);
    cr_assert_eq(body_seen_len, size);
    char subj[64];
    cr_assert_gt(sink_header_get(ctx, "Subject", 0, subj, sizeof(subj)), 0);
    cr_assert_str_eq(subj, "big one");
    cr_assert_neq(sink_message_id(ctx), 0);
    return SINK_CONTINUE;
}

/* Over 256 KiB: the head is on disk when eod fires, the tail in memory. */
Test(smtp_sinkmsg, body_at_across_the_spool_boundary)
{
    struct h h;
    ts_hooks[1] = hook_body;
    start(&h, NULL, B("read", "event = \"eod\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    envelope(&h);
    size_t len;
    char *b = big_body(700 * 1024, &len);
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_feed_split(&h, b, len, 16384);
    h_send(&h, ".\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    size_t stored;
    char *st = h_body(&h, h_queued_id(&h), &stored);
    cr_assert_eq(body_seen_len, stored);
    cr_assert(memcmp(body_seen, st, stored) == 0, "the sink read what was stored");
    cr_assert_str_eq(h_after_received(st), b);
    free(st);
    free(b);
    free(body_seen);
    h_fini(&h);
}

struct holder {
    struct sink_msgref *m;
    struct sink_ctx *ctx;
    char *copy;
    size_t len;
    pthread_t th;
};
static struct holder holder;

static void *holder_main(void *arg)
{
    struct holder *ho = arg;
    uint64_t size = sink_msgref_size(ho->m);
    ho->copy = malloc(size);
    for (;;) {
        ssize_t n = sink_msgref_read(ho->m, ho->len, ho->copy + ho->len,
                                     size - ho->len < 7001 ? size - ho->len : 7001);
        if (n <= 0)
            break;
        ho->len += (size_t)n;
    }
    sink_msgref_release(ho->m);
    sink_complete(ho->ctx, SINK_CONTINUE);
    return NULL;
}

static enum sink_verdict hook_hold(struct sink_ctx *ctx, const struct ts_inst *t)
{
    holder.m = sink_message_hold(ctx);
    cr_assert_not_null(holder.m);
    holder.ctx = ctx;
    cr_assert_eq(pthread_create(&holder.th, NULL, holder_main, &holder), 0);
    return SINK_PENDING;
}

Test(smtp_sinkmsg, hold_read_from_another_thread)
{
    struct h h;
    ts_hooks[1] = hook_hold;
    start(&h, NULL, B("hold", "event = \"eod\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    envelope(&h);
    size_t len;
    char *b = big_body(300 * 1024, &len);
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354 ");
    h_feed_split(&h, b, len, 16384);
    h_send(&h, ".\r\n");
    cr_assert(h_wait(&h, 5000), "no reply");
    h_expect(&h, "250 2.0.0 Ok: queued as");
    pthread_join(holder.th, NULL);
    size_t stored;
    char *st = h_body(&h, h_queued_id(&h), &stored);
    cr_assert_eq(holder.len, stored);
    cr_assert(memcmp(holder.copy, st, stored) == 0);
    free(st);
    free(holder.copy);
    free(b);
    h_fini(&h);
}

/* ---- submission ---- */

static uint64_t sub_id;
static char sub_head[32];

static enum sink_verdict hook_sub(struct sink_ctx *ctx, const struct ts_inst *t)
{
    struct sink_body_iter it;
    const char *p;
    sub_id = sink_message_id(ctx);
    cr_assert_eq(sink_body_begin(ctx, &it), 0);
    ssize_t n = sink_body_next(&it, &p);
    cr_assert_gt(n, 10);
    memcpy(sub_head, p, 9);
    cr_assert_str_eq(sink_sender(ctx), "sender@example.org");
    cr_assert_eq(sink_rcpt_count(ctx), 1);
    cr_assert_str_eq(sink_prop_get(ctx, SINK_SCOPE_MESSAGE, "from.mail"), "yes");
    return SINK_REJECT; /* logged only: the message stays queued */
}

static enum sink_verdict hook_mark(struct sink_ctx *ctx, const struct ts_inst *t)
{
    cr_assert_eq(sink_prop_set(ctx, SINK_SCOPE_MESSAGE, "from.mail", "yes"), 0);
    return SINK_CONTINUE;
}

Test(smtp_sinkmsg, submission_after_the_commit)
{
    struct h h;
    ts_hooks[1] = hook_sub;
    ts_hooks[2] = hook_mark;
    start(&h, NULL,
          B("first", "event = \"submission\"; sink = \"builtin:delay\"; priority = 100; "
                     "deadline = \"200ms\"; on_deadline = \"continue\"; "
                     "properties { never = true; }")
              B("sub", "event = \"submission\"; sink = \"builtin:ts\"; properties { hook = 1; }")
                  B("mark", "event = \"mail\"; sink = \"builtin:ts\"; properties { hook = 2; }"));
    envelope(&h);
    message(&h, "Subject: s\r\n\r\nx\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as"); /* a pending submission sink does not hold it */
    uint64_t id = h_queued_id(&h);
    cr_assert_eq(sub_id, 0, "the submission chain waits for its first link");
    h_send(&h, "QUIT\r\n");
    h_expect(&h, "221 ");
    smtp_session_destroy(h.s); /* the submission call outlives the session */
    h.s = NULL;
    usleep(250 * 1000);
    h_poll(&h); /* the deadline passes: on to the next link */
    cr_assert_eq(sub_id, id);
    cr_assert_str_eq(sub_head, "Received:");
    cr_assert_eq(h_live_count(&h, NULL), 1, "a post-queue refusal leaves the message queued");
    h_fini(&h);
}

/* Buffer pressure while an eod sink decides: the held slices go to the
 * spool, and the message is stored whole. */
Test(smtp_sinkmsg, buffers_released_while_eod_waits)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"eod\"; sink = \"builtin:delay\"; properties { ms = 50; }"));
    envelope(&h);
    const char *in = "Subject: pressure\r\n\r\nsome text\r\n";
    message(&h, in);
    h_expect_none(&h);
    cr_assert_gt(h.s->txn.body.n, 0, "the body is in the receive buffers");
    smtp_session_release_buffers(h.s);
    cr_assert_eq(h.s->txn.body.n, 0);
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "250 2.0.0 Ok: queued as");
    char *b = h_body(&h, h_queued_id(&h), NULL);
    cr_assert_str_eq(h_after_received(b), in);
    free(b);
    h_fini(&h);
}
