/* AUTH in the session (core/smtpd/smtp_auth.c): PLAIN and LOGIN, the sequence
 * rules, TLS only, the 12288-octet responses, the failure limit, the
 * held reply of a failure and the per-user budget, the
 * submission listener, relay, Received:, the hash as a scheduler task,
 * and the auth sink event.  TLS is a flag the test sets on the session. */
#include <crypt.h>

#include "core/smtpd/auth.h"
#include "sinks/sink_int.h" /* sink_builtin_register */
#include "test_smtp_harness.h"

static char users_path[64];
static struct auth_service svc;

static char *mkhash(const char *prefix, const char *pass)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    cr_assert_not_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)));
    cr_assert_not_null(crypt_rn(pass, setting, &cd, sizeof(cd)));
    return strdup(cd.output);
}

/* ---- builtin:authtest: decides by the password it is shown ---- */

static char seen[512];

static enum sink_verdict authtest_handle(void *inst, struct sink_ctx *ctx)
{
    const char *pw = sink_auth_password(ctx);
    snprintf(seen, sizeof(seen), "%s %s %s %s", sink_command_verb(ctx), sink_command_args(ctx),
             sink_auth_user(ctx) ? sink_auth_user(ctx) : "(null)", pw ? pw : "(null)");
    if (pw == NULL)
        return SINK_CONTINUE;
    if (strcmp(pw, "sinkpass") == 0)
        return SINK_CONSUMED;
    if (strcmp(pw, "tempfail") == 0)
        return SINK_TEMPFAIL;
    if (strcmp(pw, "reject") == 0)
        return SINK_REJECT;
    if (strcmp(pw, "reply") == 0) {
        sink_set_reply(ctx, 535, "5.7.8", "no, said the sink");
        return SINK_REJECT;
    }
    return SINK_CONTINUE;
}

static const struct sink_module authtest = {
    SINK_MODULE_HEAD,
    .name = "authtest",
    .events = SINK_EVMASK(SINK_EV_AUTH) | SINK_EVMASK(SINK_EV_COMMAND) | SINK_EVMASK(SINK_EV_MAIL),
    .handle = authtest_handle,
};

/* users: bob ($y$ "secret"), ann ($6$ "s3cret"); max 3 failures per minute */
static void setup(void)
{
    strcpy(users_path, "/tmp/smtp-auth-users-XXXXXX");
    int fd = mkstemp(users_path);
    cr_assert_geq(fd, 0);
    char *y = mkhash("$y$", "secret"), *six = mkhash("$6$", "s3cret");
    dprintf(fd, "# test users\nbob:%s\nann:%s\n", y, six);
    close(fd);
    free(y);
    free(six);
    char err[256];
    svc.store = auth_store_create(users_path, err, sizeof(err));
    cr_assert_not_null(svc.store, "%s", err);
    svc.limit = auth_limit_create(3, 60000, 64);
    svc.pool = NULL;
    auth_service_install(&svc);
    sink_builtin_register(&authtest);
}

static void teardown(void)
{
    auth_service_install(NULL);
    auth_store_destroy(svc.store);
    auth_limit_destroy(svc.limit);
    auth_limit_destroy(svc.users);
    auth_limit_destroy(svc.known);
    svc.users = svc.known = NULL;
    svc.delay_ms = 0;
    smtp_set_test_clock(0);
    unlink(users_path);
}

TestSuite(smtp_auth, .init = setup, .fini = teardown);

/* A session from ip, under TLS or not, on a listener kind; conf with
 * bindings (or NULL).  With pool, the hashes run as scheduler tasks. */
static void start(struct h *h, const char *ip, bool tls, enum smtp_listener kind, const char *conf,
                  bool pool)
{
    h_init_server(h, conf != NULL ? conf : (pool ? "" : NULL), NULL, 0);
    if (pool)
        svc.pool = h->pool;
    h->s = h_session(h, ip);
    h->s->listener = kind;
    if (tls)
        h->s->tls = strdup("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");
    smtp_session_start(h->s, SMTP_START_OK);
    h_collect(h);
    h_expect(h, "220 ");
}

