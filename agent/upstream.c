/*
 * agent/upstream.c - streams from the edge, each connected to a local service.
 *
 * OPEN names a route; the agent resolves the route's target off the loop,
 * connects (TLS for https:// targets, verified unless tls_verify: false) and
 * answers ACCEPT or REFUSE.  DATA may arrive before the connection is up and
 * waits in the stream's queue, bounded by the credit window the edge keeps.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/outq.h"
#include "../common/proxyproto.h"
#include "../common/window.h"
#include "agent.h"
#include "../common/conn.h"
#include "resolve.h"
#include "udpflow.h"
#include "upstream.h"

#define US_HASH      2048
#define READ_MAX     (64u * 1024u)
#define READ_ROUNDS  4
#define HIGH_WATER   (4u * 1024u * 1024u)
#define RELEASE_MS   10000u /* for a finished stream's close_notify and FIN to leave */
#define CREDIT_BATCH (256u * 1024u)

struct ustream {
	uint32_t id;
	struct conn *conn;
	struct resolve *resolving;
	struct ustream *next, *prev, *hnext;
	uint64_t send_credit; /* bytes we may still send to the edge */
	uint64_t recv_credit; /* bytes the edge may still send */
	uint64_t unacked;
	struct outq out;          /* edge -> service */
	size_t out_off;           /* bytes of the first chunk already written */
	size_t proxy_len;         /* PROXY header bytes at the head of out (no credit owed) */
	uint32_t window, window0; /* receive window now, and at the start */
	uint32_t probe_seq;       /* probe probe_bytes counts for */
	uint64_t probe_bytes;     /* received during that probe */
	int connected, fin_recv, fin_sent, paused, shut;
	int reopened; /* the edge opened its id again: its frames are not ours */
	int tls, verify;
	int proxy;        /* enum proxy_proto of the route */
	uint32_t idle_ms; /* TCP stream idle_timeout, 0 = none */
	uint64_t last_us; /* last byte either way */
	char host[256];
	char target[300];     /* for logs */
	struct addr *addrs;   /* a lookup's answers, while connecting (NULL: one) */
	size_t naddrs, tried; /* how many, and how many were tried */
	lws_sorted_usec_list_t sul;
};

static struct ustream *hash[US_HASH];
static struct log_rate log_busy; /* max_connections reached (common/log.h) */

static struct ustream *us_find(uint32_t id)
{
	for (struct ustream *u = hash[id % US_HASH]; u; u = u->hnext)
		if (u->id == id)
			return u;
	return NULL;
}

/* Forget u: unlink, drop its connection or lookup, free it. */
static void us_free(struct ustream *u)
{
	struct ustream **pp;

	for (pp = &hash[u->id % US_HASH]; *pp; pp = &(*pp)->hnext)
		if (*pp == u) {
			*pp = u->hnext;
			break;
		}
	if (u->prev)
		u->prev->next = u->next;
	else
		agent.streams = u->next;
	if (u->next)
		u->next->prev = u->prev;
	agent.nstreams--;
	lws_sul_cancel(&u->sul);
	resolve_cancel(u->resolving);
	if (u->conn)
		conn_abort(u->conn);
	outq_free(&u->out);
	window_release(u->window, u->window0, &agent.wpool);
	free(u->addrs);
	free(u);
}

/* Both directions finished cleanly: forget u, and leave its connection to
 * close once its shutdown (close_notify, FIN) is out. */
static void us_finish(struct ustream *u)
{
	if (u->conn) {
		conn_release(u->conn, RELEASE_MS);
		u->conn = NULL;
	}
	us_free(u);
}

static void us_send_code(uint8_t type, uint32_t id, uint32_t code, const char *reason)
{
	struct frame f = {.type = type, .stream = id};

	f.u.code.code = code;
	snprintf(f.u.code.reason, sizeof(f.u.code.reason), "%s", reason ? reason : "");
	agent_send(&f);
}

