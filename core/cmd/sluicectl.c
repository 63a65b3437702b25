/*
 * NAME
 *	sluicectl - control a running sluiced over its control socket
 * SYNOPSIS
 *	sluicectl [-c FILE | -s SOCKET] [-t SECONDS] VERB [ARGS...] [--json]
 *	sluicectl [VERB...] --help
 * DESCRIPTION
 *	Sends one request to the daemon's control socket (docs/sluicectl.md)
 *	and prints the answer: a table or a few lines, or the raw JSON result
 *	with --json.  The socket is -s SOCKET, else control_socket of the
 *	configuration file named with -c, else the default ./var/sluice.sock.
 *	The verb table (sctl_verbs) holds each verb's argument counts and its
 *	help; the printers are in sluicectl_fmt.c.
 * DIAGNOSTICS
 *	Every error is one line on stderr starting with "sluicectl: ".  Exit 0
 *	on success, 1 when the daemon refused or could not be reached, 2 on a
 *	usage error.
 */
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/base/clock.h"
#include "core/cfg/cfg.h"
#include "core/ops/ctl.h"
#include "core/cmd/sluicectl_int.h"

#define SCTL_MAX_REPLY (256u << 20)

/* clang-format off */
static const struct sctl_verb sctl_verbs[] = {
    {"status", "", 0, 0, true, sctl_print_status,
     "uptime, pid, version, workers, queue sizes and spool usage"},
    {"queue list", "", 0, 0, true, sctl_print_list,
     "every queued message: id, size, arrival, sender, then its recipients with their\n"
     "state and last error (like postqueue -p; * = being delivered, ! = held,\n"
     "# = quarantined)"},
    {"queue show", "ID", 1, 1, true, sctl_print_show,
     "one message: envelope, per-recipient state, next attempt, last error, headers"},
    {"queue flush", "[ID|DOMAIN]", 0, 1, true, sctl_print_count,
     "try deferred messages now: all of them, one, or those with a pending\n"
     "recipient in DOMAIN (backed-off destinations get another chance too)"},
    {"queue delete", "ID|--all", 1, 1, true, sctl_print_count,
     "remove a message (or every message not being delivered) without a bounce"},
    {"queue hold", "ID", 1, 1, true, sctl_print_count,
     "keep a message in the queue and do not try it (survives a restart)"},
    {"queue release", "ID", 1, 1, true, sctl_print_count,
     "undo hold: the message is tried now"},
    {"queue bounce", "ID", 1, 1, true, sctl_print_count,
     "fail every pending recipient now (5.0.0); a delivery status notification\n"
     "goes to the sender"},
    {"bindings list", "", 0, 0, true, sctl_print_bindings,
     "the event-sink chain of every event, and per-binding statistics"},
    {"bindings enable", "NAME", 1, 1, true, sctl_print_count,
     "enable a binding; written back to the configuration file (-c of sluiced)"},
    {"bindings disable", "NAME", 1, 1, true, sctl_print_count,
     "disable a binding; written back to the configuration file"},
    {"bindings add", "NAME KEY=VALUE... | 'binding \"NAME\" { ... }'", 1, CTL_MAX_ARGS, true,
     sctl_print_count,
     "add a binding: KEY is event, sink, priority, rule, enabled, offload,\n"
     "deadline or on_deadline, prop.KEY sets a property (sluicectl bindings add\n"
     "tag event=eod sink=builtin:header prop.name=X-Tag prop.value=1); or give\n"
     "the whole block as one argument.  Written back to the configuration file"},
    {"bindings remove", "NAME", 1, 1, true, sctl_print_count,
     "remove a binding; written back to the configuration file"},
    {"bindings setprop", "NAME KEY [VALUE]", 2, 3, true, sctl_print_count,
     "set a property of a binding, or delete it when no VALUE is given (a new\n"
     "instance replaces the old one; a sink that refuses the value, e.g. tries=abc\n"
     "where it wants a number, leaves the binding as it was); written back to the\n"
     "configuration file"},
    {"reload", "", 0, 0, true, sctl_print_count,
     "reload the configuration as SIGHUP does; a rejected configuration is\n"
     "reported with the reason (the old one stays)"},
    {"stop", "[--drain]", 0, 1, true, sctl_print_count,
     "stop the daemon as SIGTERM does; --drain lets sessions finish first"},
};
/* clang-format on */
#define SCTL_NVERBS (sizeof(sctl_verbs) / sizeof(sctl_verbs[0]))

