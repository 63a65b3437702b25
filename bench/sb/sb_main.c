/*
 * NAME
 *	sluice-bench - SMTP load generator, and a sink measured on the engine
 * SYNOPSIS
 *	sluice-bench [OPTIONS] HOST:PORT
 *	sluice-bench sink SINK [--event E] [--prop k=v]... [--workers N]
 *	             [--sessions N] [--size S] [--calls N] [--daemon] [--json]
 * DESCRIPTION
 *	Without a sub-command: SMTP load on io_uring against HOST:PORT
 *	(sb_load.c), then one report: messages per second, MB/s, latency
 *	percentiles from MAIL and from connect to the final reply, replies by
 *	code.  Options (sluice-bench --help lists them):
 *	-s, --sessions N	parallel sessions [32]
 *	-m, --messages N	messages in all [10000 unless --duration]
 *	-d, --duration S	run for S seconds (no new message after)
 *	-l, --size SPEC		body bytes: 4096, 4k, 100k, 1M, or @FILE with
 *				lines "SIZE [WEIGHT]" [4096]
 *	-r, --rcpts N		recipients per message [1]
 *	--no-pipelining		one command per round trip
 *	--reuse / --no-reuse	many messages per connection, or one [reuse]
 *	--starttls, --tls	STARTTLS after EHLO, or implicit TLS (RFC 8314)
 *	--auth USER:PASS	AUTH PLAIN after EHLO (and TLS)
 *	--rate R		open loop: R messages/s offered (latency counted
 *				from when each message was due)
 *	-t, --threads N		rings/threads [1]
 *	--helo NAME, --from ADDR, --rcpt-domain DOMAIN
 *	--timeout S		fail when nothing completes for S seconds [30]
 *	--progress, --no-progress  a progress line on stderr [when a tty]
 *	--json			one JSON object on stdout instead of text
 * DIAGNOSTICS
 *	Exit 0: the run completed (refused messages are reported, not
 *	errors); 1: it could not run or stalled; 2: usage.
 */
#include "bench/sb/sb.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sb_load_defaults(struct sb_load_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->sessions = 32;
    o->threads = 1;
    o->rcpts = 1;
    o->pipelining = true;
    o->reuse = true;
    o->helo = "client.bench.test";
    o->from = "bench@client.bench.test";
    o->rcpt_domain = "dest.example.test";
    o->nsizes = 1;
    o->sizes[0] = 4096;
    o->weights[0] = 1;
    o->timeout = 30;
    o->progress = isatty(2);
}

uint64_t sb_parse_bytes(const char *s, bool *ok)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    *ok = end != s && errno == 0 && s[0] != '-';
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    if (*end != 0)
        *ok = false;
    return v * mul;
}

int sb_parse_sizes(const char *s, struct sb_load_opts *o, char *err, size_t errlen)
{
    bool ok;
    if (s[0] != '@') {
        uint64_t v = sb_parse_bytes(s, &ok);
        if (!ok || v > (1u << 30)) {
            snprintf(err, errlen, "bad size '%s' (bytes, k or M; at most 1G)", s);
            return -1;
        }
        o->nsizes = 1;
        o->sizes[0] = v;
        o->weights[0] = 1;
        return 0;
    }
    FILE *f = fopen(s + 1, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", s + 1, strerror(errno));
        return -1;
    }
    char line[256];
    unsigned n = 0, lineno = 0;
    double total = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '#' || *p == 0)
            continue;
        char sz[64] = "";
        double w = 1;
        int k = sscanf(p, "%63s %lf", sz, &w);
        uint64_t v = sb_parse_bytes(sz, &ok);
        if (k < 1 || !ok || v > (1u << 30) || w <= 0 || n == SB_MAX_SIZES) {
            snprintf(err, errlen, "%s:%u: want \"SIZE [WEIGHT]\" (weight > 0, at most %d lines)",
                     s + 1, lineno, SB_MAX_SIZES);
            fclose(f);
            return -1;
        }
        o->sizes[n] = v;
        total += w;
        o->weights[n++] = total;
    }
    fclose(f);
    if (n == 0) {
        snprintf(err, errlen, "%s: no sizes in it", s + 1);
        return -1;
    }
    for (unsigned i = 0; i < n; i++)
        o->weights[i] /= total;
    o->weights[n - 1] = 1;
    o->nsizes = n;
    return 0;
}

