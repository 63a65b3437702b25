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

#include "core/base/json.h"
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

/* Writes out the text b holds and empties it (the nesting stays). */
static void list_flush(struct json_buf *b)
{
    if (b->len > 0)
        fwrite(b->p, 1, b->len, stdout);
    json_drain(b);
}

struct list_ctx {
    bool json;
    uint64_t n;
    struct json_buf b; /* --json: the array, written out message by message */
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
        json_fput_str(stdout, m->last_error);
    }
    putchar('\n');
}

static void list_json_state(struct json_buf *b, const struct spool_msginfo *m)
{
    char next[96];
    iso_time(m->next_ms, next);
    json_break(b, "\n   ");
    json_key(b, "held");
    json_bool(b, (m->qflags & SPOOL_Q_HELD) != 0);
    json_key(b, "warned");
    json_bool(b, (m->qflags & SPOOL_Q_WARNED) != 0);
    json_key(b, "attempts");
    json_uint(b, m->attempts);
    json_key(b, "next_attempt_ms");
    json_int(b, m->next_ms);
    json_key(b, "next_attempt");
    if (m->next_ms)
        json_str(b, next);
    else
        json_null(b);
    json_key(b, "last_error");
    json_str(b, m->last_error);
    json_break(b, "\n   ");
    json_key(b, "delivery");
    json_arr(b);
    for (uint32_t i = 0; i < m->nrcpt; i++) {
        json_obj(b);
        json_key(b, "rcpt");
        json_str(b, m->rcpts[i]);
        json_key(b, "state");
        json_str(b, rstate_name(m, i));
        json_end(b);
    }
    json_end(b);
}

static void list_json(struct json_buf *b, const struct spool_msginfo *m, const char *ids,
                      const char *when)
{
    json_break(b, "\n  ");
    json_obj(b);
    json_key(b, "id");
    json_str(b, ids);
    json_key(b, "arrival");
    json_str(b, when);
    json_key(b, "arrival_ms");
    json_int(b, m->arrival_ms);
    json_key(b, "size");
    json_uint(b, m->size);
    json_break(b, "\n   ");
    json_key(b, "client");
    json_str(b, m->client);
    json_key(b, "helo");
    json_str(b, m->helo);
    json_key(b, "sender");
    json_str(b, m->sender);
    json_key(b, "params");
    json_str(b, m->params);
    json_key(b, "quarantine");
    json_bool(b, (m->flags & SPOOL_MSG_QUARANTINE) != 0);
    json_key(b, "edits");
    json_uint(b, m->nedits);
    json_break(b, "\n   ");
    json_key(b, "rcpts");
    json_arr(b);
    for (uint32_t i = 0; i < m->nrcpt; i++)
        json_str(b, m->rcpts[i]);
    json_end(b);
    list_json_state(b, m);
    json_end(b);
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
        list_json(&c->b, m, ids, when);
        if (c->b.full)
            return -ENOMEM;
        list_flush(&c->b);
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
    if (c.json) {
        json_init_grow(&c.b);
        json_spaced(&c.b);
        json_arr(&c.b);
        list_flush(&c.b);
    }
    int r = spool_scan(dir, list_cb, &c, NULL);
    if (c.json) {
        if (c.n)
            json_text(&c.b, "\n", 1);
        json_end(&c.b);
        json_text(&c.b, "\n", 1);
        if (c.b.full && r == 0)
            r = -ENOMEM;
        list_flush(&c.b);
        json_fini(&c.b);
    }
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
           "\ntorn %" PRIu64 "\ndamaged %" PRIu64 "\nbytes %" PRIu64 "\nlive_bytes %" PRIu64
           "\nlive_percent %.1f"
           "\nmax_id %s\n",
           rep.segments, rep.records, rep.live, rep.incomplete, rep.torn, rep.damaged, bytes,
           rep.live_bytes, bytes ? 100.0 * (double)rep.live_bytes / (double)bytes : 0.0, ids);
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
