/*
 * NAME
 *	ctl_int - what the files of the control server share
 * SYNOPSIS
 *	#include "core/ops/ctl_int.h"
 * DESCRIPTION
 *	The server (ctl.c) and the verb handlers of other files (ctl_bindings.c).
 *	A handler returns the reply (malloc'd, from ctl_reply_ok/_error; NULL
 *	means out of memory) and may ask for an action after the reply is
 *	written.
 */
#ifndef SLUICE_CORE_CTL_INT_H
#define SLUICE_CORE_CTL_INT_H

#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include "core/ops/ctl.h"

struct ctl_server {
    char *path;
    int fd;
    int wake[2]; /* the read end is polled; stop writes one byte */
    dev_t dev;
    ino_t ino;
    pthread_t thread;
    struct ctl_hooks h;
    uint64_t started_ms; /* clock_mono_ms() */
};

enum ctl_after { CTL_AFTER_NONE, CTL_AFTER_STOP, CTL_AFTER_DRAIN };

typedef char *ctl_verb_fn(struct ctl_server *cs, const struct ctl_request *rq,
                          enum ctl_after *after);

/* bindings list, enable, disable, add, remove, setprop, reload (ctl_bindings.c) */
ctl_verb_fn ctl_bindings_list, ctl_bindings_enable, ctl_bindings_add, ctl_bindings_remove,
    ctl_bindings_setprop, ctl_bindings_reload;

#endif
