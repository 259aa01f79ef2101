/*
 * agent/wsclient.c - the agent's WebSocket client (see wsclient.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/keys.h"
#include "../common/log.h"
#include "../common/wsframe.h"
#include "../proto/frame.h"
#include "wsclient.h"

#define OUT_CAP  (2u * 1024u * 1024u)
#define IN_CAP   (256u * 1024u)
#define RESP_MAX 8192u
#define WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum wsc_state { WSC_TCP, WSC_TLS, WSC_HANDSHAKE, WSC_OPEN, WSC_DEAD };

struct wsc {
	struct lws *wsi;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	enum wsc_state st;
	const struct wsc_ops *ops;
	void *arg;
	char host[256];
	char accept[32]; /* expected Sec-WebSocket-Accept */
	const char *protocol;
	uint8_t *out;
	size_t out_start, out_end;
	uint8_t *in;
	size_t in_len;
	struct wsf_header cur; /* frame being received */
	uint64_t cur_left;
	int in_frame, in_msg;
	uint8_t ctl[125];
	size_t ctl_len;
	int want_write;
	int in_wcb; /* inside the WRITEABLE callback */
	lws_sorted_usec_list_t sul_arm;
	int notified;
	char why[200];
};

static void wsc_fail(struct wsc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void wsc_arm_cb(lws_sorted_usec_list_t *sul)
{
	struct wsc *c = lws_container_of(sul, struct wsc, sul_arm);

	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

/*
 * Ask for POLLOUT.  lws clears POLLOUT of a raw file descriptor *after* its
 * WRITEABLE callback returns, so a request made inside that callback would
 * be lost: re-arm from a zero-delay timer instead.
 */
static void wsc_arm(struct wsc *c)
{
	if (!c->wsi)
		return;
	if (c->in_wcb)
		lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul_arm, wsc_arm_cb, 1);
	else
		lws_callback_on_writable(c->wsi);
}

static void wsc_fail(struct wsc *c, const char *fmt, ...)
{
	va_list ap;

	if (c->st == WSC_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	c->st = WSC_DEAD;
	if (c->wsi)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void wsc_close(struct wsc *c, const char *why)
{
	wsc_fail(c, "%s", why);
}

size_t wsc_queued(const struct wsc *c)
{
	return c->out_end - c->out_start;
}

static void wsc_free(struct wsc *c)
{
	lws_sul_cancel(&c->sul_arm);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	free(c->out);
	free(c->in);
	free(c);
}

static const char *wsc_ssl_error(struct wsc *c, int r)
{
	static char buf[160];
	unsigned long e = ERR_get_error();
	long v = SSL_get_verify_result(c->ssl);

	if (v != X509_V_OK)
		return X509_verify_cert_error_string(v);
	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		return buf;
	}
	if (r == SSL_ERROR_SYSCALL || r == SSL_ERROR_ZERO_RETURN)
		return errno ? strerror(errno) : "connection closed";
	return "TLS error";
}

/* Write what the socket takes; ask for POLLOUT when it takes less. */
static void wsc_flush(struct wsc *c)
{
	while (c->out_start < c->out_end && c->st != WSC_DEAD) {
		size_t n = c->out_end - c->out_start;
		ssize_t w;

		if (c->ssl) {
			int r = SSL_write(c->ssl, c->out + c->out_start,
			                  n > INT32_MAX ? INT32_MAX : (int)n);

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE)
					wsc_arm(c);
				else if (e != SSL_ERROR_WANT_READ)
					wsc_fail(c, "write: %s", wsc_ssl_error(c, e));
				return;
			}
			w = r;
		} else {
			w = send(c->fd, c->out + c->out_start, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					wsc_arm(c);
				else if (errno != EINTR)
					wsc_fail(c, "write: %s", strerror(errno));
				return;
			}
		}
		c->out_start += (size_t)w;
	}
	if (c->out_start == c->out_end)
		c->out_start = c->out_end = 0;
	if (c->st == WSC_OPEN && c->want_write && c->out_end < OUT_CAP / 2) {
		c->want_write = 0;
		c->ops->on_writable(c->arg);
	}
}

