/*
 * edge/pipe.h - a public connection piped byte for byte through a stream:
 * TLS passthrough (routed by SNI) and TCP stream ports.  Half-close travels
 * both ways (FIN), so a client that shuts its write side still receives the
 * answer.
 */
#ifndef RELAIS_EDGE_PIPE_H
#define RELAIS_EDGE_PIPE_H

#include "../common/conn.h"
#include "session.h"

/**
 * Pipe conn (adopted, up or still in peek state) into a new stream on
 * session s for route r.  tls marks a client that reached the edge over TLS
 * (passthrough); what names the connection in the access log ("tcp/25565",
 * or the SNI), where it gets one line when it ends.  Takes the conn: on
 * failure it is closed.  Returns 0 or -1.
 */
int pipe_start(struct conn *conn, struct esession *s, const struct eroute *r, int tls,
               const char *what);

#endif
