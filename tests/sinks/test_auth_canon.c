/*
 * NAME
 *	test_auth_canon - DKIM canonicalization (RFC 6376 3.4.5's examples and
 *	edge cases, in every piece size), the header journal, base64, the
 *	keytable's lookups
 */
#include "tests/sinks/sink_test.h"

#include <openssl/sha.h>

#include "sinks/auth.h"

/* The body hash of body fed in pieces of `piece` octets. */
static void body_hash(enum auth_canon c, const char *body, size_t piece, unsigned char out[32])
{
    struct auth_bodyc b;
    cr_assert_eq(auth_bodyc_init(&b, c), 0);
    size_t n = strlen(body);
    for (size_t i = 0; i < n; i += piece)
        auth_bodyc_feed(&b, body + i, n - i < piece ? n - i : piece);
    cr_assert_eq(auth_bodyc_final(&b, out), 0);
}

static void body_is(enum auth_canon c, const char *body, const char *want)
{
    unsigned char w[32], got[32];
    SHA256((const unsigned char *)want, strlen(want), w);
    for (size_t piece = 1; piece <= strlen(body) + 1; piece++) {
        body_hash(c, body, piece, got);
        cr_assert(memcmp(w, got, 32) == 0, "%s body \"%s\" (pieces of %zu) is not \"%s\"",
                  c == AUTH_SIMPLE ? "simple" : "relaxed", body, piece, want);
    }
}

Test(auth_canon, rfc6376_example_body)
{
    body_is(AUTH_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
    body_is(AUTH_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n");
}

Test(auth_canon, body_edges)
{
    body_is(AUTH_SIMPLE, "", "\r\n");
    body_is(AUTH_RELAXED, "", "");
    body_is(AUTH_SIMPLE, "\r\n\r\n", "\r\n");
    body_is(AUTH_RELAXED, "\r\n  \r\n\t\r\n", "");
    body_is(AUTH_SIMPLE, "x", "x\r\n");
    body_is(AUTH_RELAXED, "x  ", "x\r\n");
    body_is(AUTH_SIMPLE, "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n");
    body_is(AUTH_RELAXED, "a\r\n \r\nb \r\n\r\n", "a\r\n\r\nb\r\n");
    /* a bare CR or LF is content, not a line end */
    body_is(AUTH_SIMPLE, "a\rb\nc\r\n", "a\rb\nc\r\n");
    body_is(AUTH_RELAXED, "a \r b\r\n", "a \r b\r\n");
    body_is(AUTH_SIMPLE, "a\r", "a\r\r\n");
}

static void hdr_is(enum auth_canon c, const char *field, const char *want)
{
    struct auth_buf b = {0};
    cr_assert_eq(auth_hdr_canon(&b, c, field, strlen(field), true), 0);
    cr_assert_str_eq(b.p, want);
    auth_buf_free(&b);
}

Test(auth_canon, rfc6376_example_header)
{
    hdr_is(AUTH_RELAXED, "A: X\r\n", "a:X\r\n");
    hdr_is(AUTH_RELAXED, "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n");
    hdr_is(AUTH_SIMPLE, "B : Y\t\r\n\tZ  \r\n", "B : Y\t\r\n\tZ  \r\n");
    hdr_is(AUTH_SIMPLE, "X: no crlf", "X: no crlf\r\n");
    hdr_is(AUTH_RELAXED, "Subject:   \t lead and trail \t ", "subject:lead and trail\r\n");
}

static void fields(const struct auth_hdrs *h, char *out, size_t len)
{
    out[0] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < h->n && o + h->v[i].len < len; i++) {
        memcpy(out + o, h->v[i].p, h->v[i].len); /* parsed fields are not terminated */
        o += h->v[i].len;
    }
    out[o] = '\0';
}

Test(auth_canon, journal_replays_the_storage_rules)
{
    const char *hdr = "Received: by mx\r\nFrom: a@x\r\nSubject: one\r\n\tfolded\r\nTo: b@y\r\n";
    struct auth_hdrs h = {0};
    cr_assert_eq(auth_hdrs_parse(&h, hdr, strlen(hdr)), 0);
    cr_assert_eq(h.n, 4);
    cr_assert(auth_field_is(&h.v[2], "subject", 7));
    cr_assert_eq(auth_hdrs_journal(&h, "AX-A:1\nCSubject:two\nAX-B:2\nRTo:\nCCc:c@z\n"), 0);
    char got[512];
    fields(&h, got, sizeof(got));
    /* additions after the Received field, in order; CHANGE of a missing
     * field adds it there too; REMOVE takes every instance */
    cr_assert_str_eq(got, "Received: by mx\r\nX-A: 1\r\nX-B: 2\r\nCc: c@z\r\nFrom: a@x\r\n"
                          "Subject: two\r\n");
    auth_hdrs_free(&h);
    cr_assert_eq(auth_hdrs_parse(&h, "A: 1\r\n", 6), 0);
    cr_assert_eq(auth_hdrs_journal(&h, "AB:2\n"), 0);
    fields(&h, got, sizeof(got));
    cr_assert_str_eq(got, "B: 2\r\nA: 1\r\n"); /* no Received: at the top */
    cr_assert_eq(auth_hdrs_journal(&h, "Qbad\n"), -EINVAL);
    auth_hdrs_free(&h);
}

Test(auth_canon, base64_round_trip)
{
    unsigned char in[64], back[64];
    char enc[100];
    for (size_t n = 0; n < sizeof(in); n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37 + n);
        size_t el = auth_b64_enc(in, n, enc);
        cr_assert_eq(el, (n + 2) / 3 * 4);
        cr_assert_eq(auth_b64_dec(enc, el, back, sizeof(back)), (ssize_t)n);
        cr_assert(memcmp(in, back, n) == 0);
    }
    cr_assert_eq(auth_b64_dec("aGVs bG8=\r\n", 11, back, sizeof(back)), 5);
    cr_assert(memcmp(back, "hello", 5) == 0);
    cr_assert_eq(auth_b64_dec("aGV*", 4, back, sizeof(back)), -EINVAL);
    cr_assert_eq(auth_b64_dec("aGVsbG8=", 8, back, 2), -ENOSPC);
}

