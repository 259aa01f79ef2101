/*
 * tests/unit/common/config.c - edge.yaml and agent.yaml loading.
 *
 * Valid files are loaded and their structs checked; every bad case captures
 * stderr and checks the exact "FILE:LINE:COL: " prefix and a substring of the
 * message, since users (and `-t`) rely on those positions.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/log.h"
#include "tests/unit/unit.h"

#define KEY0 "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define KEY1 "ed25519:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

/* The smallest valid edge.yaml: lines 1-4.  @D@ is the temp dir. */
#define EDGE_BASE                                                                                  \
	"tunnel:\n"                                                                                \
	"  listen: 0.0.0.0:443\n"                                                                  \
	"  cert: @D@/tunnel.crt\n"                                                                 \
	"  key: @D@/tunnel.key\n"

/* The smallest valid agent.yaml: lines 1-2. */
#define AGENT_BASE                                                                                 \
	"edge: wss://edge.example.com/relais\n"                                                    \
	"key: @D@/agent.key\n"

enum { EDGE, AGENT };

static char dir[] = "/tmp/relais-config-XXXXXX";
static char cfgpath[512];
static char captured[65536];
static int saved_stderr = -1;
static int file_seq;

/* dir/name holding text. */
static void put_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

static void touch(const char *name)
{
	put_file(name, "x\n");
}

/* A certificate (self-signed, expired: only parsed) for trust anchors. */
static const char CERT_PEM[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBcjCCARmgAwIBAgIUIq+aoVNBkG53+HNZs6F2Br+nS5YwCgYIKoZIzj0EAwIw\n"
                               "DzENMAsGA1UEAwwEdW5pdDAeFw0yNjExMjkwNjI3MjBaFw0yNjExMzAwNjI3MjBa\n"
                               "MA8xDTALBgNVBAMMBHVuaXQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT8ABZT\n"
                               "s+k+mFZHHBDa3S16tbiW36CMrSi5ywQQ8o/qPuCUZsJ0rVwe86QvGqIkjiaOtz5c\n"
                               "rVWfn5EllEunfAhAo1MwUTAdBgNVHQ4EFgQUOFRRV0HWz+Ueo2gV9htmaayjy0Yw\n"
                               "HwYDVR0jBBgwFoAUOFRRV0HWz+Ueo2gV9htmaayjy0YwDwYDVR0TAQH/BAUwAwEB\n"
                               "/zAKBggqhkjOPQQDAgNHADBEAiAqgEq4yT0qXNF5dGpl9m5BTce6G+Z2+tpSU8RM\n"
                               "MfMm2wIgYuf7QbOUEqu4iQHq56toFjVzwuCfCF0cHj1eErSmTFs=\n"
                               "-----END CERTIFICATE-----\n";

/* name with CERT_PEM in it. */
static void put_cert(const char *name)
{
	put_file(name, CERT_PEM);
}

/* A real agent key (the configuration loads it). */
static void make_agent_key(const char *name)
{
	char path[512], err[256];
	uint8_t pub[KEY_PUB_LEN];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (keys_init() < 0 || keys_generate_file(path, pub, err, sizeof(err)) < 0)
		fprintf(stderr, "cannot make %s: %s\n", path, err);
}

/* A private key's mode: not accessible by others. */
static void make_private(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	chmod(path, 0600);
}

/* Write text (with every "@D@" replaced by dir) to a new file; sets cfgpath. */
static void write_cfg(const char *text)
{
	FILE *f;

	snprintf(cfgpath, sizeof(cfgpath), "%s/c%d.yaml", dir, ++file_seq);
	f = fopen(cfgpath, "w");
	if (f == NULL) {
		perror(cfgpath);
		exit(1);
	}
	for (const char *s = text; *s != '\0';) {
		if (strncmp(s, "@D@", 3) == 0) {
			fputs(dir, f);
			s += 3;
		} else {
			fputc(*s++, f);
		}
	}
	fclose(f);
}

static void capture_begin(void)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/stderr", dir);
	fflush(stderr);
	saved_stderr = dup(2);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (saved_stderr < 0 || fd < 0) {
		perror("capture");
		exit(1);
	}
	dup2(fd, 2);
	close(fd);
}

