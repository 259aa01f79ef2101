/*
 * agent/upstream.c - streams from the edge, each connected to a local service.
 *
 * OPEN names a route; the agent connects to that route's target and answers
 * ACCEPT or REFUSE.  DATA may arrive before the connection is up and waits in
 * the stream's queue, bounded by the credit window the edge respects.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/log.h"
#include "../common/outq.h"
#include "agent.h"
#include "upstream.h"

#define US_HASH       1024
#define READ_MAX      (128u * 1024u)
#define HIGH_WATER    (4u * 1024u * 1024u)
#define CREDIT_BATCH  (64u * 1024u)

struct ustream {
	uint32_t id;
	struct lws *wsi;
	struct ustream *next, *prev, *hnext;
	uint64_t send_credit;     /* bytes we may still send to the edge */
	uint64_t recv_credit;     /* bytes the edge may still send */
	uint64_t unacked;
	struct outq out;          /* edge -> service */
	int connected, fin_recv, fin_sent, paused;
	char target[300];
	lws_sorted_usec_list_t sul;
};

static struct ustream *hash[US_HASH];

static struct ustream *us_find(uint32_t id)
{
	for (struct ustream *u = hash[id % US_HASH]; u; u = u->hnext)
		if (u->id == id)
			return u;
	return NULL;
}

