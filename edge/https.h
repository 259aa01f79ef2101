/*
 * edge/https.h - the TLS port: read the ClientHello's SNI before any TLS
 * state exists, then hand the connection to the agent endpoint (SNI =
 * tunnel.hostname when the tunnel shares the port), to a passthrough route
 * (raw TLS to the agent), or terminate TLS with the certificate for that
 * name and serve it as an HTTP proxy host.
 */
#ifndef RELAIS_EDGE_HTTPS_H
#define RELAIS_EDGE_HTTPS_H

#include "listener.h"

/** Accept handler for listen.https (and tunnel.listen when they are the same). */
void https_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local);

/**
 * Remember host (a route's name or "*.domain" pattern) as served by TLS
 * passthrough, so that while no agent holds it the edge refuses its names
 * instead of terminating TLS for them with a covering certificate.  Called
 * when a passthrough route is used; the edge keeps the last 1024 patterns.
 */
void https_note_passthrough(const char *host);

#endif
