/*
 * tests/fuzz/fuzz_config.c - libFuzzer target for common/config.c.
 *
 * Each input is written to a memfd and loaded as edge.yaml and as
 * agent.yaml through /proc/self/fd/N, the way relais-edge -t and
 * relais-agent -t load a file.  stderr is swapped for a memory stream while
 * loading so that the printed errors can be checked: a load that fails
 * leaves the config zeroed and prints exactly as many lines as it returns,
 * each "FILE:LINE:COL: message" with LINE and COL inside the input and no
 * control bytes in the message.  A load that succeeds prints nothing and
 * gives values within the limits of docs/configuration.md.  Any
 * disagreement aborts.  Seeds name /dev/null as a readable file so that
 * loads can succeed.
 */
#include "common/config.h"
#include "common/hostpat.h"
#include "common/log.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfd = -1;
static char path[64];

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_config: invariant failed: %s\n", what);
		abort();
	}
}

static int is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* Parse decimal digits at *s up to the next ':'; advances *s past it. */
static int number(const char **s, size_t *out)
{
	size_t v = 0;
	const char *p = *s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (SIZE_MAX - 9) / 10)
			return -1;
		v = v * 10 + (size_t)(*p - '0');
	}
	if (*p != ':')
		return -1;
	*s = p + 1;
	*out = v;
	return 0;
}

/* The output of a failed load of an input of size bytes: n well-formed lines. */
static void check_errors(const char *out, size_t outlen, int n, size_t size)
{
	size_t plen = strlen(path), lines = 0;
	const char *s = out, *end = out + outlen;

	check(n > 0, "a failed load returns a positive count");
	check(strlen(out) == outlen, "no NUL in the error output");
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t line, col;

		check(nl != NULL, "error output ends with a newline");
		check((size_t)(nl - s) > plen && memcmp(s, path, plen) == 0 && s[plen] == ':',
		      "error line starts with the file name");
		s += plen + 1;
		check(number(&s, &line) == 0 && number(&s, &col) == 0,
		      "error line has LINE:COL after the file name");
		check(line >= 1 && col >= 1, "a readable file's errors have a position");
		check(line <= size + 1 && col <= size + 1, "error position inside the input");
		check(*s == ' ' && s + 1 < nl, "error line has a message");
		for (s++; s < nl; s++)
			check((unsigned char)*s >= 0x20 && *s != 0x7f,
			      "no control bytes in an error message");
		s = nl + 1;
		lines++;
	}
	check(lines == (size_t)n, "one line per error counted");
}

static int path_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || s[0] != '/')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '#')
			return 0;
	return 1;
}

static int name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= PROTO_MAX_NAME &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static int lower(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			return 0;
	return 1;
}

static int range_ok(const struct port_range *r)
{
	return (r->kind == ROUTE_KIND_TCP || r->kind == ROUTE_KIND_UDP) && r->lo >= 1 &&
	       r->lo <= r->hi;
}

static int duration_ok(uint32_t ms)
{
	return ms >= 1 && ms <= 2147483647u;
}

