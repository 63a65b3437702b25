/*
 * NAME
 *	admin_http - the admin listener's request head parser
 * SYNOPSIS
 *	#include "core/ops/admin.h"
 *
 *	int admin_request_status(char *head, bool *head_only);
 * DESCRIPTION
 *	See admin.h.  The request line must be "METHOD SP TARGET SP HTTP/1.x"
 *	(origin-form target), every header line "name:" with a token name.
 *	The body framing is checked as RFC 9112 6.3 asks even though a body is
 *	never read (the connection is closed after the response): a request
 *	with Content-Length and Transfer-Encoding, with Content-Length values
 *	that differ or are not decimal numbers, or with a Transfer-Encoding
 *	whose final coding is not chunked, is a 400.  Identical repeated
 *	Content-Length values ("5, 5", or the header twice) are accepted
 *	(RFC 9110 8.6).  Only the head is parsed: what follows its blank
 *	line (a body, a pipelined request) changes nothing.
 * DIAGNOSTICS
 *	None: a bad request is a status.
 */
#include "core/ops/admin.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ADMIN_CL_DIGITS 20 /* significant digits of a Content-Length kept */

struct admin_req {
    char method[16];
    char path[256];
    bool bad;
    bool te;                         /* Transfer-Encoding seen */
    bool cl;                         /* Content-Length seen */
    char clval[ADMIN_CL_DIGITS + 1]; /* its value, without leading zeros */
};

/* RFC 9110 tchar */
static bool admin_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The end of the head: just after the line end before its first empty
 * line (empty lines before the request line are skipped, RFC 9112 2.2),
 * or the end of the text.  What follows (a body, a pipelined request) is
 * not header lines. */
static char *admin_head_end(char *head)
{
    char *p = head + strspn(head, "\r\n");
    for (char *nl = strchr(p, '\n'); nl != NULL; nl = strchr(nl + 1, '\n'))
        if (nl[1] == '\n' || (nl[1] == '\r' && nl[2] == '\n'))
            return nl + 1;
    return p + strlen(p);
}

/* The next element of a comma-separated field value at *s, OWS trimmed,
 * in [*b, *e); false at the end.  Empty elements are returned too. */
static bool admin_list_next(const char **s, const char **b, const char **e)
{
    if (*s == NULL)
        return false;
    const char *p = *s + strspn(*s, " \t");
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    *s = comma ? comma + 1 : NULL;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *b = p;
    *e = end;
    return true;
}

/* Content-Length: every element of every such line must be 1*DIGIT and
 * all must be the same number (compared as text without leading zeros,
 * so no overflow). */
static void admin_content_length(struct admin_req *rq, const char *value)
{
    const char *b, *e;
    while (admin_list_next(&value, &b, &e)) {
        if (b == e || strspn(b, "0123456789") < (size_t)(e - b)) {
            rq->bad = true;
            return;
        }
        while (e - b > 1 && *b == '0')
            b++;
        if (e - b > ADMIN_CL_DIGITS) {
            rq->bad = true;
            return;
        }
        char v[ADMIN_CL_DIGITS + 1];
        memcpy(v, b, (size_t)(e - b));
        v[e - b] = '\0';
        if (rq->cl && strcmp(v, rq->clval) != 0) {
            rq->bad = true; /* differing lengths: unrecoverable (RFC 9112 6.3) */
            return;
        }
        rq->cl = true;
        memcpy(rq->clval, v, sizeof(v));
    }
}

/* Transfer-Encoding: the final coding (the last non-empty element of the
 * last such line) must be chunked in a request (RFC 9112 6.3, item 4). */
static void admin_transfer_encoding(struct admin_req *rq, const char *value)
{
    const char *b, *e, *lb = NULL, *le = NULL;
    while (admin_list_next(&value, &b, &e))
        if (b != e) {
            lb = b;
            le = e;
        }
    rq->te = true;
    if (lb == NULL || le - lb != 7 || strncasecmp(lb, "chunked", 7) != 0)
        rq->bad = true;
}

/* One header line "name: value" (line end removed). */
static void admin_header(struct admin_req *rq, char *line)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line) {
        rq->bad = true;
        return;
    }
    for (char *p = line; p < colon; p++)
        if (!admin_tchar(*p)) {
            rq->bad = true; /* also obsolete line folding: a leading space */
            return;
        }
    size_t nlen = (size_t)(colon - line);
    if (nlen == 14 && strncasecmp(line, "Content-Length", nlen) == 0)
        admin_content_length(rq, colon + 1);
    else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", nlen) == 0)
        admin_transfer_encoding(rq, colon + 1);
}

/* The request line "METHOD SP TARGET SP HTTP/1.x" (line end removed). */
static void admin_request_line(struct admin_req *rq, char *line)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL || sp1 == line ||
        (size_t)(sp1 - line) >= sizeof(rq->method) || sp2 == sp1 + 1 ||
        (strcmp(sp2 + 1, "HTTP/1.0") != 0 && strcmp(sp2 + 1, "HTTP/1.1") != 0)) {
        rq->bad = true;
        return;
    }
    for (char *p = line; p < sp1; p++)
        if (!admin_tchar(*p)) {
            rq->bad = true;
            return;
        }
    memcpy(rq->method, line, (size_t)(sp1 - line));
    size_t tlen = (size_t)(sp2 - sp1 - 1);
    const char *target = sp1 + 1;
    const char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    if (target[0] != '/' || plen >= sizeof(rq->path)) {
        /* absolute-form and asterisk-form are not served here */
        rq->bad = target[0] != '/';
        snprintf(rq->path, sizeof(rq->path), "/(too long)");
    } else {
        memcpy(rq->path, target, plen);
    }
    for (const char *p = target; p < sp2; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
            rq->bad = true;
}

static void admin_parse(char *head, struct admin_req *rq)
{
    memset(rq, 0, sizeof(*rq));
    *admin_head_end(head) = '\0';
    head += strspn(head, "\r\n"); /* empty lines before the request line (RFC 9112 2.2) */
    char *save = NULL;
    char *line = strtok_r(head, "\n", &save);
    if (line == NULL) {
        rq->bad = true;
        return;
    }
    size_t l = strlen(line);
    if (l > 0 && line[l - 1] == '\r')
        line[--l] = '\0';
    admin_request_line(rq, line);
    while (!rq->bad && (line = strtok_r(NULL, "\n", &save)) != NULL) {
        l = strlen(line);
        if (l > 0 && line[l - 1] == '\r')
            line[--l] = '\0';
        if (l == 0)
            break;
        admin_header(rq, line);
    }
    if (rq->cl && rq->te)
        rq->bad = true; /* both: request smuggling's favourite (RFC 9112 6.1, 6.3) */
}

int admin_request_status(char *head, bool *head_only)
{
    struct admin_req rq;
    admin_parse(head, &rq);
    *head_only = false;
    if (rq.bad)
        return 400;
    if (strcmp(rq.method, "GET") != 0 && strcmp(rq.method, "HEAD") != 0)
        return 405;
    if (strcmp(rq.path, "/metrics") != 0)
        return 404;
    *head_only = strcmp(rq.method, "HEAD") == 0;
    return 200;
}
