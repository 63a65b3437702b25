/*
 * NAME
 *	milter_proto - the Sendmail milter protocol (version 6), MTA side:
 *	packets out, replies in; no I/O
 * SYNOPSIS
 *	#include "sinks/milter_proto.h"
 *
 *	struct milter_buf b = {0};
 *	milter_put_optneg(&b, MILTER_VERSION, actions, protocol);
 *	milter_put(&b, MILTER_C_HELO, "mx.example", (size_t)-1, NULL);
 *
 *	struct milter_reply r;
 *	ssize_t used = milter_parse(in, inlen, &r);
 * DESCRIPTION
 *	A packet is a 4-octet length in network order (counting the command
 *	octet and the data), one command octet and its data; strings are
 *	NUL-terminated, integers 4 octets in network order (libmilter's
 *	mfdef.h, Postfix's milter8.c).  The builders append whole packets to
 *	a growable buffer; milter_parse() takes one reply packet from the
 *	front of the received octets and decodes it into a view over them.
 *
 *	The constants carry libmilter's values (SMFIC_*, SMFIR_*, SMFIF_*,
 *	SMFIP_*, SMFIM_*) under this module's prefix.
 * DIAGNOSTICS
 *	milter_parse() returns the octets used (> 0), 0 when the packet is
 *	not complete yet, or -EPROTO (a packet that is malformed, over
 *	MILTER_MAX_PACKET, or a reply whose data does not fit its command:
 *	the connection cannot be trusted after it).  Builders return 0 or
 *	-ENOMEM.
 */
#ifndef SLUICE_SINKS_MILTER_PROTO_H
#define SLUICE_SINKS_MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MILTER_VERSION 6
#define MILTER_CHUNK 65535           /* body octets per SMFIC_BODY */
#define MILTER_MAX_PACKET (1u << 20) /* a reply longer than this is refused */

/* commands, MTA to milter */
enum {
    MILTER_C_ABORT = 'A',
    MILTER_C_BODY = 'B',
    MILTER_C_CONNECT = 'C',
    MILTER_C_MACRO = 'D',
    MILTER_C_EOB = 'E',
    MILTER_C_HELO = 'H',
    MILTER_C_QUIT_NC = 'K',
    MILTER_C_HEADER = 'L',
    MILTER_C_MAIL = 'M',
    MILTER_C_EOH = 'N',
    MILTER_C_OPTNEG = 'O',
    MILTER_C_QUIT = 'Q',
    MILTER_C_RCPT = 'R',
    MILTER_C_DATA = 'T',
    MILTER_C_UNKNOWN = 'U',
};

/* replies and actions, milter to MTA */
enum {
    MILTER_R_ADDRCPT = '+',
    MILTER_R_DELRCPT = '-',
    MILTER_R_ADDRCPT_PAR = '2',
    MILTER_R_SHUTDOWN = '4',
    MILTER_R_ACCEPT = 'a',
    MILTER_R_REPLBODY = 'b',
    MILTER_R_CONTINUE = 'c',
    MILTER_R_DISCARD = 'd',
    MILTER_R_CHGFROM = 'e',
    MILTER_R_CONN_FAIL = 'f',
    MILTER_R_ADDHEADER = 'h',
    MILTER_R_INSHEADER = 'i',
    MILTER_R_SETSYMLIST = 'l',
    MILTER_R_CHGHEADER = 'm',
    MILTER_R_PROGRESS = 'p',
    MILTER_R_QUARANTINE = 'q',
    MILTER_R_REJECT = 'r',
    MILTER_R_SKIP = 's',
    MILTER_R_TEMPFAIL = 't',
    MILTER_R_REPLYCODE = 'y',
    MILTER_R_OPTNEG = 'O',
};

/* actions a milter may ask for (SMFIF_*) */
#define MILTER_F_ADDHDRS 0x001u
#define MILTER_F_CHGBODY 0x002u
#define MILTER_F_ADDRCPT 0x004u
#define MILTER_F_DELRCPT 0x008u
#define MILTER_F_CHGHDRS 0x010u
#define MILTER_F_QUARANTINE 0x020u
#define MILTER_F_CHGFROM 0x040u
#define MILTER_F_ADDRCPT_PAR 0x080u
#define MILTER_F_SETSYMLIST 0x100u

