/*
 * NAME
 *	sluicectl_fmt - sluicectl's printers of the daemon's answers
 * SYNOPSIS
 *	#include "core/cmd/sluicectl_int.h"
 * DESCRIPTION
 *	The answer is parsed with cfg_parse() (which reads JSON); each verb's
 *	printer turns its "result" member into text.  --json skips the parse
 *	and prints the result exactly as the daemon sent it.
 * DIAGNOSTICS
 *	An error answer, or one that does not parse, is one line on stderr
 *	and exit code 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg/cfg.h"
#include "core/cmd/sluicectl_int.h"

#define SCTL_OK_PREFIX "{\"ok\": true, \"result\": "

static const char *sget(const struct cfg_node *n, const char *key)
{
    const struct cfg_node *v = cfg_node_get(n, key);
    if (v == NULL || cfg_node_type(v) == CFG_NULL)
        return "";
    const char *s = cfg_node_str(v);
    return s ? s : "";
}

static long long iget(const struct cfg_node *n, const char *key)
{
    return (long long)cfg_node_int(cfg_node_get(n, key));
}

int sctl_print_status(const struct sctl_verb *v, const struct cfg_node *r)
{
    long long up = iget(r, "uptime_s");
    printf("sluiced %s, pid %lld, up %lldd %02lld:%02lld:%02lld, %lld workers\n",
           sget(r, "version"), iget(r, "pid"), up / 86400, up / 3600 % 24, up / 60 % 60, up % 60,
           iget(r, "workers"));
    const struct cfg_node *q = cfg_node_get(r, "queue");
    if (q != NULL)
        printf("queue: %lld messages (%lld active, %lld deferred, %lld held); since start: "
               "%lld delivered, %lld failed, %lld deferrals, %lld bounces, %lld connections "
               "(%lld reused)\n",
               iget(q, "queued"), iget(q, "active"), iget(q, "deferred"), iget(q, "held"),
               iget(q, "delivered"), iget(q, "failed"), iget(q, "deferrals"), iget(q, "bounces"),
               iget(q, "connections"), iget(q, "reused"));
    const struct cfg_node *s = cfg_node_get(r, "spool");
    if (s != NULL)
        printf("spool: %lld bytes in %lld segments (%lld live messages, %lld live bytes)\n",
               iget(s, "bytes"), iget(s, "segments"), iget(s, "live_messages"),
               iget(s, "live_bytes"));
    const struct cfg_node *n = cfg_node_get(r, "net");
    if (n != NULL)
        printf("smtp: %lld connections now; since start: %lld accepted, %lld sessions, %lld "
               "messages, %lld rejected\n",
               iget(n, "connections"), iget(n, "accepted"), iget(n, "sessions"),
               iget(n, "messages"), iget(n, "rejected"));
    return 0;
}

static char sctl_mark(const char *state)
{
    if (strcmp(state, "active") == 0)
        return '*';
    if (strcmp(state, "held") == 0 || strcmp(state, "hold-transport") == 0)
        return '!';
    if (strcmp(state, "quarantine") == 0)
        return '#';
    return ' ';
}

static void sctl_rcpts(const struct cfg_node *m, const char *indent)
{
    const struct cfg_node *rc = cfg_node_get(m, "rcpts");
    for (size_t j = 0; j < cfg_node_count(rc); j++) {
        const struct cfg_node *x = cfg_node_at(rc, j);
        const char *diag = sget(x, "diag");
        printf("%s%s  [%s]%s%s\n", indent, sget(x, "addr"), sget(x, "state"), diag[0] ? " " : "",
               diag);
    }
}

int sctl_print_list(const struct sctl_verb *v, const struct cfg_node *r)
{
    size_t n = cfg_node_count(r);
    if (n == 0) {
        printf("Mail queue is empty\n");
        return 0;
    }
    static const char ind[] = "                                                 "; /* 49 */
    printf("-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    long long total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cfg_node *m = cfg_node_at(r, i);
        const char *sender = sget(m, "sender");
        total += iget(m, "size");
        printf("%s%c %8lld %-20s  %s\n", sget(m, "id"), sctl_mark(sget(m, "state")),
               iget(m, "size"), sget(m, "arrival"), sender[0] ? sender : "<>");
        const char *le = sget(m, "last_error");
        if (le[0])
            printf("%s(%s)\n", ind, le);
        sctl_rcpts(m, ind);
        printf("\n");
    }
    printf("-- %lld Kbytes in %zu Request%s.\n", (total + 1023) / 1024, n, n == 1 ? "" : "s");
    return 0;
}