static void sctl_usage(FILE *f)
{
    fprintf(f, "usage: sluicectl [-c FILE | -s SOCKET] [-t SECONDS] VERB [ARGS...] [--json]\n"
               "  -c FILE     the daemon's configuration: its control_socket is used\n"
               "  -s SOCKET   the control socket (default ./var/sluice.sock)\n"
               "  -t SECONDS  how long to wait for the answer (default 60)\n"
               "  --json      print the daemon's JSON result instead of text\n"
               "verbs:\n");
    for (size_t i = 0; i < SCTL_NVERBS; i++)
        fprintf(f, "  %s %s\n", sctl_verbs[i].name, sctl_verbs[i].usage);
    fprintf(f, "`sluicectl VERB --help` describes one verb; see docs/sluicectl.md.\n");
}

static void sctl_verb_help(const struct sctl_verb *v)
{
    printf("usage: sluicectl [-c FILE | -s SOCKET] %s%s%s%s\n%s\n", v->name, v->usage[0] ? " " : "",
           v->usage, v->json ? " [--json]" : "", v->help);
}

static bool sctl_in_group(const struct sctl_verb *v, const char *group)
{
    size_t n = strlen(group);
    return strncmp(v->name, group, n) == 0 && v->name[n] == ' ';
}

/* "queue", "bindings": the first word of verbs with subverbs. */
static bool sctl_is_group(const char *group)
{
    for (size_t i = 0; i < SCTL_NVERBS; i++)
        if (sctl_in_group(&sctl_verbs[i], group))
            return true;
    return false;
}

/* `sluicectl queue --help`: the verbs of one group, first help line each. */
static void sctl_group_help(const char *group)
{
    printf("usage: sluicectl [-c FILE | -s SOCKET] %s SUBVERB ... [--help]\n", group);
    for (size_t i = 0; i < SCTL_NVERBS; i++) {
        const struct sctl_verb *v = &sctl_verbs[i];
        if (!sctl_in_group(v, group))
            continue;
        const char *nl = strchr(v->help, '\n');
        int len = nl ? (int)(nl - v->help) : (int)strlen(v->help);
        printf("  %s%s%s\n      %.*s\n", v->name, v->usage[0] ? " " : "", v->usage, len, v->help);
    }
}

static int sctl_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sctl_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sluicectl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* Sends req, reads the reply to EOF.  0 or an exit code (message printed). */
static int sctl_call(const char *path, const char *req, int timeout_s, char **reply)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return sctl_err(2, "socket path %s is longer than 107 bytes", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sctl_err(1, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return sctl_err(1, "no daemon at %s (%s)", path, strerror(e));
    }
    uint64_t t0 = clock_mono_ms();
    size_t n = strlen(req), off = 0;
    while (off < n) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break; /* a refusal may already be waiting: read it */
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        long left = (long)timeout_s * 1000 - (long)(clock_mono_ms() - t0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            free(buf);
            close(fd);
            return sctl_err(1, "no answer from %s within %d s", path, timeout_s);
        }
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            char *nb = cap <= SCTL_MAX_REPLY ? realloc(buf, cap) : NULL;
            if (nb == NULL) {
                free(buf);
                close(fd);
                return sctl_err(1, "the answer is too large");
            }
            buf = nb;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return sctl_err(1, "reading from %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len == 0) {
        free(buf);
        return sctl_err(1, "%s closed without an answer", path);
    }
    buf[len] = '\0';
    *reply = buf;
    return 0;
}

