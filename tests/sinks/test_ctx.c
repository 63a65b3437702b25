/*
 * NAME
 *	test_ctx - the sink.h accessors: data, body, headers, edits, bags, replies
 */
#include "tests/sinks/sink_test.h"

struct fixture {
    struct sink_engine *e;
    struct sink_binding b;
    struct st_session s;
    struct sink_event_data d;
    struct sink_bag *session, *message;
    struct sink_ctx ctx;
};

static const char body[] = "Received: from x\r\n"
                           "Subject: hello\r\n"
                           "  world\r\n"
                           "\tagain  \r\n"
                           "X-Tag:   one  \r\n"
                           "x-tag: two\r\n"
                           "NotAField\r\n"
                           "Empty:\r\n"
                           "\r\n"
                           "Subject: not a header, the body\r\n";

static void fx_init(struct fixture *f, size_t piece)
{
    memset(f, 0, sizeof(*f));
    f->e = st_engine("");
    f->b.name = "t";
    f->s.body = body;
    f->s.piece = piece;
    f->d = st_data(&f->s);
    f->session = sink_bag_create();
    f->message = sink_bag_create();
    f->d.session_bag = f->session;
    f->d.message_bag = f->message;
    f->ctx.e = f->e;
    f->ctx.b = &f->b;
    f->ctx.d = &f->d;
    f->ctx.ev = SINK_EV_EOD;
}

static void fx_fini(struct fixture *f)
{
    sink_ctx_copies_free(&f->ctx);
    sink_bag_destroy(f->session);
    sink_bag_destroy(f->message);
    sink_engine_destroy(f->e);
}

Test(ctx, session_and_envelope)
{
    struct fixture f;
    fx_init(&f, 1000);
    struct sink_ctx *c = &f.ctx;
    cr_assert_eq(sink_event(c), SINK_EV_EOD);
    cr_assert_str_eq(sink_binding_name(c), "t");
    cr_assert_str_eq(sink_client_addr(c), "192.0.2.1");
    cr_assert_str_eq(sink_helo(c), "client.example");
    cr_assert_null(sink_tls(c));
    cr_assert_null(sink_auth_user(c));
    cr_assert_str_eq(sink_command_verb(c), "MAIL");
    cr_assert_str_eq(sink_command_args(c), "FROM:<sender@example.org>");
    cr_assert_str_eq(sink_sender(c), "sender@example.org");
    cr_assert_str_eq(sink_mail_params(c), "SIZE=100");
    cr_assert_eq(sink_rcpt_count(c), 2);
    cr_assert_str_eq(sink_rcpt(c, 1), "bob@b.example");
    cr_assert_null(sink_rcpt(c, 2));
    cr_assert_str_eq(sink_rcpt_current(c), "carol@c.example");
    cr_assert_eq(sink_message_id(c), 42);
    cr_assert_eq(sink_body_size(c), strlen(body));
    f.d.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
    f.d.auth_user = "joe";
    f.d.args = NULL;
    f.d.reply_code = 250;
    f.d.reply_text = "2.0.0 Ok";
    cr_assert_str_eq(sink_tls(c), "TLSv1.3 TLS_AES_256_GCM_SHA384");
    cr_assert_str_eq(sink_auth_user(c), "joe");
    cr_assert_str_eq(sink_command_args(c), "", "no arguments: \"\"");
    cr_assert_eq(sink_response_code(c), 250);
    cr_assert_str_eq(sink_response_text(c), "2.0.0 Ok");
    f.d.verb = NULL;
    cr_assert_null(sink_command_args(c), "no command: NULL");
    fx_fini(&f);
}