static void us_refuse(struct ustream *u, uint32_t code, const char *why)
{
	log_info("stream %u: %s: %s", u->id, u->target, why);
	us_send_code(FRAME_REFUSE, u->id, code, why);
	us_free(u);
}

static void us_connect_timeout(lws_sorted_usec_list_t *sul)
{
	struct ustream *u = lws_container_of(sul, struct ustream, sul);

	us_refuse(u, CODE_TIMEOUT, "connect timeout");
}

/* Stop reading the service while the edge has no credit for us or the
 * tunnel's queue is long; resume when either drains. */
static void us_flow(struct ustream *u)
{
	int pause;

	if (!u->conn || !u->connected)
		return;
	pause = u->send_credit == 0 || tunnel_data_queued(&agent.t) >= HIGH_WATER;
	if (pause != u->paused) {
		u->paused = pause;
		conn_pause(u->conn, pause);
	}
}

/* Bytes left our custody: return their credit, in batches unless now. */
static void us_credit(struct ustream *u, size_t n, int now)
{
	struct frame f = {.type = FRAME_WINDOW};

	u->unacked += n;
	if (u->fin_recv || u->reopened) {
		/* The edge sends nothing more on this stream: credit would be of
		 * no use, and on a reopened id it would go to the newcomer. */
		u->unacked = 0;
		return;
	}
	if (!u->unacked || (!now && u->unacked < CREDIT_BATCH && u->unacked < u->window / 4))
		return;
	f.stream = u->id;
	f.u.window = (uint32_t)u->unacked;
	u->recv_credit += u->unacked;
	u->unacked = 0;
	agent_send(&f);
}

static void us_consumed(struct ustream *u, size_t n)
{
	us_credit(u, n, 0);
}

/* idle_timeout on TCP streams: no byte read or written either way for that
 * long (the edge's WINDOW tells the client's reads) ends it. */
static void us_idle(lws_sorted_usec_list_t *sul)
{
	struct ustream *u = lws_container_of(sul, struct ustream, sul);
	uint64_t now = (uint64_t)lws_now_usecs(), limit = (uint64_t)u->idle_ms * LWS_US_PER_MS;

	if (now - u->last_us < limit) {
		lws_sul_schedule(agent.ctx, 0, &u->sul, us_idle,
		                 (lws_usec_t)(limit - (now - u->last_us)));
		return;
	}
	log_info("stream %u: %s idle for %u ms; closing", u->id, u->target, u->idle_ms);
	us_send_code(FRAME_RST, u->id, CODE_TIMEOUT, NULL);
	us_free(u);
}

static void us_on_connected(void *arg)
{
	struct ustream *u = arg;

	u->connected = 1;
	free(u->addrs);
	u->addrs = NULL;
	lws_sul_cancel(&u->sul);
	u->last_us = (uint64_t)lws_now_usecs();
	if (u->idle_ms)
		lws_sul_schedule(agent.ctx, 0, &u->sul, us_idle,
		                 (lws_usec_t)u->idle_ms * LWS_US_PER_MS);
	us_send_code(FRAME_ACCEPT, u->id, 0, NULL);
	if (outq_bytes(&u->out) || u->fin_recv)
		conn_want_write(u->conn);
	us_flow(u);
}

/* The service shut its write side: FIN to the edge, keep writing to it
 * until the edge finishes too (TCP half-close). */
static void us_service_eof(struct ustream *u)
{
	agent_want_write();
	if (u->fin_sent)
		return;
	us_send_code(FRAME_FIN, u->id, 0, NULL);
	u->fin_sent = 1;
	if (u->fin_recv && u->shut)
		us_finish(u);
}

