/*
 * common/conn.c - TCP/TLS connections on the event loop (see conn.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "tlsbuf.h"

/* TLS read buffer of outbound connections (several records per read(2)). */
#define CONN_TLS_READ_BUF (128u * 1024u)

enum conn_state { CONN_TCP, CONN_PEEK, CONN_TLS, CONN_UP, CONN_DEAD };

struct conn {
	struct lws *wsi;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	enum conn_state st;
	const struct conn_ops *ops;
	void *arg;
	int in_wcb; /* inside lws's WRITEABLE callback */
	int want_write;
	int paused;
	int eof;    /* the peer shut its write side */
	int broken; /* failed: reset, broken pipe, hung up */
	int notified;
	int detached; /* lws closed the wsi at POLLHUP; input is read from a dup */
	struct lws_context *cx;
	int cork;            /* TCP_CORK set (or TLS records gathered) by conn_cork() */
	size_t wbuf;         /* > 0: TLS writes go through a tlsbuf write buffer */
	int tls_wpend;       /* TLS holds part of a record: retry with as much */
	int wfull;           /* the socket took only part of the write buffer */
	int shut_wait;       /* conn_shutdown() waits for POLLOUT to finish */
	int shut_sent;       /* close_notify is in TLS's hands */
	int released;        /* conn_release(): closes itself once the shutdown is out */
	unsigned release_ms; /* conn_release()'s deadline */
	int tls_drained;     /* the last SSL_read found no whole record */
	lws_sorted_usec_list_t sul_arm;
	lws_sorted_usec_list_t sul_read;
	lws_sorted_usec_list_t sul_up;
	lws_sorted_usec_list_t sul_dead;
	lws_sorted_usec_list_t sul_release; /* a released conn's deadline */
	struct addr peer, local;
	char why[200];
};

static void conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_free(struct conn *c);

/* A detached connection ended: close its descriptor, tell the owner, free it. */
static void conn_dead_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_dead);

	close(c->fd);
	if (!c->notified) {
		c->notified = 1;
		c->ops->on_close(c->arg, c->why);
	}
	conn_free(c);
}

static void conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->st == CONN_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	c->st = CONN_DEAD;
	if (c->wsi)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	else if (c->detached)
		lws_sul_schedule(c->cx, 0, &c->sul_dead, conn_dead_cb, 1);
}

void conn_close(struct conn *c, const char *why)
{
	conn_fail(c, "%s", why);
}

int conn_is_up(const struct conn *c)
{
	return c->st == CONN_UP;
}

int conn_broken(const struct conn *c)
{
	return c->broken;
}

void conn_set_reset(struct conn *c)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};

	if (c->fd >= 0)
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

void conn_abort(struct conn *c)
{
	c->notified = 1;
	conn_fail(c, "aborted");
}

static void conn_arm_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_arm);

	if (c->wsi && c->st != CONN_DEAD)
		lws_callback_on_writable(c->wsi);
}

/*
 * Ask for POLLOUT.  lws clears POLLOUT of a raw descriptor *after* its
 * WRITEABLE callback returns, so a request made inside that callback would
 * be lost: re-arm from a zero-delay timer instead.
 */
static void conn_arm(struct conn *c)
{
	if (!c->wsi || c->st == CONN_DEAD)
		return;
	if (c->in_wcb)
		lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul_arm, conn_arm_cb, 1);
	else
		lws_callback_on_writable(c->wsi);
}

void conn_want_write(struct conn *c)
{
	c->want_write = 1;
	/* Detached: both directions are shut (POLLHUP), so nothing written can
	 * reach the peer any more; waiting for it would keep the connection,
	 * paused, forever. */
	if (c->detached && c->st == CONN_UP) {
		conn_fail(c, "the peer closed the connection");
		return;
	}
	conn_arm(c);
}

static void conn_read_cb(lws_sorted_usec_list_t *sul);

