/*
 * edge/main.c - relais-edge: command line, configuration, event loop, signals.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "../common/conn.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/nofile.h"
#include "accesslog.h"
#include "acme.h"
#include "admin.h"
#include "certs.h"
#include "clients.h"
#include "https.h"
#include "udp.h"
#include "edge.h"
#include "listener.h"
#include "proxy.h"
#include "registry.h"
#include "session.h"
#include "stream.h"

#define RELAIS_VERSION    "0.1.0"
#define DRAIN_DEADLINE_US (10 * LWS_US_PER_SEC)

struct edge edge;

static int interrupted;
static int debug_logging; /* -d: kept across reloads */
static struct listener *admin_listener, *http_listener, *https_listener, *tunnel_listener;
static lws_sorted_usec_list_t certs_sul;
static char tunnel_crt[4096], tunnel_key[4096];

#define CERTS_RESCAN_US (5 * LWS_US_PER_SEC)
static lws_sorted_usec_list_t drain_sul;
static uint64_t drain_started;

static void edge_acme_updated(void);
static int edge_route_needs(const char *host, void *arg);
static void edge_need_unmanaged_certs(void);
static int signal_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len);

static const struct lws_protocols raw_protocols[] = {
    {EDGE_PROTO_LISTENER, listener_callback, 0, 0, 0, NULL, 0},
    {EDGE_PROTO_ADMIN, admin_callback, sizeof(struct admin_conn), 0, 0, NULL, 0},
    {EDGE_PROTO_SIGNAL, signal_callback, 0, 0, 0, NULL, 0},
    {CONN_PROTOCOL, conn_callback, 0, 0, 0, NULL, 0},
    {EDGE_PROTO_UDP, udp_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static const struct lws_protocols tunnel_protocols[] = {{EDGE_TUNNEL_PROTO, session_callback,
                                                         sizeof(struct esession *), 65536, 0, NULL,
                                                         TUNNEL_MSG_CAP + 1024},
                                                        {NULL, NULL, 0, 0, 0, NULL, 0}};

/* relais-edge passwd: argon2id at 4 MiB and 3 passes, about 5 ms to check
 * (config.c allows at most CFG_PWHASH_MAX_KIB and CFG_PWHASH_MAX_OPS). */
#define PASSWD_OPS 3
#define PASSWD_MEM (4u << 20)

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: relais-edge [-t] [-d] -c edge.yaml\n"
	        "       relais-edge passwd    read a password, print its hash for access[].users\n"
	        "       relais-edge --help | --version\n"
	        "  -c FILE   configuration file (default /etc/relais/edge.yaml)\n"
	        "  -t        check the configuration, print 'configuration OK' and exit\n"
	        "  -d        debug logging\n"
	        "Signals: HUP reloads the configuration, TERM drains then exits, INT exits.\n");
}

static void lws_log_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	log_msg(level == LLL_ERR ? LOG_WARN : LOG_DEBUG, "lws: %.*s", (int)n, line);
}

/* Every session has written what it queued (the GOAWAY above all). */
static int edge_sessions_flushed(void)
{
	for (struct esession *s = registry_first(); s; s = s->next) {
		struct outq *q;
		size_t len;

		if (tunnel_next_message(&s->t, &len, &q) ||
		    (s->wsi && lws_partial_buffered(s->wsi)))
			return 0;
	}
	return 1;
}

/*
 * Streams the drain waits for.  UDP flows (the streams with on_datagram)
 * never finish on their own, they only idle out: they keep carrying
 * datagrams during the drain but do not hold it.
 */
static uint64_t edge_streams_to_finish(void)
{
	uint64_t flows = 0;

	for (struct esession *s = registry_first(); s; s = s->next)
		for (struct estream *st = s->streams; st; st = st->next)
			if (st->ops->on_datagram)
				flows++;
	return edge.streams_open > flows ? edge.streams_open - flows : 0;
}

static void edge_drain_tick(lws_sorted_usec_list_t *sul)
{
	if ((edge_streams_to_finish() == 0 && edge_sessions_flushed()) ||
	    (uint64_t)lws_now_usecs() - drain_started > DRAIN_DEADLINE_US) {
		interrupted = 1;
		lws_cancel_service(edge.ctx);
		return;
	}
	lws_sul_schedule(edge.ctx, 0, &drain_sul, edge_drain_tick, 100 * LWS_US_PER_MS);
}

