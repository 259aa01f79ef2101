/*
 * edge/edge.h - process-wide state of relais-edge.
 */
#ifndef RELAIS_EDGE_EDGE_H
#define RELAIS_EDGE_EDGE_H

#include <libwebsockets.h>

#include "../common/config.h"

struct edge {
	struct lws_context *ctx;
	struct lws_vhost *raw_vh;    /* no listener: hosts adopted fds */
	struct lws_vhost *tunnel_vh; /* wss agent endpoint */
	struct edge_config cfg;      /* current configuration (swapped on reload) */
	const char *cfg_file;
	int draining;          /* SIGTERM received */
	int tunnel_shared;     /* tunnel.listen == listen.https: agents found by SNI */
	uint64_t streams_open; /* live streams, all sessions */
	long fd_cap;           /* public clients get descriptors below this (listener.h) */
};

extern struct edge edge;

/** An accepted route serves host: with ACME on, make sure a certificate
 *  for it exists and stays renewed (unless the user's wildcard covers it). */
void edge_need_cert(const char *host);

/** No route serves host any more (call after removing it): with ACME on, a
 *  host never issued stops being managed and counting against its agent. */
void edge_forget_cert(const char *host);

/** The key authorization for an HTTP-01 token ACME is being validated
 *  with; 1 found (copied to out), 0 unknown. */
int edge_acme_challenge(const char *token, char *out, size_t cap);

/* Protocol names on the raw vhost. */
#define EDGE_PROTO_LISTENER "relais-listener"
#define EDGE_PROTO_ADMIN    "relais-admin"
#define EDGE_PROTO_SIGNAL   "relais-signal"
#define EDGE_PROTO_UDP      "relais-udp"
#define EDGE_TUNNEL_PROTO   "relais.v1" /* WebSocket subprotocol */

#endif