/*
 * TLS reads ahead: decrypted or buffered input raises no POLLIN.  Whenever
 * the owner returns with some of it unread (it reads in bounded rounds),
 * come back from the loop, as a level-triggered poll would.
 */
static void conn_kick(struct conn *c)
{
	/* After a read that ended in WANT_READ, what TLS holds is at most part of
	 * a record: POLLIN brings the rest (no spinning on it meanwhile). */
	if (c->ssl && c->st == CONN_UP && !c->paused && !c->tls_drained && tlsbuf_pending(c->ssl))
		lws_sul_schedule(c->cx, 0, &c->sul_read, conn_read_cb, 1);
}

static void conn_read_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_read);

	if (c->st == CONN_UP && !c->paused) {
		c->ops->on_readable(c->arg);
		conn_kick(c);
	}
	/* Detached: no POLLIN will come, read on while the owner takes it. */
	if (c->detached && c->st == CONN_UP && !c->paused)
		lws_sul_schedule(c->cx, 0, &c->sul_read, conn_read_cb, 1);
}

void conn_pause(struct conn *c, int pause)
{
	if (c->eof)
		pause = 1;
	if (c->detached && c->st == CONN_UP && c->paused != pause) {
		c->paused = pause;
		if (!pause)
			lws_sul_schedule(c->cx, 0, &c->sul_read, conn_read_cb, 1);
		return;
	}
	if (!c->wsi || c->paused == pause || c->st == CONN_DEAD)
		return;
	c->paused = pause;
	lws_rx_flow_control(c->wsi, !pause);
	conn_kick(c);
}

static const char *conn_ssl_error(struct conn *c, int r)
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
	if (r == SSL_ERROR_ZERO_RETURN)
		return "connection closed";
	return errno ? strerror(errno) : "connection closed";
}

/* The peer finished sending: report it once, stop watching for input (a
 * socket at EOF stays readable), keep the write side for the answer. */
static ssize_t conn_eof(struct conn *c)
{
	if (!c->eof) {
		c->eof = 1;
		conn_pause(c, 1);
	}
	return CONN_EOF;
}

/* Write out what the TLS write buffer gathered; POLLOUT for the rest.
 * Not between an SSL call and its SSL_get_error(): the flush clears the
 * buffer BIO's retry flags, which that reads.  (TLS writes what reading
 * owes, a KeyUpdate answer, inside the next SSL_write, and its own flushes
 * inside the SSL calls.) */
static int conn_tls_flushed(struct conn *c)
{
	c->wfull = !tlsbuf_flush(c->ssl);
	return !c->wfull;
}

static void conn_tls_flush(struct conn *c)
{
	if (!conn_tls_flushed(c))
		conn_want_write(c);
}

ssize_t conn_read(struct conn *c, void *buf, size_t n)
{
	ssize_t r;

	if (c->st != CONN_UP)
		return c->st == CONN_DEAD ? -1 : 0;
	if (c->eof)
		return CONN_EOF;
	if (c->ssl) {
		int k;

		ERR_clear_error();
		k = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
		c->tls_drained = k <= 0;
		if (k > 0)
			return k;
		k = SSL_get_error(c->ssl, k);
		if (k == SSL_ERROR_WANT_READ || k == SSL_ERROR_WANT_WRITE)
			return 0;
		if (k == SSL_ERROR_ZERO_RETURN)
			return conn_eof(c);
		conn_fail(c, "%s", conn_ssl_error(c, k));
		return -1;
	}
	r = recv(c->fd, buf, n, 0);
	if (r > 0)
		return r;
	if (r == 0)
		return conn_eof(c);
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	c->broken = 1;
	conn_fail(c, "%s", strerror(errno));
	return -1;
}

/*
 * How much of n to hand to SSL_write() so that its records fit the write
 * buffer: TLS then never writes to the socket itself, where a full socket
 * costs a failed write(2) and leaves part of a record in TLS.  Flushes
 * first when the buffer is full; 0 when the socket is full (POLLOUT is
 * asked for: the writable callback flushes).  A partly written buffer
 * has less room than it shows: none is assumed until it is written out.
 */
