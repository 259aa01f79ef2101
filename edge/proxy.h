/*
 * edge/proxy.h - HTTP/1.1 proxy hosts: public client connections, routed
 * per request by Host to an agent stream.
 */
#ifndef RELAIS_EDGE_PROXY_H
#define RELAIS_EDGE_PROXY_H

#include <libwebsockets.h>

#include "listener.h"

/** Accept handler for listen.http. */
void proxy_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local);

/** lws protocol callback of public client sockets; per-session data is a struct hconn. */
int proxy_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		   size_t len);

/** Size of the per-connection state lws allocates. */
size_t proxy_conn_size(void);

#endif
