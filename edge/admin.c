/*
 * edge/admin.c - the local status endpoint.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "admin.h"
#include "edge.h"
#include "registry.h"

/* /status grows with sessions and routes (1024 routes of up to 253-byte
 * names per session); past this it is cut, still valid JSON. */
#define ADMIN_BODY_MAX (8u * 1024u * 1024u)

void admin_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local)
{
	lws_sock_file_fd_type u;

	u.sockfd = fd;
	if (!lws_adopt_descriptor_vhost(edge.raw_vh, LWS_ADOPT_SOCKET, u, EDGE_PROTO_ADMIN, NULL))
		close(fd);
}

static int admin_respond(struct lws *wsi, struct admin_conn *c)
{
	static const char not_found[] = "{\"error\":\"not found\"}\n";
	const char *status = "200 OK", *body = not_found;
	char *doc = NULL;
	size_t blen = sizeof(not_found) - 1;
	int hl;

	if (strncmp(c->req, "GET /status ", 12) == 0) {
		doc = registry_status_json(ADMIN_BODY_MAX, &blen);
		if (!doc)
			return -1;
		body = doc;
	} else {
		status = "404 Not Found";
	}
	c->resp = malloc(LWS_PRE + 256 + blen);
	if (!c->resp) {
		free(doc);
		return -1;
	}
	hl = snprintf(c->resp + LWS_PRE, 256,
	              "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	              "Connection: close\r\nCache-Control: no-store\r\n\r\n",
	              status, blen);
	memcpy(c->resp + LWS_PRE + hl, body, blen);
	c->resplen = (size_t)hl + blen;
	free(doc);
	lws_callback_on_writable(wsi);
	return 0;
}

int admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
	struct admin_conn *c = user;

	switch (reason) {
	case LWS_CALLBACK_RAW_ADOPT:
		memset(c, 0, sizeof(*c));
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 10);
		break;
	case LWS_CALLBACK_RAW_RX:
		if (c->resp)
			break;
		if (len >= sizeof(c->req) - c->reqlen)
			return -1;
		memcpy(c->req + c->reqlen, in, len);
		c->reqlen += len;
		c->req[c->reqlen] = '\0';
		if (strstr(c->req, "\r\n\r\n"))
			return admin_respond(wsi, c);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (c->resp && c->resplen) {
			lws_write(wsi, (unsigned char *)c->resp + LWS_PRE, c->resplen,
			          LWS_WRITE_RAW);
			c->resplen = 0;
			/* lws keeps what the kernel did not take; close after it drained. */
			if (lws_partial_buffered(wsi)) {
				lws_callback_on_writable(wsi);
				return 0;
			}
		}
		return -1;
	case LWS_CALLBACK_RAW_CLOSE:
		free(c->resp);
		c->resp = NULL;
		break;
	default:
		break;
	}
	return 0;
}
