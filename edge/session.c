/*
 * edge/session.c - the agent endpoint: WebSocket sessions, challenge-response
 * authentication, route declarations, keepalive.
 *
 * A session is unauthenticated until a valid AUTH frame arrives; any other
 * frame before that, a text message, an oversize message or a malformed
 * frame closes the connection, after a REJECT (or, once authenticated, a
 * GOAWAY) that tells the peer why (PROTOCOL.md 4.2, 5.4).  Nothing is routed
 * to a session before it is authenticated and its routes are accepted.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "../common/keys.h"
#include "../common/log.h"
#include "../common/tlsbuf.h"
#include "edge.h"
#include "ports.h"
#include "https.h"
#include "registry.h"
#include "session.h"
#include "stream.h"

#define AUTH_DEADLINE_US  (10 * LWS_US_PER_SEC)
#define KEEPALIVE_TICK_US (5 * LWS_US_PER_SEC)
#define SILENCE_LIMIT_US  (30 * LWS_US_PER_SEC)
#define PING_MS           5000u
#define INITIAL_WINDOW    (1024u * 1024u)
#define CLOSE_GRACE_S     5 /* to write the last REJECT / GOAWAY to a peer */
/* Before AUTH: frames are small (AUTH is at most 162 bytes), and sessions
 * waiting to authenticate are few, per address and in all. */
#define PREAUTH_FRAME_MAX 512u
#define PREAUTH_MAX       256
#define PREAUTH_PER_PEER  16

static struct esession *preauth; /* sessions not yet authenticated */
static int npreauth;

static void preauth_remove(struct esession *s)
{
	for (struct esession **pp = &preauth; *pp; pp = &(*pp)->pnext)
		if (*pp == s) {
			*pp = s->pnext;
			npreauth--;
			return;
		}
}

/* Room for one more unauthenticated session from s's address. */
static int preauth_room(const struct esession *s)
{
	int same = 0;

	if (npreauth >= PREAUTH_MAX)
		return 0;
	for (const struct esession *o = preauth; o; o = o->pnext)
		same += strcmp(o->peer, s->peer) == 0;
	return same < PREAUTH_PER_PEER;
}

void session_want_write(struct esession *s)
{
	if (s->wsi)
		lws_callback_on_writable(s->wsi);
}

int session_send(struct esession *s, const struct frame *f)
{
	if (tunnel_backlogged(&s->t)) {
		session_kill(s, "the agent does not read what is sent to it (16 MiB queued)");
		return -1;
	}
	if (tunnel_send(&s->t, f) < 0)
		return -1;
	session_want_write(s);
	return 0;
}

