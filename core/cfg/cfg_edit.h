/*
 * NAME
 *	cfg_edit - text-level edits of sluice.conf: one labelled block at a time
 * SYNOPSIS
 *	#include "core/cfg/cfg_edit.h"
 * DESCRIPTION
 *	Live changes (sluicectl bindings ...) are written back to the
 *	configuration file so that a restart keeps them.  The file is edited
 *	as text, not regenerated from the tree: only the one top-level
 *	`KEY "LABEL" { ... }` block is replaced, removed or appended, and
 *	every other byte - comments, blank lines, other blocks, their
 *	formatting - stays as it was.
 *
 *	cfg_edit_text() works on a buffer: block is the new text of the
 *	block (no trailing newline needed); NULL removes the block together
 *	with the whitespace of its own lines.  A block that is not there is
 *	appended at the end (before the closing brace of a file written as
 *	one braced object); removing one that is not there is -ENOENT.  The
 *	text is read by the configuration parser itself (cfg_parse.c records
 *	where each entry stands), so a block inside a comment or a string is
 *	not taken for one and a label means what it means to the daemon
 *	(escapes decoded: "caf\u00e9" is the label café).  A JSON file's
 *	`"KEY": {"LABEL": {...}}` is found too; there only LABEL's braces are
 *	replaced (by those of block).  A text that does not parse is not
 *	edited (-EINVAL, the parser's message in err).  *out is allocated
 *	(NUL-terminated) and owned by the caller.
 *
 *	cfg_edit_read() reads a whole file (NUL-terminated, owned by the
 *	caller).  cfg_edit_write() replaces path atomically: a temporary file
 *	in the same directory (the mode of the old file), fsync, rename over
 *	path (its target when path is a symbolic link), fsync of the
 *	directory.  cfg_edit_block() is read, edit, check that the result
 *	still parses (cfg_parse), write.
 * DIAGNOSTICS
 *	0 or a negative errno, with one line in err ("sluice.conf: ...").
 */
#ifndef SLUICE_CORE_CFG_EDIT_H
#define SLUICE_CORE_CFG_EDIT_H

#include <stddef.h>

int cfg_edit_text(const char *text, size_t len, const char *key, const char *label,
                  const char *block, char **out, size_t *outlen, char *err, size_t errlen);
int cfg_edit_read(const char *path, char **text, size_t *len, char *err, size_t errlen);
int cfg_edit_write(const char *path, const char *text, size_t len, char *err, size_t errlen);
int cfg_edit_block(const char *path, const char *key, const char *label, const char *block,
                   char *err, size_t errlen);

#endif
