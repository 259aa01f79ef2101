/*
 * edge/policy.c - access lists and redirection hosts (see policy.h).
 */
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include "../common/hostpat.h"

int policy_rank(const char *pat, const char *host)
{
	if (strcmp(pat, host) == 0)
		return 1000;
	if (pat[0] == '*' && hostpat_match(pat, host))
		return (int)strlen(pat);
	return -1;
}

static int hosts_rank(char *const *hosts, size_t n, const char *host)
{
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		int r = policy_rank(hosts[i], host);

		if (r > best)
			best = r;
	}
	return best;
}

const struct edge_access *policy_access_host(const struct edge_config *cfg, const char *host)
{
	const struct edge_access *best = NULL;
	int best_rank = -1;

	for (size_t i = 0; i < cfg->naccess; i++) {
		int r = hosts_rank(cfg->access[i].hosts, cfg->access[i].nhosts, host);

		if (r > best_rank) {
			best = &cfg->access[i];
			best_rank = r;
		}
	}
	return best;
}

const struct edge_access *policy_access_port(const struct edge_config *cfg, uint8_t kind,
                                             uint16_t port)
{
	const struct edge_access *best = NULL;
	uint32_t best_width = UINT32_MAX;

	for (size_t i = 0; i < cfg->naccess; i++)
		for (size_t j = 0; j < cfg->access[i].nports; j++) {
			const struct port_range *r = &cfg->access[i].ports[j];
			uint32_t width = (uint32_t)(r->hi - r->lo);

			if (r->kind == kind && r->lo <= port && port <= r->hi &&
			    width < best_width) {
				best = &cfg->access[i];
				best_width = width;
			}
		}
	return best;
}

static int prefixes_match(const struct cidr *c, size_t n, const struct addr *peer)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&c[i], peer))
			return 1;
	return 0;
}

enum policy_verdict policy_check(const struct edge_access *a, const struct addr *peer)
{
	int listed;

	if (a == NULL)
		return POLICY_ALLOW;
	if (prefixes_match(a->deny, a->ndeny, peer))
		return POLICY_DENY;
	listed = prefixes_match(a->allow, a->nallow, peer);
	if (a->satisfy_any) {
		if (listed)
			return POLICY_ALLOW;
		if (a->nusers)
			return POLICY_PASSWORD;
		return a->nallow ? POLICY_DENY : POLICY_ALLOW;
	}
	if (a->nallow && !listed)
		return POLICY_DENY;
	return a->nusers ? POLICY_PASSWORD : POLICY_ALLOW;
}

int policy_allows(const struct edge_access *a, const struct addr *peer)
{
	return policy_check(a, peer) == POLICY_ALLOW;
}

const struct edge_redirect *policy_redirect(const struct edge_config *cfg, const char *host)
{
	const struct edge_redirect *best = NULL;
	int best_rank = -1;

	for (size_t i = 0; i < cfg->nredirects; i++) {
		int r = policy_rank(cfg->redirects[i].host, host);

		if (r > best_rank) {
			best = &cfg->redirects[i];
			best_rank = r;
		}
	}
	return best;
}

int policy_location(const struct edge_redirect *r, const char *target, size_t tlen, char *out,
                    size_t cap)
{
	size_t tolen = strlen(r->to);
	const char *path = target;
	int n, to_path;

	if (!r->keep_path)
		tlen = 0;
	if (tlen && path[0] != '/') {
		/* "http://authority[/path][?query]": the path and query; "*": none */
		const char *end = target + tlen, *q = memchr(target, ':', tlen);

		path = end;
		if (q && end - q >= 3 && q[1] == '/' && q[2] == '/')
			for (path = q + 3; path < end && *path != '/' && *path != '?'; path++)
				;
		tlen = (size_t)(end - path);
	}
	/* "https://new.example/" + "/a" is "https://new.example/a" */
	if (tlen && tolen > 0 && r->to[tolen - 1] == '/' && path[0] == '/')
		tolen--;
	/* A URL with no path gets "/" before a query, or alone */
	to_path = strchr(strstr(r->to, "://") + 3, '/') != NULL;
	n = snprintf(out, cap, "%.*s%s%.*s", (int)tolen, r->to,
	             !to_path && (!tlen || path[0] == '?') ? "/" : "", (int)tlen, path);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}
