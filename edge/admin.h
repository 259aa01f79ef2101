/*
 * edge/admin.h - the local status endpoint (admin.listen): GET /status
 * answers a JSON document of sessions, routes and stream counts.  Meant for
 * loopback; it exposes host names and agent addresses, never keys.  A Host
 * header must be an IP address or localhost (403 otherwise), and at most 16
 * connections are served at a time (more get 503).
 */
#ifndef RELAIS_EDGE_ADMIN_H
#define RELAIS_EDGE_ADMIN_H

#include <libwebsockets.h>

#include "listener.h"

/** Accept handler for the admin listener. */
void admin_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local);

/** lws protocol callback for admin connections; per-session data is struct admin_conn. */
int admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);

struct admin_conn {
	char req[2048];
	size_t reqlen;
	char *resp; /* LWS_PRE + response, malloc'd */
	size_t resplen;
	int sent;    /* the response was handed to lws */
	int counted; /* in the count of open admin connections */
};

#endif
