/*
 * NAME
 *	test_record - record, envelope, COMMIT and name codecs
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "storage/spool_int.h"

/* Encodes a record into buf (header, payload, padding); returns its size. */
static size_t mk_record(unsigned char *buf, uint32_t type, uint64_t id, const void *p, uint32_t len)
{
    spool_rec_hdr_encode(buf, type, len, id, spool_crc32c(0, p, len));
    memcpy(buf + SPOOL_REC_HDR, p, len);
    memset(buf + SPOOL_REC_HDR + len, 0, spool_pad8(len) - len);
    return SPOOL_REC_HDR + spool_pad8(len);
}

Test(record, header_round_trip)
{
    unsigned char buf[256];
    const char *data = "hello, spool";
    size_t n = mk_record(buf, SPOOL_REC_DATA, 0x1122334455667788ull, data, 12);
    cr_assert_eq(n, 24 + 16);
    struct spool_rec rec;
    cr_assert_null(spool_rec_hdr_decode(buf, &rec));
    cr_assert_eq(rec.type, SPOOL_REC_DATA);
    cr_assert_eq(rec.len, 12);
    cr_assert_eq(rec.id, 0x1122334455667788ull);
    cr_assert_null(spool_rec_payload_check(buf, &rec, buf + 24));
    cr_assert_eq(rec.pcrc, spool_crc32c(0, data, 12));
    /* little-endian on disk whatever the host */
    cr_assert_eq(buf[4], 12);
    cr_assert_eq(buf[8], 0x88);
    cr_assert_eq(buf[15], 0x11);
}

Test(record, every_flipped_bit_is_caught)
{
    unsigned char buf[256], bad[256];
    size_t n = mk_record(buf, SPOOL_REC_DATA, 42, "abcdefghij", 10);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, buf, n);
            bad[i] ^= (unsigned char)(1 << bit);
            struct spool_rec rec;
            const char *why = spool_rec_hdr_decode(bad, &rec);
            if (why == NULL && SPOOL_REC_HDR + spool_pad8(rec.len) <= n)
                why = spool_rec_payload_check(bad, &rec, bad + 24);
            else if (why == NULL)
                why = "length changed";
            cr_assert_not_null(why, "flip at %zu bit %d accepted", i, bit);
        }
    }
}

Test(record, header_rejections)
{
    unsigned char buf[64], bad[64];
    struct spool_rec rec;
    mk_record(buf, SPOOL_REC_ABORT, 9, "", 0);
    cr_assert_null(spool_rec_hdr_decode(buf, &rec));

    memcpy(bad, buf, sizeof(bad));
    bad[3] = 'X';
    cr_assert_str_eq(spool_rec_hdr_decode(bad, &rec), "bad record magic");

    mk_record(bad, 9, 9, "", 0);
    cr_assert_str_eq(spool_rec_hdr_decode(bad, &rec), "unknown record type");

    mk_record(bad, SPOOL_REC_DATA, 9, "", 0);
    spool_put32(bad + 4, SPOOL_REC_MAX + 1);
    cr_assert_str_eq(spool_rec_hdr_decode(bad, &rec), "record length exceeds the limit");

    mk_record(bad, SPOOL_REC_DATA, 0, "x", 1);
    cr_assert_str_eq(spool_rec_hdr_decode(bad, &rec), "zero message id");

    mk_record(bad, SPOOL_REC_COMMIT, 9, "12345678", 8);
    cr_assert_not_null(spool_rec_hdr_decode(bad, &rec));

    mk_record(bad, SPOOL_REC_DATA, 9, "x", 1);
    bad[SPOOL_REC_HDR + 3] = 1; /* padding */
    cr_assert_null(spool_rec_hdr_decode(bad, &rec));
    cr_assert_str_eq(spool_rec_payload_check(bad, &rec, bad + 24), "non-zero padding");
}

