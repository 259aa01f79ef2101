/*
 * edge/udp.c - UDP stream ports and their flows (see udp.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/dgbatch.h"
#include "../common/log.h"
#include "accesslog.h"
#include "policy.h"
#include "edge.h"
#include "clients.h"
#include "registry.h"
#include "stream.h"
#include "udp.h"

#define UDP_HASH     256
#define UDP_BATCH    64 /* datagrams per wakeup, for fairness */
#define UDP_SWEEP_US (5 * LWS_US_PER_SEC)

_Static_assert(DGB_BYTES >= FRAME_MAX_DATA, "a datagram fits in a batch");

/* How many flows one client source (IPv4 address, IPv6 /64) holds. */
struct usrc {
	uint8_t key[CLIENT_KEY_LEN]; /* its client (edge/clients.h) */
	unsigned n;
	struct usrc *next;
};

struct uflow {
	struct udpsock *u;
	struct usrc *src;
	struct addr peer;
	struct addr local; /* the address the client sent to (replies come from it) */
	int ifindex;       /* interface it came in on (IPv6 link-local replies) */
	struct estream *st;
	uint64_t last_us;
	uint64_t start_us, bytes_in, bytes_out; /* for the access log */
	int status;                             /* 200, or 502 when the service refused */
	struct uflow *next, *prev;              /* all flows of the socket */
	struct uflow *hnext;                    /* hash chain */
};

struct udpsock {
	int fd;
	struct lws *wsi;
	uint16_t port;
	struct addr local;
	int wild; /* bound to the wildcard address: learn each datagram's destination */
	struct uflow *flows;
	struct uflow *hash[UDP_HASH];
	struct usrc *srcs[UDP_HASH];
	size_t nflows;
	struct log_rate log_refused, log_src, log_agent, log_denied; /* common/log.h */
	lws_sorted_usec_list_t sul;
};

static uint64_t dropped;
static uint8_t dgram[65536];

uint64_t udp_dropped(void)
{
	return dropped;
}

/* Flows by client address and port: a keyed hash, as clients pick those. */
static unsigned udp_hash(const struct addr *a)
{
	return (unsigned)(client_hash(&a->ss, a->len) % UDP_HASH);
}

/* Count one more flow for a's source; NULL when that source holds
 * UDP_MAX_FLOWS_PER_SRC flows already (or out of memory). */
static struct usrc *udp_src_take(struct udpsock *u, const struct addr *a)
{
	uint8_t key[CLIENT_KEY_LEN];
	unsigned h;
	struct usrc *s;

	client_key(a, key);
	h = (unsigned)(client_hash(key, sizeof(key)) % UDP_HASH);
	for (s = u->srcs[h]; s; s = s->next)
		if (memcmp(s->key, key, sizeof(key)) == 0)
			break;
	if (s && s->n >= UDP_MAX_FLOWS_PER_SRC)
		return NULL;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		memcpy(s->key, key, sizeof(key));
		s->next = u->srcs[h];
		u->srcs[h] = s;
	}
	s->n++;
	return s;
}

