/*
 * agent/udpflow.h - UDP flows from the edge: one local socket per flow,
 * connected to the route's target, so replies find their client.
 */
#ifndef RELAIS_AGENT_UDPFLOW_H
#define RELAIS_AGENT_UDPFLOW_H

#include <libwebsockets.h>

#include "../proto/frame.h"

#define AGENT_PROTO_UDP "relais-udp"

/* Flows (one socket each) at most: half the hard limit of open files (as
 * raised at start, at most NOFILE_CEILING), never more than this, so that
 * datagrams from the internet cannot take the descriptors TCP streams need. */
#define UF_MAX_FLOWS 16384

/** OPEN of kind UDP: create the flow (REFUSE when the route is unknown or
 * UF_MAX_FLOWS are open).  0, or -1 to drop the tunnel. */
int udpflow_open(const struct frame *f);

/** 1 when a flow has stream id id, which the edge has opened again: the
 * flow goes on, and the edge's frames on id are dropped from now on (they
 * are for the stream the agent refuses; PROTOCOL.md section 7). */
int udpflow_reopened(uint32_t id);

/** DATAGRAM / RST / other frames for stream f->stream: 1 when a flow took it, else 0. */
int udpflow_frame(const struct frame *f);

/** The tunnel went down: close every flow. */
void udpflow_tunnel_gone(void);

/** lws callback of the flows' sockets (AGENT_PROTO_UDP). */
int udpflow_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

#endif