/* Append one frame; the payload is masked on the way in (RFC 6455 §5.3). */
static int wsc_frame(struct wsc *c, int opcode, const uint8_t *data, size_t len)
{
	uint8_t mask[4];
	size_t hl = wsf_header_len(len, 1);

	if (OUT_CAP - c->out_end < hl + len) {
		if (c->out_start) {
			memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
			c->out_end -= c->out_start;
			c->out_start = 0;
		}
		if (OUT_CAP - c->out_end < hl + len)
			return 0;
	}
	keys_random(mask, sizeof(mask));
	c->out_end += wsf_encode(c->out + c->out_end, opcode, 1, len, mask);
	wsf_mask(c->out + c->out_end, data, len, mask, 0);
	c->out_end += len;
	return 1;
}

int wsc_send(struct wsc *c, const uint8_t *data, size_t len)
{
	int r;

	if (c->st != WSC_OPEN)
		return -1;
	if (c->out_end - c->out_start >= OUT_CAP / 2)
		return 0;
	r = wsc_frame(c, WSF_BINARY, data, len);
	if (r)
		wsc_flush(c);
	return r;
}

void wsc_want_write(struct wsc *c)
{
	if (c->st != WSC_OPEN)
		return;
	c->want_write = 1;
	if (c->out_end - c->out_start < OUT_CAP / 2)
		wsc_arm(c);
}

static void wsc_request(struct wsc *c, const char *path)
{
	uint8_t nonce[16], sha[SHA_DIGEST_LENGTH];
	char key[32], cat[96];
	int n;

	keys_random(nonce, sizeof(nonce));
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce));
	snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)cat, strlen(cat), sha);
	EVP_EncodeBlock((unsigned char *)c->accept, sha, sizeof(sha));
	n = snprintf((char *)c->out, OUT_CAP,
	             "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
	             "Sec-WebSocket-Protocol: %s\r\nUser-Agent: relais-agent\r\n\r\n",
	             path, c->host, key, c->protocol);
	c->out_start = 0;
	c->out_end = (size_t)n;
	c->st = WSC_HANDSHAKE;
	wsc_flush(c);
}

/* Find header `name` in the response head; copies its trimmed value. */
static int wsc_header(const char *head, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
		const char *p = l + 2, *e;

		if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
			continue;
		p += nl + 1;
		while (*p == ' ' || *p == '\t')
			p++;
		e = strstr(p, "\r\n");
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) >= cap)
			return -1;
		memcpy(out, p, (size_t)(e - p));
		out[e - p] = '\0';
		return 0;
	}
	return -1;
}

/* Check the 101 answer (RFC 6455 §4.1); returns bytes of the head or 0/-1. */
static ssize_t wsc_response(struct wsc *c)
{
	char *end, v[128];
	size_t hl;

	c->in[c->in_len < IN_CAP ? c->in_len : IN_CAP - 1] = '\0';
	end = strstr((char *)c->in, "\r\n\r\n");
	if (!end) {
		if (c->in_len >= RESP_MAX) {
			wsc_fail(c, "WebSocket handshake: response head too large");
			return -1;
		}
		return 0;
	}
	hl = (size_t)(end - (char *)c->in) + 4;
	end[2] = '\0';
	if (strncmp((char *)c->in, "HTTP/1.1 101", 12) != 0) {
		char *eol = strstr((char *)c->in, "\r\n");

		*eol = '\0';
		wsc_fail(c, "WebSocket handshake refused: %.80s", (char *)c->in);
		return -1;
	}
	if (wsc_header((char *)c->in, "Sec-WebSocket-Accept", v, sizeof(v)) < 0 ||
	    strcmp(v, c->accept) != 0) {
		wsc_fail(c, "WebSocket handshake: bad Sec-WebSocket-Accept");
		return -1;
	}
	if (wsc_header((char *)c->in, "Sec-WebSocket-Protocol", v, sizeof(v)) < 0 ||
	    strcmp(v, c->protocol) != 0) {
		wsc_fail(c, "WebSocket handshake: the edge does not speak %s", c->protocol);
		return -1;
	}
	return (ssize_t)hl;
}

static void wsc_control(struct wsc *c)
{
	switch (c->cur.opcode) {
	case WSF_PING:
		wsc_frame(c, WSF_PONG, c->ctl, c->ctl_len);
		wsc_flush(c);
		break;
	case WSF_CLOSE:
		wsc_fail(c, "the edge closed the WebSocket");
		break;
	default:
		break;
	}
}

