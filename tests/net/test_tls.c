/*
 * NAME
 *	test_tls - the TLS engines against each other, in memory
 * DESCRIPTION
 *	A client and a server tls_conn are wired back to back (each one's
 *	output fed to the other) in a bounded loop.  Certificates are made
 *	once with the openssl command into a temporary directory: a CA, a
 *	server certificate for mx.test signed by it, a self-signed one for
 *	mx.test, and a second key that matches neither.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/client/tls_cfg.h"
#include "core/cfg/cfg.h"
#include "net/tls.h"

static char dir[64];

static const char *path(const char *name)
{
    static char buf[8][128];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static void make_certs(void)
{
    strcpy(dir, "/tmp/sluice-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "(set -e; cd %s; K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'; "
             "openssl req -x509 $K -keyout ca.key -out ca.pem -subj /CN=test-ca -days 2; "
             "openssl req $K -keyout srv.key -out srv.csr -subj /CN=mx.test; "
             "printf 'subjectAltName=DNS:mx.test\\n' > ext; "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile ext; "
             "openssl req -x509 $K -keyout self.key -out self.pem -subj /CN=mx.test -days 2 "
             "-addext subjectAltName=DNS:mx.test; "
             "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out other.key)",
             dir);
    snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " 2>/dev/null");
    cr_assert_eq(system(cmd), 0, "openssl could not make the test certificates");
}

static void rm_certs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tls, .init = make_certs, .fini = rm_certs);

static void pipe_out(struct tls_conn *from, struct tls_conn *to)
{
    char buf[4096];
    size_t n;
    while ((n = tls_conn_out_take(from, buf, sizeof(buf))) > 0)
        cr_assert_eq(tls_conn_feed(to, buf, n), 0);
}

/* Runs both handshakes to their end: the statuses in *cs and *ss. */
static void handshake(struct tls_conn *c, struct tls_conn *s, enum tls_status *cs,
                      enum tls_status *ss)
{
    *cs = *ss = TLS_WANT;
    for (int i = 0; i < 20 && (*cs == TLS_WANT || *ss == TLS_WANT); i++) {
        if (*cs == TLS_WANT)
            *cs = tls_conn_handshake(c);
        pipe_out(c, s);
        if (*ss == TLS_WANT)
            *ss = tls_conn_handshake(s);
        pipe_out(s, c);
        if (*cs == TLS_FAILED || *ss == TLS_FAILED)
            break;
    }
}

static struct tls_server *server(const char *cert, const char *key)
{
    char err[512];
    struct tls_opts o = {.cert = path(cert), .key = path(key)};
    struct tls_server *ts = tls_server_create(&o, err, sizeof(err));
    cr_assert_not_null(ts, "%s", err);
    return ts;
}

static struct tls_client *client(const char *ca)
{
    char err[512];
    struct tls_opts o = {.ca_file = ca ? path(ca) : NULL};
    struct tls_client *tc = tls_client_create(&o, err, sizeof(err));
    cr_assert_not_null(tc, "%s", err);
    return tc;
}

static void roundtrip(struct tls_conn *from, struct tls_conn *to, const char *text)
{
    char buf[256];
    cr_assert_eq(tls_conn_write(from, text, strlen(text)), 0);
    pipe_out(from, to);
    ssize_t n = tls_conn_read(to, buf, sizeof(buf) - 1);
    cr_assert_eq(n, (ssize_t)strlen(text));
    buf[n] = '\0';
    cr_assert_str_eq(buf, text);
    pipe_out(to, from); /* session tickets and the like */
}

Test(tls, verified_handshake_and_data_both_ways)
{
    struct tls_server *ts = server("srv.pem", "srv.key");
    struct tls_client *tc = client("ca.pem");
    struct tls_conn *s = tls_conn_accept(ts), *c = tls_conn_connect(tc, "mx.test", TLS_VERIFY_VERIFY);
    enum tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    cr_assert_eq(cs, TLS_OK, "client: %s", tls_conn_error(c));
    cr_assert_eq(ss, TLS_OK, "server: %s", tls_conn_error(s));
    cr_assert(tls_conn_verified(c));
    cr_assert_str_eq(tls_conn_protocol(s), "TLSv1.3");
    cr_assert(strncmp(tls_conn_desc(s), "TLSv1.3 with cipher TLS_", 24) == 0, "%s",
              tls_conn_desc(s));
    cr_assert(strstr(tls_conn_desc(s), " bits)") != NULL);
    roundtrip(c, s, "EHLO client.test\r\n");
    roundtrip(s, c, "250 mx.test\r\n");
    roundtrip(c, s, "QUIT\r\n");
    /* close_notify reads as the end */
    tls_conn_shutdown(s);
    pipe_out(s, c);
    char buf[16];
    cr_assert_eq(tls_conn_read(c, buf, sizeof(buf)), -EPIPE);
    tls_conn_destroy(c);
    tls_conn_destroy(s);
    tls_client_destroy(tc);
    tls_server_destroy(ts);
}