/* Forget u: unlink, drop its socket (if any) and free it. */
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
	if (u->wsi) {
		lws_set_opaque_user_data(u->wsi, NULL);
		lws_set_timeout(u->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
	outq_free(&u->out);
	free(u);
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

/* Find what route id `route` points at: host/port of the local service. */
static int us_target(const struct frame_open *o, const char **host, uint16_t *port)
{
	size_t nr = agent.cfg.nroutes;

	if (o->route >= 1 && o->route <= nr) {
		const struct agent_route *r = &agent.cfg.routes[o->route - 1];

		*host = r->to_host;
		*port = r->to_port;
		return r->target == TARGET_HTTPS ? -2 : 0;
	}
	if (o->route > nr && o->route <= nr + agent.cfg.nstreams) {
		const struct agent_stream *s = &agent.cfg.streams[o->route - nr - 1];

		if (o->dst_port < s->listen.lo || o->dst_port > s->listen.hi)
			return -1;
		*host = s->to_host;
		*port = (uint16_t)(s->to_port + (o->dst_port - s->listen.lo));
		return 0;
	}
	return -1;
}

static int us_open(const struct frame *f)
{
	struct lws_client_connect_info i;
	struct ustream *u;
	const char *host = NULL;
	uint16_t port = 0;
	int t;

	if (us_find(f->stream)) {
		log_warn("tunnel: OPEN for stream %u which exists", f->stream);
		return -1;
	}
	t = us_target(&f->u.open, &host, &port);
	if (t == -1) {
		us_send_code(FRAME_REFUSE, f->stream, CODE_NO_ROUTE, "no such route on this agent");
		return 0;
	}
	if (t == -2) {
		us_send_code(FRAME_REFUSE, f->stream, CODE_UNREACHABLE,
			     "https:// targets are not supported yet");
		return 0;
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return -1;
	u->id = f->stream;
	u->send_credit = agent.window;
	u->recv_credit = agent.window;
	outq_init(&u->out, LWS_PRE, 64 * 1024);
	snprintf(u->target, sizeof(u->target), "%s:%u", host, port);
	u->hnext = hash[u->id % US_HASH];
	hash[u->id % US_HASH] = u;
	u->next = agent.streams;
	if (agent.streams)
		agent.streams->prev = u;
	agent.streams = u;
	agent.nstreams++;

	memset(&i, 0, sizeof(i));
	i.context = agent.ctx;
	i.vhost = agent.vh;
	i.address = host;
	i.port = port;
	i.host = host;
	i.method = "RAW";
	i.local_protocol_name = AGENT_PROTO_UPSTREAM;
	i.opaque_user_data = u;
	i.pwsi = &u->wsi;
	lws_sul_schedule(agent.ctx, 0, &u->sul, us_connect_timeout,
			 (lws_usec_t)agent.cfg.connect_timeout_ms * LWS_US_PER_MS);
	if (!lws_client_connect_via_info(&i)) {
		/* CONNECTION_ERROR may have run and freed u already. */
		struct ustream *still = us_find(f->stream);

		if (still) {
			still->wsi = NULL;
			us_refuse(still, CODE_UNREACHABLE, "cannot connect");
		}
	}
	return 0;
}

static void us_flow(struct ustream *u)
{
	int pause;

	if (!u->wsi || !u->connected)
		return;
	pause = u->send_credit < READ_MAX || tunnel_data_queued(&agent.t) >= HIGH_WATER;
	if (pause != u->paused) {
		u->paused = pause;
		lws_rx_flow_control(u->wsi, !pause);
	}
}

static void us_consumed(struct ustream *u, size_t n)
{
	struct frame f = {.type = FRAME_WINDOW};

	u->unacked += n;
	if (u->unacked < CREDIT_BATCH && u->unacked < agent.window / 4)
		return;
	f.stream = u->id;
	f.u.window = (uint32_t)u->unacked;
	u->recv_credit += u->unacked;
	u->unacked = 0;
	agent_send(&f);
}

static int us_data(struct ustream *u, const struct frame *f)
{
	uint8_t *w;

	if (u->fin_recv || f->len > u->recv_credit) {
		log_warn("tunnel: stream %u exceeded its window", u->id);
		us_send_code(FRAME_RST, u->id, CODE_FLOW, NULL);
		us_free(u);
		return 0;
	}
	u->recv_credit -= f->len;
	if (!f->len)
		return 0;
	w = outq_reserve(&u->out, f->len);
	if (!w) {
		us_send_code(FRAME_RST, u->id, CODE_INTERNAL, NULL);
		us_free(u);
		return 0;
	}
	memcpy(w, f->payload, f->len);
	outq_commit(&u->out, f->len);
	if (u->wsi && u->connected)
		lws_callback_on_writable(u->wsi);
	return 0;
}

int upstream_on_frame(const struct frame *f)
{
	struct ustream *u;

	if (f->type == FRAME_OPEN)
		return us_open(f);
	u = us_find(f->stream);
	if (!u) {
		if (f->type == FRAME_DATA)
			us_send_code(FRAME_RST, f->stream, CODE_CANCEL, NULL);
		return 0;
	}
	switch (f->type) {
	case FRAME_DATA:
		return us_data(u, f);
	case FRAME_WINDOW:
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
		if (u->wsi && u->connected)
			lws_callback_on_writable(u->wsi);
		return 0;
	case FRAME_RST:
		us_free(u);
		return 0;
	default:
		return 0;
	}
}

void upstream_tunnel_gone(void)
{
	while (agent.streams)
		us_free(agent.streams);
}

void upstream_tunnel_drained(void)
{
	if (tunnel_data_queued(&agent.t) >= HIGH_WATER / 2)
		return;
	for (struct ustream *u = agent.streams; u; u = u->next)
		if (u->paused)
			us_flow(u);
}

static int us_rx(struct ustream *u, const uint8_t *p, size_t n)
{
	while (n) {
		size_t k = n > FRAME_MAX_DATA ? FRAME_MAX_DATA : n;

		if (tunnel_send_data(&agent.t, FRAME_DATA, u->id, p, k) < 0)
			return -1;
		u->send_credit -= k < u->send_credit ? k : u->send_credit;
		p += k;
		n -= k;
	}
	agent_want_write();
	us_flow(u);
	return 0;
}

static int us_writeable(struct ustream *u, struct lws *wsi)
{
	size_t len;
	uint8_t *p = outq_head(&u->out, &len);

	if (p) {
		if (lws_write(wsi, p, len, LWS_WRITE_RAW) < (int)len)
			return -1;
		outq_pop(&u->out);
		us_consumed(u, len);
		if (outq_head(&u->out, &len)) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	if (u->fin_recv && !lws_partial_buffered(wsi))
		shutdown(lws_get_socket_fd(wsi), SHUT_WR);
	return 0;
}

int upstream_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len)
{
	struct ustream *u = lws_get_opaque_user_data(wsi);

	switch (reason) {
	case LWS_CALLBACK_RAW_CONNECTED:
		if (!u)
			return -1;
		u->connected = 1;
		lws_sul_cancel(&u->sul);
		us_send_code(FRAME_ACCEPT, u->id, 0, NULL);
		if (outq_bytes(&u->out) || u->fin_recv)
			lws_callback_on_writable(wsi);
		us_flow(u);
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (u) {
			char why[200];

			snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
			u->wsi = NULL;
			us_refuse(u, strstr(why, "refused") ? CODE_REFUSED : CODE_UNREACHABLE, why);
		}
		break;
	case LWS_CALLBACK_RAW_RX:
		if (!u)
			return -1;
		return us_rx(u, in, len);
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (!u)
			return -1;
		return us_writeable(u, wsi);
	case LWS_CALLBACK_RAW_CLOSE:
		if (u) {
			/* The service closed: everything it sent is queued; FIN follows it. */
			u->wsi = NULL;
			if (!u->connected) {
				us_refuse(u, CODE_REFUSED, "connection closed");
				break;
			}
			us_send_code(FRAME_FIN, u->id, 0, NULL);
			u->fin_sent = 1;
			if (u->fin_recv)
				us_free(u);
		}
		break;
	default:
		break;
	}
	return 0;
}
