/*
 * edge/policy.h - what edge.yaml decides for a client before any agent is
 * asked: its access lists (access:) and its redirection hosts (redirects:).
 * Pure functions over a loaded struct edge_config.
 */
#ifndef RELAIS_EDGE_POLICY_H
#define RELAIS_EDGE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/addr.h"
#include "../common/config.h"

/** How closely pattern pat names host: -1 not at all, else higher is closer
 *  (1000 for the exact name, a wildcard's length; as registry_rank()). */
int policy_rank(const char *pat, const char *host);

/**
 * The access entry for host (lower case, no final dot): the one naming it
 * most closely (an exact name over a pattern, a longer pattern over a
 * shorter; the first in the file on a tie), or NULL when none names it.
 */
const struct edge_access *policy_access_host(const struct edge_config *cfg, const char *host);

/** The access entry for stream port kind/port: the narrowest range holding
 *  it (the first in the file on a tie), or NULL. */
const struct edge_access *policy_access_port(const struct edge_config *cfg, uint8_t kind,
                                             uint16_t port);

enum policy_verdict {
	POLICY_ALLOW,    /* let the client in */
	POLICY_DENY,     /* turn it away (403, refused handshake, closed, dropped) */
	POLICY_PASSWORD, /* only with a password of a->users (HTTP Basic) */
};

/**
 * What list a (NULL: none) says of peer.  deny always wins; then, with
 * satisfy: all (default), the address must be in allow when allow lists
 * any, and a password is needed when users lists any; with satisfy: any,
 * an address in allow is enough, else a password is needed when users
 * lists any, else the address must have been allowed (an entry of deny
 * only lets everyone else in).
 */
enum policy_verdict policy_check(const struct edge_access *a, const struct addr *peer);

/** 1 when a lets peer in without a password: what TLS passthrough names,
 *  TCP and UDP ports use, where no password can be asked for. */
int policy_allows(const struct edge_access *a, const struct addr *peer);

/** The redirect for host, closest name first as for access, or NULL. */
const struct edge_redirect *policy_redirect(const struct edge_config *cfg, const char *host);

/**
 * The Location for a request target (origin-form "/path?query", or an
 * absolute URL whose path is taken) under redirect r: r->to, followed by
 * the target's path and query when r->keep_path.  Returns its length, or -1
 * when it does not fit in cap bytes.
 */
int policy_location(const struct edge_redirect *r, const char *target, size_t tlen, char *out,
                    size_t cap);

#endif