Test(tls, self_signed_fails_verify_but_passes_may)
{
    struct tls_server *ts = server("self.pem", "self.key");
    struct tls_client *tc = client("ca.pem");
    struct tls_conn *s = tls_conn_accept(ts), *c = tls_conn_connect(tc, "mx.test", TLS_VERIFY_VERIFY);
    enum tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    cr_assert_eq(cs, TLS_FAILED);
    cr_assert(strstr(tls_conn_error(c), "certificate verification failed: self-signed") != NULL,
              "%s", tls_conn_error(c));
    tls_conn_destroy(c);
    tls_conn_destroy(s);
    s = tls_conn_accept(ts);
    c = tls_conn_connect(tc, "mx.test", TLS_VERIFY_MAY);
    handshake(c, s, &cs, &ss);
    cr_assert_eq(cs, TLS_OK, "%s", tls_conn_error(c));
    cr_assert_eq(ss, TLS_OK);
    cr_assert_not(tls_conn_verified(c));
    tls_conn_destroy(c);
    tls_conn_destroy(s);
    tls_client_destroy(tc);
    tls_server_destroy(ts);
}

Test(tls, host_name_mismatch)
{
    struct tls_server *ts = server("srv.pem", "srv.key");
    struct tls_client *tc = client("ca.pem");
    struct tls_conn *s = tls_conn_accept(ts),
                    *c = tls_conn_connect(tc, "other.test", TLS_VERIFY_VERIFY);
    enum tls_status cs, ss;
    handshake(c, s, &cs, &ss);
    cr_assert_eq(cs, TLS_FAILED);
    cr_assert(strstr(tls_conn_error(c), "ostname mismatch") != NULL, "%s", tls_conn_error(c));
    tls_conn_destroy(c);
    tls_conn_destroy(s);
    /* without the CA file the system store does not know our CA either */
    struct tls_client *sys = client(NULL);
    s = tls_conn_accept(ts);
    c = tls_conn_connect(sys, "mx.test", TLS_VERIFY_VERIFY);
    handshake(c, s, &cs, &ss);
    cr_assert_eq(cs, TLS_FAILED);
    cr_assert(strstr(tls_conn_error(c), "unable to get local issuer") != NULL, "%s",
              tls_conn_error(c));
    tls_conn_destroy(c);
    tls_conn_destroy(s);
    tls_client_destroy(sys);
    tls_client_destroy(tc);
    tls_server_destroy(ts);
}

Test(tls, tls11_client_refused)
{
    struct tls_server *ts = server("srv.pem", "srv.key");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    struct tls_conn *s = tls_conn_accept(ts);
    enum tls_status ss = TLS_WANT;
    int cr = 0;
    for (int i = 0; i < 10 && ss == TLS_WANT; i++) {
        cr = SSL_do_handshake(ssl);
        char buf[8192];
        int n;
        while ((n = BIO_read(wb, buf, sizeof(buf))) > 0)
            tls_conn_feed(s, buf, (size_t)n);
        ss = tls_conn_handshake(s);
        size_t k;
        while ((k = tls_conn_out_take(s, buf, sizeof(buf))) > 0)
            BIO_write(rb, buf, (int)k);
    }
    cr_assert_eq(ss, TLS_FAILED);
    cr_assert(strstr(tls_conn_error(s), "protocol") != NULL, "%s", tls_conn_error(s));
    cr_assert_neq(SSL_do_handshake(ssl), 1); /* the client got the alert */
    (void)cr;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    tls_conn_destroy(s);
    tls_server_destroy(ts);
}