/* Parse frames from c->in; returns bytes consumed. */
static size_t wsc_frames(struct wsc *c, size_t off)
{
	const char *err = NULL;

	while (off < c->in_len && c->st == WSC_OPEN) {
		size_t avail = c->in_len - off, k;

		if (!c->in_frame) {
			ssize_t hl = wsf_decode(c->in + off, avail, &c->cur, &err);

			if (hl == 0)
				break;
			if (hl < 0) {
				wsc_fail(c, "%s", err);
				break;
			}
			/* RFC 6455 §5.1: a server never masks; we carry binary only. */
			if (c->cur.masked || c->cur.opcode == WSF_TEXT ||
			    (c->cur.opcode == WSF_CONT && !c->in_msg) ||
			    (c->cur.opcode == WSF_BINARY && c->in_msg) ||
			    (c->cur.len > FRAME_MAX_MESSAGE)) {
				wsc_fail(c, "unexpected WebSocket frame from the edge");
				break;
			}
			off += (size_t)hl;
			c->in_frame = 1;
			c->cur_left = c->cur.len;
			c->ctl_len = 0;
			if (c->cur.opcode == WSF_BINARY)
				c->in_msg = 1;
			avail = c->in_len - off;
		}
		k = avail < c->cur_left ? avail : (size_t)c->cur_left;
		if (c->cur.opcode >= WSF_CLOSE) {
			memcpy(c->ctl + c->ctl_len, c->in + off, k);
			c->ctl_len += k;
		} else {
			int last = c->cur.fin && k == c->cur_left;

			if ((k || last) && c->ops->on_data(c->arg, c->in + off, k, last) < 0) {
				wsc_fail(c, "tunnel protocol error");
				break;
			}
			if (last)
				c->in_msg = 0;
		}
		off += k;
		c->cur_left -= k;
		if (c->cur_left == 0) {
			c->in_frame = 0;
			if (c->cur.opcode >= WSF_CLOSE)
				wsc_control(c);
		}
	}
	return off;
}

static void wsc_handshake_tls(struct wsc *c, const char *path)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		wsc_request(c, path);
		return;
	}
	r = SSL_get_error(c->ssl, r);
	if (r == SSL_ERROR_WANT_WRITE)
		wsc_arm(c);
	else if (r != SSL_ERROR_WANT_READ)
		wsc_fail(c, "TLS handshake with %s: %s", c->host, wsc_ssl_error(c, r));
}

static void wsc_readable(struct wsc *c)
{
	for (int rounds = 0; rounds < 64 && c->st != WSC_DEAD; rounds++) {
		ssize_t n;
		size_t used = 0;

		if (c->ssl) {
			int r = SSL_read(c->ssl, c->in + c->in_len, (int)(IN_CAP - 1 - c->in_len));

			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return;
				wsc_fail(c, "%s",
				         e == SSL_ERROR_ZERO_RETURN
				             ? "the edge closed the connection"
				             : wsc_ssl_error(c, e));
				return;
			}
			n = r;
		} else {
			n = recv(c->fd, c->in + c->in_len, IN_CAP - 1 - c->in_len, 0);
			if (n == 0) {
				wsc_fail(c, "the edge closed the connection");
				return;
			}
			if (n < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
					wsc_fail(c, "read: %s", strerror(errno));
				return;
			}
		}
		c->in_len += (size_t)n;
		if (c->st == WSC_HANDSHAKE) {
			ssize_t hl = wsc_response(c);

			if (hl <= 0)
				continue;
			used = (size_t)hl;
			c->st = WSC_OPEN;
			c->ops->on_open(c->arg);
		}
		if (c->st == WSC_OPEN)
			used = wsc_frames(c, used);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
	}
	/* More may be buffered inside TLS or the socket: come back soon. */
	if (c->st == WSC_OPEN)
		wsc_arm(c);
}

static const char *wsc_path_of(struct wsc *c);

static void wsc_writable(struct wsc *c)
{
	int err = 0;
	socklen_t el = sizeof(err);

	switch (c->st) {
	case WSC_TCP:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			wsc_fail(c, "connect to %s: %s", c->host, strerror(err ? err : errno));
			return;
		}
		if (c->ssl) {
			c->st = WSC_TLS;
			wsc_handshake_tls(c, wsc_path_of(c));
		} else {
			wsc_request(c, wsc_path_of(c));
		}
		break;
	case WSC_TLS:
		wsc_handshake_tls(c, wsc_path_of(c));
		break;
	case WSC_HANDSHAKE:
		wsc_flush(c);
		break;
	case WSC_OPEN:
		wsc_flush(c);
		wsc_readable(c);
		break;
	default:
		break;
	}
}

