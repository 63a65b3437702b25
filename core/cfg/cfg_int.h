/*
 * NAME
 *	cfg_int - details shared by the files of the cfg module
 * SYNOPSIS
 *	#include "core/cfg/cfg_int.h"
 * DESCRIPTION
 *	The node layout (cfg_parse.c builds it, cfg_table.c reads the unit
 *	of a number from it) and the number scanner both of them use, so a
 *	quoted "64mb" in a JSON file means what a bare 64mb means in UCL.
 *
 *	Spans: the parser records where each node stands in the text, so
 *	cfg_edit.c finds what to replace with the parser's own lexer rather
 *	than a second one.  [start, end) is the node's whole entry: from its
 *	key (an array item: its value) through the `;` or `,` that ends it
 *	on its line, if any; [vstart, vend) is the value alone (a block: its
 *	braces).  The top level spans the whole text, or its braces.
 *
 *	Lifting: `binding { NAME { ... } }` - how a JSON file writes
 *	`binding "NAME" { ... }` - becomes the labelled block, as libucl
 *	reads it (cfg_node_lift).
 *
 *	Other modules include only core/cfg/cfg.h.
 */
#ifndef SLUICE_CORE_CFG_INT_H
#define SLUICE_CORE_CFG_INT_H

#include "core/cfg/cfg.h"

#define CFG_MAX_INPUT (4u << 20) /* bytes; larger input is refused */
#define CFG_MAX_DEPTH 32         /* nested arrays/objects below the top level */

/* What the suffix of a number said about it. */
enum cfg_unit {
    CFG_UNIT_NONE, /* plain number */
    CFG_UNIT_SIZE, /* k m g kb mb gb: the value is already multiplied out */
    CFG_UNIT_TIME, /* ms s min h d w: the value is in milliseconds (CFG_INT) */
};

struct cfg_node {
    enum cfg_type type;
    enum cfg_unit unit; /* numbers only */
    unsigned line;
    char *key;   /* owned; NULL for array items and the top level */
    char *label; /* owned; `key "label" { }` */
    char *text;  /* owned; STRING value, or a bare word as written */
    union {
        bool b;
        int64_t i;
        double f;
    } v;
    struct cfg_node **kid; /* owned, with the nodes they point to */
    size_t nkid, capkid;
    size_t start, end;   /* the entry in the text, see above */
    size_t vstart, vend; /* the value alone */
    bool braced;         /* the top level: the file is one { } object */
    bool lifted;         /* from `KEY { NAME { } }`: the key in the text is NAME */
};

/* A scanned number: CFG_INT (v.i) or CFG_FLOAT (v.f). */
struct cfg_num {
    enum cfg_type type;
    enum cfg_unit unit;
    int64_t i;
    double f;
};

/*
 * Scans s[0..len) as a whole as a number with an optional suffix.  Returns 0,
 * -EINVAL if it is not a number (the caller may treat it as a string), or
 * -ERANGE if it is one but does not fit.  s is borrowed.
 */
int cfg_num_scan(const char *s, size_t len, struct cfg_num *out);

/* Double to integer without libm (sluice_cfg links libc only).  NaN and
 * anything beyond +-9.2e18 do not fit. */
static inline bool cfg_fits_int(double f)
{
    return f > -9.2e18 && f < 9.2e18;
}
static inline bool cfg_is_whole(double f)
{
    return cfg_fits_int(f) && (double)(int64_t)f == f;
}
/* Nearest integer, halves away from zero; f must fit. */
static inline int64_t cfg_round(double f)
{
    return (int64_t)(f < 0 ? f - 0.5 : f + 0.5);
}

/* cfg_parse() with the message prefix "NAME: " instead of "NAME:LINE: "
 * (for -o overrides, which are one line anyway). */
struct cfg_node *cfg_parse_noline(const char *text, size_t len, const char *name, char *err,
                                  size_t errlen);

/* cfg_parse() with messages "line N: what" (the caller names the text). */
struct cfg_node *cfg_parse_lines(const char *text, size_t len, char *err, size_t errlen);

/*
 * Lifts the members of root keyed key that are unlabelled blocks of
 * unlabelled blocks, `key { NAME { ... } ... }` (JSON: "key": {"NAME":
 * {...}}), into labelled blocks `key "NAME" { ... }` in their place, in
 * order; the lifted nodes keep their spans and are marked lifted.  An
 * empty `key { }` lifts to nothing.  0 or -ENOMEM (the tree unchanged).
 */
int cfg_node_lift(struct cfg_node *root, const char *key);

/* true: s is a domain name ("mx.example.test"); with lead_dot a leading
 * '.' is allowed too (".example.test" = any subdomain).  s is borrowed. */
bool cfg_domain_valid(const char *s, bool lead_dot);

#endif