Test(auth_canon, keytable_lookups)
{
    char dir[] = "/tmp/sluice-kt-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char key[256], kt[256];
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(kt, sizeof(kt), "%s/kt", dir);
    FILE *f = fopen(key, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nnot parsed until used\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    f = fopen(kt, "w");
    fprintf(f, "# comment\nExample.ORG s1 %s\nexample.org s2 %s\n*.example.net w %s\n", key, key,
            key);
    for (int i = 0; i < 5000; i++)
        fprintf(f, "d%d.example.com s %s\n", i, key);
    fclose(f);
    char err[256] = "";
    struct auth_keytable *t = auth_keytable_load(kt, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(auth_keytable_domains(t), 5002);
    size_t n = 0;
    const char *d = NULL;
    const struct auth_key *k = auth_keytable_find(t, "EXAMPLE.org", &n, &d);
    cr_assert_not_null(k);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(d, "example.org");
    cr_assert_str_eq(k[1].selector, "s2");
    k = auth_keytable_find(t, "a.b.example.net", &n, &d);
    cr_assert_not_null(k);
    cr_assert_str_eq(d, "example.net");
    cr_assert_null(auth_keytable_find(t, "example.net", &n, &d)); /* *. is subdomains only */
    cr_assert_not_null(auth_keytable_find(t, "d4999.example.com", &n, &d));
    cr_assert_null(auth_keytable_find(t, "d5000.example.com", &n, &d));
    /* the file does not parse: found, but its key is unusable */
    enum auth_alg alg;
    k = auth_keytable_find(t, "d1.example.com", &n, &d);
    cr_assert_null(auth_keyfile_pkey(k[0].kf, &alg));
    auth_keytable_free(t);
    f = fopen(kt, "w");
    fprintf(f, "example.org s1\n");
    fclose(f);
    cr_assert_null(auth_keytable_load(kt, err, sizeof(err)));
    cr_assert(strstr(err, ":1: expected `domain selector keyfile`") != NULL, "%s", err);
    f = fopen(kt, "w");
    fprintf(f, "example.org s1 %s/missing.pem\n", dir);
    fclose(f);
    cr_assert_null(auth_keytable_load(kt, err, sizeof(err)));
    cr_assert(strstr(err, "cannot read") != NULL, "%s", err);
    unlink(key);
    unlink(kt);
    rmdir(dir);
}
