/*
 * NAME
 *	fuzz_admin - the /metrics listener's HTTP request parser
 * DESCRIPTION
 *	The input is what a client sends to the admin listener.  As
 *	admin_read_head() does, at most ADMIN_MAX_REQUEST octets are taken
 *	and NUL-terminated, and the head counts only once a blank line
 *	(CRLF CRLF or LF LF) is in it; then admin_request_status() (core/ops/
 *	admin.c) decides the answer.
 *
 *	Invariants: the status is one of 200, 400, 404, 405, and the same
 *	without the octets after the head's blank line (a body or the next
 *	request is not header lines); a 200 is only
 *	for "GET /metrics" or "HEAD /metrics" (any query) with HTTP/1.0 or
 *	1.1, and head_only only for HEAD.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "core/ops/admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > ADMIN_MAX_REQUEST)
        size = ADMIN_MAX_REQUEST;
    char *head = fuzz_str(data, size);
    if (strstr(head, "\r\n\r\n") == NULL && strstr(head, "\n\n") == NULL) {
        free(head);
        return 0; /* 400, 408 or 431 without parsing */
    }
    char *copy = strdup(head);
    bool head_only = true;
    int st = admin_request_status(head, &head_only);
    /* the same head without what follows its blank line */
    char *cut = strdup(copy), *q = cut + strspn(cut, "\r\n"), *e1 = strstr(q, "\n\n"),
         *e2 = strstr(q, "\n\r\n");
    char *e = e1 && (!e2 || e1 < e2) ? e1 : e2;
    if (e != NULL) {
        e[1] = '\0';
        bool ho;
        int st2 = admin_request_status(cut, &ho);
        FUZZ_CHECK(st2 == st, "%d, but %d without what follows the head", st, st2);
    }
    free(cut);
    FUZZ_CHECK(st == 200 || st == 400 || st == 404 || st == 405, "status %d", st);
    FUZZ_CHECK(!head_only || st == 200, "head_only with %d", st);
    if (st == 200) {
        const char *line = copy + strspn(copy, "\r\n"); /* empty lines before it: RFC 9112 2.2 */
        bool get = strncmp(line, "GET /metrics", 12) == 0;
        bool hd = strncmp(line, "HEAD /metrics", 13) == 0;
        FUZZ_CHECK(get || hd, "200 for \"%.40s\"", line);
        FUZZ_CHECK(head_only == hd, "head_only %d", head_only);
        const char *p = line + (get ? 12 : 13);
        FUZZ_CHECK(*p == ' ' || *p == '?', "200 for a longer path: \"%.40s\"", line);
    }
    free(copy);
    free(head);
    return 0;
}
