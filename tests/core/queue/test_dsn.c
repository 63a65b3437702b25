/*
 * NAME
 *	test_dsn - delivery status notifications, checked by a MIME parser
 * DESCRIPTION
 *	Each report is checked twice: octet rules here (CRLF only, 7-bit,
 *	lines <= 998), and its structure by Python's email package (the
 *	parser of another implementation, strict policy, no defects allowed)
 *	against what the test expects, passed as JSON.
 */
#include <criterion/criterion.h>

#include "core/queue/dsn.h"
#include "test_spoolmsg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct tsm spool;

static void setup(void)
{
    tsm_open(&spool);
}

static void teardown(void)
{
    tsm_close(&spool);
}

TestSuite(dsn, .init = setup, .fini = teardown);

/* argv[1]: the report; argv[2]: JSON expectations.  Exit 0 or print why. */
static const char checker[] =
    "import sys, json, email, email.policy, email.utils\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "x = json.loads(sys.argv[2])\n"
    "def need(c, what):\n"
    "    if not c:\n"
    "        print('FAIL:', what); sys.exit(1)\n"
    "m = email.message_from_bytes(data, policy=email.policy.default)\n"
    "need(not m.defects, 'defects %r' % m.defects)\n"
    "need(m.get_content_type() == 'multipart/report', 'type %s' % m.get_content_type())\n"
    "need(m.get_param('report-type') == 'delivery-status', 'report-type')\n"
    "need(m['Subject'] == x['subject'], 'subject %r' % m['Subject'])\n"
    "need(m['Auto-Submitted'] == 'auto-replied', 'auto-submitted')\n"
    "need(m['From'].addresses[0].addr_spec == 'MAILER-DAEMON@' + x['host'], 'from')\n"
    "need(m['To'].addresses[0].addr_spec == x['to'], 'to %r' % m['To'])\n"
    "need(m['Date'].datetime is not None and m['Date'].datetime.timestamp() == x['now'],\n"
    "     'date %r' % m['Date'])\n"
    "need(m['Message-ID'].startswith('<') and m['Message-ID'].endswith('@' + x['host'] + '>'),\n"
    "     'message-id')\n"
    "need(m['MIME-Version'] == '1.0', 'mime-version')\n"
    "parts = list(m.iter_parts())\n"
    "need(len(parts) == x['parts'], '%d parts' % len(parts))\n"
    "for p in parts:\n"
    "    need(not p.defects, 'part defects %r' % p.defects)\n"
    "need(parts[0].get_content_type() == 'text/plain', 'part 1 type')\n"
    "text = parts[0].get_content()\n"
    "for r in x['rcpts']:\n"
    "    need('<' + r['addr'] + '>' in text, 'text lacks ' + r['addr'])\n"
    "need(parts[1].get_content_type() == 'message/delivery-status', 'part 2 type')\n"
    "blocks = parts[1].get_payload()\n"
    "need(len(blocks) == 1 + len(x['rcpts']), '%d status blocks' % len(blocks))\n"
    "pm = blocks[0]\n"
    "need(pm['Reporting-MTA'] == 'dns; ' + x['host'], 'reporting-mta %r' % pm['Reporting-MTA'])\n"
    "need(email.utils.parsedate_to_datetime(pm['Arrival-Date']).timestamp() == x['arrival'],\n"
    "     'arrival-date')\n"
    "need(pm['X-Sluice-Queue-ID'] == x['qid'], 'queue id')\n"
    "for b, r in zip(blocks[1:], x['rcpts']):\n"
    "    need(b['Final-Recipient'] == r['final'], 'final-recipient %r' % b['Final-Recipient'])\n"
    "    need(b['Action'] == x['action'], 'action %r' % b['Action'])\n"
    "    need(b['Status'] == r['status'], 'status %r' % b['Status'])\n"
    "    need(b['Remote-MTA'] == (('dns; ' + r['mta']) if r['mta'] else None), 'remote-mta')\n"
    "    d = b['Diagnostic-Code']\n"
    "    d = ' '.join(d.split()) if d is not None else None\n"
    "    need(d == r['diag'], 'diagnostic-code %r' % d)\n"
    "    need(email.utils.parsedate_to_datetime(b['Last-Attempt-Date']).timestamp() ==\n"
    "         x['now'], 'last-attempt-date')\n"
    "    w = b['Will-Retry-Until']\n"
    "    if x['action'] == 'delayed':\n"
    "        need(w and email.utils.parsedate_to_datetime(w).timestamp() == x['until'], 'wru')\n"
    "    else:\n"
    "        need(w is None, 'will-retry-until in a failure')\n"
    "if x['parts'] == 3:\n"
    "    need(parts[2].get_content_type() == 'text/rfc822-headers', 'part 3 type')\n"
    "    h = parts[2].get_payload(decode=True)\n"
    "    need(bytes.fromhex(x['orig']) in h, 'original headers %r' % h[:200])\n"
    "    need(b'\\r\\n\\r\\n' not in h and len(h) <= 65536 + 4096, 'header section only')\n"
    "    if 'orig_absent' in x:\n"
    "        need(bytes.fromhex(x['orig_absent']) not in h, 'the body leaked in')\n"
    "print('OK')\n";

