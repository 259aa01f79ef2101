/*
 * agent/tunnel.c - the outbound tunnel to the edge: connect, authenticate,
 * declare routes, keepalive, reconnect forever with backoff.
 */
#include <sodium.h>
#include <string.h>

#include "../common/log.h"
#include "agent.h"
#include "resolve.h"
#include "upstream.h"
#include "wsclient.h"

#define BACKOFF_BASE_US (250 * LWS_US_PER_MS)
#define BACKOFF_CAP_US  (30 * LWS_US_PER_SEC)
#define TICK_US         (1 * LWS_US_PER_SEC)
#define PING_AFTER_US   (4 * LWS_US_PER_SEC)
#define DEAD_AFTER_US   (12 * LWS_US_PER_SEC)
#define HANDSHAKE_US    (10 * LWS_US_PER_SEC)
/* The largest WELCOME.window taken (the edge sends 1 MiB): the edge sets
 * what each stream may queue here toward its service. */
#define AGENT_MAX_INITIAL_WINDOW (1024u * 1024u)

static uint64_t now_us(void)
{
	return (uint64_t)lws_now_usecs();
}

void agent_want_write(void)
{
	if (agent.ws)
		wsc_want_write(agent.ws);
}

static void agent_kill(const char *why);

int agent_send(const struct frame *f)
{
	if (!agent.ws || agent.state < AGENT_HELLO)
		return -1;
	if (tunnel_backlogged(&agent.t)) {
		agent_kill("the edge does not read what is sent to it (16 MiB queued)");
		return -1;
	}
	if (tunnel_send(&agent.t, f) < 0)
		return -1;
	agent_want_write();
	return 0;
}

