/*
 * edge/proxy.c - HTTP/1.1 proxy hosts.
 *
 * One public connection carries requests one at a time (pipelined requests
 * wait in the input buffer until the response before them is complete, as
 * nginx does).  Each request is routed by its Host; consecutive requests for
 * the same route reuse the connection's stream, so a keep-alive client keeps
 * one connection to the local service.  Request and response bodies are
 * streamed, never buffered whole: the input buffer and the per-stream credit
 * window bound the memory of a connection.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/outq.h"
#include "accesslog.h"
#include "certs.h"
#include "edge.h"
#include "http1.h"
#include "proxy.h"
#include "auth.h"
#include "policy.h"
#include "registry.h"
#include "stream.h"

#define READ_MAX       (64u * 1024u) /* one read at most */
#define RESP_HEAD_MAX  (64u * 1024u)
#define OUT_CHUNK      (64u * 1024u)
#define LINGER_MS      5000u /* lingering close: longest wait for the client's FIN */
#define WRITE_HEAD_MAX (RESP_HEAD_MAX + 1024u)
#define INTERIM_MAX    16 /* 1xx responses to one request; more is a broken origin */
/* No next request while more than this is queued for the client: the
 * edge's initial stream window (session.c), what one response may queue
 * before its credit stops the origin.  See hconn_pump. */
#define OUT_HOLD (1024u * 1024u)

/* HC_LINGER: our answer is out and our side shut; the client's bytes are
 * read and dropped until it closes or LINGER_MS pass (see hconn_linger). */
enum hc_state { HC_HEAD, HC_BODY, HC_WAIT, HC_TUNNEL, HC_CLOSING, HC_LINGER };
enum rs_state { RS_IDLE, RS_HEAD, RS_BODY, RS_TUNNEL };

struct hconn {
	struct conn *conn;
	struct addr peer, local;
	char ip[ADDR_TEXT_MAX];
	int tls;
	char sni[256]; /* the name the TLS client asked for; "" over plain HTTP */
	/* who the request in progress logged in as (access lists with users),
	 * for a reload to tell whether that login still holds; "" for none */
	char auth_user[80], auth_hash[128];
	enum hc_state state;
	enum rs_state rs;
	int paused;     /* client reads paused */
	int closed;     /* the connection is gone (only the close callback remains) */
	int client_eof; /* the client shut its write side */
	size_t out_off; /* bytes of the first output chunk already written */
	int shut_after; /* tunnel: shutdown(SHUT_WR) once out drained */
	int linger;     /* the client may still be sending: lingering close */
	int held;       /* the next request waits for c->out to drain (OUT_HOLD) */
	char *in;       /* client bytes not yet forwarded */
	size_t in_start, in_end, in_cap;
	size_t head_scan; /* bytes after in_start searched for a head's end */
	struct estream *st;
	uint32_t route_id; /* route of st */
	struct esession *route_sess;
	/* the request in progress */
	char method[24], path[520], host[HTTP1_ROUTE_HOST_MAX];
	int req_head, req_minor, req_keep, req_upgrade;
	enum http1_body req_kind;
	uint64_t req_left;
	struct http1_chunked req_ch;
	uint64_t bytes_in, bytes_out, start_us;
	uint64_t body_moved_us; /* request body bytes last went to the service */
	/* the response in progress */
	char *resp;
	size_t resplen;
	int status, close_after, resp_started;
	int interim;   /* 1xx responses so far */
	uint32_t hsts; /* Strict-Transport-Security max-age for this response, 0 = none */
	enum http1_body resp_kind;
	uint64_t resp_left;
	uint32_t drop_code; /* not CODE_OK: end st with this code once the response is done */
	struct http1_chunked resp_ch;
	int dechunk;        /* an HTTP/1.0 client: send only the chunks' payload */
	int dechunk_failed; /* hconn_out() failed in hconn_dechunk_data() */
	size_t dechunk_out; /* payload bytes of the current feed */
	struct outq out;    /* bytes for the client */
	lws_sorted_usec_list_t sul;
	uint64_t progress_us; /* last time response bytes moved (T_SEND) */
	enum { T_NONE, T_HEADER, T_IDLE, T_UPSTREAM, T_BODY, T_SEND, T_LINGER } timer;
};

static void hconn_pump(struct hconn *c);
static void hconn_flow(struct hconn *c);
static int hconn_head_buffered(struct hconn *c);

static uint64_t now_us(void)
{
	return (uint64_t)lws_now_usecs();
}

static const struct conn_ops hconn_conn_ops;
static void hconn_timer(struct hconn *c, int kind, uint32_t ms);

/* Response bytes moved (from the origin, or to the client): restart the
 * no-progress clock of T_SEND. */
static void hconn_progress(struct hconn *c)
{
	c->progress_us = now_us();
}

/* Watch a response body or a closing connection: it ends if no byte moves
 * for idle_timeout (a client that stopped reading, an origin that stalled). */
static void hconn_send_timer(struct hconn *c)
{
	hconn_progress(c);
	hconn_timer(c, T_SEND, edge.cfg.http_limits.idle_timeout_ms);
}

/* Close once the output is written.  The client may still be sending
 * (a request head or body not all read, bytes not consumed): then linger. */
static void hconn_closing(struct hconn *c)
{
	if (c->state == HC_CLOSING || c->state == HC_LINGER)
		return;
	c->linger = c->state == HC_BODY || (c->state != HC_TUNNEL && c->in_end > c->in_start);
	c->state = HC_CLOSING;
	/* A client that never reads would keep the output, and us, forever. */
	hconn_send_timer(c);
}

static struct hconn *hconn_new(struct conn *conn, const char *sni)
{
	struct hconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->conn = conn;
	c->tls = sni != NULL;
	snprintf(c->sni, sizeof(c->sni), "%s", sni ? sni : "");
	c->peer = *conn_peer(conn);
	c->local = *conn_local(conn);
	addr_format_ip((const struct sockaddr *)&c->peer.ss, c->ip);
	c->in_cap = edge.cfg.http_limits.max_header_bytes + 2 * READ_MAX;
	c->in = malloc(c->in_cap);
	if (!c->in) {
		free(c);
		return NULL;
	}
	outq_init(&c->out, 0, OUT_CHUNK);
	c->start_us = now_us();
	hconn_timer(c, T_HEADER, edge.cfg.http_limits.header_timeout_ms);
	return c;
}

int proxy_adopt(struct conn *conn, const char *sni)
{
	struct hconn *c = hconn_new(conn, sni);

	if (!c) {
		conn_abort(conn);
		return -1;
	}
	conn_set_owner(conn, &hconn_conn_ops, c);
	return 0;
}