static void capture_end(void)
{
	char path[512];
	ssize_t n;
	int fd;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	snprintf(path, sizeof(path), "%s/stderr", dir);
	fd = open(path, O_RDONLY);
	n = fd >= 0 ? read(fd, captured, sizeof(captured) - 1) : -1;
	captured[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

/* Load the file at cfgpath with stderr captured; returns the error count. */
static int load_captured(int kind, struct edge_config *e, struct agent_config *a)
{
	int n;

	capture_begin();
	n = kind == EDGE ? config_edge_load(cfgpath, e) : config_agent_load(cfgpath, a);
	capture_end();
	return n;
}

/* 1 when captured holds a line "cfgpath:pos: ..." containing sub. */
static int has_error(const char *pos, const char *sub)
{
	char prefix[600];
	size_t plen;

	snprintf(prefix, sizeof(prefix), "%s:%s: ", cfgpath, pos);
	plen = strlen(prefix);
	for (const char *line = captured; *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

		if (len >= plen && memcmp(line, prefix, plen) == 0) {
			char buf[1024];

			snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
			if (strstr(buf + plen, sub) != NULL)
				return 1;
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	return 0;
}

static int is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* A bad file: at least one error, an empty config, and the expected line. */
static void bad_at(int line, int kind, const char *yaml, const char *pos, const char *sub)
{
	struct edge_config e;
	struct agent_config a;
	int n;

	write_cfg(yaml);
	n = load_captured(kind, &e, &a);
	CHECK(n >= 1);
	if (kind == EDGE)
		CHECK(is_zero(&e, sizeof(e)));
	else
		CHECK(is_zero(&a, sizeof(a)));
	if (!has_error(pos, sub)) {
		fprintf(stderr, "  %s:%d: want \"%s: ...%s...\", got:\n%s", __FILE__, line, pos,
		        sub, captured);
		CHECK(!"expected error line");
	}
}

#define BAD(kind, yaml, pos, sub) bad_at(__LINE__, kind, yaml, pos, sub)

/* ---- valid files ---------------------------------------------------------- */

static void test_edge_full(void)
{
	struct edge_config c;
	char path[600], text[ADDR_TEXT_MAX];
	int n;

	write_cfg("# every key\n"
	          "listen:\n"
	          "  http: 0.0.0.0:80\n"
	          "  https: \"[::]:443\"\n"
	          "  max_connections_per_client: 64\n"
	          "tunnel:\n"
	          "  listen: 0.0.0.0:8443\n"
	          "  hostname: Edge.Example.com\n"
	          "  path: /relais-tunnel\n"
	          "  cert: @D@/tunnel.crt\n"
	          "  key: @D@/tunnel.key\n"
	          "admin:\n"
	          "  listen: 127.0.0.1:9090\n"
	          "agents:\n"
	          "  - name: home\n"
	          "    key: \"" KEY0 "\"\n"
	          "    hosts: [\"*.Home.example.com\", home.example.com]\n"
	          "    ports: [tcp/25565, udp/51820, tcp/30000-30100]\n"
	          "    max_certificates: 0\n"
	          "  - name: office.2\n"
	          "    key: " KEY1 "\n"
	          "access_log: \"-\"\n"
	          "log_level: debug\n"
	          "http:\n"
	          "  header_timeout: 30\n"
	          "  idle_timeout: 2m\n"
	          "  upstream_timeout: 500ms\n"
	          "  max_header_size: 8k\n"
	          "  max_body_size: 10g\n");
	n = load_captured(EDGE, &c, NULL);
	CHECK(n == 0);
	CHECK(captured[0] == '\0');
	if (n != 0) {
		fprintf(stderr, "%s", captured);
		return;
	}
	CHECK(strcmp(c.file, cfgpath) == 0);
	CHECK(c.has_http && c.has_https && c.has_admin);
	addr_format(&c.http, text);
	CHECK(strcmp(text, "0.0.0.0:80") == 0);
	addr_format(&c.https, text);
	CHECK(strcmp(text, "[::]:443") == 0);
	addr_format(&c.admin, text);
	CHECK(strcmp(text, "127.0.0.1:9090") == 0);
	addr_format(&c.tunnel.listen, text);
	CHECK(strcmp(text, "0.0.0.0:8443") == 0);
	CHECK(strcmp(c.tunnel.hostname, "edge.example.com") == 0);
	CHECK(strcmp(c.tunnel.path, "/relais-tunnel") == 0);
	snprintf(path, sizeof(path), "%s/tunnel.crt", dir);
	CHECK(strcmp(c.tunnel.cert, path) == 0);
	snprintf(path, sizeof(path), "%s/tunnel.key", dir);
	CHECK(strcmp(c.tunnel.key, path) == 0);

	CHECK(c.nagents == 2);
	CHECK(strcmp(c.agents[0].name, "home") == 0);
	CHECK(is_zero(c.agents[0].key, KEY_PUB_LEN));
	CHECK(c.agents[0].nhosts == 2);
	CHECK(strcmp(c.agents[0].hosts[0], "*.home.example.com") == 0);
	CHECK(strcmp(c.agents[0].hosts[1], "home.example.com") == 0);
	CHECK(c.agents[0].nports == 3);
	CHECK(c.agents[0].ports[0].kind == ROUTE_KIND_TCP && c.agents[0].ports[0].lo == 25565 &&
	      c.agents[0].ports[0].hi == 25565);
	CHECK(c.agents[0].ports[1].kind == ROUTE_KIND_UDP && c.agents[0].ports[1].lo == 51820);
	CHECK(c.agents[0].ports[2].lo == 30000 && c.agents[0].ports[2].hi == 30100);
	CHECK(strcmp(c.agents[1].name, "office.2") == 0);
	CHECK(c.agents[1].key[0] == 1 && c.agents[1].key[31] == 1);
	CHECK(c.agents[1].nhosts == 0 && c.agents[1].nports == 0);
	CHECK(c.agents[0].max_certificates == 0);
	CHECK(c.agents[1].max_certificates == 50);
	CHECK(c.max_conns_per_client == 64);

	CHECK(strcmp(c.access_log, "-") == 0);
	CHECK(c.log_level == LOG_DEBUG);
	CHECK(c.http_limits.header_timeout_ms == 30000);
	CHECK(c.http_limits.idle_timeout_ms == 120000);
	CHECK(c.http_limits.upstream_timeout_ms == 500);
	CHECK(c.http_limits.max_header_bytes == 8192);
	CHECK(c.http_limits.max_body_bytes == 10ull << 30);
	config_edge_free(&c);
	CHECK(is_zero(&c, sizeof(c)));
}

static void test_edge_defaults(void)
{
	struct edge_config c;

	write_cfg(EDGE_BASE);
	CHECK(load_captured(EDGE, &c, NULL) == 0);
	if (c.file == NULL)
		return;
	CHECK(!c.has_http && !c.has_https && !c.has_admin);
	CHECK(c.tunnel.hostname == NULL);
	CHECK(strcmp(c.tunnel.path, "/relais") == 0);
	CHECK(c.nagents == 0 && c.agents == NULL);
	CHECK(c.access_log == NULL);
	CHECK(c.log_level == LOG_INFO);
	CHECK(c.http_limits.header_timeout_ms == 60000);
	CHECK(c.http_limits.idle_timeout_ms == 75000);
	CHECK(c.http_limits.upstream_timeout_ms == 60000);
	CHECK(c.http_limits.max_header_bytes == 16384);
	CHECK(c.http_limits.max_body_bytes == 0);
	CHECK(c.max_conns_per_client == 256);
	config_edge_free(&c);

	/* the tunnel may share listen.https: agents are told apart by SNI */
	write_cfg(EDGE_BASE "listen:\n  https: 0.0.0.0:443\n  http:\n");
	CHECK(load_captured(EDGE, &c, NULL) == 0);
	CHECK(c.has_https && !c.has_http);
	config_edge_free(&c);
}

static void test_agent_full(void)
{
	struct agent_config c;
	char path[600];
	int n;

	write_cfg("edge: wss://Edge.Example.com:8443/relais\n"
	          "key: @D@/agent.key\n"
	          "edge_ca: @D@/ca.pem\n"
	          "name: home-1\n"
	          "log_level: warn\n"
	          "connect_timeout: 2s\n"
	          "max_connections: 300\n"
	          "routes:\n"
	          "  - host: Jellyfin.home.example.com\n"
	          "    to: http://127.0.0.1:8096\n"
	          "  - host: nas.home.example.com\n"
	          "    to: https://[fd00::10]:5001/\n"
	          "    tls_verify: no\n"
	          "    proxy_protocol: v1\n"
	          "  - host: \"*.vault.home.example.com\"\n"
	          "    to: vault.lan:8443\n"
	          "    tls: passthrough\n"
	          "    proxy_protocol: v2\n"
	          "  - host: web.home.example.com\n"
	          "    to: https://web.lan\n"
	          "    tls: edge\n"
	          "    tls_verify: on\n"
	          "streams:\n"
	          "  - listen: tcp/25565\n"
	          "    to: 127.0.0.1:25565\n"
	          "  - listen: udp/51820\n"
	          "    to: 192.168.1.2:51820\n"
	          "    idle_timeout: 120\n"
	          "    proxy_protocol: none\n"
	          "  - listen: tcp/30000-30100\n"
	          "    to: \"[::1]:40000\"\n"
	          "    proxy_protocol: v2\n"
	          "  - listen: tcp/25566\n"
	          "    to: MC.lan:25565\n");
	n = load_captured(AGENT, NULL, &c);
	CHECK(n == 0);
	CHECK(captured[0] == '\0');
	if (n != 0) {
		fprintf(stderr, "%s", captured);
		return;
	}
	CHECK(strcmp(c.file, cfgpath) == 0);
	CHECK(strcmp(c.edge, "wss://Edge.Example.com:8443/relais") == 0);
	CHECK(c.edge_tls == 1);
	CHECK(strcmp(c.edge_host, "edge.example.com") == 0);
	CHECK(c.edge_port == 8443);
	CHECK(strcmp(c.edge_path, "/relais") == 0);
	snprintf(path, sizeof(path), "%s/agent.key", dir);
	CHECK(strcmp(c.key, path) == 0);
	snprintf(path, sizeof(path), "%s/ca.pem", dir);
	CHECK(strcmp(c.edge_ca, path) == 0);
	CHECK(strcmp(c.name, "home-1") == 0);
	CHECK(c.log_level == LOG_WARN);
	CHECK(c.connect_timeout_ms == 2000);
	CHECK(c.max_conns == 300);

	CHECK(c.nroutes == 4);
	CHECK(strcmp(c.routes[0].host, "jellyfin.home.example.com") == 0);
	CHECK(c.routes[0].target == TARGET_HTTP);
	CHECK(strcmp(c.routes[0].to_host, "127.0.0.1") == 0 && c.routes[0].to_port == 8096);
	CHECK(c.routes[0].tls_verify == 1 && c.routes[0].tls_mode == TLS_MODE_EDGE);
	CHECK(c.routes[0].proxy_protocol == PROXY_NONE);
	CHECK(c.routes[1].target == TARGET_HTTPS);
	CHECK(strcmp(c.routes[1].to_host, "fd00::10") == 0 && c.routes[1].to_port == 5001);
	CHECK(c.routes[1].tls_verify == 0);
	CHECK(c.routes[1].proxy_protocol == PROXY_V1);
	CHECK(strcmp(c.routes[2].host, "*.vault.home.example.com") == 0);
	CHECK(c.routes[2].target == TARGET_RAW);
	CHECK(strcmp(c.routes[2].to_host, "vault.lan") == 0 && c.routes[2].to_port == 8443);
	CHECK(c.routes[2].tls_mode == TLS_MODE_PASSTHROUGH);
	CHECK(c.routes[2].proxy_protocol == PROXY_V2);
	CHECK(c.routes[3].target == TARGET_HTTPS && c.routes[3].to_port == 443);
	CHECK(c.routes[3].tls_verify == 1);

	CHECK(c.nstreams == 4);
	CHECK(c.streams[0].listen.kind == ROUTE_KIND_TCP && c.streams[0].listen.lo == 25565);
	CHECK(strcmp(c.streams[0].to_host, "127.0.0.1") == 0 && c.streams[0].to_port == 25565);
	CHECK(c.streams[0].idle_timeout_ms == 0 && c.streams[0].proxy_protocol == PROXY_NONE);
	CHECK(c.streams[1].listen.kind == ROUTE_KIND_UDP);
	CHECK(c.streams[1].idle_timeout_ms == 120000);
	CHECK(c.streams[2].listen.lo == 30000 && c.streams[2].listen.hi == 30100);
	CHECK(strcmp(c.streams[2].to_host, "::1") == 0 && c.streams[2].to_port == 40000);
	CHECK(c.streams[2].proxy_protocol == PROXY_V2);
	CHECK(strcmp(c.streams[3].to_host, "mc.lan") == 0);
	config_agent_free(&c);
	CHECK(is_zero(&c, sizeof(c)));
}

static void test_agent_defaults_and_urls(void)
{
	static const struct {
		const char *url;
		int tls;
		const char *host;
		uint16_t port;
		const char *path;
	} urls[] = {
	    {"wss://edge.example.com", 1, "edge.example.com", 443, "/"},
	    {"wss://edge.example.com/", 1, "edge.example.com", 443, "/"},
	    {"ws://127.0.0.1:8080/t", 0, "127.0.0.1", 8080, "/t"},
	    {"ws://[::1]:9000/relais", 0, "::1", 9000, "/relais"},
	    {"wss://[2001:db8::1]/x/y", 1, "2001:db8::1", 443, "/x/y"},
	    {"ws://localhost/relais?v=1", 0, "localhost", 80, "/relais?v=1"},
	};
	struct agent_config c;
	char yaml[512];

	write_cfg(AGENT_BASE);
	CHECK(load_captured(AGENT, NULL, &c) == 0);
	if (c.file != NULL) {
		CHECK(c.edge_ca == NULL && c.name[0] == '\0');
		CHECK(c.log_level == LOG_INFO && c.connect_timeout_ms == 5000);
		CHECK(c.max_conns == 1024);
		CHECK(c.nroutes == 0 && c.nstreams == 0);
		config_agent_free(&c);
	}
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		snprintf(yaml, sizeof(yaml), "edge: \"%s\"\nkey: @D@/agent.key\n", urls[i].url);
		write_cfg(yaml);
		CHECK(load_captured(AGENT, NULL, &c) == 0);
		if (c.file == NULL) {
			fprintf(stderr, "  %s", captured);
			continue;
		}
		CHECK(c.edge_tls == urls[i].tls);
		CHECK(strcmp(c.edge_host, urls[i].host) == 0);
		CHECK(c.edge_port == urls[i].port);
		CHECK(strcmp(c.edge_path, urls[i].path) == 0);
		config_agent_free(&c);
	}
}

static void test_port_ranges(void)
{
	struct port_range r, allowed[3];

	CHECK(port_range_parse("tcp/25565", &r) == 0);
	CHECK(r.kind == ROUTE_KIND_TCP && r.lo == 25565 && r.hi == 25565);
	CHECK(port_range_parse("udp/1-65535", &r) == 0);
	CHECK(r.kind == ROUTE_KIND_UDP && r.lo == 1 && r.hi == 65535);
	CHECK(port_range_parse("tcp/0", &r) < 0);
	CHECK(port_range_parse("tcp/65536", &r) < 0);
	CHECK(port_range_parse("tcp/200-100", &r) < 0);
	CHECK(port_range_parse("tcp/", &r) < 0);
	CHECK(port_range_parse("tcp/1-", &r) < 0);
	CHECK(port_range_parse("tcp/-1", &r) < 0);
	CHECK(port_range_parse("tcp/1-2-3", &r) < 0);
	CHECK(port_range_parse("sctp/1", &r) < 0);
	CHECK(port_range_parse("TCP/1", &r) < 0);
	CHECK(port_range_parse("tcp/ 1", &r) < 0);
	CHECK(port_range_parse("25565", &r) < 0);

	CHECK(port_range_parse("tcp/25565", &allowed[0]) == 0);
	CHECK(port_range_parse("udp/51820", &allowed[1]) == 0);
	CHECK(port_range_parse("tcp/30000-30100", &allowed[2]) == 0);
	port_range_parse("tcp/25565", &r);
	CHECK(port_range_allowed(&r, allowed, 3));
	port_range_parse("udp/25565", &r);
	CHECK(!port_range_allowed(&r, allowed, 3));
	port_range_parse("tcp/30000-30100", &r);
	CHECK(port_range_allowed(&r, allowed, 3));
	port_range_parse("tcp/30050-30060", &r);
	CHECK(port_range_allowed(&r, allowed, 3));
	port_range_parse("tcp/30050-30101", &r);
	CHECK(!port_range_allowed(&r, allowed, 3));
	port_range_parse("udp/51820", &r);
	CHECK(port_range_allowed(&r, allowed, 3));
	CHECK(!port_range_allowed(&r, allowed, 0));
}

/* ---- errors --------------------------------------------------------------- */

static void test_missing_file(void)
{
	struct edge_config e;
	struct agent_config a;

	snprintf(cfgpath, sizeof(cfgpath), "%s/nonexistent.yaml", dir);
	CHECK(load_captured(EDGE, &e, NULL) == 1);
	CHECK(has_error("0:0", "cannot open: No such file or directory"));
	CHECK(is_zero(&e, sizeof(e)));
	CHECK(load_captured(AGENT, NULL, &a) == 1);
	CHECK(has_error("0:0", "cannot open: No such file or directory"));
	CHECK(is_zero(&a, sizeof(a)));

	snprintf(cfgpath, sizeof(cfgpath), "%s", dir);
	CHECK(load_captured(EDGE, &e, NULL) == 1);
	CHECK(has_error("0:0", "cannot open: Is a directory"));
}

static void test_syntax_errors(void)
{
	BAD(EDGE, "tunnel:\n  listen: [0.0.0.0:443\n  cert: x\n", "3:7", "flow sequence");
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n bad: 1\n", "3:2", "did not find expected key");
	BAD(EDGE, "tunnel: \"unterminated\n", "2:1", "quoted scalar");
	BAD(EDGE, "tunnel:\n\tlisten: 1\n", "2:1", "cannot start any token");
	BAD(AGENT, "edge: *nope\n", "1:7", "aliases are not supported ('*nope')");
	BAD(AGENT, "edge: \xff\n", "1:7", "invalid");
	BAD(EDGE, EDGE_BASE "---\nother: 1\n", "6:1", "only one YAML document is allowed");
}

/* Anchors, aliases, deep nesting and huge node counts stop the check early. */
static void test_shape_limits(void)
{
	char *big;
	size_t o = 0;

	BAD(EDGE,
	    EDGE_BASE "agents:\n"
	              "  - &a {name: n, key: \"" KEY0 "\", hosts: [&h a.example.com, *h]}\n"
	              "  - *a\n",
	    "6:5", "anchors and aliases are not supported ('&a')");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: &h a.example.com\n    to: *h\n", "4:11",
	    "anchors and aliases are not supported ('&h')");
	BAD(AGENT, AGENT_BASE "name: *x\n", "3:7", "aliases are not supported ('*x')");

	/* depth 64 is allowed (the walk then reports the wrong type), 65 is not */
	big = malloc(1u << 20);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	o = (size_t)sprintf(big, "name: ");
	for (int i = 0; i < 63; i++)
		big[o++] = '[';
	for (int i = 0; i < 63; i++)
		big[o++] = ']';
	big[o++] = '\n';
	big[o] = '\0';
	BAD(AGENT, big, "1:7", "'name' must be a string");
	CHECK(!has_error("1:70", "nesting"));
	o = (size_t)sprintf(big, "name: ");
	for (int i = 0; i < 200000; i++)
		big[o++] = '[';
	big[o] = '\0';
	BAD(AGENT, big, "1:70", "nesting deeper than 64 levels");

	/* 200000 values at most: a list of 250000 */
	o = (size_t)sprintf(big, "routes: [");
	for (int i = 0; i < 250000; i++)
		o += (size_t)sprintf(big + o, "a,");
	sprintf(big + o, "a]\n");
	BAD(AGENT, big, "1:400004", "more than 200000 values in the file");
	free(big);
}

/* A FIFO as the configuration is refused, not waited on. */
static void test_fifo(void)
{
	struct agent_config a;

	snprintf(cfgpath, sizeof(cfgpath), "%s/fifo.yaml", dir);
	CHECK(mkfifo(cfgpath, 0600) == 0);
	CHECK(load_captured(AGENT, NULL, &a) == 1);
	CHECK(has_error("0:0", "cannot open: not a regular file"));
	CHECK(is_zero(&a, sizeof(a)));
}

#if defined(__SANITIZE_ADDRESS__)
#define UNIT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNIT_ASAN 1
#endif
#endif

/* Running out of memory fails the load with an error; it never aborts (a
 * reload must keep the running process).  Not under ASan, whose allocator
 * aborts by itself. */
static void test_out_of_memory(void)
{
#ifndef UNIT_ASAN
	struct agent_config a;
	struct rlimit old, low;
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	int n;

	CHECK(f != NULL && fscanf(f, "%ld", &pages) == 1);
	if (f != NULL)
		fclose(f);
	CHECK(getrlimit(RLIMIT_AS, &old) == 0);
	write_cfg(AGENT_BASE);
	low = old;
	/* room for small allocations, none for the 1 MiB read buffer */
	low.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + 512 * 1024;
	capture_begin();
	CHECK(setrlimit(RLIMIT_AS, &low) == 0);
	n = config_agent_load(cfgpath, &a);
	CHECK(setrlimit(RLIMIT_AS, &old) == 0);
	capture_end();
	CHECK(n == 1);
	CHECK(has_error("0:0", "out of memory"));
	CHECK(is_zero(&a, sizeof(a)));
#endif
}

static void test_structure_errors(void)
{
	BAD(EDGE, "- tunnel\n", "1:1", "the configuration must be a mapping");
	BAD(EDGE, "", "1:1", "missing required key 'tunnel' at top level");
	BAD(EDGE, "listen:\n  http: 0.0.0.0:80\n", "1:1",
	    "missing required key 'tunnel' at top level");
	BAD(EDGE, EDGE_BASE "foo: 1\n", "5:1", "unknown key 'foo' at top level");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/tunnel.crt\n  key: @D@/tunnel.key\n"
	    "  bogus: x\n",
	    "5:3", "unknown key 'bogus' in tunnel");
	BAD(EDGE, EDGE_BASE "listen: 0.0.0.0:80\n", "5:9", "'listen' must be a mapping");
	BAD(EDGE, EDGE_BASE "listen:\n  http: [0.0.0.0:80]\n", "6:9", "'http' must be an address");
	BAD(EDGE, EDGE_BASE "listen:\n  http: {a: 1}\n", "6:9", "'http' must be an address");
	BAD(EDGE, EDGE_BASE "log_level: info\nlog_level: debug\n", "6:1",
	    "duplicate key 'log_level' (first at 5:1)");
	BAD(EDGE, EDGE_BASE "[a]: 1\n", "5:1", "keys must be strings at top level");
	BAD(EDGE, EDGE_BASE "agents:\n  home: {}\n", "6:3", "'agents' must be a list of mappings");
	BAD(EDGE, EDGE_BASE "agents:\n  - home\n", "6:5", "'agents' must be a list of mappings");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    hosts: a.example.com\n",
	    "8:12", "'hosts' must be a list of strings");
	BAD(EDGE, EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    hosts: [a.com, [b]]\n",
	    "8:20", "'hosts' must be a list of strings");
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/tunnel.crt\n", "2:3",
	    "missing required key 'key' in tunnel");
	/* a key with no value is absent: not a cert without its key, nor no cert at all */
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/tunnel.crt\n  key:\n", "2:3",
	    "missing required key 'key' in tunnel");
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n  cert: ~\n  key: @D@/tunnel.key\n", "2:3",
	    "missing required key 'cert' in tunnel");
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n  cert:\n  key:\n", "2:3",
	    "missing required key 'cert' in tunnel (or set tunnel.hostname and tls.acme");
	BAD(EDGE, EDGE_BASE "agents:\n  - name: home\n    hosts: [a.com]\n", "6:5",
	    "missing required key 'key' in agent 'home'");
	BAD(EDGE, EDGE_BASE "agents:\n  - key: " KEY0 "\n", "6:5",
	    "missing required key 'name' in agent #1");
	BAD(EDGE, EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    color: red\n", "8:5",
	    "unknown key 'color' in agent 'home'");
	BAD(EDGE, EDGE_BASE "admin:\n  listen:\n", "6:10", "'listen' must not be empty");
	/* a NUL ends the key for strcmp: "key\0junk" must not pass for "key" */
	BAD(AGENT, "edge: wss://e.example.com/\n\"key\\0junk\": k\n", "2:1",
	    "keys must not contain NUL characters at top level");
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n  \"cert\\0\": /dev/null\n  key: /dev/null\n",
	    "3:3", "keys must not contain NUL characters in tunnel");
}

