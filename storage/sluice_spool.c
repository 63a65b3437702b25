/*
 * NAME
 *	sluice-spool - inspect a sluice spool
 * SYNOPSIS
 *	sluice-spool DIR list [--json]
 *	sluice-spool DIR verify
 *	sluice-spool DIR cat [--raw] ID
 *	sluice-spool DIR stats
 *	sluice-spool DIR salvage OUTDIR
 * DESCRIPTION
 *	Read-only: the tool never takes the spool lock and never repairs, so
 *	it is safe on the spool of a running sluiced (a record being written
 *	at that moment reads as a torn tail and is skipped).
 *
 *	list prints one line per live message: id, arrival time (ISO 8601,
 *	UTC), body size, the word "quarantine" for a quarantined message,
 *	"held" and "warned" for those queue flags, <sender> and the
 *	recipients, each followed by "=delivered" or "=failed" once it is,
 *	and then, when the message was tried, attempts=N, next=TIME of the
 *	next attempt and error="the last error"; --json prints one JSON
 *	array of objects instead (with a "delivery" array: each recipient
 *	and its state).  verify checks every record of every segment.  cat writes a
 *	message's body to standard output with the header edits sinks made
 *	applied; --raw writes it exactly as it was received.  stats
 *	prints segment, record and message counts, the spool's size and
 *	how much of it live messages take.  salvage writes into OUTDIR what
 *	is left of every message that is neither live nor aborted nor
 *	removed (damage hit its records, or it was never committed): ID.env
 *	(envelope and reason) and ID.eml (the body octets still readable).
 * DIAGNOSTICS
 *	Exit 0 on success; 1 when verify finds a bad record, cat finds no
 *	such message, or I/O fails; 2 for a usage error or a missing
 *	directory.  Errors are one line on standard error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/spool_int.h"

static const char *prog = "sluice-spool";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s DIR list [--json]   live messages\n"
            "       %s DIR verify          check every record of every segment\n"
            "       %s DIR cat [--raw] ID  write a message body (--raw: without sink edits)\n"
            "       %s DIR stats           segment, record and message counts\n"
            "       %s DIR salvage OUTDIR  write out what is left of damaged messages\n",
            prog, prog, prog, prog, prog);
}

__attribute__((format(printf, 2, 3))) static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static void iso_time(int64_t ms, char out[96])
{
    time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL) {
        snprintf(out, 96, "?");
        return;
    }
    snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms - (int64_t)s * 1000));
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string: valid UTF-8 passes, anything else is escaped (a byte
 * that is not UTF-8 becomes the code point of the same value). */
static void json_str(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        unsigned char c = *s;
        size_t n;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            s++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            s++;
        } else if (c < 0x80) {
            fputc(c, f);
            s++;
        } else if ((n = utf8_len(s)) > 0) {
            fwrite(s, 1, n, f);
            s += n;
        } else {
            fprintf(f, "\\u%04x", c);
            s++;
        }
    }
    fputc('"', f);
}

struct list_ctx {
    bool json;
    uint64_t n;
};

static const char *rstate_name(const struct spool_msginfo *m, uint32_t i)
{
    uint8_t v = m->rstate ? m->rstate[i] : SPOOL_R_PENDING;
    return v == SPOOL_R_DELIVERED ? "delivered" : v == SPOOL_R_FAILED ? "failed" : "pending";
}

static void list_text(const struct spool_msginfo *m, const char *ids, const char *when)
{
    printf("%s %s %" PRIu64 "%s%s%s <%s>", ids, when, m->size,
           (m->flags & SPOOL_MSG_QUARANTINE) ? " quarantine" : "",
           (m->qflags & SPOOL_Q_HELD) ? " held" : "", (m->qflags & SPOOL_Q_WARNED) ? " warned" : "",
           m->sender);
    for (uint32_t i = 0; i < m->nrcpt; i++) {
        printf(" <%s>", m->rcpts[i]);
        if (m->rstate && m->rstate[i] != SPOOL_R_PENDING)
            printf("=%s", rstate_name(m, i));
    }
    if (m->attempts > 0 || (m->last_error && m->last_error[0])) {
        char next[96];
        iso_time(m->next_ms, next);
        printf(" attempts=%" PRIu32 " next=%s error=", m->attempts, m->next_ms ? next : "now");
        json_str(stdout, m->last_error ? m->last_error : "");
    }
    putchar('\n');
}

