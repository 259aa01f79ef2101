/*
 * edge/acme_http.c - the tiny HTTPS client of the ACME worker.
 *
 * One request per connection ("Connection: close"): the ACME exchange is a
 * handful of requests per certificate, so keeping connections alive is not
 * worth the state.  The socket is non-blocking and every wait goes through
 * poll() with the cancel descriptor beside it, so a request gives up on the
 * I/O timeout, on the overall deadline, or as soon as the edge stops.  The
 * response head is parsed with the edge's own HTTP/1.1 codec (edge/http1.c).
 */
#include "acme_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../common/hex.h"
#include "http1.h"

#define CHUNK_SLACK (64 * 1024) /* chunk framing allowed on top of ACME_HTTP_MAX_BODY */

struct aconn {
	struct acme_http *c;
	int fd;
	SSL *ssl;
	uint64_t deadline; /* CLOCK_MONOTONIC ms */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The first queued OpenSSL error as text, or fallback. */
static const char *ssl_errtext(char *buf, size_t cap, const char *fallback)
{
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (e == 0)
		return fallback;
	ERR_error_string_n(e, buf, cap);
	return buf;
}

int acme_http_init(struct acme_http *c, const char *ca_file, int cancel_fd, char *err,
                   size_t errlen)
{
	char e[256];
	SSL_CTX *ctx;

	memset(c, 0, sizeof(*c));
	c->cancel_fd = cancel_fd;
	c->io_timeout_ms = ACME_HTTP_IO_TIMEOUT;
	c->req_timeout_ms = ACME_HTTP_REQ_TIMEOUT;
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context: %s",
		         ssl_errtext(e, sizeof(e), "?"));
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			snprintf(err, errlen, "cannot load the ACME CA file %s: %s", ca_file,
			         ssl_errtext(e, sizeof(e), "?"));
			SSL_CTX_free(ctx);
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load the system CA certificates: %s",
		         ssl_errtext(e, sizeof(e), "?"));
		SSL_CTX_free(ctx);
		return -1;
	}
	c->ssl = ctx;
	return 0;
}

void acme_http_free(struct acme_http *c)
{
	if (c->ssl != NULL)
		SSL_CTX_free(c->ssl);
	c->ssl = NULL;
}

void acme_http_res_free(struct acme_http_res *res)
{
	free(res->body);
	memset(res, 0, sizeof(*res));
}

int acme_http_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port, char *path,
                        size_t pathcap)
{
	const char *a, *end, *h, *hend, *colon = NULL;
	size_t plen;

	if (strncasecmp(url, "https://", 8) != 0)
		return -1;
	a = url + 8;
	end = a + strcspn(a, "/?#");
	if (memchr(a, '@', (size_t)(end - a)) != NULL || end == a)
		return -1;
	if (*a == '[') {
		h = a + 1;
		hend = memchr(h, ']', (size_t)(end - h));
		if (hend == NULL)
			return -1;
		if (hend + 1 < end) {
			if (hend[1] != ':')
				return -1;
			colon = hend + 1;
		}
	} else {
		h = a;
		colon = memchr(a, ':', (size_t)(end - a));
		hend = colon != NULL ? colon : end;
	}
	if (hend == h || (size_t)(hend - h) >= hostcap)
		return -1;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	*port = 443;
	if (colon != NULL) {
		unsigned long v = 0;
		const char *d = colon + 1;

		if (d == end || (size_t)(end - d) > 5)
			return -1;
		for (; d < end; d++) {
			if (*d < '0' || *d > '9')
				return -1;
			v = v * 10 + (unsigned long)(*d - '0');
		}
		if (v == 0 || v > 65535)
			return -1;
		*port = (uint16_t)v;
	}
	plen = strcspn(end, "#");
	if (plen + 2 > pathcap)
		return -1;
	if (*end != '/') {
		path[0] = '/';
		memcpy(path + 1, end, plen);
		path[plen + 1] = '\0';
	} else {
		memcpy(path, end, plen);
		path[plen] = '\0';
	}
	return 0;
}

static int ows(char c)
{
	return c == ' ' || c == '\t';
}

/* 1 when the space-separated list v[0..n) holds word (case-insensitive). */
static int has_word(const char *v, size_t n, const char *word)
{
	size_t wl = strlen(word), i = 0;

	while (i < n) {
		size_t s;

		while (i < n && ows(v[i]))
			i++;
		s = i;
		while (i < n && !ows(v[i]))
			i++;
		if (i - s == wl && strncasecmp(v + s, word, wl) == 0)
			return 1;
	}
	return 0;
}