static void agent_kill(const char *why)
{
	if (!agent.ws || wsc_closing(agent.ws))
		return;
	log_warn("tunnel: %s; reconnecting", why);
	wsc_close(agent.ws, why);
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

static void agent_on_open(void *arg);
static int agent_on_data(void *arg, const uint8_t *p, size_t n, int last);
static void agent_on_writable(void *arg);
static void agent_on_close(void *arg, const char *why);

static const struct wsc_ops agent_ws_ops = {
    .on_open = agent_on_open,
    .on_data = agent_on_data,
    .on_writable = agent_on_writable,
    .on_close = agent_on_close,
};

/*
 * Connect to the edge's next address not tried yet: its name may have an
 * IPv6 and an IPv4 address, and only one of them may work.  0 when a
 * connection is on its way, -1 when none is left (a retry is scheduled).
 */
static int agent_dial(void)
{
	struct wsc_cfg cfg;
	const char *why = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.host = agent.cfg.edge_host;
	cfg.port = agent.cfg.edge_port;
	cfg.path = agent.cfg.edge_path;
	cfg.protocol = AGENT_TUNNEL_PROTO;
	cfg.tls = agent.cfg.edge_tls;
	cfg.ca_file = agent.cfg.edge_ca;
	while (agent.edge_tried < agent.edge_naddrs) {
		char ip[ADDR_TEXT_MAX];

		cfg.addr = &agent.edge_addrs[agent.edge_tried++];
		addr_format_ip((const struct sockaddr *)&cfg.addr->ss, ip);
		log_debug("tunnel: connecting to %s (%s)", agent.cfg.edge, ip);
		agent.state_us = now_us(); /* each address has its own handshake time */
		if (tunnel_init(&agent.t, WSC_HEADROOM) < 0) {
			why = "out of memory";
			break;
		}
		agent.ws = wsc_connect(agent.vh, &cfg, &agent_ws_ops, NULL, &why);
		if (agent.ws)
			return 0;
		tunnel_free(&agent.t);
		log_warn("tunnel: cannot connect to %s (%s): %s", agent.cfg.edge, ip, why);
	}
	agent.state = AGENT_IDLE;
	agent_connect_soon(agent_backoff());
	return -1;
}

static void agent_resolved(void *arg, const struct addr *a, size_t n, const char *err)
{
	agent.resolving = NULL;
	if (agent.interrupted)
		return;
	if (!a) {
		agent.state = AGENT_IDLE;
		log_warn("tunnel: %s", err);
		agent_connect_soon(agent_backoff());
		return;
	}
	memcpy(agent.edge_addrs, a, n * sizeof(*a));
	agent.edge_naddrs = n;
	agent.edge_tried = 0;
	agent_dial();
}

static void agent_connect(lws_sorted_usec_list_t *sul)
{
	struct addr a;

	if (agent.interrupted || agent.ws || agent.state != AGENT_IDLE)
		return;
	agent.state = AGENT_CONNECTING;
	agent.state_us = now_us();
	if (resolve_numeric(agent.cfg.edge_host, agent.cfg.edge_port, &a) == 0) {
		agent_resolved(NULL, &a, 1, NULL);
		return;
	}
	agent.resolving = resolve_start(agent.ctx, agent.cfg.edge_host, agent.cfg.edge_port,
	                                agent_resolved, NULL);
	if (!agent.resolving)
		agent_resolved(NULL, NULL, 0, "out of memory");
}

void agent_connect_soon(uint64_t delay_us)
{
	if (agent.interrupted || agent.draining)
		return;
	lws_sul_schedule(agent.ctx, 0, &agent.sul_connect, agent_connect, (lws_usec_t)delay_us);
}

#define DRAIN_US      (10 * LWS_US_PER_SEC)
#define DRAIN_IDLE_US (100 * LWS_US_PER_MS)

static uint64_t drain_started;

static void agent_tick(lws_sorted_usec_list_t *sul);

void agent_drain(void)
{
	struct frame f = {.type = FRAME_GOAWAY};

	if (agent.draining)
		return;
	agent.draining = 1;
	drain_started = now_us();
	lws_sul_cancel(&agent.sul_connect);
	log_info("draining: finishing %zu streams (at most 10 s)", agent.nstreams);
	f.u.code.code = CODE_SHUTDOWN;
	snprintf(f.u.code.reason, sizeof(f.u.code.reason), "agent shutting down");
	if (agent.state == AGENT_READY)
		agent_send(&f);
	/* Nothing to finish: exit at the next tick, not up to TICK_US from now
	 * (the GOAWAY is written well before that). */
	if (agent.nstreams == 0)
		lws_sul_schedule(agent.ctx, 0, &agent.sul_tick, agent_tick, DRAIN_IDLE_US);
}

static void agent_tick(lws_sorted_usec_list_t *sul)
{
	uint64_t now = now_us();

	if (agent.draining &&
	    (agent.nstreams == 0 || now - drain_started > DRAIN_US || agent.state != AGENT_READY)) {
		agent.interrupted = 1;
		lws_cancel_service(agent.ctx);
		return;
	}

	if (agent.ws && agent.state == AGENT_READY) {
		if (now - agent.last_rx_us > DEAD_AFTER_US) {
			agent_kill("no traffic from the edge for 12 s");
		} else if (now - agent.last_rx_us >= PING_AFTER_US &&
		           now - agent.last_ping_us >= PING_AFTER_US) {
			struct frame f = {.type = FRAME_PING};

			f.u.ping = now;
			agent.last_ping_us = now;
			agent_send(&f);
		}
	} else if (agent.ws && now - agent.state_us > HANDSHAKE_US) {
		agent_kill("edge handshake timed out");
	}
	lws_sul_schedule(agent.ctx, 0, &agent.sul_tick, agent_tick, TICK_US);
}

static int agent_on_hello(const struct frame_hello *h)
{
	struct frame f = {.type = FRAME_AUTH};
	uint8_t msg[PROTO_AUTH_MSG_MAX];
	size_t mlen;

	/* One signature per connection: never sign whatever challenge comes. */
	if (agent.signed_hello) {
		log_warn("tunnel: a second HELLO from the edge");
		return -1;
	}
	agent.signed_hello = 1;
	f.u.auth.version = PROTO_VERSION;
	memcpy(f.u.auth.pubkey, agent.pub, KEY_PUB_LEN);
	snprintf(f.u.auth.name, sizeof(f.u.auth.name), "%s", agent.cfg.name);
	mlen = proto_auth_message(msg, PROTO_VERSION, h->challenge, agent.pub, f.u.auth.name);
	keys_sign(agent.secret, msg, mlen, f.u.auth.sig);
	return agent_send(&f);
}

uint8_t agent_route_kind(const struct agent_route *r)
{
	return r->tls_mode == TLS_MODE_PASSTHROUGH ? ROUTE_KIND_TLS : ROUTE_KIND_HTTP;
}

/* Route ids: routes[] are 1..nroutes, streams[] follow. */
static void agent_declare_routes(void)
{
	for (size_t i = 0; i < agent.cfg.nroutes; i++) {
		const struct agent_route *r = &agent.cfg.routes[i];
		struct frame f = {.type = FRAME_ROUTE, .stream = (uint32_t)(i + 1)};

		f.flags = r->redirect_https ? 0 : ROUTE_FLAG_NO_REDIRECT;
		f.u.route.hsts = r->hsts;
		f.u.route.kind = agent_route_kind(r);
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
			snprintf(out, cap, "%s/%u",
			         st->listen.kind == ROUTE_KIND_UDP ? "udp" : "tcp", st->listen.lo);
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
			/* Only the answer to our AUTH (PROTOCOL.md 5.3). */
			if (!agent.signed_hello) {
				log_warn("tunnel: WELCOME from the edge before its HELLO");
				return -1;
			}
			/* Each stream may queue its window toward a slow service:
			 * max_connections x 1 MiB is what agent.yaml promises. */
			if (f->u.welcome.window > AGENT_MAX_INITIAL_WINDOW) {
				log_error(
				    "tunnel: the edge offered a window of %u bytes per stream, "
				    "more than the %u this agent accepts",
				    f->u.welcome.window, AGENT_MAX_INITIAL_WINDOW);
				return -1;
			}
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
		upstream_probe_answer(f->u.ping);
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

static void agent_on_writable(void *arg)
{
	struct outq *q;
	size_t len;
	uint8_t *p;
	int r = 1;

	/* One write(2) for what this round sends, not one per message. */
	if (agent.ws)
		wsc_batch(agent.ws, 1);
	while (agent.ws && (p = tunnel_next_message(&agent.t, &len, &q))) {
		r = wsc_send(agent.ws, p, len);
		if (r <= 0)
			break;
		outq_pop(q);
	}
	if (agent.ws)
		wsc_batch(agent.ws, 0);
	if (r == 0)
		wsc_want_write(agent.ws);
	upstream_tunnel_drained();
}

static int agent_on_data(void *arg, const uint8_t *p, size_t n, int last)
{
	const char *err = NULL;

	agent.last_rx_us = now_us();
	if (tunnel_rx_feed(&agent.t, p, n, last, agent_on_frame, NULL, &err) != 0) {
		if (err)
			log_warn("tunnel: protocol error from the edge: %s", err);
		return -1;
	}
	return 0;
}

static void agent_on_open(void *arg)
{
	agent.signed_hello = 0;
	agent.state = AGENT_HELLO;
	agent.state_us = agent.last_rx_us = now_us();
}

static void agent_on_close(void *arg, const char *why)
{
	int was_ready = agent.state == AGENT_READY;
	int opened = agent.state >= AGENT_HELLO;

	agent.ws = NULL;
	upstream_tunnel_gone();
	tunnel_free(&agent.t);
	agent.state = AGENT_IDLE;
	if (agent.interrupted)
		return;
	if (was_ready) {
		log_warn("tunnel: disconnected from the edge: %s", why);
	} else if (opened) {
		log_warn("tunnel: the edge closed the session during the handshake: %s", why);
	} else {
		char ip[ADDR_TEXT_MAX] = "?";

		if (agent.edge_tried > 0)
			addr_format_ip(
			    (const struct sockaddr *)&agent.edge_addrs[agent.edge_tried - 1].ss,
			    ip);
		log_warn("tunnel: cannot connect to %s (%s): %s", agent.cfg.edge, ip, why);
		if (!agent.draining &&
		    agent.edge_tried < agent.edge_naddrs) { /* the next, at once */
			agent.state = AGENT_CONNECTING;
			agent_dial();
			return;
		}
	}
	agent_connect_soon(agent_backoff());
}

void agent_tunnel_start(void)
{
	lws_sul_schedule(agent.ctx, 0, &agent.sul_tick, agent_tick, TICK_US);
	agent_connect_soon(1);
}