static void list_json_state(const struct spool_msginfo *m)
{
    char next[96];
    iso_time(m->next_ms, next);
    printf(",\n   \"held\": %s, \"warned\": %s, \"attempts\": %" PRIu32
           ", \"next_attempt_ms\": %" PRId64 ", \"next_attempt\": ",
           (m->qflags & SPOOL_Q_HELD) ? "true" : "false",
           (m->qflags & SPOOL_Q_WARNED) ? "true" : "false", m->attempts, m->next_ms);
    if (m->next_ms)
        printf("\"%s\"", next);
    else
        fputs("null", stdout);
    fputs(", \"last_error\": ", stdout);
    json_str(stdout, m->last_error ? m->last_error : "");
    fputs(",\n   \"delivery\": [", stdout);
    for (uint32_t i = 0; i < m->nrcpt; i++) {
        fputs(i ? ", {\"rcpt\": " : "{\"rcpt\": ", stdout);
        json_str(stdout, m->rcpts[i]);
        printf(", \"state\": \"%s\"}", rstate_name(m, i));
    }
    fputc(']', stdout);
}

static int list_cb(void *arg, const struct spool_msginfo *m)
{
    struct list_ctx *c = arg;
    char ids[17], when[96];
    spool_id_str(m->id, ids);
    iso_time(m->arrival_ms, when);
    if (!c->json) {
        list_text(m, ids, when);
    } else {
        printf("%s\n  {\"id\": \"%s\", \"arrival\": \"%s\", \"arrival_ms\": %" PRId64
               ", \"size\": %" PRIu64 ",\n   \"client\": ",
               c->n ? "," : "", ids, when, m->arrival_ms, m->size);
        json_str(stdout, m->client);
        fputs(", \"helo\": ", stdout);
        json_str(stdout, m->helo);
        fputs(", \"sender\": ", stdout);
        json_str(stdout, m->sender);
        fputs(", \"params\": ", stdout);
        json_str(stdout, m->params);
        printf(", \"quarantine\": %s, \"edits\": %" PRIu32,
               (m->flags & SPOOL_MSG_QUARANTINE) ? "true" : "false", m->nedits);
        fputs(",\n   \"rcpts\": [", stdout);
        for (uint32_t i = 0; i < m->nrcpt; i++) {
            if (i)
                fputs(", ", stdout);
            json_str(stdout, m->rcpts[i]);
        }
        fputc(']', stdout);
        list_json_state(m);
        fputc('}', stdout);
    }
    c->n++;
    return ferror(stdout) ? -EIO : 0;
}

static int cmd_list(const char *dir, int argc, char **argv)
{
    struct list_ctx c = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0)
            return fail(2, "list: unknown option '%s'", argv[i]);
        c.json = true;
    }
    if (c.json)
        putchar('[');
    int r = spool_scan(dir, list_cb, &c, NULL);
    if (c.json)
        fputs(c.n ? "\n]\n" : "]\n", stdout);
    if (fflush(stdout) != 0 && r == 0)
        r = -errno;
    return r < 0 ? fail(1, "%s: %s", dir, strerror(-r)) : 0;
}

static int cmd_verify(const char *dir, int argc)
{
    if (argc > 0)
        return fail(2, "verify takes no arguments");
    static char msg[1 << 16];
    int r = spool_verify(dir, msg, sizeof(msg));
    if (r < 0 && r != -EBADMSG)
        return fail(1, "%s: %s", dir, strerror(-r));
    printf("%s\n", msg);
    return r == -EBADMSG ? 1 : 0;
}