Test(ctx, body_iteration_without_copy)
{
    for (size_t piece = 1; piece < 40; piece += 7) {
        struct fixture f;
        fx_init(&f, piece);
        struct sink_body_iter it;
        cr_assert_eq(sink_body_begin(&f.ctx, &it), 0);
        char got[sizeof(body)] = "";
        size_t n = 0;
        const char *p;
        ssize_t len;
        while ((len = sink_body_next(&it, &p)) > 0) {
            cr_assert(p >= body && p + len <= body + strlen(body), "a pointer into the body");
            memcpy(got + n, p, (size_t)len);
            n += (size_t)len;
        }
        cr_assert_eq(len, 0);
        cr_assert_eq(n, strlen(body));
        cr_assert_eq(memcmp(got, body, n), 0);
        fx_fini(&f);
    }
    struct fixture f;
    fx_init(&f, 10);
    f.d.body_at = NULL;
    struct sink_body_iter it;
    cr_assert_eq(sink_body_begin(&f.ctx, &it), -ENOTSUP);
    fx_fini(&f);
}

static ssize_t hget(struct fixture *f, const char *name, unsigned nth, char *buf, size_t len)
{
    return sink_header_get(&f->ctx, name, nth, buf, len);
}

Test(ctx, header_get)
{
    for (size_t piece = 1; piece <= 64; piece = piece * 2 + 1) {
        struct fixture f;
        fx_init(&f, piece);
        char v[128];
        cr_assert_eq(hget(&f, "received", 0, v, sizeof(v)), 6);
        cr_assert_str_eq(v, "from x");
        cr_assert_eq(hget(&f, "SUBJECT", 0, v, sizeof(v)), (ssize_t)strlen("hello  world\tagain"),
                     "piece %zu: %s", piece, v);
        cr_assert_str_eq(v, "hello  world\tagain", "unfolded: CRLF gone, WSP kept");
        cr_assert_eq(hget(&f, "Subject", 1, v, sizeof(v)), -ENOENT, "the body is not the header");
        cr_assert_eq(hget(&f, "x-tag", 0, v, sizeof(v)), 3);
        cr_assert_str_eq(v, "one", "white space around the value dropped");
        cr_assert_eq(hget(&f, "X-TAG", 1, v, sizeof(v)), 3);
        cr_assert_str_eq(v, "two");
        cr_assert_eq(hget(&f, "X-Tag", 2, v, sizeof(v)), -ENOENT);
        cr_assert_eq(hget(&f, "Empty", 0, v, sizeof(v)), 0);
        cr_assert_str_eq(v, "");
        cr_assert_eq(hget(&f, "NotAField", 0, v, sizeof(v)), -ENOENT);
        cr_assert_eq(hget(&f, "X-Ta", 0, v, sizeof(v)), -ENOENT, "whole names only");
        cr_assert_eq(hget(&f, "X-Tagg", 0, v, sizeof(v)), -ENOENT);
        char small[6];
        cr_assert_eq(hget(&f, "subject", 0, small, sizeof(small)), 18, "full length");
        cr_assert_str_eq(small, "hello", "truncated, terminated");
        fx_fini(&f);
    }
}

Test(ctx, header_get_edges)
{
    struct fixture f;
    fx_init(&f, 3);
    char v[64];
    f.s.body = "A: 1\nB: two\n  lines\n\nC: 3\n"; /* bare LF line ends */
    cr_assert_eq(hget(&f, "b", 0, v, sizeof(v)), 10);
    cr_assert_str_eq(v, "two  lines");
    cr_assert_eq(hget(&f, "c", 0, v, sizeof(v)), -ENOENT);
    f.s.body = "Only: header"; /* no final CRLF, no body */
    cr_assert_eq(hget(&f, "only", 0, v, sizeof(v)), 6);
    cr_assert_str_eq(v, "header");
    f.s.body = "\r\nA: body";
    cr_assert_eq(hget(&f, "A", 0, v, sizeof(v)), -ENOENT, "empty header");
    cr_assert_eq(hget(&f, "", 0, v, sizeof(v)), -EINVAL);
    f.d.body_at = NULL;
    cr_assert_eq(hget(&f, "A", 0, v, sizeof(v)), -ENOTSUP);
    fx_fini(&f);
}

