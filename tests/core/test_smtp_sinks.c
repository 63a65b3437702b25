/*
 * NAME
 *	test_smtp_sinks - event sinks in the SMTP session, over a real spool
 * DESCRIPTION
 *	Engines come from configuration text with binding blocks (cfg_load
 *	of a temporary file, as the daemon does).  Besides the builtins
 *	(access, header, delay, command), the tests register builtin:ts, a
 *	sink driven by its properties (tag, verdict, code, enhanced, text)
 *	or by a hook function the test installs (hook = N), which logs
 *	"tag:event" for every call.
 */
#include <pthread.h>

#include "core/log.h"
#include "sinks/sink_int.h" /* sink_builtin_register: the test's own sink */
#include "test_smtp_harness.h"

/* ---- builtin:ts ---- */

struct ts_inst {
    char tag[32];
    enum sink_verdict verdict;
    int code;
    char enhanced[16];
    char text[128];
    int hook;
};

typedef enum sink_verdict ts_hook_fn(struct sink_ctx *ctx, const struct ts_inst *t);
static ts_hook_fn *ts_hooks[8];
static char ts_log[8192];
static pthread_mutex_t ts_mu = PTHREAD_MUTEX_INITIALIZER;

static void ts_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ts_logf(const char *fmt, ...)
{
    pthread_mutex_lock(&ts_mu);
    size_t n = strlen(ts_log);
    if (n > 0 && n + 1 < sizeof(ts_log))
        ts_log[n++] = ',';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ts_log + n, sizeof(ts_log) - n, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&ts_mu);
}

static int ts_verdict(const char *s)
{
    static const char *const n[] = {"continue", "consumed", "reject",     "tempfail",
                                    "drop",     "discard",  "quarantine", "pending"};
    for (int i = 0; i < 8; i++)
        if (strcmp(s, n[i]) == 0)
            return i;
    return -1;
}

static int ts_create(const struct sink_props *p, void **inst, char *err, size_t errlen)
{
    struct ts_inst *t = calloc(1, sizeof(*t));
    const char *v = sink_props_get(p, "verdict");
    snprintf(t->tag, sizeof(t->tag), "%s", sink_props_get(p, "tag") ?: "ts");
    t->verdict = v ? (enum sink_verdict)ts_verdict(v) : SINK_CONTINUE;
    t->code = (int)sink_props_get_int(p, "code", 0);
    snprintf(t->enhanced, sizeof(t->enhanced), "%s", sink_props_get(p, "enhanced") ?: "");
    snprintf(t->text, sizeof(t->text), "%s", sink_props_get(p, "text") ?: "");
    t->hook = (int)sink_props_get_int(p, "hook", 0);
    *inst = t;
    return 0;
}

static void ts_destroy(void *inst)
{
    free(inst);
}

static enum sink_verdict ts_handle(void *inst, struct sink_ctx *ctx)
{
    struct ts_inst *t = inst;
    ts_logf("%s:%s", t->tag, sink_event_name(sink_event(ctx)));
    if (t->hook > 0 && t->hook < 8 && ts_hooks[t->hook] != NULL)
        return ts_hooks[t->hook](ctx, t);
    if (t->code != 0)
        cr_assert_eq(sink_set_reply(ctx, t->code, t->enhanced[0] ? t->enhanced : NULL, t->text), 0);
    return t->verdict;
}

static const struct sink_module ts_module = {
    .abi_version = SINK_ABI_VERSION,
    .name = "ts",
    .events = SINK_EVMASK(SINK_EV_COUNT) - 1,
    .create = ts_create,
    .destroy = ts_destroy,
    .handle = ts_handle,
};

static void ts_setup(void)
{
    int rc = sink_builtin_register(&ts_module);
    cr_assert(rc == 0 || rc == -EEXIST);
    ts_log[0] = '\0';
    memset(ts_hooks, 0, sizeof(ts_hooks));
    log_set_level(LOG_WARN); /* every decision is logged at info */
}

TestSuite(smtp_sinks, .init = ts_setup);

static const char *ts_logged(void)
{
    return ts_log;
}

