/*
 * edge/registry.h - live agent sessions and the routes they hold.
 */
#ifndef RELAIS_EDGE_REGISTRY_H
#define RELAIS_EDGE_REGISTRY_H

#include <stddef.h>

#include "../common/config.h"
#include "session.h"

/** Add an authenticated session / remove a closing one. */
void registry_add(struct esession *s);
void registry_remove(struct esession *s);

/**
 * The window growth session s's streams may hold: agents share the budget
 * equally (window_share()), and an agent's sessions share its part, each
 * still given at least WINDOW_MAX (one stream's largest window).
 */
size_t registry_window_share(const struct esession *s);

/** First live session (for iteration with s->next). */
struct esession *registry_first(void);

/**
 * Decide a route declared by session s of agent a.  Returns 0 to accept, or
 * -1 with a reason for the agent in reason[0..cap); when another agent holds
 * the host or port, *holder names it, for the edge's log only.
 */
int registry_authorize(const struct esession *s, const struct edge_agent *a,
                       const struct frame_route *r, char *reason, size_t cap, const char **holder);

/**
 * After a reload: 0 when session s's agent is still configured under the
 * same name and allows every route s holds, else -1 with the reason.
 */
int registry_recheck(const struct esession *s, char *why, size_t cap);

/**
 * Find the route serving an HTTP host (lower case, no port): an exact route
 * wins over wildcards, the longest wildcard suffix over shorter ones.  Among
 * sessions holding the same route, the least loaded is chosen.  Returns the
 * session and sets *route, or NULL (and *known = 1 when some agent in the
 * configuration may serve that host, so the caller answers 502, not 404).
 */
struct esession *registry_lookup_host(const char *host, const struct eroute **route, int *known);

/** Same lookup for routes of another kind (ROUTE_KIND_TLS: passthrough by SNI). */
struct esession *registry_lookup(uint8_t kind, const char *host, const struct eroute **route,
                                 int *known);

/** How closely host route r (a result of registry_lookup) matches host:
 * an exact name ranks above any wildcard, a longer wildcard above a
 * shorter one; -1 when it does not match. */
int registry_rank(const struct eroute *r, const char *host);

/** The least loaded session holding a TCP/UDP route that covers port, or NULL. */
struct esession *registry_lookup_port(uint8_t kind, uint16_t port, const struct eroute **route);

/**
 * The status document (JSON) in a malloc'd buffer the caller frees, its
 * length in *len; NULL when out of memory.  At most max bytes: sessions and
 * routes that do not fit are left out and "truncated":true is added.
 */
char *registry_status_json(size_t max, size_t *len);

#endif