static void ehlo(struct h *h)
{
    h_send(h, "EHLO client.example\r\n");
    cr_assert(h_pop(h));
    cr_assert(strncmp(h->reply, "250-", 4) == 0, "%s", h->reply);
}

/* "AUTH PLAIN <base64(authz NUL user NUL pass)>\r\n" */
static void plain_line(char *out, size_t cap, const char *authz, const char *user, const char *pass)
{
    char raw[160], enc[220];
    size_t n = 0;
    n += (size_t)snprintf(raw + n, sizeof(raw) - n, "%s", authz) + 1;
    n += (size_t)snprintf(raw + n, sizeof(raw) - n, "%s", user) + 1;
    n += (size_t)snprintf(raw + n, sizeof(raw) - n, "%s", pass);
    auth_b64_encode(raw, n, enc);
    snprintf(out, cap, "AUTH PLAIN %s\r\n", enc);
}

static void b64_line(char *out, const char *s)
{
    size_t n = auth_b64_encode(s, strlen(s), out);
    memcpy(out + n, "\r\n", 3);
}

Test(smtp_auth, offered_only_under_tls)
{
    struct h h;
    start(&h, "192.0.2.10", false, SMTP_L_PLAIN, NULL, false);
    h_send(&h, "EHLO client.example\r\n");
    cr_assert(h_pop(&h));
    cr_assert_null(strstr(h.reply, "AUTH"), "%s", h.reply);
    char line[256];
    plain_line(line, sizeof(line), "", "bob", "secret");
    h_send(&h, line);
    h_expect(&h, "538 5.7.11 Encryption required for requested authentication mechanism");
    h_fini(&h);

    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    h_send(&h, "EHLO client.example\r\n");
    cr_assert(h_pop(&h));
    cr_assert_not_null(strstr(h.reply, "250 AUTH PLAIN LOGIN"), "%s", h.reply);
    h_fini(&h);
}

Test(smtp_auth, plain_initial_response_then_relay)
{
    struct h h;
    char line[256];
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    h_send(&h, "MAIL FROM:<a@example.org>\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<x@elsewhere.example>\r\n");
    h_expect(&h, "554 5.7.1 Relay access denied"); /* not yet */
    h_send(&h, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    h_expect(&h, "503 5.5.1 Error: MAIL transaction in progress");
    h_send(&h, "RSET\r\n");
    h_expect(&h, "250 ");
    plain_line(line, sizeof(line), "", "bob", "secret");
    h_send(&h, line);
    h_expect(&h, "235 2.7.0 Authentication successful");
    cr_assert_str_eq(h.s->auth_user, "bob");
    h_send(&h, line);
    h_expect(&h, "503 5.5.1 Error: already authenticated");
    h_send(&h, "MAIL FROM:<bob@example.org>\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<x@elsewhere.example>\r\n");
    h_expect(&h, "250 2.1.5"); /* RFC 4954 1: authenticated clients relay */
    h_send(&h, "DATA\r\n");
    h_expect(&h, "354");
    h_send(&h, "Subject: t\r\n\r\nhi\r\n.\r\n");
    h_sync(&h);
    h_expect(&h, "250 2.0.0 Ok: queued as");
    char *body = h_body(&h, h_queued_id(&h), NULL);
    cr_assert_not_null(strstr(body, "\r\n\t(Authenticated sender: bob)\r\n"), "%s", body);
    cr_assert_not_null(strstr(body, " with ESMTPSA id "), "%s", body);
    free(body);
    h_fini(&h);
}

Test(smtp_auth, plain_after_334_and_authzid)
{
    struct h h;
    char line[256];
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    h_send(&h, "AUTH PLAIN\r\n");
    h_expect(&h, "334 ");
    cr_assert_str_eq(h.reply, "334 ");
    plain_line(line, sizeof(line), "ann", "ann", "s3cret"); /* authzid = authcid: fine */
    h_send(&h, line + strlen("AUTH PLAIN "));
    h_expect(&h, "235 2.7.0");
    h_fini(&h);

    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    plain_line(line, sizeof(line), "bob", "ann", "s3cret"); /* ann acting as bob: no */
    h_send(&h, line);
    h_expect(&h, "535 5.7.8");
    h_send(&h, "AUTH plain =\r\n"); /* an empty initial response: no message */
    h_expect(&h, "501 5.7.0");
    h_fini(&h);
}

Test(smtp_auth, login)
{
    struct h h;
    char l[64];
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    h_send(&h, "AUTH LOGIN\r\n");
    h_expect(&h, "334 VXNlcm5hbWU6");
    b64_line(l, "ann");
    h_send(&h, l);
    h_expect(&h, "334 UGFzc3dvcmQ6");
    b64_line(l, "s3cret");
    h_send(&h, l);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);

    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    h_send(&h, "AUTH LOGIN Ym9i\r\n"); /* the user name as the initial response */
    h_expect(&h, "334 UGFzc3dvcmQ6");
    b64_line(l, "wrong");
    h_send(&h, l);
    h_expect(&h, "535 5.7.8");
    cr_assert_null(h.s->auth_user);
    h_fini(&h);
}