/* The request path is kept after the struct to bound its size simply. */
struct wsc_with_path {
	struct wsc c;
	char path[1024];
};

static const char *wsc_path_of(struct wsc *c)
{
	return ((struct wsc_with_path *)c)->path;
}

static SSL_CTX *wsc_tls_ctx(const char *ca_file, const char **err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		*err = "cannot create a TLS context";
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
	            : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*err = "cannot load the CA certificates (edge_ca)";
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

struct wsc *wsc_connect(struct lws_vhost *vh, const struct wsc_cfg *cfg, const struct wsc_ops *ops,
                        void *arg, const char **err)
{
	struct wsc_with_path *cp = calloc(1, sizeof(*cp));
	struct wsc *c = &cp->c;
	lws_sock_file_fd_type u;
	int one = 1, sz = 4 * 1024 * 1024;
	struct in6_addr a6;
	struct in_addr a4;

	if (!cp) {
		*err = "out of memory";
		return NULL;
	}
	c->fd = -1;
	c->ops = ops;
	c->arg = arg;
	c->protocol = cfg->protocol;
	snprintf(c->host, sizeof(c->host), "%s", cfg->host);
	snprintf(cp->path, sizeof(cp->path), "%s", cfg->path);
	c->out = malloc(OUT_CAP);
	c->in = malloc(IN_CAP);
	if (!c->out || !c->in) {
		*err = "out of memory";
		goto fail;
	}
	if (cfg->tls) {
		c->ctx = wsc_tls_ctx(cfg->ca_file, err);
		if (!c->ctx)
			goto fail;
		c->ssl = SSL_new(c->ctx);
		if (!c->ssl) {
			*err = "cannot create a TLS session";
			goto fail;
		}
		/* Verify the certificate names the host we dialled (RFC 6125). */
		if (inet_pton(AF_INET, c->host, &a4) == 1 ||
		    inet_pton(AF_INET6, c->host, &a6) == 1) {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host);
		} else {
			SSL_set_tlsext_host_name(c->ssl, c->host);
			SSL_set1_host(c->ssl, c->host);
		}
		SSL_set_connect_state(c->ssl);
	}
	c->fd = socket(cfg->addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		*err = strerror(errno);
		goto fail;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (connect(c->fd, (const struct sockaddr *)&cfg->addr->ss, cfg->addr->len) < 0 &&
	    errno != EINPROGRESS) {
		*err = strerror(errno);
		goto fail;
	}
	if (c->ssl)
		SSL_set_fd(c->ssl, c->fd);
	u.filefd = c->fd;
	c->wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, WSC_PROTOCOL, NULL);
	if (!c->wsi) {
		*err = "cannot add the socket to the event loop";
		goto fail;
	}
	lws_set_opaque_user_data(c->wsi, c);
	c->st = WSC_TCP;
	wsc_arm(c);
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	wsc_free(c);
	return NULL;
}

int wsc_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
	struct wsc *c = lws_get_opaque_user_data(wsi);

	if (!c)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (c->st == WSC_TLS)
			wsc_handshake_tls(c, wsc_path_of(c));
		else if (c->st == WSC_HANDSHAKE || c->st == WSC_OPEN)
			wsc_readable(c);
		else if (c->st == WSC_TCP)
			wsc_writable(c);
		if (c->st == WSC_OPEN && c->out_start < c->out_end)
			wsc_flush(c);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		c->in_wcb = 1;
		wsc_writable(c);
		c->in_wcb = 0;
		break;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		lws_set_opaque_user_data(wsi, NULL);
		c->wsi = NULL;
		if (c->st != WSC_DEAD)
			wsc_fail(c, "connection closed");
		if (!c->notified) {
			c->notified = 1;
			c->ops->on_close(c->arg, c->why);
		}
		wsc_free(c);
		return 0;
	default:
		break;
	}
	return c->st == WSC_DEAD && reason != LWS_CALLBACK_RAW_CLOSE_FILE ? -1 : 0;
}