static void check_edge(const struct edge_config *c)
{
	const struct addr *l[4] = {c->has_http ? &c->http : NULL, c->has_https ? &c->https : NULL,
	                           c->has_admin ? &c->admin : NULL, &c->tunnel.listen};

	check(c->file != NULL && strcmp(c->file, path) == 0, "edge: file");
	check(c->tunnel.listen.len != 0, "edge: tunnel.listen is required");
	check(c->tunnel.path != NULL && path_ok(c->tunnel.path), "edge: tunnel.path");
	check(c->tunnel.hostname == NULL ||
	          (lower(c->tunnel.hostname) && host_valid(c->tunnel.hostname)),
	      "edge: tunnel.hostname");
	check(!c->tunnel.cert == !c->tunnel.key, "edge: tunnel.cert and key together");
	check(c->tunnel.cert != NULL || (c->tls.acme && c->tunnel.hostname != NULL),
	      "edge: no tunnel.cert without tls.acme and tunnel.hostname");
	if (c->tls.acme) {
		check(c->tls.acme_directory != NULL &&
		          strncmp(c->tls.acme_directory, "https://", 8) == 0 &&
		          path_ok(c->tls.acme_directory + 7),
		      "edge: tls.acme.directory");
		check(c->tls.cert_dir != NULL, "edge: tls.acme needs cert_dir");
		check(c->tls.acme_renew_days >= 1 && c->tls.acme_renew_days <= 365,
		      "edge: tls.acme.renew_before_days");
		check(c->tls.acme_email == NULL ||
		          (strchr(c->tls.acme_email, '@') && strlen(c->tls.acme_email) <= 200 &&
		           !strpbrk(c->tls.acme_email, " \t\"<>,;")),
		      "edge: tls.acme.email");
	} else {
		check(c->tls.acme_directory == NULL && c->tls.acme_email == NULL &&
		          c->tls.acme_ca == NULL,
		      "edge: acme settings without tls.acme");
	}
	check(c->nstreams <= 4, "edge: listen.streams at most 4");
	check(c->max_conns_per_client <= CFG_MAX_PER_CLIENT_MAX,
	      "edge: listen.max_connections_per_client");
	check(c->log_level >= LOG_ERROR && c->log_level <= LOG_DEBUG, "edge: log_level");
	check(c->access_log == NULL || c->access_log[0] != '\0', "edge: access_log");
	check(duration_ok(c->http_limits.header_timeout_ms) &&
	          duration_ok(c->http_limits.idle_timeout_ms) &&
	          duration_ok(c->http_limits.upstream_timeout_ms),
	      "edge: http durations");
	check(c->http_limits.max_header_bytes >= 1024 &&
	          c->http_limits.max_header_bytes <= (1u << 20),
	      "edge: http.max_header_size");
	for (size_t i = 1; i < 4; i++)
		for (size_t j = 0; j < i; j++)
			check(l[i] == NULL || l[j] == NULL || (i == 3 && j == 1) ||
			          !addr_equal(l[i], l[j]),
			      "edge: listeners differ");
	check(!c->has_admin || c->admin.ss.ss_family == AF_INET ||
	          c->admin.ss.ss_family == AF_INET6,
	      "edge: admin.listen");
	check(c->nagents == 0 || c->agents != NULL, "edge: agents");
	for (size_t i = 0; i < c->nagents; i++) {
		const struct edge_agent *a = &c->agents[i];

		check(name_ok(a->name), "edge: agents[].name");
		for (size_t j = 0; j < i; j++) {
			check(strcmp(a->name, c->agents[j].name) != 0, "edge: agent names unique");
			check(memcmp(a->key, c->agents[j].key, KEY_PUB_LEN) != 0,
			      "edge: agent keys unique");
		}
		for (size_t j = 0; j < a->nhosts; j++)
			check(lower(a->hosts[j]) && hostpat_valid(a->hosts[j]),
			      "edge: agents[].hosts");
		for (size_t j = 0; j < a->nports; j++)
			check(range_ok(&a->ports[j]), "edge: agents[].ports");
		check(a->max_certificates <= CFG_MAX_CERTIFICATES_MAX,
		      "edge: agents[].max_certificates");
	}
	check(c->naccess <= CFG_MAX_ACCESS && (c->naccess == 0 || c->access != NULL),
	      "edge: access");
	for (size_t i = 0; i < c->naccess; i++) {
		const struct edge_access *a = &c->access[i];
		const struct cidr *lists[2] = {a->allow, a->deny};
		size_t lens[2] = {a->nallow, a->ndeny};

		check((a->nhosts || a->nports) && (a->nallow || a->ndeny || a->nusers),
		      "edge: access[] names something and says something");
		for (size_t j = 0; j < a->nhosts; j++)
			check(lower(a->hosts[j]) && hostpat_valid(a->hosts[j]),
			      "edge: access[].hosts");
		for (size_t j = 0; j < a->nports; j++)
			check(range_ok(&a->ports[j]), "edge: access[].ports");
		check(a->nusers <= CFG_MAX_USERS && (a->nusers == 0 || a->nports == 0),
		      "edge: access[].users on hosts only");
		for (size_t j = 1; j < a->nusers; j++)
			check(strncmp(a->users[j].hash, a->users[0].hash,
			              (size_t)(strchr(a->users[0].hash + 16, '$') -
			                       a->users[0].hash)) == 0,
			      "edge: access[].users[] hashes of one cost");
		for (size_t j = 0; j < a->nusers; j++)
			check(a->users[j].name && a->users[j].name[0] &&
			          !strchr(a->users[j].name, ':') && a->users[j].hash &&
			          strncmp(a->users[j].hash, "$argon2id$", 10) == 0,
			      "edge: access[].users[]");
		check(a->satisfy_any == 0 || a->satisfy_any == 1, "edge: access[].satisfy");
		for (size_t l = 0; l < 2; l++) {
			check(lens[l] <= CFG_MAX_PREFIXES, "edge: access[] prefixes");
			for (size_t j = 0; j < lens[l]; j++) {
				const struct cidr *c = &lists[l][j];

				check((c->family == AF_INET && c->bits <= 32) ||
				          (c->family == AF_INET6 && c->bits <= 128),
				      "edge: access[] prefix");
				check(c->family != AF_INET6 || c->bits < 96 ||
				          memcmp(c->ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) != 0,
				      "edge: access[] prefix never IPv4-mapped");
			}
		}
	}
	check(c->unknown.answer >= UNKNOWN_NOT_FOUND && c->unknown.answer <= UNKNOWN_REDIRECT &&
	          (c->unknown.answer == UNKNOWN_REDIRECT) == (c->unknown.to != NULL) &&
	          (c->unknown.page == NULL || c->unknown.answer == UNKNOWN_NOT_FOUND) &&
	          c->unknown.page_len <= CFG_PAGE_MAX,
	      "edge: unknown_hosts");
	check(c->nredirects <= CFG_MAX_ACCESS && (c->nredirects == 0 || c->redirects != NULL),
	      "edge: redirects");
	for (size_t i = 0; i < c->nredirects; i++) {
		const struct edge_redirect *r = &c->redirects[i];

		check(lower(r->host) && hostpat_valid(r->host), "edge: redirects[].host");
		check(c->tunnel.hostname == NULL || strcmp(r->host, c->tunnel.hostname) != 0,
		      "edge: redirects[].host is not the tunnel's");
		for (size_t j = 0; j < i; j++)
			check(strcmp(r->host, c->redirects[j].host) != 0,
			      "edge: redirect hosts unique");
		check(r->to != NULL &&
		          (strncmp(r->to, "https://", 8) == 0 || strncmp(r->to, "http://", 7) == 0),
		      "edge: redirects[].to scheme");
		for (const char *t = r->to; *t; t++)
			check(*t > 0x20 && *t < 0x7f && *t != '?' && *t != '#' && *t != '"',
			      "edge: redirects[].to characters");
		check(r->code == 301 || r->code == 302 || r->code == 307 || r->code == 308,
		      "edge: redirects[].code");
		check(r->keep_path == 0 || r->keep_path == 1, "edge: redirects[].keep_path");
	}
}