static void us_on_readable(void *arg)
{
	struct ustream *u = arg;

	for (int i = 0; i < READ_ROUNDS && u->conn; i++) {
		size_t want = u->send_credit < READ_MAX ? (size_t)u->send_credit : READ_MAX;
		uint8_t *buf;
		ssize_t n;

		if (!want || tunnel_data_queued(&agent.t) >= HIGH_WATER)
			break;
		/* Read straight into the tunnel's queue: no copy. */
		buf = tunnel_data_reserve(&agent.t, want);
		if (!buf) {
			us_send_code(FRAME_RST, u->id, CODE_INTERNAL, NULL);
			us_free(u);
			return;
		}
		n = conn_read(u->conn, buf, want);
		if (n == CONN_EOF) {
			us_service_eof(u);
			return;
		}
		if (n <= 0)
			break;
		tunnel_data_commit(&agent.t, FRAME_DATA, u->id, (size_t)n);
		u->send_credit -= (uint64_t)n;
		u->last_us = (uint64_t)lws_now_usecs();
	}
	agent_want_write();
	us_flow(u);
}

static void us_sent(void *arg, const struct outq_chunk *ch)
{
	struct ustream *u = arg;

	us_consumed(u, ch->len - u->proxy_len); /* the PROXY header was ours */
	u->proxy_len = 0;
	u->last_us = (uint64_t)lws_now_usecs(); /* the service takes bytes: not idle */
}

static void us_on_writable(void *arg)
{
	struct ustream *u = arg;

	if (conn_send_queue(u->conn, &u->out, &u->out_off, us_sent, u) <= 0)
		return;
	if (u->fin_recv && !u->shut) {
		u->shut = 1;
		conn_shutdown(u->conn);
		if (u->fin_sent)
			us_finish(u); /* both directions are finished */
	}
}

static int us_dial(struct ustream *u, const char **why);

static void us_on_close(void *arg, const char *why)
{
	struct ustream *u = arg;
	int broken = u->conn && conn_broken(u->conn);

	u->conn = NULL;
	if (!u->connected) {
		if (us_dial(u, &why) == 0)
			return; /* the lookup's next address */
		us_refuse(u, strstr(why, "refused") ? CODE_REFUSED : CODE_UNREACHABLE, why);
		return;
	}
	if (broken) {
		/* Reset, not finished: the client must see an error, not a clean
		 * end (RST follows the DATA already queued, in order). */
		log_debug("stream %u: %s failed: %s", u->id, u->target, why);
		us_send_code(FRAME_RST, u->id, CODE_CANCEL, why);
		us_free(u);
		return;
	}
	/* The service is done: everything it sent is queued ahead of this FIN. */
	log_debug("stream %u: %s closed: %s", u->id, u->target, why);
	/* What it will never read is dropped, and its credit returned now: the
	 * edge may be out of credit, waiting for it to see its client finish. */
	if (!u->fin_recv) {
		size_t dropped = outq_bytes(&u->out);

		outq_free(&u->out);
		u->out_off = 0;
		us_credit(u, dropped - (u->proxy_len < dropped ? u->proxy_len : dropped), 1);
		u->proxy_len = 0;
	}
	if (!u->fin_sent)
		us_send_code(FRAME_FIN, u->id, 0, NULL);
	u->fin_sent = 1;
	if (u->fin_recv)
		us_free(u);
}

static const struct conn_ops us_conn_ops = {
    .on_connected = us_on_connected,
    .on_readable = us_on_readable,
    .on_writable = us_on_writable,
    .on_close = us_on_close,
};

/*
 * Connect to the next address of the lookup not tried yet (a name with an
 * IPv6 and an IPv4 address, "localhost" among them, and a service listening
 * on one family only).  *why is the last failure: logged when another
 * address is tried, and set when one fails at once.  0 when a connection is
 * on its way, -1 when no address is left.
 */
static int us_dial(struct ustream *u, const char **why)
{
	struct conn_tls tls = {.host = u->host, .verify = u->verify, .ca_file = NULL};

	while (u->tried < u->naddrs) {
		const struct addr *a = &u->addrs[u->tried++];

		if (u->tried > 1) {
			char ip[ADDR_TEXT_MAX];

			addr_format_ip((const struct sockaddr *)&a->ss, ip);
			log_debug("stream %u: %s: %s; trying %s", u->id, u->target, *why, ip);
		}
		u->conn = conn_open(agent.vh, a, u->tls ? &tls : NULL, &us_conn_ops, u, why);
		if (u->conn)
			return 0;
	}
	return -1;
}

