/*
 * edge/https.c - the TLS port: route by SNI (see https.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/conn.h"
#include "../common/hostpat.h"
#include "../common/log.h"
#include "accesslog.h"
#include "certs.h"
#include "clients.h"
#include "clienthello.h"
#include "edge.h"
#include "https.h"
#include "pipe.h"
#include "policy.h"
#include "proxy.h"
#include "registry.h"

#define HELLO_DEADLINE_US (10 * LWS_US_PER_SEC)
#define HELLO_RETRY_US    (20 * LWS_US_PER_MS)

/* A connection whose ClientHello is still being read. */
struct sniwait {
	struct conn *conn;
	int fd; /* the conn's socket (owned by the conn), for SO_RCVLOWAT */
	char ip[ADDR_TEXT_MAX];
	uint64_t started;
	lws_sorted_usec_list_t sul_retry;
	lws_sorted_usec_list_t sul_deadline;
	ssize_t seen; /* bytes peeked at the last look */
	int lowat;    /* SO_RCVLOWAT raised above 1 */
};

static uint8_t hello_buf[CH_MAX_BYTES];

/*
 * Host patterns of the passthrough routes met since start, the oldest
 * dropped first.  While no agent holds such a route, its names are refused
 * rather than terminated with a certificate that happens to cover them (a
 * wildcard): the client's TLS was meant for the service behind the agent,
 * so the edge must not read its requests (cookies, tokens, paths).
 */
#define PASSTHROUGH_SEEN_MAX 1024
static char *passthrough_seen[PASSTHROUGH_SEEN_MAX];
static size_t passthrough_n, passthrough_next;

void https_note_passthrough(const char *host)
{
	char *copy;

	for (size_t i = 0; i < passthrough_n; i++)
		if (strcmp(passthrough_seen[i], host) == 0)
			return;
	copy = strdup(host);
	if (!copy)
		return;
	free(passthrough_seen[passthrough_next]);
	passthrough_seen[passthrough_next] = copy;
	passthrough_next = (passthrough_next + 1) % PASSTHROUGH_SEEN_MAX;
	if (passthrough_n < PASSTHROUGH_SEEN_MAX)
		passthrough_n++;
}

static int passthrough_was(const char *sni)
{
	for (size_t i = 0; i < passthrough_n; i++)
		if (hostpat_match(passthrough_seen[i], sni))
			return 1;
	return 0;
}

static void sni_free(struct sniwait *w)
{
	lws_sul_cancel(&w->sul_retry);
	lws_sul_cancel(&w->sul_deadline);
	free(w);
}

static void sni_deadline(lws_sorted_usec_list_t *sul)
{
	struct sniwait *w = lws_container_of(sul, struct sniwait, sul_deadline);

	log_info("https: %s: no complete ClientHello within 10 s; closing", w->ip);
	conn_close(w->conn, "ClientHello too slow");
}

/*
 * Wake up only when the socket holds at least n bytes (or the peer shut its
 * side, or failed): peeked bytes stay in the socket, so with the default mark
 * of 1 POLLIN would be raised again at once.  Linux honours SO_RCVLOWAT in
 * poll() for TCP (socket(7)).  Returns 0, or -1 when the mark was not set.
 */
static int sni_lowat(struct sniwait *w, int n)
{
	if (setsockopt(w->fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n)) < 0)
		return -1;
	w->lowat = n > 1;
	return 0;
}

static void sni_retry(lws_sorted_usec_list_t *sul)
{
	struct sniwait *w = lws_container_of(sul, struct sniwait, sul_retry);

	conn_pause(w->conn, 0);
}

/* Hand the socket to lws's agent endpoint (the tunnel shares this port). */
static void sni_to_tunnel(struct sniwait *w)
{
	int fd = conn_release_fd(w->conn);

	/* The connection goes on under fd (a dup): it still counts for its
	 * address, or any client could hold the port by asking for the tunnel's
	 * (public) name. */
	clients_move(w->fd, fd);
	/* lws closes fd itself when it cannot adopt it */
	if (fd < 0 || !lws_adopt_socket_vhost(edge.tunnel_vh, fd))
		log_warn("https: %s: cannot hand the connection to the agent endpoint", w->ip);
}

/* Fail the handshake with a fatal alert: never another host's certificate. */
static void sni_reject(struct sniwait *w, const char *sni, const char *why)
{
	/* Anyone can ask for names at will: each reason (a literal of the
	 * callers) is logged at most once a second. */
	static struct {
		const char *why;
		struct log_rate rate;
	} reasons[8];
	struct log_rate *rate = &reasons[0].rate;
	char more[LOG_RATE_MORE];

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].why == why || reasons[i].why == NULL) {
			reasons[i].why = why;
			rate = &reasons[i].rate;
			break;
		}
	if (log_rate_ok(rate, (uint64_t)lws_now_usecs(), more))
		log_info("https: %s: %s%s%s; refusing the handshake%s", w->ip, why,
		         sni[0] ? " for " : "", sni, more);
	conn_start_tls(w->conn, certs_reject_ctx());
}