Test(smtp_auth, failures_cancel_and_syntax)
{
    struct h h;
    char line[256];
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    h_send(&h, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    h_expect(&h, "503 5.5.1 Error: send EHLO first");
    h_send(&h, "HELO client.example\r\n");
    h_expect(&h, "250 ");
    h_send(&h, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    h_expect(&h, "503 5.5.1 Error: send EHLO first");
    ehlo(&h);
    h_send(&h, "AUTH\r\n");
    h_expect(&h, "501 5.5.4");
    h_send(&h, "AUTH CRAM-MD5\r\n");
    h_expect(&h, "504 5.5.4");
    h_send(&h, "AUTH LOGIN\r\n");
    h_expect(&h, "334 VXNlcm5hbWU6");
    h_send(&h, "*\r\n");
    h_expect(&h, "501 5.0.0 Authentication aborted");
    h_send(&h, "AUTH PLAIN\r\n");
    h_expect(&h, "334 ");
    h_send(&h, "not base64!\r\n");
    h_expect(&h, "501 5.5.2");
    h_send(&h, "NOOP\r\n"); /* back to commands */
    h_expect(&h, "250 ");
    plain_line(line, sizeof(line), "", "carol", "secret"); /* unknown user */
    h_send(&h, line);
    h_expect(&h, "535 5.7.8");
    plain_line(line, sizeof(line), "", "bob", "Secret");
    h_send(&h, line);
    h_expect(&h, "535 5.7.8");
    h_fini(&h);
}

Test(smtp_auth, long_responses)
{
    struct h h;
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    /* 12288 octets of base64: a 9216-octet PLAIN message */
    size_t rawlen = 9216;
    char *raw = calloc(1, rawlen), *line = malloc(12288 + 3);
    memcpy(raw, "\0bob\0", 5);
    memset(raw + 5, 'p', rawlen - 5);
    cr_assert_eq(auth_b64_encode(raw, rawlen, line), 12288);
    memcpy(line + 12288, "\r\n", 3);
    h_send(&h, "AUTH PLAIN\r\n");
    h_expect(&h, "334 ");
    h_feed_split(&h, line, 12290, 1000);
    h_expect(&h, "535 5.7.8"); /* read whole and checked: a wrong password */
    /* one more octet: too long */
    char *longer = malloc(12289 + 3);
    memset(longer, 'A', 12289);
    memcpy(longer + 12289, "\r\n", 3);
    h_send(&h, "AUTH LOGIN\r\n");
    h_expect(&h, "334 VXNlcm5hbWU6");
    h_send(&h, longer);
    h_expect(&h, "500 5.5.6");
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 ");
    /* the command line itself stays at 512 */
    char cmd[601];
    memset(cmd, 'A', sizeof(cmd));
    memcpy(cmd, "AUTH PLAIN ", 11);
    memcpy(cmd + 598, "\r\n", 3);
    h_send(&h, cmd);
    h_expect(&h, "500 5.5.2 Line too long");
    free(raw);
    free(line);
    free(longer);
    h_fini(&h);
}

Test(smtp_auth, failure_limit_per_network)
{
    struct h h;
    char bad[256], good[256];
    plain_line(bad, sizeof(bad), "", "bob", "nope");
    plain_line(good, sizeof(good), "", "bob", "secret");
    start(&h, "2001:db8:5:6::1", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    for (int i = 0; i < 3; i++) {
        h_send(&h, bad);
        h_expect(&h, "535 5.7.8");
    }
    h_send(&h, good); /* even the right password: blocked */
    h_expect(&h, "421 4.7.0");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
    /* another address of the same /64, a new connection */
    start(&h, "2001:db8:5:6::99", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    h_send(&h, good);
    h_expect(&h, "421 4.7.0 mx.example.test Error: too many authentication failures");
    h_fini(&h);
    /* another network is fine */
    start(&h, "2001:db8:5:7::1", true, SMTP_L_PLAIN, NULL, false);
    ehlo(&h);
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
}

Test(smtp_auth, submission_requires_auth)
{
    struct h h;
    char good[256];
    plain_line(good, sizeof(good), "", "ann", "s3cret");
    start(&h, "127.0.0.1", true, SMTP_L_SUBMISSION, NULL, false); /* even from mynetworks */
    ehlo(&h);
    h_send(&h, "MAIL FROM:<ann@example.org>\r\n");
    h_expect(&h, "530 5.7.0 Authentication required");
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_send(&h, "MAIL FROM:<ann@example.org>\r\n");
    h_expect(&h, "250 2.1.0");
    h_send(&h, "RCPT TO:<x@far.example>\r\n");
    h_expect(&h, "250 2.1.5");
    h_fini(&h);
}

Test(smtp_auth, hash_runs_as_a_task)
{
    struct h h;
    char good[256];
    plain_line(good, sizeof(good), "", "bob", "secret");
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, true);
    ehlo(&h);
    /* pipelined behind the AUTH: waits for the 235 */
    char both[400];
    snprintf(both, sizeof(both), "%sMAIL FROM:<bob@example.org>\r\n", good);
    h_send(&h, both);
    h_expect_none(&h); /* parked: the hash is a queued task */
    cr_assert_eq(h.s->phase, SMTP_P_SINK);
    cr_assert(h_wait(&h, 5000));
    h_expect(&h, "235 2.7.0");
    cr_assert(h_wait(&h, 1000));
    h_expect(&h, "250 2.1.0");
    cr_assert_geq(h.kicks, 1);
    h_fini(&h);
}

Test(smtp_auth, session_gone_while_hashing)
{
    struct h h;
    char good[256];
    plain_line(good, sizeof(good), "", "bob", "secret");
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, true);
    ehlo(&h);
    h_send(&h, good);
    h_expect_none(&h);
    smtp_session_destroy(h.s); /* abandons the job */
    h.s = NULL;
    for (int i = 0; i < 100; i++) /* the task runs, posts back, frees itself */
        sched_worker_run_budget(h.sched, 64);
    h_fini(&h);
}

#define AUTHSINK(prio)                                                                             \
    "binding \"a\" { event = \"auth\"; sink = \"builtin:authtest\"; priority = " #prio "; }\n"     \
    "binding \"c\" { event = \"command\"; sink = \"builtin:authtest\"; }\n"

Test(smtp_auth, sink_event)
{
    struct h h;
    char line[256];
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, AUTHSINK(100), false);
    ehlo(&h);
    plain_line(line, sizeof(line), "", "zed", "sinkpass"); /* not in the file */
    h_send(&h, line);
    cr_assert_str_eq(seen, "AUTH PLAIN zed sinkpass");
    h_expect(&h, "235 2.7.0");
    cr_assert_str_eq(h.s->auth_user, "zed");
    h_send(&h, "NOOP\r\n");
    h_expect(&h, "250 ");
    cr_assert_str_eq(seen, "NOOP  zed (null)"); /* the identity, no password */
    h_fini(&h);

    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, AUTHSINK(100), false);
    ehlo(&h);
    plain_line(line, sizeof(line), "", "bob", "tempfail");
    h_send(&h, line);
    h_expect(&h, "454 4.7.0");
    plain_line(line, sizeof(line), "", "bob", "reject");
    h_send(&h, line);
    h_expect(&h, "535 5.7.8 Error: authentication failed");
    plain_line(line, sizeof(line), "", "bob", "reply");
    h_send(&h, line);
    h_expect(&h, "535 5.7.8 no, said the sink");
    plain_line(line, sizeof(line), "", "bob", "secret"); /* CONTINUE: the file */
    h_send(&h, line);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);

    /* command sinks see AUTH's mechanism, never its initial response */
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, AUTHSINK(100), false);
    ehlo(&h);
    h_send(&h, "AUTH PLAIN AHplZABzaW5rcGFzcw==\r\n");
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
}

