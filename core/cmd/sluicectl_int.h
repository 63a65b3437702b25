/*
 * NAME
 *	sluicectl_int - what sluicectl.c and sluicectl_fmt.c share
 * SYNOPSIS
 *	#include "core/cmd/sluicectl_int.h"
 * DESCRIPTION
 *	A verb: its name as sent ("queue list"), usage of its arguments,
 *	argument counts, whether --json applies, the printer of its result and
 *	its help.  The printers get the parsed "result" member (borrowed).
 */
#ifndef SLUICE_CORE_SLUICECTL_INT_H
#define SLUICE_CORE_SLUICECTL_INT_H

#include <stdbool.h>
#include <stddef.h>

struct cfg_node;
struct sctl_verb;

typedef int sctl_print_fn(const struct sctl_verb *v, const struct cfg_node *result);

struct sctl_verb {
    const char *name;
    const char *usage;
    size_t min_args, max_args;
    bool json;
    sctl_print_fn *print;
    const char *help;
};

sctl_print_fn sctl_print_status, sctl_print_list, sctl_print_show, sctl_print_count,
    sctl_print_bindings;

/* Prints reply (the daemon's whole answer, borrowed) for v: the JSON
 * result with json, else v->print's text; an error reply as one line on
 * stderr.  Returns the exit code. */
int sctl_print_reply(const struct sctl_verb *v, const char *reply, bool json);

#endif
