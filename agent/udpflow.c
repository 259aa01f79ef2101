/*
 * agent/udpflow.c - UDP flows (see udpflow.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../common/dgbatch.h"
#include "../common/log.h"
#include "../common/nofile.h"
#include "../common/proxyproto.h"
#include "agent.h"
#include "resolve.h"
#include "udpflow.h"

#define UF_HASH       256
#define UF_BATCH      64
#define UF_HIGH_WATER (4u * 1024u * 1024u)
#define UF_IDLE_MS    60000u
#define UF_SWEEP_US   (5 * LWS_US_PER_SEC)
#define UF_HELD_MAX   4               /* datagrams a flow holds until its socket is up */
#define UF_HELD_BYTES (1024u * 1024u) /* all flows together */

/* A datagram from the client that came before the flow's socket. */
struct held {
	struct held *next;
	size_t len;
	uint8_t data[];
};

struct uflow {
	uint32_t id;
	int fd;
	struct lws *wsi;
	struct resolve *resolving;
	size_t stream;                   /* index in agent.cfg.streams */
	struct addr *addrs;              /* the service's addresses (the lookup's answers) */
	uint8_t naddrs, cur;             /* how many; the one in use */
	uint8_t tried;                   /* addresses that failed before any reply */
	int replied;                     /* the service answered on addrs[cur] */
	int reopened;                    /* the edge opened its id again (udpflow.h) */
	int failing;                     /* the socket failed: sul_fail tears it down */
	int err;                         /* why (an errno value; 0: not known) */
	lws_sorted_usec_list_t sul_fail; /* then moves to the next address, or ends the flow */
	struct held *held, **held_tail;  /* until the socket is up */
	unsigned nheld;
	int proxy; /* PROXY v2 header before each datagram to the service */
	struct proxyproto_end src, dst;
	uint32_t idle_ms;
	uint64_t last_us;
	struct uflow *next, *prev, *hnext;
};

static struct uflow *flows, *hash[UF_HASH];
static size_t nflows;
static struct log_rate log_full, log_failed, log_dropped; /* common/log.h */
static uint64_t dropped; /* datagrams lost here under pressure, both ways */
static lws_sorted_usec_list_t sweep_sul;
static int sweeping;
static lws_usec_t sweep_us; /* the period scheduled */
static uint8_t buf[65536 + PROXYPROTO_MAX];

/* Datagrams to the services, gathered from the tunnel (common/dgbatch.h):
 * sent when the loop comes round (the tunnel's read is over) or when full. */
static struct dgb out;
_Static_assert(DGB_BYTES >= FRAME_MAX_DATA && DGB_HDR_MAX >= 52, "a datagram and its header fit");
static lws_sorted_usec_list_t out_sul;
static struct uflow *ending; /* its datagrams still go, its errors no longer matter */

static void uf_flush(void);

/* A datagram lost here under pressure, as UDP may: counted, and said at
 * most once a second. */
static void uf_dropped(const char *why)
{
	char more[LOG_RATE_MORE];

	dropped++;
	if (log_rate_ok(&log_dropped, (uint64_t)lws_now_usecs(), more))
		log_warn("udp: a datagram dropped: %s (%llu so far)%s", why,
		         (unsigned long long)dropped, more);
}

/* Per stream route, the address of its service that last answered: a new
 * flow starts there, rather than losing its first datagram to an address
 * that refuses (one lookup's order is the same every time).  Forgotten
 * with the tunnel: a reload may change the streams. */
static struct addr *answered;
static size_t nanswered;
static size_t held_bytes;

/* The hard limit, not the soft one: that is what the agent raised the soft
 * limit to at start (common/nofile.h). */
static size_t uf_max_flows(void)
{
	struct rlimit rl;
	rlim_t n = NOFILE_CEILING;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max < n)
		n = rl.rlim_max;
	n /= 2;
	return n < UF_MAX_FLOWS ? (size_t)n : UF_MAX_FLOWS;
}

static struct uflow *uf_find(uint32_t id)
{
	for (struct uflow *u = hash[id % UF_HASH]; u; u = u->hnext)
		if (u->id == id)
			return u;
	return NULL;
}

