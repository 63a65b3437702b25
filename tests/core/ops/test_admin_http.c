/*
 * NAME
 *	test_admin_http - admin_request_status() (core/ops/admin_http.c) on
 *	buffers: the request line, header lines and the RFC 9112 6.3 framing
 *	checks (Content-Length, Transfer-Encoding)
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "core/ops/admin.h"

/* The status of a copy of head (the parser cuts it in place). */
static int status_of(const char *head, bool *head_only)
{
    char *copy = strdup(head);
    cr_assert_not_null(copy);
    bool ho = true;
    int st = admin_request_status(copy, &ho);
    free(copy);
    if (head_only != NULL)
        *head_only = ho;
    return st;
}

#define EXPECT(want, head) cr_expect_eq(status_of(head, NULL), want, "%s", head)

Test(admin_http, served)
{
    bool ho = true;
    cr_assert_eq(status_of("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &ho), 200);
    cr_assert(!ho);
    cr_assert_eq(status_of("HEAD /metrics?a=b HTTP/1.0\n\n", &ho), 200);
    cr_assert(ho);
    cr_assert_eq(status_of("\r\nGET /metrics HTTP/1.1\r\n\r\n", &ho), 200);
    EXPECT(404, "GET /metricsx HTTP/1.1\r\n\r\n");
    EXPECT(405, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nbad line\r\n\r\n");
}

Test(admin_http, content_length)
{
    /* one valid length, a GET with a body: served (the body is never read) */
    EXPECT(200, "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT(200, "GET /metrics HTTP/1.1\r\ncontent-length:\t0 \r\n\r\n");
    /* the same value again, as a list or as a second line: RFC 9110 8.6 */
    EXPECT(200, "GET /metrics HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
    EXPECT(200, "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n");
    /* differing values: unrecoverable (RFC 9112 6.3) */
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 0\r\nCONTENT-LENGTH: 10\r\n\r\n");
    /* not a decimal number */
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: +5\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length:\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 5,\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 123456789012345678901234567890\r\n\r\n");
    /* a huge value with leading zeros is still one number: no overflow */
    EXPECT(200, "GET /metrics HTTP/1.1\r\nContent-Length: 0000000000000000000000000007\r\n"
                "Content-Length: 7\r\n\r\n");
    /* before the method check: a framing error is a 400 on any method */
    EXPECT(400, "POST /metrics HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
}

Test(admin_http, transfer_encoding)
{
    /* chunked alone: the body is never read, the connection closes */
    EXPECT(200, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT(200, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n");
    /* with Content-Length, in either order: 400 (RFC 9112 6.1, 6.3) */
    EXPECT(400, "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                "Content-Length: 5\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\ntransfer-encoding: chunked\r\n"
                "content-length: 0\r\n\r\n");
    /* a final coding other than chunked in a request: 400 (6.3, item 4) */
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                "Transfer-Encoding: identity\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n");
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n");
    /* a space before the colon is not a header name (smuggling's other trick) */
    EXPECT(400, "GET /metrics HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n");
}

Test(admin_http, after_the_head)
{
    /* what follows the blank line is neither headers nor a next request */
    EXPECT(200, "GET /metrics HTTP/1.1\r\nContent-Length: 31\r\n\r\n"
                "Content-Length: 9\r\nGARBAGE\r\n\r\n");
    EXPECT(200, "GET /metrics HTTP/1.1\r\n\r\nDELETE / HTTP/1.1\r\n\r\n");
    EXPECT(404, "GET / HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n");
}