static void udp_src_put(struct udpsock *u, struct usrc *s)
{
	struct usrc **pp;

	if (--s->n)
		return;
	for (pp = &u->srcs[client_hash(s->key, sizeof(s->key)) % UDP_HASH]; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	free(s);
}

static int udp_same(const struct addr *a, const struct addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/*
 * The flow of a datagram from peer to local.  On a wildcard socket the
 * address the client sent to is part of the key (as nginx keys UDP
 * sessions): a client asking two addresses of the host from one port gets
 * each answer from the address it asked, and the service's PROXY header
 * names the right one.
 */
static struct uflow *udp_find(struct udpsock *u, const struct addr *peer, const struct addr *local)
{
	for (struct uflow *f = u->hash[udp_hash(peer)]; f; f = f->hnext)
		if (udp_same(&f->peer, peer) && (!u->wild || udp_same(&f->local, local)))
			return f;
	return NULL;
}

/* The flow's line in the access log: like a request's, "UDP -" for it. */
static void udp_log_flow(const struct uflow *f)
{
	char ip[ADDR_TEXT_MAX], what[16];

	addr_format_ip((const struct sockaddr *)&f->peer.ss, ip);
	snprintf(what, sizeof(what), "udp/%u", f->u->port);
	accesslog_write(ip, what, "UDP", "-", f->status, f->bytes_in, f->bytes_out,
	                (uint64_t)lws_now_usecs() - f->start_us);
}

static void udp_flow_free(struct uflow *f, uint32_t code)
{
	struct udpsock *u = f->u;
	struct uflow **pp;

	for (pp = &u->hash[udp_hash(&f->peer)]; *pp; pp = &(*pp)->hnext)
		if (*pp == f) {
			*pp = f->hnext;
			break;
		}
	if (f->prev)
		f->prev->next = f->next;
	else
		u->flows = f->next;
	if (f->next)
		f->next->prev = f->prev;
	u->nflows--;
	udp_src_put(u, f->src);
	if (f->st)
		stream_close(f->st, code);
	udp_log_flow(f);
	free(f);
}

static void udp_st_nop(void *owner)
{
}

static void udp_st_refuse(void *owner, uint32_t code, const char *reason)
{
	struct uflow *f = owner;
	char more[LOG_RATE_MORE];

	if (log_rate_ok(&f->u->log_refused, (uint64_t)lws_now_usecs(), more))
		log_info("udp/%u: local service: %s%s", f->u->port, reason, more);
	f->status = 502;
	udp_flow_free(f, CODE_OK);
}

/* DATA or FIN on a UDP flow: a stream protocol error (PROTOCOL.md section 9),
 * RST CODE_PROTOCOL.  The flow ends; the client's next datagram opens one. */
static void udp_st_violation(struct uflow *f, const char *what)
{
	log_warn("udp/%u: agent '%s': %s on a UDP flow (stream %u); flow reset", f->u->port,
	         f->st->sess ? f->st->sess->agent : "?", what, f->st->id);
	udp_flow_free(f, CODE_PROTOCOL);
}

static int udp_st_data(void *owner, const uint8_t *p, size_t n)
{
	udp_st_violation(owner, "DATA");
	return -1;
}

static void udp_st_fin(void *owner)
{
	udp_st_violation(owner, "FIN");
}

static void udp_st_reset(void *owner, uint32_t code)
{
	udp_flow_free(owner, CODE_OK);
}

/* Replies gathered from the tunnel (common/dgbatch.h), each with its own
 * copy of the client's address (its flow may end meanwhile): sent when the
 * loop comes round (the tunnel's read is over) or when full. */
static struct dgb out;
static lws_sorted_usec_list_t out_sul;

/*
 * Address e to the flow's client.  On a wildcard socket the source address
 * must be the one the client sent to (IP_PKTINFO / IPV6_PKTINFO): left to
 * routing, a host with several addresses may answer from another, and the
 * client's connected socket or NAT would drop the reply.
 */
static void udp_address(const struct uflow *f, struct dgb_entry *e)
{
	struct cmsghdr *c = (struct cmsghdr *)e->cm.buf;

	memcpy(&e->name, &f->peer.ss, f->peer.len);
	e->m.msg_name = &e->name;
	e->m.msg_namelen = f->peer.len;
	if (!f->u->wild)
		return;
	memset(&e->cm, 0, sizeof(e->cm));
	e->m.msg_control = e->cm.buf;
	if (f->local.ss.ss_family == AF_INET) {
		struct in_pktinfo pi = {.ipi_spec_dst =
		                            ((const struct sockaddr_in *)&f->local.ss)->sin_addr};

		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		e->m.msg_controllen = CMSG_SPACE(sizeof(pi));
	} else {
		struct in6_pktinfo pi = {.ipi6_addr =
		                             ((const struct sockaddr_in6 *)&f->local.ss)->sin6_addr,
		                         .ipi6_ifindex = (unsigned)f->ifindex};

		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		e->m.msg_controllen = CMSG_SPACE(sizeof(pi));
	}
}

/* A reply that could not go is dropped and counted: alone when it is its
 * own fault (no route to its client, too big), with the socket's others
 * when there is no room now (EAGAIN, ENOBUFS), as UDP may (unsent() counts
 * those). */
static int udp_out_failed(void *owner, int err)
{
	if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
		return 0;
	dropped++;
	return 1;
}

static void udp_out_unsent(void *owner, const uint8_t *p, size_t n)
{
	dropped++;
}

static const struct dgb_ops udp_out_ops = {.failed = udp_out_failed, .unsent = udp_out_unsent};

static void udp_flush(void)
{
	lws_sul_cancel(&out_sul);
	dgb_send(&out);
}

static void udp_flush_sul(lws_sorted_usec_list_t *sul)
{
	dgb_send(&out);
}

/* A reply from the local service: back to the client it belongs to. */
static void udp_st_datagram(void *owner, const uint8_t *p, size_t n)
{
	struct uflow *f = owner;
	struct dgb_entry *e = dgb_add(&out, f->u, f->u->fd, p, n);

	if (!e) {
		udp_flush();
		if (!(e = dgb_add(&out, f->u, f->u->fd, p, n))) {
			dropped++;
			return;
		}
	}
	udp_address(f, e);
	f->last_us = (uint64_t)lws_now_usecs();
	f->bytes_out += n;
	if (out.n == 1) {
		out.ops = &udp_out_ops;
		lws_sul_schedule(edge.ctx, 0, &out_sul, udp_flush_sul, 1);
	}
}

/* After a reload: a flow whose client the new access list turns away ends. */
static void udp_st_recheck(void *owner)
{
	struct uflow *f = owner;
	char ip[ADDR_TEXT_MAX];

	if (policy_allows(policy_access_port(&edge.cfg, ROUTE_KIND_UDP, f->u->port), &f->peer))
		return;
	addr_format_ip((const struct sockaddr *)&f->peer.ss, ip);
	log_info("udp/%u: client %s: the access list no longer lets it in: flow ended", f->u->port,
	         ip);
	f->status = 403;
	udp_flow_free(f, CODE_CANCEL);
}

static const struct estream_ops udp_stream_ops = {
    .on_accept = udp_st_nop,
    .on_refuse = udp_st_refuse,
    .on_data = udp_st_data,
    .on_fin = udp_st_fin,
    .on_reset = udp_st_reset,
    .on_writable = udp_st_nop,
    .on_datagram = udp_st_datagram,
    .on_recheck = udp_st_recheck,
};

static struct uflow *udp_flow_new(struct udpsock *u, const struct addr *peer,
                                  const struct addr *local, int ifindex)
{
	const struct eroute *r = NULL;
	struct esession *s = registry_lookup_port(ROUTE_KIND_UDP, u->port, &r);
	struct uflow *f;
	unsigned h;
	char more[LOG_RATE_MORE];

	if (!s || u->nflows >= UDP_MAX_FLOWS || edge.draining)
		return NULL;
	if (!policy_allows(policy_access_port(&edge.cfg, ROUTE_KIND_UDP, u->port), peer)) {
		if (log_rate_ok(&u->log_denied, (uint64_t)lws_now_usecs(), more)) {
			char at[ADDR_TEXT_MAX];

			addr_format_ip((const struct sockaddr *)&peer->ss, at);
			log_info("udp/%u: client %s denied by its access list: its datagrams are "
			         "dropped%s",
			         u->port, at, more);
		}
		return NULL;
	}
	if (s->nstreams >= UDP_MAX_FLOWS_PER_AGENT) {
		if (log_rate_ok(&u->log_agent, (uint64_t)lws_now_usecs(), more))
			log_warn("udp/%u: agent '%s' carries %zu streams: new flows are dropped%s",
			         u->port, s->agent, s->nstreams, more);
		return NULL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->src = udp_src_take(u, peer);
	if (!f->src) {
		char at[ADDR_TEXT_MAX];

		if (log_rate_ok(&u->log_src, (uint64_t)lws_now_usecs(), more)) {
			addr_format_ip((const struct sockaddr *)&peer->ss, at);
			log_warn("udp/%u: client %s%s holds %d flows: its new ones are dropped%s",
			         u->port, at, peer->ss.ss_family == AF_INET6 ? " (its /64)" : "",
			         UDP_MAX_FLOWS_PER_SRC, more);
		}
		free(f);
		return NULL;
	}
	f->u = u;
	f->peer = *peer;
	f->local = *local;
	f->ifindex = ifindex;
	f->status = 200;
	f->start_us = (uint64_t)lws_now_usecs();
	f->st = stream_open(s, r, peer, local, 0, &udp_stream_ops, f);
	if (!f->st) {
		udp_src_put(u, f->src);
		free(f);
		return NULL;
	}
	h = udp_hash(peer);
	f->hnext = u->hash[h];
	u->hash[h] = f;
	f->next = u->flows;
	if (u->flows)
		u->flows->prev = f;
	u->flows = f;
	u->nflows++;
	return f;
}

/*
 * Receive one datagram into dgram: its sender in *peer and, on a wildcard
 * socket, the address it was sent to in *local (else the socket's own).
 */
static ssize_t udp_recv(struct udpsock *u, struct addr *peer, struct addr *local, int *ifindex)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
		         CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {.iov_base = dgram, .iov_len = sizeof(dgram)};
	struct msghdr m = {.msg_name = &peer->ss,
	                   .msg_namelen = sizeof(peer->ss),
	                   .msg_iov = &iov,
	                   .msg_iovlen = 1,
	                   .msg_control = u->wild ? cm.buf : NULL,
	                   .msg_controllen = u->wild ? sizeof(cm.buf) : 0};
	ssize_t n = recvmsg(u->fd, &m, MSG_DONTWAIT);

	if (n < 0)
		return n;
	peer->len = m.msg_namelen;
	*local = u->local;
	*ifindex = 0;
	for (struct cmsghdr *c = u->wild ? CMSG_FIRSTHDR(&m) : NULL; c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			((struct sockaddr_in *)&local->ss)->sin_addr = pi.ipi_addr;
			*ifindex = pi.ipi_ifindex;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			((struct sockaddr_in6 *)&local->ss)->sin6_addr = pi.ipi6_addr;
			*ifindex = (int)pi.ipi6_ifindex;
		}
	}
	return n;
}

static void udp_readable(struct udpsock *u)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		struct addr peer, local;
		struct uflow *f;
		int ifindex;
		ssize_t n = udp_recv(u, &peer, &local, &ifindex);

		if (n < 0)
			return;
		f = udp_find(u, &peer, &local);
		if (!f)
			f = udp_flow_new(u, &peer, &local, ifindex);
		if (!f || (size_t)n > FRAME_MAX_DATA ||
		    stream_datagram(f->st, dgram, (size_t)n) < 0) {
			dropped++;
			continue;
		}
		f->bytes_in += (uint64_t)n;
		f->last_us = (uint64_t)lws_now_usecs();
	}
}