int udpflow_reopened(uint32_t id)
{
	struct uflow *u = uf_find(id);

	if (u)
		u->reopened = 1;
	return u != NULL;
}

/* The flow's socket goes; lws closes it if it was watching it. */
static void uf_drop_socket(struct uflow *u)
{
	dgb_drop(&out, u, NULL); /* its descriptor's number may soon be another's */
	if (u->wsi) {
		lws_set_opaque_user_data(u->wsi, NULL);
		lws_set_timeout(u->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	} else if (u->fd >= 0) {
		close(u->fd);
	}
	u->wsi = NULL;
	u->fd = -1;
}

static void uf_free(struct uflow *u)
{
	struct uflow **pp;

	ending = u; /* what came before the end still goes out */
	uf_flush();
	ending = NULL;

	for (pp = &hash[u->id % UF_HASH]; *pp; pp = &(*pp)->hnext)
		if (*pp == u) {
			*pp = u->hnext;
			break;
		}
	if (u->prev)
		u->prev->next = u->next;
	else
		flows = u->next;
	if (u->next)
		u->next->prev = u->prev;
	nflows--;
	resolve_cancel(u->resolving);
	lws_sul_cancel(&u->sul_fail);
	free(u->addrs);
	while (u->held) {
		struct held *h = u->held;

		u->held = h->next;
		held_bytes -= h->len;
		free(h);
		uf_dropped("its flow ended before it could go");
	}
	uf_drop_socket(u);
	free(u);
}

static void uf_end(struct uflow *u, uint8_t type, uint32_t code, const char *why)
{
	struct frame f = {.type = type, .stream = u->id};

	f.u.code.code = code;
	snprintf(f.u.code.reason, sizeof(f.u.code.reason), "%s", why ? why : "");
	agent_send(&f);
	uf_free(u);
}

/* How often to sweep: every UF_SWEEP_US, or more often for a short idle
 * timeout so that a flow lives at most 1.25 times its own. */
static lws_usec_t uf_sweep_period(uint32_t idle_ms)
{
	lws_usec_t us = (lws_usec_t)idle_ms * LWS_US_PER_MS / 4;

	if (us < 50 * LWS_US_PER_MS)
		us = 50 * LWS_US_PER_MS;
	return us < UF_SWEEP_US ? us : UF_SWEEP_US;
}

static void uf_sweep(lws_sorted_usec_list_t *sul)
{
	uint64_t now = (uint64_t)lws_now_usecs();
	lws_usec_t period = UF_SWEEP_US;
	struct uflow *u, *next;

	for (u = flows; u; u = next) {
		next = u->next;
		if (now - u->last_us > (uint64_t)u->idle_ms * LWS_US_PER_MS)
			uf_end(u, FRAME_RST, CODE_TIMEOUT, NULL); /* PROTOCOL.md section 9 */
		else if (uf_sweep_period(u->idle_ms) < period)
			period = uf_sweep_period(u->idle_ms);
	}
	sweeping = flows != NULL;
	sweep_us = period;
	if (sweeping)
		lws_sul_schedule(agent.ctx, 0, &sweep_sul, uf_sweep, period);
}

static void uf_send_held(struct uflow *u);
static void uf_keep(void *owner, const uint8_t *p, size_t n);

/* 1 when an error of recv()/send() on the flow's socket says nothing about
 * the socket itself: nothing to read, no room now (the datagram is lost, as
 * UDP may), or this one datagram too big.  Anything else (ECONNREFUSED from
 * an ICMP port unreachable, EHOSTUNREACH, ENETUNREACH, EACCES, ...) is the
 * socket's own error: the kernel reports it once, to whichever call comes
 * first, so that call must end the flow. */
static int uf_transient(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ENOBUFS ||
	       err == ENOMEM || err == EMSGSIZE;
}

/* A socket in u->fd connected to the flow's current address: 0, or an errno
 * value (u->fd is then -1). */
static int uf_socket(struct uflow *u)
{
	const struct addr *a = &u->addrs[u->cur];
	int sz = 1024 * 1024, err;

	u->fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0)
		return errno;
	if (connect(u->fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		err = errno;
		goto fail;
	}
	/* Connected to itself, the socket reads back each datagram it sends as
	 * the service's answer, and no ICMP error ever ends the flow: that is a
	 * refusal. */
	if (addr_fd_self_connected(u->fd)) {
		log_debug("udp flow %u: its socket is connected to itself: nothing listens there",
		          u->id);
		err = ECONNREFUSED;
		goto fail;
	}
	setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	return 0;
fail:
	close(u->fd);
	u->fd = -1;
	return err;
}

/* A socket connected to the flow's current address (else the next ones),
 * watched by the loop; the flow is ended on failure. */
static void uf_connect(struct uflow *u)
{
	lws_sock_file_fd_type fd;
	char ip[ADDR_TEXT_MAX];
	int err;

	while ((err = uf_socket(u)) != 0) {
		if (u->replied || ++u->tried >= u->naddrs) {
			uf_end(u, FRAME_REFUSE, CODE_UNREACHABLE, strerror(err));
			return;
		}
		u->cur = (uint8_t)((u->cur + 1) % u->naddrs);
		addr_format(&u->addrs[u->cur], ip);
		log_debug("udp flow %u: %s; trying %s", u->id, strerror(err), ip);
	}
	fd.filefd = u->fd;
	u->wsi = lws_adopt_descriptor_vhost(agent.vh, LWS_ADOPT_RAW_FILE_DESC, fd, AGENT_PROTO_UDP,
	                                    NULL);
	if (!u->wsi) { /* a raw file descriptor stays ours: uf_free() closes it */
		uf_end(u, FRAME_REFUSE, CODE_INTERNAL, "cannot watch the socket");
		return;
	}
	lws_set_opaque_user_data(u->wsi, u);
	uf_send_held(u);
}

/*
 * UDP learns of an unreachable address only later, from an ICMP error on
 * the connected socket: a flow starts on the address that last answered for
 * its route (else the lookup's first) and moves to the next one when its
 * socket fails before any reply.
 */
static void uf_resolved(void *arg, const struct addr *a, size_t n, const char *err)
{
	struct uflow *u = arg;

	u->resolving = NULL;
	if (!a) {
		uf_end(u, FRAME_REFUSE, CODE_UNREACHABLE, err);
		return;
	}
	u->addrs = malloc(n * sizeof(*a));
	if (!u->addrs) {
		uf_end(u, FRAME_REFUSE, CODE_INTERNAL, "out of memory");
		return;
	}
	memcpy(u->addrs, a, n * sizeof(*a));
	u->naddrs = (uint8_t)n;
	for (size_t i = 0; i < n && u->stream < nanswered; i++)
		if (addr_equal(&a[i], &answered[u->stream]))
			u->cur = (uint8_t)i;
	uf_connect(u);
}

/*
 * The flow's socket failed (u->err): it goes.  Before any reply the flow
 * moves to its next address; else, or with none left, the flow ends: the
 * edge forgets it, and the client's next datagram opens a fresh one.
 */
static void uf_failed(lws_sorted_usec_list_t *sul)
{
	struct uflow *u = lws_container_of(sul, struct uflow, sul_fail);
	const char *why = u->err ? strerror(u->err) : "closed";
	char ip[ADDR_TEXT_MAX], more[LOG_RATE_MORE];

	uf_drop_socket(u);
	u->failing = 0;
	if (!u->replied && ++u->tried < u->naddrs) {
		u->cur = (uint8_t)((u->cur + 1) % u->naddrs);
		addr_format(&u->addrs[u->cur], ip);
		log_debug("udp flow %u: %s; trying %s", u->id, why, ip);
		uf_connect(u); /* may free u */
		return;
	}
	if (log_rate_ok(&log_failed, (uint64_t)lws_now_usecs(), more))
		log_info("udp flow %u: the service's socket failed (%s); flow ended%s", u->id, why,
		         more);
	uf_end(u, FRAME_RST, CODE_UNREACHABLE, "the service's socket failed");
}

/*
 * The flow's socket failed with err (0: not known).  It is torn down from
 * the loop, not here: this runs inside recv/send paths (a frame handler, the
 * socket's own lws callback) whose callers still hold u or its wsi.
 */
static void uf_fail(struct uflow *u, int err)
{
	if (u->failing)
		return;
	/* What came before the failure: held for the next address if the flow
	 * moves on (its socket's error may be taken already: sent, it would go
	 * to the address that refused), else sent where it was going. */
	if (!u->replied && u->tried + 1 < u->naddrs)
		dgb_drop(&out, u, uf_keep);
	else
		uf_flush();
	u->failing = 1;
	u->err = err;
	lws_sul_schedule(agent.ctx, 0, &u->sul_fail, uf_failed, 0);
}

/* The service answered on the flow's address: new flows of its route start there. */
static void uf_answered(struct uflow *u)
{
	u->replied = 1;
	if (u->naddrs < 2)
		return;
	if (!answered) {
		answered = calloc(agent.cfg.nstreams, sizeof(*answered));
		nanswered = answered ? agent.cfg.nstreams : 0;
	}
	if (u->stream < nanswered)
		answered[u->stream] = u->addrs[u->cur];
}

int udpflow_open(const struct frame *f)
{
	const struct frame_open *o = &f->u.open;
	size_t nr = agent.cfg.nroutes;
	const struct agent_stream *s;
	struct uflow *u;
	struct addr a;
	uint16_t port;
	char more[LOG_RATE_MORE];

	if (o->route <= nr || o->route > nr + agent.cfg.nstreams ||
	    agent.cfg.streams[o->route - nr - 1].listen.kind != ROUTE_KIND_UDP ||
	    o->dst_port < agent.cfg.streams[o->route - nr - 1].listen.lo ||
	    o->dst_port > agent.cfg.streams[o->route - nr - 1].listen.hi) {
		struct frame r = {.type = FRAME_REFUSE, .stream = f->stream};

		r.u.code.code = CODE_NO_ROUTE;
		snprintf(r.u.code.reason, sizeof(r.u.code.reason), "no such UDP route");
		return agent_send(&r) < 0 ? -1 : 0;
	}
	if (agent.draining) { /* an OPEN that crossed our GOAWAY (PROTOCOL.md section 10) */
		struct frame r = {.type = FRAME_REFUSE, .stream = f->stream};

		r.u.code.code = CODE_SHUTDOWN;
		snprintf(r.u.code.reason, sizeof(r.u.code.reason), "agent shutting down");
		return agent_send(&r) < 0 ? -1 : 0;
	}
	if (nflows >= uf_max_flows()) {
		struct frame r = {.type = FRAME_REFUSE, .stream = f->stream};

		if (log_rate_ok(&log_full, (uint64_t)lws_now_usecs(), more))
			log_warn("udp: %zu flows open, the most allowed: new ones refused%s",
			         nflows, more);
		r.u.code.code = CODE_REFUSED;
		snprintf(r.u.code.reason, sizeof(r.u.code.reason), "too many UDP flows");
		return agent_send(&r) < 0 ? -1 : 0;
	}
	s = &agent.cfg.streams[o->route - nr - 1];
	port = (uint16_t)(s->to_port + (o->dst_port - s->listen.lo));
	u = calloc(1, sizeof(*u));
	if (!u)
		return -1;
	u->id = f->stream;
	u->fd = -1;
	u->stream = (size_t)(o->route - nr - 1);
	u->proxy = s->proxy_protocol == PROXY_V2;
	u->src.family = o->family;
	u->src.port = o->port;
	memcpy(u->src.addr, o->addr, 16);
	u->dst.family = o->dst_family;
	u->dst.port = o->dst_port;
	memcpy(u->dst.addr, o->dst_addr, 16);
	u->idle_ms = s->idle_timeout_ms ? s->idle_timeout_ms : UF_IDLE_MS;
	u->last_us = (uint64_t)lws_now_usecs();
	u->hnext = hash[u->id % UF_HASH];
	hash[u->id % UF_HASH] = u;
	u->next = flows;
	if (flows)
		flows->prev = u;
	flows = u;
	nflows++;
	if (!sweeping || uf_sweep_period(u->idle_ms) < sweep_us) {
		sweeping = 1;
		sweep_us = uf_sweep_period(u->idle_ms);
		lws_sul_schedule(agent.ctx, 0, &sweep_sul, uf_sweep, sweep_us);
	}
	if (resolve_numeric(s->to_host, port, &a) == 0) { /* uf_resolved() copies it */
		uf_resolved(u, &a, 1, NULL);              /* may free u */
		return 0;
	}
	u->resolving = resolve_start(agent.ctx, s->to_host, port, uf_resolved, u);
	if (!u->resolving)
		uf_end(u, FRAME_REFUSE, CODE_INTERNAL, "out of memory");
	return 0;
}

/*
 * A datagram that came before the flow's socket (the name is being looked
 * up: this is the flow's first datagram, a DNS query or a WireGuard
 * handshake) is kept and sent once the socket is up.  A few per flow and
 * 1 MiB for all: past that UDP may lose them.
 */
static void uf_hold(struct uflow *u, const uint8_t *p, size_t n)
{
	struct held *h;

	if (u->nheld >= UF_HELD_MAX || held_bytes + n > UF_HELD_BYTES) {
		uf_dropped("too many before the flow's socket is up");
		return;
	}
	h = malloc(sizeof(*h) + n);
	if (!h) {
		uf_dropped("out of memory");
		return;
	}
	h->next = NULL;
	h->len = n;
	memcpy(h->data, p, n);
	if (!u->held)
		u->held_tail = &u->held;
	*u->held_tail = h;
	u->held_tail = &h->next;
	u->nheld++;
	held_bytes += n;
}

/* A datagram taken back from out: held, for the flow's next address. */
static void uf_keep(void *owner, const uint8_t *p, size_t n)
{
	uf_hold(owner, p, n);
}

/* A datagram to u's service could not go: one too big is lost alone; no
 * room now (EAGAIN, ENOBUFS) loses it and the rest, as UDP may; a hard
 * error fails the socket, and it and the rest are held for the flow's next
 * address (uf_out_unsent), or, on a flow ending, it is lost alone. */
static int uf_out_failed(void *owner, int err)
{
	struct uflow *u = owner;

	if (err == EMSGSIZE || (u == ending && !uf_transient(err))) {
		uf_dropped(err == EMSGSIZE ? "too big for the service's network"
		                           : "the service's socket failed");
		return 1;
	}
	if (!uf_transient(err))
		uf_fail(u, err);
	return 0;
}

static void uf_out_unsent(void *owner, const uint8_t *p, size_t n)
{
	struct uflow *u = owner;

	if (u != ending && u->failing)
		uf_hold(u, p, n);
	else
		uf_dropped("no room in the service's socket");
}

static const struct dgb_ops uf_out_ops = {.failed = uf_out_failed, .unsent = uf_out_unsent};

static void uf_flush(void)
{
	lws_sul_cancel(&out_sul);
	dgb_send(&out);
}

static void uf_flush_sul(lws_sorted_usec_list_t *sul)
{
	dgb_send(&out);
}

/* A datagram from the client, to the service (a PROXY v2 header first if
 * asked: one per datagram, as the spec has it for DGRAM), gathered in out. */
static void uf_to_service(struct uflow *u, const uint8_t *p, size_t n)
{
	struct dgb_entry *e;

	if (!u->wsi || u->failing) { /* still resolving the name, or the next address */
		uf_hold(u, p, n);
		return;
	}
	if (!(e = dgb_add(&out, u, u->fd, p, n))) {
		uf_flush();
		if (u->failing) {
			uf_hold(u, p, n);
			return;
		}
		if (!(e = dgb_add(&out, u, u->fd, p, n))) {
			uf_dropped("too big"); /* not reached: FRAME_MAX_DATA <= DGB_BYTES */
			return;
		}
	}
	if (u->proxy) {
		e->iov[0].iov_len = proxyproto_v2(e->hdr, sizeof(e->hdr), &u->src, &u->dst, 1);
		e->m.msg_iov = e->iov;
		e->m.msg_iovlen = 2;
	}
	if (out.n == 1) {
		out.ops = &uf_out_ops;
		lws_sul_schedule(agent.ctx, 0, &out_sul, uf_flush_sul, 1);
	}
}

/* The datagrams held for the flow's new socket.  Those after a hard error
 * stay held, for the next address, in order: after those the failure gave
 * back (uf_out_unsent), which came before them.  Still counted in nheld
 * and held_bytes while they wait here. */
static void uf_send_held(struct uflow *u)
{
	struct held *h = u->held, *next;

	u->held = NULL;
	for (; h && !u->failing; h = next) {
		next = h->next;
		u->nheld--;
		held_bytes -= h->len;
		uf_to_service(u, h->data, h->len);
		free(h);
	}
	if (!h)
		return;
	if (!u->held)
		u->held_tail = &u->held;
	*u->held_tail = h;
	while (h->next)
		h = h->next;
	u->held_tail = &h->next;
}

int udpflow_frame(const struct frame *f)
{
	struct uflow *u = uf_find(f->stream);

	if (!u)
		return 0;
	if (u->reopened)
		return 1;
	switch (f->type) {
	case FRAME_DATAGRAM:
		u->last_us = (uint64_t)lws_now_usecs();
		uf_to_service(u, f->payload, f->len);
		break;
	case FRAME_RST:
		uf_free(u);
		break;
	default: /* DATA, WINDOW, FIN: a stream protocol error (PROTOCOL.md section 9) */
		log_warn("udp flow %u: %s from the edge on a UDP flow; flow reset", u->id,
		         frame_type_name(f->type));
		uf_end(u, FRAME_RST, CODE_PROTOCOL, NULL);
		break;
	}
	return 1;
}

void udpflow_tunnel_gone(void)
{
	while (flows)
		uf_free(flows);
	free(answered);
	answered = NULL;
	nanswered = 0;
}

/* Replies from the service go back as DATAGRAM frames; under pressure the
 * newest are dropped rather than queued.  recv() reports the socket's error
 * (an ICMP error) before any datagram still queued. */
static void uf_readable(struct uflow *u)
{
	for (int i = 0; i < UF_BATCH; i++) {
		ssize_t n = recv(u->fd, buf, FRAME_MAX_DATA, MSG_DONTWAIT);

		if (n < 0) {
			if (!uf_transient(errno))
				uf_fail(u, errno);
			break;
		}
		u->last_us = (uint64_t)lws_now_usecs();
		if (!u->replied)
			uf_answered(u);
		if (tunnel_data_queued(&agent.t) >= UF_HIGH_WATER) {
			uf_dropped("the tunnel to the edge is full");
			continue;
		}
		if (tunnel_send_data(&agent.t, FRAME_DATAGRAM, u->id, buf, (size_t)n) < 0)
			break;
	}
	agent_want_write();
}

int udpflow_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
	struct uflow *u = lws_get_opaque_user_data(wsi);

	if (u && reason == LWS_CALLBACK_RAW_RX_FILE)
		uf_readable(u);
	if (u && reason == LWS_CALLBACK_RAW_CLOSE_FILE) {
		/* lws 4.1 closes the socket on POLLERR without POLLIN (an ICMP
		 * error on the connected socket, as when the service is down or
		 * restarts): the error is still pending on it.  With POLLIN too,
		 * RAW_RX_FILE comes instead, and recv() returns the error. */
		int err = 0;
		socklen_t elen = sizeof(err);

		if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = 0;
		lws_set_opaque_user_data(wsi, NULL); /* lws may call again for this wsi */
		dgb_drop(&out, u, uf_keep);          /* for the next address, in order */
		u->wsi = NULL;
		u->fd = -1;
		if (agent.interrupted) /* the loop is going away with everything */
			uf_free(u);
		else /* not from inside lws's close of the old socket */
			uf_fail(u, err);
	}
	return 0;
}