/* protocol steps and flags (SMFIP_*) */
#define MILTER_P_NOCONNECT 0x00000001u
#define MILTER_P_NOHELO 0x00000002u
#define MILTER_P_NOMAIL 0x00000004u
#define MILTER_P_NORCPT 0x00000008u
#define MILTER_P_NOBODY 0x00000010u
#define MILTER_P_NOHDRS 0x00000020u
#define MILTER_P_NOEOH 0x00000040u
#define MILTER_P_NR_HDR 0x00000080u
#define MILTER_P_NOUNKNOWN 0x00000100u
#define MILTER_P_NODATA 0x00000200u
#define MILTER_P_SKIP 0x00000400u
#define MILTER_P_RCPT_REJ 0x00000800u
#define MILTER_P_NR_CONN 0x00001000u
#define MILTER_P_NR_HELO 0x00002000u
#define MILTER_P_NR_MAIL 0x00004000u
#define MILTER_P_NR_RCPT 0x00008000u
#define MILTER_P_NR_DATA 0x00010000u
#define MILTER_P_NR_UNKN 0x00020000u
#define MILTER_P_NR_EOH 0x00040000u
#define MILTER_P_NR_BODY 0x00080000u
#define MILTER_P_HDR_LEADSPC 0x00100000u

/* macro stages (SMFIM_*), the index of a symbol list */
enum milter_stage {
    MILTER_M_CONNECT,
    MILTER_M_HELO,
    MILTER_M_ENVFROM,
    MILTER_M_ENVRCPT,
    MILTER_M_DATA,
    MILTER_M_EOM,
    MILTER_M_EOH,
    MILTER_M_COUNT
};

/* What the MTA side offers: every action; every step and no-reply flag
 * (no SKIP of unknown commands: sluice does not send them). */
#define MILTER_ACTIONS_ALL 0x1ffu
#define MILTER_PROTO_OFFER 0x001fffffu

/* A growable octet buffer: [off, len) is what is left to use. */
struct milter_buf {
    unsigned char *p;
    size_t len, cap, off;
};

void milter_buf_free(struct milter_buf *b);
/* Drops what was used; keeps the memory. */
void milter_buf_compact(struct milter_buf *b);
int milter_buf_append(struct milter_buf *b, const void *p, size_t n);
static inline size_t milter_buf_left(const struct milter_buf *b)
{
    return b->len - b->off;
}

/* One packet: cmd, then each (pointer, length) pair of the NULL-ended
 * list; a length of (size_t)-1 means a string sent with its NUL. */
int milter_put(struct milter_buf *b, int cmd, ...);
int milter_put_optneg(struct milter_buf *b, uint32_t version, uint32_t actions, uint32_t proto);
/* SMFIC_CONNECT: host name, family ('4', '6', 'L' unix, 'U' unknown),
 * port, address (the path for 'L'). */
int milter_put_connect(struct milter_buf *b, const char *host, char family, uint16_t port,
                       const char *addr);
/* SMFIC_MAIL / SMFIC_RCPT: "<addr>" then each ESMTP argument of params
 * (space-separated, as sink_mail_params() gives them). */
int milter_put_envelope(struct milter_buf *b, int cmd, const char *addr, const char *params);
/* SMFIC_MACRO for the command cmd: n name/value pairs (names as the
 * milter asked, e.g. "{client_addr}" or "j"). */
int milter_put_macros(struct milter_buf *b, int cmd, size_t n, const char *const *names,
                      const char *const *values);

/* One reply, decoded; strings point into the parsed octets (valid until
 * the buffer changes) and are NUL-terminated there. */
struct milter_reply {
    int cmd;           /* MILTER_R_* */
    const char *s1;    /* header name, recipient, from, reason, reply text */
    const char *s2;    /* header value, ESMTP args (NULL if none) */
    uint32_t index;    /* insheader, chgheader, setsymlist stage */
    const unsigned char *data; /* replbody: the octets */
    size_t len;
    /* optneg */
    uint32_t version, actions, proto;
    const unsigned char *macros; /* optneg: the rest, symbol lists */
    size_t macros_len;
};

ssize_t milter_parse(const unsigned char *p, size_t n, struct milter_reply *r);

/* The symbol lists an optneg reply carries: calls fn(stage, list) for
 * each; -EPROTO if malformed. */
int milter_optneg_symlists(const struct milter_reply *r,
                           void (*fn)(void *arg, uint32_t stage, const char *list), void *arg);

/* "accept", "reject", ... for a reply command (logs), "?" if unknown. */
const char *milter_reply_name(int cmd);

#endif