static size_t conn_tls_fit(struct conn *c, size_t n)
{
	size_t used = (size_t)BIO_wpending(SSL_get_wbio(c->ssl)), fit;

	if (used && c->wfull) {
		conn_want_write(c);
		return 0;
	}
	fit = tlsbuf_fit(used, c->wbuf, n);
	if (!fit && conn_tls_flushed(c))
		fit = tlsbuf_fit(0, c->wbuf, n);
	if (!fit)
		conn_want_write(c);
	return fit;
}

ssize_t conn_write(struct conn *c, const void *buf, size_t n)
{
	ssize_t w;

	if (c->st != CONN_UP)
		return c->st == CONN_DEAD ? -1 : 0;
	if (!n)
		return 0;
	if (c->ssl) {
		int k;

		if (c->wbuf && !c->tls_wpend && !(n = conn_tls_fit(c, n)))
			return 0;
		k = SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
		c->tls_wpend = k <= 0;
		if (k > 0) {
			/* Corked, or the socket full: the records wait (the
			 * writable callback flushes). */
			if (c->wbuf && !c->cork && !c->wfull)
				conn_tls_flush(c);
			return k;
		}
		k = SSL_get_error(c->ssl, k);
		if (k == SSL_ERROR_WANT_WRITE || k == SSL_ERROR_WANT_READ) {
			if (c->wbuf && k == SSL_ERROR_WANT_WRITE)
				c->wfull = 1; /* the buffer's own flush found it full */
			conn_want_write(c);
			return 0;
		}
		conn_fail(c, "write: %s", conn_ssl_error(c, k));
		return -1;
	}
	w = send(c->fd, buf, n, MSG_NOSIGNAL);
	if (w >= 0)
		return w;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		conn_want_write(c);
		return 0;
	}
	c->broken = 1;
	conn_fail(c, "write: %s", strerror(errno));
	return -1;
}

int conn_send_queue(struct conn *c, struct outq *q, size_t *off,
                    void (*sent)(void *arg, const struct outq_chunk *ch), void *arg)
{
	size_t len;
	uint8_t *p;

	while ((p = outq_head(q, &len))) {
		ssize_t w = conn_write(c, p + *off, len - *off);

		if (w <= 0)
			return w < 0 ? -1 : 0;
		*off += (size_t)w;
		if (*off < len)
			continue;
		if (sent)
			sent(arg, q->head);
		outq_pop(q);
		*off = 0;
	}
	return 1;
}

static void conn_nop(void *arg)
{
}

static void conn_nop_close(void *arg, const char *why)
{
}

const struct conn_ops conn_nop_ops = {
    .on_connected = conn_nop,
    .on_readable = conn_nop,
    .on_writable = conn_nop,
    .on_close = conn_nop_close,
    .on_peek = conn_nop,
};

void conn_cork(struct conn *c, int on)
{
	if (c->st == CONN_UP && c->wbuf) {
		c->cork = on;
		if (!on && !c->wfull) /* else the writable callback flushes */
			conn_tls_flush(c);
		return;
	}
	if (c->st == CONN_UP && c->cork != on) {
		c->cork = on;
		setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
	}
}

/*
 * close_notify, then FIN once everything before it is written: 1 when done,
 * 0 when the socket is full (call again at POLLOUT).  TLS holding part of a
 * record (an SSL_write that wanted to write) writes it before close_notify,
 * or SSL_shutdown() wants to write; a FIN before that would cut the record.
 */
static int conn_shut_step(struct conn *c)
{
	if (c->ssl && !c->shut_sent) {
		int r;

		ERR_clear_error();
		r = SSL_shutdown(c->ssl);
		if (r < 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_WRITE)
			return 0;
		c->shut_sent = 1;
	}
	if (c->wbuf && !conn_tls_flushed(c))
		return 0;
	shutdown(c->fd, SHUT_WR);
	return 1;
}