void session_kill(struct esession *s, const char *why)
{
	if (!s->wsi || s->closing == 2)
		return;
	log_warn("agent session %s (%s): closing: %s", s->peer,
	         s->authed ? s->agent : "unauthenticated", why);
	s->closing = 2;
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Send REJECT and close once it is written (or after CLOSE_GRACE_S). */
static void session_reject(struct esession *s, uint32_t code, const char *reason)
{
	struct frame f = {.type = FRAME_REJECT};

	log_warn("agent session %s: rejected: %s", s->peer, reason);
	f.u.code.code = code;
	snprintf(f.u.code.reason, sizeof(f.u.code.reason), "%s", reason);
	session_send(s, &f);
	s->closing = 1;
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
}

/*
 * A connection-level protocol error: tell the peer why (REJECT during the
 * handshake, GOAWAY after it, both CODE_PROTOCOL), then close once that is
 * written.  Input is ignored from here on.
 */
static void session_fail(struct esession *s, const char *why)
{
	struct frame f = {.type = FRAME_GOAWAY};

	if (!s->wsi || s->closing)
		return;
	log_warn("agent session %s (%s): closing: %s", s->peer,
	         s->authed ? s->agent : "unauthenticated", why);
	if (!s->authed) {
		session_reject(s, CODE_PROTOCOL, why);
		return;
	}
	f.u.code.code = CODE_PROTOCOL;
	snprintf(f.u.code.reason, sizeof(f.u.code.reason), "%s", why);
	session_send(s, &f);
	s->closing = 1;
	lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
}

static void session_tick(lws_sorted_usec_list_t *sul)
{
	struct esession *s = lws_container_of(sul, struct esession, sul);
	uint64_t now = (uint64_t)lws_now_usecs();

	if (!s->authed) {
		session_kill(s, "no authentication within 10 s");
		return;
	}
	if (now - s->last_rx_us > SILENCE_LIMIT_US) {
		session_kill(s, "agent silent for 30 s");
		return;
	}
	lws_sul_schedule(edge.ctx, 0, &s->sul, session_tick, KEEPALIVE_TICK_US);
}

static const struct edge_agent *session_find_agent(const uint8_t *key)
{
	for (size_t i = 0; i < edge.cfg.nagents; i++)
		if (sodium_memcmp(edge.cfg.agents[i].key, key, KEY_PUB_LEN) == 0)
			return &edge.cfg.agents[i];
	return NULL;
}

/*
 * Once the agent authenticated, its TLS is given larger buffers both ways.
 *
 * Reading: a buffering BIO in front of the socket (common/tlsbuf.h) takes
 * up to 128 KiB per read(2), several records, where lws alone reads each
 * record with two (header, then body) and polls between records.  lws does
 * not see what is buffered (it asks SSL_pending(), which counts decrypted
 * bytes only), so session_receive() has session_rx_more() read on while
 * bytes wait.
 *
 * Writing: OpenSSL writes each 16 KiB record with its own write(2); the same
 * BIO gathers them, and session_writeable() flushes it before it returns
 * (and first thing, when the socket was full).
 * TLS flushes it too before the close_notify alert, so lws's closing CLOSE
 * frame is not left behind.
 */
#define READ_BUF    (128u * 1024u) /* bytes one read(2) may bring */
#define RX_MORE_MAX 16             /* records read from one kick, at most */
/* Records gathered for one write(2): room for a pipe's 4 reads of 64 KiB
 * with their frame and record overhead, so a burst leaves in one write. */
#define WRITE_BUF (320u * 1024u)

static void session_tls_buffers(struct esession *s)
{
	SSL *ssl = lws_get_ssl(s->wsi);

	if (ssl && tlsbuf_attach(ssl, READ_BUF, WRITE_BUF) < 0)
		log_warn("cannot buffer the tunnel's TLS: out of memory");
	else
		s->buffered = ssl != NULL;
}

/* Write out what TLS buffered; 1 when nothing is left. */
static int session_flush(struct esession *s)
{
	SSL *ssl = lws_get_ssl(s->wsi);

	return !ssl || tlsbuf_flush(ssl);
}

/* The session session_rx_more() is reading for; NULL once it closed. */
static struct esession *rx_more_cur;

/*
 * Read on while TLS holds bytes.  Stop when TLS asked the socket for more
 * (the rest of a record is on its way: POLLIN will say), or after two reads
 * that gave no message bytes (lws not reading, or bytes an agent never sends
 * twice in a row: a frame header alone in a record, a control frame).
 */
static void session_rx_more(lws_sorted_usec_list_t *sul)
{
	struct esession *s = lws_container_of(sul, struct esession, sul_rx);
	int idle = 0;

	for (int i = 0; i < RX_MORE_MAX; i++) {
		SSL *ssl = s->wsi && !s->closing ? lws_get_ssl(s->wsi) : NULL;
		struct lws_pollfd pfd;
		uint64_t calls = s->rx_calls;

		if (!ssl || !tlsbuf_pending(ssl))
			return;
		/* As if POLLIN came; the session may close meanwhile. */
		pfd.fd = lws_get_socket_fd(s->wsi);
		pfd.events = pfd.revents = LWS_POLLIN;
		rx_more_cur = s;
		lws_service_fd(edge.ctx, &pfd);
		if (!rx_more_cur)
			return;
		rx_more_cur = NULL;
		if (SSL_want_read(ssl))
			return;
		idle = calls == s->rx_calls ? idle + 1 : 0;
		if (idle == 2)
			return;
	}
	lws_sul_schedule(edge.ctx, 0, &s->sul_rx, session_rx_more, 1); /* others' turn */
}

/* Authenticated sessions of the agent named name. */
static int session_count(const char *name)
{
	int n = 0;

	for (const struct esession *o = registry_first(); o; o = o->next)
		n += strcmp(o->agent, name) == 0;
	return n;
}

static int session_on_auth(struct esession *s, const struct frame_auth *a)
{
	uint8_t msg[PROTO_AUTH_MSG_MAX];
	size_t mlen = proto_auth_message(msg, a->version, s->challenge, a->pubkey, a->name);
	const struct edge_agent *ag = session_find_agent(a->pubkey);
	struct frame f = {.type = FRAME_WELCOME};
	char keytext[KEY_TEXT_MAX];

	/* Verify first so that an unknown key and a bad signature take the same path. */
	if (keys_verify(a->pubkey, msg, mlen, a->sig) < 0) {
		session_reject(s, CODE_AUTH, "authentication failed: bad signature");
		return 0;
	}
	if (!ag) {
		keys_format_public(a->pubkey, keytext);
		log_warn("agent session %s: unknown key %s", s->peer, keytext);
		session_reject(s, CODE_AUTH, "authentication failed: key not authorized");
		return 0;
	}
	if (session_count(ag->name) >= SESSION_MAX_PER_AGENT) {
		char why[PROTO_MAX_REASON + 1];

		snprintf(why, sizeof(why), "agent '%s' holds %d sessions already (the limit)",
		         ag->name, SESSION_MAX_PER_AGENT);
		session_reject(s, CODE_REFUSED, why);
		return 0;
	}
	/* The challenge is single use: a replayed AUTH can never verify again. */
	keys_random(s->challenge, sizeof(s->challenge));
	s->authed = 1;
	preauth_remove(s);
	s->t.rx_max = FRAME_MAX_PAYLOAD;
	memcpy(s->key, a->pubkey, KEY_PUB_LEN);
	snprintf(s->agent, sizeof(s->agent), "%s", ag->name);
	registry_add(s);
	session_tls_buffers(s); /* not before: 448 KiB per hostile connection */
	log_info("agent '%s' authenticated from %s", s->agent, s->peer);
	f.u.welcome.window = s->window;
	f.u.welcome.ping_ms = PING_MS;
	snprintf(f.u.welcome.name, sizeof(f.u.welcome.name), "%s", ag->name);
	return session_send(s, &f) < 0 ? -1 : 0;
}

static const struct edge_agent *session_agent(const struct esession *s)
{
	return session_find_agent(s->key);
}

/* Stream ports open when their route is accepted; a port in use or one
 * needing privileges refuses the route with that reason. */
static int session_open_ports(const struct frame_route *r, char *reason, size_t cap)
{
	struct eroute er = {.kind = r->kind, .port_lo = r->port_lo, .port_hi = r->port_hi};

	if (r->kind != ROUTE_KIND_TCP && r->kind != ROUTE_KIND_UDP)
		return 0;
	return ports_open(&er, reason, cap);
}

static int session_on_route(struct esession *s, const struct frame *in)
{
	const struct edge_agent *ag = session_agent(s);
	struct frame f = {.type = FRAME_ROUTE_ANSWER, .stream = in->stream};
	char reason[PROTO_MAX_REASON + 1];
	const struct frame_route *r = &in->u.route;
	const char *holder = NULL;

	if (!ag) {
		session_kill(s, "agent removed from the configuration");
		return -1;
	}
	/* Refusals are logged: an agent declaring without end would fill the
	 * disk (PROTOCOL.md 6 limits the declarations per connection). */
	if (++s->ndeclared > SESSION_MAX_DECLARED) {
		snprintf(reason, sizeof(reason), "more than %d route declarations",
		         SESSION_MAX_DECLARED);
		session_fail(s, reason);
		return 1;
	}
	/* Route ids name the route in OPEN: one id, one route (PROTOCOL.md 6). */
	for (size_t i = 0; i < s->nroutes; i++) {
		if (s->routes[i].id == in->stream) {
			snprintf(reason, sizeof(reason), "route id %u declared twice", in->stream);
			session_fail(s, reason);
			return 1;
		}
	}
	if (registry_authorize(s, ag, r, reason, sizeof(reason), &holder) < 0 ||
	    session_open_ports(r, reason, sizeof(reason)) < 0) {
		char who[PROTO_MAX_NAME + 16] = "";

		if (holder)
			snprintf(who, sizeof(who), " (agent '%s')", holder);
		if (r->host[0])
			log_warn("agent '%s': route %s refused: %s%s", s->agent, r->host, reason,
			         who);
		else
			log_warn("agent '%s': route %s/%u-%u refused: %s%s", s->agent,
			         r->kind == ROUTE_KIND_UDP ? "udp" : "tcp", r->port_lo, r->port_hi,
			         reason, who);
		f.u.code.code = ROUTE_REFUSED;
		snprintf(f.u.code.reason, sizeof(f.u.code.reason), "%s", reason);
		return session_send(s, &f);
	}
	if (!s->routes) {
		s->routes = calloc(SESSION_MAX_ROUTES, sizeof(*s->routes));
		if (!s->routes)
			return -1;
	}
	s->routes[s->nroutes].id = in->stream;
	s->routes[s->nroutes].kind = r->kind;
	s->routes[s->nroutes].port_lo = r->port_lo;
	s->routes[s->nroutes].port_hi = r->port_hi;
	s->routes[s->nroutes].no_redirect = (in->flags & ROUTE_FLAG_NO_REDIRECT) != 0;
	s->routes[s->nroutes].hsts = r->hsts;
	memcpy(s->routes[s->nroutes].host, r->host, sizeof(r->host));
	s->nroutes++;
	if (r->kind == ROUTE_KIND_HTTP)
		edge_need_cert(r->host);
	if (r->kind == ROUTE_KIND_TLS)
		https_note_passthrough(r->host); /* never terminated while it is down */
	if (r->host[0])
		log_info("agent '%s': route %s accepted", s->agent, r->host);
	else
		log_info("agent '%s': route %s/%u-%u accepted", s->agent,
		         r->kind == ROUTE_KIND_UDP ? "udp" : "tcp", r->port_lo, r->port_hi);
	f.u.code.code = ROUTE_ACCEPTED;
	return session_send(s, &f);
}

static int session_on_frame(void *arg, const struct frame *f)
{
	struct esession *s = arg;

	if (s->closing)
		return 1;
	if (!s->authed) {
		if (f->type != FRAME_AUTH) {
			session_reject(s, CODE_PROTOCOL, "expected AUTH");
			log_warn("agent session %s: %s frame before authentication", s->peer,
			         frame_type_name(f->type));
			return 1;
		}
		return session_on_auth(s, &f->u.auth);
	}
	switch (f->type) {
	case FRAME_ROUTE:
		return session_on_route(s, f);
	case FRAME_PING: {
		struct frame p = {.type = FRAME_PONG};

		p.u.ping = f->u.ping;
		return session_send(s, &p);
	}
	case FRAME_PONG:
		stream_probe_answer(s, f->u.ping);
		return 0;
	case FRAME_GOAWAY:
		/* No new streams; the ones in flight finish, then the agent closes.
		 * Logged once: a peer repeating GOAWAY must not fill the log. */
		if (!s->draining)
			log_info("agent '%s' is going away: %s", s->agent, f->u.code.reason);
		s->draining = 1;
		return 0;
	case FRAME_ACCEPT:
	case FRAME_REFUSE:
	case FRAME_DATA:
	case FRAME_WINDOW:
	case FRAME_FIN:
	case FRAME_RST:
	case FRAME_DATAGRAM:
		return stream_on_frame(s, f);
	default:
		log_warn("agent '%s': unexpected %s frame", s->agent, frame_type_name(f->type));
		return -1;
	}
}

static int session_established(struct lws *wsi, struct esession **pss)
{
	struct esession *s = calloc(1, sizeof(*s));
	struct frame f = {.type = FRAME_HELLO};

	if (!s || tunnel_init(&s->t, LWS_PRE) < 0) {
		free(s);
		return -1;
	}
	*pss = s;
	s->wsi = wsi;
	s->window = INITIAL_WINDOW;
	s->next_stream = 1;
	s->connected_us = s->last_rx_us = (uint64_t)lws_now_usecs();
	lws_get_peer_simple(wsi, s->peer, sizeof(s->peer));
	if (strncmp(s->peer, "::ffff:", 7) == 0)
		memmove(s->peer, s->peer + 7, strlen(s->peer + 7) + 1);
	if (!preauth_room(s)) {
		log_warn("agent session %s: too many connections waiting to authenticate; closing",
		         s->peer);
		s->wsi = NULL;
		*pss = NULL;
		tunnel_free(&s->t);
		free(s);
		return -1;
	}
	s->pnext = preauth;
	preauth = s;
	npreauth++;
	s->t.rx_max = PREAUTH_FRAME_MAX;
	keys_random(s->challenge, sizeof(s->challenge));
	f.u.hello.version = PROTO_VERSION;
	memcpy(f.u.hello.challenge, s->challenge, sizeof(s->challenge));
	lws_sul_schedule(edge.ctx, 0, &s->sul, session_tick, AUTH_DEADLINE_US);
	log_debug("agent session %s: connected", s->peer);
	return session_send(s, &f);
}

static void session_closed(struct esession *s)
{
	if (!s->authed)
		preauth_remove(s);
	lws_sul_cancel(&s->sul);
	lws_sul_cancel(&s->sul_rx);
	if (rx_more_cur == s)
		rx_more_cur = NULL;
	stream_session_gone(s);
	if (s->authed) {
		registry_remove(s);
		log_info("agent '%s' disconnected (%s)", s->agent, s->peer);
	}
	for (size_t i = 0; i < s->nroutes; i++)
		if (s->routes[i].kind == ROUTE_KIND_TCP || s->routes[i].kind == ROUTE_KIND_UDP)
			ports_release(&s->routes[i]);
	s->wsi = NULL;
	tunnel_free(&s->t);
	free(s->routes);
	sodium_memzero(s->challenge, sizeof(s->challenge));
	free(s);
}

/* Bytes written per WRITEABLE before giving the loop back. */
#define WRITE_BUDGET (1024u * 1024u)

static void session_cork(struct esession *s, int on)
{
	int fd = (int)lws_get_socket_fd(s->wsi);

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

/*
 * Several messages per WRITEABLE.  Before authentication TLS writes one
 * record (16 KiB) per send, and uncorked each would leave as its own
 * segment: the socket is corked meanwhile.  After it, the write buffer
 * (session_tls_buffers()) gathers the records and leaves in full writes,
 * with no cork to set and clear (two system calls per burst).
 */
static int session_writeable(struct esession *s)
{
	struct outq *q;
	size_t len, done = 0;
	uint8_t *p = tunnel_next_message(&s->t, &len, &q);
	int corked = 0;

	if (!session_flush(s)) {
		lws_callback_on_writable(s->wsi);
		return 0;
	}
	if (!p)
		return s->closing ? -1 : 0;
	do {
		if (!corked && !s->buffered && tunnel_data_queued(&s->t) > len) {
			session_cork(s, 1);
			corked = 1;
		}
		if (lws_write(s->wsi, p, len, LWS_WRITE_BINARY) < (int)len) {
			if (corked)
				session_cork(s, 0);
			return -1;
		}
		outq_pop(q);
		done += len;
	} while (done < WRITE_BUDGET && !lws_partial_buffered(s->wsi) &&
	         (p = tunnel_next_message(&s->t, &len, &q)));
	/* The write buffer's rest leaves now (after authentication); before
	 * it, a corked socket's tail leaves with the uncork below. */
	if (!session_flush(s) || lws_partial_buffered(s->wsi) ||
	    tunnel_next_message(&s->t, &len, &q) || s->closing)
		lws_callback_on_writable(s->wsi);
	if (corked)
		session_cork(s, 0);
	stream_session_drained(s);
	return 0;
}

static int session_receive(struct esession *s, struct lws *wsi, void *in, size_t len)
{
	const char *err = NULL;

	if (s->closing)
		return 0;
	if (!lws_frame_is_binary(wsi)) {
		session_fail(s, "text message on the tunnel");
		return 0;
	}
	s->last_rx_us = (uint64_t)lws_now_usecs();
	/* Judge a message by the length its WebSocket header announces, before
	 * decoding any of it. */
	if (s->t.msg_len + len + lws_remaining_packet_payload(wsi) > FRAME_MAX_MESSAGE) {
		session_fail(s, "message exceeds the 1 MiB limit");
		return 0;
	}
	if (tunnel_rx_feed(&s->t, in, len,
	                   lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
	                   session_on_frame, s, &err) < 0)
		session_fail(s, err ? err : "protocol error");
	s->rx_calls++;
	if (rx_more_cur != s && lws_get_ssl(wsi) && tlsbuf_pending(lws_get_ssl(wsi)))
		lws_sul_schedule(edge.ctx, 0, &s->sul_rx, session_rx_more, 1);
	return 0;
}

static int session_path_ok(struct lws *wsi)
{
	char uri[256];
	int n = lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);

	return n > 0 && strcmp(uri, edge.cfg.tunnel.path) == 0;
}

int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
	struct esession **pss = user;
	struct esession *s = pss ? *pss : NULL;
	char peer[ADDR_TEXT_MAX];

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		lws_get_peer_simple(wsi, peer, sizeof(peer));
		log_warn("tunnel endpoint: plain HTTP request from %s (not a WebSocket); closing",
		         peer);
		return -1;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (!session_path_ok(wsi)) {
			lws_get_peer_simple(wsi, peer, sizeof(peer));
			log_warn("tunnel endpoint: WebSocket from %s on a wrong path; closing",
			         peer);
			return 1;
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		/* No per-connection data: it never got as far as an HTTP request.
		 * lws drops such a connection (a plain-HTTP client, a failed TLS
		 * handshake, a scanner) without any other callback. */
		if (!user)
			log_debug("tunnel endpoint: connection closed before any HTTP request (not "
			          "TLS, TLS failed, or nothing sent)");
		break;
	case LWS_CALLBACK_ESTABLISHED:
		return session_established(wsi, pss);
	case LWS_CALLBACK_RECEIVE:
		return s ? session_receive(s, wsi, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return s ? session_writeable(s) : -1;
	case LWS_CALLBACK_CLOSED:
		if (s) {
			*pss = NULL;
			session_closed(s);
		}
		break;
	default:
		break;
	}
	return 0;
}