int acme_http_link(const char *value, size_t len, const char *rel, char *out, size_t cap)
{
	size_t i = 0;

	while (i < len) {
		size_t us, ue;
		int match = 0;

		while (i < len && (ows(value[i]) || value[i] == ','))
			i++;
		if (i >= len || value[i] != '<')
			return 0;
		us = ++i;
		while (i < len && value[i] != '>')
			i++;
		if (i >= len)
			return 0;
		ue = i++;
		/* parameters up to the next ',' outside a quoted string */
		while (i < len && value[i] != ',') {
			size_t ns, ne, vs, ve;

			while (i < len && (ows(value[i]) || value[i] == ';'))
				i++;
			ns = i;
			while (i < len && value[i] != '=' && value[i] != ';' && value[i] != ',' &&
			       !ows(value[i]))
				i++;
			ne = i;
			while (i < len && ows(value[i]))
				i++;
			vs = ve = i;
			if (i < len && value[i] == '=') {
				i++;
				while (i < len && ows(value[i]))
					i++;
				if (i < len && value[i] == '"') {
					vs = ++i;
					while (i < len && value[i] != '"')
						i += (value[i] == '\\' && i + 1 < len) ? 2 : 1;
					ve = i < len ? i : len;
					if (i < len)
						i++;
				} else {
					vs = i;
					while (i < len && value[i] != ';' && value[i] != ',' &&
					       !ows(value[i]))
						i++;
					ve = i;
				}
			}
			if (ne - ns == 3 && strncasecmp(value + ns, "rel", 3) == 0 &&
			    has_word(value + vs, ve - vs, rel))
				match = 1;
			if (ne == ns && vs == ve && i < len && value[i] != ',' && value[i] != ';')
				i++; /* stray character: skip it rather than loop */
		}
		if (match) {
			if (ue - us >= cap)
				return 0;
			memcpy(out, value + us, ue - us);
			out[ue - us] = '\0';
			return 1;
		}
	}
	return 0;
}

long acme_http_dechunk(char *buf, size_t len)
{
	size_t r = 0, w = 0;

	for (;;) {
		uint64_t size = 0;
		size_t digits = 0;
		char *crlf;

		while (r < len) {
			char c = buf[r];
			int v = hex_digit((unsigned char)c);
			if (v < 0)
				break;
			if (size > (UINT64_MAX >> 4))
				return -1;
			size = size << 4 | (uint64_t)v;
			digits++;
			r++;
		}
		if (digits == 0 || r >= len)
			return -1;
		crlf = memmem(buf + r, len - r, "\r\n", 2); /* skip chunk extensions */
		if (crlf == NULL)
			return -1;
		r = (size_t)(crlf - buf) + 2;
		if (size == 0)
			return (long)w; /* trailers, if any, are ignored */
		if (size > len - r || len - r - size < 2 || buf[r + size] != '\r' ||
		    buf[r + size + 1] != '\n')
			return -1;
		memmove(buf + w, buf + r, size);
		w += size;
		r += size + 2;
	}
}

/* Wait until fd is ready for events, the deadline passes or cancel_fd fires. */
static int aconn_wait(struct aconn *k, short events, char *err, size_t errlen)
{
	struct pollfd p[2];
	uint64_t now = now_ms();
	int t, n;

	if (now >= k->deadline) {
		snprintf(err, errlen, "request took longer than %d s", k->c->req_timeout_ms / 1000);
		return -1;
	}
	t = k->deadline - now < (uint64_t)k->c->io_timeout_ms ? (int)(k->deadline - now)
	                                                      : k->c->io_timeout_ms;
	p[0].fd = k->fd;
	p[0].events = events;
	p[0].revents = 0;
	p[1].fd = k->c->cancel_fd;
	p[1].events = POLLIN;
	p[1].revents = 0;
	n = poll(p, k->c->cancel_fd >= 0 ? 2 : 1, t);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		snprintf(err, errlen, "poll: %s", strerror(errno));
		return -1;
	}
	if (k->c->cancel_fd >= 0 && p[1].revents != 0) {
		snprintf(err, errlen, "cancelled");
		return -1;
	}
	if (n == 0) {
		snprintf(err, errlen, "no answer within %d s", t / 1000);
		return -1;
	}
	return 0;
}

