/*
 * edge/registry.c - live agent sessions, route authorization and lookup.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/hostpat.h"
#include "../common/window.h"
#include "edge.h"
#include "registry.h"
#include "udp.h"

static struct esession *sessions;
static size_t nagents; /* distinct agent names in the list */

/* Tell each session of agent name how many it has: n. */
static void registry_siblings(const char *name, size_t n)
{
	for (struct esession *s = sessions; s; s = s->next)
		if (strcmp(s->agent, name) == 0)
			s->siblings = n;
}

static size_t registry_count_agent(const char *name)
{
	size_t n = 0;

	for (const struct esession *s = sessions; s; s = s->next)
		n += strcmp(s->agent, name) == 0;
	return n;
}

void registry_add(struct esession *s)
{
	size_t n = registry_count_agent(s->agent) + 1;

	s->next = sessions;
	sessions = s;
	if (n == 1)
		nagents++;
	registry_siblings(s->agent, n);
}

void registry_remove(struct esession *s)
{
	for (struct esession **p = &sessions; *p; p = &(*p)->next) {
		if (*p == s) {
			size_t n;

			*p = s->next;
			s->next = NULL;
			n = registry_count_agent(s->agent);
			if (n == 0)
				nagents--;
			registry_siblings(s->agent, n);
			return;
		}
	}
}

size_t registry_window_share(const struct esession *s)
{
	size_t share = window_share(nagents) / (s->siblings ? s->siblings : 1);

	return share < WINDOW_MAX ? WINDOW_MAX : share;
}

struct esession *registry_first(void)
{
	return sessions;
}

/* A declared pattern "*.x" is covered by an allowed "*.y" when x is y or
 * lies under y; an exact host by any allowed pattern that matches it. */
static int registry_host_allowed(const struct edge_agent *a, const char *host)
{
	for (size_t i = 0; i < a->nhosts; i++) {
		const char *pat = a->hosts[i];

		if (strcmp(pat, host) == 0)
			return 1;
		if (strncmp(host, "*.", 2) == 0) {
			if (strncmp(pat, "*.", 2) == 0 && hostpat_match(pat, host + 2))
				return 1;
		} else if (hostpat_match(pat, host)) {
			return 1;
		}
	}
	return 0;
}

static int ranges_overlap(const struct eroute *r, const struct frame_route *d)
{
	return r->kind == d->kind && r->port_lo <= d->port_hi && d->port_lo <= r->port_hi;
}

int registry_authorize(const struct esession *s, const struct edge_agent *a,
                       const struct frame_route *r, char *reason, size_t cap, const char **holder)
{
	int is_host = r->kind == ROUTE_KIND_HTTP || r->kind == ROUTE_KIND_TLS;

	*holder = NULL;
	if (s->nroutes >= SESSION_MAX_ROUTES) {
		snprintf(reason, cap, "too many routes (limit %d)", SESSION_MAX_ROUTES);
		return -1;
	}
	if (is_host) {
		if (!hostpat_valid(r->host)) {
			snprintf(reason, cap, "'%s' is not a valid host name or pattern", r->host);
			return -1;
		}
		if (!registry_host_allowed(a, r->host)) {
			snprintf(reason, cap, "host '%s' is not allowed for agent '%s'", r->host,
			         a->name);
			return -1;
		}
		/* The agent endpoint's name is the edge's own: a route for it
		 * would take its HTTP traffic and its ACME certificate. */
		if (edge.cfg.tunnel.hostname != NULL &&
		    strcasecmp(r->host, edge.cfg.tunnel.hostname) == 0) {
			snprintf(reason, cap, "host '%s' is the edge's tunnel hostname", r->host);
			return -1;
		}
	} else {
		struct port_range pr = {.kind = r->kind, .lo = r->port_lo, .hi = r->port_hi};

		if (!port_range_allowed(&pr, a->ports, a->nports)) {
			snprintf(reason, cap, "port %s/%u-%u is not allowed for agent '%s'",
			         r->kind == ROUTE_KIND_UDP ? "udp" : "tcp", r->port_lo, r->port_hi,
			         a->name);
			return -1;
		}
	}
	for (const struct esession *o = sessions; o; o = o->next) {
		for (size_t i = 0; i < o->nroutes; i++) {
			const struct eroute *er = &o->routes[i];
			int clash =
			    is_host ? (er->kind == ROUTE_KIND_HTTP || er->kind == ROUTE_KIND_TLS) &&
			                  strcmp(er->host, r->host) == 0
			            : ranges_overlap(er, r);

			if (!clash)
				continue;
			if (o == s) {
				snprintf(reason, cap, "duplicate route '%s' in this session",
				         is_host ? r->host : "port range");
				return -1;
			}
			/* The same agent may hold a route over several connections
			 * (HA).  The reason goes to the agent: it does not name the
			 * other one (the edge's log does, from *holder). */
			if (strcmp(o->agent, s->agent) != 0) {
				if (is_host)
					snprintf(reason, cap, "host '%s' is held by another agent",
					         r->host);
				else
					snprintf(reason, cap, "port %u is held by another agent",
					         er->port_lo);
				*holder = o->agent;
				return -1;
			}
		}
	}
	return 0;
}

