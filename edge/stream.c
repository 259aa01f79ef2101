/*
 * edge/stream.c - streams the edge opens on agent sessions (see stream.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "../common/log.h"
#include "../common/window.h"
#include "edge.h"
#include "registry.h"
#include "stream.h"

/* Stop producing for a session once this much data waits for its socket:
 * memory stays bounded whatever the number of streams. */
#define SESSION_HIGH_WATER (4u * 1024u * 1024u)
/* Return credit in batches, not one WINDOW frame per read; but at least
 * this often while the client takes bytes: the agent's idle_timeout counts
 * a slow download as traffic by these WINDOWs. */
#define CREDIT_BATCH    (256u * 1024u)
#define CREDIT_EVERY_US (250u * 1000u)

static struct estream *stream_find(struct esession *s, uint32_t id)
{
	for (struct estream *st = s->hash[id % SESSION_HASH]; st; st = st->hnext)
		if (st->id == id)
			return st;
	return NULL;
}

static void stream_unlink(struct estream *st)
{
	struct esession *s = st->sess;
	struct estream **pp;

	if (!s)
		return;
	for (pp = &s->hash[st->id % SESSION_HASH]; *pp; pp = &(*pp)->hnext)
		if (*pp == st) {
			*pp = st->hnext;
			break;
		}
	if (st->prev)
		st->prev->next = st->next;
	else
		s->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	s->nstreams--;
	st->sess = NULL;
}

static void addr_to_wire(const struct addr *a, uint8_t *family, uint8_t out[16], uint16_t *port)
{
	memset(out, 0, 16);
	*family = 0;
	*port = 0;
	if (!a)
		return;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;

		*family = 4;
		memcpy(out, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
	} else if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;

		*family = 6;
		memcpy(out, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
	}
}

struct estream *stream_open(struct esession *s, const struct eroute *r, const struct addr *peer,
                            const struct addr *local, int tls, const struct estream_ops *ops,
                            void *owner)
{
	struct frame f = {.type = FRAME_OPEN, .flags = tls ? OPEN_FLAG_TLS : 0};
	struct estream *st;

	if (s->closing || s->draining || !s->authed)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	/* Ids wrap after 2^32 streams: never hand out one still in use. */
	do {
		st->id = s->next_stream++;
		if (s->next_stream == 0)
			s->next_stream = 1;
	} while (stream_find(s, st->id));
	st->sess = s;
	st->send_credit = s->window;
	st->recv_credit = s->window;
	st->window = st->window0 = s->window;
	st->credit_us = (uint64_t)lws_now_usecs(); /* no WINDOW in its first CREDIT_EVERY_US */
	st->ops = ops;
	st->owner = owner;
	f.stream = st->id;
	f.u.open.route = r->id;
	f.u.open.kind = r->kind;
	addr_to_wire(peer, &f.u.open.family, f.u.open.addr, &f.u.open.port);
	addr_to_wire(local, &f.u.open.dst_family, f.u.open.dst_addr, &f.u.open.dst_port);
	if (session_send(s, &f) < 0) {
		free(st);
		return NULL;
	}
	st->hnext = s->hash[st->id % SESSION_HASH];
	s->hash[st->id % SESSION_HASH] = st;
	st->next = s->streams;
	if (s->streams)
		s->streams->prev = st;
	s->streams = st;
	s->nstreams++;
	edge.streams_open++;
	return st;
}

size_t stream_room(struct estream *st)
{
	size_t q;

	if (!st->sess || st->dead || st->fin_sent)
		return 0;
	q = tunnel_data_queued(&st->sess->t);
	if (q >= SESSION_HIGH_WATER || st->send_credit == 0) {
		st->blocked = 1;
		return 0;
	}
	return st->send_credit < SESSION_HIGH_WATER - q ? st->send_credit : SESSION_HIGH_WATER - q;
}

/* Used up the room: the owner may not ask stream_room() again before
 * waiting, so make sure on_writable tells it when room comes back. */
static void stream_sent(struct estream *st)
{
	if (st->send_credit == 0 || tunnel_data_queued(&st->sess->t) >= SESSION_HIGH_WATER)
		st->blocked = 1;
	session_want_write(st->sess);
}