static void test_value_errors(void)
{
	BAD(EDGE, EDGE_BASE "listen:\n  http: 1.2.3:80\n", "6:9",
	    "bad address '1.2.3:80' (expected IPv4:PORT or [IPv6]:PORT)");
	BAD(EDGE, EDGE_BASE "listen:\n  https: localhost:443\n", "6:10",
	    "bad address 'localhost:443'");
	BAD(EDGE, EDGE_BASE "listen:\n  http: 0.0.0.0:0\n", "6:9", "bad address '0.0.0.0:0'");
	BAD(EDGE, EDGE_BASE "listen:\n  http: \"a\\x01b\"\n", "6:9", "bad address 'a\\x01b'");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    hosts: [a.com, a..b]\n",
	    "8:20", "bad host pattern 'a..b'");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    hosts: [\"a.*.com\"]\n",
	    "8:13", "bad host pattern 'a.*.com'");
	BAD(EDGE, EDGE_BASE "agents:\n  - name: home\n    key: ed25519:abc\n", "7:10",
	    "bad public key (expected ed25519:<base64 of 32 bytes>)");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    ports: [tcp/80, tcp/0]\n",
	    "8:21", "bad port range 'tcp/0' (expected tcp/PORT, udp/PORT or tcp/LOW-HIGH)");
	BAD(EDGE, EDGE_BASE "agents:\n  - name: \"my home\"\n    key: " KEY0 "\n", "6:11",
	    "bad agent name 'my home'");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    max_certificates: -1\n",
	    "8:23", "'max_certificates' must be a number (0..4096; 0: no ACME certificates");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    max_certificates: 4097\n",
	    "8:23", "'max_certificates' must be a number (0..4096");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    max_certificates: 5x\n",
	    "8:23", "'max_certificates' must be a number");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n    max_certificates: [1]\n",
	    "8:23", "'max_certificates' must be a number");
	BAD(EDGE, EDGE_BASE "listen:\n  max_connections_per_client: -5\n", "6:31",
	    "'max_connections_per_client' must be a number (0..1000000; 0: no limit)");
	BAD(EDGE, EDGE_BASE "listen:\n  max_connections_per_client: 1000001\n", "6:31",
	    "'max_connections_per_client' must be a number");
	BAD(EDGE, EDGE_BASE "log_level: verbose\n", "5:12", "bad log_level 'verbose'");
	BAD(EDGE, EDGE_BASE "http:\n  header_timeout: 10x\n", "6:19",
	    "bad duration '10x' for 'header_timeout'");
	BAD(EDGE, EDGE_BASE "http:\n  idle_timeout: 0\n", "6:17",
	    "bad duration '0' for 'idle_timeout'");
	BAD(EDGE, EDGE_BASE "http:\n  idle_timeout: 1.5s\n", "6:17", "bad duration '1.5s'");
	BAD(EDGE, EDGE_BASE "http:\n  upstream_timeout: 99999999h\n", "6:21", "bad duration");
	BAD(EDGE, EDGE_BASE "http:\n  max_body_size: 1t\n", "6:18",
	    "bad size '1t' for 'max_body_size'");
	BAD(EDGE, EDGE_BASE "http:\n  max_body_size: -1\n", "6:18", "bad size '-1'");
	BAD(EDGE, EDGE_BASE "http:\n  max_body_size: 99999999999999999999\n", "6:18", "bad size");
	BAD(EDGE, EDGE_BASE "http:\n  max_header_size: 100\n", "6:20",
	    "'max_header_size' must be between 1k and 1m");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  path: relais\n  cert: @D@/tunnel.crt\n"
	    "  key: @D@/tunnel.key\n",
	    "3:9", "bad tunnel path 'relais'");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  path: /a b\n  cert: @D@/tunnel.crt\n"
	    "  key: @D@/tunnel.key\n",
	    "3:9", "bad tunnel path '/a b'");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  hostname: a_b.com\n  cert: @D@/tunnel.crt\n"
	    "  key: @D@/tunnel.key\n",
	    "3:13", "bad host name 'a_b.com'");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/missing.crt\n  key: @D@/tunnel.key\n",
	    "3:3", "cannot read '");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/missing.crt\n  key: @D@/tunnel.key\n",
	    "3:3", "/missing.crt': No such file or directory");
	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/tunnel.crt\n  key: @D@\n", "4:3",
	    "Is a directory");
	BAD(EDGE, EDGE_BASE "admin:\n  listen: 0.0.0.0:9090\n", "6:11",
	    "admin listen address must be a loopback address");
	BAD(EDGE, EDGE_BASE "listen:\n  http: 0.0.0.0:443\n", "6:9",
	    "listen.http uses the same address as tunnel.listen (0.0.0.0:443)");
}

