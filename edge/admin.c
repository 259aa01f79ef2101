/*
 * edge/admin.c - the local status endpoint.
 *
 * It has no authentication, so it trusts nothing but the loopback address it
 * listens on (config.c refuses any other): a request must name the endpoint
 * by an address or "localhost", which keeps a web page from reading it
 * through DNS rebinding, and only a few connections are served at a time,
 * because the admin listener may use the descriptors kept for agents.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "admin.h"
#include "dashboard.h"
#include "edge.h"
#include "registry.h"

/* /status grows with sessions and routes (1024 routes of up to 253-byte
 * names per session); past this it is cut, still valid JSON. */
#define ADMIN_BODY_MAX (8u * 1024u * 1024u)

/* Monitoring needs one or two; more are refused at once (listener.h: the
 * admin listener is reserve_ok, so it must not take the agents' share). */
#define ADMIN_CONNS_MAX 16

static unsigned admin_conns;
static time_t admin_warned;
static unsigned long admin_refused;

/* Refuse a connection over the limit; say so at most once a minute. */
static void admin_refuse(int fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
	                           "Connection: close\r\n\r\n";
	struct timespec now;

	/* best effort: a fresh socket takes a few bytes without blocking */
	(void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
	admin_refused++;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (admin_warned == 0 || now.tv_sec - admin_warned >= 60) {
		log_warn("admin: %u connections open, refused %lu more (at most %d at a time)",
		         admin_conns, admin_refused, ADMIN_CONNS_MAX);
		admin_warned = now.tv_sec;
		admin_refused = 0;
	}
}

void admin_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local)
{
	lws_sock_file_fd_type u;

	if (admin_conns >= ADMIN_CONNS_MAX) {
		admin_refuse(fd);
		return;
	}
	u.sockfd = fd;
	/* on failure lws has closed fd itself */
	lws_adopt_descriptor_vhost(edge.raw_vh, LWS_ADOPT_SOCKET, u, EDGE_PROTO_ADMIN, NULL);
}

/*
 * 1 when a Host value names the endpoint by address or as localhost: a name
 * that a browser resolved to 127.0.0.1 is some web page's (DNS rebinding).
 */
static int admin_host_ok(const char *v, size_t n)
{
	size_t i = 0;

	if (n > 0 && v[0] == '[') {
		for (i = 1; i < n && v[i] != ']'; i++)
			if (!strchr("0123456789abcdefABCDEF:.", v[i]))
				return 0;
		if (i == n || i == 1)
			return 0;
		i++;
	} else {
		int dots = 0, digits = 0;

		while (i < n && v[i] != ':')
			i++;
		if (i == 9 && strncasecmp(v, "localhost", 9) == 0)
			goto port;
		for (size_t j = 0; j < i; j++) {
			if (v[j] == '.' && digits > 0 && digits <= 3) {
				dots++;
				digits = 0;
			} else if (v[j] >= '0' && v[j] <= '9') {
				digits++;
			} else {
				return 0;
			}
		}
		if (dots != 3 || digits == 0 || digits > 3)
			return 0;
	}
port:
	if (i == n)
		return 1;
	if (v[i] != ':' || n - i < 2 || n - i > 6)
		return 0;
	for (i++; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return 0;
	return 1;
}

/*
 * Judge the request head in req (NUL-terminated, ends in CRLF CRLF): the
 * HTTP status to answer, with *why the error text for anything but 200,
 * and *file the dashboard file asked for (NULL for /status).
 */
static int admin_check(const char *req, const char **why, const struct dashboard_file **file)
{
	const char *sp1, *sp2, *line, *eol;
	int hosts = 0, host_ok = 1;

	eol = strstr(req, "\r\n");
	sp1 = memchr(req, ' ', (size_t)(eol - req));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		*why = "bad request";
		return 400;
	}
	for (line = eol + 2; strncmp(line, "\r\n", 2) != 0; line = eol + 2) {
		const char *colon, *v, *e;

		eol = strstr(line, "\r\n");
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon) {
			*why = "bad request";
			return 400;
		}
		if (colon - line != 4 || strncasecmp(line, "host", 4) != 0)
			continue;
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (e = eol; e > v && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		hosts++;
		host_ok = admin_host_ok(v, (size_t)(e - v));
	}
	if (hosts > 1) {
		*why = "bad request";
		return 400;
	}
	if (!host_ok) {
		*why = "Host must be an IP address or localhost";
		return 403;
	}
	*file = dashboard_find(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (!*file && (sp2 - sp1 - 1 != 7 || strncmp(sp1 + 1, "/status", 7) != 0)) {
		*why = "not found";
		return 404;
	}
	if (sp1 - req != 3 || strncmp(req, "GET", 3) != 0) {
		*why = "method not allowed";
		return 405;
	}
	return 200;
}

static int admin_respond(struct lws *wsi, struct admin_conn *c)
{
	const struct dashboard_file *file = NULL;
	const char *status, *why = "", *body, *type = "application/json", *extra = "";
	char *doc = NULL, err[96];
	size_t blen;
	int code = admin_check(c->req, &why, &file), hl;

	switch (code) {
	case 200:
		status = "200 OK";
		break;
	case 403:
		status = "403 Forbidden";
		break;
	case 404:
		status = "404 Not Found";
		break;
	case 405:
		status = "405 Method Not Allowed\r\nAllow: GET";
		break;
	default:
		status = "400 Bad Request";
		break;
	}
	if (code == 200 && file) {
		body = file->body;
		blen = strlen(body);
		type = file->type;
		extra = dashboard_headers;
	} else if (code == 200) {
		doc = registry_status_json(ADMIN_BODY_MAX, &blen);
		if (!doc)
			return -1;
		body = doc;
	} else {
		blen = (size_t)snprintf(err, sizeof(err), "{\"error\":\"%s\"}\n", why);
		body = err;
	}
	c->resp = malloc(LWS_PRE + 1024 + blen);
	if (!c->resp) {
		free(doc);
		return -1;
	}
	hl = snprintf(c->resp + LWS_PRE, 1024,
	              "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	              "Connection: close\r\nCache-Control: no-store\r\n"
	              "X-Content-Type-Options: nosniff\r\n%s\r\n",
	              status, type, blen, extra);
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
		c->counted = 1;
		admin_conns++;
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 10);
		break;
	case LWS_CALLBACK_RAW_RX:
		if (c->resp || c->sent)
			break; /* one request per connection */
		if (len >= sizeof(c->req) - c->reqlen)
			return -1;
		memcpy(c->req + c->reqlen, in, len);
		c->reqlen += len;
		c->req[c->reqlen] = '\0';
		if (strlen(c->req) != c->reqlen)
			return -1; /* a NUL byte: not HTTP */
		if (strstr(c->req, "\r\n\r\n"))
			return admin_respond(wsi, c);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (c->resp && c->resplen) {
			lws_write(wsi, (unsigned char *)c->resp + LWS_PRE, c->resplen,
			          LWS_WRITE_RAW);
			c->resplen = 0;
			/* lws copied what the kernel did not take: ours can go */
			free(c->resp);
			c->resp = NULL;
			c->sent = 1;
			/* close after lws drained its copy */
			if (lws_partial_buffered(wsi)) {
				lws_callback_on_writable(wsi);
				return 0;
			}
		}
		return -1;
	case LWS_CALLBACK_RAW_CLOSE:
		free(c->resp);
		c->resp = NULL;
		if (c->counted) {
			c->counted = 0;
			admin_conns--;
		}
		break;
	default:
		break;
	}
	return 0;
}