static int aconn_connect(struct aconn *k, const char *host, uint16_t port, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[8];
	int rc, last = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                ai->ai_protocol);
		socklen_t sl = sizeof(last);

		if (fd < 0) {
			last = errno;
			continue;
		}
		k->fd = fd;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			last = errno;
			goto next;
		}
		do {
			if (aconn_wait(k, POLLOUT, err, errlen) < 0) {
				close(fd);
				k->fd = -1;
				freeaddrinfo(res);
				return -1;
			}
		} while (poll(&(struct pollfd){fd, POLLOUT, 0}, 1, 0) == 0);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &last, &sl) == 0 && last == 0)
			break;
	next:
		close(fd);
		k->fd = -1;
	}
	freeaddrinfo(res);
	if (k->fd < 0) {
		snprintf(err, errlen, "cannot connect to %s port %u: %s", host, (unsigned)port,
		         strerror(last ? last : ECONNREFUSED));
		return -1;
	}
	return 0;
}

/* Run one SSL_* step to completion; returns its positive result, 0 at a
 * clean end of stream (reads), or -1 with err. */
static int aconn_ssl(struct aconn *k, int op, void *buf, int len, char *err, size_t errlen)
{
	char e[256];

	for (;;) {
		int r, se;

		ERR_clear_error();
		r = op == 0   ? SSL_connect(k->ssl)
		    : op == 1 ? SSL_write(k->ssl, buf, len)
		              : SSL_read(k->ssl, buf, len);
		if (r > 0)
			return r;
		se = SSL_get_error(k->ssl, r);
		if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
			if (aconn_wait(k, se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, err,
			               errlen) < 0)
				return -1;
			continue;
		}
		if (se == SSL_ERROR_ZERO_RETURN && op == 2)
			return 0;
		if (op == 0 && SSL_get_verify_result(k->ssl) != X509_V_OK) {
			snprintf(err, errlen, "TLS: the server's certificate is not trusted: %s",
			         X509_verify_cert_error_string(SSL_get_verify_result(k->ssl)));
			return -1;
		}
		if (se == SSL_ERROR_SYSCALL && errno != 0 && ERR_peek_error() == 0)
			snprintf(err, errlen, "TLS: %s", strerror(errno));
		else
			snprintf(err, errlen, "TLS: %s",
			         ssl_errtext(e, sizeof(e), "connection closed unexpectedly"));
		return -1;
	}
}

