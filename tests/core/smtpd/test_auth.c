/* The credential file, its verifier and store, the failure limit, and the
 * SASL decoding (core/smtpd/auth.h).  Hashes are made here with libcrypt. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <crypt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/smtpd/auth.h"

/* A hash of pass with prefix ("$y$", "$6$") and the cheapest cost that
 * is still accepted, so the tests stay fast. */
static char *mkhash(const char *prefix, const char *pass)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    cr_assert_not_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)));
    cr_assert_not_null(crypt_rn(pass, setting, &cd, sizeof(cd)));
    return strdup(cd.output);
}

static struct auth_table *parse(const char *text, char *err, size_t errlen)
{
    return auth_table_parse(text, strlen(text), "users", err, errlen);
}

Test(auth, yescrypt_and_sha512)
{
    char *y = mkhash("$y$", "correct horse"), *six = mkhash("$6$", "battery staple");
    char text[1024], err[256];
    snprintf(text, sizeof(text), "# users\n\nalice:%s\r\n  bob:%s  \n", y, six);
    struct auth_table *t = parse(text, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(auth_table_count(t), 2);
    cr_assert(auth_table_verify(t, "alice", "correct horse"));
    cr_assert(auth_table_verify(t, "bob", "battery staple"));
    cr_assert(!auth_table_verify(t, "alice", "battery staple"));
    cr_assert(!auth_table_verify(t, "bob", "battery stapl"));
    cr_assert(!auth_table_verify(t, "bob", ""));
    cr_assert(!auth_table_verify(t, "carol", "correct horse")); /* unknown: the dummy */
    cr_assert(!auth_table_verify(t, "Alice", "correct horse")); /* names are exact */
    auth_table_unref(t);
    free(y);
    free(six);
}

Test(auth, openssl_passwd_6_format)
{
    /* `openssl passwd -6 -salt saltsalt secret` */
    const char *text = "u:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQ"
                       "SpT0Y77vwPZN.Pq.H91p5hVO1\n";
    char err[256];
    struct auth_table *t = parse(text, err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert(auth_table_verify(t, "u", "secret"));
    cr_assert(!auth_table_verify(t, "u", "Secret"));
    auth_table_unref(t);
}

Test(auth, errors_name_the_line)
{
    char err[256];
    char *y = mkhash("$y$", "x");
    char text[1024];
    cr_assert_null(parse("# c\nnocolon\n", err, sizeof(err)));
    cr_assert(strstr(err, "users:2:") != NULL, "%s", err);
    cr_assert_null(parse("\n\nbob:notahash\n", err, sizeof(err)));
    cr_assert(strstr(err, "users:3:") != NULL, "%s", err);
    cr_assert_null(parse(":$6$x$y\n", err, sizeof(err)));
    cr_assert(strstr(err, "users:1:") != NULL && strstr(err, "user name"), "%s", err);
    cr_assert_null(parse("a b:$6$x$y\n", err, sizeof(err)));
    snprintf(text, sizeof(text), "bob:%s\nbob:%s\n", y, y);
    cr_assert_null(parse(text, err, sizeof(err)));
    cr_assert(strstr(err, "twice") != NULL, "%s", err);
    cr_assert_null(parse("bob:abcdefghijklm\n", err, sizeof(err))); /* DES: legacy */
    cr_assert_null(auth_table_load("/nonexistent/users", err, sizeof(err)));
    cr_assert(strstr(err, "/nonexistent/users") != NULL, "%s", err);
    /* empty (comments only): valid, nobody can log in */
    struct auth_table *t = parse("# nobody\n", err, sizeof(err));
    cr_assert_not_null(t, "%s", err);
    cr_assert(!auth_table_verify(t, "bob", "x"));
    auth_table_unref(t);
    free(y);
}

Test(auth, store_reload_swaps_and_keeps_old_references)
{
    char path[] = "/tmp/sluice-auth-XXXXXX", err[256];
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    char *h1 = mkhash("$6$", "one"), *h2 = mkhash("$6$", "two");
    dprintf(fd, "bob:%s\n", h1);
    close(fd);
    struct auth_store *st = auth_store_create(path, err, sizeof(err));
    cr_assert_not_null(st, "%s", err);
    struct auth_table *old = auth_store_get(st);
    cr_assert(auth_table_verify(old, "bob", "one"));

    FILE *f = fopen(path, "w");
    fprintf(f, "bob:%s\nann:%s\n", h2, h1);
    fclose(f);
    cr_assert_eq(auth_store_reload(st, err, sizeof(err)), 0, "%s", err);
    struct auth_table *cur = auth_store_get(st);
    cr_assert(auth_table_verify(cur, "bob", "two"));
    cr_assert(auth_table_verify(cur, "ann", "one"));
    cr_assert(auth_table_verify(old, "bob", "one")); /* still readable: referenced */
    auth_table_unref(old);

    f = fopen(path, "w");
    fprintf(f, "broken line\n");
    fclose(f);
    cr_assert_lt(auth_store_reload(st, err, sizeof(err)), 0);
    cr_assert(strstr(err, ":1:") != NULL, "%s", err);
    struct auth_table *still = auth_store_get(st);
    cr_assert(auth_table_verify(still, "bob", "two")); /* the failed reload kept it */
    auth_table_unref(still);
    auth_table_unref(cur);
    auth_store_destroy(st);
    unlink(path);
    free(h1);
    free(h2);
}

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, a, &s4->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &s6->sin6_addr);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

Test(auth, limit_per_network_and_window)
{
    struct auth_limit *l = auth_limit_create(3, 60000, 64);
    struct sockaddr_storage a = v4("192.0.2.1"), b = v4("192.0.2.2");
    struct sockaddr_storage m = v6("::ffff:192.0.2.1");
    struct sockaddr_storage x1 = v6("2001:db8:1:2::1"), x2 = v6("2001:db8:1:2:ffff::9");
    struct sockaddr_storage y = v6("2001:db8:1:3::1");
    uint64_t t = 1000000;
    cr_assert(!auth_limit_blocked(l, SA(a), t));
    cr_assert(!auth_limit_fail(l, SA(a), t));
    cr_assert(!auth_limit_fail(l, SA(m), t + 1)); /* v4-mapped: the same address */
    cr_assert(!auth_limit_blocked(l, SA(a), t + 2));
    cr_assert(auth_limit_fail(l, SA(a), t + 3));
    cr_assert(auth_limit_blocked(l, SA(a), t + 4));
    cr_assert(!auth_limit_blocked(l, SA(b), t + 4)); /* /32 */
    cr_assert(auth_limit_blocked(l, SA(a), t + 59999));
    cr_assert(!auth_limit_blocked(l, SA(a), t + 60000)); /* the window is over */
    /* IPv6 by /64 */
    for (int i = 0; i < 3; i++)
        auth_limit_fail(l, i % 2 ? SA(x1) : SA(x2), t);
    cr_assert(auth_limit_blocked(l, SA(x1), t + 1));
    cr_assert(auth_limit_blocked(l, SA(x2), t + 1));
    cr_assert(!auth_limit_blocked(l, SA(y), t + 1));
    auth_limit_destroy(l);
}

Test(auth, limit_is_bounded)
{
    struct auth_limit *l = auth_limit_create(2, 60000, 8); /* 2 sets of 4 */
    char ip[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 250, i % 250);
        struct sockaddr_storage a = v4(ip);
        auth_limit_fail(l, SA(a), 5000 + (uint64_t)i);
        auth_limit_fail(l, SA(a), 5000 + (uint64_t)i);
        cr_assert(auth_limit_blocked(l, SA(a), 5000 + (uint64_t)i)); /* the newest is kept */
    }
    struct sockaddr_storage first = v4("10.0.0.0");
    cr_assert(!auth_limit_blocked(l, SA(first), 6000)); /* long evicted */
    auth_limit_destroy(l);
    /* max 0: no limit */
    l = auth_limit_create(0, 60000, 8);
    struct sockaddr_storage a = v4("192.0.2.9");
    for (int i = 0; i < 10; i++)
        cr_assert(!auth_limit_fail(l, SA(a), 1));
    cr_assert(!auth_limit_blocked(l, SA(a), 1));
    auth_limit_destroy(l);
}

