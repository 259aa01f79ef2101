/*
 * agent/agent.h - process-wide state of relais-agent.
 */
#ifndef RELAIS_AGENT_AGENT_H
#define RELAIS_AGENT_AGENT_H

#include <libwebsockets.h>

#include "../common/config.h"
#include "../common/keys.h"
#include "../common/tunnel.h"
#include "../common/window.h"
#include "resolve.h"

#define AGENT_TUNNEL_PROTO "relais.v1"
#define AGENT_PROTO_SIGNAL "relais-signal"

enum agent_state {
	AGENT_IDLE = 0,   /* waiting for the next connect attempt */
	AGENT_CONNECTING, /* TCP/TLS/WebSocket handshake */
	AGENT_HELLO,      /* waiting for HELLO, then WELCOME */
	AGENT_READY       /* authenticated, routes declared */
};

struct ustream;
struct wsc;
struct resolve;

struct agent {
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct agent_config cfg;
	const char *cfg_file;
	uint8_t secret[KEY_SECRET_LEN];
	uint8_t pub[KEY_PUB_LEN];

	struct wsc *ws;                      /* the tunnel, NULL when down */
	struct resolve *resolving;           /* pending lookup of the edge's name */
	struct addr edge_addrs[RESOLVE_MAX]; /* its answers, tried in turn */
	size_t edge_naddrs, edge_tried;
	struct tunnel t;
	enum agent_state state;
	int signed_hello; /* AUTH sent on this connection: one per connection */
	unsigned attempt; /* connect attempts since the last success */
	uint32_t window;  /* per-stream credit from WELCOME */
	uint64_t last_rx_us, last_ping_us, state_us;
	struct probe probe;       /* round-trip probe for window growth */
	struct window_pool wpool; /* its streams' window growth (one session) */
	lws_sorted_usec_list_t sul_connect;
	lws_sorted_usec_list_t sul_tick;
	struct ustream *streams; /* live upstream streams */
	size_t nstreams;
	int draining;
	int interrupted;
};

extern struct agent agent;

/** The kind the edge is told for an HTTP/TLS route (ROUTE_KIND_TLS for
 * passthrough, else ROUTE_KIND_HTTP); its OPENs must carry it. */
uint8_t agent_route_kind(const struct agent_route *r);

/** Queue a frame on the tunnel and ask for a writeable callback; 0 or -1 (tunnel down). */
int agent_send(const struct frame *f);

/** Ask for a tunnel writeable callback. */
void agent_want_write(void);

/** Start (or schedule) connecting to the edge. */
void agent_connect_soon(uint64_t delay_us);

/** SIGTERM: GOAWAY to the edge, finish streams (at most 10 s), then stop. */
void agent_drain(void);

/** Start the keepalive tick and the first connection attempt. */
void agent_tunnel_start(void);

#endif