static void check_agent(const struct agent_config *c)
{
	check(c->file != NULL && strcmp(c->file, path) == 0, "agent: file");
	check(c->edge != NULL &&
	          (strncmp(c->edge, "wss://", 6) == 0 || strncmp(c->edge, "ws://", 5) == 0),
	      "agent: edge URL");
	check(c->edge_tls == (strncmp(c->edge, "wss://", 6) == 0), "agent: edge_tls");
	check(c->edge_host[0] != '\0' && c->edge_port != 0, "agent: edge host and port");
	check(c->edge_path != NULL && path_ok(c->edge_path), "agent: edge path");
	check(c->key != NULL && c->key[0] != '\0', "agent: key");
	check(c->name[0] == '\0' || name_ok(c->name), "agent: name");
	check(c->log_level >= LOG_ERROR && c->log_level <= LOG_DEBUG, "agent: log_level");
	check(duration_ok(c->connect_timeout_ms), "agent: connect_timeout");
	check(c->max_conns <= CFG_MAX_CONNS_MAX, "agent: max_connections");
	check(c->nroutes == 0 || c->routes != NULL, "agent: routes");
	for (size_t i = 0; i < c->nroutes; i++) {
		const struct agent_route *r = &c->routes[i];

		check(lower(r->host) && hostpat_valid(r->host), "agent: routes[].host");
		for (size_t j = 0; j < i; j++)
			check(strcmp(r->host, c->routes[j].host) != 0, "agent: route hosts unique");
		check(r->target >= TARGET_HTTP && r->target <= TARGET_RAW, "agent: routes[].to");
		check(r->to_host[0] != '\0' && r->to_port != 0, "agent: routes[].to host:port");
		check((r->target == TARGET_RAW) == (r->tls_mode == TLS_MODE_PASSTHROUGH),
		      "agent: raw target if and only if passthrough");
		check(r->proxy_protocol >= PROXY_NONE && r->proxy_protocol <= PROXY_V2,
		      "agent: routes[].proxy_protocol");
		check((r->tls_verify == 0 || r->tls_verify == 1) &&
		          (r->redirect_https == 0 || r->redirect_https == 1),
		      "agent: routes[] booleans");
		check(r->hsts <= 999999999u, "agent: routes[].hsts");
	}
	check(c->nstreams == 0 || c->streams != NULL, "agent: streams");
	for (size_t i = 0; i < c->nstreams; i++) {
		const struct agent_stream *s = &c->streams[i];

		check(range_ok(&s->listen), "agent: streams[].listen");
		for (size_t j = 0; j < i; j++) {
			const struct port_range *o = &c->streams[j].listen;

			check(o->kind != s->listen.kind || o->hi < s->listen.lo ||
			          s->listen.hi < o->lo,
			      "agent: stream ranges do not overlap");
		}
		check(s->to_host[0] != '\0' && s->to_port != 0, "agent: streams[].to");
		check((uint32_t)s->to_port + (uint32_t)(s->listen.hi - s->listen.lo) <= 65535,
		      "agent: streams[] target range");
		check(s->proxy_protocol >= PROXY_NONE && s->proxy_protocol <= PROXY_V2 &&
		          !(s->listen.kind == ROUTE_KIND_UDP && s->proxy_protocol == PROXY_V1),
		      "agent: streams[].proxy_protocol");
		check(s->idle_timeout_ms == 0 || duration_ok(s->idle_timeout_ms),
		      "agent: streams[].idle_timeout");
		check(s->listen.kind != ROUTE_KIND_UDP || s->idle_timeout_ms <= 600000u,
		      "agent: UDP idle_timeout at most 10m");
	}
}