static void us_resolved(void *arg, const struct addr *a, size_t n, const char *err)
{
	struct ustream *u = arg;
	const char *why = "cannot connect";

	u->resolving = NULL;
	if (!a) {
		us_refuse(u, CODE_UNREACHABLE, err);
		return;
	}
	u->addrs = malloc(n * sizeof(*a));
	if (!u->addrs) {
		us_refuse(u, CODE_INTERNAL, "out of memory");
		return;
	}
	memcpy(u->addrs, a, n * sizeof(*a));
	u->naddrs = n;
	u->tried = 0;
	if (us_dial(u, &why) < 0)
		us_refuse(u, CODE_UNREACHABLE, why);
}

/* Find what route id `route` points at: host/port of the local service. */
static int us_target(struct ustream *u, const struct frame_open *o)
{
	size_t nr = agent.cfg.nroutes;
	uint16_t port;

	if (o->route >= 1 && o->route <= nr) {
		const struct agent_route *r = &agent.cfg.routes[o->route - 1];

		if (o->kind != agent_route_kind(r))
			return -1;
		snprintf(u->host, sizeof(u->host), "%s", r->to_host);
		port = r->to_port;
		u->tls = r->target == TARGET_HTTPS;
		u->verify = r->tls_verify;
		u->proxy = r->proxy_protocol;
	} else if (o->route > nr && o->route <= nr + agent.cfg.nstreams) {
		const struct agent_stream *s = &agent.cfg.streams[o->route - nr - 1];

		if (o->kind != s->listen.kind || o->dst_port < s->listen.lo ||
		    o->dst_port > s->listen.hi)
			return -1;
		snprintf(u->host, sizeof(u->host), "%s", s->to_host);
		port = (uint16_t)(s->to_port + (o->dst_port - s->listen.lo));
		u->proxy = s->proxy_protocol;
		u->idle_ms = s->idle_timeout_ms;
	} else {
		return -1;
	}
	snprintf(u->target, sizeof(u->target), "%s://%s:%u", u->tls ? "https" : "tcp", u->host,
	         port);
	return port;
}

/* The PROXY protocol header goes first, ahead of any data from the edge. */
static int us_proxy_header(struct ustream *u, const struct frame_open *o)
{
	struct proxyproto_end src = {.family = o->family, .port = o->port};
	struct proxyproto_end dst = {.family = o->dst_family, .port = o->dst_port};
	uint8_t *w = outq_reserve(&u->out, PROXYPROTO_MAX);
	size_t n;

	if (!w)
		return -1;
	memcpy(src.addr, o->addr, 16);
	memcpy(dst.addr, o->dst_addr, 16);
	if (u->proxy == PROXY_V1)
		n = proxyproto_v1((char *)w, PROXYPROTO_MAX, &src, &dst);
	else
		n = proxyproto_v2(w, PROXYPROTO_MAX, &src, &dst, 0);
	outq_commit(&u->out, n);
	/* Not the edge's bytes: no credit is owed for them. */
	u->proxy_len = n;
	return 0;
}