static void test_duplicate_errors(void)
{
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n  - name: home\n    key: " KEY1
	              "\n",
	    "8:11", "duplicate agent 'home' (first at 6:11)");
	BAD(EDGE,
	    EDGE_BASE "agents:\n  - name: home\n    key: " KEY0 "\n  - name: work\n    key: " KEY0
	              "\n",
	    "9:10", "duplicate agent key (first at 7:10, agent 'home')");
	BAD(AGENT,
	    AGENT_BASE "routes:\n  - host: a.example.com\n    to: http://127.0.0.1:80\n"
	               "  - host: A.example.com\n    to: http://127.0.0.1:81\n",
	    "6:11", "duplicate route 'a.example.com' (first at 4:11)");
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: tcp/30000-30100\n    to: 127.0.0.1:30000\n"
	               "  - listen: udp/30050\n    to: 127.0.0.1:1\n"
	               "  - listen: tcp/30100\n    to: 127.0.0.1:1\n",
	    "8:13", "duplicate route 'tcp/30100' (first at 4:13)");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: http://a:1\n    to: http://b:1\n",
	    "6:5", "duplicate key 'to' (first at 5:5)");
}

/* Streams of one protocol may not share a port; the later one of a pair is
 * reported, pointing at the first entry in the file that it overlaps. */
