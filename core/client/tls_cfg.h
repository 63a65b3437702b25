/*
 * NAME
 *	tls_cfg - the configuration's `tls { }` block for net/tls.c
 * SYNOPSIS
 *	#include "core/client/tls_cfg.h"
 * DESCRIPTION
 *	See core/client/tls_cfg.c.  Used by the server (core/cmd, core/ops on
 *	reload) and the outbound client (core/queue): one TLS module, one
 *	reading of its settings.
 */
#ifndef SLUICE_CORE_CLIENT_TLS_CFG_H
#define SLUICE_CORE_CLIENT_TLS_CFG_H

#include <stddef.h>

#include "core/cfg/cfg.h"
#include "net/tls.h"

/* The `tls { }` block into o (strings point into cfg's tree).  1: there
 * is a block; 0: none (TLS off); -EINVAL with err filled. */
int tls_cfg_opts(const struct cfg *cfg, struct tls_opts *o, char *err, size_t errlen);

#endif