void conn_shutdown(struct conn *c)
{
	if (c->st != CONN_UP || c->shut_wait)
		return;
	if (!conn_shut_step(c)) {
		c->shut_wait = 1;
		conn_want_write(c);
	}
}

static void conn_release_late(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_release);
	char peer[ADDR_TEXT_MAX];

	/* The owner is gone, so nobody else would say why this one ended. */
	addr_format(&c->peer, peer);
	log_warn("conn: %s took too little to let the shutdown out within %u ms: closed "
	         "without its %s",
	         peer, c->release_ms, c->ssl ? "TLS close_notify" : "FIN");
	conn_fail(c, "released, shutdown not sent in time");
}

void conn_release(struct conn *c, unsigned deadline_ms)
{
	c->ops = &conn_nop_ops;
	c->arg = NULL;
	c->notified = 1;
	if (c->st != CONN_UP || !c->shut_wait || !c->wsi) {
		conn_fail(c, "released");
		return;
	}
	c->released = 1;
	c->release_ms = deadline_ms;
	conn_pause(c, 1);
	lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul_release, conn_release_late,
	                 (lws_usec_t)deadline_ms * LWS_US_PER_MS);
}

static void conn_up(struct conn *c)
{
	if (c->ssl)
		log_debug("tls: %s %s", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
	c->st = CONN_UP;
	c->ops->on_connected(c->arg);
}

static void conn_tls_step(struct conn *c)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		conn_up(c);
		return;
	}
	r = SSL_get_error(c->ssl, r);
	if (r == SSL_ERROR_WANT_WRITE)
		conn_arm(c);
	else if (r != SSL_ERROR_WANT_READ)
		conn_fail(c, "TLS handshake: %s", conn_ssl_error(c, r));
}

static void conn_tcp_done(struct conn *c)
{
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	/* Connected to itself, it would echo what it is sent as the service's
	 * answer: that is a refusal. */
	if (!err && addr_fd_self_connected(c->fd))
		err = ECONNREFUSED;
	if (err) {
		conn_fail(c, "%s", strerror(err));
		return;
	}
	if (c->ssl) {
		c->st = CONN_TLS;
		conn_tls_step(c);
	} else {
		conn_up(c);
	}
}

static void conn_free(struct conn *c)
{
	lws_sul_cancel(&c->sul_arm);
	lws_sul_cancel(&c->sul_read);
	lws_sul_cancel(&c->sul_up);
	lws_sul_cancel(&c->sul_dead);
	lws_sul_cancel(&c->sul_release);
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	free(c);
}

static int conn_tls_setup(struct conn *c, const struct conn_tls *tls, const char **err)
{
	struct in6_addr a6;
	struct in_addr a4;

	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx) {
		*err = "cannot create a TLS context";
		return -1;
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	/* AES-128-GCM first: as strong as needed here, and the cheapest per byte
	 * with AES-NI (the tunnel carries everything twice through TLS). */
	SSL_CTX_set_ciphersuites(c->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
	                                 "TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_mode(c->ctx,
	                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (tls->verify) {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
		if (tls->ca_file ? SSL_CTX_load_verify_locations(c->ctx, tls->ca_file, NULL) != 1
		                 : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
			*err = "cannot load CA certificates";
			return -1;
		}
	} else {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
	}
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl) {
		*err = "cannot create a TLS session";
		return -1;
	}
	/* RFC 6125: the certificate must name what we dialled. */
	if (inet_pton(AF_INET, tls->host, &a4) == 1 || inet_pton(AF_INET6, tls->host, &a6) == 1) {
		if (tls->verify)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), tls->host);
	} else {
		SSL_set_tlsext_host_name(c->ssl, tls->host);
		if (tls->verify)
			SSL_set1_host(c->ssl, tls->host);
	}
	SSL_set_connect_state(c->ssl);
	return 0;
}

static void conn_up_cb(lws_sorted_usec_list_t *sul)
{
	struct conn *c = lws_container_of(sul, struct conn, sul_up);

	if (c->st == CONN_UP)
		c->ops->on_connected(c->arg);
}