Test(ctx, header_edits)
{
    struct fixture f;
    fx_init(&f, 10);
    struct sink_ctx *c = &f.ctx;
    cr_assert_eq(sink_header_add(c, "X-Scanned", "yes"), 0);
    cr_assert_eq(sink_header_change(c, "Subject", "[spam] hello\tthere"), 0);
    cr_assert_eq(sink_header_remove(c, "X-Tag"), 0);
    cr_assert_eq(f.s.nedit, 3);
    cr_assert_eq(f.s.edit[0].op, SINK_EDIT_ADD);
    cr_assert_str_eq(f.s.edit[0].name, "X-Scanned");
    cr_assert_str_eq(f.s.edit[0].value, "yes");
    cr_assert_eq(f.s.edit[1].op, SINK_EDIT_CHANGE);
    cr_assert_str_eq(f.s.edit[1].value, "[spam] hello\tthere");
    cr_assert_eq(f.s.edit[2].op, SINK_EDIT_REMOVE);
    cr_assert_str_eq(f.s.edit[2].name, "X-Tag");
    cr_assert_str_eq(f.s.edit[2].value, "(null)", "remove passes no value");

    cr_assert_eq(sink_header_add(c, "X-Bad:", "v"), -EINVAL);
    cr_assert_eq(sink_header_add(c, "X Bad", "v"), -EINVAL);
    cr_assert_eq(sink_header_add(c, "", "v"), -EINVAL);
    cr_assert_eq(sink_header_add(c, NULL, "v"), -EINVAL);
    cr_assert_eq(sink_header_add(c, "X-\xc3\xa9", "v"), -EINVAL);
    cr_assert_eq(sink_header_add(c, "X-A", "one\r\nX-Injected: yes"), -EINVAL);
    cr_assert_eq(sink_header_add(c, "X-A", "bare\nlf"), -EINVAL);
    cr_assert_eq(sink_header_add(c, "X-A", "bare\rcr"), -EINVAL);
    cr_assert_eq(sink_header_change(c, "X-A", NULL), -EINVAL);
    cr_assert_eq(sink_header_remove(c, "X:A"), -EINVAL);
    char longv[1000];
    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    cr_assert_eq(sink_header_add(c, "X-Long", longv), -EINVAL, "over 998 octets");
    longv[998 - 8] = '\0';
    cr_assert_eq(sink_header_add(c, "X-Long", longv), 0, "exactly 998");
    cr_assert_eq(f.s.nedit, 4);
    f.d.edit = NULL;
    cr_assert_eq(sink_header_add(c, "X-Scanned", "yes"), -ENOTSUP, "not at this event");
    cr_assert_eq(sink_header_remove(c, "X-Scanned"), -ENOTSUP);
    fx_fini(&f);
}

Test(ctx, message_hold)
{
    struct fixture f;
    fx_init(&f, 10);
    struct sink_msgref *m = sink_message_hold(&f.ctx);
    cr_assert_not_null(m);
    cr_assert_eq(sink_msgref_size(m), strlen(body));
    char buf[9] = "";
    cr_assert_eq(sink_msgref_read(m, 15, buf, 8), 8);
    cr_assert_str_eq(buf, "x\r\nSubje");
    sink_msgref_release(m);
    cr_assert_eq(atomic_load(&f.s.released), 1);
    sink_msgref_release(NULL);
    f.d.body_hold = NULL;
    cr_assert_null(sink_message_hold(&f.ctx));
    fx_fini(&f);
}

