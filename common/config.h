/*
 * common/config.h - edge.yaml and agent.yaml, parsed with libyaml into plain
 * structs and validated completely before use.
 *
 * Loaders print every error to stderr as "FILE:LINE:COL: message" (1-based;
 * a missing file is "FILE:0:0: cannot open: <strerror>") and keep going so
 * that one run shows all errors.  A config is either fully valid or rejected.
 */
#ifndef RELAIS_COMMON_CONFIG_H
#define RELAIS_COMMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "keys.h"
#include "../proto/frame.h"

/* "tcp/25565", "udp/51820", "tcp/30000-30100" */
struct port_range {
	uint8_t kind;    /* ROUTE_KIND_TCP or ROUTE_KIND_UDP */
	uint16_t lo, hi; /* lo <= hi, both 1..65535 */
};

/** Parse "tcp/N", "udp/N", "tcp/A-B"; returns 0 or -1. */
int port_range_parse(const char *text, struct port_range *r);

/** 1 when [r->lo, r->hi] of r->kind lies inside one of the allowed ranges. */
int port_range_allowed(const struct port_range *r, const struct port_range *allowed, size_t n);

struct http_limits {
	uint32_t header_timeout_ms;   /* client must send a full head in this; 408. default 60000 */
	uint32_t idle_timeout_ms;     /* keep-alive idle between requests; default 75000 */
	uint32_t max_header_bytes;    /* request head limit -> 431; default 16384, 1k..1m */
	uint64_t max_body_bytes;      /* request body limit -> 413; 0 = unlimited; default 0 */
	uint32_t upstream_timeout_ms; /* no response head from the agent side in this -> 504;
	                                 default 60000 */
};

#define CFG_MAX_CERTIFICATES_DEFAULT 50      /* agents[].max_certificates */
#define CFG_MAX_CERTIFICATES_MAX     4096    /* the ACME client's host table */
#define CFG_UDP_IDLE_MAX_MS          600000u /* streams[].idle_timeout of a UDP stream */
#define CFG_MAX_PER_CLIENT_DEFAULT   256     /* listen.max_connections_per_client */
#define CFG_MAX_PER_CLIENT_MAX       1000000
#define CFG_MAX_CONNS_DEFAULT        1024  /* agent.yaml max_connections */
#define CFG_MAX_CONNS_MAX            65536 /* NOFILE_CEILING: no more descriptors */

struct edge_agent {
	char name[PROTO_MAX_NAME + 1];
	uint8_t key[KEY_PUB_LEN];
	char **hosts; /* host patterns, lower case, validated */
	size_t nhosts;
	struct port_range *ports;
	size_t nports;
	uint32_t max_certificates; /* hosts ACME manages for this agent, 0 = none; default 50 */
};

/* access[].users[]: a name and its password's argon2id hash. */
struct edge_user {
	char *name; /* 1..64 printable ASCII characters, no ':' */
	char *hash; /* "$argon2id$v=19$m=...,t=...,p=1$...", cheap enough to check inline */
};

/* access: one access list, for the hosts and stream ports it names. */
struct edge_access {
	char **hosts; /* host patterns, lower case, validated */
	size_t nhosts;
	struct port_range *ports;
	size_t nports;
	struct cidr *allow; /* when any: only these clients (after deny) */
	size_t nallow;
	struct cidr *deny; /* these clients never */
	size_t ndeny;
	struct edge_user *users; /* HTTP(S) hosts only: Basic authentication */
	size_t nusers;
	int satisfy_any; /* satisfy: any: an allowed address OR a password; else both */
};

#define CFG_MAX_USERS      256  /* users of one access list */
#define CFG_PWHASH_MAX_KIB 8192 /* an argon2id hash's m=, KiB: checked on the event loop */
#define CFG_PWHASH_MAX_OPS 3    /* its t= */
#define CFG_PWHASH_MIN_KIB 4096 /* and at least this much, */
#define CFG_PWHASH_MIN_OPS 2    /* and passes, against offline guessing */

/* redirects: a redirection host, answered by the edge itself. */
struct edge_redirect {
	char *host;    /* exact name or *.pattern, lower case */
	char *to;      /* http(s)://host[:port][/path]: printable, no query or fragment */
	int code;      /* 301 (default), 302, 307 or 308 */
	int keep_path; /* append the request's path and query to `to`; default 1 */
};

/* unknown_hosts.answer: what a request for a host no route serves gets */
enum unknown_answer { UNKNOWN_NOT_FOUND = 0, UNKNOWN_CLOSE = 1, UNKNOWN_REDIRECT = 2 };

#define CFG_PAGE_MAX         (64u * 1024u) /* unknown_hosts.page */
#define CFG_MAX_ACCESS       256           /* entries in access: and in redirects: */
#define CFG_MAX_ACCESS_NAMES 1024          /* hosts: and ports: of one entry */
#define CFG_MAX_PREFIXES     1024          /* allow: and deny: prefixes of one entry */