static int us_open(const struct frame *f)
{
	struct ustream *u;
	struct addr a;
	int port;

	if (agent.draining) { /* an OPEN that crossed our GOAWAY (PROTOCOL.md section 10) */
		us_send_code(FRAME_REFUSE, f->stream, CODE_SHUTDOWN, "agent shutting down");
		return 0;
	}
	if (agent.cfg.max_conns && agent.nstreams >= agent.cfg.max_conns) {
		char more[LOG_RATE_MORE];

		if (log_rate_ok(&log_busy, (uint64_t)lws_now_usecs(), more))
			log_warn(
			    "%zu connections open, the most allowed (max_connections): new ones "
			    "refused%s",
			    agent.nstreams, more);
		us_send_code(FRAME_REFUSE, f->stream, CODE_BUSY,
		             "too many connections at the agent (max_connections)");
		return 0;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return -1;
	port = us_target(u, &f->u.open);
	if (port < 0) {
		free(u);
		us_send_code(FRAME_REFUSE, f->stream, CODE_NO_ROUTE, "no such route on this agent");
		return 0;
	}
	u->id = f->stream;
	u->send_credit = agent.window;
	u->recv_credit = agent.window;
	u->window = u->window0 = agent.window;
	outq_init(&u->out, 0, 64 * 1024);
	if (u->proxy != PROXY_NONE && us_proxy_header(u, &f->u.open) < 0) {
		outq_free(&u->out);
		free(u);
		us_send_code(FRAME_REFUSE, f->stream, CODE_INTERNAL, "out of memory");
		return 0;
	}
	u->hnext = hash[u->id % US_HASH];
	hash[u->id % US_HASH] = u;
	u->next = agent.streams;
	if (agent.streams)
		agent.streams->prev = u;
	agent.streams = u;
	agent.nstreams++;
	lws_sul_schedule(agent.ctx, 0, &u->sul, us_connect_timeout,
	                 (lws_usec_t)agent.cfg.connect_timeout_ms * LWS_US_PER_MS);
	if (resolve_numeric(u->host, (uint16_t)port, &a) == 0) {
		us_resolved(u, &a, 1, NULL); /* may free u */
		return 0;
	}
	u->resolving = resolve_start(agent.ctx, u->host, (uint16_t)port, us_resolved, u);
	if (!u->resolving)
		us_refuse(u, CODE_INTERNAL, "out of memory");
	return 0;
}

/* Count received bytes for the probe in flight, or start one. */
static void us_probe_data(struct ustream *u, size_t n)
{
	uint64_t v;

	probe_count(&agent.probe, &u->probe_seq, &u->probe_bytes, n);
	v = probe_start(&agent.probe, u->last_us);
	if (v) {
		struct frame p = {.type = FRAME_PING};

		p.u.ping = v;
		agent_send(&p);
	}
}

void upstream_probe_answer(uint64_t value)
{
	if (!probe_answer(&agent.probe, value, (uint64_t)lws_now_usecs()))
		return;
	for (struct ustream *u = agent.streams; u; u = u->next) {
		struct frame f = {.type = FRAME_WINDOW, .stream = u->id};
		uint64_t held = u->recv_credit + u->unacked;
		uint32_t g;

		if (!u->conn || u->fin_recv || u->probe_seq != agent.probe.seq || held > u->window)
			continue;
		g = window_grow(&u->window, u->probe_bytes, u->window - held, &agent.wpool,
		                window_share(1));
		if (!g)
			continue;
		log_debug("stream %u: window grown to %u KiB", u->id, u->window >> 10);
		f.u.window = g;
		u->recv_credit += g;
		agent_send(&f);
	}
}

static int us_data(struct ustream *u, const struct frame *f)
{
	const uint8_t *p = f->payload;
	size_t len = f->len;
	uint8_t *w;

	if (u->fin_recv || f->len > u->recv_credit) {
		log_warn("tunnel: stream %u exceeded its window", u->id);
		us_send_code(FRAME_RST, u->id, CODE_FLOW, NULL);
		us_free(u);
		return 0;
	}
	u->recv_credit -= f->len;
	u->last_us = (uint64_t)lws_now_usecs();
	us_probe_data(u, f->len);
	if (!f->len)
		return 0;
	if (u->connected && !u->conn) {
		/* The service already closed: drop, but keep the edge's credit flowing. */
		us_consumed(u, f->len);
		return 0;
	}
	if (u->conn && u->connected && !outq_bytes(&u->out)) {
		/* Nothing queued: straight to the socket, no copy. */
		ssize_t k = conn_write(u->conn, f->payload, f->len);

		if (k < 0) {
			/* on_close follows; the bytes are dropped, their credit is not */
			us_consumed(u, f->len);
			return 0;
		}
		us_consumed(u, (size_t)k);
		p += k;
		len -= (size_t)k;
		if (!len)
			return 0;
	}
	w = outq_reserve(&u->out, len);
	if (!w) {
		us_send_code(FRAME_RST, u->id, CODE_INTERNAL, NULL);
		us_free(u);
		return 0;
	}
	memcpy(w, p, len);
	outq_commit(&u->out, len);
	if (u->conn && u->connected)
		conn_want_write(u->conn);
	return 0;
}

/* Whether a stream or a flow here holds id; if so, it is marked: from now
 * on the edge's frames on id are for the stream it opened, which is
 * refused, and are dropped (PROTOCOL.md section 7). */
static int id_held(uint32_t id)
{
	struct ustream *u = us_find(id);

	if (u) {
		u->reopened = 1;
		return 1;
	}
	return udpflow_reopened(id);
}

int upstream_on_frame(const struct frame *f)
{
	struct ustream *u;

	if (f->type == FRAME_OPEN) {
		/* Only after 2^32 streams: the edge is done with a stream this
		 * agent still finishes (PROTOCOL.md section 7).  That one goes on;
		 * the newcomer is refused, not the tunnel closed. */
		if (id_held(f->stream)) {
			log_warn("tunnel: OPEN for stream %u, which is still open here: refused",
			         f->stream);
			us_send_code(FRAME_REFUSE, f->stream, CODE_PROTOCOL,
			             "stream id still in use at the agent");
			return 0;
		}
		return f->u.open.kind == ROUTE_KIND_UDP ? udpflow_open(f) : us_open(f);
	}
	u = us_find(f->stream);
	if (u && u->reopened)
		return 0;
	if (!u && udpflow_frame(f))
		return 0;
	if (!u) {
		if (f->type == FRAME_DATA)
			us_send_code(FRAME_RST, f->stream, CODE_CANCEL, NULL);
		return 0;
	}
	switch (f->type) {
	case FRAME_DATA:
		return us_data(u, f);
	case FRAME_WINDOW:
		/* The client took bytes: not idle. */
		u->last_us = (uint64_t)lws_now_usecs();
		u->send_credit += f->u.window;
		if (u->send_credit > FRAME_MAX_WINDOW) {
			us_send_code(FRAME_RST, u->id, CODE_FLOW, NULL);
			us_free(u);
			return 0;
		}
		us_flow(u);
		return 0;
	case FRAME_FIN:
		u->fin_recv = 1;
		if (u->fin_sent && !u->conn)
			us_free(u);
		else if (u->conn && u->connected)
			conn_want_write(u->conn);
		return 0;
	case FRAME_RST:
		/* The client's connection was reset or failed: pass that on. */
		if (u->conn)
			conn_set_reset(u->conn);
		us_free(u);
		return 0;
	case FRAME_DATAGRAM: /* on a TCP stream (PROTOCOL.md section 9) */
		log_warn("tunnel: stream %u: DATAGRAM on a TCP stream; resetting it", u->id);
		us_send_code(FRAME_RST, u->id, CODE_PROTOCOL, NULL);
		if (u->conn)
			conn_set_reset(u->conn);
		us_free(u);
		return 0;
	default:
		return 0;
	}
}

void upstream_tunnel_gone(void)
{
	udpflow_tunnel_gone();
	while (agent.streams)
		us_free(agent.streams);
	agent.probe.sent_us = agent.probe.next_us = 0; /* its PONG will never come */
}

void upstream_tunnel_drained(void)
{
	if (tunnel_data_queued(&agent.t) >= HIGH_WATER / 2)
		return;
	for (struct ustream *u = agent.streams; u; u = u->next)
		if (u->paused)
			us_flow(u);
}