static int aconn_write_all(struct aconn *k, const char *buf, size_t len, char *err, size_t errlen)
{
	while (len > 0) {
		int n = aconn_ssl(k, 1, (void *)buf, len > (1 << 20) ? (1 << 20) : (int)len, err,
		                  errlen);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void aconn_close(struct aconn *k)
{
	if (k->ssl != NULL)
		SSL_free(k->ssl);
	if (k->fd >= 0)
		close(k->fd);
	k->ssl = NULL;
	k->fd = -1;
}

/* Copy the header fields the ACME client needs out of the parsed head. */
static void take_headers(const struct http1_head *h, struct acme_http_res *res)
{
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct http1_header *f = &h->headers[i];

#define IS(lit) (f->name_len == sizeof(lit) - 1 && strncasecmp(f->name, lit, f->name_len) == 0)
		if (IS("Location") && f->value_len < sizeof(res->location)) {
			memcpy(res->location, f->value, f->value_len);
			res->location[f->value_len] = '\0';
		} else if (IS("Replay-Nonce") && f->value_len < sizeof(res->nonce) &&
		           strspn(f->value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz01"
		                            "23456789-_") >= f->value_len) {
			/* RFC 8555 §6.5.1: base64url characters only */
			memcpy(res->nonce, f->value, f->value_len);
			res->nonce[f->value_len] = '\0';
		} else if (IS("Link") && res->link_up[0] == '\0') {
			acme_http_link(f->value, f->value_len, "up", res->link_up,
			               sizeof(res->link_up));
		} else if (IS("Content-Type")) {
			size_t n = 0;

			while (n < f->value_len && n + 1 < sizeof(res->content_type) &&
			       f->value[n] != ';' && !ows(f->value[n])) {
				char ch = f->value[n];

				res->content_type[n++] =
				    (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
			}
			res->content_type[n] = '\0';
		} else if (IS("Retry-After")) {
			res->retry_after =
			    acme_http_retry_after(f->value, f->value_len, time(NULL));
		}
#undef IS
	}
}

uint32_t acme_http_retry_after(const char *v, size_t len, time_t now)
{
	uint64_t secs = 0;
	size_t n;
	char date[64];
	struct tm tm;
	const char *end;
	time_t when;

	for (n = 0; n < len && v[n] >= '0' && v[n] <= '9'; n++)
		secs = secs > 86400 ? secs : secs * 10 + (uint64_t)(v[n] - '0');
	if (n == 0 || n != len) {
		/* RFC 9110 §5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT" */
		if (len == 0 || len >= sizeof(date))
			return 0;
		memcpy(date, v, len);
		date[len] = '\0';
		memset(&tm, 0, sizeof(tm));
		end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		if (end == NULL || *end != '\0')
			return 0;
		when = timegm(&tm);
		if (when == (time_t)-1)
			return 0;
		secs = when > now ? (uint64_t)(when - now) : 0;
	}
	if (secs < 1)
		return 1;
	return secs > 86400 ? 86400 : (uint32_t)secs;
}

/* Read the rest of the body after the head; buf holds len bytes already. */
static int read_body(struct aconn *k, const struct http1_head *h, int was_head, const char *extra,
                     size_t extra_len, struct acme_http_res *res, char *err, size_t errlen)
{
	enum http1_body kind;
	uint64_t length = 0;
	const char *perr = NULL;
	struct http1_chunked ch;
	size_t cap, got = 0;
	char *body;
	int done = 0;

	if (http1_response_body(h, was_head, 0, &kind, &length, &perr) < 0) {
		snprintf(err, errlen, "bad response framing: %s", perr);
		return -1;
	}
	switch (kind) {
	case HTTP1_BODY_NONE:
		length = 0;
		/* fallthrough */
	case HTTP1_BODY_LENGTH:
		if (length > ACME_HTTP_MAX_BODY) {
			snprintf(err, errlen, "response body of %llu bytes is over the limit",
			         (unsigned long long)length);
			return -1;
		}
		cap = (size_t)length;
		break;
	case HTTP1_BODY_CHUNKED:
		cap = ACME_HTTP_MAX_BODY + CHUNK_SLACK;
		http1_chunked_init(&ch);
		break;
	case HTTP1_BODY_CLOSE:
		cap = ACME_HTTP_MAX_BODY;
		break;
	default:
		snprintf(err, errlen, "unexpected protocol switch");
		return -1;
	}
	body = malloc(cap + 1);
	if (body == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (kind == HTTP1_BODY_NONE || kind == HTTP1_BODY_LENGTH) {
		got = extra_len < cap ? extra_len : cap;
		memcpy(body, extra, got);
		while (got < cap) {
			int n =
			    aconn_ssl(k, 2, body + got,
			              (int)(cap - got > 65536 ? 65536 : cap - got), err, errlen);
			if (n <= 0) {
				if (n == 0)
					snprintf(err, errlen,
					         "connection closed in the response body");
				goto fail;
			}
			got += (size_t)n;
		}
	} else {
		const char *src = extra;
		size_t srclen = extra_len;

		for (;;) {
			int n;

			if (kind == HTTP1_BODY_CHUNKED && srclen > 0) {
				ssize_t used = http1_chunked_feed(&ch, src, srclen, &done, &perr);

				if (used < 0) {
					snprintf(err, errlen, "bad chunked body: %s", perr);
					goto fail;
				}
				if ((size_t)used > cap - got || ch.total > ACME_HTTP_MAX_BODY)
					goto toobig;
				if (src != body + got)
					memmove(body + got, src, (size_t)used);
				got += (size_t)used;
			} else if (srclen > 0) {
				if (srclen > cap - got)
					goto toobig;
				if (src != body + got)
					memmove(body + got, src, srclen);
				got += srclen;
			}
			if (done)
				break;
			if (got >= cap)
				goto toobig;
			n = aconn_ssl(k, 2, body + got,
			              (int)(cap - got > 65536 ? 65536 : cap - got), err, errlen);
			if (n < 0)
				goto fail;
			if (n == 0) {
				if (kind == HTTP1_BODY_CLOSE)
					break;
				snprintf(err, errlen, "connection closed in the response body");
				goto fail;
			}
			src = body + got;
			srclen = (size_t)n;
		}
		if (kind == HTTP1_BODY_CHUNKED) {
			long d = acme_http_dechunk(body, got);

			if (d < 0) {
				snprintf(err, errlen, "bad chunked body");
				goto fail;
			}
			got = (size_t)d;
		}
	}
	body[got] = '\0';
	res->body = body;
	res->body_len = got;
	return 0;
toobig:
	snprintf(err, errlen, "response body over %d bytes", ACME_HTTP_MAX_BODY);
fail:
	free(body);
	return -1;
}

int acme_http_request(struct acme_http *c, const char *method, const char *url,
                      const char *content_type, const char *body, size_t body_len,
                      struct acme_http_res *res, char *err, size_t errlen)
{
	char host[256], path[ACME_HTTP_URL_MAX], hostfield[300];
	char *head = NULL;
	struct aconn k = {c, -1, NULL, 0};
	struct http1_head *h = NULL;
	size_t got = 0;
	uint16_t port;
	unsigned char ip[16];
	int is_ip, n, rc = -1;

	memset(res, 0, sizeof(*res));
	if (acme_http_parse_url(url, host, sizeof(host), &port, path, sizeof(path)) < 0) {
		snprintf(err, errlen, "bad URL '%.200s' (expected https://host[:port]/path)", url);
		return -1;
	}
	k.deadline = now_ms() + (uint64_t)c->req_timeout_ms;
	is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
	if (aconn_connect(&k, host, port, err, errlen) < 0)
		goto out;
	k.ssl = SSL_new(c->ssl);
	if (k.ssl == NULL || SSL_set_fd(k.ssl, k.fd) != 1) {
		snprintf(err, errlen, "cannot create a TLS connection");
		goto out;
	}
	if (is_ip) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k.ssl), host);
	} else {
		SSL_set_tlsext_host_name(k.ssl, host);
		SSL_set1_host(k.ssl, host);
	}
	if (aconn_ssl(&k, 0, NULL, 0, err, errlen) < 0)
		goto out;

	head = malloc(ACME_HTTP_MAX_HEAD);
	h = malloc(sizeof(*h));
	if (head == NULL || h == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (strchr(host, ':') != NULL)
		snprintf(hostfield, sizeof(hostfield), "[%s]", host);
	else
		snprintf(hostfield, sizeof(hostfield), "%s", host);
	if (port != 443) {
		size_t l = strlen(hostfield);

		snprintf(hostfield + l, sizeof(hostfield) - l, ":%u", (unsigned)port);
	}
	if (body != NULL)
		n = snprintf(head, ACME_HTTP_MAX_HEAD,
		             "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: relais-edge\r\n"
		             "Accept: */*\r\nConnection: close\r\nContent-Type: %s\r\n"
		             "Content-Length: %zu\r\n\r\n",
		             method, path, hostfield, content_type, body_len);
	else
		n = snprintf(head, ACME_HTTP_MAX_HEAD,
		             "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: relais-edge\r\n"
		             "Accept: */*\r\nConnection: close\r\n\r\n",
		             method, path, hostfield);
	if (n < 0 || n >= ACME_HTTP_MAX_HEAD) {
		snprintf(err, errlen, "request head too large");
		goto out;
	}
	if (aconn_write_all(&k, head, (size_t)n, err, errlen) < 0 ||
	    (body != NULL && aconn_write_all(&k, body, body_len, err, errlen) < 0))
		goto out;

	for (;;) {
		const char *perr = NULL;
		int st;
		ssize_t hl;

		hl = http1_parse_response(head, got, ACME_HTTP_MAX_HEAD, h, &st, &perr);
		if (hl < 0) {
			snprintf(err, errlen, "bad response: %s", perr);
			goto out;
		}
		if (hl > 0 && h->status >= 100 && h->status < 200 && h->status != 101) {
			memmove(head, head + hl, got - (size_t)hl); /* interim response: skip */
			got -= (size_t)hl;
			continue;
		}
		if (hl > 0) {
			res->status = h->status;
			take_headers(h, res);
			if (read_body(&k, h, strcmp(method, "HEAD") == 0, head + hl,
			              got - (size_t)hl, res, err, errlen) < 0)
				goto out;
			break;
		}
		n = aconn_ssl(&k, 2, head + got, (int)(ACME_HTTP_MAX_HEAD - got), err, errlen);
		if (n < 0)
			goto out;
		if (n == 0) {
			snprintf(err, errlen, "connection closed before a response");
			goto out;
		}
		got += (size_t)n;
	}
	rc = 0;
out:
	if (rc < 0)
		acme_http_res_free(res);
	aconn_close(&k);
	free(head);
	free(h);
	return rc;
}
