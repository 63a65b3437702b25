/*
 * NAME
 *	test_cfg_net - addresses, networks and domains (cfg_net.c)
 */
#include <criterion/criterion.h>

#include "core/cfg/cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static struct sockaddr_storage addr(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, a, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        cr_assert_fail("bad test address %s", a);
    return ss;
}

static bool match(const struct cfg_cidr *v, size_t n, const char *a)
{
    struct sockaddr_storage ss = addr(a);
    return cfg_cidr_match(v, n, (struct sockaddr *)&ss);
}

Test(cfg_net, parse_cidr)
{
    struct cfg_cidr c;
    cr_assert_eq(cfg_parse_cidr("10.0.0.0/8", &c), 0);
    cr_assert_eq(c.family, AF_INET);
    cr_assert_eq(c.prefix, 8);
    cr_assert_eq(c.addr[0], 10);
    cr_assert_eq(cfg_parse_cidr("::1/128", &c), 0);
    cr_assert_eq(c.family, AF_INET6);
    cr_assert_eq(c.prefix, 128);
    cr_assert_eq(c.addr[15], 1);
    cr_assert_eq(cfg_parse_cidr("192.0.2.7", &c), 0); /* a host */
    cr_assert_eq(c.prefix, 32);
    cr_assert_eq(cfg_parse_cidr("2001:db8::1", &c), 0);
    cr_assert_eq(c.prefix, 128);
    cr_assert_eq(cfg_parse_cidr("[2001:db8::]/32", &c), 0); /* Postfix spelling */
    cr_assert_eq(c.prefix, 32);
    cr_assert_eq(cfg_parse_cidr("0.0.0.0/0", &c), 0);
    cr_assert_eq(c.prefix, 0);

    const char *bad[] = {"10.0.0.0/33", "::/129",       "10.0.0.0/", "10.0.0.0/a", "10.0.0.0/08",
                         "10.0.0.0/-1", "10.1.2.3/8",   "foo",       "",           "/8",
                         "10.0.0/8",    "[10.0.0.0]/8", "::1/128/1", "10.0.0.0/8 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(cfg_parse_cidr(bad[i], &c), -EINVAL, "%s", bad[i]);
    cr_assert_eq(cfg_parse_cidr(NULL, &c), -EINVAL);
}

Test(cfg_net, cidr_match)
{
    struct cfg_cidr v[3];
    cr_assert_eq(cfg_parse_cidr("10.0.0.0/8", &v[0]), 0);
    cr_assert_eq(cfg_parse_cidr("172.16.0.0/12", &v[1]), 0);
    cr_assert_eq(cfg_parse_cidr("2001:db8::/33", &v[2]), 0);

    cr_assert(match(v, 3, "10.1.2.3"));
    cr_assert_not(match(v, 3, "11.0.0.1"));
    cr_assert(match(v, 3, "172.31.255.255"));
    cr_assert_not(match(v, 3, "172.32.0.0"));
    cr_assert(match(v, 3, "2001:db8:7fff::1"));
    cr_assert_not(match(v, 3, "2001:db8:8000::1"));
    /* IPv4-mapped client addresses match IPv4 networks */
    cr_assert(match(v, 3, "::ffff:10.1.2.3"));
    cr_assert(match(v, 3, "::ffff:172.20.0.1"));
    cr_assert_not(match(v, 3, "::ffff:11.1.2.3"));
    cr_assert_not(match(v, 3, "::10.1.2.3")); /* IPv4-compatible is not mapped */
    cr_assert_not(match(v, 0, "10.1.2.3"));
    cr_assert_not(cfg_cidr_match(v, 3, NULL));

    struct cfg_cidr any4, lo6, mapped;
    cr_assert_eq(cfg_parse_cidr("0.0.0.0/0", &any4), 0);
    cr_assert(match(&any4, 1, "203.0.113.9"));
    cr_assert(match(&any4, 1, "::ffff:203.0.113.9"));
    cr_assert_not(match(&any4, 1, "2001:db8::1"));
    cr_assert_eq(cfg_parse_cidr("::1/128", &lo6), 0);
    cr_assert(match(&lo6, 1, "::1"));
    cr_assert_not(match(&lo6, 1, "127.0.0.1"));
    cr_assert_eq(cfg_parse_cidr("::ffff:0:0/96", &mapped), 0); /* a v6 rule sees them too */
    cr_assert(match(&mapped, 1, "::ffff:1.2.3.4"));

    struct sockaddr_un_like {
        sa_family_t family;
        char path[20];
    } un = {.family = AF_UNIX};
    cr_assert_not(cfg_cidr_match(v, 3, (struct sockaddr *)&un));
}

Test(cfg_net, parse_hostport)
{
    struct cfg_sockaddr a;
    cr_assert_eq(cfg_parse_hostport("127.0.0.1:2525", &a), 0);
    cr_assert_str_eq(a.text, "127.0.0.1:2525");
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    cr_assert_eq(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 2525);
    cr_assert_eq(cfg_parse_hostport("[::1]:25", &a), 0);
    cr_assert_str_eq(a.text, "[::1]:25");
    cr_assert_eq(a.ss.ss_family, AF_INET6);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
    cr_assert_eq(cfg_parse_hostport("[2001:DB8:0::1]:65535", &a), 0);
    cr_assert_str_eq(a.text, "[2001:db8::1]:65535");      /* canonical */
    cr_assert_eq(cfg_parse_hostport("0.0.0.0:0", &a), 0); /* port 0: any free port */
    cr_assert_eq(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 0);

    const char *bad[] = {"127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:2a",
                         "localhost:25",
                         "::1:25",
                         "[::1]25",
                         "[::1]:",
                         "[1.2.3.4]:25",
                         ":25",
                         "[::1:25",
                         "",
                         "127.0.0.1:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(cfg_parse_hostport(bad[i], &a), -EINVAL, "%s", bad[i]);
}

Test(cfg_net, domain_match)
{
    char *v[] = {"example.test", ".sub.test"};
    cr_assert(cfg_domain_match(v, 2, "example.test"));
    cr_assert(cfg_domain_match(v, 2, "EXAMPLE.Test"));
    cr_assert(cfg_domain_match(v, 2, "example.test.")); /* rooted */
    cr_assert_not(cfg_domain_match(v, 2, "a.example.test"));
    cr_assert_not(cfg_domain_match(v, 2, "badexample.test"));
    cr_assert(cfg_domain_match(v, 2, "a.sub.test"));
    cr_assert(cfg_domain_match(v, 2, "b.A.SUB.test"));
    cr_assert_not(cfg_domain_match(v, 2, "sub.test"));
    cr_assert_not(cfg_domain_match(v, 2, "xsub.test"));
    cr_assert_not(cfg_domain_match(v, 2, ""));
    cr_assert_not(cfg_domain_match(v, 2, NULL));
    cr_assert_not(cfg_domain_match(v, 0, "example.test"));
}