/* Load the memfd as one kind of file with stderr captured, then check. */
static void load(int agent, size_t size)
{
	struct edge_config e;
	struct agent_config a;
	FILE *saved = stderr, *mem;
	char *out = NULL;
	size_t outlen = 0;
	int n;

	mem = open_memstream(&out, &outlen);
	check(mem != NULL, "open_memstream");
	stderr = mem;
	n = agent ? config_agent_load(path, &a) : config_edge_load(path, &e);
	stderr = saved;
	check(fclose(mem) == 0, "fclose");
	if (n != 0) {
		check(agent ? is_zero(&a, sizeof(a)) : is_zero(&e, sizeof(e)),
		      "a failed load leaves the config empty");
		check_errors(out, outlen, n, size);
	} else {
		check(outlen == 0, "a good load prints nothing");
		if (agent) {
			check_agent(&a);
			config_agent_free(&a);
			check(is_zero(&a, sizeof(a)), "agent: free zeroes");
		} else {
			check_edge(&e);
			config_edge_free(&e);
			check(is_zero(&e, sizeof(e)), "edge: free zeroes");
		}
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		memfd = memfd_create("fuzz_config.yaml", MFD_CLOEXEC);
		check(memfd >= 0, "memfd_create");
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	}
	check(ftruncate(memfd, 0) == 0, "ftruncate");
	check(pwrite(memfd, data, size, 0) == (ssize_t)size, "pwrite");
	load(0, size);
	load(1, size);
	return 0;
}