/* Runs the checker on report; its exit status (0: well-formed as expected)
 * and its output in why. */
static int check_py(const char *report, size_t len, const char *json, char *why, size_t whylen)
{
    char path[] = "/tmp/sluice-dsn-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, report, len), (ssize_t)len);
    close(fd);
    int out[2];
    cr_assert_eq(pipe(out), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(out[1], 2);
        execl("/usr/bin/python3", "python3", "-c", checker, path, json, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < whylen && (got = read(out[0], why + n, whylen - 1 - n)) > 0)
        n += (size_t)got;
    why[n] = '\0';
    close(out[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The octet rules: CRLF only, 7-bit, no NUL, lines <= 998. */
static void check_octets(const char *s, size_t len)
{
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        cr_assert(c != 0 && c < 0x80, "octet %u at %zu", c, i);
        if (c == '\r') {
            cr_assert(i + 1 < len && s[i + 1] == '\n', "bare CR at %zu", i);
            continue;
        }
        if (c == '\n') {
            cr_assert(i > 0 && s[i - 1] == '\r', "bare LF at %zu", i);
            col = 0;
            continue;
        }
        cr_assert_leq(++col, 998, "line over 998 octets at %zu", i);
    }
    cr_assert(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n', "no CRLF at the end");
}

static void hex(const char *s, char *out)
{
    for (; *s; s++, out += 2)
        sprintf(out, "%02x", (unsigned char)*s);
    *out = '\0';
}

static const char orig[] = "Received: from client.test by mx.sluice.test\r\n"
                           "From: Alice <alice@example.test>\r\n"
                           "To: bob@example.org, carol@example.org\r\n"
                           "Subject: Quarterly report\r\n"
                           "Message-ID: <q1@example.test>\r\n"
                           "\r\n"
                           "The body is not returned.\r\n";

static const struct dsn_rcpt two[] = {
    {.addr = "bob@example.org",
     .status = "5.1.1",
     .remote_mta = "mx.example.org",
     .diagnostic = "550 5.1.1 <bob@example.org>: Recipient address rejected: no such user"},
    {.addr = "carol@example.org", .status = "5.7.1", .remote_mta = NULL, .diagnostic = NULL},
};

static struct dsn_info info(bool delayed, const struct dsn_rcpt *r, size_t n)
{
    return (struct dsn_info){.hostname = "mx.sluice.test",
                             .sender = "alice@example.test",
                             .msg_id = 0x0102030405060708ull,
                             .arrival_ms = 1700000000123,
                             .now_ms = 1700003600456,
                             .delayed = delayed,
                             .retry_until_ms = 1700432000000,
                             .nrcpt = n,
                             .rcpts = r};
}

static struct spool_msg *orig_msg(void)
{
    size_t cuts[] = {30};
    return tsm_message(&spool, "alice@example.test", "bob@example.org", orig, sizeof(orig) - 1,
                       cuts, 1, NULL, 0);
}

static void expect_ok(const char *r, size_t len, const char *json)
{
    char why[4096];
    int st = check_py(r, len, json, why, sizeof(why));
    cr_assert_eq(st, 0, "python says (%d): %s\n--- report ---\n%.*s", st, why, (int)len, r);
}

Test(dsn, two_recipient_failure)
{
    struct spool_msg *m = orig_msg();
    struct dsn_info i = info(false, two, 2);
    char *r;
    size_t len;
    cr_assert_eq(dsn_build(&i, m, &r, &len), 0);
    check_octets(r, len);
    cr_assert(strstr(r, "\r\nStatus: 5.1.1\r\n") != NULL);
    char h[256];
    hex("Subject: Quarterly report", h);
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"subject\":\"Undelivered Mail Returned to Sender\",\"host\":\"mx.sluice.test\","
             "\"to\":\"alice@example.test\",\"now\":1700003600,\"arrival\":1700000000,"
             "\"qid\":\"0102030405060708\",\"parts\":3,\"action\":\"failed\",\"orig\":\"%s\","
             "\"orig_absent\":\"546865\","
             "\"rcpts\":[{\"addr\":\"bob@example.org\",\"final\":\"rfc822; bob@example.org\","
             "\"status\":\"5.1.1\",\"mta\":\"mx.example.org\",\"diag\":\"smtp; 550 5.1.1 "
             "<bob@example.org>: Recipient address rejected: no such user\"},"
             "{\"addr\":\"carol@example.org\",\"final\":\"rfc822; carol@example.org\","
             "\"status\":\"5.7.1\",\"mta\":null,\"diag\":null}]}",
             h);
    expect_ok(r, len, json);

    /* the checker is not a rubber stamp: the same report broken fails */
    char *bad = malloc(len + 64);
    const char *ds = strstr(r, "message/delivery-status");
    cr_assert_not_null(ds);
    memcpy(bad, r, len);
    memcpy(bad + (ds - r), "message/delivery-statis", 23);
    char why[4096];
    cr_assert_neq(check_py(bad, len, json, why, sizeof(why)), 0, "a wrong part type passed");
    memcpy(bad, r, len);
    const char *st = strstr(r, "Status: 5.7.1");
    memcpy(bad + (st - r), "Status: 5.7.2", 13);
    cr_assert_neq(check_py(bad, len, json, why, sizeof(why)), 0, "a wrong status passed");
    memcpy(bad, r, len);
    cr_assert_neq(check_py(bad, len - 40, json, why, sizeof(why)), 0, "a cut report passed");
    free(bad);
    free(r);
    spool_msg_free(m);
}

Test(dsn, delay_warning)
{
    static const struct dsn_rcpt one[] = {{.addr = "dave@slow.test",
                                           .status = "4.4.1",
                                           .remote_mta = "192.0.2.7",
                                           .diagnostic = "421 4.4.1 connection timed out"}};
    struct spool_msg *m = orig_msg();
    struct dsn_info i = info(true, one, 1);
    char *r;
    size_t len;
    cr_assert_eq(dsn_build(&i, m, &r, &len), 0);
    check_octets(r, len);
    char h[256];
    hex("Message-ID: <q1@example.test>", h);
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"subject\":\"Delayed Mail (still being retried)\",\"host\":\"mx.sluice.test\","
             "\"to\":\"alice@example.test\",\"now\":1700003600,\"arrival\":1700000000,"
             "\"until\":1700432000,\"qid\":\"0102030405060708\",\"parts\":3,"
             "\"action\":\"delayed\",\"orig\":\"%s\","
             "\"rcpts\":[{\"addr\":\"dave@slow.test\",\"final\":\"rfc822; dave@slow.test\","
             "\"status\":\"4.4.1\",\"mta\":\"192.0.2.7\",\"diag\":\"smtp; 421 4.4.1 connection "
             "timed out\"}]}",
             h);
    expect_ok(r, len, json);
    cr_assert(strstr(r, "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n") != NULL,
              "RFC 5322 date");
    free(r);
    spool_msg_free(m);
}

Test(dsn, no_message_two_parts_and_bad_status)
{
    static const struct dsn_rcpt one[] = {
        {.addr = "x@y.test", .status = "bogus", .remote_mta = NULL, .diagnostic = NULL}};
    struct dsn_info i = info(false, one, 1);
    char *r;
    size_t len;
    cr_assert_eq(dsn_build(&i, NULL, &r, &len), 0);
    check_octets(r, len);
    expect_ok(r, len,
              "{\"subject\":\"Undelivered Mail Returned to Sender\",\"host\":\"mx.sluice.test\","
              "\"to\":\"alice@example.test\",\"now\":1700003600,\"arrival\":1700000000,"
              "\"qid\":\"0102030405060708\",\"parts\":2,\"action\":\"failed\","
              "\"rcpts\":[{\"addr\":\"x@y.test\",\"final\":\"rfc822; x@y.test\","
              "\"status\":\"5.0.0\",\"mta\":null,\"diag\":null}]}");
    free(r);
}

Test(dsn, long_and_8bit_diagnostics_fold)
{
    /* 3000 octets of words, one 1500-octet word, control and 8-bit octets */
    char *diag = malloc(8000);
    size_t n = (size_t)sprintf(diag, "550 5.1.1 ");
    for (int k = 0; k < 300; k++)
        n += (size_t)sprintf(diag + n, "word%04d ", k);
    memset(diag + n, 'z', 1500);
    n += 1500;
    n += (size_t)sprintf(diag + n, " tab\there caf\xc3\xa9 bad\xff end");
    static struct dsn_rcpt one[1];
    one[0] = (struct dsn_rcpt){.addr = "j\xc3\xbcrgen@example.test",
                               .status = "5.1.1",
                               .remote_mta = "mx.example.test",
                               .diagnostic = diag};
    struct dsn_info i = info(false, one, 1);
    char *r;
    size_t len;
    cr_assert_eq(dsn_build(&i, NULL, &r, &len), 0);
    check_octets(r, len);
    /* the parser reassembles it: words kept, the long word cut in two */
    char *expect = malloc(9000);
    size_t e = (size_t)sprintf(expect, "smtp; 550 5.1.1 ");
    for (int k = 0; k < 300; k++)
        e += (size_t)sprintf(expect + e, "word%04d ", k);
    memset(expect + e, 'z', 900);
    e += 900;
    expect[e++] = ' ';
    memset(expect + e, 'z', 600);
    e += 600;
    sprintf(expect + e, " tab here caf\\\\x{00E9} bad\\\\x{FFFD} end");
    char *json = malloc(12000);
    snprintf(json, 12000,
             "{\"subject\":\"Undelivered Mail Returned to Sender\",\"host\":\"mx.sluice.test\","
             "\"to\":\"alice@example.test\",\"now\":1700003600,\"arrival\":1700000000,"
             "\"qid\":\"0102030405060708\",\"parts\":2,\"action\":\"failed\","
             "\"rcpts\":[{\"addr\":\"j\\\\x{00FC}rgen@example.test\","
             "\"final\":\"utf-8; j\\\\x{00FC}rgen@example.test\",\"status\":\"5.1.1\","
             "\"mta\":\"mx.example.test\",\"diag\":\"%s\"}]}",
             expect);
    expect_ok(r, len, json);
    free(json);
    free(expect);
    free(diag);
    free(r);
}

Test(dsn, eightbit_headers_go_quoted_printable)
{
    static const char o8[] = "Subject: Gr\xc3\xbc\xc3\x9f"
                             "e = hello\r\n"
                             "X-Long: ";
    size_t xl = 1200;
    size_t len8 = sizeof(o8) - 1 + xl + 2 + 2 + 5;
    char *body = malloc(len8);
    memcpy(body, o8, sizeof(o8) - 1);
    memset(body + sizeof(o8) - 1, 'L', xl);
    memcpy(body + sizeof(o8) - 1 + xl, "\r\n\r\nbody\n", 9);
    struct spool_msg *m =
        tsm_message(&spool, "alice@example.test", "b@x.test", body, len8, NULL, 0, NULL, 0);
    struct dsn_info i = info(false, two, 2);
    char *r;
    size_t len;
    cr_assert_eq(dsn_build(&i, m, &r, &len), 0);
    check_octets(r, len);
    cr_assert(strstr(r, "Content-Transfer-Encoding: quoted-printable\r\n") != NULL);
    char h[512];
    hex("Subject: Gr\xc3\xbc\xc3\x9f"
        "e = hello\r\nX-Long: LLLLLLLLLL",
        h);
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"subject\":\"Undelivered Mail Returned to Sender\",\"host\":\"mx.sluice.test\","
             "\"to\":\"alice@example.test\",\"now\":1700003600,\"arrival\":1700000000,"
             "\"qid\":\"0102030405060708\",\"parts\":3,\"action\":\"failed\",\"orig\":\"%s\","
             "\"orig_absent\":\"626f6479\","
             "\"rcpts\":[{\"addr\":\"bob@example.org\",\"final\":\"rfc822; bob@example.org\","
             "\"status\":\"5.1.1\",\"mta\":\"mx.example.org\",\"diag\":\"smtp; 550 5.1.1 "
             "<bob@example.org>: Recipient address rejected: no such user\"},"
             "{\"addr\":\"carol@example.org\",\"final\":\"rfc822; carol@example.org\","
             "\"status\":\"5.7.1\",\"mta\":null,\"diag\":null}]}",
             h);
    expect_ok(r, len, json);
    free(r);
    free(body);
    spool_msg_free(m);
}

Test(dsn, header_section_capped_at_a_line)
{
    /* 100 KiB of header lines and no empty line within 64 KiB */
    size_t lines = 1600, len = 0;
    char *body = malloc(lines * 64 + 64);
    len += (size_t)sprintf(body, "Subject: many headers\r\n");
    for (size_t k = 0; k < lines; k++)
        len += (size_t)sprintf(body + len, "X-H%05zu: %048zu\r\n", k, k);
    len += (size_t)sprintf(body + len, "\r\nbody\r\n");
    struct spool_msg *m =
        tsm_message(&spool, "alice@example.test", "b@x.test", body, len, NULL, 0, NULL, 0);
    struct dsn_info i = info(false, two, 1);
    char *r;
    size_t rlen;
    cr_assert_eq(dsn_build(&i, m, &r, &rlen), 0);
    check_octets(r, rlen);
    const char *part = strstr(r, "Content-Type: text/rfc822-headers\r\n\r\n");
    cr_assert_not_null(part);
    part += strlen("Content-Type: text/rfc822-headers\r\n\r\n");
    const char *end = strstr(part, "\r\n--=_sluice_");
    cr_assert_not_null(end);
    size_t plen = (size_t)(end - part);
    cr_assert_leq(plen, 65536);
    cr_assert_geq(plen, 65536 - 64);
    cr_assert_eq(memcmp(part, body, plen), 0, "the section is the message's first lines");
    cr_assert(part[plen - 1] == '\n' && part[plen - 2] == '\r', "cut inside a line");
    free(r);
    free(body);
    spool_msg_free(m);
}

Test(dsn, boundaries_differ)
{
    struct dsn_info i = info(false, two, 2);
    char *a, *b;
    size_t la, lb;
    cr_assert_eq(dsn_build(&i, NULL, &a, &la), 0);
    cr_assert_eq(dsn_build(&i, NULL, &b, &lb), 0);
    const char *ba = strstr(a, "boundary=\""), *bb = strstr(b, "boundary=\"");
    cr_assert(ba && bb);
    cr_assert_neq(strncmp(ba, bb, 60), 0, "two reports, one boundary");
    const char *mid_a = strstr(a, "Message-ID:"), *mid_b = strstr(b, "Message-ID:");
    cr_assert_neq(strncmp(mid_a, mid_b, 60), 0, "two reports, one Message-ID");
    free(a);
    free(b);
}