/* The socket from -s, -c FILE's control_socket, or the default. */
static int sctl_socket(const char *sock, const char *conf, char **out)
{
    if (sock != NULL) {
        *out = strdup(sock);
        return 0;
    }
    char err[512];
    struct cfg *c = cfg_load(conf, NULL, 0, err, sizeof(err));
    if (c == NULL)
        return sctl_err(1, "configuration: %s", err);
    if (c->control_socket == NULL || c->control_socket[0] == '\0') {
        cfg_destroy(c);
        return sctl_err(1, "%s sets no control_socket", conf ? conf : "the default configuration");
    }
    *out = strdup(c->control_socket);
    cfg_destroy(c);
    return 0;
}

static const struct sctl_verb *sctl_match(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < SCTL_NVERBS; i++) {
        const char *name = sctl_verbs[i].name, *sp = strchr(name, ' ');
        if (sp == NULL && strcmp(argv[0], name) == 0) {
            *used = 1;
            return &sctl_verbs[i];
        }
        if (sp != NULL && argc >= 2 && strncmp(argv[0], name, (size_t)(sp - name)) == 0 &&
            argv[0][sp - name] == '\0' && strcmp(argv[1], sp + 1) == 0) {
            *used = 2;
            return &sctl_verbs[i];
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *sock = NULL;
    int timeout_s = 60, i = 1;
    bool json = false, help = false;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            sock = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            timeout_s = atoi(argv[++i]);
            if (timeout_s <= 0)
                return sctl_err(2, "-t: a positive number of seconds");
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help = true;
        } else {
            return sctl_err(2, "unknown option '%s' (sluicectl --help lists them)", argv[i]);
        }
    }
    if (i == argc) {
        if (help) {
            sctl_usage(stdout);
            return 0;
        }
        sctl_usage(stderr);
        return 2;
    }
    /* the words after the verb: --json and --help are ours, the rest goes */
    int used = 0;
    const struct sctl_verb *v = sctl_match(argc - i, argv + i, &used);
    const char *args[CTL_MAX_ARGS + 1];
    size_t nargs = 0;
    for (int j = i + (v ? used : 1); j < argc; j++) {
        if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0)
            help = true;
        else if (strcmp(argv[j], "--json") == 0)
            json = true;
        else if (nargs < CTL_MAX_ARGS + 1)
            args[nargs++] = argv[j];
    }
    if (v == NULL) {
        if (!sctl_is_group(argv[i]))
            return sctl_err(2, "unknown verb '%s' (sluicectl --help lists them)", argv[i]);
        if (help) {
            sctl_group_help(argv[i]);
            return 0;
        }
        if (i + 1 < argc && argv[i + 1][0] != '-')
            return sctl_err(2, "unknown verb '%s %s' (sluicectl %s --help lists them)", argv[i],
                            argv[i + 1], argv[i]);
        return sctl_err(2, "'%s' needs a subverb (sluicectl %s --help lists them)", argv[i],
                        argv[i]);
    }
    if (help) {
        sctl_verb_help(v);
        return 0;
    }
    if (nargs < v->min_args || nargs > v->max_args)
        return sctl_err(2, "%s: expected %s%s (sluicectl %s --help)", v->name,
                        v->usage[0] ? "" : "no arguments", v->usage, v->name);
    char *path = NULL, *reply = NULL;
    int rc = sctl_socket(sock, conf, &path);
    if (rc != 0)
        return rc;
    char *req = ctl_request_format(v->name, args, nargs);
    if (req == NULL || path == NULL)
        return sctl_err(1, "out of memory");
    rc = sctl_call(path, req, timeout_s, &reply);
    free(req);
    free(path);
    if (rc != 0)
        return rc;
    rc = sctl_print_reply(v, reply, json);
    free(reply);
    return rc;
}