int stream_send(struct estream *st, const void *p, size_t n)
{
	const uint8_t *b = p;

	if (!st->sess || n > st->send_credit)
		return -1;
	while (n) {
		size_t k = n > FRAME_MAX_DATA ? FRAME_MAX_DATA : n;

		if (tunnel_send_data(&st->sess->t, FRAME_DATA, st->id, b, k) < 0)
			return -1;
		st->send_credit -= k;
		b += k;
		n -= k;
	}
	stream_sent(st);
	return 0;
}

uint8_t *stream_reserve(struct estream *st, size_t max)
{
	return st->sess && max <= st->send_credit ? tunnel_data_reserve(&st->sess->t, max) : NULL;
}

void stream_commit(struct estream *st, size_t n)
{
	if (!n)
		return;
	tunnel_data_commit(&st->sess->t, FRAME_DATA, st->id, n);
	st->send_credit -= n;
	stream_sent(st);
}

int stream_datagram(struct estream *st, const void *p, size_t n)
{
	/* UDP semantics: under pressure drop the newest datagram, never queue
	 * without bound. */
	if (!st->sess || st->dead || n > FRAME_MAX_DATA ||
	    tunnel_data_queued(&st->sess->t) >= SESSION_HIGH_WATER)
		return -1;
	if (tunnel_send_data(&st->sess->t, FRAME_DATAGRAM, st->id, p, n) < 0)
		return -1;
	session_want_write(st->sess);
	return 0;
}

void stream_consumed(struct estream *st, size_t n)
{
	struct frame f = {.type = FRAME_WINDOW};
	uint64_t now;

	if (!st->sess || st->dead)
		return;
	st->unacked += n;
	now = (uint64_t)lws_now_usecs();
	if (st->unacked < CREDIT_BATCH && st->unacked < st->window / 4 &&
	    now - st->credit_us < CREDIT_EVERY_US)
		return;
	st->credit_us = now;
	f.stream = st->id;
	f.u.window = (uint32_t)st->unacked;
	st->recv_credit += st->unacked;
	st->unacked = 0;
	session_send(st->sess, &f);
}

void stream_fin(struct estream *st)
{
	struct frame f = {.type = FRAME_FIN};

	if (!st->sess || st->dead || st->fin_sent)
		return;
	st->fin_sent = 1;
	f.stream = st->id;
	session_send(st->sess, &f);
}

void stream_close(struct estream *st, uint32_t code)
{
	struct window_pool *pool;

	if (!st)
		return;
	if (st->sess && !st->dead && !(st->fin_sent && st->fin_recv)) {
		struct frame f = {.type = FRAME_RST, .stream = st->id};

		f.u.code.code = code;
		session_send(st->sess, &f);
	}
	pool = st->sess ? &st->sess->wpool : NULL; /* gone with its session */
	stream_unlink(st);
	window_release(st->window, st->window0, pool);
	edge.streams_open--;
	free(st);
}

/* The stream is dead for the tunnel; the owner still calls stream_close(). */
static void stream_reset(struct estream *st, uint32_t code)
{
	st->dead = 1;
	st->ops->on_reset(st->owner, code);
}

/* The agent broke the stream's rules: reset it both ways (the agent's side
 * would otherwise stay open, and its service connection with it). */
static void stream_violation(struct estream *st, uint32_t code)
{
	struct frame f = {.type = FRAME_RST, .stream = st->id};

	f.u.code.code = code;
	session_send(st->sess, &f);
	stream_reset(st, code);
}

/* Count received bytes for the probe in flight, or start one. */
static void stream_probe_data(struct esession *s, struct estream *st, size_t n)
{
	uint64_t v;

	probe_count(&s->probe, &st->probe_seq, &st->probe_bytes, n);
	v = probe_start(&s->probe, s->last_rx_us); /* the time this frame came */
	if (v) {
		struct frame p = {.type = FRAME_PING};

		p.u.ping = v;
		session_send(s, &p);
	}
}