static void test_stream_overlaps(void)
{
	struct agent_config a;
	int n;

	/* a range, then a single port inside it */
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: tcp/30000-30100\n    to: 127.0.0.1:30000\n"
	               "  - listen: tcp/30050\n    to: 127.0.0.1:1\n",
	    "6:13", "duplicate route 'tcp/30050' (first at 4:13)");
	/* a single port, then a range holding it */
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: udp/30050\n    to: 127.0.0.1:1\n"
	               "  - listen: udp/30000-30100\n    to: 127.0.0.1:30000\n",
	    "6:13", "duplicate route 'udp/30000-30100' (first at 4:13)");
	/* ranges that share only their ends; the whole port space */
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: tcp/100-200\n    to: 127.0.0.1:100\n"
	               "  - listen: tcp/200-300\n    to: 127.0.0.1:200\n",
	    "6:13", "duplicate route 'tcp/200-300' (first at 4:13)");
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: tcp/65535\n    to: 127.0.0.1:1\n"
	               "  - listen: tcp/1-65535\n    to: 127.0.0.1:1\n",
	    "6:13", "duplicate route 'tcp/1-65535' (first at 4:13)");

	/* adjacent ranges, and TCP and UDP on the same ports, do not overlap */
	write_cfg(AGENT_BASE "streams:\n"
	                     "  - {listen: tcp/30000-30100, to: 127.0.0.1:30000}\n"
	                     "  - {listen: tcp/30101-30200, to: 127.0.0.1:30101}\n"
	                     "  - {listen: tcp/29000-29999, to: 127.0.0.1:29000}\n"
	                     "  - {listen: tcp/32767, to: 127.0.0.1:1}\n"
	                     "  - {listen: tcp/32768, to: 127.0.0.1:1}\n"
	                     "  - {listen: udp/29000-30200, to: 127.0.0.1:29000}\n"
	                     "  - {listen: udp/53, to: 127.0.0.1:53}\n"
	                     "  - {listen: tcp/53, to: 127.0.0.1:53}\n");
	CHECK(load_captured(AGENT, NULL, &a) == 0);
	CHECK(a.nstreams == 8);
	CHECK(a.streams[5].listen.kind == ROUTE_KIND_UDP && a.streams[5].listen.lo == 29000 &&
	      a.streams[5].listen.hi == 30200);
	config_agent_free(&a);

	/*
	 * Several pairs: each later entry names the first one it overlaps in
	 * file order, whatever order the ports come in, and the error sits on
	 * the later entry.  Entries with a bad listen take no ports.
	 */
	write_cfg(AGENT_BASE "streams:\n"
	                     "  - {listen: tcp/32768, to: h:1}\n"         /* 4:14 */
	                     "  - {listen: tcp/300, to: h:1}\n"           /* 5:14 */
	                     "  - {listen: tcp/0, to: h:1}\n"             /* 6:14 bad */
	                     "  - {listen: tcp/100-200, to: h:100}\n"     /* 7:14 */
	                     "  - {listen: udp/150, to: h:1}\n"           /* 8:14 */
	                     "  - {listen: tcp/150-350, to: h:150}\n"     /* 9:14 */
	                     "  - {listen: tcp/300, to: h:1}\n"           /* 10:14 */
	                     "  - {listen: tcp/32760-32770, to: h:1}\n"   /* 11:14 */
	                     "  - {listen: tcp/1-99, to: h:1}\n"          /* 12:14 */
	                     "  - {listen: tcp/32767-40000, to: h:1}\n"); /* 13:14 */
	n = load_captured(AGENT, NULL, &a);
	CHECK(n == 5);
	CHECK(has_error("6:14", "bad stream listen 'tcp/0'"));
	CHECK(has_error("9:14", "duplicate route 'tcp/150-350' (first at 5:14)"));
	CHECK(has_error("10:14", "duplicate route 'tcp/300' (first at 5:14)"));
	CHECK(has_error("11:14", "duplicate route 'tcp/32760-32770' (first at 4:14)"));
	CHECK(has_error("13:14", "duplicate route 'tcp/32767-40000' (first at 4:14)"));
	CHECK(is_zero(&a, sizeof(a)));
}