static struct conn *conn_new(const struct conn_ops *ops, void *arg)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = -1;
	c->ops = ops;
	c->arg = arg;
	return c;
}

static int conn_watch(struct conn *c, struct lws_vhost *vh, const char **err)
{
	lws_sock_file_fd_type u;

	u.filefd = c->fd;
	c->wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, CONN_PROTOCOL, NULL);
	if (!c->wsi) {
		*err = "cannot add the socket to the event loop";
		return -1;
	}
	lws_set_opaque_user_data(c->wsi, c);
	c->cx = lws_get_context(c->wsi);
	return 0;
}

struct conn *conn_adopt(struct lws_vhost *vh, int fd, int peek, const struct conn_ops *ops,
                        void *arg, const char **err)
{
	struct conn *c = conn_new(ops, arg);

	if (!c) {
		*err = "out of memory";
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->peer.len = sizeof(c->peer.ss);
	getpeername(fd, (struct sockaddr *)&c->peer.ss, &c->peer.len);
	c->local.len = sizeof(c->local.ss);
	getsockname(fd, (struct sockaddr *)&c->local.ss, &c->local.len);
	addr_unmap(&c->peer); /* from a dual-stack listener */
	addr_unmap(&c->local);
	if (conn_watch(c, vh, err) < 0) {
		close(fd);
		conn_free(c);
		return NULL;
	}
	if (peek) {
		c->st = CONN_PEEK;
	} else {
		c->st = CONN_UP;
		lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul_up, conn_up_cb, 1);
	}
	return c;
}

ssize_t conn_peek(struct conn *c, void *buf, size_t n)
{
	ssize_t r;

	if (c->st != CONN_PEEK)
		return -1;
	r = recv(c->fd, buf, n, MSG_PEEK);
	if (r > 0)
		return r;
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	conn_fail(c, "%s", r == 0 ? "closed by the peer" : strerror(errno));
	return -1;
}

void conn_start_plain(struct conn *c)
{
	if (c->st != CONN_PEEK)
		return;
	c->st = CONN_UP;
	lws_sul_schedule(lws_get_context(c->wsi), 0, &c->sul_up, conn_up_cb, 1);
}

void conn_start_tls(struct conn *c, struct ssl_ctx_st *ctx)
{
	if (c->st != CONN_PEEK)
		return;
	c->ssl = SSL_new(ctx);
	if (!c->ssl) {
		conn_fail(c, "cannot create a TLS session");
		return;
	}
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_read_ahead(c->ssl, 1);
	SSL_set_accept_state(c->ssl);
	c->st = CONN_TLS;
	conn_tls_step(c);
}

void conn_set_owner(struct conn *c, const struct conn_ops *ops, void *arg)
{
	c->ops = ops;
	c->arg = arg;
}

int conn_release_fd(struct conn *c)
{
	int fd = dup(c->fd);

	conn_abort(c);
	return fd;
}

const struct addr *conn_peer(const struct conn *c)
{
	return &c->peer;
}

const struct addr *conn_local(const struct conn *c)
{
	return &c->local;
}