int sb_parse_target(const char *s, struct sb_load_opts *o, char *err, size_t errlen)
{
    char host[256] = "127.0.0.1";
    const char *port = s;
    const char *colon = strrchr(s, ':');
    if (colon != NULL) {
        size_t hl = (size_t)(colon - s);
        const char *h = s;
        if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']')
            h++, hl -= 2;
        if (hl == 0 || hl >= sizeof(host)) {
            snprintf(err, errlen, "bad target '%s' (HOST:PORT)", s);
            return -1;
        }
        memcpy(host, h, hl);
        host[hl] = 0;
        port = colon + 1;
    }
    if (*port == 0 || strspn(port, "0123456789") != strlen(port) || atoi(port) < 1 ||
        atoi(port) > 65535) {
        snprintf(err, errlen, "bad target '%s' (HOST:PORT, PORT 1..65535)", s);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "target '%s': %s", s, gai_strerror(rc));
        return -1;
    }
    memcpy(&o->addr, ai->ai_addr, ai->ai_addrlen);
    o->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    o->target = s;
    return 0;
}

void sb_load_usage(FILE *f)
{
    fputs("usage: sluice-bench [OPTIONS] HOST:PORT\n"
          "       sluice-bench sink SINK [--event E] [--prop k=v]... [--workers N]\n"
          "                    [--sessions N] [--size S] [--calls N] [--daemon] [--json]\n"
          "load options:\n"
          "  -s, --sessions N      parallel SMTP sessions [32]\n"
          "  -m, --messages N      messages in all [10000 unless --duration]\n"
          "  -d, --duration S      seconds to run (no new message after)\n"
          "  -l, --size SPEC       body bytes: 4096, 4k, 100k, 1M, or @FILE of\n"
          "                        \"SIZE [WEIGHT]\" lines [4096]\n"
          "  -r, --rcpts N         recipients per message [1]\n"
          "      --no-pipelining   one command per round trip\n"
          "      --reuse, --no-reuse  many messages per connection or one [reuse]\n"
          "      --starttls, --tls STARTTLS after EHLO, or implicit TLS\n"
          "      --auth USER:PASS  AUTH PLAIN\n"
          "      --rate R          open loop at R msg/s (coordinated-omission corrected)\n"
          "  -t, --threads N       load threads, one ring each [1]\n"
          "      --helo NAME, --from ADDR, --rcpt-domain DOMAIN\n"
          "      --timeout S       fail when nothing completes for S seconds [30]\n"
          "      --progress, --no-progress  progress line on stderr [if a tty]\n"
          "      --json            one JSON object on stdout\n",
          f);
}

