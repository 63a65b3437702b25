/*
 * NAME
 *	test_cfg_table - cfg_load(): the settings table, bounds, overrides
 */
#include <criterion/criterion.h>

#include "core/cfg/cfg.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[512];
static char path[64];

/* Writes text to a fresh temporary file; its name is in path. */
static void write_conf(const char *text)
{
    strcpy(path, "/tmp/sluice-cfg-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static struct cfg *load_text(const char *text, const char *const *ov, size_t nov)
{
    write_conf(text);
    err[0] = '\0';
    struct cfg *c = cfg_load(path, ov, nov, err, sizeof(err));
    unlink(path);
    return c;
}

static struct cfg *load_ok(const char *text, const char *const *ov, size_t nov)
{
    struct cfg *c = load_text(text, ov, nov);
    cr_assert_not_null(c, "load failed: %s", err);
    return c;
}

/* The load fails with "FILE:" + want (want starts with the line). */
static void load_fails(const char *text, const char *want)
{
    struct cfg *c = load_text(text, NULL, 0);
    cr_assert_null(c, "load of [%s] succeeded", text);
    char full[600];
    snprintf(full, sizeof(full), "%s:%s", path, want);
    cr_assert_str_eq(err, full, "[%s]: got \"%s\", want \"%s\"", text, err, full);
}

static void override_fails(const char *text, const char *o, const char *want)
{
    const char *ov[] = {o};
    struct cfg *c = text ? load_text(text, ov, 1) : cfg_load(NULL, ov, 1, err, sizeof(err));
    cr_assert_null(c, "-o %s succeeded", o);
    cr_assert_str_eq(err, want, "-o %s: got \"%s\", want \"%s\"", o, err, want);
}

static struct sockaddr_in v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET};
    cr_assert_eq(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return s;
}

Test(cfg_table, defaults)
{
    struct cfg *c = cfg_load(NULL, NULL, 0, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nlisten, 1);
    cr_assert_str_eq(c->listen[0].text, "127.0.0.1:2525");
    cr_assert_eq(c->listen[0].ss.ss_family, AF_INET);
    cr_assert_eq(ntohs(((struct sockaddr_in *)&c->listen[0].ss)->sin_port), 2525);
    cr_assert_str_eq(c->spool_dir, "./var/spool");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(c->workers, cpus < 1 ? 1 : cpus > 64 ? 64 : (unsigned)cpus);
    cr_assert_not_null(c->hostname);
    cr_assert_gt(strlen(c->hostname), 0);
    cr_assert_eq(c->nmynetworks, 2);
    cr_assert_eq(c->mynetworks[0].family, AF_INET);
    cr_assert_eq(c->mynetworks[0].prefix, 8);
    cr_assert_eq(c->mynetworks[1].family, AF_INET6);
    cr_assert_eq(c->mynetworks[1].prefix, 128);
    cr_assert_eq(c->nrelay_domains, 0);
    cr_assert_eq(c->max_message_size, 52428800);
    cr_assert_eq(c->max_recipients, 1000);
    cr_assert_eq(c->max_errors, 10);
    cr_assert_eq(c->max_line_length, 998);
    cr_assert_eq(c->max_connections, 4096);
    cr_assert_eq(c->max_conn_per_ip, 50);
    cr_assert_eq(c->nconn_limit_exceptions, 2);
    cr_assert_eq(memcmp(c->conn_limit_exceptions, c->mynetworks, 2 * sizeof(struct cfg_cidr)), 0);
    cr_assert_eq(c->idle_timeout_ms, 300000);
    cr_assert_eq(c->min_data_rate, 128);
    cr_assert_eq(c->data_rate_grace_ms, 30000);
    cr_assert_eq(c->buffer_count, 512);
    cr_assert_eq(c->buffer_size, 16384);
    cr_assert_eq(c->segment_size, 64ull << 20);
    cr_assert_str_eq(c->log_level, "info");
    cr_assert_not_null(c->tree);
    cr_assert_eq(cfg_node_count(c->tree), 0);
    cfg_destroy(c);
    cfg_destroy(NULL);
}

Test(cfg_table, example_1)
{
    struct cfg *c = load_ok("listen = [\"127.0.0.1:2525\"];\n"
                            "spool_dir = \"./var/spool\";\n"
                            "workers = 2;\n"
                            "hostname = \"mx.example.test\";\n"
                            "mynetworks = [\"127.0.0.0/8\", \"::1/128\"];\n"
                            "relay_domains = [\"example.test\"];\n"
                            "max_message_size = 52428800;\n"
                            "max_recipients = 1000;\n",
                            NULL, 0);
    cr_assert_eq(c->workers, 2);
    cr_assert_str_eq(c->hostname, "mx.example.test");
    cr_assert_eq(c->nrelay_domains, 1);
    cr_assert_str_eq(c->relay_domains[0], "example.test");
    cr_assert(cfg_domain_match(c->relay_domains, c->nrelay_domains, "Example.TEST"));
    cr_assert_eq(cfg_node_count(c->tree), 8);
    cr_assert_eq(c->nconn_limit_exceptions, 2);
    cfg_destroy(c);
}

Test(cfg_table, binding_blocks_are_left_to_the_sinks)
{
    /* `binding` is a reserved key: cfg_load keeps it in the tree for
     * sinks/binding.c; a misspelt key next to it is still an error */
    struct cfg *c = load_ok("binding \"no-spam\" {\n"
                            "  event = \"mail\";\n"
                            "  properties { action = \"reject\"; text = \"sender refused\"; }\n"
                            "}\n",
                            NULL, 0);
    const struct cfg_node *b = cfg_node_get(c->tree, "binding");
    cr_assert_not_null(b);
    cr_assert_str_eq(cfg_node_label(b), "no-spam");
    cfg_destroy(c);
    load_fails("bindings \"x\" { }\n", "1: bindings: unknown setting");
}

/* JSON writes binding "tag" { } as "binding": {"tag": {...}}: the same
 * labelled block once loaded, for every named block the table has. */
Test(cfg_table, json_named_blocks)
{
    struct cfg *c = load_ok("{\"binding\": {\"tag\": {\"event\": \"mail\", \"sink\": "
                            "\"builtin:noop\"},\n"
                            "             \"two\": {\"event\": \"rcpt\"}},\n"
                            " \"max_errors\": 3, \"tls\": {\"cert\": {\"x\": 1}}}\n",
                            NULL, 0);
    cr_assert_eq(cfg_node_count(c->tree), 4);
    const struct cfg_node *b = cfg_node_at(c->tree, 0);
    cr_assert_str_eq(cfg_node_key(b), "binding");
    cr_assert_str_eq(cfg_node_label(b), "tag");
    cr_assert_str_eq(cfg_node_str(cfg_node_get(b, "sink")), "builtin:noop");
    b = cfg_node_at(c->tree, 1);
    cr_assert_str_eq(cfg_node_label(b), "two");
    cr_assert_eq(cfg_node_line(b), 2);
    cr_assert_eq(c->max_errors, 3);
    /* tls is not a named block: its inner blocks stay where they are */
    cr_assert_null(cfg_node_label(cfg_node_get(c->tree, "tls")));
    cr_assert_not_null(cfg_node_get(cfg_node_get(c->tree, "tls"), "cert"));
    cfg_destroy(c);

    /* UCL may say it the same way; an empty one is no binding */
    c = load_ok("binding { tag { event = mail; } }\nbinding { }\n", NULL, 0);
    cr_assert_eq(cfg_node_count(c->tree), 1);
    cr_assert_str_eq(cfg_node_label(cfg_node_at(c->tree, 0)), "tag");
    cfg_destroy(c);
}

Test(cfg_table, json_with_quoted_units)
{
    struct cfg *c = load_ok("{\n"
                            "  \"listen\": [\"127.0.0.1:0\", \"[::1]:2600\"],\n"
                            "  \"segment_size\": \"128mb\",\n"
                            "  \"idle_timeout\": \"2min\",\n"
                            "  \"data_rate_grace\": \"1500ms\",\n"
                            "  \"max_recipients\": \"200\",\n"
                            "  \"log_level\": \"DEBUG\"\n"
                            "}\n",
                            NULL, 0);
    cr_assert_eq(c->nlisten, 2);
    cr_assert_str_eq(c->listen[0].text, "127.0.0.1:0");
    cr_assert_str_eq(c->listen[1].text, "[::1]:2600");
    cr_assert_eq(c->listen[1].ss.ss_family, AF_INET6);
    cr_assert_eq(c->listen[1].len, sizeof(struct sockaddr_in6));
    cr_assert_eq(c->segment_size, 128ull << 20);
    cr_assert_eq(c->idle_timeout_ms, 120000);
    cr_assert_eq(c->data_rate_grace_ms, 1500);
    cr_assert_eq(c->max_recipients, 200);
    cr_assert_str_eq(c->log_level, "debug");
    cfg_destroy(c);
}

Test(cfg_table, durations_and_sizes)
{
    struct cfg *c = load_ok("idle_timeout = 300\n"    /* plain number: seconds */
                            "data_rate_grace = 1.5\n" /* fractional seconds */
                            "max_message_size = 10mb\n"
                            "min_data_rate = 1k\n"
                            "buffer_size = 64kb\n",
                            NULL, 0);
    cr_assert_eq(c->idle_timeout_ms, 300000);
    cr_assert_eq(c->data_rate_grace_ms, 1500);
    cr_assert_eq(c->max_message_size, 10u << 20);
    cr_assert_eq(c->min_data_rate, 1000);
    cr_assert_eq(c->buffer_size, 65536);
    cfg_destroy(c);

    c = load_ok("idle_timeout = 100ms; data_rate_grace = 0; min_data_rate = 0\n", NULL, 0);
    cr_assert_eq(c->idle_timeout_ms, 100);
    cr_assert_eq(c->data_rate_grace_ms, 0);
    cr_assert_eq(c->min_data_rate, 0);
    cfg_destroy(c);

    load_fails("idle_timeout = 10k\n", "1: idle_timeout: expected a duration, got a size");
    load_fails("buffer_size = 2s\n", "1: buffer_size: expected an integer, got a duration");
    load_fails("segment_size = 1.5\n", "1: segment_size: expected a size, got 1.5");
    load_fails("idle_timeout = forever\n", "1: idle_timeout: expected a duration, got \"forever\"");
}

Test(cfg_table, bounds)
{
    load_fails("\n\nmax_recipients = 5;\n", "3: max_recipients: 5 is below the minimum 100");
    load_fails("max_recipients = 100001\n",
               "1: max_recipients: 100001 is above the maximum 100000");
    load_fails("workers = 65\n", "1: workers: 65 is above the maximum 64");
    load_fails("workers = -1\n", "1: workers: -1 is below the minimum 0");
    load_fails("max_errors = 0\n", "1: max_errors: 0 is below the minimum 1");
    load_fails("max_line_length = 77\n", "1: max_line_length: 77 is below the minimum 78");
    load_fails("max_connections = 0\n", "1: max_connections: 0 is below the minimum 1");
    load_fails("idle_timeout = 50ms\n", "1: idle_timeout: 50ms is below the minimum 100ms");
    load_fails("idle_timeout = 2d\n", "1: idle_timeout: 172800s is above the maximum 86400s");
    load_fails("buffer_count = 1000\n", "1: buffer_count: 1000 is not a power of two");
    load_fails("buffer_count = 32\n", "1: buffer_count: 32 is below the minimum 64");
    load_fails("buffer_size = 2mb\n", "1: buffer_size: 2097152 is above the maximum 1048576");
    load_fails("segment_size = 1kb\n", "1: segment_size: 1024 is below the minimum 65536");
    load_fails("max_message_size = 2000gb\n",
               "1: max_message_size: 2147483648000 is above the maximum 1099511627776");

    struct cfg *c = load_ok("max_conn_per_ip = 0; buffer_count = 32768; workers = 64\n", NULL, 0);
    cr_assert_eq(c->max_conn_per_ip, 0);
    cr_assert_eq(c->buffer_count, 32768);
    cr_assert_eq(c->workers, 64);
    cfg_destroy(c);
}

Test(cfg_table, types)
{
    load_fails("workers = abc\n", "1: workers: expected an integer, got \"abc\"");
    load_fails("workers = [1]\n", "1: workers: expected an integer, got a list");
    load_fails("workers = true\n", "1: workers: expected an integer, got a boolean");
    load_fails("workers = 2.5\n", "1: workers: expected an integer, got 2.5");
    load_fails("spool_dir = []\n", "1: spool_dir: expected a string, got a list");
    load_fails("spool_dir = \"\"\n", "1: spool_dir: must not be empty");
    load_fails("spool_dir = \"a\\nb\"\n", "1: spool_dir: contains a control character");
    load_fails("hostname = \"mx example\"\n",
               "1: hostname: \"mx example\" is not a valid host name");
    load_fails("hostname = \"-mx.example\"\n",
               "1: hostname: \"-mx.example\" is not a valid host name");
    load_fails("log_level = loud\n", "1: log_level: expected one of debug, info, notice, warn, "
                                     "warning, err, error, crit, alert, emerg");
    load_fails("listen = []\n", "1: listen: needs at least 1 entry");
    load_fails("listen = [\n  \"127.0.0.1:25\",\n  \"localhost:25\"\n]\n",
               "3: listen: \"localhost:25\" is not an address:port (127.0.0.1:25, [::1]:25)");
    load_fails("listen = [{}]\n", "1: listen: expected a string, got a block");
    load_fails("mynetworks = [\"10.0.0.0/33\"]\n",
               "1: mynetworks: \"10.0.0.0/33\" is not a network (10.0.0.0/8, ::1/128)");
    load_fails("relay_domains = [\"example.test\", \"bad..test\"]\n",
               "1: relay_domains: \"bad..test\" is not a domain (example.test or .example.test)");

    /* Bare words are strings; numbers-looking words still work as strings. */
    struct cfg *c = load_ok("spool_dir = /var/spool/sluice; hostname = mx1.example.test\n"
                            "relay_domains = .example.test\n",
                            NULL, 0);
    cr_assert_str_eq(c->spool_dir, "/var/spool/sluice");
    cr_assert_str_eq(c->hostname, "mx1.example.test");
    cr_assert_eq(c->nrelay_domains, 1);
    cr_assert_str_eq(c->relay_domains[0], ".example.test");
    cfg_destroy(c);
}

Test(cfg_table, unknown_and_repeated_keys)
{
    load_fails("workers = 2\nmax_recipients = 200\nbogus = 1\n", "3: bogus: unknown setting");
    load_fails("workers = 2\n\nworkers = 3\n", "3: workers: already set at line 1");
    load_fails("listen = \"127.0.0.1:25\n", "1: unterminated string");
}

Test(cfg_table, single_string_is_a_list)
{
    struct cfg *c = load_ok("listen = 127.0.0.1:2600\n"
                            "mynetworks = \"10.0.0.0/8\"\n",
                            NULL, 0);
    cr_assert_eq(c->nlisten, 1);
    cr_assert_str_eq(c->listen[0].text, "127.0.0.1:2600");
    cr_assert_eq(c->nmynetworks, 1);
    /* conn_limit_exceptions follows mynetworks as resolved */
    cr_assert_eq(c->nconn_limit_exceptions, 1);
    struct sockaddr_in a = v4("10.9.8.7");
    cr_assert(cfg_cidr_match(c->conn_limit_exceptions, 1, (struct sockaddr *)&a));
    cfg_destroy(c);
}

Test(cfg_table, conn_limit_exceptions)
{
    struct cfg *c = load_ok("conn_limit_exceptions = []\n", NULL, 0);
    cr_assert_eq(c->nconn_limit_exceptions, 0);
    cr_assert_eq(c->nmynetworks, 2);
    cfg_destroy(c);
    c = load_ok("conn_limit_exceptions = [\"192.0.2.0/24\"]\nmynetworks = []\n", NULL, 0);
    cr_assert_eq(c->nconn_limit_exceptions, 1);
    cr_assert_eq(c->nmynetworks, 0);
    cfg_destroy(c);
    c = load_ok("mynetworks = []\n", NULL, 0);
    cr_assert_eq(c->nconn_limit_exceptions, 0);
    cfg_destroy(c);
}

Test(cfg_table, overrides)
{
    const char *ov1[] = {"listen=127.0.0.1:2600", "max_recipients=200"};
    struct cfg *c = cfg_load(NULL, ov1, 2, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nlisten, 1);
    cr_assert_str_eq(c->listen[0].text, "127.0.0.1:2600");
    cr_assert_eq(c->max_recipients, 200);
    cfg_destroy(c);

    const char *ov2[] = {"listen=[\"127.0.0.1:2600\",\"[::1]:2600\"]"};
    c = cfg_load(NULL, ov2, 1, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(c->nlisten, 2);
    cr_assert_str_eq(c->listen[1].text, "[::1]:2600");
    cfg_destroy(c);

    /* precedence over the file; the last -o of a key wins */
    const char *ov3[] = {"workers=3", "hostname = \"o.example.test\"", "workers=4",
                         "idle_timeout=1min"};
    c = load_ok("workers = 2\nhostname = f.example.test\nmax_errors = 7\n", ov3, 4);
    cr_assert_eq(c->workers, 4);
    cr_assert_str_eq(c->hostname, "o.example.test");
    cr_assert_eq(c->max_errors, 7);
    cr_assert_eq(c->idle_timeout_ms, 60000);
    cr_assert_eq(cfg_node_int(cfg_node_get(c->tree, "workers")), 2); /* the file as written */
    cfg_destroy(c);

    /* an override replaces even a file value that would not pass */
    const char *ov4[] = {"max_recipients=300"};
    c = load_ok("max_recipients = 5\n", ov4, 1);
    cr_assert_eq(c->max_recipients, 300);
    cfg_destroy(c);
}

/* One table of level names (core/base/log.c): syslog's spellings too. */
Test(cfg_table, log_level_spellings)
{
    struct cfg *c = load_ok("log_level = Notice\n", NULL, 0);
    cr_assert_str_eq(c->log_level, "notice");
    cfg_destroy(c);
    const char *ov[] = {"log_level=warning"};
    c = load_ok("log_level = debug\n", ov, 1);
    cr_assert_str_eq(c->log_level, "warning");
    cfg_destroy(c);
    override_fails(NULL, "log_level=loud",
                   "-o log_level: expected one of debug, info, notice, warn, warning, err, "
                   "error, crit, alert, emerg");
}

Test(cfg_table, override_errors)
{
    override_fails(NULL, "max_recipients=5", "-o max_recipients: 5 is below the minimum 100");
    override_fails(NULL, "bogus=1", "-o bogus: unknown setting");
    override_fails(NULL, "workers", "-o workers: expected key=value");
    override_fails(NULL, "=1", "-o =1: expected key=value");
    override_fails(NULL, "listen=\"127.0.0.1:25", "-o listen: unterminated string");
    override_fails(NULL, "listen=localhost:25",
                   "-o listen: \"localhost:25\" is not an address:port (127.0.0.1:25, [::1]:25)");
    override_fails(NULL, "workers=2; max_errors=3",
                   "-o workers: expected key=value with one value");
    override_fails(NULL, "workers=", "-o workers: workers: missing value");
    override_fails("workers = 2\n", "workers=x", "-o workers: expected an integer, got \"x\"");
}

Test(cfg_table, file_errors)
{
    struct cfg *c = cfg_load("/nonexistent/sluice.conf", NULL, 0, err, sizeof(err));
    cr_assert_null(c);
    cr_assert_str_eq(err, "/nonexistent/sluice.conf: No such file or directory");

    strcpy(path, "/tmp/sluice-cfg-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    char *big = malloc(1 << 20);
    memset(big, '#', 1 << 20);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(write(fd, big, 1 << 20), 1 << 20);
    close(fd);
    free(big);
    c = cfg_load(path, NULL, 0, err, sizeof(err));
    char want[128];
    snprintf(want, sizeof(want), "%s: larger than 4194304 bytes", path);
    unlink(path);
    cr_assert_null(c);
    cr_assert_str_eq(err, want);

    /* no error buffer: still NULL, no crash */
    cr_assert_null(cfg_load("/nonexistent/sluice.conf", NULL, 0, NULL, 0));
}