Test(tls, start_errors_name_the_file)
{
    char err[512];
    struct tls_opts o = {.cert = path("srv.pem"), .key = path("missing.key")};
    cr_assert_null(tls_server_create(&o, err, sizeof(err)));
    cr_assert(strstr(err, "missing.key: No such file or directory") != NULL, "%s", err);
    o.key = path("other.key");
    cr_assert_null(tls_server_create(&o, err, sizeof(err)));
    cr_assert(strstr(err, "other.key does not match the certificate") != NULL, "%s", err);
    o.key = path("srv.key");
    o.cert = path("ext"); /* not PEM */
    cr_assert_null(tls_server_create(&o, err, sizeof(err)));
    cr_assert(strstr(err, "tls: cert ") != NULL && strstr(err, "ext: not a usable") != NULL,
              "%s", err);
    o.cert = path("srv.pem");
    o.min_protocol = "TLSv1.0";
    cr_assert_null(tls_server_create(&o, err, sizeof(err)));
    cr_assert(strstr(err, "min_protocol") != NULL, "%s", err);
}

Test(tls, reload_swaps_for_new_connections_only)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", path("self.pem"), path("live.pem"),
             path("self.key"), path("live.key"));
    cr_assert_eq(system(cmd), 0);
    struct tls_server *ts = server("live.pem", "live.key");
    struct tls_client *tc = client("ca.pem");
    struct tls_conn *s1 = tls_conn_accept(ts), *c1 = tls_conn_connect(tc, "mx.test", TLS_VERIFY_VERIFY);
    enum tls_status cs, ss;
    handshake(c1, s1, &cs, &ss);
    cr_assert_eq(cs, TLS_FAILED); /* self-signed */
    tls_conn_destroy(c1);
    tls_conn_destroy(s1);
    s1 = tls_conn_accept(ts);
    c1 = tls_conn_connect(tc, "mx.test", TLS_VERIFY_MAY);
    handshake(c1, s1, &cs, &ss);
    cr_assert_eq(cs, TLS_OK);
    /* a bad pair on disk: the reload fails, the old context stays */
    snprintf(cmd, sizeof(cmd), "cp %s %s", path("other.key"), path("live.key"));
    cr_assert_eq(system(cmd), 0);
    char err[512];
    cr_assert_lt(tls_server_reload(ts, err, sizeof(err)), 0);
    cr_assert(strstr(err, "does not match") != NULL, "%s", err);
    snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", path("srv.pem"), path("live.pem"),
             path("srv.key"), path("live.key"));
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(tls_server_reload(ts, err, sizeof(err)), 0, "%s", err);
    struct tls_conn *s2 = tls_conn_accept(ts),
                    *c2 = tls_conn_connect(tc, "mx.test", TLS_VERIFY_VERIFY);
    handshake(c2, s2, &cs, &ss);
    cr_assert_eq(cs, TLS_OK, "%s", tls_conn_error(c2)); /* the CA-signed one now */
    roundtrip(c1, s1, "NOOP\r\n"); /* the old connection still works */
    roundtrip(s1, c1, "250 2.0.0 Ok\r\n");
    tls_conn_destroy(c1);
    tls_conn_destroy(s1);
    tls_conn_destroy(c2);
    tls_conn_destroy(s2);
    tls_client_destroy(tc);
    tls_server_destroy(ts);
}

Test(tls, config_block)
{
    char err[512];
    FILE *f = fopen(path("a.conf"), "w");
    fputs("tls { cert = \"/c.pem\"; key = \"/k.pem\"; min_protocol = \"TLSv1.3\"; }\n", f);
    fclose(f);
    f = fopen(path("b.conf"), "w");
    fputs("tls { cert = \"/c.pem\"; keyy = \"/k.pem\"; }\n", f);
    fclose(f);
    struct cfg *cfg = cfg_load(path("a.conf"), NULL, 0, err, sizeof(err));
    cr_assert_not_null(cfg, "%s", err);
    struct tls_opts o;
    cr_assert_eq(tls_cfg_opts(cfg, &o, err, sizeof(err)), 1, "%s", err);
    cr_assert_str_eq(o.cert, "/c.pem");
    cr_assert_str_eq(o.key, "/k.pem");
    cr_assert_str_eq(o.min_protocol, "TLSv1.3");
    cfg_destroy(cfg);
    cfg = cfg_load(path("b.conf"), NULL, 0, err, sizeof(err));
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_lt(tls_cfg_opts(cfg, &o, err, sizeof(err)), 0);
    cr_assert(strstr(err, "tls.keyy: unknown key") != NULL, "%s", err);
    cfg_destroy(cfg);
    cfg = cfg_load(NULL, NULL, 0, err, sizeof(err));
    cr_assert_not_null(cfg, "%s", err);
    cr_assert_eq(tls_cfg_opts(cfg, &o, err, sizeof(err)), 0);
    cfg_destroy(cfg);
}