static bool num_arg(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != 0 || errno != 0 || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses load options from argv[1..]; *used: index of the first argument
 * not consumed (the target).  0, or -1 with err. */
int sb_load_parse(int argc, char **argv, int *used, struct sb_load_opts *o, bool *json, char *err,
                  size_t errlen)
{
    int i;
    double v;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL                                                                                   \
    do {                                                                                           \
        if (val == NULL) {                                                                         \
            snprintf(err, errlen, "%s needs a value", a);                                          \
            return -1;                                                                             \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
#define NUM(lo, hi)                                                                                \
    do {                                                                                           \
        NEED_VAL;                                                                                  \
        if (!num_arg(val, lo, hi, &v)) {                                                           \
            snprintf(err, errlen, "%s: '%s' is not a number in %g..%g", a, val, (double)(lo),      \
                     (double)(hi));                                                                \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)
        if (!strcmp(a, "-s") || !strcmp(a, "--sessions")) {
            NUM(1, 100000);
            o->sessions = (unsigned)v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--messages")) {
            NUM(1, 1e15);
            o->messages = (uint64_t)v;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--duration")) {
            NUM(0.001, 1e7);
            o->duration = v;
        } else if (!strcmp(a, "-l") || !strcmp(a, "--size")) {
            NEED_VAL;
            if (sb_parse_sizes(val, o, err, errlen) < 0)
                return -1;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--rcpts")) {
            NUM(1, 50);
            o->rcpts = (unsigned)v;
        } else if (!strcmp(a, "--no-pipelining")) {
            o->pipelining = false;
        } else if (!strcmp(a, "--pipelining")) {
            o->pipelining = true;
        } else if (!strcmp(a, "--reuse")) {
            o->reuse = true;
        } else if (!strcmp(a, "--no-reuse")) {
            o->reuse = false;
        } else if (!strcmp(a, "--starttls")) {
            o->tls = SB_TLS_STARTTLS;
        } else if (!strcmp(a, "--tls")) {
            o->tls = SB_TLS_IMPLICIT;
        } else if (!strcmp(a, "--auth")) {
            NEED_VAL;
            const char *c = strchr(val, ':');
            if (c == NULL) {
                snprintf(err, errlen, "--auth wants USER:PASS");
                return -1;
            }
            o->auth_user = strndup(val, (size_t)(c - val));
            o->auth_pass = c + 1;
        } else if (!strcmp(a, "--rate")) {
            NUM(0.001, 1e9);
            o->rate = v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NUM(1, 256);
            o->threads = (unsigned)v;
        } else if (!strcmp(a, "--helo")) {
            NEED_VAL;
            o->helo = val;
        } else if (!strcmp(a, "--from")) {
            NEED_VAL;
            o->from = val;
        } else if (!strcmp(a, "--rcpt-domain")) {
            NEED_VAL;
            o->rcpt_domain = val;
        } else if (!strcmp(a, "--timeout")) {
            NUM(0.1, 86400);
            o->timeout = v;
        } else if (!strcmp(a, "--progress")) {
            o->progress = true;
        } else if (!strcmp(a, "--no-progress")) {
            o->progress = false;
        } else if (!strcmp(a, "--json")) {
            *json = true;
        } else if (a[0] == '-' && a[1] != 0) {
            snprintf(err, errlen, "unknown option %s", a);
            return -1;
        } else {
            break;
        }
#undef NUM
#undef NEED_VAL
    }
    *used = i;
    if (o->messages == 0 && o->duration == 0)
        o->messages = 10000;
    return 0;
}

void sb_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s != NULL && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static const double sb_q[] = {0.5, 0.9, 0.99, 0.999};
static const char *const sb_qname[] = {"p50", "p90", "p99", "p999"};

static void hist_text(FILE *f, const char *what, const struct sb_hist *h)
{
    if (h->count == 0) {
        fprintf(f, "  %-22s no samples\n", what);
        return;
    }
    fprintf(f, "  %-22s", what);
    for (unsigned i = 0; i < 4; i++)
        fprintf(f, " %s %8.3f", sb_qname[i], (double)sb_hist_quantile(h, sb_q[i]) / 1000);
    fprintf(f, "  max %8.3f ms  (%llu)\n", (double)h->max / 1000, (unsigned long long)h->count);
}

static const char *mode_text(const struct sb_load_opts *o)
{
    static char buf[160];
    snprintf(buf, sizeof(buf), "%s, %s, %s%s%s", o->rate > 0 ? "open loop" : "closed loop",
             o->reuse ? "reuse" : "no reuse", o->pipelining ? "pipelining" : "no pipelining",
             o->tls == SB_TLS_STARTTLS   ? ", STARTTLS"
             : o->tls == SB_TLS_IMPLICIT ? ", implicit TLS"
                                         : "",
             o->auth_user ? ", AUTH PLAIN" : "");
    return buf;
}

void sb_report_text(FILE *f, const struct sb_load_opts *o, const struct sb_load_result *r)
{
    double s = r->seconds > 0 ? r->seconds : 1e-9;
    fprintf(f, "sluice-bench %s: %u sessions, %s", o->target, o->sessions, mode_text(o));
    if (o->rate > 0)
        fprintf(f, ", offered %.0f msg/s", o->rate);
    fprintf(f, "\n");
    fprintf(f, "  messages   %llu accepted, %llu refused, %llu failed in %.3f s\n",
            (unsigned long long)r->accepted, (unsigned long long)(r->sent - r->accepted),
            (unsigned long long)r->failed, r->seconds);
    fprintf(f, "  throughput %.1f msg/s  %.2f MB/s\n", (double)r->accepted / s,
            (double)r->bytes / s / 1e6);
    fprintf(f, "  connections %llu (%llu failed), protocol errors %llu\n",
            (unsigned long long)r->connections, (unsigned long long)r->conn_failed,
            (unsigned long long)r->protocol_errors);
    fprintf(f, "  latency (ms)\n");
    hist_text(f, o->rate > 0 ? "MAIL (from due)" : "MAIL -> final reply", &r->lat_mail);
    if (o->rate > 0)
        hist_text(f, "MAIL (service)", &r->lat_service);
    hist_text(f, "connect -> final reply", &r->lat_connect);
    fprintf(f, "  replies   ");
    for (unsigned k = 0; k < SB_CODES; k++)
        if (r->replies[k])
            fprintf(f, " %u:%llu", k, (unsigned long long)r->replies[k]);
    fprintf(f, "\n");
}

static void hist_json(FILE *f, const char *name, const struct sb_hist *h)
{
    fprintf(f, "\"%s\":{\"count\":%llu", name, (unsigned long long)h->count);
    for (unsigned i = 0; i < 4; i++)
        fprintf(f, ",\"%s_us\":%llu", sb_qname[i],
                (unsigned long long)sb_hist_quantile(h, sb_q[i]));
    fprintf(f, ",\"mean_us\":%.1f,\"max_us\":%llu}", sb_hist_mean(h), (unsigned long long)h->max);
}

void sb_report_json(FILE *f, const struct sb_load_opts *o, const struct sb_load_result *r)
{
    double s = r->seconds > 0 ? r->seconds : 1e-9;
    fprintf(f, "{\"target\":");
    sb_json_str(f, o->target);
    fprintf(f,
            ",\"sessions\":%u,\"threads\":%u,\"reuse\":%s,\"pipelining\":%s,\"tls\":\"%s\","
            "\"rcpts\":%u,\"offered_rate\":%.3f,\"size_first\":%llu,\"sizes\":%u,",
            o->sessions, o->threads, o->reuse ? "true" : "false", o->pipelining ? "true" : "false",
            o->tls == SB_TLS_STARTTLS   ? "starttls"
            : o->tls == SB_TLS_IMPLICIT ? "implicit"
                                        : "none",
            o->rcpts, o->rate, (unsigned long long)o->sizes[0], o->nsizes);
    fprintf(f,
            "\"sent\":%llu,\"accepted\":%llu,\"refused\":%llu,\"failed\":%llu,\"bytes\":%llu,"
            "\"connections\":%llu,\"conn_failed\":%llu,\"protocol_errors\":%llu,"
            "\"seconds\":%.6f,\"msg_per_s\":%.3f,\"mb_per_s\":%.4f,",
            (unsigned long long)r->sent, (unsigned long long)r->accepted,
            (unsigned long long)(r->sent - r->accepted), (unsigned long long)r->failed,
            (unsigned long long)r->bytes, (unsigned long long)r->connections,
            (unsigned long long)r->conn_failed, (unsigned long long)r->protocol_errors, r->seconds,
            (double)r->accepted / s, (double)r->bytes / s / 1e6);
    hist_json(f, "latency_mail", &r->lat_mail);
    fputc(',', f);
    hist_json(f, "latency_connect", &r->lat_connect);
    fputc(',', f);
    hist_json(f, "latency_service", &r->lat_service);
    fprintf(f, ",\"replies\":{");
    bool first = true;
    for (unsigned k = 0; k < SB_CODES; k++)
        if (r->replies[k]) {
            fprintf(f, "%s\"%u\":%llu", first ? "" : ",", k, (unsigned long long)r->replies[k]);
            first = false;
        }
    fprintf(f, "},\"error\":");
    sb_json_str(f, r->error[0] ? r->error : NULL);
    fprintf(f, "}\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "sink") == 0)
        return sb_sink_main(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        sb_load_usage(stdout);
        return 0;
    }
    struct sb_load_opts o;
    sb_load_defaults(&o);
    bool json = false;
    int used = 0;
    char err[300];
    if (sb_load_parse(argc, argv, &used, &o, &json, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice-bench: %s\n", err);
        return 2;
    }
    if (used != argc - 1) {
        sb_load_usage(stderr);
        return 2;
    }
    if (sb_parse_target(argv[used], &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice-bench: %s\n", err);
        return 2;
    }
    struct sb_load_result *r = malloc(sizeof(*r));
    if (r == NULL)
        return 1;
    int rc = sb_load_run(&o, r);
    if (json)
        sb_report_json(stdout, &o, r);
    else
        sb_report_text(stdout, &o, r);
    if (rc < 0)
        fprintf(stderr, "sluice-bench: %s\n", r->error);
    free(r);
    return rc < 0 ? 1 : 0;
}