/* SIGTERM: tell every agent no new streams come, stop accepting, finish streams. */
static void edge_drain(void)
{
	struct frame f = {.type = FRAME_GOAWAY};

	if (edge.draining)
		return;
	edge.draining = 1;
	log_info("draining: finishing %llu streams (at most 10 s)",
	         (unsigned long long)edge_streams_to_finish());
	f.u.code.code = CODE_SHUTDOWN;
	snprintf(f.u.code.reason, sizeof(f.u.code.reason), "edge shutting down");
	for (struct esession *s = registry_first(); s; s = s->next)
		session_send(s, &f);
	listener_close(admin_listener);
	admin_listener = NULL;
	listener_close(http_listener);
	http_listener = NULL;
	listener_close(https_listener);
	https_listener = NULL;
	drain_started = (uint64_t)lws_now_usecs();
	edge_drain_tick(&drain_sul);
}

static int str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/*
 * The ACME worker after a reload from old to edge.cfg.  Turned off: stopped
 * at once, so nothing is ordered that the HTTP-01 responder (which follows
 * edge.cfg) would no longer answer.  Turned on, or cert_dir changed: the
 * certificate store and the agent endpoint were set up from the old
 * directory at start, so that takes a restart; until then the worker keeps
 * the directory it started with (or stays off).
 */
static void edge_acme_reload(const struct edge_config *old)
{
	if (old->tls.acme && !edge.cfg.tls.acme) {
		acme_stop();
		log_info("acme: tls.acme removed: the ACME client is stopped; certificates in %s "
		         "are still served",
		         old->tls.cert_dir);
		return;
	}
	if (!edge.cfg.tls.acme)
		return;
	if (!old->tls.acme) {
		log_warn("acme: tls.acme was added: restart relais-edge to start the ACME client");
		return;
	}
	acme_reload(&edge.cfg);
	edge_need_unmanaged_certs();
}

static void swap_str(char **a, char **b)
{
	char *t = *a;

	*a = *b;
	*b = t;
}

/* 1 when an optional listener (has, at) differs between two configurations. */
static int listen_differs(int has_a, const struct addr *a, int has_b, const struct addr *b)
{
	return has_a != has_b || (has_a && !addr_equal(a, b));
}

static void restart_to_apply(const char *key)
{
	log_warn("%s changed: restart relais-edge to apply it; until then the old value stays "
	         "in use",
	         key);
}

/*
 * What a reload cannot change: the listeners and the agent endpoint were set
 * up at start.  Keep their old values in edge.cfg (so nothing follows from
 * a value not in force: no redirect to an HTTPS port that nothing listens
 * on), and say that a restart applies them.
 */
static void edge_keep_started(struct edge_config *old)
{
	struct edge_config *n = &edge.cfg;
	int streams = n->nstreams != old->nstreams;

	if (listen_differs(n->has_http, &n->http, old->has_http, &old->http)) {
		restart_to_apply("listen.http");
		n->has_http = old->has_http;
		n->http = old->http;
	}
	if (listen_differs(n->has_https, &n->https, old->has_https, &old->https)) {
		restart_to_apply("listen.https");
		n->has_https = old->has_https;
		n->https = old->https;
	}
	if (listen_differs(n->has_admin, &n->admin, old->has_admin, &old->admin)) {
		restart_to_apply("admin.listen");
		n->has_admin = old->has_admin;
		n->admin = old->admin;
	}
	for (size_t i = 0; !streams && i < n->nstreams; i++)
		streams = !addr_equal(&n->streams[i], &old->streams[i]);
	if (streams) {
		restart_to_apply("listen.streams");
		memcpy(n->streams, old->streams, sizeof(n->streams));
		n->nstreams = old->nstreams;
	}
	if (!addr_equal(&n->tunnel.listen, &old->tunnel.listen)) {
		restart_to_apply("tunnel.listen");
		n->tunnel.listen = old->tunnel.listen;
	}
	if (str_differs(n->tunnel.hostname, old->tunnel.hostname)) {
		restart_to_apply("tunnel.hostname");
		swap_str(&n->tunnel.hostname, &old->tunnel.hostname);
	}
	if (str_differs(n->tunnel.path, old->tunnel.path)) {
		restart_to_apply("tunnel.path");
		swap_str(&n->tunnel.path, &old->tunnel.path);
	}
	/* lws reloads a vhost's pair by the paths it was created with. */
	if (str_differs(n->tunnel.cert, old->tunnel.cert) ||
	    str_differs(n->tunnel.key, old->tunnel.key)) {
		restart_to_apply("tunnel.cert or tunnel.key");
		swap_str(&n->tunnel.cert, &old->tunnel.cert);
		swap_str(&n->tunnel.key, &old->tunnel.key);
	}
	if (str_differs(n->tls.cert_dir, old->tls.cert_dir)) {
		restart_to_apply("tls.cert_dir");
		swap_str(&n->tls.cert_dir, &old->tls.cert_dir);
	}
}

