/*
 * edge/pipe.c - a public connection piped through a stream (see pipe.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/outq.h"
#include "accesslog.h"
#include "policy.h"
#include "edge.h"
#include "pipe.h"
#include "stream.h"

#define PIPE_READ  (64u * 1024u)
#define PIPE_CHUNK (64u * 1024u)

struct pipe {
	struct conn *conn;
	struct estream *st;
	struct outq out; /* agent -> client, chunks tagged with their credit */
	size_t out_off;  /* bytes of the first chunk already written */
	int client_eof;  /* client shut its write side (FIN sent on) */
	int agent_fin;   /* agent finished sending */
	int shut;        /* our write side to the client is shut */
	int reset;       /* the agent reset the stream: reset the client once drained */
	int tls;         /* passthrough (else a TCP stream port) */
	int status;      /* for the access log: 200; 502 the service refused; 503 agent busy */
	uint64_t start_us, bytes_in, bytes_out;
	lws_sorted_usec_list_t sul; /* the agent's ACCEPT, in http.upstream_timeout */
	char ip[ADDR_TEXT_MAX];
	char what[PROTO_MAX_HOST + 1]; /* "tcp/PORT" or the SNI */
};

/* Both directions finished and everything was delivered: close cleanly. */
static void pipe_check_done(struct pipe *p)
{
	if (p->client_eof && p->agent_fin && p->shut && p->conn)
		conn_close(p->conn, "both sides finished");
}

static void pipe_on_readable(void *arg)
{
	struct pipe *p = arg;

	for (int i = 0; i < 4 && p->st; i++) {
		size_t room = stream_room(p->st);
		uint8_t *buf;
		ssize_t n;

		if (!room) {
			conn_pause(p->conn, 1); /* on_writable resumes */
			return;
		}
		/* Read straight into the tunnel's queue, after a frame header. */
		buf = stream_reserve(p->st, room < PIPE_READ ? room : PIPE_READ);
		if (!buf) {
			conn_close(p->conn, "out of memory");
			return;
		}
		n = conn_read(p->conn, buf, room < PIPE_READ ? room : PIPE_READ);
		if (n > 0) {
			stream_commit(p->st, (size_t)n);
			p->bytes_in += (uint64_t)n;
			continue;
		}
		if (n == CONN_EOF) {
			p->client_eof = 1;
			stream_fin(p->st);
			pipe_check_done(p);
		}
		return; /* nothing more now, or closed (p is gone) */
	}
}

static void pipe_sent(void *arg, const struct outq_chunk *ch)
{
	struct pipe *p = arg;

	p->bytes_out += ch->tag;
	if (p->st)
		stream_consumed(p->st, (size_t)ch->tag);
}

/* The service's connection was reset (or the stream failed): the client
 * gets what came before it, then a TCP RST, not a clean end. */
static void pipe_reset(struct pipe *p)
{
	conn_set_reset(p->conn);
	conn_close(p->conn, "stream reset");
}

static void pipe_on_writable(void *arg)
{
	struct pipe *p = arg;

	if (conn_send_queue(p->conn, &p->out, &p->out_off, pipe_sent, p) <= 0)
		return;
	if (p->reset) {
		pipe_reset(p);
		return;
	}
	if (p->agent_fin && !p->shut) {
		p->shut = 1;
		conn_shutdown(p->conn);
		pipe_check_done(p);
	}
}

static void pipe_on_connected(void *arg)
{
	struct pipe *p = arg;

	pipe_on_readable(p);
}

static void pipe_on_close(void *arg, const char *why)
{
	struct pipe *p = arg;

	log_debug("pipe %s: closed: %s", p->ip, why);
	lws_sul_cancel(&p->sul);
	accesslog_write(p->ip, p->what, p->tls ? "TLS" : "TCP", "-", p->status, p->bytes_in,
	                p->bytes_out, (uint64_t)lws_now_usecs() - p->start_us);
	if (p->st)
		stream_close(p->st, p->client_eof && p->agent_fin ? CODE_OK : CODE_CANCEL);
	outq_free(&p->out);
	free(p);
}

static const struct conn_ops pipe_conn_ops = {
    .on_connected = pipe_on_connected,
    .on_readable = pipe_on_readable,
    .on_writable = pipe_on_writable,
    .on_close = pipe_on_close,
};

static void pipe_st_accept(void *owner)
{
	struct pipe *p = owner;

	lws_sul_cancel(&p->sul);
}

/* The agent answers OPEN within its connect_timeout (5 s by default); one
 * that never does must not hold the client forever. */