Test(auth, limit_per_user_name)
{
    struct auth_limit *u = auth_limit_create(3, 60000, 64);
    uint64_t t = 2000000;
    cr_assert(!auth_limit_user_blocked(u, "bob", t));
    cr_assert_eq(auth_limit_user_fail(u, "bob", t), 1);
    cr_assert_eq(auth_limit_user_fail(u, "BoB", t + 1), 2); /* ASCII case-insensitive */
    cr_assert(!auth_limit_user_blocked(u, "bob", t + 2));
    cr_assert_eq(auth_limit_user_fail(u, "Bob", t + 2), 3);
    cr_assert(auth_limit_user_blocked(u, "bob", t + 3));
    cr_assert(auth_limit_user_blocked(u, "BOB", t + 3));
    cr_assert(!auth_limit_user_blocked(u, "bobby", t + 3));
    cr_assert(!auth_limit_user_blocked(u, "ann", t + 3));
    cr_assert(auth_limit_user_blocked(u, "bob", t + 59999));
    cr_assert(!auth_limit_user_blocked(u, "bob", t + 60000));   /* the window is over */
    cr_assert_eq(auth_limit_user_fail(u, "bob", t + 60000), 1); /* a new one */
    auth_limit_destroy(u);
    /* bounded: 2 sets of 4, the newest names are kept */
    u = auth_limit_create(1, 60000, 8);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        auth_limit_user_fail(u, name, 5000 + (uint64_t)i);
        cr_assert(auth_limit_user_blocked(u, name, 5000 + (uint64_t)i));
    }
    cr_assert(!auth_limit_user_blocked(u, "user0", 6000)); /* long evicted */
    auth_limit_destroy(u);
    /* max 0 and NULL: no budget */
    u = auth_limit_create(0, 60000, 8);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(auth_limit_user_fail(u, "bob", 1), 0);
    cr_assert(!auth_limit_user_blocked(u, "bob", 1));
    auth_limit_destroy(u);
    cr_assert_eq(auth_limit_user_fail(NULL, "bob", 1), 0);
    cr_assert(!auth_limit_user_blocked(NULL, "bob", 1));
}