Test(smtp_auth, command_sink_never_sees_the_initial_response)
{
    struct h h;
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN,
          "binding \"c\" { event = \"command\"; sink = \"builtin:authtest\"; }\n", false);
    ehlo(&h);
    h_send(&h, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    cr_assert_str_eq(seen, "AUTH PLAIN (null) (null)");
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
}

Test(smtp_auth, pending_auth_sink)
{
    struct h h;
    char line[256];
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN,
          "binding \"d\" { event = \"auth\"; sink = \"builtin:delay\"; deadline = \"2s\";\n"
          "  properties { ms = 5; verdict = \"consumed\"; } }\n",
          false);
    ehlo(&h);
    plain_line(line, sizeof(line), "", "whoever", "anything");
    h_send(&h, line);
    h_expect_none(&h);
    cr_assert(h_wait(&h, 3000));
    h_expect(&h, "235 2.7.0");
    cr_assert_str_eq(h.s->auth_user, "whoever");
    h_fini(&h);
}

Test(smtp_auth, disabled_without_file_or_sink)
{
    struct h h;
    auth_service_install(NULL);
    start(&h, "192.0.2.10", true, SMTP_L_PLAIN, NULL, false);
    h_send(&h, "EHLO client.example\r\n");
    cr_assert(h_pop(&h));
    cr_assert_null(strstr(h.reply, "AUTH"), "%s", h.reply);
    h_send(&h, "AUTH PLAIN AGJvYgBzZWNyZXQ=\r\n");
    h_expect(&h, "503 5.5.1 Error: authentication not enabled");
    h_fini(&h);
}