/* The agent endpoint's own files again (tunnel.cert/key, renewed by the
 * user): only a usable pair replaces the one in use. */
static void edge_tunnel_cert_reload(void)
{
	char err[512];

	if (!edge.cfg.tunnel.cert || !edge.tunnel_vh)
		return;
	if (certs_check_pair(edge.cfg.tunnel.hostname, edge.cfg.tunnel.cert, edge.cfg.tunnel.key,
	                     err, sizeof(err)) < 0) {
		log_error("tunnel.cert/tunnel.key: %s; the agent endpoint keeps its certificate",
		          err);
		return;
	}
	lws_tls_cert_updated(edge.ctx, edge.cfg.tunnel.cert, edge.cfg.tunnel.key, NULL, 0, NULL, 0);
}

/* The access log again by its name: after logrotate moved it (SIGHUP or
 * SIGUSR1).  When that fails the old file stays in use. */
static void edge_reopen_log(void)
{
	if (accesslog_open(edge.cfg.access_log) < 0)
		log_error("cannot open access_log %s: %s", edge.cfg.access_log, strerror(errno));
}

/* SIGHUP: build a complete new configuration; swap it in only when valid.
 * Sessions whose key was removed are closed; listeners need a restart. */
static void edge_reload(void)
{
	struct edge_config n, old;

	log_info("reloading %s", edge.cfg_file);
	if (config_edge_load(edge.cfg_file, &n) != 0) {
		log_error("reload failed: configuration has errors; keeping the old one");
		edge_reopen_log(); /* logrotate's reload still starts a new file */
		return;
	}
	old = edge.cfg;
	edge.cfg = n;
	log_init("relais-edge", debug_logging ? LOG_DEBUG : edge.cfg.log_level);
	edge_keep_started(&old);
	certs_reload();
	edge_tunnel_cert_reload();
	edge_acme_reload(&old);
	config_edge_free(&old);
	edge_reopen_log();
	/* Sessions keep running only if every route they hold is still allowed;
	 * the others are closed, and their agents reconnect under the new rules. */
	for (struct esession *s = registry_first(); s; s = s->next) {
		char why[PROTO_MAX_REASON + 64];

		if (registry_recheck(s, why, sizeof(why)) < 0)
			session_kill(s, why);
	}
	/* and clients the new access lists turn away are cut off */
	stream_recheck_all();
	log_info("configuration reloaded");
}

static int signal_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
	struct signalfd_siginfo si;

	if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED)
		edge_acme_updated();
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
	while (read(lws_get_socket_fd(wsi), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			edge_reload();
			break;
		case SIGTERM:
			edge_drain();
			break;
		case SIGUSR1:
			log_info("reopening the access log");
			edge_reopen_log();
			break;
		default:
			interrupted = 1;
			break;
		}
	}
	return 0;
}

static int edge_signals(void)
{
	sigset_t set;
	lws_sock_file_fd_type u;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -1;
	u.filefd = fd;
	return lws_adopt_descriptor_vhost(edge.raw_vh, LWS_ADOPT_RAW_FILE_DESC, u,
	                                  EDGE_PROTO_SIGNAL, NULL)
	           ? 0
	           : -1;
}

static void edge_certs_tick(lws_sorted_usec_list_t *sul)
{
	certs_reload();
	/* hosts whose routes are gone, never issued, stop counting against
	 * their agent's max_certificates */
	if (edge.cfg.tls.acme && acme_prune(edge_route_needs, NULL) > 0)
		edge_need_unmanaged_certs();
	lws_sul_schedule(edge.ctx, 0, &certs_sul, edge_certs_tick, CERTS_RESCAN_US);
}