Test(ctx, property_bags)
{
    struct fixture f;
    fx_init(&f, 10);
    struct sink_ctx *c = &f.ctx;
    for (int sc = SINK_SCOPE_MESSAGE; sc <= SINK_SCOPE_SERVER; sc++) {
        cr_assert_null(sink_prop_get(c, sc, "k"));
        cr_assert_eq(sink_prop_set(c, sc, "k", "v1"), 0);
        cr_assert_str_eq(sink_prop_get(c, sc, "k"), "v1");
        cr_assert_eq(sink_prop_set(c, sc, "k", "v2"), 0);
        cr_assert_str_eq(sink_prop_get(c, sc, "k"), "v2");
        cr_assert_eq(sink_prop_set(c, sc, "other", "o"), 0);
        cr_assert_eq(sink_prop_set(c, sc, "k", NULL), 0, "NULL removes");
        cr_assert_null(sink_prop_get(c, sc, "k"));
        cr_assert_str_eq(sink_prop_get(c, sc, "other"), "o");
        cr_assert_eq(sink_prop_set(c, sc, "", "x"), -EINVAL);
        cr_assert_eq(sink_prop_set(c, sc, NULL, "x"), -EINVAL);
    }
    /* scopes are separate */
    sink_prop_set(c, SINK_SCOPE_MESSAGE, "s", "message");
    sink_prop_set(c, SINK_SCOPE_SESSION, "s", "session");
    cr_assert_str_eq(sink_prop_get(c, SINK_SCOPE_MESSAGE, "s"), "message");
    cr_assert_str_eq(sink_prop_get(c, SINK_SCOPE_SESSION, "s"), "session");
    cr_assert_null(sink_prop_get(c, SINK_SCOPE_SERVER, "s"));
    /* a server value is a copy: another worker's later set cannot pull it away */
    sink_prop_set(c, SINK_SCOPE_SERVER, "count", "1");
    const char *v = sink_prop_get(c, SINK_SCOPE_SERVER, "count");
    sink_prop_set(c, SINK_SCOPE_SERVER, "count", "2");
    cr_assert_str_eq(v, "1");
    cr_assert_str_eq(sink_prop_get(c, SINK_SCOPE_SERVER, "count"), "2");
    /* the session clears the message bag for the next message */
    sink_bag_clear(f.message);
    cr_assert_null(sink_prop_get(c, SINK_SCOPE_MESSAGE, "s"));
    cr_assert_str_eq(sink_prop_get(c, SINK_SCOPE_SESSION, "s"), "session");
    /* no bag at this event */
    f.d.message_bag = NULL;
    cr_assert_null(sink_prop_get(c, SINK_SCOPE_MESSAGE, "s"));
    cr_assert_eq(sink_prop_set(c, SINK_SCOPE_MESSAGE, "s", "x"), -ENOTSUP);
    fx_fini(&f);
}

Test(ctx, set_reply_checks)
{
    struct fixture f;
    fx_init(&f, 10);
    struct sink_ctx *c = &f.ctx;
    cr_assert_eq(sink_set_reply(c, 550, "5.7.1", "no thanks"), 0);
    cr_assert_eq(c->code, 550);
    cr_assert_str_eq(c->enhanced, "5.7.1");
    cr_assert_str_eq(c->text, "no thanks");
    cr_assert_eq(sink_set_reply(c, 250, NULL, NULL), 0);
    cr_assert_str_eq(c->text, "");
    cr_assert_eq(sink_set_reply(c, 451, "4.7.12", "ok"), 0);
    cr_assert_eq(sink_set_reply(c, 199, NULL, "x"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 600, NULL, "x"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 550, "4.7.1", "x"), -EINVAL, "class differs");
    cr_assert_eq(sink_set_reply(c, 250, "5.0.0", "x"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 550, "5.7", "x"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 550, "5.7.1.2", "x"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 550, "5.7.1000", "x"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 550, NULL, "two\r\nlines"), -EINVAL);
    cr_assert_eq(sink_set_reply(c, 550, NULL, "nul\x01"), -EINVAL);
    char longt[600];
    memset(longt, 'x', sizeof(longt) - 1);
    longt[sizeof(longt) - 1] = '\0';
    cr_assert_eq(sink_set_reply(c, 550, NULL, longt), -EINVAL);
    cr_assert_eq(c->code, 451, "a refused reply leaves the last one");
    cr_assert(sink_reply_class_ok(SINK_EV_MAIL, SINK_CONSUMED, 354));
    cr_assert(sink_reply_class_ok(SINK_EV_MAIL, SINK_DROP, 421));
    cr_assert_not(sink_reply_class_ok(SINK_EV_MAIL, SINK_QUARANTINE, 550));
    cr_assert(sink_reply_class_ok(SINK_EV_RESPONSE, SINK_CONTINUE, 550));
    cr_assert_not(sink_reply_class_ok(SINK_EV_RESPONSE, SINK_REJECT, 250));
    fx_fini(&f);
}
