/*
 * NAME
 *	addr - the one RFC 5321 mailbox and path parser
 * SYNOPSIS
 *	#include "core/base/addr.h"
 *
 *	const char *p = arg;
 *	struct addr_path path;
 *	if (addr_path_parse(&p, true, &path) == ADDR_OK) ...
 *
 *	bool addr_mailbox_ok(const char *mailbox);
 * DESCRIPTION
 *	The grammar is RFC 5321 4.1.2 with RFC 6531 3.3 (UTF-8 in atext,
 *	qtext and domain labels):
 *
 *	Path        = "<" [ A-d-l ":" ] Mailbox ">"     (the route is dropped)
 *	Mailbox     = Local-part [ "@" ( Domain / address-literal ) ]
 *	Local-part  = Dot-string / Quoted-string        (at most 64 octets)
 *	Domain      = labels of letters, digits, '-' (not first or last) or
 *	              UTF-8, at most 63 octets an ASCII label, 255 in all
 *	address-literal = "[" IPv4 "]" / "[IPv6:" IPv6 "]"
 *
 *	and a mailbox of at most 254 octets (a path of 256 with <>).
 *	Nothing is lenient about shell metacharacters: ';' is not atext.
 *
 *	addr_path_parse() reads the path at *pp and leaves *pp after its
 *	'>'; allow_null accepts "<>" (a reverse-path).  A mailbox without a
 *	domain is returned with has_domain false (the caller decides, e.g.
 *	<postmaster>, RFC 5321 4.5.1).  The caller has checked that the text
 *	is UTF-8 (octets >= 0x80 are taken as parts of valid sequences).
 *
 *	addr_mailbox_ok() checks a whole NUL-terminated string as a mailbox
 *	as it travels in an envelope (no brackets, no route): it must have a
 *	domain and be valid UTF-8.
 * DIAGNOSTICS
 *	ADDR_SYNTAX or ADDR_TOO_LONG (a part over its limit); nothing is
 *	logged.
 */
#ifndef SLUICE_CORE_BASE_ADDR_H
#define SLUICE_CORE_BASE_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_PATH_MAX 256   /* path incl. <> (RFC 5321 4.5.3.1.3) */
#define ADDR_LOCAL_MAX 64   /* local part (4.5.3.1.1) */
#define ADDR_DOMAIN_MAX 255 /* domain (4.5.3.1.2) */

struct addr_path {
    char addr[ADDR_PATH_MAX + 1]; /* mailbox, no <> or source route; "" = <> */
    size_t len;
    size_t local_len; /* octets of the local part (quotes included) */
    bool has_domain;  /* false for <> and <postmaster> */
    bool literal;     /* the domain is an address literal [..] */
    bool non_ascii;   /* UTF-8 somewhere (needs SMTPUTF8) */
};

enum addr_err { ADDR_OK, ADDR_SYNTAX, ADDR_TOO_LONG };

enum addr_err addr_path_parse(const char **pp, bool allow_null, struct addr_path *out);
bool addr_mailbox_ok(const char *mailbox);

#endif