Test(record, envelope_round_trip)
{
    const char *rcpts[] = {"a@example.org", "", "\"quoted local\"@example.net"};
    struct spool_env env = {.arrival_ms = 1700000000123,
                            .client = "2001:db8::1",
                            .helo = "mx.example",
                            .sender = "",
                            .params = "BODY=8BITMIME SMTPUTF8",
                            .nrcpt = 3,
                            .rcpts = rcpts};
    uint64_t n = spool_env_len(&env);
    unsigned char *p = malloc(n);
    spool_env_encode(&env, p);
    struct spool_msginfo m;
    struct spool_envdec d = {0};
    cr_assert_eq(spool_env_decode(p, n, &m, &d), 0);
    cr_assert_eq(m.arrival_ms, env.arrival_ms);
    cr_assert_str_eq(m.client, env.client);
    cr_assert_str_eq(m.helo, env.helo);
    cr_assert_str_eq(m.sender, "");
    cr_assert_str_eq(m.params, env.params);
    cr_assert_eq(m.nrcpt, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(m.rcpts[i], rcpts[i]);
    cr_assert_null(m.rcpts[3]);
    /* every truncation and one extra octet are refused */
    for (uint64_t k = 0; k < n; k++)
        cr_assert_eq(spool_env_decode(p, k, &m, &d), -EBADMSG, "prefix %llu",
                     (unsigned long long)k);
    unsigned char *q = malloc(n + 1);
    memcpy(q, p, n);
    q[n] = 0;
    cr_assert_eq(spool_env_decode(q, n + 1, &m, &d), -EBADMSG);
    /* an absurd rcpt count */
    spool_put32(q + 8 + 16 + strlen(env.client) + strlen(env.helo) + strlen(env.params),
                0xffffffffu);
    cr_assert_eq(spool_env_decode(q, n, &m, &d), -EBADMSG);
    spool_envdec_fini(&d);
    free(p);
    free(q);
}

Test(record, commit_codec)
{
    unsigned char c[SPOOL_COMMIT_LEN];
    uint64_t size;
    uint32_t crc;
    spool_commit_encode(c, 123456789012ull, 0xdeadbeefu);
    cr_assert(spool_commit_decode(c, sizeof(c), &size, &crc));
    cr_assert_eq(size, 123456789012ull);
    cr_assert_eq(crc, 0xdeadbeefu);
    cr_assert_not(spool_commit_decode(c, 8, &size, &crc));
}

Test(record, segment_names)
{
    char name[SPOOL_SEG_NAME_LEN + 1];
    unsigned w;
    uint64_t seq;
    spool_seg_name(name, 0xab, 0x1234);
    cr_assert_str_eq(name, "seg-ab-00001234.sg");
    cr_assert(spool_seg_parse(name, &w, &seq));
    cr_assert_eq(w, 0xab);
    cr_assert_eq(seq, 0x1234);
    const char *bad[] = {"seg-ab-00001234.sgx",
                         "seg-AB-00001234.sg",
                         "seg-ab-0000123.sg",
                         "seg-ab_00001234.sg",
                         "lock",
                         "seg-ab-00001234.sg.tmp",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(spool_seg_parse(bad[i], &w, &seq), "%s", bad[i]);
}

Test(record, message_ids)
{
    char s[17];
    uint64_t id;
    spool_id_str(0x0123456789abcdefull, s);
    cr_assert_str_eq(s, "0123456789abcdef");
    cr_assert(spool_id_parse(s, &id));
    cr_assert_eq(id, 0x0123456789abcdefull);
    cr_assert(spool_id_parse("0123456789ABCDEF", &id));
    cr_assert_eq(id, 0x0123456789abcdefull);
    cr_assert_not(spool_id_parse("0123456789abcde", &id));
    cr_assert_not(spool_id_parse("0123456789abcdef0", &id));
    cr_assert_not(spool_id_parse("0123456789abcdeg", &id));
    cr_assert_not(spool_id_parse("", &id));
}