/* The session holding an HTTP route for exactly host, or NULL. */
static const struct esession *edge_route_owner(const char *host)
{
	for (const struct esession *s = registry_first(); s; s = s->next)
		for (size_t i = 0; i < s->nroutes; i++)
			if (s->routes[i].kind == ROUTE_KIND_HTTP &&
			    strcmp(s->routes[i].host, host) == 0)
				return s;
	return NULL;
}

/* 1 when an exact redirects: entry names host (the edge answers it itself). */
static int edge_redirect_names(const char *host)
{
	for (size_t i = 0; i < edge.cfg.nredirects; i++)
		if (strcmp(edge.cfg.redirects[i].host, host) == 0)
			return 1;
	return 0;
}

/* A certificate for host is still needed: a route or a redirect serves it. */
static int edge_route_needs(const char *host, void *arg)
{
	(void)arg;
	return edge_route_owner(host) != NULL || edge_redirect_names(host);
}

void edge_need_cert(const char *host)
{
	const struct esession *s;
	uint32_t cap = CFG_MAX_CERTIFICATES_DEFAULT;
	char path[4096];

	if (!edge.cfg.tls.acme || host[0] == '*' || certs_dir() == NULL)
		return;
	/* A user's own wildcard certificate is theirs to renew; an exact pair in
	 * cert_dir (ours or theirs) is kept renewed. */
	snprintf(path, sizeof(path), "%s/%s.crt", certs_dir(), host);
	if (access(path, F_OK) != 0 && certs_covers(host))
		return;
	/* Each certificate counts against the CA's limits for the whole
	 * registered domain: an agent allowed *.example.com gets at most its
	 * agents[].max_certificates names managed, so it can neither exhaust
	 * them nor fill the ACME client's table for the other agents. */
	s = edge_route_owner(host);
	if (s == NULL) {
		acme_want(host);
		return;
	}
	for (size_t i = 0; i < edge.cfg.nagents; i++)
		if (strcmp(edge.cfg.agents[i].name, s->agent) == 0)
			cap = edge.cfg.agents[i].max_certificates;
	if (acme_want_for(host, s->agent, cap) == 1)
		log_warn("acme: %s: no certificate requested: agent '%s' is at its limit of %u "
		         "(agents[].max_certificates); the route is served with whatever "
		         "certificate covers it",
		         host, s->agent, cap);
}

void edge_forget_cert(const char *host)
{
	if (edge.cfg.tls.acme && !edge_route_needs(host, NULL))
		acme_forget(host);
}

/* Places under the agents' caps were freed, or the configuration changed:
 * routes refused earlier, and exact redirect hosts, may get one now. */
static void edge_need_unmanaged_certs(void)
{
	for (size_t i = 0; i < edge.cfg.nredirects; i++)
		if (edge.cfg.redirects[i].host[0] != '*' &&
		    !acme_managed(edge.cfg.redirects[i].host))
			edge_need_cert(edge.cfg.redirects[i].host);
	for (const struct esession *s = registry_first(); s; s = s->next)
		for (size_t i = 0; i < s->nroutes; i++)
			if (s->routes[i].kind == ROUTE_KIND_HTTP && s->routes[i].host[0] != '*' &&
			    !acme_managed(s->routes[i].host))
				edge_need_cert(s->routes[i].host);
}

int edge_acme_challenge(const char *token, char *out, size_t cap)
{
	return edge.cfg.tls.acme && acme_challenge(token, out, cap);
}

/* ACME wrote new files: load them, and the agent endpoint's own pair. */
static void edge_acme_updated(void)
{
	if (!acme_take_updated())
		return;
	certs_reload();
	if (!edge.cfg.tunnel.cert && edge.tunnel_vh)
		lws_tls_cert_updated(edge.ctx, tunnel_crt, tunnel_key, NULL, 0, NULL, 0);
}

/*
 * The agent endpoint's certificate: tunnel.cert/key, or with ACME the pair
 * for tunnel.hostname in cert_dir -- a self-signed placeholder until ACME
 * has the real one (lws needs files when the vhost is created).
 */
/* Keep a file the placeholder would overwrite: it may be the user's own. */
static void edge_set_aside(const char *path)
{
	char to[4200];

	snprintf(to, sizeof(to), "%s.unusable", path);
	if (rename(path, to) < 0 && errno != ENOENT)
		log_warn("cannot rename %s to %s: %s", path, to, strerror(errno));
}

