/*
 * NAME
 *	fuzz_smtp_cmd - the SMTP command argument parsers
 * DESCRIPTION
 *	The input is a command line's argument text (the part smtp_cmd.c
 *	hands on after "MAIL FROM:" / "RCPT TO:" / "EHLO "), as the session
 *	delivers it: CRLF removed, NUL-terminated.  It goes through the path
 *	parser (reverse-path and forward-path), then what follows the path
 *	through the MAIL and RCPT parameter parsers (with and without
 *	ESMTP), and the whole through the HELO, UTF-8 and xtext checks.
 *
 *	Invariants: a parsed path fits its buffer, its length is what it
 *	says, it holds no control octet (nothing a spool record or a header
 *	could be split with: P12), its local part is inside it; <> only
 *	where allowed; the normalized MAIL parameters are NUL-terminated
 *	inside their buffer and printable.
 */
#include "tests/fuzz/fuzz.h"

#include <string.h>

#include "core/base/addr.h"
#include "core/base/utf8.h"
#include "core/smtpd/smtp_int.h"

static void check_printable(const char *s, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f, "%s: octet 0x%02x at %zu", what,
                   (unsigned char)s[i], i);
}

static void one_path(const char *line, bool allow_null)
{
    struct addr_path path;
    const char *p = line;
    enum addr_err e = addr_path_parse(&p, allow_null, &path);
    if (e != ADDR_OK)
        return;
    FUZZ_CHECK(p > line && p <= line + strlen(line), "path end outside the line");
    FUZZ_CHECK(path.len <= ADDR_PATH_MAX && path.len == strlen(path.addr), "len %zu", path.len);
    FUZZ_CHECK(path.local_len <= path.len && path.local_len <= ADDR_LOCAL_MAX, "local_len %zu",
               path.local_len);
    FUZZ_CHECK(allow_null || path.len > 0, "<> accepted as a forward-path");
    check_printable(path.addr, path.len, "path");
    while (*p == ' ')
        p++;
    for (int esmtp = 0; esmtp < 2; esmtp++) {
        struct smtp_mail_params mp;
        if (smtp_mail_params_parse(p, esmtp, &mp) == SMTP_R_NONE) {
            size_t n = strnlen(mp.norm, sizeof(mp.norm));
            FUZZ_CHECK(n < sizeof(mp.norm), "norm not terminated");
            check_printable(mp.norm, n, "params");
            FUZZ_CHECK(esmtp || n == 0, "parameters after HELO");
        }
        (void)smtp_rcpt_params_parse(p, esmtp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4 * SMTP_LINE_MAX)
        return 0; /* the session refuses longer lines before parsing */
    char *line = fuzz_str(data, size);
    one_path(line, true);
    one_path(line, false);
    bool helo = smtp_helo_valid(line, size);
    if (helo)
        check_printable(line, size, "helo");
    (void)utf8_valid(line, size);
    (void)smtp_xtext_valid(line, size);
    free(line);
    return 0;
}