static void pipe_accept_late(lws_sorted_usec_list_t *sul)
{
	struct pipe *p = lws_container_of(sul, struct pipe, sul);

	log_info("client %s: %s: the agent did not connect the service in time", p->ip, p->what);
	p->status = 504;
	conn_close(p->conn, "no answer from the agent");
}

static void pipe_st_refuse(void *owner, uint32_t code, const char *reason)
{
	struct pipe *p = owner;

	log_info("client %s: local service: %s", p->ip, reason);
	p->status = code == CODE_BUSY ? 503 : 502;
	conn_close(p->conn, reason);
}

static int pipe_st_data(void *owner, const uint8_t *d, size_t n)
{
	struct pipe *p = owner;

	if (!outq_bytes(&p->out)) {
		/* Nothing queued: straight to the socket, no copy. */
		ssize_t w = conn_write(p->conn, d, n);

		if (w < 0)
			return -1; /* on_close follows */
		stream_consumed(p->st, (size_t)w);
		p->bytes_out += (uint64_t)w;
		d += w;
		n -= (size_t)w;
		if (!n)
			return 0;
	}
	while (n) {
		size_t k = n > PIPE_CHUNK ? PIPE_CHUNK : n;
		uint8_t *w = outq_reserve(&p->out, k);

		if (!w) {
			conn_close(p->conn, "out of memory");
			return -1;
		}
		memcpy(w, d, k);
		outq_tag(&p->out, p->st->id, k);
		outq_commit(&p->out, k);
		d += k;
		n -= k;
	}
	conn_want_write(p->conn);
	return 0;
}

static void pipe_st_fin(void *owner)
{
	struct pipe *p = owner;

	p->agent_fin = 1;
	conn_want_write(p->conn); /* shuts our side once the queue drained */
}

static void pipe_st_reset(void *owner, uint32_t code)
{
	struct pipe *p = owner;

	if (code == CODE_TIMEOUT) {
		/* idle_timeout: a quiet end, as nginx's.  Bytes still queued mean
		 * the client stopped reading: they are lost, and a reset says so
		 * where a clean end would hide it. */
		if (outq_bytes(&p->out))
			conn_set_reset(p->conn);
		conn_close(p->conn, "idle timeout");
		return;
	}
	if (!outq_bytes(&p->out)) {
		pipe_reset(p);
		return;
	}
	p->reset = 1;
	conn_pause(p->conn, 1); /* nothing more goes to the agent */
	conn_want_write(p->conn);
}

static void pipe_st_writable(void *owner)
{
	struct pipe *p = owner;

	if (!p->client_eof)
		conn_pause(p->conn, 0);
	pipe_on_readable(p);
}

/* After a reload: a client the new access list turns away is cut off. */
static void pipe_st_recheck(void *owner)
{
	struct pipe *p = owner;
	const struct edge_access *a =
	    p->tls ? policy_access_host(&edge.cfg, p->what)
	           : policy_access_port(&edge.cfg, ROUTE_KIND_TCP, addr_port(conn_local(p->conn)));

	if (policy_allows(a, conn_peer(p->conn)))
		return;
	log_info("client %s: %s: the access list no longer lets it in: closed", p->ip, p->what);
	p->status = 403;
	conn_set_reset(p->conn);
	conn_close(p->conn, "access list");
}

static const struct estream_ops pipe_stream_ops = {
    .on_accept = pipe_st_accept,
    .on_refuse = pipe_st_refuse,
    .on_data = pipe_st_data,
    .on_fin = pipe_st_fin,
    .on_reset = pipe_st_reset,
    .on_writable = pipe_st_writable,
    .on_recheck = pipe_st_recheck,
};

int pipe_start(struct conn *conn, struct esession *s, const struct eroute *r, int tls,
               const char *what)
{
	struct pipe *p = calloc(1, sizeof(*p));

	if (!p) {
		conn_abort(conn);
		return -1;
	}
	p->conn = conn;
	p->tls = tls;
	p->status = 200;
	p->start_us = (uint64_t)lws_now_usecs();
	snprintf(p->what, sizeof(p->what), "%s", what);
	addr_format_ip((const struct sockaddr *)&conn_peer(conn)->ss, p->ip);
	outq_init(&p->out, 0, PIPE_CHUNK);
	p->st = stream_open(s, r, conn_peer(conn), conn_local(conn), tls, &pipe_stream_ops, p);
	if (!p->st) {
		conn_abort(conn);
		free(p);
		return -1;
	}
	conn_set_owner(conn, &pipe_conn_ops, p);
	lws_sul_schedule(edge.ctx, 0, &p->sul, pipe_accept_late,
	                 (lws_usec_t)edge.cfg.http_limits.upstream_timeout_ms * LWS_US_PER_MS);
	conn_start_plain(conn); /* no-op when already up */
	return 0;
}