void proxy_accept(struct listener *l, int fd, const struct addr *peer, const struct addr *local)
{
	struct conn *conn;
	const char *err;
	int sz = 512 * 1024;

	if (edge.draining) {
		close(fd);
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	conn = conn_adopt(edge.raw_vh, fd, 1, &hconn_conn_ops, NULL, &err);
	if (!conn) {
		log_warn("http: cannot adopt a connection: %s", err);
		return;
	}
	if (proxy_adopt(conn, NULL) == 0)
		conn_start_plain(conn);
}

static void hconn_timeout(lws_sorted_usec_list_t *sul);

static void hconn_timer(struct hconn *c, int kind, uint32_t ms)
{
	c->timer = kind;
	if (kind == T_NONE)
		lws_sul_cancel(&c->sul);
	else
		lws_sul_schedule(edge.ctx, 0, &c->sul, hconn_timeout,
		                 (lws_usec_t)ms * LWS_US_PER_MS);
}

static void hconn_want_write(struct hconn *c)
{
	if (!c->closed)
		conn_want_write(c->conn);
}

/* Queue bytes for the client; `credit` bytes of the stream (n of them for a
 * body, the received size for a rewritten head) are acknowledged to the
 * agent once these bytes are written to the socket. */
static int hconn_out(struct hconn *c, const void *p, size_t n, size_t credit)
{
	const uint8_t *b = p;

	while (n) {
		size_t k = n > OUT_CHUNK ? OUT_CHUNK : n;
		size_t t = k == n || credit < k ? credit : k;
		uint8_t *w = outq_reserve(&c->out, k);

		if (!w)
			return -1;
		memcpy(w, b, k);
		if (t && c->st)
			outq_tag(&c->out, c->st->id, t);
		credit -= t;
		outq_commit(&c->out, k);
		b += k;
		n -= k;
	}
	hconn_want_write(c);
	return 0;
}

static void hconn_drop_stream(struct hconn *c, uint32_t code)
{
	struct outq_chunk *ch;

	if (!c->st)
		return;
	/* Credit still queued for this stream must not be returned to the
	 * next one: a chunk that also takes the next stream's bytes takes its
	 * id (outq_tag). */
	for (ch = c->out.head; ch; ch = ch->next)
		if (ch->tag_id == c->st->id)
			ch->tag = 0;
	stream_close(c->st, code);
	c->st = NULL;
	c->drop_code = 0;
}

/* The client shut its side and nothing it sent can be answered any more
 * (all answered, or a head or body it cut): close once the output is out,
 * rather than hold the socket until header_timeout or idle_timeout. */
static void hconn_eof_close(struct hconn *c)
{
	hconn_closing(c);
	hconn_drop_stream(c, CODE_CANCEL);
	hconn_want_write(c);
}

/* n bytes came from the origin beyond the end of its response, or with no
 * request in flight (a body after a HEAD response, say): its framing and
 * ours disagree.  Return their credit on the stream they came on, drop
 * them, and never send another request on that stream: the next bytes it
 * carries could not be framed either. */
static void hconn_surplus(struct hconn *c, size_t n)
{
	log_info("client %s: %s sent %zu bytes after its response", c->ip, c->host, n);
	if (!c->st)
		return;
	stream_consumed(c->st, n);
	if (c->rs == RS_IDLE)
		hconn_drop_stream(c, CODE_PROTOCOL);
	else
		c->drop_code = CODE_PROTOCOL;
}

/* Answer the request with resp (a complete response, Connection: close)
 * unless part of a response was already sent, then close. */
static void hconn_finish(struct hconn *c, int status, const char *resp, ssize_t n)
{
	hconn_drop_stream(c, CODE_CANCEL);
	hconn_timer(c, T_NONE, 0);
	if (!c->resp_started) {
		if (n > 0)
			hconn_out(c, resp, (size_t)n, 0);
		c->bytes_out += n > 0 ? (uint64_t)n : 0;
		c->status = status;
		accesslog_write(c->ip, c->host, c->method[0] ? c->method : "-",
		                c->path[0] ? c->path : "-", status, c->bytes_in, c->bytes_out,
		                now_us() - c->start_us);
	}
	c->resp_started = 1;
	hconn_closing(c);
	c->rs = RS_IDLE;
	hconn_want_write(c);
}

/* Finish the exchange in an error: a small page whose head also carries
 * field ("Name: value", or NULL), then close. */
static void hconn_fail_with(struct hconn *c, int status, const char *field)
{
	char page[1400];

	hconn_finish(c, status, page,
	             http1_error_response_with(status, 1, field, page, sizeof(page)));
}

static void hconn_fail(struct hconn *c, int status)
{
	hconn_fail_with(c, status, NULL);
}

/* Answer with redirect r: its code, Location from r and the request's
 * target (the head itself, not c->path, which is cut for the access log). */
static void hconn_redirect(struct hconn *c, const struct http1_head *h,
                           const struct edge_redirect *r)
{
	size_t cap = strlen(r->to) + h->target_len + 256;
	char *resp = malloc(cap);
	int n, loc;

	if (!resp) {
		hconn_fail(c, 500);
		return;
	}
	n = snprintf(resp, cap, "HTTP/1.1 %d %s\r\nLocation: ", r->code, http1_reason(r->code));
	loc = policy_location(r, h->target, h->target_len, resp + n, cap - (size_t)n);
	if (loc >= 0)
		n += loc;
	if (loc >= 0 && (size_t)n < cap)
		n += snprintf(resp + n, cap - (size_t)n,
		              "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	hconn_finish(c, r->code, resp, loc >= 0 && (size_t)n < cap ? n : -1);
	free(resp);
}

/* 301 to the same URL over https (the edge holds a certificate for it). */
static void hconn_to_https(struct hconn *c, const struct http1_head *h)
{
	char to[HTTP1_ROUTE_HOST_MAX + 24];
	uint16_t p = addr_port(&edge.cfg.https);
	struct edge_redirect r = {.to = to, .code = 301, .keep_path = 1};

	if (p != 443)
		snprintf(to, sizeof(to), "https://%s:%u", c->host, p);
	else
		snprintf(to, sizeof(to), "https://%s", c->host);
	hconn_redirect(c, h, &r);
}

/*
 * GET /.well-known/acme-challenge/TOKEN on plain HTTP while the edge runs
 * ACME: answer from it, or 404 for a token it doesn't know.  An unknown token
 * never reaches the service: an agent must not pass HTTP-01 for names the
 * edge manages.  Without tls.acme the path is the service's own (its ACME
 * client answering for itself).  Returns 1 when answered here.
 */
static int hconn_acme(struct hconn *c)
{
	static const char prefix[] = "/.well-known/acme-challenge/";
	const char *token = c->path + sizeof(prefix) - 1;
	char keyauth[512], resp[1024];

	if (!edge.cfg.tls.acme)
		return 0;
	if (c->tls || strncmp(c->path, prefix, sizeof(prefix) - 1) != 0 || !token[0] ||
	    strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
	        strlen(token))
		return 0;
	if (!edge_acme_challenge(token, keyauth, sizeof(keyauth))) {
		hconn_fail(c, 404);
		return 1;
	}
	hconn_finish(c, 200, resp,
	             snprintf(resp, sizeof(resp),
	                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	                      strlen(keyauth), keyauth));
	return 1;
}

static void hconn_timeout(lws_sorted_usec_list_t *sul)
{
	struct hconn *c = lws_container_of(sul, struct hconn, sul);
	int kind = c->timer;

	/* The handlers may arm the next timer. */
	c->timer = T_NONE;
	switch (kind) {
	case T_HEADER:
		/* A 408 page cannot go out before TLS is up: it would wait
		 * there for idle_timeout more. */
		if (!conn_is_up(c->conn)) {
			log_debug("client %s: TLS handshake not complete in time", c->ip);
			conn_close(c->conn, "TLS handshake not complete in time");
			return;
		}
		log_debug("client %s: request head not complete in time", c->ip);
		hconn_fail(c, 408);
		break;
	case T_BODY:
		/* Like nginx's client_body_timeout: the body stopped arriving --
		 * unless we stopped reading it because the service is slow.  A
		 * service (or agent) that takes none of it for upstream_timeout
		 * gets a 504, as nginx's proxy_send_timeout: else the client
		 * would wait forever. */
		if (c->st && !stream_room(c->st)) {
			uint64_t limit = (uint64_t)edge.cfg.http_limits.upstream_timeout_ms * 1000;
			uint64_t gone = now_us() - c->body_moved_us;
			uint32_t ms = edge.cfg.http_limits.header_timeout_ms;

			if (gone >= limit) {
				log_info("client %s: %s took none of the request body in time",
				         c->ip, c->host);
				hconn_fail(c, 504);
				break;
			}
			if ((limit - gone) / 1000 + 1 < ms)
				ms = (uint32_t)((limit - gone) / 1000 + 1);
			hconn_timer(c, T_BODY, ms);
			return;
		}
		if (c->paused) {
			hconn_timer(c, T_BODY, edge.cfg.http_limits.header_timeout_ms);
			return;
		}
		log_debug("client %s: request body stalled", c->ip);
		hconn_fail(c, 408);
		break;
	case T_UPSTREAM:
		log_info("client %s: %s did not answer in time", c->ip, c->host);
		hconn_fail(c, 504);
		break;
	case T_IDLE:
		hconn_closing(c);
		hconn_want_write(c);
		break;
	case T_SEND: {
		uint64_t ms = (now_us() - c->progress_us) / 1000;
		uint32_t limit = edge.cfg.http_limits.idle_timeout_ms;

		if (ms < limit) {
			hconn_timer(c, T_SEND, limit - (uint32_t)ms);
			return;
		}
		log_info("client %s: %s: nothing moved in %u ms, closing", c->ip,
		         c->host[0] ? c->host : "-", limit);
		conn_close(c->conn, "response stalled");
		return;
	}
	case T_LINGER:
		conn_close(c->conn, "lingering close: time is up");
		return;
	default:
		break;
	}
}

static void hconn_response_done(struct hconn *c)
{
	accesslog_write(c->ip, c->host, c->method, c->path, c->status, c->bytes_in, c->bytes_out,
	                now_us() - c->start_us);
	c->rs = RS_IDLE;
	if (c->close_after || c->state != HC_WAIT) {
		/* The request body is not complete (or the peer wants close): the
		 * rest of the client's bytes cannot be framed any more. */
		hconn_closing(c);
		hconn_drop_stream(c, CODE_CANCEL);
		hconn_want_write(c);
		return;
	}
	if (c->drop_code)
		hconn_drop_stream(c, c->drop_code);
	c->state = HC_HEAD;
	c->method[0] = c->path[0] = '\0';
	hconn_timer(c, T_IDLE, edge.cfg.http_limits.idle_timeout_ms);
	hconn_pump(c);
}

/* A chunked response's payload bytes, for an HTTP/1.0 client. */
static void hconn_dechunk_data(void *arg, const char *p, size_t n)
{
	struct hconn *c = arg;

	if (hconn_out(c, p, n, n) < 0)
		c->dechunk_failed = 1;
	c->dechunk_out += n;
}

/* Feed response body bytes; returns how many belong to this response and
 * sets *done when it is complete, or -1. */
static ssize_t hconn_resp_body(struct hconn *c, const uint8_t *p, size_t n, int *done)
{
	size_t k = n;
	const char *err;

	switch (c->resp_kind) {
	case HTTP1_BODY_LENGTH:
		k = n < c->resp_left ? n : (size_t)c->resp_left;
		c->resp_left -= k;
		*done = c->resp_left == 0;
		break;
	case HTTP1_BODY_CHUNKED: {
		ssize_t r;

		c->dechunk_out = 0;
		r = http1_chunked_feed(&c->resp_ch, (const char *)p, n, done, &err);
		if (r < 0) {
			log_info("client %s: bad chunked response from %s: %s", c->ip, c->host,
			         err);
			return -1;
		}
		k = (size_t)r;
		if (c->dechunk) {
			/* the payload is queued; the chunks' framing is credited now */
			if (c->dechunk_failed)
				return -1;
			if (k > c->dechunk_out && c->st)
				stream_consumed(c->st, k - c->dechunk_out);
			c->bytes_out += c->dechunk_out;
			return (ssize_t)k;
		}
		break;
	}
	case HTTP1_BODY_NONE:
		k = 0;
		*done = 1;
		break;
	default: /* CLOSE, TUNNEL: until FIN */
		break;
	}
	if (k && hconn_out(c, p, k, k) < 0)
		return -1;
	c->bytes_out += k;
	return (ssize_t)k;
}

/*
 * Response body bytes p[0..n), with `more` bytes of the same read after
 * them.  Once the response is complete, whatever follows it is surplus: it
 * is accounted on this stream before hconn_response_done() may move on to
 * the next request, which can answer locally or switch streams.  Returns 1
 * when the response is complete (all the bytes were used), 0 to go on
 * (p[0..n) all used), -1 on a bad body.
 */
static int hconn_body_in(struct hconn *c, const uint8_t *p, size_t n, size_t more)
{
	int done = 0;
	ssize_t used = hconn_resp_body(c, p, n, &done);

	if (used < 0)
		return -1;
	if (!done)
		return 0;
	if ((size_t)used < n || more)
		hconn_surplus(c, n - (size_t)used + more);
	hconn_response_done(c);
	return 1;
}

/* Insert Strict-Transport-Security before the blank line ending the head. */
static ssize_t hconn_add_hsts(struct hconn *c, char *w, ssize_t wl)
{
	int n = snprintf(w + wl - 2, WRITE_HEAD_MAX - (size_t)wl + 2,
	                 "Strict-Transport-Security: max-age=%u\r\n\r\n", c->hsts);

	return n > 0 && (size_t)n < WRITE_HEAD_MAX - (size_t)wl + 2 ? wl - 2 + n : -1;
}

/* Parse response heads in c->resp (1xx first, then the final one). */
static int hconn_resp_head(struct hconn *c)
{
	char *w = malloc(WRITE_HEAD_MAX);
	int rc = 0;

	if (!w)
		return -1;
	while (c->rs == RS_HEAD && c->resplen) {
		struct http1_head h;
		const struct http1_header *cl;
		int status;
		const char *err;
		ssize_t n =
		    http1_parse_response(c->resp, c->resplen, RESP_HEAD_MAX, &h, &status, &err);
		ssize_t wl;
		size_t used = 0;

		if (n == HTTP1_INCOMPLETE)
			break;
		if (n < 0) {
			log_info("client %s: bad response head from %s: %s", c->ip, c->host, err);
			hconn_fail(c, 502);
			rc = -1;
			break;
		}
		c->status = h.status;
		if (h.status >= 100 && h.status < 200 && h.status != 101) {
			if (++c->interim > INTERIM_MAX) {
				log_info("client %s: %s sent more than %d interim responses", c->ip,
				         c->host, INTERIM_MAX);
				hconn_fail(c, 502);
				rc = -1;
				break;
			}
			/* RFC 9110 §15.2: no 1xx to an HTTP/1.0 client, which knows
			 * none and would take "100 Continue" for its answer (and the
			 * real one for its body).  Dropped here, its credit returned. */
			if (c->req_minor == 0) {
				if (c->st)
					stream_consumed(c->st, (size_t)n);
				memmove(c->resp, c->resp + n, c->resplen - (size_t)n);
				c->resplen -= (size_t)n;
				continue;
			}
			wl = http1_write_response(&h, 0, c->req_minor, w, WRITE_HEAD_MAX);
		} else if (h.status == 101) {
			/* Only a request forwarded as an upgrade may switch (RFC
			 * 9110 §15.2.2): an h2c request went out as an ordinary one,
			 * and raw bytes now would pass around the edge's rewriting. */
			if (!c->req_upgrade) {
				log_info("client %s: %s switched protocols unasked", c->ip,
				         c->host);
				hconn_fail(c, 502);
				rc = -1;
				break;
			}
			wl = http1_write_response(&h, 0, c->req_minor, w, WRITE_HEAD_MAX);
			c->rs = RS_TUNNEL;
			c->state = HC_TUNNEL;
			hconn_timer(c, T_NONE, 0);
			accesslog_write(c->ip, c->host, c->method, c->path, 101, c->bytes_in,
			                (uint64_t)n, now_us() - c->start_us);
		} else {
			if (http1_response_body(&h, c->req_head, 0, &c->resp_kind, &c->resp_left,
			                        &err) < 0) {
				hconn_fail(c, 502);
				rc = -1;
				break;
			}
			c->close_after = c->close_after || !c->req_keep || !http1_keep_alive(&h) ||
			                 c->resp_kind == HTTP1_BODY_CLOSE;
			/* The client shut its side and this is the last request
			 * it sent: say that the connection ends with it. */
			if (c->client_eof && c->state == HC_WAIT && !hconn_head_buffered(c))
				c->close_after = 1;
			/* An answer before the request body is all in (a 401, a
			 * 413 from the service): the connection ends with it
			 * (hconn_response_done), so the head says so. */
			if (c->state == HC_BODY)
				c->close_after = 1;
			/* A server that announces a body for HEAD may also send it
			 * (RFC 9110 §9.3.2 forbids it): the next response on this
			 * stream could start with those bytes.  Use a new stream. */
			if (c->req_head && (http1_find(&h, "Transfer-Encoding") ||
			                    ((cl = http1_find(&h, "Content-Length")) &&
			                     !(cl->value_len == 1 && cl->value[0] == '0'))))
				c->drop_code = CODE_CANCEL;
			c->dechunk = 0;
			if (c->resp_kind == HTTP1_BODY_CHUNKED) {
				http1_chunked_init(&c->resp_ch);
				/* RFC 9112 §6.1: an HTTP/1.0 client gets the payload,
				 * ended by the close */
				if (c->req_minor == 0) {
					c->dechunk = 1;
					c->dechunk_failed = 0;
					c->close_after = 1;
					c->resp_ch.on_data = hconn_dechunk_data;
					c->resp_ch.on_data_arg = c;
				}
			}
			wl = http1_write_response(&h, c->close_after, c->req_minor, w,
			                          WRITE_HEAD_MAX);
			if (wl > 4 && c->hsts && !http1_find(&h, "Strict-Transport-Security"))
				wl = hconn_add_hsts(c, w, wl);
			c->rs = RS_BODY;
			hconn_send_timer(c);
		}
		if (wl < 0) {
			hconn_fail(c, 502);
			rc = -1;
			break;
		}
		/* After a 1xx the final answer may still be an error page. */
		if (c->rs != RS_HEAD)
			c->resp_started = 1;
		/* The head's credit returns once the client took the rewritten
		 * head, as for body bytes: an origin sending 1xx heads to a client
		 * that doesn't read must not fill the edge's memory. */
		if (hconn_out(c, w, (size_t)wl, (size_t)n) < 0) {
			hconn_fail(c, 502);
			rc = -1;
			break;
		}
		c->bytes_out += (uint64_t)wl;
		used = (size_t)n;
		memmove(c->resp, c->resp + used, c->resplen - used);
		c->resplen -= used;
	}
	free(w);
	return rc;
}

static int hconn_on_data(void *owner, const uint8_t *p, size_t n)
{
	struct hconn *c = owner;
	int r;

	hconn_progress(c);
	while (n) {
		switch (c->rs) {
		case RS_HEAD: {
			size_t k = RESP_HEAD_MAX - c->resplen;
			const uint8_t *rest;
			size_t restlen;

			if (!c->resp && !(c->resp = malloc(RESP_HEAD_MAX))) {
				hconn_fail(c, 502);
				return -1;
			}
			if (k == 0) {
				log_info("client %s: response head from %s too large", c->ip,
				         c->host);
				hconn_fail(c, 502);
				return -1;
			}
			if (k > n)
				k = n;
			memcpy(c->resp + c->resplen, p, k);
			c->resplen += k;
			p += k;
			n -= k;
			if (hconn_resp_head(c) < 0)
				return -1;
			if (c->rs == RS_HEAD)
				break;
			/* Bytes that arrived with the head go through the body path
			 * (with n more still in p: a bodiless response ends here). */
			rest = (const uint8_t *)c->resp;
			restlen = c->resplen;
			c->resplen = 0;
			if (c->rs == RS_TUNNEL) {
				if (restlen)
					hconn_out(c, rest, restlen, restlen);
				c->bytes_out += restlen;
				break;
			}
			r = hconn_body_in(c, rest, restlen, n);
			if (r < 0) {
				hconn_fail(c, 502);
				return -1;
			}
			if (r > 0)
				return 0;
			break;
		}
		case RS_BODY:
			if (hconn_body_in(c, p, n, 0) < 0) {
				hconn_fail(c, 502);
				return -1;
			}
			return 0;
		case RS_TUNNEL:
			hconn_out(c, p, n, n);
			c->bytes_out += n;
			n = 0;
			break;
		default:
			/* Nothing was asked. */
			hconn_surplus(c, n);
			return 0;
		}
	}
	return 0;
}

static void hconn_on_accept(void *owner)
{
}

static void hconn_on_refuse(void *owner, uint32_t code, const char *reason)
{
	struct hconn *c = owner;

	log_info("client %s: %s: local service: %s", c->ip, c->host, reason);
	hconn_fail(c, code == CODE_TIMEOUT ? 504 : code == CODE_BUSY ? 503 : 502);
}

static void hconn_on_fin(void *owner)
{
	struct hconn *c = owner;

	switch (c->rs) {
	case RS_BODY:
		if (c->resp_kind == HTTP1_BODY_CLOSE) {
			c->close_after = 1;
			hconn_response_done(c);
		} else {
			/* Truncated response: only closing tells the client. */
			hconn_closing(c);
			hconn_want_write(c);
		}
		break;
	case RS_HEAD:
		log_info("client %s: %s closed without a response", c->ip, c->host);
		hconn_fail(c, 502);
		break;
	case RS_TUNNEL:
		c->shut_after = 1;
		hconn_want_write(c);
		break;
	default:
		/* Between requests: the next request opens a new stream. */
		hconn_drop_stream(c, CODE_OK);
		break;
	}
}

static void hconn_on_reset(void *owner, uint32_t code)
{
	struct hconn *c = owner;

	if (c->rs == RS_HEAD) {
		hconn_fail(c, code == CODE_TIMEOUT ? 504 : 502);
		return;
	}
	hconn_drop_stream(c, code);
	if (c->rs != RS_IDLE || c->state == HC_BODY || c->state == HC_TUNNEL) {
		hconn_closing(c);
		hconn_want_write(c);
	}
}

static void hconn_on_writable(void *owner)
{
	hconn_pump(owner);
}

/*
 * After a reload: a request in progress, or a connection upgraded to
 * another protocol (a WebSocket), whose client the host's new access list
 * turns away is cut off; one that logged in keeps going only if its user
 * is still there with the same password.  Between requests nothing is
 * done: the next request is checked anyway.
 */
static void hconn_on_recheck(void *owner)
{
	struct hconn *c = owner;
	const struct edge_access *acl;
	int ok = 0;

	if ((c->state == HC_HEAD && c->rs == RS_IDLE) || c->state == HC_CLOSING ||
	    c->state == HC_LINGER || !c->host[0])
		return;
	acl = policy_access_host(&edge.cfg, c->host);
	switch (policy_check(acl, &c->peer)) {
	case POLICY_ALLOW:
		ok = 1;
		break;
	case POLICY_DENY:
		break;
	case POLICY_PASSWORD:
		for (size_t i = 0; i < acl->nusers && !ok && c->auth_user[0]; i++)
			ok = strcmp(acl->users[i].name, c->auth_user) == 0 &&
			     strcmp(acl->users[i].hash, c->auth_hash) == 0;
		break;
	}
	if (ok)
		return;
	log_info("client %s: %s: the access list no longer lets it in: closed", c->ip, c->host);
	conn_close(c->conn, "access list");
}

static const struct estream_ops hconn_ops = {
    .on_accept = hconn_on_accept,
    .on_refuse = hconn_on_refuse,
    .on_data = hconn_on_data,
    .on_fin = hconn_on_fin,
    .on_reset = hconn_on_reset,
    .on_writable = hconn_on_writable,
    .on_recheck = hconn_on_recheck,
};

static void copy_slice(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/*
 * The host's access list (edge.yaml access:): 0 to go on (*authed set
 * when the request's Basic Authorization is the edge's, not forwarded), or
 * -1 when answered here: 403 for an address the list turns away, a 301 to
 * https:// before any password is asked for over plain HTTP (when the edge
 * has a certificate for the host), 401 asking for a password, 429 after
 * too many wrong ones or checks.
 */
static int hconn_access(struct hconn *c, const struct http1_head *h, int *authed)
{
	static struct log_rate log_failed, log_throttled, log_busy;
	const struct edge_access *acl = policy_access_host(&edge.cfg, c->host);
	char user[80], field[HTTP1_ROUTE_HOST_MAX + 64], more[LOG_RATE_MORE];

	/* Basic credentials for a list with users are the edge's, whether it
	 * checks them now or not (satisfy: any from an allowed address): the
	 * service never gets them. */
	*authed = acl && acl->nusers && auth_has_basic(h);
	c->auth_user[0] = c->auth_hash[0] = '\0';
	switch (policy_check(acl, &c->peer)) {
	case POLICY_ALLOW:
		return 0;
	case POLICY_DENY:
		log_debug("client %s: %s denied by its access list", c->ip, c->host);
		hconn_fail(c, 403);
		return -1;
	case POLICY_PASSWORD:
		break;
	}
	if (!c->tls && edge.cfg.has_https && certs_covers(c->host)) {
		hconn_to_https(c, h);
		return -1;
	}
	switch (auth_basic(acl, h, &c->peer, now_us(), user, sizeof(user))) {
	case AUTH_OK:
		log_debug("client %s: %s: user '%s'", c->ip, c->host, user);
		for (size_t i = 0; i < acl->nusers; i++)
			if (strcmp(acl->users[i].name, user) == 0) {
				snprintf(c->auth_user, sizeof(c->auth_user), "%s", user);
				snprintf(c->auth_hash, sizeof(c->auth_hash), "%s",
				         acl->users[i].hash);
			}
		return 0;
	case AUTH_BUSY:
		if (log_rate_ok(&log_busy, now_us(), more))
			log_warn("client %s: %s: the password checks of this second (%d) are used "
			         "up: refused without a check (429)%s",
			         c->ip, c->host, AUTH_CHECKS_PER_S, more);
		hconn_fail_with(c, 429, "Retry-After: 1");
		return -1;
	case AUTH_THROTTLED:
		if (log_rate_ok(&log_throttled, now_us(), more))
			log_warn("client %s: %s: too many wrong passwords: refused without a "
			         "check (429)%s",
			         c->ip, c->host, more);
		hconn_fail_with(c, 429, "Retry-After: 60");
		return -1;
	case AUTH_FAILED:
		if (log_rate_ok(&log_failed, now_us(), more))
			log_info("client %s: %s: wrong user name or password%s", c->ip, c->host,
			         more);
		/* fall through */
	case AUTH_MISSING:
		break;
	}
	snprintf(field, sizeof(field), "WWW-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"",
	         c->host);
	hconn_fail_with(c, 401, field);
	return -1;
}

/* A host no route serves, nor any agent may: edge.yaml's unknown_hosts. */
static void hconn_unknown(struct hconn *c, const struct http1_head *h)
{
	const char *page = edge.cfg.unknown.page;
	size_t len = edge.cfg.unknown.page_len, cap = len + 512;
	struct edge_redirect r = {.to = edge.cfg.unknown.to, .code = 302, .keep_path = 0};
	char *resp;
	int n;

	switch (edge.cfg.unknown.answer) {
	case UNKNOWN_CLOSE: /* no answer at all: nginx's 444 */
		hconn_finish(c, 444, NULL, -1);
		return;
	case UNKNOWN_REDIRECT:
		hconn_redirect(c, h, &r);
		return;
	}
	if (!page) {
		hconn_fail(c, 404);
		return;
	}
	resp = malloc(cap);
	if (!resp) {
		hconn_fail(c, 500);
		return;
	}
	n = snprintf(resp, cap,
	             "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\n"
	             "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
	             len);
	if (n > 0 && (size_t)n + len <= cap) {
		memcpy(resp + n, page, len);
		n += (int)len;
	} else {
		n = -1;
	}
	hconn_finish(c, 404, resp, n);
	free(resp);
}

/* A complete request head is at c->in: route it and send it.  Returns 1 when
 * it was sent, 0 to wait for stream room, -1 when the connection failed. */
static int hconn_request(struct hconn *c, const struct http1_head *h)
{
	const struct eroute *route = NULL;
	const struct edge_redirect *redirect;
	struct esession *s;
	struct http1_forward fw;
	int known = 0, status, authed = 0;
	const char *err;
	char *w;
	ssize_t wl;

	copy_slice(c->method, sizeof(c->method), h->method, h->method_len);
	copy_slice(c->path, sizeof(c->path), h->target, h->target_len);
	c->start_us = now_us();
	c->bytes_in = h->head_len;
	c->bytes_out = 0;
	c->resp_started = 0;
	c->interim = 0;
	c->close_after = 0;
	c->host[0] = '\0';
	if (http1_route_host(h, c->host, sizeof(c->host)) < 0) {
		hconn_fail(c, 400);
		return -1;
	}
	/* A reverse proxy is the origin server to its clients and tunnels
	 * nothing (RFC 9110 §9.3.6): forwarded, CONNECT would get the service's
	 * 2xx read as a close-delimited body, the tunnel's bytes never sent. */
	if (h->method_len == 7 && memcmp(h->method, "CONNECT", 7) == 0) {
		log_debug("client %s: CONNECT %s refused", c->ip, c->path);
		hconn_fail(c, 405);
		return -1;
	}
	/* The certificate was chosen for the SNI name: a request for another
	 * host on this connection is misdirected (RFC 9110 §15.5.20), never
	 * served under a name the client did not check. */
	if (c->sni[0] && strcmp(c->host, c->sni) != 0) {
		log_debug("client %s: Host %s on a TLS connection for %s", c->ip, c->host, c->sni);
		hconn_fail(c, 421);
		return -1;
	}
	if (http1_request_body(h, &c->req_kind, &c->req_left, &status, &err) < 0) {
		log_debug("client %s: %s", c->ip, err);
		hconn_fail(c, status);
		return -1;
	}
	if (edge.cfg.http_limits.max_body_bytes && c->req_kind == HTTP1_BODY_LENGTH &&
	    c->req_left > edge.cfg.http_limits.max_body_bytes) {
		hconn_fail(c, 413);
		return -1;
	}
	/* "Content-Length: 0" (every POST without a body, from a browser):
	 * nothing follows the head, and the head still says so to the service. */
	if (c->req_kind == HTTP1_BODY_LENGTH && c->req_left == 0)
		c->req_kind = HTTP1_BODY_NONE;
	if (hconn_acme(c))
		return -1;
	if (hconn_access(c, h, &authed) < 0)
		return -1;
	/* The closest name wins, a redirect or a route (a redirect on a tie). */
	redirect = policy_redirect(&edge.cfg, c->host);
	s = registry_lookup_host(c->host, &route, &known);
	if (redirect &&
	    (!s || policy_rank(redirect->host, c->host) >= registry_rank(route, c->host))) {
		hconn_redirect(c, h, redirect);
		return -1;
	}
	if (!s) {
		if (known)
			hconn_fail(c, 502);
		else
			hconn_unknown(c, h);
		return -1;
	}
	if (!c->tls && edge.cfg.has_https && !route->no_redirect && certs_covers(c->host)) {
		hconn_to_https(c, h);
		return -1;
	}
	c->hsts = c->tls ? route->hsts : 0;
	c->req_head = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
	c->req_minor = h->minor;
	c->req_keep = http1_keep_alive(h);
	c->req_upgrade = http1_is_upgrade(h);
	if (c->req_kind == HTTP1_BODY_CHUNKED)
		http1_chunked_init(&c->req_ch);

	if (c->st && (c->st->dead || c->st->fin_recv || c->route_sess != s ||
	              c->route_id != route->id || c->st->sess != s))
		hconn_drop_stream(c, CODE_OK);
	if (!c->st) {
		c->st = stream_open(s, route, &c->peer, &c->local, c->tls, &hconn_ops, c);
		if (!c->st) {
			hconn_fail(c, 502);
			return -1;
		}
		c->route_sess = s;
		c->route_id = route->id;
	}
	w = malloc(edge.cfg.http_limits.max_header_bytes + 1024);
	if (!w) {
		hconn_fail(c, 500);
		return -1;
	}
	fw.client_ip = c->ip;
	fw.tls = c->tls;
	fw.host = c->host;
	fw.close = 0;
	fw.drop_authorization = authed;
	wl = http1_write_request(h, &fw, w, edge.cfg.http_limits.max_header_bytes + 1024);
	if (wl < 0) {
		free(w);
		hconn_fail(c, 431);
		return -1;
	}
	if (stream_room(c->st) < (size_t)wl) {
		free(w);
		return 0;
	}
	stream_send(c->st, w, (size_t)wl);
	free(w);
	c->in_start += h->head_len;
	c->head_scan = 0;
	c->rs = RS_HEAD;
	c->resplen = 0;
	c->state = c->req_kind == HTTP1_BODY_NONE ? HC_WAIT : HC_BODY;
	/* The origin's time to answer counts once the whole request is sent. */
	c->body_moved_us = now_us();
	if (c->state == HC_WAIT)
		hconn_timer(c, T_UPSTREAM, edge.cfg.http_limits.upstream_timeout_ms);
	else
		hconn_timer(c, T_BODY, edge.cfg.http_limits.header_timeout_ms);
	return 1;
}

/*
 * 1 when the buffered bytes may hold a complete request head: an empty line
 * ("\n\n" or "\n\r\n") after the bytes searched before, or the size limit
 * reached (431).  Parsing only then keeps a head sent in tiny pieces from
 * costing a parse of everything so far per piece.
 */
static int hconn_head_may_end(struct hconn *c, size_t avail)
{
	const char *p = c->in + c->in_start;
	size_t i = c->head_scan > 2 ? c->head_scan - 2 : 0;
	const char *nl;

	if (avail >= edge.cfg.http_limits.max_header_bytes)
		return 1;
	while (i < avail && (nl = memchr(p + i, '\n', avail - i)) != NULL) {
		i = (size_t)(nl - p) + 1;
		if (i < avail &&
		    (p[i] == '\n' || (p[i] == '\r' && i + 1 < avail && p[i + 1] == '\n')))
			return 1;
	}
	c->head_scan = avail;
	return 0;
}

/* Forward request body bytes; returns 1 to continue pumping, 0 to wait. */
static int hconn_body(struct hconn *c)
{
	size_t avail = c->in_end - c->in_start;
	size_t room = c->st ? stream_room(c->st) : 0;
	size_t k;
	int done = 0;
	const char *err;

	if (!avail && c->client_eof) {
		/* The body can never be completed. */
		hconn_eof_close(c);
		return 0;
	}
	if (!avail || !room)
		return 0;
	k = avail < room ? avail : room;
	if (c->req_kind == HTTP1_BODY_LENGTH) {
		if (k > c->req_left)
			k = (size_t)c->req_left;
		c->req_left -= k;
		done = c->req_left == 0;
	} else {
		ssize_t r = http1_chunked_feed(&c->req_ch, c->in + c->in_start, k, &done, &err);

		if (r < 0) {
			log_debug("client %s: bad chunked body: %s", c->ip, err);
			hconn_fail(c, 400);
			return 0;
		}
		k = (size_t)r;
		if (edge.cfg.http_limits.max_body_bytes &&
		    c->req_ch.total > edge.cfg.http_limits.max_body_bytes) {
			hconn_fail(c, 413);
			return 0;
		}
	}
	if (c->req_kind == HTTP1_BODY_CHUNKED && c->req_ch.trailer_len) {
		/* Trailer fields are dropped, as nginx does: a service that
		 * merges them into the header fields would take a client's
		 * X-Forwarded-For there for the edge's. */
		size_t off = c->req_ch.trailer_off, end = off + c->req_ch.trailer_len;

		if (off)
			stream_send(c->st, c->in + c->in_start, off);
		if (k > end)
			stream_send(c->st, c->in + c->in_start + end, k - end);
	} else {
		stream_send(c->st, c->in + c->in_start, k);
	}
	c->in_start += k;
	c->bytes_in += k;
	c->body_moved_us = now_us();
	if (done) {
		c->state = HC_WAIT;
		if (c->rs == RS_HEAD)
			hconn_timer(c, T_UPSTREAM, edge.cfg.http_limits.upstream_timeout_ms);
		else if (c->rs == RS_BODY) /* answered early: T_BODY is over */
			hconn_send_timer(c);
	}
	return 1;
}

static void hconn_pump(struct hconn *c)
{
	int go = 1;

	while (go && !c->closed) {
		size_t avail = c->in_end - c->in_start;

		switch (c->state) {
		case HC_HEAD: {
			struct http1_head h;
			int status;
			const char *err;
			ssize_t n;

			/* After the client's FIN, every complete request it sent
			 * is answered, then the connection closes.  Part of a head
			 * can never be completed now: it is dropped. */
			if (c->client_eof && !hconn_head_buffered(c)) {
				hconn_eof_close(c);
				go = 0;
				break;
			}
			if (!avail) {
				go = 0;
				break;
			}
			/*
			 * A client that pipelines and doesn't read: a request for
			 * another route gets a new stream, with a fresh window, so
			 * answering it now would queue one more window for the
			 * client per route switch.  Wait until the output is down
			 * to OUT_HOLD (hconn_conn_writable resumes): c->out stays
			 * under OUT_HOLD plus one stream window.  Meanwhile the
			 * response's no-progress clock runs, not the idle one: a
			 * client reading slowly is not cut, one that stopped is.
			 */
			if (outq_bytes(&c->out) > OUT_HOLD) {
				c->held = 1;
				if (c->timer != T_SEND)
					hconn_timer(c, T_SEND,
					            edge.cfg.http_limits.idle_timeout_ms);
				go = 0;
				break;
			}
			c->held = 0;
			if (c->timer == T_IDLE || c->timer == T_NONE || c->timer == T_SEND)
				hconn_timer(c, T_HEADER, edge.cfg.http_limits.header_timeout_ms);
			if (!hconn_head_may_end(c, avail)) {
				go = 0;
				break;
			}
			n = http1_parse_request(c->in + c->in_start, avail,
			                        edge.cfg.http_limits.max_header_bytes, &h, &status,
			                        &err);
			if (n == HTTP1_INCOMPLETE) {
				/* empty lines before the start line, say */
				c->head_scan = avail;
				go = 0;
				break;
			}
			if (n < 0) {
				log_debug("client %s: bad request: %s", c->ip, err);
				hconn_fail(c, status);
				go = 0;
				break;
			}
			go = hconn_request(c, &h) > 0;
			break;
		}
		case HC_BODY:
			go = hconn_body(c);
			break;
		case HC_TUNNEL: {
			size_t room = c->st ? stream_room(c->st) : 0;
			size_t k = avail < room ? avail : room;

			if (k) {
				stream_send(c->st, c->in + c->in_start, k);
				c->in_start += k;
				c->bytes_in += k;
			}
			go = 0;
			break;
		}
		default:
			go = 0;
			break;
		}
	}
	hconn_flow(c);
}

/* Compact the input buffer and pause reading while it cannot take a read. */
static void hconn_flow(struct hconn *c)
{
	int pause;

	if (c->closed)
		return;
	if (c->in_start == c->in_end) {
		c->in_start = c->in_end = 0;
	} else if (c->in_start > 0 && c->in_cap - c->in_end < READ_MAX) {
		memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	pause = c->in_cap - c->in_end < READ_MAX || c->state == HC_CLOSING;
	if (pause != c->paused) {
		c->paused = pause;
		conn_pause(c->conn, pause);
	}
}

/* 1 when a complete request head waits in the input buffer, or one that
 * can be told bad already (it gets its error answer). */
static int hconn_head_buffered(struct hconn *c)
{
	struct http1_head h;

	return c->in_end > c->in_start &&
	       http1_parse_request(c->in + c->in_start, c->in_end - c->in_start,
	                           edge.cfg.http_limits.max_header_bytes, &h, NULL,
	                           NULL) != HTTP1_INCOMPLETE;
}

/*
 * The client shut its write side (`printf 'GET /a ...GET /b ...' | nc`).
 * Every complete request it sent before still gets its answer, in order;
 * hconn_pump closes the connection once none is left, at once if there
 * was none (or a head or body cut by the FIN).  An upgraded connection
 * passes the FIN on.  No close_after here: hconn_request resets it for
 * each request, and it would drop the requests pipelined after this one.
 */
static void hconn_client_eof(struct hconn *c)
{
	c->client_eof = 1;
	switch (c->state) {
	case HC_TUNNEL:
		if (c->st)
			stream_fin(c->st);
		break;
	case HC_HEAD:
	case HC_BODY:
		hconn_pump(c);
		break;
	default:
		/* HC_WAIT: after the answer, hconn_response_done pumps. */
		break;
	}
}

/*
 * Lingering close, as nginx does: closing a socket that still has unread
 * input makes the kernel send RST, and an RST can reach the client before
 * it read our answer (a 413 for a body still being sent, say).  So shut our
 * side, then read and drop what the client still sends until it closes, for
 * LINGER_MS at most.
 */
static void hconn_linger(struct hconn *c)
{
	c->state = HC_LINGER;
	conn_shutdown(c->conn);
	hconn_timer(c, T_LINGER, LINGER_MS);
	c->in_start = c->in_end = 0;
	if (c->paused) {
		c->paused = 0;
		conn_pause(c->conn, 0);
	}
}

static void hconn_linger_read(struct hconn *c)
{
	for (int i = 0; i < 4; i++) {
		ssize_t n = conn_read(c->conn, c->in, c->in_cap);

		if (n == CONN_EOF) {
			conn_close(c->conn, "done");
			return;
		}
		if (n <= 0)
			return;
	}
}

/* Read what the client sent into the input buffer, then act on it. */
static void hconn_conn_readable(void *arg)
{
	struct hconn *c = arg;

	if (c->state == HC_LINGER) {
		hconn_linger_read(c);
		return;
	}

	for (int i = 0; i < 4 && !c->closed && c->state != HC_CLOSING; i++) {
		size_t room = c->in_cap - c->in_end;
		ssize_t n;

		if (room < READ_MAX) {
			hconn_flow(c);
			if (c->in_cap - c->in_end < READ_MAX)
				break;
			room = c->in_cap - c->in_end;
		}
		n = conn_read(c->conn, c->in + c->in_end, READ_MAX);
		if (n == CONN_EOF) {
			hconn_client_eof(c);
			break;
		}
		if (n <= 0)
			break;
		c->in_end += (size_t)n;
		if (c->state == HC_BODY)
			hconn_timer(c, T_BODY, edge.cfg.http_limits.header_timeout_ms);
		hconn_pump(c);
	}
}

static void hconn_sent(void *arg, const struct outq_chunk *ch)
{
	struct hconn *c = arg;

	if (ch->tag && c->st && c->st->id == ch->tag_id)
		stream_consumed(c->st, (size_t)ch->tag);
}

static void hconn_conn_writable(void *arg)
{
	struct hconn *c = arg;
	size_t pending = outq_bytes(&c->out) - c->out_off;
	int r = conn_send_queue(c->conn, &c->out, &c->out_off, hconn_sent, c);

	if (r >= 0 && outq_bytes(&c->out) - c->out_off < pending)
		hconn_progress(c);
	if (r >= 0 && c->held && c->state == HC_HEAD && outq_bytes(&c->out) <= OUT_HOLD) {
		/* What it queues asks for the next writable callback. */
		hconn_pump(c);
		return;
	}
	if (r <= 0)
		return;
	if (c->state == HC_CLOSING) {
		if (c->client_eof || !c->linger)
			conn_close(c->conn, "done");
		else
			hconn_linger(c);
		return;
	}
	if (c->state == HC_LINGER)
		return;
	if (c->shut_after) {
		conn_shutdown(c->conn);
		c->shut_after = 0;
	}
}

static void hconn_conn_connected(void *arg)
{
	hconn_conn_readable(arg);
}

static void hconn_conn_close(void *arg, const char *why)
{
	struct hconn *c = arg;

	c->closed = 1;
	lws_sul_cancel(&c->sul);
	hconn_drop_stream(c, CODE_CANCEL);
	outq_free(&c->out);
	free(c->in);
	free(c->resp);
	free(c);
}

static const struct conn_ops hconn_conn_ops = {
    .on_connected = hconn_conn_connected,
    .on_readable = hconn_conn_readable,
    .on_writable = hconn_conn_writable,
    .on_close = hconn_conn_close,
};