/* A session from ip, EHLO answered, at test time now (after the
 * harness has set its own). */
static void start_at(struct h *h, const char *ip, uint64_t now)
{
    start(h, ip, true, SMTP_L_PLAIN, NULL, false);
    smtp_set_test_clock(now);
    ehlo(h);
}

static void tick(struct h *h, uint64_t now)
{
    smtp_set_test_clock(now);
    smtp_session_tick(h->s, now);
    h_collect(h);
}

Test(smtp_auth, failure_reply_held_by_the_tick)
{
    struct h h;
    char bad[256], good[256];
    plain_line(bad, sizeof(bad), "", "bob", "nope");
    plain_line(good, sizeof(good), "", "bob", "secret");
    svc.delay_ms = 1000;
    uint64_t t = 5000000;
    start_at(&h, "192.0.2.70", t);
    h_send(&h, bad);
    h_expect_none(&h); /* held: the session waits, nothing read */
    cr_assert_eq(h.s->phase, SMTP_P_HOLD);
    h_send(&h, "NOOP\r\n"); /* pipelined behind: waits too */
    h_expect_none(&h);
    tick(&h, t + 999);
    h_expect_none(&h);
    tick(&h, t + 1000);
    h_expect(&h, "535 5.7.8");
    h_expect(&h, "250 ");
    /* the second failure: 2 s, the third 4 s, then 5 s (the cap) */
    uint64_t now = t + 1000, want[] = {2000, 4000, 5000};
    for (int i = 0; i < 3; i++) {
        h_send(&h, i == 2 ? good : bad); /* the per-network limit (3) decides the third */
        if (i == 2) {
            h_expect(&h, "421 4.7.0"); /* blocked at the check: not a failure, no hold */
            break;
        }
        tick(&h, now + want[i] - 1);
        h_expect_none(&h);
        tick(&h, now + want[i]);
        h_expect(&h, "535 5.7.8");
        now += want[i];
    }
    h_fini(&h);
    /* a session that ends while its reply is held */
    start_at(&h, "192.0.2.71", now);
    h_send(&h, bad);
    h_expect_none(&h);
    smtp_session_eof(h.s);
    tick(&h, now + 10000);
    h_expect_none(&h);
    h_fini(&h);
}

