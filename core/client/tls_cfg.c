/*
 * NAME
 *	tls_cfg - the `tls { }` block as TLS engine settings
 * SYNOPSIS
 *	#include "core/client/tls_cfg.h"
 *
 *	int tls_cfg_opts(const struct cfg *cfg, struct tls_opts *o,
 *			 char *err, size_t errlen);
 * DESCRIPTION
 *	Fills the plain settings net/tls.h takes (cert, key, ca_file,
 *	min_protocol, ciphers, ciphersuites) from the configuration, so that
 *	the TLS module knows no configuration (and the configuration knows no
 *	TLS module: this sits in the first room above both).  The strings point into cfg's
 *	tree and are valid while cfg is.  The server (core/cmd/sluiced.c,
 *	core/ops/lifecycle.c on reload) and the outbound client
 *	(core/queue/qmgr.c) read the same block.
 * DIAGNOSTICS
 *	1: there is a block; 0: none (TLS off); -EINVAL with one line in err
 *	naming the line and the key.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/client/tls_cfg.h"

int tls_cfg_opts(const struct cfg *cfg, struct tls_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    const struct cfg_node *b = cfg->tree ? cfg_node_get(cfg->tree, "tls") : NULL;
    if (b == NULL)
        return 0;
    if (cfg_node_type(b) != CFG_OBJECT) {
        snprintf(err, errlen, "line %u: tls: a block { cert = ...; key = ...; } is expected",
                 cfg_node_line(b));
        return -EINVAL;
    }
    static const char *const keys[] = {"cert",    "key",          "ca_file", "min_protocol",
                                       "ciphers", "ciphersuites", NULL};
    const char **slot[] = {&o->cert,         &o->key,     &o->ca_file,
                           &o->min_protocol, &o->ciphers, &o->ciphersuites};
    for (size_t i = 0; i < cfg_node_count(b); i++) {
        const struct cfg_node *n = cfg_node_at(b, i);
        size_t k = 0;
        while (keys[k] && strcmp(keys[k], cfg_node_key(n)) != 0)
            k++;
        if (keys[k] == NULL) {
            snprintf(err, errlen,
                     "line %u: tls.%s: unknown key (cert, key, ca_file, "
                     "min_protocol, ciphers, ciphersuites)",
                     cfg_node_line(n), cfg_node_key(n));
            return -EINVAL;
        }
        if (cfg_node_type(n) != CFG_STRING || cfg_node_str(n)[0] == '\0') {
            snprintf(err, errlen, "line %u: tls.%s: a non-empty string is expected",
                     cfg_node_line(n), keys[k]);
            return -EINVAL;
        }
        *slot[k] = cfg_node_str(n);
    }
    if (o->cert == NULL || o->key == NULL) {
        snprintf(err, errlen, "line %u: tls: cert and key are both required", cfg_node_line(b));
        return -EINVAL;
    }
    return 1;
}
