/*
 * agent/wsclient.c - the agent's WebSocket client (see wsclient.h), on top
 * of agent/conn.c for TCP and TLS.
 */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/keys.h"
#include "../common/wsframe.h"
#include "../proto/frame.h"
#include "../common/conn.h"
#include "wsclient.h"

#define OUT_CAP (2u * 1024u * 1024u)
#define IN_CAP  (256u * 1024u)
/* TLS records gathered per write(2) while corked (common/conn.h), as the
 * edge does: one write for a burst instead of one per 16 KiB record.  Room
 * for a stream's 4 reads of 64 KiB with frame and record overhead. */
#define WRITE_BUF (320u * 1024u)
#define RESP_MAX  8192u
/* Messages from this size on are written from the caller's buffer. */
#define DIRECT_MIN (16u * 1024u)
#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum wsc_state { WSC_CONNECTING, WSC_HANDSHAKE, WSC_OPEN, WSC_DEAD };

struct wsc {
	struct conn *conn;
	enum wsc_state st;
	const struct wsc_ops *ops;
	void *arg;
	char host[256];
	char path[1024];
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
	int batch;     /* wsc_batch()es open: the records gather until the last ends */
	int zero_mask; /* wss: mask keys are zero, see wsc_frame() */
};

static void wsc_fail(struct wsc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void wsc_fail(struct wsc *c, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	if (c->st == WSC_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	c->st = WSC_DEAD;
	conn_close(c->conn, why);
}

void wsc_close(struct wsc *c, const char *why)
{
	wsc_fail(c, "%s", why);
}

int wsc_closing(const struct wsc *c)
{
	return c->st == WSC_DEAD;
}

size_t wsc_queued(const struct wsc *c)
{
	return c->out_end - c->out_start;
}

/* The end of a write: the records gathered leave, unless a batch goes on. */
static void wsc_uncork(struct wsc *c)
{
	if (!c->batch)
		conn_cork(c->conn, 0);
}

void wsc_batch(struct wsc *c, int on)
{
	if (on)
		c->batch++;
	else if (c->batch)
		c->batch--;
	if (c->st == WSC_OPEN)
		conn_cork(c->conn, c->batch > 0);
}

/* Write what the socket takes; conn asks for POLLOUT when it takes less.
 * 1 when the buffer is empty after. */
static int wsc_write_out(struct wsc *c)
{
	/* TLS makes one record (16 KiB) per write: corked, they are gathered
	 * and leave together. */
	conn_cork(c->conn, c->batch || c->out_end - c->out_start > 16384);
	while (c->out_start < c->out_end) {
		ssize_t w = conn_write(c->conn, c->out + c->out_start, c->out_end - c->out_start);

		if (w <= 0) {
			wsc_uncork(c);
			return 0;
		}
		c->out_start += (size_t)w;
	}
	wsc_uncork(c);
	c->out_start = c->out_end = 0;
	return 1;
}

/* wsc_write_out(), then tell the owner who asked that there is room. */
static void wsc_flush(struct wsc *c)
{
	if (wsc_write_out(c) && c->st == WSC_OPEN && c->want_write) {
		c->want_write = 0;
		c->ops->on_writable(c->arg);
	}
}

/* A fresh unpredictable mask per frame (RFC 6455 §10.3), drawn from a pool
 * of random bytes: one getrandom(2) per 64 frames, not one per frame. */
static void wsc_mask_key(uint8_t mask[4])
{
	static uint8_t pool[256];
	static size_t used = sizeof(pool);

	if (used == sizeof(pool)) {
		keys_random(pool, sizeof(pool));
		used = 0;
	}
	memcpy(mask, pool + used, 4);
	used += 4;
}

/* Append one frame; the payload is masked on the way in (RFC 6455 §5.3).
 * Inside TLS the key is zero: nothing between the peers reads the bytes the
 * mask protects, and the edge (lws) then skips unmasking (PROTOCOL.md §1). */
static int wsc_frame(struct wsc *c, int opcode, const uint8_t *data, size_t len)
{
	uint8_t mask[4];
	size_t hl = wsf_header_len(len, 1);

	if (OUT_CAP - c->out_end < hl + len) {
		memmove(c->out, c->out + c->out_start, c->out_end - c->out_start);
		c->out_end -= c->out_start;
		c->out_start = 0;
		if (OUT_CAP - c->out_end < hl + len)
			return 0;
	}
	if (c->zero_mask) {
		memset(mask, 0, sizeof(mask));
		c->out_end += wsf_encode(c->out + c->out_end, opcode, 1, len, mask);
		memcpy(c->out + c->out_end, data, len);
	} else {
		wsc_mask_key(mask);
		c->out_end += wsf_encode(c->out + c->out_end, opcode, 1, len, mask);
		wsf_mask(c->out + c->out_end, data, len, mask, 0);
	}
	c->out_end += len;
	return 1;
}

/*
 * A large message with nothing queued before it: write header and payload
 * from the caller's buffer, and keep only what the socket did not take.
 * 1 when taken, 0 when not tried.
 */
static int wsc_send_direct(struct wsc *c, uint8_t *data, size_t len)
{
	uint8_t mask[4] = {0, 0, 0, 0};
	size_t hl = wsf_header_len(len, 1), off = 0, total = hl + len;

	if (len < DIRECT_MIN || c->out_start != c->out_end || OUT_CAP < total)
		return 0;
	if (!c->zero_mask)
		wsc_mask_key(mask);
	wsf_encode(data - hl, WSF_BINARY, 1, len, mask);
	if (!c->zero_mask)
		wsf_mask(data, data, len, mask, 0);
	conn_cork(c->conn, 1);
	while (off < total) {
		ssize_t w = conn_write(c->conn, data - hl + off, total - off);

		if (w < 0)
			return 1; /* failed: on_close follows */
		if (w == 0)
			break; /* full: conn asked for POLLOUT */
		off += (size_t)w;
	}
	wsc_uncork(c);
	memcpy(c->out, data - hl + off, total - off);
	c->out_start = 0;
	c->out_end = total - off;
	return 1;
}

int wsc_send(struct wsc *c, uint8_t *data, size_t len)
{
	int r;

	if (c->st != WSC_OPEN)
		return -1;
	if (c->out_end - c->out_start >= OUT_CAP / 2)
		return 0;
	/* What is queued goes first (and no on_writable from here: the
	 * caller's loop is running, data is its queue's head). */
	if (len >= DIRECT_MIN && c->out_start != c->out_end)
		wsc_write_out(c);
	if (wsc_send_direct(c, data, len))
		return 1;
	r = wsc_frame(c, WSF_BINARY, data, len);
	if (r && c->out_end - c->out_start >= 64 * 1024)
		wsc_flush(c);
	else if (r)
		conn_want_write(c->conn);
	return r;
}

void wsc_want_write(struct wsc *c)
{
	if (c->st != WSC_OPEN)
		return;
	c->want_write = 1;
	conn_want_write(c->conn);
}

static void wsc_on_connected(void *arg)
{
	struct wsc *c = arg;
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
	             c->path, c->host, key, c->protocol);
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

	c->in[c->in_len] = '\0';
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
	if (c->cur.opcode == WSF_PING) {
		wsc_frame(c, WSF_PONG, c->ctl, c->ctl_len);
		wsc_flush(c);
	} else if (c->cur.opcode == WSF_CLOSE) {
		wsc_fail(c, "the edge closed the WebSocket");
	}
}

/* Parse frames from c->in starting at off; returns bytes consumed. */
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
			/* RFC 6455 §5.1: a server never masks; the tunnel is binary only. */
			if (c->cur.masked || c->cur.opcode == WSF_TEXT ||
			    (c->cur.opcode == WSF_CONT && !c->in_msg) ||
			    (c->cur.opcode == WSF_BINARY && c->in_msg) ||
			    c->cur.len > FRAME_MAX_MESSAGE) {
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

static void wsc_on_readable(void *arg)
{
	struct wsc *c = arg;

	/* Bounded rounds keep one busy tunnel from starving the loop. */
	for (int rounds = 0; rounds < 32 && c->st != WSC_DEAD; rounds++) {
		size_t got = 0, used = 0;
		ssize_t n;

		/* Gather what TLS has (a record per read) before decoding, so that
		 * most frames arrive whole and are passed on without a copy. */
		do {
			n = conn_read(c->conn, c->in + c->in_len, IN_CAP - 1 - c->in_len);
			if (n == -1)
				return; /* failed: c is gone */
			if (n > 0) {
				c->in_len += (size_t)n;
				got += (size_t)n;
			}
		} while (n > 0 && c->in_len < IN_CAP - 1);
		if (got && c->st == WSC_HANDSHAKE) {
			ssize_t hl = wsc_response(c);

			if (hl > 0) {
				used = (size_t)hl;
				c->st = WSC_OPEN;
				c->ops->on_open(c->arg);
			}
		}
		if (got && c->st == WSC_OPEN)
			used = wsc_frames(c, used);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (n == CONN_EOF)
			wsc_fail(c, "the edge closed the connection");
		if (n <= 0)
			return;
	}
}

static void wsc_on_writable(void *arg)
{
	wsc_flush(arg);
}

static void wsc_on_close(void *arg, const char *why)
{
	struct wsc *c = arg;

	c->st = WSC_DEAD;
	c->ops->on_close(c->arg, why);
	free(c->out);
	free(c->in);
	free(c);
}

static const struct conn_ops wsc_conn_ops = {
    .on_connected = wsc_on_connected,
    .on_readable = wsc_on_readable,
    .on_writable = wsc_on_writable,
    .on_close = wsc_on_close,
};

struct wsc *wsc_connect(struct lws_vhost *vh, const struct wsc_cfg *cfg, const struct wsc_ops *ops,
                        void *arg, const char **err)
{
	struct wsc *c = calloc(1, sizeof(*c));
	struct conn_tls tls = {
	    .host = cfg->host, .verify = 1, .ca_file = cfg->ca_file, .write_buffer = WRITE_BUF};

	if (!c || !(c->out = malloc(OUT_CAP)) || !(c->in = malloc(IN_CAP))) {
		*err = "out of memory";
		goto fail;
	}
	c->ops = ops;
	c->arg = arg;
	c->protocol = cfg->protocol;
	c->zero_mask = cfg->tls;
	snprintf(c->host, sizeof(c->host), "%s", cfg->host);
	snprintf(c->path, sizeof(c->path), "%s", cfg->path);
	c->st = WSC_CONNECTING;
	c->conn = conn_open(vh, cfg->addr, cfg->tls ? &tls : NULL, &wsc_conn_ops, c, err);
	if (!c->conn)
		goto fail;
	return c;
fail:
	if (c) {
		free(c->out);
		free(c->in);
		free(c);
	}
	return NULL;
}