static int edge_tunnel_cert(void)
{
	char err[512];

	if (edge.cfg.tunnel.cert) {
		snprintf(tunnel_crt, sizeof(tunnel_crt), "%s", edge.cfg.tunnel.cert);
		snprintf(tunnel_key, sizeof(tunnel_key), "%s", edge.cfg.tunnel.key);
		return 0;
	}
	snprintf(tunnel_crt, sizeof(tunnel_crt), "%s/%s.crt", edge.cfg.tls.cert_dir,
	         edge.cfg.tunnel.hostname);
	snprintf(tunnel_key, sizeof(tunnel_key), "%s/%s.key", edge.cfg.tls.cert_dir,
	         edge.cfg.tunnel.hostname);
	/* lws refuses to create the vhost with a broken pair (a crash between
	 * ACME's two renames leaves a new key beside the old certificate): the
	 * edge would exit, and ACME would never run to repair it.  Check the
	 * pair as the certificate store would, and start on the placeholder
	 * when it is not usable. */
	if (access(tunnel_crt, F_OK) == 0 || access(tunnel_key, F_OK) == 0) {
		if (certs_check_pair(edge.cfg.tunnel.hostname, tunnel_crt, tunnel_key, err,
		                     sizeof(err)) == 0) {
			acme_want(edge.cfg.tunnel.hostname); /* renewals */
			return 0;
		}
		log_warn("certificate for %s in %s is not usable (%s): kept as .unusable; a "
		         "self-signed placeholder stands in until ACME has a new one",
		         edge.cfg.tunnel.hostname, edge.cfg.tls.cert_dir, err);
		edge_set_aside(tunnel_crt);
		edge_set_aside(tunnel_key);
	} else {
		log_info("no certificate for %s yet: using a self-signed placeholder until ACME "
		         "has one",
		         edge.cfg.tunnel.hostname);
	}
	if (certs_make_selfsigned(edge.cfg.tunnel.hostname, tunnel_crt, tunnel_key, 2, err,
	                          sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	certs_reload();
	acme_want(edge.cfg.tunnel.hostname);
	return 0;
}

/* An agent on tunnel.listen: to lws's agent endpoint (TLS, then WebSocket). */
static void tunnel_accept(struct listener *l, int fd, const struct addr *peer,
                          const struct addr *local)
{
	char ip[ADDR_TEXT_MAX];

	if (!lws_adopt_socket_vhost(edge.tunnel_vh, fd)) { /* lws closed fd */
		addr_format_ip((const struct sockaddr *)&peer->ss, ip);
		log_warn("tunnel: %s: cannot hand the connection to the agent endpoint", ip);
	}
}

/* One of the edge's own ports ("[::]" takes IPv4 too), or NULL, logged. */
static struct listener *edge_listen(const struct addr *a, const char *name,
                                    listener_accept_fn on_accept)
{
	struct listener *l;
	const char *err;

	l = listener_open(a, name, LISTENER_DUAL_STACK, on_accept, NULL, &err);
	if (!l) {
		char at[ADDR_TEXT_MAX];

		addr_format(a, at);
		log_error("cannot listen on %s %s: %s", name, at, err);
	}
	return l;
}

/*
 * tunnel.listen "0.0.0.0:PORT" takes IPv6 agents too, as it always did (lws
 * listened on "::" for it): an agent whose edge name has an AAAA record
 * connects over IPv6 first.  IPv4 alone on a host without IPv6.
 */
static struct listener *edge_listen_tunnel(void)
{
	const struct addr *a = &edge.cfg.tunnel.listen;

	if (a->ss.ss_family == AF_INET && addr_is_any(a)) {
		struct addr six;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&six.ss;
		struct listener *l;
		const char *err;

		memset(&six, 0, sizeof(six));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(addr_port(a));
		six.len = sizeof(*s6);
		l = listener_open(&six, "tunnel", LISTENER_DUAL_STACK, tunnel_accept, NULL, &err);
		if (l)
			return l;
	}
	return edge_listen(a, "tunnel", tunnel_accept);
}

static int edge_start(void)
{
	struct lws_context_creation_info info;
	long nofile, reserve;

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.pt_serv_buf_size = 128 * 1024;
	info.fd_limit_per_thread = 0;
	/* Before lws sizes its tables from the limit. */
	nofile = nofile_raise();
	reserve = nofile / 4 < LISTENER_RESERVE_MAX ? nofile / 4 : LISTENER_RESERVE_MAX;
	edge.fd_cap = nofile < 0 ? LONG_MAX : nofile - reserve;
	edge.ctx = lws_create_context(&info);
	if (!edge.ctx) {
		log_error("cannot create the event loop");
		return -1;
	}

	/* ACME stores what it gets there: create the directory on first start. */
	if (edge.cfg.tls.acme && mkdir(edge.cfg.tls.cert_dir, 0700) < 0 && errno != EEXIST) {
		log_error("cannot create tls.cert_dir %s: %s", edge.cfg.tls.cert_dir,
		          strerror(errno));
		return -1;
	}
	if (certs_init(edge.cfg.tls.cert_dir) < 0)
		return -1;
	if (edge.cfg.tls.acme && acme_start(&edge.cfg, edge.ctx) < 0) {
		log_error("cannot start the ACME client");
		return -1;
	}
	if (edge.cfg.tls.acme)
		edge_need_unmanaged_certs();
	lws_sul_schedule(edge.ctx, 0, &certs_sul, edge_certs_tick, CERTS_RESCAN_US);
	if (edge_tunnel_cert() < 0)
		return -1;
	edge.tunnel_shared =
	    edge.cfg.has_https && addr_equal(&edge.cfg.tunnel.listen, &edge.cfg.https);

	memset(&info, 0, sizeof(info));
	info.vhost_name = "tunnel";
	/* No listener of lws's own: given "127.0.0.1" as iface, lws 4.1 listened
	 * on every address.  Ours (tunnel_accept) binds exactly tunnel.listen;
	 * sharing the TLS port, https.c hands agents over by SNI instead. */
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = tunnel_protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.ssl_cert_filepath = tunnel_crt;
	info.ssl_private_key_filepath = tunnel_key;
	/* Everything crosses the tunnel's TLS: AES-128-GCM is the cheapest strong
	 * suite per byte with AES-NI; ECDHE+AEAD only for TLS 1.2. */
	info.tls1_3_plus_cipher_list = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
	                               "TLS_CHACHA20_POLY1305_SHA256";
	info.ssl_cipher_list = "ECDHE+AESGCM:ECDHE+CHACHA20";
	info.keepalive_timeout = 10;
	edge.tunnel_vh = lws_create_vhost(edge.ctx, &info);
	if (!edge.tunnel_vh) {
		char at[ADDR_TEXT_MAX];

		addr_format(&edge.cfg.tunnel.listen, at);
		log_error("cannot set up the tunnel endpoint on %s (bad tunnel.cert/tunnel.key?)",
		          at);
		return -1;
	}
	/* After the tunnel vhost: an agent adopted from the shared TLS port is
	 * moved, after its HTTP upgrade, to the vhost lws picks by Host -- by
	 * name, else the first one on the same (no-listen) port; that must be
	 * the agent endpoint, not this one. */
	memset(&info, 0, sizeof(info));
	info.vhost_name = "raw";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = raw_protocols;
	edge.raw_vh = lws_create_vhost(edge.ctx, &info);
	if (!edge.raw_vh) {
		log_error("cannot create the raw vhost");
		return -1;
	}

	if (edge_signals() < 0) {
		log_error("cannot set up signal handling: %s", strerror(errno));
		return -1;
	}
	/* A client connection read on from a duplicate still counts. */
	conn_on_moved(clients_move);
	if (accesslog_open(edge.cfg.access_log) < 0) {
		log_error("cannot open access_log %s: %s", edge.cfg.access_log, strerror(errno));
		return -1;
	}
	if (edge.cfg.has_http &&
	    !(http_listener = edge_listen(&edge.cfg.http, "http", proxy_accept)))
		return -1;
	if (edge.cfg.has_https &&
	    !(https_listener = edge_listen(&edge.cfg.https, "https", https_accept)))
		return -1;
	if (edge.cfg.has_admin &&
	    !(admin_listener = edge_listen(&edge.cfg.admin, "admin", admin_accept)))
		return -1;
	if (!edge.tunnel_shared && !(tunnel_listener = edge_listen_tunnel()))
		return -1;
	/* The operator's and the agents' ports may use the descriptors kept
	 * from public clients (listener.h). */
	if (admin_listener) {
		admin_listener->reserve_ok = 1;
		admin_listener->unlimited = 1; /* loopback, and 16 connections at most */
	}
	if (tunnel_listener) {
		tunnel_listener->reserve_ok = 1;
		/* counted apart: public clients behind an agent's address (one
		 * carrier-grade NAT) cannot keep it out */
		tunnel_listener->pool = CLIENTS_TUNNEL;
	}
	return 0;
}

/* One line of standard input into buf (no newline); its length, or -1. */
static long read_line(const char *prompt, char *buf, size_t cap)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	size_t n;

	if (tty) {
		fprintf(stderr, "%s", prompt);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (!fgets(buf, (int)cap, stdin))
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (n == cap - 1)
		return -1; /* longer than the buffer */
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return (long)n;
}

/* relais-edge passwd: an argon2id hash for access[].users[].password. */
static int cmd_passwd(void)
{
	char pw[1026], again[1026], hash[crypto_pwhash_STRBYTES];
	long n = read_line("Password: ", pw, sizeof(pw)), m;
	int rc = 1;

	if (n <= 0 || n > 1024) {
		fprintf(stderr, "relais-edge: passwd: %s\n",
		        n == 0 ? "empty password" : "a password of 1 to 1024 bytes on one line");
		goto out;
	}
	if (isatty(STDIN_FILENO)) {
		m = read_line("Again: ", again, sizeof(again));
		if (m != n || memcmp(pw, again, (size_t)n) != 0) {
			fprintf(stderr, "relais-edge: passwd: the passwords differ\n");
			goto out;
		}
	}
	if (sodium_init() < 0 ||
	    crypto_pwhash_str(hash, pw, (unsigned long long)n, PASSWD_OPS, PASSWD_MEM) != 0) {
		fprintf(stderr, "relais-edge: passwd: cannot hash (out of memory?)\n");
		goto out;
	}
	printf("%s\n", hash);
	rc = 0;
out:
	sodium_memzero(pw, sizeof(pw));
	sodium_memzero(again, sizeof(again));
	return rc;
}

int main(int argc, char **argv)
{
	const char *file = "/etc/relais/edge.yaml";
	int check = 0, debug = 0, c, rc = 1;
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
	                                     {"version", no_argument, NULL, 'V'},
	                                     {NULL, 0, NULL, 0}};

	if (argc == 2 && strcmp(argv[1], "passwd") == 0)
		return cmd_passwd();
	while ((c = getopt_long(argc, argv, "c:tdhV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			file = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("relais-edge %s (protocol %d)\n", RELAIS_VERSION, PROTO_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	log_init("relais-edge", LOG_INFO);
	if (keys_init() < 0) {
		log_error("cannot initialise libsodium");
		return 1;
	}
	edge.cfg_file = file;
	if (config_edge_load(file, &edge.cfg) != 0)
		return 1;
	if (check) {
		printf("configuration OK\n");
		config_edge_free(&edge.cfg);
		return 0;
	}
	debug_logging = debug;
	log_init("relais-edge", debug ? LOG_DEBUG : edge.cfg.log_level);
	lws_set_log_level(LLL_ERR | (debug ? LLL_WARN : 0), lws_log_emit);
	if (edge_start() == 0) {
		char at[ADDR_TEXT_MAX];

		addr_format(&edge.cfg.tunnel.listen, at);
		log_info("relais-edge %s: agent endpoint wss://%s%s", RELAIS_VERSION, at,
		         edge.cfg.tunnel.path);
		rc = 0;
		while (!interrupted && lws_service(edge.ctx, 0) >= 0)
			;
		log_info("exiting");
	}
	lws_sul_cancel(&drain_sul);
	listener_close(admin_listener);
	listener_close(http_listener);
	listener_close(https_listener);
	listener_close(tunnel_listener);
	lws_sul_cancel(&certs_sul);
	acme_stop(); /* its thread wakes the loop: stop it before the loop goes */
	conn_exiting();
	if (edge.ctx)
		lws_context_destroy(edge.ctx);
	certs_free();
	clients_free();
	accesslog_close();
	config_edge_free(&edge.cfg);
	return rc;
}