struct edge_config {
	char *file; /* path it was loaded from */
	int has_http, has_https, has_admin;
	struct addr http;              /* listen.http */
	struct addr https;             /* listen.https */
	struct addr admin;             /* admin.listen: local status endpoint (optional) */
	struct addr streams[4];        /* listen.streams: IPs stream ports bind to (port 0) */
	size_t nstreams;               /* default: one, 0.0.0.0 */
	uint32_t max_conns_per_client; /* listen.max_connections_per_client; 0 = no limit */
	struct {
		struct addr listen; /* tunnel.listen (required) */
		char *hostname;     /* tunnel.hostname (optional) */
		char *path;         /* tunnel.path, default "/relais", must start with '/' */
		char *cert;         /* tunnel.cert (required until ACME exists) */
		char *key;          /* tunnel.key */
	} tunnel;
	struct {
		char *cert_dir; /* tls.cert_dir: <host>.crt/.key, _wildcard.<domain>.crt/.key */
		int acme;       /* tls.acme present */
		char *acme_directory; /* tls.acme.directory: ACME directory URL (https://) */
		char *acme_email;     /* tls.acme.email (optional) */
		char *acme_ca;        /* tls.acme.ca: trust anchor for the ACME server (optional) */
		uint32_t acme_renew_days; /* tls.acme.renew_before_days, default 30 */
	} tls;
	struct edge_agent *agents;
	size_t nagents;
	struct edge_access *access; /* the closest name, the narrowest range decides (policy.c) */
	size_t naccess;
	struct edge_redirect *redirects;
	size_t nredirects;
	struct {
		int answer;      /* enum unknown_answer */
		char *page;      /* unknown_hosts.page: the 404 page's HTML, NULL = built in */
		size_t page_len; /* at most CFG_PAGE_MAX */
		char *to;        /* unknown_hosts.to, with UNKNOWN_REDIRECT (a 302 to it) */
	} unknown;
	char *access_log;               /* NULL = none, "-" = stderr */
	int log_level;                  /* enum log_level, default LOG_INFO */
	struct http_limits http_limits; /* key "http:" */
};

enum agent_target { TARGET_HTTP = 1, TARGET_HTTPS = 2, TARGET_RAW = 3 };
enum tls_mode { TLS_MODE_EDGE = 0, TLS_MODE_PASSTHROUGH = 1 };
enum proxy_proto { PROXY_NONE = 0, PROXY_V1 = 1, PROXY_V2 = 2 };

struct agent_route {
	char host[PROTO_MAX_HOST + 1]; /* exact host or wildcard pattern, lower case */
	int target;        /* enum agent_target; "to: http://a:p", "https://a:p", "a:p" */
	char to_host[256]; /* name or numeric address, no brackets */
	uint16_t to_port;
	int tls_verify;     /* https targets; default 1 */
	int tls_mode;       /* enum tls_mode; passthrough requires a raw "a:p" target */
	int proxy_protocol; /* enum proxy_proto */
	int redirect_https; /* 301 http -> https when the edge has a cert; default 1 */
	uint32_t hsts;      /* Strict-Transport-Security max-age, 0 = off (default) */
};

struct agent_stream {
	struct port_range listen; /* "tcp/25565" */
	char to_host[256];
	uint16_t to_port; /* base port for ranges */
	int proxy_protocol;
	uint32_t idle_timeout_ms; /* 0 = default (tcp: none, udp: 60000) */
};

struct agent_config {
	char *file;
	char *edge;   /* the URL as written */
	int edge_tls; /* wss:// = 1, ws:// = 0 (ws only for tests) */
	char edge_host[256];
	uint16_t edge_port;            /* default 443 / 80 */
	char *edge_path;               /* default "/" */
	char *key;                     /* private key file path (required) */
	char *edge_ca;                 /* optional CA file */
	char name[PROTO_MAX_NAME + 1]; /* optional "name:" label sent to the edge */
	struct agent_route *routes;
	size_t nroutes;
	struct agent_stream *streams;
	size_t nstreams;
	int log_level;
	uint32_t connect_timeout_ms; /* local service connect timeout, default 5000 */
	uint32_t max_conns;          /* max_connections: TCP streams at once; 0 = no limit */
};

/** Load and validate edge.yaml.  Returns 0 on success (caller frees with
 *  config_edge_free), or the number of errors printed (cfg is then empty). */
int config_edge_load(const char *file, struct edge_config *cfg);
void config_edge_free(struct edge_config *cfg);

/** Load and validate agent.yaml; same contract as config_edge_load. */
int config_agent_load(const char *file, struct agent_config *cfg);
void config_agent_free(struct agent_config *cfg);

#endif
