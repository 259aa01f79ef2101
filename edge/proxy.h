/*
 * edge/proxy.h - HTTP/1.1 proxy hosts: public client connections, routed
 * per request by Host to an agent stream.
 */
#ifndef RELAIS_EDGE_PROXY_H
#define RELAIS_EDGE_PROXY_H

#include <libwebsockets.h>

#include "../common/conn.h"
#include "listener.h"

/** Accept handler for listen.http. */
void proxy_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local);

/**
 * Serve HTTP on conn (up, or in peek state: the caller then starts it).
 * sni: the name a TLS client asked for (its requests must name that host:
 * 421 otherwise), NULL over plain HTTP.  Takes the conn.
 * Returns 0, or -1 (conn closed).
 */
int proxy_adopt(struct conn *conn, const char *sni);

#endif