void stream_probe_answer(struct esession *s, uint64_t value)
{
	size_t share;

	if (!probe_answer(&s->probe, value, (uint64_t)lws_now_usecs()))
		return;
	share = registry_window_share(s);
	for (struct estream *st = s->streams; st; st = st->next) {
		struct frame f = {.type = FRAME_WINDOW, .stream = st->id};
		uint64_t held = st->recv_credit + st->unacked;
		uint32_t g;

		if (st->dead || st->fin_recv || st->probe_seq != s->probe.seq || held > st->window)
			continue;
		g = window_grow(&st->window, st->probe_bytes, st->window - held, &s->wpool, share);
		if (!g)
			continue;
		log_debug("agent '%s': stream %u: window grown to %u KiB", s->agent, st->id,
		          st->window >> 10);
		f.u.window = g;
		st->recv_credit += g;
		session_send(s, &f);
	}
}

int stream_on_frame(struct esession *s, const struct frame *f)
{
	struct estream *st = stream_find(s, f->stream);

	if (!st) {
		/* Frames may cross an RST we sent; answer only what could be new. */
		if (f->type == FRAME_DATA || f->type == FRAME_ACCEPT) {
			struct frame r = {.type = FRAME_RST, .stream = f->stream};

			r.u.code.code = CODE_CANCEL;
			return session_send(s, &r);
		}
		return 0;
	}
	if (st->dead)
		return 0;
	switch (f->type) {
	case FRAME_ACCEPT:
		st->accepted = 1;
		st->ops->on_accept(st->owner);
		return 0;
	case FRAME_REFUSE:
		st->dead = 1;
		st->ops->on_refuse(st->owner, f->u.code.code, f->u.code.reason);
		return 0;
	case FRAME_DATA:
		if (st->fin_recv || f->len > st->recv_credit) {
			log_warn("agent '%s': stream %u: %s", s->agent, st->id,
			         st->fin_recv ? "DATA after FIN" : "exceeded its window");
			stream_violation(st, st->fin_recv ? CODE_PROTOCOL : CODE_FLOW);
			return 0;
		}
		st->recv_credit -= f->len;
		stream_probe_data(s, st, f->len);
		if (st->ops->on_data(st->owner, f->payload, f->len) < 0)
			return 0;
		return 0;
	case FRAME_WINDOW:
		if (st->ops->on_datagram) { /* a UDP flow has no credit (PROTOCOL.md 9) */
			log_warn("agent '%s': stream %u: WINDOW on a UDP flow", s->agent, st->id);
			stream_violation(st, CODE_PROTOCOL);
			return 0;
		}
		st->send_credit += f->u.window;
		if (st->send_credit > FRAME_MAX_WINDOW) {
			stream_violation(st, CODE_FLOW);
			return 0;
		}
		if (st->blocked) {
			st->blocked = 0;
			st->ops->on_writable(st->owner);
		}
		return 0;
	case FRAME_FIN:
		st->fin_recv = 1;
		st->ops->on_fin(st->owner);
		return 0;
	case FRAME_RST:
		stream_reset(st, f->u.code.code);
		return 0;
	case FRAME_DATAGRAM:
		if (!st->ops->on_datagram) { /* a TCP stream (PROTOCOL.md section 9) */
			log_warn("agent '%s': stream %u: DATAGRAM on a TCP stream", s->agent,
			         st->id);
			stream_violation(st, CODE_PROTOCOL);
			return 0;
		}
		st->ops->on_datagram(st->owner, f->payload, f->len);
		return 0;
	default:
		return 0;
	}
}

void stream_session_gone(struct esession *s)
{
	while (s->streams) {
		struct estream *st = s->streams;

		stream_unlink(st);
		if (!st->dead)
			stream_reset(st, CODE_SHUTDOWN);
	}
}

void stream_session_drained(struct esession *s)
{
	struct estream *st, *next;

	if (tunnel_data_queued(&s->t) >= SESSION_HIGH_WATER / 2)
		return;
	for (st = s->streams; st; st = next) {
		next = st->next;
		if (st->blocked && st->send_credit > 0 && !st->dead) {
			st->blocked = 0;
			st->ops->on_writable(st->owner);
		}
	}
}

void stream_recheck_all(void)
{
	for (struct esession *s = registry_first(); s; s = s->next) {
		struct estream *st = s->streams, *next;

		/* an owner that closes its client closes its stream: the next
		 * one is taken first */
		for (; st; st = next) {
			next = st->next;
			if (!st->dead && st->ops->on_recheck)
				st->ops->on_recheck(st->owner);
		}
	}
}