static void udp_sweep(lws_sorted_usec_list_t *sul)
{
	struct udpsock *u = lws_container_of(sul, struct udpsock, sul);
	uint64_t now = (uint64_t)lws_now_usecs();
	struct uflow *f, *next;

	for (f = u->flows; f; f = next) {
		next = f->next;
		if (now - f->last_us > (uint64_t)UDP_IDLE_MS * LWS_US_PER_MS)
			udp_flow_free(f, CODE_TIMEOUT);
	}
	lws_sul_schedule(edge.ctx, 0, &u->sul, udp_sweep, UDP_SWEEP_US);
}

struct udpsock *udp_open(const struct addr *a, uint16_t port, const char **err)
{
	struct udpsock *u = calloc(1, sizeof(*u));
	lws_sock_file_fd_type fd;
	int one = 1, sz = 4 * 1024 * 1024;

	if (!u) {
		*err = "out of memory";
		return NULL;
	}
	u->port = port;
	u->local = *a;
	u->fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		*err = strerror(errno);
		free(u);
		return NULL;
	}
	if (a->ss.ss_family == AF_INET6)
		setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	u->wild = addr_is_any(a);
	if (u->wild && (a->ss.ss_family == AF_INET6
	                    ? setsockopt(u->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one))
	                    : setsockopt(u->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))) < 0) {
		*err = strerror(errno);
		close(u->fd);
		free(u);
		return NULL;
	}
	setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (bind(u->fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		*err = strerror(errno);
		close(u->fd);
		free(u);
		return NULL;
	}
	fd.filefd = u->fd;
	u->wsi = lws_adopt_descriptor_vhost(edge.raw_vh, LWS_ADOPT_RAW_FILE_DESC, fd,
	                                    EDGE_PROTO_UDP, NULL);
	if (!u->wsi) {
		*err = "cannot add the socket to the event loop";
		close(u->fd);
		free(u);
		return NULL;
	}
	lws_set_opaque_user_data(u->wsi, u);
	lws_sul_schedule(edge.ctx, 0, &u->sul, udp_sweep, UDP_SWEEP_US);
	return u;
}

void udp_close(struct udpsock *u)
{
	if (!u)
		return;
	udp_flush(); /* the replies already read still go */
	while (u->flows)
		udp_flow_free(u->flows, CODE_OK);
	lws_sul_cancel(&u->sul);
	if (u->wsi) {
		lws_set_opaque_user_data(u->wsi, NULL);
		lws_set_timeout(u->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
	}
	free(u);
}

int udp_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
	struct udpsock *u = lws_get_opaque_user_data(wsi);

	if (u && reason == LWS_CALLBACK_RAW_RX_FILE)
		udp_readable(u);
	if (u && reason == LWS_CALLBACK_RAW_CLOSE_FILE) {
		/* Not ours to close: its listener stays down until the port is. */
		log_warn("udp/%u: socket failed; its flows end", u->port);
		dropped += dgb_drop(&out, u, NULL); /* its number may soon be another's */
		u->wsi = NULL;
		while (u->flows)
			udp_flow_free(u->flows, CODE_CANCEL);
	}
	return 0;
}