int registry_recheck(const struct esession *s, char *why, size_t cap)
{
	const struct edge_agent *a = NULL;

	for (size_t i = 0; i < edge.cfg.nagents; i++)
		if (memcmp(edge.cfg.agents[i].key, s->key, KEY_PUB_LEN) == 0)
			a = &edge.cfg.agents[i];
	if (!a) {
		snprintf(why, cap, "agent key no longer in the configuration");
		return -1;
	}
	if (strcmp(a->name, s->agent) != 0) {
		snprintf(why, cap, "agent renamed to '%s' in the configuration", a->name);
		return -1;
	}
	for (size_t i = 0; i < s->nroutes; i++) {
		const struct eroute *r = &s->routes[i];
		struct port_range pr = {.kind = r->kind, .lo = r->port_lo, .hi = r->port_hi};
		int ok = r->host[0] ? registry_host_allowed(a, r->host)
		                    : port_range_allowed(&pr, a->ports, a->nports);

		if (!ok) {
			snprintf(why, cap, "route %s no longer allowed by the configuration",
			         r->host[0] ? r->host : "port range");
			return -1;
		}
	}
	return 0;
}

struct esession *registry_lookup_port(uint8_t kind, uint16_t port, const struct eroute **route)
{
	struct esession *best = NULL;

	for (struct esession *s = sessions; s; s = s->next) {
		if (s->closing || s->draining)
			continue;
		for (size_t i = 0; i < s->nroutes; i++) {
			const struct eroute *r = &s->routes[i];

			if (r->kind != kind || port < r->port_lo || port > r->port_hi)
				continue;
			if (best && best->nstreams <= s->nstreams)
				continue;
			best = s;
			*route = r;
		}
	}
	return best;
}

/* Length of the suffix a wildcard pattern covers; exact routes rank highest. */
static int route_rank(const struct eroute *r, uint8_t kind, const char *host)
{
	if (r->kind != kind)
		return -1;
	if (strcmp(r->host, host) == 0)
		return 1000;
	if (strncmp(r->host, "*.", 2) == 0 && hostpat_match(r->host, host))
		return (int)strlen(r->host);
	return -1;
}

int registry_rank(const struct eroute *r, const char *host)
{
	return route_rank(r, r->kind, host);
}

struct esession *registry_lookup_host(const char *host, const struct eroute **route, int *known)
{
	return registry_lookup(ROUTE_KIND_HTTP, host, route, known);
}