/* Duplicates in long lists are found (by hash, or for stream ports by a
 * tree, now: comparing each entry with all before it stalled the load of a
 * 1 MiB file for seconds; that is a speed, measured outside the tests, not
 * checked here). */
static void test_duplicates_in_long_lists(void)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o, max = 1u << 20;
	char *big = malloc(max);

	CHECK(big != NULL);
	if (big == NULL)
		return;
	/* 12000 agents, each with its own key (the first 3 bytes are i) */
	o = (size_t)snprintf(big, max, EDGE_BASE "agents:\n");
	for (unsigned i = 0; i <= 12000 && o < max; i++)
		o += (size_t)snprintf(
		    big + o, max - o, "  - {name: n%u, key: ed25519:%c%c%c%c%s}\n",
		    i == 12000 ? 7 : i, b64[(i >> 18) & 63], b64[(i >> 12) & 63],
		    b64[(i >> 6) & 63], b64[i & 63], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	if (o < max)
		o += (size_t)snprintf(big + o, max - o, "  - {name: x, key: ed25519:AAAM%s}\n",
		                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	CHECK(o < max);
	BAD(EDGE, big, "12006:12", "duplicate agent 'n7' (first at 13:12)");
	CHECK(has_error("12007:20", "duplicate agent key (first at 18:22, agent 'n12')"));

	/* 30000 routes: this took 3 s */
	o = (size_t)snprintf(big, max, AGENT_BASE "routes:\n");
	for (int i = 0; i < 30000 && o < max; i++)
		o += (size_t)snprintf(big + o, max - o, "- host: h%d.x\n  to: http://a\n", i);
	if (o < max)
		o += (size_t)snprintf(big + o, max - o, "- host: H29999.X\n  to: http://a\n");
	CHECK(o < max);
	BAD(AGENT, big, "60004:9", "duplicate route 'h29999.x' (first at 60002:9)");

	/* 30000 streams on ports 1-30000, then one overlapping the last ten */
	o = (size_t)snprintf(big, max, AGENT_BASE "streams:\n");
	for (int i = 1; i <= 30000 && o < max; i++)
		o += (size_t)snprintf(big + o, max - o, "- listen: tcp/%d\n  to: a:1\n", i);
	if (o < max)
		o += (size_t)snprintf(big + o, max - o, "- listen: tcp/29991-40000\n  to: a:1\n");
	CHECK(o < max);
	BAD(AGENT, big, "60004:11", "duplicate route 'tcp/29991-40000' (first at 59984:11)");
	free(big);
}

static void test_agent_errors(void)
{
	BAD(AGENT, "key: k\n", "1:1", "missing required key 'edge' at top level");
	BAD(AGENT, "edge: wss://e.com/\n", "1:1", "missing required key 'key' at top level");
	BAD(AGENT, "edge: https://e.com/relais\nkey: k\n", "1:7",
	    "bad edge URL 'https://e.com/relais' (expected wss://HOST[:PORT]/PATH)");
	BAD(AGENT, "edge: wss://e.com:0/relais\nkey: k\n", "1:7", "bad edge URL");
	BAD(AGENT, "edge: wss://user@e.com/relais\nkey: k\n", "1:7", "bad edge URL");
	BAD(AGENT, "edge: wss:///relais\nkey: k\n", "1:7", "bad edge URL");
	BAD(AGENT, "edge: wss://[::1/relais\nkey: k\n", "1:7", "bad edge URL");
	BAD(AGENT, "edge: wss://1.2.3/relais\nkey: k\n", "1:7", "bad edge URL");
	BAD(AGENT, "edge: wss://e.com/re lais\nkey: k\n", "1:7", "bad edge URL");
	BAD(AGENT, AGENT_BASE "key2: x\n", "3:1", "unknown key 'key2' at top level");
	BAD(AGENT, "edge: wss://e.com/\nkey: \"\"\n", "2:6", "'key' must not be empty");
	/* A control byte in a name another module reports is not printed raw. */
	BAD(AGENT, "edge: wss://e.com/\nkey: \"/no\\nsuch\"\n", "2:6",
	    "/no?such: No such file or directory");
	BAD(AGENT, "edge: wss://e.com/\nkey: {a: b}\n", "2:6", "'key' must be a string");
	BAD(AGENT, AGENT_BASE "edge_ca: @D@/nope.pem\n", "3:1", "cannot read '");
	BAD(AGENT, AGENT_BASE "name: \"a/b\"\n", "3:7", "bad name 'a/b'");
	BAD(AGENT, AGENT_BASE "connect_timeout: 5 s\n", "3:18", "bad duration '5 s'");
	BAD(AGENT, AGENT_BASE "max_connections: 65537\n", "3:18",
	    "'max_connections' must be a number (0..65536; 0: no limit)");
	BAD(AGENT, AGENT_BASE "max_connections: -1\n", "3:18",
	    "'max_connections' must be a number");
	BAD(AGENT, AGENT_BASE "routes: {a: b}\n", "3:9", "'routes' must be a list of mappings");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n", "4:5",
	    "missing required key 'to' in route 'a.com'");
	BAD(AGENT, AGENT_BASE "routes:\n  - to: http://a:1\n", "4:5",
	    "missing required key 'host' in route #1");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a..com\n    to: http://a:1\n", "4:11",
	    "bad host pattern 'a..com'");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: http://a:1\n    tls_verfy: no\n",
	    "6:5", "unknown key 'tls_verfy' in route 'a.com'");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: ftp://a:1\n", "5:9",
	    "bad target 'ftp://a:1' (expected http://HOST:PORT, https://HOST:PORT or HOST:PORT)");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: http://a:1/app\n", "5:9",
	    "bad target");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: http://1.2.3:80\n", "5:9",
	    "bad target");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: 127.0.0.1\n", "5:9", "bad target");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: 127.0.0.1:8443\n", "5:9",
	    "raw target needs tls: passthrough");
	BAD(AGENT,
	    AGENT_BASE
	    "routes:\n  - host: a.com\n    to: http://127.0.0.1:80\n    tls: passthrough\n",
	    "6:10", "tls: passthrough needs a raw HOST:PORT target");
	BAD(AGENT, AGENT_BASE "routes:\n  - host: a.com\n    to: a:1\n    tls: terminate\n", "6:10",
	    "bad tls mode 'terminate'");
	BAD(AGENT,
	    AGENT_BASE "routes:\n  - host: a.com\n    to: https://a:1\n    tls_verify: maybe\n",
	    "6:17", "'tls_verify' must be true or false");
	BAD(AGENT,
	    AGENT_BASE "routes:\n  - host: a.com\n    to: http://a:1\n    proxy_protocol: v3\n",
	    "6:21", "bad proxy_protocol 'v3' (expected v1, v2 or none)");
	BAD(AGENT, AGENT_BASE "streams:\n  - listen: 25565\n    to: a:1\n", "4:13",
	    "bad stream listen '25565'");
	BAD(AGENT, AGENT_BASE "streams:\n  - listen: tcp/1\n    to: http://a:1\n", "5:9",
	    "bad target 'http://a:1' (expected HOST:PORT)");
	BAD(AGENT, AGENT_BASE "streams:\n  - listen: tcp/65000-65100\n    to: a:65500\n", "5:9",
	    "target port range 65500-65600 exceeds 65535");
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: udp/53\n    to: a:53\n    proxy_protocol: v1\n",
	    "6:21", "proxy_protocol v1 cannot carry UDP");
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: tcp/22\n    to: a:22\n    idle_timeout: soon\n",
	    "6:19", "bad duration 'soon' for 'idle_timeout'");
	BAD(AGENT,
	    AGENT_BASE "streams:\n  - listen: udp/51820\n    to: a:51820\n    idle_timeout: 11m\n",
	    "6:19", "idle_timeout of a UDP stream is at most 10m");
	BAD(AGENT, AGENT_BASE "streams:\n  - to: a:22\n", "4:5",
	    "missing required key 'listen' in stream #1");
}

