/*
 * NAME
 *	utf8 - the one UTF-8 validator (RFC 3629, strict)
 * SYNOPSIS
 *	#include "core/base/utf8.h"
 *
 *	bool utf8_valid(const void *p, size_t n);
 *	size_t utf8_valid_prefix(const void *p, size_t n);
 *	size_t utf8_decode(const void *p, size_t n, uint32_t *cp);
 * DESCRIPTION
 *	Well-formed UTF-8 as RFC 3629 section 4 defines it: no overlong
 *	forms (C0, C1, E0 80..9F, F0 80..8F), no surrogates (ED A0..BF),
 *	nothing above U+10FFFF (F4 90.., F5..FF), no lone continuation
 *	octet and no sequence cut by the end of the input.  NUL and other
 *	control characters are valid UTF-8: callers that refuse them say so.
 *
 *	utf8_valid() says whether all n octets at p are well formed.
 *	utf8_valid_prefix() returns how many octets from p are: n when all
 *	are, else the offset of the first bad sequence.
 *	utf8_decode() reads the one sequence at p (n >= 1 octets left): its
 *	length 1..4 and, if cp is not NULL, its code point in *cp; 0 when
 *	the octets at p do not start a well-formed sequence (*cp untouched).
 * DIAGNOSTICS
 *	None: these are pure functions of their input, safe from any thread.
 */
#ifndef SLUICE_CORE_BASE_UTF8_H
#define SLUICE_CORE_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

size_t utf8_decode(const void *p, size_t n, uint32_t *cp);
size_t utf8_valid_prefix(const void *p, size_t n);
bool utf8_valid(const void *p, size_t n);

#endif