struct esession *registry_lookup(uint8_t kind, const char *host, const struct eroute **route,
                                 int *known)
{
	struct esession *best = NULL;
	int best_rank = -1;

	*known = 0;
	for (struct esession *s = sessions; s; s = s->next) {
		if (s->closing || s->draining)
			continue;
		for (size_t i = 0; i < s->nroutes; i++) {
			int rank = route_rank(&s->routes[i], kind, host);

			if (rank < 0 || rank < best_rank)
				continue;
			if (rank == best_rank && best && best->nstreams <= s->nstreams)
				continue;
			best = s;
			best_rank = rank;
			*route = &s->routes[i];
		}
	}
	if (best)
		return best;
	for (size_t i = 0; i < edge.cfg.nagents; i++)
		for (size_t j = 0; j < edge.cfg.agents[i].nhosts; j++)
			if (hostpat_match(edge.cfg.agents[i].hosts[j], host))
				*known = 1;
	return NULL;
}

static const char *kind_name(uint8_t kind)
{
	switch (kind) {
	case ROUTE_KIND_HTTP:
		return "http";
	case ROUTE_KIND_TLS:
		return "tls";
	case ROUTE_KIND_TCP:
		return "tcp";
	case ROUTE_KIND_UDP:
		return "udp";
	}
	return "?";
}

/* The status document under construction: grows up to max bytes, always
 * with STATUS_RESERVE bytes allocated and free for the closing brackets. */
struct status_buf {
	char *p;
	size_t len, cap, max;
};

#define STATUS_RESERVE 64

static int status_add(struct status_buf *b, int closing, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Append one element; 0, or -1 when it does not fit (the caller stops and
 * closes what is open).  closing: the final brackets, which use the
 * reserve and never need to grow the buffer.
 */
static int status_add(struct status_buf *b, int closing, const char *fmt, ...)
{
	size_t need, reserve = closing ? 0 : STATUS_RESERVE;
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (w < 0)
		return -1;
	need = b->len + (size_t)w + 1 + reserve;
	if (need > b->max)
		return -1;
	if (need > b->cap) {
		size_t ncap = b->cap;
		char *np;

		while (ncap < need)
			ncap *= 2;
		if (ncap > b->max)
			ncap = b->max;
		np = realloc(b->p, ncap);
		if (!np)
			return -1;
		b->p = np;
		b->cap = ncap;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)w;
	return 0;
}

char *registry_status_json(size_t max, size_t *len)
{
	struct status_buf b = {.cap = 16384, .max = max};
	int truncated = 0;

	if (b.max < b.cap)
		b.max = b.cap;
	b.p = malloc(b.cap);
	if (!b.p)
		return NULL;
	/* Host names and agent names are validated printable text without quotes
	 * or backslashes (config and frame decoder), so they need no escaping. */
	status_add(&b, 1, "{\"streams\":%llu,\"udp_dropped\":%llu,\"sessions\":[",
	           (unsigned long long)edge.streams_open, (unsigned long long)udp_dropped());
	for (struct esession *s = sessions; s && !truncated; s = s->next) {
		if (status_add(&b, 0,
		               "%s{\"agent\":\"%s\",\"peer\":\"%s\",\"streams\":%zu,"
		               "\"window_share\":%zu,\"window_grown\":%zu,\"routes\":[",
		               s == sessions ? "" : ",", s->agent, s->peer, s->nstreams,
		               registry_window_share(s), s->wpool.granted) < 0) {
			truncated = 1;
			break;
		}
		for (size_t i = 0; i < s->nroutes; i++) {
			const struct eroute *r = &s->routes[i];

			if (status_add(&b, 0,
			               "%s{\"kind\":\"%s\",\"host\":\"%s\",\"port_lo\":%u,"
			               "\"port_hi\":%u}",
			               i ? "," : "", kind_name(r->kind), r->host, r->port_lo,
			               r->port_hi) < 0) {
				truncated = 1;
				break;
			}
		}
		status_add(&b, 1, "]}");
	}
	status_add(&b, 1, "]%s}\n", truncated ? ",\"truncated\":true" : "");
	*len = b.len;
	return b.p;
}
