/*
 * agent/tunnel.c - the outbound tunnel to the edge: connect, authenticate,
 * declare routes, keepalive, reconnect forever with backoff.
 */
#include <sodium.h>
#include <string.h>

#include "../common/log.h"
#include "agent.h"
#include "upstream.h"

#define BACKOFF_BASE_US   (250 * LWS_US_PER_MS)
#define BACKOFF_CAP_US    (30 * LWS_US_PER_SEC)
#define TICK_US           (1 * LWS_US_PER_SEC)
#define PING_AFTER_US     (4 * LWS_US_PER_SEC)
#define DEAD_AFTER_US     (12 * LWS_US_PER_SEC)
#define HANDSHAKE_US      (10 * LWS_US_PER_SEC)

static uint64_t now_us(void)
{
	return (uint64_t)lws_now_usecs();
}

void agent_want_write(void)
{
	if (agent.wsi)
		lws_callback_on_writable(agent.wsi);
}

int agent_send(const struct frame *f)
{
	if (!agent.wsi)
		return -1;
	if (tunnel_send(&agent.t, f) < 0)
		return -1;
	agent_want_write();
	return 0;
}

static void agent_kill(const char *why)
{
	if (!agent.wsi)
		return;
	log_warn("tunnel: %s; reconnecting", why);
	lws_set_timeout(agent.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Exponential backoff with +-20% jitter, capped at 30 s (jitter included). */
static uint64_t agent_backoff(void)
{
	uint64_t d = BACKOFF_BASE_US;
	uint32_t r = randombytes_uniform(401); /* 0..400 -> 80%..120% */

	for (unsigned i = 0; i < agent.attempt && d < BACKOFF_CAP_US; i++)
		d *= 2;
	if (d > BACKOFF_CAP_US)
		d = BACKOFF_CAP_US;
	d = d * (800 + r) / 1000;
	if (d > BACKOFF_CAP_US)
		d = BACKOFF_CAP_US;
	if (agent.attempt < 64)
		agent.attempt++;
	return d;
}

static void agent_connect(lws_sorted_usec_list_t *sul)
{
	struct lws_client_connect_info i;

	if (agent.interrupted || agent.wsi)
		return;
	memset(&i, 0, sizeof(i));
	i.context = agent.ctx;
	i.vhost = agent.vh;
	i.address = agent.cfg.edge_host;
	i.port = agent.cfg.edge_port;
	i.path = agent.cfg.edge_path;
	i.host = agent.cfg.edge_host;
	i.origin = agent.cfg.edge_host;
	i.protocol = AGENT_TUNNEL_PROTO;
	i.local_protocol_name = AGENT_PROTO_TUNNEL;
	i.ssl_connection = agent.cfg.edge_tls ? LCCSCF_USE_SSL : 0;
	i.pwsi = &agent.wsi;
	agent.state = AGENT_CONNECTING;
	agent.state_us = now_us();
	log_debug("tunnel: connecting to %s", agent.cfg.edge);
	if (!lws_client_connect_via_info(&i)) {
		/* lws already reported CONNECTION_ERROR or failed early: retry later. */
		agent.wsi = NULL;
		if (agent.state == AGENT_CONNECTING) {
			agent.state = AGENT_IDLE;
			agent_connect_soon(agent_backoff());
		}
	}
}

void agent_connect_soon(uint64_t delay_us)
{
	if (agent.interrupted)
		return;
	lws_sul_schedule(agent.ctx, 0, &agent.sul_connect, agent_connect, (lws_usec_t)delay_us);
}

static void agent_tick(lws_sorted_usec_list_t *sul)
{
	uint64_t now = now_us();

	if (agent.wsi && agent.state == AGENT_READY) {
		if (now - agent.last_rx_us > DEAD_AFTER_US) {
			agent_kill("no traffic from the edge for 12 s");
		} else if (now - agent.last_rx_us >= PING_AFTER_US &&
			   now - agent.last_ping_us >= PING_AFTER_US) {
			struct frame f = {.type = FRAME_PING};

			f.u.ping = now;
			agent.last_ping_us = now;
			agent_send(&f);
		}
	} else if (agent.wsi && now - agent.state_us > HANDSHAKE_US) {
		agent_kill("edge handshake timed out");
	}
	lws_sul_schedule(agent.ctx, 0, &agent.sul_tick, agent_tick, TICK_US);
}

static int agent_on_hello(const struct frame_hello *h)
{
	struct frame f = {.type = FRAME_AUTH};
	uint8_t msg[PROTO_AUTH_MSG_MAX];
	size_t mlen;

	f.u.auth.version = PROTO_VERSION;
	memcpy(f.u.auth.pubkey, agent.pub, KEY_PUB_LEN);
	snprintf(f.u.auth.name, sizeof(f.u.auth.name), "%s", agent.cfg.name);
	mlen = proto_auth_message(msg, PROTO_VERSION, h->challenge, agent.pub, f.u.auth.name);
	keys_sign(agent.secret, msg, mlen, f.u.auth.sig);
	return agent_send(&f);
}

/* Route ids: routes[] are 1..nroutes, streams[] follow. */
static void agent_declare_routes(void)
{
	for (size_t i = 0; i < agent.cfg.nroutes; i++) {
		const struct agent_route *r = &agent.cfg.routes[i];
		struct frame f = {.type = FRAME_ROUTE, .stream = (uint32_t)(i + 1)};

		f.u.route.kind = r->tls_mode == TLS_MODE_PASSTHROUGH ? ROUTE_KIND_TLS
								     : ROUTE_KIND_HTTP;
		snprintf(f.u.route.host, sizeof(f.u.route.host), "%s", r->host);
		if (agent_send(&f) < 0)
			log_error("tunnel: cannot declare route %s", r->host);
	}
	for (size_t i = 0; i < agent.cfg.nstreams; i++) {
		const struct agent_stream *st = &agent.cfg.streams[i];
		struct frame f = {.type = FRAME_ROUTE,
				  .stream = (uint32_t)(agent.cfg.nroutes + i + 1)};

		f.u.route.kind = st->listen.kind;
		f.u.route.port_lo = st->listen.lo;
		f.u.route.port_hi = st->listen.hi;
		if (agent_send(&f) < 0)
			log_error("tunnel: cannot declare stream port %u", st->listen.lo);
	}
}

static void agent_route_name(uint32_t id, char *out, size_t cap)
{
	if (id >= 1 && id <= agent.cfg.nroutes) {
		snprintf(out, cap, "%s", agent.cfg.routes[id - 1].host);
	} else if (id > agent.cfg.nroutes && id <= agent.cfg.nroutes + agent.cfg.nstreams) {
		const struct agent_stream *st = &agent.cfg.streams[id - agent.cfg.nroutes - 1];

		if (st->listen.lo == st->listen.hi)
			snprintf(out, cap, "%s/%u", st->listen.kind == ROUTE_KIND_UDP ? "udp" : "tcp",
				 st->listen.lo);
		else
			snprintf(out, cap, "%s/%u-%u",
				 st->listen.kind == ROUTE_KIND_UDP ? "udp" : "tcp", st->listen.lo,
				 st->listen.hi);
	} else {
		snprintf(out, cap, "#%u", id);
	}
}

static int agent_on_frame(void *arg, const struct frame *f)
{
	char name[PROTO_MAX_HOST + 16];

	if (agent.state == AGENT_HELLO) {
		switch (f->type) {
		case FRAME_HELLO:
			return agent_on_hello(&f->u.hello);
		case FRAME_WELCOME:
			agent.state = AGENT_READY;
			agent.attempt = 0;
			agent.window = f->u.welcome.window;
			log_info("tunnel: connected to %s as agent '%s'", agent.cfg.edge,
				 f->u.welcome.name);
			agent_declare_routes();
			return 0;
		case FRAME_REJECT:
			log_error("tunnel: the edge rejected this agent: %s", f->u.code.reason);
			return -1;
		default:
			log_warn("tunnel: unexpected %s during the handshake",
				 frame_type_name(f->type));
			return -1;
		}
	}
	switch (f->type) {
	case FRAME_ROUTE_ANSWER:
		agent_route_name(f->stream, name, sizeof(name));
		if (f->u.code.code == ROUTE_ACCEPTED)
			log_info("route %s accepted by the edge", name);
		else
			log_warn("route %s refused by the edge: %s", name, f->u.code.reason);
		return 0;
	case FRAME_PING: {
		struct frame p = {.type = FRAME_PONG};

		p.u.ping = f->u.ping;
		return agent_send(&p);
	}
	case FRAME_PONG:
		return 0;
	case FRAME_GOAWAY:
		log_info("tunnel: the edge is going away: %s", f->u.code.reason);
		return 0;
	case FRAME_REJECT:
		log_error("tunnel: the edge closed the session: %s", f->u.code.reason);
		return -1;
	case FRAME_OPEN:
	case FRAME_DATA:
	case FRAME_WINDOW:
	case FRAME_FIN:
	case FRAME_RST:
	case FRAME_DATAGRAM:
		return upstream_on_frame(f);
	default:
		log_warn("tunnel: unexpected %s frame", frame_type_name(f->type));
		return -1;
	}
}

static int agent_writeable(void)
{
	struct outq *q;
	size_t len;
	uint8_t *p = tunnel_next_message(&agent.t, &len, &q);

	if (!p)
		return 0;
	if (lws_write(agent.wsi, p, len, LWS_WRITE_BINARY) < (int)len)
		return -1;
	outq_pop(q);
	if (tunnel_next_message(&agent.t, &len, &q))
		lws_callback_on_writable(agent.wsi);
	upstream_tunnel_drained();
	return 0;
}

static int agent_receive(struct lws *wsi, void *in, size_t len)
{
	const char *err = NULL;

	if (!lws_frame_is_binary(wsi)) {
		log_warn("tunnel: text message from the edge");
		return -1;
	}
	agent.last_rx_us = now_us();
	if (tunnel_rx_append(&agent.t, in, len, &err) < 0) {
		log_warn("tunnel: %s", err);
		return -1;
	}
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return 0;
	if (tunnel_rx_message(&agent.t, agent_on_frame, NULL, &err) != 0) {
		if (err)
			log_warn("tunnel: protocol error from the edge: %s", err);
		return -1;
	}
	return 0;
}

static void agent_down(const char *why)
{
	int was_ready = agent.state == AGENT_READY;

	agent.wsi = NULL;
	upstream_tunnel_gone();
	tunnel_free(&agent.t);
	agent.state = AGENT_IDLE;
	if (agent.interrupted)
		return;
	if (was_ready)
		log_warn("tunnel: disconnected from the edge%s%s", why ? ": " : "", why ? why : "");
	else
		log_warn("tunnel: cannot connect to %s%s%s", agent.cfg.edge, why ? ": " : "",
			 why ? why : "");
	agent_connect_soon(agent_backoff());
}

int agent_tunnel_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			  size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (tunnel_init(&agent.t, LWS_PRE) < 0)
			return -1;
		agent.wsi = wsi;
		agent.state = AGENT_HELLO;
		agent.state_us = agent.last_rx_us = now_us();
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return agent_receive(wsi, in, len);
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return agent_writeable();
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		/* lws does not clear *pwsi on errors (LWS-NOTES). */
		if (agent.state == AGENT_CONNECTING) {
			char why[160];

			snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection error");
			agent.wsi = NULL;
			agent.state = AGENT_IDLE;
			log_warn("tunnel: cannot connect to %s: %s", agent.cfg.edge, why);
			agent_connect_soon(agent_backoff());
		}
		break;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (agent.state >= AGENT_HELLO)
			agent_down(NULL);
		break;
	default:
		break;
	}
	return 0;
}

void agent_tunnel_start(void)
{
	lws_sul_schedule(agent.ctx, 0, &agent.sul_tick, agent_tick, TICK_US);
	agent_connect_soon(1);
}