/* All errors of a file are reported, in file order. */
static void test_many_errors(void)
{
	struct edge_config e;
	const char *first, *second;
	int n;

	write_cfg("listen:\n  http: nope\n"
	          "tunnel:\n  listen: 0.0.0.0:443\n  cert: @D@/tunnel.crt\n  key: @D@/tunnel.key\n"
	          "agents:\n  - name: home\n    key: bad\n    hosts: [\"*\"]\n"
	          "log_level: loud\n");
	n = load_captured(EDGE, &e, NULL);
	CHECK(n == 4);
	CHECK(has_error("2:9", "bad address 'nope'"));
	CHECK(has_error("9:10", "bad public key"));
	CHECK(has_error("10:13", "bad host pattern '*'"));
	CHECK(has_error("11:12", "bad log_level 'loud'"));
	first = strstr(captured, "bad public key");
	second = strstr(captured, "bad host pattern");
	CHECK(first != NULL && second != NULL && first < second);
	CHECK(is_zero(&e, sizeof(e)));
}

/* The deploy/ examples load cleanly once /etc/relais/ files exist (run from the repo root). */
static void example_at(int kind, const char *file)
{
	struct edge_config e;
	struct agent_config a;
	static char text[65536], out[70000];
	size_t len, o = 0;
	FILE *f = fopen(file, "r");

	if (f == NULL) {
		fprintf(stderr, "  %s not found, skipped (run from the repository root)\n", file);
		return;
	}
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = '\0';
	for (const char *s = text; *s != '\0' && o < sizeof(out) - 8;) {
		if (strncmp(s, "/etc/relais/", 12) == 0) {
			memcpy(out + o, "@D@/", 4);
			o += 4;
			s += 12;
		} else if (strncmp(s, "/var/log/relais/", 16) == 0) {
			memcpy(out + o, "@D@/", 4);
			o += 4;
			s += 16;
		} else {
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
	write_cfg(out);
	if (load_captured(kind, &e, &a) != 0) {
		fprintf(stderr, "  %s:\n%s", file, captured);
		CHECK(!"example does not load");
		return;
	}
	if (kind == EDGE) {
		CHECK(e.nagents == 2 && e.has_admin);
		config_edge_free(&e);
	} else {
		CHECK(a.nroutes == 4 && a.nstreams == 4);
		config_agent_free(&a);
	}
}

/* tls, ACME, listen.streams and the per-route HTTPS options. */
static void test_tls_and_streams(void)
{
	struct edge_config e;
	struct agent_config a;

	write_cfg("listen:\n  https: 127.0.0.1:8443\n  streams: [127.0.0.1, \"::1\"]\n"
	          "tunnel:\n  listen: 127.0.0.1:8443\n  hostname: edge.example.com\n"
	          "tls:\n  cert_dir: @D@/certs\n  acme:\n    directory: https://ca.example/dir\n"
	          "    email: me@example.com\n    accept_terms: yes\n    renew_before_days: 20\n");
	CHECK(load_captured(EDGE, &e, &a) == 0);
	CHECK(e.tls.acme == 1 && e.tls.acme_renew_days == 20 && e.tunnel.cert == NULL);
	CHECK(e.nstreams == 2 && e.streams[1].ss.ss_family == AF_INET6);
	CHECK(e.tls.acme_directory && strcmp(e.tls.acme_directory, "https://ca.example/dir") == 0);
	config_edge_free(&e);

	write_cfg(AGENT_BASE
	          "routes:\n  - host: a.example.com\n    to: http://127.0.0.1:80\n"
	          "    redirect_https: false\n    hsts: 600\n"
	          "  - host: b.example.com\n    to: http://127.0.0.1:80\n    hsts: true\n");
	CHECK(load_captured(AGENT, &e, &a) == 0);
	CHECK(a.routes[0].redirect_https == 0 && a.routes[0].hsts == 600);
	CHECK(a.routes[1].redirect_https == 1 && a.routes[1].hsts == 31536000);
	config_agent_free(&a);

	BAD(EDGE, "tunnel:\n  listen: 0.0.0.0:443\n", "2:3",
	    "missing required key 'cert' in tunnel");
	BAD(EDGE, EDGE_BASE "tls:\n  cert_dir: /x\n  acme:\n    directory: https://ca/dir\n", "8:5",
	    "ACME needs 'accept_terms: true'");
	BAD(EDGE, EDGE_BASE "tls:\n  acme:\n    directory: http://ca/dir\n    accept_terms: true\n",
	    "7:16", "bad ACME directory URL");
	BAD(EDGE, EDGE_BASE "listen:\n  streams: [1.2.3]\n", "6:13", "bad IP address '1.2.3'");
	BAD(EDGE, EDGE_BASE "listen:\n  streams: 0.0.0.0\n", "6:12", "must be a list of");
}

static void test_examples(void)
{
	put_cert("edge-ca.pem");
	example_at(EDGE, "deploy/edge.example.yaml");
	example_at(AGENT, "deploy/agent.example.yaml");
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* access: and redirects: in edge.yaml, and each way they can be wrong. */
static void test_access_and_redirects(void)
{
	struct edge_config c;

	write_cfg("tunnel:\n"
	          "  listen: 0.0.0.0:443\n"
	          "  hostname: edge.test\n"
	          "  cert: @D@/tunnel.crt\n"
	          "  key: @D@/tunnel.key\n"
	          "access:\n"
	          "  - hosts: [NAS.Home.Test, \"*.lan.test\"]\n"
	          "    allow: [192.168.1.0/24, \"2001:db8::/32\"]\n"
	          "  - ports: [tcp/22, udp/27015-27020]\n"
	          "    deny: [203.0.113.7]\n"
	          "redirects:\n"
	          "  - host: Old.Test\n"
	          "    to: https://new.test/blog\n"
	          "  - host: \"*.old.test\"\n"
	          "    to: http://[2001:db8::1]:8080\n"
	          "    code: 308\n"
	          "    keep_path: false\n");
	CHECK(load_captured(EDGE, &c, NULL) == 0);
	if (c.file == NULL)
		return;
	CHECK(c.naccess == 2 && c.nredirects == 2);
	CHECK(c.access[0].nhosts == 2 && strcmp(c.access[0].hosts[0], "nas.home.test") == 0);
	CHECK(c.access[0].nallow == 2 && c.access[0].ndeny == 0 && c.access[0].nports == 0);
	CHECK(c.access[0].allow[0].bits == 24 && c.access[0].allow[1].bits == 32);
	CHECK(c.access[1].nports == 2 && c.access[1].ports[1].kind == ROUTE_KIND_UDP &&
	      c.access[1].ports[1].hi == 27020 && c.access[1].ndeny == 1);
	CHECK(strcmp(c.redirects[0].host, "old.test") == 0 &&
	      strcmp(c.redirects[0].to, "https://new.test/blog") == 0 &&
	      c.redirects[0].code == 301 && c.redirects[0].keep_path == 1);
	CHECK(c.redirects[1].code == 308 && c.redirects[1].keep_path == 0);
	config_edge_free(&c);

	BAD(EDGE, EDGE_BASE "access: {a: b}\n", "5:9", "'access' must be a list of mappings");
	BAD(EDGE, EDGE_BASE "access:\n  - allow: [10.0.0.0/8]\n", "6:5",
	    "access entry #1 names no 'hosts' and no 'ports'");
	BAD(EDGE, EDGE_BASE "access:\n  - hosts: [a.test]\n", "6:5",
	    "access entry #1 has no 'allow', 'deny' or 'users'");
	BAD(EDGE, EDGE_BASE "access:\n  - hosts: [a.test]\n    allow: [10.0.0.1/8]\n", "7:13",
	    "bad address or prefix '10.0.0.1/8'");
	BAD(EDGE, EDGE_BASE "access:\n  - hosts: [a.test]\n    deny: [lan]\n", "7:12",
	    "bad address or prefix 'lan'");
	BAD(EDGE, EDGE_BASE "access:\n  - hosts: [a..test]\n    deny: [\"::1\"]\n", "6:13",
	    "bad host pattern 'a..test'");
	BAD(EDGE, EDGE_BASE "access:\n  - ports: [tcp/0]\n    deny: [\"::1\"]\n", "6:13",
	    "bad port range 'tcp/0'");
	BAD(EDGE, EDGE_BASE "access:\n  - hosts: [a.test]\n    deny: [\"::1\"]\n    colour: red\n",
	    "8:5", "unknown key 'colour' in access entry #1");
	/* a key spelled "hosts" then a NUL is not hosts: the index of names
	 * must not be sized by it (it overran, then looped for good) */
	BAD(EDGE,
	    EDGE_BASE
	    "access:\n  - \"hosts\\0\": [x.test]\n"
	    "    hosts: [a.t, b.t, c.t, d.t, e.t, f.t, g.t, h.t, i.t, j.t, k.t, l.t, m.t, n.t, "
	    "o.t, p.t, q.t, r.t, s.t, t.t]\n    deny: [10.0.0.1]\n",
	    "6:5", "keys must not contain NUL characters in access entry #1");
	BAD(EDGE, EDGE_BASE "redirects:\n  - to: https://a.test\n", "6:5",
	    "missing required key 'host' in redirect #1");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n", "6:5",
	    "missing required key 'to' in redirect #1");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n    to: ftp://b.test\n", "7:9",
	    "bad redirect target 'ftp://b.test'");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n    to: https://b.test/x?y\n", "7:9",
	    "bad redirect target");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n    to: \"https://b.test/a b\"\n", "7:9",
	    "bad redirect target");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n    to: https://b..test/\n", "7:9",
	    "bad redirect target");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n    to: https://b.test:0/\n", "7:9",
	    "bad redirect target");
	BAD(EDGE, EDGE_BASE "redirects:\n  - host: a.test\n    to: https://b.test\n    code: 303\n",
	    "8:11", "bad redirect code '303' (expected 301, 302, 307 or 308)");
	BAD(EDGE,
	    EDGE_BASE
	    "redirects:\n  - host: a.test\n    to: https://b.test\n    keep_path: maybe\n",
	    "8:16", "'keep_path' must be true or false");
	BAD(EDGE,
	    EDGE_BASE "redirects:\n  - {host: a.test, to: \"https://b\"}\n"
	              "  - {host: A.test, to: \"https://c\"}\n",
	    "7:12", "duplicate redirect 'A.test' (first at 6:12)");
	BAD(EDGE,
	    "tunnel:\n  listen: 0.0.0.0:443\n  hostname: edge.test\n  cert: @D@/tunnel.crt\n"
	    "  key: @D@/tunnel.key\nredirects:\n  - {host: edge.test, to: \"https://b\"}\n",
	    "7:12", "'edge.test' is tunnel.hostname, the edge's own name");
}

int main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	touch("tunnel.crt");
	touch("tunnel.key");
	make_private("tunnel.key");
	make_agent_key("agent.key");
	put_cert("ca.pem");
	RUN(test_edge_full);
	RUN(test_edge_defaults);
	RUN(test_access_and_redirects);
	RUN(test_agent_full);
	RUN(test_agent_defaults_and_urls);
	RUN(test_port_ranges);
	RUN(test_missing_file);
	RUN(test_syntax_errors);
	RUN(test_shape_limits);
	RUN(test_fifo);
	RUN(test_out_of_memory);
	RUN(test_structure_errors);
	RUN(test_value_errors);
	RUN(test_duplicate_errors);
	RUN(test_stream_overlaps);
	RUN(test_duplicates_in_long_lists);
	RUN(test_agent_errors);
	RUN(test_many_errors);
	RUN(test_tls_and_streams);
	RUN(test_examples);
	cleanup();
	UNIT_END();
}