const char *conn_sni(const struct conn *c)
{
	return c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

struct conn *conn_open(struct lws_vhost *vh, const struct addr *a, const struct conn_tls *tls,
                       const struct conn_ops *ops, void *arg, const char **err)
{
	struct conn *c = conn_new(ops, arg);
	int one = 1;

	if (!c) {
		*err = "out of memory";
		return NULL;
	}
	if (tls && tls->host && conn_tls_setup(c, tls, err) < 0)
		goto fail;
	c->fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		*err = strerror(errno);
		goto fail;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->peer = *a;
	if (connect(c->fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
		*err = strerror(errno);
		goto fail;
	}
	c->local.len = sizeof(c->local.ss);
	getsockname(c->fd, (struct sockaddr *)&c->local.ss, &c->local.len);
	/* Read several records per read(2) (common/tlsbuf.h): a fraction of the
	 * syscalls of reading each record's header first.  Outbound TLS is the
	 * tunnel and upstreams, few connections that carry bulk, so the larger
	 * buffer is worth it. */
	if (c->ssl && (!SSL_set_fd(c->ssl, c->fd) ||
	               tlsbuf_attach(c->ssl, CONN_TLS_READ_BUF, tls->write_buffer) < 0)) {
		*err = "cannot create a TLS session";
		goto fail;
	}
	c->wbuf = c->ssl ? tls->write_buffer : 0;
	if (conn_watch(c, vh, err) < 0)
		goto fail;
	c->st = CONN_TCP;
	lws_callback_on_writable(c->wsi);
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	conn_free(c);
	return NULL;
}

/*
 * lws closes a raw descriptor at POLLHUP unless POLLIN is set too, and a
 * paused connection does not ask for POLLIN (nor, for a moment, one being
 * resumed): once both directions are shut (our FIN sent, the peer's
 * received), input not read yet, or at least the EOF, would be lost.  Read
 * the rest from a duplicate of the descriptor instead: the peer has
 * finished, so everything left is already in the socket buffer.
 */
static int conn_exiting_flag;

void conn_exiting(void)
{
	conn_exiting_flag = 1;
}

int conn_peer_shut(const struct conn *c)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};

	return c->fd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLRDHUP));
}

static void (*conn_moved)(int from, int to);

void conn_on_moved(void (*fn)(int from, int to))
{
	conn_moved = fn;
}

static int conn_detach(struct conn *c, struct lws *wsi)
{
	int fd;

	/* Output waiting (want_write) can never be written now: close. */
	if (conn_exiting_flag || c->st != CONN_UP || c->ssl || c->eof || c->want_write ||
	    !conn_peer_shut(c))
		return 0;
	fd = dup(c->fd);
	if (fd < 0)
		return 0;
	if (conn_moved)
		conn_moved(c->fd, fd);
	c->fd = fd;
	c->detached = 1;
	c->cx = lws_get_context(wsi);
	if (!c->paused)
		lws_sul_schedule(c->cx, 0, &c->sul_read, conn_read_cb, 1);
	return 1;
}

int conn_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
	struct conn *c = lws_get_opaque_user_data(wsi);

	if (!c)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (c->st == CONN_PEEK)
			c->ops->on_peek(c->arg);
		else if (c->st == CONN_TCP)
			conn_tcp_done(c);
		else if (c->st == CONN_TLS)
			conn_tls_step(c);
		else if (c->st == CONN_UP)
			c->ops->on_readable(c->arg);
		conn_kick(c);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		c->in_wcb = 1;
		if (c->st == CONN_TCP) {
			conn_tcp_done(c);
		} else if (c->st == CONN_TLS) {
			conn_tls_step(c);
		} else if (c->st == CONN_UP) {
			c->want_write = 0;
			/* A shutdown under way, or what the TLS write buffer
			 * holds, goes first. */
			if (c->shut_wait) {
				if (!conn_shut_step(c))
					conn_want_write(c);
				else if (c->released)
					conn_fail(c, "released, shutdown sent");
				else
					c->shut_wait = 0;
			} else if (c->wbuf && !conn_tls_flushed(c)) {
				conn_want_write(c);
			} else {
				c->ops->on_writable(c->arg);
				conn_kick(c);
			}
		}
		c->in_wcb = 0;
		break;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		lws_set_opaque_user_data(wsi, NULL);
		c->wsi = NULL;
		if (conn_detach(c, wsi))
			return 0;
		if (c->st != CONN_DEAD) {
			c->broken = 1;
			conn_fail(c, "connection closed");
		}
		if (!c->notified) {
			c->notified = 1;
			c->ops->on_close(c->arg, c->why);
		}
		conn_free(c);
		return 0;
	default:
		break;
	}
	return c->st == CONN_DEAD ? -1 : 0;
}