static int cmd_cat(const char *dir, int argc, char **argv)
{
    uint64_t id;
    bool raw = false;
    const char *ids = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (ids == NULL)
            ids = argv[i];
        else
            return fail(2, "cat needs one message id");
    }
    if (ids == NULL)
        return fail(2, "cat needs one message id");
    if (!spool_id_parse(ids, &id))
        return fail(2, "%s: not a message id (16 hex digits)", ids);
    int r =
        raw ? spool_read_body_raw(dir, id, STDOUT_FILENO) : spool_read_body(dir, id, STDOUT_FILENO);
    if (r == -ENOENT)
        return fail(1, "%s: no such live message in %s", ids, dir);
    return r < 0 ? fail(1, "%s: %s", dir, strerror(-r)) : 0;
}

static int count_cb(void *arg, const struct spool_msginfo *m)
{
    (void)arg;
    (void)m;
    return 0;
}

static int cmd_stats(const char *dir, int argc)
{
    if (argc > 0)
        return fail(2, "stats takes no arguments");
    struct spool_scan_report rep;
    int r = spool_scan(dir, count_cb, NULL, &rep); /* a callback: STATE records count too */
    if (r < 0)
        return fail(1, "%s: %s", dir, strerror(-r));
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct spool_seg *segs = NULL;
    size_t nseg = 0;
    uint64_t bytes = 0;
    r = dirfd < 0 ? -errno : spool_seg_list(dirfd, &segs, &nseg);
    for (size_t i = 0; r == 0 && i < nseg; i++) {
        struct stat st;
        if (fstatat(dirfd, segs[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            bytes += (uint64_t)st.st_size;
    }
    free(segs);
    if (dirfd >= 0)
        close(dirfd);
    if (r < 0)
        return fail(1, "%s: %s", dir, strerror(-r));
    char ids[17];
    spool_id_str(rep.max_id, ids);
    printf("segments %" PRIu64 "\nrecords %" PRIu64 "\nlive %" PRIu64 "\nincomplete %" PRIu64
           "\ntorn %" PRIu64 "\ndamaged %" PRIu64 "\nbytes %" PRIu64 "\nlive_bytes %" PRIu64 "\nlive_percent %.1f"
           "\nmax_id %s\n",
           rep.segments, rep.records, rep.live, rep.incomplete, rep.torn, rep.damaged, bytes, rep.live_bytes,
           bytes ? 100.0 * (double)rep.live_bytes / (double)bytes : 0.0, ids);
    return 0;
}

static int cmd_salvage(const char *dir, int argc, char **argv)
{
    if (argc != 1)
        return fail(2, "salvage needs one output directory");
    struct spool_salvage_report rep;
    int r = spool_salvage(dir, argv[0], &rep);
    if (r < 0)
        return fail(1, "salvage %s into %s: %s", dir, argv[0], strerror(-r));
    printf("%" PRIu64 " damaged regions; %" PRIu64 " messages written to %s; %" PRIu64
           " committed messages whose envelope is lost\n",
           rep.damaged, rep.written, argv[0], rep.no_envelope);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    if (argc < 2)
        return fail(2, "missing spool directory (try --help)");
    const char *dir = argv[1];
    if (argc < 3)
        return fail(2, "missing command: list, verify, cat, stats or salvage (try --help)");
    const char *verb = argv[2];
    struct stat st;
    if (stat(dir, &st) < 0)
        return fail(2, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(2, "%s: %s", dir, strerror(ENOTDIR));
    if (strcmp(verb, "list") == 0)
        return cmd_list(dir, argc - 3, argv + 3);
    if (strcmp(verb, "verify") == 0)
        return cmd_verify(dir, argc - 3);
    if (strcmp(verb, "cat") == 0)
        return cmd_cat(dir, argc - 3, argv + 3);
    if (strcmp(verb, "stats") == 0)
        return cmd_stats(dir, argc - 3);
    if (strcmp(verb, "salvage") == 0)
        return cmd_salvage(dir, argc - 3, argv + 3);
    return fail(2, "unknown command '%s' (try --help)", verb);
}