Test(smtp_auth, per_user_budget)
{
    struct h h;
    char bad[256], good[256], badcase[256];
    plain_line(bad, sizeof(bad), "", "bob", "nope");
    plain_line(badcase, sizeof(badcase), "", "BOB", "nope");
    plain_line(good, sizeof(good), "", "bob", "secret");
    svc.users = auth_limit_create(3, 60000, 64);
    svc.known = auth_limit_create(1, AUTH_KNOWN_WINDOW_MS, 64);
    uint64_t t = 7000000;
    /* bob logged in from this network before the attack */
    start_at(&h, "198.51.100.7", t);
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
    /* three failures from three addresses use up bob's budget */
    const char *ips[] = {"192.0.2.80", "192.0.2.81", "192.0.2.82"};
    for (int i = 0; i < 3; i++) {
        start_at(&h, ips[i], t + 1);
        h_send(&h, i == 1 ? badcase : bad);
        h_expect(&h, "535 5.7.8");
        h_fini(&h);
    }
    /* now: 454 without a check, even with the right password, from a
     * network that failed and from a new one */
    const char *locked[] = {"192.0.2.80", "203.0.113.5"};
    for (int i = 0; i < 2; i++) {
        start_at(&h, locked[i], t + 2);
        h_send(&h, bad);
        h_expect(&h, "454 4.7.0 Error: too many authentication failures for this user");
        h_send(&h, good);
        h_expect(&h, "454 4.7.0");
        cr_assert(!smtp_session_closing(h.s));
        h_fini(&h);
    }
    /* another user is not affected */
    start_at(&h, "203.0.113.5", t + 3);
    h_send(&h, "AUTH PLAIN AGFubgBzM2NyZXQ=\r\n"); /* ann, s3cret */
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
    /* the network bob logged in from still gets its password checked */
    start_at(&h, "198.51.100.7", t + 4);
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
    /* the window over: a new network may try again */
    start_at(&h, "203.0.113.5", t + 1 + 60000);
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
}

/* One user behind a NAT shared with a guesser: the guesses block the
 * network, but a user who logged in from it before goes on, within a
 * budget of that pair's own; a user never seen there is refused. */
Test(smtp_auth, known_user_passes_a_blocked_network)
{
    struct h h;
    char bad[256], good[256], eve[256];
    plain_line(bad, sizeof(bad), "", "bob", "nope");
    plain_line(good, sizeof(good), "", "bob", "secret");
    plain_line(eve, sizeof(eve), "", "eve", "guess");
    svc.known = auth_limit_create(1, AUTH_KNOWN_WINDOW_MS, 64);
    uint64_t t = 9000000;
    start_at(&h, "198.51.100.7", t); /* bob, earlier, from the NAT */
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
    start_at(&h, "198.51.100.7", t + 1); /* someone behind it guesses */
    for (int i = 0; i < 3; i++) {
        h_send(&h, eve);
        h_expect(&h, "535 5.7.8");
    }
    h_send(&h, eve);
    h_expect(&h, "421 4.7.0");
    cr_assert(smtp_session_closing(h.s));
    h_fini(&h);
    start_at(&h, "198.51.100.7", t + 2); /* bob is not locked out */
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
    start_at(&h, "198.51.100.7", t + 3); /* ann never logged in from there */
    h_send(&h, "AUTH PLAIN AGFubgBzM2NyZXQ=\r\n");
    h_expect(&h, "421 4.7.0");
    h_fini(&h);
    /* guessing bob's password from there is bounded by the pair's budget */
    start_at(&h, "198.51.100.7", t + 4);
    for (int i = 0; i < 3; i++) {
        h_send(&h, bad);
        h_expect(&h, "535 5.7.8");
    }
    h_send(&h, good);
    h_expect(&h, "421 4.7.0");
    h_fini(&h);
    /* the window over: bob again */
    start_at(&h, "198.51.100.7", t + 4 + 60000);
    h_send(&h, good);
    h_expect(&h, "235 2.7.0");
    h_fini(&h);
}
