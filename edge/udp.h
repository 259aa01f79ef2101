/*
 * edge/udp.h - UDP stream ports.  Datagrams are grouped into flows by client
 * address (IPv4 and IPv6) and, on a wildcard socket, the address it sent
 * to; each flow is one stream on an agent session,
 * opened once and then carried as DATAGRAM frames with no per-packet setup.
 * The agent ends idle flows (its idle_timeout, default 60 s, like conntrack)
 * with RST; UDP_IDLE_MS is only the edge's safety net, longer than any
 * idle_timeout an agent may set.  Under pressure datagrams are
 * dropped (and counted), never queued without bound.
 */
#ifndef RELAIS_EDGE_UDP_H
#define RELAIS_EDGE_UDP_H

#include <libwebsockets.h>
#include <stdint.h>

#include "../common/addr.h"
#include "../common/config.h"

/* Safety net, a minute past the longest idle_timeout an agent may set: the
 * agent's idle_timeout decides. */
#define UDP_IDLE_MS   (CFG_UDP_IDLE_MAX_MS + 60000u)
#define UDP_MAX_FLOWS 4096 /* per port and address */
/* Per client IPv4 address or IPv6 /64 (what one host holds), per port and
 * address: one host cycling source ports cannot take the whole table. */
#define UDP_MAX_FLOWS_PER_SRC 256
/* No new flow on an agent session that carries this many streams: flows on
 * many ports (a range) would otherwise queue an OPEN each, without bound,
 * while the tunnel is slow, until the session is closed for it (16 MiB),
 * and make each stream_open() walk long hash chains.  The agent itself
 * refuses flows past UF_MAX_FLOWS (agent/udpflow.h, the same value). */
#define UDP_MAX_FLOWS_PER_AGENT 16384

struct udpsock;

/** Bind a UDP socket on a (port already set) and serve it; NULL with *err. */
struct udpsock *udp_open(const struct addr *a, uint16_t port, const char **err);

/** Close the socket and every flow on it. */
void udp_close(struct udpsock *u);

/** lws callback for the adopted UDP descriptors (protocol EDGE_PROTO_UDP). */
int udp_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len);

/** Datagrams dropped so far (queue full, no agent, too many flows on the
 * port, from one client address or on the agent's session, reply not sent). */
uint64_t udp_dropped(void);

#endif
