/*
 * NAME
 *	json - the one JSON writer: into a fixed buffer or a growing one
 * SYNOPSIS
 *	#include "core/base/json.h"
 *
 *	char line[512];
 *	struct json_buf b;
 *	json_init(&b, line, sizeof(line), 1);	// fixed; 1 octet kept back
 *	json_obj(&b);
 *	json_key(&b, "id"), json_str(&b, id);
 *	json_key(&b, "size"), json_uint(&b, size);
 *	json_end(&b);				// always fits: room was kept
 *
 *	struct json_buf g;
 *	json_init_grow(&g);			// realloc'd; json_take() hands it over
 *	json_spaced(&g);			// ", " and ": " between members
 *	...
 *	char *text = json_take(&g);		// caller frees; NULL if out of memory
 * DESCRIPTION
 *	The writer keeps the nesting (at most JSON_DEPTH_MAX containers) and
 *	puts the commas: every value (json_str, json_int, json_obj, ...) is
 *	preceded by a separator when its container already has a member, a
 *	key is followed by ':' and its value by nothing.  Separators are ","
 *	and ":" (compact) or ", " and ": " after json_spaced(); json_break()
 *	puts other white space (a new line and an indent) before the next
 *	member.  Values at the top level get no separator.
 *
 *	json_text() and json_textf() append text as it is, outside the
 *	nesting: for a caller that lays out its own punctuation, or writes
 *	something that is not JSON and wants JSON string literals in it.
 *	json_verbatim() is a value the caller already has as JSON text.
 *
 *	Strings: any octets in, valid JSON out.  '"' and '\' are escaped,
 *	\b \f \n \r \t by their short forms, other controls (NUL included,
 *	for the counted forms) and DEL as \u00XX (lower-case hex); well-formed
 *	UTF-8 (utf8.h, RFC 3629) is copied, and every octet that is not part
 *	of a well-formed sequence becomes \ufffd (U+FFFD), one per octet.
 *
 *	Fixed buffers (json_init: the storage is the caller's, borrowed until
 *	the last call): nothing is allocated.  Every write is all or nothing
 *	and keeps back room for the closing bracket of each open container
 *	plus `reserve` octets for the caller's own ending; the text is always
 *	NUL-terminated.  What does not fit is not written: the buffer is then
 *	full and refuses all further writes except json_end(), so the text is
 *	a clean prefix that json_end() can still close: truncated, never
 *	broken.  json_str_cut() is the exception that cuts a string at a
 *	character boundary (never inside an escape or a UTF-8 sequence) and
 *	still closes its quotes.  A value that does not fit takes its key
 *	back with it; json_mark()/json_rewind() take back more (a member
 *	the caller wants whole or not at all).
 *
 *	Growing buffers (json_init_grow): the buffer owns the storage until
 *	json_take() hands it to the caller (or json_fini() frees it).  A
 *	failed allocation makes the buffer full, and json_take() returns NULL.
 *	json_drain() lets a caller that has written out the text so far
 *	(e.g. to stdout) start the storage again, keeping the nesting.
 *	json_fput_str() is the string literal alone, written on a stdio
 *	stream (for text formats that quote the JSON way).
 * DIAGNOSTICS
 *	The writes return false when the buffer is (or just became) full;
 *	b->full says the same afterwards.  Nesting deeper than JSON_DEPTH_MAX,
 *	or json_end() with nothing open, is a caller's bug: a panic.
 */
#ifndef SLUICE_CORE_BASE_JSON_H
#define SLUICE_CORE_BASE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH_MAX 62

/* Where json_rewind() goes back to. */
struct json_mark {
    size_t len;
    unsigned depth;
    uint64_t more, arr;
    bool after_key;
};

struct json_buf {
    char *p;              /* the text, NUL-terminated (grow: NULL until the first write) */
    size_t len;           /* octets of text */
    size_t cap;           /* octets of storage at p */
    size_t reserve;       /* fixed: octets kept back for the caller's ending */
    bool grow;            /* p is realloc'd, and owned by the buffer */
    bool full;            /* a write did not fit, or an allocation failed */
    bool spaced;          /* ", " and ": " */
    bool after_key;       /* the next value follows a key: no separator */
    const char *brk;      /* white space before the next member (json_break), or NULL */
    unsigned depth;       /* open containers */
    uint64_t more;        /* bit d: the container at depth d has a member */
    uint64_t arr;         /* bit d: the container at depth d is an array */
    struct json_mark key; /* before the last key: a value that fails takes it back */
};

/* p: borrowed storage of cap octets (cap > reserve). */
void json_init(struct json_buf *b, char *p, size_t cap, size_t reserve);
void json_init_grow(struct json_buf *b);
void json_spaced(struct json_buf *b);
/* The storage (caller frees), or NULL after an allocation failure; the
 * buffer is empty again (grow only). */
char *json_take(struct json_buf *b);
void json_fini(struct json_buf *b);
void json_drain(struct json_buf *b);

bool json_text(struct json_buf *b, const char *s, size_t n);
bool json_textf(struct json_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void json_break(struct json_buf *b, const char *ws); /* ws: borrowed until the next member */

bool json_obj(struct json_buf *b);
bool json_arr(struct json_buf *b);
void json_end(struct json_buf *b);
bool json_key(struct json_buf *b, const char *k);

bool json_str(struct json_buf *b, const char *s); /* NULL: "" */
bool json_strn(struct json_buf *b, const char *s, size_t n);
bool json_str_cut(struct json_buf *b, const char *s, size_t n);
bool json_int(struct json_buf *b, int64_t v);
bool json_uint(struct json_buf *b, uint64_t v);
bool json_bool(struct json_buf *b, bool v);
bool json_null(struct json_buf *b);
bool json_verbatim(struct json_buf *b, const char *json, size_t n);

/* s as a JSON string literal on f (NULL: ""): 0, -ENOMEM or -EIO. */
int json_fput_str(FILE *f, const char *s);

void json_mark(const struct json_buf *b, struct json_mark *m);
void json_rewind(struct json_buf *b, const struct json_mark *m);

#endif