Test(auth, limit_known_pairs)
{
    struct auth_limit *k = auth_limit_create(1, 10000, 64);
    struct sockaddr_storage a = v4("192.0.2.1"), a2 = v6("::ffff:192.0.2.1"), b = v4("192.0.2.2");
    struct sockaddr_storage x1 = v6("2001:db8:1:2::1"), x2 = v6("2001:db8:1:2::77");
    uint64_t t = 3000000;
    cr_assert(!auth_limit_pair_seen(k, "bob", SA(a), t));
    auth_limit_pair_add(k, "bob", SA(a), t);
    cr_assert(auth_limit_pair_seen(k, "bob", SA(a), t + 1));
    cr_assert(auth_limit_pair_seen(k, "BOB", SA(a2), t + 1)); /* the same user and network */
    cr_assert(!auth_limit_pair_seen(k, "bob", SA(b), t + 1));
    cr_assert(!auth_limit_pair_seen(k, "ann", SA(a), t + 1));
    auth_limit_pair_add(k, "bob", SA(a), t + 8000); /* a later login: remembered from then */
    cr_assert(auth_limit_pair_seen(k, "bob", SA(a), t + 17999));
    cr_assert(!auth_limit_pair_seen(k, "bob", SA(a), t + 18000));
    auth_limit_pair_add(k, "bob", SA(x1), t);
    cr_assert(auth_limit_pair_seen(k, "bob", SA(x2), t + 1)); /* the /64 */
    auth_limit_destroy(k);
    cr_assert(!auth_limit_pair_seen(NULL, "bob", SA(a), t));
    auth_limit_pair_add(NULL, "bob", SA(a), t); /* no memory: nothing */
}

Test(auth, base64)
{
    char out[64], enc[64];
    cr_assert_eq(auth_b64_decode("VXNlcm5hbWU6", 12, out, sizeof(out)), 9);
    cr_assert_str_eq(out, "Username:");
    cr_assert_eq(auth_b64_decode("YQ==", 4, out, sizeof(out)), 1);
    cr_assert_str_eq(out, "a");
    cr_assert_eq(auth_b64_decode("YQ", 2, out, sizeof(out)), 1); /* padding optional */
    cr_assert_eq(auth_b64_decode("YWI=", 4, out, sizeof(out)), 2);
    cr_assert_eq(auth_b64_decode("", 0, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("Y", 1, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("YQ=", 3, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("Y===", 4, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("YQ==YQ==", 8, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("YW I=", 5, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("YW*=", 4, out, sizeof(out)), 0);
    cr_assert_lt(auth_b64_decode("YWJj", 4, out, 3), 0); /* no room for the NUL */
    const char bin[] = "\0bob\0s3cr\xc3\xa9t";
    size_t n = auth_b64_encode(bin, sizeof(bin) - 1, enc);
    cr_assert_eq(n, strlen(enc));
    cr_assert_eq(auth_b64_decode(enc, n, out, sizeof(out)), (ssize_t)sizeof(bin) - 1);
    cr_assert_eq(memcmp(out, bin, sizeof(bin) - 1), 0);
}

Test(auth, plain_split)
{
    char buf[64];
    const char *z, *c, *p;
    memcpy(buf, "\0bob\0secret", 12);
    cr_assert_eq(auth_plain_split(buf, 11, &z, &c, &p), 0);
    cr_assert_str_eq(z, "");
    cr_assert_str_eq(c, "bob");
    cr_assert_str_eq(p, "secret");
    memcpy(buf, "admin\0bob\0", 11);
    cr_assert_eq(auth_plain_split(buf, 10, &z, &c, &p), 0);
    cr_assert_str_eq(z, "admin");
    cr_assert_str_eq(p, "");
    memcpy(buf, "bob\0secret", 11);
    cr_assert_lt(auth_plain_split(buf, 10, &z, &c, &p), 0); /* one NUL */
    memcpy(buf, "\0\0secret", 9);
    cr_assert_lt(auth_plain_split(buf, 8, &z, &c, &p), 0); /* empty authcid */
    memcpy(buf, "\0bob\0se\0cret", 13);
    cr_assert_lt(auth_plain_split(buf, 12, &z, &c, &p), 0); /* three */
}