static void sni_dispatch(struct sniwait *w, const struct clienthello *ch)
{
	const struct eroute *route = NULL, *web = NULL;
	struct esession *s, *hs;
	struct ssl_ctx_st *ctx;
	int known = 0;

	if (!ch->sni[0]) {
		sni_reject(w, "", "no SNI");
		return;
	}
	if (edge.tunnel_shared && edge.cfg.tunnel.hostname &&
	    strcmp(ch->sni, edge.cfg.tunnel.hostname) == 0) {
		sni_to_tunnel(w);
		return;
	}
	/* The closest route wins, whatever its kind: another agent's wildcard
	 * passthrough must not take a name an exact HTTP route serves. */
	s = registry_lookup(ROUTE_KIND_TLS, ch->sni, &route, &known);
	hs = registry_lookup(ROUTE_KIND_HTTP, ch->sni, &web, &known);
	if (s && (!hs || registry_rank(route, ch->sni) > registry_rank(web, ch->sni))) {
		https_note_passthrough(route->host);
		if (!policy_allows(policy_access_host(&edge.cfg, ch->sni), conn_peer(w->conn))) {
			accesslog_write(w->ip, ch->sni, "TLS", "-", 403, 0, 0, 0);
			sni_reject(w, ch->sni, "the access list denies this client");
			return;
		}
		if (pipe_start(w->conn, s, route, 1, ch->sni) < 0)
			log_warn("https: %s: cannot open a passthrough stream for %s", w->ip,
			         ch->sni);
		return;
	}
	/* A passthrough name whose agent is away: refused, unless an HTTP
	 * route now serves the name (the edge terminates for it then). */
	if (passthrough_was(ch->sni) && !hs) {
		sni_reject(w, ch->sni, "passthrough route down");
		return;
	}
	ctx = certs_lookup(ch->sni);
	if (!ctx) {
		/* Certificates are requested when a route is declared, never
		 * because some client asked for a name. */
		sni_reject(w, ch->sni, "no certificate");
		return;
	}
	if (proxy_adopt(w->conn, ch->sni) == 0)
		conn_start_tls(w->conn, ctx);
}

static void sni_on_peek(void *arg)
{
	struct sniwait *w = arg;
	struct clienthello ch;
	const char *err = NULL;
	ssize_t n = conn_peek(w->conn, hello_buf, sizeof(hello_buf));
	int r;

	if (n <= 0)
		return;
	r = clienthello_parse(hello_buf, (size_t)n, &ch, &err);
	if (r == CH_INCOMPLETE && conn_peer_shut(w->conn)) {
		log_info("https: %s: closed in the middle of its ClientHello", w->ip);
		conn_close(w->conn, "closed mid-ClientHello");
		return;
	}
	if (r == CH_INCOMPLETE) {
		ssize_t before = w->seen;

		if (!before)
			log_debug("https: %s: ClientHello incomplete (%zd bytes); waiting", w->ip,
			          n);
		w->seen = n;
		/* Sleep until more than these n bytes are there.  The kernel may
		 * still raise POLLIN below the mark (memory pressure), and then
		 * nothing new came: look again a little later instead of
		 * spinning, as when the mark cannot be set. */
		if (n > before && sni_lowat(w, (int)n + 1) == 0)
			return;
		conn_pause(w->conn, 1);
		lws_sul_schedule(edge.ctx, 0, &w->sul_retry, sni_retry, HELLO_RETRY_US);
		return;
	}
	/* Whoever reads the socket next must see every byte as it comes. */
	if (w->lowat)
		sni_lowat(w, 1);
	if (r < 0) {
		log_info("https: %s: %s; closing", w->ip, err);
		conn_close(w->conn, err);
		return;
	}
	lws_sul_cancel(&w->sul_retry);
	lws_sul_cancel(&w->sul_deadline);
	conn_pause(w->conn, 0);
	/* From here the conn belongs to its new owner (or was released). */
	conn_set_owner(w->conn, &conn_nop_ops, NULL);
	sni_dispatch(w, &ch);
	sni_free(w);
}

static void sni_on_close(void *arg, const char *why)
{
	sni_free(arg);
}

static void sni_nop(void *arg)
{
}

static const struct conn_ops sni_ops = {
    .on_connected = sni_nop,
    .on_readable = sni_nop,
    .on_writable = sni_nop,
    .on_close = sni_on_close,
    .on_peek = sni_on_peek,
};

void https_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local)
{
	struct sniwait *w;
	const char *err;

	if (edge.draining) {
		close(fd);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		close(fd);
		return;
	}
	addr_format_ip((const struct sockaddr *)&peer->ss, w->ip);
	w->fd = fd;
	w->conn = conn_adopt(edge.raw_vh, fd, 1, &sni_ops, w, &err);
	if (!w->conn) {
		log_warn("https: cannot adopt a connection: %s", err);
		free(w);
		return;
	}
	lws_sul_schedule(edge.ctx, 0, &w->sul_deadline, sni_deadline, HELLO_DEADLINE_US);
}
