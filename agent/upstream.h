/*
 * agent/upstream.h - streams from the edge, each connected to a local service.
 */
#ifndef RELAIS_AGENT_UPSTREAM_H
#define RELAIS_AGENT_UPSTREAM_H

#include <libwebsockets.h>

#include "../proto/frame.h"

/** Handle OPEN DATA WINDOW FIN RST DATAGRAM from the edge; 0, or -1 to drop the tunnel. */
int upstream_on_frame(const struct frame *f);

/** The tunnel went down: close every upstream connection. */
void upstream_tunnel_gone(void);

/** A PONG came: if it ends the probe, grow the windows the round trip limits. */
void upstream_probe_answer(uint64_t value);

/** The tunnel's output queue drained: resume paused upstream readers. */
void upstream_tunnel_drained(void);

#endif