#define B(name, body) "binding \"" name "\" { " body " }\n"

static void start(struct h *h, const char *ip, const char *conf)
{
    h_init_conf(h, ip, conf, NULL, 0, SMTP_START_OK);
}

/* EHLO + MAIL + RCPT for a session that has sinks. */
static void envelope(struct h *h)
{
    h_expect(h, "220 ");
    h_envelope(h, "sender@example.org", "rcpt@example.test");
}

static void message(struct h *h, const char *body)
{
    h_send(h, "DATA\r\n");
    h_expect(h, "354 ");
    h_send(h, body);
    h_send(h, ".\r\n");
}

/* ---- without bindings ---- */

Test(smtp_sinks, no_bindings_no_cost)
{
    struct h h;
    /* a binding of a reserved event loads but never fires: no event is bound */
    start(&h, NULL, B("later", "event = \"route\"; sink = \"builtin:ts\";"));
    envelope(&h);
    message(&h, "Subject: plain\r\n\r\nhi\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert_null(h.s->sk, "no sink state without a bound event");
    cr_assert_str_eq(ts_logged(), "");
    h_fini(&h);
}

/* ---- connect ---- */

Test(smtp_sinks, connect_verdicts)
{
    static const struct {
        const char *props, *want;
        bool closes;
    } t[] = {
        {"verdict = \"reject\";", "554 5.7.1 mx.example.test Rejected by policy", true},
        {"verdict = \"tempfail\";", "421 4.7.1 mx.example.test Try again later", true},
        {"verdict = \"drop\";", "421 4.7.0 mx.example.test Closing connection", true},
        {"verdict = \"continue\";", "220 mx.example.test ESMTP sluice", false},
        {"verdict = \"consumed\"; code = 220; text = \"welcome, friend\";", "220 welcome, friend",
         false},
        {"verdict = \"reject\"; code = 554; enhanced = \"5.7.1\"; text = \"go away\";",
         "554 5.7.1 go away", true},
        {"verdict = \"tempfail\"; code = 450; text = \"later\";", "421 later", true},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char conf[512];
        snprintf(conf, sizeof(conf),
                 B("c", "event = \"connect\"; sink = \"builtin:ts\"; properties { %s }"),
                 t[i].props);
        struct h h;
        start(&h, NULL, conf);
        cr_assert(h_pop(&h), "case %zu: no reply", i);
        cr_assert_str_eq(h.reply, t[i].want, "case %zu", i);
        cr_assert_eq(smtp_session_closing(h.s), t[i].closes, "case %zu", i);
        h_fini(&h);
    }
}

/* ---- helo, mail, rcpt, data ---- */

static enum sink_verdict hook_helo(struct sink_ctx *ctx, const struct ts_inst *t)
{
    ts_logf("helo=%s verb=%s args=%s", sink_helo(ctx), sink_command_verb(ctx),
            sink_command_args(ctx));
    return strcmp(sink_helo(ctx), "bad.example") == 0 ? SINK_REJECT : SINK_CONTINUE;
}

Test(smtp_sinks, helo_event)
{
    struct h h;
    ts_hooks[1] = hook_helo;
    start(&h, NULL, B("h", "event = \"helo\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 ");
    h_send(&h, "ehlo bad.example\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "MAIL FROM:<a@example.org>\r\n");
    h_expect(&h, "503 5.5.1"); /* the refused EHLO did not count */
    h_send(&h, "HELO good.example\r\n");
    h_expect(&h, "250 mx.example.test");
    cr_assert_str_eq(ts_logged(), "ts:helo,helo=bad.example verb=EHLO args=bad.example,ts:helo,"
                                  "helo=good.example verb=HELO args=good.example");
    h_fini(&h);
}

static enum sink_verdict hook_mail(struct sink_ctx *ctx, const struct ts_inst *t)
{
    ts_logf("sender=%s params=%s", sink_sender(ctx), sink_mail_params(ctx));
    return SINK_CONTINUE;
}

Test(smtp_sinks, mail_and_rcpt_default_replies)
{
    struct h h;
    ts_hooks[1] = hook_mail;
    start(&h, NULL,
          B("look", "event = \"mail\"; sink = \"builtin:ts\"; priority = 10; "
                    "properties { hook = 1; tag = \"look\"; }")
              B("no", "event = \"mail\"; sink = \"builtin:ts\"; rule = \"MAIL FROM=*@bad.example\";"
                      "properties { verdict = \"reject\"; tag = \"no\"; }")
                  B("later", "event = \"rcpt\"; sink = \"builtin:ts\"; "
                             "rule = \"RCPT TO=later@example.test\";"
                             "properties { verdict = \"tempfail\"; tag = \"later\"; }")
                      B("custom",
                        "event = \"rcpt\"; sink = \"builtin:ts\"; "
                        "rule = \"RCPT TO=custom@example.test\"; properties { verdict = "
                        "\"reject\"; code = 553; enhanced = \"5.1.8\"; text = \"Nope\"; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<x@bad.example> SIZE=100\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "MAIL FROM:<x@good.example> SIZE=100\r\n");
    h_expect(&h, "250 2.1.0 Ok");
    h_send(&h, "RCPT TO:<later@example.test>\r\n");
    h_expect(&h, "451 4.7.1 Try again later");
    h_send(&h, "RCPT TO:<custom@example.test>\r\n");
    h_expect(&h, "553 5.1.8 Nope");
    h_send(&h, "RCPT TO:<fine@example.test>\r\n");
    h_expect(&h, "250 2.1.5 Ok");
    cr_assert(strstr(ts_logged(), "sender=x@bad.example params=SIZE=100") != NULL, "%s",
              ts_logged());
    cr_assert_eq(h.srv->stats.sink_refused, 3);
    cr_assert_eq(h.srv->stats.rcpt_rejected, 2);
    h_fini(&h);
}

/* Relay control is the server's link: a sink before it may accept what it
 * refuses, a sink after it sees only what it accepted. */
Test(smtp_sinks, rcpt_chain_around_relay_control)
{
    struct h h;
    start(&h, "192.0.2.10",
          B("allow", "event = \"rcpt\"; sink = \"builtin:access\"; priority = 1000; "
                     "rule = \"RCPT TO=*@foreign.example\"; properties { action = \"accept\"; }")
              B("after", "event = \"rcpt\"; sink = \"builtin:ts\"; priority = 30000; "
                         "properties { tag = \"after\"; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@elsewhere.example>\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<x@foreign.example>\r\n");
    h_expect(&h, "250 2.1.5 Ok"); /* relay control would refuse it */
    h_send(&h, "RCPT TO:<y@other.example>\r\n");
    h_expect(&h, "554 5.7.1 Relay access denied");
    h_send(&h, "RCPT TO:<z@example.test>\r\n");
    h_expect(&h, "250 2.1.5 Ok");
    cr_assert_str_eq(ts_logged(), "after:rcpt", "only what the server accepted");
    cr_assert_eq(h.s->txn.nrcpt, 2);
    h_fini(&h);
}

Test(smtp_sinks, server_refusal_keeps_its_reply)
{
    struct h h;
    const char *ov[] = {"max_message_size=2000"};
    h_init_conf(&h, NULL, B("after", "event = \"mail\"; sink = \"builtin:ts\"; priority = 30000;"),
                ov, 1, SMTP_START_OK);
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@example.org> SIZE=5000\r\n");
    h_expect(&h, "552 5.3.4");
    h_send(&h, "MAIL FROM:<a@example.org\r\n");
    h_expect(&h, "501 5.1.7"); /* a syntax error never reaches the event */
    cr_assert_str_eq(ts_logged(), "");
    h_fini(&h);
}

Test(smtp_sinks, data_refused_resets_the_transaction)
{
    struct h h;
    start(&h, NULL,
          B("d", "event = \"data\"; sink = \"builtin:ts\"; properties { verdict = \"reject\"; }"));
    envelope(&h);
    h_send(&h, "DATA\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "RCPT TO:<b@example.test>\r\n");
    h_expect(&h, "503 5.5.1");
    /* BDAT: the chunk's octets are read and dropped, then the refusal */
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect(&h, "250 2.1.5");
    h_send(&h, "BDAT 8 LAST\r\nNOOP\r\n\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_expect_none(&h);
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_fini(&h);
}

/* ---- eod ---- */

Test(smtp_sinks, eod_verdicts)
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

Test(smtp_sinks, discard_and_quarantine_marked_earlier)
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

Test(smtp_sinks, header_edits_stored_and_applied)
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
Test(smtp_sinks, body_at_across_the_spool_boundary)
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

Test(smtp_sinks, hold_read_from_another_thread)
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

/* ---- pending ---- */

Test(smtp_sinks, delayed_eod_then_250)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"eod\"; sink = \"builtin:delay\"; deadline = \"3s\"; "
                    "properties { ms = 100; }"));
    envelope(&h);
    message(&h, "Subject: slow\r\n\r\nx\r\n");
    h_sync(&h);
    h_expect_none(&h); /* never a 250 before the verdict */
    cr_assert_eq(h.s->phase, SMTP_P_SINK);
    h_send(&h, "NOOP\r\n"); /* pipelined meanwhile: waits */
    h_expect_none(&h);
    cr_assert(h_wait(&h, 3000), "no reply");
    h_expect(&h, "250 2.0.0 Ok: queued as");
    cr_assert(h_wait(&h, 1000));
    h_expect(&h, "250 2.0.0 Ok");
    cr_assert_eq(h_live_count(&h, NULL), 1);
    cr_assert_gt(h.kicks, 0, "the net layer is kicked after a completion");
    h_fini(&h);
}

Test(smtp_sinks, hung_sink_costs_a_451_at_the_deadline)
{
    struct h h;
    start(&h, NULL,
          B("hung", "event = \"eod\"; sink = \"builtin:delay\"; deadline = \"300ms\"; "
                    "properties { never = true; }"));
    envelope(&h);
    message(&h, "Subject: hung\r\n\r\nx\r\n");
    uint64_t t0 = sink_now_ms();
    cr_assert(h_wait(&h, 3000), "no reply");
    uint64_t waited = sink_now_ms() - t0;
    h_expect(&h, "451 4.7.1");
    cr_assert_geq(waited, 290);
    cr_assert_lt(waited, 1500, "%llu ms", (unsigned long long)waited);
    cr_assert_eq(h_live_count(&h, NULL), 0);
    h_send(&h, "RSET\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    h_fini(&h);
}

Test(smtp_sinks, pipelined_commands_wait_their_turn)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"rcpt\"; sink = \"builtin:delay\"; properties { ms = 20; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
               "RCPT TO:<c@example.test>\r\nDATA\r\n");
    h_expect(&h, "250 2.1.0");
    h_expect_none(&h);
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "250 2.1.5");
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "250 2.1.5");
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "354 ");
    h_fini(&h);
}

/* Content sent before the 354 while a data sink decides is smuggling. */
Test(smtp_sinks, input_before_354_while_pending)
{
    struct h h;
    start(&h, NULL,
          B("slow", "event = \"data\"; sink = \"builtin:delay\"; properties { ms = 50; }"));
    envelope(&h);
    h_send(&h, "DATA\r\n");
    h_expect_none(&h);
    h_send(&h, "Subject: early\r\n");
    cr_assert(h_wait(&h, 2000));
    h_expect(&h, "554 5.5.0");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
}

Test(smtp_sinks, destroyed_while_pending)
{
    struct h h;
    start(&h, NULL,
          B("hung", "event = \"mail\"; sink = \"builtin:delay\"; properties { never = true; }")
              B("bye", "event = \"disconnect\"; sink = \"builtin:delay\"; "
                       "properties { never = true; }"));
    h_expect(&h, "220 ");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING");
    h_send(&h, "MAIL FROM:<a@example.org>\r\n");
    h_expect_none(&h);
    smtp_session_eof(h.s);
    h_poll(&h);
    smtp_session_destroy(h.s); /* both pending calls are abandoned */
    h.s = NULL;
    h_poll(&h);
    h_fini(&h);
}

/* ---- command, response, disconnect ---- */

static enum sink_verdict hook_vrfy(struct sink_ctx *ctx, const struct ts_inst *t)
{
    return strcmp(sink_command_verb(ctx), "VRFY") == 0 ? SINK_REJECT : SINK_CONTINUE;
}

Test(smtp_sinks, command_sink_adds_a_verb)
{
    struct h h;
    ts_hooks[1] = hook_vrfy;
    start(&h, NULL,
          B("xhello", "event = \"command\"; sink = \"builtin:command\"; priority = 1000; "
                      "properties { verb = \"XHELLO\"; code = 250; text = \"hello from a sink\"; }")
              B("novrfy", "event = \"command\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 ");
    h_send(&h, "XHELLO\r\n");
    h_expect(&h, "250 hello from a sink");
    cr_assert_str_eq(h.reply, "250 hello from a sink");
    h_send(&h, "xhello there\r\n");
    h_expect(&h, "250 hello from a sink");
    h_send(&h, "VRFY postmaster\r\n");
    h_expect(&h, "550 5.7.1 Rejected by policy");
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 2.0.0 Ok");
    h_send(&h, "XBYE\r\n");
    h_expect(&h, "500 5.5.2");
    cr_assert_eq(h.s->errors, 1, "only the unknown verb was a protocol error");
    /* novrfy runs after the server's link: it saw VRFY and NOOP, not the
     * verbs a sink before the server answered, nor the one it refused */
    cr_assert_str_eq(ts_logged(), "ts:command,ts:command");
    h_fini(&h);
}

static enum sink_verdict hook_response(struct sink_ctx *ctx, const struct ts_inst *t)
{
    const char *text = sink_response_text(ctx);
    if (sink_response_code(ctx) == 250 && strstr(text, " 2.1.5 ") != NULL)
        cr_assert_eq(sink_set_reply(ctx, 250, "2.1.5", "Recipient noted"), 0);
    if (strstr(text, "PIPELINING") != NULL)
        cr_assert_eq(sink_set_reply(ctx, 250, NULL, "no extensions for you"), 0);
    if (strncmp(text, "252 ", 4) == 0)
        return SINK_DROP;
    return SINK_CONTINUE;
}

Test(smtp_sinks, response_changes_a_reply)
{
    struct h h;
    ts_hooks[1] = hook_response;
    start(&h, NULL,
          B("resp", "event = \"response\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 mx.example.test ESMTP sluice");
    h_send(&h, "EHLO client.example\r\n");
    h_expect(&h, "250 CHUNKING"); /* multi-line: shown to the sink, not changed */
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n");
    h_expect(&h, "250 2.1.0 Ok");
    h_expect(&h, "250 2.1.5 Recipient noted");
    cr_assert_str_eq(h.reply, "250 2.1.5 Recipient noted");
    cr_assert_eq(h.s->txn.nrcpt, 1, "what the client is told changes, not the session's state");
    h_send(&h, "VRFY x\r\n");
    h_expect(&h, "421 4.7.0 mx.example.test Closing connection");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
}

static enum sink_verdict hook_disc(struct sink_ctx *ctx, const struct ts_inst *t)
{
    ts_logf("helo=%s", sink_helo(ctx));
    return SINK_REJECT; /* a notification: ignored */
}

Test(smtp_sinks, disconnect_notifies)
{
    struct h h;
    ts_hooks[1] = hook_disc;
    start(&h, NULL,
          B("bye", "event = \"disconnect\"; sink = \"builtin:ts\"; properties { hook = 1; }"));
    h_expect(&h, "220 ");
    h_send(&h, "HELO client.example\r\n");
    h_expect(&h, "250 ");
    h_send(&h, "QUIT\r\n");
    h_expect(&h, "221 ");
    cr_assert_str_eq(ts_logged(), "");
    smtp_session_destroy(h.s);
    h.s = NULL;
    cr_assert_str_eq(ts_logged(), "ts:disconnect,helo=client.example");
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

Test(smtp_sinks, submission_after_the_commit)
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