int sctl_print_show(const struct sctl_verb *v, const struct cfg_node *m)
{
    const char *sender = sget(m, "sender");
    printf("id: %s\nstate: %s\nsender: %s\nparams: %s\nclient: %s\nhelo: %s\nsize: %lld\n"
           "arrival: %s\nattempts: %lld\nnext attempt: %s\nlast error: %s\nrecipients:\n",
           sget(m, "id"), sget(m, "state"), sender[0] ? sender : "<>", sget(m, "params"),
           sget(m, "client"), sget(m, "helo"), iget(m, "size"), sget(m, "arrival"),
           iget(m, "attempts"), sget(m, "next_attempt")[0] ? sget(m, "next_attempt") : "-",
           sget(m, "last_error")[0] ? sget(m, "last_error") : "-");
    sctl_rcpts(m, "  ");
    const char *h = sget(m, "headers");
    printf("headers:\n");
    /* CRLF as the spool stores it: print LF */
    for (const char *p = h; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            putchar(*p);
    if (h[0] && h[strlen(h) - 1] != '\n')
        putchar('\n');
    return 0;
}

/* The small answers: one "key: value" line per member. */
int sctl_print_count(const struct sctl_verb *v, const struct cfg_node *r)
{
    for (size_t i = 0; i < cfg_node_count(r); i++) {
        const struct cfg_node *x = cfg_node_at(r, i);
        printf("%s: %s\n", cfg_node_key(x), cfg_node_str(x) ? cfg_node_str(x) : "");
    }
    return 0;
}

int sctl_print_bindings(const struct sctl_verb *v, const struct cfg_node *r)
{
    const char *chains = sget(r, "chains"), *stats = sget(r, "stats");
    fputs(chains[0] ? chains : "no bindings\n", stdout);
    if (stats[0]) {
        printf("\n");
        fputs(stats, stdout);
    }
    return 0;
}

int sctl_print_reply(const struct sctl_verb *v, const char *reply, bool json)
{
    size_t len = strlen(reply), pl = strlen(SCTL_OK_PREFIX);
    if (json && len >= pl + 2 && strncmp(reply, SCTL_OK_PREFIX, pl) == 0 &&
        strcmp(reply + len - 2, "}\n") == 0) {
        fwrite(reply + pl, 1, len - pl - 2, stdout);
        putchar('\n');
        return 0;
    }
    char err[512];
    struct cfg_node *root = cfg_parse(reply, len, "answer", err, sizeof(err));
    if (root == NULL) {
        if (len > (4u << 20))
            fprintf(stderr,
                    "sluicectl: the answer (%zu bytes) is too large to print as text: "
                    "use --json\n",
                    len);
        else
            fprintf(stderr, "sluicectl: unreadable answer from the daemon: %s\n", err);
        return 1;
    }
    int rc;
    const struct cfg_node *ok = cfg_node_get(root, "ok");
    if (cfg_node_type(ok) != CFG_BOOL) {
        fprintf(stderr, "sluicectl: unreadable answer from the daemon: no \"ok\"\n");
        rc = 1;
    } else if (!cfg_node_bool(ok)) {
        const char *e = sget(root, "error");
        fprintf(stderr, "sluicectl: %s\n", e[0] ? e : "failed (no reason given)");
        rc = 1;
    } else {
        rc = v->print(v, cfg_node_get(root, "result"));
    }
    cfg_node_free(root);
    return rc;
}
